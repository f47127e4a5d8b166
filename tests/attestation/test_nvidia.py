"""NVIDIA H100 SPDM evidence: the real sample, breakage, and the GPU-to-CPU binding."""

from __future__ import annotations

import dataclasses
import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from repp2p.attestation import (
    NvidiaBackend,
    Policy,
    SimulatedEnclave,
    default_backends,
    encode_gpu_evidence,
    expected_gpu_nonce,
    roots,
    verify_evidence,
    verify_node,
)
from repp2p.attestation.certs import load_certificates
from repp2p.errors import AttestationError, AttestationReason

from .conftest import ENC_KEY, MEASUREMENT, NONCE, NVIDIA_AT, PEER_ID, RESULT_KEY, ts, vector

REPORT = "nvidia-h100/hopperAttestationReport.txt"
CHAIN = "nvidia-h100/hopperCertChain.txt"


@pytest.fixture(scope="module")
def backend() -> NvidiaBackend:
    return NvidiaBackend()


def raw_report() -> bytes:
    return bytes.fromhex(vector(REPORT).decode().strip())


def reason_of(backend, evidence, collateral, now) -> AttestationReason:  # type: ignore[no-untyped-def]
    with pytest.raises(AttestationError) as err:
        backend.verify(evidence, collateral, now)
    return err.value.reason


def test_sample_accepted(backend) -> None:  # type: ignore[no-untyped-def]
    claims = backend.verify(vector(REPORT), vector(CHAIN), NVIDIA_AT)
    assert claims.kind == "nvidia" and len(claims.measurements) == 64
    assert claims.report_data.hex().startswith("931d8dd0")
    assert dict(claims.details)["driver_version"] == "550.90.07"
    wire = encode_gpu_evidence(raw_report(), vector(CHAIN))
    assert backend.verify(wire, b"", NVIDIA_AT) == claims


def test_flipped_body_and_signature(backend) -> None:  # type: ignore[no-untyped-def]
    raw, chain = raw_report(), vector(CHAIN)
    for pos in (10, 37 + 8 + 7 + 20, len(raw) - 200, len(raw) - 1, len(raw) - 60):
        flipped = raw[:pos] + bytes([raw[pos] ^ 1]) + raw[pos + 1 :]
        assert reason_of(backend, flipped, chain, NVIDIA_AT) is AttestationReason.BAD_SIGNATURE
    for cut in (36, 100, len(raw) - 1):
        assert reason_of(backend, raw[:cut], chain, NVIDIA_AT) is AttestationReason.MALFORMED


def test_chain_problems(backend) -> None:  # type: ignore[no-untyped-def]
    raw, chain = raw_report(), vector(CHAIN)
    foreign = NvidiaBackend(root=roots.aws_nitro_root())
    assert reason_of(foreign, raw, chain, NVIDIA_AT) is AttestationReason.UNTRUSTED_ROOT
    certs = load_certificates(chain)
    pem = b"".join(c.x509.public_bytes(serialization.Encoding.PEM) for c in (certs[0], *certs[2:]))
    assert reason_of(backend, raw, pem, NVIDIA_AT) is AttestationReason.BROKEN_CHAIN
    assert reason_of(backend, raw, b"", NVIDIA_AT) is AttestationReason.MISSING_COLLATERAL
    # The chain is valid until 9999; before the root existed it is not yet valid.
    assert reason_of(backend, raw, chain, ts("2020-01-01T00:00:00Z")) is (
        AttestationReason.CERT_NOT_YET_VALID
    )


def test_gpu_report_alone_is_never_a_node(dev_policy: Policy) -> None:
    wire = encode_gpu_evidence(raw_report(), vector(CHAIN))
    with pytest.raises(AttestationError) as err:
        verify_node(PEER_ID, "nvidia", wire, b"", b"", ENC_KEY, RESULT_KEY, 1, NONCE,
                    dev_policy, NVIDIA_AT)  # fmt: skip
    assert err.value.reason is AttestationReason.KIND_NOT_ALLOWED


def test_wrong_measurement(dev_policy: Policy) -> None:
    policy = dataclasses.replace(
        dev_policy, measurements={"*": {"nvidia": frozenset({b"\1" * 48})}}
    )
    with pytest.raises(AttestationError) as err:
        verify_evidence("nvidia", vector(REPORT), vector(CHAIN), policy, NVIDIA_AT)
    assert err.value.reason is AttestationReason.MEASUREMENT_NOT_ALLOWED


# --- binding, with a synthetic GPU (our own root: a real GPU cannot sign our nonce here) ---


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject, issuer, key, issuer_key, ca: bool) -> x509.Certificate:  # type: ignore[no-untyped-def]
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA384())
    )


@pytest.fixture(scope="module")
def fake_gpu():  # type: ignore[no-untyped-def]
    root_key = ec.generate_private_key(ec.SECP384R1())
    leaf_key = ec.generate_private_key(ec.SECP384R1())
    root = _cert("Test GPU Root", "Test GPU Root", root_key, root_key, True)
    leaf = _cert("Test GPU", "Test GPU Root", leaf_key, root_key, False)
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, root))

    def report(nonce: bytes) -> bytes:
        request = b"\x11\xe0\x01\xff" + nonce + b"\x00"
        block = bytes([1, 1]) + (51).to_bytes(2, "little") + b"\x01" + (48).to_bytes(2, "little")
        record = block + b"\x33" * 48
        opaque = (3).to_bytes(2, "little") + (4).to_bytes(2, "little") + b"1.0\x00"
        body = (b"\x11\x60\x00\x00\x01" + len(record).to_bytes(3, "little") + record
                + b"\x55" * 32 + len(opaque).to_bytes(2, "little") + opaque)  # fmt: skip
        der = leaf_key.sign(request + body, ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(der)
        return request + body + r.to_bytes(48, "big") + s.to_bytes(48, "big")

    root_cert = load_certificates(root.public_bytes(serialization.Encoding.PEM))[0]
    backends = dict(default_backends())
    backends["nvidia"] = NvidiaBackend(root=root_cert)
    return report, chain, backends


def test_gpu_bound_into_cpu_report_is_accepted(fake_gpu, enclave, dev_policy) -> None:  # type: ignore[no-untyped-def]
    report, chain, backends = fake_gpu
    now, epoch = ts("2025-01-01T00:00:00Z"), 3
    gpu = encode_gpu_evidence(report(expected_gpu_nonce(PEER_ID, ENC_KEY, RESULT_KEY, epoch,
                                                        NONCE)), chain)  # fmt: skip
    cpu = enclave.attest(PEER_ID, ENC_KEY, RESULT_KEY, epoch, NONCE, now, gpu_evidence=gpu)
    args = (PEER_ID, "simulated", cpu, b"", gpu, ENC_KEY, RESULT_KEY, epoch, NONCE)
    node = verify_node(*args, dev_policy, now, backends=backends)
    assert node.gpu_claims is not None and node.gpu_claims.kind == "nvidia"

    # Another GPU report (even a valid one) than the CPU report committed to: refused.
    other = encode_gpu_evidence(report(expected_gpu_nonce(PEER_ID, ENC_KEY, RESULT_KEY, epoch,
                                                          NONCE)), chain)  # fmt: skip
    assert other != gpu  # ECDSA signatures are randomised
    with pytest.raises(AttestationError) as err:
        verify_node(*args[:4], other, *args[5:], dev_policy, now, backends=backends)
    assert err.value.reason is AttestationReason.REPORT_DATA_MISMATCH

    # A GPU report with a nonce from another binding: refused even when the CPU commits to it.
    stale = encode_gpu_evidence(report(b"\x00" * 32), chain)
    cpu2 = enclave.attest(PEER_ID, ENC_KEY, RESULT_KEY, epoch, NONCE, now, gpu_evidence=stale)
    with pytest.raises(AttestationError) as err:
        verify_node(PEER_ID, "simulated", cpu2, b"", stale, ENC_KEY, RESULT_KEY, epoch, NONCE,
                    dev_policy, now, backends=backends)  # fmt: skip
    assert err.value.reason is AttestationReason.REPORT_DATA_MISMATCH

    # A policy that does not accept nvidia refuses the node's GPU evidence.
    no_gpu = dataclasses.replace(dev_policy, accepted_kinds=dev_policy.accepted_kinds - {"nvidia"})
    with pytest.raises(AttestationError) as err:
        verify_node(*args, no_gpu, now, backends=backends)
    assert err.value.reason is AttestationReason.KIND_NOT_ALLOWED

    # A peer whose verifier table lacks a kind (here nvidia) refuses with a reason, no KeyError.
    partial = {kind: b for kind, b in backends.items() if kind != "nvidia"}
    with pytest.raises(AttestationError) as err:
        verify_node(*args, dev_policy, now, backends=partial)
    assert err.value.reason is AttestationReason.KIND_NOT_ALLOWED and "nvidia" in str(err.value)


def test_simulated_enclave_fixture_measurement(enclave) -> None:  # type: ignore[no-untyped-def]
    assert enclave.measurement == MEASUREMENT
    assert isinstance(SimulatedEnclave, type)
