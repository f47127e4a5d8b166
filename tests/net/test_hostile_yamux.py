"""Hostile peers below every protocol, at the yamux layer: real py-libp2p hosts on
127.0.0.1, the attacker writing raw yamux frames on its own connection to the victim.

py-libp2p 0.8.1 buffered DATA beyond a stream's receive window (logging it) and opened a
stream for every SYN: the victim closes a connection whose peer breaks flow control (with a
GO_AWAY, as go-yamux does), resets a peer's streams beyond MAX_INBOUND_STREAMS open and
closes a connection holding more than MAX_CONNECTION_BUFFERED unread over all its streams
(and the heaviest connections while the process holds more than MAX_TOTAL_BUFFERED), while
honest traffic, up to the last byte of an auto-tuned window, never trips them
(repp2p.net.libp2p_compat.yamux; docs/design-notes.md, "Yamux"). Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import struct
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import multiaddr
import trio
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.stream_muxer.yamux.yamux import (
    DEFAULT_WINDOW_SIZE,
    FLAG_ACK,
    FLAG_SYN,
    GO_AWAY_INTERNAL_ERROR,
    GO_AWAY_PROTOCOL_ERROR,
    TYPE_DATA,
    TYPE_GO_AWAY,
    YAMUX_HEADER_FORMAT,
)

from repp2p.identity import Identity
from repp2p.net.host import build_host
from repp2p.net.libp2p_compat import hook_calls, yamux
from repp2p.net.libp2p_compat.yamux import (
    CONNECTION_BUFFER_EXCEEDED,
    MAX_CONNECTION_BUFFERED,
    MAX_INBOUND_STREAMS,
    STREAM_REFUSED,
    TOTAL_BUFFER_EXCEEDED,
    WINDOW_EXCEEDED,
    connection_buffered,
    held_by_peer,
)
from repp2p.testing.waits import until

LOCAL = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")
SINK = "/test/yamux-sink/1"  # reads once, then holds the stream unread
ECHO = "/test/yamux-echo/1"
BULK = "/test/yamux-bulk/1"  # reads until told to stop
DRAIN = "/test/yamux-drain/1"  # reads to the end
FRAME = 64 * 1024  # the attacker's DATA frames (go-yamux's own size)


def _data(stream_id: int, payload: bytes, flags: int = 0) -> bytes:
    """A raw yamux DATA frame, sent whatever the window says."""
    header = struct.pack(YAMUX_HEADER_FORMAT, 0, TYPE_DATA, flags, stream_id, len(payload))
    return header + payload


async def _connect(client: Any, server: Any) -> None:
    addr = multiaddr.Multiaddr(f"{server.get_addrs()[0]}/p2p/{server.get_id()}")
    with trio.fail_after(10):
        await client.connect(info_from_p2p_addr(addr))


def _yamux(host: Any, peer: Any) -> Any:
    """``host``'s yamux connection to ``peer`` (one per peer: build_host)."""
    [conn] = host.get_network().get_connections(peer.get_id())
    return conn.muxed_conn


class _PeakBuffer(bytearray):
    """A stream buffer recording the most it ever held (py-libp2p extends it per frame)."""

    peak = 0

    def extend(self, data: Any) -> None:
        super().extend(data)
        self.peak = max(self.peak, len(self))


def _spy_frames(mux: Any) -> list[bytes]:
    """The headers of the frames ``mux`` writes from now on (still written)."""
    headers: list[bytes] = []
    write = mux._write_frame

    async def spy(data: bytes) -> None:
        headers.append(bytes(data[:12]))
        await write(data)

    mux._write_frame = spy
    return headers


def _go_away(headers: list[bytes], code: int) -> bool:
    return any(struct.unpack(YAMUX_HEADER_FORMAT, h)[1::3] == (TYPE_GO_AWAY, code) for h in headers)


def _go_away_protocol_error(headers: list[bytes]) -> bool:
    return _go_away(headers, GO_AWAY_PROTOCOL_ERROR)


def _acked(headers: list[bytes], stream_id: int) -> bool:
    return any(struct.unpack(YAMUX_HEADER_FORMAT, h)[2:4] == (FLAG_ACK, stream_id) for h in headers)


def _handlers(release: trio.Event) -> dict[str, Callable[[Any], Awaitable[None]]]:
    async def sink(stream: Any) -> None:
        await stream.read(1)
        with trio.move_on_after(60):  # holds the stream, reading nothing more
            await release.wait()

    async def echo(stream: Any) -> None:
        try:
            while data := await stream.read(4096):
                await stream.write(data)
        except Exception:  # the end of the stream, or a reset
            pass
        with contextlib.suppress(Exception):
            await stream.close()

    return {SINK: sink, ECHO: echo}


async def _dropped(victim: Any, peer: Any, what: str) -> None:
    """Wait (bounded) until ``victim`` no longer counts ``peer`` as connected."""
    await until(lambda: peer.get_id() not in victim.get_connected_peers(), 10, what)


async def _echoes(host: Any, server: Any) -> bool:
    """Whether ``server`` answers a fresh stream of ``host`` on the echo protocol."""
    with trio.fail_after(10):
        stream = await host.new_stream(server.get_id(), [ECHO])
        await stream.write(b"still served")
        return await stream.read(64) == b"still served"


async def test_data_past_a_streams_window_closes_the_connection():
    """A peer writing into a stream its handler does not read: before, the victim buffered
    every byte (8 MiB here, without bound). Now it closes the connection at the frame that
    goes past the window (sending GO_AWAY protocol error), having held at most one window
    and one frame, and goes on serving others."""
    victim, attacker, honest = (build_host(Identity.generate()) for _ in range(3))
    release = trio.Event()
    before = hook_calls().get(WINDOW_EXCEEDED, 0)
    async with victim.run([LOCAL]), attacker.run([LOCAL]), honest.run([LOCAL]):
        for protocol, handler in _handlers(release).items():
            victim.set_stream_handler(protocol, handler)
        await _connect(attacker, victim)
        with trio.fail_after(30):
            stream = await attacker.new_stream(victim.get_id(), [SINK])
            sid = stream.muxed_stream.stream_id
            mux, target = _yamux(attacker, victim), _yamux(victim, attacker)
            await until(lambda: sid in target.stream_buffers, 10, "the victim has the stream")
            buffer = _PeakBuffer(target.stream_buffers[sid])
            target.stream_buffers[sid] = buffer
            sent_headers = _spy_frames(target)
            sent = 0
            while sent < 8 * 1024 * 1024 and not target.is_closed:
                try:
                    await mux._write_frame(_data(sid, b"\xaa" * FRAME))
                except Exception:  # the victim closed the connection under us
                    break
                sent += FRAME
                await trio.sleep(0)
            await until(lambda: target.is_closed, 10, "the victim closes the connection")
            await _dropped(victim, attacker, "the victim drops the peer")
            await _connect(honest, victim)
            assert await _echoes(honest, victim)
        release.set()
    assert buffer.peak <= DEFAULT_WINDOW_SIZE + FRAME, f"{buffer.peak} bytes buffered"
    assert hook_calls().get(WINDOW_EXCEEDED, 0) == before + 1
    assert _go_away_protocol_error(sent_headers)


async def test_a_stream_opened_with_more_data_than_its_window_closes_the_connection():
    """DATA carried by the SYN itself counts against the new stream's window: a whole
    window is fine (yamux allows it), one byte more closes the connection."""
    victim, attacker = build_host(Identity.generate()), build_host(Identity.generate())
    before = hook_calls().get(WINDOW_EXCEEDED, 0)
    async with victim.run([LOCAL]), attacker.run([LOCAL]):
        await _connect(attacker, victim)
        mux, target = _yamux(attacker, victim), _yamux(victim, attacker)
        sent_headers = _spy_frames(target)
        with trio.fail_after(20):
            for extra in (0, 1):
                sid = mux.next_stream_id
                mux.next_stream_id += 2
                await mux._write_frame(_data(sid, b"\0" * (DEFAULT_WINDOW_SIZE + extra), FLAG_SYN))
                if not extra:
                    # its ACK is written once the frame is in the stream's buffer and window
                    await until(lambda sid=sid: _acked(sent_headers, sid), 10, "the stream's ACK")
                    assert not target.is_closed
                    assert hook_calls().get(WINDOW_EXCEEDED, 0) == before
            await until(lambda: target.is_closed, 10, "the victim closes the connection")
    assert hook_calls().get(WINDOW_EXCEEDED, 0) == before + 1


async def test_honest_traffic_never_trips_the_window_check():
    """py-libp2p's own sender against our go-style window updates: several MiB on one
    stream (its window auto-tuned upwards), many small messages on another, then the first
    stream's reader stops and the sender fills the window to its last byte: the connection
    stays. One byte beyond that edge (a raw frame) closes it: the check is exact."""
    victim, sender = build_host(Identity.generate()), build_host(Identity.generate())
    stop, release = trio.Event(), trio.Event()
    got = {BULK: 0, DRAIN: 0}
    before = hook_calls().get(WINDOW_EXCEEDED, 0)

    async def bulk(stream: Any) -> None:
        try:
            while not stop.is_set():
                got[BULK] += len(await stream.read(FRAME))
            with trio.move_on_after(60):  # held, unread, from now on
                await release.wait()
        except Exception:  # the connection went (the last step)
            pass

    async def drain(stream: Any) -> None:
        try:
            while data := await stream.read(FRAME):
                got[DRAIN] += len(data)
        except Exception:
            pass

    async with victim.run([LOCAL]), sender.run([LOCAL]):
        victim.set_stream_handler(BULK, bulk)
        victim.set_stream_handler(DRAIN, drain)
        await _connect(sender, victim)
        with trio.fail_after(60):
            big = await sender.new_stream(victim.get_id(), [BULK])
            small = await sender.new_stream(victim.get_id(), [DRAIN])
            sid = big.muxed_stream.stream_id
            for _ in range(8):
                await big.write(b"\x01" * (1024 * 1024))
            for _ in range(2000):
                await small.write(b"\x02" * 600)
            await until(lambda: got[BULK] == 8 * 1024 * 1024, 20, "8 MiB read")
            await until(lambda: got[DRAIN] == 2000 * 600, 20, "2000 messages read")
            target = _yamux(victim, sender)
            window = target.streams[sid]

            async def fill() -> None:
                try:
                    await big.write(b"\x03" * (64 * 1024 * 1024))
                except Exception:  # its window stays shut (5 s), or the connection goes
                    pass

            stop.set()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(fill)
                await until(
                    lambda: big.muxed_stream.send_window == 0 and window.recv_window == 0,
                    20,
                    "the sender fills the stopped reader's window",
                )
                await trio.sleep(0.3)
                assert not target.is_closed
                assert hook_calls().get(WINDOW_EXCEEDED, 0) == before
                assert window.target_recv_window >= DEFAULT_WINDOW_SIZE
                await _yamux(sender, victim)._write_frame(_data(sid, b"\x04"))
                await until(lambda: target.is_closed, 10, "the victim closes the connection")
                nursery.cancel_scope.cancel()
        release.set()
    assert hook_calls().get(WINDOW_EXCEEDED, 0) == before + 1


async def test_inbound_streams_beyond_the_cap_are_reset():
    """A peer opening streams without end held a handler task, a buffer and an event per
    stream on the victim. Its streams beyond MAX_INBOUND_STREAMS open are reset at once;
    the connection and the streams it holds still work, and a stream it closes frees its
    place."""
    victim, attacker = build_host(Identity.generate()), build_host(Identity.generate())
    release = trio.Event()
    before = hook_calls().get(STREAM_REFUSED, 0)
    async with victim.run([LOCAL]), attacker.run([LOCAL]):
        for protocol, handler in _handlers(release).items():
            victim.set_stream_handler(protocol, handler)
        await _connect(attacker, victim)
        mux, target = _yamux(attacker, victim), _yamux(victim, attacker)
        # py-libp2p's own opener waits beyond 256 streams open; a hostile one need not
        mux.stream_backlog_semaphore = trio.Semaphore(4 * MAX_INBOUND_STREAMS)
        await until(lambda: held_by_peer(target) == 0, 10, "identify done")
        held, refused = [], 0
        with trio.fail_after(120):
            for _ in range(MAX_INBOUND_STREAMS + 50):
                try:
                    held.append(await attacker.new_stream(victim.get_id(), [ECHO]))
                except Exception:  # reset while negotiating
                    refused += 1
            assert (len(held), refused) == (MAX_INBOUND_STREAMS, 50)
            assert hook_calls().get(STREAM_REFUSED, 0) == before + 50
            assert attacker.get_id() in victim.get_connected_peers()
            for stream in (held[0], held[-1]):
                await stream.write(b"ping")
                assert await stream.read(64) == b"ping"
            for stream in held[:10]:
                await stream.close()
            await until(
                lambda: held_by_peer(target) <= MAX_INBOUND_STREAMS - 10, 20, "10 streams closed"
            )
            assert await _echoes(attacker, victim)
        release.set()


async def _fill_windows(attacker: Any, victim: Any, streams: int) -> tuple[Any, list[bytes], int]:
    """``attacker`` opens ``streams`` streams to ``victim``'s sink and fills each one's
    window to its last byte, within flow control (raw frames, so that nothing waits on a
    window update). The victim's connection, the headers it writes from then on, and the
    bytes sent in raw frames."""
    mux, target = _yamux(attacker, victim), _yamux(victim, attacker)
    sent_headers = _spy_frames(target)
    sent = 0
    for _ in range(streams):
        if target.is_closed:
            break
        try:
            stream = await attacker.new_stream(victim.get_id(), [SINK])
            sid = stream.muxed_stream.stream_id
            await stream.write(b"x")  # the one byte the sink reads
            await until(lambda sid=sid: sid in target.streams, 10, "the victim has the stream")
            # what is left of the window after the protocol negotiation and that byte
            left = stream.muxed_stream.send_window
            while left:
                n = min(FRAME, left)
                await mux._write_frame(_data(sid, b"\xbb" * n))
                left -= n
                sent += n
        except Exception:  # the victim closed the connection under us
            break
    return target, sent_headers, sent


async def test_a_peer_cannot_fill_every_streams_window_unread(monkeypatch):
    """Within each stream's window and the stream cap, a peer could make the victim hold
    512 full windows unread: 128 MiB per connection. The victim closes a connection that
    holds more than MAX_CONNECTION_BUFFERED unread (GO_AWAY internal error), having held
    at most that, an audit's bytes and a frame more; its peer may reconnect."""
    victim, attacker = build_host(Identity.generate()), build_host(Identity.generate())
    release = trio.Event()
    before = hook_calls().get(CONNECTION_BUFFER_EXCEEDED, 0)
    peak = 0
    streams = MAX_CONNECTION_BUFFERED // DEFAULT_WINDOW_SIZE + 16
    async with victim.run([LOCAL]), attacker.run([LOCAL]):
        for protocol, handler in _handlers(release).items():
            victim.set_stream_handler(protocol, handler)
        await _connect(attacker, victim)
        with trio.fail_after(120):

            def measured(conn: Any) -> int:  # what each of the victim's sums found
                nonlocal peak
                held = connection_buffered(conn)
                peak = max(peak, held)
                return held

            monkeypatch.setattr(yamux, "connection_buffered", measured)
            target, sent_headers, _ = await _fill_windows(attacker, victim, streams)
            await until(lambda: target.is_closed, 10, "the victim closes the connection")
            monkeypatch.undo()
            await _dropped(victim, attacker, "the victim drops the peer")
            await _connect(attacker, victim)
            assert await _echoes(attacker, victim)
        release.set()
    assert hook_calls().get(CONNECTION_BUFFER_EXCEEDED, 0) == before + 1
    assert MAX_CONNECTION_BUFFERED < peak <= MAX_CONNECTION_BUFFERED + 2 * 1024 * 1024
    assert _go_away(sent_headers, GO_AWAY_INTERNAL_ERROR)


async def test_full_windows_below_the_connection_bound_are_held():
    """The same peer filling fewer windows than the bound allows keeps its connection and
    every byte it sent: the bound closes only what holds more."""
    victim, attacker = build_host(Identity.generate()), build_host(Identity.generate())
    release = trio.Event()
    before = hook_calls().get(CONNECTION_BUFFER_EXCEEDED, 0)
    streams = MAX_CONNECTION_BUFFERED // DEFAULT_WINDOW_SIZE - 8
    async with victim.run([LOCAL]), attacker.run([LOCAL]):
        for protocol, handler in _handlers(release).items():
            victim.set_stream_handler(protocol, handler)
        await _connect(attacker, victim)
        with trio.fail_after(120):
            target, _, sent = await _fill_windows(attacker, victim, streams)
            assert sent > streams * (DEFAULT_WINDOW_SIZE - 1024)
            await until(lambda: connection_buffered(target) >= sent, 20, "all of it held")
            assert not target.is_closed
            assert await _echoes(attacker, victim)
        release.set()
    assert hook_calls().get(CONNECTION_BUFFER_EXCEEDED, 0) == before


async def test_the_heaviest_connections_go_when_the_process_holds_too_much(monkeypatch):
    """Each within its own bound, many connections together could hold 32 MiB each: 2 GiB
    at 64 connections. Past MAX_TOTAL_BUFFERED in all (6 MiB here) the heaviest are closed
    until the rest hold no more, whichever connection is receiving: a peer that filled 16
    windows (4 MiB) and went quiet is closed (GO_AWAY internal error) once a second peer's
    14 (3.5 MiB) take the total past the bound; the second, lighter, keeps its connection
    and every byte, and an honest peer is served."""
    monkeypatch.setattr(yamux, "MAX_TOTAL_BUFFERED", 6 * 1024 * 1024)
    # the connections of earlier tests' hosts, stopped but not yet collected, left out
    monkeypatch.setattr(yamux, "_BUFFERED", weakref.WeakKeyDictionary())
    victim, first, second, honest = (build_host(Identity.generate()) for _ in range(4))
    release = trio.Event()
    before = hook_calls().get(TOTAL_BUFFER_EXCEEDED, 0)
    async with contextlib.AsyncExitStack() as stack:
        for host in (victim, first, second, honest):
            await stack.enter_async_context(host.run([LOCAL]))
        for protocol, handler in _handlers(release).items():
            victim.set_stream_handler(protocol, handler)
        for peer in (first, second, honest):
            await _connect(peer, victim)
        with trio.fail_after(120):
            heavy, heavy_headers, _ = await _fill_windows(first, victim, 16)
            await until(lambda: connection_buffered(heavy) > 3 * 1024 * 1024, 10, "held")
            assert not heavy.is_closed
            light, _, sent = await _fill_windows(second, victim, 14)
            await until(lambda: heavy.is_closed, 10, "the heaviest connection closed")
            await _dropped(victim, first, "the victim drops the heaviest peer")
            await until(lambda: connection_buffered(light) >= sent, 20, "the lighter held")
            assert not light.is_closed
            assert yamux.total_buffered() <= yamux.MAX_TOTAL_BUFFERED
            assert await _echoes(honest, victim)
            assert await _echoes(second, victim)
        release.set()
    assert hook_calls().get(TOTAL_BUFFER_EXCEEDED, 0) == before + 1
    assert _go_away(heavy_headers, GO_AWAY_INTERNAL_ERROR)
