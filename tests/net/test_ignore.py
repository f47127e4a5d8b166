"""IGNORE on real py-libp2p hosts on 127.0.0.1: records an honest peer forwards but we
cannot use (an older seq, our own store failing) cost the forwarder no gossip score.

Each test runs a victim (a real record pipeline on a SQLite store behind RecordPubsub)
and senders whose own validators accept anything, so they publish what the test says.
Without IGNORE, 20 such records cost a sender 200 points: below the publish threshold
(-50), its next valid record would never reach the victim's validator.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import multiaddr
import pytest
import trio
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.tools.anyio_service import background_trio_service

from repp2p.clock import SystemClock
from repp2p.errors import StoreError
from repp2p.identity import Identity
from repp2p.net.gossip import build_pubsub, install_validators
from repp2p.net.host import build_host
from repp2p.net.libp2p_compat import RecordGossipSub, RecordPubsub
from repp2p.net.params import GossipParams
from repp2p.net.topics import TOPICS
from repp2p.net.verdict import Verdict
from repp2p.node.metrics import NodeMetrics, totals
from repp2p.node.pipeline import STORE_FAILED, RecordPipeline
from repp2p.records import Heartbeat, Outcome, SignedRecord, encode
from repp2p.store import SqliteRecordStore
from repp2p.testing import factories
from repp2p.testing.waits import until

pytestmark = pytest.mark.slow
LOCAL = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")
TOPIC = TOPICS["heartbeats"]
ALL_JUDGED = "the victim judged all 20 (a penalised sender would be gated after 6)"


class FlakyStore(SqliteRecordStore):
    """A SQLite store whose writes fail (as on a full disk) while ``failing`` is set."""

    failing = False

    def put_many(self, records: Iterable[SignedRecord], *, now: int) -> list[Outcome]:
        if self.failing:
            raise StoreError(f"record store {self.path}: database or disk is full")
        return super().put_many(records, now=now)


@dataclass
class Peer:
    host: Any
    pubsub: RecordPubsub
    router: RecordGossipSub


@dataclass
class Victim(Peer):
    store: FlakyStore
    pipeline: RecordPipeline
    metrics: NodeMetrics
    judged: list[bytes]  # data of every record the pipeline judged, in order
    crash_on: set[bytes]  # data the victim's judge raises on (a bug the test plants)

    def score(self, sender: Peer) -> float:
        return self.router.scorer.score(sender.host.get_id(), [TOPIC])

    def invalid(self, sender: Peer) -> float:
        return self.router.scorer.invalid_messages[sender.host.get_id()][TOPIC]

    def holds(self, data: bytes) -> bool:
        return self.store.get(hashlib.sha256(data).digest()) is not None


@contextlib.asynccontextmanager
async def _network(tmp_path: Any, senders: int) -> AsyncIterator[tuple[Victim, list[Peer]]]:
    """A victim and ``senders`` peers, each connected to the victim only, all subscribed."""
    params = GossipParams(eclipse_protection=False)
    async with contextlib.AsyncExitStack() as stack:
        host = build_host(Identity.generate())
        await stack.enter_async_context(host.run([LOCAL]))
        pubsub, router = build_pubsub(host, params)
        store = FlakyStore(tmp_path / "victim.db")
        stack.callback(store.close)
        metrics = NodeMetrics()
        pipeline = RecordPipeline(store, metrics, SystemClock())
        judged: list[bytes] = []
        crash_on: set[bytes] = set()

        def judge(data: bytes, topic: str, forwarder: str) -> Verdict:
            judged.append(data)
            if data in crash_on:
                raise AttributeError("a judge's bug, planted by the test")
            return pipeline.judge(data, topic=topic, source="gossip")

        install_validators(pubsub, judge)
        victim = Victim(host, pubsub, router, store, pipeline, metrics, judged, crash_on)
        others = []
        for _ in range(senders):
            host = build_host(Identity.generate())
            await stack.enter_async_context(host.run([LOCAL]))
            pubsub, router = build_pubsub(host, params)
            install_validators(pubsub, lambda data, topic, fwd: Verdict.ACCEPT)
            others.append(Peer(host, pubsub, router))
        for peer in [victim, *others]:
            await stack.enter_async_context(background_trio_service(peer.pubsub))
            await stack.enter_async_context(background_trio_service(peer.router))
        with trio.fail_after(10):
            for peer in [victim, *others]:
                await peer.pubsub.wait_until_ready()
                await peer.pubsub.subscribe(TOPIC)
            for peer in others:
                addr = f"{victim.host.get_addrs()[0]}/p2p/{victim.host.get_id().to_base58()}"
                await peer.host.connect(info_from_p2p_addr(multiaddr.Multiaddr(addr)))
        for peer in others:
            await until(
                lambda peer=peer: victim.host.get_id() in peer.pubsub.peer_topics.get(TOPIC, ()),
                10,
                "a sender knows the victim's subscription",
            )
        yield victim, others


def _heartbeat(signer: Identity, *, epoch: int, seq: int, load: int = 0) -> bytes:
    expires = factories.far_future(time.time())
    return encode(Heartbeat(epoch=epoch, load=load, tasks_done=0, seq=seq, expires=expires), signer)


async def _publish(sender: Peer, records: list[bytes]) -> None:
    with trio.fail_after(10):
        for data in records:
            await sender.pubsub.publish(TOPIC, data)


async def test_stale_records_cost_the_forwarder_nothing(tmp_path):
    """20 older heartbeats of a slot the victim holds a newer one of (validly signed: an
    honest race) are IGNOREd: no score lost, and the sender's next record gets through."""
    async with _network(tmp_path, 1) as (victim, [sender]):
        signer = factories.identity("stale-signer")
        newest = _heartbeat(signer, epoch=7, seq=1000)
        await _publish(sender, [newest])
        await until(lambda: victim.holds(newest), 10, "the newest heartbeat is stored")

        stale = [_heartbeat(signer, epoch=7, seq=seq, load=seq) for seq in range(1, 21)]
        await _publish(sender, stale)
        await until(lambda: victim.pubsub.ignored == 20, 10, ALL_JUDGED)
        assert victim.judged[-20:] == stale
        assert victim.pubsub.excused == 20
        assert victim.invalid(sender) == 0
        assert victim.score(sender) >= 0, f"stale records cost {victim.score(sender):+.0f}"
        assert totals(victim.metrics.accepted, "outcome").get("stale") == 20  # still counted

        newer = _heartbeat(signer, epoch=7, seq=2000)
        await _publish(sender, [newer])
        await until(lambda: victim.holds(newer), 10, "the sender's next record is stored")
        assert not victim.holds(newest)  # replaced


async def test_a_failing_store_blames_no_forwarder(tmp_path):
    """While the victim's own store cannot write, valid records are IGNOREd (not stored,
    not forwarded, counted) without a penalty; once it recovers, records flow again."""
    async with _network(tmp_path, 1) as (victim, [sender]):
        signer = factories.identity("store-signer")
        victim.store.failing = True
        records = [_heartbeat(signer, epoch=epoch, seq=1) for epoch in range(1, 21)]
        await _publish(sender, records)
        await until(lambda: victim.pubsub.ignored == 20, 10, ALL_JUDGED)
        assert not any(victim.holds(data) for data in records)
        assert victim.pubsub.excused == 20 and victim.invalid(sender) == 0
        assert victim.score(sender) >= 0, f"our store failure cost {victim.score(sender):+.0f}"
        assert totals(victim.metrics.rejected, "reason") == {STORE_FAILED: 20.0}

        victim.store.failing = False
        recovered = _heartbeat(signer, epoch=21, seq=1)
        await _publish(sender, [recovered])
        await until(lambda: victim.holds(recovered), 10, "a record after recovery is stored")


async def test_the_validation_cache_excuses_a_second_forwarder_too(tmp_path):
    """py-libp2p caches a failed validation by message ID (sha256 of the data) and answers
    the same data from another forwarder from the cache, without our validator: an
    ignored message must stay excused there, a rejected one must still cost."""
    async with _network(tmp_path, 2) as (victim, [first, second]):
        signer = factories.identity("cache-signer")
        newest = _heartbeat(signer, epoch=3, seq=1000)
        await _publish(first, [newest])
        await until(lambda: victim.holds(newest), 10, "the newest heartbeat is stored")

        stale = _heartbeat(signer, epoch=3, seq=1)
        await _publish(first, [stale])
        await until(lambda: victim.pubsub.excused == 1, 10, "the first forwarder excused")
        await _publish(second, [stale])  # the same data: one message ID
        await until(lambda: victim.pubsub.excused == 2, 10, "the second forwarder excused")
        assert victim.judged.count(stale) == 1  # the second answer came from the cache
        assert victim.pubsub.ignored == 1
        assert victim.invalid(first) == victim.invalid(second) == 0

        junk = b"\xa1\x00"  # malformed: REJECT
        await _publish(first, [junk])
        await until(lambda: victim.invalid(first) > 0, 10, "the first forwarder penalised")
        await _publish(second, [junk])
        await until(lambda: victim.invalid(second) > 0, 10, "the second forwarder penalised")
        assert victim.judged.count(junk) == 1  # from the cache, and still a penalty
        assert victim.pubsub.excused == 2
        assert victim.score(first) < 0 and victim.score(second) < 0


async def test_a_judge_that_raises_stops_neither_pubsub_nor_blames_the_forwarder(tmp_path):
    """An exception out of a validator ended py-libp2p's pubsub service (a crafted unserved
    charge did that to full nodes): a judge that raises is taken as IGNORE, logged, and
    the next message is judged and stored as usual."""
    async with _network(tmp_path, 1) as (victim, [sender]):
        signer = factories.identity("crash-signer")
        poison = _heartbeat(signer, epoch=1, seq=1)
        victim.crash_on.add(poison)
        await _publish(sender, [poison])
        await until(lambda: victim.pubsub.judge_errors == 1, 10, "the poison was judged")
        assert not victim.holds(poison)
        assert victim.pubsub.ignored == 1 and victim.invalid(sender) == 0
        after = _heartbeat(signer, epoch=2, seq=1)
        await _publish(sender, [after])
        await until(lambda: victim.holds(after), 10, "a record after the poison is stored")
