"""Signed envelopes: deterministic CBOR, Ed25519 signatures, strict decoding.

Wire format (one CBOR map, deterministic encoding as produced by
``cbor2.dumps(..., canonical=True)``)::

    {"type": text, "body": bytes, "signer": bytes(32), "sig": bytes(64)}

``body`` is the deterministic CBOR map of the record's fields. ``sig`` is Ed25519 by
``signer`` over ``b"repp2p/1/" + type + b"\\0" + body``. The record ID is SHA-256 of the
whole envelope.

Decoding is strict and total: any input either yields a :class:`SignedRecord` or raises
:class:`~repp2p.errors.RecordError` with a :class:`~repp2p.errors.RecordReason`; no other
exception escapes (the mutation tests hold us to that). Checks run cheapest first so garbage
costs no signature verification.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from typing import Any

import cbor2
import nacl.exceptions
import nacl.signing

from repp2p.errors import RecordError, RecordReason
from repp2p.records.peerid import peer_id_from_public_key
from repp2p.records.schema import (
    FieldError,
    MissingFieldError,
    UnknownFieldError,
    from_wire_map,
    to_wire_map,
)
from repp2p.records.types import MAX_LIFETIME_S, RECORD_TYPES, Receipt, Record

DOMAIN = b"repp2p/1/"
RECEIPT_DOMAIN = b"repp2p/1/receipt-enclave\0"
#: No envelope of any type may exceed this many bytes (checked before parsing).
MAX_ENVELOPE_SIZE = max(cls.MAX_SIZE for cls in RECORD_TYPES.values())
_ENVELOPE_KEYS = frozenset({"type", "body", "signer", "sig"})


@dataclasses.dataclass(frozen=True, slots=True)
class SignedRecord:
    """A decoded, signature-checked record.

    Attributes:
        record: the validated record dataclass.
        signer_key: the signer's raw 32-byte Ed25519 public key.
        signature: the 64-byte envelope signature.
        data: the exact envelope bytes (what is stored and forwarded).
        record_id: SHA-256 of ``data``.
    """

    record: Record
    signer_key: bytes
    signature: bytes
    data: bytes
    record_id: bytes

    @property
    def signer(self) -> str:
        """The signer's libp2p peer ID string (equal to the signing host's peer ID)."""
        return peer_id_from_public_key(self.signer_key)

    @property
    def type(self) -> str:
        """The record's wire type tag."""
        return self.record.TYPE


def _dumps(obj: Any) -> bytes:
    return cbor2.dumps(obj, canonical=True)


def _signing_message(type_tag: str, body: bytes) -> bytes:
    return DOMAIN + type_tag.encode("ascii") + b"\0" + body


def _as_signing_key(signing_key: Any) -> nacl.signing.SigningKey:
    # Accept an Identity (anything with .signing_key) without importing it: identity.py is
    # not part of the pure core and depends on us, not the other way round.
    key = getattr(signing_key, "signing_key", signing_key)
    if not isinstance(key, nacl.signing.SigningKey):
        raise TypeError("signing_key must be a nacl SigningKey or a repp2p Identity")
    return key


def encode(record: Record, signing_key: Any) -> bytes:
    """Sign ``record`` and return its envelope bytes.

    Args:
        record: an instance of a registered record type (already validated on construction).
        signing_key: a ``nacl.signing.SigningKey`` or a :class:`repp2p.identity.Identity`.

    Returns:
        The deterministic CBOR envelope; ``decode`` of it returns an equal record.

    Raises:
        RecordError: the record is of an unregistered type or encodes past its size cap.
    """
    cls = type(record)
    if RECORD_TYPES.get(getattr(cls, "TYPE", None)) is not cls:  # type: ignore[arg-type]
        raise RecordError(RecordReason.UNKNOWN_TYPE, f"{cls.__name__} is not a registered type")
    key = _as_signing_key(signing_key)
    body = _dumps(to_wire_map(record))
    sig = key.sign(_signing_message(cls.TYPE, body)).signature
    data = _dumps({"type": cls.TYPE, "body": body, "signer": bytes(key.verify_key), "sig": sig})
    if len(data) > cls.MAX_SIZE:
        raise RecordError(RecordReason.OVERSIZE, f"{cls.TYPE} of {len(data)} bytes")
    return data


def sign(record: Record, signing_key: Any) -> SignedRecord:
    """Encode ``record`` and return it as a :class:`SignedRecord` (no re-verification)."""
    data = encode(record, signing_key)
    return decode(data)


def _loads(data: bytes) -> Any:
    try:
        return cbor2.loads(data, allow_duplicate_keys=False, allow_indefinite=False, max_depth=8)
    except Exception as exc:  # cbor2 raises a zoo of types on hostile input; all mean "malformed"
        raise RecordError(RecordReason.MALFORMED, f"not CBOR: {exc}") from None


def _canonical(obj: Any, data: bytes, what: str) -> None:
    try:
        again = _dumps(obj)
    except Exception as exc:  # e.g. a tagged value cbor2 cannot encode back
        raise RecordError(RecordReason.NON_CANONICAL, f"{what}: {exc}") from None
    if again != data:
        raise RecordError(RecordReason.NON_CANONICAL, f"{what} is not deterministic CBOR")


@functools.lru_cache(maxsize=4096)
def _verify_key(raw: bytes) -> nacl.signing.VerifyKey:
    return nacl.signing.VerifyKey(raw)


def decode(data: bytes, *, now: int | None = None) -> SignedRecord:
    """Decode and verify one envelope.

    Args:
        data: envelope bytes from the network or a file (hostile until this returns).
        now: unix seconds; when given, the record must be live and not expire too far
            ahead (:func:`check_lifetime`). The network and the store always pass it; leave
            it out only to inspect old records.

    Returns:
        The :class:`SignedRecord`.

    Raises:
        RecordError: with reason OVERSIZE, MALFORMED, NON_CANONICAL, UNKNOWN_TYPE,
            UNKNOWN_FIELD, MISSING_FIELD, BAD_FIELD, BAD_SIGNER, BAD_SIGNATURE, EXPIRED or
            EXPIRES_TOO_FAR.
    """
    if type(data) is not bytes:
        if isinstance(data, bytearray | memoryview):
            data = bytes(data)
        else:
            raise RecordError(RecordReason.MALFORMED, "envelope must be bytes")
    if len(data) > MAX_ENVELOPE_SIZE:
        raise RecordError(RecordReason.OVERSIZE, f"envelope of {len(data)} bytes")
    env = _loads(data)
    if type(env) is not dict or env.keys() != _ENVELOPE_KEYS:
        raise RecordError(RecordReason.MALFORMED, "envelope must be {type, body, signer, sig}")
    type_tag, body, signer, sig = env["type"], env["body"], env["signer"], env["sig"]
    if type(type_tag) is not str or type(body) is not bytes:
        raise RecordError(RecordReason.MALFORMED, "envelope type/body of the wrong kind")
    if type(signer) is not bytes or len(signer) != 32:
        raise RecordError(RecordReason.BAD_SIGNER, "signer must be a 32-byte Ed25519 key")
    if type(sig) is not bytes or len(sig) != 64:
        raise RecordError(RecordReason.BAD_SIGNATURE, "signature must be 64 bytes")
    _canonical(env, data, "envelope")
    cls = RECORD_TYPES.get(type_tag)
    if cls is None:
        raise RecordError(RecordReason.UNKNOWN_TYPE, f"unknown record type {type_tag[:40]!r}")
    if len(data) > cls.MAX_SIZE:
        raise RecordError(RecordReason.OVERSIZE, f"{type_tag} of {len(data)} bytes")
    fields = _loads(body)
    _canonical(fields, body, "body")
    try:
        record = from_wire_map(cls, fields)
    except UnknownFieldError as exc:
        raise RecordError(RecordReason.UNKNOWN_FIELD, str(exc)) from None
    except MissingFieldError as exc:
        raise RecordError(RecordReason.MISSING_FIELD, str(exc)) from None
    except FieldError as exc:
        raise RecordError(RecordReason.BAD_FIELD, str(exc)) from None
    try:
        _verify_key(signer).verify(_signing_message(type_tag, body), sig)
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        raise RecordError(RecordReason.BAD_SIGNATURE, f"{type_tag} signature invalid") from None
    if now is not None:
        check_lifetime(record, now)
    return SignedRecord(record, signer, sig, data, hashlib.sha256(data).digest())


def check_lifetime(record: Record, now: int) -> None:
    """Check that ``record`` is live at ``now`` and does not claim to live too long.

    A record is accepted while ``now < expires <= now + MAX_LIFETIME_S[type]``. The upper
    bound keeps a peer from filling every store with records that expire decades from now
    (stores drop records only once they expire); since the remaining lifetime only shrinks,
    a record accepted once stays within its cap.

    Args:
        record: a validated record of a registered type.
        now: unix seconds, the checker's clock.

    Raises:
        RecordError: EXPIRED when ``expires <= now``; EXPIRES_TOO_FAR when ``expires`` is
            more than the type's cap after ``now``.
    """
    if record.expires <= now:
        raise RecordError(RecordReason.EXPIRED, f"{record.TYPE} expired at {record.expires}")
    cap = MAX_LIFETIME_S[record.TYPE]
    excess = record.expires - (now + cap)
    if excess > 0:
        raise RecordError(
            RecordReason.EXPIRES_TOO_FAR,
            f"{record.TYPE} expires {excess} s past its cap of {cap} s of lifetime "
            f"(expires {record.expires}, now {now})",
        )


def receipt_message(receipt: Receipt) -> bytes:
    """The bytes the enclave signs for a receipt: every field but ``enclave_sig``."""
    fields = to_wire_map(receipt)
    del fields["enclave_sig"]
    return RECEIPT_DOMAIN + _dumps(fields)
