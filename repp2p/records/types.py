"""The record types, in one registry (docs/records.md has the wire format and caps).

Every type is a frozen dataclass whose fields carry a :mod:`~repp2p.records.schema` spec and
which declares:

* ``TYPE``: the wire type tag (signed, part of the signature's domain separation);
* ``MAX_SIZE``: the largest encoded envelope accepted for the type, in bytes;
* ``slot()``: the replacement key within one signer and type. Records with the same
  ``(signer, TYPE, slot)`` replace each other by ``seq``; different slots coexist (one
  heartbeat per epoch, one offer per task, one feedback per task and node...).

Every type has ``seq`` (replacement order within a slot) and ``expires`` (unix seconds after
which the record is dropped). Units are in the field names or comments; there are no floats.

A type whose fields constrain each other (the digests: sorted rows that add up to the leaf
count) also declares ``check_invariants()``, which the schema runs on construction and on
decoding alike (:func:`repp2p.records.schema.check_invariants`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from typing import ClassVar

from repp2p.errors import RecordError, RecordReason
from repp2p.records.schema import (
    ArrayOf,
    Blob,
    Choice,
    FieldError,
    Nested,
    PeerIdBinary,
    PeerIdText,
    Text,
    UInt,
    optional_field,
    spec_field,
    validate_fields,
)

#: TEE kinds a node may advertise and a task may require. ``simulated`` is development only.
TEE_KINDS = frozenset({"simulated", "nitro", "sev-snp", "dcap", "nvidia"})
#: Feedback outcomes.
OUTCOMES = frozenset({"ok", "wrong", "timeout", "bad_proof"})

ENGINE_ID_PATTERN = r"[a-z0-9][a-z0-9._-]{0,63}"
_u32 = UInt(maximum=2**32 - 1)
_u64 = UInt()
_digest = Blob(size=32)
_key32 = Blob(size=32)


class Record:
    """Base of all record types (behaviour only; fields live on the dataclasses)."""

    TYPE: ClassVar[str]
    MAX_SIZE: ClassVar[int]
    seq: int
    expires: int

    def __post_init__(self) -> None:
        try:
            validate_fields(self)
        except FieldError as exc:
            raise RecordError(RecordReason.BAD_FIELD, str(exc)) from None

    def slot(self) -> bytes:
        """Replacement key within ``(signer, TYPE)``; see the module docstring."""
        return b""

    def epoch_of(self) -> int | None:
        """The epoch the record belongs to, when it names one (used for store queries)."""
        return getattr(self, "epoch", None)


def _seq() -> object:
    return spec_field(_u64)


def _expires() -> object:
    return spec_field(_u64)


@dataclasses.dataclass(frozen=True)
class EngineOffer:
    """One engine a node serves: its id and the measurement of the code it runs."""

    engine_id: str = spec_field(Text(64, ENGINE_ID_PATTERN))
    measurement: bytes = spec_field(_digest)

    def __post_init__(self) -> None:
        try:
            validate_fields(self)
        except FieldError as exc:
            raise RecordError(RecordReason.BAD_FIELD, str(exc)) from None


@dataclasses.dataclass(frozen=True)
class NodeAd(Record):
    """A node's advertisement: where to reach it and what it sells.

    ``price`` is in micro-REP per task; ``capacity`` is the number of tasks it runs at once;
    ``throughput`` the tasks per epoch it claims to sustain (reputation checks it).
    """

    TYPE: ClassVar[str] = "NodeAd"
    MAX_SIZE: ClassVar[int] = 16 * 1024

    addrs: tuple[str, ...] = spec_field(ArrayOf(Text(256, r"/[\x21-\x7e]+"), 16))
    engines: tuple[EngineOffer, ...] = spec_field(ArrayOf(Nested(EngineOffer), 64))
    tee_kind: str = spec_field(Choice(TEE_KINDS))
    price: int = spec_field(_u64)
    capacity: int = spec_field(UInt(1, 65535))
    throughput: int = spec_field(_u32)
    seq: int = _seq()
    expires: int = _expires()


@dataclasses.dataclass(frozen=True)
class Attestation(Record):
    """A node's TEE evidence with the enclave keys bound into its report data.

    ``enc_key`` is the enclave's X25519 key for sealed inputs, ``result_key`` its Ed25519 key
    for signing receipts; ``epoch`` and ``nonce`` make the binding fresh. ``collateral``
    carries what the verifier needs beside the evidence (DCAP collateral, certificate chains)
    and ``gpu_evidence`` an optional GPU report bound to this CPU evidence.
    """

    TYPE: ClassVar[str] = "Attestation"
    MAX_SIZE: ClassVar[int] = 320 * 1024

    tee_kind: str = spec_field(Choice(TEE_KINDS))
    evidence: bytes = spec_field(Blob(max_size=64 * 1024))
    collateral: bytes = spec_field(Blob(max_size=192 * 1024))
    gpu_evidence: bytes = spec_field(Blob(max_size=48 * 1024))
    enc_key: bytes = spec_field(_key32)
    result_key: bytes = spec_field(_key32)
    epoch: int = spec_field(_u64)
    nonce: bytes = spec_field(_digest)
    seq: int = _seq()
    expires: int = _expires()


@dataclasses.dataclass(frozen=True)
class Heartbeat(Record):
    """Liveness for one epoch: ``load`` = tasks running now, ``tasks_done`` = cumulative.

    ``enclave_sig`` is the node's attested enclave saying it is alive in ``epoch``: Ed25519
    by the attestation's ``result_key`` over
    :func:`repp2p.attestation.liveness.liveness_message` (peer ID, epoch, beacon). An
    optional field, left out when empty, so heartbeats from before it decode as before;
    such a heartbeat proves no enclave liveness (docs/attestation.md, "Freshness").
    """

    TYPE: ClassVar[str] = "Heartbeat"
    MAX_SIZE: ClassVar[int] = 1024

    epoch: int = spec_field(_u64)
    load: int = spec_field(_u32)
    tasks_done: int = spec_field(_u64)
    seq: int = _seq()
    expires: int = _expires()
    enclave_sig: bytes = optional_field(Blob(max_size=64), b"")

    def slot(self) -> bytes:
        return self.epoch.to_bytes(8, "big")

    def check_invariants(self) -> None:
        if len(self.enclave_sig) not in (0, 64):
            raise FieldError(f"enclave_sig is {len(self.enclave_sig)} bytes, not 64")


@dataclasses.dataclass(frozen=True)
class TaskOffer(Record):
    """A client's task: what to run, under which requirements, and where results go.

    ``epoch`` names the view and beacon matching uses; ``tee_kinds`` empty means any kind;
    ``min_reputation`` is in permille (0-1000); ``max_price`` in micro-REP; ``deadline_ms``
    in unix milliseconds; ``result_key`` is the client's X25519 key for the encrypted output.
    """

    TYPE: ClassVar[str] = "TaskOffer"
    MAX_SIZE: ClassVar[int] = 4 * 1024

    task_id: bytes = spec_field(_digest)
    engine_id: str = spec_field(Text(64, ENGINE_ID_PATTERN))
    epoch: int = spec_field(_u64)
    tee_kinds: tuple[str, ...] = spec_field(ArrayOf(Choice(TEE_KINDS), 8, unique_sorted=True))
    min_reputation: int = spec_field(UInt(0, 1000))
    max_price: int = spec_field(_u64)
    redundancy: int = spec_field(UInt(1, 16))
    deadline_ms: int = spec_field(_u64)
    input_digest: bytes = spec_field(_digest)
    input_size: int = spec_field(UInt(0, 2**32))
    result_key: bytes = spec_field(_key32)
    seq: int = _seq()
    expires: int = _expires()

    def slot(self) -> bytes:
        return self.task_id


@dataclasses.dataclass(frozen=True)
class Claim(Record):
    """ "I take task ``task_id`` as ``rank``" (0 = best), matched on the view ``view_digest``."""

    TYPE: ClassVar[str] = "Claim"
    MAX_SIZE: ClassVar[int] = 1024

    task_id: bytes = spec_field(_digest)
    offer_id: bytes = spec_field(_digest)
    rank: int = spec_field(UInt(0, 255))
    epoch: int = spec_field(_u64)
    view_digest: bytes = spec_field(_digest)
    seq: int = _seq()
    expires: int = _expires()

    def slot(self) -> bytes:
        return self.task_id


@dataclasses.dataclass(frozen=True)
class Receipt(Record):
    """Proof of execution, signed inside the enclave with its attested ``result_key``.

    ``enclave_sig`` is an Ed25519 signature by ``result_key`` over :func:`receipt_message`;
    the node wraps the whole receipt in its own record signature.
    """

    TYPE: ClassVar[str] = "Receipt"
    MAX_SIZE: ClassVar[int] = 2 * 1024

    task_id: bytes = spec_field(_digest)
    offer_id: bytes = spec_field(_digest)
    engine_id: str = spec_field(Text(64, ENGINE_ID_PATTERN))
    measurement: bytes = spec_field(_digest)
    input_digest: bytes = spec_field(_digest)
    output_digest: bytes = spec_field(_digest)
    started_ms: int = spec_field(_u64)
    finished_ms: int = spec_field(_u64)
    result_key: bytes = spec_field(_key32)
    enclave_sig: bytes = spec_field(Blob(size=64))
    seq: int = _seq()
    expires: int = _expires()

    def slot(self) -> bytes:
        return self.task_id


@dataclasses.dataclass(frozen=True)
class Feedback(Record):
    """A client's verdict on a node's work on one of its tasks.

    ``latency_ms`` from offer to verified result; ``rating`` 0-100.
    """

    TYPE: ClassVar[str] = "Feedback"
    MAX_SIZE: ClassVar[int] = 1024

    task_id: bytes = spec_field(_digest)
    node: str = spec_field(PeerIdText())
    outcome: str = spec_field(Choice(OUTCOMES))
    latency_ms: int = spec_field(_u32)
    rating: int = spec_field(UInt(0, 100))
    seq: int = _seq()
    expires: int = _expires()

    def slot(self) -> bytes:
        return self.task_id + self.node.encode("ascii")


TASK_ID_DOMAIN = b"repp2p/1/task-id\0"


def task_id_for(client_key: bytes, result_key: bytes) -> bytes:
    """The task id a client must use: SHA-256 of a domain tag, its signing key and the offer's
    one-time result key.

    Binding the id to the client's key means nobody else can publish an offer with the same
    id first and have nodes refuse the real one as a replay (task-id squatting); the fresh
    result key makes it unique per task.
    """
    return hashlib.sha256(TASK_ID_DOMAIN + client_key + result_key).digest()


# -- per-epoch digests (docs/digests.md) --------------------------------------------------

#: Most rows (counterparties) in one digest part; a party with more splits its digest into
#: parts. 256 rows keep the largest part under 18 KiB (rows are compact arrays:
#: docs/records.md), one gossip message.
DIGEST_MAX_ROWS = 256
#: Most parts per (signer, type, epoch): up to 65,536 counterparties in one epoch.
DIGEST_MAX_PARTS = 256
#: Most leaves (tasks) in one part, and so the largest count any row may state: Merkle
#: paths stay at most 24 hashes long.
DIGEST_MAX_LEAVES = 2**24
#: Most epochs one digest may cover (a batch, ``span``); the network's
#: ``DigestParams.feedback_max_epochs`` and ``work_max_epochs`` are at most this.
DIGEST_MAX_SPAN = 16
#: The same bound under its first name (feedback batches came first).
FEEDBACK_MAX_SPAN = DIGEST_MAX_SPAN
#: Outcomes of a node's claimed task, in the order of their blocks in the Merkle tree.
WORK_OUTCOMES = ("done", "timeout", "failed", "refused")
#: Feedback outcomes in the order of their blocks in a feedback digest's Merkle tree.
FEEDBACK_OUTCOMES = ("ok", "wrong", "timeout", "bad_proof")
#: Merkle root of a part without leaves (RFC 6962: the hash of the empty string).
EMPTY_MERKLE_ROOT = hashlib.sha256(b"").digest()

_PART_DOMAIN = b"repp2p/1/digest-part\0"
_u32_leaves = UInt(0, DIGEST_MAX_LEAVES)


def part_of(peer_id: str, parts: int) -> int:
    """The digest part a counterparty's row belongs in, when a digest has ``parts`` parts.

    ``u64(SHA-256(tag || peer_id)[:8]) mod parts``: fixed by the counterparty alone, so a
    proof about one counterparty needs only the one part that must hold its row.

    Raises:
        ValueError: ``parts`` is not in ``[1, DIGEST_MAX_PARTS]``.
    """
    if type(parts) is not int or not 1 <= parts <= DIGEST_MAX_PARTS:
        raise ValueError(f"parts must be in [1, {DIGEST_MAX_PARTS}], not {parts!r}")
    h = hashlib.sha256(_PART_DOMAIN + peer_id.encode("ascii")).digest()
    return int.from_bytes(h[:8], "big") % parts


def _check_span(epoch: int, span: int, offsets: list[int]) -> None:
    if any(offset >= span for offset in offsets):
        raise FieldError(f"a row's offset is past the digest's span of {span}")
    if epoch + span - 1 > _u64.maximum:
        raise FieldError("the digest's last epoch is past 2^64 - 1")


def _check_part(
    kind: str,
    epoch: int,
    part: int,
    parts: int,
    peers: list[str],
    leaf_count: int,
    root: bytes,
    offsets: list[int] | None = None,
) -> None:
    del epoch  # any epoch is well formed; which epochs a peer accepts is the live layer's rule
    if part >= parts:
        raise FieldError(f"part {part} of {parts}")
    keys = list(zip(offsets, peers, strict=True)) if offsets is not None else peers
    if any(a >= b for a, b in itertools.pairwise(keys)):  # type: ignore[operator]
        what = "(offset, peer ID)" if offsets is not None else "peer ID"
        raise FieldError(f"{kind} rows must be sorted by {what} without duplicates")
    for peer in peers:
        if part_of(peer, parts) != part:
            raise FieldError(f"row {peer} belongs in part {part_of(peer, parts)}, not {part}")
    if leaf_count > DIGEST_MAX_LEAVES:
        raise FieldError(f"{leaf_count} leaves, more than {DIGEST_MAX_LEAVES}")
    if leaf_count == 0 and root != EMPTY_MERKLE_ROOT:
        raise FieldError("a part without leaves has the empty tree's root")


@dataclasses.dataclass(frozen=True)
class WorkRow:
    """A node's work for one client in one epoch: tasks it ``claims``, of which it delivered
    ``receipts``, let run past their deadline (``timeouts``), failed (``failures``) or
    whose input its enclave refused (``refused``: the node holds a signed Refusal record
    for each, docs/security.md "Client-caused failures (refusals)").

    Every claimed task has exactly one of the four outcomes, so
    ``claims == receipts + timeouts + failures + refused``, and ``claims >= 1`` (no empty
    rows). ``offset``: the row's epoch is its digest's ``epoch + offset`` (0 .. ``span - 1``
    of a batch).

    On the wire a row is an array in field order with ``client`` as its 38-byte binary
    peer ID; ``offset`` and ``refused`` are optional trailing items, left out when 0 at
    the end (docs/records.md, "Digests").
    """

    client: str = spec_field(PeerIdBinary())
    claims: int = spec_field(_u32_leaves)
    receipts: int = spec_field(_u32_leaves)
    timeouts: int = spec_field(_u32_leaves)
    failures: int = spec_field(_u32_leaves)
    offset: int = optional_field(UInt(0, DIGEST_MAX_SPAN - 1), 0)
    refused: int = optional_field(_u32_leaves, 0)

    def __post_init__(self) -> None:
        try:
            validate_fields(self)
        except FieldError as exc:
            raise RecordError(RecordReason.BAD_FIELD, str(exc)) from None

    def check_invariants(self) -> None:
        if self.claims != self.receipts + self.timeouts + self.failures + self.refused:
            raise FieldError("claims must equal receipts + timeouts + failures + refused")
        if self.claims == 0:
            raise FieldError("a row counts at least one claim")

    def counts(self) -> tuple[int, ...]:
        """Leaves per block, in :data:`WORK_OUTCOMES` order."""
        return (self.receipts, self.timeouts, self.failures, self.refused)

    @property
    def peer(self) -> str:
        """The counterparty (the client)."""
        return self.client


@dataclasses.dataclass(frozen=True)
class WorkDigest(Record):
    """A node's signed summary of the work of ``span`` consecutive epochs (``epoch`` ..
    ``epoch + span - 1``; ``span`` is 1 unless the node batches): one row per (epoch,
    client) whose tasks (offers of that epoch, the row's ``offset``) it claimed, and the
    Merkle root over one leaf per claimed task.

    Part ``part`` of ``parts`` holds the rows of the clients with
    ``part_of(client, parts) == part``, sorted by ``(offset, client)`` (for a single epoch:
    by peer ID); ``leaf_count`` is the sum of its rows' claims, ``merkle_root`` the root of
    the part's leaves (docs/digests.md: leaf i's place is fixed by the rows). ``seq`` is
    always 0: a digest is final once signed, so two different digests for one ``(epoch,
    part)`` are an equivocation, and so are two of one signer whose ranges share an epoch
    and that are not parts of one split. ``span`` is an optional field, left out when 1
    (a single-epoch digest has no ``span`` on the wire).
    """

    TYPE: ClassVar[str] = "WorkDigest"
    MAX_SIZE: ClassVar[int] = 40 * 1024

    epoch: int = spec_field(_u64)
    part: int = spec_field(UInt(0, DIGEST_MAX_PARTS - 1))
    parts: int = spec_field(UInt(1, DIGEST_MAX_PARTS))
    rows: tuple[WorkRow, ...] = spec_field(ArrayOf(Nested(WorkRow, array=True), DIGEST_MAX_ROWS))
    leaf_count: int = spec_field(_u32_leaves)
    merkle_root: bytes = spec_field(_digest)
    seq: int = spec_field(UInt(0, 0))
    expires: int = _expires()
    span: int = optional_field(UInt(1, DIGEST_MAX_SPAN), 1)

    def check_invariants(self) -> None:
        peers = [row.client for row in self.rows]
        offsets = [row.offset for row in self.rows]
        total = sum(row.claims for row in self.rows)
        if total != self.leaf_count:
            raise FieldError(f"leaf_count {self.leaf_count} but the rows claim {total}")
        _check_span(self.epoch, self.span, offsets)
        _check_part(
            "work", self.epoch, self.part, self.parts, peers, total, self.merkle_root, offsets
        )

    @property
    def last_epoch(self) -> int:
        """The last epoch the digest covers."""
        return self.epoch + self.span - 1

    def covers(self, epoch: int) -> bool:
        """Whether ``epoch`` is one of the digest's epochs."""
        return self.epoch <= epoch <= self.last_epoch

    def epoch_of(self) -> int:
        """A batch is filed (stored, queried, audited) under its last epoch: it goes out
        once that epoch is sealed (a single-epoch digest: its epoch, as before)."""
        return self.last_epoch

    def rows_of(self, epoch: int) -> tuple[WorkRow, ...]:
        """The rows of one of the digest's epochs (empty for an epoch it does not cover)."""
        return tuple(row for row in self.rows if self.epoch + row.offset == epoch)

    def slot(self) -> bytes:
        return self.epoch.to_bytes(8, "big") + self.part.to_bytes(2, "big")


@dataclasses.dataclass(frozen=True)
class FeedbackRow:
    """A client's verdicts on one node in one epoch: how many of its Feedback records said
    ``ok``, ``wrong``, ``timeout`` and ``bad_proof``, and the sum of their ``latency_ms``.

    At least one verdict (no empty rows); ``latency_sum_ms`` is at most the verdicts times
    the largest ``latency_ms`` a Feedback can carry (2^32 - 1). ``offset``: the row's epoch
    is its digest's ``epoch + offset`` (0 .. ``span - 1`` of a batch).

    On the wire a row is an array in field order with ``node`` as its 38-byte binary peer
    ID; ``offset`` is an optional last item, left out when 0 (docs/records.md, "Digests").
    """

    node: str = spec_field(PeerIdBinary())
    ok: int = spec_field(_u32_leaves)
    wrong: int = spec_field(_u32_leaves)
    timeout: int = spec_field(_u32_leaves)
    bad_proof: int = spec_field(_u32_leaves)
    latency_sum_ms: int = spec_field(_u64)
    offset: int = optional_field(UInt(0, DIGEST_MAX_SPAN - 1), 0)

    def __post_init__(self) -> None:
        try:
            validate_fields(self)
        except FieldError as exc:
            raise RecordError(RecordReason.BAD_FIELD, str(exc)) from None

    def check_invariants(self) -> None:
        total = self.total
        if total == 0:
            raise FieldError("a row counts at least one feedback")
        if self.latency_sum_ms > total * _u32.maximum:
            raise FieldError("latency_sum_ms exceeds its verdicts times 2^32 - 1")

    @property
    def total(self) -> int:
        """Verdicts in the row."""
        return self.ok + self.wrong + self.timeout + self.bad_proof

    def counts(self) -> tuple[int, ...]:
        """Leaves per block, in :data:`FEEDBACK_OUTCOMES` order."""
        return (self.ok, self.wrong, self.timeout, self.bad_proof)

    @property
    def peer(self) -> str:
        """The counterparty (the node)."""
        return self.node


@dataclasses.dataclass(frozen=True)
class FeedbackDigest(Record):
    """A client's signed summary of the feedback of ``span`` consecutive epochs (a batch,
    ``epoch`` .. ``epoch + span - 1``; ``span`` is 1 unless the client batches): one row per
    (epoch, node) it gave Feedback on tasks whose offer is of that epoch (the row's
    ``offset`` says which), and the Merkle root over one leaf per Feedback.

    Parts, ``leaf_count`` (the sum of the rows' verdicts), ``merkle_root`` and ``seq``
    (always 0) follow :class:`WorkDigest`, with nodes in place of clients; rows are sorted
    by ``(offset, node)`` (for a single epoch: by node, as before). A client signs at most
    one split of digests covering any epoch: two digests of one signer whose ranges share
    an epoch and that are not parts of one split are an equivocation. ``span`` is an
    optional field, left out when 1.
    """

    TYPE: ClassVar[str] = "FeedbackDigest"
    MAX_SIZE: ClassVar[int] = 40 * 1024

    epoch: int = spec_field(_u64)
    part: int = spec_field(UInt(0, DIGEST_MAX_PARTS - 1))
    parts: int = spec_field(UInt(1, DIGEST_MAX_PARTS))
    rows: tuple[FeedbackRow, ...] = spec_field(
        ArrayOf(Nested(FeedbackRow, array=True), DIGEST_MAX_ROWS)
    )
    leaf_count: int = spec_field(_u32_leaves)
    merkle_root: bytes = spec_field(_digest)
    seq: int = spec_field(UInt(0, 0))
    expires: int = _expires()
    span: int = optional_field(UInt(1, DIGEST_MAX_SPAN), 1)

    def check_invariants(self) -> None:
        peers = [row.node for row in self.rows]
        offsets = [row.offset for row in self.rows]
        total = sum(row.total for row in self.rows)
        if total != self.leaf_count:
            raise FieldError(f"leaf_count {self.leaf_count} but the rows count {total}")
        _check_span(self.epoch, self.span, offsets)
        _check_part(
            "feedback",
            self.epoch,
            self.part,
            self.parts,
            peers,
            total,
            self.merkle_root,
            offsets,
        )

    @property
    def last_epoch(self) -> int:
        """The last epoch the digest covers."""
        return self.epoch + self.span - 1

    def covers(self, epoch: int) -> bool:
        """Whether ``epoch`` is one of the digest's epochs."""
        return self.epoch <= epoch <= self.last_epoch

    def epoch_of(self) -> int:
        """A batch is filed (stored, queried, audited) under its last epoch: it goes out
        once that epoch is sealed."""
        return self.last_epoch

    def rows_of(self, epoch: int) -> tuple[FeedbackRow, ...]:
        """The rows of one of the digest's epochs (empty for an epoch it does not cover)."""
        return tuple(row for row in self.rows if self.epoch + row.offset == epoch)

    def slot(self) -> bytes:
        return self.epoch.to_bytes(8, "big") + self.part.to_bytes(2, "big")


# -- refusals (repp2p.records.refusal has the signatures and the check) -------------------

#: Why the enclave refused a client's input; every one is the client's doing:
#:
#: * ``bad_seal``: the sealed bytes do not open with the enclave key and the offer's key;
#: * ``wrong_task``: they open, but name another task;
#: * ``digest_mismatch``: the input does not hash to the offer's digest or has another size;
#: * ``bad_input`` / ``input_too_large``: the engine's measured code refused the input.
REFUSAL_CODES = frozenset(
    {"bad_seal", "wrong_task", "digest_mismatch", "bad_input", "input_too_large"}
)


@dataclasses.dataclass(frozen=True)
class Refusal(Record):
    """An enclave's refusal of a client's input, wrapped in the node's record signature.

    ``client`` signed the offer ``offer_id`` of ``task_id``, and ``client_sig`` over
    :func:`repp2p.records.input_commitment` of (``task_id``, the node, ``enc_key``,
    ``sealed_digest``); ``code`` (:data:`REFUSAL_CODES`) says what was wrong with those
    bytes; ``enclave_sig`` is an Ed25519 signature by ``result_key`` over
    :func:`repp2p.records.refusal_message`. One per task and node (its slot is the task
    id, like a receipt's).
    """

    TYPE: ClassVar[str] = "Refusal"
    MAX_SIZE: ClassVar[int] = 2 * 1024

    task_id: bytes = spec_field(_digest)
    offer_id: bytes = spec_field(_digest)
    client: str = spec_field(PeerIdText())
    enc_key: bytes = spec_field(_digest)
    sealed_digest: bytes = spec_field(_digest)
    client_sig: bytes = spec_field(Blob(size=64))
    code: str = spec_field(Choice(REFUSAL_CODES))
    result_key: bytes = spec_field(_digest)
    enclave_sig: bytes = spec_field(Blob(size=64))
    seq: int = spec_field(_u64)
    expires: int = spec_field(_u64)

    def slot(self) -> bytes:
        return self.task_id


#: The registry: wire type tag -> record class. The only place a type is made known.
RECORD_TYPES: dict[str, type[Record]] = {
    cls.TYPE: cls
    for cls in (
        NodeAd,
        Attestation,
        Heartbeat,
        TaskOffer,
        Claim,
        Receipt,
        Feedback,
        WorkDigest,
        FeedbackDigest,
        Refusal,
    )
}

#: The per-epoch digest types. Unlike the per-task records they are global: gossiped on
#: their own topic family, held by every peer (docs/digests.md).
DIGEST_TYPES: frozenset[str] = frozenset({WorkDigest.TYPE, FeedbackDigest.TYPE})

#: The per-task record types: an offer and its claims, receipts and feedback. They enter
#: views ``NetworkParams.task_record_lag`` epochs late, and they spread by pulls over the
#: feed (``/repp2p/feed/1``, repp2p.net.feed) rather than by gossip, so the store lists them
#: in its feed. The other types (ads, attestations, heartbeats) are per node.
FEED_TYPES: frozenset[str] = frozenset(
    {TaskOffer.TYPE, Claim.TYPE, Receipt.TYPE, Feedback.TYPE, Refusal.TYPE}
)

_DAY_S = 86_400

#: The longest remaining lifetime a record may claim, seconds, per wire type tag: a record
#: is invalid at ``now`` when ``expires > now + MAX_LIFETIME_S[type]`` (reason
#: ``expires_too_far``). Stores keep a record until it expires, so without a cap one peer
#: could fill every store with records that expire decades from now. The caps are far above
#: what honest peers publish (a clock ahead by less than the slack costs nothing):
#:
#: * ``NodeAd``: 1 day. A node republishes its ad every ``republish_interval_s`` (300 s by
#:   default) with 3 intervals of lifetime, so an ad that must last a day belongs to a node
#:   that has been gone for most of it.
#: * ``Attestation``: 1 day. A node re-attests every ``reattest_period_s`` (1 h by default)
#:   and the policy refuses evidence bound to an epoch more than ``max_epoch_lag`` epochs old,
#:   so a day-old attestation is no longer accepted anyway.
#: * ``Heartbeat``: 1 day. One per epoch, living 3 epochs (60 s each by default): it only
#:   has to last until the views of the next epochs are built.
#: * ``TaskOffer``, ``Claim``, ``Receipt``, ``Feedback``: 30 days. Task records are the
#:   reputation evidence, so they must be able to outlive the reputation window
#:   (``ReputationParams.window_epochs`` = 168 epochs: 2.8 h at 60-s epochs, a week at
#:   1-h epochs). Claims, receipts and feedback inherit their offer's expiry, which must
#:   come after the task's deadline, so 30 days also bounds how far off a deadline can be.
#: * ``Refusal``: 30 days, like the receipt it stands in for (its offer's expiry).
#: * ``WorkDigest``, ``FeedbackDigest``: 30 days. A digest replaces its epoch's per-task
#:   records as the reputation and ledger evidence, so it must outlive the window like them,
#:   plus the audit horizon in which its leaves can still be challenged.
MAX_LIFETIME_S: dict[str, int] = {
    NodeAd.TYPE: _DAY_S,
    Attestation.TYPE: _DAY_S,
    Heartbeat.TYPE: _DAY_S,
    TaskOffer.TYPE: 30 * _DAY_S,
    Claim.TYPE: 30 * _DAY_S,
    Receipt.TYPE: 30 * _DAY_S,
    Feedback.TYPE: 30 * _DAY_S,
    WorkDigest.TYPE: 30 * _DAY_S,
    FeedbackDigest.TYPE: 30 * _DAY_S,
    Refusal.TYPE: 30 * _DAY_S,
}
