"""Dispute proofs: the records of one disputed task, travelling on their own.

On a network whose views come from digests (docs/digests.md) per-task records stay with the
parties of each task, so no other peer would see the receipts of a task whose answers
disagree, and no view could judge the dispute. A **dispute proof** carries them: the
client's ``TaskOffer`` and, for every node that answered (the ``k`` first ranks and the
escalation's replicas), its ``Claim`` and its ``Receipt``. Every piece is signed by its
author (and each receipt by its node's enclave), so the proof needs no signature of its
own: whoever forwards it can add nothing but what the parties signed.

Wire form: the canonical CBOR map ``{"kind": "dispute", "offer": envelope, "claims":
[envelope, ...], "receipts": [envelope, ...]}``, at most :data:`MAX_DISPUTE_SIZE` bytes,
2 to :data:`MAX_DISPUTE_RECEIPTS` receipts and one claim per receipt, both lists sorted by
their signer's peer ID (one spelling per proof).

A **contested** proof (a k = 1 task the client judged wrong, docs/core.md "Live escalation
at k = 1") adds ``"verdict": envelope``, the client's signed ``wrong`` Feedback on the node;
its receipts may all agree (the replicas that ran the task agreeing with the node refute the
verdict: views judge it like any dispute). Without a verdict the key is absent, so a plain
proof's bytes are as before.

:func:`check_dispute_proof` holds a proof to the evidence rule of the records path
(docs/core.md "Evidence: who ran a task"): each receipt is for the offer (task, offer,
input, engine), no claim or receipt expires before the offer (an honest node copies its
expiry), each receipt is signed by an enclave key that is its node's attested result key
for the offer's epoch (:meth:`~repp2p.reputation.AttestedNode.result_key_for`), its node has a
claim on the offer and a rank for it on the view of the offer's epoch (the offer's ranking
or its escalation ranking), and the receipts carry at least two outputs, or the proof
carries a verdict that backs a k = 1 dispute of the offer
(:func:`repp2p.tasks.escalation.verdict_fault`, the rules a replica applies to the
verdict a request carries). Views then read the
checked records with :func:`repp2p.reputation.collect` (which applies the same rule again
on their own verdicts and rankings) and judge the dispute as a records view does
(:func:`repp2p.reputation.pairs.compute_pairs`).

Proofs of one offer **merge**: a peer keeps, per offer, the union of the checked claims and
receipts (:func:`merge`; per signer and type the record with the highest ``seq``, then the
smallest record ID, the store's replacement rule), so a later proof with more receipts (a
replica's, or the client's after more replicas answered) adds them, and the kept set is the
same whatever order proofs arrived in. A verdict is kept once one proof carried it, and
stays: another version of it (a higher ``seq``, another record ID) adds nothing (the proof
is KNOWN, not forwarded); only a verdict on a node of a smaller peer ID replaces it, so
peers agree on its client, node and task (all a view reads of it) in any order of arrival,
and one offer's proof changes at most once per node. The verdict is not a vote: the views
judge the receipts, and count the verdict as the client's ``wrong`` on that node for that
task whatever its feedback digest reports (a client cannot take back, by leaving it out or
re-signing it ``ok``, a verdict it sent the replicas).

**When a proof counts** (:class:`DisputeTiming`): per offer, from its epoch ``E``, its
client-signed ``deadline_ms`` and the network's proof grace ``g``
(``NetworkParams.proof_grace_s``). Nodes refuse a task request, replicas included, once
the deadline has passed, no node hands over a receipt of a task it finished after it, and
the client escalates only until it, so an honest proof is out by the deadline. Peers take proofs
(and merges) of the offer until the end of its *close* epoch, the one holding ``deadline +
g`` (at most ``E + dispute_lag - 1``; ``too_old`` after), and digest views count it from
the next epoch (its *count* epoch), for ``window_epochs`` views: the first boundary more
than ``g`` after the deadline. The cap ``E + dispute_lag - 1`` is the seal's bound: no
receipt of ``E`` is signed after ``E + seal_lag_epochs - 1`` whatever the deadline.

Pure: no I/O, no clock (``now`` is an argument).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import nacl.exceptions
import nacl.signing

from repp2p.digests import wire
from repp2p.errors import ProofError, ProofReason, RecordError, RecordReason
from repp2p.records import (
    Claim,
    Feedback,
    Receipt,
    SignedRecord,
    TaskOffer,
    decode,
    receipt_message,
)
from repp2p.tasks.escalation import (
    MAX_VERDICT_SIZE,
    contested_expiry,
    expiry_fault,
    lifetime_fault,
    verdict_fault,
)

#: The kind tag of a dispute proof (the ``proofs`` topic carries other kinds too).
KIND = "dispute"
#: Receipts one proof carries: the first round's (at most 16) plus every replica's (at most
#: 64), as a replica request (``repp2p.tasks.escalation.MAX_DISPUTE_RECEIPTS``).
MAX_DISPUTE_RECEIPTS = 16 + 64
#: Largest encoded proof: an offer, and a claim and a receipt per node at their caps, with
#: room for the CBOR around them.
MAX_DISPUTE_SIZE = (
    TaskOffer.MAX_SIZE
    + MAX_DISPUTE_RECEIPTS * (Claim.MAX_SIZE + Receipt.MAX_SIZE)
    + MAX_VERDICT_SIZE
    + 1024
)
_KEYS = {"kind", "offer", "claims", "receipts"}
_CONTESTED_KEYS = {*_KEYS, "verdict"}

#: ``(peer, offer epoch) -> its attestation verdict`` (``AttestedNode``: ``verified``,
#: ``result_key``, ``earlier_result_keys``, ``result_key_for``), None when the checker has
#: none.
VerdictOf = Callable[[str, int], Any]
#: ``offer -> peer -> ranks`` the matching gave on the view of the offer's epoch
#: (:meth:`repp2p.matching.Assignments.ranks`), None when the checker cannot rank it.
RanksOf = Callable[[SignedRecord], Mapping[str, frozenset[int]] | None]


@dataclasses.dataclass(frozen=True)
class DisputeTiming:
    """When a dispute proof of an offer is taken and counted (docs/digests.md, "When a
    proof counts"): a function of the offer's epoch and signed deadline only, so every peer
    computes the same epochs.

    Attributes:
        epoch_s: the network's epoch length (``NetworkParams.epoch_s``).
        dispute_lag: the latest count epoch, in epochs after the offer's
            (``NetworkParams.dispute_lag`` = ``seal_lag_epochs + 1``).
        window_epochs: the reputation window (``ReputationParams.window_epochs``); with
            it, a contested proof's offer and verdict must live until the last view that
            can count it (:meth:`contested_expiry`). None: not checked.
        grace_s: the seconds every peer has, after the offer's deadline, to receive its
            proofs before a view counts them (``NetworkParams.proof_grace_s``, at most one
            epoch). None: one whole epoch (``epoch_s``).
    """

    epoch_s: int
    dispute_lag: int
    window_epochs: int | None = None
    grace_s: int | None = None

    @property
    def grace(self) -> int:
        """The grace in seconds: ``grace_s``, or ``epoch_s`` when None."""
        return self.epoch_s if self.grace_s is None else self.grace_s

    def contested_expiry(self, epoch: int) -> int | None:
        """The earliest expiry (unix seconds) of the offer and the verdict of a contested
        proof of an offer of ``epoch`` (:func:`repp2p.tasks.escalation.contested_expiry`),
        None without ``window_epochs``."""
        if self.window_epochs is None:
            return None
        return contested_expiry(
            epoch,
            epoch_s=self.epoch_s,
            window_epochs=self.window_epochs,
            dispute_lag=self.dispute_lag,
        )

    def close(self, epoch: int, deadline_ms: int) -> int:
        """The last epoch in which peers take a proof of an offer of ``epoch`` with this
        deadline: the epoch holding ``max(deadline, start of epoch) + grace``, at most
        ``epoch + dispute_lag - 1``, never before ``epoch``. With a grace of one epoch
        (the default) that is ``min(max(D, epoch) + 1, epoch + dispute_lag - 1)``, ``D``
        the deadline's epoch.

        No node takes the task, replicas included, after the deadline, none hands over a
        receipt of it finished after it, and the client asks none after it, so an honest
        proof is out by the deadline; the view of :meth:`count` is built more than
        ``grace`` seconds after the deadline; the cap is the seal's (nothing of the
        task is signed from ``epoch + seal_lag_epochs`` on)."""
        deadline_s = max(max(deadline_ms, 0) // 1000, epoch * self.epoch_s)
        last = (deadline_s + self.grace) // self.epoch_s
        return max(epoch, min(last, epoch + self.dispute_lag - 1))

    def count(self, epoch: int, deadline_ms: int) -> int:
        """The first view epoch that counts a dispute of an offer of ``epoch`` with this
        deadline: :meth:`close` + 1 (a view is built at the start of its epoch, once every
        peer holds what was taken until the end of the one before)."""
        return self.close(epoch, deadline_ms) + 1

    @property
    def min_lag(self) -> int:
        """The fewest epochs between an offer and its count epoch (a deadline at the
        start of the offer's own epoch): ``min(1 + grace // epoch_s, dispute_lag)``, 2
        with a grace of one epoch."""
        return min(1 + self.grace // self.epoch_s, self.dispute_lag)

    def offer_epochs(self, lo: int, hi: int) -> tuple[int, int]:
        """``(oldest, newest)`` offer epochs whose count epoch may lie in ``lo .. hi``."""
        return lo - self.dispute_lag, hi - self.min_lag


@dataclasses.dataclass(frozen=True)
class DisputeProof:
    """The envelopes of one disputed task (see the module docstring); ``verdict``: the
    client's signed ``wrong`` Feedback of a contested k = 1 task, or None."""

    offer: bytes
    claims: tuple[bytes, ...]
    receipts: tuple[bytes, ...]
    verdict: bytes | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": KIND,
            "offer": self.offer,
            "claims": list(self.claims),
            "receipts": list(self.receipts),
        }
        if self.verdict is not None:
            out["verdict"] = self.verdict
        return out

    def encode(self) -> bytes:
        """Canonical CBOR."""
        return wire.dumps(self.to_wire())


@dataclasses.dataclass(frozen=True)
class CheckedDispute:
    """A dispute proof that passed :func:`check_dispute_proof`.

    Attributes:
        offer: the client's signed offer.
        claims, receipts: per node, its claim and its receipt, sorted by node.
        verdict: the client's ``wrong`` verdict of a contested k = 1 task, or None.
    """

    offer: SignedRecord
    claims: tuple[SignedRecord, ...]
    receipts: tuple[SignedRecord, ...]
    verdict: SignedRecord | None = None

    @property
    def offer_id(self) -> bytes:
        return self.offer.record_id

    @property
    def epoch(self) -> int:
        """The offer's epoch (the task's)."""
        return self.offer.record.epoch  # type: ignore[attr-defined]

    @property
    def deadline_ms(self) -> int:
        """The offer's signed deadline (unix ms)."""
        return self.offer.record.deadline_ms  # type: ignore[attr-defined]

    def records(self) -> list[SignedRecord]:
        """The offer, the claims, the receipts and the verdict if any: the task evidence
        views collect. A contested proof's verdict is the one feedback a digest view takes
        from proofs: it counts as a ``wrong`` of the client on that node whatever the
        client's own digest reports (:func:`repp2p.reputation.pairs.compute_pairs`)."""
        extra = [] if self.verdict is None else [self.verdict]
        return [self.offer, *self.claims, *self.receipts, *extra]

    def proof(self) -> DisputeProof:
        """The proof that carries exactly these records."""
        return DisputeProof(
            self.offer.data,
            tuple(c.data for c in self.claims),
            tuple(r.data for r in self.receipts),
            None if self.verdict is None else self.verdict.data,
        )


def dispute_proof(
    offer: SignedRecord,
    runs: Iterable[tuple[SignedRecord, SignedRecord]],
    verdict: SignedRecord | bytes | None = None,
) -> DisputeProof:
    """The proof of a disputed task: ``offer`` and each node's ``(claim, receipt)``
    (what the client holds after its escalation, or a k = 1 replica after its run), in
    canonical order, with the client's ``verdict`` of a contested k = 1 task if any."""
    pairs = sorted(runs, key=lambda cr: cr[1].signer)
    if isinstance(verdict, SignedRecord):
        verdict = verdict.data
    return DisputeProof(
        offer.data,
        tuple(c.data for c, _r in pairs),
        tuple(r.data for _c, r in pairs),
        verdict,
    )


def decode_dispute(data: Any) -> DisputeProof:
    """Read a dispute proof from hostile bytes (shape only).

    Raises:
        ProofError: OVERSIZE, MALFORMED or NON_CANONICAL.
    """
    obj = wire.loads(data, max_size=MAX_DISPUTE_SIZE, what="dispute proof", max_depth=3)
    if type(obj) is not dict or obj.get("kind") != KIND:
        raise ProofError(ProofReason.MALFORMED, "a dispute proof is a map of kind 'dispute'")
    wire.as_map(obj, _CONTESTED_KEYS if "verdict" in obj else _KEYS, "dispute proof")
    verdict = obj.get("verdict")
    # "verdict": null is malformed too: a plain proof's bytes carry no verdict key, so it
    # would be a second encoding of the same proof
    if "verdict" in obj and type(verdict) is not bytes:
        raise ProofError(ProofReason.MALFORMED, "verdict must be an envelope")
    if verdict is not None and len(verdict) > MAX_VERDICT_SIZE:
        raise ProofError(ProofReason.OVERSIZE, f"verdict of {len(verdict)} bytes")
    offer = obj["offer"]
    if type(offer) is not bytes or len(offer) > TaskOffer.MAX_SIZE:
        raise ProofError(ProofReason.MALFORMED, "offer must be an envelope")
    claims = wire.as_bytes_list(
        obj["claims"], max_items=MAX_DISPUTE_RECEIPTS, max_item=Claim.MAX_SIZE, what="claims"
    )
    receipts = wire.as_bytes_list(
        obj["receipts"],
        max_items=MAX_DISPUTE_RECEIPTS,
        max_item=Receipt.MAX_SIZE,
        what="receipts",
    )
    return DisputeProof(offer, claims, receipts, verdict)


def _read(data: bytes, now: int | None, cls: type) -> SignedRecord:
    try:
        signed = decode(data, now=now)
    except RecordError as exc:
        if exc.reason in (RecordReason.EXPIRED, RecordReason.EXPIRES_TOO_FAR):
            raise ProofError(ProofReason.EXPIRED, str(exc)) from None
        raise ProofError(ProofReason.BAD_RECORD, str(exc)) from None
    if not isinstance(signed.record, cls):
        raise ProofError(ProofReason.WRONG_TYPE, f"a {signed.type} is not a {cls.TYPE}")
    return signed


def key_verdict(verdict: Any, key: bytes, epoch: int) -> ProofReason | None:
    """Whether ``key`` is the attested result key of ``verdict``'s node for offers of
    ``epoch``: None when it is, else UNATTESTED (no verified attestation binds it) or
    WRONG_EPOCH (an earlier key of the node, replaced before ``epoch``)."""
    if verdict is not None and verdict.result_key_for(key, epoch):
        return None
    if verdict is not None and any(k == key for k, _until in verdict.earlier_result_keys):
        return ProofReason.WRONG_EPOCH
    return ProofReason.UNATTESTED


def check_dispute_proof(
    proof: DisputeProof,
    *,
    now: int | None,
    epochs: tuple[int, int],
    verdict_of: VerdictOf | None,
    ranks_of: RanksOf | None,
    timing: DisputeTiming | None = None,
) -> CheckedDispute:
    """Check a decoded dispute proof against the checker's view (rules in order; the first
    that fails decides).

    Args:
        proof: from :func:`decode_dispute`.
        now: unix seconds (every envelope must be live); None: liveness is not checked
            (only for a proof this peer checked live before, read back from its own disk:
            a view drops expired records itself, at its own time, on every peer alike).
        epochs: ``(oldest, newest)`` offer epochs the checker takes proofs of (older ones
            are replays of a task out of every view, newer ones cannot exist yet).
        verdict_of: the checker's attestation verdict of a node for an offer of an epoch;
            None skips the key check.
        ranks_of: the ranks the matching gave each node for the offer; None skips the
            rank check. Skip both only for a proof this peer checked before (read back
            from its own disk): a view re-applies both rules anyway
            (:func:`repp2p.reputation.collect` with its verdicts and rankings).
        timing: with it, a proof is also TOO_OLD once ``newest`` (the checker's epoch) is
            past the offer's :meth:`DisputeTiming.close`: nothing may change a dispute
            after its close, so every peer counts the same receipts; and with its
            ``window_epochs``, a contested proof whose offer or verdict expires before
            :meth:`DisputeTiming.contested_expiry` is BAD_VERDICT (its client would
            decide how long its refutation counts). None: the epoch window only (a proof
            read back from disk).

    Returns:
        The :class:`CheckedDispute`.

    Raises:
        ProofError: BAD_RECORD / EXPIRED / WRONG_TYPE (an envelope), TOO_OLD / TOO_NEW (the
            offer's epoch), WRONG_TASK (a claim or receipt of another task, offer, input or
            engine), EXPIRES_EARLY (a claim or receipt expiring before the offer:
            :func:`repp2p.tasks.escalation.expiry_fault`), WRONG_EPOCH (a claim of another
            epoch, or a receipt signed by a key its node replaced before the offer's
            epoch), MALFORMED (receipt count, order,
            a claim without its receipt), DUPLICATE (two receipts of one node),
            MISSING_RECORD (a receipt without its node's claim), NOT_ENCLAVE_SIGNED (the
            enclave signature does not verify), UNATTESTED (the key is no attested key of
            the node), UNRANKED (the node has no rank for the offer, or the checker
            cannot rank it), NO_OFFENCE (the receipts agree and no verdict contests
            them: nothing is disputed), BAD_VERDICT (a verdict that does not back a k = 1
            dispute of the offer: :func:`repp2p.tasks.escalation.verdict_fault`).
    """
    offer = _read(proof.offer, now, TaskOffer)
    o: TaskOffer = offer.record  # type: ignore[assignment]
    oldest, newest = epochs
    if o.epoch < oldest:
        raise ProofError(ProofReason.TOO_OLD, f"offer of epoch {o.epoch} (oldest {oldest})")
    if o.epoch > newest:
        raise ProofError(ProofReason.TOO_NEW, f"offer of epoch {o.epoch} (newest {newest})")
    if timing is not None and newest > (close := timing.close(o.epoch, o.deadline_ms)):
        raise ProofError(ProofReason.TOO_OLD, f"offer of epoch {o.epoch} closed in {close}")
    if not 2 <= len(proof.receipts) <= MAX_DISPUTE_RECEIPTS:
        raise ProofError(ProofReason.MALFORMED, f"2..{MAX_DISPUTE_RECEIPTS} receipts")
    if len(proof.claims) != len(proof.receipts):
        raise ProofError(ProofReason.MALFORMED, "one claim per receipt")
    claims: dict[str, SignedRecord] = {}
    for data in proof.claims:
        claim = _read(data, now, Claim)
        c: Claim = claim.record  # type: ignore[assignment]
        if c.task_id != o.task_id or c.offer_id != offer.record_id:
            raise ProofError(ProofReason.WRONG_TASK, f"claim of {claim.signer} for another task")
        if c.epoch != o.epoch:
            raise ProofError(ProofReason.WRONG_EPOCH, f"claim epoch {c.epoch}, offer {o.epoch}")
        if (fault := expiry_fault(claim, offer)) is not None:
            raise ProofError(ProofReason.EXPIRES_EARLY, fault)
        if claim.signer in claims:
            raise ProofError(ProofReason.DUPLICATE, f"two claims of {claim.signer}")
        claims[claim.signer] = claim
    receipts: list[SignedRecord] = []
    for data in proof.receipts:
        receipt = _read(data, now, Receipt)
        rc: Receipt = receipt.record  # type: ignore[assignment]
        if (
            rc.task_id != o.task_id
            or rc.offer_id != offer.record_id
            or rc.input_digest != o.input_digest
            or rc.engine_id != o.engine_id
        ):
            raise ProofError(ProofReason.WRONG_TASK, f"receipt of {receipt.signer}: another task")
        if (fault := expiry_fault(receipt, offer)) is not None:
            raise ProofError(ProofReason.EXPIRES_EARLY, fault)
        if receipts and receipt.signer <= receipts[-1].signer:
            if receipt.signer == receipts[-1].signer:
                raise ProofError(ProofReason.DUPLICATE, f"two receipts of {receipt.signer}")
            raise ProofError(ProofReason.MALFORMED, "receipts must be sorted by node")
        if receipt.signer not in claims:
            raise ProofError(ProofReason.MISSING_RECORD, f"no claim of {receipt.signer}")
        receipts.append(receipt)
    if [c for c in proof.claims] != [claims[r.signer].data for r in receipts]:
        raise ProofError(ProofReason.MALFORMED, "claims must be in their receipts' order")
    # signatures before the view-dependent checks: a forged receipt is the forwarder's
    # fault whatever the checker's view
    for receipt in receipts:
        rc = receipt.record  # type: ignore[assignment]
        try:
            nacl.signing.VerifyKey(rc.result_key).verify(receipt_message(rc), rc.enclave_sig)
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
            raise ProofError(
                ProofReason.NOT_ENCLAVE_SIGNED, f"enclave signature of {receipt.signer}'s receipt"
            ) from None
    contest = None
    if proof.verdict is not None:
        # the verdict is the client's, checked like the one a replica request carries
        contest = _read(proof.verdict, now, Feedback)
        fault = verdict_fault(contest, offer, {r.signer for r in receipts})
        last = timing.contested_expiry(o.epoch) if timing is not None else None
        if fault is None and last is not None:
            fault = lifetime_fault(offer, contest, last)
        if fault is not None:
            raise ProofError(ProofReason.BAD_VERDICT, fault)
    elif len({r.record.output_digest for r in receipts}) < 2:  # type: ignore[attr-defined]
        raise ProofError(ProofReason.NO_OFFENCE, "the receipts agree: nothing is disputed")
    for receipt in receipts if verdict_of is not None else ():
        key = receipt.record.result_key  # type: ignore[attr-defined]
        verdict = verdict_of(receipt.signer, o.epoch)
        why = key_verdict(verdict, key, o.epoch)
        if why is not None:
            state = "no verdict" if verdict is None else f"verified={verdict.verified}"
            raise ProofError(
                why, f"receipt of {receipt.signer}: not its attested enclave's key ({state})"
            )
    if ranks_of is not None:
        ranks = ranks_of(offer)
        if ranks is None:
            raise ProofError(ProofReason.UNRANKED, f"no view of epoch {o.epoch} to rank it")
        for receipt in receipts:
            if receipt.signer not in ranks:
                raise ProofError(ProofReason.UNRANKED, f"{receipt.signer} has no rank for it")
    return CheckedDispute(
        offer, tuple(claims[r.signer] for r in receipts), tuple(receipts), contest
    )


def _better(a: SignedRecord, b: SignedRecord) -> SignedRecord:
    """The current of two versions of one slot: higher ``seq``, then smaller record ID."""
    ka, kb = (-a.record.seq, a.record_id), (-b.record.seq, b.record_id)
    return a if ka <= kb else b


def merge(known: CheckedDispute | None, new: CheckedDispute) -> CheckedDispute | None:
    """The union of two checked proofs of one offer, or None when ``new`` adds nothing.

    Per node: its claim and receipt, the current version by the store's replacement rule
    (higher ``seq``, then smaller record ID), so the result is the same in any order of
    arrival. At most :data:`MAX_DISPUTE_RECEIPTS` nodes (those of the smallest peer IDs
    beyond it: a deterministic cut; an honest task never has that many).
    """
    if known is None:
        return new
    if known.offer_id != new.offer_id:
        raise ValueError("proofs of different offers do not merge")
    runs: dict[str, tuple[SignedRecord, SignedRecord]] = {
        r.signer: (c, r) for c, r in zip(known.claims, known.receipts, strict=True)
    }
    for c, r in zip(new.claims, new.receipts, strict=True):
        old = runs.get(r.signer)
        runs[r.signer] = (c, r) if old is None else (_better(old[0], c), _better(old[1], r))
    nodes = sorted(runs)[:MAX_DISPUTE_RECEIPTS]
    # the first verdict held stays: another version (a higher seq, a ground record ID) is
    # no news, or a client could re-sign its way to unlimited forwarded proofs. Only a
    # verdict on a node of a smaller peer ID replaces it (what views read of a verdict is
    # its client, node and task, so they agree in any order of arrival; at most one
    # change per carried node)
    verdict = known.verdict
    if new.verdict is not None and (
        verdict is None or new.verdict.record.node < verdict.record.node  # type: ignore[attr-defined]
    ):
        verdict = new.verdict
    if verdict is not None and verdict_fault(verdict, known.offer, nodes) is not None:
        verdict = None  # its node fell past the cut (never for an honest task)
    merged = CheckedDispute(
        known.offer,
        tuple(runs[p][0] for p in nodes),
        tuple(runs[p][1] for p in nodes),
        verdict,
    )

    def ids(d: CheckedDispute) -> list[bytes]:
        return [x.record_id for x in d.records()]

    return None if ids(merged) == ids(known) else merged


def records_of(disputes: Sequence[CheckedDispute]) -> list[SignedRecord]:
    """Every record of ``disputes`` (what a view collects its dispute evidence from)."""
    return [rec for d in disputes for rec in d.records()]


def replica_claims(disputes: Iterable[tuple[int, int, int]]) -> dict[int, int]:
    """Per offer epoch, the claims of disputed offers beyond each offer's redundancy: the
    extra replicas escalations called in, which a digest view leaves out of an epoch's
    demand as the records path's ``recent_demand`` does (a burst of disputes must not
    widen the serving tier to the very nodes being disputed).

    Args:
        disputes: per disputed offer, ``(offer epoch, nodes that answered it, its
            redundancy)``; the nodes that answered are those a proof carries (a claim and
            a receipt each), so a replica that never answered still counts as demand.
    """
    out: dict[int, int] = {}
    for epoch, answered, redundancy in disputes:
        extra = answered - redundancy
        if extra > 0:
            out[epoch] = out.get(epoch, 0) + extra
    return out


__all__ = [
    "KIND",
    "MAX_DISPUTE_RECEIPTS",
    "MAX_DISPUTE_SIZE",
    "CheckedDispute",
    "DisputeProof",
    "DisputeTiming",
    "check_dispute_proof",
    "decode_dispute",
    "dispute_proof",
    "key_verdict",
    "merge",
    "records_of",
    "replica_claims",
]
