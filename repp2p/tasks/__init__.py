"""The task protocol's rules as pure code (h11 style): inputs in, decisions out.

Public API::

    # node side: may this node take this offer now? (run in order; stop at a Reject)
    check_offer(data, *, now_ms) -> SignedRecord | Reject
    check_fresh(offer.record, *, claimed_before, now_ms, epoch_s) -> Reject | None
    assigned_rank(ranking, me) -> int | Reject
    take_turn(offer.record, *, ranking, me, now_ms, first_seen_ms, waited, claims_seen,
              released, active, capacity, already_taken, params) -> Admit | WaitUntil | Reject
    is_release(feedback, offer, *, node=None) -> bool      # releases_in, released_claimants

    # client side: one task's tries across ranks, and the vote
    AttemptPlan(ranking, k, *, deadline_ms, params)
        .next_attempt(now_ms) -> Attempt | None
        .on_reply_ok / .on_declined / .on_failed / .on_skipped -> LaneDone | Release | Skip
        .done(now_ms) -> bool;  .conclude() -> Verdict | NoVerdict
    attempt_budget_ms(rank, k, *, sent_ms, deadline_ms, params) -> int

    # disputes: further ranks run a task whose receipts disagree (escalation.py)
    is_disputed(votes) -> bool;  standing_verdict(votes, standing, ...) -> bytes | None
    escalation_ranking(offer, view, beacon) -> [peer, ...]   # no exploration coin
    EscalationPlan(ranking, votes, standing, *, max_replicas, ...)
        .next_replica() -> (rank, peer) | None;  .on_replica(peer, output | None)
    may_be_replica(escalation, me) -> Reject | None           # node, before the receipts
    in_replica_window(escalation, me, envelopes, max_replicas, *, released,
                      unverified_releases) -> Reject | None    # replica_rank on named signers
    named_signers(envelopes) -> [peer, ...] | Reject           # read, not verified
    check_dispute(envelopes, offer, *, now_ms, may_have_run, result_key_of)
        -> [receipt, ...] | Reject                             # node, replica requests
    replica_rank(escalation, me, ran, max_replicas, released=()) -> int | Reject
    take_replica(rank, *, active, capacity, already_taken) -> Admit | Reject
    check_replica_claim(claim, offer, *, peer)                 # client; ClaimError
    # k = 1: the client's signed wrong verdict backs the replica request
    client_credibility(view.reputation, peer) -> float
    check_credibility(credibility, min_permille) -> Reject | None
    check_verdict(data, offer, receipts, *, now_ms) -> Feedback record | Reject
    check_verdict_lifetime(offer, verdict, *, epoch_s, window_epochs, dispute_lag)
        -> Reject | None                                       # lives as long as views count it
    check_verdict_claims(envelopes, offer, receipts, *, now_ms) -> [claim, ...] | Reject
    contested_expiry(epoch, *, epoch_s, window_epochs, dispute_lag) -> unix seconds
    verdict_fault(verdict, offer, signers) -> str | None       # shared with dispute proofs
    expiry_fault(claim_or_receipt, offer) -> str | None        # expires before its offer

Pure: no I/O, no clock (times are integer unix milliseconds passed in), no randomness.
"""

from repp2p.tasks.admission import (
    EPOCH_LAG,
    EXPIRY_MARGIN_S,
    REFUSED_BY_PIPELINE,
    RELEASING_OUTCOMES,
    Admit,
    ClaimSeen,
    Decision,
    Reject,
    WaitUntil,
    assigned_rank,
    check_fresh,
    check_offer,
    current_epoch,
    epoch_accepted,
    is_bound_offer,
    is_release,
    released_claimants,
    releases_in,
    take_turn,
    turn_opens_at_ms,
)
from repp2p.tasks.attempts import (
    ATTEMPT_BUDGET_MS,
    DECLINES,
    MIN_ATTEMPT_MS,
    Answer,
    Attempt,
    AttemptPlan,
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
from repp2p.tasks.codes import REJECT_CODES, ErrorCode
from repp2p.tasks.escalation import (
    MAX_DISPUTE_RECEIPTS,
    MAX_VERDICT_SIZE,
    EscalationPlan,
    Vote,
    check_credibility,
    check_dispute,
    check_replica_claim,
    check_verdict,
    check_verdict_claims,
    check_verdict_lifetime,
    client_credibility,
    contested_expiry,
    escalation_limit,
    escalation_ranking,
    expiry_fault,
    in_replica_window,
    is_disputed,
    may_be_replica,
    named_signers,
    replica_rank,
    standing_verdict,
    take_replica,
    verdict_fault,
)

__all__ = [
    "ATTEMPT_BUDGET_MS",
    "DECLINES",
    "EPOCH_LAG",
    "EXPIRY_MARGIN_S",
    "MAX_DISPUTE_RECEIPTS",
    "MAX_VERDICT_SIZE",
    "MIN_ATTEMPT_MS",
    "REFUSED_BY_PIPELINE",
    "REJECT_CODES",
    "RELEASING_OUTCOMES",
    "Admit",
    "Answer",
    "Attempt",
    "AttemptPlan",
    "ClaimSeen",
    "Decision",
    "ErrorCode",
    "EscalationPlan",
    "LaneDone",
    "NoVerdict",
    "NoVerdictReason",
    "Outcome",
    "PlanError",
    "Reject",
    "Release",
    "Skip",
    "Verdict",
    "Vote",
    "WaitUntil",
    "assigned_rank",
    "attempt_budget_ms",
    "check_credibility",
    "check_dispute",
    "check_fresh",
    "check_offer",
    "check_replica_claim",
    "check_verdict",
    "check_verdict_claims",
    "check_verdict_lifetime",
    "client_credibility",
    "contested_expiry",
    "current_epoch",
    "epoch_accepted",
    "escalation_limit",
    "escalation_ranking",
    "expiry_fault",
    "in_replica_window",
    "is_bound_offer",
    "is_disputed",
    "is_release",
    "may_be_replica",
    "named_signers",
    "released_claimants",
    "releases_in",
    "replica_rank",
    "standing_verdict",
    "take_replica",
    "take_turn",
    "turn_opens_at_ms",
    "verdict_fault",
]
