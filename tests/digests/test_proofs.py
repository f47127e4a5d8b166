"""Offence proofs: each kind accepted when valid, each forgery rejected with its reason,
hostile bytes answered with ProofError only."""

from __future__ import annotations

import dataclasses

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repp2p.digests import (
    AuditResponse,
    ConflictProof,
    Fault,
    InconsistencyProof,
    MisorderProof,
    OffenceKind,
    OmissionProof,
    absence_brackets,
    build_feedback,
    build_work,
    conflict_proof,
    decode_proof,
    leaf_proof,
    verify_bytes,
    verify_proof,
)
from repp2p.digests.leaves import work_leaf
from repp2p.digests.merkle import Bracket, Opening
from repp2p.digests.proofs import MAX_PROOF_SIZE
from repp2p.errors import ProofError, ProofReason
from repp2p.records import WorkDigest, part_of, sign
from repp2p.testing import factories
from repp2p.testing.factories import far_future, task_records

from .helpers import CLIENTS, EPOCH, NODES, NOW, cbor_values, flat, forge

NODE, CLIENT, OTHER = NODES[0], CLIENTS[0], CLIENTS[1]
EXPIRES = far_future()


def _reason(proof, now=NOW) -> ProofReason:
    with pytest.raises(ProofError) as info:
        verify_proof(proof, now)
    return info.value.reason


def _round_trip(proof):
    assert decode_proof(proof.encode()) == proof
    offence = verify_bytes(proof.encode(), NOW)
    assert offence == verify_proof(proof, NOW)
    return offence


def _work(records, node=NODE, **kw):
    (part,) = build_work(node.peer_id, records, EPOCH, expires=EXPIRES, **kw)
    return part, sign(part.digest, node)


# -- inconsistency ------------------------------------------------------------------------


def _hidden_receipt_case():
    """A node that reports a delivered task as a timeout (to shed the client's wrong)."""
    t = task_records(CLIENT, NODE, EPOCH, "hidden", outcome="wrong")
    ok = task_records(CLIENT, NODE, EPOCH, "fine")
    lie = work_leaf(t.offer, t.claim, None, "timeout")
    fine = work_leaf(ok.offer, ok.claim, ok.receipt, "done")
    part = forge(WorkDigest, [fine, lie], [(ok.offer, ok.claim, ok.receipt), (t.offer, t.claim)])
    signed = sign(part.digest, NODE)
    # The client asks the node for its task's leaf (a key challenge) and holds the receipt.
    opening = part.tree.opening(1)
    return t, part, signed, opening


def test_hidden_receipt_is_proven_by_the_client():
    t, _, signed, opening = _hidden_receipt_case()
    proof = InconsistencyProof(signed.data, opening, (t.receipt.data,))
    offence = _round_trip(proof)
    assert offence.kind is OffenceKind.INCONSISTENCY
    assert offence.faults == (Fault.HIDDEN_RECEIPT,)
    assert (offence.offender, offence.epoch, offence.task_id) == (
        NODE.peer_id,
        EPOCH,
        t.offer.record.task_id,
    )
    assert offence.digest_type == "WorkDigest" and len(offence.evidence_id) == 32


def test_inconsistency_forgeries_are_rejected():
    t, part, signed, opening = _hidden_receipt_case()
    # An honest leaf with its own records shows nothing.
    honest = part.tree.opening(0)
    records = tuple(r.data for r in part.evidence[0])
    assert _reason(InconsistencyProof(signed.data, honest, records)) is ProofReason.NO_OFFENCE
    # A receipt for another task (or another node's) does not contradict this leaf.
    stranger = task_records(CLIENT, NODES[1], EPOCH, "stranger")
    assert _reason(InconsistencyProof(signed.data, opening, (stranger.receipt.data,))) is (
        ProofReason.NO_OFFENCE
    )
    # ...and riding along with a real fault it is refused: a proof carries only its case.
    both = (t.receipt.data, stranger.receipt.data)
    assert _reason(InconsistencyProof(signed.data, opening, both)) is ProofReason.WRONG_TASK
    # Merkle data that does not check out.
    moved = dataclasses.replace(opening, index=0)
    assert _reason(InconsistencyProof(signed.data, moved, (t.receipt.data,))) in (
        ProofReason.ROOT_MISMATCH,
        ProofReason.BAD_PATH,
    )
    outside = dataclasses.replace(opening, index=5)
    assert _reason(InconsistencyProof(signed.data, outside, (t.receipt.data,))) is (
        ProofReason.BAD_INDEX
    )
    # A tampered digest, a tampered record, a record as the digest.
    tampered = bytearray(signed.data)
    tampered[-1] ^= 1
    proof = InconsistencyProof(bytes(tampered), opening, (t.receipt.data,))
    assert _reason(proof) is ProofReason.BAD_RECORD
    bad_receipt = bytearray(t.receipt.data)
    bad_receipt[-1] ^= 1
    proof = InconsistencyProof(signed.data, opening, (bytes(bad_receipt),))
    assert _reason(proof) is ProofReason.BAD_RECORD
    proof = InconsistencyProof(t.receipt.data, opening, (t.receipt.data,))
    assert _reason(proof) is ProofReason.WRONG_TYPE
    # The digest has expired: nobody holds it any more, the proof no longer matters.
    proof = InconsistencyProof(signed.data, opening, (t.receipt.data,))
    assert _reason(proof, now=EXPIRES) is ProofReason.EXPIRED


def test_a_client_that_revises_feedback_after_its_digest_is_caught():
    t = task_records(CLIENT, NODE, EPOCH, "revised", outcome="ok")
    (part,) = build_feedback(CLIENT.peer_id, t.all(), EPOCH, expires=EXPIRES)
    signed = sign(part.digest, CLIENT)
    later = sign(dataclasses.replace(t.feedback.record, seq=2, outcome="wrong"), CLIENT)
    proof = InconsistencyProof(
        signed.data, part.tree.opening(0), tuple(sorted((t.feedback.data, later.data)))
    )
    assert _round_trip(proof).faults == (Fault.SUPERSEDED,)
    # Without the record it names, a newer feedback alone proves nothing.
    alone = InconsistencyProof(signed.data, part.tree.opening(0), (later.data,))
    assert _reason(alone) is ProofReason.NO_OFFENCE


# -- omission --------------------------------------------------------------------------


def test_a_node_omitting_a_claimed_task_is_proven():
    tasks = [task_records(CLIENT, NODE, EPOCH, f"o{i}", delivered=i % 2 == 0) for i in range(6)]
    omitted = tasks[3]
    kept = [r for t in tasks if t is not omitted for r in t.all()]
    part, signed = _work(kept)
    task_id = omitted.offer.record.task_id
    brackets = absence_brackets(part, CLIENT.peer_id, task_id)
    assert len(brackets) == 4  # done, timeout, failed, refused
    proof = OmissionProof(signed.data, (omitted.offer.data, omitted.claim.data), brackets)
    offence = _round_trip(proof)
    assert offence.kind is OffenceKind.OMISSION and offence.faults == (Fault.OMITTED,)
    assert offence.task_id == task_id and offence.offender == NODE.peer_id
    # A receipt is evidence of taking part as well as a claim.
    delivered = tasks[2]
    part2, signed2 = _work([r for t in tasks if t is not delivered for r in t.all()])
    brackets2 = absence_brackets(part2, CLIENT.peer_id, delivered.offer.record.task_id)
    proof = OmissionProof(signed2.data, (delivered.offer.data, delivered.receipt.data), brackets2)
    assert _round_trip(proof).kind is OffenceKind.OMISSION


def test_omitting_a_whole_client_needs_no_merkle_data():
    t = task_records(OTHER, NODE, EPOCH, "forgotten")
    _, signed = _work([])  # the node claims it served nobody
    proof = OmissionProof(signed.data, (t.offer.data, t.claim.data), ())
    assert _round_trip(proof).kind is OffenceKind.OMISSION


def test_omission_forgeries_are_rejected():
    tasks = [task_records(CLIENT, NODE, EPOCH, f"p{i}") for i in range(4)]
    part, signed = _work(flat(tasks))
    present = tasks[1]
    records = (present.offer.data, present.claim.data)
    # The task is there: no bracket around it can verify.
    absent_id = factories.digest("absent")
    fake = absence_brackets(part, CLIENT.peer_id, absent_id)
    assert _reason(OmissionProof(signed.data, records, fake)) in (
        ProofReason.NOT_BRACKETED,
        ProofReason.NOT_ADJACENT,
    )
    with pytest.raises(KeyError):
        absence_brackets(part, CLIENT.peer_id, present.offer.record.task_id)
    # Brackets that are not one per block.
    assert _reason(OmissionProof(signed.data, records, fake[:1])) is ProofReason.MALFORMED
    # Another node's claim; a claim naming another offer; a task of another epoch.
    other_node = task_records(CLIENT, NODES[1], EPOCH, "elsewhere")
    proof = OmissionProof(signed.data, (other_node.offer.data, other_node.claim.data), ())
    assert _reason(proof) is ProofReason.WRONG_SIGNER
    proof = OmissionProof(signed.data, (tasks[0].offer.data, present.claim.data), fake)
    assert _reason(proof) is ProofReason.WRONG_TASK
    later = task_records(CLIENT, NODE, EPOCH + 1, "later")
    b = absence_brackets(part, CLIENT.peer_id, later.offer.record.task_id)
    proof = OmissionProof(signed.data, (later.offer.data, later.claim.data), b)
    assert _reason(proof) is ProofReason.WRONG_EPOCH
    # Record shapes: not an offer first, not two records, a feedback for a node's digest.
    assert _reason(OmissionProof(signed.data, (present.claim.data, present.offer.data), ())) in (
        ProofReason.WRONG_TYPE,
    )
    assert _reason(OmissionProof(signed.data, (present.offer.data,), ())) is ProofReason.MALFORMED
    proof = OmissionProof(signed.data, (present.offer.data, present.feedback.data), ())
    assert _reason(proof) is ProofReason.WRONG_TYPE


def test_omission_needs_the_part_that_holds_the_row():
    clients = [factories.identity(f"wide-{i}") for i in range(12)]
    tasks = [task_records(c, NODE, EPOCH, f"wide{i}") for i, c in enumerate(clients)]
    parts = build_work(NODE.peer_id, flat(tasks), EPOCH, expires=EXPIRES, max_rows=4)
    assert len(parts) >= 3
    victim = tasks[0]
    home = part_of(victim.offer.signer, len(parts))
    elsewhere = parts[(home + 1) % len(parts)]
    signed = sign(elsewhere.digest, NODE)
    proof = OmissionProof(signed.data, (victim.offer.data, victim.claim.data), ())
    assert _reason(proof) is ProofReason.WRONG_PART


def test_a_client_omitting_its_feedback_is_proven():
    tasks = [task_records(CLIENT, n, EPOCH, f"f{i}", outcome="wrong") for i, n in enumerate(NODES)]
    hidden = tasks[1]
    kept = [r for t in tasks for r in t.all() if r is not hidden.feedback]
    (part,) = build_feedback(CLIENT.peer_id, kept, EPOCH, expires=EXPIRES)
    signed = sign(part.digest, CLIENT)
    brackets = absence_brackets(part, NODES[1].peer_id, hidden.offer.record.task_id)
    assert brackets == ()  # the node has no row at all
    proof = OmissionProof(signed.data, (hidden.offer.data, hidden.feedback.data), brackets)
    offence = _round_trip(proof)
    assert offence.offender == CLIENT.peer_id and offence.digest_type == "FeedbackDigest"
    # Another client's feedback does not bind this one.
    theirs = task_records(OTHER, NODES[1], EPOCH, "theirs")
    proof = OmissionProof(signed.data, (theirs.offer.data, theirs.feedback.data), ())
    assert _reason(proof) is ProofReason.WRONG_SIGNER


# -- conflict ---------------------------------------------------------------------------


def test_two_digests_for_one_slot_or_two_splits_conflict():
    tasks = [task_records(c, NODE, EPOCH, f"c{i}") for i, c in enumerate(CLIENTS)]
    _, signed = _work(flat(tasks))
    _, fewer = _work(flat(tasks[:2]))
    proof = conflict_proof(signed, fewer)
    offence = _round_trip(proof)
    assert offence.kind is OffenceKind.CONFLICT and offence.offender == NODE.peer_id
    assert conflict_proof(fewer, signed) == proof  # one spelling per pair
    split = build_work(NODE.peer_id, flat(tasks), EPOCH, expires=EXPIRES, max_rows=1)
    assert len(split) > 1
    other_split = sign(split[0].digest, NODE)
    assert _round_trip(conflict_proof(signed, other_split)).kind is OffenceKind.CONFLICT


def test_conflict_forgeries_are_rejected():
    tasks = [task_records(c, NODE, EPOCH, f"k{i}") for i, c in enumerate(CLIENTS)]
    _, signed = _work(flat(tasks))
    _, fewer = _work(flat(tasks[:2]))
    a, b = sorted((signed, fewer), key=lambda s: s.record_id)
    assert _reason(ConflictProof(b.data, a.data)) is ProofReason.NON_CANONICAL
    assert _reason(ConflictProof(a.data, a.data)) is ProofReason.NO_OFFENCE
    _, someone_else = _work(flat([task_records(CLIENT, NODES[1], EPOCH, "x")]), node=NODES[1])
    assert _reason(conflict_proof(signed, someone_else)) is ProofReason.WRONG_SIGNER
    next_epoch = sign(dataclasses.replace(fewer.record, epoch=EPOCH + 1), NODE)
    assert _reason(conflict_proof(signed, next_epoch)) is ProofReason.WRONG_EPOCH
    split = build_work(NODE.peer_id, flat(tasks), EPOCH, expires=EXPIRES, max_rows=1)
    one, two = (sign(p.digest, NODE) for p in split[:2])
    assert _reason(conflict_proof(one, two)) is ProofReason.NO_OFFENCE  # one consistent split
    (fpart,) = build_feedback(NODE.peer_id, [], EPOCH, expires=EXPIRES)
    feedback = sign(fpart.digest, NODE)
    assert _reason(conflict_proof(signed, feedback)) is ProofReason.WRONG_TYPE
    heartbeat = sign(factories.sample_records()[2], NODE)
    assert _reason(conflict_proof(signed, heartbeat)) is ProofReason.WRONG_TYPE


# -- misorder -------------------------------------------------------------------------


def test_misorder_and_its_forgeries():
    tasks = sorted(
        (task_records(CLIENT, NODE, EPOCH, f"m{i}") for i in range(3)),
        key=lambda t: t.offer.record.task_id,
    )
    leaves = [work_leaf(t.offer, t.claim, t.receipt, "done") for t in tasks]
    part = forge(WorkDigest, [leaves[1], leaves[0], leaves[2]], [()] * 3)
    signed = sign(part.digest, NODE)
    o = part.tree.opening
    offence = _round_trip(MisorderProof(signed.data, o(0), o(1)))
    assert offence.kind is OffenceKind.MISORDER
    assert _reason(MisorderProof(signed.data, o(1), o(2))) is ProofReason.NO_OFFENCE
    assert _reason(MisorderProof(signed.data, o(0), o(2))) is ProofReason.NOT_ADJACENT
    forged = dataclasses.replace(o(1), leaf=leaves[2].encode())
    assert _reason(MisorderProof(signed.data, o(0), forged)) is ProofReason.ROOT_MISMATCH


# -- hostile bytes -----------------------------------------------------------------------


def _valid_proofs():
    t, _, signed, opening = _hidden_receipt_case()
    yield InconsistencyProof(signed.data, opening, (t.receipt.data,))
    tasks = [task_records(CLIENT, NODE, EPOCH, f"h{i}") for i in range(3)]
    part, signed = _work([r for t in tasks[1:] for r in t.all()])
    brackets = absence_brackets(part, CLIENT.peer_id, tasks[0].offer.record.task_id)
    yield OmissionProof(signed.data, (tasks[0].offer.data, tasks[0].claim.data), brackets)


def test_encoding_is_strict():
    proof = next(_valid_proofs())
    data = proof.encode()
    obj = cbor2.loads(data)

    def reason(raw) -> ProofReason:
        with pytest.raises(ProofError) as info:
            decode_proof(raw)
        return info.value.reason

    assert reason(b"\x00" * (MAX_PROOF_SIZE + 1)) is ProofReason.OVERSIZE
    assert reason(b"\xff") is ProofReason.MALFORMED
    assert reason("text") is ProofReason.MALFORMED
    assert reason(cbor2.dumps(dict(obj, kind="nope"), canonical=True)) is ProofReason.MALFORMED
    assert reason(cbor2.dumps(dict(obj, extra=1), canonical=True)) is ProofReason.MALFORMED
    assert reason(cbor2.dumps(dict(obj, records=["x"]), canonical=True)) is ProofReason.MALFORMED
    many = dict(obj, records=[b"r"] * 9)
    assert reason(cbor2.dumps(many, canonical=True)) is ProofReason.OVERSIZE
    long_int = cbor2.dumps(obj, canonical=True).replace(b"\x65index\x01", b"\x65index\x18\x01")
    assert long_int != data
    assert reason(long_int) is ProofReason.NON_CANONICAL
    tagged = cbor2.dumps(dict(obj, digest=cbor2.CBORTag(24, b"x")), canonical=True)
    assert reason(tagged) in (ProofReason.MALFORMED, ProofReason.NON_CANONICAL)
    with pytest.raises(ProofError):
        verify_proof("not a proof", NOW)  # type: ignore[arg-type]


def test_mutated_proofs_never_frame_anyone_else():
    for proof in _valid_proofs():
        data = proof.encode()
        original = verify_bytes(data, NOW)
        step = max(1, len(data) // 400)
        for i in range(0, len(data), step):
            for flip in (0x01, 0x80):
                mutant = data[:i] + bytes([data[i] ^ flip]) + data[i + 1 :]
                try:
                    offence = verify_bytes(mutant, NOW)
                except ProofError:
                    continue
                assert offence.offender == original.offender
                assert offence.epoch == original.epoch


@settings(max_examples=300, deadline=None)
@given(cbor_values, st.sampled_from(["inconsistency", "omission", "conflict", "misorder", None]))
def test_hostile_proofs_raise_only_proof_errors(obj, kind):
    if kind is not None and isinstance(obj, dict):
        obj = dict(obj, kind=kind)
    try:
        data = cbor2.dumps(obj, canonical=True)
    except Exception:
        return
    with pytest.raises(ProofError):
        verify_bytes(data, NOW)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_proof_errors(data):
    with pytest.raises(ProofError):
        verify_bytes(data, NOW)
    with pytest.raises(ProofError):
        decode_proof(bytearray(data))


def test_audit_response_answers_from_the_builder_are_canonical():
    part, signed = _work(flat([task_records(CLIENT, NODE, EPOCH, "r")]))
    response = leaf_proof(part, signed.record_id, 0)
    assert AuditResponse.decode(response.encode()) == response
    assert Bracket.from_wire(Bracket(None, None).to_wire()) == Bracket(None, None)


_hashes = st.lists(st.binary(min_size=32, max_size=32), max_size=24).map(tuple)
openings = st.builds(
    Opening, index=st.integers(0, 2**32 - 1), leaf=st.binary(max_size=300), path=_hashes
)
brackets = st.builds(Bracket, left=st.none() | openings, right=st.none() | openings)
_blobs = st.binary(max_size=2000)
_records = st.lists(st.binary(max_size=500), max_size=8).map(tuple)
any_proof = st.one_of(
    st.builds(InconsistencyProof, digest=_blobs, opening=openings, records=_records),
    st.builds(
        OmissionProof,
        digest=_blobs,
        records=_records,
        brackets=st.lists(brackets, max_size=4).map(tuple),
    ),
    st.builds(ConflictProof, a=_blobs, b=_blobs),
    st.builds(MisorderProof, digest=_blobs, first=openings, second=openings),
)


@settings(max_examples=200, deadline=None)
@given(any_proof)
def test_every_proof_encoding_round_trips(proof):
    data = proof.encode()
    assert decode_proof(data) == proof
    with pytest.raises(ProofError):  # random contents prove nothing
        verify_proof(proof, NOW)


@settings(max_examples=100, deadline=None)
@given(
    st.binary(min_size=32, max_size=32),
    openings,
    _records,
    st.none() | openings,
)
def test_audit_response_encoding_round_trips(digest_id, opening, records, successor):
    response = AuditResponse(digest_id, opening, records, successor)
    assert AuditResponse.decode(response.encode()) == response
