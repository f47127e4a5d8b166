"""libp2p peer IDs for Ed25519 keys, computed without importing libp2p.

A libp2p peer ID of an Ed25519 key is the *identity* multihash of the protobuf-encoded public
key (``PublicKey{Type: Ed25519, Data: key}``), written in base58btc. Records carry the raw
32-byte key; this module turns it into the same string ``libp2p.peer.id.ID`` prints, so a
record's signer equals the signing host's peer ID (a test checks this against py-libp2p).

Pure: the core may not import libp2p, and base58 is simple enough to own.
"""

from __future__ import annotations

import functools

_ALPHABET = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(_ALPHABET)}

# protobuf: field 1 (KeyType) varint = 1 (Ed25519); field 2 (Data) length-delimited, 32 bytes.
_PROTO_PREFIX = b"\x08\x01\x12\x20"
# multihash: code 0x00 (identity), length 36 (= 4 + 32).
_MULTIHASH_PREFIX = b"\x00\x24"
PEER_ID_LENGTH = 52  # base58 length of every Ed25519 peer ID ("12D3KooW...")
#: Bytes of the binary form of every Ed25519 peer ID: the 6-byte multihash and protobuf
#: prefix, then the 32-byte key.
PEER_ID_BYTES = 38


def b58encode(data: bytes) -> str:
    """Encode bytes as base58btc (Bitcoin alphabet), keeping leading zero bytes as ``1``."""
    n = int.from_bytes(data, "big")
    out = bytearray()
    while n:
        n, r = divmod(n, 58)
        out.append(_ALPHABET[r])
    pad = len(data) - len(data.lstrip(b"\0"))
    return (b"1" * pad + bytes(reversed(out))).decode("ascii")


def b58decode(text: str) -> bytes:
    """Decode base58btc text. Raises ValueError on any character outside the alphabet."""
    raw = text.encode("ascii")  # UnicodeEncodeError is a ValueError
    n = 0
    for c in raw:
        try:
            n = n * 58 + _INDEX[c]
        except KeyError:
            raise ValueError(f"invalid base58 character {chr(c)!r}") from None
    pad = len(raw) - len(raw.lstrip(b"1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * pad + body


@functools.lru_cache(maxsize=65536)
def peer_id_from_public_key(public_key: bytes) -> str:
    """Return the libp2p peer ID string of a raw 32-byte Ed25519 public key.

    Raises:
        ValueError: the key is not 32 bytes.
    """
    if len(public_key) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return b58encode(_MULTIHASH_PREFIX + _PROTO_PREFIX + public_key)


@functools.lru_cache(maxsize=65536)
def public_key_from_peer_id(peer_id: str) -> bytes:
    """Return the raw Ed25519 public key inside a peer ID string.

    Raises:
        ValueError: not a base58 identity-multihash Ed25519 peer ID (we accept no other kind:
            every repp2p identity is Ed25519).
    """
    if not isinstance(peer_id, str) or len(peer_id) != PEER_ID_LENGTH:
        raise ValueError("not an Ed25519 peer ID (wrong length)")
    raw = b58decode(peer_id)
    if len(raw) != 38 or not raw.startswith(_MULTIHASH_PREFIX + _PROTO_PREFIX):
        raise ValueError("not an identity-multihash Ed25519 peer ID")
    key = raw[6:]
    # Reject non-canonical spellings so one key has exactly one peer ID string.
    if peer_id_from_public_key(key) != peer_id:
        raise ValueError("non-canonical peer ID encoding")
    return key


@functools.lru_cache(maxsize=65536)
def peer_id_to_bytes(peer_id: str) -> bytes:
    """Return the 38-byte binary form of a canonical Ed25519 peer ID string (what its base58
    text spells: ``0x00 0x24 | 0x08 0x01 0x12 0x20 | key``).

    Every such peer ID has the same prefix and length, so binary forms sort exactly as
    their texts do (the base58 alphabet is in ASCII order): rows sorted by one are sorted
    by the other.

    Raises:
        ValueError: not a canonical Ed25519 peer ID.
    """
    return _MULTIHASH_PREFIX + _PROTO_PREFIX + public_key_from_peer_id(peer_id)


@functools.lru_cache(maxsize=65536)
def peer_id_from_bytes(raw: bytes) -> str:
    """Return the peer ID string of a 38-byte binary Ed25519 peer ID.

    Raises:
        ValueError: not bytes, not 38 bytes, or not the identity-multihash Ed25519 prefix
            (one key has one binary form, so there is nothing else to canonicalise).
    """
    if type(raw) is not bytes or len(raw) != PEER_ID_BYTES:
        raise ValueError(f"a binary Ed25519 peer ID is {PEER_ID_BYTES} bytes")
    if not raw.startswith(_MULTIHASH_PREFIX + _PROTO_PREFIX):
        raise ValueError("not an identity-multihash Ed25519 peer ID")
    return peer_id_from_public_key(raw[6:])


def is_peer_id(text: object) -> bool:
    """True when ``text`` is a canonical Ed25519 peer ID string."""
    try:
        public_key_from_peer_id(text)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return False
    return True
