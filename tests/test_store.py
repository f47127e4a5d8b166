"""Record store: replacement rules, evidence, queries, durability under SIGKILL."""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest
import trio

from repp2p.errors import RecordError, RecordReason, StoreError
from repp2p.records import MAX_LIFETIME_S, Feedback, Heartbeat, Outcome, decode, encode, sign
from repp2p.store import SqliteRecordStore
from repp2p.testing import factories

ALICE = factories.identity("alice")
BOB = factories.identity("bob")
NOW = 1_700_000_000


def hb(key, *, epoch=1, load=0, seq=1, expires=NOW + 600):
    return sign(Heartbeat(epoch=epoch, load=load, tasks_done=0, seq=seq, expires=expires), key)


@pytest.fixture
def store(tmp_path):
    with SqliteRecordStore(tmp_path / "records.db") as s:
        yield s


def test_replacement_rules(store):
    first = hb(ALICE, seq=1)
    assert store.put(first, now=NOW) is Outcome.NEW
    assert store.put(first, now=NOW) is Outcome.DUPLICATE
    newer = hb(ALICE, seq=2, load=3)
    assert store.put(newer, now=NOW) is Outcome.REPLACED
    assert store.put(first, now=NOW) is Outcome.STALE  # a replay of the old one
    assert store.query(type="Heartbeat") == [newer]
    assert store.get(first.record_id) is None
    # Different slots coexist: another epoch, another signer.
    assert store.put(hb(ALICE, epoch=2), now=NOW) is Outcome.NEW
    assert store.put(hb(BOB, epoch=1), now=NOW) is Outcome.NEW
    assert store.count() == 3


def test_equivocation_keeps_evidence_and_converges(tmp_path):
    a, b = hb(ALICE, seq=5, load=1), hb(ALICE, seq=5, load=2)
    with (
        SqliteRecordStore(tmp_path / "one.db") as one,
        SqliteRecordStore(tmp_path / "two.db") as two,
    ):
        assert one.put(a, now=NOW) is Outcome.NEW
        assert one.put(b, now=NOW) is Outcome.EQUIVOCATION
        assert two.put(b, now=NOW) is Outcome.NEW
        assert two.put(a, now=NOW) is Outcome.EQUIVOCATION
        # Both peers hold the same current record whatever the arrival order...
        assert one.query() == two.query()
        # ...and the same evidence pair.
        (pair_one,) = one.equivocations()
        (pair_two,) = two.equivocations()
        assert {s.record_id for s in pair_one} == {a.record_id, b.record_id}
        assert pair_one == pair_two


def test_a_wrong_feedback_is_final_whatever_the_order(tmp_path):
    """A client's ``ok`` re-signed over its ``wrong`` (same task and node, higher seq) is
    refused as STALE; arriving first, the ``ok`` is REPLACED by the ``wrong``. Both stores
    end holding the wrong, and no evidence (different seqs are no equivocation)."""
    node = factories.identity("node")

    def verdict(outcome, seq):
        return sign(
            Feedback(
                task_id=factories.digest("task"),
                node=node.peer_id,
                outcome=outcome,
                latency_ms=10,
                rating=90 if outcome == "ok" else 0,
                seq=seq,
                expires=NOW + 600,
            ),
            ALICE,
        )

    wrong, ok = verdict("wrong", 1), verdict("ok", 2)
    with (
        SqliteRecordStore(tmp_path / "one.db") as one,
        SqliteRecordStore(tmp_path / "two.db") as two,
    ):
        assert one.put_many([wrong, ok], now=NOW) == [Outcome.NEW, Outcome.STALE]
        assert two.put_many([ok, wrong], now=NOW) == [Outcome.NEW, Outcome.REPLACED]
        assert one.query() == two.query() == [wrong]
        assert one.get(ok.record_id) is None and two.get(ok.record_id) is None
        assert one.equivocations() == two.equivocations() == []
        # a later wrong (another latency, a higher seq) replaces it as before
        later = sign(dataclasses.replace(wrong.record, latency_ms=11, seq=3), ALICE)
        assert one.put(later, now=NOW) is Outcome.REPLACED
        assert one.put(wrong, now=NOW) is Outcome.STALE


def test_queries_by_type_signer_and_epoch(store):
    records = [hb(ALICE, epoch=e) for e in range(3)] + [hb(BOB, epoch=1)]
    records += [sign(r, ALICE) for r in factories.sample_records() if r.TYPE == "NodeAd"]
    assert store.put_many(records, now=NOW) == [Outcome.NEW] * 5
    assert len(store.query(type="Heartbeat")) == 4
    assert len(store.query(signer=ALICE.peer_id)) == 4
    assert {s.signer for s in store.query(type="Heartbeat", epoch=1)} == {
        ALICE.peer_id,
        BOB.peer_id,
    }
    assert len(store.query(type="Heartbeat", signer=BOB.peer_id, epoch=2)) == 0
    assert len(store.query(limit=2)) == 2
    ids = [s.record_id for s in store.query()]
    assert ids == sorted(ids)
    # Paging walks everything exactly once.
    walked, after = [], b""
    while page := store.page(after, 2):
        walked += [s.record_id for s in page]
        after = page[-1].record_id
    assert walked == ids


def test_expired_records_are_refused_and_purged(store):
    with pytest.raises(RecordError) as info:
        store.put(hb(ALICE, expires=NOW), now=NOW)
    assert info.value.reason is RecordReason.EXPIRED
    store.put(hb(ALICE, epoch=1, expires=NOW + 10), now=NOW)
    store.put(hb(ALICE, epoch=2, expires=NOW + 100), now=NOW)
    assert store.purge_expired(now=NOW + 50) == 1
    assert [s.record.epoch for s in store.query()] == [2]


def test_records_expiring_too_far_ahead_are_refused(store):
    cap = MAX_LIFETIME_S[Heartbeat.TYPE]
    assert store.put(hb(ALICE, epoch=1, expires=NOW + cap), now=NOW) is Outcome.NEW
    # Signed without a clock, so only the store's own check stands in the way.
    too_far = hb(ALICE, epoch=2, expires=NOW + cap + 1)
    with pytest.raises(RecordError) as info:
        store.put(too_far, now=NOW)
    assert info.value.reason is RecordReason.EXPIRES_TOO_FAR
    with pytest.raises(RecordError) as info:
        store.ingest(too_far.data, now=NOW)
    assert info.value.reason is RecordReason.EXPIRES_TOO_FAR
    assert store.count() == 1


def test_only_decoded_records_are_accepted(store):
    with pytest.raises(StoreError):
        store.put(encode(hb(ALICE).record, ALICE), now=NOW)  # raw bytes, not a SignedRecord
    data = encode(hb(ALICE).record, ALICE)
    signed, outcome = store.ingest(data, now=NOW)
    assert outcome is Outcome.NEW and signed.data == data
    with pytest.raises(RecordError):
        store.ingest(data[:-1] + bytes([data[-1] ^ 1]), now=NOW)
    assert store.count() == 1  # a rejected record costs nothing already stored


def test_failed_batch_stores_nothing(store):
    good = hb(ALICE, epoch=1)
    expired = hb(ALICE, epoch=2, expires=NOW - 1)
    with pytest.raises(RecordError):
        store.put_many([good, expired], now=NOW)
    assert store.count() == 0


def test_reopen_keeps_records(tmp_path):
    path = tmp_path / "records.db"
    with SqliteRecordStore(path) as s:
        s.put(hb(ALICE), now=NOW)
    with SqliteRecordStore(path) as s:
        assert s.count() == 1


def test_tampered_database_row_is_reported_not_served(tmp_path):
    path = tmp_path / "records.db"
    record = hb(ALICE)
    with SqliteRecordStore(path) as s:
        s.put(record, now=NOW)
    forged = bytearray(record.data)
    forged[-1] ^= 1
    with sqlite3.connect(path) as db:
        db.execute("UPDATE records SET data=?", (bytes(forged),))
    with SqliteRecordStore(path) as s, pytest.raises(StoreError, match="invalid record"):
        s.query()


def test_tampering_is_caught_even_after_a_cached_read(tmp_path):
    path = tmp_path / "records.db"
    record = hb(ALICE)
    with SqliteRecordStore(path) as s:
        s.put(record, now=NOW)
        assert s.query() == [record]  # decoded and cached by record ID
        forged = bytearray(record.data)
        forged[-1] ^= 1
        with sqlite3.connect(path) as db:
            db.execute("UPDATE records SET data=?", (bytes(forged),))
        with pytest.raises(StoreError, match="invalid record"):
            s.query()


def test_query_by_slot(store):
    offer, claim = (
        sign(r, ALICE) for r in factories.sample_records() if r.TYPE in ("TaskOffer", "Claim")
    )
    store.put_many([offer, claim, hb(ALICE)], now=NOW)
    task_id = offer.record.task_id
    assert store.query(type="Claim", slot=task_id) == [claim]
    assert store.query(slot=task_id) == sorted([offer, claim], key=lambda s: s.record_id)
    assert store.query(type="Claim", slot=b"\x00" * 32) == []


def test_the_claims_on_a_task_are_one_indexed_lookup_whoever_signed_them(tmp_path):
    """A task server asks for every claim on a task on each request: that must not scan
    all the claims held (it did: the only index with the slot leads with the signer). The
    plan SQLite picks for the store's own query says so, without timing anything; a store
    made before the index gets it when opened."""
    path = tmp_path / "records.db"
    with SqliteRecordStore(path) as store:
        store._db.execute("DROP INDEX records_claim_slot")  # as an older store
    claim = next(r for r in factories.sample_records() if r.TYPE == "Claim")
    signers = [factories.identity(f"claimant-{i}") for i in range(3)]
    task_id = claim.task_id
    with SqliteRecordStore(path) as store:
        others = [
            sign(dataclasses.replace(claim, task_id=bytes([i]) * 32), ALICE) for i in range(20)
        ]
        mine = [sign(claim, key) for key in signers]
        store.put_many(others + mine, now=NOW)
        sent: list[str] = []
        store._db.set_trace_callback(sent.append)
        assert store.query(type="Claim", slot=task_id) == sorted(mine, key=lambda s: s.record_id)
        store._db.set_trace_callback(None)
        (sql,) = [q for q in sent if q.startswith("SELECT")]
        plan = " ".join(row[3] for row in store._db.execute("EXPLAIN QUERY PLAN " + sql))
        assert "USING INDEX records_claim_slot" in plan, plan
        # With the signer too it stays the unique slot index.
        assert store.query(type="Claim", signer=signers[0].peer_id, slot=task_id) == [mine[0]]


def test_garbage_file_and_newer_schema_are_clear_errors(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open"):
        SqliteRecordStore(junk)
    path = tmp_path / "future.db"
    SqliteRecordStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(StoreError, match="schema 99"):
        SqliteRecordStore(path)


def test_a_schema_1_store_drops_old_form_digests_and_keeps_the_rest(tmp_path):
    # Schema 2 changed the digests' wire form (rows as arrays): a store written by the
    # previous release holds digests nothing decodes any more. Opening it must not fail
    # on them later (a StoreError at the first view build): they go, the rest stays.
    path = tmp_path / "old.db"
    store = SqliteRecordStore(path)
    beat = hb(ALICE)
    digests = [sign(r, ALICE) for r in factories.sample_digests(expires=NOW + 600)]
    store.put_many([beat, *digests], now=NOW)
    store.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
        # the old form: bytes the new decoder refuses
        db.execute("UPDATE records SET data = x'a1616101' WHERE type LIKE '%Digest'")
    reopened = SqliteRecordStore(path)
    assert reopened.query() == [beat]
    assert reopened.query(type="WorkDigest") == reopened.query(type="FeedbackDigest") == []
    reopened.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("2",)
        assert db.execute("SELECT count(*) FROM records").fetchone() == (1,)


def test_a_store_of_an_unknown_schema_is_a_clear_error(tmp_path):
    path = tmp_path / "odd.db"
    SqliteRecordStore(path).close()
    for odd in ("0", "x", "-1"):
        with sqlite3.connect(path) as db:
            db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (odd,))
        with pytest.raises(StoreError, match=f"schema {odd}"):
            SqliteRecordStore(path)


WRITER = textwrap.dedent(
    """
    import sys
    from repp2p.records import Heartbeat, sign
    from repp2p.store import SqliteRecordStore
    from repp2p.testing import factories

    store = SqliteRecordStore(sys.argv[1])
    keys = [factories.identity(f"writer-{i}") for i in range(4)]
    i = 0
    while True:
        batch = [
            sign(Heartbeat(epoch=i, load=j, tasks_done=i, seq=1, expires=factories.far_future()), k)
            for j, k in enumerate(keys)
        ]
        store.put_many(batch, now=factories.NOW)
        # Printed only after COMMIT returned: every id printed must survive the kill.
        print(" ".join(s.record_id.hex() for s in batch), flush=True)
        i += 1
    """
)


@pytest.mark.slow
async def test_sigkill_mid_burst_loses_no_committed_record(tmp_path):
    path = tmp_path / "records.db"
    committed: list[str] = []
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, env=env
    )
    try:
        with trio.fail_after(60):
            buffer = b""
            while len(committed) < 800:
                chunk = await proc.stdout.receive_some(65536)
                assert chunk, "writer exited early"
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    committed += line.decode().split()
            proc.send_signal(signal.SIGKILL)  # mid-burst: it never stops writing
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with SqliteRecordStore(path) as store:
        assert store.integrity_ok()
        missing = [h for h in committed if store.get(bytes.fromhex(h)) is None]
        assert missing == []
        assert store.count() >= len(committed)
        for signed in store.query(limit=50):
            assert decode(signed.data).record_id == signed.record_id


def test_equivocation_evidence_is_bounded_per_signer_and_purged_with_its_records(store):
    from repp2p.store.sqlite import MAX_EVIDENCE_PER_SIGNER

    # One throwaway key signs 50 different heartbeats for one slot and seq.
    storm = [hb(ALICE, epoch=e, seq=5, load=i) for i in range(10) for e in range(5)]
    outcomes = store.put_many(storm, now=NOW)
    assert set(outcomes[:5]) == {Outcome.NEW}
    assert set(outcomes[5:]) == {Outcome.EQUIVOCATION}
    assert len(store.equivocations()) == MAX_EVIDENCE_PER_SIGNER  # one per slot, capped
    assert store.count("Heartbeat") == 5  # one current record per slot, as before
    # Another signer's evidence is not crowded out by Alice's.
    assert store.put_many([hb(BOB, seq=5, load=1), hb(BOB, seq=5, load=2)], now=NOW)[1] is (
        Outcome.EQUIVOCATION
    )
    assert {a.signer for a, _ in store.equivocations()} == {ALICE.peer_id, BOB.peer_id}
    # Once both records of a pair have expired, nobody can re-check it: it goes.
    expiry = max(s.record.expires for s in storm)
    store.purge_expired(now=expiry - 1)
    assert len(store.equivocations()) == MAX_EVIDENCE_PER_SIGNER + 1
    store.purge_expired(now=expiry)
    assert store.equivocations() == []


def test_capped_evidence_does_not_depend_on_arrival_order(tmp_path):
    from repp2p.store.sqlite import MAX_EVIDENCE_PER_SIGNER

    # 20 versions of each of 8 slots (epochs): more slots than the cap.
    storm = [hb(ALICE, epoch=e, seq=5, load=i) for i in range(20) for e in range(8)]
    held = []
    for name, order in (("fwd", storm), ("rev", storm[::-1]), ("mid", storm[7:] + storm[:7])):
        with SqliteRecordStore(tmp_path / f"{name}.db") as store:
            store.put_many(order, now=NOW)
            held.append(sorted((a.record_id, b.record_id) for a, b in store.equivocations()))
            current = store.query(type="Heartbeat")
    assert held[0] == held[1] == held[2]
    assert len(held[0]) == MAX_EVIDENCE_PER_SIGNER
    assert len(current) == 8
