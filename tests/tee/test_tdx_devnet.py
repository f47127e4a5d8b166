"""End to end: a devnet node inside a (fake) Intel TDX VM is attested by its peers and serves
a task that a client verifies.

Real py-libp2p hosts on loopback and the real node, client and enclave code. What is
swapped, and only in this test: the node's enclave process runs in-process behind real
pipes (:class:`ThreadProcess`) so its dcap platform can read the fake configfs-tsm; the
configfs-tsm check looks at the fake tree; and every peer's DCAP verifier trusts the test
PCK chain's root (the test root replaces Intel's for this test only). The node is
configured as an operator would: ``tee_kind = "tdx"`` and ``tee_collateral`` naming the
collateral JSON.
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
from repp2p.tee.enclave import check_platform
from repp2p.testing.network import node_config, start_node

from .devnet_checks import serves_verified_task
from .fake_snp import ThreadProcess
from .fake_tdx import MRTD, FakeTdxKernel, TestIntelChain, fake_tdx_factory

pytestmark = pytest.mark.slow
DEV_POLICY = Path(__file__).resolve().parents[2] / "bootstrap" / "policy-dev.toml"


async def test_a_devnet_node_on_fake_tdx_serves_verified_tasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = TestIntelChain.generate()
    kernel = FakeTdxKernel(tmp_path / "td", chain)
    collateral = tmp_path / "tdx-collateral.json"
    collateral.write_bytes(chain.collateral())
    trusted = dict(default_backends(), dcap=chain.backend())
    monkeypatch.setattr(verify_module, "_DEFAULT", MappingProxyType(trusted))

    def check_fake_td(kind: str, tsm_root: str = "/") -> None:
        check_platform(kind, str(kernel.root))  # the real check, on the fake tree

    monkeypatch.setattr(app_module, "check_platform", check_fake_td)
    monkeypatch.setattr(enclave_module, "check_platform", check_fake_td)
    monkeypatch.setattr(
        Enclave, "_spawn", staticmethod(lambda stderr: ThreadProcess(fake_tdx_factory(kernel)))
    )
    # The dev policy, plus: this TD image (its MRTD) runs the echo engine.
    policy = tmp_path / "policy.toml"
    policy.write_text(
        DEV_POLICY.read_text() + f'\n[measurements."echo"]\ndcap = ["{MRTD.hex()}"]\n'
    )
    async with trio.open_nursery() as nursery:
        boot = await start_node(nursery, node_config(tmp_path, "boot", policy=str(policy)))
        config = node_config(
            tmp_path, "tdx", (boot.addrs()[0],), tee_kind="tdx", policy=str(policy),
            tee_collateral=str(collateral),
        )  # fmt: skip
        assert config.tee_kind == "dcap"
        td = await start_node(nursery, config)
        nodes = [boot, td]
        assert td.enclave is not None and td.enclave.kind == "dcap"
        assert kernel.reports_served >= 2  # the startup quote and the first attestation
        try:
            await serves_verified_task(tmp_path, policy, boot, td, "dcap", b"inside the TD", MRTD)
        finally:
            for node in nodes:
                node.stop()
