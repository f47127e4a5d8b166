"""A faithful fake of an Intel TDX guest's configfs-tsm, for tests only.

* :class:`TestIntelChain`: a test "SGX Root CA" -> PCK Platform CA -> PCK certificate
  (with the SGX extension: PPID, TCB components, PCESVN, PCE id, FMSPC) and the TCB
  signing certificate, all ECDSA P-256 as Intel's; the root CA CRL and PCK CA CRL; and the
  collateral JSON (TCB info for a TDX platform, TD_QE identity, each signed by the TCB
  signing key) in the layout :class:`repp2p.attestation.DcapBackend` reads. Trusted only
  by a backend built with :meth:`TestIntelChain.backend`; never by the pinned Intel root.
* :meth:`TestIntelChain.quote`: a TDX quote v4 in the Intel layout (48-byte header, 584-byte
  TD report body, signature data with the QE report certification data, type 6, holding
  the PCK chain, type 5), signed by a fresh attestation key the QE report binds.
* :class:`FakeTdxKernel`: configfs-tsm with provider ``tdx_guest``: a read of ``outblob``
  answers a quote about the current ``inblob``; the entry has no ``auxblob``,
  ``privlevel`` or ``privlevel_floor`` (the TDX provider shows none of them: its
  collateral comes from the operator's file).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import struct
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from repp2p.attestation import DcapBackend
from repp2p.attestation.certs import load_certificate
from repp2p.attestation.dcap import INTEL_QE_VENDOR_ID, OID_SGX_EXTENSIONS, TEE_TDX
from repp2p.tee.configfs_tsm import ConfigfsTsm
from repp2p.tee.platforms import CvmPlatform, Platform, default_platform
from repp2p.tee.tdx_guest import TdxGuest

from .fake_snp import FakeSnpKernel

NOT_BEFORE = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
NOT_AFTER = datetime.datetime(2035, 1, 1, tzinfo=datetime.UTC)
#: the TD's build-time measurement (MRTD): what a network's policy pins for ``dcap``
MRTD = bytes.fromhex("7d" * 48)
FMSPC = bytes.fromhex("90c06f000000")
PCE_ID = b"\x00\x00"
SGX_COMPONENTS = (2, 2, 2, 2, 3, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0)
PCESVN = 11
TEE_TCB_SVN = bytes([3, 0, 0] + [0] * 13)  # module SVN 3, TDX 1.0-style (no module version)
MRSIGNERSEAM = bytes(48)  # Intel's TDX module signer is all zeros
QE_MRSIGNER = bytes.fromhex("dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5")
QE_ISVSVN = 4
QE_ISVPRODID = 2


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + body


def _oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytes([40 * parts[0] + parts[1]])
    for part in parts[2:]:
        chunk = [part & 0x7F]
        part >>= 7
        while part:
            chunk.append(0x80 | (part & 0x7F))
            part >>= 7
        body += bytes(reversed(chunk))
    return _tlv(0x06, body)


def _int(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big"))


def _pair(oid: str, value: bytes) -> bytes:
    return _tlv(0x30, _oid(oid) + value)


def sgx_extension(ppid: bytes, components: tuple[int, ...], pcesvn: int) -> bytes:
    """The DER value of the PCK certificate's SGX extension (Intel's PCK cert profile)."""
    base = OID_SGX_EXTENSIONS
    tcb = b"".join(_pair(f"{base}.2.{i}", _int(v)) for i, v in enumerate(components, 1))
    tcb += _pair(f"{base}.2.17", _int(pcesvn))
    tcb += _pair(f"{base}.2.18", _tlv(0x04, bytes(components)))
    return _tlv(
        0x30,
        _pair(f"{base}.1", _tlv(0x04, ppid))
        + _pair(f"{base}.2", _tlv(0x30, tcb))
        + _pair(f"{base}.3", _tlv(0x04, PCE_ID))
        + _pair(f"{base}.4", _tlv(0x04, FMSPC))
        + _pair(f"{base}.5", _tlv(0x0A, b"\x00")),
    )


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Corporation (NOT INTEL)"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        ]
    )


def _cert(subject: str, issuer: str, key, signer, serial: int, ca: bool, ext: bytes = b""):  # type: ignore[no-untyped-def]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
    )
    if ext:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(OID_SGX_EXTENSIONS), ext), False
        )
    return builder.sign(signer, hashes.SHA256())


def _crl(issuer: x509.Certificate, key, revoked: tuple[int, ...] = ()) -> bytes:  # type: ignore[no-untyped-def]
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(NOT_BEFORE)
        .next_update(NOT_AFTER)
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(NOT_BEFORE)
            .build()
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _raw_sig(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _pem(*certs: x509.Certificate) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def _iso(dt: datetime.datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _components(svns) -> list[dict]:  # type: ignore[no-untyped-def]
    return [{"svn": v} for v in svns]


@dataclasses.dataclass
class TestIntelChain:
    """A test Intel DCAP PKI for one TDX platform (see the module docstring)."""

    root: x509.Certificate
    root_key: ec.EllipticCurvePrivateKey
    pck_ca: x509.Certificate
    pck_ca_key: ec.EllipticCurvePrivateKey
    pck: x509.Certificate
    pck_key: ec.EllipticCurvePrivateKey
    tcb_signer: x509.Certificate
    tcb_key: ec.EllipticCurvePrivateKey
    ppid: bytes
    tcb_status: str = "UpToDate"
    revoked_pck: bool = False

    __test__ = False  # not a pytest class

    @classmethod
    def generate(cls, ppid: bytes = bytes(range(16))) -> TestIntelChain:
        root_key = ec.generate_private_key(ec.SECP256R1())
        pck_ca_key = ec.generate_private_key(ec.SECP256R1())
        pck_key = ec.generate_private_key(ec.SECP256R1())
        tcb_key = ec.generate_private_key(ec.SECP256R1())
        root_name = "Test SGX Root CA"
        root = _cert(root_name, root_name, root_key, root_key, 1, True)
        pck_ca = _cert("Test SGX PCK Platform CA", root_name, pck_ca_key, root_key, 2, True)
        pck = _cert(
            "Test SGX PCK Certificate", "Test SGX PCK Platform CA", pck_key, pck_ca_key, 3,
            False, sgx_extension(ppid, SGX_COMPONENTS, PCESVN),
        )  # fmt: skip
        tcb_signer = _cert("Test SGX TCB Signing", root_name, tcb_key, root_key, 4, False)
        return cls(root, root_key, pck_ca, pck_ca_key, pck, pck_key, tcb_signer, tcb_key, ppid)

    def backend(self) -> DcapBackend:
        """A verifier trusting this test root only (never Intel's)."""
        der = self.root.public_bytes(serialization.Encoding.DER)
        return DcapBackend(root=load_certificate(der))

    # -- collateral --------------------------------------------------------------------------

    def tcb_info(self) -> dict:
        return {
            "id": "TDX", "version": 3, "issueDate": _iso(NOT_BEFORE),
            "nextUpdate": _iso(NOT_AFTER), "fmspc": FMSPC.hex(), "pceId": PCE_ID.hex(),
            "tcbType": 0, "tcbEvaluationDataNumber": 17,
            "tdxModule": {
                "mrsigner": MRSIGNERSEAM.hex(), "attributes": "0000000000000000",
                "attributesMask": "FFFFFFFFFFFFFFFF",
            },
            "tcbLevels": [
                {
                    "tcb": {
                        "sgxtcbcomponents": _components(SGX_COMPONENTS),
                        "pcesvn": PCESVN,
                        "tdxtcbcomponents": _components(TEE_TCB_SVN),
                    },
                    "tcbDate": _iso(NOT_BEFORE),
                    "tcbStatus": self.tcb_status,
                }
            ],
        }  # fmt: skip

    def qe_identity(self) -> dict:
        return {
            "id": "TD_QE", "version": 2, "issueDate": _iso(NOT_BEFORE),
            "nextUpdate": _iso(NOT_AFTER), "tcbEvaluationDataNumber": 17,
            "miscselect": "00000000", "miscselectMask": "FFFFFFFF",
            "attributes": "11000000000000000000000000000000",
            "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
            "mrsigner": QE_MRSIGNER.hex(), "isvprodid": QE_ISVPRODID,
            "tcbLevels": [{"tcb": {"isvsvn": QE_ISVSVN}, "tcbDate": _iso(NOT_BEFORE),
                           "tcbStatus": "UpToDate"}],
        }  # fmt: skip

    def collateral(self) -> bytes:
        """The collateral JSON (PCCS-client layout) for quotes of this platform."""
        tcb_text = json.dumps(self.tcb_info(), separators=(",", ":"))
        qe_text = json.dumps(self.qe_identity(), separators=(",", ":"))
        revoked = (self.pck.serial_number,) if self.revoked_pck else ()
        return json.dumps(
            {
                "pck_crl_issuer_chain": _pem(self.pck_ca, self.root),
                "root_ca_crl": _crl(self.root, self.root_key).hex(),
                "pck_crl": _crl(self.pck_ca, self.pck_ca_key, revoked).hex(),
                "tcb_info_issuer_chain": _pem(self.tcb_signer, self.root),
                "tcb_info": tcb_text,
                "tcb_info_signature": _raw_sig(self.tcb_key, tcb_text.encode()).hex(),
                "qe_identity_issuer_chain": _pem(self.tcb_signer, self.root),
                "qe_identity": qe_text,
                "qe_identity_signature": _raw_sig(self.tcb_key, qe_text.encode()).hex(),
            }
        ).encode()

    def pcs_responses(self) -> dict[str, tuple[bytes, dict[str, str]]]:
        """What Intel's PCS answers for this platform: path -> (body, headers).

        The signed objects are written with spaces (``json.dumps`` defaults), so a client
        that re-serialised them instead of cutting out the exact bytes would fail.
        """
        tcb_text = json.dumps(self.tcb_info())
        qe_text = json.dumps(self.qe_identity())
        tcb_sig = _raw_sig(self.tcb_key, tcb_text.encode()).hex()
        qe_sig = _raw_sig(self.tcb_key, qe_text.encode()).hex()
        chain = urllib.parse.quote(_pem(self.tcb_signer, self.root))
        revoked = (self.pck.serial_number,) if self.revoked_pck else ()
        return {
            "/tdx/certification/v4/tcb": (
                f'{{"tcbInfo": {tcb_text}, "signature": "{tcb_sig}"}}'.encode(),
                {"TCB-Info-Issuer-Chain": chain},
            ),
            "/tdx/certification/v4/qe/identity": (
                f'{{"enclaveIdentity": {qe_text}, "signature": "{qe_sig}"}}'.encode(),
                {"SGX-Enclave-Identity-Issuer-Chain": chain},
            ),
            "/sgx/certification/v4/pckcrl": (
                _crl(self.pck_ca, self.pck_ca_key, revoked),
                {"SGX-PCK-CRL-Issuer-Chain": urllib.parse.quote(_pem(self.pck_ca, self.root))},
            ),
            "/IntelSGXRootCA.der": (_crl(self.root, self.root_key), {}),
        }

    # -- quotes ------------------------------------------------------------------------------

    def qe_report(self, attestation_key: bytes, qe_auth: bytes) -> bytes:
        """The Quoting Enclave's SGX report body, binding the attestation key."""
        report = bytearray(384)
        report[48:64] = bytes.fromhex("11000000000000000000000000000000")  # attributes
        report[64:96] = hashlib.sha256(b"test TD quoting enclave").digest()  # MRENCLAVE
        report[128:160] = QE_MRSIGNER
        struct.pack_into("<HH", report, 256, QE_ISVPRODID, QE_ISVSVN)
        report[320:352] = hashlib.sha256(attestation_key + qe_auth).digest()
        return bytes(report)

    def quote(
        self, report_data: bytes, *, mrtd: bytes = MRTD, td_attributes: bytes = bytes(8)
    ) -> bytes:
        """A TDX quote v4 about ``report_data`` (64 bytes), as the TD quoting enclave makes."""
        header = struct.pack("<HHIHH", 4, 2, TEE_TDX, QE_ISVSVN, PCESVN)
        header += INTEL_QE_VENDOR_ID + bytes(20)
        body = bytearray(584)
        body[0:16] = TEE_TCB_SVN
        body[16:64] = hashlib.sha384(b"test TDX module").digest()  # MRSEAM
        body[64:112] = MRSIGNERSEAM
        body[120:128] = td_attributes
        body[128:136] = bytes.fromhex("e718060000000000")  # XFAM
        body[136:184] = mrtd
        for i in range(4):  # RTMR0..3: what the firmware, kernel and command line extended
            body[328 + 48 * i : 376 + 48 * i] = hashlib.sha384(b"rtmr%d" % i).digest()
        body[520:584] = report_data.ljust(64, b"\0")
        signed = header + bytes(body)
        att_key = ec.generate_private_key(ec.SECP256R1())
        point = att_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )[1:]
        qe_auth = bytes(range(32))
        qe_report = self.qe_report(point, qe_auth)
        chain = _pem(self.pck, self.pck_ca, self.root).encode()
        inner = (
            qe_report + _raw_sig(self.pck_key, qe_report)
            + struct.pack("<H", len(qe_auth)) + qe_auth
            + struct.pack("<HI", 5, len(chain)) + chain
        )  # fmt: skip
        sig_data = _raw_sig(att_key, signed) + point + struct.pack("<HI", 6, len(inner)) + inner
        return signed + struct.pack("<I", len(sig_data)) + sig_data


class FakeTdxKernel(FakeSnpKernel):
    """configfs-tsm of a TDX guest on a temp tree (same file protocol as the SNP fake).

    Knobs: ``provider`` (``tdx_guest``), ``interlopers``, ``mangle`` (applied to each quote),
    ``mrtd`` (the TD's measurement).
    """

    def __init__(self, root: Path, chain: TestIntelChain, *, mrtd: bytes = MRTD) -> None:
        super().__init__(root, chain, measurement=mrtd)  # type: ignore[arg-type]
        self.provider = "tdx_guest"
        self.mangle: Callable[[bytes], bytes] = lambda quote: quote

    #: ``tdx_report_attr_visible`` / ``tdx_report_bin_attr_visible`` (tdx-guest.c): a
    #: TDX entry shows only provider, generation, inblob and outblob (no auxblob, no
    #: privlevel or privlevel_floor)
    attributes = ("inblob", "outblob")

    def outblob(self, inblob: bytes, level: int) -> bytes:
        return self.chain.quote(inblob, mrtd=self.measurement)  # type: ignore[attr-defined]


def fake_tdx_factory(kernel: FakeTdxKernel) -> Callable[[dict, bytes, bytes], Platform]:
    """A worker platform factory: ``dcap`` (TDX) on ``kernel`` with the start request's
    collateral file, anything else as usual."""

    def factory(spec: dict, seed: bytes, simulated_measurement: bytes) -> Platform:
        if spec.get("kind") in ("dcap", "tdx"):
            tsm = ConfigfsTsm(kernel.root, files=kernel)
            collateral = spec.get("collateral_file")
            path = Path(collateral) if collateral else None
            return CvmPlatform(TdxGuest(tsm, collateral_file=path))
        return default_platform(spec, seed, simulated_measurement)

    return factory
