"""Canonical CBOR for the digest package's own encodings (leaves, audit responses, proofs).

The same rules as signed records (docs/records.md, "Envelope"): deterministic encoding as
``cbor2.dumps(obj, canonical=True)`` writes it, no tags, no floats, no indefinite lengths,
no duplicate keys; a reader refuses bytes that are not the canonical encoding of what they
decode to, so every value has exactly one spelling and hashing it is meaningful.
"""

from __future__ import annotations

from typing import Any

import cbor2

from repp2p.errors import ProofError, ProofReason


def dumps(obj: Any) -> bytes:
    """The canonical CBOR encoding of ``obj``."""
    return cbor2.dumps(obj, canonical=True)


def loads(data: Any, *, max_size: int, what: str, max_depth: int = 12) -> Any:
    """Decode hostile bytes strictly.

    Args:
        data: the bytes (anything else is MALFORMED).
        max_size: refuse longer input before parsing it.
        what: what the bytes should be, for error details.
        max_depth: deepest nesting accepted.

    Returns:
        The decoded value.

    Raises:
        ProofError: OVERSIZE, MALFORMED (not CBOR, duplicate keys, indefinite lengths, too
            deep) or NON_CANONICAL.
    """
    if isinstance(data, bytearray | memoryview):
        data = bytes(data)
    if type(data) is not bytes:
        raise ProofError(ProofReason.MALFORMED, f"{what} must be bytes")
    if len(data) > max_size:
        raise ProofError(ProofReason.OVERSIZE, f"{what} of {len(data)} bytes (cap {max_size})")
    try:
        obj = cbor2.loads(
            data, allow_duplicate_keys=False, allow_indefinite=False, max_depth=max_depth
        )
    except Exception as exc:  # cbor2 raises many types on hostile input; all mean malformed
        raise ProofError(ProofReason.MALFORMED, f"{what} is not CBOR: {exc}") from None
    try:
        again = dumps(obj)
    except Exception as exc:  # a tagged value cbor2 cannot write back
        raise ProofError(ProofReason.NON_CANONICAL, f"{what}: {exc}") from None
    if again != data:
        raise ProofError(ProofReason.NON_CANONICAL, f"{what} is not deterministic CBOR")
    return obj


def as_map(obj: Any, keys: set[str], what: str) -> dict[str, Any]:
    """``obj`` when it is a map with exactly ``keys``.

    Raises:
        ProofError: MALFORMED otherwise.
    """
    if type(obj) is not dict or obj.keys() != keys:
        raise ProofError(ProofReason.MALFORMED, f"{what} must be a map of {sorted(keys)}")
    return obj


def as_bytes_list(obj: Any, *, max_items: int, max_item: int, what: str) -> tuple[bytes, ...]:
    """``obj`` as a tuple of byte strings.

    Raises:
        ProofError: MALFORMED (not an array of bytes) or OVERSIZE (too many or too long).
    """
    if type(obj) is not list:
        raise ProofError(ProofReason.MALFORMED, f"{what} must be an array")
    if len(obj) > max_items:
        raise ProofError(ProofReason.OVERSIZE, f"{what}: more than {max_items} items")
    for item in obj:
        if type(item) is not bytes:
            raise ProofError(ProofReason.MALFORMED, f"{what} items must be bytes")
        if len(item) > max_item:
            raise ProofError(ProofReason.OVERSIZE, f"{what}: an item of {len(item)} bytes")
    return tuple(obj)


def as_uint(obj: Any, maximum: int, what: str) -> int:
    """``obj`` as an integer in ``[0, maximum]`` (bool is not an integer).

    Raises:
        ProofError: MALFORMED otherwise.
    """
    if type(obj) is not int or not 0 <= obj <= maximum:
        raise ProofError(ProofReason.MALFORMED, f"{what} must be an integer in [0, {maximum}]")
    return obj
