"""The new admission rules decide exactly what ``TaskServer.run_task`` decided.

Two implementations over one fake node (store, arrivals, clock, config):

* ``old_admission``: the OLD CODE'S LOGIC, copied from ``repp2p/serving.py`` (commit
  2f077cd) into this file, so that it stays the reference after serving.py is rewired;
* ``new_admission``: the same request served through :mod:`repp2p.tasks` the way
  the task server calls it (the node's wiring itself is tested end to end on virtual time
  in tests/live and on real hosts in tests/e2e).

Every case yields ``(ok, code or rank, detail, decided at ms)``; both must agree.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import types
from typing import Any

import pytest

from repp2p.errors import RecordError
from repp2p.identity import Identity
from repp2p.matching import claim_opens_at_ms, should_claim
from repp2p.net.task import error
from repp2p.records import Claim, Feedback, SignedRecord, TaskOffer, decode, task_id_for
from repp2p.tasks import (
    REFUSED_BY_PIPELINE,
    ClaimSeen,
    Reject,
    WaitUntil,
    assigned_rank,
    check_fresh,
    check_offer,
    epoch_accepted,
    is_release,
    releases_in,
    take_turn,
)
from tests.tasks.helpers import (
    CURRENT_EPOCH,
    EPOCH_S,
    NODES,
    NOW,
    NOW_MS,
    OTHER_CLIENT,
    PARAMS,
    STRANGER,
    T,
    claim,
    feedback,
    offer,
    offer_data,
)

NOW_S = NOW_MS / 1000  # 1_700_000_003.25: exact in binary64, as are all offsets below

# -- the fake node ---------------------------------------------------------------------------


class FakeStore:
    def __init__(self) -> None:
        self.records: list[SignedRecord] = []

    def add(self, signed: SignedRecord) -> None:
        if all(s.record_id != signed.record_id for s in self.records):
            self.records.append(signed)

    def get(self, record_id: bytes) -> SignedRecord | None:
        return next((s for s in self.records if s.record_id == record_id), None)

    def query(self, *, type=None, signer=None, slot=None) -> list[SignedRecord]:
        return [
            s
            for s in self.records
            if (type is None or s.type == type)
            and (signer is None or s.signer == signer)
            and (slot is None or s.record.slot() == slot)
        ]


class FakeNode:
    """What run_task touches of a Node."""

    def __init__(self, me: Identity, *, capacity: int, accept_ok: bool, clock) -> None:
        self.identity = me
        self.peer_id = me.peer_id
        self.config = types.SimpleNamespace(epoch_s=EPOCH_S, capacity=capacity, task_delay_s=0)
        self.store = FakeStore()
        self.arrivals: dict[bytes, float] = {}
        view = types.SimpleNamespace(matching_params=PARAMS, digest=bytes(32))
        self.keeper = types.SimpleNamespace(view=lambda epoch: view)
        self.clock = clock
        self.accept_ok = accept_ok
        self.spread_calls: list[bytes] = []
        self.claims_published: list[Claim] = []

        async def execute_async(**_kw):
            return b"encrypted", "receipt"

        self.enclave = types.SimpleNamespace(execute_async=execute_async)

    def accept_decoded(self, signed: SignedRecord, source: str) -> bool:
        if not self.accept_ok:
            return False
        self.store.add(signed)
        return True

    def accept(self, data: bytes, source: str) -> bool:
        self.store.add(decode(data))
        return True

    def spread(self, data: bytes, _type: str) -> None:
        self.spread_calls.append(data)

    def publish_soon(self, record: Any) -> Any:
        if isinstance(record, Claim):
            self.claims_published.append(record)
        return types.SimpleNamespace(data=b"signed")


# -- the cases -------------------------------------------------------------------------------

CLAIM_PATTERNS = (
    "none",
    "better_in_time",
    "better_late",
    "better_no_arrival",
    "better_at_opening",
    "better_released_store",
    "better_released_request",
    "better_half_released",
    "bogus_releases",
    "worse_and_strangers",
)
OFFER_VARIANTS = (
    "ok",
    "garbage",
    "not_an_offer",
    "unbound",
    "deadline_now",
    "deadline_past",
    "margin_short",
    "margin_exact",
    "expired",
)


@dataclasses.dataclass(frozen=True)
class Case:
    variant: str = "ok"
    epoch_delta: int = 0
    claimed_before: bool = False
    rank: int | None = 0  # None: this node has no rank
    k: int = 1
    accept_ok: bool = True
    first_seen_s: float | None = None  # offset from now; None: no arrival recorded
    claims: str = "none"
    full: bool = False
    duplicate: bool = False  # a concurrent duplicate takes the task during a wait
    deadline_s: float = 60.0


def offer_for(case: Case) -> bytes:
    epoch = CURRENT_EPOCH + case.epoch_delta
    deadline = NOW_MS + int(case.deadline_s * 1000)
    v = case.variant
    if v == "ok":
        return offer_data(deadline_ms=deadline, epoch=epoch, k=case.k)
    if v == "garbage":
        return b"\x00garbage"
    if v == "not_an_offer":
        return feedback(offer(), NODES[0].peer_id).data
    if v == "unbound":
        return offer_data(epoch=epoch, k=case.k, bound=False)
    if v == "deadline_now":
        return offer_data(deadline_ms=NOW_MS, epoch=epoch, k=case.k)
    if v == "deadline_past":
        return offer_data(deadline_ms=NOW_MS - 250, epoch=epoch, k=case.k)
    if v in ("margin_short", "margin_exact"):
        expires = NOW + 3600
        slack = 250 if v == "margin_short" else 0
        return offer_data(
            deadline_ms=expires * 1000 - 60_000 + slack, expires=expires, epoch=epoch, k=case.k
        )
    if v == "expired":
        return offer_data(deadline_ms=NOW_MS - 61_000, expires=NOW, epoch=epoch, k=case.k)
    raise AssertionError(v)


@dataclasses.dataclass
class Env:
    """One case, set up: the node, its ranking, the request, and the server's own state."""

    case: Case
    node: FakeNode
    ranking: list[str]
    request: dict[str, Any]
    active: int
    handled: dict[bytes, float]
    now: float  # the simulated clock (seconds), for the two synchronous implementations

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        if self.case.duplicate:  # another request for the task won the race meanwhile
            self.handled[self._task_id()] = self.now

    def _task_id(self) -> bytes:
        return decode(self.request["offer"]).record.task_id

    def claimed_before(self, task_id: bytes) -> bool:
        # copied from TaskServer._claimed_before
        if task_id in self.handled:
            return True
        mine = self.node.store.query(type=Claim.TYPE, signer=self.node.peer_id, slot=task_id)
        return bool(mine)


def build(case: Case, clock=None) -> Env:
    ranking = [n.peer_id for n in NODES[: case.k + 3]]
    me = STRANGER if case.rank is None else NODES[case.rank]
    env = Env(case, None, ranking, {}, 0, {}, NOW_S)  # type: ignore[arg-type]
    node = FakeNode(me, capacity=2, accept_ok=case.accept_ok, clock=clock or (lambda: env.now))
    env.node = node
    env.active = 2 if case.full else 1
    data = offer_for(case)
    env.request = {"offer": data, "sealed": b"sealed"}
    try:
        of = decode(data)
    except RecordError:
        return env
    if not isinstance(of.record, TaskOffer):
        return env
    first = NOW_S if case.first_seen_s is None else NOW_S + case.first_seen_s
    if case.first_seen_s is not None:
        node.arrivals[of.record_id] = first
    if case.claimed_before:
        node.store.add(claim(of, me, 0))
    my_rank = case.rank if case.rank is not None else 2
    opens = claim_opens_at_ms(my_rank, case.k, PARAMS) / 1000
    better = [NODES[r] for r in range(my_rank)]
    pattern = case.claims
    released: list[Identity] = []
    in_request: list[bytes] = []
    arrival = {
        "better_in_time": 0.25,
        "better_late": opens + 0.25,
        "better_at_opening": opens,
        "better_released_store": 0.25,
        "better_released_request": 0.25,
        "better_half_released": 0.25,
        "bogus_releases": 0.25,
    }
    if pattern in arrival or pattern == "better_no_arrival":
        for r, n in enumerate(better):
            c = claim(of, n, r)
            node.store.add(c)
            if pattern != "better_no_arrival":
                node.arrivals[c.record_id] = first + arrival[pattern]
    if pattern == "better_released_store":
        released = better
    if pattern == "better_half_released":
        released = better[:1]
    for n in released:
        node.store.add(feedback(of, n.peer_id, "timeout"))
    if pattern == "better_released_request":
        in_request = [feedback(of, n.peer_id, "bad_proof").data for n in better]
    if pattern == "bogus_releases":
        in_request = [b"junk"]
        for n in better:
            in_request.append(feedback(of, n.peer_id, "ok").data)
            in_request.append(feedback(of, n.peer_id, "timeout", signer=OTHER_CLIENT).data)
    if pattern == "worse_and_strangers":
        for r in range(my_rank + 1, len(ranking)):
            node.store.add(claim(of, NODES[r], r))
        node.store.add(claim(of, STRANGER, 0))
    if in_request:
        env.request["releases"] = in_request
    return env


# ---------------------------------------------------------------------------------------------
# OLD CODE'S LOGIC -- copied from repp2p/serving.py (TaskServer.run_task, released,
# _is_release, _parse) at commit 2f077cd, before repp2p.tasks existed. The only changes:
# `await trio.sleep(x)` -> `env.sleep(x)` (a simulated clock), `self.active`,
# `self._handled`, `self._claimed_before` -> the env's, and it stops where the old code
# publishes its Claim (returning the rank). Do not edit it to follow new code: it is the
# reference the new rules are held to.
# ---------------------------------------------------------------------------------------------

OLD_RELEASING_OUTCOMES = frozenset({"timeout", "bad_proof"})
OLD_EXPIRY_MARGIN_S = 60


def old_released(store: Any, offer: SignedRecord, claimant: str) -> bool:
    slot = offer.record.task_id + claimant.encode("ascii")
    for signed in store.query(type=Feedback.TYPE, signer=offer.signer, slot=slot):
        fb = signed.record
        if (
            fb.task_id == offer.record.task_id
            and fb.node == claimant
            and fb.outcome in OLD_RELEASING_OUTCOMES
        ):
            return True
    return False


def old_is_release(data: bytes, offer: SignedRecord, now: float) -> bool:
    try:
        signed = decode(data, now=int(now))
    except RecordError:
        return False
    fb = signed.record
    return (
        isinstance(fb, Feedback)
        and signed.signer == offer.signer
        and fb.task_id == offer.record.task_id
        and fb.outcome in OLD_RELEASING_OUTCOMES
    )


def old_admission(env: Env) -> dict[str, Any]:
    node = env.node
    request = env.request
    offer_data, releases = request["offer"], request.get("releases", [])
    now = node.clock()
    try:
        offer = decode(offer_data, now=int(now))
    except RecordError as exc:
        return error("bad_offer", str(exc))
    if not isinstance(offer.record, TaskOffer):
        return error("bad_offer", f"a {offer.type} is not an offer")
    o: TaskOffer = offer.record
    if o.task_id != task_id_for(offer.signer_key, o.result_key):
        return error("bad_offer", "task id not bound to the offer's signer and result key")
    if o.deadline_ms <= now * 1000:
        return error("bad_offer", "deadline passed")
    if o.expires * 1000 < o.deadline_ms + OLD_EXPIRY_MARGIN_S * 1000:
        return error("bad_offer", f"offer must expire >= {OLD_EXPIRY_MARGIN_S} s after deadline")
    if env.claimed_before(o.task_id):
        return error("replayed", "this node already took this task")
    current = int(now) // node.config.epoch_s
    # DELIBERATE CHANGE since the copy (stalled-node failover): the epoch window is now the
    # named rule repp2p.tasks.epoch_accepted (EPOCH_LAG = 3, was 1), tested on its own in
    # test_admission.py; the copy follows it so everything else stays held to the old code.
    if not epoch_accepted(o.epoch, current):
        return error("wrong_epoch", f"offer epoch {o.epoch}, now {current}")
    view = node.keeper.view(o.epoch)
    ranking = env.ranking  # rank(o, view, beacon(o.epoch)) on the node's view
    if node.peer_id not in ranking:
        return error("not_assigned", "no claiming rank for this node in its view")
    my_rank = ranking.index(node.peer_id)
    held = node.store.get(offer.record_id) is not None
    if not node.accept_decoded(offer, source="task"):
        return error("bad_offer", "offer refused by the record pipeline")
    if not held:
        node.spread(offer_data, TaskOffer.TYPE)
    for data in releases:
        if old_is_release(data, offer, now):
            node.accept(data, source="task")

    first_seen = node.arrivals.get(offer.record_id, now)
    params = view.matching_params
    opens_at = first_seen + claim_opens_at_ms(my_rank, o.redundancy, params) / 1000
    if opens_at > node.clock():
        env.sleep(opens_at - node.clock())
        if o.deadline_ms <= node.clock() * 1000:
            return error("bad_offer", "deadline passed while waiting for this rank's turn")
    better = []
    for signed in node.store.query(type=Claim.TYPE, slot=o.task_id):
        if signed.signer == node.peer_id:
            continue
        if signed.signer in ranking[:my_rank] and not old_released(
            node.store, offer, signed.signer
        ):
            seen = node.arrivals.get(signed.record_id, first_seen)
            better.append(int((seen - first_seen) * 1000))
    if not should_claim(my_rank, o.redundancy, better, params):
        return error("not_my_turn", f"rank {my_rank}: better ranks claimed in time")
    if env.active >= node.config.capacity:
        return error("no_capacity", "all task slots busy")
    if o.task_id in env.handled:
        return error("replayed", "this node already took this task")
    return {"ok": True, "rank": my_rank}


# -- END OF THE OLD CODE'S LOGIC ---------------------------------------------------------------


def ms(seconds: float) -> int:
    return int(seconds * 1000)


def wire(reject: Reject) -> dict[str, Any]:
    return error(reject.code.value, reject.detail)


def new_admission(env: Env) -> dict[str, Any]:
    """The request served through repp2p.tasks: how run_task is meant to call the rules."""
    node = env.node
    request = env.request
    offer_data, releases = request["offer"], request.get("releases", [])
    now_ms = ms(node.clock())
    offer = check_offer(offer_data, now_ms=now_ms)
    if isinstance(offer, Reject):
        return wire(offer)
    o = offer.record
    fresh = check_fresh(
        o,
        claimed_before=env.claimed_before(o.task_id),
        now_ms=now_ms,
        epoch_s=node.config.epoch_s,
    )
    if fresh is not None:
        return wire(fresh)
    view = node.keeper.view(o.epoch)
    ranking = env.ranking
    my_rank = assigned_rank(ranking, node.peer_id)
    if isinstance(my_rank, Reject):
        return wire(my_rank)
    held = node.store.get(offer.record_id) is not None
    if not node.accept_decoded(offer, source="task"):
        return wire(REFUSED_BY_PIPELINE)
    if not held:
        node.spread(offer_data, TaskOffer.TYPE)
    for signed in releases_in(releases, offer, now_ms=now_ms):
        node.accept(signed.data, source="task")
    first_seen_ms = ms(node.arrivals.get(offer.record_id, now_ms / 1000))
    waited = False
    while True:
        claims = node.store.query(type=Claim.TYPE, slot=o.task_id)
        released = {
            c.signer
            for c in claims
            if any(
                is_release(f, offer, node=c.signer)
                for f in node.store.query(
                    type=Feedback.TYPE, signer=offer.signer, slot=o.task_id + c.signer.encode()
                )
            )
        }
        decision = take_turn(
            o,
            ranking=ranking,
            me=node.peer_id,
            now_ms=ms(node.clock()),
            first_seen_ms=first_seen_ms,
            waited=waited,
            claims_seen=[
                ClaimSeen(c.signer, ms(node.arrivals.get(c.record_id, first_seen_ms / 1000)))
                for c in claims
            ],
            released=released,
            active=env.active,
            capacity=node.config.capacity,
            already_taken=o.task_id in env.handled,
            params=view.matching_params,
        )
        if not isinstance(decision, WaitUntil):
            break
        env.sleep((decision.at_ms - ms(node.clock())) / 1000)
        waited = True
    if isinstance(decision, Reject):
        return wire(decision)
    return {"ok": True, "rank": decision.rank}


def outcome(response: dict[str, Any], env_now: float) -> tuple:
    if response["ok"]:
        return (True, response["rank"], "", ms(env_now))
    return (False, response["error"], response["detail"], ms(env_now))


@functools.cache
def run_old(case: Case) -> tuple:
    env = build(case)
    return outcome(old_admission(env), env.now), tuple(env.node.spread_calls)


def run_new(case: Case) -> tuple:
    env = build(case)
    return outcome(new_admission(env), env.now), tuple(env.node.spread_calls)


# -- the grids -------------------------------------------------------------------------------

#: the offer's own validity, replay, epoch, assignment, the record pipeline
GRID_OFFER = [
    Case(variant=v, epoch_delta=e, claimed_before=c, rank=r, accept_ok=a)
    for v, e, c, r, a in itertools.product(
        OFFER_VARIANTS, (-2, -1, 0, 1), (False, True), (0, None), (True, False)
    )
]

#: the failover turn, the node's limits, the concurrent duplicate, the deadline during a wait
GRID_TURN = [
    Case(rank=r, k=k, first_seen_s=f, claims=c, full=full, duplicate=d, deadline_s=dl)
    for k in (1, 2, 3)
    for r, f, c, full, d, dl in itertools.product(
        range(k + 3),
        (None, -0.5, -3.0, -10.0),
        CLAIM_PATTERNS,
        (False, True),
        (False, True),
        (60.0, 3.0),
    )
]


def test_grids_reach_every_decision():
    seen = {run_old(c)[0][1] for c in GRID_OFFER + GRID_TURN[::3]}
    codes = {"bad_offer", "replayed", "wrong_epoch", "not_assigned", "not_my_turn", "no_capacity"}
    assert codes | {0, 1, 2, 3, 4} <= seen
    details = {run_old(c)[0][2] for c in GRID_TURN}
    assert "deadline passed while waiting for this rank's turn" in details
    waits = {run_old(c)[0][3] - NOW_MS for c in GRID_TURN}
    assert {0, T, 2 * T} <= waits


@pytest.mark.parametrize("case", GRID_OFFER, ids=str)
def test_offer_rules_equal_the_old_code(case):
    assert run_new(case) == run_old(case)


def test_turn_rules_equal_the_old_code():
    # one test for the ~3800 cases (a test id each would drown the report)
    mismatches = [c for c in GRID_TURN if run_new(c) != run_old(c)]
    assert mismatches == []


# -- releases --------------------------------------------------------------------------------


def release_envelopes() -> list[bytes]:
    of = offer()
    other = offer(k=2)  # another task of the same owner
    node = NODES[0].peer_id
    out = [b"junk", claim(of, NODES[0], 0).data, of.data]
    for outcome_ in ("ok", "wrong", "timeout", "bad_proof"):
        out.append(feedback(of, node, outcome_).data)
        out.append(feedback(of, node, outcome_, signer=OTHER_CLIENT).data)
        out.append(feedback(of, node, outcome_, expires=NOW + 1).data)
    out.append(feedback(other, node, "timeout", task_id=bytes(32)).data)
    return out


def test_releases_in_equals_the_old_is_release():
    of = offer()
    envelopes = release_envelopes()
    old = [d for d in envelopes if old_is_release(d, of, NOW_S)]
    new = [s.data for s in releases_in(envelopes, of, now_ms=NOW_MS)]
    assert new == old
    assert len(new) == 2  # the owner's live timeout and bad_proof


def test_is_release_per_claimant_equals_the_old_released():
    of = offer()
    store = FakeStore()
    for d in release_envelopes():
        try:
            store.add(decode(d))
        except RecordError:
            pass
    for n in (*NODES[:3], STRANGER):
        slot = of.record.task_id + n.peer_id.encode()
        found = store.query(type=Feedback.TYPE, signer=of.signer, slot=slot)
        new = any(is_release(f, of, node=n.peer_id) for f in found)
        assert new == old_released(store, of, n.peer_id)
