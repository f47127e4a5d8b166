"""Builders: a party's digests from its records, deterministic, consistent, order-free."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repp2p.digests import (
    AuditOutcome,
    absence_brackets,
    build_feedback,
    build_work,
    feedback_digests,
    find_task,
    leaf_proof,
    verify_audit,
    work_digests,
)
from repp2p.digests.leaves import Layout, misplaced
from repp2p.digests.merkle import root_of, verify_inclusion
from repp2p.errors import DigestError
from repp2p.records import EMPTY_MERKLE_ROOT, FeedbackDigest, WorkDigest, part_of, sign
from repp2p.testing import factories
from repp2p.testing.factories import far_future, task_records

from .helpers import CLIENTS, EPOCH, NODES, flat, world

EXPIRES = far_future()


def _all_work(node, records, **kw):
    return build_work(node.peer_id, records, EPOCH, expires=EXPIRES, **kw)


def _all_feedback(client, records, **kw):
    return build_feedback(client.peer_id, records, EPOCH, expires=EXPIRES, **kw)


@settings(max_examples=15, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(0, 40))
def test_deterministic_and_order_independent(rng, tasks):
    records = flat(world(tasks, seed=tasks))
    shuffled = list(records)
    rng.shuffle(shuffled)
    doubled = shuffled + records[: len(records) // 2]  # duplicates change nothing either
    for node in NODES:
        a = work_digests(node.peer_id, records, EPOCH, expires=EXPIRES)
        assert a == work_digests(node.peer_id, doubled, EPOCH, expires=EXPIRES)
    for client in CLIENTS:
        a = feedback_digests(client.peer_id, records, EPOCH, expires=EXPIRES)
        assert a == feedback_digests(client.peer_id, doubled, EPOCH, expires=EXPIRES)


def test_rows_leaves_and_root_agree():
    tasks = world(60, seed=3)
    records = flat(tasks)
    for node in NODES:
        (part,) = _all_work(node, records)
        d = part.digest
        mine = [t for t in tasks if t.claim and t.claim.signer == node.peer_id]
        assert d.leaf_count == len(mine) == len(part.leaves)
        assert d.merkle_root == root_of([leaf.encode() for leaf in part.leaves]) == part.tree.root
        for row in d.rows:
            theirs = [t for t in mine if t.offer.signer == row.client]
            assert row.claims == len(theirs)
            assert row.receipts == sum(t.receipt is not None for t in theirs)
            assert row.timeouts == row.claims - row.receipts and row.failures == 0
        layout = Layout(d)
        for i, leaf in enumerate(part.leaves):
            assert misplaced(layout, i, leaf) is None
            verify_inclusion(part.tree.opening(i), d.leaf_count, d.merkle_root)
    for client in CLIENTS:
        (part,) = _all_feedback(client, records)
        d = part.digest
        given = [t for t in tasks if t.offer.signer == client.peer_id and t.feedback]
        assert d.leaf_count == len(given)
        for row in d.rows:
            on = [t.feedback.record for t in given if t.feedback.record.node == row.node]
            assert row.counts() == tuple(
                sum(f.outcome == o for f in on) for o in ("ok", "wrong", "timeout", "bad_proof")
            )
            assert row.latency_sum_ms == sum(f.latency_ms for f in on)


def test_every_leaf_of_an_honest_part_passes_its_audit():
    records = flat(world(40, seed=5))
    for who, parts in [(n, _all_work(n, records)) for n in NODES] + [
        (c, _all_feedback(c, records)) for c in CLIENTS
    ]:
        (part,) = parts
        signed = sign(part.digest, who)
        for i in range(part.digest.leaf_count):
            response = leaf_proof(part, signed.record_id, i).encode()
            assert verify_audit(signed, i, response).outcome is AuditOutcome.PASS


def test_failed_and_timeout_outcomes_and_other_epochs():
    node, client = NODES[0], CLIENTS[0]
    done = task_records(client, node, EPOCH, "done")
    lost = task_records(client, node, EPOCH, "lost", delivered=False, outcome="timeout")
    broke = task_records(client, node, EPOCH, "broke", delivered=False, outcome="timeout")
    later = task_records(client, node, EPOCH + 1, "later")
    records = flat([done, lost, broke, later])
    (part,) = _all_work(node, records, failed={broke.offer.record.task_id})
    (row,) = part.digest.rows
    assert (row.claims, row.receipts, row.timeouts, row.failures) == (3, 1, 1, 1)
    (next_part,) = build_work(node.peer_id, records, EPOCH + 1, expires=EXPIRES)
    assert next_part.digest.leaf_count == 1


def test_nothing_to_report_is_one_empty_part():
    (part,) = _all_work(NODES[0], [])
    assert part.digest == WorkDigest(
        epoch=EPOCH,
        part=0,
        parts=1,
        rows=(),
        leaf_count=0,
        merkle_root=EMPTY_MERKLE_ROOT,
        seq=0,
        expires=EXPIRES,
    )
    (fpart,) = _all_feedback(CLIENTS[0], [])
    assert isinstance(fpart.digest, FeedbackDigest) and fpart.digest.leaf_count == 0


def test_a_busy_node_splits_into_parts():
    node = NODES[0]
    clients = [factories.identity(f"many-{i}") for i in range(23)]
    tasks = [task_records(c, node, EPOCH, f"m{i}") for i, c in enumerate(clients)]
    parts = _all_work(node, flat(tasks), max_rows=4)
    assert len(parts) >= 6
    seen = []
    for part in parts:
        d = part.digest
        assert d.parts == len(parts) and len(d.rows) <= 4
        assert all(part_of(r.client, d.parts) == d.part for r in d.rows)
        seen += [r.client for r in d.rows]
    assert sorted(seen) == sorted(c.peer_id for c in clients)
    # The fewest parts that fit: one part fewer would overflow some part.
    fewer = len(parts) - 1
    sizes = [sum(part_of(c.peer_id, fewer) == p for c in clients) for p in range(fewer)]
    assert max(sizes) > 4


def test_bad_inputs_are_digest_errors():
    node, client = NODES[0], CLIENTS[0]
    t = task_records(client, node, EPOCH, "t")
    with pytest.raises(DigestError):  # the claim names an offer the node does not hold
        _all_work(node, [t.claim, t.receipt])
    with pytest.raises(DigestError):  # a receipt of the epoch without its claim
        _all_work(node, [t.offer, t.receipt])
    other = task_records(client, node, EPOCH, "other")
    stray = sign(dataclasses.replace(t.receipt.record, offer_id=other.offer.record_id), node)
    with pytest.raises(DigestError):  # the task's receipt names another offer than its claim
        _all_work(node, [t.offer, t.claim, stray, other.offer])
    with pytest.raises(DigestError):  # feedback on a task without an offer
        _all_feedback(client, [t.feedback])
    with pytest.raises(ValueError):
        _all_work(node, flat([t]), max_rows=0)


def test_find_task_and_absence_brackets():
    tasks = world(30, seed=9)
    node = NODES[1]
    (part,) = _all_work(node, flat(tasks))
    for t in tasks:
        client = t.offer.signer
        index = find_task(part, client, t.offer.record.task_id)
        if t.claim and t.claim.signer == node.peer_id:
            assert index is not None and part.leaves[index].task_id == t.offer.record.task_id
            with pytest.raises(KeyError):
                absence_brackets(part, client, t.offer.record.task_id)
        else:
            assert index is None
            brackets = absence_brackets(part, client, t.offer.record.task_id)
            assert len(brackets) == len(Layout(part.digest).of_peer(client))


def test_latest_record_of_a_slot_is_the_one_summarised():
    node, client = NODES[0], CLIENTS[0]
    t = task_records(client, node, EPOCH, "t", outcome="ok")
    fb2 = sign(dataclasses.replace(t.feedback.record, seq=2, outcome="wrong"), client)
    records = [*t.all(), fb2]
    random.Random(1).shuffle(records)
    (part,) = _all_feedback(client, records)
    (leaf,) = part.leaves
    assert leaf.feedback_id == fb2.record_id and leaf.outcome == "wrong"
