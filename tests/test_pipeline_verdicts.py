"""RecordPipeline.judge(): GossipSub v1.1's verdict for every way a record can end.

REJECT (the forwarder loses gossip score) only for records no honest peer forwards;
IGNORE for validly signed records an honest peer may still forward (an older seq, expired
in transit) and for our own store failing; ACCEPT as accept() always did.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import cbor2
import pytest

from repp2p.clock import ClockAPI
from repp2p.errors import RecordError, RecordReason, StoreError
from repp2p.net.topics import TOPICS
from repp2p.net.verdict import Verdict
from repp2p.node.metrics import NodeMetrics, totals
from repp2p.node.pipeline import STORE_FAILED, RecordPipeline, verdict_of
from repp2p.records import (
    MAX_ENVELOPE_SIZE,
    MAX_LIFETIME_S,
    Feedback,
    Heartbeat,
    Outcome,
    SignedRecord,
    decode,
    encode,
)
from repp2p.records.codec import DOMAIN
from repp2p.store import SqliteRecordStore
from repp2p.testing import factories

NOW = factories.NOW
ALICE = factories.identity("alice")
HEARTBEATS = TOPICS["heartbeats"]
IGNORED = {RecordReason.EXPIRED}


class FixedClock(ClockAPI):
    def now(self) -> float:
        return float(NOW)

    async def sleep_until(self, when: float) -> None:  # pragma: no cover - never waits
        raise AssertionError("the pipeline never waits")


class FlakyStore(SqliteRecordStore):
    failing = False

    def put_many(self, records: Iterable[SignedRecord], *, now: int) -> list[Outcome]:
        if self.failing:
            raise StoreError("disk I/O error")
        return super().put_many(records, now=now)


@pytest.fixture
def parts(tmp_path):
    store = FlakyStore(tmp_path / "records.db")
    metrics = NodeMetrics()
    yield RecordPipeline(store, metrics, FixedClock()), store, metrics
    store.close()


def _heartbeat(*, epoch: int = 7, seq: int = 10, load: int = 0, expires: int | None = None):
    expires = factories.far_future(NOW) if expires is None else expires
    return encode(Heartbeat(epoch=epoch, load=load, tasks_done=0, seq=seq, expires=expires), ALICE)


def _resign(type_tag: str, body: bytes) -> bytes:
    sig = ALICE.signing_key.sign(DOMAIN + type_tag.encode() + b"\0" + body).signature
    return cbor2.dumps(
        {"type": type_tag, "body": body, "signer": ALICE.public_key, "sig": sig}, canonical=True
    )


def _bad_records() -> dict[RecordReason, bytes]:
    """One record (bytes) failing decode for every RecordReason."""
    good = _heartbeat()
    env = cbor2.loads(good)
    body = cbor2.loads(env["body"])
    flipped = bytes([env["sig"][0] ^ 1]) + env["sig"][1:]
    return {
        RecordReason.OVERSIZE: b"\x00" * (MAX_ENVELOPE_SIZE + 1),
        RecordReason.MALFORMED: b"\xa1\x00",
        RecordReason.NON_CANONICAL: b"\xa4"
        + b"".join(cbor2.dumps(k) + cbor2.dumps(env[k]) for k in ("type", "body", "sig", "signer")),
        RecordReason.UNKNOWN_TYPE: _resign("Nope", env["body"]),
        RecordReason.UNKNOWN_FIELD: _resign(
            "Heartbeat", cbor2.dumps(dict(body, extra=1), canonical=True)
        ),
        RecordReason.MISSING_FIELD: _resign(
            "Heartbeat", cbor2.dumps({k: v for k, v in body.items() if k != "load"}, canonical=True)
        ),
        RecordReason.BAD_FIELD: _resign(
            "Heartbeat", cbor2.dumps(dict(body, load="many"), canonical=True)
        ),
        RecordReason.BAD_SIGNER: cbor2.dumps(dict(env, signer=b"\x01" * 31), canonical=True),
        RecordReason.BAD_SIGNATURE: cbor2.dumps(dict(env, sig=flipped), canonical=True),
        RecordReason.EXPIRED: _heartbeat(expires=NOW - 1),
        RecordReason.EXPIRES_TOO_FAR: _heartbeat(
            expires=NOW + MAX_LIFETIME_S[Heartbeat.TYPE] + 3600
        ),
    }


def test_every_reason_has_a_case():
    assert set(_bad_records()) == set(RecordReason)


@pytest.mark.parametrize("reason", list(RecordReason), ids=lambda r: r.value)
def test_every_decode_failure_maps_to_its_verdict(parts, reason):
    pipeline, store, metrics = parts
    data = _bad_records()[reason]
    with pytest.raises(RecordError) as failed:
        decode(data, now=NOW)
    assert failed.value.reason is reason  # the case fails the way it says

    expected = Verdict.IGNORE if reason in IGNORED else Verdict.REJECT
    assert verdict_of(reason) is expected
    for source, topic in (("gossip", HEARTBEATS), ("sync", None)):
        assert pipeline.judge(data, topic=topic, source=source) is expected
        assert pipeline.accept(data, topic=topic, source=source) is False
    assert pipeline.accept_many([data, _heartbeat()], source="feed") == [False, True]
    assert totals(metrics.rejected, "reason") == {reason.value: 5.0}  # counted either way
    assert store.count() == 1  # the good one only


def test_only_expired_is_ignored():
    assert {r for r in RecordReason if verdict_of(r) is Verdict.IGNORE} == IGNORED


def test_stored_outcomes(parts):
    pipeline, _, metrics = parts
    first = _heartbeat(seq=10)
    seen: list[Outcome] = []
    pipeline.on_record(lambda signed, outcome: seen.append(outcome))
    assert pipeline.judge(first, topic=HEARTBEATS, source="gossip") is Verdict.ACCEPT  # NEW
    assert pipeline.judge(first, topic=HEARTBEATS, source="gossip") is Verdict.ACCEPT  # DUPLICATE
    newer = _heartbeat(seq=20)
    assert pipeline.judge(newer, topic=HEARTBEATS, source="gossip") is Verdict.ACCEPT  # REPLACED
    # An older seq of the slot than the one held: an honest race, not the forwarder's fault.
    older = _heartbeat(seq=15, load=3)
    assert pipeline.judge(older, topic=HEARTBEATS, source="gossip") is Verdict.IGNORE  # STALE
    assert pipeline.accept(older, topic=HEARTBEATS) is False
    # Same seq, other content: equivocation evidence travels on.
    twin = _heartbeat(seq=20, load=9)
    assert pipeline.judge(twin, topic=HEARTBEATS, source="gossip") is Verdict.ACCEPT
    assert seen == [Outcome.NEW, Outcome.REPLACED, Outcome.EQUIVOCATION]
    outcomes = totals(metrics.accepted, "outcome")
    assert outcomes == {"new": 1, "duplicate": 1, "replaced": 1, "stale": 2, "equivocation": 1}
    assert totals(metrics.rejected, "reason") == {}


def test_wrong_topic_is_rejected(parts):
    pipeline, _, metrics = parts
    assert pipeline.judge(_heartbeat(), topic=TOPICS["ads"], source="gossip") is Verdict.REJECT
    assert totals(metrics.rejected, "reason") == {"wrong_topic": 1.0}


def test_a_failing_store_ignores_and_counts(parts):
    pipeline, store, metrics = parts
    store.failing = True
    batch = [_heartbeat(epoch=e) for e in range(3)] + [b"\xa1\x00"]
    assert pipeline.judge(batch[0], topic=HEARTBEATS, source="gossip") is Verdict.IGNORE
    assert pipeline.accept_many(batch, source="feed") == [False] * 4
    assert pipeline.accept_decoded(decode(batch[1], now=NOW), source="task") is False
    assert totals(metrics.rejected, "reason") == {STORE_FAILED: 5.0, "malformed": 1.0}
    store.failing = False
    assert pipeline.accept_many(batch, source="feed") == [True, True, True, False]
    assert store.has(hashlib.sha256(batch[0]).digest())


def test_accept_is_judge_is_accept(parts):
    pipeline, _, _ = parts
    data = _heartbeat()
    assert pipeline.accept(data, topic=HEARTBEATS) is True
    # Held already, no topic: the shortcut that skips the signature check still accepts.
    assert pipeline.judge(data) is Verdict.ACCEPT
    assert pipeline.accept_many([data, data]) == [True, True]


def test_decoded_records_stored_together_share_one_transaction(parts):
    """accept_decoded_many: one put_many for the batch (one commit), a verdict per record
    in order (an older seq of a slot held is refused), listeners and metrics as one by
    one; a failing store refuses them all."""
    pipeline, store, metrics = parts
    held = decode(_heartbeat(epoch=3, seq=20), now=NOW)
    assert pipeline.accept_decoded(held, source="task") is True
    batch = [decode(_heartbeat(epoch=e), now=NOW) for e in (4, 5)]
    stale = decode(_heartbeat(epoch=3, seq=15), now=NOW)
    seen: list[Outcome] = []
    pipeline.on_record(lambda signed, outcome: seen.append(outcome))
    calls: list[int] = []
    put_many = store.put_many
    store.put_many = lambda records, *, now: (
        calls.append(len(records)) or put_many(records, now=now)
    )
    assert pipeline.accept_decoded_many([batch[0], stale, batch[1]], source="task") == [
        True,
        False,
        True,
    ]
    assert calls == [3]
    assert seen == [Outcome.NEW, Outcome.NEW]
    assert all(store.has(s.record_id) for s in batch)
    assert totals(metrics.accepted, "outcome") == {"new": 3, "stale": 1}
    store.failing = True
    again = [decode(_heartbeat(epoch=e), now=NOW) for e in (6, 7)]
    assert pipeline.accept_decoded_many(again, source="task") == [False, False]
    assert not any(store.has(s.record_id) for s in again)
    assert pipeline.accept_decoded_many([], source="task") == []


def test_a_verdict_resigned_after_wrong_is_stale_and_not_forwarded(parts):
    """A client's ``ok`` re-signed at a higher seq over its ``wrong`` on the same task and
    node is STALE (the wrong is final: docs/records.md, "Replacement rules"): IGNOREd, not
    stored, not passed to listeners, and the wrong stays current."""
    pipeline, store, metrics = parts
    feedback = TOPICS["feedback"]
    node = factories.identity("node")
    expires = factories.far_future(NOW)

    def verdict(outcome: str, seq: int) -> bytes:
        body = Feedback(
            task_id=factories.digest("task"),
            node=node.peer_id,
            outcome=outcome,
            latency_ms=10,
            rating=90 if outcome == "ok" else 0,
            seq=seq,
            expires=expires,
        )
        return encode(body, ALICE)

    seen: list[Outcome] = []
    pipeline.on_record(lambda signed, outcome: seen.append(outcome))
    wrong = verdict("wrong", 1)
    assert pipeline.judge(wrong, topic=feedback, source="gossip") is Verdict.ACCEPT
    resigned = verdict("ok", 2)
    assert pipeline.judge(resigned, topic=feedback, source="gossip") is Verdict.IGNORE
    assert pipeline.accept(resigned, topic=feedback) is False
    assert [s.data for s in store.query(type="Feedback")] == [wrong]
    assert seen == [Outcome.NEW]
    assert totals(metrics.accepted, "outcome") == {"new": 1, "stale": 2}
    assert totals(metrics.rejected, "reason") == {}
