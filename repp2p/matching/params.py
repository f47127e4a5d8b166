"""``MatchingParams``: the knobs of deterministic matching, documented and validated."""

from __future__ import annotations

import dataclasses

from repp2p.params_check import bool_field, int_field


@dataclasses.dataclass(frozen=True)
class MatchingParams:
    """Parameters every peer of a network must share for rankings to agree.

    Attributes:
        claim_timeout_ms: failover step: rank ``r`` (``r >= k``) may claim
            ``(r - k + 1) * claim_timeout_ms`` after it saw the offer, milliseconds,
            1..600000.
        failover_depth: ranks beyond the first ``k`` that may ever claim, 0..239; a claim at
            rank ``>= k + failover_depth`` is invalid (``Claim.rank`` is a byte).
        exploration_permille: share of tasks whose ranking starts with the newcomer pool,
            permille, 0..500. The newcomer pool's total share is bounded by this whatever
            the number of newcomer identities, so identities cannot farm it.
        reputation_exponent: weight = ``permille ** exponent * min(capacity, capacity_cap)``,
            0..3 (0: reputation only gates eligibility).
        capacity_cap: advertised capacity counts up to this many concurrent tasks, 1..65535.
        heartbeat_max_age_epochs: a node without a heartbeat for one of the last this many
            epochs is offline and not eligible, epochs, 1..1000.
    """

    claim_timeout_ms: int = 2000
    failover_depth: int = 8
    exploration_permille: int = 50
    reputation_exponent: int = 1
    capacity_cap: int = 64
    heartbeat_max_age_epochs: int = 2
    quality_first: bool = True
    tier_headroom_permille: int = 100
    dispute_max_replicas: int = 6
    dispute_min_credibility_permille: int = 500

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field; raise ``ConfigError`` naming the first bad one."""
        int_field(self, "claim_timeout_ms", 1, 600_000)
        int_field(self, "failover_depth", 0, 239)
        int_field(self, "exploration_permille", 0, 500)
        int_field(self, "reputation_exponent", 0, 3)
        int_field(self, "capacity_cap", 1, 65535)
        int_field(self, "heartbeat_max_age_epochs", 1, 1000)
        bool_field(self, "quality_first")
        int_field(self, "tier_headroom_permille", 0, 10_000)
        int_field(self, "dispute_max_replicas", 0, 64)
        int_field(self, "dispute_min_credibility_permille", 0, 1000)
