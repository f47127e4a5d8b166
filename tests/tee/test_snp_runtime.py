"""The enclave runtime on the sev-snp platform (inside an SEV-SNP VM), on the fake kernel.

The enclave request loop runs in this process (a thread behind real pipes, so the wire
protocol is the production one) with a platform factory backed by the fake configfs-tsm:
its attestation is verified by peers under a policy and roots that trust the test chain,
and a client verifies the result of a task it ran.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from repp2p.attestation import Policy, verify_node
from repp2p.errors import AttestationError, AttestationReason, ConfigError
from repp2p.identity import Identity
from repp2p.tee import Enclave, EnclaveError, EnclaveReason, TaskSecret, open_result, seal_input
from repp2p.tee.configfs_tsm import ConfigfsTsm
from repp2p.tee.enclave import check_platform
from repp2p.tee.platforms import SevSnpPlatform, default_platform
from repp2p.tee.snp_guest import SnpGuest

from .fake_snp import MEASUREMENT, FakeSnpKernel, TestAmdChain, ThreadProcess, fake_cvm_factory

NOW = 1_800_000_000
NODE = Identity.from_seed(b"\x09" * 32)
NONCE = b"\x24" * 32
#: a production policy pinning the fake VM's launch measurement for every engine
POLICY = Policy(
    profile="production",
    accepted_kinds=frozenset({"sev-snp"}),
    measurements={"*": {"sev-snp": frozenset({MEASUREMENT})}},
    require_pinned_measurements=True,
)


@pytest.fixture(scope="module")
def chain() -> TestAmdChain:
    return TestAmdChain.generate()


def start_request(**extra) -> dict:  # type: ignore[no-untyped-def]
    return {
        "op": "start",
        "engines": ["echo"],
        "seed": b"\x05" * 32,
        "cheat": False,
        "preload": True,
        "platform": {"kind": "sev-snp", "collateral_file": None},
        **extra,
    }


def test_snp_enclave_is_attested_and_serves_a_verified_task(
    tmp_path: Path, chain: TestAmdChain
) -> None:
    kernel = FakeSnpKernel(tmp_path, chain)
    enclave = Enclave.connect(ThreadProcess(fake_cvm_factory(kernel)), start_request(), 60)
    with enclave:
        assert enclave.kind == "sev-snp" and enclave.measurement == MEASUREMENT
        assert "NOT REAL SECURITY" not in repr(enclave)
        epoch = NOW // 60
        evidence, collateral = enclave.attest_with_collateral(NODE.peer_id, epoch, NONCE, NOW)
        assert collateral == chain.collateral()
        # Peers verify it under a policy and roots that trust the test chain...
        verified = verify_node(
            NODE.peer_id, "sev-snp", evidence, collateral, b"", enclave.enc_key,
            enclave.result_key, epoch, NONCE, POLICY, NOW, engines=["echo"],
            current_epoch=epoch, backends={"sev-snp": chain.backend()},
        )  # fmt: skip
        assert verified.claims.measurement == MEASUREMENT and not verified.simulated
        # ...and refuse it under the production roots.
        with pytest.raises(AttestationError) as err:
            verify_node(
                NODE.peer_id, "sev-snp", evidence, collateral, b"", enclave.enc_key,
                enclave.result_key, epoch, NONCE, POLICY, NOW,
            )  # fmt: skip
        assert err.value.reason is AttestationReason.UNTRUSTED_ROOT
        # A client seals a task to the attested key and verifies the result.
        data = b"confidential input"
        task_id, offer_id = hashlib.sha256(b"t").digest(), hashlib.sha256(b"o").digest()
        secret = TaskSecret.generate()
        sealed, _ = seal_input(data, enclave.enc_key, task_id=task_id, secret=secret)
        encrypted, receipt = enclave.execute(
            task_id=task_id, offer_id=offer_id, engine_id="echo",
            input_digest=secret.digest(data), sealed_input=sealed,
            client_result_key=secret.public_key, started_ms=NOW * 1000, expires=NOW + 60,
        )  # fmt: skip
        output = open_result(
            encrypted, receipt, secret,
            enclave_enc_key=enclave.enc_key,
            enclave_result_key=enclave.result_key, task_id=task_id,
            input_digest=secret.digest(data), engine_id="echo",
            measurement=enclave.engine_measurements["echo"],
        )  # fmt: skip
        assert output == data and data not in encrypted
    assert not enclave.is_alive


def test_failures_of_the_tee_reach_the_node_typed(tmp_path: Path, chain: TestAmdChain) -> None:
    kernel = FakeSnpKernel(tmp_path, chain)
    enclave = Enclave.connect(ThreadProcess(fake_cvm_factory(kernel)), start_request(), 60)
    with enclave:
        kernel.interlopers = 1  # another writer on every attempt
        with pytest.raises(EnclaveError) as err:
            enclave.attest(NODE.peer_id, 1, NONCE, NOW)
        assert err.value.reason is EnclaveReason.TEE_FAILED
        assert "concurrent_writer" in err.value.detail
        kernel.interlopers = 0
        kernel.cert_table = b""  # the host stopped providing the VCEK chain
        with pytest.raises(EnclaveError) as err:
            enclave.attest(NODE.peer_id, 1, NONCE, NOW)
        assert err.value.reason is EnclaveReason.TEE_UNAVAILABLE and "KDS" in err.value.detail
        kernel.cert_table = None
        assert enclave.attest(NODE.peer_id, 1, NONCE, NOW)  # and it recovers


def test_start_fails_typed_when_the_vm_has_no_tee(tmp_path: Path) -> None:
    # In-process: the platform factory pointed at an empty tree.
    def factory(spec: dict, seed: bytes, measurement: bytes) -> SevSnpPlatform:
        return SevSnpPlatform(SnpGuest(ConfigfsTsm(tmp_path)))

    with pytest.raises(EnclaveError) as err:
        Enclave.connect(ThreadProcess(factory), start_request(), 60)
    assert err.value.reason is EnclaveReason.TEE_UNAVAILABLE
    assert "configfs-tsm" in err.value.detail and "repp2p tee probe" in err.value.detail


def test_this_machine_refuses_sev_snp_before_starting_a_process(tmp_path: Path) -> None:
    """No configfs-tsm here (a temp root): the error names it and points at the probe."""
    with pytest.raises(EnclaveError) as err:
        Enclave.start(["echo"], tee_kind="sev-snp", tsm_root=str(tmp_path))
    assert err.value.reason is EnclaveReason.TEE_UNAVAILABLE
    assert "configfs-tsm" in err.value.detail and "repp2p tee probe" in err.value.detail
    for kind in ("nitro", "dcap", "nvidia"):
        with pytest.raises(EnclaveError) as err:
            check_platform(kind)
        assert "repp2p tee probe" in err.value.detail


def test_the_worker_refuses_malformed_platform_specs() -> None:
    for spec in ({"kind": "nvidia"}, {"kind": "sev-snp", "collateral_file": 7}):
        with pytest.raises(EnclaveError) as err:
            default_platform(spec, b"\0" * 32, b"\0" * 32)
        assert err.value.reason is EnclaveReason.BAD_REQUEST
    with pytest.raises(EnclaveError) as err:
        Enclave.connect(ThreadProcess(default_platform), start_request(platform=[1]), 60)
    assert err.value.reason is EnclaveReason.BAD_REQUEST


def test_simulated_stays_dev_only() -> None:
    from repp2p.config import NodeConfig

    with pytest.raises(ConfigError, match="dev network only"):
        NodeConfig(data_dir=Path("/nonexistent"), network="main", tee_kind="simulated")


def _main_network_config(tmp_path: Path, tee_kind: str, extra: str = ""):  # type: ignore[no-untyped-def]
    from repp2p.config import load_node_config

    (tmp_path / "main.toml").write_text('epoch_s = 120\npolicy = "main-policy.toml"\n')
    (tmp_path / "main-policy.toml").write_text('profile = "production"\n')
    (tmp_path / "node.toml").write_text(
        f'data_dir = "d"\nnetwork = "main"\nnetwork_file = "main.toml"\ntee_kind = "{tee_kind}"\n'
        + extra
    )
    return load_node_config(tmp_path / "node.toml")


@pytest.mark.skipif(
    Path("/sys/kernel/config/tsm/report").is_dir() or Path("/dev/nitro_enclaves").exists(),
    reason="this machine has configfs-tsm or Nitro Enclaves",
)
def test_a_node_on_this_machine_refuses_sev_snp_naming_the_interface(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from repp2p.node import app as app_module
    from repp2p.node.app import Node

    with pytest.raises(ConfigError) as err:
        Node(_main_network_config(tmp_path, "sev-snp"))
    assert "configfs-tsm" in str(err.value) and "repp2p tee probe" in str(err.value)
    with pytest.raises(ConfigError) as err:
        Node(_main_network_config(tmp_path, "nitro", 'tee_enclave = "vsock:16:5005"\n'))
    assert "tee_kind 'nitro'" in str(err.value) and "nitro_enclaves" in str(err.value)
    with pytest.raises(ConfigError) as err:
        Node(_main_network_config(tmp_path, "tdx", 'tee_collateral = "c.json"\n'))
    assert "tee_kind 'dcap'" in str(err.value) and "configfs-tsm" in str(err.value)
    with pytest.raises(ConfigError) as err:
        Node(_main_network_config(tmp_path, "nvidia"))
    assert "no enclave runtime for tee_kind 'nvidia'" in str(err.value)
    monkeypatch.setattr(app_module, "check_platform", lambda kind: None)  # as if in a TD
    with pytest.raises(ConfigError) as err:
        Node(_main_network_config(tmp_path, "tdx"))
    assert "needs tee_collateral" in str(err.value)


def test_tee_collateral_config_key(tmp_path: Path) -> None:
    from repp2p.config import node_config_from_dict

    config = node_config_from_dict(
        {"data_dir": "d", "tee_collateral": "vcek-chain.pem"}, base_dir=tmp_path
    )
    assert config.tee_collateral == str((tmp_path / "vcek-chain.pem").resolve())
    assert node_config_from_dict({"data_dir": "d"}, base_dir=tmp_path).tee_collateral == ""
    with pytest.raises(ConfigError, match="tee_collateral must be a string"):
        node_config_from_dict({"data_dir": "d", "tee_collateral": 3}, base_dir=tmp_path)


@pytest.mark.skipif(
    Path("/sys/kernel/config/tsm/report").is_dir(), reason="this machine has configfs-tsm"
)
def test_node_run_cli_explains_the_missing_tee(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from repp2p.cli import main

    _main_network_config(tmp_path, "sev-snp")  # writes node.toml and the network's files
    assert main(["node", "run", "--config", str(tmp_path / "node.toml")]) == 1
    err = capsys.readouterr().err
    assert "tee_kind 'sev-snp' cannot run on this machine" in err
    assert "configfs-tsm" in err and "repp2p tee probe" in err and "Traceback" not in err
