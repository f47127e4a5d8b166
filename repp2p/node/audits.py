"""Auditing other peers' digests by sampling (docs/digests.md, "Audit sampling").

At the start of epoch ``A = E + seal_lag_epochs + audit_delay_epochs`` every peer derives,
from public data it holds, the same draw for the digests of ``E``:

* the **attested nodes**: the nodes of its view of ``A`` (:func:`attested_nodes`: verified,
  not failed, consistent with their ad, at least one engine established, no offender).
  A work digest is any key's to sign; only these keys audit or feed the entropy;
* ``entropy = audit_entropy(IDs of the work digests of E + 1 held, of attested nodes)``:
  published after ``E``'s digests were final, so no publisher of ``E`` knew it when it
  signed, and no throwaway key can add to it (each would be one more try at a seed);
* ``seed = audit_seed(E, seal_lag_epochs + audit_delay_epochs, entropy)``;
* the candidates (:func:`audit_candidates`): the attested nodes that signed a work digest
  filed under ``E`` or, where work batches span up to ``work_max_epochs``, one of the
  epochs before it in that span (the full nodes active then); each digest's auditors
  are ``auditors(seed, digest_id, candidates, exclude={publisher})``, its challenged leaves
  ``challenge_indices(seed, digest_id, leaf_count, samples_for(span))`` (``audit_samples``
  per epoch the digest covers).

A peer drawn as auditor asks the publisher over ``/repp2p/audit/1`` (``AuditParams.attempts``
tries, ``retry_s`` apart: the grace period) and judges each answer with ``verify_audit``.
An offence's proof (any peer verifies it: ``repp2p.digests.verify_bytes``) and an
unanswered challenge's :class:`~repp2p.digests.unserved.UnservedCharge` are kept in the
:class:`EvidenceLog`; outcomes are counted in ``repp2p_audits_total{outcome}``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import trio

from repp2p.clock import ClockAPI
from repp2p.digests import (
    AuditOutcome,
    AuditVerdict,
    audit_seed,
    auditors,
    challenge_indices,
    verify_audit,
)
from repp2p.digests.params import DigestParams, audit_entropy
from repp2p.digests.unserved import NO_ANSWER, UnservedCharge, verify_unserved
from repp2p.errors import ProofError, ProofReason, RecordError
from repp2p.net import audit as audit_protocol
from repp2p.net.params import AuditParams
from repp2p.net.verdict import Verdict
from repp2p.node.metrics import NodeMetrics
from repp2p.records import FeedbackDigest, SignedRecord, WorkDigest, decode
from repp2p.store import RecordStoreAPI

if TYPE_CHECKING:
    from repp2p.matching import View

log = logging.getLogger("repp2p.audits")

#: pieces of evidence kept in memory (files keep all of them)
EVIDENCE_KEPT = 1024
#: gossiped unserved charges waiting for our re-check (more are not re-checked)
RECHECKS_QUEUED = 256
#: (digest, leaf) charges seen, for dedup (cleared whole when full)
CHARGES_SEEN = 65_536


@dataclasses.dataclass(frozen=True)
class Challenge:
    """The leaves of one digest this peer must check."""

    digest: SignedRecord
    indices: tuple[int, ...]
    entropy: bytes


def attested_nodes(view: View) -> frozenset[str]:
    """The keys that may audit, and whose digests seed the draw, in the audits at the start
    of ``view``'s epoch: the nodes of the view that it counts as attested nodes running
    the network's software (verified and not failed, consistent with their ad, at least
    one engine established: the enclave measurement is this runtime's, or pinned) and
    that are no offender. A pure function of the view, so every peer holding the same
    view finds the same set. The load, the penalty book and being online are left out:
    a busy or penalised node still audits, and the book is the one input a restarted
    peer may hold otherwise."""
    ev = view.evidence
    ix = np.flatnonzero(ev.is_node)
    ok = ev.verified[ix] & ~ev.failed[ix] & ev.consistent[ix] & ~view.reputation.is_offender[ix]
    out = set()
    for i in np.flatnonzero(ok).tolist():
        peer = view.peers[i]
        verdict = ev.verdicts.get(peer)
        if verdict is not None and verdict.measurements:
            out.add(peer)
    return frozenset(out)


def audit_candidates(
    store: RecordStoreAPI, epoch: int, nodes: Collection[str], span: int = 1
) -> list[str]:
    """The auditors of the digests of ``epoch`` are drawn from: the signers of the work
    digests held filed under one of the ``span`` epochs up to ``epoch`` (a batch is filed
    under its last epoch; ``span`` is the network's ``work_max_epochs``) that are among
    ``nodes`` (:func:`attested_nodes` of the view of its audit epoch), sorted.

    A key that is no attested node signs a work digest as easily as any other record, and
    would otherwise take a seat in every draw. The ``span``: where nodes batch ``M``
    epochs at their own phases, about one in ``M`` files a batch under a given epoch, and
    the draws of that epoch's digests fell on those few."""
    attested = set(nodes)
    signers = {
        d.signer
        for e in range(epoch - max(span, 1) + 1, epoch + 1)
        for d in store.query(type=WorkDigest.TYPE, epoch=e)
    }
    return sorted(signers & attested)


def draw_entropy(store: RecordStoreAPI, epoch: int, nodes: Collection[str]) -> bytes:
    """The entropy of the audits of ``epoch``: :func:`audit_entropy` of the IDs of the
    work digests of ``epoch + 1`` held whose signer is among ``nodes``. Any key may sign
    a digest, and a key that is no attested node (or a client's feedback digest) would
    make each candidate digest one more try at a seed that spares a colluder's leaves."""
    attested = set(nodes)
    later = store.query(type=WorkDigest.TYPE, epoch=epoch + 1)
    return audit_entropy(d.record_id for d in later if d.signer in attested)


def plan(
    store: RecordStoreAPI, me: str, epoch: int, params: DigestParams, nodes: Collection[str]
) -> list[Challenge]:
    """The challenges of the digests of ``epoch`` that fall to ``me``, from the digests
    held and ``nodes``, the attested nodes of the view of the audit epoch
    (:func:`attested_nodes`; see the module docstring). Deterministic: peers holding the
    same digests and the same view draw the same."""
    candidates = audit_candidates(store, epoch, nodes, params.work_max_epochs)
    if me not in candidates:
        return []  # no digest of the epoch falls to a peer that is no candidate
    digests = store.query(type=WorkDigest.TYPE, epoch=epoch)
    digests += store.query(type=FeedbackDigest.TYPE, epoch=epoch)
    entropy = draw_entropy(store, epoch, nodes)
    seed = audit_seed(epoch, params.grace_epochs, entropy)
    out = []
    for digest in digests:
        chosen = auditors(
            seed,
            digest.record_id,
            candidates,
            count=params.auditors_per_digest,
            exclude={digest.signer},
        )
        if me not in chosen:
            continue
        leaves = digest.record.leaf_count  # type: ignore[attr-defined]
        samples = params.samples_for(digest.record.span)  # type: ignore[attr-defined]
        indices = challenge_indices(seed, digest.record_id, leaves, samples)
        if indices:
            out.append(Challenge(digest, indices, entropy))
    return out


@dataclasses.dataclass(frozen=True)
class AuditResult:
    """The verdict on one challenged leaf.

    Attributes:
        digest: the digest; index: the leaf.
        verdict: :class:`~repp2p.digests.AuditVerdict` (``unserved`` also when nothing
            came back).
        evidence: for ``offence`` the proof's bytes, for ``unserved`` the charge's bytes,
            else None.
    """

    digest: SignedRecord
    index: int
    verdict: AuditVerdict
    evidence: bytes | None

    @property
    def outcome(self) -> AuditOutcome:
        return self.verdict.outcome


class EvidenceLog:
    """Offence proofs and unserved charges this peer found: the latest in memory, every
    one in ``<folder>/<sha256 hex>.cbor`` (None: memory only)."""

    def __init__(self, folder: Path | None) -> None:
        self._folder = folder
        self._recent: deque[tuple[AuditOutcome, bytes]] = deque(maxlen=EVIDENCE_KEPT)

    def keep(self, outcome: AuditOutcome, evidence: bytes) -> None:
        """Keep one piece of evidence. A disk that fails the write is logged: the evidence
        stays in memory and is gossiped all the same (an OSError here ended the auditor's
        task, and with it the node, at the re-check of a gossiped charge)."""
        self._recent.append((outcome, evidence))
        if self._folder is not None:
            name = f"{outcome.value}-{hashlib.sha256(evidence).hexdigest()}.cbor"
            try:
                self._folder.mkdir(parents=True, exist_ok=True)
                (self._folder / name).write_bytes(evidence)
            except OSError as exc:
                log.warning("could not keep audit evidence %s: %s", name, exc)

    def recent(self, outcome: AuditOutcome | None = None) -> list[bytes]:
        """Evidence kept in memory, oldest first (of one outcome when given)."""
        return [e for o, e in self._recent if outcome is None or o is outcome]


class Auditor:
    """Audits the digests that fall to this peer.

    Args:
        peer_id: this peer.
        store: its records (the digests come from it).
        clock: its clock.
        epoch_s: the network's epoch length.
        params: the digest schedule; audit: the protocol's patience.
        open_stream: ``await open_stream(peer)``: a new ``/repp2p/audit/1`` stream.
        nodes: ``nodes(epoch)``: the attested nodes (:func:`attested_nodes`) of this peer's
            view of ``epoch``, or None when it holds no view of it. The audits of the
            digests of ``E`` ask it for their audit epoch (``params.audit_epoch(E)``). It
            may build that view (the node's does, for the current epoch): only this
            auditor's own draw and checks call it, never the gossip validator
            (:meth:`on_charge`).
        metrics: ``audits`` counts outcomes.
        evidence: where proofs and charges are kept.
        publish: gossips what this auditor found (offence proofs, unserved charges) on
            the ``proofs`` topic.
    """

    def __init__(
        self,
        *,
        peer_id: str,
        store: RecordStoreAPI,
        clock: ClockAPI,
        epoch_s: int,
        params: DigestParams,
        audit: AuditParams,
        open_stream: Callable[[str], Awaitable[Any]],
        nodes: Callable[[int], Collection[str] | None],
        metrics: NodeMetrics,
        evidence: EvidenceLog | None = None,
        publish: Callable[[bytes], Awaitable[Any]] | None = None,
    ) -> None:
        self.peer_id = peer_id
        #: ``await publish(data)``: gossips an offence proof or an unserved charge on the
        #: ``proofs`` topic (repp2p.node.offences); None: kept here only
        self.publish = publish
        self._charges_seen: set[tuple[bytes, int]] = set()
        self._recheck_send, self._recheck_receive = trio.open_memory_channel[bytes](RECHECKS_QUEUED)
        self.params = params
        self.audit_params = audit
        self.evidence = evidence or EvidenceLog(None)
        self._store = store
        self._clock = clock
        self._epoch_s = epoch_s
        self._open_stream = open_stream
        self._nodes = nodes
        #: audit epoch -> its view's attested nodes (a view, once built, does not change)
        self._attested: dict[int, frozenset[str]] = {}
        self._metrics = metrics
        self._done: set[int] = set()

    async def _ask(self, publisher: str, digest_id: bytes, indices: list[int]) -> dict:
        # One try of the grace period: opening the stream (a dial, the protocol's
        # negotiation) and every answer within request_timeout_s, so a publisher slow to
        # accept or dripping its answers holds no audit slot longer (docs/protocol.md).
        deadline = trio.current_time() + self.audit_params.request_timeout_s
        try:
            with trio.fail_at(deadline):
                stream = await self._open_stream(publisher)
            return await audit_protocol.fetch(
                stream, digest_id, indices, self.audit_params, deadline=deadline
            )
        except Exception as exc:  # unreachable, reset, broke the protocol, too slow
            log.info("audit of %s: no answer: %r", publisher, exc)
            return {}

    async def check(self, challenge: Challenge) -> list[AuditResult]:
        """Ask for every challenged leaf (within the grace period) and judge the answers."""
        digest = challenge.digest
        final: dict[int, AuditVerdict] = {}
        last_reason: dict[int, str] = {}
        for attempt in range(self.audit_params.attempts):
            pending = [i for i in challenge.indices if i not in final]
            if not pending:
                break
            if attempt:
                await self._clock.sleep(self.audit_params.retry_s)
            answers = await self._ask(digest.signer, digest.record_id, pending)
            for index, data in answers.items():
                if data is None:
                    last_reason[index] = audit_protocol.UNKNOWN
                    continue
                verdict = verify_audit(digest, index, data)
                if verdict.outcome is AuditOutcome.UNSERVED:
                    last_reason[index] = (verdict.reason or ProofReason.MALFORMED).value
                else:
                    final[index] = verdict
        results = []
        for index in challenge.indices:
            verdict = final.get(index)
            if verdict is None:
                reason = last_reason.get(index, NO_ANSWER)
                verdict = AuditVerdict(AuditOutcome.UNSERVED, detail=reason)
                charge = UnservedCharge(
                    digest.data, index, challenge.entropy, self.peer_id, reason
                ).encode()
                results.append(AuditResult(digest, index, verdict, charge))
            elif verdict.outcome is AuditOutcome.OFFENCE:
                assert verdict.proof is not None
                results.append(AuditResult(digest, index, verdict, verdict.proof.encode()))
            else:
                results.append(AuditResult(digest, index, verdict, None))
        for result in results:
            self._metrics.audits.labels(result.outcome.value).inc()
            if result.evidence is not None:
                self.evidence.keep(result.outcome, result.evidence)
                await self._gossip(result.evidence)
                log.warning(
                    "audit of %s's %s (epoch %d) leaf %d: %s %s",
                    digest.signer,
                    digest.type,
                    digest.record.epoch,  # type: ignore[attr-defined]
                    result.index,
                    result.outcome.value,
                    result.verdict.detail,
                )
        return results

    async def _gossip(self, data: bytes) -> None:
        if self.publish is None:
            return
        try:
            await self.publish(data)
        except Exception as exc:  # no peers yet, gossip closing: the evidence is kept
            log.info("could not gossip audit evidence: %r", exc)

    async def recheck(self, charge: bytes, candidates: list[str] | None = None) -> AuditOutcome:
        """Re-check another auditor's unserved charge: verify it (``verify_unserved``),
        then ask the publisher for the leaf ourselves. ``pass`` refutes the charge,
        ``unserved`` confirms it as far as this peer can tell, ``offence`` finds worse.

        Raises:
            ProofError: the charge itself does not check out.
        """
        return (await self._recheck(charge, candidates)).outcome

    async def _recheck(self, charge: bytes, candidates: list[str] | None) -> AuditVerdict:
        now = int(self._clock.now())
        found = verify_unserved(charge, now, self.params, candidates)
        digest = decode(UnservedCharge.decode(charge).digest, now=now)
        answers = await self._ask(found.offender, found.digest_id, [found.index])
        data = answers.get(found.index)
        if data is None:
            return AuditVerdict(AuditOutcome.UNSERVED, detail=NO_ANSWER)
        return verify_audit(digest, found.index, data)

    def on_charge(self, data: bytes) -> Verdict:
        """The ``proofs`` topic's verdict on another auditor's unserved charge, and a
        re-check of it queued (docs/digests.md, "Offence proofs and unserved charges on
        gossip"): REJECT a charge that does not check out (malformed, a digest that is no
        digest, a leaf not drawn, an accuser not drawn to audit it), IGNORE one already
        seen or whose digest expired, ACCEPT (forward) a new one. The re-check is this
        peer's own question to the publisher; only its failure counts, here only.

        It judges on the attested nodes this auditor already holds for the audit epoch
        (:meth:`attested` with ``held_only``), IGNOREing the charge when it holds none:
        this runs inside pubsub's validator, and looking them up may build the view of the
        audit epoch, which would hold up all gossip for the length of a view build at the
        moment a hostile sender chooses. Nothing honest is lost: this auditor's own draw
        looks them up at the audit epoch's start (:meth:`run`), and an honest charge is
        made only after its accuser's grace period in that epoch."""
        now = int(self._clock.now())
        try:
            charge = UnservedCharge.decode(data)
            digest = decode(charge.digest, now=None).record
            # verify_unserved refuses any other record type too, but the epoch of its
            # candidates is read first, and only a digest has one: a charge over an ad
            # raised AttributeError out of the gossip validator, which stopped pubsub
            if not isinstance(digest, (WorkDigest, FeedbackDigest)):
                raise ProofError(ProofReason.WRONG_TYPE, f"a {digest.TYPE} is not a digest")
            epoch = digest.last_epoch
            nodes = self.attested(epoch, held_only=True)
            candidates = None
            if nodes is not None:
                span = self.params.work_max_epochs
                candidates = audit_candidates(self._store, epoch, nodes, span)
            found = verify_unserved(data, now, self.params, candidates)
        except (ProofError, RecordError) as exc:
            reason = getattr(exc, "reason", None)
            return Verdict.IGNORE if reason is ProofReason.EXPIRED else Verdict.REJECT
        if nodes is None:
            # no view of its audit epoch held (or not yet looked up by our own draw; it is
            # not looked up here): whether the accuser was drawn is unknown here, so the
            # charge is neither forwarded nor re-checked
            return Verdict.IGNORE
        if charge.entropy != draw_entropy(self._store, found.epoch, nodes):
            # verify_unserved draws under the charge's own entropy: a node that tries
            # entropies until it is "drawn" for a leaf could charge any digest at will,
            # each charge costing its publisher an answer to every re-checker. Not ours:
            # the accuser's or ours may lack a digest of the next epoch, so IGNORE, no
            # penalty (the digests of E + 1 are sealed before the audit epoch, so honest
            # peers hold the same ones)
            self._metrics.audits.labels("charge_other_entropy").inc()
            return Verdict.IGNORE
        if found.offender == self.peer_id:
            return Verdict.ACCEPT  # a charge against us: we answer whoever asks
        key = (found.digest_id, found.index)
        if key in self._charges_seen:
            return Verdict.IGNORE
        if len(self._charges_seen) >= CHARGES_SEEN:
            self._charges_seen.clear()
        self._charges_seen.add(key)
        try:
            self._recheck_send.send_nowait(data)
        except trio.WouldBlock:
            log.info("re-check queue full: charge against %s not re-checked", found.offender)
        return Verdict.ACCEPT

    def attested(self, epoch: int, *, held_only: bool = False) -> frozenset[str] | None:
        """The attested nodes of the audits of the digests of ``epoch``: those of this
        peer's view of their audit epoch (None: no such view held).

        Args:
            epoch: the audited epoch.
            held_only: only the nodes this auditor already looked up, never asking
                ``nodes`` (which may build a view): for the gossip validator.
        """
        audit_epoch = self.params.audit_epoch(epoch)
        found = self._attested.get(audit_epoch)
        if found is None and not held_only:
            nodes = self._nodes(audit_epoch)
            if nodes is None:
                return None
            found = frozenset(nodes)
            if len(self._attested) >= 8:
                del self._attested[min(self._attested)]
            self._attested[audit_epoch] = found
        return found

    async def _run_rechecks(self) -> None:
        async with self._recheck_receive:
            async for data in self._recheck_receive:
                try:
                    verdict = await self._recheck(data, None)
                except ProofError as exc:  # expired meanwhile
                    log.info("charge not re-checked: %s", exc)
                    continue
                except Exception:
                    log.exception("re-check failed")
                    continue
                self._metrics.audits.labels(f"recheck_{verdict.outcome.value}").inc()
                if verdict.outcome is AuditOutcome.UNSERVED:
                    # our own failed re-check: local evidence only, never in a view
                    self.evidence.keep(AuditOutcome.UNSERVED, data)
                elif verdict.outcome is AuditOutcome.OFFENCE and verdict.proof is not None:
                    proof = verdict.proof.encode()
                    self.evidence.keep(AuditOutcome.OFFENCE, proof)
                    await self._gossip(proof)

    async def audit_epoch(self, epoch: int) -> list[AuditResult]:
        """Check every challenge of ``epoch``'s digests that falls to this peer,
        ``AuditParams.concurrency`` digests at a time."""
        self._done.add(epoch)
        nodes = self.attested(epoch)
        if nodes is None:
            audit_epoch = self.params.audit_epoch(epoch)
            log.warning("no view of epoch %d: the digests of %d not audited", audit_epoch, epoch)
            return []
        challenges = plan(self._store, self.peer_id, epoch, self.params, nodes)
        results: list[AuditResult] = []
        limit = trio.CapacityLimiter(self.audit_params.concurrency)

        async def one(challenge: Challenge) -> None:
            async with limit:
                results.extend(await self.check(challenge))

        async with trio.open_nursery() as nursery:
            for challenge in challenges:
                nursery.start_soon(one, challenge)
        return results

    async def _audit_quietly(self, epoch: int) -> None:
        # The node's nursery must not die with an audit (our store or disk failing): the
        # failure is logged and the next epoch's audits run.
        try:
            await self.audit_epoch(epoch)
        except Exception:
            log.exception("auditing the digests of epoch %d failed", epoch)

    async def run(self) -> None:
        """At the start of every epoch, audit the digests whose audit boundary it is; and
        re-check the unserved charges other auditors gossiped (:meth:`on_charge`)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._run_rechecks)
            while True:
                current = int(self._clock.now()) // self._epoch_s
                epoch = self.params.audited_at(current)
                if epoch >= 0 and epoch not in self._done:
                    self._done.add(epoch)
                    nursery.start_soon(self._audit_quietly, epoch)
                    self._done = {e for e in self._done if e > epoch - 4}
                # A little into the next epoch: digests gossiped at the boundary arrive.
                await self._clock.sleep_until((current + 1.05) * self._epoch_s)


__all__ = [
    "AuditResult",
    "Auditor",
    "Challenge",
    "EvidenceLog",
    "attested_nodes",
    "audit_candidates",
    "draw_entropy",
    "plan",
]
