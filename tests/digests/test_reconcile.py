"""Double entry: the counts both sides support, lying clients, lying nodes, silence."""

from __future__ import annotations

import dataclasses
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from repp2p.digests import build_feedback, build_work, count_pair, reconcile
from repp2p.records import (
    EMPTY_MERKLE_ROOT,
    FeedbackDigest,
    FeedbackRow,
    WorkDigest,
    WorkRow,
    part_of,
    sign,
)
from repp2p.testing import factories
from repp2p.testing.factories import far_future

from .helpers import CLIENTS, EPOCH, NODES, flat, world

EXPIRES = far_future()


def _signed_digests(records, *, nodes=NODES, clients=CLIENTS, epoch=EPOCH):
    out = []
    for n in nodes:
        out += [sign(p.digest, n) for p in build_work(n.peer_id, records, epoch, expires=EXPIRES)]
    for c in clients:
        out += [
            sign(p.digest, c) for p in build_feedback(c.peer_id, records, epoch, expires=EXPIRES)
        ]
    return out


def _digest(cls, who, rows, *, parts=1, part=0, epoch=EPOCH):
    total = sum(r.claims if cls is WorkDigest else r.total for r in rows)
    return sign(
        cls(
            epoch=epoch,
            part=part,
            parts=parts,
            rows=tuple(sorted(rows, key=lambda r: r.peer)),
            leaf_count=total,
            merkle_root=factories.digest(f"root/{part}") if total else EMPTY_MERKLE_ROOT,
            seq=0,
            expires=EXPIRES,
        ),
        who,
    )


def _w(client, r=0, t=0, f=0):
    return WorkRow(client=client.peer_id, claims=r + t + f, receipts=r, timeouts=t, failures=f)


def _f(node, ok=0, wrong=0, timeout=0, bad=0, latency=0):
    return FeedbackRow(
        node=node.peer_id,
        ok=ok,
        wrong=wrong,
        timeout=timeout,
        bad_proof=bad,
        latency_sum_ms=latency,
    )


def _pair(result, client, node):
    (row,) = [p for p in result.pairs if p.client == client.peer_id and p.node == node.peer_id]
    return row


def test_an_honest_epoch_counts_every_verdict():
    tasks = world(80, seed=11)
    result = reconcile(_signed_digests(flat(tasks)), EPOCH)
    assert result.conflicted == ()
    for row in result.pairs:
        between = [t for t in tasks if t.offer.signer == row.client and t.claim.signer == row.node]
        rated = [t.feedback.record for t in between if t.feedback]
        assert row.node_covered and row.client_covered
        assert row.disputed_client == 0
        assert row.disputed_node == len(between) - len(rated)  # tasks left without feedback
        assert (row.ok, row.wrong, row.timeout, row.bad_proof) == tuple(
            sum(f.outcome == o for f in rated) for o in ("ok", "wrong", "timeout", "bad_proof")
        )
        assert row.latency_sum_ms == sum(f.latency_ms for f in rated)
    assert {(p.client, p.node) for p in result.pairs} == {
        (t.offer.signer, t.claim.signer) for t in tasks
    }


def test_order_and_duplicates_do_not_matter():
    digests = _signed_digests(flat(world(40, seed=2)))
    base = reconcile(digests, EPOCH)
    rng = random.Random(4)
    for _ in range(5):
        again = digests + digests[:3]
        rng.shuffle(again)
        assert reconcile(again, EPOCH) == base


def test_a_lying_client_gets_no_credit_for_work_the_node_does_not_report():
    node, client = NODES[0], CLIENTS[0]
    digests = [
        _digest(WorkDigest, node, [_w(client, r=3, t=1)]),
        # 10 ok claimed against 3 receipts, and 2 timeouts against 1 undelivered claim
        _digest(FeedbackDigest, client, [_f(node, ok=10, timeout=2, latency=1200)]),
    ]
    row = _pair(reconcile(digests, EPOCH), client, node)
    assert (row.ok, row.timeout) == (3, 1)
    assert row.disputed_client == 12 - 4 and row.disputed_node == 0
    assert row.latency_sum_ms == 1200 * 4 // 12


def test_a_slandering_client_cannot_rate_tasks_that_never_happened():
    node, client, other = NODES[0], CLIENTS[0], CLIENTS[1]
    digests = [
        _digest(WorkDigest, node, [_w(other, r=2)]),  # the node served someone else only
        _digest(FeedbackDigest, client, [_f(node, wrong=5, timeout=5, bad=5)]),
    ]
    row = _pair(reconcile(digests, EPOCH), client, node)
    assert row.node_covered and row.counted == 0 and row.disputed_client == 15
    # Wrong verdicts are capped by delivered results, timeouts by claims.
    digests[0] = _digest(WorkDigest, node, [_w(client, r=1, t=2)])
    row = _pair(reconcile(digests, EPOCH), client, node)
    assert (row.wrong, row.bad_proof, row.timeout, row.ok) == (1, 0, 2, 0)


def test_a_lying_node_gains_nothing_by_over_reporting():
    node, client = NODES[0], CLIENTS[0]
    client_row = _f(node, ok=4, wrong=1)
    honest = _pair(
        reconcile(
            [
                _digest(WorkDigest, node, [_w(client, r=5)]),
                _digest(FeedbackDigest, client, [client_row]),
            ],
            EPOCH,
        ),
        client,
        node,
    )
    inflated = _pair(
        reconcile(
            [
                _digest(WorkDigest, node, [_w(client, r=50, t=9)]),
                _digest(FeedbackDigest, client, [client_row]),
            ],
            EPOCH,
        ),
        client,
        node,
    )
    assert (inflated.ok, inflated.wrong) == (honest.ok, honest.wrong) == (4, 1)
    assert inflated.disputed_node == 59 - 5


@settings(max_examples=300, deadline=None)
@given(
    ok=st.integers(0, 20),
    wrong=st.integers(0, 20),
    bad=st.integers(0, 20),
    timeout=st.integers(0, 20),
    lost=st.integers(0, 5),
    hide=st.integers(0, 60),
)
def test_hiding_receipts_costs_ok_before_any_negative_verdict(ok, wrong, bad, timeout, lost, hide):
    # The truth: the node delivered ok + wrong + bad results (plus `lost` the client saw
    # time out) and let `timeout` run out; the client reports exactly that.
    receipts = ok + wrong + bad + lost
    claims = receipts + timeout
    client = (
        FeedbackRow(
            node=NODES[0].peer_id,
            ok=ok,
            wrong=wrong,
            timeout=timeout + lost,
            bad_proof=bad,
            latency_sum_ms=0,
        )
        if ok + wrong + bad + timeout + lost
        else None
    )
    true_row = (
        WorkRow(
            client=CLIENTS[0].peer_id,
            claims=claims,
            receipts=receipts,
            timeouts=timeout,
            failures=0,
        )
        if claims
        else None
    )
    honest = count_pair(true_row, client)
    assert honest == (ok, wrong, timeout + lost, bad)
    # The node reports `d` of its receipts as timeouts instead (claims unchanged).
    d = min(hide, receipts)
    if claims:
        lied = WorkRow(
            client=CLIENTS[0].peer_id,
            claims=claims,
            receipts=receipts - d,
            timeouts=timeout + d,
            failures=0,
        )
        c_ok, c_wrong, _, c_bad = count_pair(lied, client)
        assert c_ok == max(0, ok - max(0, d - lost))  # every hidden receipt past the lost ones
        if d <= ok + lost:  # ...costs an ok first; the negative verdicts all still count
            assert (c_wrong, c_bad) == (wrong, bad)
        assert c_ok + c_wrong + c_bad <= receipts - d


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=8, max_size=8), st.integers(0, 10**6))
def test_counted_never_exceeds_either_side(n, latency):
    r, t, f = n[0], n[1], n[2]
    work = (
        WorkRow(client=CLIENTS[0].peer_id, claims=r + t + f, receipts=r, timeouts=t, failures=f)
        if r + t + f
        else None
    )
    ok, wrong, timeout, bad = n[3:7]
    total = ok + wrong + timeout + bad
    fb = (
        FeedbackRow(
            node=NODES[0].peer_id,
            ok=ok,
            wrong=wrong,
            timeout=timeout,
            bad_proof=bad,
            latency_sum_ms=min(latency, total * 1000),
        )
        if total
        else None
    )
    c_ok, c_wrong, c_timeout, c_bad = count_pair(work, fb)
    assert 0 <= c_ok <= ok and 0 <= c_wrong <= wrong and 0 <= c_timeout <= timeout
    assert 0 <= c_bad <= bad
    assert c_ok + c_wrong + c_bad <= r
    assert c_ok + c_wrong + c_bad + c_timeout <= r + t + f
    # Symmetric fairness: when both sides agree exactly, everything counts.
    if work and fb and r == ok + wrong + bad and t + f == timeout:
        assert (c_ok, c_wrong, c_timeout, c_bad) == (ok, wrong, timeout, bad)


def test_silence_supports_nothing():
    node, client = NODES[0], CLIENTS[0]
    only_node = reconcile([_digest(WorkDigest, node, [_w(client, r=3)])], EPOCH)
    row = _pair(only_node, client, node)
    assert (row.node_covered, row.client_covered) == (True, False)
    assert row.counted == 0 and row.disputed_node == 3 and row.disputed_client == 0
    only_client = reconcile([_digest(FeedbackDigest, client, [_f(node, ok=2)])], EPOCH)
    row = _pair(only_client, client, node)
    assert (row.node_covered, row.client_covered) == (False, True)
    assert row.counted == 0 and row.disputed_client == 2


def test_a_missing_part_leaves_its_counterparties_uncovered():
    node = NODES[0]
    clients = [factories.identity(f"split-{i}") for i in range(12)]
    in_part_1 = [c for c in clients if part_of(c.peer_id, 2) == 1]
    in_part_0 = [c for c in clients if part_of(c.peer_id, 2) == 0]
    assert in_part_0 and in_part_1
    digests = [_digest(WorkDigest, node, [_w(c, r=1) for c in in_part_0], parts=2, part=0)]
    digests += [_digest(FeedbackDigest, c, [_f(node, ok=1)]) for c in clients]
    result = reconcile(digests, EPOCH)
    for c in in_part_0:
        assert _pair(result, c, node).ok == 1
    for c in in_part_1:
        row = _pair(result, c, node)
        assert not row.node_covered and row.ok == 0 and row.disputed_client == 1


def test_conflicting_splits_make_the_signer_silent_and_are_listed():
    node, client = NODES[0], CLIENTS[0]
    p2 = part_of(client.peer_id, 2)
    digests = [
        _digest(WorkDigest, node, [_w(client, r=2)], parts=1, part=0),
        _digest(WorkDigest, node, [_w(client, r=2)], parts=2, part=p2),
        _digest(FeedbackDigest, client, [_f(node, ok=2)]),
    ]
    result = reconcile(digests, EPOCH)
    assert result.conflicted == ((node.peer_id, "WorkDigest"),)
    row = _pair(result, client, node)
    assert not row.node_covered and row.ok == 0


def test_an_equivocated_slot_resolves_like_the_store():
    node, client = NODES[0], CLIENTS[0]
    a = _digest(WorkDigest, node, [_w(client, r=1)])
    b = _digest(WorkDigest, node, [_w(client, r=4)])
    fb = _digest(FeedbackDigest, client, [_f(node, ok=4)])
    expect = 1 if a.record_id < b.record_id else 4  # the smaller record ID stays current
    for order in ([a, b, fb], [fb, b, a]):
        assert _pair(reconcile(order, EPOCH), client, node).ok == expect


def test_other_epochs_and_types_are_ignored():
    node, client = NODES[0], CLIENTS[0]
    digests = [
        _digest(WorkDigest, node, [_w(client, r=1)], epoch=EPOCH + 1),
        _digest(FeedbackDigest, client, [_f(node, ok=1)], epoch=EPOCH + 1),
        sign(factories.sample_records()[2], node),  # a heartbeat
    ]
    assert reconcile(digests, EPOCH).pairs == ()
    assert len(reconcile(digests, EPOCH + 1).pairs) == 1
    assert dataclasses.asdict(reconcile([], EPOCH)) == {
        "epoch": EPOCH,
        "pairs": (),
        "conflicted": (),
    }
