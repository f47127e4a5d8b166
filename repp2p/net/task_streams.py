"""Client side of ``/repp2p/task/1``: a pool of open task streams per node.

Opening a stream costs a yamux stream set-up plus a multistream-select negotiation (one or
two round trips through two busy event loops), many times a small task itself
(measurements: docs/design-notes.md, "Task streams"). The protocol lets a stream carry
requests in turn, so a client keeps idle streams per node and reuses them.

A reused stream may have been closed by the node meanwhile (idle timeout, restart). When a
*reused* stream fails before any byte of the response arrived, the request is retried once
on a fresh stream. Usually the node closed an idle stream and never saw the request; but a
reset while the node was working reads the same, so a node may get the request twice: it
then answers ``replayed`` (it never runs a task twice), which the client treats as a
failed attempt of a node that may have claimed (released with timeout feedback). Any other
failure reaches the caller, and a stream that failed, timed out or was cancelled is never
reused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from repp2p.errors import ProtocolError
from repp2p.net.framing import FrameReader, reset_quietly, write_cbor
from repp2p.net.task import (
    CLIENT_IDLE_S,
    MAX_RESPONSE,
    MAX_RESPONSE_ITEMS,
    decode_frame,
    parse_response,
)

#: idle streams kept per node (more concurrent tasks open more streams; extras are closed)
MAX_IDLE_PER_PEER = 8


class _Idle:
    __slots__ = ("reader", "since", "stream")

    def __init__(self, stream: Any, reader: FrameReader, since: float) -> None:
        self.stream, self.reader, self.since = stream, reader, since


class _StaleStream(Exception):
    """A reused stream ended before the response began: safe to retry on a fresh one."""


class TaskStreams:
    """Idle ``/repp2p/task/1`` streams per node, reused across tasks.

    ``open_stream(peer_id_text)`` opens a new negotiated stream to a node (the host's
    ``new_stream`` with the task protocol); ``clock`` is monotonic seconds.
    """

    def __init__(
        self,
        open_stream: Callable[[str], Any],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._open_stream = open_stream
        self._clock = clock
        self._idle: dict[str, list[_Idle]] = {}
        self.opened = 0  # streams opened (for tests and metrics)

    async def request(self, peer: str, request: dict[str, Any]) -> dict[str, Any]:
        """Send ``request`` to ``peer`` and return its validated response frame.

        Bound it with a cancel scope: a cancelled request's stream is reset, not reused.

        Raises:
            ProtocolError: the node answered with a malformed frame (not CBOR, more than
                ``MAX_RESPONSE_ITEMS`` items, the wrong shape), or closed the stream.
            Exception: whatever the transport raises (unreachable node, reset stream).
        """
        entry = await self._take(peer)
        if entry is not None:
            try:
                return await self._exchange(peer, entry, request, reused=True)
            except _StaleStream:
                pass
        stream = await self._open_stream(peer)
        self.opened += 1
        entry = _Idle(stream, FrameReader(stream, MAX_RESPONSE), self._clock())
        try:
            return await self._exchange(peer, entry, request, reused=False)
        except _StaleStream:
            raise ProtocolError("the node closed the task stream without answering") from None

    async def _exchange(
        self, peer: str, entry: _Idle, request: dict[str, Any], *, reused: bool
    ) -> dict[str, Any]:
        reusable = False
        try:
            try:
                await write_cbor(entry.stream, request)
            except Exception as exc:  # py-libp2p raises its own closed/reset types
                if reused:
                    raise _StaleStream from exc
                raise
            # A read failing before the first byte of a frame reads as a clean end (None).
            payload = await entry.reader.read_bytes()
            if payload is None:
                if reused:
                    raise _StaleStream
                raise ProtocolError("the node closed the task stream without answering")
            # scanned before decoding: a node's 2 MiB frame of tiny items would cost ~150 MB
            # of memory and 0.1-0.4 s of our event loop (repp2p.net.task.decode_frame)
            frame = decode_frame(payload, max_items=MAX_RESPONSE_ITEMS)
            reply = parse_response(frame, handover="records" in request)
            reusable = True
            return reply
        finally:
            if reusable:
                await self._give_back(peer, entry)
            else:
                await reset_quietly(entry.stream)

    async def _take(self, peer: str) -> _Idle | None:
        idle = self._idle.get(peer)
        now = self._clock()
        while idle:
            entry = idle.pop()
            if now - entry.since < CLIENT_IDLE_S:
                return entry
            await reset_quietly(entry.stream)  # too old to trust: the node may be closing it
        return None

    async def _give_back(self, peer: str, entry: _Idle) -> None:
        idle = self._idle.setdefault(peer, [])
        if len(idle) >= MAX_IDLE_PER_PEER:
            await reset_quietly(entry.stream)
            return
        entry.since = self._clock()
        idle.append(entry)

    def idle_counts(self) -> dict[str, int]:
        """``peer -> idle streams kept`` (for status and tests)."""
        return {peer: len(entries) for peer, entries in self._idle.items() if entries}

    async def forget(self, peer: str) -> None:
        """Drop every idle stream to ``peer`` (it failed or misbehaved)."""
        for entry in self._idle.pop(peer, []):
            await reset_quietly(entry.stream)

    async def aclose(self) -> None:
        """Close every idle stream."""
        idle, self._idle = self._idle, {}
        for entries in idle.values():
            for entry in entries:
                await reset_quietly(entry.stream)
