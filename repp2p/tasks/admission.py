"""Node admission: may this node take this task offer now? (the rules of ``run_task``)

Rules of this file (h11 style):

* No I/O at all: no clock, no store, no network, no sleep, no randomness. Every input is an
  argument (times are integer unix **milliseconds** the caller read from its clock) and
  every answer is a value: :class:`Reject`, :class:`WaitUntil` or :class:`Admit`.
* The rules run in one fixed order and the first that fails decides. The order, the
  conditions, the codes and the details are those of ``TaskServer.run_task`` before this
  module existed (``tests/tasks/test_equivalence.py`` holds them equal on a grid).
* Where the caller must do I/O between two rules, the rules are split into steps; the
  caller runs them in order and stops at the first :class:`Reject`::

      step                              I/O the caller does first     rules
      1 check_offer(data, now_ms=)      read the request frame        decode, type, binding,
                                                                      deadline, expiry margin
      2 check_fresh(o, claimed_before=, look up its own claim         replay, epoch window
                    now_ms=, epoch_s=)
      3 assigned_rank(ranking, me)      rank o on its view of o.epoch not_assigned
        -- store the offer (refused: REFUSED_BY_PIPELINE), spread it, store the request's
           releases (releases_in) --
      4 take_turn(o, ...)               read first seen, claims,      wait for the turn,
                                        releases, load, duplicates    deadline after the wait,
                                                                      not_my_turn, no_capacity,
                                                                      replayed (duplicate)

  Step 4 answers :class:`WaitUntil` when the rank's failover turn opens later: the caller
  sleeps until then and runs step 4 again with fresh inputs and ``waited=True`` (today's
  code sleeps once, then re-checks the deadline; step 4 never asks to wait twice).
* Releases: a better rank's claim does not block this node when the offer's owner published
  ``timeout`` or ``bad_proof`` Feedback on that claimant for this task (:func:`is_release`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Sequence

from repp2p.errors import RecordError
from repp2p.matching import MatchingParams, claim_opens_at_ms, should_claim
from repp2p.records import Feedback, SignedRecord, TaskOffer, decode, task_id_for
from repp2p.tasks.codes import REJECT_CODES, ErrorCode

#: an offer must stay valid this long after its deadline (the node's claim and receipt expire
#: with it, so they outlive the task).
EXPIRY_MARGIN_S = 60

#: The epoch window: a node accepts an offer whose ``epoch`` is the current epoch or up to
#: this many epochs before it, never a future one (the offer's deadline, checked first,
#: bounds how late it may come anyway). Three epochs, because a failover rank's request
#: comes after the ranks before it failed: with the window at one epoch, a task on 10-s
#: dev epochs whose rank 0 stalled reached rank 1 two epochs later and was refused
#: (``wrong_epoch``) though its deadline had not passed. Nodes keep the views of the last
#: four epochs (repp2p.viewer.ViewKeeper), so the offer's view is at hand.
EPOCH_LAG = 3

#: the owner's Feedback outcomes that release a claimant (so the next rank may take over)
RELEASING_OUTCOMES = frozenset({"timeout", "bad_proof"})


# -- decisions -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Reject:
    """Do not serve: answer ``{"ok": false, "error": code, "detail": detail}``."""

    code: ErrorCode
    detail: str = ""

    def __post_init__(self) -> None:
        if self.code not in REJECT_CODES:
            raise ValueError(f"{self.code!r} is not an admission code")


@dataclasses.dataclass(frozen=True)
class WaitUntil:
    """This rank's failover turn opens at ``at_ms`` (unix ms): sleep until then, then run
    :func:`take_turn` again with fresh inputs and ``waited=True``."""

    at_ms: int


@dataclasses.dataclass(frozen=True)
class Admit:
    """Take the task: publish a Claim at ``rank`` and run it."""

    rank: int


Decision = Admit | WaitUntil | Reject

#: the node's record pipeline refused the (valid-looking) offer: the caller's step between
#: 3 and 4, named here so that its code and detail live with the others
REFUSED_BY_PIPELINE = Reject(ErrorCode.BAD_OFFER, "offer refused by the record pipeline")


@dataclasses.dataclass(frozen=True)
class ClaimSeen:
    """A Claim on this task in the node's store.

    Attributes:
        signer: the claimant's peer ID.
        seen_ms: when this node first saw the claim (unix ms); the caller passes the offer's
            ``first_seen_ms`` when it has no arrival time for the claim (today's default).
    """

    signer: str
    seen_ms: int


# -- step 1: the offer itself ----------------------------------------------------------------


def is_bound_offer(signed: SignedRecord) -> bool:
    """True when ``signed`` is a TaskOffer whose task id is bound to its signer and result
    key (:func:`repp2p.records.task_id_for`).

    An unbound offer is a squatting attempt: someone else's task id under another key. No
    peer stores one, and views never let one decide a task's epoch.
    """
    rec = signed.record
    return isinstance(rec, TaskOffer) and rec.task_id == task_id_for(
        signed.signer_key, rec.result_key
    )


def check_offer(data: bytes, *, now_ms: int) -> SignedRecord | Reject:
    """Step 1: decode the request's offer envelope and check it on its own.

    Rules, in order (all ``bad_offer``): it decodes and is live at ``now_ms // 1000``; it is
    a TaskOffer; its task id is bound to its signer and result key; its deadline is after
    ``now_ms``; it expires at least :data:`EXPIRY_MARGIN_S` after its deadline.

    Returns:
        The decoded offer (``record`` is a :class:`TaskOffer`), or the :class:`Reject`.
    """
    try:
        offer = decode(data, now=now_ms // 1000)
    except RecordError as exc:
        return Reject(ErrorCode.BAD_OFFER, str(exc))
    if not isinstance(offer.record, TaskOffer):
        return Reject(ErrorCode.BAD_OFFER, f"a {offer.type} is not an offer")
    o = offer.record
    if not is_bound_offer(offer):
        return Reject(ErrorCode.BAD_OFFER, "task id not bound to the offer's signer and result key")
    if o.deadline_ms <= now_ms:
        return Reject(ErrorCode.BAD_OFFER, "deadline passed")
    if o.expires * 1000 < o.deadline_ms + EXPIRY_MARGIN_S * 1000:
        # The claim and receipt expire with the offer: it must outlive the deadline.
        return Reject(
            ErrorCode.BAD_OFFER, f"offer must expire >= {EXPIRY_MARGIN_S} s after deadline"
        )
    return offer


# -- step 2: replay and epoch ----------------------------------------------------------------


def current_epoch(now_ms: int, epoch_s: int) -> int:
    """The epoch at ``now_ms``: whole seconds divided by the epoch length."""
    return now_ms // 1000 // epoch_s


def epoch_accepted(offer_epoch: int, current: int) -> bool:
    """The epoch window rule: ``current - EPOCH_LAG <= offer_epoch <= current``."""
    return current - EPOCH_LAG <= offer_epoch <= current


def check_fresh(o: TaskOffer, *, claimed_before: bool, now_ms: int, epoch_s: int) -> Reject | None:
    """Step 2: replay, then the epoch window (:func:`epoch_accepted`).

    Args:
        o: the offer step 1 returned.
        claimed_before: this node already took this task (it holds its own Claim on it, or
            claimed it moments ago).
        now_ms: the same clock reading as step 1.
        epoch_s: the network's epoch length.

    Returns:
        ``replayed`` or ``wrong_epoch``, or None when both rules pass.
    """
    if claimed_before:
        return Reject(ErrorCode.REPLAYED, "this node already took this task")
    current = current_epoch(now_ms, epoch_s)
    if not epoch_accepted(o.epoch, current):
        return Reject(ErrorCode.WRONG_EPOCH, f"offer epoch {o.epoch}, now {current}")
    return None


# -- step 3: the ranking ---------------------------------------------------------------------


def assigned_rank(ranking: Sequence[str], me: str) -> int | Reject:
    """Step 3: this node's rank in its own ranking of the offer, or ``not_assigned``.

    Run before the offer is stored: an offer nobody assigned to this node stays out of its
    feed.
    """
    if me not in ranking:
        return Reject(ErrorCode.NOT_ASSIGNED, "no claiming rank for this node in its view")
    return list(ranking).index(me)


# -- releases --------------------------------------------------------------------------------


def is_release(signed: SignedRecord, offer: SignedRecord, *, node: str | None = None) -> bool:
    """True when ``signed`` is the offer owner's ``timeout``/``bad_proof`` Feedback on this
    task (on ``node`` when given): a release of that claimant."""
    fb = signed.record
    return (
        isinstance(fb, Feedback)
        and signed.signer == offer.signer
        and fb.task_id == offer.record.task_id
        and fb.outcome in RELEASING_OUTCOMES
        and (node is None or fb.node == node)
    )


def releases_in(
    envelopes: Iterable[bytes], offer: SignedRecord, *, now_ms: int
) -> list[SignedRecord]:
    """The envelopes of a request's ``releases`` that are releases on this offer (decoded,
    live at ``now_ms``); others are dropped without a word, as today."""
    found = []
    for data in envelopes:
        try:
            signed = decode(data, now=now_ms // 1000)
        except RecordError:
            continue
        if is_release(signed, offer):
            found.append(signed)
    return found


def released_claimants(feedbacks: Iterable[SignedRecord], offer: SignedRecord) -> frozenset[str]:
    """The claimants released by any of ``feedbacks`` (e.g. the owner's Feedback records on
    this task from the store): the ``released`` argument of :func:`take_turn`."""
    return frozenset(s.record.node for s in feedbacks if is_release(s, offer))


# -- step 4: the failover turn ---------------------------------------------------------------


def turn_opens_at_ms(o: TaskOffer, rank: int, first_seen_ms: int, params: MatchingParams) -> int:
    """When ``rank``'s failover turn opens (unix ms): first sight of the offer plus
    :func:`repp2p.matching.claim_opens_at_ms` (0 for the first ``k`` ranks)."""
    return first_seen_ms + claim_opens_at_ms(rank, o.redundancy, params)


def better_claims_ms(
    *,
    rank: int,
    ranking: Sequence[str],
    me: str,
    first_seen_ms: int,
    claims_seen: Iterable[ClaimSeen],
    released: Collection[str],
) -> list[int]:
    """Offsets (ms after first sight of the offer) of the claims that block ``rank``: from a
    better rank, not this node's own, and not released."""
    better_ranks = set(ranking[:rank])
    return [
        c.seen_ms - first_seen_ms
        for c in claims_seen
        if c.signer != me and c.signer in better_ranks and c.signer not in released
    ]


def take_turn(
    o: TaskOffer,
    *,
    ranking: Sequence[str],
    me: str,
    now_ms: int,
    first_seen_ms: int,
    waited: bool,
    claims_seen: Iterable[ClaimSeen],
    released: Collection[str],
    active: int,
    capacity: int,
    already_taken: bool,
    params: MatchingParams,
) -> Decision:
    """Step 4: the failover turn, then the node's own limits.

    Rules, in order:

    1. the turn opens at :func:`turn_opens_at_ms`; before that (and not ``waited``):
       :class:`WaitUntil`;
    2. after a wait, the deadline must still be ahead (``bad_offer``);
    3. fewer than ``k`` unreleased better-rank claims seen by the turn's opening
       (:func:`repp2p.matching.should_claim`), else ``not_my_turn``;
    4. a free task slot (``active < capacity``), else ``no_capacity``;
    5. no concurrent duplicate request took the task meanwhile (``replayed``).

    Args:
        o: the offer; ``me`` must be in ``ranking`` (step 3).
        ranking: this node's ranking of the offer (best first).
        me: this node's peer ID.
        now_ms: the clock now (unix ms).
        first_seen_ms: when this node first saw the offer (its arrival, else step 1's now).
        waited: this call follows a :class:`WaitUntil` the caller slept on.
        claims_seen: the Claims on this task in the store, with arrival times.
        released: claimants the offer's owner released (:func:`released_claimants`).
        active, capacity: tasks running now and the node's task slots.
        already_taken: the node took this task since step 2 (a concurrent duplicate).
        params: the view's :class:`MatchingParams`.
    """
    rank = list(ranking).index(me)
    opens_at_ms = turn_opens_at_ms(o, rank, first_seen_ms, params)
    if not waited and opens_at_ms > now_ms:
        return WaitUntil(opens_at_ms)
    if waited and o.deadline_ms <= now_ms:
        return Reject(ErrorCode.BAD_OFFER, "deadline passed while waiting for this rank's turn")
    better = better_claims_ms(
        rank=rank,
        ranking=ranking,
        me=me,
        first_seen_ms=first_seen_ms,
        claims_seen=claims_seen,
        released=released,
    )
    if not should_claim(rank, o.redundancy, better, params):
        return Reject(ErrorCode.NOT_MY_TURN, f"rank {rank}: better ranks claimed in time")
    if active >= capacity:
        return Reject(ErrorCode.NO_CAPACITY, "all task slots busy")
    if already_taken:  # a concurrent duplicate request won the race
        return Reject(ErrorCode.REPLAYED, "this node already took this task")
    return Admit(rank)
