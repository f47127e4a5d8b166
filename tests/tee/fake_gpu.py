"""A faithful fake of an NVIDIA confidential-computing GPU's attestation, for tests only.

* :class:`TestGpuChain`: a test "device identity" root and a P-384 attestation-key leaf
  (NVIDIA's GPU chains are P-384), trusted only by :meth:`TestGpuChain.backend`.
* :meth:`TestGpuChain.report`: an SPDM 1.1 ``GET_MEASUREMENTS`` request (37 bytes: the
  requester nonce) and ``MEASUREMENTS`` response (measurement blocks in DMTF format,
  responder nonce, opaque data with the driver version, raw r||s ECDSA P-384 signature
  over SHA-384 of request || response-without-signature), the layout
  :class:`repp2p.attestation.NvidiaBackend` parses.
* :class:`FakeGpu`: a :class:`repp2p.tee.gpu.GpuEvidenceProvider`; :class:`FakeNvml`: a
  stand-in for the ``pynvml`` module with the calls :class:`repp2p.tee.gpu.NvmlGpu` makes.
"""

from __future__ import annotations

import ctypes
import datetime
import hashlib
import types

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from repp2p.attestation import NvidiaBackend
from repp2p.attestation.certs import load_certificate

NOT_BEFORE = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
NOT_AFTER = datetime.datetime(2035, 1, 1, tzinfo=datetime.UTC)
BLOCKS = [(i, hashlib.sha384(b"gpu measurement %d" % i).digest()) for i in range(1, 5)]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, issuer: str, key, signer, serial: int, ca: bool) -> x509.Certificate:  # type: ignore[no-untyped-def]
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(signer, hashes.SHA384())
    )


class TestGpuChain:
    """A test device-identity root and the GPU attestation key it certifies."""

    __test__ = False  # not a pytest class

    def __init__(self) -> None:
        root_key = ec.generate_private_key(ec.SECP384R1())
        self.key = ec.generate_private_key(ec.SECP384R1())
        ca = "Test Device Identity CA (NOT NVIDIA)"
        self.root = _cert(ca, ca, root_key, root_key, 1, True)
        self.leaf = _cert("Test GH100 attestation key", ca, self.key, root_key, 2, False)

    def backend(self) -> NvidiaBackend:
        """A verifier trusting this test root only (never NVIDIA's)."""
        return NvidiaBackend(
            root=load_certificate(self.root.public_bytes(serialization.Encoding.DER))
        )

    def chain_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (self.leaf, self.root))

    def report(self, nonce: bytes, blocks: list[tuple[int, bytes]] = BLOCKS) -> bytes:
        """SPDM GET_MEASUREMENTS request + signed MEASUREMENTS response for ``nonce``."""
        request = bytes([0x11, 0xE0, 0x01, 0xFF]) + bytes(nonce) + b"\x00"
        record = b""
        for index, value in blocks:
            dmtf = bytes([0x01]) + len(value).to_bytes(2, "little") + value
            record += bytes([index, 0x01]) + len(dmtf).to_bytes(2, "little") + dmtf
        driver = b"550.90.07\x00"
        opaque = (3).to_bytes(2, "little") + len(driver).to_bytes(2, "little") + driver
        response = (
            bytes([0x11, 0x60, 0x00, 0x00, len(blocks)]) + len(record).to_bytes(3, "little")
            + record + hashlib.sha256(b"responder" + nonce).digest()
            + len(opaque).to_bytes(2, "little") + opaque
        )  # fmt: skip
        r, s = decode_dss_signature(self.key.sign(request + response, ec.ECDSA(hashes.SHA384())))
        return request + response + r.to_bytes(48, "big") + s.to_bytes(48, "big")


class FakeGpu:
    """A GPU evidence provider backed by ``chain``; ``wrong_nonce`` answers another nonce."""

    def __init__(self, chain: TestGpuChain) -> None:
        self.chain = chain
        self.available = True
        self.wrong_nonce = False
        self.nonces: list[bytes] = []

    def check_available(self) -> None:
        if not self.available:
            from repp2p.tee.errors import TeeInterfaceError, TeeInterfaceReason

            raise TeeInterfaceError(TeeInterfaceReason.MISSING, "fake GPU: CC mode off")

    def evidence(self, nonce: bytes) -> tuple[bytes, bytes]:
        self.nonces.append(nonce)
        asked = bytes(32) if self.wrong_nonce else nonce
        return self.chain.report(asked), self.chain.chain_pem()


# The structures nvidia-ml-py (pynvml.py) passes to NVML, written out from it: what the
# real bindings return, so NvmlGpu reads the fake's answers exactly as the real ones.
NVML_GPU_CERT_CHAIN_SIZE = 0x1000
NVML_GPU_ATTESTATION_CERT_CHAIN_SIZE = 0x1400
NVML_CC_GPU_CEC_NONCE_SIZE = 0x20
NVML_CC_GPU_ATTESTATION_REPORT_SIZE = 0x2000
NVML_CC_GPU_CEC_ATTESTATION_REPORT_SIZE = 0x1000


class ConfComputeSystemState(ctypes.Structure):
    """``c_nvmlConfComputeSystemState_t``."""

    _fields_ = [("environment", ctypes.c_uint), ("ccFeature", ctypes.c_uint),
                ("devToolsMode", ctypes.c_uint)]  # fmt: skip


class ConfComputeGpuCertificate(ctypes.Structure):
    """``c_nvmlConfComputeGpuCertificate_t``."""

    _fields_ = [
        ("certChainSize", ctypes.c_uint),
        ("attestationCertChainSize", ctypes.c_uint),
        ("certChain", ctypes.c_uint8 * NVML_GPU_CERT_CHAIN_SIZE),
        ("attestationCertChain", ctypes.c_uint8 * NVML_GPU_ATTESTATION_CERT_CHAIN_SIZE),
    ]


class ConfComputeGpuAttestationReport(ctypes.Structure):
    """``c_nvmlConfComputeGpuAttestationReport_t`` (``nonce`` is the input)."""

    _fields_ = [
        ("isCecAttestationReportPresent", ctypes.c_uint),
        ("attestationReportSize", ctypes.c_uint),
        ("cecAttestationReportSize", ctypes.c_uint),
        ("nonce", ctypes.c_uint8 * NVML_CC_GPU_CEC_NONCE_SIZE),
        ("attestationReport", ctypes.c_uint8 * NVML_CC_GPU_ATTESTATION_REPORT_SIZE),
        ("cecAttestationReport", ctypes.c_uint8 * NVML_CC_GPU_CEC_ATTESTATION_REPORT_SIZE),
    ]


class FakeNvml(types.SimpleNamespace):
    """The ``pynvml`` calls NvmlGpu makes, answering from a FakeGpu with the bindings'
    own structures (a nonce of another length fails as in pynvml: ctypes refuses it)."""

    def __init__(self, gpu: FakeGpu, *, cc: int = 1, devtools: int = 0, count: int = 1):
        super().__init__()
        self.gpu, self.cc, self.devtools, self.count = gpu, cc, devtools, count
        self.fail_init = False

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlSystemGetConfComputeState(self) -> ConfComputeSystemState:
        return ConfComputeSystemState(environment=2, ccFeature=self.cc, devToolsMode=self.devtools)

    def nvmlDeviceGetCount(self) -> int:
        return self.count

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return 100 + index

    def nvmlDeviceGetConfComputeGpuAttestationReport(
        self, handle: int, c_nonce: bytes
    ) -> ConfComputeGpuAttestationReport:
        report = ConfComputeGpuAttestationReport()
        # pynvml: setattr(c_attestReport, 'nonce', (c_uint8 * len(c_nonce))(*(c_nonce)))
        report.nonce = (ctypes.c_uint8 * len(c_nonce))(*c_nonce)
        raw, _ = self.gpu.evidence(bytes(report.nonce))
        ctypes.memmove(report.attestationReport, raw, len(raw))
        report.attestationReportSize = len(raw)
        return report

    def nvmlDeviceGetConfComputeGpuCertificate(self, handle: int) -> ConfComputeGpuCertificate:
        chain = self.gpu.chain.chain_pem()
        cert = ConfComputeGpuCertificate()
        ctypes.memmove(cert.attestationCertChain, chain, len(chain))
        cert.attestationCertChainSize = len(chain)
        return cert
