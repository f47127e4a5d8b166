"""A minimal DER reader for the few vendor structures ``cryptography`` leaves opaque.

``cryptography`` parses certificates and CRLs; what it hands back raw is the *value* of
vendor extensions (Intel's SGX extension, AMD's VCEK TCB extensions). Those are small
DER trees of SEQUENCE / OID / INTEGER / OCTET STRING, read here. No cryptography happens
in this module; every malformation raises :class:`ValueError` (callers map it to
``AttestationError(MALFORMED)``).
"""

from __future__ import annotations

from collections.abc import Iterator

TAG_INTEGER = 0x02
TAG_OCTET_STRING = 0x04
TAG_OID = 0x06
TAG_ENUMERATED = 0x0A
TAG_SEQUENCE = 0x30
TAG_IA5STRING = 0x16


def read_tlv(buf: bytes, pos: int = 0) -> tuple[int, int, int]:
    """Read one TLV at ``pos``.

    Returns:
        ``(tag, start, end)``: the tag byte and the bounds of the contents in ``buf``.

    Raises:
        ValueError: truncated input, multi-byte tags, indefinite or oversized lengths.
    """
    if pos + 2 > len(buf):
        raise ValueError("truncated DER header")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise ValueError("multi-byte DER tags are not supported")
    first = buf[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4:
            raise ValueError("indefinite or oversized DER length")
        if pos + count > len(buf):
            raise ValueError("truncated DER length")
        length = int.from_bytes(buf[pos : pos + count], "big")
        pos += count
    end = pos + length
    if end > len(buf):
        raise ValueError("DER contents run past the end of the input")
    return tag, pos, end


def iter_children(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """Yield ``(tag, start, end)`` of each TLV between ``start`` and ``end``."""
    pos = start
    while pos < end:
        tag, cstart, cend = read_tlv(buf, pos)
        if cend > end:
            raise ValueError("DER child runs past its parent")
        yield tag, cstart, cend
        pos = cend


def decode_oid(content: bytes) -> str:
    """Decode the contents of an OBJECT IDENTIFIER to dotted text."""
    if not content or content[-1] & 0x80:
        raise ValueError("bad OID encoding")
    arcs: list[int] = []
    value = 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])


def decode_integer(content: bytes) -> int:
    """Decode the contents of an INTEGER (two's complement, big-endian)."""
    if not content:
        raise ValueError("empty INTEGER")
    return int.from_bytes(content, "big", signed=True)


def outer_element(buf: bytes, expected_tag: int) -> bytes:
    """Return the contents of the single TLV that makes up ``buf``, checking its tag."""
    tag, start, end = read_tlv(buf, 0)
    if tag != expected_tag or end != len(buf):
        raise ValueError(f"expected one DER element with tag {expected_tag:#x}")
    return buf[start:end]


def split_concatenated(buf: bytes) -> list[bytes]:
    """Split concatenated DER elements (e.g. certificates one after another)."""
    out: list[bytes] = []
    pos = 0
    while pos < len(buf):
        _tag, _start, end = read_tlv(buf, pos)
        out.append(buf[pos:end])
        pos = end
    return out
