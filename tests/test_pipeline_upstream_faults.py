"""Sync and feed upstreams are cut off only for records that are their fault.

A stale copy (a peer serves the older version of a record we hold) or our own store failing
must not count toward ``max_invalid``: the node wires its sync and feed to
``RecordPipeline.judge`` and counts only REJECT.
"""

from __future__ import annotations

from repp2p.clock import SystemClock
from repp2p.errors import StoreError
from repp2p.net.verdict import Verdict
from repp2p.node.metrics import NodeMetrics
from repp2p.node.pipeline import RecordPipeline
from repp2p.records import Heartbeat, encode
from repp2p.store import SqliteRecordStore
from repp2p.testing import factories


class _FailingStore(SqliteRecordStore):
    def put_many(self, records, *, now):  # type: ignore[override]
        raise StoreError("disk full")


def _beat(seq: int, now: int) -> bytes:
    record = Heartbeat(epoch=1, load=0, tasks_done=0, seq=seq, expires=now + 600)
    return encode(record, factories.identity("node"))


def test_stale_copies_and_store_failures_are_not_the_upstreams_fault() -> None:
    clock = SystemClock()
    now = int(clock.now())
    pipeline = RecordPipeline(SqliteRecordStore(":memory:"), NodeMetrics(), clock)
    assert pipeline.judge_many([_beat(10, now)], source="feed") == [Verdict.ACCEPT]
    older = [_beat(seq, now) for seq in range(1, 10)]
    verdicts = pipeline.judge_many(older, source="feed")
    assert verdicts == [Verdict.IGNORE] * 9  # stale: dropped, but not held against the peer
    assert pipeline.accept_many(older, source="feed") == [False] * 9
    assert pipeline.judge(b"junk", source="sync") is Verdict.REJECT

    broken = RecordPipeline(_FailingStore(":memory:"), NodeMetrics(), clock)
    assert broken.judge_many([_beat(11, now)], source="feed") == [Verdict.IGNORE]
