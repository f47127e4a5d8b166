"""The simulated enclave process: round trips, receipts, attestation binding, lifetime."""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import os
import signal
import time
from pathlib import Path

import pytest
import trio

from engines import EngineError, EngineReason, get_engine, run_checked
from repp2p.attestation import Policy, TcbStatus, check_liveness, verify_node
from repp2p.errors import AttestationError, AttestationReason
from repp2p.identity import Identity
from repp2p.records import TaskOffer, decode, encode
from repp2p.tee import (
    Enclave,
    EnclaveError,
    EnclaveReason,
    ResultError,
    ResultReason,
    TaskSecret,
    enclave_measurement,
    open_result,
    seal_input,
)

NOW = 1_795_000_000
NODE = Identity.from_seed(b"\x07" * 32)
NONCE = b"\x42" * 32
DEV_POLICY = Policy(
    profile="dev",
    accepted_kinds=frozenset({"simulated"}),
    allow_simulated=True,
    min_tcb_status=TcbStatus.OUT_OF_DATE,
)


def _children() -> set[int]:
    """PIDs of this process's live (non-zombie) children."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


@pytest.fixture(scope="module")
def enclave():
    with Enclave.start(["echo", "sentiment"], seed=b"\x01" * 32) as running:
        yield running


def _task(name: bytes) -> tuple[bytes, bytes]:
    return hashlib.sha256(b"task" + name).digest(), hashlib.sha256(b"offer" + name).digest()


def _run(enclave: Enclave, engine: str, data: bytes, name: bytes = b"t", **overrides):
    task_id, offer_id = _task(name)
    secret = TaskSecret.generate()
    sealed, _ = seal_input(data, enclave.enc_key, task_id=task_id, secret=secret)
    kwargs = {
        "task_id": task_id,
        "offer_id": offer_id,
        "engine_id": engine,
        "input_digest": secret.digest(data),
        "sealed_input": sealed,
        "client_result_key": secret.public_key,
        "started_ms": NOW * 1000,
        "expires": NOW + 3600,
        "input_size": len(data),
        **overrides,
    }
    encrypted, receipt = enclave.execute(**kwargs)
    return encrypted, receipt, secret, task_id


def _open(enclave: Enclave, encrypted, receipt, secret, task_id, data: bytes) -> bytes:
    return open_result(
        encrypted,
        receipt,
        secret,
        enclave_enc_key=enclave.enc_key,
        enclave_result_key=enclave.result_key,
        task_id=task_id,
        input_digest=secret.digest(data),
        engine_id=receipt.engine_id,
        measurement=enclave.engine_measurements[receipt.engine_id],
    )


@pytest.mark.parametrize(
    ("engine_id", "data"),
    [("echo", b"hello enclave"), ("echo", b""), ("sentiment", b"What a lovely day!")],
)
def test_round_trip_per_engine(enclave, engine_id, data):
    encrypted, receipt, secret, task_id = _run(enclave, engine_id, data)
    output = _open(enclave, encrypted, receipt, secret, task_id, data)
    # bit-identical to the same engine run in this process
    assert output == run_checked(get_engine(engine_id), data)
    assert receipt.result_key == enclave.result_key
    assert receipt.measurement == get_engine(engine_id).measurement
    assert receipt.finished_ms >= receipt.started_ms == NOW * 1000
    assert data == b"" or data not in encrypted


def test_embed_minilm_round_trip():
    try:
        engine = get_engine("embed-minilm")
    except EngineError as exc:
        pytest.skip(f"embed-minilm unavailable (optional extra 'embed'): {exc}")
    data = b"A man is playing a guitar."
    with Enclave.start(["embed-minilm"]) as enclave:
        encrypted, receipt, secret, task_id = _run(enclave, "embed-minilm", data)
        output = _open(enclave, encrypted, receipt, secret, task_id, data)
    assert output == run_checked(engine, data)
    assert json.loads(output)["dim"] == 384


def test_receipt_travels_in_a_node_record(enclave):
    _, receipt, _, _ = _run(enclave, "echo", b"x")
    signed = decode(encode(receipt, NODE.signing_key), now=NOW)
    assert signed.record == receipt and signed.signer == NODE.peer_id


def test_tampered_output_or_receipt_is_rejected(enclave):
    data = b"payload"
    encrypted, receipt, secret, task_id = _run(enclave, "echo", data)
    flipped = bytearray(encrypted)
    flipped[-1] ^= 1
    with pytest.raises(ResultError) as info:
        _open(enclave, bytes(flipped), receipt, secret, task_id, data)
    assert info.value.reason is ResultReason.UNDECRYPTABLE
    forged = dataclasses.replace(receipt, output_digest=secret.digest(b"something else"))
    with pytest.raises(ResultError) as info:
        _open(enclave, encrypted, forged, secret, task_id, data)
    assert info.value.reason is ResultReason.BAD_SIGNATURE
    # a result from another run (other output) under this receipt
    other, _, _, _ = _run(enclave, "echo", b"other", name=b"t")
    with pytest.raises(ResultError):
        _open(enclave, other, receipt, secret, task_id, data)


def test_attestation_binds_the_enclave_keys(enclave):
    evidence = enclave.attest(NODE.peer_id, 7, NONCE, NOW)
    node = verify_node(
        NODE.peer_id, "simulated", evidence, b"", b"", enclave.enc_key, enclave.result_key,
        7, NONCE, DEV_POLICY, NOW,
    )  # fmt: skip
    assert node.simulated and node.claims.measurement == enclave.measurement
    assert enclave.measurement == enclave_measurement(enclave.engine_measurements)
    assert set(enclave.engine_measurements) == {"echo", "sentiment"}
    other = Identity.from_seed(b"\x08" * 32)
    for peer, keys, epoch in (
        (other.peer_id, (enclave.enc_key, enclave.result_key), 7),
        (NODE.peer_id, (enclave.result_key, enclave.enc_key), 7),
        (NODE.peer_id, (enclave.enc_key, enclave.result_key), 8),
    ):
        with pytest.raises(AttestationError) as info:
            verify_node(peer, "simulated", evidence, b"", b"", *keys, epoch, NONCE, DEV_POLICY, NOW)
        assert info.value.reason is AttestationReason.REPORT_DATA_MISMATCH
    production = Policy(profile="production", accepted_kinds=frozenset({"nitro"}))
    with pytest.raises(AttestationError) as info:
        verify_node(
            NODE.peer_id, "simulated", evidence, b"", b"", enclave.enc_key, enclave.result_key,
            7, NONCE, production, NOW,
        )  # fmt: skip
    assert info.value.reason is AttestationReason.SIMULATED_NOT_ALLOWED


def test_the_enclave_signs_liveness_with_its_attested_result_key(enclave):
    """The key the evidence binds (``result_key``) signs the heartbeat's liveness message;
    the signature names the node and the epoch, so it proves nothing for another."""
    sig = enclave.sign_liveness(NODE.peer_id, 7)
    check_liveness(NODE.peer_id, 7, sig, enclave.result_key)
    other = Identity.from_seed(b"\x08" * 32)
    for peer, epoch in ((other.peer_id, 7), (NODE.peer_id, 8)):
        with pytest.raises(AttestationError) as info:
            check_liveness(peer, epoch, sig, enclave.result_key)
        assert info.value.reason is AttestationReason.BAD_ENCLAVE_SIGNATURE
    with pytest.raises(EnclaveError) as refused:
        enclave.sign_liveness("", 7)  # a malformed request is refused, typed
    assert refused.value.reason is EnclaveReason.BAD_REQUEST


def test_requests_a_node_should_not_be_able_to_make(enclave):
    task_id, _ = _task(b"t")
    data = b"secret input"
    secret = TaskSecret.generate()
    sealed, _ = seal_input(data, enclave.enc_key, task_id=task_id, secret=secret)
    base = {"sealed_input": sealed, "client_result_key": secret.public_key}
    cases = [
        ({"client_result_key": TaskSecret.generate().public_key}, EnclaveReason.BAD_SEAL),
        ({"task_id": _task(b"other")[0]}, EnclaveReason.WRONG_TASK),
        ({"input_digest": secret.digest(b"other")}, EnclaveReason.DIGEST_MISMATCH),
        ({"input_size": len(data) + 1}, EnclaveReason.DIGEST_MISMATCH),
        ({"engine_id": "no-such-engine"}, EnclaveReason.UNKNOWN_ENGINE),
        ({"offer_id": b"short"}, EnclaveReason.BAD_REQUEST),
        ({"started_ms": -1}, EnclaveReason.BAD_REQUEST),
    ]
    for change, reason in cases:
        with pytest.raises(EnclaveError) as info:
            _run(enclave, "echo", data, **{**base, "input_digest": secret.digest(data), **change})
        assert info.value.reason is reason, change
        assert "secret input" not in str(info.value)
    assert enclave.is_alive


def test_engine_errors_come_back_typed(enclave):
    with pytest.raises(EngineError) as info:
        _run(enclave, "sentiment", b"\xff\xfe")
    assert info.value.reason is EngineReason.BAD_INPUT
    with pytest.raises(EngineError) as info:
        _run(enclave, "sentiment", b"a" * 20000)
    assert info.value.reason is EngineReason.INPUT_TOO_LARGE
    encrypted, receipt, secret, task_id = _run(enclave, "echo", b"still fine")
    assert _open(enclave, encrypted, receipt, secret, task_id, b"still fine") == b"still fine"


def test_enclave_is_a_separate_process_and_is_cleaned_up():
    before = _children()
    enclave = Enclave.start(["echo"])
    assert enclave.pid != os.getpid() and enclave.pid in _children()
    assert "NOT REAL SECURITY" in repr(enclave) and enclave.kind == "simulated"
    enclave.close()
    enclave.close()  # idempotent
    assert _children() == before
    with pytest.raises(EnclaveError) as info:
        enclave.attest(NODE.peer_id, 1, NONCE, NOW)
    assert info.value.reason is EnclaveReason.CLOSED


def test_a_dropped_handle_reaps_its_process():
    before = _children()
    enclave = Enclave.start(["echo"])
    pid = enclave.pid
    del enclave
    gc.collect()
    assert pid not in _children() and _children() == before


def test_failed_starts_leave_no_process():
    before = _children()
    with pytest.raises(EngineError) as info:
        Enclave.start(["no-such-engine"])
    assert info.value.reason is EngineReason.NOT_FOUND
    with pytest.raises(EnclaveError) as info:
        Enclave.start(["echo"], expected_measurement=b"\0" * 32)
    assert info.value.reason is EnclaveReason.MEASUREMENT_MISMATCH
    assert _children() == before


def test_stuck_or_killed_enclave_is_detected():
    before = _children()
    stuck = Enclave.start(["echo"])
    os.kill(stuck.pid, signal.SIGSTOP)
    started = time.monotonic()
    with pytest.raises(EnclaveError) as info:
        _run(stuck, "echo", b"x", timeout_s=0.5)
    assert info.value.reason is EnclaveReason.TIMEOUT
    assert time.monotonic() - started < 5
    assert not stuck.is_alive
    killed = Enclave.start(["echo"])
    os.kill(killed.pid, signal.SIGKILL)
    with pytest.raises(EnclaveError) as info:
        killed.attest(NODE.peer_id, 1, NONCE, NOW)
    assert info.value.reason is EnclaveReason.CRASHED
    killed.close()
    assert _children() == before


def test_seeded_keys_are_reproducible_and_unseeded_are_not():
    with (
        Enclave.start(["echo"], seed=b"\x05" * 32) as a,
        Enclave.start(["echo"], seed=b"\x05" * 32) as b,
    ):
        assert a.public_keys() == b.public_keys()
    with Enclave.start(["echo"]) as c, Enclave.start(["echo"]) as d:
        assert c.public_keys() != d.public_keys()
        assert c.measurement == d.measurement


def test_cheating_enclave_returns_wrong_results_with_valid_receipts(enclave):
    """TEST/DEMO behaviour: only redundancy (comparing outputs) catches a cheater."""
    data = b"I love this!"
    with Enclave.start(["echo", "sentiment"], cheat=True) as cheater:
        assert cheater.measurement == enclave.measurement  # it lies about what it runs
        for engine_id in ("echo", "sentiment"):
            honest = _open(enclave, *_run_pair(enclave, engine_id, data), data)
            wrong = _open(cheater, *_run_pair(cheater, engine_id, data), data)
            assert wrong != honest
            assert wrong == _open(cheater, *_run_pair(cheater, engine_id, data), data)


def _run_pair(enclave, engine_id, data):
    encrypted, receipt, secret, task_id = _run(enclave, engine_id, data)
    return encrypted, receipt, secret, task_id


def test_execute_offer_takes_a_task_offer(enclave):
    data = b"offer path"
    secret = TaskSecret.generate()
    task_id, offer_id = _task(b"offer")
    offer = TaskOffer(
        task_id=task_id, engine_id="echo", epoch=1, tee_kinds=("simulated",), min_reputation=0,
        max_price=10, redundancy=1, deadline_ms=(NOW + 60) * 1000,
        input_digest=secret.digest(data), input_size=len(data),
        result_key=secret.public_key, seq=0, expires=NOW + 600,
    )  # fmt: skip
    sealed, _ = seal_input(data, enclave.enc_key, task_id=task_id, secret=secret)
    encrypted, receipt = enclave.execute_offer(offer, offer_id, sealed, started_ms=NOW * 1000)
    assert receipt.expires == offer.expires and receipt.offer_id == offer_id
    assert _open(enclave, encrypted, receipt, secret, task_id, data) == data


async def test_async_calls_from_trio(enclave):
    evidence = await enclave.attest_async(NODE.peer_id, 3, NONCE, NOW)
    assert evidence
    data = b"from trio"
    task_id, offer_id = _task(b"trio")
    secret = TaskSecret.generate()
    sealed, _ = seal_input(data, enclave.enc_key, task_id=task_id, secret=secret)
    results = []

    async def one() -> None:
        results.append(
            await enclave.execute_async(
                task_id=task_id,
                offer_id=offer_id,
                engine_id="echo",
                input_digest=secret.digest(data),
                sealed_input=sealed,
                client_result_key=secret.public_key,
                started_ms=1,
                expires=NOW + 60,
            )
        )

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(one)
    assert len(results) == 4
    for encrypted, receipt in results:
        assert _open(enclave, encrypted, receipt, secret, task_id, data) == data


def _echo_task(enclave, data: bytes, task_id: bytes, offer_id: bytes) -> tuple[TaskSecret, dict]:
    """A sealed echo task for ``enclave`` (keyword arguments of ``execute_async``)."""
    secret = TaskSecret.generate()
    sealed, _ = seal_input(data, enclave.enc_key, task_id=task_id, secret=secret)
    return secret, {
        "task_id": task_id,
        "offer_id": offer_id,
        "engine_id": "echo",
        "input_digest": secret.digest(data),
        "sealed_input": sealed,
        "client_result_key": secret.public_key,
        "started_ms": 1,
        "expires": NOW + 60,
    }


async def test_async_calls_carry_frames_larger_than_a_pipe_and_refusals_stay_typed():
    """The trio path (no worker thread) writes and reads frames well past a pipe's buffer,
    and an error reply is still the typed error; the enclave serves on afterwards."""
    with Enclave.start(["echo"]) as enclave:
        data = b"x" * 600_000
        task_id, offer_id = _task(b"large")
        secret, task = _echo_task(enclave, data, task_id, offer_id)
        encrypted, receipt = await enclave.execute_async(**task)
        assert _open(enclave, encrypted, receipt, secret, task_id, data) == data
        with pytest.raises(EnclaveError) as caught:
            await enclave.execute_async(**{**task, "input_digest": bytes(32)})
        assert caught.value.reason is EnclaveReason.DIGEST_MISMATCH
        assert enclave.is_alive
        encrypted, receipt = await enclave.execute_async(**task)
        assert _open(enclave, encrypted, receipt, secret, task_id, data) == data


async def test_an_async_call_that_times_out_half_way_ends_the_enclave_process():
    """A call stopped between request and reply (its timeout, or a cancellation) would
    leave the pipe out of step with the next call: the process is killed and later calls
    fail CLOSED. A frame larger than a pipe's buffer makes the call wait, so its deadline
    falls inside the exchange."""
    with Enclave.start(["echo"]) as enclave:
        data = b"y" * 600_000
        task_id, offer_id = _task(b"timed out")
        _secret, task = _echo_task(enclave, data, task_id, offer_id)
        with pytest.raises(EnclaveError) as caught:
            await enclave.execute_async(**task, timeout_s=1e-6)
        assert caught.value.reason is EnclaveReason.TIMEOUT
        assert not enclave.is_alive
        with pytest.raises(EnclaveError) as caught:
            await enclave.execute_async(**task)
        assert caught.value.reason is EnclaveReason.CLOSED


async def test_descriptors_are_made_non_blocking_once_and_both_paths_carry_large_frames():
    """The pipe ends are non-blocking from the start (the trio path needs them so, and
    flipping them per call cost syscalls on every task); the synchronous path waits on
    them with ``select``: frames well past a pipe's buffer go both ways on either path,
    in turn."""
    with Enclave.start(["echo"]) as enclave:
        fds = (enclave._process.stdin.fileno(), enclave._process.stdout.fileno())
        assert not any(os.get_blocking(fd) for fd in fds)
        data = b"z" * 600_000
        for name in (b"sync", b"async", b"sync again"):
            task_id, offer_id = _task(name)
            secret, task = _echo_task(enclave, data, task_id, offer_id)
            if name == b"async":
                encrypted, receipt = await enclave.execute_async(**task)
            else:
                encrypted, receipt = enclave.execute(**task)
            assert _open(enclave, encrypted, receipt, secret, task_id, data) == data
            assert not any(os.get_blocking(fd) for fd in fds)
        assert enclave.attest(NODE.peer_id, 1, NONCE, NOW)


def test_a_synchronous_call_to_a_stuck_enclave_times_out_while_writing():
    """A request larger than the pipe's buffer to an enclave that stopped reading: the
    write waits within the call's deadline too (TIMEOUT, the process killed), where a
    blocking write would have waited for ever."""
    before = _children()
    stuck = Enclave.start(["echo"])
    os.kill(stuck.pid, signal.SIGSTOP)
    task_id, offer_id = _task(b"stuck writer")
    _secret, task = _echo_task(stuck, b"w" * 600_000, task_id, offer_id)
    with pytest.raises(EnclaveError) as info:
        stuck.execute(**task, timeout_s=0.5)
    assert info.value.reason is EnclaveReason.TIMEOUT
    assert not stuck.is_alive
    stuck.close()
    assert _children() == before
