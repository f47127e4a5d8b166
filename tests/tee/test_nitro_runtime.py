"""The enclave runtime on the nitro platform: NSM documents, vsock transport, on fakes.

The enclave request loop runs at one end of a socket pair (vsock's stand-in: the frames
are the production ones) with an NSM device behind the seam answering the real CBOR
protocol with COSE-signed documents from a test chain. Peers verify them with the
production Nitro verifier under the test root (and refuse them under AWS's), and a
client verifies the result of a task.
"""

from __future__ import annotations

import errno
import hashlib
import socket
from pathlib import Path

import cbor2
import pytest

from repp2p.attestation import Policy, verify_node
from repp2p.errors import AttestationError, AttestationReason, ConfigError
from repp2p.identity import Identity
from repp2p.tee import Enclave, EnclaveError, EnclaveReason, TaskSecret, open_result, seal_input
from repp2p.tee.enclave import check_platform, missing_tee_setting
from repp2p.tee.errors import TeeInterfaceError, TeeInterfaceReason
from repp2p.tee.nsm import NSM_IOCTL_RAW, NsmDevice, NsmRaw, document_pcr0
from repp2p.tee.vsock import SocketProcess, connect, parse_address, serve_vsock, vsock_family

from . import fake_nitro
from .fake_nitro import PCR0, FakeNsm, TestNitroChain, fake_nitro_factory, socket_enclave

NODE = Identity.from_seed(b"\x0c" * 32)
NONCE = b"\x51" * 32
POLICY = Policy(
    profile="production",
    accepted_kinds=frozenset({"nitro"}),
    measurements={"*": {"nitro": frozenset({PCR0})}},
    require_pinned_measurements=True,
)


@pytest.fixture(scope="module")
def chain() -> TestNitroChain:
    return TestNitroChain()


def start_request() -> dict:
    return {
        "op": "start", "engines": ["echo"], "seed": b"\x08" * 32, "cheat": False,
        "preload": True, "platform": {"kind": "nitro", "collateral_file": None},
    }  # fmt: skip


def reason(call) -> TeeInterfaceReason:  # type: ignore[no-untyped-def]
    with pytest.raises(TeeInterfaceError) as err:
        call()
    return err.value.reason


def test_the_nsm_abi(tmp_path: Path, chain: TestNitroChain) -> None:
    import ctypes

    assert ctypes.sizeof(NsmRaw) == 32 and NSM_IOCTL_RAW == fake_nitro.NSM_IOCTL_RAW
    nsm = FakeNsm(tmp_path, chain)
    nsm.clock = lambda: 1_800_000_000.0
    device = NsmDevice(tmp_path, io=nsm)
    document = device.attestation(b"\x09" * 64, nonce=b"n")
    assert nsm.requests[-1] == {
        "Attestation": {"user_data": b"\x09" * 64, "nonce": b"n", "public_key": None}
    }
    claims = chain.backend().verify(document, b"", 1_800_000_000)
    assert claims.report_data == b"\x09" * 64 and claims.measurement == PCR0 and not claims.debug
    assert device.measurement() == PCR0 == document_pcr0(document)
    with pytest.raises(AttestationError) as err:  # the pinned AWS root
        verify_node(
            NODE.peer_id, "nitro", document, b"", b"", b"\0" * 32, b"\0" * 32, 1, NONCE,
            POLICY, 1_800_000_000,
        )  # fmt: skip
    assert err.value.reason is AttestationReason.UNTRUSTED_ROOT


def test_nsm_failures_are_typed(tmp_path: Path, chain: TestNitroChain) -> None:
    nsm = FakeNsm(tmp_path, chain)
    device = NsmDevice(tmp_path, io=nsm)
    nsm.error = "InvalidArgument"
    with pytest.raises(TeeInterfaceError) as err:
        device.evidence(b"\0" * 64)
    assert err.value.reason is TeeInterfaceReason.IO_ERROR and "InvalidArgument" in str(err.value)
    nsm.error = None
    for garbage in (b"\xff", cbor2.dumps([1]), cbor2.dumps({"Attestation": {"document": 3}})):
        nsm.garbage = garbage
        assert reason(lambda: device.evidence(b"\0" * 64)) is TeeInterfaceReason.MALFORMED
    nsm.garbage = cbor2.dumps({"Attestation": {"document": b"not cose"}})
    assert reason(device.measurement) is TeeInterfaceReason.MALFORMED
    nsm.garbage = None
    nsm.fail = errno.EPERM
    assert reason(lambda: device.evidence(b"\0" * 64)) is TeeInterfaceReason.PERMISSION
    nsm.fail = errno.EIO
    assert reason(lambda: device.evidence(b"\0" * 64)) is TeeInterfaceReason.IO_ERROR
    assert reason(lambda: NsmDevice(tmp_path / "parent").evidence(b"\0" * 64)) is (
        TeeInterfaceReason.MISSING
    )
    # The real ioctl on a plain file: the kernel says ENOTTY, we say IO_ERROR.
    assert reason(lambda: NsmDevice(tmp_path).evidence(b"\0" * 64)) is TeeInterfaceReason.IO_ERROR


def test_nitro_enclave_over_a_socket_is_attested_and_serves_a_verified_task(
    tmp_path: Path, chain: TestNitroChain
) -> None:
    nsm = FakeNsm(tmp_path, chain)
    now = int(nsm.clock())
    enclave = Enclave.connect(socket_enclave(fake_nitro_factory(nsm)), start_request(), 60)
    with enclave:
        assert enclave.kind == "nitro" and enclave.measurement == PCR0
        epoch = now // 60
        evidence, collateral = enclave.attest_with_collateral(NODE.peer_id, epoch, NONCE, now)
        assert collateral == b""
        verified = verify_node(
            NODE.peer_id, "nitro", evidence, collateral, b"", enclave.enc_key,
            enclave.result_key, epoch, NONCE, POLICY, now, engines=["echo"],
            current_epoch=epoch, backends={"nitro": chain.backend()},
        )  # fmt: skip
        assert verified.claims.measurement == PCR0 and not verified.simulated
        data = b"inside the Nitro Enclave"
        task_id, offer_id = hashlib.sha256(b"n t").digest(), hashlib.sha256(b"n o").digest()
        secret = TaskSecret.generate()
        sealed, _ = seal_input(data, enclave.enc_key, task_id=task_id, secret=secret)
        encrypted, receipt = enclave.execute(
            task_id=task_id, offer_id=offer_id, engine_id="echo",
            input_digest=secret.digest(data), sealed_input=sealed,
            client_result_key=secret.public_key, started_ms=now * 1000, expires=now + 60,
        )  # fmt: skip
        output = open_result(
            encrypted, receipt, secret, enclave_enc_key=enclave.enc_key,
            enclave_result_key=enclave.result_key, task_id=task_id,
            input_digest=secret.digest(data), engine_id="echo",
            measurement=enclave.engine_measurements["echo"],
        )  # fmt: skip
        assert output == data and data not in encrypted
        nsm.fail = errno.EIO
        with pytest.raises(EnclaveError) as err:
            enclave.attest(NODE.peer_id, epoch, NONCE, now)
        assert err.value.reason is EnclaveReason.TEE_FAILED
    assert not enclave.is_alive


def test_a_dead_enclave_connection_is_noticed(tmp_path: Path, chain: TestNitroChain) -> None:
    node_end, enclave_end = socket.socketpair()
    process = SocketProcess(node_end)
    assert process.poll() is None
    enclave_end.close()  # the enclave went away
    assert process.poll() == 1
    process.kill()


def test_nitro_needs_vsock_and_an_address(tmp_path: Path) -> None:
    with pytest.raises(EnclaveError) as err:
        check_platform("nitro", str(tmp_path))
    assert err.value.reason is EnclaveReason.TEE_UNAVAILABLE
    assert "nitro_enclaves" in err.value.detail and "repp2p tee probe" in err.value.detail
    assert parse_address("vsock:16:5005") == (16, 5005)
    for bad in ("vsock:16", "tcp:1:2", "vsock:99999999999:1", "vsock:1:99999999999", 5):
        with pytest.raises(ValueError):
            parse_address(bad)  # type: ignore[arg-type]
    with pytest.raises(EnclaveError) as err:
        connect("vsock:x:1")
    assert err.value.reason is EnclaveReason.BAD_REQUEST


def test_nitro_without_an_address_is_refused_before_connecting(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from repp2p.tee import enclave as enclave_module

    monkeypatch.setattr(enclave_module, "check_platform", lambda kind, root="/": None)
    with pytest.raises(EnclaveError) as err:
        Enclave.start(["echo"], tee_kind="nitro")
    assert err.value.reason is EnclaveReason.TEE_UNAVAILABLE and "tee_enclave" in err.value.detail


@pytest.mark.skipif(vsock_family() is None, reason="no AF_VSOCK in this Python/OS")
def test_connecting_to_an_absent_enclave_fails_typed() -> None:
    with pytest.raises(EnclaveError) as err:
        connect("vsock:1:9", timeout_s=2)  # CID 1 is the local loopback; nothing listens
    assert err.value.reason in (EnclaveReason.START_FAILED, EnclaveReason.TEE_UNAVAILABLE)


def test_serve_vsock_without_af_vsock_or_with_it(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from repp2p.tee import vsock

    monkeypatch.setattr(vsock, "vsock_family", lambda: None)
    with pytest.raises(OSError):
        serve_vsock(5005, lambda r, w: None, connections=1)


def test_tee_enclave_config(tmp_path: Path) -> None:
    from repp2p.config import node_config_from_dict

    config = node_config_from_dict(
        {"data_dir": "d", "tee_enclave": "vsock:16:5005"}, base_dir=tmp_path
    )
    assert config.tee_enclave == "vsock:16:5005"
    without = node_config_from_dict({"data_dir": "d", "tee_kind": "nitro"}, base_dir=tmp_path)
    assert "needs tee_enclave" in missing_tee_setting(without)
    assert missing_tee_setting(config) == ""
    for bad in ("16:5005", 5005, "vsock:16:"):
        with pytest.raises(ConfigError):
            node_config_from_dict({"data_dir": "d", "tee_enclave": bad}, base_dir=tmp_path)
