"""SQLite record store (WAL mode).

Why these choices:

* WAL + ``synchronous=FULL`` by default: a committed record survives a process kill and a
  power cut; ``NORMAL`` (survives a kill, may lose the last commits on power loss) is offered
  for simulations and benchmarks.
* One transaction per :meth:`put` / :meth:`put_many`, ``BEGIN IMMEDIATE`` so the read of the
  slot's current record and the write are atomic.
* Unsigned 64-bit integers (``seq``, ``epoch``, ``expires``) are stored as 8-byte big-endian
  blobs: SQLite integers are signed, and blob order (memcmp) equals unsigned order.
* Records read back are decoded and verified again: the database file is input too.
* The claims on a task, whoever signed them, are one indexed lookup (a task server asks
  for them on every task): a partial index over claims only, so that the other records
  do not pay for it on every write. :meth:`SqliteRecordStore.query` names the type
  ``'Claim'`` literally for SQLite to use it (a bound parameter cannot select a partial
  index). Without it each lookup scanned every claim held.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path

from repp2p.errors import RecordError, StoreError
from repp2p.records import (
    FEED_TYPES,
    Outcome,
    SignedRecord,
    check_lifetime,
    compare,
    decode,
    evidence_group,
    winner,
)
from repp2p.store.abc import RecordStoreAPI

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
#: Record types whose wire form changed at a schema step: a store of an older schema drops
#: them on open (no peer decodes the old form; the window's digests come again by gossip
#: and sync). Schema 2: digest rows became CBOR arrays with binary peer IDs.
_DROPPED_AT = {2: ("WorkDigest", "FeedbackDigest")}
#: feed entries of records no longer held are dropped after this long
FEED_KEEP_S = 3600
#: evidence pairs kept per signer: one pair proves an equivocation (any peer re-checks
#: it); more only cost disk, and a throwaway key could otherwise fill every peer's
MAX_EVIDENCE_PER_SIGNER = 4

#: Decoded records kept in memory (by record ID) so reads skip signature checks.
DECODED_CACHE = 200_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    record_id   BLOB PRIMARY KEY,
    type        TEXT NOT NULL,
    signer      TEXT NOT NULL,
    slot        BLOB NOT NULL,
    seq         BLOB NOT NULL,
    epoch       BLOB,
    expires     BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    data        BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS records_slot ON records (signer, type, slot);
CREATE INDEX IF NOT EXISTS records_type_epoch ON records (type, epoch);
CREATE INDEX IF NOT EXISTS records_expires ON records (expires);
CREATE INDEX IF NOT EXISTS records_claim_slot ON records (slot) WHERE type = 'Claim';
CREATE TABLE IF NOT EXISTS feed (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id   BLOB NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS feed_received ON feed (received_at);
CREATE TABLE IF NOT EXISTS evidence (
    a_id        BLOB NOT NULL,
    b_id        BLOB NOT NULL,
    type        TEXT NOT NULL,
    signer      TEXT NOT NULL,
    a_data      BLOB NOT NULL,
    b_data      BLOB NOT NULL,
    detected_at INTEGER NOT NULL,
    PRIMARY KEY (a_id, b_id)
);
CREATE INDEX IF NOT EXISTS evidence_signer ON evidence (signer, type);
"""


#: the record type the partial index ``records_claim_slot`` covers (Claim.TYPE)
_CLAIM = "Claim"


def _u64(value: int) -> bytes:
    return value.to_bytes(8, "big")


class SqliteRecordStore(RecordStoreAPI):
    """A :class:`RecordStoreAPI` over one SQLite database file.

    Not thread-safe: use it from one thread (the node's trio thread).

    Args:
        path: database file (created with its folder when missing), or ``":memory:"``.
        synchronous: ``"FULL"`` (default, durable against power loss) or ``"NORMAL"``.

    Raises:
        StoreError: the file is not a repp2p database, is corrupt, or is from a newer version.
    """

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "FULL") -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise StoreError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        self.path = str(path)
        self._decoded: OrderedDict[bytes, SignedRecord] = OrderedDict()
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute("PRAGMA foreign_keys=ON")
            # executescript commits on its own; every statement is idempotent.
            self._db.executescript(_SCHEMA)
            with self._transaction():
                self._check_version()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open record store {self.path}: {exc}") from None

    # -- internals ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._abandon()
            raise
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error:
            # A full disk can fail the COMMIT itself: end the transaction, or every later
            # BEGIN fails ("within a transaction") and the store never recovers.
            self._abandon()
            raise

    def _abandon(self) -> None:
        """Roll back whatever is open, keeping the error that got us here: after some
        errors (SQLITE_FULL, SQLITE_IOERR) SQLite has rolled back already, and a second
        ROLLBACK would fail with "no transaction is active", hiding the real cause."""
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    def _check_version(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            self._db.execute(
                "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        elif row[0] != str(SCHEMA_VERSION):
            if not (row[0].isdigit() and 1 <= int(row[0]) < SCHEMA_VERSION):
                raise StoreError(
                    f"record store {self.path} has schema {row[0]}, this repp2p reads "
                    f"{SCHEMA_VERSION}: upgrade repp2p or restore a matching backup"
                )
            self._upgrade(int(row[0]))

    def _upgrade(self, old: int) -> None:
        """Bring a store of schema ``old`` to :data:`SCHEMA_VERSION` (inside the open
        transaction): records whose wire form changed since are dropped, with their feed
        entries and equivocation evidence; everything else is kept as it is."""
        for version in range(old + 1, SCHEMA_VERSION + 1):
            for rtype in _DROPPED_AT.get(version, ()):
                self._db.execute(
                    "DELETE FROM feed WHERE record_id IN "
                    "(SELECT record_id FROM records WHERE type = ?)",
                    (rtype,),
                )
                dropped = self._db.execute("DELETE FROM records WHERE type = ?", (rtype,))
                self._db.execute("DELETE FROM evidence WHERE type = ?", (rtype,))
                log.warning(
                    "record store %s: schema %d -> %d dropped %d %s record(s) of the old wire form",
                    self.path,
                    version - 1,
                    version,
                    dropped.rowcount,
                    rtype,
                )
        self._db.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),)
        )

    def _load(self, data: bytes) -> SignedRecord:
        # The file is input too, but re-verifying every signature on every read made views
        # and task checks O(records x verify). A record ID is the SHA-256 of its bytes, so
        # bytes that hash to an ID we decoded and verified before are that same record.
        digest = hashlib.sha256(data).digest()
        cached = self._decoded.get(digest)
        if cached is not None:
            self._decoded.move_to_end(digest)
            return cached
        try:
            signed = decode(data)
        except RecordError as exc:
            raise StoreError(f"record store {self.path} holds an invalid record: {exc}") from None
        self._remember(digest, signed)
        return signed

    def _remember(self, record_id: bytes, signed: SignedRecord) -> None:
        self._decoded[record_id] = signed
        if len(self._decoded) > DECODED_CACHE:
            self._decoded.popitem(last=False)

    def _current(self, signed: SignedRecord) -> SignedRecord | None:
        row = self._db.execute(
            "SELECT data FROM records WHERE signer=? AND type=? AND slot=?",
            (signed.signer, signed.type, signed.record.slot()),
        ).fetchone()
        return None if row is None else self._load(row[0])

    def _insert(self, signed: SignedRecord, now: int) -> None:
        record = signed.record
        epoch = record.epoch_of()
        self._remember(signed.record_id, signed)  # verified by the caller: reads skip decode
        if signed.type in FEED_TYPES:
            self._db.execute(
                "INSERT INTO feed (record_id, received_at) VALUES (?,?)", (signed.record_id, now)
            )
        self._db.execute(
            "INSERT INTO records VALUES (?,?,?,?,?,?,?,?,?)",
            (
                signed.record_id,
                signed.type,
                signed.signer,
                record.slot(),
                _u64(record.seq),
                None if epoch is None else _u64(epoch),
                _u64(record.expires),
                now,
                signed.data,
            ),
        )

    def _put_one(self, signed: SignedRecord, now: int) -> Outcome:
        if not isinstance(signed, SignedRecord):
            raise StoreError("the store accepts only decoded SignedRecord objects")
        # Expired, or expiring further ahead than its type allows (the store would keep it
        # until then): the same rule decode(now=...) applies, for records decoded without it.
        check_lifetime(signed.record, now)
        current = self._current(signed)
        outcome = compare(current, signed)
        if outcome is Outcome.NEW:
            self._insert(signed, now)
        elif outcome is Outcome.REPLACED:
            assert current is not None
            self._db.execute("DELETE FROM records WHERE record_id=?", (current.record_id,))
            self._insert(signed, now)
            self._drop_overtaken(signed)
        elif outcome is Outcome.EQUIVOCATION:
            assert current is not None
            # Evidence only within the current record's group (its seq and finality,
            # ``evidence_group``): a same-seq ``ok`` and ``wrong`` are no pair, since a
            # peer that saw a higher-seq ``ok`` first never compares them. Paired with the
            # smallest record ID held of the group, so the slot keeps the pair of its two
            # smallest whatever the order.
            if evidence_group(signed.record) == evidence_group(current.record):
                partner = min((current, *self._held_versions(signed)), key=lambda s: s.record_id)
                a, b = sorted((partner, signed), key=lambda s: s.record_id)
                self._keep_evidence(a, b, now)
            if winner(current, signed) is signed:
                self._db.execute("DELETE FROM records WHERE record_id=?", (current.record_id,))
                self._insert(signed, now)
                self._drop_overtaken(signed)  # a ``wrong`` over an ``ok`` of its seq
        return outcome

    def _drop_overtaken(self, current: SignedRecord) -> None:
        """Drop the evidence of ``current``'s slot outside its group (``evidence_group``):
        the versions a record that outranks them overtook. A peer that saw ``current``
        first never compared them (they were ``stale``), so keeping their pair would make
        the evidence, and the views, depend on the order records arrived in."""
        slot, group = current.record.slot(), evidence_group(current.record)
        rows = self._db.execute(
            "SELECT a_id, b_id, a_data FROM evidence WHERE signer=? AND type=?",
            (current.signer, current.type),
        )
        gone = []
        for a_id, b_id, a_data in rows.fetchall():
            try:
                first = self._load(a_data)
            except StoreError:  # a damaged row: purged with the expired ones
                continue
            if first.record.slot() == slot and evidence_group(first.record) != group:
                gone.append((a_id, b_id))
        self._db.executemany("DELETE FROM evidence WHERE a_id=? AND b_id=?", gone)

    def _held_versions(self, signed: SignedRecord) -> list[SignedRecord]:
        """The records of ``signed``'s slot and group (its ``seq`` and finality) in the
        evidence kept, but not it."""
        slot = signed.record.slot()
        group = evidence_group(signed.record)
        held = []
        rows = self._db.execute(
            "SELECT a_data, b_data FROM evidence WHERE signer=? AND type=?",
            (signed.signer, signed.type),
        )
        for row in rows.fetchall():
            for data in row:
                try:
                    other = self._load(data)
                except StoreError:  # a damaged row: pairs with nothing
                    continue
                if (
                    other.record.slot() == slot
                    and evidence_group(other.record) == group
                    and other.record_id != signed.record_id
                ):
                    held.append(other)
        return held

    def _keep_evidence(self, a: SignedRecord, b: SignedRecord, now: int) -> None:
        """Keep the pair ``a < b`` (by record ID) as evidence: one pair per slot, at most
        :data:`MAX_EVIDENCE_PER_SIGNER` per signer.

        Which pairs are kept depends only on the records a peer has seen, never on their
        order (evidence is part of the view digest): per slot the smallest pair, which is
        that of the slot's two smallest record IDs (each record comes paired with the
        smallest held of its seq, so that pair forms when the later of the two arrives);
        per signer the smallest of those.
        """
        pair = (a.record_id, b.record_id)
        slot = (a.type, a.record.slot())
        held: list[tuple[tuple[bytes, bytes], tuple[str, bytes] | None]] = []
        rows = self._db.execute(
            "SELECT a_id, b_id, a_data FROM evidence WHERE signer=?", (a.signer,)
        )
        for a_id, b_id, a_data in rows.fetchall():
            try:
                first = self._load(a_data)
                held.append(((a_id, b_id), (first.type, first.record.slot())))
            except (RecordError, StoreError):  # a damaged row: the first to go
                held.append(((a_id, b_id), None))
        same = [p for p, s in held if s == slot]
        if same:
            if pair >= same[0]:
                return
            victim = same[0]
        elif len(held) >= MAX_EVIDENCE_PER_SIGNER:
            damaged = [p for p, s in held if s is None]
            victim = damaged[0] if damaged else max(p for p, _ in held)
            if not damaged and pair > victim:
                return
        else:
            victim = None
        if victim is not None:
            self._db.execute("DELETE FROM evidence WHERE a_id=? AND b_id=?", victim)
        self._db.execute(
            "INSERT INTO evidence VALUES (?,?,?,?,?,?,?)",
            (a.record_id, b.record_id, a.type, a.signer, a.data, b.data, now),
        )

    # -- RecordStoreAPI ----------------------------------------------------------------

    def put(self, signed: SignedRecord, *, now: int) -> Outcome:
        return self.put_many([signed], now=now)[0]

    def put_many(self, records: Iterable[SignedRecord], *, now: int) -> list[Outcome]:
        try:
            with self._transaction():
                return [self._put_one(signed, now) for signed in records]
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"record store {self.path}: {exc}") from None

    def ingest(self, data: bytes, *, now: int) -> tuple[SignedRecord, Outcome]:
        signed = decode(data, now=now)
        return signed, self.put(signed, now=now)

    def get(self, record_id: bytes) -> SignedRecord | None:
        row = self._db.execute(
            "SELECT data FROM records WHERE record_id=?", (record_id,)
        ).fetchone()
        return None if row is None else self._load(row[0])

    def query(
        self,
        *,
        type: str | None = None,
        signer: str | None = None,
        epoch: int | None = None,
        limit: int | None = None,
        slot: bytes | None = None,
    ) -> list[SignedRecord]:
        clauses, params = [], []
        if type == _CLAIM:
            clauses.append(f"type='{_CLAIM}'")  # literal: selects records_claim_slot
        elif type is not None:
            clauses.append("type=?")
            params.append(type)
        if signer is not None:
            clauses.append("signer=?")
            params.append(signer)
        if epoch is not None:
            clauses.append("epoch=?")
            params.append(_u64(epoch))
        if slot is not None:
            clauses.append("slot=?")
            params.append(bytes(slot))
        sql = "SELECT data FROM records"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY record_id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [self._load(row[0]) for row in self._db.execute(sql, params)]

    def page(self, after: bytes, limit: int) -> list[SignedRecord]:
        rows = self._db.execute(
            "SELECT data FROM records WHERE record_id > ? ORDER BY record_id LIMIT ?",
            (after, int(limit)),
        )
        return [self._load(row[0]) for row in rows]

    def has(self, record_id: bytes) -> bool:
        row = self._db.execute("SELECT 1 FROM records WHERE record_id=?", (record_id,))
        return row.fetchone() is not None

    def feed(self, after: int, limit: int) -> tuple[list[tuple[int, bytes, int]], int]:
        rows = self._db.execute(
            "SELECT f.seq, r.data, r.expires FROM feed f"
            " LEFT JOIN records r ON r.record_id = f.record_id"
            " WHERE f.seq > ? ORDER BY f.seq LIMIT ?",
            (int(after), int(limit)),
        ).fetchall()
        # Raw bytes, not decoded: serving a feed must not cost a signature check per record
        # (the reader verifies anyway; a cold cache would make old positions expensive).
        entries = [
            (seq, data, int.from_bytes(expires, "big"))
            for seq, data, expires in rows
            if data is not None
        ]
        return entries, (rows[-1][0] if rows else int(after))

    def feed_position(self, received_since: int) -> int:
        row = self._db.execute(
            "SELECT min(seq) FROM feed WHERE received_at >= ?", (int(received_since),)
        ).fetchone()
        if row[0] is not None:
            return row[0] - 1
        head = self._db.execute("SELECT max(seq) FROM feed").fetchone()[0]
        return head or 0

    def equivocations(self) -> list[tuple[SignedRecord, SignedRecord]]:
        rows = self._db.execute("SELECT a_data, b_data FROM evidence ORDER BY a_id, b_id")
        return [(self._load(a), self._load(b)) for a, b in rows]

    def purge_expired(self, *, now: int) -> int:
        try:
            return self._purge_expired(now)
        except sqlite3.DatabaseError as exc:  # a full disk fails the COMMIT, say
            raise StoreError(f"record store {self.path}: {exc}") from None

    def _purge_expired(self, now: int) -> int:
        with self._transaction():
            cursor = self._db.execute("DELETE FROM records WHERE expires <= ?", (_u64(now),))
            # Evidence goes once both records of the pair have expired: no peer could
            # re-check it any longer (the offence itself lives on in the penalty book).
            gone = []
            rows = self._db.execute("SELECT a_id, b_id, a_data, b_data FROM evidence")
            for a_id, b_id, a_data, b_data in rows.fetchall():
                try:
                    expires = max(self._load(d).record.expires for d in (a_data, b_data))
                except RecordError:  # a damaged row proves nothing: drop it too
                    expires = 0
                if expires <= now:
                    gone.append((a_id, b_id))
            self._db.executemany("DELETE FROM evidence WHERE a_id=? AND b_id=?", gone)
            # Feed entries of gone records are skipped when read; drop them once old.
            self._db.execute(
                "DELETE FROM feed WHERE received_at < ? AND record_id NOT IN"
                " (SELECT record_id FROM records)",
                (now - FEED_KEEP_S,),
            )
        return cursor.rowcount

    def prune_task_records(self, *, before_epoch: int, orphans_before: int) -> int:
        """Drop per-task records of tasks whose offer's epoch is before ``before_epoch``,
        whoever signed them, and receipts and feedback whose offer is not held that arrived
        before unix time ``orphans_before``; returns how many.

        Expiry alone does not bound the disk: a task's records live as long as its offer
        says (up to 30 days), so one client could keep every peer's disk full. Equivocation
        evidence is kept (:meth:`purge_expired` drops it once it expires).
        """
        try:
            with self._transaction():
                cutoff = _u64(max(before_epoch, 0))
                tail = ("Receipt", "Feedback", "Refusal")
                dropped = self._db.execute(
                    "DELETE FROM records WHERE type IN (?,?,?) AND substr(slot, 1, 32) IN"
                    " (SELECT slot FROM records WHERE type='TaskOffer' AND epoch < ?)",
                    (*tail, cutoff),
                ).rowcount
                dropped += self._db.execute(
                    "DELETE FROM records WHERE type IN ('TaskOffer', 'Claim') AND epoch < ?",
                    (cutoff,),
                ).rowcount
                dropped += self._db.execute(
                    "DELETE FROM records WHERE type IN (?,?,?) AND received_at < ? AND"
                    " substr(slot, 1, 32) NOT IN (SELECT slot FROM records WHERE type='TaskOffer')",
                    (*tail, int(orphans_before)),
                ).rowcount
            return dropped
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"record store {self.path}: {exc}") from None

    def delete(self, record_ids: list[bytes]) -> int:
        try:
            with self._transaction():
                cursor = self._db.executemany(
                    "DELETE FROM records WHERE record_id=?", [(r,) for r in record_ids]
                )
            return cursor.rowcount
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"record store {self.path}: {exc}") from None

    def count(self, type: str | None = None) -> int:
        if type is None:
            return self._db.execute("SELECT count(*) FROM records").fetchone()[0]
        return self._db.execute("SELECT count(*) FROM records WHERE type=?", (type,)).fetchone()[0]

    def integrity_ok(self) -> bool:
        """True when SQLite's integrity check finds nothing wrong."""
        return self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def close(self) -> None:
        self._db.close()
