"""The simulated TEE: a software "enclave" for development. NOT REAL SECURITY.

Anyone can run it and anyone can derive its development root key (the seed is public, in
this file). It exists so that a dev network, tests and the simulator can exercise the whole
attestation path -- binding, policy, caching, re-attestation -- without TEE hardware. Its
claims always say ``simulated=True`` and a production policy never accepts them (the
policy refuses to even be built that way).

Evidence format (``repp2p-sim-tee/1``), canonical CBOR::

    [ "repp2p-sim-tee/1", cert, cert_sig, report, report_sig ]
    cert   = CBOR {"key": Ed25519 enclave key, "platform_id": 16 B,
                   "not_before": unix s, "not_after": unix s}
    report = CBOR {"measurement": 32..64 B, "debug": bool, "report_data": 64 B,
                   "timestamp": unix s}

``cert_sig`` is the development root's Ed25519 signature over ``"...cert\\0" || cert``,
``report_sig`` the enclave key's over ``"...report\\0" || report``.
"""

from __future__ import annotations

import dataclasses
import hashlib

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from repp2p.attestation._cbor import loads_exact
from repp2p.attestation.abc import TEEBackendAPI
from repp2p.attestation.binding import REPORT_DATA_SIZE, expected_report_data
from repp2p.attestation.claims import Claims, TcbStatus
from repp2p.errors import AttestationError, AttestationReason

KIND = "simulated"
FORMAT = "repp2p-sim-tee/1"
_CERT_DOMAIN = FORMAT.encode() + b" cert\0"
_REPORT_DOMAIN = FORMAT.encode() + b" report\0"
#: Public on purpose: this root proves nothing.
DEV_ROOT_SEED = hashlib.sha256(b"repp2p simulated TEE development root key v1").digest()
#: Default lifetime of a simulated enclave certificate.
DEFAULT_CERT_LIFETIME_S = 30 * 86400
MAX_EVIDENCE_SIZE = 4096


def _raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


#: The development root public key pinned by :class:`SimulatedBackend` (derived from the seed).
DEV_ROOT_PUBLIC_KEY = _raw_public(Ed25519PrivateKey.from_private_bytes(DEV_ROOT_SEED))


def _dumps(obj: object) -> bytes:
    return cbor2.dumps(obj, canonical=True)


@dataclasses.dataclass(frozen=True)
class SimulatedEnclave:
    """Produces simulated evidence. Development and tests only.

    Attributes:
        seed: 32 bytes from which the enclave key is derived (randomness is an argument).
        measurement: the "code measurement" the enclave reports (32 to 64 bytes).
        debug: report debug mode.
        platform_id: 16-byte fake platform identity.
        root_seed: the root key's seed; tests pass another to build a foreign root.
        cert_lifetime_s: validity of the enclave certificate from the ``now`` it is made at.
    """

    seed: bytes
    measurement: bytes
    debug: bool = False
    platform_id: bytes = b"\x00" * 16
    root_seed: bytes = DEV_ROOT_SEED
    cert_lifetime_s: int = DEFAULT_CERT_LIFETIME_S

    def __post_init__(self) -> None:
        if len(self.seed) != 32 or len(self.root_seed) != 32:
            raise ValueError("seeds are 32 bytes")
        if not 32 <= len(self.measurement) <= 64:
            raise ValueError("measurement is 32 to 64 bytes")
        if len(self.platform_id) != 16:
            raise ValueError("platform_id is 16 bytes")

    def _enclave_key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(
            hashlib.sha256(b"repp2p-sim-tee enclave key\0" + self.seed).digest()
        )

    def evidence(self, report_data: bytes, now: int) -> bytes:
        """Simulated evidence carrying ``report_data`` (64 bytes), produced at ``now``."""
        if len(report_data) != REPORT_DATA_SIZE:
            raise ValueError("report data is 64 bytes")
        root = Ed25519PrivateKey.from_private_bytes(self.root_seed)
        enclave = self._enclave_key()
        cert = _dumps(
            {
                "key": _raw_public(enclave),
                "platform_id": self.platform_id,
                "not_before": int(now) - 60,
                "not_after": int(now) + self.cert_lifetime_s,
            }
        )
        report = _dumps(
            {
                "measurement": self.measurement,
                "debug": self.debug,
                "report_data": bytes(report_data),
                "timestamp": int(now),
            }
        )
        return _dumps(
            [
                FORMAT,
                cert,
                root.sign(_CERT_DOMAIN + cert),
                report,
                enclave.sign(_REPORT_DOMAIN + report),
            ]
        )

    def attest(
        self,
        peer_id: str,
        enc_key: bytes,
        result_key: bytes,
        epoch: int,
        nonce: bytes,
        now: int,
        gpu_evidence: bytes = b"",
    ) -> bytes:
        """Evidence bound to a node (see :func:`~repp2p.attestation.expected_report_data`)."""
        data = expected_report_data(peer_id, enc_key, result_key, epoch, nonce, gpu_evidence)
        return self.evidence(data, now)


def _malformed(detail: str) -> AttestationError:
    return AttestationError(AttestationReason.MALFORMED, f"simulated: {detail}")


def _decode_map(blob: object, fields: dict[str, type]) -> dict[str, object]:
    if not isinstance(blob, bytes):
        raise _malformed("expected a byte string")
    try:
        obj = loads_exact(blob)
    except Exception as exc:
        raise _malformed(f"bad CBOR: {exc}") from None
    if not isinstance(obj, dict) or set(obj) != set(fields):
        raise _malformed(f"expected a map with keys {sorted(fields)}")
    for name, typ in fields.items():
        value = obj[name]
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise _malformed(f"field {name} has the wrong type")
    return obj


class SimulatedBackend(TEEBackendAPI):
    """Verifies simulated evidence against a development root (default: the public one)."""

    kind = KIND

    def __init__(self, root_public_key: bytes = DEV_ROOT_PUBLIC_KEY) -> None:
        self._root = Ed25519PublicKey.from_public_bytes(root_public_key)

    def verify(self, evidence: bytes, collateral: bytes, now: int) -> Claims:
        if not evidence or len(evidence) > MAX_EVIDENCE_SIZE:
            raise _malformed(f"evidence size {len(evidence)} out of range")
        try:
            outer = loads_exact(evidence)
        except Exception as exc:
            raise _malformed(f"bad CBOR: {exc}") from None
        if not (isinstance(outer, list) and len(outer) == 5 and outer[0] == FORMAT):
            raise _malformed(f"not a {FORMAT} array")
        _tag, cert_raw, cert_sig, report_raw, report_sig = outer
        if not all(isinstance(x, bytes) for x in (cert_raw, cert_sig, report_raw, report_sig)):
            raise _malformed("array members must be byte strings")
        cert = _decode_map(
            cert_raw, {"key": bytes, "platform_id": bytes, "not_before": int, "not_after": int}
        )
        report = _decode_map(
            report_raw,
            {"measurement": bytes, "debug": bool, "report_data": bytes, "timestamp": int},
        )
        if len(cert["key"]) != 32 or len(report["report_data"]) != REPORT_DATA_SIZE:  # type: ignore[arg-type]
            raise _malformed("bad key or report data size")
        try:
            self._root.verify(cert_sig, _CERT_DOMAIN + cert_raw)
        except InvalidSignature:
            raise AttestationError(
                AttestationReason.UNTRUSTED_ROOT, "simulated: certificate not from the dev root"
            ) from None
        try:
            key = Ed25519PublicKey.from_public_bytes(cert["key"])  # type: ignore[arg-type]
            key.verify(report_sig, _REPORT_DOMAIN + report_raw)
        except (InvalidSignature, ValueError):
            raise AttestationError(
                AttestationReason.BAD_SIGNATURE, "simulated: report signature"
            ) from None
        not_before, not_after = int(cert["not_before"]), int(cert["not_after"])  # type: ignore[call-overload]
        if now < not_before:
            raise AttestationError(AttestationReason.CERT_NOT_YET_VALID, "simulated certificate")
        if now > not_after:
            raise AttestationError(AttestationReason.CERT_EXPIRED, "simulated certificate")
        return Claims(
            kind=KIND,
            measurement=report["measurement"],  # type: ignore[arg-type]
            measurements=(("measurement", report["measurement"]),),  # type: ignore[arg-type]
            debug=bool(report["debug"]),
            platform_id=cert["platform_id"],  # type: ignore[arg-type]
            tcb_status=TcbStatus.NOT_EVALUATED,
            report_data=report["report_data"],  # type: ignore[arg-type]
            signed_at=int(report["timestamp"]),  # type: ignore[call-overload]
            valid_from=not_before,
            valid_until=not_after,
            simulated=True,
            details=(("format", FORMAT), ("warning", "software enclave, no hardware security")),
        )
