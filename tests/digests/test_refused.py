"""Refused tasks in work digests: a claimed task whose input the node's enclave refused is
a ``refused`` leaf naming the node's signed Refusal, counted in its row's ``refused``;
audits check the leaf against that Refusal, and double entry keeps the client's verdicts
on it off the node (docs/digests.md, "Refusals")."""

from __future__ import annotations

import dataclasses

import nacl.signing
import pytest

from repp2p.digests import (
    AuditOutcome,
    Fault,
    OffenceKind,
    count_rows,
    leaf_proof,
    reconcile,
    verify_audit,
    verify_proof,
)
from repp2p.digests.build import build_work
from repp2p.digests.check import check_leaf
from repp2p.digests.leaves import WorkLeaf, work_leaf
from repp2p.errors import RecordError
from repp2p.records import WorkDigest, WorkRow, refusal_message, sign
from repp2p.records.schema import FieldError, from_wire_array, to_wire_array, to_wire_map
from repp2p.testing import factories
from repp2p.testing.factories import far_future, task_records

from .helpers import (
    CLIENTS,
    EPOCH,
    NODES,
    NOW,
    feedback_part,
    flat,
    forge,
    refusal_of,
    refused_task,
)

NODE, CLIENT = NODES[0], CLIENTS[0]


def _mixed():
    """Three delivered tasks, one timed out and two refused, all of CLIENT on NODE."""
    tasks = [task_records(CLIENT, NODE, EPOCH, f"d{i}") for i in range(3)]
    tasks.append(task_records(CLIENT, NODE, EPOCH, "t0", delivered=False, outcome="timeout"))
    refused = [refused_task(CLIENT, NODE, EPOCH, f"r{i}") for i in range(2)]
    records = flat(tasks) + [r for t, refusal in refused for r in (*t.all(), refusal)]
    return tasks, refused, records


def test_a_row_and_a_leaf_without_refusals_encode_as_before():
    row = WorkRow(client=CLIENT.peer_id, claims=2, receipts=1, timeouts=1, failures=0)
    assert len(to_wire_array(row)) == 5  # client, claims, receipts, timeouts, failures
    t = task_records(CLIENT, NODE, EPOCH, "plain")
    leaf = work_leaf(t.offer, t.claim, t.receipt, "done")
    assert "refusal_id" not in to_wire_map(leaf)
    with_refusal = WorkRow(
        client=CLIENT.peer_id, claims=3, receipts=1, timeouts=1, failures=0, refused=1
    )
    # refused is the seventh item, after offset (spelled out as 0 before it)
    assert to_wire_array(with_refusal)[5:] == [0, 1]
    assert from_wire_array(WorkRow, to_wire_array(with_refusal)) == with_refusal
    assert with_refusal.counts() == (1, 1, 0, 1)
    with pytest.raises(FieldError):  # one spelling per value: 0 is left out
        from_wire_array(WorkRow, [*to_wire_array(row), 0, 0])
    with pytest.raises(RecordError):  # claims must add up with the refused ones
        WorkRow(client=CLIENT.peer_id, claims=2, receipts=1, timeouts=1, failures=0, refused=1)


def test_a_refused_leaf_names_its_refusal_and_no_other_does():
    t, refusal = refused_task(CLIENT, NODE, EPOCH, "x")
    leaf = work_leaf(t.offer, t.claim, None, "refused", refusal=refusal)
    assert leaf.refusal_id == refusal.record_id
    body = dataclasses.asdict(leaf)
    with pytest.raises(ValueError):
        WorkLeaf(**dict(body, refusal_id=b""))
    with pytest.raises(ValueError):
        WorkLeaf(**dict(body, outcome="failed"))


def test_build_counts_refused_tasks_and_carries_their_refusals_as_evidence():
    _, refused, records = _mixed()
    (part,) = build_work(NODE.peer_id, records, EPOCH, expires=far_future())
    (row,) = part.digest.rows
    assert (row.claims, row.receipts, row.timeouts, row.failures, row.refused) == (6, 3, 1, 0, 2)
    refusal_ids = {r.record_id for _, r in refused}
    leaves = [leaf for leaf in part.leaves if leaf.outcome == "refused"]
    assert {leaf.refusal_id for leaf in leaves} == refusal_ids
    signed = sign(part.digest, NODE)
    for i, leaf in enumerate(part.leaves):
        check = check_leaf(signed, i, leaf, part.evidence[i])
        assert check.clean and not check.missing, (i, check)
        if leaf.outcome == "refused":
            assert leaf.refusal_id in {r.record_id for r in part.evidence[i]}
            # the audit answer carries the Refusal and passes
            verdict = verify_audit(signed, i, leaf_proof(part, signed.record_id, i).encode())
            assert verdict.outcome is AuditOutcome.PASS, verdict
    # without the refusals the same tasks are timeouts, as before
    plain = [r for r in records if r.record_id not in refusal_ids]
    (part2,) = build_work(NODE.peer_id, plain, EPOCH, expires=far_future())
    (row2,) = part2.digest.rows
    assert (row2.timeouts, row2.refused) == (3, 0)


def test_a_refused_leaf_whose_refusal_is_forged_or_withheld_fails_its_audit():
    t, _ = refused_task(CLIENT, NODE, EPOCH, "forged")
    forged = refusal_of(t, CLIENT, NODE, enclave=nacl.signing.SigningKey(b"\x07" * 32))
    leaf = work_leaf(t.offer, t.claim, None, "refused", refusal=forged)
    part = forge(WorkDigest, [leaf], [(t.offer, t.claim, forged)])
    signed = sign(part.digest, NODE)
    verdict = verify_audit(signed, 0, leaf_proof(part, signed.record_id, 0).encode())
    assert verdict.outcome is AuditOutcome.OFFENCE and Fault.BAD_REFUSAL in verdict.faults
    offence = verify_proof(verdict.proof, NOW)
    assert offence.kind is OffenceKind.INCONSISTENCY and Fault.BAD_REFUSAL in offence.faults
    # a refused leaf served without its Refusal is unserved (the record is missing)
    bare = forge(WorkDigest, [leaf], [(t.offer, t.claim)])
    signed = sign(bare.digest, NODE)
    verdict = verify_audit(signed, 0, leaf_proof(bare, signed.record_id, 0).encode())
    assert verdict.outcome is AuditOutcome.UNSERVED
    # a refusal of another client's task does not back the leaf
    _, other_refusal = refused_task(CLIENTS[1], NODE, EPOCH, "other")
    check = check_leaf(
        signed,
        0,
        dataclasses.replace(leaf, refusal_id=other_refusal.record_id),
        (t.offer, t.claim, other_refusal),
    )
    assert any(f is Fault.WRONG_RECORD for f, _ in check.faults)


def test_a_refused_leaf_whose_refusal_expires_before_its_offer_fails_its_audit():
    # Genuine signatures, an earlier expiry than the offer's: the refusal would leave the
    # stores while the leaf that names it is still audited.
    t, honest = refused_task(CLIENT, NODE, EPOCH, "early")
    unsigned = dataclasses.replace(honest.record, expires=t.offer.record.expires - 1)
    enclave = factories.enclave_key(NODE.peer_id)
    early = sign(
        dataclasses.replace(
            unsigned, enclave_sig=enclave.sign(refusal_message(unsigned)).signature
        ),
        NODE,
    )
    leaf = work_leaf(t.offer, t.claim, None, "refused", refusal=early)
    part = forge(WorkDigest, [leaf], [(t.offer, t.claim, early)])
    signed = sign(part.digest, NODE)
    verdict = verify_audit(signed, 0, leaf_proof(part, signed.record_id, 0).encode())
    assert verdict.outcome is AuditOutcome.OFFENCE and Fault.BAD_REFUSAL in verdict.faults
    assert "expires_early" in verdict.detail


def test_a_refused_leaf_hiding_a_receipt_is_caught():
    t = task_records(CLIENT, NODE, EPOCH, "hid")
    refusal = refusal_of(t, CLIENT, NODE)
    leaf = work_leaf(t.offer, t.claim, None, "refused", refusal=refusal)
    part = forge(WorkDigest, [leaf], [(t.offer, t.claim, refusal, t.receipt)])
    signed = sign(part.digest, NODE)
    check = check_leaf(signed, 0, leaf, (t.offer, t.claim, refusal, t.receipt))
    assert any(f is Fault.HIDDEN_RECEIPT for f, _ in check.faults)


def test_reconcile_keeps_verdicts_on_refused_tasks_off_the_node():
    tasks, refused, records = _mixed()
    # the client (wrongly) reports a timeout on a refused task as well
    t, _ = refused[0]
    blamed = task_records(CLIENT, NODE, EPOCH, "r0", delivered=False, outcome="timeout")
    assert blamed.offer.record_id == t.offer.record_id
    work = sign(build_work(NODE.peer_id, records, EPOCH, expires=far_future())[0].digest, NODE)
    fb = sign(feedback_part(CLIENT, [*tasks, blamed]).digest, CLIENT)
    (pair,) = reconcile([work, fb], EPOCH).pairs
    assert (pair.node_claims, pair.node_receipts, pair.node_refused) == (6, 3, 2)
    # one timeout is backed (the real one); the one on the refused task is disputed
    assert (pair.ok, pair.timeout, pair.disputed_client) == (3, 1, 1)
    assert pair.disputed_node == 0  # refused claims need no verdict of the client
    (row,) = count_rows(reconcile([work, fb], EPOCH))
    assert (row.node_claims, row.node_receipts, row.node_refused) == (6, 3, 2)


def test_a_pair_with_only_refused_tasks_still_gives_a_count_row():
    t, refusal = refused_task(CLIENT, NODE, EPOCH, "only")
    parts = build_work(NODE.peer_id, [*t.all(), refusal], EPOCH, expires=far_future())
    work = sign(parts[0].digest, NODE)
    (row,) = count_rows(reconcile([work], EPOCH))
    assert (row.node_claims, row.node_refused, row.counted, row.disputed_node) == (1, 1, 0, 0)
