"""End to end: a devnet node inside a (fake) SEV-SNP VM is attested by its peers and serves
a task that a client verifies.

Real py-libp2p hosts on loopback and the real node, client and enclave code. What is
swapped, and only in this test: the node's enclave process runs in-process behind real
pipes (:class:`ThreadProcess`) so its sev-snp platform can read the fake configfs-tsm; the
configfs-tsm check looks at the fake tree; and every peer's verifier trusts the test AMD
chain for ``sev-snp`` (the test roots replace the pinned ones for this test only).
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
from .fake_snp import MEASUREMENT, FakeSnpKernel, TestAmdChain, ThreadProcess, fake_cvm_factory

pytestmark = pytest.mark.slow
DEV_POLICY = Path(__file__).resolve().parents[2] / "bootstrap" / "policy-dev.toml"


async def test_a_devnet_node_on_fake_snp_serves_verified_tasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = TestAmdChain.generate()
    kernel = FakeSnpKernel(tmp_path / "cvm", chain)
    trusted = dict(default_backends(), **{"sev-snp": chain.backend()})
    monkeypatch.setattr(verify_module, "_DEFAULT", MappingProxyType(trusted))

    def check_fake_cvm(kind: str, tsm_root: str = "/") -> None:
        check_platform(kind, str(kernel.root))  # the real check, on the fake tree

    monkeypatch.setattr(app_module, "check_platform", check_fake_cvm)
    monkeypatch.setattr(enclave_module, "check_platform", check_fake_cvm)
    monkeypatch.setattr(
        Enclave, "_spawn", staticmethod(lambda stderr: ThreadProcess(fake_cvm_factory(kernel)))
    )
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
                tmp_path, "snp", (boot.addrs()[0],), tee_kind="sev-snp", policy=str(policy)
            ),
        )
        nodes = [boot, snp]
        assert snp.enclave is not None and snp.enclave.kind == "sev-snp"
        assert kernel.reports_served >= 2  # the startup report and the first attestation
        try:
            await serves_verified_task(
                tmp_path, policy, boot, snp, "sev-snp", b"inside the CVM", MEASUREMENT
            )
        finally:
            for node in nodes:
                node.stop()
