"""REP balances of a digest network from a peer's record store (``repp2p ledger``, the
explorer, the demo).

On a network whose views score nodes from digests (``reputation_source = "digests"``) a
peer holds per-task records only of the tasks it took part in, so replaying them
(:func:`repp2p.ledger.replay`) pays almost nobody. What every peer holds there is the
signed work and feedback digests and the node records (ads, attestations, heartbeats), so
the ledger settles from those, under the simulator's rule (docs/ledger.md, "Settling from
digests"): the view keeper rebuilds the digest view of every epoch in order (its folded
count rows, its quality table, its penalty book stepped epoch by epoch), and
:func:`repp2p.ledger.replay_views` settles epoch ``e`` on the view of ``e +
max(1 + grace_epochs, digest_lag)`` with ``e``'s reconciled rows as work. The keeper's own
code reads and reconciles the digests (:meth:`ViewKeeper.digests_of`,
:func:`repp2p.digests.reconcile`), so the ledger counts exactly the rows views fold.

Attestation verdicts are judged once, as of the report's time, and used for every
rebuilt view (as :func:`repp2p.ledger.replay` does on records networks), so a node's
epochs count by its attestation's standing now.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from repp2p.digests import reconcile
from repp2p.digests.disputes import DisputeTiming
from repp2p.digests.proofs import verify_bytes
from repp2p.ledger import LedgerReport, replay_views
from repp2p.matching import View
from repp2p.network_params import NetworkParams
from repp2p.records import (
    Attestation,
    FeedbackDigest,
    Heartbeat,
    NodeAd,
    SignedRecord,
    WorkDigest,
)
from repp2p.reputation import AttestedNode, Offence
from repp2p.store import RecordStoreAPI
from repp2p.viewer import ViewKeeper

if TYPE_CHECKING:
    from repp2p.attestation import Policy

#: the record types a digest ledger reads (everything a digest view reads from the store)
LEDGER_TYPES = (
    NodeAd.TYPE,
    Attestation.TYPE,
    Heartbeat.TYPE,
    WorkDigest.TYPE,
    FeedbackDigest.TYPE,
)


def max_digest_age(params: NetworkParams) -> int:
    """Epochs back from now to the oldest epoch a digest signed by the rules can cover
    while it is still alive: a digest of last epoch ``l`` expires at
    :func:`repp2p.node.digests.digest_expires` of ``l`` (the record lag, the reputation
    window and the audit horizon after it, at most the 30-day lifetime cap after its
    seal; ``l + ceil(digest_expires(0) / epoch_s)`` at the latest, give or take an epoch
    of clock), and a batch's first epoch is at most ``most_epochs - 1`` before its last.

    Not the lifetime cap alone: a digest of an old epoch with an ``expires`` up to 30 days
    ahead, which no peer following the rules signs (the record pipeline refuses it from
    every source, ``digest_expires_too_far``, but a store it never judged may hold one: a
    hostile or damaged file), made every replay rebuild a view per epoch of 30 days
    (259,200 views at 10-s epochs, on a node's own process for its explorer).
    """
    # lazy: importing repp2p.node runs its package, whose explorer imports this module
    from repp2p.node.digests import digest_expires

    lifetime = digest_expires(0, params.epoch_s, params, params.digests)
    return -(-lifetime // params.epoch_s) + params.digests.most_epochs - 1


class _FixedVerdictKeeper(ViewKeeper):
    """A view keeper that judges every rebuilt view with one set of attestation verdicts
    (judged once, as of the report's time): a past view rebuilt now cannot judge evidence
    as it stood then (the store keeps each node's latest attestation only)."""

    def __init__(
        self,
        store: RecordStoreAPI | HeldRecords,
        policy: Policy,
        params: NetworkParams,
        verdicts: Mapping[str, AttestedNode],
    ) -> None:
        super().__init__(store, policy, params)  # type: ignore[arg-type]
        self._fixed = dict(verdicts)

    def verdicts(self, records: Iterable[SignedRecord], now: int) -> dict[str, AttestedNode]:
        return dict(self._fixed)


class HeldRecords:
    """A read-only copy of what :func:`digest_report` reads from a store: the node records
    and digests, and the equivocations among them. Made on the store's thread (a node's
    sqlite connection belongs to its event loop), replayed on another (the explorer's
    worker thread). Answers the two store reads a digest view makes."""

    def __init__(self, store: RecordStoreAPI) -> None:
        self._by_type = {t: store.query(type=t) for t in LEDGER_TYPES}
        self._pairs = [p for p in store.equivocations() if p[0].type in LEDGER_TYPES]

    def query(
        self,
        *,
        type: str | None = None,
        signer: str | None = None,
        epoch: int | None = None,
        limit: int | None = None,
        slot: bytes | None = None,
    ) -> list[SignedRecord]:
        """The held records matching every given filter, by record ID (the store's
        ``query``; a batch digest's epoch is its last, as the store files it)."""
        if type is None:
            found = sorted(
                (r for rs in self._by_type.values() for r in rs), key=lambda r: r.record_id
            )
        else:
            found = self._by_type.get(type, [])
        out = [
            r
            for r in found
            if (signer is None or r.signer == signer)
            and (epoch is None or r.record.epoch_of() == epoch)
            and (slot is None or r.record.slot() == slot)
        ]
        return out if limit is None else out[:limit]

    def equivocations(self) -> list[tuple[SignedRecord, SignedRecord]]:
        """Both records of each equivocation among the held types."""
        return list(self._pairs)


class HeldProofs:
    """A copy of a keeper's dispute and offence proofs, with the two interfaces a digest
    view reads (``counted(lo, hi, timing)`` of the disputes, ``offences(upto_epoch)``): made on the
    event loop from the node's books, read by a replay elsewhere. Never pruned (a copy).

    Args:
        disputes: ``(offer epoch, its records)`` per dispute held.
        offences: the verified offences held (the reputation core's ``Offence``, with the
            digest's epoch).
    """

    def __init__(
        self, disputes: Iterable[tuple[int, list[SignedRecord]]], offences: Iterable[Offence]
    ) -> None:
        self._disputes = list(disputes)
        self._offences = list(offences)

    @classmethod
    def of(cls, keeper: ViewKeeper) -> HeldProofs:
        """What ``keeper``'s dispute and offence books hold now."""
        disputes = []
        if keeper.disputes is not None:
            disputes = [(d.epoch, d.records()) for d in keeper.disputes.held(-(2**62), 2**62)]
        offences = keeper.offences.offences(2**62) if keeper.offences is not None else []
        return cls(disputes, offences)

    @classmethod
    def load(cls, data_dir: Path, now: int) -> HeldProofs:
        """The dispute and offence proofs a node keeps in ``data_dir`` (``disputes/`` and
        ``offences/``, one CBOR file each), checked again as the node checks them when it
        starts (shape and signatures; offences fully verified): read only, so a file that
        does not check is skipped here (the node itself drops it)."""
        # lazy: importing repp2p.node runs its package, which imports the node, whose
        # explorer imports this module
        from repp2p.node.disputes import reread_dispute
        from repp2p.node.offences import as_view_offence
        from repp2p.node.proof_files import ProofFolder

        disputes: dict[bytes, tuple[int, list[SignedRecord]]] = {}
        kept = ProofFolder(data_dir / "disputes", "dispute proof")
        for checked in kept.load(lambda data: reread_dispute(data, now), drop=False):
            disputes[checked.offer_id] = (checked.epoch, checked.records())
        offences: dict[tuple[str, str, int], Offence] = {}
        kept = ProofFolder(data_dir / "offences", "offence proof")
        for proven in kept.load(lambda data: verify_bytes(data, now), drop=False):
            key = (proven.offender, proven.kind.value, proven.epoch)
            held = offences.get(key)
            # one per key, the smallest evidence ID, as the book keeps
            if held is None or (proven.evidence_id,) < held.record_ids:
                offences[key] = as_view_offence(proven)
        return cls([disputes[k] for k in sorted(disputes)], offences.values())

    def records(self, lo: int, hi: int) -> list[SignedRecord]:
        return [r for e, records in self._disputes if lo <= e <= hi for r in records]

    def counted(self, lo: int, hi: int, timing: DisputeTiming) -> list[SignedRecord]:
        """The records of the disputes whose count epoch is in ``lo .. hi``
        (``DisputeBook.counted``; a dispute's records start with its offer)."""
        return [
            r
            for e, records in self._disputes
            if lo <= timing.count(e, records[0].record.deadline_ms) <= hi  # type: ignore[attr-defined]
            for r in records
        ]

    def offences(self, upto_epoch: int) -> list[Offence]:
        found = [o for o in self._offences if o.epoch is not None and o.epoch <= upto_epoch]
        return sorted(found, key=lambda o: (o.peer_id, o.kind, o.record_ids))

    def prune(self, current_epoch: int) -> int:
        return 0


def digest_report(
    store: RecordStoreAPI | HeldRecords,
    policy: Policy,
    params: NetworkParams,
    *,
    now: int,
    verdicts: Mapping[str, AttestedNode] | None = None,
    proofs: HeldProofs | None = None,
) -> LedgerReport:
    """Balances of a digest network from ``store`` as of unix time ``now``.

    Settles every epoch from the earliest digest held: final epochs on the digest view of
    their settlement boundary, younger ones provisionally on the view of ``now``'s epoch
    (:func:`repp2p.ledger.replay_views`).

    Args:
        store: the peer's record store (read only), or a :class:`HeldRecords` copy.
        policy: the network's attestation policy.
        params: the network's parameters (``reputation_source`` should be ``"digests"``).
        now: unix seconds; epochs before ``now // epoch_s`` are settled.
        verdicts: attestation verdicts to judge every view with (a node's explorer passes
            its current view's); None: judged now from the store's node records.
        proofs: the dispute and offence proofs to count (a node's, copied by
            :meth:`HeldProofs.of`); None: none (``repp2p ledger`` reads no proof books).

    Returns:
        The :class:`~repp2p.ledger.LedgerReport`.
    """
    epoch_s = params.epoch_s
    current = now // epoch_s
    if verdicts is None:
        judge = ViewKeeper(store, policy, params)  # type: ignore[arg-type]
        node_records = [
            r for t in (NodeAd.TYPE, Attestation.TYPE, Heartbeat.TYPE) for r in store.query(type=t)
        ]
        verdicts = judge.verdicts(node_records, now)
    keeper = _FixedVerdictKeeper(store, policy, params, verdicts)  # type: ignore[arg-type]
    keeper.disputes = keeper.offences = proofs
    firsts = [
        d.record.epoch  # type: ignore[attr-defined]
        for t in (WorkDigest.TYPE, FeedbackDigest.TYPE)
        for d in store.query(type=t)
    ]
    # no digest signed by the rules covers an older epoch and is still alive: an older
    # one (in a hostile or damaged store or file: the pipeline refuses it) would only make
    # us rebuild a view for every epoch since
    oldest = current - max_digest_age(params)
    first = max(min(firsts), oldest) if firsts else current
    built = [first]  # the next view to build: every epoch's, in order (the book steps)

    def view_of(epoch: int) -> View:
        for v in range(built[0], epoch):
            keeper.view(v)
        built[0] = max(built[0], epoch + 1)
        return keeper.view(epoch)

    return replay_views(
        view_of,
        lambda e: reconcile(keeper.digests_of(e), e),
        first_epoch=first,
        current_epoch=current,
        digest_lag=params.digest_lag,
        params=params.ledger,
        reputation_params=params.reputation,
    )


__all__ = ["LEDGER_TYPES", "HeldProofs", "HeldRecords", "digest_report", "max_digest_age"]
