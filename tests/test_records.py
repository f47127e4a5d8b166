"""Signed records: round-trips, strictness, reasons, and single-byte mutations."""

from __future__ import annotations

import dataclasses
import hashlib

import cbor2
import nacl.signing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repp2p.errors import RecordError, RecordReason
from repp2p.records import (
    MAX_ENVELOPE_SIZE,
    MAX_LIFETIME_S,
    RECORD_TYPES,
    Heartbeat,
    NodeAd,
    check_lifetime,
    decode,
    encode,
    peer_id_from_public_key,
    public_key_from_peer_id,
    receipt_message,
)
from repp2p.records.codec import DOMAIN
from repp2p.testing import factories
from repp2p.testing.strategies import identities, records_of

ALICE = factories.identity("alice")


def _envelope(data: bytes) -> dict:
    return cbor2.loads(data)


def _resign(type_tag: str, body: bytes, key=ALICE) -> bytes:
    """Build a correctly signed envelope around arbitrary body bytes."""
    sig = key.signing_key.sign(DOMAIN + type_tag.encode() + b"\0" + body).signature
    return cbor2.dumps(
        {"type": type_tag, "body": body, "signer": key.public_key, "sig": sig}, canonical=True
    )


def _reason(data: object, **kwargs) -> RecordReason:
    with pytest.raises(RecordError) as info:
        decode(data, **kwargs)  # type: ignore[arg-type]
    return info.value.reason


@pytest.mark.parametrize("cls", list(RECORD_TYPES.values()), ids=list(RECORD_TYPES))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip_every_type(cls, data):
    record = data.draw(records_of(cls))
    key = data.draw(identities())
    encoded = encode(record, key)
    signed = decode(encoded)
    assert signed.record == record
    assert signed.signer == key.peer_id
    assert signed.record_id == hashlib.sha256(encoded).digest()
    assert encode(record, key) == encoded  # deterministic: Ed25519 and CBOR both are


def test_signer_is_the_libp2p_peer_id():
    from libp2p.peer.id import ID

    keypair = ALICE.to_libp2p_keypair()
    libp2p_id = ID.from_pubkey(keypair.public_key).to_base58()
    signed = decode(encode(factories.sample_records()[2], ALICE))
    assert signed.signer == libp2p_id == ALICE.peer_id
    assert public_key_from_peer_id(libp2p_id) == ALICE.public_key


def test_encode_accepts_a_raw_nacl_key():
    key = nacl.signing.SigningKey(b"\x07" * 32)
    signed = decode(encode(factories.sample_records()[2], key))
    assert signed.signer_key == bytes(key.verify_key)


def test_peer_id_rejects_non_canonical_and_foreign_forms():
    good = ALICE.peer_id
    assert peer_id_from_public_key(ALICE.public_key) == good
    for bad in ("", "2" + good[1:], good[:-1], good + "x", "0" * 52, "Qm" + good[2:]):
        with pytest.raises(ValueError):
            public_key_from_peer_id(bad)


def test_expiry_is_checked_against_now():
    record = Heartbeat(epoch=1, load=0, tasks_done=0, seq=1, expires=1_000)
    data = encode(record, ALICE)
    assert decode(data, now=999).record == record
    assert _reason(data, now=1_000) is RecordReason.EXPIRED
    assert decode(data).record == record  # inspection without a clock


def test_lifetime_caps_cover_every_type():
    day = 86_400
    assert {
        "NodeAd": day,
        "Attestation": day,
        "Heartbeat": day,
        "TaskOffer": 30 * day,
        "Claim": 30 * day,
        "Receipt": 30 * day,
        "Feedback": 30 * day,
        "WorkDigest": 30 * day,
        "FeedbackDigest": 30 * day,
        "Refusal": 30 * day,
    } == MAX_LIFETIME_S
    assert MAX_LIFETIME_S.keys() == RECORD_TYPES.keys()


@pytest.mark.parametrize(
    "record", factories.sample_records() + factories.sample_digests(), ids=lambda r: r.TYPE
)
def test_expires_is_capped_per_type(record):
    now = factories.NOW
    cap = MAX_LIFETIME_S[record.TYPE]

    def expiring(expires: int) -> bytes:
        return encode(dataclasses.replace(record, expires=expires), ALICE)

    for lifetime in (1, cap - 1, cap):
        assert decode(expiring(now + lifetime), now=now).record.expires == now + lifetime
    too_far = expiring(now + cap + 7)
    with pytest.raises(RecordError) as info:
        decode(too_far, now=now)
    assert info.value.reason is RecordReason.EXPIRES_TOO_FAR
    assert f"{record.TYPE} expires 7 s past its cap of {cap} s" in info.value.detail
    assert decode(too_far).record.expires == now + cap + 7  # inspection without a clock
    assert decode(too_far, now=now + 7).record.expires == now + cap + 7  # a little later: in
    with pytest.raises(RecordError) as info:
        check_lifetime(dataclasses.replace(record, expires=now + cap + 1), now)
    assert info.value.reason is RecordReason.EXPIRES_TOO_FAR


def test_expired_is_checked_before_the_cap():
    record = Heartbeat(epoch=1, load=0, tasks_done=0, seq=1, expires=1_000)
    with pytest.raises(RecordError) as info:
        check_lifetime(record, 1_000)
    assert info.value.reason is RecordReason.EXPIRED
    check_lifetime(record, 999)


def test_construction_validates_fields():
    with pytest.raises(RecordError) as info:
        Heartbeat(epoch=-1, load=0, tasks_done=0, seq=1, expires=1)
    assert info.value.reason is RecordReason.BAD_FIELD
    with pytest.raises(RecordError):
        Heartbeat(epoch=True, load=0, tasks_done=0, seq=1, expires=1)  # bool is not an int
    with pytest.raises(RecordError):
        NodeAd(
            addrs=("not-a-multiaddr",),
            engines=(),
            tee_kind="simulated",
            price=0,
            capacity=1,
            throughput=0,
            seq=1,
            expires=1,
        )
    with pytest.raises(RecordError):
        NodeAd(
            addrs=(),
            engines=(),
            tee_kind="quantum",
            price=0,
            capacity=1,
            throughput=0,
            seq=1,
            expires=1,
        )


def test_rejection_reasons():
    hb = factories.sample_records()[2]
    good = encode(hb, ALICE)
    env = _envelope(good)
    body = cbor2.loads(env["body"])

    assert _reason("text") is RecordReason.MALFORMED
    assert _reason(b"") is RecordReason.MALFORMED
    assert _reason(b"\xff\x00") is RecordReason.MALFORMED
    assert _reason(b"\x00" * (MAX_ENVELOPE_SIZE + 1)) is RecordReason.OVERSIZE
    assert _reason(cbor2.dumps([1, 2])) is RecordReason.MALFORMED
    # A Heartbeat padded past its own cap (but under the global one).
    padded = dict(env, sig=env["sig"])
    padded["type"] = "Heartbeat"
    padded["body"] = cbor2.dumps(dict(body, load=0), canonical=True) + b""
    big = _resign("Heartbeat", cbor2.dumps(dict(body), canonical=True) + b"\x00" * 2000)
    assert _reason(big) is RecordReason.OVERSIZE
    # Non-canonical: map keys out of order, or a long-form integer.
    unsorted = b"\xa4" + b"".join(
        cbor2.dumps(k) + cbor2.dumps(env[k]) for k in ("type", "body", "sig", "signer")
    )
    assert _reason(unsorted) is RecordReason.NON_CANONICAL
    long_int_body = env["body"].replace(b"\x64load\x01", b"\x64load\x18\x01")
    assert long_int_body != env["body"]
    assert _reason(_resign("Heartbeat", long_int_body)) is RecordReason.NON_CANONICAL
    # Duplicate keys are malformed, whatever the order.
    dup = b"\xa2" + cbor2.dumps("type") + cbor2.dumps("a") + cbor2.dumps("type") + cbor2.dumps("b")
    assert _reason(dup) is RecordReason.MALFORMED
    # Unknown type, unknown field, missing field, wrong field type.
    assert _reason(_resign("Nope", env["body"])) is RecordReason.UNKNOWN_TYPE
    extra = cbor2.dumps(dict(body, extra=1), canonical=True)
    assert _reason(_resign("Heartbeat", extra)) is RecordReason.UNKNOWN_FIELD
    missing = cbor2.dumps({k: v for k, v in body.items() if k != "load"}, canonical=True)
    assert _reason(_resign("Heartbeat", missing)) is RecordReason.MISSING_FIELD
    wrong = cbor2.dumps(dict(body, load="many"), canonical=True)
    assert _reason(_resign("Heartbeat", wrong)) is RecordReason.BAD_FIELD
    negative = cbor2.dumps(dict(body, load=-1), canonical=True)
    assert _reason(_resign("Heartbeat", negative)) is RecordReason.BAD_FIELD
    floating = cbor2.dumps(dict(body, load=1.5), canonical=True)
    assert _reason(_resign("Heartbeat", floating)) is RecordReason.BAD_FIELD
    # Signer and signature.
    bad_signer = cbor2.dumps(dict(env, signer=b"\x01" * 31), canonical=True)
    assert _reason(bad_signer) is RecordReason.BAD_SIGNER
    other = factories.identity("mallory").public_key
    assert (
        _reason(cbor2.dumps(dict(env, signer=other), canonical=True)) is RecordReason.BAD_SIGNATURE
    )
    flipped = bytes([env["sig"][0] ^ 1]) + env["sig"][1:]
    assert (
        _reason(cbor2.dumps(dict(env, sig=flipped), canonical=True)) is RecordReason.BAD_SIGNATURE
    )
    # A signature is bound to its type: the same body under another type tag fails.
    retyped = cbor2.dumps(dict(env, type="Claim"), canonical=True)
    assert _reason(retyped) in (RecordReason.MISSING_FIELD, RecordReason.UNKNOWN_FIELD)


def test_tagged_values_are_rejected():
    body = cbor2.loads(_envelope(encode(factories.sample_records()[2], ALICE))["body"])
    tagged = cbor2.dumps(dict(body, load=cbor2.CBORTag(2, b"\x01")), canonical=True)
    with pytest.raises(RecordError):
        decode(_resign("Heartbeat", tagged))


def _mutations(data: bytes, values_per_position: int | None):
    for i in range(len(data)):
        candidates = (
            range(256)
            if values_per_position is None
            else (
                data[i] ^ 0x01,
                data[i] ^ 0x80,
                data[i] ^ 0xFF,
                (data[i] + 1) % 256,
                (data[i] - 1) % 256,
                0x00,
                0x1F,
                0x5F,
                0xBF,
                0xF6,
            )
        )
        for value in set(candidates) - {data[i]}:
            yield data[:i] + bytes([value]) + data[i + 1 :]


def _check_mutants(original: bytes, values_per_position: int | None) -> int:
    seen = 0
    orig = decode(original)
    for mutant in _mutations(original, values_per_position):
        seen += 1
        try:
            signed = decode(mutant)
        except RecordError:
            continue
        # Accepting is allowed only as a *different*, validly signed record.
        assert signed.record_id != orig.record_id
        assert signed.data == mutant
    return seen


def test_every_single_byte_change_of_a_heartbeat():
    # All 255 alternatives at every position of a small record.
    original = encode(factories.sample_records()[2], ALICE)
    assert _check_mutants(original, None) == len(original) * 255


def _one_of_each_type() -> list:
    samples = factories.sample_records() + factories.sample_digests()
    samples.append(factories.sample_refusal())
    assert [r.TYPE for r in samples] == list(RECORD_TYPES)
    return samples


@pytest.mark.parametrize("index", range(len(RECORD_TYPES)), ids=list(RECORD_TYPES))
def test_single_byte_changes_of_every_type(index):
    original = encode(_one_of_each_type()[index], ALICE)
    assert _check_mutants(original, 10) > len(original) * 5


def test_receipt_message_excludes_only_the_enclave_signature():
    receipt = factories.sample_records()[5]
    import dataclasses

    other_sig = dataclasses.replace(receipt, enclave_sig=b"\x01" * 64)
    other_output = dataclasses.replace(receipt, output_digest=b"\x02" * 32)
    assert receipt_message(receipt) == receipt_message(other_sig)
    assert receipt_message(receipt) != receipt_message(other_output)
