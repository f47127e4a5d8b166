"""Balances from a record log: what a node (or ``repp2p ledger``) runs.

``replay`` settles every epoch from the first offer seen up to the epoch before ``now``:
epoch ``e`` is settled on the records as of boundary ``e + 1 + grace_epochs`` (collected
with ``now`` = that boundary, so expiry is judged the same way by everyone) and is final
when that boundary has passed; younger epochs are settled provisionally on the records as
of ``now``. Records of epochs at or after a boundary are left out of it (replaying history
must not see the future). The penalty book is stepped at every boundary, as the matching view does.
Any peer holding the same records and verdicts gets the same balances.

``replay_views`` settles from digest views instead (a digest network, where a peer holds
per-task records only of its own tasks): epoch ``e`` is settled on the view of boundary
``e + max(1 + grace_epochs, digest_lag)`` (its quality table, penalty book and evidence),
its work from ``e``'s reconciled digest rows, as the simulator does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

import numpy as np

from repp2p.digests import Reconciliation
from repp2p.ledger.digest_work import digest_work_units
from repp2p.ledger.params import LedgerParams
from repp2p.ledger.settle import LedgerState, Settlement, settle
from repp2p.records import Feedback, Receipt, TaskOffer
from repp2p.reputation import (
    AcceptedRecord,
    AssignedRanks,
    AttestedNode,
    Evidence,
    PenaltyBook,
    ReputationParams,
    ReputationTable,
    collect,
    compute,
)


def _as_of(records: list[AcceptedRecord], boundary: int) -> list[AcceptedRecord]:
    """Records that belong to epochs before ``boundary`` (replaying history: a record of a
    later epoch was not there yet). Receipts and feedback go by their offer's epoch;
    records without an epoch (ads, attestations) always count."""
    offer_epoch = {}
    for r in records:
        if isinstance(r.record, TaskOffer):
            offer_epoch[(r.record.task_id)] = r.record.epoch
    out = []
    for r in records:
        rec = r.record
        if isinstance(rec, Receipt | Feedback):
            epoch = offer_epoch.get(rec.task_id)
        else:
            epoch = getattr(rec, "epoch", None)
        if epoch is None or epoch < boundary:
            out.append(r)
    return out


@dataclasses.dataclass(frozen=True)
class LedgerReport:
    """Final and provisional balances.

    Attributes:
        current_epoch: ``now // epoch_s``.
        final: the state after every final epoch.
        pending: the state after the provisional epochs too (what balances will be if no
            more records arrive).
        settlements: every settlement, oldest first (``final`` flag on each).
    """

    current_epoch: int
    final: LedgerState
    pending: LedgerState
    settlements: tuple[Settlement, ...]


def replay(
    records: Iterable[AcceptedRecord],
    attested: Mapping[str, AttestedNode],
    *,
    now: int,
    epoch_s: int,
    params: LedgerParams | None = None,
    reputation_params: ReputationParams | None = None,
    first_epoch: int | None = None,
    last_epoch: int | None = None,
    reconciliations: Mapping[int, Reconciliation] | None = None,
    assignments: AssignedRanks | None = None,
) -> LedgerReport:
    """Settle the record log into balances.

    Args:
        records: the accepted record set (any order).
        attested: attestation verdicts, as for ``View.build``.
        now: unix seconds; epochs before ``now // epoch_s`` are settled.
        epoch_s: epoch length, seconds.
        params, reputation_params: network parameters.
        first_epoch: first epoch to settle (default: the earliest offer's epoch).
        last_epoch: last epoch to settle (default: ``now // epoch_s - 1``).
        reconciliations: settle from digests: epoch -> its reconciled pair rows; each
            epoch's work then comes from its rows (:func:`digest_work_units`; an epoch
            missing from the mapping has no work), everything else from ``records`` as
            before. None: work from the per-task records.
        assignments: each offer's assigned ranks (:class:`repp2p.matching.Assignments` over
            the views of the offers' epochs, as a node's views use them): a claim, and so
            its receipt's work, counts only when the matching gave its node a rank. None:
            ranks are not checked (receipts still need their attested enclave's signature).

    Returns:
        A :class:`LedgerReport`.
    """
    lp = params or LedgerParams()
    rp = reputation_params or ReputationParams()
    records = list(records)
    current = now // epoch_s
    last = current - 1 if last_epoch is None else min(last_epoch, current - 1)
    if first_epoch is None:
        epochs = [r.record.epoch for r in records if isinstance(r.record, TaskOffer)]
        first_epoch = min(epochs) if epochs else current
    state = LedgerState()
    book = PenaltyBook()
    settlements: list[Settlement] = []
    e = first_epoch
    # final epochs: each settled at its own boundary, the book stepped boundary by boundary
    while e <= last and lp.is_final(e, current):
        boundary = lp.settle_boundary(e)
        ev = collect(
            _as_of(records, boundary), attested, now=boundary * epoch_s, assignments=assignments
        )
        table = compute(ev, now=boundary * epoch_s, epoch_s=epoch_s, params=rp)
        if book.epoch < boundary:
            book = book.step(table, rp)
        work = _digest_work(reconciliations, e, ev, table, lp)
        s = settle(state, ev, table, book, epoch=e, params=lp, reputation_params=rp, work=work)
        state = state.apply(s)
        settlements.append(s)
        e += 1
    final = state
    if e <= last:
        # provisional: everything younger, on the records as of now
        ev = collect(_as_of(records, current + 1), attested, now=now, assignments=assignments)
        table = compute(ev, now=now, epoch_s=epoch_s, params=rp)
        pending_book = book.step(table, rp) if book.epoch < current else book
        while e <= last:
            s = settle(
                state,
                ev,
                table,
                pending_book,
                epoch=e,
                params=lp,
                reputation_params=rp,
                final=False,
                work=_digest_work(reconciliations, e, ev, table, lp),
            )
            state = state.apply(s)
            settlements.append(s)
            e += 1
    return LedgerReport(current, final, state, tuple(settlements))


def _digest_work(
    reconciliations: Mapping[int, Reconciliation] | None,
    epoch: int,
    evidence: Evidence,
    table: ReputationTable,
    params: LedgerParams,
) -> np.ndarray | None:
    """The epoch's work from its digest rows, or None (per-record work) without them."""
    if reconciliations is None:
        return None
    trust = table.client_trust if params.feedback_needs_trust else None
    recon = reconciliations.get(epoch, Reconciliation(epoch, (), ()))
    return digest_work_units(recon, evidence, client_trust=trust, lost=table.receipt_lost)


class DigestView(Protocol):
    """What :func:`replay_views` reads of a digest view (``repp2p.matching.View`` has it):
    the evidence it scored, its quality table and its penalty book."""

    @property
    def evidence(self) -> Evidence: ...

    @property
    def reputation(self) -> ReputationTable: ...

    @property
    def penalties(self) -> PenaltyBook: ...


def replay_views(
    view_of: Callable[[int], DigestView],
    reconciliation_of: Callable[[int], Reconciliation],
    *,
    first_epoch: int,
    current_epoch: int,
    digest_lag: int,
    params: LedgerParams | None = None,
    reputation_params: ReputationParams | None = None,
    last_epoch: int | None = None,
) -> LedgerReport:
    """Settle from digest views and reconciled digest rows (a digest network's ledger).

    Epoch ``e`` is final once ``current_epoch >= e + lag``, ``lag =
    params.settle_lag(digest_lag) = max(1 + grace_epochs, digest_lag)``: it is settled on
    the view of boundary ``e + lag`` (quality table, penalty book and the evidence it
    scored: node records, folded rows, disputed tasks), its work from ``e``'s rows
    (:func:`digest_work_units`, with the view's client trust and lost receipts), exactly
    as the simulator settles on its digest views. Younger epochs up to ``current_epoch -
    1`` are settled provisionally on the view of ``current_epoch`` with the rows held now.

    Args:
        view_of: the digest view of a boundary epoch; called with non-decreasing epochs
            (a keeper building views in order steps its penalty book epoch by epoch).
        reconciliation_of: an epoch's reconciled pair rows (an empty
            :class:`~repp2p.digests.Reconciliation` when none are held).
        first_epoch: the first epoch to settle (e.g. the earliest digest held).
        current_epoch: the epoch now; epochs before it are settled.
        digest_lag: the network's ``digest_lag``.
        params, reputation_params: network parameters.
        last_epoch: last epoch to settle (default ``current_epoch - 1``).

    Returns:
        A :class:`LedgerReport` (the same shape as :func:`replay`'s).
    """
    lp = params or LedgerParams()
    rp = reputation_params or ReputationParams()
    current = current_epoch
    last = current - 1 if last_epoch is None else min(last_epoch, current - 1)
    state = LedgerState()
    settlements: list[Settlement] = []
    e = first_epoch

    def one(state: LedgerState, view: DigestView, epoch: int, final: bool) -> Settlement:
        table = view.reputation
        trust = table.client_trust if lp.feedback_needs_trust else None
        work = digest_work_units(
            reconciliation_of(epoch), view.evidence, client_trust=trust, lost=table.receipt_lost
        )
        return settle(
            state,
            view.evidence,
            table,
            view.penalties,
            epoch=epoch,
            params=lp,
            reputation_params=rp,
            final=final,
            work=work,
        )

    while e <= last and lp.is_final(e, current, digest_lag):
        s = one(state, view_of(lp.settle_boundary(e, digest_lag)), e, True)
        state = state.apply(s)
        settlements.append(s)
        e += 1
    final = state
    if e <= last:
        view = view_of(current)
        while e <= last:
            s = one(state, view, e, False)
            state = state.apply(s)
            settlements.append(s)
            e += 1
    return LedgerReport(current, final, state, tuple(settlements))
