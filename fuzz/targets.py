"""Fuzz targets: every parser that reads bytes a peer, a client, the node or a file controls.

A target is a function of one byte string that feeds it to one real parser of repp2p (no
copy of its logic) and returns whether the input was *accepted*. The only exceptions it may
let out are the typed rejections that parser documents (``expected``); anything else, and
any input that runs longer than the campaign's time limit, is a finding. Each target also
carries a seed corpus of inputs the parser accepts, so a fuzzer starts from the valid
shapes and mutates inwards (and the smoke test can check that a target is not vacuous: its
seeds must be accepted).

Targets touch no network and write only to temporary files they remove; the attestation
targets read the shared real-hardware vectors in place (``REPP2P_VECTORS``) and fall back
to a seed of the simulated TEE when the folder is absent.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2

from repp2p.errors import (
    AttestationError,
    ConfigError,
    ProofError,
    ProtocolError,
    RecordError,
    ReppError,
    StoreError,
)

REPO = Path(__file__).resolve().parents[1]
#: the real-hardware evidence, read in place (never copied into the project)
VECTORS = Path(os.environ.get("REPP2P_VECTORS", REPO.parent / "shared" / "attestation-vectors"))
#: verification time of the fuzz clock for records (inside the factories' validity window)
NOW = 1_700_000_000


@dataclasses.dataclass(frozen=True)
class Target:
    """One fuzz target.

    Attributes:
        name: stable name (``make fuzz TARGET=...``, crash file names).
        run: feeds one input to the parser; True when it was accepted.
        expected: the exception types the parser may raise on hostile input.
        seeds: builds the seed corpus (inputs the parser accepts).
        max_len: the longest input worth generating (larger is cut by the engines).
    """

    name: str
    run: Callable[[bytes], bool]
    expected: tuple[type[BaseException], ...]
    seeds: Callable[[], list[bytes]]
    max_len: int = 4096


# -- records and digests ---------------------------------------------------------------


@functools.cache
def _signed_samples() -> tuple[bytes, ...]:
    from repp2p.records import encode
    from repp2p.testing.factories import identity, sample_digests, sample_records

    signer = identity("fuzz")
    return tuple(encode(r, signer) for r in [*sample_records(), *sample_digests()])


def _record(data: bytes) -> bool:
    from repp2p.records import decode

    decode(data, now=NOW)
    return True


def _proof_seeds() -> list[bytes]:
    from repp2p.digests.proofs import conflict_proof
    from repp2p.records import decode, encode
    from repp2p.testing.factories import identity, sample_digests

    signer = identity("fuzz")
    work = sample_digests()[0]
    a = decode(encode(work, signer))
    b = decode(encode(dataclasses.replace(work, merkle_root=b"\x11" * 32), signer))
    proof = conflict_proof(a, b)
    return [cbor2.dumps({"kind": proof.KIND, "a": proof.a, "b": proof.b}, canonical=True)]


def _proof(data: bytes) -> bool:
    from repp2p.digests.proofs import verify_bytes

    verify_bytes(data, NOW)
    return True


def _audit_response(data: bytes) -> bool:
    from repp2p.digests.audit import AuditResponse

    AuditResponse.decode(data)
    return True


def _audit_seeds() -> list[bytes]:
    from repp2p.digests.audit import AuditResponse
    from repp2p.digests.merkle import MerkleTree

    leaves = [b"leaf-%d" % i for i in range(5)]
    tree = MerkleTree(leaves, key_of=lambda leaf: leaf)
    response = AuditResponse(
        digest_id=b"\x07" * 32,
        opening=tree.opening(2),
        records=(_signed_samples()[3],),
        successor=tree.opening(3),
    )
    return [response.encode()]


# -- stream frames -----------------------------------------------------------------------


class _BytesStream:
    """A stream whose reads return ``data`` in chunks of ``chunk`` bytes, then EOF."""

    def __init__(self, data: bytes, chunk: int = 977) -> None:
        self._data = data
        self._chunk = chunk
        self.written = bytearray()

    async def read(self, n: int = -1) -> bytes:
        size = self._chunk if n < 0 else min(n, self._chunk)
        out, self._data = self._data[:size], self._data[size:]
        return out

    async def write(self, data: bytes) -> None:
        self.written += data

    async def close(self) -> None:
        pass


def _drive(coro: Any) -> Any:
    """Run a coroutine that never really suspends (our in-memory stream never blocks)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("the parser suspended on an in-memory stream")


def _frame(obj: Any) -> bytes:
    from repp2p.net.framing import encode_varint

    body = cbor2.dumps(obj, canonical=True)
    return encode_varint(len(body)) + body


def _frames(data: bytes) -> bool:
    """Every frame of ``data`` through FrameReader, then every request and response
    parser of the task, sync and feed protocols (each frame is offered to each)."""
    from repp2p.net import feed, sync, task
    from repp2p.net.framing import FrameReader

    reader = FrameReader(_BytesStream(data), max_frame=64 * 1024)
    accepted = False
    for _ in range(64):
        obj = _drive(reader.read_cbor())
        if obj is None:
            break
        for parse in (
            task.parse_request,
            task.parse_handover,
            task.parse_response,
            functools.partial(task.parse_response, handover=True),
            sync._request_ok,
            feed._request_ok,
        ):
            try:
                parse(obj)
                accepted = True
            except ProtocolError:
                pass
    return accepted


def _frame_seeds() -> list[bytes]:
    offer, claim, receipt = _signed_samples()[3:6]
    return [
        _frame({"offer": offer, "sealed": b"\x00" * 48}),
        _frame({"offer": offer, "sealed": b"\x00" * 48, "input_sig": b"\x01" * 64}),
        _frame({"ok": False, "error": "input_refused", "detail": "", "refusal": receipt}),
        _frame({"records": [claim]}),
        _frame({"ok": True, "claim": claim, "receipt": receipt, "output": b"x"}),
        _frame({"ok": False, "error": "no_capacity", "detail": ""})
        + _frame({"ok": True, "stored": 1}),
        _frame({"after": b"", "limit": 64}) + _frame({"after": -1, "limit": 8, "back": True}),
    ]


# -- dispute replica requests (the node's admission of a replica) ------------------------

#: the fuzz clock in ms for task admission, and the network's epoch length for it
_TASK_NOW_MS = NOW * 1000 + 3250
_TASK_EPOCH_S = 10
#: the replica target's escalation ranking; the node admitting the request is the fifth
_DISPUTE_NODES = tuple(f"dispute-node-{i}" for i in range(6))


@functools.cache
def _dispute_identities() -> tuple[Any, ...]:
    from repp2p.testing.factories import identity

    return tuple(identity(name) for name in _DISPUTE_NODES)


@functools.cache
def _dispute_result_keys() -> dict[str, bytes]:
    from repp2p.testing.factories import enclave_key

    return {i.peer_id: bytes(enclave_key(i.peer_id).verify_key) for i in _dispute_identities()}


def _replica_request(data: bytes) -> bool:
    """One framed task request through the node's replica admission, as
    ``repp2p.node.serving`` runs it: the request's shape (``dispute``, ``verdict``,
    ``claims``, ``releases``, offer and sealed input), then ``check_offer``,
    ``check_fresh``, ``may_be_replica``, ``check_dispute`` (the carried receipts, against
    the attested enclave keys of the target's nodes; ``contested`` with a verdict), for a
    k = 1 request ``check_verdict``, ``check_verdict_lifetime`` (``window_epochs`` 168,
    ``dispute_lag`` 5) and ``check_verdict_claims``, the handed releases
    (``releases_in``) and ``replica_rank`` for the fifth node of the ranking
    (``dispute_max_replicas`` 2). The client's credibility, read from the node's view and
    no part of the request, is not checked. Accepted: the request would make that node run
    a replica."""
    from repp2p import tasks
    from repp2p.net.framing import FrameReader
    from repp2p.node.serving import _parse, _pop_claims, _pop_dispute, _pop_verdict

    obj = _drive(FrameReader(_BytesStream(data), max_frame=64 * 1024).read_cbor())
    if obj is None:
        return False
    request, dispute = _pop_dispute(obj)
    request, verdict = _pop_verdict(request, dispute)
    request, claims = _pop_claims(request, dispute)
    offer_data, _sealed, releases = _parse(request)
    if dispute is None:
        return False
    offer = tasks.check_offer(offer_data, now_ms=_TASK_NOW_MS)
    if isinstance(offer, tasks.Reject):
        return False
    stale = tasks.check_fresh(
        offer.record,  # type: ignore[arg-type]
        claimed_before=False,
        now_ms=_TASK_NOW_MS,
        epoch_s=_TASK_EPOCH_S,
    )
    if stale is not None:
        return False
    keys = _dispute_result_keys()
    ranking = [i.peer_id for i in _dispute_identities()]
    if tasks.may_be_replica(ranking, ranking[4]) is not None:
        return False
    receipts = tasks.check_dispute(
        dispute,
        offer,
        now_ms=_TASK_NOW_MS,
        may_have_run=set(ranking),
        result_key_of=keys.get,
        contested=verdict is not None,
    )
    if isinstance(receipts, tasks.Reject):
        return False
    if verdict is not None:
        judged = tasks.check_verdict(verdict, offer, receipts, now_ms=_TASK_NOW_MS)
        if isinstance(judged, tasks.Reject):
            return False
        short = tasks.check_verdict_lifetime(
            offer, judged, epoch_s=_TASK_EPOCH_S, window_epochs=168, dispute_lag=5
        )
        if short is not None:
            return False
        carried = tasks.check_verdict_claims(claims or [], offer, receipts, now_ms=_TASK_NOW_MS)
        if isinstance(carried, tasks.Reject):
            return False
    handed = tasks.releases_in(releases, offer, now_ms=_TASK_NOW_MS)
    ran = {r.signer for r in receipts}
    released = tasks.released_claimants(handed, offer)
    rank = tasks.replica_rank(ranking, ranking[4], ran, 2, released=released)
    return not isinstance(rank, tasks.Reject)


def _dispute_offer(redundancy: int, *, epochs_back: int = 0, deadline_ms: int = 0) -> Any:
    """The disputed task's signed offer (the dispute client's, of the fuzz clock's epoch or
    ``epochs_back`` before it; its deadline a minute on, or ``deadline_ms``)."""
    from repp2p.records import TaskOffer, sign, task_id_for
    from repp2p.testing.factories import digest, identity

    client = identity("dispute-client")
    result_key = digest(f"dispute-result-key-{redundancy}-{epochs_back}-{deadline_ms}")
    return sign(
        TaskOffer(
            task_id=task_id_for(client.public_key, result_key),
            engine_id="echo",
            epoch=_TASK_NOW_MS // 1000 // _TASK_EPOCH_S - epochs_back,
            tee_kinds=(),
            min_reputation=0,
            max_price=2**63,
            redundancy=redundancy,
            deadline_ms=deadline_ms or _TASK_NOW_MS + 60_000,
            input_digest=digest("input"),
            input_size=5,
            result_key=result_key,
            seq=1,
            expires=NOW + 7200,
        ),
        client,
    )


def _dispute_run(
    offer: Any,
    node: Any,
    output: str,
    *,
    claim_epoch_delta: int = 0,
    key: Any = None,
    enclave_sig: bytes | None = None,
) -> tuple[Any, Any]:
    """``node``'s claim and enclave-signed receipt on ``offer``, returning ``output`` (the
    claim of another epoch, the receipt signed by another ``key`` or with ``enclave_sig``:
    forgeries)."""
    from repp2p.records import Claim, Receipt, receipt_message, sign
    from repp2p.testing.factories import digest, enclave_key

    o = offer.record
    claim = sign(
        Claim(
            task_id=o.task_id,
            offer_id=offer.record_id,
            rank=0,
            epoch=o.epoch + claim_epoch_delta,
            view_digest=digest("view"),
            seq=1,
            expires=o.expires,
        ),
        node,
    )
    key = key or enclave_key(node.peer_id)
    unsigned = Receipt(
        task_id=o.task_id,
        offer_id=offer.record_id,
        engine_id="echo",
        measurement=digest("echo"),
        input_digest=o.input_digest,
        output_digest=digest(output),
        started_ms=_TASK_NOW_MS - 500,
        finished_ms=_TASK_NOW_MS - 490,
        result_key=bytes(key.verify_key),
        enclave_sig=bytes(64),
        seq=1,
        expires=o.expires,
    )
    sig = enclave_sig if enclave_sig is not None else key.sign(receipt_message(unsigned)).signature
    return claim, sign(dataclasses.replace(unsigned, enclave_sig=sig), node)


def _dispute_verdict(offer: Any, node: Any) -> Any:
    """The offer owner's signed ``wrong`` verdict on ``node`` (k = 1)."""
    from repp2p.records import Feedback, sign
    from repp2p.testing.factories import identity

    o = offer.record
    fb = Feedback(
        task_id=o.task_id,
        node=node.peer_id,
        outcome="wrong",
        latency_ms=1,
        rating=0,
        seq=1,
        expires=o.expires,
    )
    return sign(fb, identity("dispute-client"))


def _replica_seeds() -> list[bytes]:
    offer = _dispute_offer(3)
    n = _dispute_identities()
    first = [_dispute_run(offer, n[i], out)[1].data for i, out in enumerate(("r", "r", "w"))]
    sealed = b"\x00" * 48
    return [
        # the first round's three receipts: nodes 3 and 4 are the replicas
        _frame({"offer": offer.data, "sealed": sealed, "dispute": first}),
        # with the first replica's receipt: the window moves on to nodes 4 and 5
        _frame(
            {
                "offer": offer.data,
                "sealed": sealed,
                "dispute": [*first, _dispute_run(offer, n[3], "r")[1].data],
                "releases": [],
            }
        ),
    ]


def _replica_verdict_seeds() -> list[bytes]:
    """k = 1 replica requests: the client's verdict on node 0, and the claims and receipts
    of node 0 and the replicas so far (which may all agree)."""
    offer = _dispute_offer(1)
    n = _dispute_identities()
    verdict = _dispute_verdict(offer, n[0]).data
    sealed = b"\x00" * 48
    seeds = []
    for outputs in (("w", "r", "r"), ("r", "r", "r"), ("w", "r", "r", "r")):
        runs = [_dispute_run(offer, n[i], out) for i, out in enumerate(outputs)]
        request = {
            "offer": offer.data,
            "sealed": sealed,
            "dispute": [r.data for _c, r in runs],
            "verdict": verdict,
            "claims": [c.data for c, _r in runs],
        }
        if len(outputs) == 4:
            release = _dispute_verdict(offer, n[3])  # a wrong verdict releases nobody
            request["releases"] = [release.data]
        seeds.append(_frame(request))
    return seeds


def _dispute_proof(data: bytes) -> bool:
    """A dispute proof from the ``proofs`` topic through ``decode_dispute`` and
    ``check_dispute_proof`` as a peer checks one on arrival: every rule, with the
    attestation verdicts and ranks of the target's nodes and the timing of a 10-s epoch
    network (``dispute_lag`` 5, ``window_epochs`` 168)."""
    from repp2p.digests.disputes import DisputeTiming, check_dispute_proof, decode_dispute

    epoch = _TASK_NOW_MS // 1000 // _TASK_EPOCH_S
    verdicts = _dispute_attested()
    ranks = {i.peer_id: frozenset({r}) for r, i in enumerate(_dispute_identities())}
    check_dispute_proof(
        decode_dispute(data),
        now=NOW,
        epochs=(epoch - 4, epoch),
        verdict_of=lambda peer, _epoch: verdicts.get(peer),
        # the checker holds no view of earlier epochs: it cannot rank their offers
        ranks_of=lambda offer: ranks if offer.record.epoch == epoch else None,
        timing=DisputeTiming(_TASK_EPOCH_S, 5, window_epochs=168),
    )
    return True


@functools.cache
def _dispute_attested() -> dict[str, Any]:
    """The attestation verdicts of the dispute nodes and the outsider (attested, never
    ranked)."""
    from repp2p.reputation import AttestedNode
    from repp2p.testing.factories import enclave_key, identity

    outsider = identity("dispute-outsider").peer_id
    keys = {**_dispute_result_keys(), outsider: bytes(enclave_key(outsider).verify_key)}
    return {
        peer: AttestedNode(
            peer_id=peer,
            tee_kind="simulated",
            measurements=frozenset(),
            verified=True,
            attested_at=NOW,
            result_key=key,
        )
        for peer, key in keys.items()
    }


def _dispute_proof_seeds() -> list[bytes]:
    from repp2p.digests.disputes import dispute_proof

    n = _dispute_identities()
    k3 = _dispute_offer(3)
    k1 = _dispute_offer(1)
    plain = dispute_proof(k3, [_dispute_run(k3, n[i], o) for i, o in enumerate("rrw")])
    agreeing = [_dispute_run(k1, n[i], "r") for i in range(3)]
    contested = dispute_proof(k1, agreeing, _dispute_verdict(k1, n[0]))
    return [plain.encode(), contested.encode()]


# -- the same, structure-aware: valid envelopes put where they do not belong -------------
#
# A byte mutator cannot sign, so on the targets above nearly every mutant fails at its
# first record signature and the rules after it (a verdict on another node, claims out of
# order, a receipt of an unranked node...) are never reached. These targets read their
# input as choices from a pool of *validly signed* envelopes (offers, claims, receipts and
# verdicts of the dispute nodes, an outsider and a stranger client, on several tasks) and
# build the request or proof from them: every rule is one choice away.


@functools.cache
def _envelope_pool() -> tuple[tuple[str, bytes], ...]:
    """``(name, envelope)``: what the mix targets choose from (at most 256)."""
    from repp2p.records import sign
    from repp2p.testing.factories import enclave_key, identity

    n = _dispute_identities()
    outsider, stranger = identity("dispute-outsider"), identity("dispute-stranger")
    k1, k3 = _dispute_offer(1), _dispute_offer(3)
    # an offer of an earlier epoch the proof checker has no ranking of; one out of its
    # window, one of the next epoch, one whose dispute closed (deadline in its own epoch)
    prev = _dispute_offer(1, epochs_back=2)
    start_ms = (_TASK_NOW_MS // 1000 // _TASK_EPOCH_S - 2) * _TASK_EPOCH_S * 1000
    pool: list[tuple[str, bytes]] = [
        ("k1", k1.data),
        ("k3", k3.data),
        ("prev", prev.data),
        ("old", _dispute_offer(1, epochs_back=10).data),
        ("new", _dispute_offer(1, epochs_back=-1).data),
        ("closed", _dispute_offer(1, epochs_back=2, deadline_ms=start_ms + 1000).data),
    ]
    for tag, offer in (("k1", k1), ("k3", k3), ("prev", prev)):
        for i, node in enumerate([*n, outsider]):
            claim, right = _dispute_run(offer, node, "r")
            pool += [(f"{tag}-claim-{i}", claim.data), (f"{tag}-right-{i}", right.data)]
            pool.append((f"{tag}-wrong-{i}", _dispute_run(offer, node, "w")[1].data))
        for i in (0, 1, 6):
            pool.append((f"{tag}-verdict-{i}", _dispute_verdict(offer, [*n, outsider][i]).data))
        ok = dataclasses.replace(_dispute_verdict(offer, n[0]).record, outcome="ok")
        pool.append((f"{tag}-ok-0", sign(ok, identity("dispute-client")).data))
        forged = _dispute_verdict(offer, n[0]).record
        pool.append((f"{tag}-forged-0", sign(forged, stranger).data))
    late = _dispute_run(k1, n[1], "r", claim_epoch_delta=1)[0]
    other_key = _dispute_run(k1, n[2], "r", key=enclave_key("somebody else"))[1]
    unsigned = _dispute_run(k1, n[3], "r", enclave_sig=bytes(64))[1]
    release = _dispute_verdict(k1, n[1]).record
    release = sign(dataclasses.replace(release, outcome="timeout"), identity("dispute-client"))
    other_task = dataclasses.replace(_dispute_verdict(k1, n[0]).record, task_id=b"\x05" * 32)
    pool += [
        ("k1-claim-late-1", late.data),
        ("k1-right-otherkey-2", other_key.data),
        ("k1-right-unsigned-3", unsigned.data),
        ("k1-release-1", release.data),
        ("k1-verdict-othertask", sign(other_task, identity("dispute-client")).data),
        ("feedback-of-stranger", sign(other_task, stranger).data),
        ("empty", b""),
        ("junk", b"\x00junk"),
        ("oversize", b"\xa0" * 2048),
    ]
    assert len(pool) <= 256  # one choice byte picks any
    return tuple(pool)


@functools.cache
def _pool_index() -> dict[str, int]:
    return {name: i for i, (name, _data) in enumerate(_envelope_pool())}


class _Choices:
    """Reads an input as choices: bytes, then 0 (the input is used up)."""

    def __init__(self, data: bytes) -> None:
        self._data, self._at = data, 0

    def byte(self) -> int:
        b = self._data[self._at] if self._at < len(self._data) else 0
        self._at += 1
        return b

    def envelope(self) -> bytes:
        pool = _envelope_pool()
        return pool[self.byte() % len(pool)][1]

    def envelopes(self) -> list[bytes]:
        return [self.envelope() for _ in range(self.byte() % 8)]


def _choose(*names: str | list[str]) -> bytes:
    """The choices that pick ``names`` (a list: a counted list of them)."""
    index = _pool_index()
    out = bytearray()
    for name in names:
        if isinstance(name, list):
            out += bytes([len(name), *(index[x] for x in name)])
        else:
            out.append(index[name])
    return bytes(out)


def _replica_mix(data: bytes) -> bool:
    """A replica request built from choices (flags: verdict, claims, releases, no
    receipts, a null verdict; the offer; the receipts; the verdict; the claims; the
    releases) through the replica admission of ``replica-request``."""
    c = _Choices(data)
    flags = c.byte()
    request: dict[str, Any] = {"offer": c.envelope(), "sealed": b"\x00" * 48}
    if not flags & 8:  # a verdict or claims without receipts are malformed
        request["dispute"] = c.envelopes()
    if flags & 1:
        request["verdict"] = None if flags & 16 else c.envelope()
    if flags & 2:
        request["claims"] = c.envelopes()
    if flags & 4:
        request["releases"] = c.envelopes()
    return _replica_request(_frame(request))


def _replica_mix_seeds() -> list[bytes]:
    runs = [f"k1-right-{i}" for i in range(3)]
    claims = [f"k1-claim-{i}" for i in range(3)]
    return [
        b"\x03" + _choose("k1", runs, "k1-verdict-0", claims),
        b"\x07" + _choose("k1", ["k1-wrong-0", *runs[1:]], "k1-verdict-0", claims, []),
        b"\x00" + _choose("k3", ["k3-right-0", "k3-right-1", "k3-wrong-2"]),
    ]


def _dispute_mix(data: bytes) -> bool:
    """A dispute proof built from choices (flags: verdict, a null verdict, a number for
    the offer; the offer; the claims; the receipts; the verdict), canonical CBOR, through
    ``dispute-proof``."""
    c = _Choices(data)
    flags = c.byte()
    proof: dict[str, Any] = {"kind": "dispute", "offer": 7 if flags & 4 else c.envelope()}
    proof["claims"] = c.envelopes()
    proof["receipts"] = c.envelopes()
    if flags & 1:
        proof["verdict"] = None if flags & 2 else c.envelope()
    return _dispute_proof(cbor2.dumps(proof, canonical=True))


def _dispute_mix_seeds() -> list[bytes]:
    from repp2p.records import decode

    def sorted_runs(tag: str, outputs: str) -> tuple[list[str], list[str]]:
        # a proof lists its runs sorted by node (repp2p.digests.disputes.dispute_proof)
        signer = {
            i: decode(_envelope_pool()[_pool_index()[f"{tag}-claim-{i}"]][1]).signer
            for i in range(len(outputs))
        }
        order = sorted(range(len(outputs)), key=signer.__getitem__)
        kinds = {"r": "right", "w": "wrong"}
        return (
            [f"{tag}-claim-{i}" for i in order],
            [f"{tag}-{kinds[outputs[i]]}-{i}" for i in order],
        )

    k3_claims, k3_receipts = sorted_runs("k3", "rrw")
    k1_claims, k1_receipts = sorted_runs("k1", "rrr")
    return [
        b"\x00" + _choose("k3", k3_claims, k3_receipts),
        b"\x01" + _choose("k1", k1_claims, k1_receipts, "k1-verdict-0"),
    ]


def _sync_pull(data: bytes) -> bool:
    """The sync client (``repp2p.net.sync.pull``) against a peer that answers ``data``."""
    import trio

    from repp2p.net import sync
    from repp2p.net.params import SyncParams
    from repp2p.records import decode

    def accept(record: bytes) -> bool:
        try:
            decode(record, now=NOW)
        except RecordError:
            return False
        return True

    async def main() -> sync.SyncResult:
        return await sync.pull(_BytesStream(data), accept, SyncParams())

    return trio.run(main).complete


def _sync_seeds() -> list[bytes]:
    import hashlib

    # in record-ID order, each page's IDs at most its ``next``: what an honest server
    # sends (the client refuses any other page before judging a record)
    records = sorted(_signed_samples(), key=lambda r: hashlib.sha256(r).digest())
    return [
        _frame({"records": records[:4], "next": hashlib.sha256(records[3]).digest()})
        + _frame({"records": records[4:], "next": None}),
        _frame({"records": [], "next": None}),
    ]


# -- the enclave wire --------------------------------------------------------------------


@functools.cache
def _enclave() -> Any:
    from repp2p.tee.worker import EnclaveState

    return EnclaveState.create({"seed": b"\x03" * 32, "engines": ["echo"], "preload": True})


def _enclave_wire(data: bytes) -> bool:
    """A frame from the (untrusted) node through the enclave's wire reader and request
    handlers: what ``repp2p.tee.worker.serve`` runs, minus the reply."""
    from repp2p.tee.wire import WireClosed, read_frame

    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, data[:60_000])  # below the pipe buffer: the write never blocks
        os.close(write_fd)
        write_fd = -1
        request = read_frame(read_fd, timeout_s=1.0)
    except WireClosed:
        return False
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    state = _enclave()
    op = request.get("op")
    if op == "attest":
        state.attest(request)
    elif op == "execute":
        state.execute(request)
    else:
        return False
    return True


def _enclave_seeds() -> list[bytes]:
    from repp2p.tee.sealing import seal_input, task_digest
    from repp2p.tee.wire import encode_frame

    state = _enclave()
    task_id = b"\x09" * 32
    sealed, secret = seal_input(b"hello", bytes(state.enc_key.public_key), task_id=task_id)
    execute = {
        "op": "execute",
        "task_id": task_id,
        "offer_id": b"\x08" * 32,
        "engine_id": "echo",
        "input_digest": task_digest(secret.salt, b"hello"),
        "client_key": secret.public_key,
        "sealed": sealed,
        "started_ms": 1,
        "expires": NOW + 3600,
        "seq": 1,
        "input_size": 5,
    }
    attest = {"op": "attest", "peer_id": "p", "epoch": 3, "nonce": b"\x01" * 32, "now": NOW}
    return [encode_frame(execute), encode_frame(attest), encode_frame(_signed_execute(state))]


def _signed_execute(state: Any) -> dict:
    """An execute request with the client's signed offer and input signature: the
    commitment checks, and (for mutated sealed bytes) the path on which the enclave signs
    a Refusal."""
    from repp2p.records import TaskOffer, encode, sign_sealed_input, task_id_for
    from repp2p.tee.sealing import TaskSecret, seal_input
    from repp2p.testing.factories import identity

    client, node = identity("fuzz-client"), identity("fuzz-node")
    secret = TaskSecret.from_seed(b"\x05" * 32)
    offer = TaskOffer(
        task_id=task_id_for(client.public_key, secret.public_key),
        engine_id="echo",
        epoch=7,
        tee_kinds=(),
        min_reputation=0,
        max_price=1,
        redundancy=1,
        deadline_ms=(NOW + 600) * 1000,
        input_digest=secret.digest(b"hello"),
        input_size=5,
        result_key=secret.public_key,
        seq=1,
        expires=NOW + 3600,
    )
    data = encode(offer, client)
    enc_key = bytes(state.enc_key.public_key)
    sealed, _ = seal_input(b"hello", enc_key, task_id=offer.task_id, secret=secret)
    return {
        "op": "execute",
        "task_id": offer.task_id,
        "offer_id": hashlib.sha256(data).digest(),
        "engine_id": "echo",
        "input_digest": offer.input_digest,
        "client_key": offer.result_key,
        "sealed": sealed,
        "started_ms": 1,
        "expires": NOW + 3600,
        "seq": 1,
        "input_size": 5,
        "offer": data,
        "node": node.peer_id,
        "input_sig": sign_sealed_input(
            client,
            task_id=offer.task_id,
            node=node.peer_id,
            enc_key=enc_key,
            sealed=sealed,
        ),
    }


# -- files an operator or researcher writes ------------------------------------------------


def _via_file(load: Callable[[Path], Any], data: bytes, suffix: str = ".toml") -> bool:
    """Write ``data`` to a fresh temporary file and load it the way the CLI does."""
    with tempfile.TemporaryDirectory(prefix="repp2p-fuzz-") as tmp:
        path = Path(tmp) / f"input{suffix}"
        path.write_bytes(data)
        load(path)
    return True


def _node_config(data: bytes) -> bool:
    from repp2p.config import load_node_config

    return _via_file(load_node_config, data)


def _policy(data: bytes) -> bool:
    from repp2p.attestation.policy import load_policy

    return _via_file(load_policy, data)


def _scenario(data: bytes) -> bool:
    from repp2p.sim.scenario import load_scenario

    return _via_file(load_scenario, data)


def _network_params(data: bytes) -> bool:
    from repp2p.network_params import NetworkParams

    return _via_file(lambda path: NetworkParams.load("fuzz", path), data)


def _files(*patterns: str) -> Callable[[], list[bytes]]:
    def seeds() -> list[bytes]:
        return [p.read_bytes() for pattern in patterns for p in sorted(REPO.glob(pattern))]

    return seeds


def _node_config_seeds() -> list[bytes]:
    return [
        b'network = "dev"\ndata_dir = "./data/node1"\n',
        b"""network = "dev"
data_dir = "./data/node1"
listen = ["/ip4/0.0.0.0/tcp/4001"]
engines = ["echo"]
tee_kind = "simulated"
price = 1000
capacity = 4
status_listen = "127.0.0.1:9464"
[gossip]
degree = 6
[sync]
page_records = 256
[feed]
interval_s = 0.5
[connections]
low_watermark = 8
[timers]
attempt_budget_s = 30
""",
    ]


# -- attestation evidence ----------------------------------------------------------------


def _ts(iso: str) -> int:
    return int(datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


#: kind -> (evidence file, collateral file, verification time from the vectors' SOURCES.md)
_VECTOR_FILES = {
    "nitro": ("nitro/valid-attestation-doc-bytes", None, "2022-10-13T08:58:30Z"),
    "sev-snp": ("sev-snp/attestation.bin", "sev-snp/vcek.testcer", "2023-01-01T00:00:00Z"),
    "dcap": ("tdx-sgx/sgx_quote", "tdx-sgx/sgx_quote_collateral.json", "2025-06-20T00:00:00Z"),
    "nvidia": (
        "nvidia-h100/hopperAttestationReport.txt",
        "nvidia-h100/hopperCertChain.txt",
        "2025-01-01T00:00:00Z",
    ),
}


def _split(data: bytes) -> tuple[bytes, bytes]:
    """Input = 3-byte big-endian evidence length, evidence, collateral."""
    n = int.from_bytes(data[:3], "big")
    return data[3 : 3 + n], data[3 + n :]


def _join(evidence: bytes, collateral: bytes) -> bytes:
    return len(evidence).to_bytes(3, "big") + evidence + collateral


def _attestation(kind: str) -> tuple[Callable[[bytes], bool], Callable[[], list[bytes]]]:
    from repp2p.attestation.verify import default_backends

    evidence_file, collateral_file, at = _VECTOR_FILES[kind]
    now = _ts(at)

    def run(data: bytes) -> bool:
        evidence, collateral = _split(data)
        default_backends()[kind].verify(evidence, collateral, now)
        return True

    def seeds() -> list[bytes]:
        path = VECTORS / evidence_file
        if not path.is_file():
            return []
        evidence = path.read_bytes()
        if kind == "nvidia":
            evidence = bytes.fromhex(evidence.decode().strip())
        collateral = (VECTORS / collateral_file).read_bytes() if collateral_file else b""
        return [_join(evidence, collateral)]

    return run, seeds


def _simulated_attestation(data: bytes) -> bool:
    from repp2p.attestation import SimulatedBackend

    evidence, collateral = _split(data)
    SimulatedBackend().verify(evidence, collateral, NOW)
    return True


def _simulated_seeds() -> list[bytes]:
    from repp2p.attestation import SimulatedEnclave

    evidence = SimulatedEnclave(seed=b"\x05" * 32, measurement=b"\xab" * 48).evidence(
        b"\x01" * 64, NOW
    )
    return [_join(evidence, b"")]


# -- the TEE kernel interfaces (what a host or a broken kernel hands the enclave) ------------

_TSM_DATA = b"\x5a" * 64


def _cert_table(data: bytes) -> bool:
    from repp2p.tee.snp_certs import parse_cert_table, vcek_collateral

    vcek_collateral(parse_cert_table(data))
    return True


def _cert_table_seeds() -> list[bytes]:
    from repp2p.tee.snp_certs import GUID_ARK, GUID_ASK, GUID_VCEK, build_cert_table

    return [build_cert_table({GUID_VCEK: b"vcek" * 40, GUID_ASK: b"ask" * 50, GUID_ARK: b"a"})]


def _tsm_report(data: bytes) -> bool:
    """Input = ``_join(outblob, auxblob)``, served by an in-memory configfs-tsm."""
    from repp2p.tee.configfs_tsm import ConfigfsTsm, TsmFiles
    from repp2p.tee.snp_guest import SnpGuest

    outblob, auxblob = _split(data)

    class Kernel(TsmFiles):
        generation = 0

        def mkdir(self, path: Path) -> None:
            pass

        def rmdir(self, path: Path) -> None:
            pass

        def write(self, path: Path, data: bytes) -> None:
            self.generation += 1

        def read(self, path: Path, limit: int) -> bytes:
            answers = {
                "provider": b"sev_guest\n",
                "generation": f"{self.generation}\n".encode(),
                "privlevel_floor": b"0\n",
                "outblob": outblob,
                "auxblob": auxblob,
            }
            if len(answers[path.name]) > limit:
                raise OSError(27, "too large")
            return answers[path.name]

    class Tsm(ConfigfsTsm):
        def check_available(self) -> None:
            pass  # nothing on disk: every file operation is Kernel's

    SnpGuest(Tsm("/nonexistent", files=Kernel(), retries=1)).evidence(_TSM_DATA)
    return True


def _tsm_seeds() -> list[bytes]:
    report = bytearray(0x4A0)
    report[0x50:0x90] = _TSM_DATA
    return [_join(bytes(report), table) for table in _cert_table_seeds()]


# -- a node's saved state (its data dir is input too) -----------------------------------


def _offer_ranks(data: bytes) -> bool:
    """The offer ranks a view keeper reads back after a restart (``offer-ranks.cbor``)."""
    from repp2p.matching import Assignments

    got = Assignments.from_bytes(data)
    assert Assignments.from_bytes(got.to_bytes())._cache == got._cache
    return True


def _offer_ranks_seeds() -> list[bytes]:
    from repp2p.matching import Assignments

    a = Assignments()
    a._cache[bytes(range(32))] = (7, {"peer-a": frozenset({1}), "peer-b": frozenset({0, 3})})
    a._cache[bytes(32)] = (5, {})
    return [Assignments().to_bytes(), a.to_bytes()]


def _penalty_book(data: bytes) -> bool:
    """The penalty book a view keeper reads back after a restart (``penalties.cbor``)."""
    from repp2p.reputation import PenaltyBook

    PenaltyBook.from_bytes(data)
    return True


def _penalty_book_seeds() -> list[bytes]:
    from repp2p.reputation import Offence, PenaltyBook, PenaltyEntry

    off = Offence("equivocation", "peer-a", (bytes(32), bytes(range(32))), 3)
    book = PenaltyBook(
        epoch=9,
        entries={
            "peer-a": PenaltyEntry(
                below_epochs=2, strikes=1, until_epoch=12, hard=True, evidence=(off,)
            )
        },
    )
    return [PenaltyBook().to_bytes(), book.to_bytes()]


def _targets() -> dict[str, Target]:
    targets = [
        Target("record", _record, (RecordError,), lambda: list(_signed_samples()), 8192),
        Target("digest-proof", _proof, (ProofError,), _proof_seeds, 8192),
        Target("audit-response", _audit_response, (ProofError,), _audit_seeds, 8192),
        Target("frames", _frames, (ProtocolError,), _frame_seeds, 8192),
        Target("sync-pull", _sync_pull, (ProtocolError,), _sync_seeds, 16384),
        Target("replica-request", _replica_request, (ProtocolError,), _replica_seeds, 16384),
        Target(
            "replica-verdict", _replica_request, (ProtocolError,), _replica_verdict_seeds, 16384
        ),
        Target("dispute-proof", _dispute_proof, (ProofError,), _dispute_proof_seeds, 16384),
        Target("replica-mix", _replica_mix, (ProtocolError,), _replica_mix_seeds, 64),
        Target("dispute-mix", _dispute_mix, (ProofError,), _dispute_mix_seeds, 64),
        Target("enclave-wire", _enclave_wire, (ReppError, *_wire_errors()), _enclave_seeds),
        Target("node-config", _node_config, (ConfigError,), _node_config_seeds),
        Target("offer-ranks", _offer_ranks, (StoreError,), _offer_ranks_seeds),
        Target("penalty-book", _penalty_book, (StoreError,), _penalty_book_seeds),
        Target("policy", _policy, (ConfigError,), _files("bootstrap/*policy*.toml")),
        Target("scenario", _scenario, (ConfigError,), _files("simulations/*.toml")),
        Target("network-params", _network_params, (ConfigError,), _files("bootstrap/dev.toml")),
        Target("snp-cert-table", _cert_table, _tee_errors(), _cert_table_seeds, 8192),
        Target("tsm-report", _tsm_report, _tee_errors(), _tsm_seeds, 8192),
        Target(
            "attestation-simulated",
            _simulated_attestation,
            (AttestationError,),
            _simulated_seeds,
        ),
    ]
    for kind in _VECTOR_FILES:
        run, seeds = _attestation(kind)
        targets.append(Target(f"attestation-{kind}", run, (AttestationError,), seeds, 65536))
    return {t.name: t for t in targets}


def _tee_errors() -> tuple[type[BaseException], ...]:
    from repp2p.tee.errors import TeeInterfaceError

    return (TeeInterfaceError,)


def _wire_errors() -> tuple[type[BaseException], ...]:
    from repp2p.tee.wire import WireClosed, WireMalformed, WireTimeout

    return (WireClosed, WireMalformed, WireTimeout)


@functools.cache
def targets() -> dict[str, Target]:
    """Every fuzz target by name."""
    return _targets()
