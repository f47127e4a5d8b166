"""The logic of the py-libp2p cost fixes: window updates, buffered RPC reads, cached peer
records, opportunistic grafting and D_lazy (repp2p.net.libp2p_compat). Whether py-libp2p
still calls them is tests/net/test_libp2p_compat.py's job."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import multiaddr
import pytest
import trio
from libp2p.exceptions import ParseError
from libp2p.io.exceptions import IncompleteReadError, MessageTooLarge
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.stream_muxer.yamux.yamux import DEFAULT_WINDOW_SIZE
from libp2p.utils.varint import encode_uvarint

import repp2p.net.libp2p_compat.gossipsub as gossipsub
import repp2p.net.libp2p_compat.pubsub as pubsub
from repp2p.errors import ConfigError
from repp2p.identity import Identity
from repp2p.net.gossip import score_params
from repp2p.net.host import build_host
from repp2p.net.libp2p_compat import RecordGossipSub
from repp2p.net.params import GossipParams
from repp2p.net.topics import TOPICS

PROTOCOL = "/repp2p-test/echo/1"
LOCAL = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")


def _peer() -> ID:
    return ID.from_pubkey(Identity.generate().to_libp2p_keypair().public_key)


async def _stream_pair(a: Any, b: Any) -> tuple[Any, Any]:
    """A real yamux stream a -> b over Noise; returns (writer side, reader side)."""
    send, receive = trio.open_memory_channel(1)

    async def handler(stream: Any) -> None:
        await send.send(stream)
        await trio.sleep_forever()  # keep the handler (and the stream) alive

    b.set_stream_handler(PROTOCOL, handler)
    addr = f"{b.get_addrs()[0]}/p2p/{b.get_id().to_base58()}"
    await a.connect(info_from_p2p_addr(multiaddr.Multiaddr(addr)))
    writer = await a.new_stream(b.get_id(), [PROTOCOL])
    await writer.write(b"\x00")  # the stream opens on the far side with its first frame
    reader = await receive.receive()
    assert await reader.read(1) == b"\x00"
    return writer, reader


def _framed(payload: bytes) -> bytes:
    return encode_uvarint(len(payload)) + payload


@pytest.mark.trio
async def test_rpcs_read_from_one_buffer_whatever_the_write_boundaries():
    a, b = build_host(Identity.generate()), build_host(Identity.generate())
    async with a.run([LOCAL]), b.run([LOCAL]), trio.open_nursery() as nursery:
        writer, reader = await _stream_pair(a, b)
        big = bytes(range(256)) * 30  # a two-byte length prefix
        # Three RPCs in one write, then one split inside its length prefix and body.
        await writer.write(_framed(b"one") + _framed(b"") + _framed(big))
        split = _framed(b"x" * 300)
        with trio.fail_after(10):
            assert await pubsub.read_rpc_buffered(reader, 10_000) == b"one"
            assert await pubsub.read_rpc_buffered(reader, 10_000) == b""
            assert await pubsub.read_rpc_buffered(reader, 10_000) == big
            await writer.write(split[:1])
            nursery.start_soon(writer.write, split[1:])
            assert await pubsub.read_rpc_buffered(reader, 10_000) == b"x" * 300
            # Too large: refused from its prefix alone.
            await writer.write(_framed(b"y" * 2_000))
            with pytest.raises(MessageTooLarge):
                await pubsub.read_rpc_buffered(reader, 1_000)
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_truncated_and_overlong_prefixes_are_errors():
    a, b = build_host(Identity.generate()), build_host(Identity.generate())
    async with a.run([LOCAL]), b.run([LOCAL]), trio.open_nursery() as nursery:
        writer, reader = await _stream_pair(a, b)
        await writer.write(b"\xff" * 10)
        with trio.fail_after(10), pytest.raises(ParseError):
            await pubsub.read_rpc_buffered(reader, 10_000)
        writer2, reader2 = await _stream_pair(a, b)
        await writer2.write(_framed(b"z" * 100)[:50])
        await writer2.close()
        # py-libp2p's stream raises StreamEOF at the end (as with its own reader).
        with trio.fail_after(10), pytest.raises((IncompleteReadError, StreamEOF)):
            await pubsub.read_rpc_buffered(reader2, 10_000)
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_window_updates_wait_for_half_the_window():
    """Small messages read one by one draw no WINDOW_UPDATE each (py-libp2p sent one per
    read); past half the window the reader credits the sender, so it never stalls."""
    a, b = build_host(Identity.generate()), build_host(Identity.generate())
    async with a.run([LOCAL]), b.run([LOCAL]), trio.open_nursery() as nursery:
        writer, reader = await _stream_pair(a, b)
        muxed = writer.muxed_stream
        start = muxed.send_window
        message = b"m" * 600
        with trio.fail_after(20):
            for _ in range(100):
                await writer.write(message)
                got = b""
                while len(got) < len(message):
                    got += await reader.read(len(message) - len(got))
            await trio.sleep(0.2)  # any update would have arrived by now
            assert muxed.send_window == start - 100 * len(message)
            # A whole window's worth, read as it comes: credits flow back, no stall.
            total = 2 * DEFAULT_WINDOW_SIZE

            async def drain() -> None:
                left = total
                while left:
                    left -= len(await reader.read(min(left, 65536)))

            nursery.start_soon(drain)
            sent = 0
            while sent < total:
                await writer.write(message[: min(600, total - sent)])
                sent += min(600, total - sent)
            while muxed.send_window <= start - 100 * len(message):
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_own_peer_record_reused_between_rpcs(monkeypatch):
    host = build_host(Identity.generate())
    async with host.run([LOCAL]):
        first = pubsub.envelope_cached(host)
        assert pubsub.envelope_cached(host) is first
        monkeypatch.setattr(pubsub, "ENVELOPE_TTL_S", -1.0)  # expired: rebuilt
        again = pubsub.envelope_cached(host)
        assert again is not first and again[0] == first[0]


def _router(scores: dict[ID, float], topic: str) -> RecordGossipSub:
    router = RecordGossipSub(
        protocols=[],
        degree=4,
        degree_low=3,
        degree_high=8,
        score_params=score_params(lambda peer: 0.0),
        gossip_lazy=3,
    )
    router.scorer.score = lambda peer, topics: scores[peer]  # type: ignore[union-attr]
    router.pubsub = SimpleNamespace(peer_topics={topic: set(scores)})  # type: ignore[assignment]
    return router


def test_opportunistic_grafting_once_a_minute_and_only_for_a_poor_mesh():
    topic = TOPICS["heartbeats"]
    mesh = [_peer() for _ in range(4)]
    outside = [_peer() for _ in range(6)]
    scores = {p: 0.0 for p in mesh} | {p: 5.0 for p in outside}
    router = _router(scores, topic)
    router.mesh[topic] = set(mesh)
    grafts: defaultdict[ID, list[str]] = defaultdict(list)
    for _ in range(gossipsub.OPPORTUNISTIC_GRAFT_TICKS - 1):
        assert router._perform_opportunistic_grafting(topic, grafts) == 0
    assert router._perform_opportunistic_grafting(topic, grafts) == 2  # the 60th heartbeat
    assert set(grafts) <= set(outside) and len(grafts) == 2
    assert router.mesh[topic] == set(mesh) | set(grafts)
    # A mesh scoring well (median >= the threshold) grafts nobody, even on its tick.
    for p in mesh:
        scores[p] = 2.0
    grafts.clear()
    for _ in range(gossipsub.OPPORTUNISTIC_GRAFT_TICKS):
        router._perform_opportunistic_grafting(topic, grafts)
    assert not grafts


def test_gossip_lazy_is_the_floor_of_ihave_targets():
    router = _router({}, TOPICS["heartbeats"])
    assert router._get_adaptive_gossip_peers_count(TOPICS["heartbeats"], 8) == 3
    assert router._get_adaptive_gossip_peers_count(TOPICS["heartbeats"], 40) == 10
    for bad in (0, 33, 2.5):
        with pytest.raises(ConfigError):
            GossipParams(gossip_lazy=bad)


@pytest.mark.trio
async def test_heartbeat_control_messages_are_built_per_peer():
    """Each peer gets only its own GRAFT/PRUNE/IHAVE (py-libp2p sent the second peer the
    first one's too, leaving one-sided mesh links); unreachable peers are not grafted."""
    hb, ads = TOPICS["heartbeats"], TOPICS["ads"]
    a, b, unreachable = _peer(), _peer(), _peer()
    router = _router({a: 0.0, b: 0.0, unreachable: 0.0}, hb)
    router.pubsub.peer_queues = {a: object(), b: object()}  # type: ignore[union-attr]
    router.mesh[hb] = {a, unreachable}
    router.mesh[ads] = set()
    sent: dict[ID, Any] = {}

    async def capture(control: Any, peer: ID) -> None:
        assert peer not in sent
        sent[peer] = control

    router.emit_control_message = capture  # type: ignore[method-assign]
    await router._emit_control_msgs({a: [hb], unreachable: [hb]}, {b: [ads]}, {b: {hb: [b"id-1"]}})
    assert [g.topicID for g in sent[a].graft] == [hb]
    assert not sent[a].prune and not sent[a].ihave
    assert not sent[b].graft
    assert [p.topicID for p in sent[b].prune] == [ads]
    assert list(sent[b].ihave[0].messageIDs) == [b"id-1"]
    assert unreachable not in sent and router.mesh[hb] == {a}
    # Every MESH_REFRESH_TICKS heartbeats each mesh link is confirmed with a GRAFT.
    router.mesh[ads] = {b}
    for _ in range(gossipsub.MESH_REFRESH_TICKS - 2):
        sent.clear()
        await router._emit_control_msgs({}, {}, {})
        assert not sent
    await router._emit_control_msgs({}, {}, {})
    assert [g.topicID for g in sent[a].graft] == [hb]
    assert [g.topicID for g in sent[b].graft] == [ads]


@pytest.mark.trio
async def test_peer_record_once_per_stream_copied_never_changed(monkeypatch):
    from libp2p.pubsub.pb import rpc_pb2

    written: list[tuple[Any, Any]] = []

    async def record(self: Any, stream: Any, rpc_msg: Any) -> bool:
        written.append((stream, rpc_msg))
        return True

    class Stream:  # stands for a stream: weakly referenced, hashable
        pass

    monkeypatch.setattr(pubsub, "_write_msg", record)
    a, b = Stream(), Stream()
    rpc = rpc_pb2.RPC(senderRecord=b"record-1")
    for stream in (a, a, b, a):
        assert await pubsub.write_record_once(None, stream, rpc)
    assert [w[1].HasField("senderRecord") for w in written] == [True, False, True, False]
    assert rpc.senderRecord == b"record-1"  # the caller's RPC (shared by streams) untouched
    changed = rpc_pb2.RPC(senderRecord=b"record-2")  # new addresses: sent again
    await pubsub.write_record_once(None, a, changed)
    assert written[-1][1].senderRecord == b"record-2"
    monkeypatch.setattr(pubsub, "RECORD_RESEND_S", -1.0)  # its time is up: sent again
    await pubsub.write_record_once(None, a, changed)
    assert written[-1][1].HasField("senderRecord")
    bare = rpc_pb2.RPC()  # an RPC without a record is written as it is
    await pubsub.write_record_once(None, a, bare)
    assert written[-1][1] is bare
