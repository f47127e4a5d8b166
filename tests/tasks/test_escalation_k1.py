"""Live escalation at k = 1 (repp2p.tasks.escalation): the client's signed ``wrong``
verdict backs a replica request for a task that has one receipt; what the node checks
(credibility on the offer's view, the receipts, the verdict) and how the client's plan runs
on it."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repp2p.records import sign
from repp2p.tasks import (
    MAX_VERDICT_SIZE,
    ErrorCode,
    EscalationPlan,
    Reject,
    Vote,
    check_credibility,
    check_dispute,
    check_verdict,
    check_verdict_claims,
    check_verdict_lifetime,
    client_credibility,
    contested_expiry,
    replica_rank,
)
from tests.tasks import helpers as h
from tests.tasks.test_escalation import NODES, RULE, receipt, result_key_of

A, B, C, D = "node-a", "node-b", "node-c", "node-d"


# -- the client's plan: contested, one output --------------------------------------------------


def test_a_contested_k1_task_is_escalated_though_its_votes_agree():
    ranking = (A, B, C, D)
    st_ = dict.fromkeys(ranking, 0.8)
    # without the client's verdict one answer disputes nothing
    plain = EscalationPlan(ranking, [Vote(A, b"bad")], st_, max_replicas=6, **RULE, tried=(A,))
    assert plain.next_replica() is None
    p = EscalationPlan(
        ranking, [Vote(A, b"bad")], st_, max_replicas=6, **RULE, tried=(A,), contested=True
    )
    assert p.next_replica() == (1, B)
    p.on_replica(B, b"good")  # 1 to 1: undecided
    assert p.verdict() is None
    assert p.next_replica() == (2, C)
    p.on_replica(C, b"good")
    assert p.next_replica() == (3, D)
    p.on_replica(D, b"good")  # 3 to 1 of equal standing: confident
    assert p.verdict() == b"good"
    assert p.next_replica() is None
    assert p.asked == (B, C, D)


def test_replicas_that_agree_with_the_first_node_uphold_it():
    ranking = (A, B, C, D)
    p = EscalationPlan(
        ranking,
        [Vote(A, b"same")],
        dict.fromkeys(ranking, 0.8),
        max_replicas=6,
        **RULE,
        tried=(A,),
        contested=True,
    )
    while (step := p.next_replica()) is not None:
        p.on_replica(step[1], b"same")
    # the client's verdict is not a vote: unanimous replicas uphold the node's output
    assert p.verdict() == b"same"


# -- the node: credibility -------------------------------------------------------------------


def table(peers, cred):
    peers = tuple(sorted(peers))

    def index(peer):
        if peer not in peers:
            raise KeyError(peer)
        return peers.index(peer)

    return SimpleNamespace(
        peers=peers, client_credibility=None if cred is None else np.array(cred), index=index
    )


def test_client_credibility_reads_the_view_and_is_one_for_a_stranger():
    t = table(["c1", "c2"], [0.25, 0.9])
    assert client_credibility(t, "c1") == 0.25
    assert client_credibility(t, "c2") == 0.9
    # no refuted verdict on record: the formula's 1.0
    assert client_credibility(t, "c3") == 1.0
    assert client_credibility(table(["c1"], None), "c1") == 1.0


@pytest.mark.parametrize(
    ("cred", "bar", "ok"),
    [(1.0, 1000, True), (0.5, 500, True), (0.4999, 500, False), (0.0, 0, True), (0.1, 101, False)],
)
def test_check_credibility_is_the_simulators_rule(cred, bar, ok):
    got = check_credibility(cred, bar)
    assert (got is None) is ok
    assert (cred * 1000.0 >= bar) is ok  # repp2p.sim.simulation's may_dispute
    if not ok:
        assert got.code is ErrorCode.LOW_CREDIBILITY and str(bar) in got.detail


# -- the node: receipts and verdict ------------------------------------------------------------


def one_receipt(of):
    return [receipt(of, NODES[0], "bad").data]


def contested(envelopes, of):
    return check_dispute(
        envelopes,
        of,
        now_ms=h.NOW_MS,
        may_have_run={n.peer_id for n in NODES},
        result_key_of=result_key_of,
        contested=True,
    )


def test_one_receipt_is_a_contested_dispute_and_agreeing_receipts_too():
    of = h.offer(k=1)
    got = contested(one_receipt(of), of)
    assert not isinstance(got, Reject) and [s.signer for s in got] == [NODES[0].peer_id]
    same = [receipt(of, n, "same").data for n in NODES[:2]]
    assert not isinstance(contested(same, of), Reject)
    # not contested: one receipt or agreeing ones are still refused
    plain = check_dispute(
        same,
        of,
        now_ms=h.NOW_MS,
        may_have_run={n.peer_id for n in NODES},
        result_key_of=result_key_of,
    )
    assert isinstance(plain, Reject) and plain.code is ErrorCode.BAD_DISPUTE
    # still at least one, and each checked as before
    none = contested([], of)
    assert isinstance(none, Reject) and none.code is ErrorCode.BAD_DISPUTE
    stranger = contested([receipt(of, h.STRANGER, "bad").data], of)
    assert isinstance(stranger, Reject) and "no rank" in stranger.detail


def verdict_on(of, receipts, data):
    return check_verdict(data, of, receipts, now_ms=h.NOW_MS)


def test_the_owners_wrong_verdict_on_the_node_admits():
    of = h.offer(k=1)
    receipts = contested(one_receipt(of), of)
    fb = h.feedback(of, NODES[0].peer_id, "wrong")
    got = verdict_on(of, receipts, fb.data)
    assert not isinstance(got, Reject) and got.record_id == fb.record_id


def bad_verdict(got, words):
    assert isinstance(got, Reject) and got.code is ErrorCode.BAD_VERDICT, got
    assert words in got.detail, got.detail


def test_hostile_verdicts_are_refused_with_bad_verdict():
    of = h.offer(k=1)
    receipts = contested(one_receipt(of), of)
    node = NODES[0].peer_id
    # forged: signed by someone else than the offer's owner
    bad_verdict(
        verdict_on(of, receipts, h.feedback(of, node, "wrong", signer=h.OTHER_CLIENT).data),
        "owner",
    )
    # on another task
    other = h.feedback(of, node, "wrong", task_id=h.digest("another task"))
    bad_verdict(verdict_on(of, receipts, other.data), "another task")
    # on another node (one without a carried receipt)
    bad_verdict(
        verdict_on(of, receipts, h.feedback(of, NODES[1].peer_id, "wrong").data), "no carried"
    )
    # an ok verdict (or a release) disputes nothing
    bad_verdict(verdict_on(of, receipts, h.feedback(of, node, "ok").data), "disputes nothing")
    bad_verdict(verdict_on(of, receipts, h.feedback(of, node, "timeout").data), "disputes nothing")
    # not a feedback, garbage, oversize
    bad_verdict(verdict_on(of, receipts, of.data), "not a verdict")
    bad_verdict(verdict_on(of, receipts, b"\x00garbage"), "verdict:")
    bad_verdict(verdict_on(of, receipts, b"\xa0" * (MAX_VERDICT_SIZE + 1)), "at most")
    # expired
    late = check_verdict(
        h.feedback(of, node, "wrong").data, of, receipts, now_ms=(of.record.expires + 1) * 1000
    )
    bad_verdict(late, "verdict:")


def test_a_verdict_never_backs_a_k2_task():
    of = h.offer(k=2)
    receipts = contested([receipt(of, n, "same").data for n in NODES[:2]], of)
    got = verdict_on(of, receipts, h.feedback(of, NODES[0].peer_id, "wrong").data)
    bad_verdict(got, "k = 1")


def test_the_replica_window_is_the_same_as_for_k2():
    esc = [n.peer_id for n in NODES]
    # the first node ran it; the next max_replicas nodes may be replicas
    assert replica_rank(esc, esc[1], {esc[0]}, 2) == 1
    assert replica_rank(esc, esc[2], {esc[0]}, 2) == 2
    got = replica_rank(esc, esc[3], {esc[0]}, 2)
    assert isinstance(got, Reject) and got.code is ErrorCode.NOT_ASSIGNED


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=MAX_VERDICT_SIZE + 8))
def test_any_verdict_bytes_are_a_typed_answer_never_a_crash(data):
    of = h.offer(k=1)
    receipts = contested(one_receipt(of), of)
    got = check_verdict(data, of, receipts, now_ms=h.NOW_MS)
    assert isinstance(got, Reject) and got.code is ErrorCode.BAD_VERDICT


# -- the node: the carried receipts' claims (the replica publishes the proof with them) ------


def claims_on(of, receipts, envelopes, now_ms=h.NOW_MS):
    return check_verdict_claims(envelopes, of, receipts, now_ms=now_ms)


def test_the_claims_of_the_carried_receipts_admit():
    of = h.offer(k=1)
    receipts = contested([receipt(of, n, "same").data for n in NODES[:2]], of)
    claims = [h.claim(of, n, 0) for n in NODES[:2]]
    got = claims_on(of, receipts, [c.data for c in claims])
    assert not isinstance(got, Reject)
    assert [c.record_id for c in got] == [c.record_id for c in claims]


def short_claim(of, node):
    """``node``'s claim on ``of`` expiring a second before the offer (no honest node's)."""
    honest = h.claim(of, node, 0)
    return sign(dataclasses.replace(honest.record, expires=of.record.expires - 1), node)


def test_hostile_claims_are_refused_with_bad_dispute():
    of = h.offer(k=1)
    receipts = contested([receipt(of, n, "same").data for n in NODES[:2]], of)
    good = [h.claim(of, n, 0).data for n in NODES[:2]]
    other = h.offer(k=1, deadline_ms=h.NOW_MS + 61_000)  # another offer of the task
    cases = {
        "missing": ([], "one claim per receipt"),
        "one short": (good[:1], "one claim per receipt"),
        "swapped": (good[::-1], "in their order"),
        "another node": ([good[0], h.claim(of, NODES[2], 0).data], "in their order"),
        "another offer": ([good[0], h.claim(other, NODES[1], 0).data], "another task"),
        "not a claim": ([good[0], receipts[1].data], "not a claim"),
        "garbage": ([good[0], b"\x00garbage"], "claim:"),
        "expires early": ([good[0], short_claim(of, NODES[1]).data], "before its offer"),
    }
    for name, (envelopes, words) in cases.items():
        got = claims_on(of, receipts, envelopes)
        assert isinstance(got, Reject) and got.code is ErrorCode.BAD_DISPUTE, name
        assert words in got.detail, (name, got.detail)
    late = claims_on(of, receipts, good, now_ms=(of.record.expires + 1) * 1000)
    assert isinstance(late, Reject) and late.code is ErrorCode.BAD_DISPUTE


# -- how long a contested task's records live ----------------------------------------------


def test_a_verdict_must_live_until_the_last_view_that_can_count_it():
    """The proof counts from its count epoch (at most ``dispute_lag`` after the offer's)
    for ``window_epochs`` views, and views drop expired records: a replica admits the
    verdict only if it and the offer live that long, else the client would choose when its
    refutation ends."""
    lags = {"epoch_s": h.EPOCH_S, "window_epochs": 168, "dispute_lag": 5}
    epoch = h.CURRENT_EPOCH
    last = contested_expiry(epoch, **lags)
    assert last == (epoch + 5 + 168) * h.EPOCH_S
    node = NODES[0].peer_id
    long_ = h.offer(k=1, expires=last)
    receipts = contested(one_receipt(long_), long_)
    fb = h.feedback(long_, node, "wrong")
    assert not isinstance(verdict_on(long_, receipts, fb.data), Reject)
    assert check_verdict_lifetime(long_, fb, **lags) is None
    # the verdict expires a second early: refused, typed
    short_fb = h.feedback(long_, node, "wrong", expires=last - 1)
    assert not isinstance(verdict_on(long_, receipts, short_fb.data), Reject)  # live now
    bad_verdict(check_verdict_lifetime(long_, short_fb, **lags), "the verdict expires")
    # the offer (and so every record inheriting its expiry) too short
    short = h.offer(k=1, expires=last - 1)
    fb_ok_expiry = h.feedback(short, node, "wrong", expires=last)
    bad_verdict(check_verdict_lifetime(short, fb_ok_expiry, **lags), "the offer expires")
