"""GPU evidence for a node whose confidential VM has an NVIDIA confidential-computing GPU.

The enclave process collects it just before the CPU evidence, in this order (the binding
of :mod:`repp2p.attestation.binding`):

1. the GPU's SPDM measurement report, requested with the nonce
   :func:`repp2p.attestation.expected_gpu_nonce` of the node's binding;
2. the CPU report, whose report data commits to the SHA-384 of that GPU evidence
   (:func:`repp2p.attestation.expected_report_data` with ``gpu_evidence``).

So a peer verifying the CPU evidence knows this GPU report was made for this node, these
keys and this epoch, and :class:`repp2p.attestation.NvidiaBackend` checks the report
itself. The evidence travels in ``Attestation.gpu_evidence`` as the envelope of
:func:`repp2p.attestation.nvidia.encode_gpu_evidence` (report and PEM chain).

Where it comes from is a :class:`GpuEvidenceProvider`: :class:`NvmlGpu` reads one GPU
through NVML (``nvidia-ml-py``: ``nvmlDeviceGetConfComputeGpuAttestationReport`` and
``nvmlDeviceGetConfComputeGpuCertificate``), after checking the system's confidential-
computing state; tests use a fake provider. One GPU per node in this release.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from repp2p.attestation.nvidia import MAX_REPORT_SIZE, encode_gpu_evidence
from repp2p.tee.errors import TeeInterfaceError, TeeInterfaceReason

GPU_KINDS = frozenset({"nvidia"})
PROBE_HINT = "run `repp2p tee probe` for what this machine offers"
_MAX_CHAIN = 16 * 1024
_NONCE = slice(4, 36)  # in the SPDM GET_MEASUREMENTS request that starts the report


class GpuEvidenceProvider(Protocol):
    """Where a node's GPU evidence comes from."""

    def check_available(self) -> None:
        """Raise TeeInterfaceError (MISSING, ...) unless evidence can be collected."""
        ...

    def evidence(self, nonce: bytes) -> tuple[bytes, bytes]:
        """``(SPDM report, PEM certificate chain)`` for a 32-byte nonce."""
        ...


def gpu_evidence(provider: GpuEvidenceProvider, nonce: bytes) -> bytes:
    """The ``Attestation.gpu_evidence`` envelope for ``nonce``, shape-checked.

    Raises:
        TeeInterfaceError: from the provider, or MALFORMED when the report is not one
            about ``nonce`` or is out of bounds.
    """
    report, chain = provider.evidence(nonce)
    if not 0 < len(report) <= MAX_REPORT_SIZE or not 0 < len(chain) <= _MAX_CHAIN:
        raise TeeInterfaceError(
            TeeInterfaceReason.MALFORMED,
            f"GPU evidence of {len(report)} bytes with a {len(chain)}-byte chain",
        )
    if report[_NONCE] != bytes(nonce):
        raise TeeInterfaceError(
            TeeInterfaceReason.MALFORMED, "the GPU report was not made for our nonce"
        )
    return encode_gpu_evidence(report, chain)


class NvmlGpu:
    """One NVIDIA GPU in confidential-computing mode, through NVML.

    Args:
        index: the GPU's NVML index.
        nvml: the ``pynvml`` module (default: imported on first use; tests pass a fake).
    """

    def __init__(self, index: int = 0, *, nvml: Any = None) -> None:
        self.index = index
        self._nvml = nvml
        self._ready = False

    def _module(self) -> Any:
        if self._nvml is None:
            try:
                self._nvml = importlib.import_module("pynvml")
            except ImportError:
                raise TeeInterfaceError(
                    TeeInterfaceReason.MISSING,
                    "NVML bindings are not installed (pip install 'repp2p[gpu]', i.e. "
                    f"nvidia-ml-py); {PROBE_HINT}",
                ) from None
        return self._nvml

    def check_available(self) -> None:
        """NVML loads, the system is in CC mode (not dev-tools mode), the GPU exists.

        Raises:
            TeeInterfaceError: MISSING (no bindings, driver or GPU; CC off), IO_ERROR.
        """
        nvml = self._module()
        try:
            nvml.nvmlInit()
            state = nvml.nvmlSystemGetConfComputeState()
            count = nvml.nvmlDeviceGetCount()
        except Exception as exc:  # pynvml raises NVMLError subclasses
            raise TeeInterfaceError(
                TeeInterfaceReason.MISSING,
                f"NVML is not usable (no NVIDIA driver, or too old for confidential "
                f"computing: {type(exc).__name__}: {str(exc)[:80]}); {PROBE_HINT}",
            ) from None
        if getattr(state, "ccFeature", 0) != 1:
            raise TeeInterfaceError(
                TeeInterfaceReason.MISSING,
                "the GPU's confidential-computing mode is off (`nvidia-smi conf-compute -f` "
                "shows it; an administrator turns it on, and the VM must be a CVM)",
            )
        if getattr(state, "devToolsMode", 0) != 0:
            raise TeeInterfaceError(
                TeeInterfaceReason.MISSING,
                "the GPU is in confidential-computing *dev tools* mode, which gives no "
                "confidentiality: turn dev tools mode off",
            )
        if not 0 <= self.index < count:
            raise TeeInterfaceError(
                TeeInterfaceReason.MISSING, f"no GPU with NVML index {self.index} ({count} GPUs)"
            )
        self._ready = True

    def evidence(self, nonce: bytes) -> tuple[bytes, bytes]:
        """``(SPDM report, PEM chain)`` of GPU ``index`` for ``nonce``.

        Raises:
            TeeInterfaceError: what :meth:`check_available` raises, or IO_ERROR.
        """
        if len(nonce) != 32:
            raise ValueError("the GPU nonce is 32 bytes")
        if not self._ready:
            self.check_available()
        nvml = self._module()
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(self.index)
            report = nvml.nvmlDeviceGetConfComputeGpuAttestationReport(handle, bytes(nonce))
            cert = nvml.nvmlDeviceGetConfComputeGpuCertificate(handle)
            raw = bytes(report.attestationReport[: report.attestationReportSize])
            chain = bytes(cert.attestationCertChain[: cert.attestationCertChainSize])
        except Exception as exc:
            raise TeeInterfaceError(
                TeeInterfaceReason.IO_ERROR,
                f"NVML GPU attestation failed: {type(exc).__name__}: {str(exc)[:80]}",
            ) from None
        return raw, chain


def gpu_provider(kind: str) -> GpuEvidenceProvider:
    """The machine's provider for ``gpu = kind`` (``nvidia``: :class:`NvmlGpu` of GPU 0).

    Raises:
        ValueError: an unknown kind.
    """
    if kind == "nvidia":
        return NvmlGpu()
    raise ValueError(f"unknown GPU kind {kind!r}")
