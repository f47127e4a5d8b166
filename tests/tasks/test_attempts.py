"""The client's attempt planner: lanes, declines, budgets, the deadline, and the vote."""

from __future__ import annotations

import pytest

from repp2p.matching import MatchingParams
from repp2p.net.task import ERRORS
from repp2p.records import OUTCOMES
from repp2p.tasks import (
    ATTEMPT_BUDGET_MS,
    DECLINES,
    MIN_ATTEMPT_MS,
    Answer,
    Attempt,
    AttemptPlan,
    ErrorCode,
    LaneDone,
    NoVerdict,
    NoVerdictReason,
    Outcome,
    PlanError,
    Release,
    Skip,
    Verdict,
    attempt_budget_ms,
)

P = MatchingParams()  # claim_timeout_ms 2000
T = P.claim_timeout_ms
RANKING = tuple(f"peer-{i}" for i in range(10))
NOW = 1_000_000
DEADLINE = NOW + 120_000


def plan(k: int = 1, ranking=RANKING, deadline_ms: int = DEADLINE) -> AttemptPlan:
    return AttemptPlan(ranking, k, deadline_ms=deadline_ms, params=P)


# -- tables ----------------------------------------------------------------------------------


def test_error_codes_are_the_wire_codes():
    assert {c.value for c in ErrorCode} == ERRORS


def test_outcomes_are_the_record_outcomes():
    assert {o.value for o in Outcome} == OUTCOMES


def test_decline_table_is_complete_and_releases_only_after_a_claim():
    assert set(DECLINES) == set(ErrorCode)
    releasing = {c for c, o in DECLINES.items() if o is not None}
    assert releasing == {ErrorCode.EXECUTION_FAILED, ErrorCode.REPLAYED}
    assert all(DECLINES[c] is Outcome.TIMEOUT for c in releasing)
    with pytest.raises(TypeError):
        DECLINES[ErrorCode.BAD_OFFER] = Outcome.TIMEOUT  # type: ignore[index]


# -- the budget rule -------------------------------------------------------------------------


def test_budget_first_k_ranks_get_one_execution():
    for r in range(3):
        got = attempt_budget_ms(r, 3, sent_ms=NOW, deadline_ms=DEADLINE, params=P)
        assert got == ATTEMPT_BUDGET_MS


def test_budget_later_ranks_get_their_wait_plus_one_execution():
    for k in (1, 2, 3):
        for r in range(k, k + 4):
            got = attempt_budget_ms(r, k, sent_ms=NOW, deadline_ms=DEADLINE, params=P)
            assert got == (r - k + 1) * T + ATTEMPT_BUDGET_MS


def test_budget_never_past_the_deadline():
    got = attempt_budget_ms(5, 1, sent_ms=NOW, deadline_ms=NOW + 12_345, params=P)
    assert MIN_ATTEMPT_MS <= got <= 12_345
    last = attempt_budget_ms(5, 1, sent_ms=NOW, deadline_ms=NOW + 12_345, params=P, last=True)
    assert last == 12_345


def test_budget_leaves_time_for_failover():
    """A rank that is not the last gets at most half of what is left after its turn (a
    stalled rank 0 once took the whole deadline of a short task); the last gets it all."""
    for timeout in (1_000, 10_000, ATTEMPT_BUDGET_MS, 2 * ATTEMPT_BUDGET_MS):
        got = attempt_budget_ms(0, 1, sent_ms=NOW, deadline_ms=NOW + timeout, params=P)
        assert got == min(ATTEMPT_BUDGET_MS, timeout // 2)
        last = attempt_budget_ms(0, 1, sent_ms=NOW, deadline_ms=NOW + timeout, params=P, last=True)
        assert last == timeout


@pytest.mark.parametrize("left", [-5_000, -1, 0, 1, 99, 100, 101, 250])
def test_budget_floor(left):
    got = attempt_budget_ms(0, 1, sent_ms=NOW, deadline_ms=NOW + left, params=P)
    assert got == max(MIN_ATTEMPT_MS, min(left, max(0, left) // 2))
    last = attempt_budget_ms(0, 1, sent_ms=NOW, deadline_ms=NOW + left, params=P, last=True)
    assert last == max(MIN_ATTEMPT_MS, left)


def test_plan_hands_out_the_budget_rule():
    p = AttemptPlan(RANKING, 1, deadline_ms=DEADLINE, params=P, budget_ms=5_000)
    a = p.next_attempt(NOW)
    assert a == Attempt(0, "peer-0", 5_000)
    p.on_failed(0, "timeout", 5_000)
    assert p.next_attempt(NOW + 5_000).budget_ms == T + 5_000


# -- lanes -----------------------------------------------------------------------------------


def test_k1_failover_chain():
    p = plan()
    assert p.lanes == 1
    a0 = p.next_attempt(NOW)
    assert a0.rank == 0 and a0.peer == "peer-0"
    assert p.next_attempt(NOW) is None  # the one lane is busy
    assert p.on_failed(0, Outcome.TIMEOUT, 30_000) == Release(0, "peer-0", Outcome.TIMEOUT, 30_000)
    a1 = p.next_attempt(NOW + 30_000)
    assert a1.rank == 1
    assert p.on_declined(1, "not_my_turn", 3) == Skip(1, "peer-1")
    a2 = p.next_attempt(NOW + 30_003)
    assert p.on_failed(2, "bad_proof", 7) == Release(2, "peer-2", Outcome.BAD_PROOF, 7)
    a3 = p.next_attempt(NOW + 30_010)
    assert not p.done(NOW + 30_010)
    assert p.on_reply_ok(3, b"out", 9) == LaneDone(3, "peer-3")
    assert p.done(NOW + 30_020)
    assert p.next_attempt(NOW + 30_020) is None
    assert [a.rank for a in (a0, a1, a2, a3)] == [0, 1, 2, 3]
    assert p.tried == 4
    v = p.conclude()
    assert v == Verdict(
        output=b"out",
        agreed=1,
        answers=(
            Answer(0, "peer-0", Outcome.TIMEOUT, 30_000),
            Answer(2, "peer-2", Outcome.BAD_PROOF, 7),
            Answer(3, "peer-3", Outcome.OK, 9, b"out"),
        ),
        feedback=(Answer(3, "peer-3", Outcome.OK, 9, b"out"),),
    )


@pytest.mark.parametrize("code", list(ErrorCode))
def test_each_decline(code):
    p = plan()
    p.next_attempt(NOW)
    step = p.on_declined(0, code, 12)
    if code in (ErrorCode.EXECUTION_FAILED, ErrorCode.REPLAYED):
        assert step == Release(0, "peer-0", Outcome.TIMEOUT, 12)
        assert p.answers == (Answer(0, "peer-0", Outcome.TIMEOUT, 12),)
    else:
        assert step == Skip(0, "peer-0")
        assert p.answers == ()
    assert p.next_attempt(NOW).rank == 1


def test_unknown_decline_code_is_refused():
    p = plan()
    p.next_attempt(NOW)
    with pytest.raises(ValueError):
        p.on_declined(0, "made_up", 1)
    assert [a.rank for a in p.in_flight] == [0]  # still in flight


def test_skipped_attempt_leaves_no_answer():
    p = plan()
    p.next_attempt(NOW)
    assert p.on_skipped(0) == Skip(0, "peer-0")
    assert p.answers == ()
    assert p.next_attempt(NOW).rank == 1


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_k_lanes_run_at_once(k):
    p = plan(k)
    got = [p.next_attempt(NOW) for _ in range(k + 2)]
    assert [a.rank for a in got[:k]] == list(range(k))
    assert got[k:] == [None, None]
    assert len(p.in_flight) == k


def test_lanes_capped_by_ranks():
    p = plan(5, ranking=RANKING[:2])
    assert p.lanes == 2
    assert p.next_attempt(NOW).rank == 0
    assert p.next_attempt(NOW).rank == 1
    assert p.next_attempt(NOW) is None
    p.on_reply_ok(1, b"x", 1)
    p.on_reply_ok(0, b"x", 1)
    assert p.done(NOW)
    v = p.conclude()
    assert isinstance(v, Verdict) and v.agreed == 2


def test_an_ok_lane_ends_and_frees_no_slot():
    p = plan(2)
    p.next_attempt(NOW)
    p.next_attempt(NOW)
    assert p.on_reply_ok(0, b"a", 5) == LaneDone(0, "peer-0")
    # one lane left, and it is busy with rank 1
    assert p.next_attempt(NOW) is None
    p.on_failed(1, "timeout", 5)
    assert p.next_attempt(NOW).rank == 2
    assert p.next_attempt(NOW) is None


def test_failed_lane_takes_the_next_untried_rank():
    p = plan(2)
    p.next_attempt(NOW)  # 0
    p.next_attempt(NOW)  # 1
    p.on_failed(1, "timeout", 1)
    assert p.next_attempt(NOW).rank == 2
    p.on_declined(0, "no_capacity", 1)
    assert p.next_attempt(NOW).rank == 3


def test_ranking_exhausted():
    p = plan(1, ranking=RANKING[:2])
    p.next_attempt(NOW)
    p.on_failed(0, "timeout", 1)
    p.next_attempt(NOW)
    assert not p.done(NOW)
    p.on_declined(1, "not_my_turn", 1)
    assert p.next_attempt(NOW) is None
    assert p.done(NOW)
    assert p.conclude() == NoVerdict(NoVerdictReason.NO_RESULT, 0)


def test_empty_ranking():
    p = plan(3, ranking=())
    assert p.lanes == 0
    assert p.next_attempt(NOW) is None
    assert p.done(NOW)
    assert p.conclude() == NoVerdict(NoVerdictReason.NO_RESULT, 0)


@pytest.mark.parametrize(("now_off", "starts"), [(-1, True), (0, False), (1, False)])
def test_no_attempt_at_or_after_the_deadline(now_off, starts):
    p = plan()
    got = p.next_attempt(DEADLINE + now_off)
    assert (got is not None) == starts
    assert p.done(DEADLINE + now_off) == (not starts)


def test_attempt_in_flight_outlives_the_deadline():
    p = plan()
    p.next_attempt(DEADLINE - 1)
    assert not p.done(DEADLINE + 5)  # the caller's budget ends it
    p.on_reply_ok(0, b"late", 50)
    assert p.done(DEADLINE + 50)
    assert p.conclude().output == b"late"


# -- protocol errors -------------------------------------------------------------------------


def test_events_for_ranks_not_in_flight():
    p = plan()
    with pytest.raises(PlanError):
        p.on_reply_ok(0, b"x", 1)
    p.next_attempt(NOW)
    with pytest.raises(PlanError):
        p.on_failed(1, "timeout", 1)
    p.on_failed(0, "timeout", 1)
    with pytest.raises(PlanError):
        p.on_failed(0, "timeout", 1)  # reported twice
    with pytest.raises(PlanError):
        p.on_skipped(0)


def test_on_failed_takes_only_failures():
    p = plan()
    p.next_attempt(NOW)
    for bad in ("ok", "wrong"):
        with pytest.raises(PlanError):
            p.on_failed(0, bad, 1)
    with pytest.raises(ValueError):
        p.on_failed(0, "lost", 1)
    assert len(p.in_flight) == 1  # refused events change nothing


def test_conclude_with_attempts_in_flight():
    p = plan()
    p.next_attempt(NOW)
    with pytest.raises(PlanError):
        p.conclude()


def test_redundancy_must_be_positive():
    with pytest.raises(ValueError):
        AttemptPlan(RANKING, 0, deadline_ms=DEADLINE, params=P)


# -- the vote --------------------------------------------------------------------------------


def run(k: int, script: list[tuple[str, object]]) -> AttemptPlan:
    """Feed ``script`` (one (kind, value) per rank, in rank order, lanes filled first)."""
    p = plan(k, ranking=tuple(f"peer-{i}" for i in range(len(script))))
    now = NOW
    while True:
        while (a := p.next_attempt(now)) is not None:
            pass
        if not p.in_flight:
            return p
        a = p.in_flight[0]
        kind, value = script[a.rank]
        now += 10
        if kind == "ok":
            p.on_reply_ok(a.rank, value, 100 + a.rank)
        elif kind == "fail":
            p.on_failed(a.rank, value, 100 + a.rank)
        else:
            p.on_declined(a.rank, value, 100 + a.rank)


def outcomes(v: Verdict) -> list[tuple[int, str]]:
    return [(a.rank, a.outcome.value) for a in v.answers]


def test_vote_majority_and_wrong():
    p = run(3, [("ok", b"A"), ("ok", b"B"), ("ok", b"A")])
    v = p.conclude()
    assert v.output == b"A" and v.agreed == 2
    assert outcomes(v) == [(0, "ok"), (1, "wrong"), (2, "ok")]
    assert [(a.rank, a.outcome) for a in v.feedback] == [(0, "ok"), (1, "wrong"), (2, "ok")]


def test_vote_no_majority():
    p = run(2, [("ok", b"A"), ("ok", b"B")])
    v = p.conclude()
    assert v == NoVerdict(NoVerdictReason.NO_MAJORITY, 2)
    assert v.detail("echo") == "2 verified results disagree"


def test_vote_three_way_split_is_no_majority():
    # the tie goes to the best rank, but a tied winner never has a strict majority
    p = run(3, [("ok", b"B"), ("ok", b"A"), ("ok", b"C")])
    assert p.conclude() == NoVerdict(NoVerdictReason.NO_MAJORITY, 3)


def test_vote_counts_only_verified_answers():
    # k=3: one bad proof, one timeout released, then the lanes refill from ranks 3, 4
    script = [
        ("ok", b"A"),
        ("fail", "bad_proof"),
        ("fail", "timeout"),
        ("ok", b"B"),
        ("ok", b"A"),
    ]
    v = run(3, script).conclude()
    assert v.output == b"A" and v.agreed == 2
    assert outcomes(v) == [(0, "ok"), (1, "bad_proof"), (2, "timeout"), (3, "wrong"), (4, "ok")]
    assert [a.rank for a in v.feedback] == [0, 3, 4]
    # latencies travel with the answers
    assert [a.latency_ms for a in v.answers] == [100, 101, 102, 103, 104]


def test_single_verified_answer_wins_with_k2():
    # k=2 but only one verified answer: 1 of 1 is a strict majority
    v = run(2, [("ok", b"A"), ("fail", "timeout"), ("decline", "not_my_turn")]).conclude()
    assert v.output == b"A" and v.agreed == 1
    assert outcomes(v) == [(0, "ok"), (1, "timeout")]


def test_no_result_detail():
    v = run(1, [("fail", "timeout")]).conclude()
    assert v == NoVerdict(NoVerdictReason.NO_RESULT, 0)
    assert v.detail("echo") == "no node delivered a verified result for echo"


def test_empty_output_is_a_verified_output():
    v = run(1, [("ok", b"")]).conclude()
    assert v.output == b"" and v.agreed == 1


# -- dispute replicas ------------------------------------------------------------------------


def test_replicas_join_the_vote_and_come_last():
    p = run(3, [("ok", b"A"), ("ok", b"B"), ("ok", b"A")])
    p.on_replica(7, "rep-1", "timeout", 50)
    p.on_replica(8, "rep-2", "ok", 60, b"A")
    v = p.conclude()
    assert v.output == b"A" and v.agreed == 3
    assert [(a.rank, a.outcome, a.replica) for a in v.answers] == [
        (0, "ok", False),
        (1, "wrong", False),
        (2, "ok", False),
        (7, "timeout", True),
        (8, "ok", True),
    ]
    assert [a.peer for a in v.feedback] == ["peer-0", "peer-1", "peer-2", "rep-2"]


def test_an_upheld_output_wins_whatever_the_count():
    # Count says A (2 to 1), but the standing-weighted verdict upheld B: the standing
    # rule decides a dispute, so A's voters are the outvoted ones.
    p = run(3, [("ok", b"A"), ("ok", b"B"), ("ok", b"A")])
    v = p.conclude(upheld=b"B")
    assert v.output == b"B" and v.agreed == 1
    assert outcomes(v) == [(0, "wrong"), (1, "ok"), (2, "wrong")]
    # and a no-majority split is decided by it too
    p = run(2, [("ok", b"A"), ("ok", b"B")])
    p.on_replica(5, "rep", "ok", 10, b"B")
    assert p.conclude(upheld=b"B").output == b"B"
    with pytest.raises(PlanError):
        p.conclude(upheld=b"C")


def test_replica_answers_are_checked():
    p = run(2, [("ok", b"A"), ("ok", b"B")])
    with pytest.raises(PlanError):
        p.on_replica(5, "rep", "ok", 10)  # ok without output
    with pytest.raises(PlanError):
        p.on_replica(5, "rep", "wrong", 10, b"A")  # not an answer a node gives
    with pytest.raises(PlanError):
        p.on_replica(5, "peer-0", "ok", 10, b"A")  # it answered already
    p.on_replica(5, "rep", "bad_proof", 10, b"ignored")
    assert p.answers[-1].output is None and p.answers[-1].replica
