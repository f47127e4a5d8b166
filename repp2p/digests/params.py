"""When digests are sealed, published, accepted and audited (docs/digests.md, "Live
wiring").

The timeline of the digests of epoch ``E`` (``S = seal_lag_epochs``, ``D =
audit_delay_epochs``)::

    E             tasks of E are offered (offers carry epoch E)
    E .. E+S-1    nodes still admit E's offers (repp2p.tasks.EPOCH_LAG = 3) and finish them
    E+S           sealed: no party signs a per-task record of a task of E any more; each
                  publishes its digests of E (at its phase of the epoch)
    E+S+D         the audit boundary: the digests of E+1 are in, their IDs are the entropy
                  that seeds the audits of E's digests; the auditors ask for the leaves

A peer accepts a digest from gossip only when its epoch is recent (``gossip_accepts``): a
digest of a far epoch is a new store slot, so without the bound anyone could fill every
store with validly signed digests of epochs nobody audits.

Pure: no I/O, no clock (the caller passes the current epoch).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable

from repp2p.digests.audit import DEFAULT_SAMPLES, MAX_SAMPLES
from repp2p.params_check import float_field, int_field
from repp2p.records import DIGEST_MAX_SPAN, WorkDigest

#: ``repp2p.tasks.EPOCH_LAG``, the epochs after ``E`` during which nodes still admit offers
#: of ``E``. Repeated here, not imported: ``NetworkParams`` holds ``DigestParams``, and the
#: tasks package depends on matching, which depends on ``NetworkParams`` (an import circle).
#: tests/digests/test_params.py checks that the two agree.
EPOCH_LAG = 3


@dataclasses.dataclass(frozen=True)
class DigestParams:
    """The network's digest schedule and audit sampling. Every peer of a network must use
    the same values (they decide who audits what).

    Attributes:
        seal_lag_epochs: epochs after ``E`` at whose start ``E`` is sealed and its digests
            go out, ``EPOCH_LAG + 1`` .. 64. The default, ``EPOCH_LAG + 1 = 4``, is the first
            epoch in which no node admits an offer of ``E`` any more.
        gossip_max_age_epochs: a gossiped digest of an epoch older than ``current -
            gossip_max_age_epochs`` is ignored, ``seal_lag_epochs`` .. 1024 (default 16: a
            node restarted within about a quarter of an hour at 60-s epochs still publishes
            what it missed). Sync may carry older ones (they are held for the reputation
            window); no source may carry a digest of an epoch not yet sealed, give or take
            one epoch of clock skew (:meth:`too_new`).
        audit_delay_epochs: epochs after the seal at whose start ``E``'s digests are
            audited, 2 .. 16 (the digests of ``E + 1``, whose IDs seed the draw, are
            published during the epoch before).
        audit_samples: leaves challenged per digest epoch, 1 .. ``MAX_SAMPLES`` (default
            8). A batch covering ``span`` epochs gets ``audit_samples * span`` challenges
            (at most ``MAX_SAMPLES``; :meth:`samples_for`), so batching keeps the number of
            leaves checked per epoch of work (docs/digests.md, "Detection per digest").
        auditors_per_digest: peers that audit each digest, 1 .. 16.
        audit_horizon_epochs: epochs after ``E`` during which a publisher still answers
            audits of ``E`` and keeps the per-task records behind them,
            ``seal_lag_epochs + audit_delay_epochs + 1`` .. 4096 (default 16).
        feedback_max_epochs: most epochs one client's FeedbackDigest batch may cover, 1 ..
            ``min(FEEDBACK_MAX_SPAN, gossip_max_age_epochs - seal_lag_epochs)`` (16, 12
            with the defaults); default 1 (no batching). A batch covering ``first
            .. last`` is sealed, published, gossiped, stored and audited as a digest of
            ``last`` (:meth:`batch_accepts`), and views wait for it: with ``M > 1`` every
            view counts the digests of ``E`` ``M - 1`` epochs later
            (``NetworkParams.digest_lag``). A network of many quiet clients sets it (the
            10,000-node scenario: 12), trading fresher views for fewer gossip messages.
        work_max_epochs: the same for a node's WorkDigest batches, with the same bounds;
            default 1 (no batching). Views wait for the longer of the two
            (``NetworkParams.digest_lag``).
        proof_grace_s: seconds after an offer's deadline during which peers still take
            its dispute proofs before a view counts them, 60 .. 86400 (default 120), at
            most one epoch (``NetworkParams.proof_grace_s``: networks with epochs of that
            length or shorter keep one epoch). A dispute counts in the view of the first
            epoch that starts more than this long after the deadline
            (:class:`~repp2p.digests.disputes.DisputeTiming`; docs/digests.md, "When a
            proof counts"): on a network of 600-s epochs, a cheater caught early in an
            epoch loses its standing at the next boundary, not the one after. At least
            60 s: time for the gossip, the retries of pending proofs and one more pull of
            the open proofs inside the grace (docs/digests.md, "When a proof counts").
    """

    seal_lag_epochs: int = EPOCH_LAG + 1
    gossip_max_age_epochs: int = 16
    audit_delay_epochs: int = 2
    audit_samples: int = DEFAULT_SAMPLES
    auditors_per_digest: int = 1
    audit_horizon_epochs: int = 16
    feedback_max_epochs: int = 1
    work_max_epochs: int = 1
    proof_grace_s: int = 120

    def __post_init__(self) -> None:
        int_field(self, "seal_lag_epochs", EPOCH_LAG + 1, 64)
        int_field(self, "gossip_max_age_epochs", self.seal_lag_epochs, 1024)
        int_field(self, "audit_delay_epochs", 2, 16)
        int_field(self, "audit_samples", 1, MAX_SAMPLES)
        int_field(self, "auditors_per_digest", 1, 16)
        int_field(
            self,
            "audit_horizon_epochs",
            self.seal_lag_epochs + self.audit_delay_epochs + 1,
            4096,
        )
        # a batch's first epoch must still be within the gossip window when it goes out
        # (one epoch after its last is sealed, give or take the skew)
        most = max(1, min(DIGEST_MAX_SPAN, self.gossip_max_age_epochs - self.seal_lag_epochs))
        int_field(self, "feedback_max_epochs", 1, most)
        int_field(self, "work_max_epochs", 1, most)
        int_field(self, "proof_grace_s", 60, 86_400)

    def sealed(self, epoch: int, current: int) -> bool:
        """True when no per-task record of a task of ``epoch`` may be signed at
        ``current`` (its digests are out, or about to be)."""
        return current >= epoch + self.seal_lag_epochs

    def last_sealed(self, current: int) -> int:
        """The latest epoch sealed at ``current`` (negative before any is)."""
        return current - self.seal_lag_epochs

    def audit_epoch(self, epoch: int) -> int:
        """The epoch at whose start the digests of ``epoch`` are audited."""
        return epoch + self.seal_lag_epochs + self.audit_delay_epochs

    def audited_at(self, current: int) -> int:
        """The epoch whose digests are audited in epoch ``current``."""
        return current - self.seal_lag_epochs - self.audit_delay_epochs

    @property
    def grace_epochs(self) -> int:
        """The ``grace_epochs`` of :func:`~repp2p.digests.audit_seed`: the audit epoch's
        beacon seeds the draw."""
        return self.seal_lag_epochs + self.audit_delay_epochs

    def too_new(self, epoch: int, current: int) -> bool:
        """A digest of ``epoch`` cannot be final at ``current`` (one epoch of clock skew
        allowed)."""
        return epoch > current - self.seal_lag_epochs + 1

    def gossip_accepts(self, epoch: int, current: int) -> bool:
        """A gossiped digest of ``epoch`` is within the accepted window at ``current``."""
        return current - self.gossip_max_age_epochs <= epoch and not self.too_new(epoch, current)

    def max_epochs(self, digest_type: str) -> int:
        """The most epochs one digest of ``digest_type`` may cover (``work_max_epochs``
        for a WorkDigest, ``feedback_max_epochs`` for a FeedbackDigest)."""
        if digest_type == WorkDigest.TYPE:
            return self.work_max_epochs
        return self.feedback_max_epochs

    @property
    def most_epochs(self) -> int:
        """The most epochs any digest may cover: how long views wait for batches."""
        return max(self.work_max_epochs, self.feedback_max_epochs)

    def batch_accepts(
        self, first: int, span: int, current: int, digest_type: str = "FeedbackDigest"
    ) -> bool:
        """A gossiped digest of ``digest_type`` covering ``first .. first + span - 1`` is
        acceptable at ``current``: at most :meth:`max_epochs` epochs, its last epoch within
        :meth:`gossip_accepts` (a batch goes out once its last epoch is sealed)."""
        if not 1 <= span <= self.max_epochs(digest_type):
            return False
        return self.gossip_accepts(first + span - 1, current)

    def samples_for(self, span: int) -> int:
        """Leaves challenged in a digest covering ``span`` epochs: ``audit_samples`` per
        epoch, at most ``MAX_SAMPLES`` (and, as for every digest, at most its leaves:
        :func:`~repp2p.digests.challenge_indices` draws ``min(samples, leaf_count)``).

        Scaling with the span keeps detection per epoch of work: a batch of ``span``
        epochs is audited once, where ``span`` single-epoch digests would each have been
        audited; with a fixed sample it would be checked ``span`` times less.

        Raises:
            ValueError: ``span`` below 1.
        """
        if span < 1:
            raise ValueError(f"span must be >= 1, got {span}")
        return min(MAX_SAMPLES, self.audit_samples * span)

    def answers_audits_of(self, epoch: int, current: int) -> bool:
        """A publisher still answers audits of its digests of ``epoch`` at ``current``."""
        return current - self.audit_horizon_epochs <= epoch


@dataclasses.dataclass(frozen=True)
class AuditParams:
    """``/repp2p/audit/1``: the publisher's quotas and the auditor's patience.

    A network parameter (``NetworkParams.audit``, the network file's ``[audit]``): the
    grace period a publisher gets before an auditor charges it (``attempts``,
    ``request_timeout_s``, ``retry_s``) must be the same for every peer, or honest
    publishers would be charged by impatient auditors; the quotas come with it so one
    network file says how audits are served.

    Attributes:
        request_timeout_s: a publisher slower than this to answer one challenge has not
            answered it (seconds), 0.1..600.
        max_requests: challenges one stream may carry, 1..1024 (default 64: every
            challenge of one digest, ``MAX_SAMPLES``).
        streams_per_peer: audit streams one peer may have open on a publisher at once, 1..64.
        peer_bytes_per_min: answer bytes a publisher sends one peer per minute at most (a
            token bucket, as sync's), 64 KiB..1 GiB. Default 4 MiB: about 170 answers of the
            24 KiB maximum, 20 digests' worth of challenges.
        attempts: tries of a challenge before it is judged unserved, 1..16.
        retry_s: the wait between two tries (seconds), 0..600. With the defaults a publisher
            has ``attempts * request_timeout_s + (attempts - 1) * retry_s`` = 40 s to answer: the
            grace period.
        concurrency: digests one auditor checks at once, 1..256.
    """

    request_timeout_s: float = 10.0
    max_requests: int = 64
    streams_per_peer: int = 2
    peer_bytes_per_min: int = 4 * 1024 * 1024
    attempts: int = 3
    retry_s: float = 5.0
    concurrency: int = 8

    def __post_init__(self) -> None:
        float_field(self, "request_timeout_s", 0.1, 600)
        int_field(self, "max_requests", 1, 1024)
        int_field(self, "streams_per_peer", 1, 64)
        int_field(self, "peer_bytes_per_min", 64 * 1024, 1024 * 1024 * 1024)
        int_field(self, "attempts", 1, 16)
        float_field(self, "retry_s", 0, 600)
        int_field(self, "concurrency", 1, 256)


#: Domain of the audit entropy hash.
ENTROPY_DOMAIN = b"repp2p/1/audit-entropy\0"


def audit_entropy(later_digest_ids: Iterable[bytes]) -> bytes:
    """The ``entropy`` of :func:`~repp2p.digests.audit_seed` for the audits of ``E``: a
    hash of the sorted IDs of the digests of ``E + 1`` held at the audit boundary (data the
    publishers of ``E`` could not know when they signed)."""
    h = hashlib.sha256(ENTROPY_DOMAIN)
    for digest_id in sorted(set(later_digest_ids)):
        h.update(digest_id)
    return h.digest()


__all__ = ["ENTROPY_DOMAIN", "EPOCH_LAG", "AuditParams", "DigestParams", "audit_entropy"]
