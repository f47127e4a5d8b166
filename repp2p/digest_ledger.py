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
from typing import TYPE_CHECKING

from repp2p.digests import reconcile
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
from repp2p.reputation import AttestedNode
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


class _FixedVerdictKeeper(ViewKeeper):
    """A view keeper that judges every rebuilt view with one set of attestation verdicts
    (judged once, as of the report's time): a past view rebuilt now cannot judge evidence
    as it stood then (the store keeps each node's latest attestation only)."""

    def __init__(
        self,
        store: RecordStoreAPI,
        policy: Policy,
        params: NetworkParams,
        verdicts: Mapping[str, AttestedNode],
    ) -> None:
        super().__init__(store, policy, params)
        self._fixed = dict(verdicts)

    def verdicts(self, records: Iterable[SignedRecord], now: int) -> dict[str, AttestedNode]:
        return dict(self._fixed)


def ledger_records(store: RecordStoreAPI) -> list[SignedRecord]:
    """What :func:`digest_report` reads from ``store``: the node records and digests, and
    both halves of each equivocation of them (a copy to replay elsewhere, e.g. in a worker
    thread on an in-memory store)."""
    held = [r for t in LEDGER_TYPES for r in store.query(type=t)]
    held += [r for pair in store.equivocations() for r in pair if r.type in LEDGER_TYPES]
    return held


def digest_report(
    store: RecordStoreAPI,
    policy: Policy,
    params: NetworkParams,
    *,
    now: int,
    verdicts: Mapping[str, AttestedNode] | None = None,
    disputes: object = None,
    offences: object = None,
) -> LedgerReport:
    """Balances of a digest network from ``store`` as of unix time ``now``.

    Settles every epoch from the earliest digest held: final epochs on the digest view of
    their settlement boundary, younger ones provisionally on the view of ``now``'s epoch
    (:func:`repp2p.ledger.replay_views`).

    Args:
        store: the peer's record store (read only).
        policy: the network's attestation policy.
        params: the network's parameters (``reputation_source`` should be ``"digests"``).
        now: unix seconds; epochs before ``now // epoch_s`` are settled.
        verdicts: attestation verdicts to judge every view with (a node's explorer passes
            its current view's); None: judged now from the store's node records.
        disputes, offences: the dispute and offence proofs held (the keeper's
            ``disputes`` / ``offences`` interface); None: none counted.

    Returns:
        The :class:`~repp2p.ledger.LedgerReport`.
    """
    epoch_s = params.epoch_s
    current = now // epoch_s
    if verdicts is None:
        judge = ViewKeeper(store, policy, params)
        node_records = [
            r for t in (NodeAd.TYPE, Attestation.TYPE, Heartbeat.TYPE) for r in store.query(type=t)
        ]
        verdicts = judge.verdicts(node_records, now)
    keeper = _FixedVerdictKeeper(store, policy, params, verdicts)
    keeper.disputes = disputes
    keeper.offences = offences
    firsts = [
        d.record.epoch  # type: ignore[attr-defined]
        for t in (WorkDigest.TYPE, FeedbackDigest.TYPE)
        for d in store.query(type=t)
    ]
    first = min(firsts) if firsts else current
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


__all__ = ["LEDGER_TYPES", "digest_report", "ledger_records"]
