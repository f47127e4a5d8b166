"""Every backend passes the conformance suite shipped in repp2p.attestation.testing."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repp2p.attestation import (
    DcapBackend,
    NitroBackend,
    NvidiaBackend,
    SevSnpBackend,
    SimulatedBackend,
    SimulatedEnclave,
)
from repp2p.attestation import testing as conformance
from repp2p.attestation.abc import TEEBackendAPI
from repp2p.errors import AttestationError

from . import conftest as c


def _simulated() -> tuple[TEEBackendAPI, conformance.Sample]:
    ev = SimulatedEnclave(seed=b"\x05" * 32, measurement=c.MEASUREMENT).evidence(
        b"\x01" * 64, 10**9
    )
    return SimulatedBackend(), conformance.Sample(ev, b"", 10**9, "simulated")


def _nitro() -> tuple[TEEBackendAPI, conformance.Sample]:
    ev = c.vector("nitro/valid-attestation-doc-bytes")
    return NitroBackend(), conformance.Sample(ev, b"", c.NITRO_VALID_AT, "nitro")


def _sev() -> tuple[TEEBackendAPI, conformance.Sample]:
    ev, col = c.vector("sev-snp/attestation.bin"), c.vector("sev-snp/vcek.testcer")
    return SevSnpBackend(), conformance.Sample(ev, col, c.SEV_GO_AT, "sev-snp")


def _dcap() -> tuple[TEEBackendAPI, conformance.Sample]:
    ev, col = c.vector("tdx-sgx/sgx_quote"), c.vector("tdx-sgx/sgx_quote_collateral.json")
    return DcapBackend(), conformance.Sample(ev, col, c.DCAP_SGX_AT, "dcap")


def _nvidia() -> tuple[TEEBackendAPI, conformance.Sample]:
    report = bytes.fromhex(c.vector("nvidia-h100/hopperAttestationReport.txt").decode().strip())
    chain = c.vector("nvidia-h100/hopperCertChain.txt")
    return NvidiaBackend(), conformance.Sample(report, chain, c.NVIDIA_AT, "nvidia")


FACTORIES = {
    "simulated": _simulated,
    "nitro": _nitro,
    "sev-snp": _sev,
    "dcap": _dcap,
    "nvidia": _nvidia,
}


@pytest.fixture(params=sorted(FACTORIES))
def backend_and_sample(request):  # type: ignore[no-untyped-def]
    return FACTORIES[request.param]()


@pytest.mark.parametrize("check", conformance.ALL_CHECKS, ids=lambda f: f.__name__)
def test_conformance(backend_and_sample, check) -> None:  # type: ignore[no-untyped-def]
    backend, sample = backend_and_sample
    check(backend, sample)


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_fuzz_never_crashes(kind: str) -> None:
    backend, sample = FACTORIES[kind]()

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.binary(max_size=2048), st.sampled_from([b"", sample.collateral]))
    def run(data: bytes, collateral: bytes) -> None:
        try:
            backend.verify(data, collateral, sample.now)
        except AttestationError:
            pass

    run()


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_fuzz_mutations_never_accepted(kind: str) -> None:
    backend, sample = FACTORIES[kind]()

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.integers(0, len(sample.evidence) - 1), st.integers(1, 255))
    def run(pos: int, xor: int) -> None:
        ev = bytearray(sample.evidence)
        ev[pos] ^= xor
        conformance.expect_rejection(backend, bytes(ev), sample.collateral, sample.now)

    run()
