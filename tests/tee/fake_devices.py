"""Fake ``/dev/sev-guest`` and ``/dev/tdx_guest`` drivers behind the :class:`DeviceIO` seam.

They do what the kernel does with an ioctl argument: follow its pointers into our memory,
read the request, write the response. Offsets and request numbers here are written out
from the UAPI headers (not taken from the production ``ctypes`` structures), so a layout
mistake there shows up as a failure here.
"""

from __future__ import annotations

import ctypes
import errno
import struct
from pathlib import Path

from repp2p.tee.guest_devices import DeviceIO

from .fake_snp import MEASUREMENT, TestAmdChain, make_report

#: _IOWR('S', nr, 32-byte struct snp_guest_request_ioctl) and _IOWR('T', 1, 1088 bytes)
SNP_GET_REPORT = 0xC0205300
SNP_GET_EXT_REPORT = 0xC0205302
TDX_CMD_GET_REPORT0 = 0xC4405401
#: include/linux/psp-sev.h: the driver's certificate bounce buffer, four pages
SEV_FW_BLOB_MAX_SIZE = 0x4000
PAGE = 4096
MRTD = bytes.fromhex("3c" * 48)


class FakeDeviceIO(DeviceIO):
    """Opens only its own device path; counts calls; ``fail`` forces an errno."""

    path = ""

    def __init__(self, root: Path) -> None:
        self.node = Path(root) / self.path
        self.node.parent.mkdir(parents=True, exist_ok=True)
        self.node.write_bytes(b"")
        self.calls: list[int] = []
        self.fail: int | None = None
        self.open_fds: set[int] = set()

    def open(self, path: Path) -> int:
        if Path(path) != self.node:
            raise FileNotFoundError(errno.ENOENT, "no such device")
        fd = 1000 + len(self.calls) + len(self.open_fds)
        self.open_fds.add(fd)
        return fd

    def close(self, fd: int) -> None:
        self.open_fds.remove(fd)


class FakeSevGuest(FakeDeviceIO):
    """The sev-guest driver with an SNP firmware signing with ``chain``'s VCEK.

    What the driver (``drivers/virt/coco/sev-guest``) does with the ioctl argument:
    ``msg_version`` 0 is EINVAL; an extended request with a certificate buffer that is
    not page-aligned or larger than ``SEV_FW_BLOB_MAX_SIZE`` (16 KiB) is EINVAL, one with
    no buffer (length or address 0) gets no certificates; a host table larger than the
    buffer is EIO with ``vmm_error`` ``SNP_GUEST_VMM_ERR_INVALID_LEN`` and the host's
    length (whole pages) written back into ``certs_len``; otherwise the whole buffer is
    copied out (the table, zero-padded) and the 4000-byte response written.

    Knobs: ``cert_table`` (what the host returns; default the chain's table),
    ``host_wants`` (a certificate buffer size the host insists on), ``status`` (firmware
    status in the response), ``report_size``.
    """

    path = "dev/sev-guest"

    def __init__(self, root: Path, chain: TestAmdChain) -> None:
        super().__init__(root)
        self.chain = chain
        self.cert_table: bytes | None = None
        self.host_wants = 0
        self.status = 0
        self.report_size = 0x4A0

    def ioctl(self, fd: int, request: int, arg: ctypes.Structure) -> None:
        assert fd in self.open_fds
        self.calls.append(request)
        if self.fail is not None:
            raise OSError(self.fail, "forced")
        if request not in (SNP_GET_REPORT, SNP_GET_EXT_REPORT):
            raise OSError(errno.ENOTTY, "inappropriate ioctl")
        base = ctypes.addressof(arg)
        assert ctypes.sizeof(arg) == 32
        version, req_addr, resp_addr = struct.unpack("<B7xQQ", ctypes.string_at(base, 24))
        if version == 0:
            raise OSError(errno.EINVAL, "msg_version must be non-zero")
        user_data, vmpl, rsvd = struct.unpack("<64sI28s", ctypes.string_at(req_addr, 96))
        assert rsvd == bytes(28), "snp_report_req.rsvd must be zero"
        if request == SNP_GET_EXT_REPORT:
            certs_addr, certs_len = struct.unpack("<QI", ctypes.string_at(req_addr + 96, 12))
            if certs_len and certs_addr:
                if certs_len > SEV_FW_BLOB_MAX_SIZE or certs_len % PAGE:
                    raise OSError(errno.EINVAL, "certs_len")
                table = self.chain.cert_table() if self.cert_table is None else self.cert_table
                needed = max(self.host_wants, -(-len(table) // PAGE) * PAGE)
                if certs_len < needed:
                    ctypes.memmove(req_addr + 104, struct.pack("<I", needed), 4)  # certs_len
                    ctypes.memmove(base + 24, struct.pack("<Q", 1 << 32), 8)  # vmm_error 1
                    raise OSError(errno.EIO, "certificate buffer too small")
                ctypes.memmove(certs_addr, table.ljust(certs_len, b"\0"), certs_len)
        report = make_report(self.chain, user_data, measurement=MEASUREMENT, vmpl=vmpl)
        header = struct.pack("<II", self.status, self.report_size) + bytes(24)
        ctypes.memmove(resp_addr, (header + report).ljust(4000, b"\0"), 4000)


class FakeTdxGuest(FakeDeviceIO):
    """The tdx_guest driver: TDX_CMD_GET_REPORT0 fills a TDREPORT (MAC not modelled)."""

    path = "dev/tdx_guest"

    def __init__(self, root: Path, mrtd: bytes = MRTD) -> None:
        super().__init__(root)
        self.mrtd = mrtd
        self.echo = True

    def ioctl(self, fd: int, request: int, arg: ctypes.Structure) -> None:
        assert fd in self.open_fds
        self.calls.append(request)
        if self.fail is not None:
            raise OSError(self.fail, "forced")
        if request != TDX_CMD_GET_REPORT0:
            raise OSError(errno.ENOTTY, "inappropriate ioctl")
        base = ctypes.addressof(arg)
        assert ctypes.sizeof(arg) == 64 + 1024
        reportdata = ctypes.string_at(base, 64) if self.echo else bytes(64)
        report = bytearray(1024)
        report[0] = 0x81  # REPORTTYPE.TYPE: TDX
        report[128:192] = reportdata
        report[528:576] = self.mrtd
        ctypes.memmove(base + 64, bytes(report), 1024)


class FakeQgs:
    """The host's quote service at the end of socket pairs (vsock's stand-in).

    Each :meth:`connect` returns our end of a fresh socket pair; a thread on the other end
    reads one length-prefixed GET_QUOTE_REQ (layout written out from Intel's qgs_msg
    header), takes the report data from the TDREPORT and answers with a quote from
    ``chain`` (or ``error`` as the QGS error code, or ``garbage`` as the raw response).
    """

    def __init__(self, chain, mrtd: bytes) -> None:  # type: ignore[no-untyped-def]
        self.chain, self.mrtd = chain, mrtd
        self.error = 0
        self.garbage: bytes | None = None
        self.requests: list[tuple[int, ...]] = []

    def connect(self):  # type: ignore[no-untyped-def]
        import socket
        import threading

        ours, theirs = socket.socketpair()
        threading.Thread(target=self._answer, args=(theirs,), daemon=True).start()
        return ours

    def _answer(self, sock) -> None:  # type: ignore[no-untyped-def]
        with sock:
            size = int.from_bytes(_recv(sock, 4), "big")
            message = _recv(sock, size)
            header = struct.unpack_from("<HHIIIII", message)
            self.requests.append(header)
            tdreport = message[24:]
            major, _minor, kind, size, error, report_size, id_list_size = header
            # qgs_msg_inflate_get_quote_req: major version 1, GET_QUOTE_REQ, sizes adding up
            assert (major, kind, error, id_list_size) == (1, 0, 0, 0)
            assert size == len(message) and report_size == len(tdreport) == 1024
            quote = self.chain.quote(tdreport[128:192], mrtd=tdreport[528:576])
            if self.garbage is not None:
                body = self.garbage
            else:
                body = struct.pack("<HHIIIII", 1, 0, 1, 24 + len(quote), self.error, 0, len(quote))
                body += quote
            sock.sendall(len(body).to_bytes(4, "big") + body)


def _recv(sock, size: int) -> bytes:  # type: ignore[no-untyped-def]
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data
