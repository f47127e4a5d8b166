"""Deterministic matching: who runs a task, with failover and no coordinator (docs/core.md).

Public API::

    View.build(records, attested, *, epoch, params, penalties=None, ...) -> View
    View.from_evidence(evidence, *, epoch, params, ...) -> View      # simulator path
    beacon(epoch) -> 32 bytes                                        # public, per epoch
    rank(task, view, beacon, *, limit=None) -> list[peer_id]         # first k take it
    verify_claim(claim, offer, view, beacon) -> rank                 # raises ClaimError
    should_claim(rank, k, better_claims_seen_ms, params) -> bool     # failover schedule
    claim_opens_at_ms(rank, k, params) -> int
    accepted_claims(seen_ms, k, params) -> [rank, ...]
    MatchingParams(...)                                              # frozen, validated
    assigned_ranks(offer, view) -> {peer: ranks}      # the ranks a claim may rightly hold
    Assignments().ranks(offer_record, view_of)        # the same, cached per offer

``params`` is the network's :class:`repp2p.network_params.NetworkParams` (epoch length,
matching and reputation parameters; its digest goes into the view's).

Pure: no I/O, no clock, no global randomness; the beacon is an argument.
"""

from repp2p.matching.assignments import Assignments, assigned_ranks, escalation_order
from repp2p.matching.beacon import BEACON_DOMAIN, beacon
from repp2p.matching.claims import (
    ClaimError,
    ClaimReason,
    accepted_claims,
    claim_opens_at_ms,
    may_rank_claim,
    should_claim,
    verify_claim,
)
from repp2p.matching.hashing import draw, peer_word, pool_coin, task_words
from repp2p.matching.params import MatchingParams
from repp2p.matching.rank import rank_fast, rank_first_many, rank_reference
from repp2p.matching.view import ClaimedDemand, View, rank

__all__ = [
    "BEACON_DOMAIN",
    "Assignments",
    "ClaimError",
    "ClaimReason",
    "ClaimedDemand",
    "MatchingParams",
    "View",
    "accepted_claims",
    "assigned_ranks",
    "beacon",
    "claim_opens_at_ms",
    "draw",
    "escalation_order",
    "may_rank_claim",
    "peer_word",
    "pool_coin",
    "rank",
    "rank_fast",
    "rank_first_many",
    "rank_reference",
    "should_claim",
    "task_words",
    "verify_claim",
]
