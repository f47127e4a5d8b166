"""Fetch the DCAP collateral a TDX node's ``tee_collateral`` file holds, from Intel's PCS.

A TDX quote carries its PCK certificate chain but not the rest of what a verifier needs:
the TCB info for the platform's FMSPC, the TD Quoting Enclave identity, the PCK CRL and
the root CA CRL, with their issuer chains. They expire (TCB info is re-issued about
monthly), so an operator refreshes the file from a job: ``repp2p tee fetch-collateral``.

What is fetched (Intel PCS API v4; ``pcs`` may name a PCCS with the same API instead):

* ``GET {pcs}/tdx/certification/v4/tcb?fmspc=F`` -> ``{"tcbInfo": {...}, "signature": hex}``,
  issuer chain in the ``TCB-Info-Issuer-Chain`` header (URL-encoded PEM);
* ``GET {pcs}/tdx/certification/v4/qe/identity`` -> ``{"enclaveIdentity": {...},
  "signature": hex}``, chain in ``SGX-Enclave-Identity-Issuer-Chain``;
* ``GET {pcs}/sgx/certification/v4/pckcrl?ca=platform|processor&encoding=der`` -> DER,
  chain in ``SGX-PCK-CRL-Issuer-Chain``;
* ``GET {root_crl_url}`` -> the Intel SGX Root CA's CRL (DER).

The signatures cover the ``tcbInfo`` and ``enclaveIdentity`` values *as the bytes appear
in the response*, so those are cut out of the body, never re-serialised. The result is the
JSON :class:`repp2p.attestation.DcapBackend` reads; :func:`fetch_collateral` checks it by
verifying the quote with it before anything is written.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

from repp2p.attestation.certs import load_certificates
from repp2p.attestation.dcap import DcapBackend, parse_pck_extensions, parse_quote
from repp2p.errors import AttestationError, ReppError

INTEL_PCS = "https://api.trustedservices.intel.com"
#: the CRL distribution point Intel's PCK CA certificates name for the root CA
INTEL_ROOT_CRL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
MAX_RESPONSE = 256 * 1024


class CollateralError(ReppError):
    """The collateral could not be fetched or does not verify the quote."""


#: ``url -> (body, headers)``; tests pass one that reads a local server
Fetcher = Callable[[str], tuple[bytes, dict[str, str]]]


def http_get(url: str, timeout_s: float = 30.0) -> tuple[bytes, dict[str, str]]:
    """GET ``url``; the body (at most :data:`MAX_RESPONSE` bytes) and its headers."""
    if not url.startswith(("https://", "http://")):
        raise CollateralError(f"{url}: only http(s) URLs")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            body = response.read(MAX_RESPONSE + 1)
            headers = {k.lower(): v for k, v in response.headers.items()}
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise CollateralError(f"GET {url}: {exc}") from None
    if len(body) > MAX_RESPONSE:
        raise CollateralError(f"GET {url}: response larger than {MAX_RESPONSE} bytes")
    return body, headers


def signed_member(body: bytes, key: str) -> tuple[str, str]:
    """``(raw JSON text of body[key], signature hex)`` from a PCS response, byte-exact.

    Raises:
        CollateralError: the body is not ``{key: {...}, "signature": hex}``.
    """
    try:
        text = body.decode("utf-8")
        parsed = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CollateralError(f"the {key} response is not JSON") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get(key), dict):
        raise CollateralError(f"the response has no {key} object")
    signature = parsed.get("signature")
    if not isinstance(signature, str):
        raise CollateralError(f"the {key} response has no signature")
    match = re.search(r'"' + re.escape(key) + r'"\s*:\s*', text)
    if match is None:
        raise CollateralError(f"the {key} response has no {key} member")
    try:
        _, end = json.JSONDecoder().raw_decode(text, match.end())
    except ValueError:
        raise CollateralError(f"the {key} member does not parse") from None
    return text[match.end() : end], signature


def _chain_header(headers: dict[str, str], name: str) -> str:
    value = headers.get(name.lower())
    if not value:
        raise CollateralError(f"the response has no {name} header")
    pem = urllib.parse.unquote(value)
    try:
        load_certificates(pem.encode())
    except AttestationError as exc:
        raise CollateralError(f"{name} is not a certificate chain: {exc.detail}") from None
    return pem


def quote_platform(quote: bytes) -> tuple[str, str]:
    """``(FMSPC hex, "platform" or "processor")`` from a quote's PCK certificate chain.

    Raises:
        CollateralError: not a DCAP quote with a PCK chain.
    """
    try:
        chain = load_certificates(parse_quote(quote).pck_chain_pem)
        fmspc = parse_pck_extensions(chain[0]).fmspc.hex()
    except AttestationError as exc:
        raise CollateralError(f"not a quote with a PCK chain: {exc.detail}") from None
    issuer = chain[0].issuer.rfc4514_string().lower()
    return fmspc, "processor" if "processor" in issuer else "platform"


def fetch_collateral(
    quote: bytes,
    now: int,
    *,
    pcs: str = INTEL_PCS,
    root_crl_url: str = INTEL_ROOT_CRL,
    fetch: Fetcher = http_get,
    backend: DcapBackend | None = None,
) -> bytes:
    """The collateral JSON for ``quote``'s platform, verified against ``quote`` at ``now``.

    Args:
        quote: a TDX (or SGX) quote from the machine (any report data).
        now: unix seconds, for the check.
        pcs: the PCS (or PCCS) base URL.
        root_crl_url: where the root CA's CRL is.
        fetch: the HTTP GET (tests: a local server).
        backend: the verifier for the check (default: pinned Intel root).

    Raises:
        CollateralError: a fetch failed, a response is malformed, or the quote does not
            verify with the result (the reason says why).
    """
    fmspc, ca = quote_platform(quote)
    base = pcs.rstrip("/")
    is_tdx = parse_quote(quote).tee_type == 0x81
    family = "tdx" if is_tdx else "sgx"
    body, headers = fetch(f"{base}/{family}/certification/v4/tcb?fmspc={fmspc}")
    tcb_info, tcb_sig = signed_member(body, "tcbInfo")
    tcb_chain = _chain_header(headers, "TCB-Info-Issuer-Chain")
    body, headers = fetch(f"{base}/{family}/certification/v4/qe/identity")
    qe_identity, qe_sig = signed_member(body, "enclaveIdentity")
    qe_chain = _chain_header(headers, "SGX-Enclave-Identity-Issuer-Chain")
    pck_crl, headers = fetch(f"{base}/sgx/certification/v4/pckcrl?ca={ca}&encoding=der")
    pck_crl_chain = _chain_header(headers, "SGX-PCK-CRL-Issuer-Chain")
    root_crl, _ = fetch(root_crl_url)
    collateral = json.dumps(
        {
            "tcb_info": tcb_info,
            "tcb_info_signature": tcb_sig,
            "tcb_info_issuer_chain": tcb_chain,
            "qe_identity": qe_identity,
            "qe_identity_signature": qe_sig,
            "qe_identity_issuer_chain": qe_chain,
            "pck_crl": pck_crl.hex(),
            "pck_crl_issuer_chain": pck_crl_chain,
            "root_ca_crl": root_crl.hex(),
        },
        indent=1,
    ).encode()
    try:
        (backend or DcapBackend()).verify(quote, collateral, now)
    except AttestationError as exc:
        raise CollateralError(
            f"the fetched collateral does not verify this machine's quote: {exc}"
        ) from None
    return collateral
