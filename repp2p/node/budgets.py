"""Per-signer record budgets on gossip (:class:`repp2p.net.params.BudgetParams`).

The record pipeline asks :meth:`SignerBudgets.admit` before storing a NodeAd,
Attestation or Heartbeat that arrived by gossip. Per ``(signer, type)`` and fixed window it
remembers the slots admitted; a record for a slot already admitted passes (a replacement
costs no storage), a record for a new slot passes while the window has room. Memory is
bounded by ``signers_kept`` (the least recently counted are forgotten first, which can
only let a forgotten signer start a fresh window).
"""

from __future__ import annotations

import math
from collections import OrderedDict

from repp2p.net.params import BudgetParams
from repp2p.records import Attestation, Heartbeat, NodeAd

#: the reason label of a record refused for its signer's budget
OVER_BUDGET = "over_signer_budget"
#: the record types budgeted (the global node records; per-task records are admitted by
#: the task rules, digests by their epoch window)
BUDGETED = frozenset({Heartbeat.TYPE, Attestation.TYPE, NodeAd.TYPE})


class SignerBudgets:
    """Counts each signer's new slots of gossiped node records per window.

    Args:
        params: the budgets.
        epoch_s: the network's epoch length (budgets are per epoch).
    """

    def __init__(self, params: BudgetParams, epoch_s: int) -> None:
        self._params = params
        self._allowed = max(
            params.floor, params.slots_per_epoch * math.ceil(params.window_s / epoch_s)
        )
        # (signer, type) -> (window index, slots admitted in it)
        self._slots: OrderedDict[tuple[str, str], tuple[int, set[bytes]]] = OrderedDict()

    def allowed(self, record_type: str) -> int | None:
        """New slots of ``record_type`` one signer may fill per window (None: unbudgeted)."""
        return self._allowed if record_type in BUDGETED else None

    def admit(self, signer: str, record_type: str, slot: bytes, now: float) -> bool:
        """Count one record for ``slot``; False when it would fill a new slot over its
        signer's budget for this window."""
        if record_type not in BUDGETED:
            return True
        key = (signer, record_type)
        window = int(now // self._params.window_s)
        seen_window, slots = self._slots.pop(key, (window, set()))
        if seen_window != window:
            slots = set()
        self._slots[key] = (window, slots)
        while len(self._slots) > self._params.signers_kept:
            self._slots.popitem(last=False)
        if slot in slots:
            return True
        if len(slots) >= self._allowed:
            return False
        slots.add(slot)
        return True
