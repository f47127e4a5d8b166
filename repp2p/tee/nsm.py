"""AWS Nitro Enclaves evidence: the Nitro Security Module (``/dev/nsm``) inside the enclave.

The driver (Linux ``drivers/misc/nsm.c``, UAPI ``include/uapi/linux/nsm.h``; the same ABI
as AWS's out-of-tree driver) takes one raw ioctl, ``NSM_IOCTL_RAW = _IOWR(0x0A, 0,
struct nsm_raw)``, whose argument holds two ``{u64 addr, u64 len}`` buffers: the CBOR
request (at most 0x1000 bytes, else EMSGSIZE) and room for the CBOR response (0x3000
bytes); the driver writes the response's real length back into ``response.len``,
truncating a response longer than the buffer (so we always offer the maximum).

Requests and responses are CBOR maps keyed by the operation (serde's externally tagged
enums, as in AWS's ``aws-nitro-enclaves-nsm-api``)::

    {"Attestation": {"user_data": bstr/null, "nonce": bstr/null, "public_key": bstr/null}}
    -> {"Attestation": {"document": bstr}}          (a COSE_Sign1 attestation document)
    -> {"Error": "InvalidArgument" | ...}

We put the 64-byte binding (:func:`repp2p.attestation.expected_report_data`) in
``user_data`` -- what :class:`repp2p.attestation.NitroBackend` reads as report data -- and
nothing else. The measurement a network pins is PCR0 (the enclave image), read from the
first document at start. The response is hostile input only in shape (the NSM is the
TEE): sizes and types are checked here, signatures by every verifier.
"""

from __future__ import annotations

import ctypes
import errno
from pathlib import Path

import cbor2

from repp2p.tee.errors import TeeInterfaceError, TeeInterfaceReason
from repp2p.tee.guest_devices import PROBE_HINT, DeviceIO, _iowr

KIND = "nitro"
DEVICE = "/dev/nsm"
NSM_REQUEST_MAX_SIZE = 0x1000
NSM_RESPONSE_MAX_SIZE = 0x3000


class NsmIovec(ctypes.Structure):
    """``struct nsm_iovec``."""

    _fields_ = [("addr", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class NsmRaw(ctypes.Structure):
    """``struct nsm_raw``: the request and response buffers."""

    _fields_ = [("request", NsmIovec), ("response", NsmIovec)]


NSM_IOCTL_RAW = _iowr(chr(0x0A), 0, ctypes.sizeof(NsmRaw))


def _malformed(detail: str) -> TeeInterfaceError:
    return TeeInterfaceError(TeeInterfaceReason.MALFORMED, f"nsm: {detail}")


def document_pcr0(document: bytes) -> bytes:
    """PCR0 from an attestation document's payload (shape only; nothing verified).

    Raises:
        TeeInterfaceError: MALFORMED.
    """
    try:
        obj = cbor2.loads(document)
        if isinstance(obj, cbor2.CBORTag):
            obj = obj.value
        payload = cbor2.loads(obj[2])
        pcr0 = payload["pcrs"][0]
    except Exception:
        raise _malformed("the attestation document has no readable PCR0") from None
    if not isinstance(pcr0, bytes) or len(pcr0) != 48:
        raise _malformed("PCR0 is not 48 bytes")
    return pcr0


class NsmDevice:
    """The NSM through ``/dev/nsm`` (see the module docstring).

    Args:
        root: filesystem root (tests: a temp dir).
        io: the device calls (default: the real ``open``/``ioctl``/``close``).
    """

    kind = KIND

    def __init__(self, root: str | Path = "/", *, io: DeviceIO | None = None) -> None:
        self.path = Path(root) / DEVICE.lstrip("/")
        self.io = io or DeviceIO()

    def check_available(self) -> None:
        """Raise MISSING unless ``/dev/nsm`` exists (only inside a Nitro Enclave)."""
        if not self.path.exists():
            raise TeeInterfaceError(
                TeeInterfaceReason.MISSING,
                f"{self.path} is missing: not inside an AWS Nitro Enclave (the enclave image "
                f"runs `python -m repp2p.tee.worker --vsock PORT`); {PROBE_HINT}",
            )

    def request(self, message: dict) -> dict:
        """One NSM request/response round trip.

        Raises:
            TeeInterfaceError: MISSING, PERMISSION, IO_ERROR, MALFORMED (an unreadable
                response), or IO_ERROR naming the NSM's error code.
        """
        self.check_available()
        encoded = cbor2.dumps(message)
        if len(encoded) > NSM_REQUEST_MAX_SIZE:
            raise ValueError("NSM request too large")
        req = ctypes.create_string_buffer(encoded, len(encoded))
        resp = ctypes.create_string_buffer(NSM_RESPONSE_MAX_SIZE)
        raw = NsmRaw(
            NsmIovec(ctypes.addressof(req), len(encoded)),
            NsmIovec(ctypes.addressof(resp), NSM_RESPONSE_MAX_SIZE),
        )
        try:
            fd = self.io.open(self.path)
        except OSError as exc:
            raise self._error("open", exc) from None
        try:
            self.io.ioctl(fd, NSM_IOCTL_RAW, raw)
        except OSError as exc:
            raise self._error("NSM_IOCTL_RAW", exc) from None
        finally:
            self.io.close(fd)
        size = raw.response.len
        if not 0 < size <= NSM_RESPONSE_MAX_SIZE:
            raise _malformed(f"response length {size}")
        try:
            reply = cbor2.loads(resp.raw[:size])
        except Exception:
            raise _malformed("the response is not CBOR") from None
        if not isinstance(reply, dict) or len(reply) != 1:
            raise _malformed("the response is not a one-key map")
        if "Error" in reply:
            raise TeeInterfaceError(
                TeeInterfaceReason.IO_ERROR, f"nsm: the NSM answered {str(reply['Error'])[:64]}"
            )
        return reply

    def _error(self, what: str, exc: OSError) -> TeeInterfaceError:
        if exc.errno in (errno.EACCES, errno.EPERM):
            return TeeInterfaceError(
                TeeInterfaceReason.PERMISSION,
                f"{self.path}: permission denied (run the enclave process as root or give "
                "it access to the device)",
            )
        return TeeInterfaceError(
            TeeInterfaceReason.IO_ERROR, f"{self.path}: {what}: {exc.strerror or exc}"
        )

    def attestation(
        self, user_data: bytes, nonce: bytes | None = None, public_key: bytes | None = None
    ) -> bytes:
        """An attestation document (COSE_Sign1 bytes) carrying ``user_data``."""
        reply = self.request(
            {"Attestation": {"user_data": user_data, "nonce": nonce, "public_key": public_key}}
        )
        body = reply.get("Attestation")
        document = body.get("document") if isinstance(body, dict) else None
        if not isinstance(document, bytes) or not document:
            raise _malformed("the Attestation response has no document")
        return document

    def evidence(self, report_data: bytes) -> tuple[bytes, bytes]:
        """``(document, b"")``: Nitro documents carry their certificate chain."""
        return self.attestation(bytes(report_data)), b""

    def measurement(self) -> bytes:
        """PCR0 of this enclave's image, from a document about nothing in particular."""
        return document_pcr0(self.attestation(b"repp2p/nitro/startup".ljust(64, b"\0")))
