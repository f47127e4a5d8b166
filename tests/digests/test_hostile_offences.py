"""Offence proofs a hostile peer can make and send, through the book every peer keeps them
in (:class:`repp2p.node.offences.OffenceBook`, the ``proofs`` topic's validator): what
a valid proof of a batch, or two valid proofs of one offence, do downstream (docs/digests.md,
"Offence proofs and unserved charges on gossip")."""

from __future__ import annotations

import dataclasses

from repp2p.digests import build_work, conflict_proof
from repp2p.digests.audit import AuditOutcome, verify_audit
from repp2p.digests.build import leaf_proof
from repp2p.digests.params import DigestParams
from repp2p.digests.proofs import verify_bytes
from repp2p.net.verdict import Verdict
from repp2p.node.offences import OffenceBook
from repp2p.records import sign
from repp2p.testing import factories

from .helpers import NODES, flat, world

EPOCH_S = 60
NOW = factories.NOW
CURRENT = NOW // EPOCH_S
#: a network whose nodes batch as long as the defaults allow (gossip window less the seal)
PARAMS = DigestParams(work_max_epochs=12)
SPAN = PARAMS.work_max_epochs
#: a network whose nodes do not batch
SINGLE = DigestParams()


def _book(tmp_path, now: int, name: str = "offences") -> OffenceBook:
    return OffenceBook(
        folder=tmp_path / name,
        epoch_s=EPOCH_S,
        horizon_epochs=PARAMS.audit_horizon_epochs,
        keep_epochs=400,
        now=lambda: now,
    )


def _lying_batch_proof(last: int) -> bytes:
    """The inconsistency proof an auditor finds in a node's work batch of ``SPAN`` epochs
    ending at ``last``: the node re-dated its batch one epoch back, so its leaves name
    offers of other epochs than their rows say."""
    first = last - SPAN + 2  # the honest batch's first epoch; the signed one starts before
    records = [r for i in range(SPAN) for r in flat(world(4, seed=90 + i, epoch=first + i))]
    node = NODES[0]
    (part,) = build_work(
        node.peer_id, records, first, expires=factories.far_future(NOW), span=SPAN - 1
    )
    lie = sign(dataclasses.replace(part.digest, epoch=first - 1, span=SPAN), node)
    assert lie.record.last_epoch == last
    verdict = verify_audit(lie, 0, leaf_proof(part, lie.record_id, 0).encode())
    assert verdict.outcome is AuditOutcome.OFFENCE
    return verdict.proof.encode()


def test_an_offence_proof_of_a_long_batch_is_taken_at_its_audit_and_counted_after_it():
    """A batch is audited as a digest of its last epoch (``plan``: at ``last + seal +
    delay``), so the proof its auditor finds must be taken then: before the fix the book
    dated the offence by the batch's first epoch and refused the proof as ``too_old`` at
    that very audit (a batch of 12 epochs ends 11 after its first, its audit 6 later,
    past the 16-epoch horizon), and a misreporting batch publisher was never penalised."""
    last = PARAMS.audited_at(CURRENT)  # the batch this epoch's audits check
    data = _lying_batch_proof(last)
    book = OffenceBook(
        folder=None,
        epoch_s=EPOCH_S,
        horizon_epochs=PARAMS.audit_horizon_epochs,
        keep_epochs=400,
        now=lambda: NOW,
    )
    assert book.judge(data) is Verdict.ACCEPT, book.refused
    assert verify_bytes(data, NOW).epoch == last
    # views count it once every peer that will take it holds it: after last's horizon
    (offence,) = book.offences(last)
    assert offence.epoch == last and book.offences(last - 1) == []
    # taken as long as any digest of its last epoch is audited, not after
    late = OffenceBook(
        folder=None,
        epoch_s=EPOCH_S,
        horizon_epochs=PARAMS.audit_horizon_epochs,
        keep_epochs=400,
        now=lambda: (last + PARAMS.audit_horizon_epochs + 1) * EPOCH_S,
    )
    assert late.judge(data) is Verdict.IGNORE and late.refused == {"too_old": 1}


def test_a_conflict_is_dated_by_the_later_of_its_two_digests():
    """Two overlapping digests can be shown together only once the later one is out: a
    conflict of a single-epoch digest with a batch ending 11 epochs later is dated by the
    batch's last epoch, so it is taken as long as that batch is audited."""
    node = NODES[1]
    last = PARAMS.audited_at(CURRENT)
    first = last - SPAN + 1
    far = factories.far_future(NOW)
    single = sign(factories.empty_work_digest(first, expires=far), node)
    batch = sign(
        dataclasses.replace(factories.empty_work_digest(first, expires=far), span=SPAN), node
    )
    data = conflict_proof(single, batch).encode()
    assert verify_bytes(data, NOW).epoch == last
    book = OffenceBook(
        folder=None,
        epoch_s=EPOCH_S,
        horizon_epochs=PARAMS.audit_horizon_epochs,
        keep_epochs=400,
        now=lambda: NOW,
    )
    assert book.judge(data) is Verdict.ACCEPT, book.refused


def _two_conflicts(node, epoch: int) -> tuple[bytes, bytes]:
    """Two valid conflict proofs of one offence (the same signer, kind and epoch), by
    evidence ID: the smaller first."""
    far = factories.far_future(NOW)
    digests = [
        sign(dataclasses.replace(factories.empty_work_digest(epoch, expires=far - i)), node)
        for i in range(3)
    ]
    a = conflict_proof(digests[0], digests[1]).encode()
    b = conflict_proof(digests[0], digests[2]).encode()
    return tuple(sorted((a, b), key=lambda d: verify_bytes(d, NOW).evidence_id))  # type: ignore[return-value]


def test_peers_that_got_two_proofs_of_one_offence_in_either_order_count_the_same_one(tmp_path):
    """An offender (or anyone holding its digests) can send one proof of its offence to
    half the network and another to the other half. The view names the offence by its
    proof's evidence ID (the view digest, the penalty book's evidence), so a book that
    kept whichever came first made the two halves' views differ for good (the second
    proof was ``known``, not forwarded). Each book keeps the smallest evidence ID: a
    smaller one replaces the held one and travels on, a larger one is ``known``."""
    epoch = CURRENT - 6
    small, large = _two_conflicts(NODES[2], epoch)
    first_small = _book(tmp_path, NOW, "a")
    first_large = _book(tmp_path, NOW, "b")
    assert first_small.judge(small) is Verdict.ACCEPT
    assert first_small.judge(large) is Verdict.IGNORE  # known: nothing forwarded
    assert first_large.judge(large) is Verdict.ACCEPT
    assert first_large.judge(small) is Verdict.ACCEPT  # replaces it, and travels on
    assert first_large.judge(small) is Verdict.IGNORE
    assert first_small.offences(epoch) == first_large.offences(epoch)
    assert len(first_large) == 1 and first_large.served() == [small]
    # what each keeps on disk is that one proof, and a restart reads the same offence
    for name in ("a", "b"):
        files = sorted((tmp_path / name).iterdir())
        assert [p.read_bytes() for p in files] == [small]
    assert _book(tmp_path, NOW, "b").offences(epoch) == first_small.offences(epoch)


def _served_and_purged(client, node, *, offer_expires: int):
    """``node`` serves one task of ``client`` in epoch ``E`` and another client's, keeps
    what its store keeps (expired records purged, as the node does every epoch) and
    publishes its work digest of ``E`` at the seal. Returns ``(task, digest, now)``."""
    import trio

    from repp2p.network_params import NetworkParams
    from repp2p.store import SqliteRecordStore
    from tests.live.own_digests_harness import Clock, own_digests

    epoch = CURRENT - 1
    network = NetworkParams.load("dev").replace(epoch_s=EPOCH_S)
    task = factories.task_records(
        client,
        node,
        epoch,
        "short",
        deadline_ms=(epoch * EPOCH_S + 30) * 1000,
        expires=offer_expires,
    )
    other = factories.task_records(NODES[1], node, epoch, "long", expires=factories.far_future())
    store = SqliteRecordStore(":memory:")
    store.put_many(task.all() + other.all(), now=epoch * EPOCH_S + 40)
    clock = Clock((epoch + SINGLE.seal_lag_epochs) * EPOCH_S + 5)
    store.purge_expired(now=int(clock.now()))
    own, _gossip = own_digests(node, "full", store, clock, network=network, params=SINGLE)
    (digest,) = trio.run(own.publish_epoch, epoch)
    return task, digest, int(clock.now())


def test_a_client_cannot_frame_a_node_with_an_offer_that_expires_before_its_digest():
    """A node's claim and receipt expire with the offer it claims (the client's choice: a
    node admits an offer that expires a minute after its deadline), and its store purges
    them; its digest, built at the seal from what it holds, then leaves the task out.
    The client kept the node's signed claim (a proof takes expired per-task records), and
    its omission proof made an honest node an offender in every view (hard penalty, the
    ledger's offence slash). A node keeps the records behind a digest through its audit
    horizon, so an omission is proven only of a task whose offer lives that long; an
    omission from a digest of a task whose records the node holds is still proven."""
    from repp2p.digests.proofs import OmissionProof

    client, node = factories.identity("framing-client"), factories.identity("framed-node")
    epoch = CURRENT - 1
    short = epoch * EPOCH_S + 90  # a minute after the deadline
    task, digest, now = _served_and_purged(client, node, offer_expires=short)
    assert all(row.client != client.peer_id for row in digest.record.rows)
    proof = OmissionProof(digest.data, (task.offer.data, task.claim.data), ()).encode()
    book = OffenceBook(
        folder=None,
        epoch_s=EPOCH_S,
        horizon_epochs=PARAMS.audit_horizon_epochs,
        keep_epochs=400,
        now=lambda: now,
    )
    assert book.judge(proof) is Verdict.REJECT and book.refused == {"no_offence": 1}
    assert len(book) == 0
    # a node that leaves out a task whose records it holds is still proven an offender
    keep_until = (epoch + PARAMS.audit_horizon_epochs + 1) * EPOCH_S
    kept, _digest, _now = _served_and_purged(client, node, offer_expires=keep_until)
    # (the digest without the task is the node's: signed while it held these records)
    honest_proof = OmissionProof(digest.data, (kept.offer.data, kept.claim.data), ()).encode()
    assert book.judge(honest_proof) is Verdict.ACCEPT, book.refused
