"""AMD SEV-SNP reports: the real vectors and every way to break them."""

from __future__ import annotations

import dataclasses
import struct

import pytest

from repp2p.attestation import Policy, SevSnpBackend, load_policy, roots, verify_evidence
from repp2p.attestation.sevsnp import decode_tcb
from repp2p.errors import AttestationError, AttestationReason

from .conftest import REPO, SEV_GO_AT, SEV_TURIN_AT, SEV_VIRTEE_AT, ts, vector

GO = ("sev-snp/attestation.bin", "sev-snp/vcek.testcer", SEV_GO_AT)
VIRTEE = ("sev-snp/virtee/report_milan.bin", "sev-snp/virtee/vcek_milan.der", SEV_VIRTEE_AT)


@pytest.fixture(scope="module")
def backend() -> SevSnpBackend:
    return SevSnpBackend()


def reason_of(backend, evidence, collateral, now) -> AttestationReason:  # type: ignore[no-untyped-def]
    with pytest.raises(AttestationError) as err:
        backend.verify(evidence, collateral, now)
    return err.value.reason


@pytest.mark.parametrize("case", [GO, VIRTEE], ids=["go-sev-guest", "virtee"])
def test_vectors_accepted_at_pinned_time(backend, case) -> None:  # type: ignore[no-untyped-def]
    report, vcek, at = case
    claims = backend.verify(vector(report), vector(vcek), at)
    assert claims.kind == "sev-snp" and claims.signed_at is None
    assert len(claims.measurement) == 48 and len(claims.platform_id) == 64
    assert dict(claims.details)["product"] == "Milan"


def test_go_sev_guest_report_fields(backend) -> None:  # type: ignore[no-untyped-def]
    report, vcek, at = GO
    claims = backend.verify(vector(report), vector(vcek), at)
    assert claims.report_data[:6] == bytes([1, 2, 3, 4, 5, 0])
    assert claims.tcb_map == {"bootloader": 2, "tee": 0, "snp": 5, "microcode": 68}
    assert claims.debug  # guest policy 0xb0000 allows debugging


def test_hex_report_and_full_chain_collateral(backend) -> None:  # type: ignore[no-untyped-def]
    report, vcek, at = VIRTEE
    hex_claims = backend.verify(vector("sev-snp/virtee/report_milan.hex"), vector(vcek), at)
    assert hex_claims == backend.verify(vector(report), vector(vcek), at)
    full = vector(vcek) + b"".join(c.der for c in (roots.amd_ask("Milan"), roots.amd_ark("Milan")))
    assert backend.verify(vector(report), full, at).measurement == hex_claims.measurement


def test_production_policy(backend) -> None:  # type: ignore[no-untyped-def]
    prod = load_policy(REPO / "bootstrap" / "policy-production.toml")
    report, vcek, at = VIRTEE
    verify_evidence("sev-snp", vector(report), vector(vcek), prod, at)
    report, vcek, at = GO
    with pytest.raises(AttestationError) as err:
        verify_evidence("sev-snp", vector(report), vector(vcek), prod, at)
    assert err.value.reason is AttestationReason.DEBUG_ENCLAVE
    no_debug = dataclasses.replace(prod, profile="dev", allow_debug=True)
    with pytest.raises(AttestationError) as err:
        verify_evidence("sev-snp", vector(report), vector(vcek), no_debug, at)
    assert err.value.reason is AttestationReason.TCB_OUT_OF_DATE  # snp 5 < 8


def test_turin_vcek_chain_and_tcb_layout(backend) -> None:  # type: ignore[no-untyped-def]
    _vcek, product, chain = backend.verify_vcek(
        vector("sev-snp/virtee/vcek_turin.der"), SEV_TURIN_AT
    )
    assert product == "Turin" and len(chain) == 2
    assert decode_tcb(bytes([1, 2, 3, 4, 0, 0, 0, 9]), "Turin") == {
        "fmc": 1, "bootloader": 2, "tee": 3, "snp": 4, "microcode": 9}  # fmt: skip


def test_genoa_and_turin_arks_pinned() -> None:
    for product in ("Milan", "Genoa", "Turin"):
        ark, ask = roots.amd_ark(product), roots.amd_ask(product)
        assert ask.issuer == ark.subject


def test_flipped_body_and_signature(backend) -> None:  # type: ignore[no-untyped-def]
    report, vcek, at = GO
    raw, col = vector(report), vector(vcek)
    for pos in (0x50, 0x90, 0x180, 0x1A0):  # report data, measurement, TCB, chip id
        body = raw[:pos] + bytes([raw[pos] ^ 1]) + raw[pos + 1 :]
        assert reason_of(backend, body, col, at) is AttestationReason.BAD_SIGNATURE
    for pos in (0x2A0, 0x2E8):  # R and S
        sig = raw[:pos] + bytes([raw[pos] ^ 1]) + raw[pos + 1 :]
        assert reason_of(backend, sig, col, at) is AttestationReason.BAD_SIGNATURE
    padding = raw[:0x400] + b"\x01" + raw[0x401:]
    assert reason_of(backend, padding, col, at) is AttestationReason.MALFORMED


def test_truncation_and_bad_versions(backend) -> None:  # type: ignore[no-untyped-def]
    report, vcek, at = GO
    raw, col = vector(report), vector(vcek)
    assert reason_of(backend, raw[:-1], col, at) is AttestationReason.MALFORMED
    assert reason_of(backend, raw[:0x2A0], col, at) is AttestationReason.MALFORMED
    v9 = struct.pack("<I", 9) + raw[4:]
    assert reason_of(backend, v9, col, at) is AttestationReason.MALFORMED
    algo = raw[:0x34] + struct.pack("<I", 2) + raw[0x38:]
    assert reason_of(backend, algo, col, at) is AttestationReason.MALFORMED


def test_missing_or_wrong_vcek(backend) -> None:  # type: ignore[no-untyped-def]
    report, _vcek, at = GO
    assert reason_of(backend, vector(report), b"", at) is AttestationReason.MISSING_COLLATERAL
    # The other chip's VCEK: valid chain, but not this chip / TCB.
    other = vector("sev-snp/virtee/vcek_milan.der")
    assert reason_of(backend, vector(report), other, SEV_VIRTEE_AT) in (
        AttestationReason.BAD_SIGNATURE,
        AttestationReason.BROKEN_CHAIN,
    )
    # A certificate without the hwID extension is not a VCEK.
    ask_only = roots.amd_ask("Milan").der
    assert reason_of(backend, vector(report), ask_only, at) is AttestationReason.MALFORMED


def test_foreign_root(backend) -> None:  # type: ignore[no-untyped-def]
    report, vcek, at = GO
    genoa_only = SevSnpBackend(
        arks={"Genoa": roots.amd_ark("Genoa")}, asks={"Milan": roots.amd_ask("Milan")}
    )
    assert reason_of(genoa_only, vector(report), vector(vcek), at) is (
        AttestationReason.UNTRUSTED_ROOT
    )
    # An ASK from another product family cannot stand in.
    wrong_ask = SevSnpBackend(asks={"Milan": roots.amd_ask("Genoa")})
    assert reason_of(wrong_ask, vector(report), vector(vcek), at) in (
        AttestationReason.BROKEN_CHAIN,
        AttestationReason.UNTRUSTED_ROOT,
    )


def test_later_time_past_certificate_expiry(backend) -> None:  # type: ignore[no-untyped-def]
    report, vcek, _at = GO
    assert reason_of(backend, vector(report), vector(vcek), ts("2030-01-01T00:00:00Z")) is (
        AttestationReason.CERT_EXPIRED
    )
    assert reason_of(backend, vector(report), vector(vcek), ts("2021-01-01T00:00:00Z")) is (
        AttestationReason.CERT_NOT_YET_VALID
    )


def test_wrong_measurement(dev_policy: Policy) -> None:
    report, vcek, at = VIRTEE
    policy = dataclasses.replace(
        dev_policy, measurements={"*": {"sev-snp": frozenset({b"\1" * 48})}}
    )
    with pytest.raises(AttestationError) as err:
        verify_evidence("sev-snp", vector(report), vector(vcek), policy, at)
    assert err.value.reason is AttestationReason.MEASUREMENT_NOT_ALLOWED
