"""Where an enclave process gets its evidence: the simulated platform or a hardware TEE.

The enclave process (:mod:`repp2p.tee.worker`) holds the keys and asks its *platform* for
evidence binding them (:func:`repp2p.attestation.expected_report_data`). Two platforms:

* ``simulated``: :class:`repp2p.attestation.SimulatedEnclave` (dev network only; its
  measurement is :func:`repp2p.tee.enclave_measurement` over the engines served);
* ``sev-snp``: the enclave process runs inside an SEV-SNP confidential VM (the VM is the
  TEE) and reports come from configfs-tsm (:class:`repp2p.tee.snp_guest.SnpGuest`); the
  measurement is the VM's launch measurement, read from a report at start (kernels
  before 6.7: ``/dev/sev-guest``, :class:`repp2p.tee.guest_devices.SevGuestDevice`);
* ``dcap`` (operators may write ``tdx``): the same inside an Intel TDX trust domain, DCAP
  quotes through configfs-tsm (:class:`repp2p.tee.tdx_guest.TdxGuest`; kernels before
  6.7: ``/dev/tdx_guest`` and the host's quote service,
  :class:`repp2p.tee.guest_devices.TdxGuestDevice`); the measurement is the TD's MRTD;
* ``nitro``: the enclave process runs inside an AWS Nitro Enclave (reached by the node
  over vsock, :mod:`repp2p.tee.vsock`); documents from the NSM
  (:class:`repp2p.tee.nsm.NsmDevice`); the measurement is PCR0 of the enclave image.

The platform spec arrives in the ``start`` request from the node as ``{"kind": ...,
"collateral_file": ..., "gpu": None | "nvidia"}``; with a GPU, each attestation first
collects the GPU's evidence and then the CPU report committing to it
(:mod:`repp2p.tee.gpu`). It never names a configfs root: the enclave process always uses
the machine's (tests inject a fake kernel through :func:`repp2p.tee.worker.serve`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from repp2p.attestation.binding import expected_gpu_nonce, expected_report_data
from repp2p.attestation.simulated import SimulatedEnclave
from repp2p.tee.configfs_tsm import ConfigfsTsm
from repp2p.tee.errors import (
    UNAVAILABLE_REASONS,
    EnclaveError,
    EnclaveReason,
    TeeInterfaceError,
)
from repp2p.tee.gpu import GPU_KINDS, GpuEvidenceProvider, gpu_evidence, gpu_provider
from repp2p.tee.guest_devices import SevGuestDevice, TdxGuestDevice
from repp2p.tee.nsm import NsmDevice
from repp2p.tee.snp_guest import SnpGuest
from repp2p.tee.tdx_guest import TdxGuest

#: TEE kinds an enclave process can run on in this release.
RUNNABLE_KINDS = frozenset({"simulated", "sev-snp", "dcap", "nitro"})
#: names operators may use for a kind (``tee_kind = "tdx"`` is the ``dcap`` evidence kind)
KIND_ALIASES = {"tdx": "dcap"}


def canonical_kind(kind: str) -> str:
    """The ``Attestation.tee_kind`` for an operator's ``tee_kind`` (``tdx`` -> ``dcap``)."""
    return KIND_ALIASES.get(kind, kind)


class Platform(Protocol):
    """What the enclave process needs from its TEE."""

    kind: str
    measurement: bytes

    def attest(
        self, peer_id: str, enc_key: bytes, result_key: bytes, epoch: int, nonce: bytes, now: int
    ) -> tuple[bytes, bytes, bytes]:
        """``(evidence, collateral, gpu_evidence)`` binding the keys to ``peer_id``,
        ``epoch``, ``nonce`` (``gpu_evidence`` empty without a GPU)."""
        ...


def enclave_error(exc: TeeInterfaceError) -> EnclaveError:
    """The enclave-side error for a failed TEE interface (unavailable vs failed)."""
    reason = (
        EnclaveReason.TEE_UNAVAILABLE
        if exc.reason in UNAVAILABLE_REASONS
        else EnclaveReason.TEE_FAILED
    )
    return EnclaveError(reason, f"{exc.reason.value}: {exc.detail}")


class SimulatedPlatform:
    """The SIMULATED TEE (NOT REAL SECURITY): software-signed evidence, no collateral."""

    kind = "simulated"

    def __init__(self, seed: bytes, measurement: bytes) -> None:
        def derive(label: bytes) -> bytes:
            return hashlib.sha256(b"repp2p simulated enclave " + label + b"\0" + seed).digest()

        self.measurement = measurement
        self._enclave = SimulatedEnclave(
            seed=derive(b"platform"),
            measurement=measurement,
            platform_id=derive(b"platform id")[:16],
        )

    def attest(
        self, peer_id: str, enc_key: bytes, result_key: bytes, epoch: int, nonce: bytes, now: int
    ) -> tuple[bytes, bytes, bytes]:
        return self._enclave.attest(peer_id, enc_key, result_key, epoch, nonce, now), b"", b""


class CvmGuest(Protocol):
    """A hardware TEE's evidence source (:class:`SnpGuest`, :class:`TdxGuest`,
    :class:`NsmDevice`, :class:`SevGuestDevice`)."""

    kind: str

    def check_available(self) -> None: ...

    def evidence(self, report_data: bytes) -> tuple[bytes, bytes]: ...

    def measurement(self) -> bytes: ...


class CvmPlatform:
    """A hardware TEE (a confidential VM, or a Nitro Enclave): evidence from its interface.

    Raises (at construction):
        EnclaveError: TEE_UNAVAILABLE when the interface or its collateral is missing,
            TEE_FAILED when the first report fails.
    """

    def __init__(self, guest: CvmGuest, gpu: GpuEvidenceProvider | None = None) -> None:
        self._guest = guest
        self._gpu = gpu
        self.kind = guest.kind
        try:
            guest.check_available()
            if gpu is not None:
                gpu.check_available()
            # One report now: the launch measurement, and proof the interface works
            # before the node announces anything.
            self.measurement = guest.measurement()
        except TeeInterfaceError as exc:
            raise enclave_error(exc) from None

    def attest(
        self, peer_id: str, enc_key: bytes, result_key: bytes, epoch: int, nonce: bytes, now: int
    ) -> tuple[bytes, bytes, bytes]:
        try:
            gpu = b""
            if self._gpu is not None:  # first the GPU, then the CPU report committing to it
                gpu_nonce = expected_gpu_nonce(peer_id, enc_key, result_key, epoch, nonce)
                gpu = gpu_evidence(self._gpu, gpu_nonce)
            data = expected_report_data(peer_id, enc_key, result_key, epoch, nonce, gpu)
            evidence, collateral = self._guest.evidence(data)
        except TeeInterfaceError as exc:
            raise enclave_error(exc) from None
        return evidence, collateral, gpu


class SevSnpPlatform(CvmPlatform):
    """An SEV-SNP confidential VM: reports through configfs-tsm."""


def snp_guest(collateral_file: Path | None, root: str = "/") -> CvmGuest:
    """The SEV-SNP evidence source here: configfs-tsm, else ``/dev/sev-guest``.

    When neither exists this is the configfs-tsm source, whose MISSING error names what to
    install (newer kernels have configfs-tsm, and it is the one we prefer).
    """
    tsm = ConfigfsTsm(root)
    device = SevGuestDevice(root, collateral_file=collateral_file)
    if not tsm.report_dir.is_dir() and device.path.exists():
        return device
    return SnpGuest(tsm, collateral_file=collateral_file)


def tdx_guest(collateral_file: Path | None, root: str = "/") -> CvmGuest:
    """The TDX evidence source here: configfs-tsm, else ``/dev/tdx_guest`` with the host's
    quote service over vsock (:class:`TdxGuestDevice`)."""
    tsm = ConfigfsTsm(root)
    device = TdxGuestDevice(root, collateral_file=collateral_file)
    if not tsm.report_dir.is_dir() and device.path.exists():
        return device
    return TdxGuest(tsm, collateral_file=collateral_file)


#: Builds a platform: ``(spec from the start request, key seed, simulated measurement)``.
PlatformFactory = Callable[[dict, bytes, bytes], Platform]


def default_platform(spec: dict, seed: bytes, simulated_measurement: bytes) -> Platform:
    """The machine's platform for ``spec`` (see the module docstring).

    Raises:
        EnclaveError: BAD_REQUEST for a malformed spec or a kind without a runtime,
            TEE_UNAVAILABLE / TEE_FAILED from the hardware.
    """
    kind = spec.get("kind", "simulated")
    if not isinstance(kind, str):
        raise EnclaveError(EnclaveReason.BAD_REQUEST, "platform kind must be a string")
    kind = canonical_kind(kind)
    gpu_kind = spec.get("gpu")
    if gpu_kind is not None and gpu_kind not in GPU_KINDS:
        raise EnclaveError(EnclaveReason.BAD_REQUEST, f"unknown gpu {str(gpu_kind)[:32]!r}")
    if kind == "simulated":
        if gpu_kind is not None:
            raise EnclaveError(EnclaveReason.BAD_REQUEST, "GPU evidence needs a hardware tee_kind")
        return SimulatedPlatform(seed, simulated_measurement)
    gpu = gpu_provider(gpu_kind) if gpu_kind is not None else None
    collateral = spec.get("collateral_file")
    if collateral is not None and not isinstance(collateral, str):
        raise EnclaveError(EnclaveReason.BAD_REQUEST, "collateral_file must be a path")
    collateral_path = Path(collateral) if collateral else None
    if kind == "sev-snp":
        return SevSnpPlatform(snp_guest(collateral_path), gpu)
    if kind == "dcap":
        return CvmPlatform(tdx_guest(collateral_path), gpu)
    if kind == "nitro":
        if gpu is not None:  # a Nitro Enclave has no PCI devices
            raise EnclaveError(EnclaveReason.BAD_REQUEST, "a Nitro Enclave has no GPU")
        return CvmPlatform(NsmDevice())
    raise EnclaveError(
        EnclaveReason.BAD_REQUEST, f"no enclave runtime for TEE kind {kind!r} in this release"
    )
