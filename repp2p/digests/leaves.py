"""Digest leaves: one canonical encoding per task a party summarises, and where it must sit.

A node's :class:`WorkLeaf` stands for one task it claimed, a client's :class:`FeedbackLeaf`
for one Feedback it signed; each names the signed per-task records it stands for by their
record IDs, so an auditor handed those records can check the leaf against them.

Leaves are sorted by :meth:`WorkLeaf.key` = ``counterparty peer ID (52 ASCII bytes) ||
outcome's block number (1 byte) || task_id (32 bytes)``; a leaf of a later epoch
of a batch (``offset`` > 0) has the byte ``0x80 + offset`` in front (peer IDs are ASCII, so
the leaves of the batch's first epoch, keyed as before batching, come first, then each
later epoch's in turn, matching rows sorted by ``(offset, node)``). With the digest's rows sorted by
peer ID, that order puts every leaf in a *block* of one (counterparty, outcome) whose place
follows from the rows' counts alone (:class:`Layout`): the leaves of the first row's first
outcome come first, and so on. So one sampled leaf is checked against the row totals too
(it must be of the block its index falls in), and a row that overstates a count leaves as
many positions that no honest leaf can fill.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

from repp2p.digests import wire
from repp2p.errors import ProofError, ProofReason
from repp2p.records import (
    DIGEST_MAX_SPAN,
    FEEDBACK_OUTCOMES,
    WORK_OUTCOMES,
    FeedbackDigest,
    SignedRecord,
    WorkDigest,
)
from repp2p.records.schema import (
    Blob,
    Choice,
    FieldError,
    PeerIdText,
    UInt,
    from_wire_map,
    optional_field,
    spec_field,
    to_wire_map,
    validate_fields,
)

#: Largest leaf encoding accepted (a leaf is under 300 bytes).
MAX_LEAF_SIZE = 512
_id = Blob(size=32)


class _Leaf:
    """Behaviour shared by the two leaf kinds (fields live on the dataclasses)."""

    OUTCOMES: ClassVar[tuple[str, ...]]
    task_id: bytes
    outcome: str

    def __post_init__(self) -> None:
        try:
            validate_fields(self)
        except FieldError as exc:
            raise ValueError(str(exc)) from None

    @property
    def peer(self) -> str:
        """The counterparty the leaf is filed under."""
        raise NotImplementedError

    @property
    def epoch_offset(self) -> int:
        """The leaf's epoch within its digest's batch (0 for a single-epoch digest)."""
        return 0

    def key(self) -> bytes:
        """The sort key: [batch offset,] counterparty, outcome block, task id."""
        return leaf_key(
            self.peer, self.OUTCOMES.index(self.outcome), self.task_id, self.epoch_offset
        )

    def encode(self) -> bytes:
        """The leaf's canonical CBOR map (what the Merkle tree hashes)."""
        return wire.dumps(to_wire_map(self))


def leaf_key(peer: str, block: int, task_id: bytes, offset: int = 0) -> bytes:
    """``[0x80 + offset ||] peer ID (ASCII) || block (1 byte) || task_id``: the order of
    leaves in a tree (the prefix only for a batch's later epochs, ``offset`` > 0).

    Peer IDs of Ed25519 keys are always 52 ASCII characters, so the concatenation orders
    exactly as the tuple ``(offset, peer, block, task_id)`` does.
    """
    prefix = bytes([0x80 + offset]) if offset else b""
    return prefix + peer.encode("ascii") + bytes([block]) + task_id


@dataclasses.dataclass(frozen=True)
class WorkLeaf(_Leaf):
    """One task a node claimed in one of the digest's epochs.

    Attributes:
        task_id: the task.
        client: the offer's signer (the row the leaf is counted in).
        outcome: ``done`` (it delivered a receipt), ``timeout``, ``failed`` or ``refused``
            (its enclave refused the client's input: a checked Refusal record).
        offer_id, claim_id: record IDs of the client's TaskOffer and the node's Claim.
        receipt_id: record ID of the node's Receipt, empty unless ``done``.
        offset: the task's epoch is the digest's ``epoch + offset`` (a batch's later
            epochs; optional, left out when 0, so leaves encode as before batching).
        refusal_id: record ID of the node's Refusal, present exactly when ``refused``
            (optional, left out when empty, so other leaves encode as before).
    """

    OUTCOMES: ClassVar[tuple[str, ...]] = WORK_OUTCOMES

    task_id: bytes = spec_field(_id)
    client: str = spec_field(PeerIdText())
    outcome: str = spec_field(Choice(frozenset(WORK_OUTCOMES)))
    offer_id: bytes = spec_field(_id)
    claim_id: bytes = spec_field(_id)
    receipt_id: bytes = spec_field(Blob(max_size=32))
    offset: int = optional_field(UInt(0, DIGEST_MAX_SPAN - 1), 0)
    refusal_id: bytes = optional_field(Blob(max_size=32), b"")

    def check_invariants(self) -> None:
        if len(self.receipt_id) != (32 if self.outcome == "done" else 0):
            raise FieldError("a done leaf names its receipt (32 bytes); no other leaf names one")
        if len(self.refusal_id) != (32 if self.outcome == "refused" else 0):
            raise FieldError("a refused leaf names its refusal (32 bytes); no other leaf names one")

    @property
    def peer(self) -> str:
        return self.client

    @property
    def epoch_offset(self) -> int:
        return self.offset


@dataclasses.dataclass(frozen=True)
class FeedbackLeaf(_Leaf):
    """One Feedback a client signed on a task of one of the digest's epochs.

    Attributes:
        task_id: the task.
        node: the node the feedback is on (the row the leaf is counted in).
        outcome, latency_ms: the Feedback's.
        feedback_id: the Feedback's record ID.
        offer_id: the client's TaskOffer for the task (it fixes the task's epoch).
        offset: the task's epoch is the digest's ``epoch + offset`` (a batch's later
            epochs; optional, left out when 0, so leaves encode as before batching).
    """

    OUTCOMES: ClassVar[tuple[str, ...]] = FEEDBACK_OUTCOMES

    task_id: bytes = spec_field(_id)
    node: str = spec_field(PeerIdText())
    outcome: str = spec_field(Choice(OUTCOMES))
    latency_ms: int = spec_field(UInt(0, 2**32 - 1))
    feedback_id: bytes = spec_field(_id)
    offer_id: bytes = spec_field(_id)
    offset: int = optional_field(UInt(0, DIGEST_MAX_SPAN - 1), 0)

    @property
    def peer(self) -> str:
        return self.node

    @property
    def epoch_offset(self) -> int:
        return self.offset


Leaf = WorkLeaf | FeedbackLeaf
Digest = WorkDigest | FeedbackDigest

#: digest type tag -> the leaf class its tree holds
LEAF_OF: dict[str, type[WorkLeaf] | type[FeedbackLeaf]] = {
    WorkDigest.TYPE: WorkLeaf,
    FeedbackDigest.TYPE: FeedbackLeaf,
}


def decode_leaf(digest_type: str, data: Any) -> Leaf:
    """Read a leaf of a digest of ``digest_type`` from hostile bytes.

    Raises:
        ProofError: BAD_LEAF (not a valid leaf of that kind), OVERSIZE, MALFORMED or
            NON_CANONICAL; WRONG_TYPE for a type that is not a digest.
    """
    cls = LEAF_OF.get(digest_type)
    if cls is None:
        raise ProofError(ProofReason.WRONG_TYPE, f"{digest_type!r} is not a digest type")
    obj = wire.loads(data, max_size=MAX_LEAF_SIZE, what="leaf", max_depth=2)
    try:
        return from_wire_map(cls, obj)  # type: ignore[no-any-return]
    except FieldError as exc:
        raise ProofError(ProofReason.BAD_LEAF, str(exc)) from None


def key_reader(digest_type: str):  # type: ignore[no-untyped-def]
    """A ``key_of`` for :mod:`repp2p.digests.merkle`: the key of a leaf's bytes."""

    def key_of(data: bytes) -> bytes:
        return decode_leaf(digest_type, data).key()

    return key_of


# -- where leaves sit --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Block:
    """The leaves ``[lo, hi)`` of one counterparty and outcome (of the batch's epoch
    ``offset``)."""

    peer: str
    outcome: str
    lo: int
    hi: int
    offset: int = 0


class Layout:
    """The blocks of a digest part, from its rows: row by row (sorted by peer ID; a
    feedback batch's by ``(offset, node)``), and within a row, one block per outcome in the
    order of the leaf kind's ``OUTCOMES``."""

    def __init__(self, digest: Digest) -> None:
        outcomes = LEAF_OF[digest.TYPE].OUTCOMES
        blocks: list[Block] = []
        at = 0
        for row in digest.rows:
            for outcome, count in zip(outcomes, row.counts(), strict=True):
                offset = getattr(row, "offset", 0)
                blocks.append(Block(row.peer, outcome, at, at + count, offset))
                at += count
        self.blocks = tuple(blocks)
        self.size = at
        self._filled = [b for b in blocks if b.hi > b.lo]
        self._starts = [b.lo for b in self._filled]
        self._by_peer: dict[tuple[str, int], tuple[Block, ...]] = {}
        for block in blocks:
            key = (block.peer, block.offset)
            self._by_peer[key] = (*self._by_peer.get(key, ()), block)

    def at(self, index: int) -> Block:
        """The block leaf ``index`` must be in.

        Raises:
            IndexError: no such leaf.
        """
        if not 0 <= index < self.size:
            raise IndexError(f"leaf {index} of {self.size}")
        return self._filled[bisect.bisect_right(self._starts, index) - 1]

    def of_peer(self, peer: str, offset: int = 0) -> tuple[Block, ...]:
        """The counterparty's blocks of the batch's epoch ``offset``, one per outcome
        (empty tuple when it has no row there)."""
        return self._by_peer.get((peer, offset), ())


def misplaced(layout: Layout, index: int, leaf: Leaf) -> str | None:
    """Why ``leaf`` cannot be leaf ``index`` of the part, or None when it fits its block."""
    block = layout.at(index)
    if leaf.peer != block.peer:
        return f"leaf {index} is filed under {leaf.peer}, its place is {block.peer}'s"
    if leaf.epoch_offset != block.offset:
        return f"leaf {index} is of offset {leaf.epoch_offset}, its place is {block.offset}'s"
    if leaf.outcome != block.outcome:
        return f"leaf {index} says {leaf.outcome}, its place is a {block.outcome} block"
    return None


# -- leaves from the signed per-task records -------------------------------------------


def work_leaf(
    offer: SignedRecord,
    claim: SignedRecord,
    receipt: SignedRecord | None,
    outcome: str,
    offset: int = 0,
    refusal: SignedRecord | None = None,
) -> WorkLeaf:
    """The leaf of a task a node claimed (in a digest whose first epoch is ``offset``
    before the offer's).

    Args:
        offer: the client's TaskOffer.
        claim: the node's Claim naming it.
        receipt: the node's Receipt for it, when it delivered (then ``outcome`` is ``done``).
        outcome: ``done``, ``timeout``, ``failed`` or ``refused``.
        refusal: the node's Refusal of the task's input (then ``outcome`` is ``refused``).
    """
    return WorkLeaf(
        task_id=offer.record.task_id,  # type: ignore[attr-defined]
        client=offer.signer,
        outcome=outcome,
        offer_id=offer.record_id,
        claim_id=claim.record_id,
        receipt_id=b"" if receipt is None else receipt.record_id,
        offset=offset,
        refusal_id=b"" if refusal is None else refusal.record_id,
    )


def feedback_leaf(offer: SignedRecord, feedback: SignedRecord, offset: int = 0) -> FeedbackLeaf:
    """The leaf of a Feedback a client signed on a task of its ``offer``, in a digest whose
    first epoch is ``offset`` before the offer's."""
    fb = feedback.record
    return FeedbackLeaf(
        task_id=fb.task_id,  # type: ignore[attr-defined]
        node=fb.node,  # type: ignore[attr-defined]
        outcome=fb.outcome,  # type: ignore[attr-defined]
        latency_ms=fb.latency_ms,  # type: ignore[attr-defined]
        feedback_id=feedback.record_id,
        offer_id=offer.record_id,
        offset=offset,
    )


def sort_leaves(leaves: Sequence[Leaf]) -> list[Leaf]:
    """Leaves in tree order (by :meth:`WorkLeaf.key`)."""
    return sorted(leaves, key=lambda leaf: leaf.key())
