"""GPU evidence (NVIDIA confidential computing) collected by the enclave runtime.

A fake SEV-SNP kernel for the CPU and a fake GPU provider (SPDM reports signed by a test
chain) for the GPU; peers verify both with the production verifiers under test roots.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from repp2p.attestation import NvidiaBackend, Policy, expected_gpu_nonce, verify_node
from repp2p.attestation.nvidia import encode_gpu_evidence
from repp2p.errors import AttestationError, AttestationReason, ConfigError
from repp2p.identity import Identity
from repp2p.tee import Enclave, EnclaveError, EnclaveReason
from repp2p.tee.configfs_tsm import ConfigfsTsm
from repp2p.tee.errors import TeeInterfaceError, TeeInterfaceReason
from repp2p.tee.gpu import NvmlGpu, gpu_evidence, gpu_provider
from repp2p.tee.platforms import Platform, SevSnpPlatform, default_platform
from repp2p.tee.snp_guest import SnpGuest

from .fake_gpu import FakeGpu, FakeNvml, TestGpuChain
from .fake_snp import MEASUREMENT, FakeSnpKernel, TestAmdChain, ThreadProcess

NOW = 1_800_000_000
NODE = Identity.from_seed(b"\x0d" * 32)
NONCE = b"\x61" * 32


def policy_for(gpu_chain: TestGpuChain) -> Policy:
    """A production policy pinning the fake VM's launch measurement and the fake GPU's."""
    report = gpu_chain.report(bytes(32))
    gpu = gpu_chain.backend().verify(report, gpu_chain.chain_pem(), NOW).measurement
    return Policy(
        profile="production",
        accepted_kinds=frozenset({"sev-snp", "nvidia"}),
        measurements={"*": {"sev-snp": frozenset({MEASUREMENT}), "nvidia": frozenset({gpu})}},
        require_pinned_measurements=True,
    )


@pytest.fixture(scope="module")
def amd() -> TestAmdChain:
    return TestAmdChain.generate()


@pytest.fixture(scope="module")
def gpu_chain() -> TestGpuChain:
    return TestGpuChain()


def factory_for(kernel: FakeSnpKernel, gpu: FakeGpu):  # type: ignore[no-untyped-def]
    def factory(spec: dict, seed: bytes, measurement: bytes) -> Platform:
        assert spec.get("gpu") == "nvidia"
        return SevSnpPlatform(SnpGuest(ConfigfsTsm(kernel.root, files=kernel)), gpu)

    return factory


def start_request() -> dict:
    return {
        "op": "start", "engines": ["echo"], "seed": b"\x09" * 32, "cheat": False,
        "preload": True, "platform": {"kind": "sev-snp", "collateral_file": None, "gpu": "nvidia"},
    }  # fmt: skip


def test_cpu_evidence_commits_to_the_gpu_evidence(
    tmp_path: Path, amd: TestAmdChain, gpu_chain: TestGpuChain
) -> None:
    kernel, gpu = FakeSnpKernel(tmp_path, amd), FakeGpu(gpu_chain)
    backends = {"sev-snp": amd.backend(), "nvidia": gpu_chain.backend()}
    policy = policy_for(gpu_chain)
    with Enclave.connect(ThreadProcess(factory_for(kernel, gpu)), start_request(), 60) as enclave:
        keys = (enclave.enc_key, enclave.result_key)
        evidence, collateral, gpu_ev = enclave.attest_evidence(NODE.peer_id, 7, NONCE, NOW)
        assert gpu.nonces[-1] == expected_gpu_nonce(NODE.peer_id, *keys, 7, NONCE)

        def verify(gpu_evidence: bytes, backends=backends):  # type: ignore[no-untyped-def]
            return verify_node(
                NODE.peer_id, "sev-snp", evidence, collateral, gpu_evidence, *keys, 7, NONCE,
                policy, NOW, backends=backends,
            )  # fmt: skip

        verified = verify(gpu_ev)
        assert verified.gpu_claims is not None and verified.gpu_claims.kind == "nvidia"
        assert verified.claims.measurement == MEASUREMENT
        # The CPU report commits to exactly this GPU evidence: none, or another GPU's
        # report (even a valid one for the right nonce), breaks the binding.
        other = encode_gpu_evidence(TestGpuChain().report(gpu.nonces[-1]), gpu_chain.chain_pem())
        for swapped in (b"", other):
            with pytest.raises(AttestationError) as err:
                verify(swapped)
            assert err.value.reason is AttestationReason.REPORT_DATA_MISMATCH
        with pytest.raises(AttestationError) as err:  # NVIDIA's real root
            verify(gpu_ev, {"sev-snp": amd.backend(), "nvidia": NvidiaBackend()})
        assert err.value.reason is AttestationReason.UNTRUSTED_ROOT
        # A GPU answering another nonce is refused inside the enclave.
        gpu.wrong_nonce = True
        with pytest.raises(EnclaveError) as enclave_err:
            enclave.attest_evidence(NODE.peer_id, 7, NONCE, NOW)
        assert enclave_err.value.reason is EnclaveReason.TEE_FAILED


def test_a_gpu_that_is_not_ready_stops_the_start(
    tmp_path: Path, amd: TestAmdChain, gpu_chain: TestGpuChain
) -> None:
    gpu = FakeGpu(gpu_chain)
    gpu.available = False
    kernel = FakeSnpKernel(tmp_path, amd)
    with pytest.raises(EnclaveError) as err:
        Enclave.connect(ThreadProcess(factory_for(kernel, gpu)), start_request(), 60)
    assert err.value.reason is EnclaveReason.TEE_UNAVAILABLE and "CC mode" in err.value.detail


def test_nvml_provider(gpu_chain: TestGpuChain) -> None:
    nvml = FakeNvml(FakeGpu(gpu_chain))
    provider = NvmlGpu(nvml=nvml)
    envelope = gpu_evidence(provider, b"\x05" * 32)
    claims = gpu_chain.backend().verify(envelope, b"", NOW)
    assert claims.report_data == b"\x05" * 32
    for change, words in (
        ({"cc": 0}, "mode is off"),
        ({"devtools": 1}, "dev tools"),
        ({"count": 0}, "no GPU with NVML index 0"),
        ({"fail_init": True}, "NVML is not usable"),
    ):
        broken = FakeNvml(FakeGpu(gpu_chain))
        for name, value in change.items():
            setattr(broken, name, value)
        with pytest.raises(TeeInterfaceError) as err:
            NvmlGpu(nvml=broken).evidence(b"\x05" * 32)
        assert err.value.reason is TeeInterfaceReason.MISSING and words in err.value.detail
    with pytest.raises(ValueError):
        provider.evidence(b"short")


def test_without_nvml_bindings_the_error_says_what_to_install() -> None:
    try:
        import pynvml  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("pynvml is installed here")
    with pytest.raises(TeeInterfaceError) as err:
        gpu_provider("nvidia").check_available()
    assert err.value.reason is TeeInterfaceReason.MISSING and "nvidia-ml-py" in err.value.detail
    with pytest.raises(ValueError):
        gpu_provider("amd")


def test_gpu_specs_and_config_are_checked(tmp_path: Path) -> None:
    from repp2p.config import NodeConfig

    for spec in (
        {"kind": "simulated", "gpu": "nvidia"},
        {"kind": "sev-snp", "gpu": "tpu"},
        {"kind": "nitro", "gpu": "nvidia"},
    ):
        with pytest.raises(EnclaveError) as err:
            default_platform(spec, b"\0" * 32, b"\0" * 32)
        assert err.value.reason is EnclaveReason.BAD_REQUEST
    assert NodeConfig(data_dir=tmp_path, tee_kind="sev-snp", gpu="nvidia").gpu == "nvidia"
    for bad in ({"gpu": "nvidia"}, {"gpu": "amd", "tee_kind": "sev-snp"}):
        with pytest.raises(ConfigError):
            NodeConfig(data_dir=tmp_path, **bad)
