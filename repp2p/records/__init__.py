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
from repp2p.records.refusal import (
    REFUSAL_CODES,
    Refusal,
    check_refusal,
    input_commitment,
    refusal_message,
    sealed_input_signed,
    sign_sealed_input,
)
from repp2p.records.replacement import Outcome, compare, slot_key, winner
from repp2p.records.types import (
    DIGEST_MAX_LEAVES,
    DIGEST_MAX_PARTS,
    DIGEST_MAX_ROWS,
    DIGEST_TYPES,
    EMPTY_MERKLE_ROOT,
    FEED_TYPES,
    FEEDBACK_OUTCOMES,
    MAX_LIFETIME_S,
    OUTCOMES,
    RECORD_TYPES,
    TEE_KINDS,
    WORK_OUTCOMES,
    Attestation,
    Claim,
    EngineOffer,
    Feedback,
    FeedbackDigest,
    FeedbackRow,
    Heartbeat,
    NodeAd,
    Receipt,
    Record,
    TaskOffer,
    WorkDigest,
    WorkRow,
    part_of,
    task_id_for,
)

__all__ = [
    "DIGEST_MAX_LEAVES",
    "DIGEST_MAX_PARTS",
    "DIGEST_MAX_ROWS",
    "DIGEST_TYPES",
    "EMPTY_MERKLE_ROOT",
    "FEEDBACK_OUTCOMES",
    "FEED_TYPES",
    "MAX_ENVELOPE_SIZE",
    "MAX_LIFETIME_S",
    "OUTCOMES",
    "RECORD_TYPES",
    "REFUSAL_CODES",
    "TEE_KINDS",
    "WORK_OUTCOMES",
    "Attestation",
    "Claim",
    "EngineOffer",
    "Feedback",
    "FeedbackDigest",
    "FeedbackRow",
    "Heartbeat",
    "NodeAd",
    "Outcome",
    "Receipt",
    "Record",
    "Refusal",
    "SignedRecord",
    "TaskOffer",
    "WorkDigest",
    "WorkRow",
    "check_lifetime",
    "check_refusal",
    "compare",
    "decode",
    "encode",
    "input_commitment",
    "is_peer_id",
    "part_of",
    "peer_id_from_public_key",
    "public_key_from_peer_id",
    "receipt_message",
    "refusal_message",
    "sealed_input_signed",
    "sign",
    "sign_sealed_input",
    "slot_key",
    "task_id_for",
    "winner",
]
