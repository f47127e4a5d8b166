"""Audits over ``/repp2p/audit/1`` between real py-libp2p hosts on 127.0.0.1: an honest
publisher passes, an overstated digest is caught with a proof any peer verifies, a silent
publisher is charged, and the server's per-peer quota holds."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import time
from collections.abc import Callable

import multiaddr
import pytest
import trio
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr

from repp2p.clock import SystemClock
from repp2p.digests import AuditOutcome, DigestPart, Fault, MerkleTree, leaf_proof, verify_bytes
from repp2p.digests.leaves import work_leaf
from repp2p.digests.params import DigestParams
from repp2p.digests.unserved import NO_ANSWER, verify_unserved
from repp2p.errors import ProofError, ProtocolError
from repp2p.net import audit as audit_protocol
from repp2p.net.host import build_host
from repp2p.net.params import AuditParams
from repp2p.node.audits import Auditor, Challenge, EvidenceLog, plan
from repp2p.node.metrics import NodeMetrics, totals
from repp2p.records import WorkDigest, WorkRow, sign
from repp2p.store import SqliteRecordStore
from repp2p.testing import factories

EPOCH = int(time.time()) // 60 - 10
NODE, CLIENT = factories.identity("audited-node"), factories.identity("audit-client")
AUDITOR = factories.identity("auditor")
#: the attested nodes of the views here (repp2p.node.audits.attested_nodes)
ATTESTED = frozenset({NODE.peer_id, AUDITOR.peer_id})
FAST = AuditParams(request_timeout_s=1.0, attempts=2, retry_s=0.1)
NOW = int(time.time())


@contextlib.asynccontextmanager
async def _hosts(answer: Callable[[bytes, int], bytes | None] | None, params=FAST):
    """A publisher host serving ``answer`` (None: it registers no audit handler, as a
    peer that never answers) and an auditor host connected to it."""
    publisher, auditor = build_host(NODE), build_host(AUDITOR)
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    metrics = NodeMetrics()
    async with publisher.run(listen_addrs=listen), auditor.run(listen_addrs=listen):
        if answer is not None:
            handler = audit_protocol.make_handler(
                answer,
                params,
                time.time,
                on_request=lambda r: metrics.audit_requests.labels(r).inc(),
            )
            publisher.set_stream_handler(audit_protocol.PROTOCOL, handler)
        addr = f"{publisher.get_addrs()[0]}/p2p/{NODE.peer_id}"
        with trio.fail_after(10):
            await auditor.connect(info_from_p2p_addr(multiaddr.Multiaddr(addr)))

        async def open_stream(peer: str):
            return await auditor.new_stream(ID.from_base58(peer), [audit_protocol.PROTOCOL])

        yield open_stream, metrics


def _auditor(open_stream, store=None) -> Auditor:
    return Auditor(
        peer_id=AUDITOR.peer_id,
        store=store or SqliteRecordStore(":memory:"),
        clock=SystemClock(),
        epoch_s=60,
        params=DigestParams(),
        audit=FAST,
        open_stream=open_stream,
        nodes=lambda epoch: ATTESTED,
        metrics=NodeMetrics(),
        evidence=EvidenceLog(None),
    )


def _part(tasks, rows=None) -> DigestPart:
    """A work digest part over these tasks' leaves in key order, with ``rows`` (by default
    the true ones): what a cheating node could sign."""
    items = sorted(
        (
            (
                work_leaf(t.offer, t.claim, t.receipt, "done" if t.receipt else "timeout"),
                tuple(r for r in (t.offer, t.claim, t.receipt) if r),
            )
            for t in tasks
        ),
        key=lambda item: item[0].key(),
    )
    encoded = [leaf.encode() for leaf, _ in items]
    counter = itertools.count()
    tree = MerkleTree(encoded, lambda _: next(counter).to_bytes(4, "big"))
    if rows is None:
        done = sum(1 for t in tasks if t.receipt)
        rows = (WorkRow(CLIENT.peer_id, len(tasks), done, len(tasks) - done, 0),)
    digest = WorkDigest(
        epoch=EPOCH,
        part=0,
        parts=1,
        rows=rows,
        leaf_count=len(encoded),
        merkle_root=tree.root,
        seq=0,
        expires=factories.far_future(NOW),
    )
    return DigestPart(digest, tuple(x for x, _ in items), tree, tuple(e for _, e in items))


def _tasks():
    done = [factories.task_records(CLIENT, NODE, EPOCH, f"a{i}") for i in range(4)]
    late = factories.task_records(CLIENT, NODE, EPOCH, "a-late", delivered=False, outcome=None)
    return [*done, late]


def _server(part: DigestPart, signed) -> Callable[[bytes, int], bytes | None]:
    def answer(digest_id: bytes, index: int) -> bytes | None:
        if digest_id != signed.record_id or not 0 <= index < part.tree.size:
            return None
        return leaf_proof(part, digest_id, index).encode()

    return answer


async def test_an_honest_publisher_passes_its_audit():
    part = _part(_tasks())
    signed = sign(part.digest, NODE)
    async with _hosts(_server(part, signed)) as (open_stream, server_metrics):
        auditor = _auditor(open_stream)
        challenge = Challenge(signed, tuple(range(signed.record.leaf_count)), bytes(32))
        results = await auditor.check(challenge)
    assert [r.outcome for r in results] == [AuditOutcome.PASS] * 5
    assert totals(auditor._metrics.audits, "outcome") == {"pass": 5.0}
    assert totals(server_metrics.audit_requests, "result") == {"answered": 5.0}
    assert auditor.evidence.recent() == []


async def test_a_digest_that_overstates_a_row_is_caught_with_a_verifiable_proof():
    tasks = _tasks()
    # 4 receipts and a timeout, reported as 5 receipts: the timeout leaf is misplaced.
    lie = (WorkRow(CLIENT.peer_id, 5, 5, 0, 0),)
    part = _part(tasks, rows=lie)
    signed = sign(part.digest, NODE)
    async with _hosts(_server(part, signed)) as (open_stream, _):
        auditor = _auditor(open_stream)
        results = await auditor.check(Challenge(signed, tuple(range(5)), bytes(32)))
    caught = [r for r in results if r.outcome is AuditOutcome.OFFENCE]
    assert caught
    for result in caught:
        offence = verify_bytes(result.evidence, NOW)  # any peer, from the bytes alone
        assert offence.offender == NODE.peer_id and Fault.MISPLACED in offence.faults
    assert auditor.evidence.recent(AuditOutcome.OFFENCE) == [r.evidence for r in caught]


async def test_a_publisher_that_does_not_answer_is_charged(tmp_path):
    part = _part(_tasks())
    signed = sign(part.digest, NODE)
    store = SqliteRecordStore(":memory:")
    # The auditor's own (empty) work digest and its attestation make it a candidate; the
    # publisher is excluded.
    mine = sign(factories.empty_work_digest(EPOCH, expires=factories.far_future(NOW)), AUDITOR)
    store.put_many([signed, mine], now=NOW)
    (challenge,) = [c for c in plan(store, AUDITOR.peer_id, EPOCH, DigestParams(), ATTESTED)]
    assert challenge.digest.record_id == signed.record_id
    async with _hosts(None) as (open_stream, _):  # no audit handler: every ask fails
        auditor = _auditor(open_stream, store)
        auditor.evidence = EvidenceLog(tmp_path / "audits")
        with trio.fail_after(30):
            results = await auditor.check(challenge)
    assert {r.outcome for r in results} == {AuditOutcome.UNSERVED}
    assert len(results) == len(challenge.indices) == min(5, DigestParams().audit_samples)
    candidates = [NODE.peer_id, AUDITOR.peer_id]
    for result in results:
        charge = verify_unserved(result.evidence, NOW, DigestParams(), candidates)
        assert (charge.offender, charge.index, charge.auditor) == (
            NODE.peer_id,
            result.index,
            AUDITOR.peer_id,
        )
        assert result.verdict.detail == NO_ANSWER
    assert len(list((tmp_path / "audits").iterdir())) == len(results)


async def test_a_publisher_that_disowns_its_digest_is_charged():
    part = _part(_tasks())
    signed = sign(part.digest, NODE)
    async with _hosts(lambda digest_id, index: None) as (open_stream, metrics):
        auditor = _auditor(open_stream)
        with trio.fail_after(30):
            results = await auditor.check(Challenge(signed, (0, 3), bytes(32)))
    assert [r.verdict.detail for r in results] == [audit_protocol.UNKNOWN] * 2
    assert totals(metrics.audit_requests, "result") == {"unknown": 4.0}  # 2 leaves, 2 tries


async def test_the_audit_server_holds_its_per_peer_byte_quota():
    part = _part(_tasks())
    signed = sign(part.digest, NODE)
    tight = AuditParams(request_timeout_s=0.5, peer_bytes_per_min=64 * 1024, attempts=1)
    size = len(leaf_proof(part, signed.record_id, 0).encode())
    async with _hosts(_server(part, signed), tight) as (open_stream, metrics):
        answered = 0
        with trio.fail_after(30):
            for _ in range(2 * 64 * 1024 // size + 2):
                stream = await open_stream(NODE.peer_id)
                try:
                    await audit_protocol.fetch(stream, signed.record_id, [0], tight)
                except ProtocolError:
                    break  # dropped
                answered += 1
    # A minute's budget, then the peer waits longer than a request may take: dropped.
    assert 64 * 1024 // size - 1 <= answered <= 64 * 1024 // size + 1
    assert totals(metrics.audit_requests, "result").get("refused", 0) >= 1


async def test_hostile_requests_are_dropped_and_the_server_keeps_serving():
    from repp2p.net.framing import FrameReader, encode_varint, write_cbor

    part = _part(_tasks())
    signed = sign(part.digest, NODE)
    async with _hosts(_server(part, signed)) as (open_stream, metrics):
        bad_requests = [
            {"digest": b"short", "index": 0},
            {"digest": signed.record_id, "index": -1},
            {"digest": signed.record_id, "index": 2**40},
            {"digest": signed.record_id},
            ["not", "a", "map"],
            {"digest": signed.record_id, "index": 0, "extra": 1},
        ]
        with trio.fail_after(20):
            for request in bad_requests:
                stream = await open_stream(NODE.peer_id)
                await write_cbor(stream, request)
                assert await FrameReader(stream, 1024).read_bytes() is None  # dropped
            stream = await open_stream(NODE.peer_id)
            await stream.write(encode_varint(10**6))  # an oversized frame: cut off unread
            assert await FrameReader(stream, 1024).read_bytes() is None
            stream = await open_stream(NODE.peer_id)
            await stream.write(encode_varint(5) + b"\xff\xff\xff\xff\xff")  # not CBOR
            assert await FrameReader(stream, 1024).read_bytes() is None
            # Unknown digests and leaves are answered, not dropped; then a good challenge.
            got = await audit_protocol.fetch(await open_stream(NODE.peer_id), bytes(32), [0], FAST)
            assert got == {0: None}
            good = await audit_protocol.fetch(
                await open_stream(NODE.peer_id), signed.record_id, [1], FAST
            )
    assert good[1] == leaf_proof(part, signed.record_id, 1).encode()
    assert totals(metrics.audit_requests, "result") == {
        "refused": 8.0,
        "unknown": 1.0,
        "answered": 1.0,
    }


async def test_any_peer_re_checks_a_charge_by_asking_the_publisher_itself():
    part = _part(_tasks())
    signed = sign(part.digest, NODE)
    store = SqliteRecordStore(":memory:")
    mine = sign(factories.empty_work_digest(EPOCH, expires=factories.far_future(NOW)), AUDITOR)
    store.put_many([signed, mine], now=NOW)
    (challenge,) = plan(store, AUDITOR.peer_id, EPOCH, DigestParams(), ATTESTED)
    async with _hosts(None) as (open_stream, _):  # silent: charged
        with trio.fail_after(30):
            charges = [r.evidence for r in await _auditor(open_stream, store).check(challenge)]
            # Another peer asking the same silent publisher confirms it.
            assert await _auditor(open_stream).recheck(charges[0]) is AuditOutcome.UNSERVED
    async with _hosts(_server(part, signed)) as (open_stream, _):  # answering now: refuted
        with trio.fail_after(30):
            assert await _auditor(open_stream).recheck(charges[0]) is AuditOutcome.PASS
        with pytest.raises(ProofError):
            await _auditor(open_stream).recheck(b"not a charge")


async def test_an_audit_round_that_fails_on_our_own_store_does_not_stop_the_node():
    from repp2p.errors import StoreError

    class _Broken(SqliteRecordStore):
        def query(self, **kw):  # type: ignore[override]
            raise StoreError("disk I/O error")

    async def never(peer):  # pragma: no cover - no audit gets that far
        raise AssertionError

    auditor = _auditor(never, _Broken(":memory:"))
    with pytest.raises(StoreError):
        await auditor.audit_epoch(EPOCH)
    await auditor._audit_quietly(EPOCH)  # the same failure, logged, not raised
    assert totals(auditor._metrics.audits, "outcome") == {}


async def test_the_audit_server_holds_its_per_peer_stream_quota():
    from repp2p.net.framing import FrameReader

    part = _part(_tasks())
    signed = sign(part.digest, NODE)
    params = AuditParams(request_timeout_s=5.0, streams_per_peer=2)
    async with _hosts(_server(part, signed), params) as (open_stream, metrics):
        with trio.fail_after(20):
            held = [await open_stream(NODE.peer_id) for _ in range(2)]  # open, idle
            await trio.sleep(0.3)  # the server has counted them
            third = await open_stream(NODE.peer_id)
            assert await FrameReader(third, 1024).read_bytes() is None  # refused at once
            await held[0].close()
            await trio.sleep(0.3)
            got = await audit_protocol.fetch(
                await open_stream(NODE.peer_id), signed.record_id, [2], params
            )
    assert got[2] == leaf_proof(part, signed.record_id, 2).encode()
    assert totals(metrics.audit_requests, "result").get("refused") == 1.0


async def test_what_an_auditor_finds_is_gossiped_and_other_peers_act_on_it(tmp_path):
    """The offence proof an audit finds goes out on the ``proofs`` topic (here: straight
    into another peer's router) and that peer keeps it as an offence; an unserved charge
    is forwarded and re-checked by that peer itself, whose own failed re-check is kept
    only as its local evidence (docs/digests.md, "Offence proofs and unserved charges on
    gossip")."""
    from repp2p.net.verdict import Verdict
    from repp2p.node.offences import OffenceBook, ProofRouter

    # The book's clock is pinned to the tasks' epoch: EPOCH is taken when the module is
    # imported, which in a full run can be many minutes (past the horizon) before this runs.
    books = OffenceBook(
        folder=tmp_path / "offences",
        epoch_s=60,
        horizon_epochs=16,
        keep_epochs=200,
        now=lambda: (EPOCH + 10) * 60.0,
    )
    verdicts: list[Verdict] = []
    router = ProofRouter(None, books)

    async def gossip(data: bytes) -> None:
        verdicts.append(router.judge(data))

    tasks = _tasks()
    lie = (WorkRow(CLIENT.peer_id, 5, 5, 0, 0),)
    part = _part(tasks, rows=lie)
    signed = sign(part.digest, NODE)
    async with _hosts(_server(part, signed)) as (open_stream, _):
        auditor = _auditor(open_stream)
        auditor.publish = gossip
        results = await auditor.check(Challenge(signed, tuple(range(5)), bytes(32)))
    caught = [r for r in results if r.outcome is AuditOutcome.OFFENCE]
    assert caught and verdicts[0] is Verdict.ACCEPT
    # the same offence again: known, unless its proof has a smaller evidence ID, which
    # replaces the held one (so every peer ends with the smallest, in any order)
    ids = [hashlib.sha256(r.evidence).digest() for r in caught]
    assert verdicts == [
        Verdict.ACCEPT if i == 0 or ids[i] < min(ids[:i]) else Verdict.IGNORE
        for i in range(len(ids))
    ]
    (offence,) = books.offences(EPOCH)
    assert offence.peer_id == NODE.peer_id and offence.kind == "digest_inconsistency"
    assert offence.record_ids == (min(ids),)

    # a silent publisher: charged; the charge reaches a second peer, which re-checks
    honest = _part(_tasks())
    signed = sign(honest.digest, NODE)
    store = SqliteRecordStore(":memory:")
    mine = sign(factories.empty_work_digest(EPOCH, expires=factories.far_future(NOW)), AUDITOR)
    store.put_many([signed, mine], now=NOW)
    (challenge,) = plan(store, AUDITOR.peer_id, EPOCH, DigestParams(), ATTESTED)
    async with _hosts(None) as (open_stream, _):
        with trio.fail_after(60):
            charges = [r.evidence for r in await _auditor(open_stream, store).check(challenge)]
            other = _auditor(open_stream, store)
            assert other.attested(EPOCH) == ATTESTED  # its own draw, at the audit boundary
            router.on_charge = other.on_charge
            assert router.judge(charges[0]) is Verdict.ACCEPT
            assert router.judge(charges[0]) is Verdict.IGNORE  # seen: not forwarded again
            assert router.judge(b"\xa5\x64kind\x68unserved") is Verdict.REJECT
            async with trio.open_nursery() as nursery:
                nursery.start_soon(other.run)
                while not totals(other._metrics.audits, "outcome"):
                    await trio.sleep(0.1)
                nursery.cancel_scope.cancel()
    assert totals(other._metrics.audits, "outcome") == {"recheck_unserved": 1.0}
    assert other.evidence.recent(AuditOutcome.UNSERVED) == [charges[0]]
    assert len(books) == 1  # a charge is never an offence
