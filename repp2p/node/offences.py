"""Offence proofs and unserved charges on the ``proofs`` topic (docs/digests.md, "Offence
proofs and unserved charges on gossip").

An auditor that finds a digest's publisher at fault (:mod:`repp2p.digests.proofs`:
``inconsistency``, ``omission``, ``conflict``, ``misorder``) gossips the proof; every peer
verifies it from its bytes alone (:func:`repp2p.digests.verify_bytes`) and the network's
schedule (an omission only of a task whose records its node had to keep:
:func:`repp2p.digests.proofs.check_records_kept`), keeps it
(:class:`OffenceBook`, ``<folder>/<evidence id hex>.cbor``) and its digest views count it
as an offence of the publisher: the same path as an equivocation (offender, hard penalty in
the :class:`~repp2p.reputation.PenaltyBook`, the ledger's offence slash).

When views count one: an offence of a digest of epoch ``E`` is accepted while ``current <=
E + audit_horizon_epochs`` (publishers answer audits of ``E`` that long) and counts in the
views of epochs ``> E + audit_horizon_epochs``: by then every peer that will ever accept
it holds it, so every view counts the same offences.

Unserved charges (``kind: unserved``) are never offences: that a publisher did not answer
is the accuser's word (a colluding auditor could claim it of anyone). A full node that
receives one checks it (:func:`repp2p.digests.unserved.verify_unserved`: a genuine, live
digest, a leaf drawn under the charge's entropy, an accuser drawn to audit it) and asks the
publisher for the leaf itself (:meth:`repp2p.node.audits.Auditor.recheck`); only its own
failed re-check counts, as its own local evidence (``audits/unserved-*.cbor``, the
``recheck_unserved`` outcome), never in a view.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from repp2p.digests import wire
from repp2p.digests.disputes import KIND as DISPUTE_KIND
from repp2p.digests.disputes import MAX_DISPUTE_SIZE
from repp2p.digests.proofs import (
    MAX_PROOF_SIZE,
    Offence,
    check_records_kept,
    decode_proof,
    verify_proof,
)
from repp2p.digests.unserved import MAX_CHARGE_SIZE
from repp2p.errors import ProofError, ProofReason
from repp2p.net.verdict import Verdict
from repp2p.node.proof_files import ProofFolder
from repp2p.reputation import Offence as ViewOffence

log = logging.getLogger("repp2p.offences")

#: The kind of an unserved charge on the ``proofs`` topic.
UNSERVED_KIND = "unserved"
#: Reasons that depend on the receiver (its clock, what it holds): IGNORE.
_IGNORED = frozenset(
    {ProofReason.EXPIRED, ProofReason.TOO_OLD, ProofReason.TOO_NEW, ProofReason.KNOWN}
)


def proof_kind(data: Any) -> str:
    """The ``kind`` of a message of the ``proofs`` topic (cheap shape check only).

    Raises:
        ProofError: OVERSIZE, MALFORMED or NON_CANONICAL.
    """
    cap = max(MAX_DISPUTE_SIZE, MAX_PROOF_SIZE, MAX_CHARGE_SIZE)
    obj = wire.loads(data, max_size=cap, what="proof", max_depth=8)
    if type(obj) is not dict or type(obj.get("kind")) is not str:
        raise ProofError(ProofReason.MALFORMED, "a proof is a map with a kind")
    return obj["kind"]


def as_view_offence(offence: Offence) -> ViewOffence:
    """The reputation core's :class:`~repp2p.reputation.Offence` for a verified digest
    offence: kind ``digest_<kind>``, the offender, the proof's evidence ID, the epoch."""
    return ViewOffence(
        f"digest_{offence.kind.value}", offence.offender, (offence.evidence_id,), offence.epoch
    )


class OffenceBook:
    """Verified offence proofs, one per ``(offender, kind, epoch)``: of the proofs of one
    offence, the one of the smallest evidence ID (:meth:`add`).

    Args:
        folder: where proofs are kept (None: memory only).
        epoch_s: the network's epoch length.
        horizon_epochs: ``DigestParams.audit_horizon_epochs`` (see the module docstring).
        keep_epochs: a proof is dropped once its epoch is this much older than the
            current one (its penalty is in every penalty book by then).
        now: the clock.
        publish: ``await publish(data)`` gossips bytes on the ``proofs`` topic.
    """

    def __init__(
        self,
        *,
        folder: Path | None,
        epoch_s: int,
        horizon_epochs: int,
        keep_epochs: int,
        now: Callable[[], float],
        publish: Callable[[bytes], Awaitable[None]] | None = None,
    ) -> None:
        self.folder = folder
        self._files = ProofFolder(folder, "offence proof")
        self.epoch_s = epoch_s
        self.horizon_epochs = horizon_epochs
        self.keep_epochs = keep_epochs
        self._now = now
        self._publish = publish
        self._held: dict[tuple[str, str, int], tuple[Offence, bytes]] = {}
        self._outgoing: set[bytes] = set()
        self.refused: dict[str, int] = {}
        for offence, data in self._files.load(self._reread):
            held = self._held.get(_key(offence))
            if held is None or offence.evidence_id < held[0].evidence_id:
                self._held[_key(offence)] = (offence, data)
            if held is not None and held[0].evidence_id != offence.evidence_id:
                # a crash between a replacement's write and its drop: the larger goes
                self._files.drop(max(offence.evidence_id, held[0].evidence_id))

    def _reread(self, data: bytes) -> tuple[Offence, bytes]:
        return self._verify(data, int(self._now())), data

    def _verify(self, data: bytes, now: int) -> Offence:
        """:func:`~repp2p.digests.verify_bytes`, and what the network's schedule adds
        (:func:`~repp2p.digests.proofs.check_records_kept`: no omission of a task whose
        records its node had no need to keep)."""
        proof = decode_proof(data)
        offence = verify_proof(proof, now)
        check_records_kept(proof, offence, epoch_s=self.epoch_s, horizon_epochs=self.horizon_epochs)
        return offence

    def __len__(self) -> int:
        return len(self._held)

    def add(self, data: bytes) -> Offence:
        """Verify a proof and keep it; the offence.

        One proof is kept per offence, the one of the smallest evidence ID: a proof of a
        held offence with a smaller ID replaces it (and, accepted, travels on), any other
        is KNOWN. Views name an offence by its proof's evidence ID (the view digest, the
        penalty book's evidence), and one offence can have many valid proofs (another
        pair of conflicting digests, another faulty leaf): kept in order of arrival, a
        proof sent to half the network and another to the other half would leave the two
        halves' views different for good. The smallest ID converges on every peer the
        gossip reaches within the acceptance window, before any view counts it.

        Raises:
            ProofError: the proof does not verify (its reason), TOO_OLD / TOO_NEW (its
                epoch is outside ``[current - horizon_epochs, current]``), KNOWN (that
                offender, kind and epoch is held with this or a smaller evidence ID).
                Nothing held changes.
        """
        now = int(self._now())
        current = now // self.epoch_s
        offence = self._verify(data, now)
        if offence.epoch < current - self.horizon_epochs:
            raise ProofError(ProofReason.TOO_OLD, f"offence of epoch {offence.epoch}")
        if offence.epoch > current:
            raise ProofError(ProofReason.TOO_NEW, f"offence of epoch {offence.epoch}")
        key = _key(offence)
        held = self._held.get(key)
        if held is not None and held[0].evidence_id <= offence.evidence_id:
            raise ProofError(ProofReason.KNOWN, "this offence is held")
        self._held[key] = (offence, data)
        self._files.save(offence.evidence_id, data)
        if held is not None:
            self._files.drop(held[0].evidence_id)
            log.info(
                "offence proof of %s replaced by one of a smaller evidence ID", offence.offender
            )
            return offence
        log.warning(
            "offence proven: %s by %s (%s of epoch %d)",
            offence.kind.value,
            offence.offender,
            offence.digest_type,
            offence.epoch,
        )
        return offence

    def judge(self, data: bytes) -> Verdict:
        """The gossip validator's verdict on an offence proof."""
        digest = hashlib.sha256(data).digest()
        if digest in self._outgoing:
            self._outgoing.discard(digest)
            return Verdict.ACCEPT
        try:
            self.add(data)
        except ProofError as exc:
            self.refused[exc.reason.value] = self.refused.get(exc.reason.value, 0) + 1
            return Verdict.IGNORE if exc.reason in _IGNORED else Verdict.REJECT
        return Verdict.ACCEPT

    async def publish(self, data: bytes) -> Offence | None:
        """Keep a proof we found and gossip it (also when already held: it travels)."""
        try:
            offence: Offence | None = self.add(data)
        except ProofError as exc:
            if exc.reason is not ProofReason.KNOWN:
                log.warning("own offence proof refused: %s", exc)
                return None
            offence = None
        if self._publish is not None:
            digest = hashlib.sha256(data).digest()
            self._outgoing.add(digest)
            try:
                await self._publish(data)
            finally:
                self._outgoing.discard(digest)
        return offence

    def offences(self, upto_epoch: int) -> list[ViewOffence]:
        """The offences of digests of epochs ``<= upto_epoch``, in a canonical order (what
        the view of epoch ``upto_epoch + horizon_epochs + 1`` counts)."""
        found = [as_view_offence(o) for o, _d in self._held.values() if o.epoch <= upto_epoch]
        return sorted(found, key=lambda o: (o.peer_id, o.kind, o.record_ids))

    def prune(self, current_epoch: int) -> int:
        """Drop proofs older than ``keep_epochs``; returns how many."""
        gone = [
            k for k, (o, _d) in self._held.items() if o.epoch < current_epoch - self.keep_epochs
        ]
        for k in gone:
            offence, _data = self._held.pop(k)
            self._files.drop(offence.evidence_id)
        return len(gone)

    def served(self) -> list[bytes]:
        """The proofs a peer may still take (offences of epochs ``>= current -
        horizon_epochs``), in evidence ID order: what :mod:`repp2p.net.proof_sync` serves."""
        oldest = int(self._now()) // self.epoch_s - self.horizon_epochs
        found = [(o.evidence_id, d) for o, d in self._held.values() if o.epoch >= oldest]
        return [d for _i, d in sorted(found)]

    def have(self) -> list[bytes]:
        """SHA-256 of every proof :meth:`served` would send (what a pull tells the server
        not to send again)."""
        return [hashlib.sha256(d).digest() for d in self.served()]


def _key(offence: Offence) -> tuple[str, str, int]:
    return (offence.offender, offence.kind.value, offence.epoch)


class ProofRouter:
    """The ``proofs`` topic's validator: each message to its book by ``kind``.

    Args:
        disputes: ``judge(data)`` for dispute proofs (:class:`repp2p.node.disputes.DisputeBook`).
        offences: ``judge(data)`` for offence proofs (:class:`OffenceBook`).
        on_charge: ``on_charge(data) -> Verdict`` for unserved charges (a full node's
            re-check; None: IGNOREd, a light peer cannot re-check).
    """

    def __init__(
        self,
        disputes: Any,
        offences: OffenceBook,
        on_charge: Callable[[bytes], Verdict] | None = None,
    ) -> None:
        self.disputes = disputes
        self.offences = offences
        self.on_charge = on_charge
        #: messages refused before any book saw them, by reason (no readable ``kind``;
        #: ``wrong_type``: an unserved charge pulled over ``/repp2p/proofs/1``)
        self.refused: dict[str, int] = {}

    def _refuse(self, reason: ProofReason) -> Verdict:
        self.refused[reason.value] = self.refused.get(reason.value, 0) + 1
        return Verdict.REJECT

    def judge(self, data: bytes) -> Verdict:
        """The ``proofs`` topic's validator: the verdict of the book ``kind`` names (a
        message without a readable kind is REJECTed and counted in :attr:`refused`)."""
        try:
            kind = proof_kind(data)
        except ProofError as exc:
            return self._refuse(exc.reason)
        if kind == DISPUTE_KIND:
            return self.disputes.judge(data)
        if kind == UNSERVED_KIND:
            return self.on_charge(data) if self.on_charge is not None else Verdict.IGNORE
        return self.offences.judge(data)

    def judge_pulled(self, data: bytes) -> Verdict:
        """The verdict on a proof pulled over ``/repp2p/proofs/1``: as :meth:`judge`, but
        an unserved charge is REJECTed (no server sends one: a charge is its accuser's
        word, re-checked by whoever receives it on gossip, and never counts in a view)."""
        try:
            kind = proof_kind(data)
        except ProofError as exc:
            return self._refuse(exc.reason)
        if kind == UNSERVED_KIND:
            return self._refuse(ProofReason.WRONG_TYPE)
        return self.judge(data)

    def served(self) -> list[bytes]:
        """Every proof a peer may still take from us (both books)."""
        return [*self.disputes.served(), *self.offences.served()]

    def have(self) -> list[bytes]:
        """SHA-256 of every proof we hold that a server could send (both books)."""
        return [*self.disputes.have(), *self.offences.have()]


__all__ = ["UNSERVED_KIND", "OffenceBook", "ProofRouter", "as_view_offence", "proof_kind"]
