"""Benchmark: one epoch's view build from signed records, with the evidence's admission checks.

What is measured: ``View.build`` of epoch ``E`` from the signed records a node holds (node
ads, heartbeats, and per task an offer, a claim, a receipt and feedback), the way
``ViewKeeper.view`` builds it: with :class:`repp2p.matching.Assignments` (each offer's
assigned ranks, judged on the view of its epoch; the views of earlier epochs are held) and
the receipt's enclave-signature check (docs/core.md, "Evidence: who ran a task").

* ``cold_s``: the first build: every offer ranked on its epoch's view (those views held,
  as a running node holds them), every receipt's enclave signature verified;
* ``warm_s``: the next epoch's build, best of 3: the earlier offers' ranks and signatures
  cached, the newest epoch's offers ranked once (a running node's steady state is the
  first of the three; the other two have every offer cached);
* ``restart_s``: the build after a restart: no view held, so the view of every epoch
  with offers is rebuilt (oldest first) and every offer ranked;
* ``baseline``: the same build without assignments, signature cache warm, best of 3: what
  the view build cost before these checks existed (run against an older checkout, the
  script falls back to plain ``View.build``, the true "before").

Inputs (deterministic): 50 attested nodes, 5 clients, 300 k = 1 tasks per epoch for 10
epochs (12,000 per-task records; about what a devnet view holds), each claimed at rank 0 by
the node the matching ranks first. Single process. Ends with one JSON line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import time

from repp2p.matching import View, beacon
from repp2p.network_params import NetworkParams
from repp2p.records import (
    Claim,
    EngineOffer,
    Feedback,
    Heartbeat,
    NodeAd,
    Receipt,
    TaskOffer,
    receipt_message,
    sign,
    task_id_for,
)
from repp2p.reputation import AttestedNode
from repp2p.testing.factories import enclave_key, identity
from repp2p.viewer import before_epoch

try:  # this checkout's admission checks; an older one has none (the "before" figure)
    from repp2p.matching import Assignments
except ImportError:  # pragma: no cover - only against an older checkout
    Assignments = None  # type: ignore[assignment,misc]

N_NODES, N_CLIENTS, PER_EPOCH, EPOCHS = 50, 5, 300, 10
PARAMS = NetworkParams(name="bench", epoch_s=60, reputation_source="records")  # views of records
FAR = 2**40
M = hashlib.sha256(b"echo").digest()


def _d(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def build_records():
    nodes = [identity(f"node-{i}") for i in range(N_NODES)]
    clients = [identity(f"client-{i}") for i in range(N_CLIENTS)]
    records, attested = [], {}
    for n in nodes:
        ad = NodeAd(
            addrs=("/ip4/127.0.0.1/tcp/4001",),
            engines=(EngineOffer("echo", M),),
            tee_kind="nitro",
            price=1000,
            capacity=64,
            throughput=1000,
            seq=1,
            expires=FAR,
        )
        records.append(sign(ad, n))
        records += [
            sign(Heartbeat(epoch=e, load=0, tasks_done=0, seq=1, expires=FAR), n)
            for e in range(EPOCHS + 2)
        ]
        key = bytes(enclave_key(n.peer_id).verify_key)
        attested[n.peer_id] = AttestedNode(n.peer_id, "nitro", frozenset({M}), True, result_key=key)
    by_peer = {n.peer_id: n for n in nodes}
    views: dict[int, View] = {}
    for e in range(1, EPOCHS + 1):
        view = View.build(before_epoch(records, e, PARAMS), attested, epoch=e, params=PARAMS)
        views[e] = view
        for t in range(PER_EPOCH):
            client = clients[t % N_CLIENTS]
            offer = sign(
                TaskOffer(
                    task_id=task_id_for(client.public_key, _d(f"rk/{e}/{t}")),
                    engine_id="echo",
                    epoch=e,
                    tee_kinds=(),
                    min_reputation=0,
                    max_price=10**9,
                    redundancy=1,
                    deadline_ms=(e * 60 + 30) * 1000,
                    input_digest=_d(f"in/{e}/{t}"),
                    input_size=10,
                    result_key=_d(f"rk/{e}/{t}"),
                    seq=1,
                    expires=FAR,
                ),
                client,
            )
            node = by_peer[view.rank(offer.record, beacon(e), limit=1)[0]]
            o = offer.record
            claim = Claim(
                task_id=o.task_id,
                offer_id=offer.record_id,
                rank=0,
                epoch=e,
                view_digest=view.digest,
                seq=1,
                expires=FAR,
            )
            ekey = enclave_key(node.peer_id)
            rc = Receipt(
                task_id=o.task_id,
                offer_id=offer.record_id,
                engine_id="echo",
                measurement=M,
                input_digest=o.input_digest,
                output_digest=_d("out"),
                started_ms=e * 60_000,
                finished_ms=e * 60_000 + 100,
                result_key=bytes(ekey.verify_key),
                enclave_sig=bytes(64),
                seq=1,
                expires=FAR,
            )
            rc = dataclasses.replace(rc, enclave_sig=ekey.sign(receipt_message(rc)).signature)
            fb = Feedback(
                task_id=o.task_id,
                node=node.peer_id,
                outcome="ok",
                latency_ms=100,
                rating=90,
                seq=1,
                expires=FAR,
            )
            records += [offer, sign(claim, node), sign(rc, node), sign(fb, client)]
    return records, attested, views


def main() -> None:
    t0 = time.perf_counter()
    records, attested, held = build_records()
    t1 = time.perf_counter()
    n_task = sum(1 for r in records if r.type in ("TaskOffer", "Claim", "Receipt", "Feedback"))
    last = EPOCHS + 1  # reads every task record of epochs <= EPOCHS - 1

    def build(epoch: int, assignments) -> tuple[View, float]:
        kw = {} if Assignments is None else {"assignments": assignments}
        start = time.perf_counter()
        v = View.build(
            before_epoch(records, epoch, PARAMS), attested, epoch=epoch, params=PARAMS, **kw
        )
        return v, time.perf_counter() - start

    if Assignments is not None:
        a = Assignments()
        ranks = a.for_views(held.get)
        _, cold = build(last - 1, ranks)
        warm_view, warm = build(last, ranks)
        warm = min(warm, *(build(last, ranks)[1] for _ in range(2)))  # caches stay warm
        base = min(build(last, None)[1] for _ in range(3))
        claims = len(warm_view.evidence.claim_node)
        # a restarted keeper: no view held, every offer epoch's view rebuilt first
        fresh, rebuilt = Assignments(), {}

        def view_of(e: int) -> View:
            if e not in rebuilt:
                rebuilt[e] = build(e, fresh.for_views(view_of))[0]
            return rebuilt[e]

        start = time.perf_counter()
        build(last, fresh.for_views(view_of))
        restart = time.perf_counter() - start
    else:
        cold = warm = restart = None
        base = min(build(last, None)[1] for _ in range(3))
        claims = None
    print(f"machine: {platform.machine()} python {platform.python_version()}")
    print(f"inputs: {N_NODES} nodes, {n_task:,} per-task records (built in {t1 - t0:.1f} s)")
    if cold is not None:
        print(f"first build (rank + verify all): {cold:.3f} s")
        print(f"next epoch (caches warm):        {warm:.3f} s  claims counted {claims:,}")
        print(f"after a restart (views rebuilt): {restart:.3f} s")
    print(f"build without admission checks:  {base:.3f} s (baseline)")
    print(
        json.dumps(
            {
                "bench": "evidence",
                "cold_s": None if cold is None else round(cold, 3),
                "warm_s": None if warm is None else round(warm, 3),
                "restart_s": None if restart is None else round(restart, 3),
                "task_records": n_task,
                "nodes": N_NODES,
                "baseline": round(base, 3),
                "ratio": None if warm is None else round(warm / base, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
