"""Hostile peers on ``/repp2p/task/1``, real py-libp2p hosts on 127.0.0.1: a request or an
answer built to be expensive to decode, and a peer holding many requests open at once.
Every refusal is typed and every wait bounded (docs/protocol.md, docs/security.md)."""

from __future__ import annotations

import tracemalloc
import types

import multiaddr
import pytest
import trio
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr

from repp2p.clock import SystemClock
from repp2p.errors import ProtocolError
from repp2p.net.framing import FrameReader, encode_varint, write_cbor
from repp2p.net.host import build_host
from repp2p.net.task import (
    MAX_REQUEST,
    MAX_REQUESTS_PER_PEER,
    MAX_RESPONSE,
    MAX_STREAMS_PER_PEER,
    PROTOCOL,
)
from repp2p.net.task_streams import TaskStreams
from repp2p.node.serving import TaskServer
from repp2p.testing import factories
from repp2p.timers import Timers

LOCAL = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")
#: a hand-over of one record that is no record: the node stores nothing and answers at once
#: (it touches nothing but its clock and one store lookup), which is all these tests need
HANDOVER = {"records": [b"x"]}
STORED_NONE = {"ok": True, "stored": 0}


def _bomb(limit: int) -> bytes:
    """A frame of ``limit`` bytes: a CBOR list of empty maps, one byte each."""
    n = limit - 5
    return b"\x9a" + n.to_bytes(4, "big") + b"\xa0" * n


def _server(limits: list[str], timers: Timers) -> TaskServer:
    """A task server whose parts are never reached by the requests of these tests."""
    unused = types.SimpleNamespace()
    return TaskServer(
        peer_id=factories.identity("hostile-tasks-node").peer_id,
        store=types.SimpleNamespace(has=lambda record_id: False),
        pipeline=unused,
        publisher=unused,
        views=unused,
        enclave=unused,
        clock=SystemClock(),
        capacity=4,
        timers=timers,
        on_limit=limits.append,
    )


async def _connect(client, server) -> None:
    addr = multiaddr.Multiaddr(f"{server.get_addrs()[0]}/p2p/{server.get_id()}")
    with trio.fail_after(10):
        await client.connect(info_from_p2p_addr(addr))


class _Peak:
    """Peak Python memory allocated inside the block (tracemalloc), in bytes."""

    def __enter__(self) -> _Peak:
        tracemalloc.start()
        self.peak = 0
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


#: what reading and answering a 2 MiB frame may cost (the frame, a copy, Noise buffers)
FRAME_BUDGET = 24 * 1024 * 1024


async def test_a_request_of_two_million_tiny_items_is_refused_before_it_is_decoded():
    """A 2 MiB request frame of one-byte items (empty maps): cbor2 built ~150 MB of dicts
    from it (0.1-0.4 s of the node's event loop), for a message that cost its sender
    nothing, on every stream it opened; the node now scans the CBOR first and refuses it
    after 257 items (``bad_request``, stream closed)."""
    limits: list[str] = []
    server = _server(limits, Timers())
    node, peer = build_host(factories.identity("ht-node")), build_host(factories.identity("ht-a"))
    async with node.run(listen_addrs=[LOCAL]), peer.run(listen_addrs=[LOCAL]):
        node.set_stream_handler(PROTOCOL, server.handle_stream)
        await _connect(peer, node)
        with trio.fail_after(30):
            stream = await peer.new_stream(node.get_id(), [PROTOCOL])
            bomb = _bomb(MAX_REQUEST)
            with _Peak() as used:
                await stream.write(encode_varint(len(bomb)) + bomb)
                reader = FrameReader(stream, MAX_RESPONSE)
                reply = await reader.read_cbor()
            assert await reader.read_cbor() is None  # and the stream closed
    assert reply["ok"] is False and reply["error"] == "bad_request"
    assert "more than 256 CBOR items" in reply["detail"]
    assert limits == ["malformed"]
    assert used.peak < FRAME_BUDGET, f"{used.peak / 2**20:.0f} MiB for one 2 MiB frame"


async def test_an_answer_of_two_million_tiny_items_is_refused_before_it_is_decoded():
    """The same frame from a node to a client: a typed ProtocolError, without decoding it."""

    async def liar(stream) -> None:
        reader = FrameReader(stream, MAX_REQUEST)
        while await reader.read_cbor() is not None:
            bomb = _bomb(MAX_RESPONSE)
            await stream.write(encode_varint(len(bomb)) + bomb)

    node, client = build_host(factories.identity("ht-liar")), build_host(factories.identity("ht-c"))
    async with node.run(listen_addrs=[LOCAL]), client.run(listen_addrs=[LOCAL]):
        node.set_stream_handler(PROTOCOL, liar)
        await _connect(client, node)
        pool = TaskStreams(lambda p: client.new_stream(ID.from_base58(p), [PROTOCOL]))
        with (
            trio.fail_after(30),
            _Peak() as used,
            pytest.raises(ProtocolError, match="more than 16 CBOR items"),
        ):
            await pool.request(node.get_id().to_base58(), HANDOVER)
        assert pool.idle_counts() == {}  # its stream is not kept
    assert used.peak < FRAME_BUDGET, f"{used.peak / 2**20:.0f} MiB for one 2 MiB frame"


async def test_one_peer_has_at_most_max_requests_per_peer_in_progress():
    """A peer could open any number of task streams and begin a request on each: every one
    buffered up to 2 MiB (and a request with a valid offer stays in memory through the
    failover wait and the run). Now its 17th request waits, unread, until one of its
    16 in progress ends; another peer is served meanwhile."""
    limits: list[str] = []
    timers = Timers(task_request_s=2.0)
    server = _server(limits, timers)
    node = build_host(factories.identity("ht-cap-node"))
    hog, other = build_host(factories.identity("ht-hog")), build_host(factories.identity("ht-o"))
    hog_id = hog.get_id().to_base58()
    answered: dict[str, float] = {}

    async def answer_of(name: str, stream) -> None:
        reply = await FrameReader(stream, MAX_RESPONSE).read_cbor()
        assert reply == STORED_NONE
        answered[name] = trio.current_time()

    async with (
        node.run(listen_addrs=[LOCAL]),
        hog.run(listen_addrs=[LOCAL]),
        other.run(listen_addrs=[LOCAL]),
    ):
        node.set_stream_handler(PROTOCOL, server.handle_stream)
        await _connect(hog, node)
        await _connect(other, node)
        async with trio.open_nursery() as nursery:
            with trio.fail_after(20):
                begun = []
                for _ in range(MAX_REQUESTS_PER_PEER):  # each begins a 1 MiB request, no more
                    stream = await hog.new_stream(node.get_id(), [PROTOCOL])
                    await stream.write(encode_varint(1 << 20) + b"\0" * 100)
                    begun.append(stream)
                while server.requests_in_progress(hog_id) < MAX_REQUESTS_PER_PEER:
                    await trio.sleep(0.02)
                started = trio.current_time()
                extra = await hog.new_stream(node.get_id(), [PROTOCOL])
                await write_cbor(extra, HANDOVER)
                nursery.start_soon(answer_of, "extra", extra)
                await trio.sleep(0.5)
                assert "extra" not in answered  # not read: the peer is at its limit
                assert server.requests_in_progress(hog_id) == MAX_REQUESTS_PER_PEER
                stream = await other.new_stream(node.get_id(), [PROTOCOL])
                await write_cbor(stream, HANDOVER)
                await answer_of("other", stream)  # another peer is served at once
                while "extra" not in answered:  # once a begun one timed out
                    await trio.sleep(0.05)
                while server.requests_in_progress(hog_id):  # and then all of them
                    await trio.sleep(0.05)
    assert answered["other"] < answered["extra"]
    assert answered["extra"] - started >= timers.task_request_s - 0.5
    assert limits == ["request_timeout"] * MAX_REQUESTS_PER_PEER


async def test_one_peer_has_at_most_max_streams_per_peer_open():
    """Each task stream holds a handler on the node for ``task_idle_s`` (60 s) though it
    never carries a byte (~11 KiB each, measured, with py-libp2p's own state): a peer
    opening streams without end held memory without end. Its streams beyond
    MAX_STREAMS_PER_PEER are reset at once; those it holds still serve."""
    limits: list[str] = []
    server = _server(limits, Timers())
    node, hog = build_host(factories.identity("hs-node")), build_host(factories.identity("hs-hog"))
    async with node.run(listen_addrs=[LOCAL]), hog.run(listen_addrs=[LOCAL]):
        node.set_stream_handler(PROTOCOL, server.handle_stream)
        await _connect(hog, node)
        with trio.fail_after(30):
            held = [
                await hog.new_stream(node.get_id(), [PROTOCOL]) for _ in range(MAX_STREAMS_PER_PEER)
            ]
            try:  # the reset may come while the stream is still being negotiated
                extra = await hog.new_stream(node.get_id(), [PROTOCOL])
                await write_cbor(extra, HANDOVER)
                reply = await FrameReader(extra, MAX_RESPONSE).read_cbor()
            except Exception:  # reset under our feet
                reply = None
            assert reply is None  # not served: reset
            assert limits == ["streams_per_peer"]
            await write_cbor(held[0], HANDOVER)
            assert await FrameReader(held[0], MAX_RESPONSE).read_cbor() == STORED_NONE
