"""Intel DCAP quotes: SGX (quote v3) and TDX (quote v4 and v5), with collateral.

Quote layout (little-endian): a 48-byte header (version, attestation key type 2 = ECDSA
P-256, TEE type 0 = SGX / 0x81 = TDX, QE vendor id), the body (SGX report body, 384 bytes;
TDX TD report, 584 bytes; v5 prefixes the body with a type/size descriptor and allows the
648-byte TDX 1.5 body), then ``u32`` signature-data length and the signature data: the
quote signature (r||s), the attestation public key (x||y), and -- directly in v3, inside
certification data of type 6 in v4/v5 -- the Quoting Enclave's report, its signature by
the PCK key, QE authentication data, and certification data of type 5: the PCK chain (PEM).

Checks, in order (first failure wins):

1. shape and sizes (MALFORMED); bytes after the signature data are ignored (real producers
   pad quotes) and never reach the claims;
2. PCK chain to the pinned Intel SGX Root CA at ``now``; CRLs (root CA CRL and PCK CA CRL,
   each signed by its issuer and current) -- a listed certificate is REVOKED;
3. the QE report signature (PCK key) and the attestation-key binding
   (QE report data = SHA-256(attestation key || QE auth data) || 32 zero bytes);
4. the quote signature (attestation key) over header and body;
5. collateral: TCB-info and QE-identity signatures by the TCB signing chain (to the same
   root), their issue/next-update dates (STALE_EVIDENCE when out of date), FMSPC and PCE id
   equal to the PCK certificate's, QE identity (MRSIGNER, ISVPRODID, masked MISCSELECT and
   ATTRIBUTES);
6. the TCB status, computed from the TCB levels: the first level whose SGX components and
   PCESVN the PCK certificate meets (for TDX also the TEE TCB SVN, and the TDX module
   identity for TDX 1.5 modules), converged with the QE identity's TCB status.

Collateral is the JSON object produced by PCCS clients such as dcap-qvl: ``pck_crl``,
``root_ca_crl`` (hex DER), ``pck_crl_issuer_chain``, ``tcb_info_issuer_chain``,
``qe_identity_issuer_chain`` (PEM), ``tcb_info``, ``qe_identity`` (the signed JSON text) and
``tcb_info_signature``, ``qe_identity_signature`` (hex r||s).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import math
import struct
from collections.abc import Mapping

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from repp2p.attestation import _der, roots
from repp2p.attestation.abc import TEEBackendAPI
from repp2p.attestation.certs import (
    Certificate,
    check_not_revoked,
    load_certificates,
    verify_chain,
    verify_signature,
)
from repp2p.attestation.claims import Claims, TcbStatus
from repp2p.errors import AttestationError, AttestationReason

KIND = "dcap"
TEE_SGX = 0x00000000
TEE_TDX = 0x00000081
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
HEADER_SIZE = 48
SGX_BODY_SIZE = 384
TD10_BODY_SIZE = 584
TD15_BODY_SIZE = 648
QE_REPORT_SIZE = 384
MAX_QUOTE_SIZE = 64 * 1024
MAX_COLLATERAL_SIZE = 192 * 1024
OID_SGX_EXTENSIONS = "1.2.840.113741.1.13.1"
_CERT_TYPE_PCK_CHAIN = 5
_CERT_TYPE_QE_REPORT = 6


def _malformed(detail: str) -> AttestationError:
    return AttestationError(AttestationReason.MALFORMED, f"dcap: {detail}")


def _p256_raw_signature(raw: bytes) -> bytes:
    return encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))


@dataclasses.dataclass(frozen=True)
class Quote:
    """A parsed (not yet verified) quote."""

    version: int
    tee_type: int
    signed: bytes  # header and body: what the attestation key signed
    body: bytes
    body_type: int  # 1 = SGX, 2 = TD 1.0, 3 = TD 1.5
    signature: bytes
    attestation_key: bytes
    qe_report: bytes
    qe_report_signature: bytes
    qe_auth_data: bytes
    pck_chain_pem: bytes


class _Reader:
    """Bounds-checked little-endian reader; overruns raise MALFORMED."""

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data, self.pos, self.end = data, pos, len(data) if end is None else end

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise _malformed(f"truncated at {what}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u16(self, what: str) -> int:
        return struct.unpack("<H", self.take(2, what))[0]

    def u32(self, what: str) -> int:
        return struct.unpack("<I", self.take(4, what))[0]


def parse_quote(data: bytes) -> Quote:
    """Parse an SGX v3 or TDX v4/v5 quote (no cryptography).

    Raises:
        AttestationError: MALFORMED.
    """
    if len(data) > MAX_QUOTE_SIZE:
        raise _malformed("quote too large")
    r = _Reader(data)
    version = r.u16("version")
    key_type = r.u16("attestation key type")
    tee_type = r.u32("tee type")
    r.take(4, "header")  # QE SVN and PCE SVN (v3: reserved); the signed QE report has them
    vendor = r.take(16, "QE vendor id")
    r.take(20, "user data")
    if key_type != 2:
        raise _malformed(f"attestation key type {key_type} is not ECDSA P-256")
    if vendor != INTEL_QE_VENDOR_ID:
        raise _malformed("QE vendor is not Intel")
    if version == 3:
        if tee_type != TEE_SGX:
            raise _malformed("quote v3 carries SGX only")
        body_type, body = 1, r.take(SGX_BODY_SIZE, "SGX report body")
    elif version == 4:
        if tee_type == TEE_TDX:
            body_type, body = 2, r.take(TD10_BODY_SIZE, "TD report")
        elif tee_type == TEE_SGX:
            body_type, body = 1, r.take(SGX_BODY_SIZE, "SGX report body")
        else:
            raise _malformed(f"TEE type {tee_type:#x}")
    elif version == 5:
        body_type, size = r.u16("body type"), r.u32("body size")
        expected = {1: SGX_BODY_SIZE, 2: TD10_BODY_SIZE, 3: TD15_BODY_SIZE}.get(body_type)
        if expected is None or size != expected:
            raise _malformed(f"v5 body type {body_type} size {size}")
        if (body_type == 1) != (tee_type == TEE_SGX) or tee_type not in (TEE_SGX, TEE_TDX):
            raise _malformed("v5 body type does not match the TEE type")
        body = r.take(size, "v5 body")
    else:
        raise _malformed(f"quote version {version} not supported")
    signed = data[: r.pos]
    sig_len = r.u32("signature data length")
    sig = _Reader(data, r.pos, r.pos + sig_len)
    if sig.end > len(data):
        raise _malformed("signature data runs past the quote")
    signature = sig.take(64, "quote signature")
    attestation_key = sig.take(64, "attestation key")
    if version == 3:
        inner = sig
    else:
        cert_type, cert_size = sig.u16("certification data type"), sig.u32("size")
        if cert_type != _CERT_TYPE_QE_REPORT:
            raise _malformed(f"certification data type {cert_type}, expected 6")
        inner = _Reader(data, sig.pos, sig.pos + cert_size)
        if inner.end != sig.end:
            raise _malformed("QE report certification data size mismatch")
    qe_report = inner.take(QE_REPORT_SIZE, "QE report")
    qe_report_signature = inner.take(64, "QE report signature")
    qe_auth_data = inner.take(inner.u16("QE auth data size"), "QE auth data")
    cert_type, cert_size = inner.u16("PCK certification data type"), inner.u32("size")
    if cert_type != _CERT_TYPE_PCK_CHAIN:
        raise _malformed(f"certification data type {cert_type}; only the PCK chain (5)")
    pck_chain_pem = inner.take(cert_size, "PCK chain")
    if inner.pos != inner.end:
        raise _malformed("bytes left in the signature data")
    return Quote(
        version, tee_type, signed, body, body_type, signature, attestation_key, qe_report,
        qe_report_signature, qe_auth_data, pck_chain_pem,
    )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class PckExtensions:
    """The SGX extension of a PCK certificate."""

    ppid: bytes
    cpusvn_components: tuple[int, ...]  # 16 SGX TCB component SVNs
    pcesvn: int
    pce_id: bytes
    fmspc: bytes


def parse_pck_extensions(cert: Certificate) -> PckExtensions:
    """Read FMSPC, PCE id, PPID and TCB components from a PCK certificate."""
    raw = cert.extension_value(OID_SGX_EXTENSIONS)
    if raw is None:
        raise AttestationError(AttestationReason.BROKEN_CHAIN, "PCK has no SGX extension")
    try:
        fields = _oid_map(raw, 0, len(raw), top=True)
        tcb_raw = fields[OID_SGX_EXTENSIONS + ".2"]
        tcb = _oid_map(raw, tcb_raw[1], tcb_raw[2])
        comps = tuple(
            _der.decode_integer(_value(raw, tcb[f"{OID_SGX_EXTENSIONS}.2.{i}"], _der.TAG_INTEGER))
            for i in range(1, 17)
        )
        pcesvn = _der.decode_integer(
            _value(raw, tcb[f"{OID_SGX_EXTENSIONS}.2.17"], _der.TAG_INTEGER)
        )
        return PckExtensions(
            ppid=_value(raw, fields[OID_SGX_EXTENSIONS + ".1"], _der.TAG_OCTET_STRING),
            cpusvn_components=comps,
            pcesvn=pcesvn,
            pce_id=_value(raw, fields[OID_SGX_EXTENSIONS + ".3"], _der.TAG_OCTET_STRING),
            fmspc=_value(raw, fields[OID_SGX_EXTENSIONS + ".4"], _der.TAG_OCTET_STRING),
        )
    except (ValueError, KeyError) as exc:
        raise _malformed(f"PCK SGX extension: {exc}") from None


def _oid_map(
    buf: bytes, start: int, end: int, top: bool = False
) -> dict[str, tuple[int, int, int]]:
    """SEQUENCE OF SEQUENCE {OID, value} -> {oid: (tag, start, end) of value}."""
    if top:
        tag, start, end = _der.read_tlv(buf, start)
        if tag != _der.TAG_SEQUENCE:
            raise ValueError("SGX extension is not a SEQUENCE")
    out: dict[str, tuple[int, int, int]] = {}
    for tag, cstart, cend in _der.iter_children(buf, start, end):
        if tag != _der.TAG_SEQUENCE:
            raise ValueError("expected SEQUENCE {OID, value}")
        children = list(_der.iter_children(buf, cstart, cend))
        if len(children) != 2 or children[0][0] != _der.TAG_OID:
            raise ValueError("expected SEQUENCE {OID, value}")
        out[_der.decode_oid(buf[children[0][1] : children[0][2]])] = children[1]
    return out


def _value(buf: bytes, tlv: tuple[int, int, int], tag: int) -> bytes:
    if tlv[0] != tag:
        raise ValueError(f"expected tag {tag:#x}, got {tlv[0]:#x}")
    return buf[tlv[1] : tlv[2]]


# --- collateral ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Collateral:
    pck_crl: x509.CertificateRevocationList
    root_ca_crl: x509.CertificateRevocationList
    pck_crl_issuer_chain: list[Certificate]
    tcb_info_issuer_chain: list[Certificate]
    tcb_info_text: bytes
    tcb_info_signature: bytes
    tcb_info: Mapping[str, object]
    qe_identity_issuer_chain: list[Certificate]
    qe_identity_text: bytes
    qe_identity_signature: bytes
    qe_identity: Mapping[str, object]


def _load_crl(hex_or_pem: object, what: str) -> x509.CertificateRevocationList:
    if not isinstance(hex_or_pem, str):
        raise _malformed(f"collateral {what} must be a string")
    try:
        if "-----BEGIN" in hex_or_pem:
            crl = x509.load_pem_x509_crl(hex_or_pem.encode())
        else:
            crl = x509.load_der_x509_crl(bytes.fromhex(hex_or_pem))
        _ = (crl.issuer, crl.next_update_utc, crl.last_update_utc, crl.signature_hash_algorithm)
        _ = list(crl)
    except Exception as exc:
        raise _malformed(f"collateral {what}: {exc}") from None
    return crl


def parse_collateral(data: bytes) -> Collateral:
    """Parse the collateral JSON (see the module docstring)."""
    if not data:
        raise AttestationError(AttestationReason.MISSING_COLLATERAL, "dcap: collateral required")
    if len(data) > MAX_COLLATERAL_SIZE:
        raise _malformed("collateral too large")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise _malformed(f"collateral is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise _malformed("collateral must be a JSON object")
    strings = {}
    for key in (
        "pck_crl_issuer_chain", "root_ca_crl", "pck_crl", "tcb_info_issuer_chain", "tcb_info",
        "tcb_info_signature", "qe_identity_issuer_chain", "qe_identity", "qe_identity_signature",
    ):  # fmt: skip
        value = obj.get(key)
        if not isinstance(value, str):
            raise AttestationError(
                AttestationReason.MISSING_COLLATERAL, f"dcap: collateral lacks {key}"
            )
        strings[key] = value
    try:
        tcb_sig = bytes.fromhex(strings["tcb_info_signature"])
        qe_sig = bytes.fromhex(strings["qe_identity_signature"])
        tcb_info = json.loads(strings["tcb_info"])
        qe_identity = json.loads(strings["qe_identity"])
    except (ValueError, RecursionError) as exc:
        raise _malformed(f"collateral field: {exc}") from None
    if len(tcb_sig) != 64 or len(qe_sig) != 64:
        raise _malformed("collateral signatures must be 64-byte r||s")
    if not isinstance(tcb_info, dict) or not isinstance(qe_identity, dict):
        raise _malformed("tcb_info and qe_identity must be JSON objects")
    return Collateral(
        pck_crl=_load_crl(strings["pck_crl"], "pck_crl"),
        root_ca_crl=_load_crl(strings["root_ca_crl"], "root_ca_crl"),
        pck_crl_issuer_chain=load_certificates(strings["pck_crl_issuer_chain"].encode()),
        tcb_info_issuer_chain=load_certificates(strings["tcb_info_issuer_chain"].encode()),
        tcb_info_text=strings["tcb_info"].encode(),
        tcb_info_signature=tcb_sig,
        tcb_info=tcb_info,
        qe_identity_issuer_chain=load_certificates(strings["qe_identity_issuer_chain"].encode()),
        qe_identity_text=strings["qe_identity"].encode(),
        qe_identity_signature=qe_sig,
        qe_identity=qe_identity,
    )


def _iso(value: object, what: str) -> int:
    if not isinstance(value, str):
        raise _malformed(f"{what} is not a date string")
    try:
        dt = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _malformed(f"{what} {value!r} is not ISO 8601") from None
    if dt.tzinfo is None:
        raise _malformed(f"{what} has no time zone")
    return int(dt.timestamp())


def _hex(value: object, what: str, size: int | None = None) -> bytes:
    try:
        out = bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        out = None
    if out is None or (size is not None and len(out) != size):
        raise _malformed(f"{what} must be {size or 'some'} bytes of hex")
    return out


def _int(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _malformed(f"{what} must be a non-negative integer")
    return value


def _status(value: object) -> TcbStatus:
    try:
        status = TcbStatus(value)
    except ValueError:
        raise _malformed(f"unknown TCB status {value!r}") from None
    if status is TcbStatus.NOT_EVALUATED:
        raise _malformed("unknown TCB status")
    return status


def _svns(components: object, what: str) -> list[int]:
    if not isinstance(components, list) or len(components) != 16:
        raise _malformed(f"{what} must list 16 components")
    return [_int(c.get("svn") if isinstance(c, dict) else None, what) for c in components]


def _levels(info: Mapping[str, object], what: str) -> list[dict]:
    levels = info.get("tcbLevels")
    if not isinstance(levels, list) or not all(isinstance(x, dict) for x in levels):
        raise _malformed(f"{what}.tcbLevels must be a list of objects")
    return levels


def platform_tcb_status(
    tcb_info: Mapping[str, object], pck: PckExtensions, tee_tcb_svn: bytes | None
) -> TcbStatus:
    """The platform TCB status from TCB info v2/v3 levels (Intel QVL's TcbLevelCheck).

    Levels are ordered newest first; the first whose SGX components and PCESVN the PCK
    certificate meets decides, and for TDX it must also be met by the TEE TCB SVN (when the
    TDX module version byte is non-zero, its first two bytes are the module's, judged by
    the module identity instead).
    """
    module_versioned = tee_tcb_svn is not None and tee_tcb_svn[1] > 0
    for level in _levels(tcb_info, "tcbInfo"):
        tcb = level.get("tcb")
        if not isinstance(tcb, dict):
            raise _malformed("tcbLevel.tcb must be an object")
        sgx = _svns(tcb.get("sgxtcbcomponents"), "sgxtcbcomponents")
        if not all(a >= b for a, b in zip(pck.cpusvn_components, sgx, strict=True)):
            continue
        if pck.pcesvn < _int(tcb.get("pcesvn"), "pcesvn"):
            continue
        if tee_tcb_svn is not None:
            tdx = _svns(tcb.get("tdxtcbcomponents"), "tdxtcbcomponents")
            start = 2 if module_versioned else 0
            if not all(tee_tcb_svn[i] >= tdx[i] for i in range(start, 16)):
                continue
        return _status(level.get("tcbStatus"))
    # Below every listed level: older than anything Intel still describes. Intel's QVL calls
    # this "TCB not supported"; we report it as OutOfDate so the policy decides (and the
    # detail is the same as the oldest OutOfDate level).
    return TcbStatus.OUT_OF_DATE


def tdx_module_status(tcb_info: Mapping[str, object], body: bytes) -> TcbStatus:
    """Status of the TDX module (QVL's TdxModuleCheck): identity, then its TCB level."""
    tee_tcb_svn = body[0:16]
    mrsignerseam, seam_attributes = body[64:112], body[112:120]
    version = tee_tcb_svn[1]
    if version == 0:
        module = tcb_info.get("tdxModule")
        if not isinstance(module, dict):
            raise _malformed("tcbInfo.tdxModule missing")
        _check_module_identity(module, mrsignerseam, seam_attributes)
        return TcbStatus.UP_TO_DATE
    identities = tcb_info.get("tdxModuleIdentities")
    if not isinstance(identities, list):
        raise _malformed("tcbInfo.tdxModuleIdentities missing")
    wanted = f"TDX_{version:02X}"
    for identity in identities:
        if isinstance(identity, dict) and identity.get("id") == wanted:
            _check_module_identity(identity, mrsignerseam, seam_attributes)
            for level in _levels(identity, wanted):
                tcb = level.get("tcb")
                isvsvn = _int(tcb.get("isvsvn") if isinstance(tcb, dict) else None, "isvsvn")
                if tee_tcb_svn[0] >= isvsvn:
                    return _status(level.get("tcbStatus"))
            return TcbStatus.OUT_OF_DATE
    raise AttestationError(
        AttestationReason.TCB_OUT_OF_DATE, f"dcap: TDX module {wanted} unknown to the TCB info"
    )


def _check_module_identity(module: Mapping[str, object], mrsigner: bytes, attrs: bytes) -> None:
    expected_signer = _hex(module.get("mrsigner"), "tdxModule.mrsigner", 48)
    expected_attrs = _hex(module.get("attributes"), "tdxModule.attributes", 8)
    mask = _hex(module.get("attributesMask"), "tdxModule.attributesMask", 8)
    masked = bytes(a & m for a, m in zip(attrs, mask, strict=True))
    if mrsigner != expected_signer or masked != expected_attrs:
        raise AttestationError(
            AttestationReason.BROKEN_CHAIN, "dcap: TDX module is not the one Intel's TCB info names"
        )


def qe_identity_status(identity: Mapping[str, object], qe_report: bytes) -> TcbStatus:
    """Check the QE report against the QE identity; return the QE's TCB status."""
    miscselect = qe_report[16:20]
    attributes = qe_report[48:64]
    mrsigner = qe_report[128:160]
    isvprodid, isvsvn = struct.unpack_from("<HH", qe_report, 256)

    def masked(value: bytes, mask: bytes) -> bytes:
        return bytes(a & b for a, b in zip(value, mask, strict=True))

    ok = (
        mrsigner == _hex(identity.get("mrsigner"), "qe mrsigner", 32)
        and isvprodid == _int(identity.get("isvprodid"), "isvprodid")
        and masked(miscselect, _hex(identity.get("miscselectMask"), "miscselectMask", 4))
        == _hex(identity.get("miscselect"), "miscselect", 4)
        and masked(attributes, _hex(identity.get("attributesMask"), "attributesMask", 16))
        == _hex(identity.get("attributes"), "attributes", 16)
    )
    if not ok:
        raise AttestationError(
            AttestationReason.BROKEN_CHAIN, "dcap: quoting enclave is not Intel's (QE identity)"
        )
    for level in _levels(identity, "qeIdentity"):
        tcb = level.get("tcb")
        if isvsvn >= _int(tcb.get("isvsvn") if isinstance(tcb, dict) else None, "isvsvn"):
            return _status(level.get("tcbStatus"))
    return TcbStatus.OUT_OF_DATE


class DcapBackend(TEEBackendAPI):
    """Verifies Intel SGX/TDX DCAP quotes with their collateral.

    Args:
        root: the pinned Intel SGX Root CA (tests pass a foreign one).
    """

    kind = KIND

    def __init__(self, root: Certificate | None = None) -> None:
        self._root = root if root is not None else roots.intel_sgx_root()

    def _check_crl(
        self, crl: x509.CertificateRevocationList, issuer: Certificate, now: int
    ) -> None:
        try:
            valid = crl.issuer == issuer.subject and crl.is_signature_valid(
                issuer.public_key()  # type: ignore[arg-type]
            )
        except (TypeError, ValueError):
            valid = False
        if not valid:
            raise AttestationError(AttestationReason.BROKEN_CHAIN, "dcap: CRL signature")
        next_update = crl.next_update_utc
        if now < crl.last_update_utc.timestamp() or (
            next_update is not None and now > next_update.timestamp()
        ):
            raise AttestationError(AttestationReason.STALE_EVIDENCE, "dcap: CRL out of date")

    def _check_signed_json(
        self, chain: list[Certificate], text: bytes, signature: bytes, crls: list, now: int,
        what: str,
    ) -> None:  # fmt: skip
        verify_chain(chain, [self._root], now)
        for cert in chain:
            check_not_revoked(cert, crls)
        if not verify_signature(
            chain[0].public_key(), _p256_raw_signature(signature), text, hashes.SHA256()
        ):
            raise AttestationError(AttestationReason.BAD_SIGNATURE, f"dcap: {what} signature")

    def verify(self, evidence: bytes, collateral: bytes, now: int) -> Claims:
        quote = parse_quote(evidence)
        col = parse_collateral(collateral)
        pck_chain = load_certificates(quote.pck_chain_pem)
        pck = pck_chain[0]
        # 2. PCK chain and revocation.
        verify_chain(pck_chain, [self._root], now)
        pck_ca = pck_chain[1] if len(pck_chain) > 1 else None
        crl_issuer = next(
            (c for c in col.pck_crl_issuer_chain if c.subject == col.pck_crl.issuer), None
        )
        if pck_ca is None or crl_issuer is None or crl_issuer.der != pck_ca.der:
            raise AttestationError(
                AttestationReason.MISSING_COLLATERAL, "dcap: the PCK CRL is not from the PCK CA"
            )
        self._check_crl(col.root_ca_crl, self._root, now)
        self._check_crl(col.pck_crl, pck_ca, now)
        crls = [col.root_ca_crl, col.pck_crl]
        for cert in pck_chain:
            check_not_revoked(cert, crls)
        # 3. QE report signed by the PCK key, attestation key bound into it.
        if not verify_signature(
            pck.public_key(),
            _p256_raw_signature(quote.qe_report_signature),
            quote.qe_report,
            hashes.SHA256(),
        ):
            raise AttestationError(AttestationReason.BAD_SIGNATURE, "dcap: QE report signature")
        binding = hashlib.sha256(quote.attestation_key + quote.qe_auth_data).digest()
        if quote.qe_report[320:352] != binding or any(quote.qe_report[352:384]):
            raise AttestationError(
                AttestationReason.BAD_SIGNATURE, "dcap: attestation key not bound to the QE report"
            )
        # 4. The quote itself.
        try:
            att_key = ec.EllipticCurvePublicKey.from_encoded_point(
                ec.SECP256R1(), b"\x04" + quote.attestation_key
            )
        except ValueError:
            raise AttestationError(
                AttestationReason.BAD_SIGNATURE, "dcap: attestation key"
            ) from None
        if not verify_signature(
            att_key, _p256_raw_signature(quote.signature), quote.signed, hashes.SHA256()
        ):
            raise AttestationError(AttestationReason.BAD_SIGNATURE, "dcap: quote signature")
        # 5. Collateral.
        self._check_signed_json(
            col.tcb_info_issuer_chain, col.tcb_info_text, col.tcb_info_signature, crls, now,
            "TCB info",
        )  # fmt: skip
        self._check_signed_json(
            col.qe_identity_issuer_chain, col.qe_identity_text, col.qe_identity_signature, crls,
            now, "QE identity",
        )  # fmt: skip
        is_tdx = quote.tee_type == TEE_TDX
        tcb_info, qe_identity = col.tcb_info, col.qe_identity
        windows = []
        for info, what in ((tcb_info, "tcbInfo"), (qe_identity, "qeIdentity")):
            issued = _iso(info.get("issueDate"), f"{what}.issueDate")
            next_update = _iso(info.get("nextUpdate"), f"{what}.nextUpdate")
            if not issued <= now <= next_update:
                raise AttestationError(
                    AttestationReason.STALE_EVIDENCE, f"dcap: {what} valid {issued}..{next_update}"
                )
            windows.append((issued, next_update))
        if tcb_info.get("id", "SGX") != ("TDX" if is_tdx else "SGX") or qe_identity.get("id") != (
            "TD_QE" if is_tdx else "QE"
        ):
            raise AttestationError(
                AttestationReason.MISSING_COLLATERAL, "dcap: collateral is for another TEE type"
            )
        ext = parse_pck_extensions(pck)
        if (
            _hex(tcb_info.get("fmspc"), "fmspc", 6) != ext.fmspc
            or _hex(tcb_info.get("pceId"), "pceId", 2) != ext.pce_id
        ):
            raise AttestationError(
                AttestationReason.MISSING_COLLATERAL,
                f"dcap: TCB info is for FMSPC {tcb_info.get('fmspc')}, PCK says {ext.fmspc.hex()}",
            )
        # 6. TCB status.
        qe_status = qe_identity_status(qe_identity, quote.qe_report)
        if is_tdx:
            platform = platform_tcb_status(tcb_info, ext, quote.body[0:16])
            module = tdx_module_status(tcb_info, quote.body)
            status = TcbStatus.worst(platform, qe_status, module)
        else:
            status = TcbStatus.worst(platform_tcb_status(tcb_info, ext, None), qe_status)
        certs_all = [*pck_chain, *col.tcb_info_issuer_chain, *col.qe_identity_issuer_chain]
        valid_from = max([math.ceil(c.not_before) for c in certs_all] + [w[0] for w in windows])
        valid_until = min(
            [math.floor(c.not_after) for c in certs_all]
            + [w[1] for w in windows]
            + [int(c.next_update_utc.timestamp()) for c in crls if c.next_update_utc]
        )
        return self._claims(quote, ext, status, valid_from, valid_until)

    def _claims(
        self, quote: Quote, ext: PckExtensions, status: TcbStatus, valid_from: int,
        valid_until: int,
    ) -> Claims:  # fmt: skip
        body = quote.body
        qe_isvsvn = struct.unpack_from("<H", quote.qe_report, 258)[0]
        tcb = (
            ("pcesvn", ext.pcesvn),
            ("qe_isvsvn", qe_isvsvn),
            *tuple((f"sgx_comp{i:02d}", v) for i, v in enumerate(ext.cpusvn_components, 1)),
        )
        details = [("quote_version", str(quote.version)), ("fmspc", ext.fmspc.hex())]
        if quote.tee_type == TEE_TDX:
            names = ("mrseam", "mrsignerseam", "mrtd", "mrconfigid", "mrowner", "mrownerconfig",
                     "rtmr0", "rtmr1", "rtmr2", "rtmr3")  # fmt: skip
            offsets = (16, 64, 136, 184, 232, 280, 328, 376, 424, 472)
            measurements = tuple((n, body[o : o + 48]) for n, o in zip(names, offsets, strict=True))
            details += [
                ("tee", "tdx"),
                ("tee_tcb_svn", body[0:16].hex()),
                ("td_attributes", body[120:128].hex()),
                ("xfam", body[128:136].hex()),
            ]
            return Claims(
                kind=KIND, measurement=body[136:184], measurements=measurements,
                debug=bool(body[120] & 0x01), platform_id=ext.ppid, tcb_status=status, tcb=tcb,
                report_data=body[520:584], signed_at=None, valid_from=valid_from,
                valid_until=valid_until, details=tuple(details),
            )  # fmt: skip
        isvprodid, isvsvn = struct.unpack_from("<HH", body, 256)
        details += [("tee", "sgx"), ("isvprodid", str(isvprodid)), ("isvsvn", str(isvsvn)),
                    ("attributes", body[48:64].hex()), ("cpusvn", body[0:16].hex())]  # fmt: skip
        return Claims(
            kind=KIND, measurement=body[64:96],
            measurements=(("mrenclave", body[64:96]), ("mrsigner", body[128:160])),
            debug=bool(body[48] & 0x02), platform_id=ext.ppid, tcb_status=status, tcb=tcb,
            report_data=body[320:384], signed_at=None, valid_from=valid_from,
            valid_until=valid_until, details=tuple(details),
        )  # fmt: skip
