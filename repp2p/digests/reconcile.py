"""Double entry: what both sides' digests of an epoch support, per (client, node) pair.

A node's WorkDigest row for a client says how many of the client's tasks it claimed
(``K = claims``), delivered (``R = receipts``) and refused for the client's own input
(``refused``, each backed by a signed Refusal the audits check); the client's
FeedbackDigest row for the node gives its verdicts (``ok``, ``wrong``, ``timeout``,
``bad_proof``). The pair's counted row takes from each verdict only what the node's row
can carry, verdicts that need a delivered result first:

    wrong     = min(f.wrong,     R)
    bad_proof = min(f.bad_proof, R - wrong)
    ok        = min(f.ok,        R - wrong - bad_proof)
    timeout   = min(f.timeout,   K - refused - wrong - bad_proof - ok)

``wrong`` and ``bad_proof`` (a result the client rejected) and ``ok`` (a result it accepted)
each need a receipt; ``timeout`` needs only a claim that was not refused (a refused task
is the client's failure, as in the records view, so no verdict on it counts against the
node) (the node's own timeouts and failures,
or a receipt the client never got). Negative verdicts are served first on purpose: if
``ok`` came first, a node could drop its ``wrong`` verdicts by under-reporting receipts at
no cost; this way every receipt it hides costs it one ``ok`` first, and hiding a receipt it
signed is provable (``hidden_receipt``). A side that reports more than the other supports
does not gain: the excess is ``disputed`` (``disputed_client``: verdicts the node's digest
does not back; ``disputed_node``: claims, refused ones aside, the client's digest does not account
for), never
credit. ``latency_sum_ms`` is the client's sum scaled to the counted verdicts (floor).

A client's FeedbackDigest may be a batch covering several epochs (``span``); its rows keep
their epoch (``offset``), and the epoch's reconciliation reads only that epoch's rows, so a
pair row is the same whether the client batched or not. Digests covering the epoch count
as one side when they are parts of one split of one range; two of one signer whose ranges
overlap otherwise conflict.

A side that published no digest part covering the pair (the part ``part_of(peer, parts)``
of its split) supports nothing: its counterparty's whole report is disputed and the row's
``node_covered`` / ``client_covered`` says who was silent. A signer whose digests of the
epoch conflict (split into different numbers of parts: a provable offence) is treated as
silent for the epoch and listed in ``conflicted``; within one slot the replacement rules'
:func:`~repp2p.records.winner` is used, as the store does.

Deterministic and independent of input order. Pure: no I/O, no clock.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable

from repp2p.records import (
    FeedbackDigest,
    FeedbackRow,
    SignedRecord,
    WorkDigest,
    WorkRow,
    part_of,
    winner,
)


@dataclasses.dataclass(frozen=True)
class PairRow:
    """What one epoch's digests support for one (client, node) pair.

    Attributes:
        epoch: the epoch.
        client, node: the pair's peer IDs.
        ok, wrong, timeout, bad_proof: counted verdicts (the rule in the module docstring).
        latency_sum_ms: the client's latency sum scaled to the counted verdicts.
        node_claims, node_receipts, node_refused: what the node reported (0 when it did
            not cover the pair).
        client_reported: verdicts the client reported (0 when it did not cover the pair).
        disputed_client: verdicts the node's digest does not support.
        disputed_node: claims, refused ones aside, the client's digest does not account for.
        node_covered, client_covered: whether each side published the part that must hold
            the pair's row.
    """

    epoch: int
    client: str
    node: str
    ok: int
    wrong: int
    timeout: int
    bad_proof: int
    latency_sum_ms: int
    node_claims: int
    node_receipts: int
    client_reported: int
    disputed_client: int
    disputed_node: int
    node_covered: bool
    client_covered: bool
    node_refused: int = 0

    @property
    def counted(self) -> int:
        """Verdicts counted."""
        return self.ok + self.wrong + self.timeout + self.bad_proof


@dataclasses.dataclass(frozen=True)
class Reconciliation:
    """One epoch's pair rows.

    Attributes:
        epoch: the epoch.
        pairs: every pair either side reported, sorted by (client, node).
        conflicted: ``(signer, type)`` whose digests of the epoch conflict (treated as silent).
    """

    epoch: int
    pairs: tuple[PairRow, ...]
    conflicted: tuple[tuple[str, str], ...]


class _Side:
    """One signer's digests of one type covering the epoch: its split and the epoch's rows."""

    def __init__(self, digests: list[SignedRecord], epoch: int) -> None:
        self.parts = digests[0].record.parts  # type: ignore[attr-defined]
        self.published = {d.record.part for d in digests}  # type: ignore[attr-defined]
        self.rows: dict[str, WorkRow | FeedbackRow] = {}
        for d in digests:
            first = d.record.epoch  # type: ignore[attr-defined]
            for row in d.record.rows:  # type: ignore[attr-defined]
                if first + getattr(row, "offset", 0) == epoch:
                    self.rows[row.peer] = row

    def covers(self, peer: str) -> bool:
        return part_of(peer, self.parts) in self.published


def _sides(
    digests: Iterable[SignedRecord], epoch: int
) -> tuple[dict[tuple[str, str], _Side], tuple[tuple[str, str], ...]]:
    slots: dict[tuple[str, str, bytes], SignedRecord] = {}
    for signed in digests:
        rec = signed.record
        if not isinstance(rec, WorkDigest | FeedbackDigest) or not rec.covers(epoch):
            continue
        slot = (signed.signer, signed.type, rec.slot())
        held = slots.get(slot)
        slots[slot] = signed if held is None else winner(held, signed)
    grouped: dict[tuple[str, str], list[SignedRecord]] = defaultdict(list)
    for (signer, type_tag, _), signed in slots.items():
        grouped[(signer, type_tag)].append(signed)
    sides, conflicted = {}, []
    for who, group in grouped.items():
        # one split of one range: the same parts, and (feedback batches) the same first
        # epoch and span; overlapping batches of different ranges conflict
        splits = {(d.record.epoch, d.record.span, d.record.parts) for d in group}  # type: ignore[attr-defined]
        if len(splits) > 1:
            conflicted.append(who)
        else:
            sides[who] = _Side(group, epoch)
    return sides, tuple(sorted(conflicted))


def count_pair(work: WorkRow | None, feedback: FeedbackRow | None) -> tuple[int, int, int, int]:
    """The counted ``(ok, wrong, timeout, bad_proof)`` of a pair (module docstring's rule);
    a missing row counts as all zeros."""
    receipts = work.receipts if work else 0
    claims = (work.claims - work.refused) if work else 0
    f_ok, f_wrong, f_timeout, f_bad = feedback.counts() if feedback else (0, 0, 0, 0)
    wrong = min(f_wrong, receipts)
    bad_proof = min(f_bad, receipts - wrong)
    ok = min(f_ok, receipts - wrong - bad_proof)
    timeout = min(f_timeout, claims - wrong - bad_proof - ok)
    return ok, wrong, timeout, bad_proof


def reconcile(digests: Iterable[SignedRecord], epoch: int) -> Reconciliation:
    """The pair rows of ``epoch`` from signed digests.

    Args:
        digests: signed WorkDigests and FeedbackDigests (already verified), any order;
            records of other types or epochs are ignored.
        epoch: the epoch.

    Returns:
        The :class:`Reconciliation`.
    """
    sides, conflicted = _sides(digests, epoch)
    pairs: set[tuple[str, str]] = set()
    for (signer, type_tag), side in sides.items():
        for peer in side.rows:
            pairs.add((peer, signer) if type_tag == WorkDigest.TYPE else (signer, peer))
    out = []
    for client, node in sorted(pairs):
        node_side = sides.get((node, WorkDigest.TYPE))
        client_side = sides.get((client, FeedbackDigest.TYPE))
        node_covered = node_side is not None and node_side.covers(client)
        client_covered = client_side is not None and client_side.covers(node)
        work = node_side.rows.get(client) if node_covered else None  # type: ignore[union-attr]
        fb = client_side.rows.get(node) if client_covered else None  # type: ignore[union-attr]
        assert work is None or isinstance(work, WorkRow)
        assert fb is None or isinstance(fb, FeedbackRow)
        ok, wrong, timeout, bad_proof = count_pair(work, fb)
        counted = ok + wrong + timeout + bad_proof
        reported = fb.total if fb else 0
        claims = work.claims if work else 0
        refused = work.refused if work else 0
        latency = fb.latency_sum_ms * counted // reported if fb else 0
        out.append(
            PairRow(
                epoch=epoch,
                client=client,
                node=node,
                ok=ok,
                wrong=wrong,
                timeout=timeout,
                bad_proof=bad_proof,
                latency_sum_ms=latency,
                node_claims=claims,
                node_receipts=work.receipts if work else 0,
                client_reported=reported,
                disputed_client=reported - counted,
                disputed_node=claims - refused - counted,
                node_covered=node_covered,
                client_covered=client_covered,
                node_refused=refused,
            )
        )
    return Reconciliation(epoch, tuple(out), conflicted)
