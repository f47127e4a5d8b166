"""Node admission rules: every reject code, its boundary, and the failover turn schedule."""

from __future__ import annotations

import dataclasses

import pytest

from repp2p.matching import MatchingParams
from repp2p.records import MAX_LIFETIME_S, TaskOffer
from repp2p.tasks import (
    EPOCH_LAG,
    EXPIRY_MARGIN_S,
    REFUSED_BY_PIPELINE,
    REJECT_CODES,
    Admit,
    ClaimSeen,
    ErrorCode,
    Reject,
    WaitUntil,
    assigned_rank,
    check_fresh,
    check_offer,
    current_epoch,
    epoch_accepted,
    is_release,
    released_claimants,
    releases_in,
    take_turn,
    turn_opens_at_ms,
)
from tests.tasks.helpers import (
    CURRENT_EPOCH,
    EPOCH_S,
    NODES,
    NOW,
    NOW_MS,
    OTHER_CLIENT,
    PARAMS,
    RANKING,
    STRANGER,
    T,
    claim,
    feedback,
    offer,
    offer_data,
)

BAD = ErrorCode.BAD_OFFER


def reject(code: ErrorCode, detail: str) -> Reject:
    return Reject(code, detail)


# -- decisions -------------------------------------------------------------------------------


def test_reject_takes_only_admission_codes():
    for code in ErrorCode:
        if code in REJECT_CODES:
            assert Reject(code).code is code
        else:
            with pytest.raises(ValueError):
                Reject(code)
    assert {c.value for c in REJECT_CODES} == {
        "bad_offer",
        "replayed",
        "wrong_epoch",
        "not_assigned",
        "not_my_turn",
        "no_capacity",
        "bad_dispute",
        "bad_verdict",
        "low_credibility",
    }


def test_decisions_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Admit(0).rank = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        WaitUntil(5).at_ms = 1  # type: ignore[misc]
    assert Reject(BAD, "offer refused by the record pipeline") == REFUSED_BY_PIPELINE


# -- step 1: check_offer ---------------------------------------------------------------------


def test_valid_offer_passes():
    got = check_offer(offer_data(), now_ms=NOW_MS)
    assert not isinstance(got, Reject)
    assert isinstance(got.record, TaskOffer)
    assert got.data == offer_data()


@pytest.mark.parametrize("data", [b"", b"garbage", b"\xa0", offer_data()[:-1]])
def test_undecodable_offer(data):
    got = check_offer(data, now_ms=NOW_MS)
    assert isinstance(got, Reject) and got.code is BAD and got.detail


def test_expired_offer_fails_decoding():
    # live until `expires` (exclusive): decode checks at whole seconds of now_ms
    data = offer_data(deadline_ms=NOW_MS + 1000, expires=NOW + 70)
    assert not isinstance(check_offer(data, now_ms=NOW_MS), Reject)
    assert not isinstance(check_offer(data, now_ms=NOW_MS + 999), Reject)
    got = check_offer(data, now_ms=(NOW + 70) * 1000)  # decoding speaks before the deadline
    assert isinstance(got, Reject) and got.code is BAD and "expire" in got.detail
    assert got.detail != "deadline passed"


def test_offer_expiring_too_far_fails_decoding():
    far = NOW + MAX_LIFETIME_S[TaskOffer.TYPE] + 10
    got = check_offer(offer_data(expires=far), now_ms=NOW_MS)
    assert isinstance(got, Reject) and got.code is BAD


def test_not_an_offer():
    data = feedback(offer(), NODES[0].peer_id).data
    assert check_offer(data, now_ms=NOW_MS) == reject(BAD, "a Feedback is not an offer")
    data = claim(offer(), NODES[0], 0).data
    assert check_offer(data, now_ms=NOW_MS) == reject(BAD, "a Claim is not an offer")


def test_task_id_not_bound():
    want = reject(BAD, "task id not bound to the offer's signer and result key")
    assert check_offer(offer_data(bound=False), now_ms=NOW_MS) == want
    # squatting: CLIENT signs an offer with OTHER_CLIENT's task id
    assert check_offer(offer_data(bind_to=OTHER_CLIENT), now_ms=NOW_MS) == want
    assert not isinstance(check_offer(offer_data(signer=OTHER_CLIENT), now_ms=NOW_MS), Reject)


@pytest.mark.parametrize(
    ("deadline_off", "passes"), [(-1000, False), (-1, False), (0, False), (1, True), (250, True)]
)
def test_deadline_boundary(deadline_off, passes):
    got = check_offer(offer_data(deadline_ms=NOW_MS + deadline_off), now_ms=NOW_MS)
    if passes:
        assert not isinstance(got, Reject)
    else:
        assert got == reject(BAD, "deadline passed")


@pytest.mark.parametrize(
    ("slack_ms", "passes"), [(-1000, False), (-1, False), (0, True), (1, True)]
)
def test_expiry_margin_boundary(slack_ms, passes):
    # the offer must expire >= EXPIRY_MARGIN_S after its deadline: exactly 60 s is enough
    expires = NOW + 3600
    deadline_ms = expires * 1000 - EXPIRY_MARGIN_S * 1000 - slack_ms
    got = check_offer(offer_data(deadline_ms=deadline_ms, expires=expires), now_ms=NOW_MS)
    if passes:
        assert not isinstance(got, Reject)
    else:
        assert got == reject(BAD, "offer must expire >= 60 s after deadline")


def test_step1_order_deadline_before_margin():
    # both rules fail: the deadline rule speaks first
    data = offer_data(deadline_ms=NOW_MS, expires=NOW + 30)
    assert check_offer(data, now_ms=NOW_MS) == reject(BAD, "deadline passed")


def test_step1_order_binding_before_deadline():
    data = offer_data(deadline_ms=NOW_MS - 1000, bound=False)
    assert check_offer(data, now_ms=NOW_MS).detail.startswith("task id not bound")


# -- step 2: check_fresh ---------------------------------------------------------------------


def o_at(epoch: int) -> TaskOffer:
    return offer(epoch=epoch).record


@pytest.mark.parametrize(
    ("delta", "passes"),
    [(-5, False), (-4, False), (-3, True), (-2, True), (-1, True), (0, True), (1, False)],
)
def test_epoch_window(delta, passes):
    got = check_fresh(o_at(CURRENT_EPOCH + delta), claimed_before=False, now_ms=NOW_MS, epoch_s=10)
    if passes:
        assert got is None
    else:
        want = f"offer epoch {CURRENT_EPOCH + delta}, now {CURRENT_EPOCH}"
        assert got == reject(ErrorCode.WRONG_EPOCH, want)


def test_epoch_window_rule_is_one_named_rule():
    assert EPOCH_LAG == 3
    assert [d for d in range(-6, 4) if epoch_accepted(100 + d, 100)] == [-3, -2, -1, 0]


@pytest.mark.parametrize(
    ("now_ms", "epoch"),
    [
        (NOW * 1000, NOW // EPOCH_S),  # exactly on the epoch boundary
        (NOW * 1000 - 1, NOW // EPOCH_S - 1),  # 1 ms before it
        (NOW * 1000 + 9999, NOW // EPOCH_S),  # last ms of the epoch
        (NOW * 1000 + 10_000, NOW // EPOCH_S + 1),
    ],
)
def test_current_epoch_boundaries(now_ms, epoch):
    assert current_epoch(now_ms, EPOCH_S) == epoch


def test_epoch_rolls_over_at_the_boundary():
    o = o_at(NOW // EPOCH_S - EPOCH_LAG)
    assert check_fresh(o, claimed_before=False, now_ms=NOW * 1000 + 9999, epoch_s=EPOCH_S) is None
    got = check_fresh(o, claimed_before=False, now_ms=NOW * 1000 + 10_000, epoch_s=EPOCH_S)
    assert got.code is ErrorCode.WRONG_EPOCH


def test_replay_before_epoch():
    replayed = reject(ErrorCode.REPLAYED, "this node already took this task")
    o = o_at(CURRENT_EPOCH)
    assert check_fresh(o, claimed_before=True, now_ms=NOW_MS, epoch_s=EPOCH_S) == replayed
    o = o_at(CURRENT_EPOCH + 5)  # a wrong epoch too: replay speaks first
    assert check_fresh(o, claimed_before=True, now_ms=NOW_MS, epoch_s=EPOCH_S) == replayed


# -- step 3: assigned_rank -------------------------------------------------------------------


def test_assigned_rank():
    for r, peer in enumerate(RANKING):
        assert assigned_rank(RANKING, peer) == r
    want = reject(ErrorCode.NOT_ASSIGNED, "no claiming rank for this node in its view")
    assert assigned_rank(RANKING, STRANGER.peer_id) == want
    assert assigned_rank((), STRANGER.peer_id) == want


# -- releases --------------------------------------------------------------------------------


def test_is_release():
    of = offer()
    node = NODES[0].peer_id
    assert is_release(feedback(of, node, "timeout"), of)
    assert is_release(feedback(of, node, "bad_proof"), of)
    assert is_release(feedback(of, node, "timeout"), of, node=node)
    assert not is_release(feedback(of, node, "timeout"), of, node=NODES[1].peer_id)
    assert not is_release(feedback(of, node, "ok"), of)
    assert not is_release(feedback(of, node, "wrong"), of)
    # someone else's feedback is no release, nor the owner's on another task
    assert not is_release(feedback(of, node, "timeout", signer=OTHER_CLIENT), of)
    assert not is_release(feedback(of, node, "timeout", task_id=bytes(32)), of)
    # a claim is no release
    assert not is_release(claim(of, NODES[0], 0), of)


def test_releases_in_and_released_claimants():
    of = offer()
    a, b = NODES[0].peer_id, NODES[1].peer_id
    good = feedback(of, a, "timeout")
    envelopes = [
        b"garbage",
        good.data,
        feedback(of, b, "ok").data,
        feedback(of, b, "bad_proof", signer=STRANGER).data,
        feedback(of, b, "bad_proof", expires=NOW + 1).data,  # expired at NOW_MS
    ]
    got = releases_in(envelopes, of, now_ms=NOW_MS)
    assert [s.data for s in got] == [good.data]
    records = [good, feedback(of, b, "ok"), feedback(of, b, "bad_proof", signer=STRANGER)]
    assert released_claimants(records, of) == {a}
    assert released_claimants([*records, feedback(of, b, "bad_proof")], of) == {a, b}


# -- step 4: take_turn -----------------------------------------------------------------------

FIRST = NOW_MS - 500  # the node saw the offer half a second before the request


def turn(
    rank: int,
    *,
    k: int = 1,
    now_ms: int = NOW_MS,
    first_seen_ms: int = FIRST,
    waited: bool = False,
    claims: tuple[ClaimSeen, ...] = (),
    released: frozenset[str] = frozenset(),
    active: int = 0,
    capacity: int = 4,
    already_taken: bool = False,
    deadline_ms: int = NOW_MS + 60_000,
    params: MatchingParams = PARAMS,
    ranking: tuple[str, ...] = RANKING,
):
    return take_turn(
        offer(k=k, deadline_ms=deadline_ms).record,
        ranking=ranking,
        me=ranking[rank],
        now_ms=now_ms,
        first_seen_ms=first_seen_ms,
        waited=waited,
        claims_seen=claims,
        released=released,
        active=active,
        capacity=capacity,
        already_taken=already_taken,
        params=params,
    )


def seen(rank: int, offset_ms: int) -> ClaimSeen:
    """Rank ``rank``'s claim, seen ``offset_ms`` after the offer."""
    return ClaimSeen(RANKING[rank], FIRST + offset_ms)


def opens(rank: int, k: int) -> int:
    return FIRST + max(0, rank - k + 1) * T


@pytest.mark.parametrize(("k", "rank"), [(k, r) for k in (1, 2, 3) for r in range(k + 3)])
def test_turn_schedule_without_claims(k, rank):
    """Ranks 0..k-1 take it at once; rank r >= k waits (r - k + 1) claim timeouts."""
    at = opens(rank, k)
    assert turn_opens_at_ms(offer(k=k).record, rank, FIRST, PARAMS) == at
    if at > NOW_MS:
        assert turn(rank, k=k) == WaitUntil(at)
        assert turn(rank, k=k, now_ms=at - 1) == WaitUntil(at)
    # from the moment the turn opens (and after a wait) the rank may claim
    assert turn(rank, k=k, now_ms=max(at, NOW_MS)) == Admit(rank)
    assert turn(rank, k=k, now_ms=max(at, NOW_MS), waited=True) == Admit(rank)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_turn_schedule_with_better_claims(k):
    """Rank r >= k claims only when fewer than k better claims appeared by its opening."""
    for rank in range(k, k + 3):
        at = opens(rank, k) - FIRST
        # k better claims, all seen in time (the last one exactly at the opening): blocked
        in_time = (*(seen(b, min(b * 100, at)) for b in range(k - 1)), seen(rank - 1, at))
        assert len(in_time) == k
        got = turn(rank, k=k, now_ms=FIRST + at, waited=True, claims=in_time)
        assert got == Reject(ErrorCode.NOT_MY_TURN, f"rank {rank}: better ranks claimed in time")
        # the k-th one seen 1 ms after the opening: too late to block
        late = (*in_time[:-1], seen(rank - 1, at + 1))
        got = turn(rank, k=k, now_ms=FIRST + at + T, waited=True, claims=late)
        assert got == Admit(rank)
        # k-1 better claims only: a slot is left
        got = turn(rank, k=k, now_ms=FIRST + at, waited=True, claims=in_time[:-1])
        assert got == Admit(rank)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_first_k_ranks_are_never_blocked(k):
    # ranks < k see at most rank (< k) better claims: they always claim
    for rank in range(k):
        claims = tuple(seen(b, 0) for b in range(rank))
        assert turn(rank, k=k, claims=claims) == Admit(rank)


def test_released_claims_do_not_block():
    claims = (seen(0, 0),)
    blocked = turn(1, now_ms=opens(1, 1), waited=True, claims=claims)
    assert blocked.code is ErrorCode.NOT_MY_TURN
    released = frozenset({RANKING[0]})
    assert turn(1, now_ms=opens(1, 1), waited=True, claims=claims, released=released) == Admit(1)
    # releasing someone else changes nothing
    other = frozenset({RANKING[5]})
    assert turn(1, now_ms=opens(1, 1), waited=True, claims=claims, released=other) == blocked


def test_release_chain_k1():
    """k=1: ranks 0 and 1 claimed and were released in turn: rank 2 takes over."""
    claims = (seen(0, 0), seen(1, T))
    both = frozenset(RANKING[:2])
    at = opens(2, 1)
    assert turn(2, now_ms=at, waited=True, claims=claims).code is ErrorCode.NOT_MY_TURN
    one = frozenset(RANKING[:1])
    assert turn(2, now_ms=at, waited=True, claims=claims, released=one).code is (
        ErrorCode.NOT_MY_TURN
    )
    assert turn(2, now_ms=at, waited=True, claims=claims, released=both) == Admit(2)


def test_only_better_ranked_claims_count():
    at = opens(2, 1)
    worse = (seen(3, 0), seen(7, 0))
    assert turn(2, now_ms=at, waited=True, claims=worse) == Admit(2)
    mine = (ClaimSeen(RANKING[2], FIRST),)
    assert turn(2, now_ms=at, waited=True, claims=mine) == Admit(2)
    stranger = (ClaimSeen(STRANGER.peer_id, FIRST),)
    assert turn(2, now_ms=at, waited=True, claims=stranger) == Admit(2)


def test_claims_seen_before_the_offer_count():
    # a claim that arrived before the offer itself has a negative offset: in time
    at = opens(1, 1)
    assert turn(1, now_ms=at, waited=True, claims=(seen(0, -1000),)).code is (ErrorCode.NOT_MY_TURN)


def test_claims_are_counted_with_multiplicity():
    # today's code counts every claim record it finds (one per signer in practice)
    at = opens(2, 2)
    twice = (seen(0, 0), seen(0, 0))
    assert turn(2, k=2, now_ms=at, waited=True, claims=twice).code is ErrorCode.NOT_MY_TURN


def test_rank_too_deep_never_claims():
    params = MatchingParams(failover_depth=1)
    # k=1, depth 1: ranks 0 and 1 may claim, rank 2 never
    assert turn(1, now_ms=opens(1, 1), waited=True, params=params) == Admit(1)
    got = turn(2, now_ms=opens(2, 1), waited=True, params=params)
    assert got == Reject(ErrorCode.NOT_MY_TURN, "rank 2: better ranks claimed in time")


def test_wait_is_asked_once():
    # after a wait the caller's clock may still read before the opening: no second wait
    at = opens(3, 1)
    assert turn(3, now_ms=at - 250) == WaitUntil(at)
    assert turn(3, now_ms=at - 250, waited=True) == Admit(3)


@pytest.mark.parametrize(("deadline_off", "passes"), [(-1, False), (0, False), (1, True)])
def test_deadline_after_the_wait(deadline_off, passes):
    at = opens(2, 1)
    got = turn(2, now_ms=at, waited=True, deadline_ms=at + deadline_off)
    if passes:
        assert got == Admit(2)
    else:
        assert got == Reject(BAD, "deadline passed while waiting for this rank's turn")


def test_deadline_is_not_rechecked_without_a_wait():
    # step 1 checked it; today's code re-checks only after sleeping
    assert turn(0, deadline_ms=NOW_MS - 1) == Admit(0)


def test_deadline_check_comes_before_the_turn():
    at = opens(1, 1)
    got = turn(1, now_ms=at, waited=True, deadline_ms=at, claims=(seen(0, 0),), active=9)
    assert got.detail == "deadline passed while waiting for this rank's turn"


@pytest.mark.parametrize(
    ("active", "capacity", "passes"),
    [(3, 4, True), (4, 4, False), (5, 4, False), (0, 1, True), (1, 1, False)],
)
def test_capacity_boundary(active, capacity, passes):
    got = turn(0, active=active, capacity=capacity)
    assert got == (Admit(0) if passes else Reject(ErrorCode.NO_CAPACITY, "all task slots busy"))


def test_concurrent_duplicate():
    want = Reject(ErrorCode.REPLAYED, "this node already took this task")
    assert turn(0, already_taken=True) == want
    assert turn(2, now_ms=opens(2, 1), waited=True, already_taken=True) == want


def test_step4_order():
    """not_my_turn, then no_capacity, then the concurrent duplicate."""
    at = opens(1, 1)
    blocked = (seen(0, 0),)
    full = {"active": 4, "capacity": 4}
    got = turn(1, now_ms=at, waited=True, claims=blocked, already_taken=True, **full)
    assert got.code is ErrorCode.NOT_MY_TURN
    got = turn(1, now_ms=at, waited=True, already_taken=True, **full)
    assert got.code is ErrorCode.NO_CAPACITY
    got = turn(1, now_ms=at, waited=True, already_taken=True)
    assert got.code is ErrorCode.REPLAYED


def test_waituntil_comes_before_everything():
    at = opens(1, 1)
    got = turn(1, claims=(seen(0, 0),), active=9, capacity=1, already_taken=True)
    assert got == WaitUntil(at)


def test_not_in_ranking_is_a_caller_error():
    with pytest.raises(ValueError):
        take_turn(
            offer().record,
            ranking=RANKING,
            me=STRANGER.peer_id,
            now_ms=NOW_MS,
            first_seen_ms=FIRST,
            waited=False,
            claims_seen=(),
            released=(),
            active=0,
            capacity=1,
            already_taken=False,
            params=PARAMS,
        )
