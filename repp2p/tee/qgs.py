"""The host's TDX Quote Generation Service (QGS), over vsock: TDREPORT in, quote out.

On kernels without configfs-tsm a TD gets only a TDREPORT from ``/dev/tdx_guest``; the
quote peers verify is made by the TD Quoting Enclave on the host, which Intel's ``qgsd``
serves on a vsock port of the host (CID 2; port 4050 by convention, the one Intel's
``tdx-attest`` library is configured with). The messages are Intel's ``qgs_msg`` format
(little-endian), each sent with a 4-byte big-endian length in front::

    header    = u16 major_version (1) || u16 minor_version (0) || u32 type
                || u32 size (the whole message, header included) || u32 error_code
    request   = header(type 0 GET_QUOTE_REQ) || u32 report_size (1024) || u32 id_list_size (0)
                || TDREPORT
    response  = header(type 1 GET_QUOTE_RESP) || u32 selected_id_size || u32 quote_size
                || selected id || quote

The host is untrusted: every size is checked against the message and a bound, and the
quote's shape (and its echo of our report data) is checked by the caller.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable

from repp2p.tee.errors import TeeInterfaceError, TeeInterfaceReason

QGS_VSOCK_PORT = 4050
VMADDR_CID_HOST = 2
HEADER = struct.Struct("<HHIII")
GET_QUOTE_REQ = 0
GET_QUOTE_RESP = 1
MAJOR_VERSION = 1
#: a quote with its PCK chain is about 5 KiB; more than this is not one
MAX_MESSAGE = 64 * 1024
PROBE_HINT = "run `repp2p tee probe` for what this machine offers"


def _malformed(detail: str) -> TeeInterfaceError:
    return TeeInterfaceError(TeeInterfaceReason.MALFORMED, f"QGS: {detail}")


def encode_get_quote(tdreport: bytes) -> bytes:
    """The framed GET_QUOTE_REQ for a TDREPORT."""
    size = HEADER.size + 8 + len(tdreport)
    body = HEADER.pack(MAJOR_VERSION, 0, GET_QUOTE_REQ, size, 0)
    body += struct.pack("<II", len(tdreport), 0) + bytes(tdreport)
    return len(body).to_bytes(4, "big") + body


def decode_get_quote(message: bytes) -> bytes:
    """The quote in a GET_QUOTE_RESP message (without its length prefix).

    Raises:
        TeeInterfaceError: MALFORMED (sizes, type, version), IO_ERROR (the QGS's error code).
    """
    if len(message) < HEADER.size + 8:
        raise _malformed(f"a {len(message)}-byte response")
    major, _minor, kind, size, error = HEADER.unpack_from(message)
    if major != MAJOR_VERSION or kind != GET_QUOTE_RESP or size != len(message):
        raise _malformed(f"response version {major}, type {kind}, size {size}")
    if error:
        raise TeeInterfaceError(
            TeeInterfaceReason.IO_ERROR, f"QGS: the quote service answered error {error:#x}"
        )
    id_size, quote_size = struct.unpack_from("<II", message, HEADER.size)
    start = HEADER.size + 8 + id_size
    if quote_size == 0 or start + quote_size != len(message):
        raise _malformed(f"selected id of {id_size} and quote of {quote_size} bytes")
    return message[start:]


def _vsock_connect(port: int, timeout_s: float) -> socket.socket:
    family = getattr(socket, "AF_VSOCK", None)
    if family is None:
        raise TeeInterfaceError(
            TeeInterfaceReason.MISSING, f"no AF_VSOCK here to reach the quote service; {PROBE_HINT}"
        )
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        sock.connect((VMADDR_CID_HOST, port))
    except OSError as exc:
        sock.close()
        raise TeeInterfaceError(
            TeeInterfaceReason.MISSING,
            f"no TDX quote service at vsock {VMADDR_CID_HOST}:{port} ({exc.strerror or exc}): "
            f"the host runs none for this TD, or on another port; {PROBE_HINT}",
        ) from None
    return sock


class QgsClient:
    """Quotes from the host's QGS.

    Args:
        port: the QGS vsock port on the host.
        connect: opens a connected stream socket (default: vsock to the host; tests pass
            one end of a socket pair).
        timeout_s: the whole exchange's deadline (the QE signs in well under a second).
    """

    def __init__(
        self,
        port: int = QGS_VSOCK_PORT,
        *,
        connect: Callable[[], socket.socket] | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.port = port
        self.timeout_s = timeout_s
        self._connect = connect or (lambda: _vsock_connect(self.port, self.timeout_s))

    def get_quote(self, tdreport: bytes) -> bytes:
        """The quote for a TDREPORT.

        Raises:
            TeeInterfaceError: MISSING (no service), IO_ERROR, MALFORMED.
        """
        sock = self._connect()
        try:
            sock.settimeout(self.timeout_s)
            sock.sendall(encode_get_quote(tdreport))
            size = int.from_bytes(self._read(sock, 4), "big")
            if not 0 < size <= MAX_MESSAGE:
                raise _malformed(f"a response of {size} bytes")
            return decode_get_quote(self._read(sock, size))
        except OSError as exc:
            raise TeeInterfaceError(
                TeeInterfaceReason.IO_ERROR, f"QGS: {exc.strerror or type(exc).__name__}"
            ) from None
        finally:
            sock.close()

    @staticmethod
    def _read(sock: socket.socket, size: int) -> bytes:
        chunks, left = [], size
        while left:
            chunk = sock.recv(min(left, 65536))
            if not chunk:
                raise _malformed("the connection closed mid-response")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
