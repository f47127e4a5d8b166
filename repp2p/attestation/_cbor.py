"""Strict CBOR decoding for evidence: one item, nothing after it, bounded nesting."""

from __future__ import annotations

import io

import cbor2


def loads_exact(data: bytes) -> object:
    """Decode exactly one CBOR item spanning all of ``data``.

    Raises:
        ValueError: invalid CBOR, or bytes left over after the item (``cbor2.loads`` would
            silently ignore them, leaving unsigned bytes anyone could change).
    """
    stream = io.BytesIO(data)
    try:
        obj = cbor2.CBORDecoder(stream).decode()
    except RecursionError:
        raise ValueError("CBOR nested too deeply") from None
    except Exception as exc:
        raise ValueError(f"invalid CBOR: {exc}") from None
    if stream.tell() != len(data):
        raise ValueError(f"{len(data) - stream.tell()} trailing bytes after the CBOR item")
    return obj
