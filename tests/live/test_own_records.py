"""A node's own-record schedule survives its store failing (a full disk) and resumes."""

from __future__ import annotations

import trio

from repp2p.clock import TrioClock
from repp2p.errors import StoreError
from repp2p.node.metrics import NodeMetrics
from repp2p.node.pipeline import RecordPipeline
from repp2p.node.publisher import RecordPublisher
from repp2p.node.schedules import OwnRecordSchedule
from repp2p.records import NodeAd
from repp2p.store import SqliteRecordStore
from repp2p.testing import factories


class _Disk(SqliteRecordStore):
    """A store whose writes fail while ``full`` is set."""

    full = False

    def put_many(self, records, *, now):  # type: ignore[override]
        if self.full:
            raise StoreError("database or disk is full")
        return super().put_many(records, now=now)


class _Load:
    active = 0
    done = 0


async def _no_gossip(topic: str, data: bytes) -> None:
    pass


async def test_heartbeats_go_on_after_the_disk_was_full(autojump_clock):
    clock = TrioClock(start=1_800_000_000 - trio.current_time())
    store = _Disk(":memory:")
    identity = factories.identity("node")
    pipeline = RecordPipeline(store, NodeMetrics(), clock)
    publisher = RecordPublisher(identity, _no_gossip, pipeline, clock)

    def ad() -> NodeAd:
        return factories.sample_records(now=clock.now())[0]

    schedule = OwnRecordSchedule(
        publisher,
        _Load(),
        ad,
        clock,
        epoch_s=10,
        heartbeat_interval_s=10,
        republish_interval_s=30,
        phase=0.5,
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(schedule.run_heartbeats)
        nursery.start_soon(schedule.run_ads)
        await clock.sleep(25)
        before = store.count("Heartbeat")
        assert before >= 2
        store.full = True
        await clock.sleep(40)  # heartbeats and an ad fail meanwhile: logged, not fatal
        assert store.count("Heartbeat") == before
        store.full = False
        await clock.sleep(30)
        assert store.count("Heartbeat") >= before + 2  # the schedule went on
        assert store.count("NodeAd") == 1
        nursery.cancel_scope.cancel()


async def test_own_records_are_what_decoding_their_bytes_gives_and_expired_ones_are_named(
    autojump_clock,
):
    """The publisher does not verify its own fresh signature again, so what it stores must
    be exactly what a peer decoding the bytes gets; an expired or too-long-lived record is
    still refused with its reason before anyone sees it."""
    import dataclasses

    import pytest

    from repp2p.errors import RecordError, RecordReason
    from repp2p.records import decode

    clock = TrioClock(start=1_800_000_000 - trio.current_time())
    store = SqliteRecordStore(":memory:")
    publisher = RecordPublisher(
        factories.identity("node"), _no_gossip, RecordPipeline(store, NodeMetrics(), clock), clock
    )
    now = int(clock.now())
    for record in factories.sample_records(now=now):
        signed = publisher.publish_soon(record)
        assert signed == decode(signed.data, now=now)
        assert store.get(signed.record_id) == signed
    with pytest.raises(RecordError) as caught:
        publisher.publish_soon(dataclasses.replace(record, seq=record.seq + 1, expires=now))
    assert caught.value.reason is RecordReason.EXPIRED
    with pytest.raises(RecordError) as caught:
        publisher.publish_soon(dataclasses.replace(record, seq=record.seq + 2, expires=2**40))
    assert caught.value.reason is RecordReason.EXPIRES_TOO_FAR
