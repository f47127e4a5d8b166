"""AMD SEV-SNP attestation reports (ABI spec ``ATTESTATION_REPORT``, versions 2 to 5).

The report is 0x4A0 bytes, little-endian; the ECDSA P-384/SHA-384 signature at 0x2A0 (R and
S, 72 bytes each, little-endian) covers bytes 0..0x29F. It is made with the chip's VCEK,
which AMD's KDS issues per chip and TCB: VCEK -> ASK -> ARK (RSA-PSS SHA-384). ARKs for
Milan, Genoa and Turin are pinned; their ASKs ship too, so collateral may hold just the VCEK
(PEM or DER; ASK/ARK may be included, the ARK must then be byte-identical to ours).

Checks, in order: shape; chain to a pinned ARK at ``now`` (VCEK serial 0 is handled by
:mod:`repp2p.attestation.certs`); report signature; chip id and reported TCB equal to the
VCEK's ``hwID`` and TCB extensions (a VCEK certifies one chip at one TCB). The policy then
applies debug (guest policy bit 19), measurement pins and minimum TCB components.
"""

from __future__ import annotations

import binascii
import math
import struct

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from repp2p.attestation import _der, roots
from repp2p.attestation.abc import TEEBackendAPI
from repp2p.attestation.certs import Certificate, load_certificates, verify_chain, verify_signature
from repp2p.attestation.claims import Claims, TcbStatus
from repp2p.errors import AttestationError, AttestationReason

KIND = "sev-snp"
REPORT_SIZE = 0x4A0
SIGNED_SIZE = 0x2A0
SUPPORTED_VERSIONS = range(2, 6)
_POLICY_DEBUG = 1 << 19
_OID = "1.3.6.1.4.1.3704.1."
OID_PRODUCT_NAME = _OID + "2"
OID_HWID = _OID + "4"
#: TCB component -> VCEK extension OID.
TCB_OIDS = {
    "bootloader": _OID + "3.1",
    "tee": _OID + "3.2",
    "snp": _OID + "3.3",
    "microcode": _OID + "3.8",
    "fmc": _OID + "3.9",
}


def _malformed(detail: str) -> AttestationError:
    return AttestationError(AttestationReason.MALFORMED, f"sev-snp: {detail}")


def decode_tcb(raw: bytes, product: str) -> dict[str, int]:
    """Split a TCB_VERSION (8 bytes) into components; Turin moved the fields."""
    if product == "Turin":
        return {"fmc": raw[0], "bootloader": raw[1], "tee": raw[2], "snp": raw[3],
                "microcode": raw[7]}  # fmt: skip
    return {"bootloader": raw[0], "tee": raw[1], "snp": raw[6], "microcode": raw[7]}


def decode_input(evidence: bytes) -> bytes:
    """The raw report, given raw or as hex text."""
    if len(evidence) == REPORT_SIZE:
        return evidence
    text = b"".join(evidence.split())
    if len(text) == 2 * REPORT_SIZE:
        try:
            return binascii.unhexlify(text)
        except (binascii.Error, ValueError):
            pass
    raise _malformed(f"report must be {REPORT_SIZE} bytes (or hex), got {len(evidence)}")


def _product_of(cert: Certificate) -> str:
    """Product name from the issuer CN ``SEV-Milan`` / ``SEV-Genoa`` / ``SEV-Turin``."""
    attrs = cert.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    name = str(attrs[0].value) if attrs else ""
    product = name.removeprefix("SEV-")
    if product not in roots.AMD_PRODUCTS:
        raise AttestationError(
            AttestationReason.UNTRUSTED_ROOT, f"sev-snp: unknown VCEK issuer {name!r}"
        )
    return product


def _ext_int(cert: Certificate, oid: str) -> int | None:
    raw = cert.extension_value(oid)
    if raw is None:
        return None
    try:
        return _der.decode_integer(_der.outer_element(raw, _der.TAG_INTEGER))
    except ValueError:
        raise AttestationError(AttestationReason.MALFORMED, f"VCEK extension {oid}") from None


def _split_bundle(collateral: bytes) -> tuple[Certificate, list[Certificate]]:
    if not collateral:
        raise AttestationError(
            AttestationReason.MISSING_COLLATERAL, "sev-snp: the VCEK certificate is required"
        )
    certs = load_certificates(collateral)
    leaves = [c for c in certs if c.extension_value(OID_HWID) is not None]
    if len(leaves) != 1:
        raise _malformed("collateral must hold exactly one VCEK (with a hwID extension)")
    leaf = leaves[0]
    return leaf, [c for c in certs if c is not leaf]


class SevSnpBackend(TEEBackendAPI):
    """Verifies SEV-SNP reports against the pinned AMD ARKs.

    Args:
        arks: product -> pinned ARK; default: Milan, Genoa, Turin from :mod:`roots`.
        asks: product -> ASK used when the collateral holds none.
    """

    kind = KIND

    def __init__(
        self,
        arks: dict[str, Certificate] | None = None,
        asks: dict[str, Certificate] | None = None,
    ) -> None:
        self._arks = arks if arks is not None else {p: roots.amd_ark(p) for p in roots.AMD_PRODUCTS}
        self._asks = asks if asks is not None else {p: roots.amd_ask(p) for p in roots.AMD_PRODUCTS}

    def verify_vcek(
        self, collateral: bytes, now: int
    ) -> tuple[Certificate, str, list[Certificate]]:
        """Verify the VCEK chain alone; return (VCEK, product, chain)."""
        vcek, others = _split_bundle(collateral)
        product = _product_of(vcek)
        ask = next((c for c in others if c.subject == vcek.issuer), None)
        if ask is None:
            ask = self._asks.get(product)
            if ask is None:
                raise AttestationError(AttestationReason.MISSING_COLLATERAL, "sev-snp: no ASK")
        chain = [vcek, ask]
        ark = next((c for c in others if c.subject == ask.issuer), None)
        if ark is not None:
            chain.append(ark)
        verify_chain(chain, list(self._arks.values()), now)
        return vcek, product, chain

    def verify(self, evidence: bytes, collateral: bytes, now: int) -> Claims:
        report = decode_input(evidence)
        version, guest_svn, guest_policy = struct.unpack_from("<IIQ", report, 0)
        vmpl, sig_algo = struct.unpack_from("<II", report, 0x30)
        key_info = struct.unpack_from("<I", report, 0x48)[0]
        if version not in SUPPORTED_VERSIONS:
            raise _malformed(f"report version {version} not supported")
        if sig_algo != 1:
            raise _malformed(f"signature algorithm {sig_algo} is not ECDSA P-384 SHA-384")
        if (key_info >> 2) & 0x7 != 0:
            raise AttestationError(
                AttestationReason.BROKEN_CHAIN, "sev-snp: only VCEK-signed reports supported"
            )
        sig_area = report[SIGNED_SIZE:]
        if any(sig_area[0x30:0x48]) or any(sig_area[0x78:0x90]) or any(sig_area[0x90:]):
            # The signature area is not signed: insist its unused bytes are zero so no
            # unsigned byte of the report can vary.
            raise _malformed("non-zero padding in the signature area")
        vcek, product, chain = self.verify_vcek(collateral, now)
        key = vcek.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
            raise AttestationError(AttestationReason.BROKEN_CHAIN, "sev-snp: VCEK is not P-384")
        r = int.from_bytes(report[0x2A0:0x2E8], "little")
        s = int.from_bytes(report[0x2E8:0x330], "little")
        if not verify_signature(
            key, encode_dss_signature(r, s), report[:SIGNED_SIZE], hashes.SHA384()
        ):
            raise AttestationError(AttestationReason.BAD_SIGNATURE, "sev-snp: report signature")
        chip_id = report[0x1A0:0x1E0]
        hwid = vcek.extension_value(OID_HWID) or b""
        if not hwid or chip_id[: len(hwid)] != hwid:
            raise AttestationError(
                AttestationReason.BROKEN_CHAIN, "sev-snp: chip id does not match the VCEK hwID"
            )
        reported = decode_tcb(report[0x180:0x188], product)
        for name, value in reported.items():
            certified = _ext_int(vcek, TCB_OIDS[name])
            if certified != value:
                raise AttestationError(
                    AttestationReason.BROKEN_CHAIN,
                    f"sev-snp: reported {name} SVN {value} != VCEK's {certified}",
                )
        measurement = report[0x90:0xC0]
        return Claims(
            kind=KIND,
            measurement=measurement,
            measurements=(
                ("measurement", measurement),
                ("host_data", report[0xC0:0xE0]),
                ("id_key_digest", report[0xE0:0x110]),
                ("author_key_digest", report[0x110:0x140]),
                ("family_id", report[0x10:0x20]),
                ("image_id", report[0x20:0x30]),
            ),
            debug=bool(guest_policy & _POLICY_DEBUG),
            platform_id=chip_id,
            tcb_status=TcbStatus.NOT_EVALUATED,
            tcb=tuple(sorted(reported.items())),
            report_data=report[0x50:0x90],
            signed_at=None,
            valid_from=max(math.ceil(c.not_before) for c in chain),
            valid_until=min(math.floor(c.not_after) for c in chain),
            details=(
                ("product", product),
                ("report_version", str(version)),
                ("guest_svn", str(guest_svn)),
                ("guest_policy", f"{guest_policy:#x}"),
                ("vmpl", str(vmpl)),
                ("current_tcb", report[0x38:0x40].hex()),
                ("committed_tcb", report[0x1E0:0x1E8].hex()),
                ("launch_tcb", report[0x1F0:0x1F8].hex()),
            ),
        )
