"""Benchmark: what verifying per-epoch digests costs one core, measured on the real code
(issue 14: the simulator's per-peer cost model reads these figures).

What is measured, each the fastest of several timed rounds of this process's CPU time
(``time.process_time``: other work on a shared machine slows the wall clock, not that):

* ``digest_us`` / ``digest_row_us``: decoding a gossiped digest as a peer does
  (``repp2p.records.decode(data, now=...)``: CBOR, canonical form, field checks including
  each row's part, the Ed25519 signature), for WorkDigests and FeedbackDigests of 0 to 256
  rows; a least-squares line ``digest_us + rows * digest_row_us`` over both types.
* ``audit_us``: judging one challenged leaf (``repp2p.digests.verify_audit`` on the
  publisher's real answer: two Merkle paths, the leaf, the two or three signed per-task
  records and the receipt's enclave signature), averaged over work and feedback leaves.
* ``record_us``: decoding one per-task record or heartbeat (offer, claim, receipt,
  feedback, heartbeat: the mean).
* ``fold_row_us``: ``repp2p.digests.reconcile`` per (client, node) pair row.
* sizes in bytes: each record type's envelope, an audit answer (base and per tree level),
  and the per-message gossip overhead of py-libp2p's GossipSub with strict signing: the
  ``Message`` fields around ``data`` (from, seqno, topic, signature, key), the ``RPC``
  around it with the sender's signed peer record that py-libp2p attaches to every RPC,
  the length prefix, a Yamux header and a Noise frame's length and tag.

Baseline: one raw Ed25519 verify (PyNaCl) in the same run; ``ratio`` = ``digest_us`` of a
one-row digest over it (what the rest of a digest's checks add to its signature).

Ends with one JSON line. The defaults of ``repp2p.sim.digests.CostModel`` are these
figures from the run recorded in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from collections.abc import Callable

import nacl.signing

from repp2p.digests import build_feedback, build_work, leaf_proof, reconcile, verify_audit
from repp2p.records import Heartbeat, decode, sign
from repp2p.testing import factories

NOW = factories.NOW
TOPIC = "/repp2p/1/digests"


def _timed(fn: Callable[[], object], repeat: int, rounds: int = 21) -> float:
    """The fastest of ``rounds`` rounds, each the mean CPU time of ``repeat`` calls in
    microseconds. CPU time of this process (``time.process_time``), not wall time, and the
    fastest round: on a shared machine other work only ever adds time."""
    out = []
    for _ in range(rounds):
        t0 = time.process_time()
        for _ in range(repeat):
            fn()
        out.append((time.process_time() - t0) / repeat * 1e6)
    return min(out)


def _tasks(node_names: list[str], client_names: list[str], per_pair: int, epoch: int):
    nodes = [factories.identity(n) for n in node_names]
    clients = [factories.identity(c) for c in client_names]
    records = []
    for ci, client in enumerate(clients):
        for ni, node in enumerate(nodes):
            for t in range(per_pair):
                outcome = ("ok", "wrong", "timeout", "ok")[t % 4]
                tr = factories.task_records(client, node, epoch, f"{ci}/{ni}/{t}", outcome=outcome)
                records += tr.all()
    return nodes, clients, records


def _line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return my - slope * mx, slope


def digest_costs(rows_list: list[int], repeat: int) -> dict:
    """Decode+verify time of real digests of each row count (one task per row)."""
    epoch = 7
    xs, ys, sizes = [], [], {}
    for rows in rows_list:
        names = [f"peer-{i}" for i in range(max(rows, 1))]
        if rows == 0:
            node = factories.identity("node-0")
            parts = build_work(node.peer_id, [], epoch, expires=factories.far_future())
            signed = [sign(parts[0].digest, node)]
        else:
            nodes, _clients, records = _tasks(["node-0"], names, 1, epoch)
            (wp,) = build_work(nodes[0].peer_id, records, epoch, expires=factories.far_future())
            signed = [sign(wp.digest, nodes[0])]
            # a client's feedback digest with `rows` nodes
            _nodes2, clients2, records2 = _tasks(names, ["client-0"], 1, epoch)
            (fp,) = build_feedback(
                clients2[0].peer_id, records2, epoch, expires=factories.far_future()
            )
            signed.append(sign(fp.digest, clients2[0]))
        for s in signed:
            data = s.data
            us = _timed(lambda data=data: decode(data, now=NOW), repeat)
            xs.append(rows)
            ys.append(us)
            sizes[f"{s.type}_{rows}"] = len(data)
    base, per_row = _line(xs, ys)
    return {
        "digest_us": base,
        "digest_row_us": per_row,
        "points": list(zip(xs, ys, strict=True)),
        "sizes": sizes,
    }


def audit_costs(leaves: int, repeat: int) -> dict:
    """verify_audit per challenged leaf, and the answer's size against tree depth."""
    epoch = 7
    per_pair = max(1, leaves // 8)
    nodes, _clients, records = _tasks(
        ["node-0"], [f"client-{i}" for i in range(8)], per_pair, epoch
    )
    (wp,) = build_work(nodes[0].peer_id, records, epoch, expires=factories.far_future())
    wd = sign(wp.digest, nodes[0])
    _nodes2, clients2, records2 = _tasks(
        [f"node-{i}" for i in range(8)], ["client-0"], per_pair, epoch
    )
    (fp,) = build_feedback(clients2[0].peer_id, records2, epoch, expires=factories.far_future())
    fd = sign(fp.digest, clients2[0])
    times, sizes = {}, {}
    for kind, part, digest in (("work", wp, wd), ("feedback", fp, fd)):
        n = digest.record.leaf_count
        answers = [leaf_proof(part, digest.record_id, i).encode() for i in range(n)]
        sizes[kind] = (n, statistics.fmean(len(a) for a in answers))
        picks = list(range(0, n, max(1, n // 16)))

        def judge(digest=digest, answers=answers, picks=picks) -> None:
            for i in picks:
                verify_audit(digest, i, answers[i])

        times[kind] = _timed(judge, max(1, repeat // 10)) / len(picks)
    return {"times": times, "sizes": sizes}


def answer_size_lines() -> dict[str, tuple[float, float]]:
    """Audit answer bytes = base + per_level * ceil(log2 leaves) per digest kind, fitted on
    real answers (a work leaf's answer carries three records, a feedback leaf's two)."""
    points: dict[str, tuple[list[float], list[float]]] = {"work": ([], []), "feedback": ([], [])}
    for leaves in (2, 8, 32, 128):
        a = audit_costs(leaves, 10)["sizes"]
        for kind in ("work", "feedback"):
            n, mean = a[kind]
            points[kind][0].append(math.ceil(math.log2(n)))
            points[kind][1].append(mean)
    return {kind: _line(xs, ys) for kind, (xs, ys) in points.items()}


def record_costs(repeat: int) -> dict:
    client, node = factories.identity("client"), factories.identity("node")
    tr = factories.task_records(client, node, 7, "one")
    hb = sign(
        Heartbeat(epoch=29_500_000, load=1, tasks_done=42, seq=1, expires=factories.far_future()),
        node,
    )
    out = {}
    for name, s in (
        ("offer", tr.offer),
        ("claim", tr.claim),
        ("receipt", tr.receipt),
        ("feedback", tr.feedback),
        ("heartbeat", hb),
    ):
        data = s.data
        out[name] = (len(data), _timed(lambda data=data: decode(data, now=NOW), repeat))
    return out


def fold_cost(pairs_side: int) -> float:
    """reconcile per pair row: ``pairs_side`` nodes x ``pairs_side`` clients, both sides."""
    epoch = 7
    names_n = [f"n{i}" for i in range(pairs_side)]
    names_c = [f"c{i}" for i in range(pairs_side)]
    nodes, clients, records = _tasks(names_n, names_c, 1, epoch)
    digests = []
    for n in nodes:
        for p in build_work(n.peer_id, records, epoch, expires=factories.far_future()):
            digests.append(sign(p.digest, n))
    for c in clients:
        for p in build_feedback(c.peer_id, records, epoch, expires=factories.far_future()):
            digests.append(sign(p.digest, c))
    rows = pairs_side * pairs_side
    return _timed(lambda: reconcile(digests, epoch), 3) / rows


def gossip_overhead() -> dict:
    """Bytes a GossipSub hop adds around one record, from py-libp2p's own protobufs."""
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.envelope import seal_record
    from libp2p.peer.id import ID
    from libp2p.peer.peer_record import PeerRecord
    from libp2p.pubsub.pb import rpc_pb2
    from multiaddr import Multiaddr

    kp = create_new_key_pair(bytes(range(32)))
    pid = ID.from_pubkey(kp.public_key)
    addrs = [
        Multiaddr("/ip4/203.0.113.7/tcp/40000"),
        Multiaddr("/ip4/203.0.113.7/udp/40000/quic-v1"),
    ]
    envelope = seal_record(PeerRecord(pid, addrs, 1), kp.private_key).marshal_envelope()
    data = bytes(300)
    msg = rpc_pb2.Message(data=data, topicIDs=[TOPIC], from_id=pid.to_bytes(), seqno=bytes(8))
    msg.signature = bytes(64)
    msg.key = kp.public_key.serialize()
    rpc = rpc_pb2.RPC(publish=[msg], senderRecord=envelope)
    body = len(rpc.SerializeToString())
    prefix = len(_uvarint(body))
    yamux, noise = 12, 2 + 16
    return {
        "message_fields": msg.ByteSize() - len(data),
        "sender_record": len(envelope),
        "per_message": body - len(data) + prefix + yamux + noise,
        "ihave_id": len(
            rpc_pb2.ControlIHave(topicID=TOPIC, messageIDs=[bytes(32)]).SerializeToString()
        )
        - len(rpc_pb2.ControlIHave(topicID=TOPIC).SerializeToString()),
    }


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def baseline_us(repeat: int) -> float:
    key = nacl.signing.SigningKey(bytes(32))
    signed = key.sign(b"x" * 200)
    vk = key.verify_key
    return _timed(lambda: vk.verify(signed), repeat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=150, help="calls per timed round")
    args = ap.parse_args()
    r = args.repeat
    dig = digest_costs([0, 1, 4, 16, 64, 256], r)
    aud = audit_costs(64, r)
    answers = answer_size_lines()
    rec = record_costs(r)
    fold = fold_cost(24)
    gos = gossip_overhead()
    base = baseline_us(r)
    one_row = statistics.fmean(y for x, y in dig["points"] if x == 1)
    for x, y in dig["points"]:
        print(f"digest of {x:3d} rows: {y:7.1f} us")
    print(f"line: {dig['digest_us']:.1f} us + {dig['digest_row_us']:.2f} us/row")
    for kind, us in aud["times"].items():
        print(f"audit, {kind} leaf: {us:.1f} us; answer {aud['sizes'][kind][1]:.0f} B")
    for name, (size, us) in rec.items():
        print(f"{name}: {size} B, {us:.1f} us")
    print(f"reconcile: {fold:.2f} us per pair row; gossip overhead {gos}")
    print(
        json.dumps(
            {
                "bench": "verify_cost",
                "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cpu",
                "digest_us": round(dig["digest_us"], 1),
                "digest_row_us": round(dig["digest_row_us"], 2),
                "digest_1row_us": round(one_row, 1),
                "audit_us": round(statistics.fmean(aud["times"].values()), 1),
                "record_us": round(statistics.fmean(us for _, us in rec.values()), 1),
                "fold_row_us": round(fold, 2),
                "bytes": {
                    **{k: v[0] for k, v in rec.items()},
                    "digest_sizes": dig["sizes"],
                    "audit_answer_work": round(answers["work"][0]),
                    "audit_answer_feedback": round(answers["feedback"][0]),
                    "audit_answer_per_level": round(
                        (answers["work"][1] + answers["feedback"][1]) / 2, 1
                    ),
                    "gossip_per_message": gos["per_message"],
                    "gossip_sender_record": gos["sender_record"],
                    "ihave_per_id": gos["ihave_id"],
                },
                "baseline": round(base, 1),
                "ratio": round(one_row / base, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
