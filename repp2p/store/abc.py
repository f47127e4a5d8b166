"""The record store interface (``RecordStoreAPI``).

A store holds accepted records only, applies the replacement rules of
:mod:`repp2p.records.replacement`, and keeps equivocation evidence. Implementations: SQLite
(:mod:`repp2p.store.sqlite`) for nodes; the simulator keeps its own in-memory state.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable

from repp2p.records import Outcome, SignedRecord


class RecordStoreAPI(abc.ABC):
    """Persistent set of accepted signed records."""

    @abc.abstractmethod
    def put(self, signed: SignedRecord, *, now: int) -> Outcome:
        """Store one decoded record, applying the replacement rules atomically.

        Raises:
            StoreError: ``signed`` is not a decoded record, or the database failed.
            RecordError: EXPIRED (the record expired at ``now``) or EXPIRES_TOO_FAR (it
                expires further ahead than its type allows, ``repp2p.records.MAX_LIFETIME_S``).
        """

    @abc.abstractmethod
    def put_many(self, records: Iterable[SignedRecord], *, now: int) -> list[Outcome]:
        """Store several records in one transaction; same rules as :meth:`put`."""

    @abc.abstractmethod
    def ingest(self, data: bytes, *, now: int) -> tuple[SignedRecord, Outcome]:
        """Decode, verify and store raw envelope bytes (raises RecordError if invalid)."""

    @abc.abstractmethod
    def get(self, record_id: bytes) -> SignedRecord | None:
        """The stored record with this ID, or None."""

    @abc.abstractmethod
    def query(
        self,
        *,
        type: str | None = None,
        signer: str | None = None,
        epoch: int | None = None,
        limit: int | None = None,
        slot: bytes | None = None,
    ) -> list[SignedRecord]:
        """Current records matching every given filter, ordered by record ID.

        ``slot`` is the type's replacement key (a task id for offers, claims and receipts).
        """

    @abc.abstractmethod
    def page(self, after: bytes, limit: int) -> list[SignedRecord]:
        """Up to ``limit`` current records with record ID > ``after`` (for sync)."""

    @abc.abstractmethod
    def has(self, record_id: bytes) -> bool:
        """True when a current record has this ID (no decoding: a cheap duplicate check)."""

    @abc.abstractmethod
    def feed(self, after: int, limit: int) -> tuple[list[tuple[int, bytes, int]], int]:
        """Per-task records in the order this store received them, after position ``after``.

        Scans up to ``limit`` feed positions and returns ``(entries, last)``: the
        ``(position, encoded record, expires)`` of records still held, and the last position
        scanned (``after`` itself when nothing is new). Positions are this store's own and
        only grow.
        """

    @abc.abstractmethod
    def feed_position(self, received_since: int) -> int:
        """The feed position just before the first record received at or after that time
        (the current end of the feed when none was)."""

    @abc.abstractmethod
    def equivocations(self) -> list[tuple[SignedRecord, SignedRecord]]:
        """Pairs of conflicting records (same signer, type, slot and seq) kept as evidence."""

    @abc.abstractmethod
    def purge_expired(self, *, now: int) -> int:
        """Drop records expired at ``now`` (never evidence); returns how many."""

    def prune_task_records(self, *, before_epoch: int, orphans_before: int) -> int:
        """Drop the per-task records of tasks whose offer is of an epoch before
        ``before_epoch`` (and receipts and feedback without a held offer that arrived before
        unix time ``orphans_before``); returns how many. Evidence is kept.

        Raises:
            NotImplementedError: a store that cannot prune (the default).
        """
        raise NotImplementedError

    def delete(self, record_ids: list[bytes]) -> int:
        """Drop the current records with these IDs (a quota evicting them); returns how
        many were held. Evidence is kept.

        Raises:
            NotImplementedError: a store that cannot delete (the default).
            StoreError: the store failed to write.
        """
        raise NotImplementedError

    @abc.abstractmethod
    def count(self, type: str | None = None) -> int:
        """Number of current records (of one type if given)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the store; further calls fail."""

    def __enter__(self) -> RecordStoreAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
