"""Per-signer record budgets on gossip, and the byte quota of unattested identities
(:class:`repp2p.net.params.BudgetParams`).

The record pipeline asks :meth:`SignerBudgets.admit` before storing a NodeAd,
Attestation or Heartbeat that arrived by gossip. Per ``(signer, type)`` and fixed window it
remembers the slots admitted; a record for a slot already admitted passes (a replacement
costs no storage), a record for a new slot passes while the window has room. Memory is
bounded by ``signers_kept`` (the least recently counted are forgotten first, which can
only let a forgotten signer start a fresh window).

:class:`UnattestedQuota` bounds the bytes that identities without a verified attestation
hold in the store, whatever path their records came by, and evicts in one fixed order so
that peers do not come to hold different records (see its docstring).
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
import math
from collections import OrderedDict
from collections.abc import Callable

from repp2p.net.params import BudgetParams
from repp2p.records import Attestation, Heartbeat, NodeAd, SignedRecord

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


#: the reason label of a record refused for the byte quota of unattested identities
OVER_UNATTESTED_QUOTA = "over_unattested_quota"
#: the reason label of a held record of an unattested identity evicted for a better one
UNATTESTED_EVICTED = "unattested_evicted"

#: Eviction order across types: an identity's ad first (the smallest and most useful to
#: peers about to verify it), then its attestation, then heartbeats.
_TYPE_RANK = {NodeAd.TYPE: 0, Attestation.TYPE: 1, Heartbeat.TYPE: 2}

#: What every record of an unattested identity is charged against the quota, bytes, and
#: the largest such a record may be. A fixed charge makes the quota a count, and a count
#: keeps exactly the best records of one fixed order whatever the arrival order; with
#: each record charged its own size, which records fit would depend on which came first.
#: 4 KiB holds an ad with a dozen addresses and any heartbeat; larger records (a full
#: 16-address ad, large attestation evidence) are kept only once their identity's
#: attestation verifies.
RECORD_CHARGE = 4 * 1024

_Key = tuple[int, int, bytes]  # (type rank, size, record id): smaller is kept first
_Slot = tuple[str, str, bytes]  # (signer, type, slot)


@dataclasses.dataclass
class _Held:
    key: _Key
    seq: int
    expires: int

    @property
    def size(self) -> int:
        return RECORD_CHARGE

    @property
    def record_id(self) -> bytes:
        return self.key[2]


def quota_key(signed: SignedRecord) -> _Key:
    """Where a record stands in the quota's order: by type (ad, attestation, heartbeat),
    then size (small first), then record ID. A function of the record alone, so every
    peer orders the same records the same way."""
    return (_TYPE_RANK[signed.type], len(signed.data), signed.record_id)


class UnattestedQuota:
    """A byte quota on the node records (ads, attestations, heartbeats) of identities with
    no verified attestation, per identity and in total (:class:`BudgetParams`
    ``unattested_bytes``, ``unattested_total_bytes``).

    Anyone can make identities, and each one's records cost every peer disk for their
    lifetime (up to a day) even within its per-window budget (:class:`SignerBudgets`).
    An identity whose attestation verifies is exempt: its records are what views are
    built from. The others share a small budget.

    **Why eviction, and why this order.** A quota that keeps whatever came first would
    make peers that saw records in different orders hold different records, and so
    build different views (different record sets, different view digests). So the
    quota keeps *the best records of one fixed order* (:func:`quota_key`, a function of
    each record alone), each charged :data:`RECORD_CHARGE`: per identity the best
    ``unattested_bytes // RECORD_CHARGE`` of its current records, and of those the
    best ``unattested_total_bytes // RECORD_CHARGE`` in total. A record outside them is
    refused (IGNORE: an honest forwarder passes it on); a record that enters them
    evicts the one it pushes out. The best k of a set do not depend on the order the
    set arrived in, and a record refused or evicted is never among the best k of any
    larger set, so peers that received the same records hold the same ones, whatever
    the order. (Records that expired or whose identity became attested in between, and
    records a peer never received, can still differ, as with any record gossip loses.)
    An honest node publishes its attestation first and has an ad and a few heartbeats
    alive at a time, inside the per-identity quota: its records are never evicted, so
    views of attested nodes are not affected at all.

    Args:
        params: ``unattested_bytes`` and ``unattested_total_bytes``.
        is_attested: ``is_attested(signer, now, record)``: the signer has a verified
            attestation (or ``record``, when given, is one that verifies). Asked for each
            record, and again before evicting a held record, so an identity attested in
            between leaves the quota instead of losing records.
    """

    def __init__(
        self,
        params: BudgetParams,
        is_attested: Callable[[str, int, SignedRecord | None], bool],
    ) -> None:
        self._per_identity = params.unattested_bytes
        self._total = params.unattested_total_bytes
        self._is_attested = is_attested
        self._held: dict[_Slot, _Held] = {}
        self._order: list[tuple[_Key, _Slot]] = []  # every held record, sorted by key
        self._by_signer: dict[str, list[tuple[_Key, _Slot]]] = {}
        self._signer_bytes: dict[str, int] = {}
        self._bytes = 0
        self._expiry: list[tuple[int, _Slot, bytes]] = []  # heap of (expires, slot, id)

    @property
    def held_bytes(self) -> int:
        """Bytes charged to unattested identities now (:data:`RECORD_CHARGE` a record)."""
        return self._bytes

    def admit(self, signed: SignedRecord, now: int) -> tuple[bool, list[bytes]]:
        """Whether to store ``signed``, and the IDs of held records it evicts.

        Records of unbudgeted types and of attested signers always pass (an attested
        signer's records leave the quota). A record for a slot we count already passes
        unchanged unless it is newer (a stale or equal ``seq`` is the store's business).
        """
        if signed.type not in _TYPE_RANK:
            return True, []
        self._expire(now)
        if self._is_attested(signed.signer, now, signed):
            self._forget_signer(signed.signer)
            return True, []
        if len(signed.data) > RECORD_CHARGE:
            # Never held, whatever else the identity has (large attestation evidence is
            # kept only once it verifies): refused before it can push anything out.
            return False, []
        slot: _Slot = (signed.signer, signed.type, signed.record.slot())
        held = self._held.get(slot)
        if held is not None and signed.record.seq <= held.seq:
            return True, []
        replaced = self._remove(slot) if held is not None else None
        self._add(slot, _Held(quota_key(signed), signed.record.seq, signed.record.expires))
        evicted = self._trim_signer(signed.signer, now) + self._trim_total(now)
        now_held = self._held.get(slot)
        if now_held is not None and now_held.record_id == signed.record_id:
            return True, evicted
        # It did not make the prefix: the record it would have replaced stays (if it
        # still fits), and the new one is refused.
        evicted.remove(signed.record_id)
        if replaced is not None:
            self._add(slot, replaced)
            evicted += self._trim_signer(signed.signer, now) + self._trim_total(now)
        return False, evicted

    def seed(self, records: list[SignedRecord], now: int) -> list[bytes]:
        """Count the records a store holds at start; the IDs to evict to fit the quota."""
        evicted: list[bytes] = []
        for signed in sorted(records, key=quota_key):
            ok, out = self.admit(signed, now)
            evicted += out
            if not ok:
                evicted.append(signed.record_id)
        return evicted

    # -- bookkeeping -------------------------------------------------------------------------

    def _add(self, slot: _Slot, held: _Held) -> None:
        self._held[slot] = held
        entry = (held.key, slot)
        bisect.insort(self._order, entry)
        bisect.insort(self._by_signer.setdefault(slot[0], []), entry)
        self._signer_bytes[slot[0]] = self._signer_bytes.get(slot[0], 0) + held.size
        self._bytes += held.size
        heapq.heappush(self._expiry, (held.expires, slot, held.record_id))

    def _remove(self, slot: _Slot) -> _Held:
        held = self._held.pop(slot)
        entry = (held.key, slot)
        del self._order[bisect.bisect_left(self._order, entry)]
        mine = self._by_signer[slot[0]]
        del mine[bisect.bisect_left(mine, entry)]
        self._signer_bytes[slot[0]] -= held.size
        if not mine:
            del self._by_signer[slot[0]], self._signer_bytes[slot[0]]
        self._bytes -= held.size
        return held

    def _forget_signer(self, signer: str) -> None:
        for _key, slot in list(self._by_signer.get(signer, ())):
            self._remove(slot)

    def _trim_signer(self, signer: str, now: int) -> list[bytes]:
        evicted = []
        while self._signer_bytes.get(signer, 0) > self._per_identity:
            _key, slot = self._by_signer[signer][-1]
            evicted += self._evict(slot, now)
        return evicted

    def _trim_total(self, now: int) -> list[bytes]:
        evicted = []
        while self._bytes > self._total:
            _key, slot = self._order[-1]
            evicted += self._evict(slot, now)
        return evicted

    def _evict(self, slot: _Slot, now: int) -> list[bytes]:
        """Push ``slot``'s record out: its ID to delete, or nothing when its signer has
        become attested since (then all its records leave the quota and stay stored)."""
        if self._is_attested(slot[0], now, None):
            self._forget_signer(slot[0])
            return []
        return [self._remove(slot).record_id]

    def _expire(self, now: int) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            _expires, slot, record_id = heapq.heappop(self._expiry)
            held = self._held.get(slot)
            if held is not None and held.record_id == record_id:
                self._remove(slot)
