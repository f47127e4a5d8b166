"""The host-wide stream limit against many peers each holding its per-connection share:
real py-libp2p hosts on 127.0.0.1.

py-libp2p 0.8.1 counts every stream of a host against one limit (10,000 by default) behind
a semaphore that *waits*: a stream beyond it, inbound or our own outbound, queues until
another ends. Yamux lets each connection's peer hold MAX_INBOUND_STREAMS (512), so 20 peers
each holding its 512 used the limit up, and then no honest peer's stream was served and the
host could open none of its own. The limit is now sized from the connection cap
(repp2p.net.host.host_stream_limit): every connection's peer can hold its whole share and
our own streams still have room. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
from typing import Any

import multiaddr
import trio
from libp2p.peer.peerinfo import info_from_p2p_addr

from repp2p.identity import Identity
from repp2p.net.host import OUTBOUND_STREAMS, build_host, host_stream_limit
from repp2p.net.libp2p_compat.yamux import MAX_INBOUND_STREAMS, held_by_peer
from repp2p.net.params import ConnectionParams

LOCAL = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")
SINK = "/test/stream-limit-sink/1"  # holds the stream until released
ECHO = "/test/stream-limit-echo/1"
#: py-libp2p's default host-wide limit, which 20 full shares went past
OLD_LIMIT = 10_000
ATTACKERS = OLD_LIMIT // MAX_INBOUND_STREAMS + 1


def test_the_limit_covers_every_connections_share_and_our_own_streams():
    for params in (ConnectionParams(), ConnectionParams(8, 16, 1000)):
        limit = host_stream_limit(params)
        assert limit == params.max_connections * MAX_INBOUND_STREAMS + OUTBOUND_STREAMS
    assert host_stream_limit(ConnectionParams()) > OLD_LIMIT


def test_build_host_applies_the_limit_without_degrading_it():
    params = ConnectionParams(4, 8, 100)
    rm = build_host(Identity.generate(), connections=params).get_network()._resource_manager
    assert rm.limits.max_streams == host_stream_limit(params)
    # py-libp2p's "graceful degradation" would cut the limit to half on pressure
    assert rm.graceful_degradation is None


async def _connect(client: Any, server: Any) -> None:
    addr = multiaddr.Multiaddr(f"{server.get_addrs()[0]}/p2p/{server.get_id()}")
    with trio.fail_after(10):
        await client.connect(info_from_p2p_addr(addr))


async def _echoes(host: Any, server: Any) -> bool:
    """Whether ``server`` answers a fresh stream of ``host`` on the echo protocol."""
    with trio.fail_after(10):
        stream = await host.new_stream(server.get_id(), [ECHO])
        await stream.write(b"still served")
        return await stream.read(64) == b"still served"


async def _hold(attacker: Any, victim: Any, held: list[Any]) -> None:
    """``attacker`` opens MAX_INBOUND_STREAMS streams to ``victim``'s sink and holds them
    (a stream the victim does not take within 5 s is given up)."""
    [conn] = attacker.get_network().get_connections(victim.get_id())
    # py-libp2p's own opener waits beyond 256 streams open; a hostile one need not
    conn.muxed_conn.stream_backlog_semaphore = trio.Semaphore(2 * MAX_INBOUND_STREAMS)
    for _ in range(MAX_INBOUND_STREAMS):
        with trio.move_on_after(5):
            held.append(await attacker.new_stream(victim.get_id(), [SINK]))


async def test_peers_holding_their_share_of_streams_leave_the_host_working():
    """20 peers each hold 512 streams on the victim (10,240 in all, more than py-libp2p's
    10,000): an honest peer's fresh stream is still served and the victim still opens its
    own (before, both waited for a stream to end, without bound)."""
    victim, honest = build_host(Identity.generate()), build_host(Identity.generate())
    attackers = [build_host(Identity.generate()) for _ in range(ATTACKERS)]
    release = trio.Event()

    async def sink(stream: Any) -> None:
        with trio.move_on_after(120):
            await release.wait()
        with contextlib.suppress(Exception):
            await stream.reset()

    async def echo(stream: Any) -> None:
        with contextlib.suppress(Exception):
            while data := await stream.read(4096):
                await stream.write(data)
            await stream.close()

    async with contextlib.AsyncExitStack() as stack:
        for host in (victim, honest, *attackers):
            await stack.enter_async_context(host.run([LOCAL]))
            host.set_stream_handler(ECHO, echo)
        victim.set_stream_handler(SINK, sink)
        for host in (honest, *attackers):
            await _connect(host, victim)
        held: list[Any] = []
        with trio.fail_after(240):
            async with trio.open_nursery() as nursery:
                for attacker in attackers:
                    nursery.start_soon(_hold, attacker, victim, held)
        # (before: 10,000 held, and both waited here until the test's deadline)
        assert await _echoes(honest, victim)
        assert await _echoes(victim, honest)
        assert len(held) == ATTACKERS * MAX_INBOUND_STREAMS > OLD_LIMIT
        muxes = [c.muxed_conn for c in victim.get_network().get_connections()]
        assert sum(held_by_peer(m) for m in muxes) >= len(held)
        release.set()
