"""The simulated TEE and the binding, end to end through verify_node."""

from __future__ import annotations

import dataclasses

import pytest

from repp2p.attestation import (
    SIMULATED_LABEL,
    Policy,
    SimulatedBackend,
    SimulatedEnclave,
    VerificationCache,
    verify_evidence,
    verify_node,
)
from repp2p.attestation.simulated import DEV_ROOT_PUBLIC_KEY
from repp2p.errors import AttestationError, AttestationReason

from .conftest import ENC_KEY, MEASUREMENT, NONCE, PEER_ID, RESULT_KEY

NOW = 1_800_000_000
EPOCH = 12


def node_args(evidence: bytes, **over: object) -> dict[str, object]:
    args: dict[str, object] = {
        "peer_id": PEER_ID, "tee_kind": "simulated", "evidence": evidence, "collateral": b"",
        "gpu_evidence": b"", "enc_key": ENC_KEY, "result_key": RESULT_KEY, "epoch": EPOCH,
        "nonce": NONCE,
    }  # fmt: skip
    args.update(over)
    return args


def attest(enclave: SimulatedEnclave, now: int = NOW) -> bytes:
    return enclave.attest(PEER_ID, ENC_KEY, RESULT_KEY, EPOCH, NONCE, now)


def rejected(**kw: object) -> AttestationReason:
    with pytest.raises(AttestationError) as err:
        verify_node(**kw)  # type: ignore[arg-type]
    return err.value.reason


def test_dev_policy_accepts_bound_simulated_evidence(enclave, dev_policy) -> None:  # type: ignore[no-untyped-def]
    node = verify_node(**node_args(attest(enclave)), policy=dev_policy, now=NOW)  # type: ignore[arg-type]
    assert node.simulated and node.claims.simulated
    assert node.claims.measurement == MEASUREMENT
    assert node.claims.to_json_dict()["label"] == SIMULATED_LABEL
    assert node.claims.describe().startswith(SIMULATED_LABEL)


def test_production_policy_never_accepts_simulated(enclave, prod_policy) -> None:  # type: ignore[no-untyped-def]
    ev = attest(enclave)
    assert rejected(**node_args(ev), policy=prod_policy, now=NOW) is (
        AttestationReason.SIMULATED_NOT_ALLOWED
    )
    with pytest.raises(AttestationError) as err:
        verify_evidence("simulated", ev, b"", prod_policy, NOW)
    assert err.value.reason is AttestationReason.SIMULATED_NOT_ALLOWED


@pytest.mark.parametrize(
    "field, value",
    [
        ("peer_id", "12D3KooWOtherPeerOtherPeerOtherPeerOtherPeerOtherPeer1"),
        ("enc_key", b"\x09" * 32),
        ("result_key", b"\x09" * 32),
        ("epoch", EPOCH + 1),
        ("nonce", b"\x00" * 32),
        ("gpu_evidence", b"not the gpu report the cpu report committed to"),
    ],
)
def test_binding_mismatch(enclave, dev_policy, field, value) -> None:  # type: ignore[no-untyped-def]
    args = node_args(attest(enclave), **{field: value})
    assert rejected(**args, policy=dev_policy, now=NOW) is AttestationReason.REPORT_DATA_MISMATCH


def test_stale_epoch_and_stale_evidence(enclave, dev_policy) -> None:  # type: ignore[no-untyped-def]
    ev = attest(enclave)
    assert rejected(**node_args(ev), policy=dev_policy, now=NOW, current_epoch=EPOCH + 5) is (
        AttestationReason.STALE_EVIDENCE
    )
    assert rejected(**node_args(ev), policy=dev_policy, now=NOW, current_epoch=EPOCH - 1) is (
        AttestationReason.STALE_EVIDENCE
    )
    verify_node(**node_args(ev), policy=dev_policy, now=NOW, current_epoch=EPOCH + 1)  # type: ignore[arg-type]
    strict = dataclasses.replace(dev_policy, max_evidence_age_s=60)
    assert rejected(**node_args(ev), policy=strict, now=NOW + 61) is (
        AttestationReason.STALE_EVIDENCE
    )


def test_debug_and_measurement_policy(dev_policy) -> None:  # type: ignore[no-untyped-def]
    debug = SimulatedEnclave(seed=b"\x02" * 32, measurement=MEASUREMENT, debug=True)
    no_debug = dataclasses.replace(dev_policy, allow_debug=False)
    assert rejected(**node_args(attest(debug)), policy=no_debug, now=NOW) is (
        AttestationReason.DEBUG_ENCLAVE
    )
    pinned = dataclasses.replace(
        dev_policy, measurements={"*": {"simulated": frozenset({b"\x00" * 48})}}
    )
    good = SimulatedEnclave(seed=b"\x02" * 32, measurement=MEASUREMENT)
    assert rejected(**node_args(attest(good)), policy=pinned, now=NOW) is (
        AttestationReason.MEASUREMENT_NOT_ALLOWED
    )


def test_foreign_root_expiry_and_signature(dev_policy) -> None:  # type: ignore[no-untyped-def]
    foreign = SimulatedEnclave(seed=b"\x03" * 32, measurement=MEASUREMENT, root_seed=b"\x07" * 32)
    assert rejected(**node_args(attest(foreign)), policy=dev_policy, now=NOW) is (
        AttestationReason.UNTRUSTED_ROOT
    )
    enclave = SimulatedEnclave(seed=b"\x03" * 32, measurement=MEASUREMENT, cert_lifetime_s=100)
    ev = attest(enclave)
    backend = SimulatedBackend()
    with pytest.raises(AttestationError) as err:
        backend.verify(ev, b"", NOW + 101)
    assert err.value.reason is AttestationReason.CERT_EXPIRED
    with pytest.raises(AttestationError) as err:
        backend.verify(ev, b"", NOW - 3600)
    assert err.value.reason is AttestationReason.CERT_NOT_YET_VALID
    # The last byte is inside the report signature.
    bad_sig = ev[:-1] + bytes([ev[-1] ^ 1])
    with pytest.raises(AttestationError) as err:
        backend.verify(bad_sig, b"", NOW)
    assert err.value.reason is AttestationReason.BAD_SIGNATURE


def test_dev_root_is_derived_from_the_public_seed() -> None:
    assert len(DEV_ROOT_PUBLIC_KEY) == 32
    assert SimulatedBackend(DEV_ROOT_PUBLIC_KEY).kind == "simulated"


def test_cache_hits_and_respects_window(enclave, dev_policy) -> None:  # type: ignore[no-untyped-def]
    cache: VerificationCache = VerificationCache(max_entries=2)
    ev = attest(enclave)
    first = verify_node(**node_args(ev), policy=dev_policy, now=NOW, cache=cache)  # type: ignore[arg-type]
    again = verify_node(**node_args(ev), policy=dev_policy, now=NOW + 1, cache=cache)  # type: ignore[arg-type]
    assert again is first and cache.hits == 1
    # A different binding is a different key: no false hit.
    assert rejected(**node_args(ev, epoch=EPOCH + 1), policy=dev_policy, now=NOW, cache=cache) is (
        AttestationReason.REPORT_DATA_MISMATCH
    )
    # Policy is re-applied on a hit: a stricter policy has another fingerprint anyway, and
    # time moving past the evidence age fails even for a cached entry.
    strict = dataclasses.replace(dev_policy, max_evidence_age_s=10)
    assert rejected(**node_args(ev), policy=strict, now=NOW + 11, cache=cache) is (
        AttestationReason.STALE_EVIDENCE
    )
    # Past the certificate window the entry is a miss and verification fails.
    late = NOW + enclave.cert_lifetime_s + 10
    assert rejected(**node_args(ev), policy=dev_policy, now=late, cache=cache) is (
        AttestationReason.CERT_EXPIRED
    )
    assert cache.evict_expired(late) >= 1


def test_verify_node_refuses_gpu_only_and_unknown_kinds(enclave, dev_policy) -> None:  # type: ignore[no-untyped-def]
    ev = attest(enclave)
    assert rejected(**node_args(ev, tee_kind="nvidia"), policy=dev_policy, now=NOW) is (
        AttestationReason.KIND_NOT_ALLOWED
    )
    assert rejected(**node_args(ev, tee_kind="sgx"), policy=dev_policy, now=NOW) is (
        AttestationReason.KIND_NOT_ALLOWED
    )
    policy = Policy(profile="dev", accepted_kinds=frozenset({"nitro"}))
    assert rejected(**node_args(ev), policy=policy, now=NOW) is (
        AttestationReason.SIMULATED_NOT_ALLOWED
    )
