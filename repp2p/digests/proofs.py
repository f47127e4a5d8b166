"""Offence proofs: a digest's publisher broke the rules, shown from signed data alone.

Any peer verifies a proof with nothing but the bytes in it (signed digests, signed per-task
records, Merkle openings) and a clock; no view, store or network is consulted. Each kind:

* :class:`InconsistencyProof`: a leaf of the digest (with its inclusion path) is faulty by
  :mod:`repp2p.digests.check`: misplaced against the rows, not a leaf, or contradicted by a
  signed per-task record;
* :class:`OmissionProof`: the party signed per-task records showing it took part in a task
  of the digest's epoch (a node: the client's TaskOffer and its own Claim or Receipt naming
  it; a client: its TaskOffer and its Feedback), yet the task is in none of the
  counterparty's blocks of the part that must hold it (one non-inclusion bracket per block,
  or no row for the counterparty at all);
* :class:`ConflictProof`: two different digests by one signer covering a common epoch,
  either for the same part (the store's equivocation: one slot, the same ``seq``) or not
  parts of one split (a different number of parts, or feedback batches of different
  ranges that overlap: they cannot both describe the shared epoch);
* :class:`MisorderProof`: two adjacent leaves out of key order (a tree that is not sorted
  could hide a key from a non-inclusion proof or count a task twice).

Wire form: one canonical CBOR map with a ``kind`` key (``inconsistency``, ``omission``,
``conflict``, ``misorder``), at most :data:`MAX_PROOF_SIZE` bytes. ``verify_*(proof, now)``
returns the :class:`Offence` or raises :class:`~repp2p.errors.ProofError`; the digest must be
live at ``now`` (a proof about an expired digest no longer matters: its evidence is gone
from every store), the per-task records need only verify (they may have expired).

Pure: no I/O, no clock (``now`` is an argument).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from collections.abc import Sequence
from typing import Any

from repp2p.digests import wire
from repp2p.digests.check import Fault, check_leaf
from repp2p.digests.leaves import Layout, decode_leaf, key_reader, leaf_key
from repp2p.digests.merkle import Bracket, Opening, verify_absence, verify_inclusion
from repp2p.errors import ProofError, ProofReason, RecordError, RecordReason
from repp2p.records import (
    DIGEST_TYPES,
    Claim,
    Feedback,
    FeedbackDigest,
    Outcome,
    Receipt,
    SignedRecord,
    TaskOffer,
    WorkDigest,
    compare,
    decode,
    part_of,
)

#: Largest encoded proof (a conflict carries two digests of up to 40 KiB each).
MAX_PROOF_SIZE = 96 * 1024
#: Largest embedded digest and per-task record.
_MAX_DIGEST = max(WorkDigest.MAX_SIZE, FeedbackDigest.MAX_SIZE)
_MAX_TASK_RECORD = max(cls.MAX_SIZE for cls in (TaskOffer, Claim, Receipt, Feedback))
#: Most per-task records one proof or audit response carries.
MAX_PROOF_RECORDS = 8


class OffenceKind(enum.Enum):
    """The kind of a proven offence. Values are stable metric names."""

    INCONSISTENCY = "inconsistency"
    OMISSION = "omission"
    CONFLICT = "conflict"
    MISORDER = "misorder"


@dataclasses.dataclass(frozen=True)
class Offence:
    """What a verified proof establishes.

    Attributes:
        kind: the :class:`OffenceKind`.
        offender: the digest signer's peer ID.
        digest_type: ``WorkDigest`` or ``FeedbackDigest``.
        epoch: the epoch the digest is filed under, its last (:meth:`~repp2p.records.
            WorkDigest.epoch_of`: a single-epoch digest's epoch, a batch's last one); for a
            conflict, the later of the two digests' last epochs. A batch is published,
            audited and expires as a digest of its last epoch, and two conflicting digests
            can be shown together only once the later is out, so the peers that take the
            proof (``current <= epoch + audit_horizon_epochs``) and the views that count it
            go by that epoch: dated by a batch's first epoch, the proof its own audit
            finds would already be too old (docs/digests.md, "Offence proofs and unserved
            charges on gossip").
        task_id: the task the proof is about (empty for a conflict or a misorder).
        faults: what was found (:class:`~repp2p.digests.check.Fault`).
        evidence_id: SHA-256 of the proof's encoding (one offence, one ID, for dedup).
    """

    kind: OffenceKind
    offender: str
    digest_type: str
    epoch: int
    task_id: bytes
    faults: tuple[Fault, ...]
    evidence_id: bytes


# -- reading embedded records ---------------------------------------------------------


def read_digest(data: bytes, now: int | None) -> SignedRecord:
    """Decode a signed digest inside a proof.

    Raises:
        ProofError: EXPIRED (not live at ``now``), BAD_RECORD (does not decode or verify) or
            WRONG_TYPE (not a digest).
    """
    signed = _read(data, now)
    if signed.type not in DIGEST_TYPES:
        raise ProofError(ProofReason.WRONG_TYPE, f"a {signed.type} is not a digest")
    return signed


def read_records(items: Sequence[bytes]) -> list[SignedRecord]:
    """Decode per-task records inside a proof (signatures checked, expiry not).

    Raises:
        ProofError: BAD_RECORD.
    """
    return [_read(item, None) for item in items]


def _read(data: bytes, now: int | None) -> SignedRecord:
    try:
        return decode(data, now=now)
    except RecordError as exc:
        if exc.reason in (RecordReason.EXPIRED, RecordReason.EXPIRES_TOO_FAR):
            raise ProofError(ProofReason.EXPIRED, str(exc)) from None
        raise ProofError(ProofReason.BAD_RECORD, str(exc)) from None


def _evidence_id(proof: Proof) -> bytes:
    return hashlib.sha256(proof.encode()).digest()


def _offence(
    kind: OffenceKind,
    digest: SignedRecord,
    task_id: bytes,
    faults: Sequence[Fault],
    proof: Proof,
    epoch: int | None = None,
) -> Offence:
    """The offence a verified proof establishes, dated ``epoch`` (default: the digest's
    last epoch, :attr:`Offence.epoch`)."""
    return Offence(
        kind=kind,
        offender=digest.signer,
        digest_type=digest.type,
        epoch=digest.record.epoch_of() if epoch is None else epoch,  # type: ignore[attr-defined]
        task_id=task_id,
        faults=tuple(dict.fromkeys(faults)),
        evidence_id=_evidence_id(proof),
    )


# -- the proof types ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class InconsistencyProof:
    """A digest, one of its leaves with its inclusion path, and the signed per-task records
    (none for a misplaced or invalid leaf) the leaf contradicts."""

    KIND = "inconsistency"
    digest: bytes
    opening: Opening
    records: tuple[bytes, ...]

    def to_wire(self) -> dict[str, Any]:
        return {
            "kind": self.KIND,
            "digest": self.digest,
            "opening": self.opening.to_wire(),
            "records": list(self.records),
        }

    def encode(self) -> bytes:
        """Canonical CBOR."""
        return wire.dumps(self.to_wire())


@dataclasses.dataclass(frozen=True)
class OmissionProof:
    """A digest, the party's signed per-task records of one task (the TaskOffer first), and
    one bracket per block of the counterparty (none when it has no row)."""

    KIND = "omission"
    digest: bytes
    records: tuple[bytes, ...]
    brackets: tuple[Bracket, ...]

    def to_wire(self) -> dict[str, Any]:
        return {
            "kind": self.KIND,
            "digest": self.digest,
            "records": list(self.records),
            "brackets": [b.to_wire() for b in self.brackets],
        }

    def encode(self) -> bytes:
        """Canonical CBOR."""
        return wire.dumps(self.to_wire())


@dataclasses.dataclass(frozen=True)
class ConflictProof:
    """Two digests of one signer and epoch that cannot both stand; ``a`` has the smaller
    record ID (one spelling per pair)."""

    KIND = "conflict"
    a: bytes
    b: bytes

    def to_wire(self) -> dict[str, Any]:
        return {"kind": self.KIND, "a": self.a, "b": self.b}

    def encode(self) -> bytes:
        """Canonical CBOR."""
        return wire.dumps(self.to_wire())


@dataclasses.dataclass(frozen=True)
class MisorderProof:
    """A digest and two adjacent leaves whose keys do not increase."""

    KIND = "misorder"
    digest: bytes
    first: Opening
    second: Opening

    def to_wire(self) -> dict[str, Any]:
        return {
            "kind": self.KIND,
            "digest": self.digest,
            "first": self.first.to_wire(),
            "second": self.second.to_wire(),
        }

    def encode(self) -> bytes:
        """Canonical CBOR."""
        return wire.dumps(self.to_wire())


Proof = InconsistencyProof | OmissionProof | ConflictProof | MisorderProof

_KEYS = {
    InconsistencyProof.KIND: {"kind", "digest", "opening", "records"},
    OmissionProof.KIND: {"kind", "digest", "records", "brackets"},
    ConflictProof.KIND: {"kind", "a", "b"},
    MisorderProof.KIND: {"kind", "digest", "first", "second"},
}


def _digest_bytes(obj: Any, what: str) -> bytes:
    if type(obj) is not bytes:
        raise ProofError(ProofReason.MALFORMED, f"{what} must be bytes")
    if len(obj) > _MAX_DIGEST:
        raise ProofError(ProofReason.OVERSIZE, f"{what} of {len(obj)} bytes")
    return obj


def _record_list(obj: Any) -> tuple[bytes, ...]:
    return wire.as_bytes_list(
        obj, max_items=MAX_PROOF_RECORDS, max_item=_MAX_TASK_RECORD, what="records"
    )


def decode_proof(data: Any) -> Proof:
    """Read a proof from hostile bytes (shape only; :func:`verify_proof` judges it).

    Raises:
        ProofError: OVERSIZE, MALFORMED or NON_CANONICAL.
    """
    obj = wire.loads(data, max_size=MAX_PROOF_SIZE, what="proof", max_depth=6)
    if type(obj) is not dict or type(obj.get("kind")) is not str or obj["kind"] not in _KEYS:
        raise ProofError(ProofReason.MALFORMED, "a proof is a map with a known kind")
    kind = obj["kind"]
    wire.as_map(obj, _KEYS[kind], f"{kind} proof")
    if kind == InconsistencyProof.KIND:
        return InconsistencyProof(
            _digest_bytes(obj["digest"], "digest"),
            Opening.from_wire(obj["opening"]),
            _record_list(obj["records"]),
        )
    if kind == OmissionProof.KIND:
        brackets = obj["brackets"]
        if type(brackets) is not list or len(brackets) > 4:
            raise ProofError(ProofReason.MALFORMED, "brackets: an array of at most 4")
        return OmissionProof(
            _digest_bytes(obj["digest"], "digest"),
            _record_list(obj["records"]),
            tuple(Bracket.from_wire(b) for b in brackets),
        )
    if kind == ConflictProof.KIND:
        return ConflictProof(_digest_bytes(obj["a"], "a"), _digest_bytes(obj["b"], "b"))
    return MisorderProof(
        _digest_bytes(obj["digest"], "digest"),
        Opening.from_wire(obj["first"]),
        Opening.from_wire(obj["second"]),
    )


# -- verification ----------------------------------------------------------------------


def verify_inconsistency(proof: InconsistencyProof, now: int) -> Offence:
    """Verify an :class:`InconsistencyProof`.

    Raises:
        ProofError: EXPIRED, BAD_RECORD, WRONG_TYPE, BAD_INDEX, BAD_PATH, ROOT_MISMATCH,
            or NO_OFFENCE when the leaf is sound against its place and the records.
    """
    digest = read_digest(proof.digest, now)
    d = digest.record
    verify_inclusion(proof.opening, d.leaf_count, d.merkle_root)  # type: ignore[attr-defined]
    records = read_records(proof.records)
    try:
        leaf = decode_leaf(digest.type, proof.opening.leaf)
    except ProofError:
        # The publisher committed to bytes that are not a leaf: that alone is the offence.
        if records:
            raise ProofError(ProofReason.WRONG_TASK, "an invalid leaf needs no records") from None
        return _offence(OffenceKind.INCONSISTENCY, digest, b"", [Fault.BAD_LEAF], proof)
    result = check_leaf(digest, proof.opening.index, leaf, records)
    if result.clean:
        raise ProofError(ProofReason.NO_OFFENCE, "the leaf agrees with its place and records")
    if result.unrelated:
        raise ProofError(ProofReason.WRONG_TASK, "the proof carries records that prove nothing")
    faults = [f for f, _ in result.faults]
    return _offence(OffenceKind.INCONSISTENCY, digest, leaf.task_id, faults, proof)


def _participation(digest: SignedRecord, records: list[SignedRecord]) -> tuple[str, bytes, int]:
    """The counterparty, the task and its epoch's offset in the digest's range."""
    """The counterparty and task the records show the digest's signer took part in."""
    if len(records) != 2:
        raise ProofError(ProofReason.MALFORMED, "an omission carries an offer and one record")
    offer, evidence = records
    off = offer.record
    if not isinstance(off, TaskOffer):
        raise ProofError(ProofReason.WRONG_TYPE, "an omission's first record is the TaskOffer")
    ev = evidence.record
    if isinstance(digest.record, WorkDigest):
        if not isinstance(ev, Claim | Receipt):
            raise ProofError(ProofReason.WRONG_TYPE, "a node's omission needs a Claim or Receipt")
        if evidence.signer != digest.signer:
            raise ProofError(ProofReason.WRONG_SIGNER, "the claim or receipt is not the node's")
        if ev.task_id != off.task_id or ev.offer_id != offer.record_id:
            raise ProofError(ProofReason.WRONG_TASK, "the claim or receipt names another offer")
        counterparty = offer.signer
    else:
        if not isinstance(ev, Feedback):
            raise ProofError(ProofReason.WRONG_TYPE, "a client's omission needs its Feedback")
        if evidence.signer != digest.signer or offer.signer != digest.signer:
            raise ProofError(ProofReason.WRONG_SIGNER, "offer and feedback are not the client's")
        if ev.task_id != off.task_id:
            raise ProofError(ProofReason.WRONG_TASK, "the feedback is on another task")
        counterparty = ev.node
    if not digest.record.covers(off.epoch):  # type: ignore[attr-defined]
        raise ProofError(ProofReason.WRONG_EPOCH, f"the task is of epoch {off.epoch}")
    return counterparty, off.task_id, off.epoch - digest.record.epoch  # type: ignore[attr-defined]


def verify_omission(proof: OmissionProof, now: int) -> Offence:
    """Verify an :class:`OmissionProof`.

    Raises:
        ProofError: EXPIRED, BAD_RECORD, WRONG_TYPE, WRONG_SIGNER, WRONG_TASK, WRONG_EPOCH,
            WRONG_PART (the digest's part is not the counterparty's), MALFORMED (brackets not
            one per block), NOT_ADJACENT, NOT_BRACKETED (the task is there), BAD_LEAF,
            BAD_INDEX, BAD_PATH or ROOT_MISMATCH.
    """
    digest = read_digest(proof.digest, now)
    d = digest.record
    peer, task_id, offset = _participation(digest, read_records(proof.records))
    if part_of(peer, d.parts) != d.part:  # type: ignore[attr-defined]
        raise ProofError(ProofReason.WRONG_PART, f"{peer}'s row is not in this part")
    blocks = Layout(d).of_peer(peer, offset)  # type: ignore[arg-type]
    if len(proof.brackets) != len(blocks):
        raise ProofError(ProofReason.MALFORMED, f"{len(blocks)} blocks need as many brackets")
    key_of = key_reader(digest.type)
    for number, (block, bracket) in enumerate(zip(blocks, proof.brackets, strict=True)):
        verify_absence(
            leaf_key(peer, number, task_id, offset),
            bracket,
            lo=block.lo,
            hi=block.hi,
            size=d.leaf_count,  # type: ignore[attr-defined]
            root=d.merkle_root,  # type: ignore[attr-defined]
            key_of=key_of,
        )
    return _offence(OffenceKind.OMISSION, digest, task_id, [Fault.OMITTED], proof)


def verify_conflict(proof: ConflictProof, now: int) -> Offence:
    """Verify a :class:`ConflictProof`.

    Raises:
        ProofError: EXPIRED, BAD_RECORD, WRONG_TYPE, NON_CANONICAL (``a`` does not have the
            smaller record ID), WRONG_SIGNER, WRONG_EPOCH, NO_OFFENCE (the same digest, or
            two parts of one consistent split).
    """
    a, b = read_digest(proof.a, now), read_digest(proof.b, now)
    if a.record_id == b.record_id:
        raise ProofError(ProofReason.NO_OFFENCE, "the same digest twice")
    if a.record_id > b.record_id:
        raise ProofError(ProofReason.NON_CANONICAL, "a must have the smaller record ID")
    if a.signer_key != b.signer_key:
        raise ProofError(ProofReason.WRONG_SIGNER, "two signers cannot conflict")
    if a.type != b.type:
        raise ProofError(ProofReason.WRONG_TYPE, "a work and a feedback digest cannot conflict")
    ra, rb = a.record, b.record
    # a feedback batch covers epoch .. last_epoch; digests whose ranges share no epoch
    # cannot conflict, two that share one must be parts of one split of one range
    if ra.last_epoch < rb.epoch or rb.last_epoch < ra.epoch:  # type: ignore[attr-defined]
        raise ProofError(ProofReason.WRONG_EPOCH, "digests of disjoint epochs cannot conflict")
    same_slot = ra.slot() == rb.slot()
    if same_slot and compare(a, b) is not Outcome.EQUIVOCATION:
        raise ProofError(ProofReason.NO_OFFENCE, "not an equivocation")  # unreachable: seq is 0
    one_split = (ra.epoch, ra.span, ra.parts) == (rb.epoch, rb.span, rb.parts)  # type: ignore[attr-defined]
    if not same_slot and one_split:
        raise ProofError(ProofReason.NO_OFFENCE, "two parts of one split")
    later = max(ra.last_epoch, rb.last_epoch)  # type: ignore[attr-defined]
    return _offence(OffenceKind.CONFLICT, a, b"", [Fault.CONFLICT], proof, later)


def verify_misorder(proof: MisorderProof, now: int) -> Offence:
    """Verify a :class:`MisorderProof`.

    Raises:
        ProofError: EXPIRED, BAD_RECORD, WRONG_TYPE, NOT_ADJACENT, BAD_INDEX, BAD_PATH,
            ROOT_MISMATCH, BAD_LEAF (a leaf that does not decode is an inconsistency, proven
            with :class:`InconsistencyProof`) or NO_OFFENCE (the keys increase).
    """
    digest = read_digest(proof.digest, now)
    d = digest.record
    if proof.second.index != proof.first.index + 1:
        raise ProofError(ProofReason.NOT_ADJACENT, "a misorder is two adjacent leaves")
    for opening in (proof.first, proof.second):
        verify_inclusion(opening, d.leaf_count, d.merkle_root)  # type: ignore[attr-defined]
    first = decode_leaf(digest.type, proof.first.leaf).key()
    second = decode_leaf(digest.type, proof.second.leaf).key()
    if first < second:
        raise ProofError(ProofReason.NO_OFFENCE, "the keys increase")
    return _offence(OffenceKind.MISORDER, digest, b"", [Fault.MISORDERED], proof)


def verify_proof(proof: Proof, now: int) -> Offence:
    """Verify a proof of any kind (see the ``verify_*`` functions for the reasons).

    Raises:
        ProofError: the proof does not establish an offence.
    """
    if isinstance(proof, InconsistencyProof):
        return verify_inconsistency(proof, now)
    if isinstance(proof, OmissionProof):
        return verify_omission(proof, now)
    if isinstance(proof, ConflictProof):
        return verify_conflict(proof, now)
    if isinstance(proof, MisorderProof):
        return verify_misorder(proof, now)
    raise ProofError(ProofReason.MALFORMED, f"not a proof: {type(proof).__name__}")


def check_records_kept(
    proof: Proof, offence: Offence, *, epoch_s: int, horizon_epochs: int
) -> None:
    """Whether a verified proof holds its publisher to records it had to keep: an omission
    from a work digest is an offence only of a task whose offer lives through the proof's
    acceptance window (``expires >= (offence.epoch + horizon_epochs + 1) * epoch_s``; a
    book takes the proof while ``current <= offence.epoch + horizon_epochs``).

    The offer's ``expires`` is its client's choice (a node admits one that expires a
    minute after its deadline), the node's claim and receipt copy it, and the node's store
    purges them when they expire: a digest it builds after that (at the seal, or after a
    restart) leaves the task out. The client keeps the node's signed claim (a proof takes
    expired per-task records), so without this rule it could frame any honest node that
    served it. An omission from a client's own feedback digest has no such excuse (its
    offer and its feedback are its own), nor does a node whose claim expires before the
    offer it names (an honest node copies the offer's ``expires``).

    Needs the network's epoch length and audit horizon, so it is the proof book's check
    (:class:`repp2p.node.offences.OffenceBook`), after :func:`verify_proof`.

    Raises:
        ProofError: NO_OFFENCE when the omitted task's offer expires earlier.
    """
    if not isinstance(proof, OmissionProof) or offence.digest_type != WorkDigest.TYPE:
        return
    offer = _read(proof.records[0], None)  # the TaskOffer (verify_omission checked it)
    kept_until = (offence.epoch + horizon_epochs + 1) * epoch_s
    expires = offer.record.expires  # type: ignore[attr-defined]
    if expires < kept_until:
        raise ProofError(
            ProofReason.NO_OFFENCE,
            f"the omitted task's offer expires at {expires}, before {kept_until}: its node "
            "need not hold its records that long",
        )


def verify_bytes(data: Any, now: int) -> Offence:
    """Decode and verify a proof received from a peer: :func:`decode_proof` then
    :func:`verify_proof`. Raises only :class:`~repp2p.errors.ProofError`."""
    return verify_proof(decode_proof(data), now)


def conflict_proof(x: SignedRecord, y: SignedRecord) -> ConflictProof:
    """The :class:`ConflictProof` of two digests, in canonical order."""
    a, b = sorted((x, y), key=lambda s: s.record_id)
    return ConflictProof(a.data, b.data)
