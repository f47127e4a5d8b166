"""Certificate handling, notably AMD's VCEK with serial number 0."""

from __future__ import annotations

import warnings

import pytest
from cryptography import x509

from repp2p.attestation import certs, roots
from repp2p.attestation.certs import load_certificate, load_certificates
from repp2p.errors import AttestationError, AttestationReason

from .conftest import SEV_GO_AT, vector

VCEK = "sev-snp/vcek.testcer"


def test_serial_zero_vcek_loads_without_warnings_escaping() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning reaching us would fail the test
        cert = load_certificate(vector(VCEK))
    assert cert.serial_patched
    assert certs.is_signed_by(cert, roots.amd_ask("Milan"))


def test_serial_zero_survives_a_cryptography_that_raises(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Simulate the announced future: parsing a serial-0 certificate raises ValueError."""
    real = x509.load_der_x509_certificate

    def strict(data: bytes, *a: object) -> x509.Certificate:
        cert = real(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if cert.serial_number <= 0:
                raise ValueError("non-positive serial number")
        return cert

    monkeypatch.setattr(x509, "load_der_x509_certificate", strict)
    cert = load_certificate(vector(VCEK))
    assert cert.serial_patched and certs.is_signed_by(cert, roots.amd_ask("Milan"))
    # The original signed bytes are kept: the signature is over them, not the patched copy.
    assert cert.tbs in cert.der
    certs.verify_chain([cert, roots.amd_ask("Milan")], [roots.amd_ark("Milan")], SEV_GO_AT)


def test_serial_zero_survives_a_cryptography_that_warns_as_error() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cert = load_certificate(vector(VCEK))
    certs.verify_chain([cert], [roots.amd_ask("Milan")], SEV_GO_AT)


def test_tampered_tbs_of_patched_cert_fails_signature() -> None:
    der = bytearray(vector(VCEK))
    der[-300] ^= 1  # inside the RSA-PSS signature value
    cert = load_certificate(bytes(der))
    assert not certs.is_signed_by(cert, roots.amd_ask("Milan"))


@pytest.mark.parametrize("data", [b"", b"\x30", b"\x30\x03\x02\x01", b"hello", b"\x30\x00"])
def test_garbage_certificates_are_malformed(data: bytes) -> None:
    with pytest.raises(AttestationError) as err:
        load_certificates(data)
    assert err.value.reason is AttestationReason.MALFORMED


def test_pem_and_der_bundles() -> None:
    ask, ark = roots.amd_ask("Milan"), roots.amd_ark("Milan")
    assert [c.der for c in load_certificates(ask.der + ark.der)] == [ask.der, ark.der]
    pem = vector("sev-snp/ask_ark_milan.pem")
    assert [c.der for c in load_certificates(pem)] == [ask.der, ark.der]
    with pytest.raises(AttestationError):
        load_certificates(b"-----BEGIN CERTIFICATE-----\nAAAA")


def test_every_pinned_root_matches_its_fingerprint() -> None:
    for name in roots.PINNED:
        assert roots.pinned(name).der


def test_chain_order_of_reasons() -> None:
    ask, ark = roots.amd_ask("Milan"), roots.amd_ark("Milan")
    vcek = load_certificate(vector(VCEK))
    with pytest.raises(AttestationError) as err:
        certs.verify_chain([vcek, ask], [roots.aws_nitro_root()], SEV_GO_AT)
    assert err.value.reason is AttestationReason.UNTRUSTED_ROOT
    with pytest.raises(AttestationError) as err:
        certs.verify_chain(
            [vcek, roots.amd_ask("Genoa"), roots.amd_ark("Genoa")],
            [roots.amd_ark("Genoa")],
            SEV_GO_AT,
        )
    assert err.value.reason is AttestationReason.BROKEN_CHAIN
    with pytest.raises(AttestationError) as err:
        certs.verify_chain([], [ark], SEV_GO_AT)
    assert err.value.reason is AttestationReason.BROKEN_CHAIN
