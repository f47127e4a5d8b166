"""Replacement rules: which of two records for the same slot is current.

Pure and order-independent, so every peer that saw the same records holds the same current
set whatever order they arrived in:

* a different slot (signer, type, slot key) is simply NEW;
* the same record again (same record ID) is a DUPLICATE, a no-op;
* a higher ``seq`` REPLACES, a lower one is STALE (a replay) and dropped;
* the same ``seq`` with different content is EQUIVOCATION: both are kept as evidence and the
  one with the smaller record ID stays current, a choice every peer makes alike.
"""

from __future__ import annotations

import enum

from repp2p.records.codec import SignedRecord


class Outcome(enum.Enum):
    """What storing a record did."""

    NEW = "new"
    REPLACED = "replaced"
    DUPLICATE = "duplicate"
    STALE = "stale"
    EQUIVOCATION = "equivocation"


def slot_key(signed: SignedRecord) -> tuple[bytes, str, bytes]:
    """The replacement key ``(signer key, type, slot)`` of a record."""
    return signed.signer_key, signed.record.TYPE, signed.record.slot()


def compare(current: SignedRecord | None, incoming: SignedRecord) -> Outcome:
    """Classify ``incoming`` against the ``current`` record of its slot (None if empty).

    Raises:
        ValueError: the two records are not in the same slot (a caller bug).
    """
    if current is None:
        return Outcome.NEW
    if slot_key(current) != slot_key(incoming):
        raise ValueError("compare() needs two records of the same slot")
    if current.record_id == incoming.record_id:
        return Outcome.DUPLICATE
    if incoming.record.seq > current.record.seq:
        return Outcome.REPLACED
    if incoming.record.seq < current.record.seq:
        return Outcome.STALE
    return Outcome.EQUIVOCATION


def winner(a: SignedRecord, b: SignedRecord) -> SignedRecord:
    """The record that is current after both were seen (same slot), order-independent."""
    if a.record.seq != b.record.seq:
        return a if a.record.seq > b.record.seq else b
    return a if a.record_id <= b.record_id else b
