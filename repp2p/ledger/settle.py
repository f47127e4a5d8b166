"""Settling one epoch: work x quality -> integer payouts, and the balance fold.

Rules of this file: balances are integers (micro-REP), every division is a floor, and every
remainder is burned, so for each epoch ``sum(payouts) + burned == emission`` exactly and the
total supply equals ``emitted - burned - slashed``. Inputs are canonical :class:`Evidence`
columns, a :class:`ReputationTable` and a :class:`PenaltyBook`, the same objects the
matching view is built from, so the live node (from records, :func:`collect`) and the
simulator (from columns, :meth:`Evidence.from_columns`) settle with this same code.

**Work** of a node in epoch ``e``: receipts it produced for offers of epoch ``e`` that it
claimed, signed while its attestation verified, not proven wrong (outvoted by a quorum),
and *backed*: another claimant's receipt agrees on the output (redundancy agreement) or
the task's owner gave ``ok`` feedback (from a client with EigenTrust > 0 when
``feedback_needs_trust``). **Quality** is the node's ``permille`` in the table.
**Weight** = work x permille ** quality_exponent (integer); a node penalised at ``e`` (in the
book), an offender, one below ``min_quality_permille`` or an equivocator weighs 0.
**Payout** = ``emission * weight // total_weight``; the remainder (or everything, when no
one worked) is burned. **Slashes** (proportional to the offence, each burned from the balance
left by the one before, in this order): a new offence in the book burns
``offence_slash_pct`` of the balance; else a new phase-out, the node's ``n``-th, burns
``min(100, n * phase_out_slash_pct)`` percent; then ``n`` receipts of the epoch that lost a
confident dispute (``table.receipt_lost``) burn ``min(1000, n * dispute_slash_permille)``
permille. A lost receipt is never work.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from types import MappingProxyType

import numpy as np

from repp2p.ledger.params import LedgerParams
from repp2p.reputation import Evidence, PenaltyBook, ReputationParams, ReputationTable
from repp2p.reputation.scores import receipt_votes

_OK = 0


def _member(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    if len(sorted_keys) == 0 or len(keys) == 0:
        return np.zeros(len(keys), bool)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[pos] == keys


def work_units(
    evidence: Evidence,
    epoch: int,
    *,
    client_trust: np.ndarray | None = None,
    reputation_params: ReputationParams | None = None,
    lost: np.ndarray | None = None,
) -> np.ndarray:
    """Backed receipts per peer for the offers of ``epoch`` (int64, index = peer index).

    Args:
        evidence: canonical evidence.
        epoch: the epoch whose offers count.
        client_trust: per-peer EigenTrust (``ReputationTable.client_trust``); when given, an
            ``ok`` feedback backs a receipt only if its client's trust is > 0.
        reputation_params: for ``wrong_quorum`` (what "proven wrong" means).
        lost: per receipt row, the receipt lost a confident dispute
            (``ReputationTable.receipt_lost``); such a receipt is never work.
    """
    ev = evidence
    rp = reputation_params or ReputationParams()
    n = ev.n_peers
    n_offers = len(ev.offer_client)
    work = np.zeros(n, np.int64)
    if len(ev.receipt_node) == 0 or n_offers == 0:
        return work
    claim_key = ev.claim_offer * n + ev.claim_node
    r_key = ev.receipt_offer * n + ev.receipt_node
    r_valid = (
        _member(claim_key, r_key)
        & ev.verified[ev.receipt_node]
        & ~ev.failed[ev.receipt_node]
        & ~ev.equivocated[ev.receipt_node]
    )
    # Agreement and proven-wrong, per (offer, output) among valid receipts.
    c, r_wrong = receipt_votes(ev, r_valid, n_offers, rp.wrong_quorum)
    agreed = c >= 2
    # ok feedback from the owner of the offer, on this node
    fo = ev.fb_offer
    fb_ok = (
        (fo >= 0)
        & (fo < n_offers)
        & (ev.fb_outcome == _OK)
        & (ev.fb_client != ev.fb_node)
        & ~ev.equivocated[ev.fb_client]
    )
    fb_ok &= ev.offer_client[np.clip(fo, 0, max(n_offers - 1, 0))] == ev.fb_client
    if client_trust is not None:
        fb_ok &= client_trust[ev.fb_client] > 0.0
    ok_keys = np.unique(fo[fb_ok] * n + ev.fb_node[fb_ok])
    praised = _member(ok_keys, r_key)
    in_epoch = ev.offer_epoch[ev.receipt_offer] == epoch
    backed = r_valid & ~r_wrong & in_epoch & (agreed | praised)
    if lost is not None and len(lost) == len(backed):
        backed &= ~lost
    return np.bincount(ev.receipt_node[backed], minlength=n).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class Settlement:
    """The REP outcome of one epoch (everything integer micro-REP).

    Attributes:
        epoch: the settled epoch.
        emission: minted for it.
        payouts: ``(peer, amount)`` sorted by peer, amounts > 0.
        burned: emission not paid out (rounding, penalised or idle shares).
        slashes: ``(peer, reason, amount)`` sorted by peer, then in the order applied
            (``offence`` or ``phase_out``, then ``dispute``); burned from balances held
            before this epoch's payout, each from what the one before left.
        work: ``(peer, backed receipts)`` sorted by peer, for nodes with work > 0.
        final: settled after its grace period (False: provisional, may still change).
        marks: ``(peer, phase-out strikes, offences)`` of the book used, so each penalty
            is slashed once.
    """

    epoch: int
    emission: int
    payouts: tuple[tuple[str, int], ...]
    burned: int
    slashes: tuple[tuple[str, str, int], ...] = ()
    work: tuple[tuple[str, int], ...] = ()
    final: bool = True
    marks: tuple[tuple[str, int, int], ...] = ()

    @property
    def digest(self) -> bytes:
        """SHA-256 of a canonical encoding: peers compare settlements by it."""
        h = hashlib.sha256(b"repp2p/1/settlement\0")
        h.update(self.epoch.to_bytes(8, "big", signed=True) + self.emission.to_bytes(8, "big"))
        h.update(self.burned.to_bytes(8, "big"))
        for peer, amount in self.payouts:
            h.update(peer.encode("ascii") + b"\0" + amount.to_bytes(8, "big"))
        h.update(b"\1")
        for peer, reason, amount in self.slashes:
            h.update(peer.encode("ascii") + b"\0" + reason.encode() + amount.to_bytes(8, "big"))
        return h.digest()


_EMPTY: Mapping = MappingProxyType({})


@dataclasses.dataclass(frozen=True)
class LedgerState:
    """Balances after the epochs settled so far (a fold: ``state.apply(settlement)``).

    Attributes:
        epoch: last settled epoch (-1: none).
        balances: ``peer -> micro-REP`` (only peers with a balance > 0).
        emitted, burned, slashed: running totals, micro-REP; ``sum(balances) ==
            emitted - burned - slashed`` always.
        marks: ``peer -> (phase-out strikes, offences)`` already slashed for.
    """

    epoch: int = -1
    balances: Mapping[str, int] = dataclasses.field(default_factory=lambda: _EMPTY)
    emitted: int = 0
    burned: int = 0
    slashed: int = 0
    marks: Mapping[str, tuple[int, int]] = dataclasses.field(default_factory=lambda: _EMPTY)

    def balance(self, peer_id: str) -> int:
        return self.balances.get(peer_id, 0)

    @property
    def supply(self) -> int:
        return self.emitted - self.burned - self.slashed

    def apply(self, settlement: Settlement) -> LedgerState:
        """The state after ``settlement`` (from :func:`settle` on this state).

        Raises:
            ValueError: the settlement's epoch is not after the state's.
        """
        if settlement.epoch <= self.epoch:
            raise ValueError(f"settle epoch {settlement.epoch} after {self.epoch}")
        balances = dict(self.balances)
        slashed = 0
        for peer, _reason, amount in settlement.slashes:
            balances[peer] = balances.get(peer, 0) - amount
            slashed += amount
        for peer, amount in settlement.payouts:
            balances[peer] = balances.get(peer, 0) + amount
        marks = dict(self.marks)
        marks.update((p, (s, o)) for p, s, o in settlement.marks)
        return LedgerState(
            epoch=settlement.epoch,
            balances=MappingProxyType({p: b for p, b in sorted(balances.items()) if b > 0}),
            emitted=self.emitted + settlement.emission,
            burned=self.burned + settlement.burned,
            slashed=self.slashed + slashed,
            marks=MappingProxyType(dict(sorted(marks.items()))),
        )

    @property
    def digest(self) -> bytes:
        h = hashlib.sha256(b"repp2p/1/ledger\0")
        h.update(self.epoch.to_bytes(8, "big", signed=True))
        for peer, amount in self.balances.items():
            h.update(peer.encode("ascii") + b"\0" + amount.to_bytes(8, "big"))
        return h.digest()


def _marks(book: PenaltyBook) -> dict[str, tuple[int, int]]:
    return {p: (e.strikes, len(e.evidence)) for p, e in book.entries.items()}


def dispute_losses(evidence: Evidence, table: ReputationTable, epoch: int) -> np.ndarray:
    """Per peer: its receipts for offers of ``epoch`` that lost a confident dispute in
    ``table`` (``receipt_lost``, docs/core.md "Disputes"); int64, index = peer index.

    ``table`` must be computed on ``evidence`` (its receipt rows); a table without dispute
    columns (built by hand) has no losses.
    """
    ev = evidence
    lost = table.receipt_lost
    if lost is None or len(lost) != len(ev.receipt_node) or not len(lost):
        return np.zeros(ev.n_peers, np.int64)
    in_epoch = ev.offer_epoch[ev.receipt_offer] == epoch
    return np.bincount(ev.receipt_node[lost & in_epoch], minlength=ev.n_peers).astype(np.int64)


def slashes_for(
    state: LedgerState,
    penalties: PenaltyBook,
    losses: Mapping[str, int],
    params: LedgerParams,
) -> list[tuple[str, str, int]]:
    """The slashes of one settlement, proportional to each offence (module docstring).

    Args:
        state: balances and marks before the epoch.
        penalties: the book at the settlement boundary (new offences and strikes are those
            beyond ``state.marks``).
        losses: ``peer -> receipts of the epoch that lost a confident dispute``.
        params: the ledger parameters.

    Returns:
        ``(peer, reason, amount)``, sorted by peer, then in the order applied; amounts > 0.
    """
    marks = _marks(penalties)
    out = []
    for peer in sorted(set(marks) | {p for p, n in losses.items() if n > 0}):
        balance = state.balance(peer)
        strikes, n_off = marks.get(peer, (0, 0))
        old_strikes, old_off = state.marks.get(peer, (0, 0))
        steps: list[tuple[str, int, int]] = []  # (reason, numerator, denominator)
        if n_off > old_off:
            steps.append(("offence", params.offence_slash_pct, 100))
        elif strikes > old_strikes:
            steps.append(("phase_out", min(100, strikes * params.phase_out_slash_pct), 100))
        lost = losses.get(peer, 0)
        if lost > 0:
            steps.append(("dispute", min(1000, lost * params.dispute_slash_permille), 1000))
        for reason, num, den in steps:
            amount = balance * num // den
            if amount > 0:
                out.append((peer, reason, amount))
                balance -= amount
    return out


def settle(
    state: LedgerState,
    evidence: Evidence,
    table: ReputationTable,
    penalties: PenaltyBook,
    *,
    epoch: int,
    params: LedgerParams | None = None,
    reputation_params: ReputationParams | None = None,
    final: bool = True,
    work: np.ndarray | None = None,
) -> Settlement:
    """Settle ``epoch`` on top of ``state``.

    Args:
        state: balances before this epoch (for slashes).
        evidence: canonical evidence holding the epoch's offers, claims, receipts, feedback.
        table: ``compute(evidence, ...)`` at the settlement boundary (quality, trust).
        penalties: the book stepped to the settlement boundary.
        epoch: the epoch to settle.
        params, reputation_params: network parameters.
        final: mark the result final (the caller knows the grace period is over).
        work: precomputed :func:`work_units` (the simulator counts work as it goes);
            default: computed from ``evidence``.

    Returns:
        The :class:`Settlement`; equal inputs give equal settlements (integer arithmetic).
    """
    lp = params or LedgerParams()
    ev = evidence
    if tuple(table.peers) != tuple(ev.peers):
        raise ValueError("table and evidence index different peers")
    if work is None:
        trust = table.client_trust if lp.feedback_needs_trust else None
        work = work_units(
            ev,
            epoch,
            client_trust=trust,
            reputation_params=reputation_params,
            lost=table.receipt_lost,
        )
    emission = lp.emission(epoch)
    permille = np.asarray(table.permille, np.int64)
    ok = (
        (work > 0)
        & ev.is_node
        & ~np.asarray(table.is_offender)
        & ~ev.equivocated
        & (permille >= lp.min_quality_permille)
    )
    penalised = penalties.penalised(epoch)
    idx = np.flatnonzero(ok)
    peers = [ev.peers[i] for i in idx]
    weights = [
        0 if p in penalised else int(work[i]) * int(permille[i]) ** lp.quality_exponent
        for p, i in zip(peers, idx, strict=True)
    ]
    total = sum(weights)
    payouts = []
    if total > 0:
        for p, wgt in zip(peers, weights, strict=True):
            amount = emission * wgt // total
            if amount > 0:
                payouts.append((p, amount))
    burned = emission - sum(a for _p, a in payouts)
    losses = dispute_losses(ev, table, epoch)
    lost_by_peer = {ev.peers[i]: int(losses[i]) for i in np.flatnonzero(losses)}
    slashes = slashes_for(state, penalties, lost_by_peer, lp)
    marks = tuple((p, s, o) for p, (s, o) in sorted(_marks(penalties).items()))
    work_rows = tuple((ev.peers[i], int(work[i])) for i in np.flatnonzero(work > 0))
    return Settlement(
        epoch=epoch,
        emission=emission,
        payouts=tuple(payouts),
        burned=burned,
        slashes=tuple(slashes),
        work=work_rows,
        final=final,
        marks=marks,
    )
