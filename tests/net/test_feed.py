"""``/repp2p/feed/1``: per-task records spread by pulls, against honest and hostile peers."""

from __future__ import annotations

import time
import types

import multiaddr
import pytest
import trio
from libp2p.peer.peerinfo import info_from_p2p_addr

from repp2p.net.feed import PROTOCOL, FeedFollower, make_handler, serve_page
from repp2p.net.framing import FrameReader, write_cbor
from repp2p.net.host import build_host
from repp2p.net.params import FeedParams
from repp2p.records import Claim, Feedback, Heartbeat, decode, sign
from repp2p.store import SqliteRecordStore
from repp2p.testing import factories
from repp2p.testing.network import dev_params, local_network

LOCAL = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")
NOW = 1_700_000_000


def _claims(count: int, *, start: int = 0, expires: int = factories.far_future(NOW), pad: int = 0):
    key = factories.identity("claimer")
    return [
        sign(
            Claim(
                task_id=factories.digest(f"task-{i}"),
                offer_id=factories.digest(f"offer-{i}" + "x" * pad),
                rank=0,
                epoch=7,
                view_digest=factories.digest("view"),
                seq=1,
                expires=expires,
            ),
            key,
        )
        for i in range(start, start + count)
    ]


def _heartbeat():
    return sign(
        Heartbeat(epoch=1, load=0, tasks_done=0, seq=1, expires=factories.far_future(NOW)),
        factories.identity("hb"),
    )


def test_store_feed_lists_task_records_in_arrival_order(tmp_path):
    store = SqliteRecordStore(tmp_path / "s.db")
    first = _claims(3)
    store.put_many(list(reversed(first)), now=NOW)
    store.put(_heartbeat(), now=NOW)  # gossiped families are not in the feed
    later = _claims(2, start=3)
    store.put_many(later, now=NOW + 5)
    entries, last = store.feed(-1, 100)
    assert [data for _, data, _ in entries] == [s.data for s in list(reversed(first)) + later]
    assert all(expires == first[0].record.expires for _, _, expires in entries)
    positions = [p for p, _, _ in entries]
    assert positions == sorted(positions) and last == positions[-1]
    # Nothing new: the position stays; a limit scans that many entries only.
    assert store.feed(last, 100) == ([], last)
    page, cut = store.feed(-1, 2)
    assert len(page) == 2 and cut == positions[1]
    # Rewinding by reception time: the records received at NOW + 5 and later.
    assert store.feed_position(NOW + 5) == positions[2]
    assert store.feed_position(NOW + 60) == last  # none that recent: the current end


def test_feed_skips_records_no_longer_held(tmp_path):
    store = SqliteRecordStore(tmp_path / "s.db")
    short = _claims(2, expires=NOW + 10)
    kept = _claims(1, start=2)
    store.put_many(short + kept, now=NOW)
    store.purge_expired(now=NOW + 20)
    entries, last = store.feed(-1, 100)
    assert [data for _, data, _ in entries] == [kept[0].data]
    assert last == entries[-1][0]
    assert store.has(kept[0].record_id) and not store.has(short[0].record_id)


def test_serve_page_caps_bytes_and_resumes_there(tmp_path):
    store = SqliteRecordStore(tmp_path / "s.db")
    records = _claims(40)
    store.put_many(records, now=NOW)
    size = len(records[0].data)
    # serve_page reads only these fields; FeedParams itself refuses pages under 64 KiB.
    params = types.SimpleNamespace(rewind_s=120, page_records=100, page_bytes=3 * size + 10)
    got, after, pages = [], -1, 0
    while True:
        page = serve_page(store, after, 100, params, NOW)
        assert page["next"] >= max(after, 0)
        assert sum(map(len, page["records"])) <= params.page_bytes
        if not page["records"]:
            break
        got += page["records"]
        after, pages = page["next"], pages + 1
    assert got == [r.data for r in records]  # every record once, in order
    assert pages == 14  # 3 per page


def test_serve_page_leaves_out_expired_records(tmp_path):
    store = SqliteRecordStore(tmp_path / "s.db")
    soon = _claims(2, expires=NOW + 10)
    store.put_many(soon + _claims(1, start=2), now=NOW)
    page = serve_page(store, -1, 100, FeedParams(), NOW + 30)
    assert len(page["records"]) == 1 and decode(page["records"][0]).record.task_id == (
        factories.digest("task-2")
    )


async def _connect(client, server) -> str:
    addr = multiaddr.Multiaddr(f"{server.get_addrs()[0]}/p2p/{server.get_id()}")
    with trio.fail_after(10):
        await client.connect(info_from_p2p_addr(addr))
    return server.get_id().to_base58()


def _follower(client, candidates, store, **params):
    async def open_stream(peer):
        from libp2p.peer.id import ID

        return await client.new_stream(ID.from_base58(peer), [PROTOCOL])

    def accept(batch: list[bytes]) -> list[bool]:
        verdicts = []
        for data in batch:
            try:
                store.ingest(data, now=NOW)
                verdicts.append(True)
            except Exception:
                verdicts.append(False)
        return verdicts

    return FeedFollower(
        lambda: candidates, open_stream, accept, FeedParams(**params), clock=lambda: NOW
    )


async def test_follower_pulls_only_what_is_new(tmp_path):
    served = SqliteRecordStore(tmp_path / "served.db")
    fresh = SqliteRecordStore(tmp_path / "fresh.db")
    served.put_many(_claims(30), now=NOW)
    server, client = build_host(factories.identity("a")), build_host(factories.identity("b"))
    async with server.run(listen_addrs=[LOCAL]), client.run(listen_addrs=[LOCAL]):
        server.set_stream_handler(PROTOCOL, make_handler(served, FeedParams(), lambda: NOW))
        peer = await _connect(client, server)
        follower = _follower(client, [peer], fresh, page_records=8)
        with trio.fail_after(20):
            assert await follower.round() == 30  # 4 pages of <= 8 in one round
            stream = follower.upstreams[peer].stream
            assert await follower.round() == 0
            assert follower.upstreams[peer].stream is stream  # one stream, kept open
            served.put_many(_claims(5, start=30), now=NOW)
            assert await follower.round() == 5
    assert fresh.count() == 35 and follower.received == 35 and follower.invalid == 0


async def test_follower_drops_an_upstream_that_sends_garbage(tmp_path):
    fresh = SqliteRecordStore(tmp_path / "fresh.db")
    good = _claims(1)[0]

    async def liar(stream):
        reader = FrameReader(stream, max_frame=4096)
        while await reader.read_cbor() is not None:
            page = [good.data] + [b"junk-%d" % i for i in range(10)]
            await write_cbor(stream, {"records": page, "next": 5})

    server, client = build_host(factories.identity("liar")), build_host(factories.identity("c"))
    async with server.run(listen_addrs=[LOCAL]), client.run(listen_addrs=[LOCAL]):
        server.set_stream_handler(PROTOCOL, liar)
        peer = await _connect(client, server)
        follower = _follower(client, [peer], fresh, max_invalid=3)
        with trio.fail_after(20):
            await follower.round()
        assert follower.upstreams == {}  # dropped
    assert fresh.get(good.record_id) is not None and fresh.count() == 1  # kept


@pytest.mark.parametrize(
    "replies",
    [
        [{"records": "nope", "next": 1}],
        [{"records": [], "next": -5}],
        [{"records": [], "next": 2**64}],
        [{"oops": 1}],
    ],
)
async def test_follower_drops_an_upstream_that_breaks_the_protocol(tmp_path, replies):
    fresh = SqliteRecordStore(tmp_path / "fresh.db")
    rounds = len(replies)

    async def broken(stream):
        reader = FrameReader(stream, max_frame=4096)
        while await reader.read_cbor() is not None:
            await write_cbor(stream, replies.pop(0))

    server, client = build_host(factories.identity("bad")), build_host(factories.identity("d"))
    async with server.run(listen_addrs=[LOCAL]), client.run(listen_addrs=[LOCAL]):
        server.set_stream_handler(PROTOCOL, broken)
        peer = await _connect(client, server)
        follower = _follower(client, [peer], fresh)
        with trio.fail_after(20):
            for _ in range(rounds - 1):
                await follower.round()
                assert peer in follower.upstreams  # fine so far
            await follower.round()
        assert follower.upstreams == {}


async def test_server_drops_a_malformed_request(tmp_path):
    served = SqliteRecordStore(tmp_path / "served.db")
    served.put_many(_claims(3), now=NOW)
    server, client = build_host(factories.identity("e")), build_host(factories.identity("f"))
    async with server.run(listen_addrs=[LOCAL]), client.run(listen_addrs=[LOCAL]):
        server.set_stream_handler(PROTOCOL, make_handler(served, FeedParams(), lambda: NOW))
        await _connect(client, server)
        with trio.fail_after(20):
            stream = await client.new_stream(server.get_id(), [PROTOCOL])
            await write_cbor(stream, {"after": "zero", "limit": 5})
            assert await FrameReader(stream, 4096).read_cbor() is None  # closed on us


async def test_server_drops_a_request_dripped_byte_by_byte(tmp_path, monkeypatch):
    """A begun request must arrive whole in REQUEST_TIMEOUT_S (a drip held a stream for
    the 120 s idle time)."""
    import repp2p.net.feed as feed

    monkeypatch.setattr(feed, "REQUEST_TIMEOUT_S", 0.5)
    served = SqliteRecordStore(tmp_path / "served.db")
    server, client = build_host(factories.identity("e")), build_host(factories.identity("f"))
    limits: list[str] = []
    async with server.run(listen_addrs=[LOCAL]), client.run(listen_addrs=[LOCAL]):
        server.set_stream_handler(
            PROTOCOL, make_handler(served, FeedParams(), lambda: NOW, on_limit=limits.append)
        )
        await _connect(client, server)
        stream = await client.new_stream(server.get_id(), [PROTOCOL])
        await stream.write(b"\x20")  # a length prefix, then nothing more
        with trio.fail_after(5):  # far less than the 120 s idle timeout
            assert await FrameReader(stream, 4096).read_cbor() is None  # closed on us
    assert limits == ["request_timeout"]  # counted in repp2p_limits_total


async def test_task_records_reach_every_node_without_gossip(tmp_path):
    # feeds run on records networks only (on a digest network no peer serves them)
    records = dev_params().replace(reputation_source="records")
    async with local_network(tmp_path, 5, network_params=records) as nodes:
        for node in nodes:
            assert not node.config.feed.gossip_task_records
        origin = nodes[3]
        with trio.fail_after(20):
            # Synced first: a node still joining could take the record by its initial sync.
            while any(len(n.discovery.feed_candidates()) < 1 or not n.is_synced() for n in nodes):
                await trio.sleep(0.2)
        fb = origin.publisher.publish_soon(
            Feedback(
                task_id=factories.digest("t"),
                node=nodes[1].peer_id,
                outcome="ok",
                latency_ms=5,
                rating=100,
                seq=1,
                expires=factories.far_future(time.time()),
            )
        )
        with trio.fail_after(20):
            while not all(n.store.has(fb.record_id) for n in nodes):
                await trio.sleep(0.1)
        # It travelled by feed pulls: no node received it by gossip.
        for node in nodes[:3] + nodes[4:]:
            feed = node.metrics.accepted.labels(Feedback.TYPE, "new", "feed")._value.get()
            gossip = node.metrics.accepted.labels(Feedback.TYPE, "new", "gossip")._value.get()
            sync = node.metrics.accepted.labels(Feedback.TYPE, "new", "sync")._value.get()
            assert feed >= 1 and gossip == 0, (feed, gossip, sync)
        # Every node that pulls from someone is pulled from: the origin has followers.
        assert any(origin.peer_id in n.feed.upstreams for n in nodes if n is not origin)


async def test_a_stalling_upstream_delays_nobody_and_is_avoided(tmp_path):
    fresh = SqliteRecordStore(tmp_path / "fresh.db")
    served = SqliteRecordStore(tmp_path / "served.db")
    served.put_many(_claims(5), now=NOW)

    async def staller(stream):
        reader = FrameReader(stream, max_frame=4096)
        while await reader.read_cbor() is not None:
            await trio.sleep(3600)  # never answers

    honest_host, slow_host = (
        build_host(factories.identity("h")),
        build_host(factories.identity("s")),
    )
    client = build_host(factories.identity("c2"))
    async with (
        honest_host.run(listen_addrs=[LOCAL]),
        slow_host.run(listen_addrs=[LOCAL]),
        client.run(listen_addrs=[LOCAL]),
    ):
        honest_host.set_stream_handler(PROTOCOL, make_handler(served, FeedParams(), lambda: NOW))
        slow_host.set_stream_handler(PROTOCOL, staller)
        honest = await _connect(client, honest_host)
        slow = await _connect(client, slow_host)
        follower = _follower(
            client, [honest, slow], fresh, request_timeout_s=1.0, pages_per_round=1
        )
        with trio.fail_after(10):
            started = trio.current_time()
            assert await follower.round() == 5  # the honest upstream's records
            assert trio.current_time() - started < 2.5  # pulled side by side, not in turn
        assert slow not in follower.upstreams and honest in follower.upstreams
        with trio.fail_after(10):
            await follower.round()
        assert slow not in follower.upstreams  # backed off, not chosen again
        assert not follower.follow_back(slow)  # nor followed back


def test_only_full_nodes_are_followed_back(tmp_path):
    fresh = SqliteRecordStore(tmp_path / "fresh.db")
    follower = _follower(None, ["12D3KooWfull"], fresh)
    assert not follower.follow_back("12D3KooWlightclient")  # not a candidate: no slot
    assert follower.follow_back("12D3KooWfull")
    assert not follower.follow_back("12D3KooWfull")  # once


def test_a_cursor_from_before_a_store_reset_starts_over(tmp_path):
    old = SqliteRecordStore(tmp_path / "old.db")
    old.put_many(_claims(30), now=NOW)
    cursor = serve_page(old, -1, 100, FeedParams(), NOW)["next"]
    assert cursor == 30
    wiped = SqliteRecordStore(tmp_path / "wiped.db")  # the server lost its records.db
    wiped.put_many(_claims(3, start=100), now=NOW)
    page = serve_page(wiped, cursor, 100, FeedParams(), NOW)
    assert len(page["records"]) == 3 and page["next"] == 3  # served, not silent for ever
