"""A faithful fake of the AWS Nitro Security Module (``/dev/nsm``), for tests only.

* :class:`TestNitroChain`: root -> intermediate -> leaf, all ECDSA P-384 as AWS's, and
  :meth:`TestNitroChain.document`: a COSE_Sign1 attestation document (tag 18, protected
  header ``{1: -35}``, ES384 over ``Sig_structure1``) with the payload fields the NSM
  produces (``module_id``, ``digest``, ``timestamp``, ``pcrs``, ``certificate``,
  ``cabundle`` root first, ``public_key``, ``user_data``, ``nonce``). Trusted only by a
  verifier built with :meth:`TestNitroChain.backend`, never by the pinned AWS root.
* :class:`FakeNsm`: the driver behind the :class:`DeviceIO` seam: it follows the
  ``nsm_raw`` iovecs (offsets written out from ``include/uapi/linux/nsm.h``), decodes the
  CBOR request, answers ``Attestation`` with a document, anything else with an ``Error``,
  and writes the response length back, as the driver does (``drivers/misc/nsm.c``: EINVAL
  for another command, EMSGSIZE for a request over 0x1000 bytes, a response truncated to
  the caller's buffer).
* :func:`socket_enclave`: an enclave process "inside the enclave" at the end of a socket
  pair (the stand-in for vsock): the real request loop on the real socket protocol.
"""

from __future__ import annotations

import ctypes
import datetime
import errno
import hashlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from repp2p.attestation import NitroBackend
from repp2p.attestation.certs import load_certificate
from repp2p.tee.guest_devices import DeviceIO
from repp2p.tee.nsm import NsmDevice
from repp2p.tee.platforms import CvmPlatform, Platform, default_platform
from repp2p.tee.vsock import SocketProcess, serve_connection
from repp2p.tee.worker import serve

#: _IOWR(0x0A, 0, struct nsm_raw) with a 32-byte nsm_raw (include/uapi/linux/nsm.h)
NSM_IOCTL_RAW = 0xC0200A00
NSM_REQUEST_MAX_SIZE = 0x1000
NSM_RESPONSE_MAX_SIZE = 0x3000
#: PCR0 of the (test) enclave image: what a network's policy pins for ``nitro``
PCR0 = hashlib.sha384(b"test enclave image").digest()
NOT_BEFORE = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
NOT_AFTER = datetime.datetime(2035, 1, 1, tzinfo=datetime.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Web Services (NOT AWS)"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


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


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


class TestNitroChain:
    """A test root -> intermediate -> leaf chain and the documents its leaf signs."""

    __test__ = False  # not a pytest class

    def __init__(self) -> None:
        root_key = ec.generate_private_key(ec.SECP384R1())
        mid_key = ec.generate_private_key(ec.SECP384R1())
        self.leaf_key = ec.generate_private_key(ec.SECP384R1())
        self.root = _cert("test.nitro-enclaves", "test.nitro-enclaves", root_key, root_key, 1, True)
        self.mid = _cert("test.zonal", "test.nitro-enclaves", mid_key, root_key, 2, True)
        self.leaf = _cert("i-0test.enc0test", "test.zonal", self.leaf_key, mid_key, 3, False)

    def backend(self) -> NitroBackend:
        """A verifier trusting this test root only (never AWS's)."""
        return NitroBackend(root=load_certificate(_der(self.root)))

    def document(
        self,
        user_data: bytes | None,
        *,
        nonce: bytes | None = None,
        public_key: bytes | None = None,
        timestamp_ms: int,
        pcr0: bytes = PCR0,
    ) -> bytes:
        """A COSE_Sign1 attestation document, as the NSM makes it."""
        pcrs = {0: pcr0, 1: hashlib.sha384(b"kernel").digest(), 2: hashlib.sha384(b"app").digest()}
        pcrs.update({i: bytes(48) for i in range(3, 16)})
        payload = cbor2.dumps(
            {
                "module_id": "i-0test-enc0test", "digest": "SHA384",
                "timestamp": timestamp_ms, "pcrs": pcrs, "certificate": _der(self.leaf),
                "cabundle": [_der(self.root), _der(self.mid)], "public_key": public_key,
                "user_data": user_data, "nonce": nonce,
            }
        )  # fmt: skip
        protected = cbor2.dumps({1: -35})
        to_sign = cbor2.dumps(["Signature1", protected, b"", payload])
        r, s = decode_dss_signature(self.leaf_key.sign(to_sign, ec.ECDSA(hashes.SHA384())))
        signature = r.to_bytes(48, "big") + s.to_bytes(48, "big")
        return cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, signature]))


class FakeNsm(DeviceIO):
    """``/dev/nsm`` behind the seam (see the module docstring).

    Knobs: ``error`` (an NSM error code to answer with), ``garbage`` (raw response bytes),
    ``fail`` (an errno for the ioctl), ``pcr0``, ``clock`` (unix seconds for timestamps).
    """

    def __init__(self, root: Path, chain: TestNitroChain) -> None:
        self.node = Path(root) / "dev/nsm"
        self.node.parent.mkdir(parents=True, exist_ok=True)
        self.node.write_bytes(b"")
        self.chain = chain
        self.error: str | None = None
        self.garbage: bytes | None = None
        self.fail: int | None = None
        self.pcr0 = PCR0
        self.clock: Callable[[], float] = time.time
        self.requests: list[dict] = []

    def open(self, path: Path) -> int:
        if Path(path) != self.node:
            raise FileNotFoundError(errno.ENOENT, "no such device")
        return 77

    def close(self, fd: int) -> None:
        assert fd == 77

    def ioctl(self, fd: int, request: int, arg: ctypes.Structure) -> None:
        if self.fail is not None:
            raise OSError(self.fail, "forced")
        # drivers/misc/nsm.c: any other command, or another argument size, is EINVAL
        if request != NSM_IOCTL_RAW or ctypes.sizeof(arg) != 32:
            raise OSError(errno.EINVAL, "not NSM_IOCTL_RAW")
        base = ctypes.addressof(arg)
        req_addr, req_len, resp_addr, resp_len = struct.unpack("<QQQQ", ctypes.string_at(base, 32))
        if req_len > NSM_REQUEST_MAX_SIZE:
            raise OSError(errno.EMSGSIZE, "request too large")
        message = cbor2.loads(ctypes.string_at(req_addr, req_len))
        self.requests.append(message)
        body = message.get("Attestation") if isinstance(message, dict) else None
        if self.garbage is not None:
            response = self.garbage
        elif self.error is not None or not isinstance(body, dict):
            response = cbor2.dumps({"Error": self.error or "InvalidOperation"})
        else:
            document = self.chain.document(
                body.get("user_data"), nonce=body.get("nonce"),
                public_key=body.get("public_key"),
                timestamp_ms=int(self.clock() * 1000), pcr0=self.pcr0,
            )  # fmt: skip
            response = cbor2.dumps({"Attestation": {"document": document}})
        # The device writes at most NSM_RESPONSE_MAX_SIZE; the driver truncates what does
        # not fit the caller's buffer (no error) and writes the length back.
        size = min(len(response), NSM_RESPONSE_MAX_SIZE, resp_len)
        ctypes.memmove(resp_addr, response[:size], size)
        ctypes.memmove(base + 24, struct.pack("<Q", size), 8)  # response.len


def fake_nitro_factory(nsm: FakeNsm) -> Callable[[dict, bytes, bytes], Platform]:
    """A worker platform factory: ``nitro`` on ``nsm``, anything else as usual."""

    def factory(spec: dict, seed: bytes, simulated_measurement: bytes) -> Platform:
        if spec.get("kind") == "nitro":
            return CvmPlatform(NsmDevice(nsm.node.parent.parent, io=nsm))
        return default_platform(spec, seed, simulated_measurement)

    return factory


def socket_enclave(factory: Callable[[dict, bytes, bytes], Platform]) -> SocketProcess:
    """An enclave process behind a socket pair (vsock's stand-in); the node's end."""
    node_end, enclave_end = socket.socketpair()
    threading.Thread(
        target=serve_connection,
        args=(enclave_end, lambda r, w: serve(r, w, platform_factory=factory)),
        daemon=True,
    ).start()
    return SocketProcess(node_end)
