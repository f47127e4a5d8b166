"""NVIDIA Hopper (H100) confidential-computing GPU evidence: an SPDM measurement report.

The evidence is the SPDM 1.1 ``GET_MEASUREMENTS`` request (37 bytes: version, code 0xE0,
param1, param2, the requester's 32-byte nonce, slot id) followed by the ``MEASUREMENTS``
response (version, code 0x60, params, block count, 24-bit record length, measurement blocks,
responder nonce, opaque data, and a 96-byte raw r||s ECDSA P-384 signature). The signature,
by the GPU's attestation key, covers SHA-384 of request || response-without-signature. The
key is certified by a chain (leaf first: GSP FMC, GSP BROM, provisioner ICA, GH100 identity)
ending at the pinned "NVIDIA Device Identity CA".

Freshness and binding: the *requester* nonce is the claims' ``report_data``; ``verify_node``
requires it to be :func:`~repp2p.attestation.binding.expected_gpu_nonce` of the node's
binding, and the CPU evidence's report data commits to the SHA-384 of the whole GPU
evidence. A GPU report is never accepted on its own.

Input: raw bytes or hex text of the report, the PEM chain as collateral; or, on the wire
(``Attestation.gpu_evidence``), the envelope of :func:`encode_gpu_evidence` with empty
collateral. Not checked (documented gaps): OCSP revocation (online only at NVIDIA), RIM
(reference measurement) comparison -- pin the measurement digest in the policy instead.
"""

from __future__ import annotations

import binascii
import hashlib
import math

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from repp2p.attestation import roots
from repp2p.attestation._cbor import loads_exact
from repp2p.attestation.abc import TEEBackendAPI
from repp2p.attestation.certs import Certificate, load_certificates, verify_chain, verify_signature
from repp2p.attestation.claims import Claims, TcbStatus
from repp2p.errors import AttestationError, AttestationReason

KIND = "nvidia"
ENVELOPE = "repp2p-nvidia/1"
REQUEST_SIZE = 37
SIGNATURE_SIZE = 96
MAX_REPORT_SIZE = 16 * 1024
_GET_MEASUREMENTS = 0xE0
_MEASUREMENTS = 0x60
_OPAQUE_DRIVER_VERSION = 3


def _malformed(detail: str) -> AttestationError:
    return AttestationError(AttestationReason.MALFORMED, f"nvidia: {detail}")


def encode_gpu_evidence(report: bytes, chain_pem: bytes) -> bytes:
    """Wrap a raw SPDM report and its PEM chain for ``Attestation.gpu_evidence``."""
    return cbor2.dumps([ENVELOPE, bytes(report), bytes(chain_pem)], canonical=True)


def _decode_report(data: bytes) -> bytes:
    if data[:2] == b"\x11\xe0" or data[:2] == b"\x10\xe0" or data[:2] == b"\x12\xe0":
        return data
    text = b"".join(data.split())
    try:
        return binascii.unhexlify(text)
    except (binascii.Error, ValueError):
        raise _malformed("report is neither SPDM bytes nor hex") from None


def _split_input(evidence: bytes, collateral: bytes) -> tuple[bytes, bytes]:
    if not evidence:
        raise _malformed("empty evidence")
    if evidence[0] == 0x83:  # CBOR array(3): the wire envelope
        try:
            obj = loads_exact(evidence)
        except ValueError as exc:
            raise _malformed(f"envelope: {exc}") from None
        if not (
            isinstance(obj, list)
            and len(obj) == 3
            and obj[0] == ENVELOPE
            and isinstance(obj[1], bytes)
            and isinstance(obj[2], bytes)
        ):
            raise _malformed(f"not a {ENVELOPE} envelope")
        if collateral:
            raise _malformed("the envelope carries its own chain; collateral must be empty")
        return obj[1], obj[2]
    if not collateral:
        raise AttestationError(
            AttestationReason.MISSING_COLLATERAL, "nvidia: the certificate chain is required"
        )
    return _decode_report(evidence), collateral


def parse_report(report: bytes) -> dict[str, object]:
    """Split an SPDM GET_MEASUREMENTS request + MEASUREMENTS response (no cryptography)."""
    if not REQUEST_SIZE + 8 + 32 + 2 + SIGNATURE_SIZE <= len(report) <= MAX_REPORT_SIZE:
        raise _malformed(f"report size {len(report)} out of range")
    request, response = report[:REQUEST_SIZE], report[REQUEST_SIZE:]
    if request[1] != _GET_MEASUREMENTS or request[2] & 0x01 != 0x01:
        raise _malformed("request is not a signed GET_MEASUREMENTS")
    if response[1] != _MEASUREMENTS or response[0] != request[0]:
        raise _malformed("response is not MEASUREMENTS of the same SPDM version")
    count = response[4]
    record_len = int.from_bytes(response[5:8], "little")
    pos, end = 8, 8 + record_len
    if end + 32 + 2 + SIGNATURE_SIZE > len(response):
        raise _malformed("measurement record runs past the report")
    blocks: list[tuple[int, bytes]] = []
    while pos < end:
        if pos + 7 > end:
            raise _malformed("truncated measurement block")
        index, spec = response[pos], response[pos + 1]
        size = int.from_bytes(response[pos + 2 : pos + 4], "little")
        value_size = int.from_bytes(response[pos + 5 : pos + 7], "little")
        if spec != 0x01 or size != value_size + 3 or pos + 4 + size > end:
            raise _malformed(f"bad measurement block {index}")
        blocks.append((index, response[pos + 7 : pos + 7 + value_size]))
        pos += 4 + size
    if len(blocks) != count or len({i for i, _ in blocks}) != count:
        raise _malformed("measurement block count mismatch")
    opaque_len = int.from_bytes(response[end + 32 : end + 34], "little")
    opaque = response[end + 34 : end + 34 + opaque_len]
    if end + 34 + opaque_len + SIGNATURE_SIZE != len(response):
        raise _malformed("report size does not match its opaque data and signature")
    return {
        "request_nonce": request[4:36],
        "responder_nonce": response[end : end + 32],
        "blocks": blocks,
        "opaque": _parse_opaque(opaque),
        "signed": report[: len(report) - SIGNATURE_SIZE],
        "signature": report[len(report) - SIGNATURE_SIZE :],
    }


def _parse_opaque(opaque: bytes) -> dict[int, bytes]:
    fields: dict[int, bytes] = {}
    pos = 0
    while pos < len(opaque):
        if pos + 4 > len(opaque):
            raise _malformed("truncated opaque data")
        kind = int.from_bytes(opaque[pos : pos + 2], "little")
        size = int.from_bytes(opaque[pos + 2 : pos + 4], "little")
        if pos + 4 + size > len(opaque):
            raise _malformed("opaque field runs past the opaque data")
        fields[kind] = opaque[pos + 4 : pos + 4 + size]
        pos += 4 + size
    return fields


class NvidiaBackend(TEEBackendAPI):
    """Verifies H100 SPDM measurement reports against the pinned NVIDIA device root."""

    kind = KIND

    def __init__(self, root: Certificate | None = None) -> None:
        self._root = root if root is not None else roots.nvidia_device_root()

    def verify(self, evidence: bytes, collateral: bytes, now: int) -> Claims:
        if len(evidence) > 4 * MAX_REPORT_SIZE:
            raise _malformed("evidence too large")
        report, chain_pem = _split_input(evidence, collateral)
        parsed = parse_report(report)
        chain = load_certificates(chain_pem)
        verify_chain(chain, [self._root], now)
        key = chain[0].public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
            raise AttestationError(AttestationReason.BROKEN_CHAIN, "nvidia: leaf is not P-384")
        sig = parsed["signature"]
        assert isinstance(sig, bytes)
        der = encode_dss_signature(int.from_bytes(sig[:48], "big"), int.from_bytes(sig[48:], "big"))
        if not verify_signature(key, der, parsed["signed"], hashes.SHA384()):  # type: ignore[arg-type]
            raise AttestationError(AttestationReason.BAD_SIGNATURE, "nvidia: report signature")
        blocks: list[tuple[int, bytes]] = parsed["blocks"]  # type: ignore[assignment]
        digest = hashlib.sha384()
        for index, value in blocks:
            digest.update(index.to_bytes(1, "big") + len(value).to_bytes(2, "big") + value)
        opaque: dict[int, bytes] = parsed["opaque"]  # type: ignore[assignment]
        driver = opaque.get(_OPAQUE_DRIVER_VERSION, b"").rstrip(b"\x00")
        return Claims(
            kind=KIND,
            measurement=digest.digest(),
            measurements=tuple((f"m{i:02d}", v) for i, v in blocks),
            debug=False,
            platform_id=chain[0].x509.serial_number.to_bytes(20, "big", signed=False)
            if 0 <= chain[0].x509.serial_number < 2**160
            else b"",
            tcb_status=TcbStatus.NOT_EVALUATED,
            report_data=parsed["request_nonce"],  # type: ignore[arg-type]
            signed_at=None,
            valid_from=max(math.ceil(c.not_before) for c in chain),
            valid_until=min(math.floor(c.not_after) for c in chain),
            details=(
                ("driver_version", driver.decode("ascii", "replace")),
                ("responder_nonce", parsed["responder_nonce"].hex()),  # type: ignore[union-attr]
                ("blocks", str(len(blocks))),
            ),
        )
