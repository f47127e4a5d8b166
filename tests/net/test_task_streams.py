"""TaskStreams: task streams kept open per node and reused, against real hosts."""

from __future__ import annotations

import multiaddr
import pytest
import trio
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr

from repp2p.errors import ProtocolError
from repp2p.net.framing import FrameReader, write_cbor
from repp2p.net.host import build_host
from repp2p.net.task import PROTOCOL
from repp2p.net.task_streams import TaskStreams
from repp2p.testing import factories

LOCAL = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")
OK = {"ok": True, "stored": 0}


async def _run(handler, requests, *, clock=None):
    """Serve ``handler`` on one host, send ``requests`` from another; (replies, pool)."""
    server, client = build_host(factories.identity("node")), build_host(factories.identity("c"))
    replies = []
    async with server.run(listen_addrs=[LOCAL]), client.run(listen_addrs=[LOCAL]):
        server.set_stream_handler(PROTOCOL, handler)
        addr = multiaddr.Multiaddr(f"{server.get_addrs()[0]}/p2p/{server.get_id()}")
        peer = server.get_id().to_base58()
        pool = TaskStreams(lambda p: client.new_stream(ID.from_base58(p), [PROTOCOL]))
        with trio.fail_after(20):
            await client.connect(info_from_p2p_addr(addr))
            for request in requests:
                try:
                    replies.append(await pool.request(peer, request))
                except ProtocolError as exc:
                    replies.append(exc)
            await pool.aclose()
    return replies, pool


async def test_one_stream_carries_requests_in_turn():
    streams = []

    async def handler(stream):
        streams.append(stream)
        reader = FrameReader(stream, 4096)
        while await reader.read_cbor() is not None:
            await write_cbor(stream, OK)

    replies, pool = await _run(handler, [{"records": [b"x"]}] * 5)
    assert replies == [OK] * 5 and pool.opened == 1 and len(streams) == 1


async def test_a_stream_the_node_closed_is_replaced_transparently():
    async def one_then_close(stream):  # what a node does to an idle stream
        reader = FrameReader(stream, 4096)
        if await reader.read_cbor() is not None:
            await write_cbor(stream, OK)
        await stream.close()

    replies, pool = await _run(one_then_close, [{"records": [b"x"]}] * 3)
    assert replies == [OK] * 3 and pool.opened == 3


async def test_a_fresh_stream_closed_without_an_answer_is_an_error():
    async def rude(stream):
        await FrameReader(stream, 4096).read_cbor()
        await stream.close()

    replies, pool = await _run(rude, [{"records": [b"x"]}])
    assert isinstance(replies[0], ProtocolError) and pool.opened == 1


@pytest.mark.parametrize("frame", [{"ok": "yes"}, {"ok": True, "claim": 1}, [1, 2]])
async def test_a_malformed_answer_is_refused_and_its_stream_not_reused(frame):
    async def liar(stream):
        reader = FrameReader(stream, 4096)
        while await reader.read_cbor() is not None:
            await write_cbor(stream, frame)

    replies, pool = await _run(liar, [{"records": [b"x"]}] * 2)
    assert all(isinstance(r, ProtocolError) for r in replies) and pool.opened == 2


async def test_a_task_request_answered_with_a_hand_over_shape_is_refused():
    async def confused(stream):
        reader = FrameReader(stream, 4096)
        while await reader.read_cbor() is not None:
            await write_cbor(stream, OK)  # {"ok": true, "stored": 0}

    replies, _ = await _run(confused, [{"offer": b"o", "sealed": b"s"}])
    assert isinstance(replies[0], ProtocolError)
