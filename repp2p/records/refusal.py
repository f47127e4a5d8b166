"""Refusals: an enclave's signed statement that a task failed because of the client's input.

A node claims a task before its enclave opens the input, so a client that sends an input
that cannot work (it does not open with the enclave's key, names another task, does not
match the offer's digest or size, or the engine refuses it) would otherwise make the node
look unreliable. Two signatures make that failure the client's, checkably:

1. The client signs, in its task request, a *sealed-input commitment*
   (:func:`input_commitment`): the task id, the node it sends to, the enclave key it
   sealed to, and the SHA-256 of the sealed bytes. Only the client's key can make it.
2. When the enclave, given those exact bytes (it hashes them itself) and the signed offer,
   finds the input unusable for a client-caused reason (:data:`REFUSAL_CODES`), it signs a
   :class:`Refusal` with its attested result key, carrying the commitment and its
   signature. The node wraps it in its record signature, like a receipt.

Any peer checks a refusal with :func:`check_refusal`: the commitment is the offer
signer's, names this node and task, the refusal does not expire before the offer (the
enclave signs the offer's expiry), and the enclave signature verifies under the result
key the node's verified attestation binds. What no peer can check is the enclave's
verdict on the bytes themselves (they are sealed to the enclave, and the plaintext is the
client's secret): that rests on the TEE, like a receipt's output. docs/security.md,
"Client-caused failures", has what this does and does not prove.

The record type itself, :class:`Refusal`, is registered with the others in
:mod:`repp2p.records.types`. Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import cbor2
import nacl.exceptions
import nacl.signing

from repp2p.records.schema import to_wire_map
from repp2p.records.types import REFUSAL_CODES, Refusal

if TYPE_CHECKING:
    from repp2p.records.codec import SignedRecord

__all__ = [
    "REFUSAL_CODES",
    "Refusal",
    "check_refusal",
    "input_commitment",
    "refusal_message",
    "sealed_input_signed",
    "sign_sealed_input",
]

INPUT_DOMAIN = b"repp2p/1/sealed-input\0"
REFUSAL_DOMAIN = b"repp2p/1/refusal\0"


def input_commitment(task_id: bytes, node: str, enc_key: bytes, sealed_digest: bytes) -> bytes:
    """The bytes a client signs for the sealed input it sends ``node`` for ``task_id``.

    ``enc_key`` is the enclave key the client sealed to (a node whose enclave restarted
    has a new key: an input sealed to the old one is nobody's fault, and the node can
    tell before it claims); ``sealed_digest`` is SHA-256 of the sealed bytes.
    """
    if len(task_id) != 32 or len(enc_key) != 32 or len(sealed_digest) != 32:
        raise ValueError("task_id, enc_key and sealed_digest are 32 bytes each")
    return INPUT_DOMAIN + task_id + enc_key + sealed_digest + node.encode("ascii")


def sign_sealed_input(
    signing_key: Any, *, task_id: bytes, node: str, enc_key: bytes, sealed: bytes
) -> bytes:
    """The client's 64-byte signature over :func:`input_commitment` of ``sealed``.

    Args:
        signing_key: the client's identity (anything with ``signing_key``) or a
            ``nacl.signing.SigningKey``: the key that signed the offer.
    """
    key = getattr(signing_key, "signing_key", signing_key)
    digest = hashlib.sha256(sealed).digest()
    return key.sign(input_commitment(task_id, node, enc_key, digest)).signature


def sealed_input_signed(
    client_key: bytes,
    signature: bytes,
    *,
    task_id: bytes,
    node: str,
    enc_key: bytes,
    sealed_digest: bytes,
) -> bool:
    """Whether ``signature`` is ``client_key``'s over :func:`input_commitment`."""
    try:
        message = input_commitment(task_id, node, enc_key, sealed_digest)
        nacl.signing.VerifyKey(client_key).verify(message, signature)
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        return False
    return True


def refusal_message(refusal: Refusal) -> bytes:
    """The bytes the enclave signs for a refusal: every field but ``enclave_sig``."""
    fields = to_wire_map(refusal)
    del fields["enclave_sig"]
    return REFUSAL_DOMAIN + cbor2.dumps(fields, canonical=True)


def check_refusal(
    refusal: Refusal, *, node: str, offer: SignedRecord, result_key: bytes | None
) -> str | None:
    """Why ``node``'s ``refusal`` does not prove its failure was the client's, or None.

    Args:
        refusal: the record (its envelope's signer is ``node``).
        node: the refusing node's peer ID.
        offer: the task's offer as held (its signer is the client).
        result_key: the result key ``node``'s verified attestation binds; None when the
            node has none (then no refusal of it counts).

    Returns:
        None when every check passes, else a short reason: ``wrong_offer`` (another
        offer, task or client), ``expires_early`` (it expires before the offer),
        ``client_signature``, ``not_attested_key``, ``enclave_signature``.
    """
    o = offer.record
    if (
        refusal.offer_id != offer.record_id
        or getattr(o, "task_id", None) != refusal.task_id
        or refusal.client != offer.signer
    ):
        return "wrong_offer"
    if refusal.expires < o.expires:
        # The honest enclave signs with the offer's expiry, as nodes copy it into claims
        # and receipts (repp2p.tasks.expiry_fault): one that expires first would leave
        # every store (and the views, which drop expired records) while the offer and the
        # client's feedback on the task still count. Before any signature: it is free.
        return "expires_early"
    if not sealed_input_signed(
        offer.signer_key,
        refusal.client_sig,
        task_id=refusal.task_id,
        node=node,
        enc_key=refusal.enc_key,
        sealed_digest=refusal.sealed_digest,
    ):
        return "client_signature"
    if result_key is None or result_key != refusal.result_key:
        return "not_attested_key"
    try:
        nacl.signing.VerifyKey(refusal.result_key).verify(
            refusal_message(refusal), refusal.enclave_sig
        )
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        return "enclave_signature"
    return None
