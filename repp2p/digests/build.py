"""Building a party's digests of one epoch from the signed per-task records it holds, and
serving its leaves.

Deterministic and order-independent: the same set of records gives the same digests, leaf
for leaf, whatever order they come in (where a slot holds several records, the replacement
rules' :func:`~repp2p.records.winner` is the one summarised). The epoch of a task is its
offer's ``epoch``.

* :func:`build_work` / :func:`work_digests`: a node's :class:`~repp2p.records.WorkDigest`
  parts. A leaf per task it claimed: ``done`` when it signed a receipt for it, else
  ``failed`` when the task id is in ``failed`` (its enclave or engine failed) or
  ``timeout``; with ``span`` > 1, one batch covering ``span`` consecutive epochs.
* :func:`build_feedback` / :func:`feedback_digests`: a client's
  :class:`~repp2p.records.FeedbackDigest` parts, a leaf per Feedback it signed; with
  ``span`` > 1, one batch covering ``span`` consecutive epochs (rows keep their epoch as an
  ``offset``).
* :func:`leaf_proof`: the :class:`~repp2p.digests.audit.AuditResponse` to a challenge;
  :func:`absence_brackets`: the non-inclusion brackets of a task (for a counterparty
  that asks where its task went).

Rows go to parts by :func:`~repp2p.records.part_of`; a party uses the fewest parts that keep
every part within ``max_rows`` rows.

Pure: no I/O, no clock (``expires`` is an argument).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence

from repp2p.digests.audit import AuditResponse
from repp2p.digests.leaves import (
    Digest,
    Layout,
    Leaf,
    feedback_leaf,
    leaf_key,
    work_leaf,
)
from repp2p.digests.merkle import Bracket, MerkleTree
from repp2p.errors import DigestError
from repp2p.records import (
    DIGEST_MAX_LEAVES,
    DIGEST_MAX_PARTS,
    DIGEST_MAX_ROWS,
    FEEDBACK_OUTCOMES,
    WORK_OUTCOMES,
    Claim,
    Feedback,
    FeedbackDigest,
    FeedbackRow,
    Receipt,
    Refusal,
    SignedRecord,
    TaskOffer,
    WorkDigest,
    WorkRow,
    part_of,
    winner,
)


@dataclasses.dataclass(frozen=True)
class DigestPart:
    """One digest part as its publisher keeps it, to sign and to answer audits.

    Attributes:
        digest: the unsigned WorkDigest or FeedbackDigest.
        leaves: the leaves in tree order.
        tree: the Merkle tree over their encodings (``tree.root == digest.merkle_root``).
        evidence: per leaf, the signed records it names (offer, claim[, receipt] or offer,
            feedback), what an audit of it is answered with.
    """

    digest: Digest
    leaves: tuple[Leaf, ...]
    tree: MerkleTree
    evidence: tuple[tuple[SignedRecord, ...], ...]


def _current(records: Iterable[SignedRecord]) -> dict[tuple[str, str, bytes], SignedRecord]:
    """The winner of every ``(signer, type, slot)`` among ``records``."""
    out: dict[tuple[str, str, bytes], SignedRecord] = {}
    for signed in records:
        slot = (signed.signer, signed.type, signed.record.slot())
        held = out.get(slot)
        out[slot] = signed if held is None else winner(held, signed)
    return out


def _parts_needed(peers: Sequence[str], max_rows: int) -> int:
    """The fewest parts that keep every part within ``max_rows`` rows (``peers``: each
    row's counterparty; a batch may name one in several rows)."""
    if not 1 <= max_rows <= DIGEST_MAX_ROWS:
        raise ValueError(f"max_rows must be in [1, {DIGEST_MAX_ROWS}]")
    parts = max(1, -(-len(peers) // max_rows))
    while parts <= DIGEST_MAX_PARTS:
        sizes: dict[int, int] = defaultdict(int)
        for peer in peers:
            sizes[part_of(peer, parts)] += 1
        if max(sizes.values(), default=0) <= max_rows:
            return parts
        parts += 1
    raise DigestError(f"{len(peers)} counterparties do not fit {DIGEST_MAX_PARTS} parts")


def _assemble(
    kind: type[WorkDigest] | type[FeedbackDigest],
    items: list[tuple[Leaf, tuple[SignedRecord, ...]]],
    epoch: int,
    expires: int,
    max_rows: int,
    span: int = 1,
) -> tuple[DigestPart, ...]:
    rows_of = sorted({(leaf.epoch_offset, leaf.peer) for leaf, _ in items})
    parts = _parts_needed([peer for _, peer in rows_of], max_rows)
    buckets: dict[int, list[tuple[Leaf, tuple[SignedRecord, ...]]]] = defaultdict(list)
    for item in items:
        buckets[part_of(item[0].peer, parts)].append(item)
    out = []
    for part in range(parts):
        chosen = sorted(buckets[part], key=lambda item: item[0].key())
        if len(chosen) > DIGEST_MAX_LEAVES:
            raise DigestError(f"{len(chosen)} tasks in one part, more than {DIGEST_MAX_LEAVES}")
        leaves = tuple(leaf for leaf, _ in chosen)
        encoded = [leaf.encode() for leaf in leaves]
        keys = {data: leaf.key() for data, leaf in zip(encoded, leaves, strict=True)}
        tree = MerkleTree(encoded, keys.__getitem__)
        rows = _work_rows(leaves) if kind is WorkDigest else _feedback_rows(leaves)
        fields = {
            "epoch": epoch,
            "part": part,
            "parts": parts,
            "rows": rows,
            "leaf_count": len(leaves),
            "merkle_root": tree.root,
            "seq": 0,
            "expires": expires,
            "span": span,
        }
        digest = kind(**fields)  # type: ignore[arg-type]
        out.append(DigestPart(digest, leaves, tree, tuple(ev for _, ev in chosen)))
    return tuple(out)


def _counts(leaves: Sequence[Leaf], outcomes: Sequence[str]) -> dict[tuple[int, str], list[int]]:
    """Leaves per ``(offset, counterparty)`` row and outcome."""
    counts: dict[tuple[int, str], list[int]] = {}
    for leaf in leaves:
        key = (leaf.epoch_offset, leaf.peer)
        counts.setdefault(key, [0] * len(outcomes))[outcomes.index(leaf.outcome)] += 1
    return counts


def _work_rows(leaves: Sequence[Leaf]) -> tuple[WorkRow, ...]:
    counts = _counts(leaves, WORK_OUTCOMES)
    return tuple(
        WorkRow(
            client=peer,
            claims=sum(c),
            receipts=c[0],
            timeouts=c[1],
            failures=c[2],
            offset=offset,
            refused=c[3],
        )
        for (offset, peer), c in sorted(counts.items())
    )


def _feedback_rows(leaves: Sequence[Leaf]) -> tuple[FeedbackRow, ...]:
    counts: dict[tuple[int, str], list[int]] = {}
    latency: dict[tuple[int, str], int] = defaultdict(int)
    for leaf in leaves:
        key = (leaf.epoch_offset, leaf.peer)
        counts.setdefault(key, [0] * len(FEEDBACK_OUTCOMES))[
            FEEDBACK_OUTCOMES.index(leaf.outcome)
        ] += 1
        latency[key] += leaf.latency_ms  # type: ignore[union-attr]
    return tuple(
        FeedbackRow(
            node=peer,
            ok=c[0],
            wrong=c[1],
            timeout=c[2],
            bad_proof=c[3],
            latency_sum_ms=latency[(offset, peer)],
            offset=offset,
        )
        for (offset, peer), c in sorted(counts.items())
    )


def build_work(
    node: str,
    records: Iterable[SignedRecord],
    epoch: int,
    *,
    expires: int,
    failed: Collection[bytes] = (),
    max_rows: int = DIGEST_MAX_ROWS,
    span: int = 1,
) -> tuple[DigestPart, ...]:
    """A node's work digest parts of ``epoch`` (with ``span`` > 1: of the batch of epochs
    ``epoch`` .. ``epoch + span - 1``).

    Args:
        node: the node's peer ID (records signed by others are read only as offers).
        records: signed records the node holds, any types, any order.
        epoch: the (first) epoch summarised (tasks whose offer is of it).
        expires: the digests' ``expires``.
        failed: ids of tasks whose execution failed after the claim (else a task without a
            receipt is a ``timeout``), of any of the covered epochs. A claimed task without
            receipt for whose offer ``records`` hold the node's own Refusal is ``refused``
            instead (its leaf names the Refusal, the audit evidence carries it).
        max_rows: most rows per part (a batch's row is one (epoch, client)).
        span: epochs covered, 1 .. ``DIGEST_MAX_SPAN``.

    Returns:
        The parts, by part number; one empty part when the node claimed nothing.

    Raises:
        DigestError: a claim or receipt of the node names an offer it does not hold, a
            receipt of the epoch has no claim, or the rows do not fit the parts.
    """
    current = _current(records)
    offers = {s.record_id: s for s in current.values() if isinstance(s.record, TaskOffer)}
    mine = [s for s in current.values() if s.signer == node]
    claims = {s.record.task_id: s for s in mine if isinstance(s.record, Claim)}  # type: ignore[attr-defined]
    receipts = {s.record.task_id: s for s in mine if isinstance(s.record, Receipt)}  # type: ignore[attr-defined]
    refusals = {s.record.task_id: s for s in mine if isinstance(s.record, Refusal)}  # type: ignore[attr-defined]
    failed = frozenset(failed)
    items: list[tuple[Leaf, tuple[SignedRecord, ...]]] = []
    for task_id, claim in sorted(claims.items()):
        offer = offers.get(claim.record.offer_id)  # type: ignore[attr-defined]
        if offer is None or offer.record.task_id != task_id:  # type: ignore[attr-defined]
            raise DigestError(f"claim {claim.record_id.hex()} names an offer not held")
        offset = offer.record.epoch - epoch  # type: ignore[attr-defined]
        if not 0 <= offset < span:
            continue
        receipt = receipts.get(task_id)
        if receipt is not None and receipt.record.offer_id != offer.record_id:  # type: ignore[attr-defined]
            raise DigestError(f"receipt {receipt.record_id.hex()} names another offer")
        refusal = refusals.get(task_id) if receipt is None else None
        if refusal is not None and refusal.record.offer_id != offer.record_id:  # type: ignore[attr-defined]
            refusal = None  # a refusal of another offer of the task proves nothing here
        if receipt is not None:
            outcome, evidence = "done", (offer, claim, receipt)
        elif refusal is not None:
            outcome, evidence = "refused", (offer, claim, refusal)
        else:
            outcome = "failed" if task_id in failed else "timeout"
            evidence = (offer, claim)
        leaf = work_leaf(offer, claim, receipt, outcome, offset, refusal)
        items.append((leaf, evidence))
    for task_id, receipt in receipts.items():
        offer = offers.get(receipt.record.offer_id)  # type: ignore[attr-defined]
        if (
            task_id not in claims and offer is not None and 0 <= offer.record.epoch - epoch < span  # type: ignore[attr-defined]
        ):
            raise DigestError(f"receipt {receipt.record_id.hex()} of epoch {epoch} has no claim")
    return _assemble(WorkDigest, items, epoch, expires, max_rows, span)


def build_feedback(
    client: str,
    records: Iterable[SignedRecord],
    epoch: int,
    *,
    expires: int,
    max_rows: int = DIGEST_MAX_ROWS,
    span: int = 1,
) -> tuple[DigestPart, ...]:
    """A client's feedback digest parts of ``epoch`` (with ``span`` > 1: of the batch of
    epochs ``epoch`` .. ``epoch + span - 1``).

    Args:
        client: the client's peer ID (only its own offers and feedback are read).
        records: signed records the client holds, any types, any order.
        epoch: the (first) epoch summarised (feedback on tasks whose offer is of it).
        expires: the digests' ``expires``.
        max_rows: most rows per part (a batch's row is one (epoch, node)).
        span: epochs covered, 1 .. ``DIGEST_MAX_SPAN``.

    Returns:
        The parts, by part number; one empty part when the client gave no feedback.

    Raises:
        DigestError: a feedback of the client is on a task it holds no offer for, or the
            rows do not fit the parts.
    """
    current = _current(records)
    mine = [s for s in current.values() if s.signer == client]
    offers = {s.record.task_id: s for s in mine if isinstance(s.record, TaskOffer)}  # type: ignore[attr-defined]
    items: list[tuple[Leaf, tuple[SignedRecord, ...]]] = []
    for signed in sorted(mine, key=lambda s: s.record_id):
        if not isinstance(signed.record, Feedback):
            continue
        offer = offers.get(signed.record.task_id)
        if offer is None:
            raise DigestError(f"feedback {signed.record_id.hex()} is on a task without an offer")
        offset = offer.record.epoch - epoch  # type: ignore[attr-defined]
        if 0 <= offset < span:
            items.append((feedback_leaf(offer, signed, offset), (offer, signed)))
    return _assemble(FeedbackDigest, items, epoch, expires, max_rows, span)


def work_digests(
    node: str,
    records: Iterable[SignedRecord],
    epoch: int,
    *,
    expires: int,
    failed: Collection[bytes] = (),
    max_rows: int = DIGEST_MAX_ROWS,
    span: int = 1,
) -> list[WorkDigest]:
    """The unsigned :class:`~repp2p.records.WorkDigest` parts of :func:`build_work`."""
    parts = build_work(
        node, records, epoch, expires=expires, failed=failed, max_rows=max_rows, span=span
    )
    return [p.digest for p in parts]  # type: ignore[misc]


def feedback_digests(
    client: str,
    records: Iterable[SignedRecord],
    epoch: int,
    *,
    expires: int,
    max_rows: int = DIGEST_MAX_ROWS,
    span: int = 1,
) -> list[FeedbackDigest]:
    """The unsigned :class:`~repp2p.records.FeedbackDigest` parts of :func:`build_feedback`."""
    parts = build_feedback(client, records, epoch, expires=expires, max_rows=max_rows, span=span)
    return [p.digest for p in parts]  # type: ignore[misc]


def leaf_proof(part: DigestPart, digest_id: bytes, index: int) -> AuditResponse:
    """The answer to a challenge of leaf ``index`` of the signed ``part``.

    Args:
        part: the part as built.
        digest_id: the record ID of the part's signed digest.
        index: the challenged leaf.

    Raises:
        IndexError: no such leaf.
    """
    successor = part.tree.opening(index + 1) if index + 1 < part.tree.size else None
    records = tuple(s.data for s in sorted(part.evidence[index], key=lambda s: s.record_id))
    return AuditResponse(digest_id, part.tree.opening(index), records, successor)


def find_task(part: DigestPart, peer: str, task_id: bytes, offset: int = 0) -> int | None:
    """The index of the counterparty's leaf for ``task_id`` (of the batch's epoch
    ``offset``), or None when there is none."""
    for number, block in enumerate(Layout(part.digest).of_peer(peer, offset)):
        key = leaf_key(peer, number, task_id, offset)
        at = part.tree.find(key, block.lo, block.hi)
        if at < block.hi and part.tree.keys[at] == key:
            return at
    return None


def absence_brackets(
    part: DigestPart, peer: str, task_id: bytes, offset: int = 0
) -> tuple[Bracket, ...]:
    """The brackets showing the counterparty's task is in none of its blocks (one per
    block; none when it has no row): what an :class:`~repp2p.digests.proofs.OmissionProof`
    carries.

    Raises:
        KeyError: the task is there.
    """
    return tuple(
        part.tree.bracket(leaf_key(peer, number, task_id, offset), block.lo, block.hi)
        for number, block in enumerate(Layout(part.digest).of_peer(peer, offset))
    )


__all__ = [
    "DigestPart",
    "absence_brackets",
    "build_feedback",
    "build_work",
    "feedback_digests",
    "find_task",
    "leaf_proof",
    "work_digests",
]
