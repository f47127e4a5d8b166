"""Typed claims: what verified evidence says about an enclave, whatever its TEE kind.

Every backend returns a :class:`Claims`; the policy and the node read only this. Claims are
computed locally by every verifier: a sender's own description of its evidence counts for
nothing, so nothing here is ever decoded from the wire.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping


class TcbStatus(enum.Enum):
    """Trusted-computing-base status, Intel's vocabulary, best first.

    ``NOT_EVALUATED`` is for formats without TCB collateral (Nitro, NVIDIA, simulated); a
    minimum-TCB policy does not apply to them. SEV-SNP compares TCB versions instead.
    """

    UP_TO_DATE = "UpToDate"
    SW_HARDENING_NEEDED = "SWHardeningNeeded"
    CONFIGURATION_NEEDED = "ConfigurationNeeded"
    CONFIGURATION_AND_SW_HARDENING_NEEDED = "ConfigurationAndSWHardeningNeeded"
    OUT_OF_DATE = "OutOfDate"
    OUT_OF_DATE_CONFIGURATION_NEEDED = "OutOfDateConfigurationNeeded"
    REVOKED = "Revoked"
    NOT_EVALUATED = "NotEvaluated"

    @property
    def rank(self) -> int:
        """0 for UpToDate, growing as the status gets worse (NOT_EVALUATED ranks -1)."""
        return _TCB_RANK[self]

    def is_at_least(self, minimum: TcbStatus) -> bool:
        """True when this status is as good as ``minimum`` or better."""
        return 0 <= self.rank <= minimum.rank

    @classmethod
    def worst(cls, *statuses: TcbStatus) -> TcbStatus:
        """Combine statuses of several components the way Intel's QVL converges them."""
        worst = max(statuses, key=lambda s: s.rank)
        config = any(
            s in (cls.CONFIGURATION_NEEDED, cls.CONFIGURATION_AND_SW_HARDENING_NEEDED)
            for s in statuses
        )
        if worst is cls.OUT_OF_DATE and config:
            return cls.OUT_OF_DATE_CONFIGURATION_NEEDED
        return worst


_TCB_RANK = {
    TcbStatus.NOT_EVALUATED: -1,
    TcbStatus.UP_TO_DATE: 0,
    TcbStatus.SW_HARDENING_NEEDED: 1,
    TcbStatus.CONFIGURATION_NEEDED: 2,
    TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED: 3,
    TcbStatus.OUT_OF_DATE: 4,
    TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED: 5,
    TcbStatus.REVOKED: 6,
}

SIMULATED_LABEL = "SIMULATED TEE — NOT REAL SECURITY"


@dataclasses.dataclass(frozen=True)
class Claims:
    """What verified evidence establishes.

    Attributes:
        kind: the TEE kind (``nitro``, ``sev-snp``, ``dcap``, ``nvidia``, ``simulated``).
        measurement: the primary code measurement policies pin (Nitro PCR0, SEV-SNP
            MEASUREMENT, SGX MRENCLAVE, TDX MRTD, simulated measurement, NVIDIA: SHA-384 over
            all measurement blocks).
        measurements: every named measurement, e.g. ``pcr0``..``pcr15``, ``rtmr0``.
        debug: the enclave runs in debug mode (its memory is readable by the host).
        platform_id: chip or platform identity (SEV chip id, Intel PPID, Nitro module id...).
        tcb_status: TCB status when the format has TCB collateral.
        tcb: reported TCB components, name -> security version number.
        report_data: the enclave-chosen data the evidence signs (binding lives here).
        signed_at: unix seconds when the evidence was produced, when the format says.
        valid_from: earliest unix second at which this verification holds (certificates,
            collateral); the verification cache honours it.
        valid_until: last unix second at which it holds.
        simulated: True only for the software TEE; never real security.
        details: extra human-readable facts (product, quote version, TEE type...).
    """

    kind: str
    measurement: bytes
    measurements: tuple[tuple[str, bytes], ...] = ()
    debug: bool = False
    platform_id: bytes = b""
    tcb_status: TcbStatus = TcbStatus.NOT_EVALUATED
    tcb: tuple[tuple[str, int], ...] = ()
    report_data: bytes = b""
    signed_at: int | None = None
    valid_from: int = 0
    valid_until: int = 2**63 - 1
    simulated: bool = False
    details: tuple[tuple[str, str], ...] = ()

    @property
    def measurement_map(self) -> Mapping[str, bytes]:
        return dict(self.measurements)

    @property
    def tcb_map(self) -> Mapping[str, int]:
        return dict(self.tcb)

    def narrowed(self, valid_from: int, valid_until: int) -> Claims:
        """A copy whose validity window is intersected with ``[valid_from, valid_until]``."""
        return dataclasses.replace(
            self,
            valid_from=max(self.valid_from, valid_from),
            valid_until=min(self.valid_until, valid_until),
        )

    def to_json_dict(self) -> dict[str, object]:
        """A JSON-ready view (bytes as hex). Simulated claims carry a loud label."""
        out: dict[str, object] = {
            "kind": self.kind,
            "simulated": self.simulated,
            "measurement": self.measurement.hex(),
            "measurements": {k: v.hex() for k, v in self.measurements},
            "debug": self.debug,
            "platform_id": self.platform_id.hex(),
            "tcb_status": self.tcb_status.value,
            "tcb": dict(self.tcb),
            "report_data": self.report_data.hex(),
            "signed_at": self.signed_at,
            "valid_from": self.valid_from,
            "valid_until": self.valid_until,
            "details": dict(self.details),
        }
        if self.simulated:
            out = {"label": SIMULATED_LABEL, **out}
        return out

    def describe(self) -> str:
        """Multi-line human-readable text; starts with the simulated label when simulated."""
        lines = [SIMULATED_LABEL] if self.simulated else []
        lines += [
            f"kind:         {self.kind}{' (SIMULATED)' if self.simulated else ''}",
            f"measurement:  {self.measurement.hex()}",
            f"debug:        {self.debug}",
            f"platform id:  {self.platform_id.hex()}",
            f"tcb status:   {self.tcb_status.value}",
        ]
        if self.tcb:
            lines.append("tcb:          " + ", ".join(f"{k}={v}" for k, v in self.tcb))
        lines.append(f"report data:  {self.report_data.hex()}")
        if self.signed_at is not None:
            lines.append(f"signed at:    {self.signed_at}")
        lines.append(f"valid:        {self.valid_from} .. {self.valid_until}")
        lines += [f"{k + ':':<13} {v}" for k, v in self.details]
        lines += [f"  {k}: {v.hex()}" for k, v in self.measurements]
        return "\n".join(lines)
