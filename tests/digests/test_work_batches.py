"""Multi-epoch WorkDigests (a node's batch): the FeedbackDigest batch mechanism for nodes.
Wire form (single-epoch digests byte-identical), hostile input, audits, equivocation across
overlapping batches, omissions, and reconciliation per (client, node, epoch)."""

from __future__ import annotations

import dataclasses

import cbor2
import pytest

from repp2p.digests import build_feedback, build_work, reconcile
from repp2p.digests.audit import AuditOutcome, verify_audit
from repp2p.digests.build import absence_brackets, leaf_proof
from repp2p.digests.params import DigestParams
from repp2p.digests.proofs import (
    OffenceKind,
    OmissionProof,
    conflict_proof,
    verify_bytes,
    verify_proof,
)
from repp2p.errors import ConfigError, ProofError, ProofReason, RecordError, RecordReason
from repp2p.network_params import NetworkParams
from repp2p.records import DIGEST_MAX_SPAN, WorkDigest, decode, sign
from repp2p.records.codec import _signing_message
from repp2p.testing.factories import far_future

from .helpers import CLIENTS, EPOCH, NODES, NOW, flat, world

EXPIRES = far_future()
EPOCHS = (EPOCH, EPOCH + 1, EPOCH + 2)


def _records():
    return [r for i, e in enumerate(EPOCHS) for r in flat(world(30, seed=20 + i, epoch=e))]


def _batch(node, records, *, first=EPOCH, span=3, **kw):
    return build_work(node.peer_id, records, first, expires=EXPIRES, span=span, **kw)


def _busy(records):
    """A node with claims in every epoch of the batch."""
    for node in NODES:
        (part,) = _batch(node, records)
        if {row.offset for row in part.digest.rows} == {0, 1, 2}:
            return node
    raise AssertionError("no node worked in all three epochs")


def _body(signed) -> dict:
    return cbor2.loads(cbor2.loads(signed.data)["body"])


def _forge(fields: dict, who) -> bytes:
    body = cbor2.dumps(fields, canonical=True)
    sig = who.signing_key.sign(_signing_message("WorkDigest", body)).signature
    env = {"type": "WorkDigest", "body": body, "signer": bytes(who.signing_key.verify_key)}
    env["sig"] = sig
    return cbor2.dumps(env, canonical=True)


def test_work_batch_round_trips_and_rows_keep_their_epoch():
    records = _records()
    node = _busy(records)
    (part,) = _batch(node, records)
    digest = part.digest
    assert digest.span == 3 and digest.last_epoch == EPOCH + 2
    assert digest.epoch_of() == EPOCH + 2  # filed under its last epoch
    signed = sign(digest, node)
    assert decode(signed.data, now=NOW).record == digest
    for offset, epoch in enumerate(EPOCHS):
        (single,) = build_work(node.peer_id, records, epoch, expires=EXPIRES)
        batch_rows = [r for r in digest.rows if r.offset == offset]
        assert [(r.client, r.counts()) for r in batch_rows] == [
            (r.client, r.counts()) for r in single.digest.rows
        ]
        assert digest.rows_of(epoch) == tuple(batch_rows)
    assert not digest.covers(EPOCH - 1) and not digest.covers(EPOCH + 3)


def test_single_epoch_work_digest_is_byte_identical_to_before_batching():
    node = NODES[0]
    (part,) = build_work(node.peer_id, _records(), EPOCH, expires=EXPIRES)
    body = _body(sign(part.digest, node))
    assert set(body) == {
        "epoch",
        "part",
        "parts",
        "rows",
        "leaf_count",
        "merkle_root",
        "seq",
        "expires",
    }
    # rows of five items: client, claims, receipts, timeouts, failures (offset left out)
    assert body["rows"] and all(len(row) == 5 for row in body["rows"])
    assert all("offset" not in cbor2.loads(leaf.encode()) for leaf in part.leaves)
    # the span default and the no-offset path give the same bytes
    (again,) = build_work(node.peer_id, _records(), EPOCH, expires=EXPIRES, span=1)
    assert sign(again.digest, node).data == sign(part.digest, node).data


#: A WorkRow's positions of ``offset`` and ``refused`` on the wire (docs/records.md).
_OFFSET, _REFUSED = 5, 6


def _set(row: list, index: int, value) -> None:
    """Set a wire row's item, spelling out (as 0) the optional ones before it if needed."""
    row.extend([0] * (index + 1 - len(row)))
    row[index] = value


@pytest.mark.parametrize(
    "tamper",
    [
        lambda b: b.update(span=1),  # the default spelled out
        lambda b: b.update(span=DIGEST_MAX_SPAN + 1),
        lambda b: b.update(span=0),
        lambda b: b.update(span=2),  # a row of offset 2 is past a span of 2
        lambda b: _set(b["rows"][0], _OFFSET, 0),  # the default spelled out, last
        lambda b: b["rows"].reverse(),
        lambda b: _set(b["rows"][-1], _OFFSET, DIGEST_MAX_SPAN),
        lambda b: _set(b["rows"][-1], _REFUSED, 0),  # refused 0 spelled out, last
        lambda b: _set(b["rows"][-1], 1, True),  # bool is not an integer
    ],
)
def test_hostile_work_batch_fields_are_refused_with_a_typed_error(tamper):
    records = _records()
    node = _busy(records)
    (part,) = _batch(node, records)
    body = _body(sign(part.digest, node))
    assert body["span"] == 3
    tamper(body)
    with pytest.raises(RecordError) as info:
        decode(_forge(body, node), now=NOW)
    assert info.value.reason is RecordReason.BAD_FIELD


def test_every_leaf_of_a_work_batch_passes_its_audit_and_a_re_dated_one_does_not():
    records = _records()
    node = _busy(records)
    (part,) = _batch(node, records)
    signed = sign(part.digest, node)
    for index in range(part.digest.leaf_count):
        answer = leaf_proof(part, signed.record_id, index).encode()
        assert verify_audit(signed, index, answer).outcome is AuditOutcome.PASS
    forged = dataclasses.replace(part.digest, epoch=EPOCH - 1)
    bad = sign(forged, node)
    verdict = verify_audit(bad, 0, leaf_proof(part, bad.record_id, 0).encode())
    assert verdict.outcome is AuditOutcome.OFFENCE
    assert verify_proof(verdict.proof, NOW).kind is OffenceKind.INCONSISTENCY


def test_overlapping_work_batches_conflict_and_disjoint_ones_do_not():
    records = _records()
    node = _busy(records)
    (batch,) = _batch(node, records)
    (middle,) = build_work(node.peer_id, records, EPOCH + 1, expires=EXPIRES)
    (later,) = build_work(node.peer_id, records, EPOCH + 3, expires=EXPIRES)
    b, m, lt = (sign(p.digest, node) for p in (batch, middle, later))
    assert verify_bytes(conflict_proof(b, m).encode(), NOW).kind is OffenceKind.CONFLICT
    with pytest.raises(ProofError) as info:
        verify_proof(conflict_proof(b, lt), NOW)
    assert info.value.reason is ProofReason.WRONG_EPOCH
    assert (node.peer_id, "WorkDigest") in reconcile([b, m], EPOCH + 1).conflicted
    assert not reconcile([b, lt], EPOCH + 2).conflicted


def test_reconciliation_and_so_the_ledger_rows_are_the_same_with_work_batches():
    records = _records()
    feedback = [
        sign(p.digest, c)
        for c in CLIENTS
        for e in EPOCHS
        for p in build_feedback(c.peer_id, records, e, expires=EXPIRES)
    ]
    singles = [
        sign(p.digest, n)
        for n in NODES
        for e in EPOCHS
        for p in build_work(n.peer_id, records, e, expires=EXPIRES)
    ]
    batches = [sign(p.digest, n) for n in NODES for p in _batch(n, records)]
    split = [sign(p.digest, n) for n in NODES for p in _batch(n, records, max_rows=4)]
    assert len(split) > len(NODES)
    for e in EPOCHS:
        expected = reconcile(feedback + singles, e)
        assert expected.pairs and not expected.conflicted
        assert reconcile(feedback + batches, e) == expected
        assert reconcile(list(reversed(feedback + split)), e) == expected


def test_an_omission_from_a_later_epoch_of_a_work_batch_is_provable():
    records = _records()
    node = _busy(records)
    offers = {r.record_id: r for r in records if type(r.record).__name__ == "TaskOffer"}
    claims = [
        r
        for r in records
        if r.signer == node.peer_id
        and type(r.record).__name__ == "Claim"
        and offers[r.record.offer_id].record.epoch == EPOCH + 2
    ]
    hidden = claims[0]
    kept = [
        r
        for r in records
        if r.record_id != hidden.record_id
        and not (
            r.signer == node.peer_id and getattr(r.record, "task_id", None) == hidden.record.task_id
        )
    ]
    (part,) = _batch(node, kept)
    signed = sign(part.digest, node)
    offer = offers[hidden.record.offer_id]
    proof = OmissionProof(
        signed.data,
        (offer.data, hidden.data),
        absence_brackets(part, offer.signer, hidden.record.task_id, 2),
    )
    assert verify_bytes(proof.encode(), NOW).kind is OffenceKind.OMISSION


def test_work_max_epochs_bounds_batches_and_the_view_lag():
    assert DigestParams().work_max_epochs == 1
    params = DigestParams(work_max_epochs=4, feedback_max_epochs=2)
    current = 100
    last = params.last_sealed(current)
    assert params.batch_accepts(last - 3, 4, current, WorkDigest.TYPE)
    assert not params.batch_accepts(last - 4, 5, current, WorkDigest.TYPE)
    assert not params.batch_accepts(last - 3, 4, current)  # feedback: at most 2
    with pytest.raises(ConfigError):
        DigestParams(work_max_epochs=DIGEST_MAX_SPAN + 1)
    with pytest.raises(ConfigError):
        DigestParams(work_max_epochs=0)
    base = NetworkParams(name="batch-test")
    lag = base.digest_lag
    for work, fb in ((4, 2), (2, 4), (3, 3)):
        p = dataclasses.replace(
            base,
            digests=DigestParams(work_max_epochs=work, feedback_max_epochs=fb),
        )
        assert p.digest_lag == lag + max(work, fb) - 1


def test_a_batch_is_audited_with_samples_per_epoch_and_charges_check_that_draw():
    from repp2p.digests import audit_seed, auditors, challenge_indices, detection_probability
    from repp2p.digests.audit import MAX_SAMPLES
    from repp2p.digests.params import audit_entropy
    from repp2p.digests.unserved import NO_ANSWER, UnservedCharge, verify_unserved

    params = DigestParams(work_max_epochs=3)
    assert [params.samples_for(s) for s in (1, 2, 3)] == [8, 16, 24]
    assert DigestParams(audit_samples=40).samples_for(3) == MAX_SAMPLES
    with pytest.raises(ValueError):
        params.samples_for(0)
    # a batch of 3 epochs checks 3 x 8 leaves: detection per epoch of work is kept
    assert detection_probability(90, 5, params.samples_for(3)) > detection_probability(90, 5, 8)
    records = _records()
    node = _busy(records)
    (part,) = _batch(node, records)
    signed = sign(part.digest, node)
    n = part.digest.leaf_count
    assert n > 24
    entropy = audit_entropy([b"\x05" * 32])
    seed = audit_seed(part.digest.last_epoch, params.grace_epochs, entropy)
    drawn = challenge_indices(seed, signed.record_id, n, params.samples_for(3))
    assert len(drawn) == 24
    candidates = [p.peer_id for p in NODES]
    (auditor,) = auditors(seed, signed.record_id, candidates, exclude={node.peer_id})
    # a leaf drawn beyond the first 8 is a valid charge; one never drawn is not
    late = UnservedCharge(signed.data, drawn[20], entropy, auditor, NO_ANSWER)
    assert verify_unserved(late.encode(), NOW, params, candidates).index == drawn[20]
    other = next(i for i in range(n) if i not in drawn)
    stray = UnservedCharge(signed.data, other, entropy, auditor, NO_ANSWER)
    with pytest.raises(ProofError) as info:
        verify_unserved(stray.encode(), NOW, params, candidates)
    assert info.value.reason is ProofReason.BAD_INDEX
