"""Does a leaf agree with its digest and with the signed per-task records? The one rule book
audits (:mod:`repp2p.digests.audit`) and offence proofs (:mod:`repp2p.digests.proofs`) share.

A leaf of a digest signed by party ``P`` for epoch ``E`` is *faulty* when (each is a
:class:`Fault`, and each is something an honest ``P`` never signs):

* ``misplaced``: it is not of the (counterparty, outcome) block its index falls in, as the
  digest's rows lay the blocks out (:class:`~repp2p.digests.leaves.Layout`): a row that
  overstates a count leaves positions no honest leaf can fill;
* ``bad_leaf``: its bytes, included under the root, are not a valid leaf at all;
* ``wrong_record``: a record it names (by record ID) says otherwise: another type, signer,
  task, offer, epoch (the offer's ``epoch`` must be ``E``; for a leaf of a batch,
  ``E`` + the leaf's ``offset``), outcome or latency;
* ``bad_receipt``: the Receipt it names does not carry a valid enclave signature by its
  ``result_key`` (that the key is one the node's attestation binds is the ledger's and the
  view's check, which know the attestations);
* ``bad_refusal``: a ``refused`` work leaf's Refusal is not the client's signed input
  refused by the enclave of its ``result_key`` (:func:`repp2p.records.check_refusal`);
* ``hidden_receipt``: a work leaf says ``timeout``, ``failed`` or ``refused`` while the node
  signed a Receipt for that task and offer;
* ``superseded``: ``P`` signed a record in the slot of one the leaf names with a higher
  ``seq`` (a party signs no per-task record of a task of ``E`` after its digest of ``E``).

Pure: no I/O, no clock.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence

import nacl.exceptions
import nacl.signing

from repp2p.digests.leaves import FeedbackLeaf, Layout, Leaf, WorkLeaf, misplaced
from repp2p.records import (
    Claim,
    Feedback,
    Receipt,
    Refusal,
    SignedRecord,
    TaskOffer,
    check_refusal,
    receipt_message,
)


class Fault(enum.Enum):
    """What is wrong with a digest. Values are stable metric names."""

    MISPLACED = "misplaced"
    BAD_LEAF = "bad_leaf"
    WRONG_RECORD = "wrong_record"
    BAD_RECEIPT = "bad_receipt"
    BAD_REFUSAL = "bad_refusal"
    HIDDEN_RECEIPT = "hidden_receipt"
    SUPERSEDED = "superseded"
    MISORDERED = "misordered"
    OMITTED = "omitted"
    CONFLICT = "conflict"


@dataclasses.dataclass(frozen=True)
class LeafCheck:
    """The outcome of checking one leaf.

    Attributes:
        faults: each fault found, with a human-readable detail.
        missing: the named records (``offer``, ``claim``, ``receipt``, ``feedback``) that
            were not among the records given.
        related: record IDs of the given records that are named by the leaf or show a
            fault; the others bear on nothing (another task, another signer...).
        unrelated: how many given records are not related.
    """

    faults: tuple[tuple[Fault, str], ...]
    missing: tuple[str, ...]
    related: frozenset[bytes]
    unrelated: int

    @property
    def clean(self) -> bool:
        """No fault found (missing records are not a fault here)."""
        return not self.faults


def enclave_signature_ok(receipt: Receipt) -> bool:
    """True when the receipt's enclave signature verifies under its ``result_key``."""
    try:
        nacl.signing.VerifyKey(receipt.result_key).verify(
            receipt_message(receipt), receipt.enclave_sig
        )
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        return False
    return True


def check_leaf(
    digest: SignedRecord,
    index: int,
    leaf: Leaf,
    records: Sequence[SignedRecord],
) -> LeafCheck:
    """Check leaf ``index`` of ``digest`` against its place and the records given.

    Args:
        digest: the signed WorkDigest or FeedbackDigest (already verified).
        index: the leaf's position (already shown to be in the tree).
        leaf: the decoded leaf, of the digest's kind.
        records: decoded signed records offered as its evidence, in any order.

    Returns:
        The :class:`LeafCheck`.
    """
    faults: list[tuple[Fault, str]] = []
    where = misplaced(Layout(digest.record), index, leaf)  # type: ignore[arg-type]
    if where is not None:
        faults.append((Fault.MISPLACED, where))
    unique = {r.record_id: r for r in records}
    if isinstance(leaf, WorkLeaf):
        named = {
            "offer": leaf.offer_id,
            "claim": leaf.claim_id,
            "receipt": leaf.receipt_id,
            "refusal": leaf.refusal_id,
        }
        found, unrelated = _work(digest, leaf, unique, faults)
    else:
        assert isinstance(leaf, FeedbackLeaf)
        named = {"offer": leaf.offer_id, "feedback": leaf.feedback_id}
        found, unrelated = _feedback(digest, leaf, unique, faults)
    missing = tuple(name for name, rid in named.items() if rid and name not in found)
    related = frozenset(unique) - unrelated
    return LeafCheck(tuple(faults), missing, related, len(unrelated))


def _offer_faults(
    offer: SignedRecord, leaf: Leaf, signer: str, epoch: int, faults: list[tuple[Fault, str]]
) -> None:
    rec = offer.record
    if not isinstance(rec, TaskOffer):
        faults.append((Fault.WRONG_RECORD, f"the named offer is a {rec.TYPE}"))
    elif offer.signer != signer:
        faults.append((Fault.WRONG_RECORD, "the named offer is another client's"))
    elif rec.task_id != leaf.task_id:
        faults.append((Fault.WRONG_RECORD, "the named offer is of another task"))
    elif rec.epoch != epoch:
        faults.append((Fault.WRONG_RECORD, f"the task's offer is of epoch {rec.epoch}"))


def _work(
    digest: SignedRecord,
    leaf: WorkLeaf,
    records: dict[bytes, SignedRecord],
    faults: list[tuple[Fault, str]],
) -> tuple[set[str], set[bytes]]:
    node = digest.signer
    epoch = digest.record.epoch + leaf.offset  # type: ignore[attr-defined]
    found: set[str] = set()
    unrelated: set[bytes] = set()
    claim = records.get(leaf.claim_id)
    receipt = records.get(leaf.receipt_id) if leaf.receipt_id else None
    for rid, signed in records.items():
        rec = signed.record
        if rid == leaf.offer_id:
            found.add("offer")
            _offer_faults(signed, leaf, leaf.client, epoch, faults)
        elif rid == leaf.claim_id:
            found.add("claim")
            if not isinstance(rec, Claim) or signed.signer != node:
                faults.append((Fault.WRONG_RECORD, "the named claim is not the node's Claim"))
            elif rec.task_id != leaf.task_id or rec.offer_id != leaf.offer_id:
                faults.append((Fault.WRONG_RECORD, "the named claim is of another task or offer"))
        elif leaf.receipt_id and rid == leaf.receipt_id:
            found.add("receipt")
            if not isinstance(rec, Receipt) or signed.signer != node:
                faults.append((Fault.WRONG_RECORD, "the named receipt is not the node's Receipt"))
            elif rec.task_id != leaf.task_id or rec.offer_id != leaf.offer_id:
                faults.append((Fault.WRONG_RECORD, "the named receipt is of another task"))
            elif not enclave_signature_ok(rec):
                faults.append((Fault.BAD_RECEIPT, "the receipt's enclave signature fails"))
        elif leaf.refusal_id and rid == leaf.refusal_id:
            found.add("refusal")
            offer = records.get(leaf.offer_id)
            if not isinstance(rec, Refusal) or signed.signer != node:
                faults.append((Fault.WRONG_RECORD, "the named refusal is not the node's Refusal"))
            elif rec.task_id != leaf.task_id or rec.offer_id != leaf.offer_id:
                faults.append((Fault.WRONG_RECORD, "the named refusal is of another task"))
            elif offer is not None and (
                why := check_refusal(rec, node=node, offer=offer, result_key=rec.result_key)
            ):
                # as for receipts, whether the result key is the node's attested one is
                # the view's check; here: the client's and the enclave's signatures
                faults.append((Fault.BAD_REFUSAL, f"the refusal does not hold: {why}"))
        elif (
            signed.signer == node
            and isinstance(rec, Receipt)
            and rec.task_id == leaf.task_id
            and rec.offer_id == leaf.offer_id
        ):
            if leaf.outcome != "done":
                faults.append(
                    (Fault.HIDDEN_RECEIPT, f"a receipt exists, the leaf says {leaf.outcome}")
                )
            elif receipt is not None and rec.seq > receipt.record.seq:
                faults.append((Fault.SUPERSEDED, "the node signed a newer receipt"))
            else:
                unrelated.add(rid)
        elif (
            signed.signer == node
            and isinstance(rec, Claim)
            and rec.task_id == leaf.task_id
            and claim is not None
            and rec.seq > claim.record.seq
        ):
            faults.append((Fault.SUPERSEDED, "the node signed a newer claim"))
        else:
            unrelated.add(rid)
    return found, unrelated


def _feedback(
    digest: SignedRecord,
    leaf: FeedbackLeaf,
    records: dict[bytes, SignedRecord],
    faults: list[tuple[Fault, str]],
) -> tuple[set[str], set[bytes]]:
    client = digest.signer
    epoch = digest.record.epoch + leaf.offset  # type: ignore[attr-defined]
    found: set[str] = set()
    unrelated: set[bytes] = set()
    named_fb = records.get(leaf.feedback_id)
    named_offer = records.get(leaf.offer_id)
    for rid, signed in records.items():
        rec = signed.record
        if rid == leaf.offer_id:
            found.add("offer")
            _offer_faults(signed, leaf, client, epoch, faults)
        elif rid == leaf.feedback_id:
            found.add("feedback")
            if not isinstance(rec, Feedback) or signed.signer != client:
                faults.append((Fault.WRONG_RECORD, "the named feedback is not the client's"))
            elif rec.task_id != leaf.task_id or rec.node != leaf.node:
                faults.append((Fault.WRONG_RECORD, "the named feedback is on another task or node"))
            elif rec.outcome != leaf.outcome or rec.latency_ms != leaf.latency_ms:
                faults.append((Fault.WRONG_RECORD, "the leaf misstates the feedback"))
        elif (
            signed.signer == client
            and isinstance(rec, Feedback)
            and rec.task_id == leaf.task_id
            and rec.node == leaf.node
            and named_fb is not None
            and rec.seq > named_fb.record.seq
        ):
            faults.append((Fault.SUPERSEDED, "the client signed newer feedback"))
        elif (
            signed.signer == client
            and isinstance(rec, TaskOffer)
            and rec.task_id == leaf.task_id
            and named_offer is not None
            and rec.seq > named_offer.record.seq
        ):
            faults.append((Fault.SUPERSEDED, "the client signed a newer offer"))
        else:
            unrelated.add(rid)
    return found, unrelated
