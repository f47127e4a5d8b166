"""Yamux: window updates batched as go-yamux does, receive windows enforced, and a cap on
the streams a peer may hold open.

* py-libp2p 0.8.1 answers every read that leaves the receive window short by less than half
  with a WINDOW_UPDATE frame anyway, so every small gossip message cost a second encrypted
  frame back (measurements: docs/design-notes.md, "Yamux").
* It logs, but buffers, DATA beyond a stream's receive window: a peer writing into a stream
  that is not read grew our memory without bound. A connection whose peer does that is
  closed (GO_AWAY protocol error), as go-yamux does.
* It creates a stream (and the swarm a handler task) for every SYN: a peer's inbound
  streams beyond :data:`MAX_INBOUND_STREAMS` open at once are reset, the connection kept.
* Within both, a peer could still fill every stream's window unread: 512 x 256 KiB,
  128 MiB per connection. A connection whose peer keeps more than
  :data:`MAX_CONNECTION_BUFFERED` unread here is closed (GO_AWAY internal error).
* Within that, many connections could each hold their 32 MiB (2 GiB at 64 connections):
  when the process holds more than :data:`MAX_TOTAL_BUFFERED` unread over all its
  connections, the heaviest are closed the same way until it does not.
"""

from __future__ import annotations

import inspect
import logging
import operator
import struct
import weakref
from typing import Any

import trio
from libp2p.stream_muxer.yamux.yamux import (
    GO_AWAY_INTERNAL_ERROR,
    GO_AWAY_PROTOCOL_ERROR,
    TYPE_GO_AWAY,
    YAMUX_HEADER_FORMAT,
    Yamux,
    YamuxStream,
)

from repp2p.net.libp2p_compat.guard import Expect, incompatible
from repp2p.net.libp2p_compat.hooks import count
from repp2p.net.libp2p_compat.patch import Patch

log = logging.getLogger(__name__)

#: inbound (peer-opened) streams the peer of one connection may hold open at once (see
#: :func:`held_by_peer`); a further one is reset on arrival. Our own per-protocol caps
#: come to at most about 270 per peer (task 64; sync, proofs and audit at most 64 each;
#: feed 2; gossipsub, identify, ping and the DHT a few) and a peer has one connection to us,
#: so an honest peer stays far below it. Each stream held costs us a handler task and up to
#: a receive window of buffer (256 KiB until its reader reads).
MAX_INBOUND_STREAMS = 512
#: counted (``hook_calls()``, /metrics) when a peer's DATA went past a stream's window
WINDOW_EXCEEDED = "yamux.receive_window_exceeded"
#: counted when a stream beyond :data:`MAX_INBOUND_STREAMS` was reset
STREAM_REFUSED = "yamux.inbound_stream_refused"
#: bytes received and not yet read, over all the streams of one connection, that its peer
#: may make us hold: 128 full default windows. An honest peer stays far below: our
#: handlers read as data comes, and even 64 task streams (our per-peer cap) each with a
#: full window unread come to 16 MiB. Without it, the caps above allowed 128 MiB per
#: connection (512 streams x 256 KiB), more with auto-tuned windows.
MAX_CONNECTION_BUFFERED = 32 * 1024 * 1024
#: the connection's buffers are summed after each this many bytes of DATA it received, so
#: a connection never holds more than the bound plus this plus one frame, and the sum
#: (one pass over its streams) costs nothing per frame
BUFFER_AUDIT_BYTES = 1024 * 1024
#: counted (``hook_calls()``, /metrics) when a connection was closed for holding more
#: than :data:`MAX_CONNECTION_BUFFERED` unread
CONNECTION_BUFFER_EXCEEDED = "yamux.connection_buffer_exceeded"
#: bytes received and not yet read over every yamux connection of the process: past it
#: the heaviest connections are closed until the rest hold no more (8 connections' full
#: :data:`MAX_CONNECTION_BUFFERED`). Without it each connection could hold its 32 MiB:
#: 2 GiB at the default 64 connections. Honest peers, whose handlers read as data comes,
#: hold little, so it is the heavy connections that go.
MAX_TOTAL_BUFFERED = 256 * 1024 * 1024
#: counted (``hook_calls()``, /metrics) when a connection was closed as one of the
#: heaviest while the process held more than :data:`MAX_TOTAL_BUFFERED`
TOTAL_BUFFER_EXCEEDED = "yamux.total_buffer_exceeded"
#: how long the GO_AWAY to a peer that broke flow control may wait to be written (its
#: socket may be full: such a peer need not read); the connection closes either way
GO_AWAY_WRITE_S = 1.0
#: how long closing a connection shed for the process's unread total may take in all
EVICT_CLOSE_S = 10.0

# Per-connection state we keep on py-libp2p's Yamux instances (in their __dict__).
_GO_AWAY_CODE = "_repp2p_go_away_code"  # the GO_AWAY to send as it closes, if any
_ARRIVED = "_repp2p_arrived"  # DATA bytes since the last sum of its buffers
_REFUSED = "_repp2p_streams_refused"

#: per yamux connection whose buffers were summed (:func:`_check_connection_buffers`):
#: what it held at its last sum (a closed or collected connection drops out)
_BUFFERED: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


async def send_window_update_go_style(self: Any, *, bytes_read: int = 0) -> None:
    """go-yamux's rule for a read: credit the sender only once the bytes read since the
    last update reach half the receive window (then grow it to the target, auto-tuned).

    Replaces ``YamuxStream._auto_tune_and_send_window_update`` (called after each read).
    The sender may have a whole window in flight, so a reader that keeps reading never
    stalls it; flow control still holds back a sender whose reader stopped.

    Every increment sent is added to ``recv_window`` first, so our window is never smaller
    than the one the sender sees (what :func:`set_recv_window` relies on).

    Args:
        self: the yamux stream that was read.
        bytes_read: bytes the read returned (py-libp2p's argument; the window state
            already accounts for them).
    """
    async with self.window_lock:
        buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
        read_since_update = self.target_recv_window - (self.recv_window + buffered)
        if read_since_update <= 0 or read_since_update < self._grow_threshold():
            return
        increment = self._grow_to_delta(buffered) + self._apply_autotune_epoch(buffered)
        self._pending_recv_release = 0
    if increment > 0:
        await self.send_window_update(increment, skip_lock=True)


# --- receive windows enforced ---------------------------------------------------------


class ReceiveWindowExceeded(trio.TooSlowError):
    """A peer sent DATA beyond a stream's receive window; its connection is closed.

    A ``trio.TooSlowError`` because that is what py-libp2p's frame loop
    (``Yamux.handle_incoming``) closes a connection on, cleanly, in every path a DATA frame
    comes in by (with SYN, with ACK, plain): it already does so for a frame body that does
    not arrive in time.
    """


def set_recv_window(stream: Any, value: int) -> None:
    """The setter of ``YamuxStream.recv_window`` (:data:`ENFORCED_RECV_WINDOW`): refuses
    a negative window.

    py-libp2p lowers a stream's ``recv_window`` by each DATA frame's length as it buffers
    the frame, and nowhere else; every credit we send the peer is added to it first. So a
    negative value means the peer sent more than it was ever allowed: counted, logged, the
    connection marked (for the GO_AWAY), and :class:`ReceiveWindowExceeded` raised out of
    the frame loop, which closes the connection. At most one frame (16 MiB, py-libp2p's own
    bound) beyond the window is ever buffered, and only until the close clears the buffers.

    Args:
        stream: the yamux stream.
        value: its new receive window.

    Raises:
        ReceiveWindowExceeded: ``value`` is negative.
    """
    if value < 0:
        _window_exceeded(stream, -value)
    old = stream.__dict__.get("_repp2p_recv_window")
    stream._repp2p_recv_window = value
    if old is not None and value < old:  # a DATA frame, just added to the stream's buffer
        conn = stream.conn
        arrived = conn.__dict__.get(_ARRIVED, 0) + old - value
        if arrived >= BUFFER_AUDIT_BYTES:
            arrived = 0
            _check_connection_buffers(conn)
        conn.__dict__[_ARRIVED] = arrived


#: ``YamuxStream.recv_window`` with :func:`set_recv_window`; it is read several times per
#: frame, so its getter is C (``attrgetter``: about 50 ns a read, against 180 ns for a
#: Python one). Installed before any stream is made (``install()``, from ``build_host``).
ENFORCED_RECV_WINDOW = property(operator.attrgetter("_repp2p_recv_window"), set_recv_window)


def _window_exceeded(stream: Any, excess: int) -> None:
    """Count and log a flow-control violation, mark its connection, and raise."""
    conn = stream.conn
    count(WINDOW_EXCEEDED)
    conn.__dict__[_GO_AWAY_CODE] = GO_AWAY_PROTOCOL_ERROR
    log.info(
        "yamux: peer %s sent %d bytes beyond the receive window of stream %d; "
        "closing its connection",
        conn.peer_id,
        excess,
        stream.stream_id,
    )
    raise ReceiveWindowExceeded(f"peer exceeded the receive window by {excess} bytes")


class ConnectionBufferExceeded(trio.TooSlowError):
    """A peer kept more than :data:`MAX_CONNECTION_BUFFERED` unread here over all the
    streams of its connection (each within its window), or was among the heaviest while
    the process held more than :data:`MAX_TOTAL_BUFFERED`; the connection is closed.

    A ``trio.TooSlowError`` for the reason :class:`ReceiveWindowExceeded` is.
    """


def connection_buffered(conn: Any) -> int:
    """Bytes the connection ``conn`` received and holds unread, over all its streams."""
    return sum(map(len, conn.stream_buffers.values()))


def total_buffered() -> int:
    """Bytes received and held unread over every yamux connection of the process, as of
    each one's last sum (:func:`_check_connection_buffers`)."""
    return sum(_BUFFERED.values())


def _check_connection_buffers(conn: Any) -> None:
    """Close ``conn`` (raise out of its frame loop) if it holds more than
    :data:`MAX_CONNECTION_BUFFERED`; and while the process holds more than
    :data:`MAX_TOTAL_BUFFERED`, close the heaviest connections until it does not.

    The other connections' figures are those of their last sums; only when the total goes
    past the bound are they all summed afresh (one pass over every stream of the process,
    at most once per :data:`BUFFER_AUDIT_BYTES` received here), so that a connection whose
    reader caught up since does not count. The heaviest go first, whichever of them is
    receiving: a peer that filled its streams and went quiet is closed all the same.
    """
    held = connection_buffered(conn)
    if held > MAX_CONNECTION_BUFFERED:
        _BUFFERED.pop(conn, None)
        _close_for_buffers(conn, CONNECTION_BUFFER_EXCEEDED, held, MAX_CONNECTION_BUFFERED)
    _BUFFERED[conn] = held
    if sum(_BUFFERED.values()) <= MAX_TOTAL_BUFFERED:
        return
    for other in list(_BUFFERED):
        if other.is_closed or other.event_shutting_down.is_set():
            del _BUFFERED[other]
        elif other is not conn:
            _BUFFERED[other] = connection_buffered(other)
    total = sum(_BUFFERED.values())
    close_this = False
    for other, other_held in sorted(_BUFFERED.items(), key=operator.itemgetter(1), reverse=True):
        if total <= MAX_TOTAL_BUFFERED:
            break
        total -= other_held
        del _BUFFERED[other]
        if other is conn:
            close_this = True
        else:
            _evict(other, other_held)
    if close_this:
        _close_for_buffers(conn, TOTAL_BUFFER_EXCEEDED, held, MAX_TOTAL_BUFFERED)


def _close_for_buffers(conn: Any, counter: str, held: int, bound: int) -> None:
    """Count and log closing ``conn`` for what it holds unread, mark it for a GO_AWAY
    internal error (not a protocol error: each stream kept to its window), and raise."""
    _closing(conn, counter, held, bound)
    raise ConnectionBufferExceeded(f"peer keeps {held} bytes unread on one connection")


def _closing(conn: Any, counter: str, held: int, bound: int) -> None:
    count(counter)
    conn.__dict__[_GO_AWAY_CODE] = GO_AWAY_INTERNAL_ERROR
    log.info(
        "yamux: peer %s keeps %d bytes unread over %d streams (at most %d %s); "
        "closing its connection",
        conn.peer_id,
        held,
        len(conn.streams),
        bound,
        "on one connection" if counter == CONNECTION_BUFFER_EXCEEDED else "in all",
    )


def _evict(conn: Any, held: int) -> None:
    """Close ``conn``, another connection than the one whose frame loop we are in: its
    unread bytes are dropped now, and its clean-up (GO_AWAY internal error, at most
    :data:`GO_AWAY_WRITE_S`, then py-libp2p's own) runs in a task of its own, since its
    frame loop may be waiting on a peer that sends nothing more."""
    _closing(conn, TOTAL_BUFFER_EXCEEDED, held, MAX_TOTAL_BUFFERED)
    for buffer in conn.stream_buffers.values():
        buffer.clear()
    trio.lowlevel.spawn_system_task(_close_evicted, conn)


async def _close_evicted(conn: Any) -> None:
    try:
        with trio.move_on_after(EVICT_CLOSE_S):
            await conn._cleanup_on_error()
    except Exception as exc:  # a system task must not raise; the connection is going
        log.debug("yamux: closing the connection to %s failed: %r", conn.peer_id, exc)


_cleanup_on_error = Yamux._cleanup_on_error


def _go_away(code: int) -> bytes:
    return struct.pack(YAMUX_HEADER_FORMAT, 0, TYPE_GO_AWAY, 0, 0, code)


async def cleanup_with_go_away(self: Any) -> None:
    """py-libp2p's ``Yamux._cleanup_on_error``, preceded by a GO_AWAY when we close the
    connection because of its peer: protocol error when it broke flow control (as go-yamux
    does), internal error when it kept too much unread.

    The GO_AWAY waits at most :data:`GO_AWAY_WRITE_S` (the peer need not read); the rest
    of the clean-up runs whatever happens to it.

    Args:
        self: the yamux connection being torn down.
    """
    _BUFFERED.pop(self, None)
    try:
        code = self.__dict__.pop(_GO_AWAY_CODE, None)
        if code is not None:
            with trio.move_on_after(GO_AWAY_WRITE_S):
                try:
                    await self._write_frame(_go_away(code))
                except Exception as exc:  # the connection is going anyway
                    log.debug("yamux: GO_AWAY to %s not sent: %r", self.peer_id, exc)
    finally:
        await _cleanup_on_error(self)


def check_window_accounting() -> None:
    """Check that py-libp2p keeps the receive window as :func:`set_recv_window`
    expects: in ``YamuxStream.recv_window``, lowered by each DATA frame's length in the
    frame loop, which closes the connection on ``trio.TooSlowError``.

    Raises:
        UnsupportedLibp2pError: the source is unavailable or no longer has that shape.
    """
    current = vars(YamuxStream).get("recv_window")
    if current is not None and current is not ENFORCED_RECV_WINDOW:
        raise incompatible("YamuxStream.recv_window is now a class attribute")
    try:
        init = inspect.getsource(YamuxStream.__init__)
        loop = inspect.getsource(Yamux.handle_incoming)
    except (OSError, TypeError):
        raise incompatible("the source of the yamux frame loop is unavailable") from None
    if "self.recv_window = " not in init:
        raise incompatible("YamuxStream no longer keeps its receive window in recv_window")
    # the SYN, ACK and plain DATA paths each lower it by the frame's length
    if loop.count("recv_window -= len(") < 3:
        raise incompatible("Yamux.handle_incoming no longer lowers recv_window per frame")
    handler = loop.rfind("except trio.TooSlowError")
    if handler < 0 or "self._cleanup_on_error()" not in loop[handler : handler + 400]:
        raise incompatible("Yamux.handle_incoming no longer closes on trio.TooSlowError")


class WindowEnforcement:
    """Installs :data:`ENFORCED_RECV_WINDOW` on ``YamuxStream`` (checked, idempotent).

    Not a :class:`~repp2p.net.libp2p_compat.patch.Patch`: it replaces an instance
    attribute, not a function, and py-libp2p calls it on every frame, so it is not counted.
    """

    hook = "yamux.YamuxStream.recv_window"

    def applied(self) -> bool:
        """Whether the property is in place."""
        return vars(YamuxStream).get("recv_window") is ENFORCED_RECV_WINDOW

    def check(self) -> None:
        """See :func:`check_window_accounting`."""
        check_window_accounting()

    def apply(self) -> None:
        """Put the property on ``YamuxStream`` (before any stream is made)."""
        if not self.applied():
            YamuxStream.recv_window = ENFORCED_RECV_WINDOW  # type: ignore[assignment]


# --- inbound streams capped ----------------------------------------------------------

_accept_stream = Yamux.accept_stream


def held_by_peer(conn: Any) -> int:
    """The streams of ``conn`` its peer opened that still cost us: open on its side, or
    holding bytes it sent that nobody read (one pass over the connection's streams).

    py-libp2p keeps a reset stream's unread bytes for a minute or more, so those count. A
    stream the peer closed and we hold empty does not: it can carry nothing more and is
    ours to close (py-libp2p keeps a stream until both sides closed, and a handler that
    returns without closing leaves it for the connection's life: counting those would let
    our own leaks, not the peer, reach the cap).

    Args:
        conn: a py-libp2p ``Yamux`` connection.
    """
    buffers = conn.stream_buffers
    return sum(
        1
        for sid, s in conn.streams.items()
        if not s.is_initiator and (not (s.recv_closed or s.closed) or buffers.get(sid))
    )


async def accept_stream_capped(self: Any) -> Any:
    """py-libp2p's ``Yamux.accept_stream``, resetting at once each stream the peer opens
    beyond :data:`MAX_INBOUND_STREAMS` it holds open (:func:`held_by_peer`); the connection
    and its other streams go on.

    Counting is free while the connection holds at most that many streams in all
    (``len(streams)``); only beyond it are the peer's counted, one pass over them.

    Args:
        self: the yamux connection.

    Returns:
        The next inbound stream within the cap.

    Raises:
        MuxedConnUnavailable: the connection closed (py-libp2p's own).
    """
    while True:
        stream = await _accept_stream(self)
        if len(self.streams) <= MAX_INBOUND_STREAMS or held_by_peer(self) <= MAX_INBOUND_STREAMS:
            return stream
        await _refuse(self, stream)


async def _refuse(conn: Any, stream: Any) -> None:
    """Reset ``stream`` and drop what it carried; count it, and log the first per peer."""
    count(STREAM_REFUSED)
    refused = conn.__dict__.get(_REFUSED, 0) + 1
    conn.__dict__[_REFUSED] = refused
    if refused == 1:
        log.info(
            "yamux: peer %s holds %d inbound streams open; resetting those beyond",
            conn.peer_id,
            MAX_INBOUND_STREAMS,
        )
    try:
        await stream.reset()
    except Exception as exc:  # the connection is going: the next accept says so
        log.debug("yamux: reset of stream %d failed: %r", stream.stream_id, exc)
    # py-libp2p keeps a reset stream's unread data for a minute; this one had no reader.
    async with conn.streams_lock:
        if conn.streams.get(stream.stream_id) is stream:
            conn.stream_buffers.get(stream.stream_id, bytearray()).clear()
            conn._finalize_stream_locked(stream, fully_closed=True)


PATCHES: tuple[Patch, ...] = (
    Patch(
        "yamux.YamuxStream._auto_tune_and_send_window_update",
        Expect(YamuxStream, "_auto_tune_and_send_window_update", "self, *, bytes_read"),
        send_window_update_go_style,
        requires=(
            Expect(YamuxStream, "_grow_threshold", "self"),
            Expect(YamuxStream, "_grow_to_delta", "self, buffered"),
            Expect(YamuxStream, "_apply_autotune_epoch", "self, buffered"),
            Expect(YamuxStream, "send_window_update", "self, increment, skip_lock"),
        ),
    ),
    Patch(
        "yamux.Yamux.accept_stream",
        Expect(Yamux, "accept_stream", "self"),
        accept_stream_capped,
        requires=(
            Expect(YamuxStream, "reset", "self"),
            Expect(Yamux, "_finalize_stream_locked", "self, stream, *, fully_closed"),
        ),
    ),
)

#: checked and applied with PATCHES, but py-libp2p calls them only for a peer that breaks
#: the protocol, so they have no canary in the gossip run (tests/net/test_hostile_yamux.py
#: drives them) and are not in ``HOOKS``
GUARDS: tuple[Patch | WindowEnforcement, ...] = (
    WindowEnforcement(),
    Patch(
        "yamux.Yamux._cleanup_on_error",
        Expect(Yamux, "_cleanup_on_error", "self"),
        cleanup_with_go_away,
        requires=(Expect(Yamux, "_write_frame", "self, data"),),
    ),
)
