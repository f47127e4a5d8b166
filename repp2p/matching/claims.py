"""Claims: the failover schedule and the check any peer runs on a claim.

Failover without a coordinator: the first ``k`` ranks (``k = redundancy``) claim at once;
rank ``r >= k`` may claim ``(r - k + 1) * claim_timeout_ms`` after it saw the offer, and
only if fewer than ``k`` valid claims from better ranks had appeared by then. For ``k = 1``
this is the plain rule "rank r claims only if no better rank claimed within r x timeout".
Offsets are measured from when each peer saw the offer (its own clock): timing steers who
claims, it is not a consensus input. What every peer *can* check is :func:`verify_claim`:
the claimant is really at that rank in the view, and the rank may claim at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from repp2p.errors import ClaimError, ClaimReason
from repp2p.matching.params import MatchingParams
from repp2p.matching.view import View
from repp2p.records import Claim, TaskOffer
from repp2p.reputation import AcceptedRecord


def claim_opens_at_ms(rank: int, redundancy: int, params: MatchingParams) -> int:
    """Milliseconds after seeing the offer when ``rank`` may claim (0 for the first k)."""
    return max(0, rank - redundancy + 1) * params.claim_timeout_ms


def may_rank_claim(rank: int, redundancy: int, params: MatchingParams) -> bool:
    """True when ``rank`` is within ``redundancy + failover_depth``."""
    return 0 <= rank < redundancy + params.failover_depth


def should_claim(
    rank: int,
    redundancy: int,
    better_claims_seen_ms: Iterable[int],
    params: MatchingParams,
) -> bool:
    """Should the node at ``rank`` claim now that its turn has come?

    Args:
        rank: the node's rank for the task.
        redundancy: the task's ``k``.
        better_claims_seen_ms: for each valid claim from a better rank, the offset (ms after
            this node saw the offer) at which it appeared.
        params: :class:`MatchingParams`.

    Returns:
        True when the rank may claim and fewer than ``k`` better claims appeared by
        :func:`claim_opens_at_ms`.
    """
    if not may_rank_claim(rank, redundancy, params):
        return False
    opens = claim_opens_at_ms(rank, redundancy, params)
    return sum(1 for t in better_claims_seen_ms if t <= opens) < redundancy


def accepted_claims(
    seen_ms: Mapping[int, int], redundancy: int, params: MatchingParams
) -> list[int]:
    """The ranks a client takes, from valid claims ``rank -> offset seen (ms)``.

    Replays the schedule: ranks in order; a claim counts if the claimant's turn was fair
    (fewer than ``k`` better claims by its opening time) and fewer than ``k`` are taken.
    """
    taken: list[int] = []
    for r in sorted(seen_ms):
        if len(taken) >= redundancy:
            break
        better = [t for rr, t in seen_ms.items() if rr < r]
        if should_claim(r, redundancy, better, params):
            taken.append(r)
    return taken


def verify_claim(
    claim: AcceptedRecord,
    offer: AcceptedRecord,
    view: View,
    beacon: bytes,
    *,
    check_digest: bool = True,
    ranking: Sequence[str] | None = None,
) -> int:
    """Check that ``claim`` is a valid assignment of ``offer`` under ``view``.

    Args:
        claim: the signed ``Claim`` (``record``, ``signer``, ``record_id``).
        offer: the signed ``TaskOffer`` it names.
        view: the checker's view of the offer's epoch.
        beacon: that epoch's 32-byte beacon.
        check_digest: also require the claim's ``view_digest`` to equal ``view.digest``;
            turn off to judge a claim made on a slightly different view by one's own.
        ranking: ``rank(offer, view, beacon)`` (default limit) when the caller holds it
            already (a client checking the claims of the ranking it sent the task to):
            the same list, not computed again.

    Returns:
        The claim's rank (0 = best).

    Raises:
        ClaimError: NOT_A_CLAIM, WRONG_OFFER, WRONG_EPOCH, VIEW_MISMATCH, RANK_TOO_DEEP,
            NOT_ELIGIBLE (the signer has no rank in the view) or WRONG_RANK.
    """
    c, o = claim.record, offer.record
    if not isinstance(c, Claim) or not isinstance(o, TaskOffer):
        raise ClaimError(ClaimReason.NOT_A_CLAIM, "need a Claim and a TaskOffer")
    if c.offer_id != offer.record_id or c.task_id != o.task_id:
        raise ClaimError(ClaimReason.WRONG_OFFER, "claim names another offer")
    if c.epoch != o.epoch or o.epoch != view.epoch:
        raise ClaimError(
            ClaimReason.WRONG_EPOCH, f"claim {c.epoch}, offer {o.epoch}, view {view.epoch}"
        )
    if check_digest and c.view_digest != view.digest:
        raise ClaimError(ClaimReason.VIEW_MISMATCH, "claim was matched on another view")
    if not may_rank_claim(c.rank, o.redundancy, view.matching_params):
        raise ClaimError(ClaimReason.RANK_TOO_DEEP, f"rank {c.rank}")
    if ranking is None:
        ranking = view.rank(o, beacon)
    if claim.signer not in ranking:
        raise ClaimError(ClaimReason.NOT_ELIGIBLE, "claimant has no rank for this task")
    actual = ranking.index(claim.signer)
    if actual != c.rank:
        raise ClaimError(ClaimReason.WRONG_RANK, f"claims rank {c.rank}, is {actual}")
    return actual
