"""Signed records: every piece of state and evidence peers share (docs/records.md).

Public API::

    encode(record, signing_key) -> bytes
    decode(data, *, now=None) -> SignedRecord   # raises RecordError(reason)
    check_lifetime(record, now)                 # EXPIRED / EXPIRES_TOO_FAR (MAX_LIFETIME_S)

Pure: no I/O, no clock (``now`` is an argument).
"""

from repp2p.records.codec import (
    MAX_ENVELOPE_SIZE,
    SignedRecord,
    check_lifetime,
    decode,
    encode,
    receipt_message,
    sign,
)
from repp2p.records.peerid import is_peer_id, peer_id_from_public_key, public_key_from_peer_id
from repp2p.records.replacement import Outcome, compare, slot_key, winner
from repp2p.records.types import (
    FEED_TYPES,
    MAX_LIFETIME_S,
    OUTCOMES,
    RECORD_TYPES,
    TEE_KINDS,
    Attestation,
    Claim,
    EngineOffer,
    Feedback,
    Heartbeat,
    NodeAd,
    Receipt,
    Record,
    TaskOffer,
    task_id_for,
)

__all__ = [
    "FEED_TYPES",
    "MAX_ENVELOPE_SIZE",
    "MAX_LIFETIME_S",
    "OUTCOMES",
    "RECORD_TYPES",
    "TEE_KINDS",
    "Attestation",
    "Claim",
    "EngineOffer",
    "Feedback",
    "Heartbeat",
    "NodeAd",
    "Outcome",
    "Receipt",
    "Record",
    "SignedRecord",
    "TaskOffer",
    "check_lifetime",
    "compare",
    "decode",
    "encode",
    "is_peer_id",
    "peer_id_from_public_key",
    "public_key_from_peer_id",
    "receipt_message",
    "sign",
    "slot_key",
    "task_id_for",
    "winner",
]
