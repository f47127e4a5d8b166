"""The dispute proofs a peer holds, and their gossip (docs/digests.md, "Dispute proofs").

On a digest-view network a peer receives the records of disputed tasks only as dispute
proofs (:mod:`repp2p.digests.disputes`) on the ``proofs`` topic. :class:`DisputeBook`
judges each one (the validator's verdict), merges it into what it holds for the offer (a
later proof with more receipts adds them; one that adds nothing is ``known`` and not
forwarded), keeps the merged proof in ``<folder>/<offer id hex>.cbor`` (a restarted peer
judges the same disputes), and hands the views the records of the offers of a window of
epochs (:meth:`DisputeBook.records`). Nothing a rejected proof carried is stored, and a
rejected proof never touches what is held.

Verdicts (GossipSub's): ACCEPT a proof that adds receipts; REJECT one no honest peer
forwards (malformed, oversized, a bad signature, records of another task, receipts that
agree); IGNORE one that is only of no use to us (expired, outside the accepted epochs, a
node whose attestation or rank our view does not give: views can differ at the edges).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from repp2p.digests.disputes import (
    CheckedDispute,
    DisputeProof,
    RanksOf,
    VerdictOf,
    check_dispute_proof,
    decode_dispute,
    merge,
)
from repp2p.errors import ProofError, ProofReason
from repp2p.net.verdict import Verdict
from repp2p.records import SignedRecord

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


class DisputeBook:
    """Dispute proofs held, merged per offer.

    Args:
        folder: where merged proofs are kept (None: memory only).
        epoch_s: the network's epoch length.
        max_age_epochs: proofs of offers older than ``current - max_age_epochs`` are
            refused (``too_old``: a replay, or a proof held back until views had read its
            epoch); the node uses ``digest_lag - 1``, so a proof is in before the first
            view that reads its offer's epoch is built, and every peer's views judge the
            same disputes.
        keep_epochs: proofs are kept until their offer is this many epochs old (the
            reputation window plus the digest lag: the last view that reads them).
        now: the clock (unix seconds).
        verdict_of, ranks_of: the views' attestation verdicts and the offer rankings
            (:mod:`repp2p.digests.disputes`).
        publish: ``await publish(data)`` gossips bytes on the ``proofs`` topic.
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
    ) -> None:
        self.folder = folder
        self.epoch_s = epoch_s
        self.max_age_epochs = max_age_epochs
        self.keep_epochs = keep_epochs
        self._now = now
        self._verdict_of = verdict_of
        self._ranks_of = ranks_of
        self._publish = publish
        self._held: dict[bytes, CheckedDispute] = {}
        #: SHA-256 of the proofs we are gossiping ourselves: our own validator sees each
        #: once (as the record pipeline does our records) and must let it travel
        self._outgoing: set[bytes] = set()
        #: rejections by reason (what ``repp2p status`` could show; tests read it)
        self.refused: dict[str, int] = {}
        self._load()

    def _load(self) -> None:
        if self.folder is None or not self.folder.is_dir():
            return
        now = int(self._now())
        for path in sorted(self.folder.glob("*.cbor")):
            try:
                # checked when it arrived: only shape and signatures again (the views
                # re-apply the evidence rule on their own verdicts and rankings)
                checked = check_dispute_proof(
                    decode_dispute(path.read_bytes()),
                    now=now,
                    epochs=(0, 2**63),
                    verdict_of=None,
                    ranks_of=None,
                )
            except (OSError, ProofError) as exc:
                log.info("dispute proof %s dropped: %s", path.name, exc)
                path.unlink(missing_ok=True)
                continue
            self._held[checked.offer_id] = checked

    def __len__(self) -> int:
        return len(self._held)

    def get(self, offer_id: bytes) -> CheckedDispute | None:
        """What is held of one offer's dispute."""
        return self._held.get(offer_id)

    def add(self, data: bytes) -> CheckedDispute:
        """Check a proof and merge it into what is held; the merged dispute.

        Raises:
            ProofError: the proof's fault or our view's (reasons: :func:`check_dispute_proof`),
                or KNOWN when it adds nothing to what is held. Nothing held changes then.
        """
        now = int(self._now())
        epoch = now // self.epoch_s
        checked = check_dispute_proof(
            decode_dispute(data),
            now=now,
            epochs=(epoch - self.max_age_epochs, epoch),
            verdict_of=self._verdict_of,
            ranks_of=self._ranks_of,
        )
        merged = merge(self._held.get(checked.offer_id), checked)
        if merged is None:
            raise ProofError(ProofReason.KNOWN, "nothing new about this dispute")
        self._held[checked.offer_id] = merged
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"{checked.offer_id.hex()}.cbor"
            tmp = path.with_suffix(".tmp")
            try:
                tmp.write_bytes(merged.proof().encode())
                tmp.replace(path)
            except OSError as exc:  # memory still holds it; a restart loses only this one
                log.warning("could not keep dispute proof %s: %s", path.name, exc)
        return merged

    def judge(self, data: bytes) -> Verdict:
        """The gossip validator's verdict on one message of the ``proofs`` topic."""
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
            return Verdict.IGNORE if exc.reason in VIEW_REASONS else Verdict.REJECT
        return Verdict.ACCEPT

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
            out = merged.proof().encode()
            self._outgoing.add(hashlib.sha256(out).digest())
            try:
                await self._publish(out)
            finally:
                self._outgoing.discard(hashlib.sha256(out).digest())
        return merged

    def held(self, lo: int, hi: int) -> list[CheckedDispute]:
        """The disputes of offers of epochs ``lo .. hi``, by offer ID."""
        return [d for _k, d in sorted(self._held.items()) if lo <= d.epoch <= hi]

    def records(self, lo: int, hi: int) -> list[SignedRecord]:
        """The offers, claims and receipts of the disputes of epochs ``lo .. hi`` (what a
        digest view collects its dispute evidence from)."""
        return [r for d in self.held(lo, hi) for r in d.records()]

    def prune(self, current_epoch: int) -> int:
        """Drop disputes no view reads any more; returns how many."""
        oldest = current_epoch - self.keep_epochs
        gone = [k for k, d in self._held.items() if d.epoch < oldest]
        for k in gone:
            del self._held[k]
            if self.folder is not None:
                (self.folder / f"{k.hex()}.cbor").unlink(missing_ok=True)
        return len(gone)
