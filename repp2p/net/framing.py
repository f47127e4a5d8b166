"""Length-prefixed frames for our stream protocols.

A frame is an unsigned LEB128 varint length followed by that many bytes of deterministic
CBOR (the framing libp2p protocols use). Lengths above the protocol's cap are a
:class:`~repp2p.errors.ProtocolError` before any byte of the payload is read, so a peer
cannot make us buffer an arbitrary amount.
"""

from __future__ import annotations

import contextlib
from typing import Any

import cbor2
import trio

from repp2p.errors import ProtocolError

_MAX_VARINT_BYTES = 5  # enough for any cap below 2**35
#: :meth:`FrameReader.read_cbor`: CBOR items a frame may hold per byte of it (a 32-byte
#: hash is 34 bytes, the smallest item an honest frame holds in any number)...
BYTES_PER_ITEM = 16
#: ... and at least this many (small requests: a few keys, up to 64 leaf indices)
MIN_ITEMS = 1024
#: ... and containers nested at most this deep (cbor2 checks its own 8 after)
MAX_NESTING = 6


def encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


class FrameReader:
    """Reads frames from a libp2p stream (anything with ``async read(n)``)."""

    def __init__(self, stream: Any, max_frame: int) -> None:
        self._stream = stream
        self._max = max_frame
        self._buffer = bytearray()

    async def _fill(self, n: int) -> bool:
        while len(self._buffer) < n:
            try:
                chunk = await self._stream.read(max(n - len(self._buffer), 4096))
            except Exception as exc:  # StreamEOF, StreamReset, ... all end the conversation
                if not self._buffer:
                    return False
                raise ProtocolError(f"stream ended inside a frame: {exc!r}") from None
            if not chunk:
                if not self._buffer:
                    return False
                raise ProtocolError("stream ended inside a frame")
            self._buffer += chunk
        return True

    async def wait_data(self) -> bool:
        """Wait until at least one byte of the next frame is here; False at end of stream."""
        return await self._fill(1)

    async def read_bytes(self) -> bytes | None:
        """The next frame's payload, or None at a clean end of stream."""
        length = shift = 0
        for i in range(_MAX_VARINT_BYTES + 1):
            if not await self._fill(i + 1):
                if i == 0:
                    return None
                raise ProtocolError("stream ended inside a length prefix")
            byte = self._buffer[i]
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                del self._buffer[: i + 1]
                break
        else:
            raise ProtocolError("length prefix too long")
        if length > self._max:
            raise ProtocolError(f"frame of {length} bytes exceeds the cap of {self._max}")
        if not await self._fill(length):
            raise ProtocolError("stream ended before the frame")
        payload = bytes(self._buffer[:length])
        del self._buffer[:length]
        return payload

    async def read_cbor(self) -> Any:
        """The next frame decoded as CBOR, or None at a clean end of stream.

        The payload is scanned first (:func:`check_items`): at most one CBOR item per
        :data:`BYTES_PER_ITEM` bytes of it (at least :data:`MIN_ITEMS`), nested at most
        :data:`MAX_NESTING` deep. ``cbor2`` builds a Python object per item, ~70 bytes of
        memory per byte of a frame of one-byte items (146 MiB for 2 MiB of empty maps,
        measured), which costs its sender nothing; our frames are byte strings (records,
        proofs, 32-byte IDs and hashes) in a few maps and lists, far below that bound.
        """
        payload = await self.read_bytes()
        if payload is None:
            return None
        check_items(payload, max(MIN_ITEMS, len(payload) // BYTES_PER_ITEM), MAX_NESTING)
        try:
            return cbor2.loads(payload, allow_duplicate_keys=False, max_depth=8)
        except Exception as exc:
            raise ProtocolError(f"frame is not CBOR: {exc}") from None


async def write_cbor(stream: Any, obj: Any) -> None:
    """Write one CBOR frame to ``stream``."""
    payload = cbor2.dumps(obj, canonical=True)
    await stream.write(encode_varint(len(payload)) + payload)


async def close_quietly(stream: Any) -> None:
    """Close ``stream``; one the other side already reset or closed is fine."""
    try:
        await stream.close()
    except Exception:  # already reset or closed by the other side
        pass


async def reset_quietly(stream: Any) -> None:
    """Abort ``stream`` (both directions), even while the caller is being cancelled.

    Bounded to 1 s; a stream the other side already reset or closed is fine.
    """
    with trio.CancelScope(shield=True), trio.move_on_after(1), contextlib.suppress(Exception):
        await stream.reset()


def remote_peer(stream: Any) -> str | None:
    """The base58 peer ID at the other end of a py-libp2p stream (None if unknown)."""
    try:
        return stream.muxed_conn.peer_id.to_base58()
    except Exception:
        return None


def check_items(data: bytes, max_items: int, max_nesting: int) -> None:
    """ProtocolError unless ``data`` is exactly one CBOR item of at most ``max_items``
    items, no container nested deeper than ``max_nesting``, with definite lengths only
    and no tags (our writers, :func:`write_cbor`, produce none of these). Work: at most
    ``max_items`` steps, whatever the frame's size (strings are skipped by their length,
    not read), and nothing is allocated: run before ``cbor2`` builds a Python object per
    item."""
    pos, items, end = 0, 0, len(data)
    pending = [1]  # items still to read in each open container (the frame: one item)
    while pending:
        if not pending[-1]:
            pending.pop()
            continue
        pending[-1] -= 1
        items += 1
        if items > max_items:
            raise ProtocolError(f"frame holds more than {max_items} CBOR items")
        if pos >= end:
            raise ProtocolError("frame ends inside a CBOR item")
        major, info = data[pos] >> 5, data[pos] & 0x1F
        pos += 1
        if info < 24:
            arg = info
        elif info < 28:
            size = 1 << (info - 24)
            if pos + size > end:
                raise ProtocolError("frame ends inside a CBOR item")
            arg = int.from_bytes(data[pos : pos + size], "big")
            pos += size
        else:  # 28-30 reserved, 31: an indefinite length or a break
            raise ProtocolError("indefinite-length or reserved CBOR item")
        if major in (2, 3):  # byte and text strings: skipped
            if arg > end - pos:
                raise ProtocolError("CBOR string longer than its frame")
            pos += arg
        elif major in (4, 5):  # lists and maps
            if len(pending) > max_nesting:
                raise ProtocolError(f"containers nested deeper than {max_nesting}")
            if arg > max_items:
                raise ProtocolError(f"frame holds more than {max_items} CBOR items")
            pending.append(arg if major == 4 else 2 * arg)
        elif major == 6:
            raise ProtocolError("CBOR tags are not part of our protocols")
        # 0, 1: integers (at most 64 bits); 7: false, true, null, floats
    if pos != end:
        raise ProtocolError("trailing bytes after the frame's CBOR item")
