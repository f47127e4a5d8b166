"""Balances from a record log: what a node (or ``repp2p ledger``) runs.

``replay`` settles every epoch from the first offer seen up to the epoch before ``now``:
epoch ``e`` is settled on the records as of boundary ``e + 1 + grace_epochs`` (collected
with ``now`` = that boundary, so expiry is judged the same way by everyone) and is final
when that boundary has passed; younger epochs are settled provisionally on the records as
of ``now``. Records of epochs at or after a boundary are left out of it (replaying history
must not see the future). The penalty book is stepped at every boundary, as the matching view does.
Any peer holding the same records and verdicts gets the same balances.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

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
