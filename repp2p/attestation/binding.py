"""Binding: what a node's report data must commit to.

A quote proves "this code runs in a genuine TEE and chose these 64 bytes". We make the code
choose ``expected_report_data(...)``: a SHA-512 over a domain-separated, length-prefixed
encoding of the node's libp2p peer ID, its enclave keys (X25519 for sealed inputs, Ed25519
for result signatures), the freshness epoch and nonce, and (when the node has a GPU) the
SHA-384 of its GPU evidence. Reusing evidence for another peer, other keys, an older epoch
or another GPU then changes the expected value and verification fails with
REPORT_DATA_MISMATCH.

The GPU report cannot contain the CPU report (that would be circular); instead its SPDM
nonce is :func:`expected_gpu_nonce`, derived from the same binding minus the GPU hash.
"""

from __future__ import annotations

import hashlib
import hmac

from repp2p.errors import AttestationError, AttestationReason

REPORT_DATA_SIZE = 64
KEY_SIZE = 32
NONCE_SIZE = 32
_DOMAIN = b"repp2p/attestation/report-data/v1"
_GPU_DOMAIN = b"repp2p/attestation/gpu-nonce/v1"
_MAX_PEER_ID = 128


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _encode_binding(
    domain: bytes, peer_id: str, enc_key: bytes, result_key: bytes, epoch: int, nonce: bytes
) -> bytes:
    if not isinstance(peer_id, str) or not 0 < len(peer_id) <= _MAX_PEER_ID:
        raise AttestationError(AttestationReason.MALFORMED, "peer id must be 1..128 chars")
    try:
        peer = peer_id.encode("ascii")
    except UnicodeEncodeError:
        raise AttestationError(AttestationReason.MALFORMED, "peer id is not ASCII") from None
    for name, value, size in (
        ("enc_key", enc_key, KEY_SIZE),
        ("result_key", result_key, KEY_SIZE),
        ("nonce", nonce, NONCE_SIZE),
    ):
        if not isinstance(value, bytes | bytearray) or len(value) != size:
            raise AttestationError(AttestationReason.MALFORMED, f"{name} must be {size} bytes")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or not 0 <= epoch < 2**64:
        raise AttestationError(AttestationReason.MALFORMED, "epoch must be a u64")
    return b"".join(
        (
            _field(domain),
            _field(peer),
            _field(bytes(enc_key)),
            _field(bytes(result_key)),
            epoch.to_bytes(8, "big"),
            _field(bytes(nonce)),
        )
    )


def gpu_evidence_digest(gpu_evidence: bytes) -> bytes:
    """SHA-384 of the GPU evidence as carried on the wire (empty input: empty digest)."""
    return hashlib.sha384(gpu_evidence).digest() if gpu_evidence else b""


def expected_report_data(
    peer_id: str,
    enc_key: bytes,
    result_key: bytes,
    epoch: int,
    nonce: bytes,
    gpu_evidence: bytes = b"",
) -> bytes:
    """The 64 bytes a node's CPU evidence must carry as report data.

    Args:
        peer_id: the node's libp2p peer ID text (``12D3KooW...``).
        enc_key: the enclave's X25519 public key for sealed inputs (32 bytes).
        result_key: the enclave's Ed25519 public key for result signatures (32 bytes).
        epoch: the marketplace epoch the attestation is made for.
        nonce: 32 bytes of freshness (e.g. from the epoch beacon).
        gpu_evidence: the node's GPU evidence bytes, or empty when it has no GPU.

    Returns:
        SHA-512 of the canonical encoding: exactly 64 bytes.

    Raises:
        AttestationError: MALFORMED when an argument has the wrong type or size.
    """
    encoded = _encode_binding(_DOMAIN, peer_id, enc_key, result_key, epoch, nonce)
    return hashlib.sha512(encoded + _field(gpu_evidence_digest(gpu_evidence))).digest()


def expected_gpu_nonce(
    peer_id: str, enc_key: bytes, result_key: bytes, epoch: int, nonce: bytes
) -> bytes:
    """The 32-byte SPDM nonce a node's GPU measurement request must use."""
    encoded = _encode_binding(_GPU_DOMAIN, peer_id, enc_key, result_key, epoch, nonce)
    return hashlib.sha256(encoded).digest()


def check_report_data(actual: bytes, expected: bytes) -> None:
    """Raise REPORT_DATA_MISMATCH unless ``actual`` equals ``expected`` (constant time)."""
    if not hmac.compare_digest(bytes(actual), expected):
        raise AttestationError(
            AttestationReason.REPORT_DATA_MISMATCH,
            "report data does not commit to this peer, its keys and this epoch/nonce",
        )
