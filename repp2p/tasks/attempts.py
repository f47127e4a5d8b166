"""The client's attempt planner: one task's tries across ranks, and the vote that ends it.

Rules of this file (h11 style):

* No I/O at all: no clock, no network, no sleep, no randomness. The caller reads its clock
  (integer unix **milliseconds**), talks to nodes, publishes feedback; this file only says
  whom to try next, with what time budget, what each outcome means, and what the answers
  amount to. Inputs are method calls; outputs are frozen dataclasses.
* :class:`AttemptPlan` is a small state machine, one per task. Lanes: ``min(k, ranks)``
  lanes run concurrently (``k`` = the offer's redundancy); each lane takes the next untried
  rank (no rank is tried twice), moves on when its node declines or fails, and ends on an
  ok answer. No new attempt starts at or after the deadline. The caller runs one lane loop
  per lane::

      while (attempt := plan.next_attempt(now_ms)) is not None:
          step = <try attempt.peer for attempt.budget_ms, then report with plan.on_*>
          if step is a Release: publish its feedback, carry it with the next requests
          if step is a LaneDone: end this lane

* What a node's answer means is one table, :data:`DECLINES`: a decline that follows the
  node's claim (``execution_failed``, ``replayed``) is a failure to release with
  ``timeout`` feedback; any other decline (not its turn, busy, ...) is skipped: the lane
  moves on and nothing is published (also ``input_refused``: the node's enclave signed a
  refusal of the client's own input, so it has nothing to answer for). A request that
  fails or times out is released with
  ``timeout``; an answer whose proof does not check out with ``bad_proof``.
* :meth:`AttemptPlan.conclude` is the vote, exactly as the client always voted: the
  verified outputs vote, the most votes win, a tie goes to the output whose best voter has
  the best rank; the winner needs a strict majority of the verified answers, else
  ``no_majority``; no verified answer at all is ``no_result``. Outvoted answers become
  ``wrong``; the answers are listed best rank first.
  A disputed task (two outputs) may then be escalated (:mod:`repp2p.tasks.escalation`):
  replica answers join with :meth:`AttemptPlan.on_replica`, and a confident
  standing-weighted verdict passed as ``conclude(upheld=...)`` decides instead of the count.
* Times, budgets and the per-attempt budget rule are in :func:`attempt_budget_ms`.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from repp2p.matching import MatchingParams, claim_opens_at_ms
from repp2p.tasks.codes import ErrorCode

#: ms one node gets, after its failover turn opens, to return a verified result
ATTEMPT_BUDGET_MS = 30_000
#: no attempt gets less than this (ms), even past the deadline
MIN_ATTEMPT_MS = 100


class Outcome(enum.StrEnum):
    """The Feedback outcome the client publishes on a node (``repp2p.records.OUTCOMES``)."""

    OK = "ok"
    WRONG = "wrong"
    TIMEOUT = "timeout"
    BAD_PROOF = "bad_proof"


class NoVerdictReason(enum.StrEnum):
    """Why a task ended without a result (``TaskError.reason``)."""

    NO_RESULT = "no_result"
    NO_MAJORITY = "no_majority"


#: What a node's decline means: release it with this feedback outcome (it may hold a claim
#: that blocks the next rank), or None: skip to the next rank and publish nothing.
DECLINES: Mapping[ErrorCode, Outcome | None] = MappingProxyType(
    {
        ErrorCode.BAD_REQUEST: None,
        ErrorCode.BAD_OFFER: None,
        # our retry of a request whose answer was lost met the node's claim
        ErrorCode.REPLAYED: Outcome.TIMEOUT,
        ErrorCode.WRONG_EPOCH: None,
        ErrorCode.NOT_ASSIGNED: None,
        ErrorCode.NOT_MY_TURN: None,
        ErrorCode.NO_CAPACITY: None,
        ErrorCode.BAD_DISPUTE: None,
        ErrorCode.BAD_VERDICT: None,
        ErrorCode.LOW_CREDIBILITY: None,
        # it claimed, then failed
        ErrorCode.EXECUTION_FAILED: Outcome.TIMEOUT,
        # it claimed, and its enclave proved our input was at fault: nothing against it
        ErrorCode.INPUT_REFUSED: None,
    }
)

#: the outcomes :meth:`AttemptPlan.on_failed` takes
FAILURES = frozenset({Outcome.TIMEOUT, Outcome.BAD_PROOF})


def attempt_budget_ms(
    rank: int,
    redundancy: int,
    *,
    sent_ms: int,
    deadline_ms: int,
    params: MatchingParams,
    budget_ms: int = ATTEMPT_BUDGET_MS,
    last: bool = False,
) -> int:
    """How long (ms) the client waits for the node at ``rank`` before releasing it.

    With ``left = deadline_ms - sent_ms`` and ``opens`` the rank's failover wait
    (:func:`repp2p.matching.claim_opens_at_ms`, 0 for the first ``k`` ranks):

    * the last rank the client can try (``last``) gets all that is left: ``left``;
    * any other gets ``min(left, opens + min(budget_ms, (left - opens) // 2))``: its turn
      plus one execution, but never more than half of what is left after its turn, so a
      node that accepts the request and then stalls leaves time for the next ranks (a
      stalled rank 0 once took the whole deadline of a task whose timeout was at most
      ``budget_ms``, and no other rank was tried);

    and never less than :data:`MIN_ATTEMPT_MS`.
    """
    left = deadline_ms - sent_ms
    if last:
        return max(MIN_ATTEMPT_MS, left)
    opens = claim_opens_at_ms(rank, redundancy, params)
    share = max(0, left - opens) // 2
    return max(MIN_ATTEMPT_MS, min(left, opens + min(budget_ms, share)))


# -- what the planner hands out and answers --------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Attempt:
    """Send the task to ``peer`` (rank ``rank``) and wait at most ``budget_ms`` for it."""

    rank: int
    peer: str
    budget_ms: int


@dataclasses.dataclass(frozen=True)
class Release:
    """Publish ``outcome`` Feedback on ``peer`` and carry it with the next requests (so
    the next rank may take over), then ask for the lane's next attempt."""

    rank: int
    peer: str
    outcome: Outcome
    latency_ms: int


@dataclasses.dataclass(frozen=True)
class Skip:
    """Nothing to publish: ask for the lane's next attempt."""

    rank: int
    peer: str


@dataclasses.dataclass(frozen=True)
class LaneDone:
    """The lane got a verified answer: it ends."""

    rank: int
    peer: str


Step = Release | Skip | LaneDone


@dataclasses.dataclass(frozen=True)
class Answer:
    """A node that answered or failed (skipped ranks leave none).

    ``outcome`` is provisional (ok, timeout, bad_proof) until the vote; ``output`` is the
    verified output (or any bytes standing for it, e.g. its digest) for ``ok``. ``replica``:
    a dispute replica (:meth:`AttemptPlan.on_replica`), whose ``rank`` is its place in the
    escalation ranking (:func:`repp2p.tasks.escalation_ranking`).
    """

    rank: int
    peer: str
    outcome: Outcome
    latency_ms: int
    output: bytes | None = None
    replica: bool = False


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The vote's result.

    Attributes:
        output: the winning output.
        agreed: how many verified answers gave it.
        answers: every answer, best rank first (replicas last, in the order asked), outvoted
            ones as ``wrong``.
        feedback: the answers to publish ``ok``/``wrong`` Feedback on, best rank first
            (``timeout``/``bad_proof`` were published as releases already).
    """

    output: bytes
    agreed: int
    answers: tuple[Answer, ...]
    feedback: tuple[Answer, ...]


@dataclasses.dataclass(frozen=True)
class NoVerdict:
    """No result: ``reason`` and how many verified answers there were."""

    reason: NoVerdictReason
    verified: int

    def detail(self, engine_id: str) -> str:
        """The ``TaskError`` detail the client has always given."""
        if self.reason is NoVerdictReason.NO_RESULT:
            return f"no node delivered a verified result for {engine_id}"
        return f"{self.verified} verified results disagree"


class PlanError(Exception):
    """The caller broke the planner's protocol (an event for a rank not in flight...)."""


# -- the state machine -----------------------------------------------------------------------


class AttemptPlan:
    """One task's tries across ranks (see the rules at the top of this file).

    Args:
        ranking: the client's ranking of the offer, best first (peer IDs).
        redundancy: the offer's ``k``.
        deadline_ms: the offer's deadline (unix ms).
        params: the view's :class:`MatchingParams` (failover schedule for budgets).
        budget_ms: :data:`ATTEMPT_BUDGET_MS` unless a test changes it.
    """

    def __init__(
        self,
        ranking: Sequence[str],
        redundancy: int,
        *,
        deadline_ms: int,
        params: MatchingParams,
        budget_ms: int = ATTEMPT_BUDGET_MS,
    ) -> None:
        if redundancy < 1:
            raise ValueError("redundancy must be >= 1")
        self.ranking = tuple(ranking)
        self.redundancy = redundancy
        self.deadline_ms = deadline_ms
        self.params = params
        self.budget_ms = budget_ms
        #: lanes that run at once: one per wanted answer, no more than there are ranks
        self.lanes = min(redundancy, len(self.ranking))
        self._next_rank = 0
        self._in_flight: dict[int, Attempt] = {}
        self._answers: list[Answer] = []
        self._ok = 0

    # -- state -------------------------------------------------------------------------------
    @property
    def in_flight(self) -> tuple[Attempt, ...]:
        """Attempts handed out and not yet reported, in hand-out order."""
        return tuple(self._in_flight.values())

    @property
    def answers(self) -> tuple[Answer, ...]:
        """Answers so far, in the order they were reported."""
        return tuple(self._answers)

    @property
    def tried(self) -> int:
        """How many ranks were handed out (ranks ``0 .. tried - 1``)."""
        return self._next_rank

    def _open_lanes(self) -> int:
        return self.lanes - self._ok

    def _may_start(self, now_ms: int) -> bool:
        return now_ms < self.deadline_ms and self._next_rank < len(self.ranking)

    def done(self, now_ms: int) -> bool:
        """Nothing in flight and nothing more to try: every lane got its answer, the ranking
        is exhausted or the deadline has come."""
        if self._in_flight:
            return False
        return self._ok >= self.lanes or not self._may_start(now_ms)

    # -- hand-out ----------------------------------------------------------------------------
    def next_attempt(self, now_ms: int) -> Attempt | None:
        """The next untried rank for a free lane, or None (the lane ends).

        None when the deadline has come, every rank was tried, or the open lanes
        (``lanes`` less the ok answers) are all busy.
        """
        if not self._may_start(now_ms) or len(self._in_flight) >= self._open_lanes():
            return None
        r = self._next_rank
        self._next_rank += 1
        budget = attempt_budget_ms(
            r,
            self.redundancy,
            sent_ms=now_ms,
            deadline_ms=self.deadline_ms,
            params=self.params,
            budget_ms=self.budget_ms,
            last=r == len(self.ranking) - 1,
        )
        attempt = Attempt(r, self.ranking[r], budget)
        self._in_flight[r] = attempt
        return attempt

    # -- events ------------------------------------------------------------------------------
    def _finish(self, rank: int) -> Attempt:
        attempt = self._in_flight.pop(rank, None)
        if attempt is None:
            raise PlanError(f"rank {rank} is not in flight")
        return attempt

    def _failed(self, attempt: Attempt, outcome: Outcome, latency_ms: int) -> Release:
        self._answers.append(Answer(attempt.rank, attempt.peer, outcome, latency_ms))
        return Release(attempt.rank, attempt.peer, outcome, latency_ms)

    def on_reply_ok(self, rank: int, output: bytes, latency_ms: int) -> LaneDone:
        """The node's answer checked out (claim, receipt, decryption): its lane ends."""
        attempt = self._finish(rank)
        self._answers.append(Answer(rank, attempt.peer, Outcome.OK, latency_ms, output))
        self._ok += 1
        return LaneDone(rank, attempt.peer)

    def on_declined(self, rank: int, code: ErrorCode | str, latency_ms: int) -> Release | Skip:
        """The node answered ``{"ok": false, "error": code}``: :data:`DECLINES` decides."""
        outcome = DECLINES[ErrorCode(code)]  # an unknown code changes nothing
        attempt = self._finish(rank)
        if outcome is None:
            return Skip(rank, attempt.peer)
        return self._failed(attempt, outcome, latency_ms)

    def on_failed(self, rank: int, reason: Outcome | str, latency_ms: int) -> Release:
        """The request failed: ``timeout`` (no answer in the budget, dead node, reset
        stream, protocol violation) or ``bad_proof`` (the answer did not check out)."""
        outcome = Outcome(reason)
        if outcome not in FAILURES:
            raise PlanError(f"{outcome} is not a failure")
        return self._failed(self._finish(rank), outcome, latency_ms)

    def on_skipped(self, rank: int) -> Skip:
        """The attempt was not made (the client holds no attested keys for the node)."""
        return Skip(rank, self._finish(rank).peer)

    def on_replica(
        self,
        rank: int,
        peer: str,
        outcome: Outcome | str,
        latency_ms: int,
        output: bytes | None = None,
    ) -> None:
        """A dispute replica's answer (after the lanes are done; docs/core.md "Disputes and
        escalation"): ``ok`` with its verified ``output``, or ``timeout``/``bad_proof``
        (the caller releases it with that feedback, as for a lane's failure). A replica
        that declined leaves no answer: do not report it."""
        outcome = Outcome(outcome)
        if outcome is Outcome.OK and output is None:
            raise PlanError("an ok replica answer needs its output")
        if outcome is not Outcome.OK and outcome not in FAILURES:
            raise PlanError(f"{outcome} is not a replica answer")
        if any(a.peer == peer for a in self._answers):
            raise PlanError(f"{peer} answered this task already")
        kept = output if outcome is Outcome.OK else None
        self._answers.append(Answer(rank, peer, outcome, latency_ms, kept, replica=True))

    # -- the vote ----------------------------------------------------------------------------
    def conclude(self, upheld: bytes | None = None) -> Verdict | NoVerdict:
        """The vote over the verified answers (see the rules at the top of this file).

        Args:
            upheld: the output a confident standing-weighted verdict upheld on a disputed
                task (:meth:`repp2p.tasks.EscalationPlan.verdict`). It wins whatever the
                count (the standing rule, not the count, decides a dispute); answers with
                another output are ``wrong``. None: the count vote above.
        """
        if self._in_flight:
            raise PlanError("attempts still in flight")
        good = [a for a in self._answers if a.outcome is Outcome.OK and a.output is not None]
        if not good:
            return NoVerdict(NoVerdictReason.NO_RESULT, 0)
        votes: dict[bytes, list[Answer]] = {}
        for a in good:
            votes.setdefault(a.output, []).append(a)  # type: ignore[arg-type]
        if upheld is not None:
            if upheld not in votes:
                raise PlanError("the upheld output is no answer's")
            output, agreeing = upheld, votes[upheld]
        else:
            # Most votes; a tie goes to the output with the best-ranked voter. (Kept as the
            # client always had it, though a tie never has a strict majority, so the
            # tie-break never picks a verdict's output.)
            output, agreeing = max(
                votes.items(), key=lambda kv: (len(kv[1]), -min(a.rank for a in kv[1]))
            )
            if not len(agreeing) * 2 > len(good):
                return NoVerdict(NoVerdictReason.NO_MAJORITY, len(good))
        final = []
        # the first round's answers by rank, then the replicas in the order asked
        for a in sorted(self._answers, key=lambda a: (a.replica, a.rank)):
            if a.outcome is Outcome.OK and a.output != output:
                a = dataclasses.replace(a, outcome=Outcome.WRONG)  # outvoted
            final.append(a)
        feedback = tuple(a for a in final if a.outcome in (Outcome.OK, Outcome.WRONG))
        return Verdict(output, len(agreeing), tuple(final), feedback)
