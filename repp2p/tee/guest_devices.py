"""Evidence through the guest drivers' device nodes, for kernels without configfs-tsm.

Layouts from the Linux UAPI headers (``include/uapi/linux/sev-guest.h``,
``include/uapi/linux/tdx-guest.h``), built with ``ctypes`` so the pointers the kernel
follows are real addresses of buffers we own:

* ``/dev/sev-guest``: ``SNP_GET_REPORT`` / ``SNP_GET_EXT_REPORT`` = ``_IOWR('S', 0/2,
  struct snp_guest_request_ioctl)``. The ioctl argument carries ``msg_version`` (1) and
  pointers to the request (``snp_report_req``: 64 bytes of user data, the VMPL; the
  extended request adds the address and length of a page-aligned certificate buffer) and
  to the 4000-byte response, whose firmware message is ``status (u32) || report_size
  (u32) || 24 reserved bytes || ATTESTATION_REPORT``. The driver refuses (EINVAL) a
  certificate buffer that is not page-aligned or larger than ``SEV_FW_BLOB_MAX_SIZE``
  (16 KiB, ``include/linux/psp-sev.h``: its shared bounce buffer), so we offer exactly
  that. When the host's table is larger still the call fails with EIO and
  ``exitinfo2``'s upper half (``vmm_error``) is ``SNP_GUEST_VMM_ERR_INVALID_LEN``, the
  host's length written back into ``certs_len``: no buffer this driver accepts can hold
  it, so we take the report alone (``SNP_GET_REPORT``) and the VCEK chain from the
  operator's file. Otherwise the buffer holds the certificate table
  (:mod:`repp2p.tee.snp_certs`). :class:`SevGuestDevice` is a complete evidence source
  for the ``sev-snp`` runtime.
* ``/dev/tdx_guest``: ``TDX_CMD_GET_REPORT0`` = ``_IOWR('T', 1, struct tdx_report_req)``
  (64 bytes of report data in, the 1024-byte TDREPORT out). A TDREPORT is MAC'd for this
  CPU only; peers need a *quote*, which the host's Quote Generation Service makes from it
  (configfs-tsm does that call for us; here :class:`TdxGuestDevice` sends the TDREPORT to
  the QGS over vsock itself, :mod:`repp2p.tee.qgs`).

All device access goes through :class:`DeviceIO` (open, ioctl, close); tests put a fake
device behind it that reads and writes the same memory the kernel would.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
from pathlib import Path

from repp2p.tee.errors import TeeInterfaceError, TeeInterfaceReason
from repp2p.tee.qgs import QgsClient
from repp2p.tee.snp_guest import MEASUREMENT, REPORT_SIZE, checked_evidence
from repp2p.tee.tdx_guest import MRTD as TD_MRTD
from repp2p.tee.tdx_guest import REPORT_DATA as TD_REPORT_DATA
from repp2p.tee.tdx_guest import load_collateral_file, td_report_body

PROBE_HINT = "run `repp2p tee probe` for what this machine offers"


def _iowr(kind: str, nr: int, size: int) -> int:
    """Linux ``_IOWR(type, nr, size)`` (asm-generic/ioctl.h: dir 3 = read|write)."""
    return (3 << 30) | (size << 16) | (ord(kind) << 8) | nr


# --- include/uapi/linux/sev-guest.h -----------------------------------------------------


class SnpReportReq(ctypes.Structure):
    """``struct snp_report_req``."""

    _fields_ = [
        ("user_data", ctypes.c_uint8 * 64),
        ("vmpl", ctypes.c_uint32),
        ("rsvd", ctypes.c_uint8 * 28),
    ]


class SnpExtReportReq(ctypes.Structure):
    """``struct snp_ext_report_req``."""

    _fields_ = [
        ("data", SnpReportReq),
        ("certs_address", ctypes.c_uint64),
        ("certs_len", ctypes.c_uint32),
    ]


class SnpReportResp(ctypes.Structure):
    """``struct snp_report_resp``: the firmware's MSG_REPORT_RSP."""

    _fields_ = [("data", ctypes.c_uint8 * 4000)]


class SnpGuestRequestIoctl(ctypes.Structure):
    """``struct snp_guest_request_ioctl`` (``exitinfo2``: fw_error low, vmm_error high)."""

    _fields_ = [
        ("msg_version", ctypes.c_uint8),
        ("req_data", ctypes.c_uint64),
        ("resp_data", ctypes.c_uint64),
        ("exitinfo2", ctypes.c_uint64),
    ]

    @property
    def fw_error(self) -> int:
        return self.exitinfo2 & 0xFFFFFFFF

    @property
    def vmm_error(self) -> int:
        return self.exitinfo2 >> 32


SNP_GET_REPORT = _iowr("S", 0x0, ctypes.sizeof(SnpGuestRequestIoctl))
SNP_GET_EXT_REPORT = _iowr("S", 0x2, ctypes.sizeof(SnpGuestRequestIoctl))
SNP_GUEST_VMM_ERR_INVALID_LEN = 1
SNP_GUEST_VMM_ERR_BUSY = 2
SNP_MSG_VERSION = 1
PAGE = 4096
#: ``SEV_FW_BLOB_MAX_SIZE`` (include/linux/psp-sev.h): the largest certificate buffer the
#: driver accepts (four pages; AMD's VCEK, ASK and ARK take about 4 KiB together)
SEV_FW_BLOB_MAX_SIZE = 0x4000
_RESP_HEADER = 0x20

# --- include/uapi/linux/tdx-guest.h -----------------------------------------------------

TDX_REPORTDATA_LEN = 64
TDX_REPORT_LEN = 1024


class TdxReportReq(ctypes.Structure):
    """``struct tdx_report_req``."""

    _fields_ = [
        ("reportdata", ctypes.c_uint8 * TDX_REPORTDATA_LEN),
        ("tdreport", ctypes.c_uint8 * TDX_REPORT_LEN),
    ]


TDX_CMD_GET_REPORT0 = _iowr("T", 1, ctypes.sizeof(TdxReportReq))
#: TDREPORT: REPORTMACSTRUCT (256 bytes; REPORTDATA at 128), TEE_TCB_INFO (239) + 17
#: reserved, TDINFO at 512 (ATTRIBUTES 8, XFAM 8, MRTD 48, ...)
TDREPORT_REPORTDATA = slice(128, 192)
TDREPORT_MRTD = slice(528, 576)


class DeviceIO:
    """open / ioctl / close of a device node: plain ``os`` and ``fcntl`` calls.

    The one seam between the request structures above and the kernel; errors are
    ``OSError`` (a failed ioctl also leaves the driver's error codes in ``arg``).
    """

    def open(self, path: Path) -> int:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)

    def ioctl(self, fd: int, request: int, arg: ctypes.Structure) -> None:
        fcntl.ioctl(fd, request, arg, True)

    def close(self, fd: int) -> None:
        os.close(fd)


def _io_error(path: Path, what: str, exc: OSError) -> TeeInterfaceError:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return TeeInterfaceError(
            TeeInterfaceReason.PERMISSION,
            f"{path}: permission denied (run the enclave process as root or give it access "
            f"to the device); {PROBE_HINT}",
        )
    if exc.errno == errno.ENOENT:
        return TeeInterfaceError(TeeInterfaceReason.MISSING, f"{path} is missing; {PROBE_HINT}")
    return TeeInterfaceError(TeeInterfaceReason.IO_ERROR, f"{path}: {what}: {exc.strerror or exc}")


class _Device:
    device = ""
    kind = ""

    def __init__(self, root: str | Path = "/", *, io: DeviceIO | None = None) -> None:
        self.path = Path(root) / self.device.lstrip("/")
        self.io = io or DeviceIO()

    def check_available(self) -> None:
        """Raise MISSING unless the device node exists (cheap; opens nothing)."""
        self._check_device()

    def _check_device(self) -> None:
        if not self.path.exists():
            raise TeeInterfaceError(
                TeeInterfaceReason.MISSING, f"{self.path} is missing; {PROBE_HINT}"
            )

    def _ioctl(self, request: int, arg: ctypes.Structure, what: str) -> OSError | None:
        """One ioctl on a fresh descriptor; the ioctl's own OSError is returned, not raised."""
        self._check_device()
        try:
            fd = self.io.open(self.path)
        except OSError as exc:
            raise _io_error(self.path, "open", exc) from None
        try:
            self.io.ioctl(fd, request, arg)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM, errno.ENOTTY):
                raise _io_error(self.path, what, exc) from None
            return exc
        finally:
            self.io.close(fd)
        return None


class SevGuestDevice(_Device):
    """SEV-SNP reports through ``/dev/sev-guest`` (see the module docstring).

    Args:
        root: filesystem root (tests: a temp dir).
        io: the device calls (default: the real ones).
        collateral_file: VCEK chain file used when the host's certificate table is empty.
        vmpl: the privilege level the report is for (0 unless the guest runs under an SVSM).
    """

    device = "/dev/sev-guest"
    kind = "sev-snp"

    def __init__(
        self,
        root: str | Path = "/",
        *,
        io: DeviceIO | None = None,
        collateral_file: Path | None = None,
        vmpl: int = 0,
    ) -> None:
        super().__init__(root, io=io)
        if not 0 <= vmpl <= 3:
            raise ValueError("vmpl is 0..3")
        self.collateral_file = collateral_file
        self.vmpl = vmpl

    def _request(self, report_data: bytes) -> SnpReportReq:
        if len(report_data) != 64:
            raise ValueError("report data is 64 bytes")
        req = SnpReportReq()
        ctypes.memmove(req.user_data, bytes(report_data), 64)
        req.vmpl = self.vmpl
        return req

    def _report_from(self, resp: SnpReportResp, arg: SnpGuestRequestIoctl) -> bytes:
        raw = bytes(resp.data)
        status = int.from_bytes(raw[0:4], "little")
        size = int.from_bytes(raw[4:8], "little")
        if status != 0:
            raise TeeInterfaceError(
                TeeInterfaceReason.IO_ERROR,
                f"{self.path}: the SEV-SNP firmware refused the report (status {status:#x})",
            )
        if size != REPORT_SIZE:
            raise TeeInterfaceError(
                TeeInterfaceReason.MALFORMED,
                f"{self.path}: report_size {size}, an SEV-SNP report is {REPORT_SIZE}",
            )
        return raw[_RESP_HEADER : _RESP_HEADER + size]

    def _failed(self, what: str, exc: OSError, arg: SnpGuestRequestIoctl) -> TeeInterfaceError:
        return TeeInterfaceError(
            TeeInterfaceReason.IO_ERROR,
            f"{self.path}: {what}: {exc.strerror or exc} (firmware error {arg.fw_error:#x}, "
            f"VMM error {arg.vmm_error:#x})",
        )

    def report(self, report_data: bytes) -> bytes:
        """One ATTESTATION_REPORT through ``SNP_GET_REPORT`` (no certificates).

        Raises:
            TeeInterfaceError: MISSING, PERMISSION, IO_ERROR or MALFORMED.
        """
        req, resp = self._request(report_data), SnpReportResp()
        arg = SnpGuestRequestIoctl(SNP_MSG_VERSION, ctypes.addressof(req), ctypes.addressof(resp))
        failure = self._ioctl(SNP_GET_REPORT, arg, "SNP_GET_REPORT")
        if failure is not None:
            raise self._failed("SNP_GET_REPORT", failure, arg)
        return self._report_from(resp, arg)

    def extended_report(self, report_data: bytes) -> tuple[bytes, bytes]:
        """``(report, certificate table)`` through ``SNP_GET_EXT_REPORT``.

        The table is empty when the host's is larger than the driver can carry (see the
        module docstring): the report then comes from ``SNP_GET_REPORT``.

        Raises:
            TeeInterfaceError: MISSING, PERMISSION, IO_ERROR or MALFORMED.
        """
        certs = ctypes.create_string_buffer(SEV_FW_BLOB_MAX_SIZE)
        ext = SnpExtReportReq(
            self._request(report_data), ctypes.addressof(certs), SEV_FW_BLOB_MAX_SIZE
        )
        resp = SnpReportResp()
        arg = SnpGuestRequestIoctl(SNP_MSG_VERSION, ctypes.addressof(ext), ctypes.addressof(resp))
        failure = self._ioctl(SNP_GET_EXT_REPORT, arg, "SNP_GET_EXT_REPORT")
        if failure is None:
            return self._report_from(resp, arg), certs.raw
        if arg.vmm_error != SNP_GUEST_VMM_ERR_INVALID_LEN:
            raise self._failed("SNP_GET_EXT_REPORT", failure, arg)
        if ext.certs_len <= SEV_FW_BLOB_MAX_SIZE:
            # The host says a buffer this size is too small, then asks for no more than it.
            raise TeeInterfaceError(
                TeeInterfaceReason.MALFORMED,
                f"{self.path}: the host refused a {SEV_FW_BLOB_MAX_SIZE}-byte certificate "
                f"buffer but asks for {ext.certs_len} bytes",
            )
        return self.report(report_data), b""

    def evidence(self, report_data: bytes) -> tuple[bytes, bytes]:
        """``(report, collateral)``, as :meth:`repp2p.tee.snp_guest.SnpGuest.evidence`."""
        report, table = self.extended_report(report_data)
        return checked_evidence(
            report, table, report_data, self.collateral_file, f"{self.path} report"
        )

    def measurement(self) -> bytes:
        """The VM's launch measurement, from a report about nothing in particular."""
        report, _ = self.evidence(b"repp2p/sev-snp/startup".ljust(64, b"\0"))
        return report[MEASUREMENT]


class TdxGuestDevice(_Device):
    """TDX quotes without configfs-tsm: a TDREPORT through ``/dev/tdx_guest``, made a quote
    by the host's Quote Generation Service (:mod:`repp2p.tee.qgs`).

    Args:
        root: filesystem root (tests: a temp dir).
        io: the device calls (default: the real ones).
        collateral_file: the DCAP collateral JSON (as for :class:`TdxGuest`).
        qgs: the quote service client (default: vsock to the host, port 4050).
    """

    device = "/dev/tdx_guest"
    kind = "dcap"

    def __init__(
        self,
        root: str | Path = "/",
        *,
        io: DeviceIO | None = None,
        collateral_file: Path | None = None,
        qgs: QgsClient | None = None,
    ) -> None:
        super().__init__(root, io=io)
        self.collateral_file = collateral_file
        self.qgs = qgs or QgsClient()

    def tdreport(self, report_data: bytes) -> bytes:
        """The 1024-byte TDREPORT for 64 bytes of report data (``TDX_CMD_GET_REPORT0``).

        Raises:
            TeeInterfaceError: MISSING, PERMISSION, IO_ERROR, or MALFORMED when the
                TDREPORT does not echo ``report_data``.
        """
        if len(report_data) != TDX_REPORTDATA_LEN:
            raise ValueError("report data is 64 bytes")
        req = TdxReportReq()
        ctypes.memmove(req.reportdata, bytes(report_data), TDX_REPORTDATA_LEN)
        failure = self._ioctl(TDX_CMD_GET_REPORT0, req, "TDX_CMD_GET_REPORT0")
        if failure is not None:
            raise TeeInterfaceError(
                TeeInterfaceReason.IO_ERROR,
                f"{self.path}: TDX_CMD_GET_REPORT0: {failure.strerror or failure}",
            )
        report = bytes(req.tdreport)
        if report[TDREPORT_REPORTDATA] != bytes(report_data):
            raise TeeInterfaceError(
                TeeInterfaceReason.MALFORMED, f"{self.path}: the TDREPORT lacks our report data"
            )
        return report

    def check_available(self) -> None:
        """Raise MISSING unless the device exists and a collateral file is configured."""
        super().check_available()
        if self.collateral_file is None:
            raise TeeInterfaceError(
                TeeInterfaceReason.MISSING,
                "a TDX node needs its DCAP collateral in a file: set tee_collateral "
                "(`repp2p tee fetch-collateral`, docs/operators.md)",
            )

    def evidence(self, report_data: bytes) -> tuple[bytes, bytes]:
        """``(quote, collateral JSON)``, as :meth:`repp2p.tee.tdx_guest.TdxGuest.evidence`.

        Raises:
            TeeInterfaceError: from the device, the quote service or the collateral file,
                or MALFORMED when the quote is not a TDX quote about ``report_data``.
        """
        self.check_available()
        assert self.collateral_file is not None
        collateral = load_collateral_file(self.collateral_file)
        quote = self.qgs.get_quote(self.tdreport(report_data))
        if td_report_body(quote)[TD_REPORT_DATA] != bytes(report_data):
            raise TeeInterfaceError(
                TeeInterfaceReason.MALFORMED, "QGS: the quote does not carry our report data"
            )
        return quote, collateral

    def measurement(self) -> bytes:
        """The TD's MRTD (48 bytes), from a quote (which proves the quote service works)."""
        quote, _ = self.evidence(b"repp2p/tdx/startup".ljust(64, b"\0"))
        return td_report_body(quote)[TD_MRTD]
