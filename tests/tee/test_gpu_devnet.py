"""End to end: a devnet node inside a (fake) SEV-SNP VM with a (fake) NVIDIA confidential GPU
is attested by its peers -- CPU and GPU evidence -- and serves a task a client verifies.

Real py-libp2p hosts on loopback and the real node, client and enclave code. What is
swapped, and only in this test: the node's enclave process runs in-process behind real
pipes (:class:`ThreadProcess`) so its sev-snp platform can read the fake configfs-tsm; the
configfs-tsm check looks at the fake tree; and every peer's verifier trusts the test AMD
chain for ``sev-snp`` and the test GPU chain for ``nvidia`` (the test roots replace the
pinned ones for this test only). The node is configured with ``gpu = "nvidia"``.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import pytest
import trio

from repp2p.attestation import default_backends
from repp2p.attestation import verify as verify_module
from repp2p.node import app as app_module
from repp2p.tee import Enclave
from repp2p.tee import enclave as enclave_module
from repp2p.tee.configfs_tsm import ConfigfsTsm
from repp2p.tee.enclave import check_platform
from repp2p.tee.platforms import Platform, SevSnpPlatform, default_platform
from repp2p.tee.snp_guest import SnpGuest
from repp2p.testing.network import node_config, start_node

from .devnet_checks import serves_verified_task
from .fake_gpu import FakeGpu, TestGpuChain
from .fake_snp import MEASUREMENT, FakeSnpKernel, TestAmdChain, ThreadProcess

pytestmark = pytest.mark.slow
DEV_POLICY = Path(__file__).resolve().parents[2] / "bootstrap" / "policy-dev.toml"


async def test_a_devnet_node_with_a_fake_gpu_is_attested_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = TestAmdChain.generate()
    kernel = FakeSnpKernel(tmp_path / "cvm", chain)
    gpu_chain = TestGpuChain()
    gpu = FakeGpu(gpu_chain)
    trusted = dict(default_backends(), **{"sev-snp": chain.backend()}, nvidia=gpu_chain.backend())

    def factory(spec: dict, seed: bytes, measurement: bytes) -> Platform:
        if spec["kind"] != "sev-snp":  # the bootstrap node: simulated
            return default_platform(spec, seed, measurement)
        assert spec["gpu"] == "nvidia"
        return SevSnpPlatform(SnpGuest(ConfigfsTsm(kernel.root, files=kernel)), gpu)

    monkeypatch.setattr(verify_module, "_DEFAULT", MappingProxyType(trusted))

    def check_fake_cvm(kind: str, tsm_root: str = "/") -> None:
        check_platform(kind, str(kernel.root))  # the real check, on the fake tree

    monkeypatch.setattr(app_module, "check_platform", check_fake_cvm)
    monkeypatch.setattr(enclave_module, "check_platform", check_fake_cvm)
    monkeypatch.setattr(Enclave, "_spawn", staticmethod(lambda stderr: ThreadProcess(factory)))
    # The dev policy, plus: this CVM image (its launch measurement) runs the echo engine.
    policy = tmp_path / "policy.toml"
    policy.write_text(
        DEV_POLICY.read_text() + f'\n[measurements."echo"]\nsev-snp = ["{MEASUREMENT.hex()}"]\n'
    )
    async with trio.open_nursery() as nursery:
        boot = await start_node(nursery, node_config(tmp_path, "boot", policy=str(policy)))
        snp = await start_node(
            nursery,
            node_config(
                tmp_path,
                "snp",
                (boot.addrs()[0],),
                tee_kind="sev-snp",
                policy=str(policy),
                gpu="nvidia",
            ),
        )
        nodes = [boot, snp]
        assert snp.enclave is not None and snp.enclave.kind == "sev-snp"
        assert kernel.reports_served >= 2  # the startup report and the first attestation
        assert gpu.nonces  # the first attestation asked the GPU first
        try:
            await serves_verified_task(
                tmp_path, policy, boot, snp, "sev-snp", b"inside the CVM", MEASUREMENT
            )
            # The published record carries the GPU evidence the CPU report commits to.
            records = boot.store.query(type="Attestation", signer=snp.peer_id)
            assert records and all(r.record.gpu_evidence for r in records)
        finally:
            for node in nodes:
                node.stop()
