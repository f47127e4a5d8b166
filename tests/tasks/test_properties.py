"""Properties of the task rules (hypothesis).

(a) at most k admits per ranking when every claim is seen in time and none is released;
(b) the planner never tries a rank twice, never runs more than k attempts, terminates;
(c) the vote's winner has a strict majority of the verified answers, else no_majority;
(d) the rules are pure functions: same inputs, same output, inputs untouched.
"""

from __future__ import annotations

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repp2p.tasks import (
    Admit,
    AttemptPlan,
    ClaimSeen,
    ErrorCode,
    LaneDone,
    NoVerdict,
    NoVerdictReason,
    Outcome,
    Reject,
    Release,
    Skip,
    Verdict,
    WaitUntil,
    check_fresh,
    check_offer,
    take_turn,
)
from tests.tasks.helpers import EPOCH_S, NOW_MS, PARAMS, RANKING, T, offer, offer_data

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DEPTH = PARAMS.failover_depth

# -- (a) at most k admits --------------------------------------------------------------------


@st.composite
def schedules(draw):
    k = draw(st.integers(1, 4))
    n = draw(st.integers(0, min(len(RANKING), k + DEPTH)))
    # every node sees the offer within T/4 of the others, and every claim reaches every
    # node within T/2: the claims are always seen in time for the next turn
    jitter = draw(st.lists(st.integers(0, T // 4), min_size=n, max_size=n))
    delay = draw(st.lists(st.integers(0, T // 2), min_size=n, max_size=n))
    busy = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return k, n, jitter, delay, busy


@SETTINGS
@given(schedules())
def test_at_most_k_admits_when_claims_are_seen_in_time(schedule):
    k, n, jitter, delay, busy = schedule
    o = offer(k=k, deadline_ms=NOW_MS + 3_600_000).record
    ranking = RANKING[:n]
    base = NOW_MS
    claimed_at: dict[int, int] = {}  # rank -> when its claim was published
    order = sorted(range(n), key=lambda r: (jitter[r] + max(0, r - k + 1) * T, r))

    def decide(r: int, now: int, waited: bool):
        first = base + jitter[r]
        store = [
            ClaimSeen(ranking[b], t + delay[b])
            for b, t in claimed_at.items()
            if t + delay[b] <= now  # in this node's store by now
        ]
        return take_turn(
            o,
            ranking=ranking,
            me=ranking[r],
            now_ms=now,
            first_seen_ms=first,
            waited=waited,
            claims_seen=store,
            released=frozenset(),
            active=1 if busy[r] else 0,
            capacity=1,
            already_taken=False,
            params=PARAMS,
        )

    for r in order:
        now = base + jitter[r]
        got = decide(r, now, False)
        if isinstance(got, WaitUntil):
            assert got.at_ms == now + (r - k + 1) * T
            now = got.at_ms
            got = decide(r, now, True)
        assert not isinstance(got, WaitUntil)
        if isinstance(got, Admit):
            assert got.rank == r
            claimed_at[r] = now
        else:
            assert got.code in (ErrorCode.NOT_MY_TURN, ErrorCode.NO_CAPACITY)
            assert (got.code is ErrorCode.NO_CAPACITY) == (busy[r] and len(claimed_at) < k)
    assert len(claimed_at) <= k
    # and failover fills the k slots from the free nodes, best ranks first
    free = [r for r in range(n) if not busy[r]]
    assert sorted(claimed_at) == free[:k]


# -- (b) the planner -------------------------------------------------------------------------

KINDS = ["ok", "timeout", "bad_proof", "skipped", *(c.value for c in ErrorCode)]


def report(plan: AttemptPlan, rank: int, kind: str, output: bytes, latency: int):
    if kind == "ok":
        return plan.on_reply_ok(rank, output, latency)
    if kind in ("timeout", "bad_proof"):
        return plan.on_failed(rank, kind, latency)
    if kind == "skipped":
        return plan.on_skipped(rank)
    return plan.on_declined(rank, kind, latency)


@SETTINGS
@given(
    k=st.integers(1, 5),
    n=st.integers(0, 12),
    deadline_off=st.integers(-10, 200_000),
    data=st.data(),
)
def test_planner_lanes(k, n, deadline_off, data):
    """Drive the planner as the client does (one loop per lane), in any interleaving."""
    plan = AttemptPlan(RANKING[:n], k, deadline_ms=NOW_MS + deadline_off, params=PARAMS)
    assert plan.lanes == min(k, n)
    now = NOW_MS
    holding: dict[int, object] = {lane: None for lane in range(plan.lanes)}  # live lanes
    handed: list[int] = []
    oks = 0
    for _step in range(4 * n + 10):
        for lane in list(holding):
            if holding[lane] is None:
                a = plan.next_attempt(now)
                if a is None:
                    del holding[lane]  # the lane ends
                    continue
                assert a.peer == RANKING[a.rank]
                assert a.budget_ms >= 100
                handed.append(a.rank)
                holding[lane] = a
        assert len(plan.in_flight) <= k
        assert len(plan.in_flight) + oks <= plan.lanes
        if not holding:
            break
        assert not plan.done(now)
        lane = data.draw(st.sampled_from(sorted(holding)))
        a = holding[lane]
        now += data.draw(st.integers(0, 40_000))
        kind = data.draw(st.sampled_from(KINDS))
        step = report(plan, a.rank, kind, data.draw(st.sampled_from([b"A", b"B"])), 5)
        holding[lane] = None
        if isinstance(step, LaneDone):
            oks += 1
            del holding[lane]
        else:
            assert isinstance(step, Release | Skip)
    else:
        raise AssertionError("the planner did not terminate")
    assert plan.done(now)
    assert not plan.in_flight
    assert handed == list(range(len(handed)))  # each rank once, best first
    assert oks <= k
    assert isinstance(plan.conclude(), Verdict | NoVerdict)


@SETTINGS
@given(k=st.integers(1, 5), n=st.integers(0, 12), data=st.data())
def test_planner_greedy_driver(k, n, data):
    """A driver that asks for attempts whenever it likes: the plan still keeps its limits."""
    plan = AttemptPlan(RANKING[:n], k, deadline_ms=NOW_MS + 10**9, params=PARAMS)
    now = NOW_MS
    seen: set[int] = set()
    for _ in range(10 * n + 10):
        for _ in range(data.draw(st.integers(0, 3))):
            a = plan.next_attempt(now)
            if a is not None:
                assert a.rank not in seen
                seen.add(a.rank)
        assert len(plan.in_flight) <= k
        if not plan.in_flight:
            a = plan.next_attempt(now)
            if a is None:
                break
            seen.add(a.rank)
            continue
        a = data.draw(st.sampled_from(plan.in_flight))
        report(plan, a.rank, data.draw(st.sampled_from(KINDS)), b"x", 1)
    else:
        raise AssertionError("the planner did not terminate")
    assert plan.done(now)
    assert seen == set(range(plan.tried))


# -- (c) the vote ----------------------------------------------------------------------------


@SETTINGS
@given(
    k=st.integers(1, 6),
    script=st.lists(
        st.one_of(
            st.sampled_from([("fail", "timeout"), ("fail", "bad_proof"), ("no", "not_my_turn")]),
            st.tuples(st.just("ok"), st.sampled_from([b"A", b"B", b"C"])),
        ),
        max_size=12,
    ),
)
def test_vote(k, script):
    plan = AttemptPlan(RANKING[: len(script)], k, deadline_ms=NOW_MS + 10**9, params=PARAMS)
    while True:
        while plan.next_attempt(NOW_MS) is not None:
            pass
        if not plan.in_flight:
            break
        a = plan.in_flight[-1]
        kind, value = script[a.rank]
        if kind == "ok":
            plan.on_reply_ok(a.rank, value, 1)
        elif kind == "fail":
            plan.on_failed(a.rank, value, 1)
        else:
            plan.on_declined(a.rank, value, 1)
    good = [a for a in plan.answers if a.outcome is Outcome.OK]
    assert len(good) <= k
    v = plan.conclude()
    assert v == plan.conclude()  # concluding changes nothing
    if isinstance(v, NoVerdict):
        if v.reason is NoVerdictReason.NO_RESULT:
            assert not good
        else:
            assert v.verified == len(good) > 0
            assert all(2 * sum(b.output == a.output for b in good) <= len(good) for a in good)
        return
    assert v.agreed * 2 > len(good)
    assert v.agreed == sum(a.output == v.output for a in good)
    assert [a.rank for a in v.answers] == sorted(a.rank for a in plan.answers)
    for final, raw in zip(v.answers, sorted(plan.answers, key=lambda a: a.rank), strict=True):
        if raw.outcome is Outcome.OK:
            assert final.outcome is (Outcome.OK if raw.output == v.output else Outcome.WRONG)
        else:
            assert final == raw
    assert v.feedback == tuple(a for a in v.answers if a.outcome in ("ok", "wrong"))


# -- (d) purity ------------------------------------------------------------------------------


@SETTINGS
@given(
    now_off=st.integers(-70_000, 70_000),
    deadline_off=st.integers(-2_000, 10_000),
    epoch_delta=st.integers(-3, 2),
    k=st.integers(1, 3),
    claimed=st.booleans(),
)
def test_offer_checks_are_pure(now_off, deadline_off, epoch_delta, k, claimed):
    data = offer_data(
        deadline_ms=(NOW_MS // 1000) * 1000 + deadline_off * 250,
        epoch=NOW_MS // 1000 // EPOCH_S + epoch_delta,
        k=k,
    )
    now = NOW_MS + now_off
    first = check_offer(data, now_ms=now)
    assert check_offer(data, now_ms=now) == first
    if not isinstance(first, Reject):
        o = first.record
        a = check_fresh(o, claimed_before=claimed, now_ms=now, epoch_s=EPOCH_S)
        assert check_fresh(o, claimed_before=claimed, now_ms=now, epoch_s=EPOCH_S) == a


@SETTINGS
@given(
    rank=st.integers(0, 11),
    k=st.integers(1, 4),
    now_off=st.integers(-5_000, 30_000),
    waited=st.booleans(),
    claims=st.lists(st.tuples(st.integers(0, 11), st.integers(-3_000, 30_000)), max_size=8),
    released=st.frozensets(st.sampled_from(RANKING)),
    active=st.integers(0, 5),
    capacity=st.integers(1, 5),
    taken=st.booleans(),
)
def test_take_turn_is_pure(rank, k, now_off, waited, claims, released, active, capacity, taken):
    seen = [ClaimSeen(RANKING[r], NOW_MS + t) for r, t in claims]
    kwargs = {
        "ranking": list(RANKING),
        "me": RANKING[rank],
        "now_ms": NOW_MS + now_off,
        "first_seen_ms": NOW_MS,
        "waited": waited,
        "claims_seen": seen,
        "released": set(released),
        "active": active,
        "capacity": capacity,
        "already_taken": taken,
        "params": PARAMS,
    }
    before = copy.deepcopy(kwargs)
    o = offer(k=k).record
    first = take_turn(o, **kwargs)
    assert kwargs == before  # inputs untouched
    assert take_turn(o, **copy.deepcopy(kwargs)) == first
    assert isinstance(first, Admit | WaitUntil | Reject)


@SETTINGS
@given(
    k=st.integers(1, 4),
    events=st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 50_000)), max_size=15),
)
def test_planner_is_deterministic(k, events):
    def replay() -> list[object]:
        plan = AttemptPlan(RANKING, k, deadline_ms=NOW_MS + 100_000, params=PARAMS)
        now, trace = NOW_MS, []
        for kind, dt in events:
            trace.append(plan.next_attempt(now))
            if plan.in_flight:
                a = plan.in_flight[0]
                trace.append(report(plan, a.rank, kind, b"A" if dt % 2 else b"B", dt))
            now += dt
        while plan.in_flight:
            trace.append(report(plan, plan.in_flight[0].rank, "timeout", b"", 1))
        trace.append(plan.conclude())
        return trace

    assert replay() == replay()
