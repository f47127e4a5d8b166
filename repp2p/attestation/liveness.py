"""Enclave liveness: a heartbeat signed by the attested enclave's result key.

Hardware evidence (an SEV-SNP report, a DCAP quote, a Nitro document) is expensive to
gossip and, for SEV-SNP, DCAP and NVIDIA, carries no time. A node therefore publishes its
``Attestation`` once per ``reattest_period_s`` and proves every epoch that *the same enclave
is still alive* with one Ed25519 signature: its enclave signs :func:`liveness_message` of
(peer ID, epoch, beacon(epoch)) with the result key the evidence's report data binds
(:mod:`repp2p.attestation.binding`). Only that enclave holds the key, so nobody else (the
node's host included) can produce the signature once the enclave is gone.

A view of epoch ``E`` counts a node as currently attested when (docs/attestation.md,
"Freshness"):

* its latest ``Attestation`` verifies under the policy and its binding epoch ``a`` has
  ``0 <= E - a <= policy.attestation_max_age_epochs(epoch_s)`` (the record's lifetime:
  ``ceil(reattest_period_s / epoch_s) + max_epoch_lag`` epochs), and
* one of its heartbeats, of an epoch ``h`` with ``0 <= E - h <= liveness_lag``, carries an
  ``enclave_sig`` that verifies under that attestation's ``result_key``
  (:func:`check_liveness`).

Pure: no clock, no I/O; the caller passes the epochs.
"""

from __future__ import annotations

import hashlib

import nacl.exceptions
import nacl.signing

from repp2p.errors import AttestationError, AttestationReason

#: domain tag of the liveness message (never a prefix of another signed message's tag)
LIVENESS_DOMAIN = b"repp2p/1/enclave-liveness\0"
#: the epoch beacon's domain tag (:func:`repp2p.matching.beacon.beacon`; repeated here so the
#: enclave process needs no matching code to build the message)
_BEACON_DOMAIN = b"repp2p/1/beacon\0"
SIGNATURE_SIZE = 64
_MAX_PEER_ID = 128


def liveness_message(peer_id: str, epoch: int) -> bytes:
    """The bytes an enclave signs to say it is alive in ``epoch`` for node ``peer_id``:
    ``LIVENESS_DOMAIN || u8 len(peer_id) || peer_id (ASCII) || u64 epoch || beacon(epoch)``.

    Raises:
        AttestationError: MALFORMED for a peer ID that is not 1..128 ASCII characters or an
            epoch outside u64.
    """
    if not isinstance(peer_id, str) or not 0 < len(peer_id) <= _MAX_PEER_ID:
        raise AttestationError(AttestationReason.MALFORMED, "peer id must be 1..128 chars")
    if not isinstance(epoch, int) or not 0 <= epoch < 2**64:
        raise AttestationError(AttestationReason.MALFORMED, "epoch must be a u64")
    try:
        peer = peer_id.encode("ascii")
    except UnicodeEncodeError:
        raise AttestationError(AttestationReason.MALFORMED, "peer id must be ASCII") from None
    e = epoch.to_bytes(8, "big")
    beacon = hashlib.sha256(_BEACON_DOMAIN + e).digest()
    return LIVENESS_DOMAIN + len(peer).to_bytes(1, "big") + peer + e + beacon


def check_liveness(peer_id: str, epoch: int, enclave_sig: bytes, result_key: bytes) -> None:
    """Check that ``enclave_sig`` is the enclave holding ``result_key`` saying it is alive in
    ``epoch`` for ``peer_id``.

    Raises:
        AttestationError: NOT_LIVE when there is no signature (a heartbeat from before
            liveness signing, or one the enclave did not sign), BAD_ENCLAVE_SIGNATURE when it
            does not verify under ``result_key`` (forged, another node's enclave, another
            epoch, or an enclave replaced since the attestation), MALFORMED for bad inputs.
    """
    if not enclave_sig:
        raise AttestationError(AttestationReason.NOT_LIVE, f"heartbeat of epoch {epoch} unsigned")
    if len(enclave_sig) != SIGNATURE_SIZE or len(result_key) != 32:
        raise AttestationError(AttestationReason.MALFORMED, "enclave_sig or result_key size")
    message = liveness_message(peer_id, epoch)
    try:
        nacl.signing.VerifyKey(bytes(result_key)).verify(message, bytes(enclave_sig))
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        raise AttestationError(
            AttestationReason.BAD_ENCLAVE_SIGNATURE,
            f"heartbeat of epoch {epoch}: enclave_sig does not verify under the attested key",
        ) from None
