"""Audits by sampling: which leaves of a digest are checked, by whom, and what an answer
proves.

Every peer derives the same challenges from public data alone:

* ``seed = H(tag || beacon(epoch + grace) || entropy)`` (:func:`audit_seed`). The beacon is
  predictable, so ``entropy`` must be something the publisher cannot know when it signs
  (docs/digests.md, "Audit sampling": the IDs of other peers' later digests); without it a
  publisher could re-sign its digest until its bad leaves are not drawn.
* the challenged leaves: ``min(samples, leaf_count)`` distinct indices, a partial
  Fisher-Yates shuffle of ``range(leaf_count)`` driven by ``H(tag || seed || digest_id ||
  j)`` (:func:`challenge_indices`), so every subset of that size is equally likely;
* the auditors: rendezvous hashing of ``H(tag || seed || digest_id || peer)`` over a
  candidate list (:func:`auditors`).

The publisher answers each challenge with an :class:`AuditResponse`: the leaf, its
inclusion path, the signed per-task records it names, and the next leaf with its path (so
the key order is checked too). :func:`verify_audit` returns an :class:`AuditVerdict`:
``pass``, ``unserved`` (the answer is unusable or leaves evidence out: the publisher's
failure, but not provable from signed data) or ``offence`` (with a proof any peer can
verify).

Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import math
from collections.abc import Collection, Iterable
from fractions import Fraction
from typing import Any

from repp2p.digests import wire
from repp2p.digests.check import Fault, check_leaf
from repp2p.digests.leaves import Layout, decode_leaf, misplaced
from repp2p.digests.merkle import Opening, verify_inclusion
from repp2p.digests.proofs import (
    MAX_PROOF_RECORDS,
    InconsistencyProof,
    MisorderProof,
    read_records,
)
from repp2p.errors import ProofError, ProofReason
from repp2p.matching.beacon import beacon
from repp2p.records import DIGEST_TYPES, Claim, Feedback, Receipt, SignedRecord, TaskOffer

SEED_DOMAIN = b"repp2p/1/audit-seed\0"
SAMPLE_DOMAIN = b"repp2p/1/audit-sample\0"
AUDITOR_DOMAIN = b"repp2p/1/auditor\0"
#: Leaves challenged per digest unless the network says otherwise.
DEFAULT_SAMPLES = 8
#: Most leaves one digest may be challenged on (bounds the work a challenge costs).
MAX_SAMPLES = 64
#: Largest audit response accepted.
MAX_RESPONSE_SIZE = 24 * 1024
_MAX_TASK_RECORD = max(cls.MAX_SIZE for cls in (TaskOffer, Claim, Receipt, Feedback))


def audit_seed(epoch: int, grace_epochs: int, entropy: bytes = b"") -> bytes:
    """The seed that draws the audits of digests of ``epoch``.

    Args:
        epoch: the digests' epoch.
        grace_epochs: epochs after ``epoch`` whose beacon is used (digests are published
            before then).
        entropy: bytes the publisher could not know when it signed (see the module
            docstring); empty gives a predictable seed, for tests and simulations.

    Returns:
        32 bytes.
    """
    return hashlib.sha256(SEED_DOMAIN + beacon(epoch + grace_epochs) + entropy).digest()


def _draw(seed: bytes, digest_id: bytes, j: int) -> int:
    h = hashlib.sha256(SAMPLE_DOMAIN + seed + digest_id + j.to_bytes(4, "big")).digest()
    return int.from_bytes(h, "big")


def challenge_indices(
    seed: bytes, digest_id: bytes, leaf_count: int, samples: int = DEFAULT_SAMPLES
) -> tuple[int, ...]:
    """The leaves of a digest challenged under ``seed``: ``min(samples, leaf_count)``
    distinct indices in draw order.

    A partial Fisher-Yates shuffle: draw ``j`` swaps position ``j`` with one of positions
    ``j..n-1`` chosen by ``H(tag || seed || digest_id || j) mod (n - j)`` (a 256-bit hash:
    the modulo bias is below 2^-200). Every ``m``-subset is then equally likely, which is
    what :func:`detection_probability` assumes.

    Raises:
        ValueError: ``samples`` outside ``[0, MAX_SAMPLES]`` or a negative ``leaf_count``.
    """
    if not 0 <= samples <= MAX_SAMPLES:
        raise ValueError(f"samples must be in [0, {MAX_SAMPLES}]")
    if leaf_count < 0:
        raise ValueError("leaf_count must be >= 0")
    moved: dict[int, int] = {}  # the shuffled array, sparse: position -> value where moved
    out = []
    for j in range(min(samples, leaf_count)):
        r = j + _draw(seed, digest_id, j) % (leaf_count - j)
        out.append(moved.get(r, r))
        moved[r] = moved.get(j, j)
    return tuple(out)


def auditors(
    seed: bytes,
    digest_id: bytes,
    candidates: Iterable[str],
    *,
    count: int = 1,
    exclude: Collection[str] = (),
) -> tuple[str, ...]:
    """The peers that audit a digest: the ``count`` candidates with the highest
    ``H(tag || seed || digest_id || peer)`` (rendezvous hashing), best first.

    Every peer with the same candidate list computes the same auditors, and a candidate's
    chance does not depend on the others. Pass the publisher (and its counterparties, if
    they should not judge) in ``exclude``.
    """
    pool = sorted(set(candidates) - set(exclude))

    def score(peer: str) -> bytes:
        return hashlib.sha256(AUDITOR_DOMAIN + seed + digest_id + peer.encode()).digest()

    return tuple(sorted(pool, key=lambda p: (score(p), p), reverse=True)[:count])


def detection_probability(leaf_count: int, bad_leaves: int, samples: int) -> Fraction:
    """The chance that an audit draws at least one of ``bad_leaves`` faulty leaves.

    ``1 - C(n - b, m) / C(n, m)`` with ``m = min(samples, n)``: sampling without
    replacement, as :func:`challenge_indices` does. Exact, as a fraction.

    Raises:
        ValueError: counts out of range.
    """
    n, b = leaf_count, bad_leaves
    if n < 0 or not 0 <= b <= n or samples < 0:
        raise ValueError("need 0 <= bad_leaves <= leaf_count and samples >= 0")
    m = min(samples, n)
    if n == 0:
        return Fraction(0)
    return 1 - Fraction(math.comb(n - b, m), math.comb(n, m))


# -- the answer --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AuditResponse:
    """A publisher's answer to one challenge.

    Attributes:
        digest_id: record ID of the digest challenged.
        opening: the challenged leaf with its inclusion path.
        records: envelopes of the signed records the leaf names (offer, claim and receipt,
            or refusal for a ``refused`` leaf; or offer and feedback).
        successor: the next leaf with its path (None for the last leaf).
    """

    digest_id: bytes
    opening: Opening
    records: tuple[bytes, ...]
    successor: Opening | None

    def encode(self) -> bytes:
        """Canonical CBOR: ``{"digest_id", "opening", "records", "successor"}``."""
        return wire.dumps(
            {
                "digest_id": self.digest_id,
                "opening": self.opening.to_wire(),
                "records": list(self.records),
                "successor": None if self.successor is None else self.successor.to_wire(),
            }
        )

    @classmethod
    def decode(cls, data: Any) -> AuditResponse:
        """Read a response from hostile bytes.

        Raises:
            ProofError: OVERSIZE, MALFORMED or NON_CANONICAL.
        """
        obj = wire.loads(data, max_size=MAX_RESPONSE_SIZE, what="audit response", max_depth=4)
        wire.as_map(obj, {"digest_id", "opening", "records", "successor"}, "audit response")
        digest_id = obj["digest_id"]
        if type(digest_id) is not bytes or len(digest_id) != 32:
            raise ProofError(ProofReason.MALFORMED, "digest_id must be 32 bytes")
        successor = obj["successor"]
        return cls(
            digest_id,
            Opening.from_wire(obj["opening"]),
            wire.as_bytes_list(
                obj["records"],
                max_items=MAX_PROOF_RECORDS,
                max_item=_MAX_TASK_RECORD,
                what="records",
            ),
            None if successor is None else Opening.from_wire(successor),
        )


class AuditOutcome(enum.Enum):
    """How a challenge ended. Values are stable metric names."""

    PASS = "pass"
    UNSERVED = "unserved"
    OFFENCE = "offence"


@dataclasses.dataclass(frozen=True)
class AuditVerdict:
    """The auditor's judgement of one response.

    Attributes:
        outcome: :class:`AuditOutcome`.
        reason: for ``unserved``, why the response is unusable (:class:`ProofReason`).
        faults: for ``offence``, what was found.
        proof: for ``offence``, a proof any peer can verify (``repp2p.digests.proofs``).
        detail: human-readable detail; never parsed.
    """

    outcome: AuditOutcome
    reason: ProofReason | None = None
    faults: tuple[Fault, ...] = ()
    proof: InconsistencyProof | MisorderProof | None = None
    detail: str = ""


def verify_audit(digest: SignedRecord, index: int, response: Any) -> AuditVerdict:
    """Judge the answer to the challenge of leaf ``index`` of ``digest``.

    Args:
        digest: the signed WorkDigest or FeedbackDigest challenged (verified by the caller).
        index: the challenged leaf.
        response: the :class:`AuditResponse` bytes as received (hostile).

    Returns:
        The :class:`AuditVerdict`; never raises on hostile ``response``. Provable faults
        come first: a response that shows one is an offence even if it also leaves
        records out.

    Raises:
        ValueError: ``digest`` is not a digest or ``index`` is not one of its leaves (the
            caller's mistake).
    """
    if digest.type not in DIGEST_TYPES:
        raise ValueError(f"a {digest.type} is not a digest")
    d = digest.record
    size, root = d.leaf_count, d.merkle_root  # type: ignore[attr-defined]
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} of a digest of {size}")
    try:
        answer = AuditResponse.decode(response)
        if answer.digest_id != digest.record_id:
            raise ProofError(ProofReason.WRONG_DIGEST, "the response is for another digest")
        if answer.opening.index != index:
            raise ProofError(ProofReason.BAD_INDEX, f"answered leaf {answer.opening.index}")
        verify_inclusion(answer.opening, size, root)
        if index + 1 < size:
            if answer.successor is None or answer.successor.index != index + 1:
                raise ProofError(ProofReason.NOT_ADJACENT, "the next leaf is missing")
            verify_inclusion(answer.successor, size, root)
        elif answer.successor is not None:
            raise ProofError(ProofReason.NOT_ADJACENT, "the last leaf has no successor")
        records = read_records(answer.records)
    except ProofError as exc:
        return AuditVerdict(AuditOutcome.UNSERVED, reason=exc.reason, detail=exc.detail)
    return _judge(digest, answer, records)


def _offence(
    fault: Fault | tuple[Fault, ...], proof: InconsistencyProof | MisorderProof, detail: str
) -> AuditVerdict:
    faults = fault if isinstance(fault, tuple) else (fault,)
    return AuditVerdict(AuditOutcome.OFFENCE, faults=faults, proof=proof, detail=detail)


def _judge(
    digest: SignedRecord, answer: AuditResponse, records: list[SignedRecord]
) -> AuditVerdict:
    opening, successor = answer.opening, answer.successor
    try:
        leaf = decode_leaf(digest.type, opening.leaf)
    except ProofError as exc:
        return _offence(Fault.BAD_LEAF, InconsistencyProof(digest.data, opening, ()), exc.detail)
    check = check_leaf(digest, opening.index, leaf, records)
    if check.faults:
        # The proof carries only the records that bear on the leaf, in record-ID order.
        related = sorted((r for r in records if r.record_id in check.related), key=_rid)
        proof = InconsistencyProof(digest.data, opening, tuple(r.data for r in related))
        faults = tuple(dict.fromkeys(f for f, _ in check.faults))
        return _offence(faults, proof, "; ".join(text for _, text in check.faults))
    if successor is not None:
        try:
            after = decode_leaf(digest.type, successor.leaf)
        except ProofError as exc:
            proof = InconsistencyProof(digest.data, successor, ())
            return _offence(Fault.BAD_LEAF, proof, exc.detail)
        where = misplaced(Layout(digest.record), successor.index, after)  # type: ignore[arg-type]
        if where is not None:
            return _offence(Fault.MISPLACED, InconsistencyProof(digest.data, successor, ()), where)
        if not leaf.key() < after.key():
            proof_m = MisorderProof(digest.data, opening, successor)
            return _offence(Fault.MISORDERED, proof_m, "the next leaf's key is not greater")
    if check.missing:
        return AuditVerdict(
            AuditOutcome.UNSERVED,
            reason=ProofReason.MISSING_RECORD,
            detail=f"not served: {', '.join(check.missing)}",
        )
    return AuditVerdict(AuditOutcome.PASS)


def _rid(signed: SignedRecord) -> bytes:
    return signed.record_id
