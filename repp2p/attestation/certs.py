"""X.509 certificates and chains, checked at a time given as an argument.

We do not use ``cryptography``'s path builder: the vendor chains here break RFC 5280 in ways
a TEE verifier must tolerate (AMD's VCEK has serial number 0 and RSA-PSS parents; NVIDIA's
certificates are valid until 9999) and we need our own reasons (untrusted root vs broken
chain vs expired). What we do ourselves is only the *order* of checks; every signature is
verified by ``cryptography``.

Rules of this file:

* a chain is a list, leaf first; it must end at, or be issued by, a pinned root whose DER is
  byte-identical to one we ship;
* time is unix seconds (``float`` allowed for millisecond timestamps), never read here;
* every failure is an :class:`AttestationError`, never a parser exception.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import re
import warnings
from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from repp2p.attestation import _der
from repp2p.errors import AttestationError, AttestationReason

try:  # the category cryptography uses for "this will be an error in a future release"
    from cryptography.utils import CryptographyDeprecationWarning as _CryptoDeprecation
except ImportError:  # pragma: no cover - very old or very new cryptography
    _CryptoDeprecation = DeprecationWarning  # type: ignore[misc,assignment]

_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"
_PEM_END = b"-----END CERTIFICATE-----"
_PEM_BUNDLE = re.compile(
    rb"(?:-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----(?:\r?\n)*)+"
    rb"\x00*"
)


@dataclasses.dataclass(frozen=True, eq=False)
class Certificate:
    """A parsed certificate plus the exact bytes its issuer signed.

    Attributes:
        der: the certificate as received.
        x509: the ``cryptography`` object (possibly parsed from a serial-patched copy, see
            :func:`load_certificate`; everything but ``serial_number`` is the original).
        tbs: the original ``tbsCertificate`` bytes: what the signature covers.
        not_before: start of validity, unix seconds.
        not_after: end of validity, unix seconds.
        serial_patched: the serial number was non-positive and had to be patched to parse.
    """

    der: bytes
    x509: x509.Certificate
    tbs: bytes
    not_before: float
    not_after: float
    serial_patched: bool = False

    @property
    def subject(self) -> x509.Name:
        return self.x509.subject

    @property
    def issuer(self) -> x509.Name:
        return self.x509.issuer

    def public_key(self) -> object:
        return self.x509.public_key()

    def extension_value(self, oid: str) -> bytes | None:
        """Raw DER value of an extension ``cryptography`` does not know, or None."""
        for ext in self.x509.extensions:
            if ext.oid.dotted_string == oid:
                value = ext.value
                if isinstance(value, x509.UnrecognizedExtension):
                    return value.value
                return value.public_bytes()  # pragma: no cover - known extension
        return None


def _tbs_and_serial_bounds(der: bytes) -> tuple[bytes, int, int]:
    """Locate ``tbsCertificate`` and the serial number's contents inside a certificate DER."""
    _tag, cstart, cend = _der.read_tlv(der, 0)
    if _tag != _der.TAG_SEQUENCE or cend != len(der):
        raise ValueError("certificate is not one DER SEQUENCE")
    tbs_tag, tstart, tend = _der.read_tlv(der, cstart)
    if tbs_tag != _der.TAG_SEQUENCE:
        raise ValueError("tbsCertificate is not a SEQUENCE")
    tbs_full = der[cstart:tend]
    tag, start, end = _der.read_tlv(der, tstart)
    if tag == 0xA0:  # [0] EXPLICIT version
        tag, start, end = _der.read_tlv(der, end)
    if tag != _der.TAG_INTEGER or start == end:
        raise ValueError("serial number is not an INTEGER")
    return tbs_full, start, end


def _parse_with_positive_serial(der: bytes) -> Certificate:
    """Parse a certificate whose serial number ``cryptography`` refuses.

    RFC 5280 wants positive serials; AMD's VCEKs carry 0. ``cryptography`` warns today and
    will raise in a later release. We patch the serial's contents to a positive value of the
    same length (so every other offset stays put), parse that copy for its fields, and keep
    the *original* ``tbsCertificate`` bytes for signature verification, so the issuer's
    signature is still checked over exactly what it signed.
    """
    tbs, start, end = _tbs_and_serial_bounds(der)
    patched = der[:start] + b"\x01" + b"\x00" * (end - start - 1) + der[end:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", _CryptoDeprecation)
        parsed = x509.load_der_x509_certificate(patched)
    return _wrap(der, parsed, tbs, serial_patched=True)


def _wrap(der: bytes, parsed: x509.Certificate, tbs: bytes, serial_patched: bool) -> Certificate:
    # cryptography parses some fields lazily; touch every one we use now, so a malformed
    # certificate fails here (as MALFORMED) rather than deep inside a verification.
    _ = (parsed.subject, parsed.issuer, parsed.extensions, parsed.public_key())
    _ = (parsed.signature, parsed.signature_hash_algorithm, parsed.signature_algorithm_parameters)
    return Certificate(
        der=der,
        x509=parsed,
        tbs=tbs,
        not_before=parsed.not_valid_before_utc.timestamp(),
        not_after=parsed.not_valid_after_utc.timestamp(),
        serial_patched=serial_patched,
    )


def load_certificate(der: bytes) -> Certificate:
    """Parse one DER certificate.

    Non-positive serial numbers are tolerated whatever ``cryptography`` does about them
    (warning today, error tomorrow): see :func:`_parse_with_positive_serial`.

    Raises:
        AttestationError: MALFORMED when the bytes are not a certificate.
    """
    try:
        with warnings.catch_warnings():
            # Turn the "non-positive serial" deprecation into an exception we handle, so the
            # same code path runs whether cryptography warns or raises.
            warnings.simplefilter("error", _CryptoDeprecation)
            parsed = x509.load_der_x509_certificate(der)
            return _wrap(der, parsed, parsed.tbs_certificate_bytes, serial_patched=False)
    except (ValueError, UnsupportedAlgorithm, _CryptoDeprecation):
        pass
    except Exception as exc:
        raise AttestationError(AttestationReason.MALFORMED, f"certificate: {exc}") from None
    try:
        return _parse_with_positive_serial(der)
    except Exception as exc:
        raise AttestationError(AttestationReason.MALFORMED, f"certificate: {exc}") from None


def load_certificates(data: bytes) -> list[Certificate]:
    """Parse a bundle: concatenated PEM blocks or concatenated DER certificates.

    Raises:
        AttestationError: MALFORMED when the bundle is empty or any part is not a certificate.
    """
    blobs: list[bytes] = []
    if _PEM_BEGIN in data:
        # Strict layout: PEM text inside evidence is not signed as a whole, so allow no
        # stray bytes between or after the blocks (only newlines, and NUL terminators).
        if not _PEM_BUNDLE.fullmatch(data):
            raise AttestationError(AttestationReason.MALFORMED, "malformed PEM bundle")
        for block in data.split(_PEM_BEGIN)[1:]:
            body, sep, _rest = block.partition(_PEM_END)
            if not sep:
                raise AttestationError(AttestationReason.MALFORMED, "unterminated PEM block")
            try:
                blobs.append(base64.b64decode(b"".join(body.split()), validate=True))
            except ValueError:
                raise AttestationError(AttestationReason.MALFORMED, "bad PEM base64") from None
    else:
        try:
            blobs = _der.split_concatenated(data)
        except ValueError as exc:
            raise AttestationError(AttestationReason.MALFORMED, f"certificates: {exc}") from None
    if not blobs:
        raise AttestationError(AttestationReason.MALFORMED, "no certificate found")
    return [load_certificate(b) for b in blobs]


def verify_signature(
    public_key: object,
    signature: bytes,
    data: bytes,
    hash_algorithm: hashes.HashAlgorithm | None,
    rsa_padding: padding.AsymmetricPadding | None = None,
) -> bool:
    """Verify a signature with whatever key type ``public_key`` is; False when it fails."""
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            if hash_algorithm is None:
                return False
            public_key.verify(signature, data, ec.ECDSA(hash_algorithm))
        elif isinstance(public_key, rsa.RSAPublicKey):
            if hash_algorithm is None or rsa_padding is None:
                return False
            public_key.verify(signature, data, rsa_padding, hash_algorithm)
        elif isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, data)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def is_signed_by(cert: Certificate, issuer: Certificate) -> bool:
    """True when ``issuer``'s key verifies ``cert``'s signature over its original TBS bytes."""
    try:
        hash_algorithm = cert.x509.signature_hash_algorithm
        params = cert.x509.signature_algorithm_parameters
        key = issuer.public_key()
    except (UnsupportedAlgorithm, ValueError):
        return False
    rsa_padding = params if isinstance(params, padding.AsymmetricPadding) else None
    return verify_signature(key, cert.x509.signature, cert.tbs, hash_algorithm, rsa_padding)


def check_validity(cert: Certificate, at: float, what: str = "certificate") -> None:
    """Raise CERT_NOT_YET_VALID / CERT_EXPIRED unless ``at`` is within the validity period."""
    if at < cert.not_before:
        raise AttestationError(
            AttestationReason.CERT_NOT_YET_VALID, f"{what} {_cn(cert)} not valid before {at}"
        )
    if at > cert.not_after:
        raise AttestationError(AttestationReason.CERT_EXPIRED, f"{what} {_cn(cert)} expired")


def _cn(cert: Certificate) -> str:
    try:
        attrs = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        return repr(attrs[0].value) if attrs else cert.subject.rfc4514_string()
    except Exception:
        return "<unnamed>"


def _is_ca(cert: Certificate) -> bool:
    try:
        bc = cert.x509.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return True  # some vendor intermediates omit it; the pinned root vouches for them
    except Exception:
        return False
    return bool(bc.ca)


def verify_chain(
    chain: Sequence[Certificate], roots: Iterable[Certificate], at: float
) -> Certificate:
    """Verify a leaf-first chain up to one of ``roots`` at time ``at``.

    The chain may include the root (it must then be byte-identical to a pinned one) or stop
    just below it. The pinned root's self-signature is not re-checked: pinning is by bytes.

    Returns:
        The pinned root the chain ends at.

    Raises:
        AttestationError: UNTRUSTED_ROOT, BROKEN_CHAIN, CERT_NOT_YET_VALID or CERT_EXPIRED.
    """
    if not chain:
        raise AttestationError(AttestationReason.BROKEN_CHAIN, "empty certificate chain")
    roots = list(roots)
    top = chain[-1]
    anchor = next((r for r in roots if r.der == top.der), None)
    links = list(chain)
    checked_top = -1  # index of a link whose signature the anchor search already verified
    if anchor is None:
        anchor = next((r for r in roots if r.subject == top.issuer and is_signed_by(top, r)), None)
        if anchor is None:
            raise AttestationError(
                AttestationReason.UNTRUSTED_ROOT, f"chain ends at untrusted {_cn(top)}"
            )
        links.append(anchor)
        checked_top = len(links) - 2
    for i, (child, parent) in enumerate(itertools.pairwise(links)):
        if child.issuer != parent.subject:
            raise AttestationError(
                AttestationReason.BROKEN_CHAIN, f"{_cn(child)} not issued by {_cn(parent)}"
            )
        if not _is_ca(parent):
            raise AttestationError(AttestationReason.BROKEN_CHAIN, f"{_cn(parent)} is not a CA")
        if i != checked_top and not is_signed_by(child, parent):
            raise AttestationError(
                AttestationReason.BROKEN_CHAIN, f"signature on {_cn(child)} does not verify"
            )
    for cert in links:
        check_validity(cert, at)
    return anchor


def check_not_revoked(cert: Certificate, crls: Iterable[x509.CertificateRevocationList]) -> None:
    """Raise REVOKED when ``cert``'s serial is listed by a CRL of its issuer."""
    for crl in crls:
        if crl.issuer != cert.issuer:
            continue
        if crl.get_revoked_certificate_by_serial_number(cert.x509.serial_number) is not None:
            raise AttestationError(AttestationReason.REVOKED, f"{_cn(cert)} is revoked")
