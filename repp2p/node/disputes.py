"""The dispute proofs a peer holds, and their gossip (docs/digests.md, "Dispute proofs").

On a digest-view network a peer receives the records of disputed tasks only as dispute
proofs (:mod:`repp2p.digests.disputes`) on the ``proofs`` topic. :class:`DisputeBook`
judges each one (the validator's verdict), merges it into what it holds for the offer (a
later proof with more receipts adds them; one that adds nothing is ``known`` and not
forwarded), keeps the merged proof in ``<folder>/<offer id hex>.cbor`` (a restarted peer
judges the same disputes), and hands the views the records of the offers of a window of
epochs (:meth:`DisputeBook.records`), or of those a view of a window of epochs counts
(:meth:`DisputeBook.counted`). Nothing a rejected proof carried is stored, and a
rejected proof never touches what is held.

Verdicts (GossipSub's): ACCEPT a proof that adds receipts; REJECT one no honest peer
forwards (malformed, oversized, a bad signature, records of another task, receipts that
agree); IGNORE one that is only of no use to us (expired, outside the accepted epochs, a
node whose attestation or rank our view does not give: views can differ at the edges).

**Judged again, not dropped.** GossipSub delivers a message once, so a proof IGNOREd
because our view cannot judge it *yet* (``unattested``: the node's attestation has not
reached us; ``unranked``: no view of ours ranks the offer yet, e.g. none is built since a
start: the keeper then ranks it on a rebuilt view of its epoch, ``ViewKeeper.offer_ranks``)
would be lost for good. The book keeps such a proof *pending* (only after its signatures
verified: a forged one is REJECTed, never kept), bounded: at most
:data:`PENDING_PER_OFFER` per offer, :data:`PENDING_MAX` proofs and :data:`PENDING_BYTES` in
all (a proof beyond them is not kept), dropped once its offer's dispute closes, memory only.
:meth:`DisputeBook.retry_pending` judges each again, when a new view is built and otherwise
with a backoff; what a retry accepts is held as if it had just arrived. A proof that never
reached us, or one lost with the pending set at a restart, comes by the pull of
:mod:`repp2p.net.proof_sync` (:meth:`DisputeBook.served` is what we offer there).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from repp2p.digests.disputes import (
    CheckedDispute,
    DisputeProof,
    DisputeTiming,
    RanksOf,
    VerdictOf,
    check_dispute_proof,
    decode_dispute,
    merge,
)
from repp2p.errors import ProofError, ProofReason, RecordError
from repp2p.net.verdict import Verdict
from repp2p.node.proof_files import ProofFolder
from repp2p.records import SignedRecord, decode

log = logging.getLogger("repp2p.disputes")

#: Reasons that say the proof depends on the checker's view or clock (IGNORE: nobody is
#: at fault); every other reason is the forwarder's (REJECT).
VIEW_REASONS = frozenset(
    {
        ProofReason.EXPIRED,
        ProofReason.TOO_OLD,
        ProofReason.TOO_NEW,
        ProofReason.UNATTESTED,
        ProofReason.UNRANKED,
        ProofReason.WRONG_EPOCH,
        ProofReason.KNOWN,
    }
)


#: Reasons that mean "not yet": our view lacks the node's attestation or the offer's
#: ranking, which the next views (or records still on their way) may bring. A proof refused
#: for one of them is kept pending and judged again.
RETRY_REASONS = frozenset({ProofReason.UNATTESTED, ProofReason.UNRANKED})
#: Pending proofs kept per offer at most (an honest offer has one proof, or a few while
#: replicas add receipts).
PENDING_PER_OFFER = 4
#: Bytes of pending proofs kept at most (about 33 proofs at their size cap).
PENDING_BYTES = 8 * 1024 * 1024
#: Pending proofs kept at most, whatever their size: each is checked again (signatures
#: included) at every new view, so this bounds that work too.
PENDING_MAX = 256


@dataclasses.dataclass
class _Pending:
    """A proof our view could not judge yet."""

    data: bytes
    offer_id: bytes
    epoch: int
    #: the last epoch its offer's dispute takes proofs (:meth:`DisputeTiming.close`)
    close: int
    #: when it may be judged again (unix seconds), and the wait after that
    due: float
    backoff: float


def reread_dispute(data: bytes, now: int) -> CheckedDispute:
    """A kept dispute proof read back from disk: it was checked in full when it arrived,
    so only its shape and signatures are checked again (each view re-applies the evidence
    rule on its own verdicts and rankings), and not its envelopes' liveness: a record that
    expired since (a contested proof's verdict, say) is dropped by each view at its own
    time, as on a peer that never restarted, while failing the whole proof here would
    lose its receipts on this peer only (its views would diverge). ``now`` is unused: the
    book prunes held proofs by their offer's epoch.

    Raises:
        ProofError: the bytes are not a well-formed, well-signed dispute proof.
    """
    del now  # liveness was checked on arrival (see above)
    return check_dispute_proof(
        decode_dispute(data), now=None, epochs=(0, 2**63), verdict_of=None, ranks_of=None
    )


class DisputeBook:
    """Dispute proofs held, merged per offer, and the proofs our view cannot judge yet.

    Args:
        folder: where merged proofs are kept (None: memory only).
        epoch_s: the network's epoch length.
        max_age_epochs: proofs of offers older than ``current - max_age_epochs`` are
            refused (``too_old``: a replay, or a proof held back until views had read its
            epoch); the node uses ``dispute_lag - 1`` (``NetworkParams.dispute_lag``).
            Within it, a proof of an offer is refused (``too_old``) after the offer's
            close (:class:`DisputeTiming` with ``dispute_lag = max_age_epochs + 1``: the
            epoch holding its deadline plus ``grace_s``, at most ``max_age_epochs`` after
            its own), so it is in before the first view that counts it is built, and every
            peer's views judge the same receipts.
        keep_epochs: proofs are kept until their offer is this many epochs old (the
            reputation window plus the dispute lag: the last view that reads them).
        now: the clock (unix seconds).
        verdict_of, ranks_of: the views' attestation verdicts and the offer rankings
            (:mod:`repp2p.digests.disputes`).
        publish: ``await publish(data)`` gossips bytes on the ``proofs`` topic.
        window_epochs: the reputation window; with it, a contested proof whose offer or
            verdict expires before the last view that can count it is refused
            (``bad_verdict``: :meth:`DisputeTiming.contested_expiry`). The node gives it.
        grace_s: ``NetworkParams.proof_grace_s`` (:class:`DisputeTiming`: how long after
            an offer's deadline its proofs are taken); None: one epoch.
    """

    def __init__(
        self,
        *,
        folder: Path | None,
        epoch_s: int,
        max_age_epochs: int,
        keep_epochs: int,
        now: Callable[[], float],
        verdict_of: VerdictOf,
        ranks_of: RanksOf,
        publish: Callable[[bytes], Awaitable[None]] | None = None,
        window_epochs: int | None = None,
        grace_s: int | None = None,
    ) -> None:
        self.folder = folder
        self._files = ProofFolder(folder, "dispute proof")
        self.epoch_s = epoch_s
        self.max_age_epochs = max_age_epochs
        self.timing = DisputeTiming(epoch_s, max_age_epochs + 1, window_epochs, grace_s)
        self.keep_epochs = keep_epochs
        self._now = now
        self._verdict_of = verdict_of
        self._ranks_of = ranks_of
        self._publish = publish
        self._held: dict[bytes, CheckedDispute] = {}
        #: offer ID -> the held dispute's proof bytes and their SHA-256 (what is kept on
        #: disk, served and named in pulls: encoded once per change, not per pull)
        self._wire: dict[bytes, tuple[bytes, bytes]] = {}
        #: SHA-256 of the proofs we are gossiping ourselves: our own validator sees each
        #: once (as the record pipeline does our records) and must let it travel
        self._outgoing: set[bytes] = set()
        #: SHA-256 of a proof's bytes -> the proof, while our view cannot judge it yet
        self._pending: dict[bytes, _Pending] = {}
        self._pending_bytes = 0
        self._pending_per_offer: dict[bytes, int] = {}
        #: rejections by reason (what ``repp2p status`` could show; tests read it)
        self.refused: dict[str, int] = {}
        #: pending proofs by fate: ``kept`` (pending), ``full`` (not kept: a cap),
        #: ``accepted`` (a retry held it), ``expired`` (left the replay window unjudged),
        #: ``refused`` (a retry refused it for good)
        self.pending_counts: dict[str, int] = {}
        for checked in self._files.load(self._reread):
            self._keep(checked, checked.proof().encode())

    def _keep(self, dispute: CheckedDispute, data: bytes) -> None:
        self._held[dispute.offer_id] = dispute
        self._wire[dispute.offer_id] = (data, hashlib.sha256(data).digest())

    def _reread(self, data: bytes) -> CheckedDispute:
        return reread_dispute(data, int(self._now()))

    def __len__(self) -> int:
        return len(self._held)

    def get(self, offer_id: bytes) -> CheckedDispute | None:
        """What is held of one offer's dispute."""
        return self._held.get(offer_id)

    def _window(self, now: int) -> tuple[int, int]:
        """``(oldest, newest)`` offer epochs taken now."""
        epoch = now // self.epoch_s
        return epoch - self.max_age_epochs, epoch

    def add(self, data: bytes) -> CheckedDispute:
        """Check a proof and merge it into what is held; the merged dispute.

        Raises:
            ProofError: the proof's fault or our view's (reasons: :func:`check_dispute_proof`),
                or KNOWN when it adds nothing to what is held. Nothing held changes then.
        """
        now = int(self._now())
        checked = check_dispute_proof(
            decode_dispute(data),
            now=now,
            epochs=self._window(now),
            verdict_of=self._verdict_of,
            ranks_of=self._ranks_of,
            timing=self.timing,
        )
        merged = merge(self._held.get(checked.offer_id), checked)
        if merged is None:
            raise ProofError(ProofReason.KNOWN, "nothing new about this dispute")
        data = merged.proof().encode()
        self._keep(merged, data)
        self._files.save(checked.offer_id, data)
        return merged

    def judge(self, data: bytes) -> Verdict:
        """The gossip validator's verdict on one message of the ``proofs`` topic (also
        what a proof pulled by :mod:`repp2p.net.proof_sync` gets). A proof our view
        cannot judge yet is IGNOREd (not forwarded) and kept pending."""
        mine = hashlib.sha256(data).digest()
        if mine in self._outgoing:
            self._outgoing.discard(mine)
            return Verdict.ACCEPT  # ours, held already: it travels once
        try:
            self.add(data)
        except ProofError as exc:
            self.refused[exc.reason.value] = self.refused.get(exc.reason.value, 0) + 1
            if exc.reason is not ProofReason.KNOWN:
                log.info("dispute proof refused: %s", exc)
            if exc.reason in RETRY_REASONS:
                self._keep_pending(data, mine)
            return Verdict.IGNORE if exc.reason in VIEW_REASONS else Verdict.REJECT
        return Verdict.ACCEPT

    # -- pending: proofs our view cannot judge yet ---------------------------------------

    def _count(self, fate: str) -> None:
        self.pending_counts[fate] = self.pending_counts.get(fate, 0) + 1

    def _keep_pending(self, data: bytes, digest: bytes) -> bool:
        """Keep a proof refused with a :data:`RETRY_REASONS` reason, within the caps;
        whether it is pending now. (Its signatures verified before that reason could be
        given, so its offer decodes.)"""
        if digest in self._pending:
            return True
        if self._pending_bytes + len(data) > PENDING_BYTES or len(self._pending) >= PENDING_MAX:
            self._count("full")
            return False
        now = self._now()
        try:
            offer = decode(decode_dispute(data).offer, now=int(now))
        except (ProofError, RecordError):  # expired since: nothing left to judge
            return False
        if self._pending_per_offer.get(offer.record_id, 0) >= PENDING_PER_OFFER:
            self._count("full")
            return False
        first = min(1.0, self.epoch_s / 8)
        o = offer.record
        self._pending[digest] = _Pending(
            data,
            offer.record_id,
            o.epoch,  # type: ignore[attr-defined]
            self.timing.close(o.epoch, o.deadline_ms),  # type: ignore[attr-defined]
            due=now + first,
            backoff=first,
        )
        self._pending_bytes += len(data)
        self._pending_per_offer[offer.record_id] = (
            self._pending_per_offer.get(offer.record_id, 0) + 1
        )
        self._count("kept")
        return True

    def _drop_pending(self, digest: bytes, fate: str) -> None:
        gone = self._pending.pop(digest)
        self._pending_bytes -= len(gone.data)
        left = self._pending_per_offer.pop(gone.offer_id) - 1
        if left:
            self._pending_per_offer[gone.offer_id] = left
        self._count(fate)

    @property
    def pending(self) -> int:
        """How many proofs wait for our view."""
        return len(self._pending)

    def retry_pending(self, *, force: bool = False) -> int:
        """Judge the pending proofs again; returns how many are held now.

        Each is tried when due (the wait doubles after each try, up to an epoch) or, with
        ``force`` (a new view was built), at once. One whose offer's dispute closed is
        dropped; one refused for another reason than :data:`RETRY_REASONS` is dropped (a
        refusal for good: ``known`` when it came by another way meanwhile).
        """
        now = self._now()
        current = int(now) // self.epoch_s
        accepted = 0
        for digest, p in list(self._pending.items()):
            if p.close < current:
                self._drop_pending(digest, "expired")
                continue
            if not force and now < p.due:
                continue
            try:
                self.add(p.data)
            except ProofError as exc:
                if exc.reason in RETRY_REASONS:
                    p.backoff = min(2 * p.backoff, float(self.epoch_s))
                    p.due = now + p.backoff
                else:
                    self._drop_pending(digest, "refused")
                continue
            self._drop_pending(digest, "accepted")
            accepted += 1
        if accepted:
            log.info("%d pending dispute proof(s) held once our view could judge them", accepted)
        return accepted

    # -- our own proofs, and what we serve -----------------------------------------------

    async def publish(self, proof: DisputeProof) -> CheckedDispute | None:
        """Hold our own proof and gossip it; the merged dispute, or None when our own
        view refuses it (then it is not gossiped: logged)."""
        data = proof.encode()
        try:
            merged = self.add(data)
        except ProofError as exc:
            if exc.reason is not ProofReason.KNOWN:
                log.warning("own dispute proof refused by our view: %s", exc)
                return None
            merged = self._held[hashlib.sha256(proof.offer).digest()]  # its record ID
        if self._publish is not None:
            out, digest = self._wire[merged.offer_id]
            self._outgoing.add(digest)
            try:
                await self._publish(out)
            finally:
                self._outgoing.discard(digest)
        return merged

    def _open(self) -> list[CheckedDispute]:
        """The held disputes a peer may still take proofs of (offers of the replay window
        whose dispute has not closed), by offer ID."""
        now = int(self._now())
        current = now // self.epoch_s
        return [
            d
            for d in self.held(*self._window(now))
            if self.timing.close(d.epoch, d.deadline_ms) >= current
        ]

    def served(self) -> list[bytes]:
        """The merged proofs a peer may still take (offers of the replay window whose
        dispute is open), in offer ID order: what :mod:`repp2p.net.proof_sync` serves."""
        return [self._wire[d.offer_id][0] for d in self._open()]

    def have(self) -> list[bytes]:
        """SHA-256 of every open proof we hold or keep pending (what a pull tells the
        server not to send again)."""
        return [*(self._wire[d.offer_id][1] for d in self._open()), *self._pending]

    def held(self, lo: int, hi: int) -> list[CheckedDispute]:
        """The disputes of offers of epochs ``lo .. hi``, by offer ID."""
        return [d for _k, d in sorted(self._held.items()) if lo <= d.epoch <= hi]

    def records(self, lo: int, hi: int) -> list[SignedRecord]:
        """The offers, claims, receipts and contested verdicts of the disputes of epochs
        ``lo .. hi`` (what a digest view collects its dispute evidence from)."""
        return [r for d in self.held(lo, hi) for r in d.records()]

    def counted(self, lo: int, hi: int, timing: DisputeTiming) -> list[SignedRecord]:
        """The records of the disputes whose count epoch (``timing.count``) is in ``lo ..
        hi``, by offer ID: what the digest views of a dispute window judge
        (``ViewKeeper.dispute_window``)."""
        return [
            r
            for d in self.held(*timing.offer_epochs(lo, hi))
            if lo <= timing.count(d.epoch, d.deadline_ms) <= hi
            for r in d.records()
        ]

    def prune(self, current_epoch: int) -> int:
        """Drop disputes no view reads any more (offers ``keep_epochs`` old: their count
        epoch is at most ``dispute_lag`` after the offer's), and pending proofs whose
        dispute closed; returns how many disputes were dropped."""
        oldest = current_epoch - self.keep_epochs
        gone = [k for k, d in self._held.items() if d.epoch < oldest]
        for k in gone:
            del self._held[k]
            del self._wire[k]
            self._files.drop(k)
        for digest, p in list(self._pending.items()):
            if p.close < current_epoch:
                self._drop_pending(digest, "expired")
        return len(gone)
