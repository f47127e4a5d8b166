"""A node's own-record schedule: it survives its store failing (a full disk) and resumes, and
with a heartbeat period it heartbeats only in the epochs of its slot (and once at start)."""

from __future__ import annotations

import pytest
import trio

from repp2p.clock import TrioClock
from repp2p.errors import StoreError
from repp2p.node.metrics import NodeMetrics
from repp2p.node.pipeline import RecordPipeline
from repp2p.node.publisher import RecordPublisher
from repp2p.node.schedules import (
    OwnRecordSchedule,
    heartbeat_lifetime_epochs,
    next_heartbeat_time,
    next_phase_time,
)
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


def _schedule(publisher, clock, **kw) -> OwnRecordSchedule:
    def ad() -> NodeAd:
        return factories.sample_records(now=clock.now())[0]

    args = {"epoch_s": 10, "heartbeat_interval_s": 10, "republish_interval_s": 30, "phase": 0.5}
    return OwnRecordSchedule(publisher, _Load(), ad, clock, **{**args, **kw})


@pytest.mark.parametrize("interval", [10, 5, 2.5])
def test_next_heartbeat_falls_in_the_nodes_epochs_at_its_phase(interval):
    period, slot, epoch_s, phase = 4, 1, 10, 0.3
    now, times = 0.0, []
    while len(times) < 12:
        now = next_heartbeat_time(
            now, interval, phase, epoch_s=epoch_s, period_epochs=period, slot=slot
        )
        times.append(now)
    per_epoch = round(epoch_s / interval)
    epochs = [int(t // epoch_s) for t in times]
    # every interval of each due epoch (1, 5, 9, ...), none of the others, none skipped
    assert epochs == [e for e in range(slot, 100, period) for _ in range(per_epoch)][:12]
    # at the node's phase of an interval, as without a period
    assert all(abs((t / interval) % 1 - phase) < 1e-9 for t in times)
    # a period of 1: exactly the phase schedule
    assert next_heartbeat_time(37.0, interval, phase, epoch_s=epoch_s) == next_phase_time(
        37.0, interval, phase
    )


def test_an_interval_that_never_lands_in_a_due_epoch_still_heartbeats():
    # a 40-s interval = 4 epochs = the period: its phase times (20, 60, 100 s) all fall in
    # epochs 2, 6, 10..., never in slot 1's
    t = next_heartbeat_time(0.0, 40, 0.5, epoch_s=10, period_epochs=4, slot=1)
    assert t == next_phase_time(0.0, 40, 0.5)


async def test_a_heartbeat_period_spreads_heartbeats_over_the_epochs(autojump_clock):
    clock = TrioClock(start=1_800_000_000 - trio.current_time())
    store = SqliteRecordStore(":memory:")
    identity = factories.identity("node")
    publisher = RecordPublisher(
        identity, _no_gossip, RecordPipeline(store, NodeMetrics(), clock), clock
    )
    start = int(clock.now()) // 10
    schedule = _schedule(
        publisher, clock, heartbeat_period_epochs=3, heartbeat_slot=(start + 1) % 3
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(schedule.run_heartbeats)
        await clock.sleep(95)  # epochs start .. start + 9
        nursery.cancel_scope.cancel()
    held = sorted(store.query(type="Heartbeat"), key=lambda r: r.record.epoch)
    epochs = [r.record.epoch for r in held]
    # once at start, then in the slot's epochs only, one each (interval = epoch)
    assert epochs == [start, start + 1, start + 4, start + 7]
    # each lives until its successor counts in views (period + heartbeat_lag + 1 epochs)
    assert heartbeat_lifetime_epochs(3) == 5 and heartbeat_lifetime_epochs() == 3
    for r in held[1:]:
        sent = r.record.epoch * 10 + 5  # at the node's phase (0.5) of its epoch
        assert r.record.expires == sent + 5 * 10


async def test_heartbeats_go_on_after_the_disk_was_full(autojump_clock):
    clock = TrioClock(start=1_800_000_000 - trio.current_time())
    store = _Disk(":memory:")
    identity = factories.identity("node")
    pipeline = RecordPipeline(store, NodeMetrics(), clock)
    publisher = RecordPublisher(identity, _no_gossip, pipeline, clock)
    schedule = _schedule(publisher, clock)
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
