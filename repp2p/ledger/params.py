"""``LedgerParams``: the knobs of the REP ledger, documented and validated."""

from __future__ import annotations

import dataclasses

from repp2p.params_check import bool_field, int_field

#: One REP in micro-REP (balances are integers in micro-REP).
MICRO = 1_000_000


@dataclasses.dataclass(frozen=True)
class LedgerParams:
    """Parameters every peer of a network must share for balances to agree.

    Attributes:
        emission_micro: REP minted per epoch, micro-REP, 0..2**53.
        halving_epochs: the emission halves every this many epochs (0: never), 0..2**32.
        grace_epochs: an epoch ``e`` is final once the current epoch is at least
            ``e + 1 + grace_epochs``; it is settled on the records held at that boundary
            (late feedback and receipts have that long to propagate), 0..1000. From
            digests, at ``e + max(1 + grace_epochs, digest_lag)`` (:meth:`settle_lag`).
        quality_exponent: a node's share weight is ``work * permille ** quality_exponent``,
            0..3 (0: work only).
        min_quality_permille: a node whose reputation is below this earns nothing for the
            epoch (its share is burned), permille, 0..1000.
        feedback_needs_trust: an ``ok`` feedback backs a receipt only when its client has
            EigenTrust > 0 (fresh Sybil clients cannot manufacture paid work).
        offence_slash_pct: share of a node's balance burned when an offence (equivocation,
            proven wrong result) is first proven against it, percent, 0..100.
        phase_out_slash_pct: share of a node's balance burned at its first phase-out,
            percent, 0..100; the ``n``-th phase-out burns ``min(100, n *
            phase_out_slash_pct)`` percent (repeat offences cost more).
        dispute_slash_permille: share of a node's balance burned per receipt of the settled
            epoch that lost a confident dispute, permille, 0..1000; ``n`` lost receipts burn
            ``min(1000, n * dispute_slash_permille)`` permille (proportional to the offence).
    """

    emission_micro: int = 1000 * MICRO
    halving_epochs: int = 0
    grace_epochs: int = 2
    quality_exponent: int = 1
    min_quality_permille: int = 0
    feedback_needs_trust: bool = True
    offence_slash_pct: int = 100
    phase_out_slash_pct: int = 10
    dispute_slash_permille: int = 50

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field; raise ``ConfigError`` naming the first bad one."""
        int_field(self, "emission_micro", 0, 2**53)
        int_field(self, "halving_epochs", 0, 2**32)
        int_field(self, "grace_epochs", 0, 1000)
        int_field(self, "quality_exponent", 0, 3)
        int_field(self, "min_quality_permille", 0, 1000)
        bool_field(self, "feedback_needs_trust")
        int_field(self, "offence_slash_pct", 0, 100)
        int_field(self, "phase_out_slash_pct", 0, 100)
        int_field(self, "dispute_slash_permille", 0, 1000)

    def emission(self, epoch: int) -> int:
        """Micro-REP minted for ``epoch`` (integer; halvings by right shift)."""
        if self.halving_epochs and epoch >= 0:
            halvings = epoch // self.halving_epochs
            return self.emission_micro >> halvings if halvings < 64 else 0
        return self.emission_micro

    def is_final(self, epoch: int, current_epoch: int, digest_lag: int = 0) -> bool:
        """True when ``epoch`` is final as of ``current_epoch`` (grace period over; from
        digests, also its rows folded: :meth:`settle_lag`)."""
        return current_epoch >= self.settle_boundary(epoch, digest_lag)

    def settle_boundary(self, epoch: int, digest_lag: int = 0) -> int:
        """The epoch boundary whose records (or digest view) settle ``epoch`` for good."""
        return epoch + self.settle_lag(digest_lag)

    def settle_lag(self, digest_lag: int = 0) -> int:
        """Epochs between an epoch and its final settlement: ``1 + grace_epochs`` from
        per-task records; from digest rows ``max(1 + grace_epochs, digest_lag)``, since no
        view counts an epoch's rows before ``digest_lag`` (``NetworkParams.digest_lag``;
        docs/ledger.md, "Finality")."""
        return max(1 + self.grace_epochs, digest_lag)
