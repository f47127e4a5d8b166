"""Intel DCAP quotes (SGX v3, TDX v4/v5) with collateral: real vectors and breakage."""

from __future__ import annotations

import dataclasses
import datetime
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from repp2p.attestation import DcapBackend, Policy, TcbStatus, roots, verify_evidence
from repp2p.attestation.certs import check_not_revoked, load_certificate
from repp2p.attestation.dcap import parse_quote
from repp2p.errors import AttestationError, AttestationReason

from .conftest import (
    DCAP_SGX_AT,
    DCAP_SPR_AT,
    DCAP_TDX_AT,
    DCAP_TDX_V5_AT,
    ts,
    vector,
)

T = "tdx-sgx/"
SGX = (T + "sgx_quote", T + "sgx_quote_collateral.json", DCAP_SGX_AT)
TDX = (T + "tdx_quote", T + "tdx_quote_collateral.json", DCAP_TDX_AT)
TDX_V5 = (T + "tdx_quote_outdated", T + "tdx_quote_outdated_collateral.json", DCAP_TDX_V5_AT)
GO_V5 = (T + "go-tdx-guest/quote_v5_sample.dat", T + "tdx_quote_outdated_collateral.json",
         DCAP_TDX_V5_AT)  # fmt: skip
SPR = (T + "go-tdx-guest/tdx_prod_quote_SPR_E4.dat",
       T + "go-tdx-guest/tdx_prod_quote_SPR_E4_collateral.json", DCAP_SPR_AT)  # fmt: skip


@pytest.fixture(scope="module")
def backend() -> DcapBackend:
    return DcapBackend()


def load(case):  # type: ignore[no-untyped-def]
    return vector(case[0]), vector(case[1]), case[2]


def reason_of(backend, evidence, collateral, now) -> AttestationReason:  # type: ignore[no-untyped-def]
    with pytest.raises(AttestationError) as err:
        backend.verify(evidence, collateral, now)
    return err.value.reason


@pytest.mark.parametrize(
    "case, tee, version, status",
    [
        (SGX, "sgx", 3, TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED),
        (TDX, "tdx", 4, TcbStatus.UP_TO_DATE),
        (TDX_V5, "tdx", 5, TcbStatus.OUT_OF_DATE),
        (GO_V5, "tdx", 5, TcbStatus.UP_TO_DATE),
        (SPR, "tdx", 4, TcbStatus.OUT_OF_DATE),
    ],
    ids=["sgx-v3", "tdx-v4", "tdx-v5-outdated", "tdx-v5-go", "tdx-v4-spr"],
)
def test_vectors_accepted_at_pinned_time(backend, case, tee, version, status) -> None:  # type: ignore[no-untyped-def]
    quote, collateral, at = load(case)
    claims = backend.verify(quote, collateral, at)
    details = dict(claims.details)
    assert (details["tee"], details["quote_version"]) == (tee, str(version))
    assert claims.tcb_status is status
    assert not claims.debug and len(claims.report_data) == 64
    assert len(claims.measurement) == (32 if tee == "sgx" else 48)
    assert claims.valid_from <= at <= claims.valid_until


def test_tcb_status_drives_policy(backend, prod_policy: Policy) -> None:  # type: ignore[no-untyped-def]
    quote, collateral, at = load(TDX)
    verify_evidence("dcap", quote, collateral, prod_policy, at)
    for case in (SGX, TDX_V5):
        quote, collateral, at = load(case)
        with pytest.raises(AttestationError) as err:
            verify_evidence("dcap", quote, collateral, prod_policy, at)
        assert err.value.reason is AttestationReason.TCB_OUT_OF_DATE
    lenient = dataclasses.replace(prod_policy, min_tcb_status=TcbStatus.OUT_OF_DATE)
    quote, collateral, at = load(TDX_V5)
    verify_evidence("dcap", quote, collateral, lenient, at)


def test_trailing_bytes_are_ignored(backend) -> None:  # type: ignore[no-untyped-def]
    quote, collateral, at = load(TDX)
    signed_end = 632 + 4 + int.from_bytes(quote[632:636], "little")
    assert quote[signed_end:] and not any(quote[signed_end:])  # real producers pad quotes
    assert backend.verify(quote[:signed_end], collateral, at) == backend.verify(
        quote, collateral, at
    )


@pytest.mark.parametrize("case", [SGX, TDX, TDX_V5], ids=["sgx", "tdx-v4", "tdx-v5"])
def test_flipped_body_and_signatures(backend, case) -> None:  # type: ignore[no-untyped-def]
    quote, collateral, at = load(case)
    q = parse_quote(quote)
    body_at = len(q.signed) - 10  # report data, near the end of the body
    sig_at = len(q.signed) + 4  # first byte of the quote signature
    qe_at = len(q.signed) + 4 + 128 + (0 if q.version == 3 else 6) + 100  # inside QE report
    for pos, why in ((body_at, "body"), (sig_at, "signature"), (qe_at, "QE report")):
        flipped = quote[:pos] + bytes([quote[pos] ^ 1]) + quote[pos + 1 :]
        assert reason_of(backend, flipped, collateral, at) is AttestationReason.BAD_SIGNATURE, why
    for cut in (10, 48, len(q.signed), len(q.signed) + 200, len(q.signed) + 1000):
        assert reason_of(backend, quote[:cut], collateral, at) is AttestationReason.MALFORMED


def test_foreign_root(backend) -> None:  # type: ignore[no-untyped-def]
    foreign = DcapBackend(root=roots.aws_nitro_root())
    assert reason_of(foreign, *load(SGX)) is AttestationReason.UNTRUSTED_ROOT


def test_later_time_past_certificate_expiry(backend) -> None:  # type: ignore[no-untyped-def]
    quote, collateral, _ = load(SGX)
    assert reason_of(backend, quote, collateral, ts("2031-01-01T00:00:00Z")) is (
        AttestationReason.CERT_EXPIRED
    )


def test_stale_collateral(backend) -> None:  # type: ignore[no-untyped-def]
    quote, collateral, at = load(SGX)
    assert reason_of(backend, quote, collateral, at + 60 * 86400) is (
        AttestationReason.STALE_EVIDENCE
    )


def test_collateral_for_another_platform(backend) -> None:  # type: ignore[no-untyped-def]
    quote = vector(TDX[0])
    other = vector(TDX_V5[1])
    assert reason_of(backend, quote, other, DCAP_TDX_V5_AT) is AttestationReason.MISSING_COLLATERAL
    sgx_collateral = vector(SGX[1])
    assert reason_of(backend, quote, sgx_collateral, DCAP_TDX_AT) in (
        AttestationReason.MISSING_COLLATERAL,
    )
    assert reason_of(backend, quote, b"", DCAP_TDX_AT) is AttestationReason.MISSING_COLLATERAL


def test_tampered_collateral(backend) -> None:  # type: ignore[no-untyped-def]
    quote, collateral, at = load(SGX)
    obj = json.loads(collateral)
    tampered = dict(obj, tcb_info=obj["tcb_info"].replace("OutOfDate", "UpToDate", 1))
    assert reason_of(backend, quote, json.dumps(tampered).encode(), at) is (
        AttestationReason.BAD_SIGNATURE
    )
    tampered = dict(obj, qe_identity=obj["qe_identity"].replace('"isvprodid":1', '"isvprodid":2'))
    assert reason_of(backend, quote, json.dumps(tampered).encode(), at) is (
        AttestationReason.BAD_SIGNATURE
    )
    for junk in (b"{", b"[]", json.dumps(dict(obj, pck_crl="zz")).encode(),
                 json.dumps(dict(obj, tcb_info_signature="00")).encode()):  # fmt: skip
        assert reason_of(backend, quote, junk, at) is AttestationReason.MALFORMED
    missing = {k: v for k, v in obj.items() if k != "qe_identity"}
    assert reason_of(backend, quote, json.dumps(missing).encode(), at) is (
        AttestationReason.MISSING_COLLATERAL
    )


def test_wrong_measurement(dev_policy: Policy) -> None:
    quote, collateral, at = load(TDX)
    policy = dataclasses.replace(dev_policy, measurements={"*": {"dcap": frozenset({b"\1" * 48})}})
    with pytest.raises(AttestationError) as err:
        verify_evidence("dcap", quote, collateral, policy, at)
    assert err.value.reason is AttestationReason.MEASUREMENT_NOT_ALLOWED


def test_revoked_certificate_is_reported() -> None:
    """A CRL listing a certificate's serial revokes it (CRL built locally for the test)."""
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = load_certificate(roots.amd_ask("Milan").der)
    now = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(leaf.issuer)
        .last_update(now)
        .next_update(now + datetime.timedelta(days=1))
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(leaf.x509.serial_number)
            .revocation_date(now)
            .build()
        )
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(AttestationError) as err:
        check_not_revoked(leaf, [crl])
    assert err.value.reason is AttestationReason.REVOKED
