"""The one error hierarchy of repp2p.

Every error raised on purpose by repp2p derives from :class:`ReppError`. Errors that reject
something received from outside (a record, an attestation) carry a *reason enum*: that enum,
not the message text, is what feeds peer penalties, metrics and tests.

Rules of this file: one class per thing that can go wrong with a resource, named for what
happened to it; reasons are ``enum.Enum`` members whose values are stable wire/metric names.
"""

from __future__ import annotations

import enum


class ReppError(Exception):
    """Root of every error repp2p raises on purpose."""


class ReasonedError(ReppError):
    """Base of errors that carry a reason enum: the reason, not the text, is what feeds
    peer penalties and metrics.

    Attributes:
        reason: an ``enum.Enum`` member whose value is a stable name.
        detail: human-readable detail; never parsed.
    """

    def __init__(self, reason: enum.Enum, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)


class ConfigError(ReppError):
    """A configuration file or value is invalid (the operator's fault, not a peer's)."""


class KeyFileError(ReppError):
    """A key file cannot be created, read or trusted (missing, malformed, too permissive)."""


class RecordReason(enum.Enum):
    """Why a signed record was rejected. Values are stable names used in metrics."""

    OVERSIZE = "oversize"
    MALFORMED = "malformed"
    NON_CANONICAL = "non_canonical"
    UNKNOWN_TYPE = "unknown_type"
    UNKNOWN_FIELD = "unknown_field"
    MISSING_FIELD = "missing_field"
    BAD_FIELD = "bad_field"
    BAD_SIGNER = "bad_signer"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    EXPIRES_TOO_FAR = "expires_too_far"


class RecordError(ReasonedError):
    """A record failed to decode or validate.

    Attributes:
        reason: the :class:`RecordReason` (what feeds penalties and metrics).
        detail: human-readable detail; never parsed.
    """


class StoreError(ReppError):
    """The record store failed (I/O, corruption) or was asked to store something unvalidated."""


class AttestationReason(enum.Enum):
    """Why TEE evidence or a node's attestation was rejected."""

    BAD_SIGNATURE = "bad_signature"
    BROKEN_CHAIN = "broken_chain"
    UNTRUSTED_ROOT = "untrusted_root"
    CERT_EXPIRED = "cert_expired"
    CERT_NOT_YET_VALID = "cert_not_yet_valid"
    REVOKED = "revoked"
    DEBUG_ENCLAVE = "debug_enclave"
    MEASUREMENT_NOT_ALLOWED = "measurement_not_allowed"
    TCB_OUT_OF_DATE = "tcb_out_of_date"
    STALE_EVIDENCE = "stale_evidence"
    REPORT_DATA_MISMATCH = "report_data_mismatch"
    MALFORMED = "malformed"
    KIND_NOT_ALLOWED = "kind_not_allowed"
    SIMULATED_NOT_ALLOWED = "simulated_not_allowed"
    MISSING_COLLATERAL = "missing_collateral"
    #: no enclave-signed heartbeat recent enough (docs/attestation.md, "Freshness")
    NOT_LIVE = "not_live"
    #: a heartbeat's enclave signature does not verify under the attested result key
    BAD_ENCLAVE_SIGNATURE = "bad_enclave_signature"


class AttestationError(ReasonedError):
    """TEE evidence did not verify, or verified but is refused by policy.

    Attributes:
        reason: the :class:`AttestationReason`.
        detail: human-readable detail; never parsed.
    """


class NetworkError(ReppError):
    """A network operation failed (dial, stream, protocol violation by a peer)."""


class NodeNotRunning(ReppError):
    """A node's running parts (store, host, views...) were asked for outside ``Node.run``."""


class ProtocolError(NetworkError):
    """A peer broke one of our wire protocols (bad framing, oversized frame, wrong message)."""


class LimitError(ProtocolError):
    """A peer went over one of our per-peer limits (streams, bytes, time).

    Attributes:
        limit: the limit's stable name, as counted in ``repp2p_limits_total{limit}``
            (``streams_per_peer``, ``bytes_per_min``, ``request_timeout``...).
    """

    def __init__(self, limit: str, detail: str) -> None:
        self.limit = limit
        super().__init__(detail)


#: The ``limit`` label of a protocol violation that is not a named limit (a malformed
#: request), in ``repp2p_limits_total``.
MALFORMED_LIMIT = "malformed"


#: The ``limit`` label of a request that did not arrive (or a page not sent) in time.
TIMEOUT_LIMIT = "request_timeout"


def limit_of(exc: ProtocolError) -> str:
    """The ``repp2p_limits_total`` label for a protocol error that ended a peer's stream
    (a timeout is :data:`TIMEOUT_LIMIT`, counted by the caller that caught it)."""
    return exc.limit if isinstance(exc, LimitError) else MALFORMED_LIMIT


class UnsupportedLibp2pError(ReppError):
    """The installed py-libp2p is not a version repp2p's patches were written for, or an
    attribute a patch replaces or relies on no longer has the shape the patch expects.

    Raised by ``repp2p.net.libp2p_compat.install()`` before anything is patched, so a
    py-libp2p upgrade fails loudly instead of silently running without (or with broken) fixes.

    Attributes:
        installed: the installed py-libp2p version.
        supported: the versions the patches were written for.
        detail: what is wrong beyond the version, if anything; never parsed.
    """

    def __init__(self, installed: str, supported: tuple[str, ...], detail: str = "") -> None:
        self.installed = installed
        self.supported = supported
        self.detail = detail
        message = (
            f"py-libp2p {installed} is installed; repp2p's patches "
            f"(repp2p.net.libp2p_compat) are written for {', '.join(supported)}"
        )
        super().__init__(f"{message}: {detail}" if detail else message)


class ClaimReason(enum.Enum):
    """Why a claim is invalid. Values are stable metric names."""

    NOT_A_CLAIM = "not_a_claim"
    WRONG_OFFER = "wrong_offer"
    WRONG_EPOCH = "wrong_epoch"
    VIEW_MISMATCH = "view_mismatch"
    RANK_TOO_DEEP = "rank_too_deep"
    NOT_ELIGIBLE = "not_eligible"
    WRONG_RANK = "wrong_rank"


class ClaimError(ReasonedError):
    """A claim does not hold against the checker's view.

    Attributes:
        reason: the :class:`ClaimReason`.
        detail: human-readable detail; never parsed.
    """


class ProofReason(enum.Enum):
    """Why a Merkle proof, an audit response or an offence proof was rejected
    (repp2p.digests). Values are stable metric names.

    The first group says the bytes are unusable; the second, that the signed records inside
    do not make the case (wrong signer, wrong task...); the third, that the Merkle data does
    not check out against the digest; the last, that everything verifies but shows no fault
    (an honest party's data).
    """

    OVERSIZE = "oversize"
    MALFORMED = "malformed"
    NON_CANONICAL = "non_canonical"
    BAD_RECORD = "bad_record"
    EXPIRED = "expired"
    WRONG_TYPE = "wrong_type"
    WRONG_SIGNER = "wrong_signer"
    WRONG_TASK = "wrong_task"
    WRONG_EPOCH = "wrong_epoch"
    WRONG_PART = "wrong_part"
    WRONG_DIGEST = "wrong_digest"
    BAD_LEAF = "bad_leaf"
    BAD_INDEX = "bad_index"
    BAD_PATH = "bad_path"
    ROOT_MISMATCH = "root_mismatch"
    NOT_ADJACENT = "not_adjacent"
    NOT_BRACKETED = "not_bracketed"
    MISSING_RECORD = "missing_record"
    NO_OFFENCE = "no_offence"
    # dispute proofs (repp2p.digests.disputes): what the checker's view says of a receipt,
    # and replays
    NOT_ENCLAVE_SIGNED = "not_enclave_signed"
    UNATTESTED = "unattested"
    UNRANKED = "unranked"
    DUPLICATE = "duplicate"
    TOO_OLD = "too_old"
    TOO_NEW = "too_new"
    KNOWN = "known"
    # contested (k = 1) dispute proofs: the client's verdict does not back the dispute
    BAD_VERDICT = "bad_verdict"
    # dispute proofs: a claim or receipt expiring before its offer (an honest node copies
    # the offer's expiry; an earlier one would leave the views before the dispute does)
    EXPIRES_EARLY = "expires_early"


class ProofError(ReasonedError):
    """A Merkle proof, an audit response or an offence proof does not verify.

    Attributes:
        reason: the :class:`ProofReason`.
        detail: human-readable detail; never parsed.
    """


class DigestError(ReppError):
    """A party's own per-task records cannot be summarised into a digest (a record it signed
    names one it does not hold, or it has more counterparties in an epoch than the digest
    parts can carry). The caller's fault, not a peer's."""
