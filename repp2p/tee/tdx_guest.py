"""Intel TDX evidence from inside the trust domain (the VM is the TEE): DCAP quotes.

The quote comes from configfs-tsm (:class:`repp2p.tee.configfs_tsm.ConfigfsTsm`, provider
``tdx_guest``): the kernel asks the host's quoting service (QGS, over the GHCI
``GetQuote`` call) to turn the TD report about our 64 bytes of report data into a quote
signed by the TD Quoting Enclave, whose PCK certificate chain travels inside the quote
(certification data type 5). The TDX provider has no ``auxblob``.

The rest of what a verifier needs -- TCB info, QE identity and the CRLs, signed by Intel
-- is *collateral* that expires (Intel's TCB info is re-issued about monthly), so it comes
from a JSON file the operator keeps fresh from Intel's PCS or a PCCS (docs/operators.md
says how); :class:`repp2p.attestation.DcapBackend` reads exactly that JSON. It is re-read
for every attestation, so a cron job refreshing it needs no restart.

What the kernel returns is checked for shape only: a TDX quote (v4 or v5), whose TD report
echoes our report data (a quote about other data would fail every peer's binding check,
so we refuse it here with a clear error). The cryptographic checks are the verifiers'.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from repp2p.tee.configfs_tsm import PROBE_HINT, ConfigfsTsm
from repp2p.tee.errors import TeeInterfaceError, TeeInterfaceReason

#: ``Attestation.tee_kind`` of TDX evidence: the DCAP verifier checks TDX quotes
KIND = "dcap"
PROVIDER = "tdx_guest"
HEADER_SIZE = 48
TEE_TDX = 0x81
#: offsets inside the TD report body (TDX 1.0 and 1.5 agree on these)
MRTD = slice(136, 184)
REPORT_DATA = slice(520, 584)
_BODY_SIZES = {2: 584, 3: 648}  # v5 body types: TD report 1.0 / 1.5
MAX_COLLATERAL_FILE = 192 * 1024
#: the fields :class:`repp2p.attestation.DcapBackend` needs from the collateral JSON
COLLATERAL_FIELDS = (
    "pck_crl_issuer_chain", "root_ca_crl", "pck_crl", "tcb_info_issuer_chain", "tcb_info",
    "tcb_info_signature", "qe_identity_issuer_chain", "qe_identity", "qe_identity_signature",
)  # fmt: skip


def _malformed(detail: str) -> TeeInterfaceError:
    return TeeInterfaceError(TeeInterfaceReason.MALFORMED, f"tdx_guest: {detail}")


def td_report_body(quote: bytes) -> bytes:
    """The TD report body of a TDX quote v4/v5 (shape only; no signature checked).

    Raises:
        TeeInterfaceError: MALFORMED when ``quote`` is not a TDX quote.
    """
    if len(quote) < HEADER_SIZE + 6:
        raise _malformed(f"outblob is {len(quote)} bytes, not a TDX quote")
    version, _key_type, tee_type = struct.unpack_from("<HHI", quote, 0)
    if tee_type != TEE_TDX:
        raise _malformed(f"quote TEE type {tee_type:#x} is not TDX (0x81)")
    if version == 4:
        start, size = HEADER_SIZE, _BODY_SIZES[2]
    elif version == 5:
        body_type, size = struct.unpack_from("<HI", quote, HEADER_SIZE)
        if _BODY_SIZES.get(body_type) != size:
            raise _malformed(f"quote v5 body type {body_type} of {size} bytes")
        start = HEADER_SIZE + 6
    else:
        raise _malformed(f"quote version {version}")
    if len(quote) < start + size:
        raise _malformed("quote shorter than its TD report")
    return quote[start : start + size]


def load_collateral_file(path: Path) -> bytes:
    """The operator's DCAP collateral JSON, checked for the fields the verifier needs.

    Raises:
        TeeInterfaceError: MISSING when unreadable, MALFORMED when not that JSON.
    """
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_COLLATERAL_FILE + 1)
    except OSError as exc:
        raise TeeInterfaceError(
            TeeInterfaceReason.MISSING, f"TDX collateral file {path}: {exc.strerror or exc}"
        ) from None
    if len(raw) > MAX_COLLATERAL_FILE:
        raise TeeInterfaceError(
            TeeInterfaceReason.MALFORMED, f"{path} is larger than {MAX_COLLATERAL_FILE} bytes"
        )
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        obj = None
    if not isinstance(obj, dict):
        raise TeeInterfaceError(
            TeeInterfaceReason.MALFORMED, f"{path} is not a DCAP collateral JSON object"
        )
    missing = [k for k in COLLATERAL_FIELDS if not isinstance(obj.get(k), str)]
    if missing:
        raise TeeInterfaceError(
            TeeInterfaceReason.MALFORMED,
            f"{path} lacks {', '.join(missing)} (see docs/operators.md for how to fetch it)",
        )
    return bytes(raw)


class TdxGuest:
    """TDX quotes and their collateral, inside a TDX trust domain.

    Args:
        tsm: the configfs-tsm interface (default: the machine's).
        collateral_file: the DCAP collateral JSON (required: TDX reports carry no
            collateral of their own).
    """

    kind = KIND

    def __init__(self, tsm: ConfigfsTsm | None = None, collateral_file: Path | None = None):
        self.tsm = tsm or ConfigfsTsm()
        self.collateral_file = collateral_file

    def check_available(self) -> None:
        """Raise MISSING when configfs-tsm or the collateral file is absent."""
        self.tsm.check_available()
        if self.collateral_file is None:
            raise TeeInterfaceError(
                TeeInterfaceReason.MISSING,
                "a TDX node needs its DCAP collateral (TCB info, QE identity, CRLs) in a file: "
                "set tee_collateral (docs/operators.md says how to fetch it from Intel's PCS)",
            )

    def evidence(self, report_data: bytes) -> tuple[bytes, bytes]:
        """``(quote, collateral JSON)`` for 64 bytes of report data.

        Raises:
            TeeInterfaceError: from configfs-tsm or the collateral file, or MALFORMED when
                the quote is not a TDX quote about ``report_data``.
        """
        self.check_available()
        assert self.collateral_file is not None
        collateral = load_collateral_file(self.collateral_file)
        result = self.tsm.report(report_data, provider=PROVIDER)
        if td_report_body(result.outblob)[REPORT_DATA] != bytes(report_data):
            raise _malformed(f"the TDX quote does not carry our report data; {PROBE_HINT}")
        return result.outblob, collateral

    def measurement(self) -> bytes:
        """The TD's MRTD (48 bytes), from a quote about nothing in particular."""
        quote, _ = self.evidence(b"repp2p/tdx/startup".ljust(64, b"\0"))
        return td_report_body(quote)[MRTD]
