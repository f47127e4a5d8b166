"""An unserved challenge: what an auditor keeps when a publisher did not answer.

A failure to answer is not provable from signed data (docs/digests.md, "Known limits"). What
*is* checkable from the charge alone: the digest is genuine and live, and the leaf was one of
those drawn under the seed of the digest's epoch (:func:`verify_unserved`); with the
candidate list, also that the accusing auditor was the one drawn. The rest, "it did not
answer", any peer re-checks by asking the publisher for that leaf itself over
``/repp2p/audit/1``: an answer that passes refutes the charge. So a charge costs an honest
publisher one answer, and a publisher that keeps silent keeps being charged.

Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import Any

from repp2p.digests import wire
from repp2p.digests.audit import audit_seed, auditors, challenge_indices
from repp2p.digests.params import DigestParams
from repp2p.errors import ProofError, ProofReason, RecordError, RecordReason
from repp2p.records import DIGEST_TYPES, FeedbackDigest, WorkDigest, decode
from repp2p.records.peerid import is_peer_id

#: largest charge accepted: a digest envelope and a few short fields
MAX_CHARGE_SIZE = max(WorkDigest.MAX_SIZE, FeedbackDigest.MAX_SIZE) + 512
#: ``reason`` when the publisher answered nothing usable within the grace period
NO_ANSWER = "no_answer"
_KEYS = {"kind", "digest", "index", "entropy", "auditor", "reason"}


@dataclasses.dataclass(frozen=True)
class UnservedCharge:
    """An auditor's charge that leaf ``index`` of ``digest`` went unanswered.

    Attributes:
        digest: the challenged digest's envelope.
        index: the leaf.
        entropy: the ``entropy`` the audit seed was drawn with (``audit_entropy``).
        auditor: the accusing auditor's peer ID.
        reason: :data:`NO_ANSWER`, ``unknown`` (the publisher disowned the digest) or the
            :class:`~repp2p.errors.ProofReason` value that made its answer unusable.
    """

    digest: bytes
    index: int
    entropy: bytes
    auditor: str
    reason: str

    def encode(self) -> bytes:
        """Canonical CBOR, ``kind`` = ``"unserved"``."""
        return wire.dumps(
            {
                "kind": "unserved",
                "digest": self.digest,
                "index": self.index,
                "entropy": self.entropy,
                "auditor": self.auditor,
                "reason": self.reason,
            }
        )

    @classmethod
    def decode(cls, data: Any) -> UnservedCharge:
        """Read a charge from hostile bytes.

        Raises:
            ProofError: OVERSIZE, MALFORMED or NON_CANONICAL.
        """
        obj = wire.loads(data, max_size=MAX_CHARGE_SIZE, what="unserved charge", max_depth=2)
        wire.as_map(obj, _KEYS, "unserved charge")
        if obj["kind"] != "unserved":
            raise ProofError(ProofReason.MALFORMED, "not an unserved charge")
        digest, index, entropy = obj["digest"], obj["index"], obj["entropy"]
        auditor, reason = obj["auditor"], obj["reason"]
        if (
            type(digest) is not bytes
            or type(index) is not int
            or not 0 <= index < 2**32
            or type(entropy) is not bytes
            or len(entropy) != 32
            or type(auditor) is not str
            or not is_peer_id(auditor)
            or type(reason) is not str
            or not 0 < len(reason) <= 32
        ):
            raise ProofError(ProofReason.MALFORMED, "bad unserved charge fields")
        return cls(digest, index, entropy, auditor, reason)


@dataclasses.dataclass(frozen=True)
class Charge:
    """What a checked charge establishes: leaf ``index`` of the publisher's digest was
    challenged (the publisher may still refute the rest by answering)."""

    offender: str
    digest_id: bytes
    digest_type: str
    epoch: int
    index: int
    auditor: str


def verify_unserved(
    data: Any,
    now: int,
    params: DigestParams,
    candidates: Collection[str] | None = None,
) -> Charge:
    """Check a charge: a genuine, live digest; a leaf drawn under the seed of its epoch
    with the charge's entropy; with ``candidates`` (the verifier's audit candidates of
    the epoch: the attested nodes among its work digests' signers,
    :func:`repp2p.node.audits.audit_candidates`), an auditor that was drawn for it.

    Raises:
        ProofError: the charge is malformed or does not check out (never anything else).
    """
    charge = UnservedCharge.decode(data)
    try:
        digest = decode(charge.digest, now=now)
    except RecordError as exc:
        reason = (
            ProofReason.EXPIRED if exc.reason is RecordReason.EXPIRED else ProofReason.BAD_RECORD
        )
        raise ProofError(reason, f"the digest: {exc}") from None
    if digest.type not in DIGEST_TYPES:
        raise ProofError(ProofReason.WRONG_TYPE, f"a {digest.type} is not a digest")
    d = digest.record
    epoch = d.last_epoch  # a feedback batch is audited as a digest of its last epoch
    seed = audit_seed(epoch, params.grace_epochs, charge.entropy)
    drawn = challenge_indices(
        seed,
        digest.record_id,
        d.leaf_count,  # type: ignore[attr-defined]
        params.samples_for(d.span),  # type: ignore[attr-defined]
    )
    if charge.index not in drawn:
        raise ProofError(ProofReason.BAD_INDEX, f"leaf {charge.index} was not challenged")
    if candidates is not None:
        chosen = auditors(
            seed,
            digest.record_id,
            candidates,
            count=params.auditors_per_digest,
            exclude={digest.signer},
        )
        if charge.auditor not in chosen:
            raise ProofError(ProofReason.WRONG_SIGNER, "the accuser was not drawn to audit")
    return Charge(digest.signer, digest.record_id, digest.type, epoch, charge.index, charge.auditor)


__all__ = ["NO_ANSWER", "Charge", "UnservedCharge", "verify_unserved"]
