"""End to end: a devnet node whose enclave runs in a (fake) AWS Nitro Enclave is attested by
its peers and serves a task that a client verifies.

Real py-libp2p hosts on loopback and the real node, client and enclave code. What is
swapped, and only in this test: vsock is a socket pair (the node's connection to
``tee_enclave`` reaches an enclave request loop in this process, on the real frame
protocol), the enclave's ``/dev/nsm`` is a fake NSM signing documents with a test chain,
the platform check looks at a fake parent-instance tree, and every peer's Nitro verifier
trusts the test root instead of AWS's (for this test only).
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
from .fake_nitro import PCR0, FakeNsm, TestNitroChain, fake_nitro_factory, socket_enclave

pytestmark = pytest.mark.slow
DEV_POLICY = Path(__file__).resolve().parents[2] / "bootstrap" / "policy-dev.toml"


async def test_a_devnet_node_on_fake_nitro_serves_verified_tasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = TestNitroChain()
    nsm = FakeNsm(tmp_path / "enclave", chain)
    parent = tmp_path / "parent"
    (parent / "dev").mkdir(parents=True)
    (parent / "dev/nitro_enclaves").write_bytes(b"")
    trusted = dict(default_backends(), nitro=chain.backend())
    monkeypatch.setattr(verify_module, "_DEFAULT", MappingProxyType(trusted))

    def check_fake_parent(kind: str, tsm_root: str = "/") -> None:
        check_platform(kind, str(parent))  # the real check, on the fake parent's tree

    addresses: list[str] = []

    def connect_fake_vsock(address: str):  # type: ignore[no-untyped-def]
        addresses.append(address)
        return socket_enclave(fake_nitro_factory(nsm))

    monkeypatch.setattr(app_module, "check_platform", check_fake_parent)
    monkeypatch.setattr(enclave_module, "check_platform", check_fake_parent)
    monkeypatch.setattr(Enclave, "_connect_enclave", staticmethod(connect_fake_vsock))
    policy = tmp_path / "policy.toml"
    policy.write_text(
        DEV_POLICY.read_text() + f'\n[measurements."echo"]\nnitro = ["{PCR0.hex()}"]\n'
    )
    async with trio.open_nursery() as nursery:
        boot = await start_node(nursery, node_config(tmp_path, "boot", policy=str(policy)))
        config = node_config(
            tmp_path, "nitro", (boot.addrs()[0],), tee_kind="nitro", policy=str(policy),
            tee_enclave="vsock:16:5005",
        )  # fmt: skip
        node = await start_node(nursery, config)
        nodes = [boot, node]
        assert addresses == ["vsock:16:5005"]
        assert node.enclave is not None and node.enclave.kind == "nitro"
        try:
            await serves_verified_task(
                tmp_path, policy, boot, node, "nitro", b"inside the enclave", PCR0
            )
            assert any("Attestation" in r for r in nsm.requests)
        finally:
            for n in nodes:
                n.stop()
