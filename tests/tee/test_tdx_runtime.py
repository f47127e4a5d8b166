"""The enclave runtime on the dcap platform (inside an Intel TDX VM), on the fake kernel.

As for SEV-SNP: the enclave request loop runs in this process behind real pipes with a
platform factory backed by a fake configfs-tsm whose ``tdx_guest`` provider answers with
real-layout TDX quotes signed by a test PCK chain. Peers verify them with the production
DCAP verifier under the test root (and refuse them under Intel's), and a client verifies
the result of a task.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from repp2p.attestation import Policy, verify_node
from repp2p.errors import AttestationError, AttestationReason, ConfigError
from repp2p.identity import Identity
from repp2p.tee import Enclave, EnclaveError, EnclaveReason, TaskSecret, open_result, seal_input
from repp2p.tee.configfs_tsm import ConfigfsTsm
from repp2p.tee.enclave import check_platform, missing_tee_setting
from repp2p.tee.errors import TeeInterfaceError, TeeInterfaceReason
from repp2p.tee.platforms import canonical_kind, default_platform
from repp2p.tee.tdx_guest import TdxGuest, load_collateral_file, td_report_body

from .fake_snp import ThreadProcess
from .fake_tdx import MRTD, FakeTdxKernel, TestIntelChain, fake_tdx_factory

NOW = 1_800_000_000
NODE = Identity.from_seed(b"\x0a" * 32)
NONCE = b"\x42" * 32
POLICY = Policy(
    profile="production",
    accepted_kinds=frozenset({"dcap"}),
    measurements={"*": {"dcap": frozenset({MRTD})}},
    require_pinned_measurements=True,
)


@pytest.fixture(scope="module")
def chain() -> TestIntelChain:
    return TestIntelChain.generate()


@pytest.fixture
def collateral(tmp_path: Path, chain: TestIntelChain) -> Path:
    path = tmp_path / "tdx-collateral.json"
    path.write_bytes(chain.collateral())
    return path


def start_request(collateral: Path | None, kind: str = "tdx") -> dict:
    return {
        "op": "start",
        "engines": ["echo"],
        "seed": b"\x06" * 32,
        "cheat": False,
        "preload": True,
        "platform": {"kind": kind, "collateral_file": str(collateral) if collateral else None},
    }


def test_the_fake_quote_verifies_under_test_roots_only(chain: TestIntelChain) -> None:
    quote = chain.quote(b"\x01" * 64)
    claims = chain.backend().verify(quote, chain.collateral(), NOW)
    assert claims.kind == "dcap" and claims.measurement == MRTD
    assert dict(claims.details)["tee"] == "tdx" and claims.report_data == b"\x01" * 64
    with pytest.raises(AttestationError) as err:
        verify_node(
            NODE.peer_id, "dcap", quote, chain.collateral(), b"", b"\0" * 32, b"\0" * 32,
            1, NONCE, POLICY, NOW,
        )  # fmt: skip
    assert err.value.reason is AttestationReason.UNTRUSTED_ROOT
    # A revoked PCK certificate is refused by the same verifier (the CRL is checked).
    revoked = TestIntelChain(**{**chain.__dict__, "revoked_pck": True})
    with pytest.raises(AttestationError) as err:
        revoked.backend().verify(quote, revoked.collateral(), NOW)
    assert err.value.reason is AttestationReason.REVOKED


def test_tdx_enclave_is_attested_and_serves_a_verified_task(
    tmp_path: Path, chain: TestIntelChain, collateral: Path
) -> None:
    kernel = FakeTdxKernel(tmp_path / "td", chain)
    process = ThreadProcess(fake_tdx_factory(kernel))
    enclave = Enclave.connect(process, start_request(collateral), 60)
    with enclave:
        assert enclave.kind == "dcap" and enclave.measurement == MRTD
        assert "NOT REAL SECURITY" not in repr(enclave)
        epoch = NOW // 60
        evidence, sent = enclave.attest_with_collateral(NODE.peer_id, epoch, NONCE, NOW)
        assert sent == collateral.read_bytes()
        verified = verify_node(
            NODE.peer_id, "dcap", evidence, sent, b"", enclave.enc_key, enclave.result_key,
            epoch, NONCE, POLICY, NOW, engines=["echo"], current_epoch=epoch,
            backends={"dcap": chain.backend()},
        )  # fmt: skip
        assert verified.claims.measurement == MRTD and not verified.simulated
        with pytest.raises(AttestationError) as err:  # the production (Intel) root
            verify_node(
                NODE.peer_id, "dcap", evidence, sent, b"", enclave.enc_key,
                enclave.result_key, epoch, NONCE, POLICY, NOW,
            )  # fmt: skip
        assert err.value.reason is AttestationReason.UNTRUSTED_ROOT
        # Evidence bound to this node does not verify for another peer ID.
        other = Identity.from_seed(b"\x0b" * 32).peer_id
        with pytest.raises(AttestationError) as err:
            verify_node(
                other, "dcap", evidence, sent, b"", enclave.enc_key, enclave.result_key,
                epoch, NONCE, POLICY, NOW, backends={"dcap": chain.backend()},
            )  # fmt: skip
        assert err.value.reason is AttestationReason.REPORT_DATA_MISMATCH
        data = b"confidential input for the TD"
        task_id, offer_id = hashlib.sha256(b"tdx t").digest(), hashlib.sha256(b"tdx o").digest()
        secret = TaskSecret.generate()
        sealed, _ = seal_input(data, enclave.enc_key, task_id=task_id, secret=secret)
        encrypted, receipt = enclave.execute(
            task_id=task_id, offer_id=offer_id, engine_id="echo",
            input_digest=secret.digest(data), sealed_input=sealed,
            client_result_key=secret.public_key, started_ms=NOW * 1000, expires=NOW + 60,
        )  # fmt: skip
        output = open_result(
            encrypted, receipt, secret, enclave_enc_key=enclave.enc_key,
            enclave_result_key=enclave.result_key, task_id=task_id,
            input_digest=secret.digest(data), engine_id="echo",
            measurement=enclave.engine_measurements["echo"],
        )  # fmt: skip
        assert output == data and data not in encrypted
    assert not enclave.is_alive


def test_tdx_failures_reach_the_node_typed(
    tmp_path: Path, chain: TestIntelChain, collateral: Path
) -> None:
    kernel = FakeTdxKernel(tmp_path / "td", chain)
    process = ThreadProcess(fake_tdx_factory(kernel))
    enclave = Enclave.connect(process, start_request(collateral), 60)
    with enclave:
        kernel.mangle = lambda quote: chain.quote(b"\xee" * 64)  # a quote about other data
        with pytest.raises(EnclaveError) as err:
            enclave.attest(NODE.peer_id, 1, NONCE, NOW)
        assert err.value.reason is EnclaveReason.TEE_FAILED and "report data" in err.value.detail
        kernel.mangle = lambda quote: quote[:100]  # truncated
        with pytest.raises(EnclaveError) as err:
            enclave.attest(NODE.peer_id, 1, NONCE, NOW)
        assert err.value.reason is EnclaveReason.TEE_FAILED
        kernel.mangle = lambda quote: quote
        collateral.write_text('{"tcb_info": 3}')  # the operator's refresh job wrote garbage
        with pytest.raises(EnclaveError) as err:
            enclave.attest(NODE.peer_id, 1, NONCE, NOW)
        assert err.value.reason is EnclaveReason.TEE_FAILED and "lacks" in err.value.detail
        collateral.unlink()
        with pytest.raises(EnclaveError) as err:
            enclave.attest(NODE.peer_id, 1, NONCE, NOW)
        assert err.value.reason is EnclaveReason.TEE_UNAVAILABLE
        collateral.write_bytes(chain.collateral())  # refreshed: no restart needed
        assert enclave.attest(NODE.peer_id, 1, NONCE, NOW)


def test_tdx_start_needs_the_collateral_and_the_tdx_provider(
    tmp_path: Path, chain: TestIntelChain, collateral: Path
) -> None:
    kernel = FakeTdxKernel(tmp_path / "td", chain)
    with pytest.raises(EnclaveError) as err:
        Enclave.connect(ThreadProcess(fake_tdx_factory(kernel)), start_request(None), 60)
    assert err.value.reason is EnclaveReason.TEE_UNAVAILABLE
    assert "tee_collateral" in err.value.detail
    kernel.provider = "sev_guest"  # an SEV-SNP VM configured as TDX
    with pytest.raises(EnclaveError) as err:
        Enclave.connect(ThreadProcess(fake_tdx_factory(kernel)), start_request(collateral), 60)
    assert err.value.reason is EnclaveReason.TEE_UNAVAILABLE
    assert "wrong_provider" in err.value.detail and "tdx_guest" in err.value.detail


def test_td_report_body_refuses_what_is_not_a_tdx_quote(chain: TestIntelChain) -> None:
    quote = chain.quote(b"\x02" * 64)
    assert td_report_body(quote)[520:584] == b"\x02" * 64
    sgx = bytearray(quote)
    sgx[4:8] = (0).to_bytes(4, "little")
    v3 = bytearray(quote)
    v3[0:2] = (3).to_bytes(2, "little")
    v5 = bytearray(quote[:48]) + (9).to_bytes(2, "little") + (584).to_bytes(4, "little")
    v5[0:2] = (5).to_bytes(2, "little")
    for bad in (b"", quote[:48], quote[:600], bytes(sgx), bytes(v3), bytes(v5)):
        with pytest.raises(TeeInterfaceError) as err:
            td_report_body(bad)
        assert err.value.reason is TeeInterfaceReason.MALFORMED
    # v5 with a TD 1.0 body: the body follows the 6-byte descriptor
    good_v5 = bytearray(quote[:48]) + (2).to_bytes(2, "little") + (584).to_bytes(4, "little")
    good_v5[0:2] = (5).to_bytes(2, "little")
    good_v5 += quote[48 : 48 + 584]
    assert td_report_body(bytes(good_v5)) == quote[48 : 48 + 584]


def test_collateral_file_is_checked(tmp_path: Path, chain: TestIntelChain) -> None:
    path = tmp_path / "c.json"
    good = chain.collateral()
    path.write_bytes(good)
    assert load_collateral_file(path) == good
    for text, reason in (
        (b"[]", TeeInterfaceReason.MALFORMED),
        (b"\xff\xfe", TeeInterfaceReason.MALFORMED),
        (b" " * (200 * 1024), TeeInterfaceReason.MALFORMED),
        (json.dumps({"tcb_info": "x"}).encode(), TeeInterfaceReason.MALFORMED),
    ):
        path.write_bytes(text)
        with pytest.raises(TeeInterfaceError) as err:
            load_collateral_file(path)
        assert err.value.reason is reason
    with pytest.raises(TeeInterfaceError) as err:
        load_collateral_file(tmp_path / "absent.json")
    assert err.value.reason is TeeInterfaceReason.MISSING


def test_tdx_is_the_operators_name_for_dcap(tmp_path: Path) -> None:
    from repp2p.config import NodeConfig

    assert canonical_kind("tdx") == "dcap" and canonical_kind("sev-snp") == "sev-snp"
    config = NodeConfig(data_dir=tmp_path, tee_kind="tdx", tee_collateral="/etc/c.json")
    assert config.tee_kind == "dcap"
    with pytest.raises(ConfigError):
        NodeConfig(data_dir=tmp_path, tee_kind="tdx2")
    assert "needs tee_collateral" in missing_tee_setting(
        NodeConfig(data_dir=tmp_path, tee_kind="tdx")
    )
    assert missing_tee_setting(config) == ""
    with pytest.raises(EnclaveError) as err:  # a temp root: no configfs-tsm there
        check_platform("tdx", str(tmp_path))
    assert err.value.reason is EnclaveReason.TEE_UNAVAILABLE
    assert "tee_kind 'dcap'" in err.value.detail and "repp2p tee probe" in err.value.detail
    with pytest.raises(EnclaveError) as err:
        default_platform({"kind": "tdx", "collateral_file": 3}, b"\0" * 32, b"\0" * 32)
    assert err.value.reason is EnclaveReason.BAD_REQUEST


def test_guest_on_an_empty_tree_says_configfs_is_missing(tmp_path: Path) -> None:
    guest = TdxGuest(ConfigfsTsm(tmp_path), collateral_file=tmp_path / "c.json")
    with pytest.raises(TeeInterfaceError) as err:
        guest.evidence(b"\0" * 64)
    assert err.value.reason is TeeInterfaceReason.MISSING and "configfs-tsm" in err.value.detail


def test_a_td_without_configfs_tsm_quotes_through_the_device_and_the_qgs(
    tmp_path: Path, chain: TestIntelChain, collateral: Path
) -> None:
    from repp2p.tee.guest_devices import TdxGuestDevice
    from repp2p.tee.platforms import CvmPlatform
    from repp2p.tee.qgs import QgsClient

    from .fake_devices import FakeQgs, FakeTdxGuest

    io, qgs = FakeTdxGuest(tmp_path, MRTD), FakeQgs(chain, MRTD)

    def factory(spec: dict, seed: bytes, measurement: bytes) -> CvmPlatform:
        device = TdxGuestDevice(
            tmp_path, io=io, collateral_file=collateral, qgs=QgsClient(connect=qgs.connect)
        )
        return CvmPlatform(device)

    with Enclave.connect(ThreadProcess(factory), start_request(collateral), 60) as enclave:
        assert enclave.kind == "dcap" and enclave.measurement == MRTD
        epoch = NOW // 60
        evidence, sent = enclave.attest_with_collateral(NODE.peer_id, epoch, NONCE, NOW)
        verified = verify_node(
            NODE.peer_id, "dcap", evidence, sent, b"", enclave.enc_key, enclave.result_key,
            epoch, NONCE, POLICY, NOW, engines=["echo"], backends={"dcap": chain.backend()},
        )  # fmt: skip
        assert verified.claims.measurement == MRTD
