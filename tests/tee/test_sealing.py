"""The sealing scheme and receipt verification, both halves, without a process."""

from __future__ import annotations

import dataclasses
import hashlib

import nacl.public
import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repp2p.records import Receipt, receipt_message
from repp2p.tee import (
    EnclaveError,
    EnclaveReason,
    ResultError,
    ResultReason,
    TaskSecret,
    open_output,
    open_result,
    seal_input,
    task_digest,
    verify_receipt,
)
from repp2p.tee.sealing import seal_output, unseal_input

ENCLAVE = nacl.public.PrivateKey(hashlib.sha256(b"enclave").digest())
SIGNER = nacl.signing.SigningKey(hashlib.sha256(b"signer").digest())
ENC_KEY = bytes(ENCLAVE.public_key)
RESULT_KEY = bytes(SIGNER.verify_key)
TASK = hashlib.sha256(b"task").digest()
OTHER_TASK = hashlib.sha256(b"other task").digest()
OFFER = hashlib.sha256(b"offer").digest()


def _receipt(secret: TaskSecret, data: bytes, output: bytes, signer=SIGNER) -> Receipt:
    receipt = Receipt(
        task_id=TASK,
        offer_id=OFFER,
        engine_id="echo",
        measurement=b"\x11" * 32,
        input_digest=secret.digest(data),
        output_digest=secret.digest(output),
        started_ms=5,
        finished_ms=7,
        result_key=bytes(signer.verify_key),
        enclave_sig=b"\0" * 64,
        seq=0,
        expires=100,
    )
    sig = signer.sign(receipt_message(receipt)).signature
    return dataclasses.replace(receipt, enclave_sig=sig)


@settings(max_examples=30, deadline=None)
@given(plaintext=st.binary(max_size=2048), seed=st.binary(min_size=32, max_size=32))
def test_seal_unseal_round_trip(plaintext, seed):
    secret = TaskSecret.from_seed(seed)
    sealed, same = seal_input(plaintext, ENC_KEY, task_id=TASK, secret=secret)
    assert same is secret
    salt, opened = unseal_input(sealed, ENCLAVE, secret.public_key, TASK)
    assert opened == plaintext and salt == secret.salt
    assert task_digest(salt, opened) == secret.digest(plaintext)
    encrypted = seal_output(plaintext[::-1], ENCLAVE, secret.public_key, TASK)
    assert open_output(encrypted, secret, ENC_KEY, task_id=TASK) == plaintext[::-1]


def test_plaintext_never_appears_in_sealed_bytes():
    plaintext = b"my secret medical record " * 4
    sealed, secret = seal_input(plaintext, ENC_KEY, task_id=TASK)
    assert b"secret medical" not in sealed
    encrypted = seal_output(plaintext, ENCLAVE, secret.public_key, TASK)
    assert b"secret medical" not in encrypted


def test_enclave_refuses_inputs_it_should_not_open():
    sealed, secret = seal_input(b"x", ENC_KEY, task_id=TASK)
    # the node substitutes another client key (its own): the box does not open
    with pytest.raises(EnclaveError) as info:
        unseal_input(sealed, ENCLAVE, TaskSecret.generate().public_key, TASK)
    assert info.value.reason is EnclaveReason.BAD_SEAL
    with pytest.raises(EnclaveError) as info:
        unseal_input(sealed, ENCLAVE, secret.public_key, OTHER_TASK)
    assert info.value.reason is EnclaveReason.WRONG_TASK
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    for bad in (bytes(tampered), b"", b"\0" * 10):
        with pytest.raises(EnclaveError) as info:
            unseal_input(bad, ENCLAVE, secret.public_key, TASK)
        assert info.value.reason is EnclaveReason.BAD_SEAL


def test_digests_are_salted_per_task():
    a, b = TaskSecret.generate(), TaskSecret.generate()
    assert a.digest(b"yes") != b.digest(b"yes")
    assert a.digest(b"yes") != hashlib.sha256(b"yes").digest()
    assert TaskSecret.from_bytes(a.to_bytes()).digest(b"yes") == a.digest(b"yes")
    assert repr(a) == "TaskSecret()"  # keys and salt never printed


def test_open_output_rejections():
    secret = TaskSecret.generate()
    encrypted = seal_output(b"out", ENCLAVE, secret.public_key, TASK)
    flipped = bytearray(encrypted)
    flipped[30] ^= 1
    cases = [
        (bytes(flipped), secret, ENC_KEY, TASK, ResultReason.UNDECRYPTABLE),
        (encrypted, TaskSecret.generate(), ENC_KEY, TASK, ResultReason.UNDECRYPTABLE),
        (encrypted, secret, bytes(nacl.public.PrivateKey.generate().public_key), TASK,
         ResultReason.UNDECRYPTABLE),
        (encrypted, secret, ENC_KEY, OTHER_TASK, ResultReason.WRONG_TASK),
    ]  # fmt: skip
    for data, key, enc_key, task, reason in cases:
        with pytest.raises(ResultError) as info:
            open_output(data, key, enc_key, task_id=task)
        assert info.value.reason is reason


def test_receipt_verifies_and_binds_digests():
    secret = TaskSecret.generate()
    receipt = _receipt(secret, b"in", b"out")
    verify_receipt(
        receipt,
        expected_result_key=RESULT_KEY,
        input_digest=secret.digest(b"in"),
        output_digest=secret.digest(b"out"),
        task_id=TASK,
        offer_id=OFFER,
        engine_id="echo",
        measurement=b"\x11" * 32,
    )
    good = {
        "expected_result_key": RESULT_KEY,
        "input_digest": secret.digest(b"in"),
        "output_digest": secret.digest(b"out"),
    }
    for change, reason in (
        ({"input_digest": secret.digest(b"other")}, ResultReason.INPUT_DIGEST_MISMATCH),
        ({"output_digest": secret.digest(b"other")}, ResultReason.OUTPUT_DIGEST_MISMATCH),
        ({"expected_result_key": ENC_KEY}, ResultReason.WRONG_KEY),
        ({"task_id": OTHER_TASK}, ResultReason.WRONG_TASK),
        ({"offer_id": OTHER_TASK}, ResultReason.WRONG_TASK),
        ({"engine_id": "sentiment"}, ResultReason.WRONG_ENGINE),
        ({"measurement": b"\x22" * 32}, ResultReason.WRONG_ENGINE),
    ):
        with pytest.raises(ResultError) as info:
            verify_receipt(receipt, **{**good, **change})
        assert info.value.reason is reason


@pytest.mark.parametrize(
    "field",
    ["task_id", "offer_id", "measurement", "input_digest", "output_digest", "started_ms",
     "finished_ms", "engine_id", "expires", "seq", "enclave_sig"],
)  # fmt: skip
def test_any_tampered_receipt_field_breaks_the_signature(field):
    secret = TaskSecret.generate()
    receipt = _receipt(secret, b"in", b"out")
    value = getattr(receipt, field)
    if isinstance(value, bytes):
        changed = bytes([value[0] ^ 1]) + value[1:]
    elif isinstance(value, int):
        changed = value + 1
    else:
        changed = "sentiment"
    tampered = dataclasses.replace(receipt, **{field: changed})
    with pytest.raises(ResultError) as info:
        verify_receipt(
            tampered,
            expected_result_key=RESULT_KEY,
            input_digest=tampered.input_digest,
            output_digest=tampered.output_digest,
        )
    assert info.value.reason is ResultReason.BAD_SIGNATURE


def test_receipt_signed_by_another_key_is_rejected_even_if_claimed():
    secret = TaskSecret.generate()
    forger = nacl.signing.SigningKey.generate()
    forged = _receipt(secret, b"in", b"out", signer=forger)
    with pytest.raises(ResultError) as info:
        verify_receipt(
            forged,
            expected_result_key=RESULT_KEY,
            input_digest=secret.digest(b"in"),
            output_digest=secret.digest(b"out"),
        )
    assert info.value.reason is ResultReason.WRONG_KEY


def test_open_result_checks_output_against_receipt():
    secret = TaskSecret.generate()
    receipt = _receipt(secret, b"in", b"out")
    kwargs = {
        "enclave_enc_key": ENC_KEY,
        "enclave_result_key": RESULT_KEY,
        "task_id": TASK,
        "input_digest": secret.digest(b"in"),
    }
    good = seal_output(b"out", ENCLAVE, secret.public_key, TASK)
    assert open_result(good, receipt, secret, **kwargs) == b"out"
    wrong = seal_output(b"OUT", ENCLAVE, secret.public_key, TASK)
    with pytest.raises(ResultError) as info:
        open_result(wrong, receipt, secret, **kwargs)
    assert info.value.reason is ResultReason.OUTPUT_DIGEST_MISMATCH
