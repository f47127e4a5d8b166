"""Replacement rules: which of two records for the same slot is current.

Pure and order-independent, so every peer that saw the same records holds the same current
set whatever order they arrived in. The records of one slot are totally ordered by
:func:`precedence`, and the current record is the first of those seen:

* a different slot (signer, type, slot key) is simply NEW;
* the same record again (same record ID) is a DUPLICATE, a no-op;
* the same ``seq`` with different content is EQUIVOCATION: both are kept as evidence and
  the one that comes first stays current (a ``wrong`` Feedback, below; else the smaller
  record ID), a choice every peer makes alike;
* otherwise a record that comes first REPLACES the current one, and one that does not is
  STALE and dropped: a higher ``seq`` comes first (a lower one is a replay), except that
  a **final** record comes before every record of its slot that is not final, whatever
  their ``seq``s.

A Feedback whose outcome is ``wrong`` is final: once a client has said ``wrong`` on a
node's work for a task, no other verdict of that client on that task and node replaces it
(an ``ok`` re-signed at a higher ``seq`` is STALE), while a ``wrong`` replaces any other
verdict of the slot, whatever its ``seq``. A verdict the replicas refuted thus keeps
costing its client credibility on records views, as its dispute proof does on digest
views (docs/core.md, "Live escalation at k = 1"). Two ``wrong``s of one slot follow the
ordinary rules (higher ``seq``; same ``seq``: equivocation). Honest clients never re-sign
a verdict (each is signed once, ``seq`` 1), so no honest history changes.

Why "final outranks" rather than "a final record refuses a replacement": the first is a
total order, so the current record depends only on the set of records seen; the second
would depend on which arrived first (``ok`` seq 2 then ``wrong`` seq 1 would keep the
``ok``, the other order the ``wrong``).
"""

from __future__ import annotations

import enum
from typing import Any, Protocol, TypeVar

from repp2p.records.codec import SignedRecord
from repp2p.records.types import Feedback


class Outcome(enum.Enum):
    """What storing a record did."""

    NEW = "new"
    REPLACED = "replaced"
    DUPLICATE = "duplicate"
    #: dropped: the slot's current record comes first (a higher ``seq``, or a final one)
    STALE = "stale"
    EQUIVOCATION = "equivocation"


class _Versioned(Protocol):
    """Anything with a decoded ``record`` and a ``record_id`` (a ``SignedRecord`` or the
    accepted records :func:`repp2p.reputation.collect` reads)."""

    @property
    def record(self) -> Any: ...

    @property
    def record_id(self) -> bytes: ...


_V = TypeVar("_V", bound=_Versioned)


def is_final(record: Any) -> bool:
    """Whether ``record`` (a decoded record) is final in its slot: a ``wrong`` Feedback."""
    return record.TYPE == Feedback.TYPE and record.outcome == "wrong"


def precedence(signed: _Versioned) -> tuple[bool, int, bytes]:
    """The sort key of a slot's records, the current one first (smallest): final before
    not final, then higher ``seq``, then smaller record ID."""
    return (not is_final(signed.record), -signed.record.seq, signed.record_id)


def evidence_group(record: Any) -> tuple[bool, int]:
    """The versions of a slot that can equivocate with ``record`` (a decoded record): those
    of its ``seq`` and its finality. A slot's equivocation evidence is a pair of versions
    in its current record's group only (docs/records.md, "Replacement rules"): versions a
    record of another group outranked are compared only by a peer that saw them before
    it, so evidence about them would depend on the order records arrived in."""
    return is_final(record), record.seq


def slot_key(signed: SignedRecord) -> tuple[bytes, str, bytes]:
    """The replacement key ``(signer key, type, slot)`` of a record."""
    return signed.signer_key, signed.record.TYPE, signed.record.slot()


def compare(current: SignedRecord | None, incoming: SignedRecord) -> Outcome:
    """Classify ``incoming`` against the ``current`` record of its slot (None if empty).

    Agrees with :func:`winner`: ``incoming`` becomes current on NEW and REPLACED, never on
    DUPLICATE and STALE, and on EQUIVOCATION when ``winner(current, incoming)`` is it.

    Raises:
        ValueError: the two records are not in the same slot (a caller bug).
    """
    if current is None:
        return Outcome.NEW
    if slot_key(current) != slot_key(incoming):
        raise ValueError("compare() needs two records of the same slot")
    if current.record_id == incoming.record_id:
        return Outcome.DUPLICATE
    if incoming.record.seq == current.record.seq:
        return Outcome.EQUIVOCATION
    if precedence(incoming) < precedence(current):
        return Outcome.REPLACED
    return Outcome.STALE


def winner(a: _V, b: _V) -> _V:
    """The record that is current after both were seen (same slot), order-independent."""
    return a if precedence(a) <= precedence(b) else b
