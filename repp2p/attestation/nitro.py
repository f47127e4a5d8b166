"""AWS Nitro Enclaves attestation documents.

A document is a COSE_Sign1 (RFC 9052; tagged 18 or untagged), raw CBOR or base64 of it.
Protected header ``{1: -35}`` (ES384); the payload is a CBOR map with ``module_id``,
``digest`` ("SHA384"), ``timestamp`` (unix ms), ``pcrs`` (index -> 48 bytes),
``certificate`` (the signing leaf, DER), ``cabundle`` (root first, DER) and optional
``public_key``, ``user_data`` (ours: the 64-byte binding), ``nonce``.

Checks: ES384 signature over ``Sig_structure1`` with the leaf's key; chain leaf ->
cabundle -> the pinned AWS root, every certificate valid *at the document's timestamp*
(the leaf lives ~3 h; how long we accept the document after that is the policy's
``max_evidence_age_s``, and the claims' validity window ends with the chain's).
A debug enclave is recognised by PCR0..2 all zero.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from repp2p.attestation import roots
from repp2p.attestation._cbor import loads_exact
from repp2p.attestation.abc import TEEBackendAPI
from repp2p.attestation.certs import Certificate, load_certificate, verify_chain, verify_signature
from repp2p.attestation.claims import Claims, TcbStatus
from repp2p.errors import AttestationError, AttestationReason

KIND = "nitro"
MAX_DOCUMENT_SIZE = 32 * 1024
_ES384 = -35
_COSE_SIGN1_TAG = 18


def _malformed(detail: str) -> AttestationError:
    return AttestationError(AttestationReason.MALFORMED, f"nitro: {detail}")


def decode_input(evidence: bytes) -> bytes:
    """Raw CBOR bytes of a document given raw or as base64 text."""
    if not evidence:
        raise _malformed("empty document")
    if evidence[0] in (0x84, 0xD2):  # CBOR array(4) or tag 18
        return evidence
    try:
        return base64.b64decode(b"".join(evidence.split()), validate=True)
    except (binascii.Error, ValueError):
        raise _malformed("neither COSE_Sign1 CBOR nor base64") from None


def _parse(raw: bytes) -> tuple[bytes, bytes, bytes, dict]:
    """Return (protected, payload, signature, payload map) after shape checks."""
    try:
        obj = loads_exact(raw)
    except Exception as exc:
        raise _malformed(f"bad CBOR: {exc}") from None
    if isinstance(obj, cbor2.CBORTag):
        if obj.tag != _COSE_SIGN1_TAG:
            raise _malformed(f"unexpected CBOR tag {obj.tag}")
        obj = obj.value
    if not (isinstance(obj, list | tuple) and len(obj) == 4):
        raise _malformed("COSE_Sign1 must be a 4-element array")
    protected, unprotected, payload, signature = obj
    if not all(isinstance(x, bytes) for x in (protected, payload, signature)):
        raise _malformed("COSE_Sign1 members have the wrong types")
    if not isinstance(unprotected, Mapping):  # a FrozenDict inside a tag
        raise _malformed("unprotected header is not a map")
    try:
        header = loads_exact(protected)
        doc = loads_exact(payload)
    except Exception as exc:
        raise _malformed(f"bad CBOR in header or payload: {exc}") from None
    if not isinstance(header, dict) or header.get(1) != _ES384:
        raise _malformed("protected header must say alg ES384 (-35)")
    if not isinstance(doc, dict):
        raise _malformed("payload is not a map")
    _check_doc_shape(doc)
    return protected, payload, signature, doc


def _check_doc_shape(doc: dict) -> None:
    required = {
        "module_id": str,
        "digest": str,
        "timestamp": int,
        "pcrs": dict,
        "certificate": bytes,
        "cabundle": list,
    }
    for name, typ in required.items():
        if not isinstance(doc.get(name), typ) or isinstance(doc.get(name), bool):
            raise _malformed(f"field {name!r} missing or not {typ.__name__}")
    if doc["digest"] != "SHA384":
        raise _malformed(f"digest {doc['digest']!r} is not SHA384")
    if not 0 < doc["timestamp"] < 2**53:
        raise _malformed("timestamp out of range")
    pcrs = doc["pcrs"]
    if not 1 <= len(pcrs) <= 32 or not all(
        isinstance(k, int) and 0 <= k < 32 and isinstance(v, bytes) and len(v) in (32, 48, 64)
        for k, v in pcrs.items()
    ):
        raise _malformed("pcrs must map 0..31 to 32/48/64-byte values")
    if 0 not in pcrs:
        raise _malformed("PCR0 missing")
    bundle = doc["cabundle"]
    if not 1 <= len(bundle) <= 8 or not all(isinstance(c, bytes) for c in bundle):
        raise _malformed("cabundle must be 1..8 DER certificates")
    for name, limit in (("public_key", 1024), ("user_data", 512), ("nonce", 512)):
        value = doc.get(name)
        if value is not None and (not isinstance(value, bytes) or len(value) > limit):
            raise _malformed(f"{name} must be null or at most {limit} bytes")


def _raw_p384_signature(signature: bytes) -> bytes:
    if len(signature) != 96:
        raise AttestationError(AttestationReason.BAD_SIGNATURE, "nitro: ES384 signature size")
    return encode_dss_signature(
        int.from_bytes(signature[:48], "big"), int.from_bytes(signature[48:], "big")
    )


class NitroBackend(TEEBackendAPI):
    """Verifies AWS Nitro attestation documents against a pinned AWS root."""

    kind = KIND

    def __init__(self, root: Certificate | None = None) -> None:
        self._root = root if root is not None else roots.aws_nitro_root()

    def verify(self, evidence: bytes, collateral: bytes, now: int) -> Claims:
        if len(evidence) > MAX_DOCUMENT_SIZE * 2:
            raise _malformed("document too large")
        raw = decode_input(evidence)
        if len(raw) > MAX_DOCUMENT_SIZE:
            raise _malformed("document too large")
        protected, payload, signature, doc = _parse(raw)
        leaf = load_certificate(doc["certificate"])
        bundle = [load_certificate(c) for c in doc["cabundle"]]
        signed_at_ms = doc["timestamp"]
        # Chain first: an untrusted signer's signature means nothing.
        verify_chain([leaf, *reversed(bundle)], [self._root], signed_at_ms / 1000)
        key = leaf.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
            raise AttestationError(AttestationReason.BROKEN_CHAIN, "nitro: leaf key is not P-384")
        sig_structure = cbor2.dumps(["Signature1", protected, b"", payload])
        if not verify_signature(
            key, _raw_p384_signature(signature), sig_structure, hashes.SHA384()
        ):
            raise AttestationError(AttestationReason.BAD_SIGNATURE, "nitro: COSE signature")
        pcrs = doc["pcrs"]
        debug = all(not any(pcrs.get(i, b"")) for i in (0, 1, 2))
        chain = [leaf, *bundle]
        return Claims(
            kind=KIND,
            measurement=pcrs[0],
            measurements=tuple((f"pcr{i}", pcrs[i]) for i in sorted(pcrs)),
            debug=debug,
            platform_id=doc["module_id"].encode("utf-8", "replace"),
            tcb_status=TcbStatus.NOT_EVALUATED,
            report_data=doc.get("user_data") or b"",
            signed_at=signed_at_ms // 1000,
            valid_from=max(math.ceil(c.not_before) for c in chain),
            valid_until=min(math.floor(c.not_after) for c in chain),
            details=(
                ("module_id", doc["module_id"]),
                ("timestamp_ms", str(signed_at_ms)),
                ("nonce", (doc.get("nonce") or b"").hex()),
                ("public_key", (doc.get("public_key") or b"").hex()),
            ),
        )
