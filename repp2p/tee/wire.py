"""The pipe protocol between a node and its enclave process: length-prefixed CBOR.

A frame is ``u32 big-endian length || canonical CBOR map``; at most :data:`MAX_FRAME`
bytes. Requests carry ``op``; replies carry ``ok`` and either the result fields or
``error`` (``"enclave"`` or ``"engine"``), ``reason`` and ``detail``. Both ends read with a
deadline through ``select`` on the raw file descriptor, so a stuck peer cannot hang the
other. The payloads on this pipe are ciphertext, keys' public halves, and receipts --
never a plaintext input or output.
"""

from __future__ import annotations

import os
import select
import time

import cbor2

MAX_FRAME = 32 * 1024 * 1024


class WireClosed(Exception):
    """The other end closed the pipe (EOF)."""


class WireTimeout(Exception):
    """No complete frame before the deadline."""


class WireMalformed(Exception):
    """A frame is oversized or not a CBOR map."""


def encode_frame(obj: dict) -> bytes:
    body = cbor2.dumps(obj, canonical=True)
    if len(body) > MAX_FRAME:
        raise WireMalformed(f"frame of {len(body)} bytes")
    return len(body).to_bytes(4, "big") + body


def write_frame(fd: int, obj: dict) -> None:
    data = memoryview(encode_frame(obj))
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _read_exact(fd: int, size: int, deadline: float | None) -> bytes:
    chunks = []
    remaining = size
    while remaining:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise WireTimeout
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            raise WireClosed
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def decode_body(body: bytes) -> dict:
    """The map a frame's body carries.

    Raises:
        WireMalformed: not CBOR, or not a map.
    """
    try:
        obj = cbor2.loads(body)
    except Exception:
        raise WireMalformed("frame is not CBOR") from None
    if not isinstance(obj, dict):
        raise WireMalformed("frame is not a map")
    return obj


def frame_size(prefix: bytes) -> int:
    """The body size a 4-byte frame prefix announces.

    Raises:
        WireMalformed: above :data:`MAX_FRAME`.
    """
    size = int.from_bytes(prefix, "big")
    if size > MAX_FRAME:
        raise WireMalformed(f"frame of {size} bytes")
    return size


def read_frame(fd: int, timeout_s: float | None = None) -> dict:
    """Read one frame; ``timeout_s=None`` waits for ever.

    Raises:
        WireClosed, WireTimeout, WireMalformed.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    size = frame_size(_read_exact(fd, 4, deadline))
    return decode_body(_read_exact(fd, size, deadline))
