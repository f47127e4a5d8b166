"""Fallback evidence sources for kernels without configfs-tsm: NOT IMPLEMENTED.

Designed, not built in this release (issue #17). They would serve the same call as
:meth:`repp2p.tee.snp_guest.SnpGuest.evidence` (``report_data -> (report, collateral)``):

* ``/dev/sev-guest``: ioctl ``SNP_GET_EXT_REPORT`` (``_IOWR('S', 0x2, struct
  snp_guest_request_ioctl)``) with a ``snp_ext_report_req`` holding the 64-byte report
  data, VMPL 0 and a page-aligned certificate buffer; on ``SNP_GUEST_VMM_ERR_INVALID_LEN``
  retry with the size the host asks for. The response's report and the buffer's
  certificate table (:mod:`repp2p.tee.snp_certs`) are the evidence and collateral.
* ``/dev/tdx_guest``: ioctl ``TDX_CMD_GET_REPORT0`` gives a TDREPORT, which must then be
  turned into a quote by the host's quoting service (QGS over vsock): a second interface
  this release does not speak.

Each class raises a typed NOT_IMPLEMENTED error, so a configuration that reaches them fails
with a sentence instead of a traceback, and ``repp2p tee probe`` says the same.
"""

from __future__ import annotations

from pathlib import Path

from repp2p.tee.errors import TeeInterfaceError, TeeInterfaceReason


class _NotImplementedDevice:
    device = ""
    kind = ""

    def __init__(self, root: str | Path = "/") -> None:
        self.path = Path(root) / self.device.lstrip("/")

    def check_available(self) -> None:
        if not self.path.exists():
            raise TeeInterfaceError(TeeInterfaceReason.MISSING, f"{self.path} is missing")
        raise TeeInterfaceError(
            TeeInterfaceReason.NOT_IMPLEMENTED,
            f"{self.path} is present but its ioctl path is not implemented in this release; "
            "use a kernel with configfs-tsm (Linux >= 6.7)",
        )

    def evidence(self, report_data: bytes) -> tuple[bytes, bytes]:
        self.check_available()
        raise AssertionError("unreachable")  # pragma: no cover - check_available raises


class SevGuestDevice(_NotImplementedDevice):
    """``/dev/sev-guest`` (SNP_GET_EXT_REPORT): NOT IMPLEMENTED, raises NOT_IMPLEMENTED."""

    device = "/dev/sev-guest"
    kind = "sev-snp"


class TdxGuestDevice(_NotImplementedDevice):
    """``/dev/tdx_guest`` (TDX_CMD_GET_REPORT0 + quoting service): NOT IMPLEMENTED."""

    device = "/dev/tdx_guest"
    kind = "dcap"
