"""Refusals: the enclave signs that a task failed by the client's own input, checkably.

A real (simulated-TEE) enclave process refuses inputs that fail for client-caused reasons
with a signed ``Refusal`` that :func:`repp2p.records.check_refusal` accepts, and never
signs one when the node, not the client, is at fault (fields that differ from the signed
offer, a signature that does not cover the bytes, a valid input).
"""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from repp2p.identity import Identity
from repp2p.records import (
    REFUSAL_CODES,
    Refusal,
    TaskOffer,
    check_refusal,
    decode,
    encode,
    input_commitment,
    refusal_message,
    sealed_input_signed,
    sign,
    sign_sealed_input,
    task_id_for,
)
from repp2p.tee import Enclave, EnclaveError, EnclaveReason, InputRefused, TaskSecret, seal_input

NOW = 1_795_000_000
CLIENT = Identity.from_seed(b"\x31" * 32)
NODE = Identity.from_seed(b"\x32" * 32)
OTHER = Identity.from_seed(b"\x33" * 32)


@pytest.fixture(scope="module")
def enclave():
    with Enclave.start(["echo", "sentiment"], seed=b"\x05" * 32) as running:
        yield running


def _offer(data: bytes, engine: str = "echo", client: Identity = CLIENT, size: int | None = None):
    secret = TaskSecret.generate()
    offer = TaskOffer(
        task_id=task_id_for(client.public_key, secret.public_key),
        engine_id=engine,
        epoch=7,
        tee_kinds=(),
        min_reputation=0,
        max_price=10,
        redundancy=1,
        deadline_ms=(NOW + 600) * 1000,
        input_digest=secret.digest(data),
        input_size=len(data) if size is None else size,
        result_key=secret.public_key,
        seq=1,
        expires=NOW + 3600,
    )
    return decode(encode(offer, client)), secret


def _execute(enclave, signed_offer, sealed, *, sig=None, signer=CLIENT, node=NODE, **over):
    o: TaskOffer = signed_offer.record
    if sig is None:
        sig = sign_sealed_input(
            signer, task_id=o.task_id, node=node.peer_id, enc_key=enclave.enc_key, sealed=sealed
        )
    kwargs = {
        "task_id": o.task_id,
        "offer_id": signed_offer.record_id,
        "engine_id": o.engine_id,
        "input_digest": o.input_digest,
        "sealed_input": sealed,
        "client_result_key": o.result_key,
        "started_ms": NOW * 1000,
        "expires": o.expires,
        "input_size": o.input_size,
        "seq": 1,
        "offer": signed_offer.data,
        "node": node.peer_id,
        "input_sig": sig,
        **over,
    }
    return enclave.execute(**kwargs)


def _refused(enclave, *args, **kwargs) -> Refusal:
    with pytest.raises(InputRefused) as caught:
        _execute(enclave, *args, **kwargs)
    assert caught.value.reason is EnclaveReason.INPUT_REFUSED
    return caught.value.refusal


# -- the record and its checks -----------------------------------------------------------------


def test_a_client_signature_covers_task_node_key_and_bytes():
    task, key, digest = b"\x01" * 32, b"\x02" * 32, hashlib.sha256(b"sealed").digest()
    sig = sign_sealed_input(CLIENT, task_id=task, node=NODE.peer_id, enc_key=key, sealed=b"sealed")
    args = {"task_id": task, "node": NODE.peer_id, "enc_key": key, "sealed_digest": digest}
    assert sealed_input_signed(CLIENT.public_key, sig, **args)
    assert not sealed_input_signed(OTHER.public_key, sig, **args)
    for name, value in [
        ("task_id", b"\x09" * 32),
        ("node", OTHER.peer_id),
        ("enc_key", b"\x09" * 32),
        ("sealed_digest", hashlib.sha256(b"other").digest()),
    ]:
        assert not sealed_input_signed(CLIENT.public_key, sig, **{**args, name: value})
    assert not sealed_input_signed(CLIENT.public_key, b"\x00" * 64, **args)
    with pytest.raises(ValueError):
        input_commitment(b"short", NODE.peer_id, key, digest)


@pytest.mark.parametrize("code", sorted(REFUSAL_CODES))
def test_every_client_caused_failure_gives_a_refusal_any_peer_accepts(enclave, code):
    data = b"I love it" if code != "bad_input" else b"\xff\xfe not utf-8"
    engine = "sentiment"
    signed_offer, secret = _offer(data, engine)
    o = signed_offer.record
    if code == "bad_seal":
        sealed = b"\x00" * 80
    elif code == "wrong_task":
        sealed, _ = seal_input(data, enclave.enc_key, task_id=b"\x44" * 32, secret=secret)
    elif code == "digest_mismatch":
        sealed, _ = seal_input(b"something else", enclave.enc_key, task_id=o.task_id, secret=secret)
    elif code == "input_too_large":
        data = b"a" * 16385
        signed_offer, secret = _offer(data, engine)
        o = signed_offer.record
        sealed, _ = seal_input(data, enclave.enc_key, task_id=o.task_id, secret=secret)
    else:
        sealed, _ = seal_input(data, enclave.enc_key, task_id=o.task_id, secret=secret)
    refusal = _refused(enclave, signed_offer, sealed)
    assert refusal.code == code
    assert refusal.client == CLIENT.peer_id
    assert refusal.sealed_digest == hashlib.sha256(sealed).digest()
    assert refusal.result_key == enclave.result_key and refusal.enc_key == enclave.enc_key
    # The node wraps it in its record signature; any peer decodes and checks it.
    wrapped = decode(encode(refusal, NODE), now=NOW)
    assert wrapped.type == "Refusal" and wrapped.signer == NODE.peer_id
    check = {"node": NODE.peer_id, "offer": signed_offer, "result_key": enclave.result_key}
    assert check_refusal(wrapped.record, **check) is None


def test_a_refusal_does_not_check_out_against_anything_else(enclave):
    signed_offer, _ = _offer(b"hello")
    refusal = _refused(enclave, signed_offer, b"\x00" * 80)
    ok = {"node": NODE.peer_id, "offer": signed_offer, "result_key": enclave.result_key}
    assert check_refusal(refusal, **ok) is None
    other_offer, _ = _offer(b"hello")
    assert check_refusal(refusal, **{**ok, "offer": other_offer}) == "wrong_offer"
    # Another node cannot present it as its own (the client's commitment names the node).
    assert check_refusal(refusal, **{**ok, "node": OTHER.peer_id}) == "client_signature"
    # A key the node's attestation does not bind, or no attested key at all.
    assert check_refusal(refusal, **{**ok, "result_key": b"\x07" * 32}) == "not_attested_key"
    assert check_refusal(refusal, **{**ok, "result_key": None}) == "not_attested_key"
    # Any field changed after the enclave signed breaks its signature...
    recoded = dataclasses.replace(refusal, code="bad_input")
    assert check_refusal(recoded, **ok) == "enclave_signature"
    # ...and a node signing with its own key in place of the enclave's is not attested.
    forged = dataclasses.replace(refusal, result_key=NODE.public_key)
    forged = dataclasses.replace(
        forged, enclave_sig=NODE.signing_key.sign(refusal_message(forged)).signature
    )
    assert check_refusal(forged, **ok) == "not_attested_key"
    # The sealed bytes swapped for others: the client never signed their digest.
    swapped = dataclasses.replace(refusal, sealed_digest=hashlib.sha256(b"x").digest())
    assert check_refusal(swapped, **ok) == "client_signature"


def test_a_refusal_that_expires_before_its_offer_does_not_check_out(enclave):
    """The honest enclave signs the offer's expiry; a node that has it sign an earlier one
    (the enclave signs the ``expires`` the host passes) gets a refusal no peer accepts,
    though both signatures are genuine: it would leave the stores before the offer."""
    signed_offer, _ = _offer(b"hello")
    ok = {"node": NODE.peer_id, "offer": signed_offer, "result_key": enclave.result_key}
    honest = _refused(enclave, signed_offer, b"\x00" * 80)
    assert honest.expires == signed_offer.record.expires
    early = _refused(enclave, signed_offer, b"\x00" * 80, expires=signed_offer.record.expires - 1)
    assert check_refusal(early, **ok) == "expires_early"
    # Later than the offer is no fault (as for claims and receipts).
    late = _refused(enclave, signed_offer, b"\x00" * 80, expires=signed_offer.record.expires + 1)
    assert check_refusal(late, **ok) is None


def test_a_refusal_is_a_registered_per_task_record():
    signed_offer, _ = _offer(b"x")
    refusal = Refusal(
        task_id=signed_offer.record.task_id,
        offer_id=signed_offer.record_id,
        client=CLIENT.peer_id,
        enc_key=b"\x01" * 32,
        sealed_digest=b"\x02" * 32,
        client_sig=b"\x03" * 64,
        code="bad_seal",
        result_key=b"\x04" * 32,
        enclave_sig=b"\x05" * 64,
        seq=1,
        expires=NOW + 60,
    )
    signed = sign(refusal, NODE)
    assert decode(signed.data, now=NOW).record == refusal
    assert refusal.slot() == refusal.task_id
    from repp2p.records import FEED_TYPES

    assert "Refusal" in FEED_TYPES


# -- what the enclave does not sign ------------------------------------------------------------


def test_a_valid_input_runs_whatever_the_node_claims(enclave):
    signed_offer, secret = _offer(b"hello")
    o = signed_offer.record
    sealed, _ = seal_input(b"hello", enclave.enc_key, task_id=o.task_id, secret=secret)
    encrypted, receipt = _execute(enclave, signed_offer, sealed)
    assert receipt.input_digest == o.input_digest and encrypted


@pytest.mark.parametrize(
    "change",
    ["input_digest", "client_result_key", "engine_id", "offer_id", "input_size", "offer"],
)
def test_a_node_that_misstates_the_task_gets_no_refusal(enclave, change):
    # The node tries to make a valid input fail (a wrong digest, key, engine...) so that
    # the enclave signs a refusal: it refuses the request instead, which proves nothing.
    signed_offer, secret = _offer(b"hello")
    o = signed_offer.record
    sealed, _ = seal_input(b"hello", enclave.enc_key, task_id=o.task_id, secret=secret)
    other, _ = _offer(b"bye")
    over = {
        "input_digest": {"input_digest": b"\x00" * 32},
        "client_result_key": {"client_result_key": b"\x00" * 32},
        "engine_id": {"engine_id": "sentiment"},
        "offer_id": {"offer_id": b"\x00" * 32},
        "input_size": {"input_size": 99},
        "offer": {"offer": other.data},
    }[change]
    with pytest.raises(EnclaveError) as caught:
        _execute(enclave, signed_offer, sealed, **over)
    assert not isinstance(caught.value, InputRefused)
    assert caught.value.reason is EnclaveReason.BAD_REQUEST


def test_bytes_the_client_did_not_sign_get_no_refusal(enclave):
    signed_offer, secret = _offer(b"hello")
    o = signed_offer.record
    sealed, _ = seal_input(b"hello", enclave.enc_key, task_id=o.task_id, secret=secret)
    sig = sign_sealed_input(
        CLIENT, task_id=o.task_id, node=NODE.peer_id, enc_key=enclave.enc_key, sealed=sealed
    )
    bad = b"\x00" * 80
    for_other = sign_sealed_input(
        CLIENT, task_id=o.task_id, node=OTHER.peer_id, enc_key=enclave.enc_key, sealed=bad
    )
    cases = [
        {"sealed_input": bad, "sig": sig},  # the node swapped the bytes
        {"sealed_input": bad, "signer": OTHER},  # signed by someone else
        {"sealed_input": bad, "sig": for_other},  # signed for another node
    ]
    for case in cases:
        bytes_ = case.pop("sealed_input")
        with pytest.raises(EnclaveError) as caught:
            _execute(enclave, signed_offer, bytes_, **case)
        assert caught.value.reason is EnclaveReason.BAD_REQUEST, case


def test_without_a_signature_failures_stay_plain_errors(enclave):
    signed_offer, _ = _offer(b"hello")
    o = signed_offer.record
    with pytest.raises(EnclaveError) as caught:
        enclave.execute(
            task_id=o.task_id,
            offer_id=signed_offer.record_id,
            engine_id="echo",
            input_digest=o.input_digest,
            sealed_input=b"\x00" * 80,
            client_result_key=o.result_key,
            started_ms=NOW * 1000,
            expires=o.expires,
        )
    assert caught.value.reason is EnclaveReason.BAD_SEAL
