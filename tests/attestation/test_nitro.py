"""AWS Nitro attestation documents: the real vectors and every way to break them."""

from __future__ import annotations

import base64
import dataclasses

import cbor2
import pytest

from repp2p.attestation import NitroBackend, Policy, load_policy, roots, verify_evidence
from repp2p.errors import AttestationError, AttestationReason

from .conftest import NITRO_B64_AT, NITRO_DEBUG_AT, NITRO_VALID_AT, REPO, vector

VALID = "nitro/valid-attestation-doc-bytes"
DEBUG = "nitro/debug-mode-attestation-doc-bytes"
B64 = "nitro/valid-attestation-doc-base64"


@pytest.fixture(scope="module")
def backend() -> NitroBackend:
    return NitroBackend()


def reason_of(backend: NitroBackend, evidence: bytes, now: int) -> AttestationReason:
    with pytest.raises(AttestationError) as err:
        backend.verify(evidence, b"", now)
    return err.value.reason


@pytest.mark.parametrize(
    "name, at, debug",
    [(VALID, NITRO_VALID_AT, False), (DEBUG, NITRO_DEBUG_AT, True), (B64, NITRO_B64_AT, True)],
)
def test_vectors_accepted_at_pinned_time(backend, name, at, debug) -> None:  # type: ignore[no-untyped-def]
    claims = backend.verify(vector(name), b"", at)
    assert claims.kind == "nitro" and not claims.simulated
    assert claims.debug is debug
    assert abs(claims.signed_at - at) < 600
    assert claims.valid_from <= at <= claims.valid_until
    assert len(claims.measurement) == 48 and len(claims.measurements) == 16
    assert claims.platform_id.startswith(b"i-")


def test_tagged_cose_sign1_is_accepted(backend) -> None:  # type: ignore[no-untyped-def]
    raw = vector(VALID)
    tagged = cbor2.dumps(cbor2.CBORTag(18, cbor2.loads(raw)))
    assert backend.verify(tagged, b"", NITRO_VALID_AT) == backend.verify(raw, b"", NITRO_VALID_AT)
    assert backend.verify(base64.b64encode(raw), b"", NITRO_VALID_AT).measurement


def test_production_policy_accepts_real_doc_and_refuses_debug_docs() -> None:
    prod = load_policy(REPO / "bootstrap" / "policy-production.toml")
    prod = dataclasses.replace(prod, max_evidence_age_s=3600)
    claims = verify_evidence("nitro", vector(VALID), b"", prod, NITRO_VALID_AT)
    assert not claims.debug
    for name, at in ((DEBUG, NITRO_DEBUG_AT), (B64, NITRO_B64_AT)):
        with pytest.raises(AttestationError) as err:
            verify_evidence("nitro", vector(name), b"", prod, at)
        assert err.value.reason is AttestationReason.DEBUG_ENCLAVE


def _resign_payload(raw: bytes, mutate) -> bytes:  # type: ignore[no-untyped-def]
    protected, unprotected, payload, sig = cbor2.loads(raw)
    doc = cbor2.loads(payload)
    mutate(doc)
    return cbor2.dumps([protected, unprotected, cbor2.dumps(doc), sig])


def test_flipped_body_and_signature(backend) -> None:  # type: ignore[no-untyped-def]
    raw = vector(VALID)
    protected, unprotected, payload, sig = cbor2.loads(raw)
    # A PCR byte changed: same structure, signature no longer matches.
    tampered = _resign_payload(raw, lambda d: d["pcrs"].__setitem__(0, b"\x00" + d["pcrs"][0][1:]))
    assert reason_of(backend, tampered, NITRO_VALID_AT) is AttestationReason.BAD_SIGNATURE
    bad_sig = cbor2.dumps([protected, unprotected, payload, sig[:-1] + bytes([sig[-1] ^ 1])])
    assert reason_of(backend, bad_sig, NITRO_VALID_AT) is AttestationReason.BAD_SIGNATURE
    short_sig = cbor2.dumps([protected, unprotected, payload, sig[:-1]])
    assert reason_of(backend, short_sig, NITRO_VALID_AT) is AttestationReason.BAD_SIGNATURE
    # The last byte of the raw document is the last byte of the signature.
    assert reason_of(backend, raw[:-1] + bytes([raw[-1] ^ 0x80]), NITRO_VALID_AT) is (
        AttestationReason.BAD_SIGNATURE
    )


def test_truncation_is_malformed(backend) -> None:  # type: ignore[no-untyped-def]
    raw = vector(VALID)
    for cut in (1, 10, len(raw) // 2, len(raw) - 1):
        assert reason_of(backend, raw[:cut], NITRO_VALID_AT) is AttestationReason.MALFORMED


def test_foreign_root(backend) -> None:  # type: ignore[no-untyped-def]
    foreign = NitroBackend(root=roots.intel_sgx_root())
    assert reason_of(foreign, vector(VALID), NITRO_VALID_AT) is AttestationReason.UNTRUSTED_ROOT


def test_swapped_intermediate_breaks_chain(backend) -> None:  # type: ignore[no-untyped-def]
    other = cbor2.loads(cbor2.loads(vector(DEBUG))[2])
    raw = _resign_payload(
        vector(VALID), lambda d: d["cabundle"].__setitem__(2, other["cabundle"][2])
    )
    assert reason_of(backend, raw, NITRO_VALID_AT) is AttestationReason.BROKEN_CHAIN


def test_later_time_past_certificate_expiry(dev_policy: Policy) -> None:
    later = NITRO_VALID_AT + 4 * 3600  # the signing leaf lives ~3 hours
    with pytest.raises(AttestationError) as err:
        verify_evidence("nitro", vector(VALID), b"", dev_policy, later)
    assert err.value.reason is AttestationReason.CERT_EXPIRED


def test_stale_evidence(dev_policy: Policy) -> None:
    policy = dataclasses.replace(dev_policy, max_evidence_age_s=60)
    with pytest.raises(AttestationError) as err:
        verify_evidence("nitro", vector(VALID), b"", policy, NITRO_VALID_AT + 120)
    assert err.value.reason is AttestationReason.STALE_EVIDENCE


def test_wrong_measurement(dev_policy: Policy) -> None:
    policy = dataclasses.replace(dev_policy, measurements={"*": {"nitro": frozenset({b"\1" * 48})}})
    with pytest.raises(AttestationError) as err:
        verify_evidence("nitro", vector(VALID), b"", policy, NITRO_VALID_AT)
    assert err.value.reason is AttestationReason.MEASUREMENT_NOT_ALLOWED


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("certificate"),
        lambda d: d.__setitem__("digest", "SHA256"),
        lambda d: d.__setitem__("timestamp", -1),
        lambda d: d.__setitem__("pcrs", {0: b"short"}),
        lambda d: d.__setitem__("cabundle", []),
        lambda d: d.__setitem__("cabundle", [b"not a certificate"]),
        lambda d: d.__setitem__("user_data", "text"),
    ],
)
def test_malformed_payloads(backend, mutate) -> None:  # type: ignore[no-untyped-def]
    raw = _resign_payload(vector(VALID), mutate)
    assert reason_of(backend, raw, NITRO_VALID_AT) is AttestationReason.MALFORMED


def test_wrong_algorithm_and_shapes(backend) -> None:  # type: ignore[no-untyped-def]
    protected, unprotected, payload, sig = cbor2.loads(vector(VALID))
    for obj in (
        [cbor2.dumps({1: -7}), unprotected, payload, sig],
        [protected, unprotected, payload],
        cbor2.CBORTag(17, [protected, unprotected, payload, sig]),
        {"a": 1},
        [protected, [], payload, sig],
    ):
        assert reason_of(backend, cbor2.dumps(obj), NITRO_VALID_AT) is AttestationReason.MALFORMED
    assert reason_of(backend, b"!!not base64!!", NITRO_VALID_AT) is AttestationReason.MALFORMED
