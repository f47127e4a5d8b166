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
from repp2p.client import Client
from repp2p.node import app as app_module
from repp2p.tee import Enclave
from repp2p.tee import enclave as enclave_module
from repp2p.tee.configfs_tsm import ConfigfsTsm
from repp2p.tee.enclave import check_platform
from repp2p.tee.platforms import Platform, SevSnpPlatform, default_platform
from repp2p.tee.snp_guest import SnpGuest
from repp2p.testing.network import EPOCH_S, dev_params, node_config, start_node

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
        ctx = Client.open(
            [boot.addrs()[0]],
            data_dir=tmp_path / "client",
            network_params=dev_params(),
            policy=str(policy),
        )
        client = await ctx.__aenter__()
        try:
            with trio.fail_after(3 * EPOCH_S):
                assert await client.wait_for_nodes("echo", 2, timeout=3 * EPOCH_S) >= 2
            with trio.fail_after(60):
                result = await client.submit("echo", b"inside the CVM", tee_kinds=("sev-snp",))
            assert result.output == b"inside the CVM"
            proof = result.proof
            assert proof.node == snp.peer_id and proof.tee_kind == "sev-snp"
            assert not proof.simulated and "SIMULATED" not in result.summary()
            # Its peers verified its attestation (test roots) and the pinned image's engines.
            with trio.fail_after(3 * EPOCH_S):
                while boot.keeper.verdict_of(snp.peer_id) is None:
                    await trio.sleep(0.1)
            verdict = boot.keeper.verdict_of(snp.peer_id)
            assert verdict is not None and verdict.verified and verdict.tee_kind == "sev-snp"
            # The published record carries the GPU evidence the CPU report commits to.
            records = boot.store.query(type="Attestation", signer=snp.peer_id)
            assert records and all(r.record.gpu_evidence for r in records)
            assert verdict.measurements == frozenset(snp.enclave.engine_measurements.values())
            status = snp.enclave.describe()
            assert status["kind"] == "sev-snp" and status["measurement"] == MEASUREMENT.hex()
        finally:
            await ctx.__aexit__(None, None, None)
            for node in nodes:
                node.stop()
