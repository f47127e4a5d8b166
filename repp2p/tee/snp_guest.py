"""SEV-SNP evidence from inside the confidential VM (the VM is the TEE).

The report comes from configfs-tsm (:class:`repp2p.tee.configfs_tsm.ConfigfsTsm`, provider
``sev_guest``); its collateral (VCEK, ASK, ARK as concatenated DER, what
:class:`repp2p.attestation.SevSnpBackend` takes) from the report's certificate table
(``auxblob``) or, when the host provides none, from a file the operator fetched once
from AMD's KDS (docs/operators.md says how).

What the kernel returns is checked for shape only: exactly one ATTESTATION_REPORT, which
must echo our report data (a report about other data would fail every peer's binding
check, so we refuse it here with a clear error). The cryptographic checks are the
verifiers', on every peer.

Kernels without configfs-tsm (before 6.7) have ``/dev/sev-guest``:
:class:`repp2p.tee.guest_devices.SevGuestDevice` serves the same call through its
SNP_GET_EXT_REPORT ioctl.
"""

from __future__ import annotations

from pathlib import Path

from repp2p.attestation.certs import load_certificates
from repp2p.errors import AttestationError
from repp2p.tee.configfs_tsm import PROBE_HINT, ConfigfsTsm
from repp2p.tee.errors import TeeInterfaceError, TeeInterfaceReason
from repp2p.tee.snp_certs import parse_cert_table, vcek_collateral

KIND = "sev-snp"
PROVIDER = "sev_guest"
REPORT_SIZE = 0x4A0
REPORT_DATA = slice(0x50, 0x90)
MEASUREMENT = slice(0x90, 0xC0)
_MAX_COLLATERAL_FILE = 64 * 1024


def _load_collateral_file(path: Path) -> bytes:
    """The operator's VCEK chain file as concatenated DER (PEM or DER on disk)."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(_MAX_COLLATERAL_FILE + 1)
    except OSError as exc:
        raise TeeInterfaceError(
            TeeInterfaceReason.MISSING,
            f"SEV-SNP collateral file {path}: {exc.strerror or exc}",
        ) from None
    if len(raw) > _MAX_COLLATERAL_FILE:
        raise TeeInterfaceError(TeeInterfaceReason.MALFORMED, f"{path} is not a VCEK chain")
    try:
        return b"".join(c.der for c in load_certificates(raw))
    except AttestationError as exc:
        raise TeeInterfaceError(
            TeeInterfaceReason.MALFORMED, f"{path} is not a certificate file: {exc.detail}"
        ) from None


def checked_evidence(
    report: bytes,
    cert_table: bytes,
    report_data: bytes,
    collateral_file: Path | None,
    source: str,
) -> tuple[bytes, bytes]:
    """``(report, collateral)`` once ``report`` is one SEV-SNP report about ``report_data``.

    The collateral comes from the certificate table or, when it holds no VCEK, from
    ``collateral_file``. Shared by configfs-tsm and the ``/dev/sev-guest`` fallback.

    Raises:
        TeeInterfaceError: MALFORMED (size, echo, table), MISSING (no VCEK anywhere).
    """
    if len(report) != REPORT_SIZE:
        raise TeeInterfaceError(
            TeeInterfaceReason.MALFORMED,
            f"{source} is {len(report)} bytes, an SEV-SNP report is {REPORT_SIZE}",
        )
    if report[REPORT_DATA] != bytes(report_data):
        raise TeeInterfaceError(
            TeeInterfaceReason.MALFORMED, "the SEV-SNP report does not carry our report data"
        )
    collateral = vcek_collateral(parse_cert_table(cert_table))
    if not collateral:
        if collateral_file is None:
            raise TeeInterfaceError(
                TeeInterfaceReason.MISSING,
                "the host put no VCEK in the certificate table and no "
                "collateral file is configured: fetch the VCEK chain once from AMD's KDS "
                f"(docs/operators.md); {PROBE_HINT}",
            )
        collateral = _load_collateral_file(collateral_file)
    return bytes(report), collateral


class SnpGuest:
    """SEV-SNP reports and their collateral, inside an SEV-SNP VM.

    Args:
        tsm: the configfs-tsm interface (default: the machine's).
        collateral_file: VCEK (+ ASK, ARK) file used when the certificate table is empty.
    """

    kind = KIND

    def __init__(self, tsm: ConfigfsTsm | None = None, collateral_file: Path | None = None):
        self.tsm = tsm or ConfigfsTsm()
        self.collateral_file = collateral_file

    def check_available(self) -> None:
        """Raise MISSING when configfs-tsm is absent (cheap; creates nothing)."""
        self.tsm.check_available()

    def evidence(self, report_data: bytes) -> tuple[bytes, bytes]:
        """``(report, collateral)`` for 64 bytes of report data.

        Raises:
            TeeInterfaceError: from configfs-tsm, or MALFORMED when the report is not one
                SEV-SNP report about ``report_data``, or MISSING when no VCEK is available.
        """
        result = self.tsm.report(report_data, provider=PROVIDER)
        return checked_evidence(
            result.outblob, result.auxblob, report_data, self.collateral_file, "sev_guest outblob"
        )

    def measurement(self) -> bytes:
        """The VM's launch measurement (48 bytes), from a report about nothing in particular.

        Taken once when the enclave runtime starts: it also proves the interface works
        before the node announces anything.
        """
        report, _ = self.evidence(b"repp2p/sev-snp/startup".ljust(64, b"\0"))
        return report[MEASUREMENT]
