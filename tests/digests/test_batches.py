"""Multi-epoch FeedbackDigests (a client's batch): wire form, hostile input, audits,
equivocation across overlapping batches, and reconciliation per (client, node, epoch)."""

from __future__ import annotations

import dataclasses
import itertools

import cbor2
import pytest

from repp2p.digests import build_feedback, build_work, reconcile
from repp2p.digests.audit import AuditOutcome, verify_audit
from repp2p.digests.build import DigestPart, absence_brackets, leaf_proof
from repp2p.digests.check import Fault
from repp2p.digests.merkle import MerkleTree
from repp2p.digests.params import DigestParams
from repp2p.digests.proofs import (
    OffenceKind,
    OmissionProof,
    conflict_proof,
    decode_proof,
    verify_bytes,
    verify_proof,
)
from repp2p.errors import ConfigError, ProofError, ProofReason, RecordError, RecordReason
from repp2p.records import FEEDBACK_MAX_SPAN, FeedbackDigest, decode, sign
from repp2p.records.codec import _signing_message
from repp2p.testing.factories import far_future

from .helpers import CLIENTS, EPOCH, NODES, NOW, flat, world

EXPIRES = far_future()
EPOCHS = (EPOCH, EPOCH + 1, EPOCH + 2)


def _records():
    # three epochs of tasks; seeds differ so every epoch has its own tasks
    return [r for i, e in enumerate(EPOCHS) for r in flat(world(30, seed=10 + i, epoch=e))]


def _batch(client, records, *, first=EPOCH, span=3, **kw):
    return build_feedback(client.peer_id, records, first, expires=EXPIRES, span=span, **kw)


def _forge(fields: dict, who) -> bytes:
    """An envelope over an arbitrary body map, validly signed (what a hostile peer sends)."""
    body = cbor2.dumps(fields, canonical=True)
    sig = who.signing_key.sign(_signing_message("FeedbackDigest", body)).signature
    env = {
        "type": "FeedbackDigest",
        "body": body,
        "signer": bytes(who.signing_key.verify_key),
        "sig": sig,
    }
    return cbor2.dumps(env, canonical=True)


def _body(signed) -> dict:
    return cbor2.loads(cbor2.loads(signed.data)["body"])


def test_batch_round_trips_and_rows_keep_their_epoch():
    records = _records()
    client = CLIENTS[0]
    (part,) = _batch(client, records)
    digest = part.digest
    assert digest.span == 3 and digest.last_epoch == EPOCH + 2
    assert {row.offset for row in digest.rows} == {0, 1, 2}
    signed = sign(digest, client)
    assert decode(signed.data, now=NOW).record == digest
    # the rows of each epoch are exactly the single-epoch digest's rows, offset aside
    for offset, epoch in enumerate(EPOCHS):
        (single,) = build_feedback(client.peer_id, records, epoch, expires=EXPIRES)
        batch_rows = [r for r in digest.rows if r.offset == offset]
        assert [(r.node, r.counts(), r.latency_sum_ms) for r in batch_rows] == [
            (r.node, r.counts(), r.latency_sum_ms) for r in single.digest.rows
        ]
        assert digest.rows_of(epoch) == tuple(batch_rows)
        assert digest.covers(epoch)
    assert not digest.covers(EPOCH - 1) and not digest.covers(EPOCH + 3)


def test_single_epoch_digest_keeps_the_old_wire_form():
    (part,) = build_feedback(CLIENTS[0].peer_id, _records(), EPOCH, expires=EXPIRES)
    body = _body(sign(part.digest, CLIENTS[0]))
    # no batch fields on the wire: no span, and every row stops at latency_sum_ms (its
    # offset, the seventh item, is left out)
    assert "span" not in body
    assert body["rows"] and all(len(row) == 6 for row in body["rows"])
    assert part.digest.span == 1 and all(r.offset == 0 for r in part.digest.rows)
    leaf_maps = [cbor2.loads(leaf.encode()) for leaf in part.leaves]
    assert all("offset" not in leaf for leaf in leaf_maps)


#: A FeedbackRow's position of ``offset`` on the wire (docs/records.md).
_OFFSET = 6
PEER_TEXT = CLIENTS[0].peer_id


def _set(row: list, index: int, value) -> None:
    """Set a wire row's item, spelling out (as 0) the optional ones before it if needed."""
    row.extend([0] * (index + 1 - len(row)))
    row[index] = value


@pytest.mark.parametrize(
    "tamper",
    [
        lambda b: b.update(span=1),  # the default spelled out: two spellings of one value
        lambda b: b.update(span=FEEDBACK_MAX_SPAN + 1),
        lambda b: b.update(span=0),
        lambda b: b.update(span=True),
        lambda b: b.update(span=2),  # a row of offset 2 is past a span of 2
        lambda b: _set(b["rows"][0], _OFFSET, 0),  # default spelled out
        lambda b: b["rows"].reverse(),  # rows out of (offset, node) order
        lambda b: _set(b["rows"][-1], _OFFSET, FEEDBACK_MAX_SPAN),
        lambda b: _set(b["rows"][-1], _OFFSET, "2"),
        lambda b: _set(b["rows"][-1], 0, b"\x00" * 38),  # not an Ed25519 peer ID
        lambda b: _set(b["rows"][-1], 0, b["rows"][-1][0][:-1]),  # 37 bytes
        lambda b: _set(b["rows"][-1], 0, PEER_TEXT),  # the text form, not the binary
    ],
)
def test_hostile_batch_fields_are_refused_with_a_typed_error(tamper):
    client = CLIENTS[0]
    (part,) = _batch(client, _records())
    body = _body(sign(part.digest, client))
    assert body["span"] == 3
    tamper(body)
    with pytest.raises(RecordError) as info:
        decode(_forge(body, client), now=NOW)
    assert info.value.reason is RecordReason.BAD_FIELD


def test_every_leaf_of_a_batch_passes_its_audit_and_a_wrong_epoch_leaf_does_not():
    client = CLIENTS[1]
    records = _records()
    (part,) = _batch(client, records)
    signed = sign(part.digest, client)
    assert part.digest.leaf_count > 0
    for index in range(part.digest.leaf_count):
        answer = leaf_proof(part, signed.record_id, index).encode()
        assert verify_audit(signed, index, answer).outcome is AuditOutcome.PASS
    # the same leaves signed as a batch starting one epoch later: every offer's epoch is
    # now wrong by one, an auditor catches it with a proof
    (shifted,) = build_feedback(
        client.peer_id, records, EPOCH, expires=EXPIRES, span=3
    )  # rebuilt, then re-dated below
    forged = FeedbackDigest(
        epoch=EPOCH - 1,
        part=0,
        parts=1,
        rows=shifted.digest.rows,
        leaf_count=shifted.digest.leaf_count,
        merkle_root=shifted.digest.merkle_root,
        seq=0,
        expires=EXPIRES,
        span=3,
    )
    bad = sign(forged, client)
    verdict = verify_audit(bad, 0, leaf_proof(shifted, bad.record_id, 0).encode())
    assert verdict.outcome is AuditOutcome.OFFENCE
    assert verify_proof(verdict.proof, NOW).kind is OffenceKind.INCONSISTENCY


def test_overlapping_batches_are_an_equivocation_and_disjoint_ones_are_not():
    client = CLIENTS[2]
    records = _records()
    (batch,) = _batch(client, records)
    (middle,) = build_feedback(client.peer_id, records, EPOCH + 1, expires=EXPIRES)
    (later,) = build_feedback(client.peer_id, records, EPOCH + 3, expires=EXPIRES)
    (shorter,) = _batch(client, records, span=2)  # same first epoch, same slot
    b, m, lt, s = (sign(p.digest, client) for p in (batch, middle, later, shorter))
    for other in (m, s):
        proof = conflict_proof(b, other)
        assert decode_proof(proof.encode()) == proof
        assert verify_bytes(proof.encode(), NOW).kind is OffenceKind.CONFLICT
    with pytest.raises(ProofError) as info:
        verify_proof(conflict_proof(b, lt), NOW)
    assert info.value.reason is ProofReason.WRONG_EPOCH
    # reconciliation treats the equivocating client as silent in the shared epoch only
    assert (client.peer_id, "FeedbackDigest") in reconcile([b, m], EPOCH + 1).conflicted
    assert not reconcile([b, m], EPOCH).conflicted
    assert not reconcile([b, lt], EPOCH + 2).conflicted


def test_reconciliation_is_the_same_batched_or_not():
    records = _records()
    work = [
        sign(p.digest, n)
        for n in NODES
        for e in EPOCHS
        for p in build_work(n.peer_id, records, e, expires=EXPIRES)
    ]
    singles, batches = [], []
    for c in CLIENTS:
        for e in EPOCHS:
            singles += [
                sign(p.digest, c) for p in build_feedback(c.peer_id, records, e, expires=EXPIRES)
            ]
        batches += [sign(p.digest, c) for p in _batch(c, records)]
    for e in EPOCHS:
        expected = reconcile(work + singles, e)
        assert expected.pairs and not expected.conflicted
        assert reconcile(work + batches, e) == expected
        assert reconcile(list(reversed(work + batches)), e) == expected


def test_a_batch_split_in_parts_reconciles_and_rows_per_part_count_epochs():
    records = _records()
    client = CLIENTS[0]
    # a node's rows of every epoch of a batch share its part, so a part holds >= span rows
    parts = _batch(client, records, max_rows=3)
    assert len(parts) > 1 and all(len(p.digest.rows) <= 3 for p in parts)
    assert {p.digest.parts for p in parts} == {len(parts)}
    signed = [sign(p.digest, client) for p in parts]
    for e in EPOCHS:
        recon = reconcile(signed, e)
        assert not recon.conflicted
        assert all(pair.client_covered for pair in recon.pairs)


def test_an_omission_from_a_later_epoch_of_a_batch_is_provable():
    client = CLIENTS[3]
    records = _records()
    mine = [
        r for r in records if r.signer == client.peer_id and type(r.record).__name__ == "Feedback"
    ]
    offers = {
        r.record.task_id: r
        for r in records
        if r.signer == client.peer_id and type(r.record).__name__ == "TaskOffer"
    }
    hidden = next(f for f in mine if offers[f.record.task_id].record.epoch == EPOCH + 2)
    kept = [r for r in records if r.record_id != hidden.record_id]
    (part,) = _batch(client, kept)
    signed = sign(part.digest, client)
    offer = offers[hidden.record.task_id]
    proof = OmissionProof(
        signed.data,
        (offer.data, hidden.data),
        absence_brackets(part, hidden.record.node, hidden.record.task_id, 2),
    )
    assert verify_bytes(proof.encode(), NOW).kind is OffenceKind.OMISSION


def test_feedback_max_epochs_bounds_accepted_batches():
    assert DigestParams().feedback_max_epochs == 1  # no batching unless the network says
    params = DigestParams(feedback_max_epochs=10)
    current = 100
    last = params.last_sealed(current)
    assert params.batch_accepts(last - 9, 10, current)
    assert not params.batch_accepts(last - 10, 11, current)  # longer than the network allows
    # its last epoch is not sealed yet (one epoch of clock skew is allowed)
    assert params.batch_accepts(last, 2, current)
    assert not params.batch_accepts(last + 1, 2, current)
    assert DigestParams(feedback_max_epochs=1).batch_accepts(last, 1, current)
    with pytest.raises(ConfigError):
        DigestParams(feedback_max_epochs=FEEDBACK_MAX_SPAN + 1)
    with pytest.raises(ConfigError):  # its first epoch would be too old to gossip
        DigestParams(feedback_max_epochs=13)
    assert DigestParams(gossip_max_age_epochs=20, feedback_max_epochs=16).feedback_max_epochs


def _forged_batch(part, leaves):
    """``part``'s rows over other leaves, in this order (what a cheating client signs)."""
    encoded = [leaf.encode() for leaf in leaves]
    counter = itertools.count()
    tree = MerkleTree(encoded, lambda _: next(counter).to_bytes(4, "big"))
    digest = dataclasses.replace(part.digest, merkle_root=tree.root)
    return DigestPart(digest, tuple(leaves), tree, part.evidence)


@pytest.mark.parametrize(
    ("change", "fault"),
    [
        (lambda leaf: dataclasses.replace(leaf, offset=0), Fault.MISPLACED),  # wrong block
        (lambda leaf: dataclasses.replace(leaf, offset=2), Fault.MISPLACED),
    ],
)
def test_a_leaf_filed_under_another_epoch_of_its_batch_is_caught(change, fault):
    client = CLIENTS[0]
    (part,) = _batch(client, _records())
    leaves = list(part.leaves)
    index = next(i for i, leaf in enumerate(leaves) if leaf.offset == 1)
    leaves[index] = change(leaves[index])
    forged = _forged_batch(part, leaves)
    signed = sign(forged.digest, client)
    verdict = verify_audit(signed, index, leaf_proof(forged, signed.record_id, index).encode())
    assert verdict.outcome is AuditOutcome.OFFENCE and fault in verdict.faults
    assert verify_proof(verdict.proof, NOW).kind is OffenceKind.INCONSISTENCY


def test_a_leaf_whose_offer_is_of_another_epoch_than_its_offset_is_caught():
    client = CLIENTS[0]
    records = _records()
    (part,) = _batch(client, records)
    # the first epoch-1 leaf and an epoch-2 leaf swap their records: each stays in its
    # block (same node, outcome, offset), but names an offer of the wrong epoch
    by_offset = {}
    for i, leaf in enumerate(part.leaves):
        by_offset.setdefault((leaf.offset, leaf.node, leaf.outcome), []).append(i)
    pair = next(
        (a[0], b[0])
        for (o, n, out), a in by_offset.items()
        if o == 1
        for (o2, n2, out2), b in by_offset.items()
        if o2 == 2 and (n2, out2) == (n, out)
    )
    leaves, evidence = list(part.leaves), list(part.evidence)
    i, j = pair
    leaves[i] = dataclasses.replace(part.leaves[j], offset=1)
    evidence[i] = part.evidence[j]
    forged = _forged_batch(dataclasses.replace(part, evidence=tuple(evidence)), leaves)
    signed = sign(forged.digest, client)
    verdict = verify_audit(signed, i, leaf_proof(forged, signed.record_id, i).encode())
    assert verdict.outcome is AuditOutcome.OFFENCE and Fault.WRONG_RECORD in verdict.faults
