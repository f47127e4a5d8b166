"""The per-epoch view a peer matches on: attestation verdicts + records -> ``View``.

Shared by the full node (to decide whether to claim a task) and the client (to choose the
node and check its claim). Verification of each ``Attestation`` record happens here, locally,
under the peer's own policy: a sender's word about its own evidence counts for nothing.

An attestation *establishes* the engine measurements a node advertises when its verified
enclave measurement equals ``enclave_measurement(ad engines, runtime)`` for this
installation's runtime measurement: peers running the same released runtime agree on it,
or, for a hardware TEE whose measurement covers a whole image (an SEV-SNP VM), when the
policy pins that measurement for each advertised engine (``Policy.pins_engines``).
A node whose evidence fails for a reason other than age is marked ``failed`` (reputation
remembers it); stale or expired evidence only makes it unverified until it re-attests.

Freshness (docs/attestation.md, "Freshness"): an attestation counts for
``Policy.attestation_max_age_epochs`` epochs after its binding epoch, and its node is
*currently* attested only while its enclave signs its heartbeats
(:func:`repp2p.attestation.check_liveness`): without a heartbeat of the last
``liveness_lag`` epochs whose ``enclave_sig`` verifies under the attested result key the
node is unverified (not failed: a restarted enclave re-attests).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from repp2p.attestation import (
    Policy,
    VerificationCache,
    VerifiedNode,
    check_liveness,
    verify_node,
)
from repp2p.digests import count_rows, reconcile
from repp2p.digests.disputes import DisputeTiming, replica_claims
from repp2p.errors import AttestationError, AttestationReason, StoreError
from repp2p.matching import Assignments, ClaimedDemand, MatchingParams, View
from repp2p.network_params import NetworkParams
from repp2p.records import (
    Attestation,
    Claim,
    Feedback,
    FeedbackDigest,
    Heartbeat,
    NodeAd,
    Receipt,
    Refusal,
    SignedRecord,
    TaskOffer,
    WorkDigest,
)
from repp2p.reputation import (
    AssignedRanks,
    AttestedNode,
    PenaltyBook,
    ReputationParams,
    collect,
)
from repp2p.reputation.pairs import PairState, compute_pairs
from repp2p.store import RecordStoreAPI
from repp2p.tasks import is_bound_offer
from repp2p.tee.measurement import enclave_measurement, runtime_measurement

log = logging.getLogger("repp2p.viewer")

#: attestation failures that mean the evidence is no TEE's statement about its signer
#: (:meth:`ViewKeeper.evidence_refusal` keeps such records out of the store)
GARBAGE_EVIDENCE = frozenset(
    {
        AttestationReason.MALFORMED,
        AttestationReason.BAD_SIGNATURE,
        AttestationReason.BROKEN_CHAIN,
        AttestationReason.UNTRUSTED_ROOT,
        AttestationReason.REPORT_DATA_MISMATCH,
        AttestationReason.MISSING_COLLATERAL,
        AttestationReason.KIND_NOT_ALLOWED,
        AttestationReason.SIMULATED_NOT_ALLOWED,
    }
)
_AGE_REASONS = {
    AttestationReason.STALE_EVIDENCE,
    AttestationReason.CERT_EXPIRED,
    AttestationReason.CERT_NOT_YET_VALID,
}


def before_epoch(
    records: Iterable[SignedRecord], epoch: int, params: NetworkParams
) -> list[SignedRecord]:
    """The records a view of ``epoch`` is built from.

    Heartbeats count from epochs ``<= epoch - params.heartbeat_lag``; task records (offers
    and claims by their epoch, receipts and feedback by their offer's epoch; unknown offer:
    left out) only from epochs ``<= epoch - params.task_record_lag``: tasks still in flight
    at a boundary keep producing feedback for a while, and peers building the view a moment
    apart must not see different reputations. Ads and attestations always count.

    A task's epoch is its *bound* offer's (:func:`repp2p.tasks.is_bound_offer`): an offer
    signed by anyone else under the same task id is a squatting attempt and never counts,
    so it cannot move (or hide) the task's receipts and feedback.
    """
    records = list(records)
    offer_epoch = {s.record.task_id: s.record.epoch for s in records if is_bound_offer(s)}
    out = []
    for signed in records:
        rec = signed.record
        if isinstance(rec, NodeAd | Attestation):
            out.append(signed)
            continue
        if isinstance(rec, Receipt | Feedback | Refusal):
            record_epoch, limit = offer_epoch.get(rec.task_id), epoch - params.task_record_lag
        elif isinstance(rec, TaskOffer):
            if not is_bound_offer(signed):
                continue
            record_epoch, limit = rec.epoch, epoch - params.task_record_lag
        elif isinstance(rec, Claim):
            record_epoch, limit = rec.epoch, epoch - params.task_record_lag
        else:
            record_epoch, limit = getattr(rec, "epoch", None), epoch - params.heartbeat_lag
        if record_epoch is not None and record_epoch <= limit:
            out.append(signed)
    return out


def _replica_claims_of(disputed: Iterable[SignedRecord]) -> dict[int, int]:
    """:func:`~repp2p.digests.disputes.replica_claims` of the records of held dispute
    proofs: per offer its epoch, its redundancy and its claims (one per node that
    answered: a proof carries a claim with each receipt)."""
    disputed = list(disputed)
    answered: dict[bytes, int] = {}
    for r in disputed:
        if isinstance(r.record, Claim):
            answered[r.record.offer_id] = answered.get(r.record.offer_id, 0) + 1
    return replica_claims(
        (r.record.epoch, answered.get(r.record_id, 0), r.record.redundancy)
        for r in disputed
        if isinstance(r.record, TaskOffer)
    )


def _read_state(path: Path | None, parse: Callable[[bytes], Any], what: str) -> Any:
    """What ``parse`` reads from ``path`` (state a keeper kept across restarts); None
    when there is no such file, or it is unreadable or does not parse (``StoreError``):
    then it is set aside as ``.damaged`` for inspection and the caller starts afresh."""
    if path is None or not path.exists():
        return None
    try:
        return parse(path.read_bytes())
    except (OSError, StoreError) as exc:
        damaged = path.with_suffix(".damaged")
        log.warning("%s %s ignored (kept as %s): %s", what, path, damaged, exc)
        try:
            path.replace(damaged)
        except OSError:
            pass
        return None


def _write_state(path: Path, data: bytes, what: str) -> bool:
    """Write ``data`` to ``path`` atomically (a temporary file renamed); False, logged,
    when it could not be written."""
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as exc:
        log.warning("could not save the %s to %s: %s", what, path, exc)
        return False
    return True


class ViewKeeper:
    """Builds and caches one :class:`View` per epoch from a record store.

    Args:
        store: the peer's record store (accepted records only).
        policy: the network's attestation policy (:mod:`repp2p.attestation`).
        params: the network's parameters (``NodeConfig.network_params``): epoch length,
            record lags, matching and reputation parameters.
        book_path: where the penalty book is kept across restarts (a node's data dir);
            None keeps it in memory only.
        ranks_path: where the offers' assigned ranks are kept across restarts on a
            digest network (a node's data dir), so that a peer restarted since an offer's
            epoch judges its dispute proofs on the ranks it took before; None keeps them
            in memory only (a records network keeps them in memory: every offer is
            held, and its epoch's view is rebuilt from the store).
    """

    def __init__(
        self,
        store: RecordStoreAPI,
        policy: Policy,
        params: NetworkParams,
        *,
        book_path: Path | None = None,
        ranks_path: Path | None = None,
    ) -> None:
        self.store = store
        self.book_path = book_path
        self.params = params
        self.ranks_path = ranks_path if params.reputation_source == "digests" else None
        self._saved_book = self._load_book()
        #: the book as kept when we started: what rebuilt views of epochs we were down
        #: for go on from (``_past_book``)
        self._start_book = self._saved_book
        self.policy = policy
        self._cache: VerificationCache = VerificationCache(4096)
        self._views: dict[int, View] = {}
        #: views of past epochs we hold no view of, rebuilt to rank dispute offers
        #: (``_rebuilt_view``), for as long as the newest view is ``_rebuilt_under``
        self._rebuilt: dict[int, View] = {}
        self._rebuilt_under: int | None = None
        self._keys: dict[str, tuple[bytes, bytes]] = {}
        self._verdicts: dict[str, AttestedNode] = {}
        self._runtime = runtime_measurement()
        #: each offer's assigned ranks, judged once on the view of its epoch (kept in
        #: ``ranks_path``: read back after a restart)
        self._assignments = self._load_ranks()
        #: ``peer -> [(result key, epoch it was replaced)]``, the keys earlier verified
        #: attestations bound (an enclave restart brings fresh keys; docs/core.md)
        self._earlier_keys: dict[str, list[tuple[bytes, int]]] = {}
        #: digest count rows folded so far (``reputation_source = "digests"``)
        self.pairs = PairState()
        #: the dispute proofs held (``repp2p.node.disputes.DisputeBook``: ``counted(lo,
        #: hi)`` and ``prune(epoch)``), whose records digest views judge disputes on
        self.disputes: Any = None
        #: the verified offence proofs of digests held (``repp2p.node.offences.OffenceBook``:
        #: ``offences(upto_epoch)``, ``prune(epoch)``), offences in digest views
        self.offences: Any = None
        #: ``(heartbeat record id, result key) -> None or why its enclave_sig fails``:
        #: each heartbeat's signature is checked once, not at every view build
        self._liveness: dict[tuple[bytes, bytes], AttestationError | None] = {}
        #: ``peer -> why its last judged attestation was not live`` (explorer, logs)
        self._not_live: dict[str, AttestationError] = {}

    @property
    def epoch_s(self) -> int:
        """Epoch length in seconds (``params.epoch_s``)."""
        return self.params.epoch_s

    @property
    def matching_params(self) -> MatchingParams:
        """The network's matching parameters (``params.matching``)."""
        return self.params.matching

    @property
    def reputation_params(self) -> ReputationParams:
        """The network's reputation parameters (``params.reputation``)."""
        return self.params.reputation

    # -- attestation verdicts ------------------------------------------------------------

    def evidence_refusal(self, signed: SignedRecord, now: int) -> AttestationReason | None:
        """Why an ``Attestation`` record should not be stored at all, or None.

        Only for evidence that is no TEE's statement about this peer
        (:data:`GARBAGE_EVIDENCE`: unparseable, unsigned or signed outside the policy's
        roots, bound to other keys, of a kind this network does not run): anyone can make
        such records from fresh keys, up to 320 KiB each, and no view has a use for them.
        Evidence a real TEE produced but the policy refuses (debug mode, revoked, an old
        TCB) is stored: views mark its node ``failed``; stale evidence is stored too (the
        views judge its age). Engine pins are the views' business (``engines=()`` here).
        Verification shares the views' cache, so the view build does not repeat it.
        """
        rec = signed.record
        if not isinstance(rec, Attestation):
            return None
        try:
            # no current_epoch: its lag check comes before the evidence is looked at, and
            # an old epoch must not let garbage evidence through (age is the views')
            self._verify(signed, now)
        except AttestationError as exc:
            if exc.reason in GARBAGE_EVIDENCE:
                return exc.reason
        return None

    def is_attested(self, signer: str, now: int, record: SignedRecord | None = None) -> bool:
        """Whether ``signer`` has a verified attestation: one our views verified, the one
        it has stored, or ``record`` when that is its attestation and verifies
        (:class:`repp2p.node.budgets.UnattestedQuota` exempts such signers)."""
        if signer in self._keys:
            return True
        if record is not None and isinstance(record.record, Attestation):
            candidates = [record]
        else:
            candidates = self.store.query(type=Attestation.TYPE, signer=signer, limit=1)
        for attestation in candidates:
            try:
                self._verify(attestation, now)
            except AttestationError:
                continue
            return True
        return False

    def _verify(
        self,
        signed: SignedRecord,
        now: int,
        *,
        engines: tuple[str, ...] = (),
        current_epoch: int | None = None,
        epoch_s: int | None = None,
    ) -> VerifiedNode:
        """:func:`verify_node` on an ``Attestation`` record under our policy and cache."""
        rec: Attestation = signed.record  # type: ignore[assignment]
        return verify_node(
            signed.signer,
            rec.tee_kind,
            rec.evidence,
            rec.collateral,
            rec.gpu_evidence,
            rec.enc_key,
            rec.result_key,
            rec.epoch,
            rec.nonce,
            self.policy,
            now,
            engines=engines,
            current_epoch=current_epoch,
            epoch_s=epoch_s,
            cache=self._cache,
        )

    @property
    def liveness_lag(self) -> int:
        """How many epochs old the latest enclave-signed heartbeat may be at a view:
        ``max(policy.max_epoch_lag, params.heartbeat_lag + H - 1)`` with ``H`` the
        network's ``heartbeat_period_epochs`` (a view of ``E`` sees heartbeats of epochs
        ``<= E - heartbeat_lag`` only, and a node heartbeats once every ``H`` epochs)."""
        period = self.params.reputation.heartbeat_period_epochs
        return max(self.policy.max_epoch_lag, self.params.heartbeat_lag + period - 1)

    def verdicts(self, records: Iterable[SignedRecord], now: int) -> dict[str, AttestedNode]:
        """``peer_id -> AttestedNode`` for every current Attestation among ``records``;
        the heartbeats among ``records`` are the liveness evidence."""
        ads: dict[str, NodeAd] = {}
        attestations: list[SignedRecord] = []
        heartbeats: dict[str, list[SignedRecord]] = {}
        for signed in records:
            if isinstance(signed.record, NodeAd):
                ads[signed.signer] = signed.record
            elif isinstance(signed.record, Attestation):
                attestations.append(signed)
            elif isinstance(signed.record, Heartbeat) and signed.record.enclave_sig:
                heartbeats.setdefault(signed.signer, []).append(signed)
        out: dict[str, AttestedNode] = {}
        for signed in attestations:
            out[signed.signer] = self._verdict(
                signed, ads.get(signed.signer), heartbeats.get(signed.signer, ()), now
            )
        self._verdicts.update(out)
        return out

    def live_epoch(
        self, peer: str, result_key: bytes, heartbeats: Iterable[SignedRecord], current_epoch: int
    ) -> int:
        """The latest epoch in ``[current_epoch - liveness_lag, current_epoch]`` for which
        one of ``peer``'s ``heartbeats`` carries an enclave signature valid under
        ``result_key``.

        Raises:
            AttestationError: NOT_LIVE when no heartbeat of the window is signed (or none
                is held), else the latest heartbeat's failure (BAD_ENCLAVE_SIGNATURE: forged,
                another node's enclave, an enclave replaced since the attestation).
        """
        lo = current_epoch - self.liveness_lag
        recent = sorted(
            (s for s in heartbeats if lo <= s.record.epoch <= current_epoch),  # type: ignore[attr-defined]
            key=lambda s: s.record.epoch,  # type: ignore[attr-defined]
            reverse=True,
        )
        failure: AttestationError | None = None
        for signed in recent:
            hb: Heartbeat = signed.record  # type: ignore[assignment]
            key = (signed.record_id, bytes(result_key))
            if key not in self._liveness:
                if len(self._liveness) >= 65536:
                    self._liveness.clear()
                try:
                    check_liveness(peer, hb.epoch, hb.enclave_sig, result_key)
                    self._liveness[key] = None
                except AttestationError as exc:
                    self._liveness[key] = exc
            exc = self._liveness[key]
            if exc is None:
                return hb.epoch
            failure = failure or exc
        raise failure or AttestationError(
            AttestationReason.NOT_LIVE,
            f"no enclave-signed heartbeat of epochs {lo}..{current_epoch}",
        )

    def not_live_reason(self, peer_id: str) -> str | None:
        """Why the last verdict on ``peer_id`` found its enclave not live, or None."""
        exc = self._not_live.get(peer_id)
        return None if exc is None else str(exc)

    def _verdict(
        self,
        signed: SignedRecord,
        ad: NodeAd | None,
        heartbeats: Iterable[SignedRecord],
        now: int,
    ) -> AttestedNode:
        rec: Attestation = signed.record  # type: ignore[assignment]
        peer = signed.signer
        engines = tuple(e.engine_id for e in ad.engines) if ad else ()
        current_epoch = now // self.epoch_s
        try:
            verified = self._verify(
                signed, now, engines=engines, current_epoch=current_epoch, epoch_s=self.epoch_s
            )
        except AttestationError as exc:
            self._keys.pop(peer, None)
            log.debug("attestation of %s refused: %s", peer, exc)
            return AttestedNode(
                peer_id=peer,
                tee_kind=rec.tee_kind,
                measurements=frozenset(),
                verified=False,
                failed=exc.reason not in _AGE_REASONS,
                attested_at=rec.epoch * self.epoch_s,
            )
        established: frozenset[bytes] = frozenset()
        if ad is not None:
            wanted = {e.engine_id: e.measurement for e in ad.engines}
            if verified.claims.measurement == enclave_measurement(wanted, self._runtime):
                established = frozenset(wanted.values())
            elif not verified.simulated and self.policy.pins_engines(
                rec.tee_kind, verified.claims.measurement, wanted
            ):
                # [tee] a CVM's launch measurement covers its whole image, not our
                # runtime+engines hash: the policy's per-engine pins say which engines it runs
                established = frozenset(wanted.values())
        old = self._keys.get(peer)
        if old is not None and old[1] != rec.result_key:
            # the old key still signs the receipts of offers up to this epoch
            self._earlier_keys[peer] = [*self._earlier_keys.get(peer, [])[-7:], (old[1], rec.epoch)]
        self._keys[peer] = (rec.enc_key, rec.result_key)
        signed_at = verified.claims.signed_at
        evidence_at = signed_at if signed_at is not None else rec.epoch * self.epoch_s
        try:
            live = self.live_epoch(peer, rec.result_key, heartbeats, current_epoch)
        except AttestationError as exc:
            # the evidence holds (its keys still check receipts) but its enclave has not
            # proved it is alive: not current, and no offence (a restarted enclave
            # re-attests)
            self._not_live[peer] = exc
            log.debug("attestation of %s not live: %s", peer, exc)
            return AttestedNode(
                peer_id=peer,
                tee_kind=rec.tee_kind,
                measurements=frozenset(),
                verified=False,
                failed=False,
                attested_at=evidence_at,
            )
        self._not_live.pop(peer, None)
        return AttestedNode(
            peer_id=peer,
            tee_kind=rec.tee_kind,
            measurements=established,
            verified=True,
            tcb_degraded=False,
            # freshness (reputation's attestation component): when the attested enclave
            # last proved it is alive, at least as recent as the evidence itself
            attested_at=max(evidence_at, live * self.epoch_s),
            result_key=rec.result_key,
            earlier_result_keys=tuple(
                (k, until) for k, until in self._earlier_keys.get(peer, ()) if k != rec.result_key
            ),
        )

    def verdict_of(self, peer_id: str) -> AttestedNode | None:
        """The latest verdict on a peer's attestation, if it has been judged."""
        return self._verdicts.get(peer_id)

    def enclave_keys(self, peer_id: str) -> tuple[bytes, bytes] | None:
        """``(enc_key, result_key)`` of a peer whose attestation verified, else None."""
        return self._keys.get(peer_id)

    # -- views ---------------------------------------------------------------------------

    def view(self, epoch: int) -> View:
        """The view of ``epoch``, built from the store on first use and then kept.

        Only settled records count (:func:`before_epoch`), so peers that build it at
        different moments of the epoch agree: heartbeats of the epoch itself (their load
        changes with every task) wait for the next view (``heartbeat_lag``), task records
        for two (``task_record_lag``).
        Ads and attestations count as current; nodes re-attest at mid-epoch, so the one
        a peer holds at the boundary is stable. A digest mismatch in claims shows residue.
        """
        view = self._views.get(epoch)
        if view is None:
            previous = self._views.get(epoch - 1)
            if previous is not None:
                book = previous.penalties
            elif self._saved_book.epoch < epoch:
                # Restarted (or no view for a while): go on from the book we kept. Epochs
                # we were down count as one step, so a phase-out in progress may end later.
                book = self._saved_book
            else:
                book = PenaltyBook()
            if self.params.reputation_source == "digests":
                view = self._view_from_digests(epoch, book)
            else:
                view = self._view_from_records(epoch, book)
            self._views[epoch] = view
            # the last digest_lag epochs' views stay: dispute proofs are checked on them
            for old in [e for e in self._views if e < epoch - self.held_epochs]:
                del self._views[old]
            if self._rebuilt_under is not None and self._rebuilt_under < max(self._views):
                self._drop_rebuilt()  # a newer view: built again
            if view.penalties.epoch > self._saved_book.epoch:
                self._save_book(view.penalties)
            if self.ranks_path is not None and self._assignments.changed:
                self._save_ranks(self.ranks_path)
        return view

    @property
    def held_epochs(self) -> int:
        """How many epochs before the newest view the keeper holds views of (``max(3,
        digest_lag)``): the offers a dispute proof may still arrive for, and those a
        digest view rebuilds when it holds none (:meth:`offer_ranks`)."""
        return max(3, self.params.digest_lag)

    def _view_from_records(self, epoch: int, book: PenaltyBook) -> View:
        """The view of ``epoch`` from every record held (``reputation_source = "records"``)."""
        now = epoch * self.epoch_s
        # The store keeps one current record per slot; the other half of each
        # equivocation lives in its evidence table. Both must reach the reputation
        # core, which turns the pair into an offence.
        evidence = [r for pair in self.store.equivocations() for r in pair]
        everything = self.store.query() + evidence
        records = before_epoch(everything, epoch, self.params)
        verdicts = self.verdicts(records, now)
        # offers older than the reputation window weigh nothing in this view: a view of
        # their epoch is not rebuilt for them (a restart rebuilds at most the window)
        oldest = epoch - self.reputation_params.window_epochs - 1
        assignments = self._assignments.for_views(
            self._ranking_views(epoch, everything, verdicts, oldest=oldest)
        )
        view = View.build(
            records,
            verdicts,
            epoch=epoch,
            params=self.params,
            penalties=book,
            assignments=assignments,
        )
        # keep the ranks of every offer still held (the ledger replays them all)
        self._assignments.keep({s.record_id for s in everything if s.type == "TaskOffer"})
        return view

    def assignments(
        self, epoch: int, records: list[SignedRecord], verdicts: Mapping[str, AttestedNode]
    ) -> AssignedRanks:
        """The assigned ranks of offers of epochs before ``epoch`` (what our views count
        claims by), for :func:`repp2p.ledger.replay` over ``records`` (the store's)."""
        return self._assignments.for_views(self._ranking_views(epoch, records, verdicts))

    def _ranking_views(
        self,
        epoch: int,
        everything: list[SignedRecord],
        verdicts: Mapping[str, AttestedNode],
        *,
        oldest: int | None = None,
    ) -> Callable[[int], View | None]:
        """``view_of(e)`` for the offers the view of ``epoch`` reads: the view we built for
        epoch ``e``, or, when we hold none (we were not running then), one rebuilt from the
        store as of ``e`` with today's verdicts and a fresh penalty book (docs/core.md:
        such a view may differ from the one the nodes ranked on); None for ``e < oldest``
        when it would have to be rebuilt."""
        rebuilt: dict[int, View] = {}
        offer_epochs = sorted(
            {s.record.epoch for s in everything if isinstance(s.record, TaskOffer)}
        )

        def build(e: int) -> View:
            held = self._views.get(e) or rebuilt.get(e)
            if held is None:
                held = View.build(
                    before_epoch(everything, e, self.params),
                    verdicts,
                    epoch=e,
                    params=self.params,
                    assignments=self._assignments.for_views(view_of),
                )
                rebuilt[e] = held
            return held

        def view_of(e: int) -> View | None:
            if e >= epoch:
                return None  # never: task records reach a view only task_record_lag later
            if e not in self._views and e not in rebuilt:
                if oldest is not None and e < oldest:
                    return None
                # oldest first, so each build finds the views it needs: no deep recursion
                for older in offer_epochs:
                    if older >= e:
                        break
                    if oldest is None or older >= oldest:
                        build(older)
            return build(e)

        return view_of

    def verdict_at(self, peer_id: str, epoch: int) -> AttestedNode | None:
        """A peer's attestation verdict for a task of ``epoch``: the latest one when it
        verified, else the one the view of ``epoch`` ranked on (a verdict judged at a
        view build can be unverified for a while: evidence about to be renewed)."""
        latest = self._verdicts.get(peer_id)
        if latest is not None and latest.verified:
            return latest
        view = self._views.get(epoch) or self._rebuilt.get(epoch)
        held = view.evidence.verdicts.get(peer_id) if view is not None else None
        if held is not None and held.verified:
            return held
        # judged at no view build yet (attested since, or our own): judge it now, on the
        # newest view's boundary
        if self._views:
            now = max(self._views) * self.epoch_s
            found = self.store.query(type=Attestation.TYPE, signer=peer_id, limit=1)
            found += self.store.query(type=NodeAd.TYPE, signer=peer_id, limit=1)
            fresh = self.verdicts(found, now).get(peer_id)
            if fresh is not None:
                return fresh
        return held if held is not None else latest

    def offer_ranks(self, offer: SignedRecord) -> Mapping[str, frozenset[int]] | None:
        """``peer -> ranks`` the matching gave for ``offer`` on the view of its epoch (a
        view this keeper holds, or on a digest network one it rebuilds for an epoch of the
        last :attr:`held_epochs` it holds none of: :meth:`_rebuilt_view`), cached per
        offer; None for an offer of a future epoch, or before any view is built. What a
        dispute proof's receipts are held to (``repp2p.node.disputes``)."""
        newest = max(self._views, default=None)
        if newest is None:
            return None
        return self._dispute_ranks(None, newest)(offer)

    def _dispute_ranks(self, before: int | None, newest: int) -> AssignedRanks:
        """``offer -> ranks`` on :meth:`_dispute_view_of`, cached per offer. Ranks are
        taken as soon as the offer's epoch can be ranked and kept: the node records a
        rebuilt view reads (heartbeats) expire within a few epochs, so a later rebuild
        could rank fewer nodes than an early one."""
        return self._assignments.for_views(self._dispute_view_of(before, newest))

    def _dispute_view_of(self, before: int | None, newest: int) -> Callable[[int], View | None]:
        """``view_of(e)`` for dispute offers, for ``e < before`` only (None otherwise): the
        view of ``e`` this keeper holds (the last :attr:`held_epochs` epochs' before
        ``newest``, every offer a dispute proof may still arrive for), or, for such an
        epoch it holds no view of (it was restarted since, or not running then), the view
        :meth:`_rebuilt_view` builds. Older epochs are not rebuilt: their offers were
        ranked when their proofs arrived, and the cached ranks are kept across restarts
        (``ranks_path``); a peer restarted since that holds none for such an offer leaves
        its receipts out (docs/digests.md, "What digest views still do not do")."""

        def view_of(e: int) -> View | None:
            if before is not None and e >= before:
                return None
            held = self._views.get(e)
            if held is not None or self.params.reputation_source != "digests":
                return held
            if not newest - self.held_epochs <= e < newest:
                return None
            rebuilt = self._rebuilt_view(e, newest)
            # nobody eligible: most likely the store has not synced the epochs we were
            # down for yet (their heartbeats). No ranks then, so none are cached: the
            # proof waits (``unranked``) and is judged again after the next view.
            return rebuilt if rebuilt.base_eligible.any() else None

        return view_of

    def _rebuilt_view(self, epoch: int, newest: int) -> View:
        """The digest view of a past ``epoch`` this keeper holds no view of, rebuilt from
        what it holds now as the view of ``epoch`` was built: the digest rows of its window
        (epochs not folded yet are folded now, once, as :meth:`fold_digests` does), the
        disputes it counted and the offences proven by then, the node records before it,
        and attestation verdicts judged at its start (:meth:`_verdicts_as_of`).

        Without side effects on the keeper's state: the view is not one of :attr:`_views`
        (kept in ``_rebuilt`` while ``newest`` is the newest view, so it is built once),
        the current verdicts and keys stay, the penalty book is not saved. Offers of older
        epochs that the disputes it counts need ranks for are ranked on views rebuilt the
        same way, oldest reached last (at most :attr:`held_epochs` deep).

        Equal to the view a peer that ran through ``epoch`` built (the same view digest)
        when it holds the same inputs; it can differ where a peer restarted since cannot
        know what that peer knew then (docs/core.md, "Views of epochs a peer was down
        for"): digests of the window that arrived after the running peer folded an epoch,
        an attestation renewed since ``epoch`` (today's verdict, or none:
        :meth:`_verdicts_as_of`), the penalty book (stepped once from the newest one held
        before ``epoch``), and the ranks of older dispute offers (not rebuilt: receipts
        left out).
        """
        if self._rebuilt_under != newest:
            self._drop_rebuilt()
            self._rebuilt_under = newest
        view = self._rebuilt.get(epoch)
        if view is None:
            view = self._digest_view(epoch, self._past_book(epoch), newest=newest, past=True)
            self._rebuilt[epoch] = view
        return view

    def _drop_rebuilt(self) -> None:
        self._rebuilt, self._rebuilt_under = {}, None

    def _past_book(self, epoch: int) -> PenaltyBook:
        """The penalty book a rebuilt view of ``epoch`` steps from: the newest one held of
        an epoch before it (a held view's, or the one kept when we started), else an empty
        one; as :meth:`view` carries a book over epochs it did not build. Never a rebuilt
        view's: which epochs were rebuilt first depends on the order proofs arrived in,
        and the book, like the view, must not."""
        books = [self._start_book, *(v.penalties for v in self._views.values())]
        older = [b for b in books if b.epoch < epoch]
        return max(older, key=lambda b: b.epoch) if older else PenaltyBook()

    def _verdicts_as_of(self, records: list[SignedRecord], epoch: int) -> dict[str, AttestedNode]:
        """The attestation verdicts of a rebuilt view of ``epoch``: each attestation among
        ``records`` judged at the epoch's start, with the heartbeats among them, as the view
        of ``epoch`` judged it (:meth:`verdicts`). A node whose attestation held now is bound
        to ``epoch`` or later (renewed since: nodes renew mid-epoch, after the boundary's
        view, and the store keeps only the current one) keeps its current verdict, judged
        now, when its enclave signed a heartbeat of the liveness window before ``epoch``
        with the key attested now (it was attested and alive then); otherwise it has no
        verdict there, as a node that attested only later. The current verdict, not the
        newest held view's: just after a restart that view may have been built before the
        store synced, and judge nobody. The keeper's current verdicts, keys and liveness
        reasons are left as they were."""
        later = {
            s.signer
            for s in records
            if isinstance(s.record, Attestation) and s.record.epoch >= epoch
        }
        judged_now = dict(self._verdicts)
        state = (self._keys, self._earlier_keys, self._not_live)
        self._keys, self._earlier_keys, self._not_live = (dict(d) for d in state)
        try:
            out = self.verdicts(
                [s for s in records if not (s.signer in later and s.type == Attestation.TYPE)],
                epoch * self.epoch_s,
            )
        finally:
            self._verdicts = judged_now
            self._keys, self._earlier_keys, self._not_live = state
        for peer in sorted(later):
            current = judged_now.get(peer)
            if current is None or not current.result_key:
                continue
            beats = [s for s in records if s.signer == peer and isinstance(s.record, Heartbeat)]
            try:
                self.live_epoch(peer, current.result_key, beats, epoch)
            except AttestationError:
                continue
            out[peer] = current
        return out

    def digest_window(self, epoch: int) -> tuple[int, int]:
        """``(lo, hi)``: the digest epochs the view of ``epoch`` counts, inclusive: the
        ``window_epochs`` epochs up to ``epoch - digest_lag``."""
        hi = epoch - self.params.digest_lag
        return hi - self.reputation_params.window_epochs + 1, hi

    def fold_digests(self, epoch: int) -> bool:
        """Fold the digests of ``epoch`` held now into :attr:`pairs`, unless already
        folded (an epoch is folded once: digests arriving later do not change it, and a
        view digest names what was folded). Returns True when it folded."""
        if self.pairs.folded(epoch):
            return False
        held = self.digests_of(epoch)
        rows = count_rows(reconcile(held, epoch))
        self.pairs.fold(epoch, rows, [d.record_id for d in held])
        return True

    def digests_of(self, epoch: int) -> list[SignedRecord]:
        """The work and feedback digests held now that count for ``epoch`` (what
        :meth:`fold_digests` reconciles; the ledger settles from the same rows)."""
        # batches are filed under their last epoch: those covering ``epoch`` end at most
        # work/feedback_max_epochs - 1 later (digest_lag waits for them); a longer one
        # breaks the network's rule and counts nowhere (the same on every peer)
        held: list[SignedRecord] = []
        for kind in (WorkDigest.TYPE, FeedbackDigest.TYPE):
            most = self.params.digests.max_epochs(kind)
            for last in range(epoch, epoch + most):
                held += [
                    d
                    for d in self.store.query(type=kind, epoch=last)
                    if d.record.covers(epoch) and d.record.span <= most  # type: ignore[attr-defined]
                ]
        return held

    def _view_from_digests(self, epoch: int, book: PenaltyBook) -> View:
        """The view of ``epoch`` from folded digest count rows plus the node records (ads,
        attestations, heartbeats) and equivocation evidence (``reputation_source =
        "digests"``). Per-task records are not read: the view costs the node records, the
        new epoch's digests (folded once) and a vectorised pass over the folded rows."""
        return self._digest_view(epoch, book, newest=epoch, past=False)

    def _digest_view(self, epoch: int, book: PenaltyBook, *, newest: int, past: bool) -> View:
        """:meth:`_view_from_digests`, or with ``past`` the rebuilt view of an epoch before
        the ``newest`` view (:meth:`_rebuilt_view`): the same inputs as of ``epoch``, but
        nothing held is pruned and the keeper's verdicts stay as they are."""
        now = epoch * self.epoch_s
        lo, hi = self.digest_window(epoch)
        for e in range(max(lo, 0), hi + 1):
            self.fold_digests(e)
        if not past:
            # keep the blocks the views of the held epochs before need too (a task is
            # served on its offer's epoch's view, and a restarted peer rebuilds those it
            # holds none of): re-folding a dropped epoch later could fold other digests
            # than the first time
            self.pairs.prune(lo - self.held_epochs)
        node_types = (NodeAd.TYPE, Attestation.TYPE, Heartbeat.TYPE)
        held = [r for t in node_types for r in self.store.query(type=t)]
        # equivocations of node records and of digests are offences; those of per-task
        # records travel as proofs (not read here)
        kept = (*node_types, WorkDigest.TYPE, FeedbackDigest.TYPE)
        evidence = [r for pair in self.store.equivocations() for r in pair if r.type in kept]
        records = before_epoch(held + evidence, epoch, self.params)
        verdicts = self._verdicts_as_of(records, epoch) if past else self.verdicts(records, now)
        window = self.pairs.window(lo, hi)
        # disputed tasks of the dispute window: their records travelled as dispute proofs,
        # and count under the records path's evidence rule (attested enclave key for the
        # offer's epoch, a claim at a rank the matching gave), judged by compute_pairs.
        # A proof counts from its offer's count epoch (the epoch after its close: every
        # peer holds it by then; DisputeTiming), before its epoch's rows (digest_lag)
        disputed = []
        if self.disputes is not None:
            if not past:
                self.disputes.prune(epoch)
                # no view ranks offers older than the disputes held (DisputeBook.prune)
                self._assignments.forget_before(
                    epoch
                    - self.held_epochs
                    - self.params.dispute_lag
                    - self.reputation_params.window_epochs
                )
            disputed = self.disputes.counted(*self.dispute_window(epoch), self.dispute_timing)
        assignments = self._dispute_ranks(epoch, newest) if disputed else None
        ev, peer_at = self.pairs.widen(
            collect(records + disputed, verdicts, now=now, assignments=assignments), window
        )
        if self.offences is not None:
            # an offence of a digest of epoch E counts from the view after E's audit
            # horizon: every peer that will ever accept its proof holds it by then
            horizon = self.params.digests.audit_horizon_epochs
            if not past:
                self.offences.prune(epoch)
            proven = self.offences.offences(epoch - horizon - 1)
            if proven:
                ids = {i for off in proven for i in off.record_ids}
                ev = dataclasses.replace(
                    ev,
                    offences=(*ev.offences, *proven),
                    record_ids=tuple(sorted(set(ev.record_ids) | ids)),
                )
        table = compute_pairs(
            ev,
            window,
            now=now,
            epoch_s=self.epoch_s,
            params=self.reputation_params,
            peer_at=peer_at,
        )
        replicas = _replica_claims_of(disputed)
        recent = (hi, hi - 1, hi - 2)
        demand = ClaimedDemand(
            claims=tuple(self.pairs.node_claims(e, window, peer_at, ev.n_peers) for e in recent),
            replicas=tuple(replicas.get(e, 0) for e in recent),
        )
        return View.from_evidence(
            ev,
            epoch=epoch,
            params=self.params,
            penalties=book,
            table=table,
            digests=window.epochs,
            demand=demand,
        )

    @property
    def dispute_timing(self) -> DisputeTiming:
        """When a dispute proof of an offer counts (per offer: its epoch and deadline;
        at most :attr:`NetworkParams.dispute_lag` epochs after the offer's)."""
        p = self.params
        return DisputeTiming(p.epoch_s, p.dispute_lag, grace_s=p.proof_grace_s)

    def dispute_window(self, epoch: int) -> tuple[int, int]:
        """``(lo, hi)``: the count epochs (:meth:`DisputeTiming.count`) of the disputes
        the view of ``epoch`` counts, inclusive: the ``window_epochs`` epochs up to
        ``epoch`` (a dispute counts in ``window_epochs`` views from its count epoch)."""
        return epoch - self.reputation_params.window_epochs + 1, epoch

    def cached_view(self, epoch: int) -> View | None:
        """The view of ``epoch`` if already built, without building it."""
        return self._views.get(epoch)

    def _load_book(self) -> PenaltyBook:
        """The penalty book kept in ``book_path``; empty when absent or unreadable."""
        # Not fatal when unreadable: hard penalties come back from the evidence records at
        # the next view; only phase-outs in progress are lost
        found = _read_state(self.book_path, PenaltyBook.from_bytes, "penalty book")
        return PenaltyBook() if found is None else found

    def _load_ranks(self) -> Assignments:
        """The offers' ranks kept in ``ranks_path``; none when absent or unreadable."""
        # Not fatal when unreadable: the offers of the held epochs are ranked again on
        # rebuilt views; older ones' receipts are left out, as before ranks were kept
        found = _read_state(self.ranks_path, Assignments.from_bytes, "offer ranks")
        return Assignments() if found is None else found

    def _save_ranks(self, path: Path) -> None:
        """Write the offers' ranks to ``path``. Saved once per view built, when they
        changed (a failed save is tried again after the next view): ranks taken between
        two views and lost in a crash are taken again as after any restart."""
        if _write_state(path, self._assignments.to_bytes(), "offer ranks"):
            self._assignments.changed = False

    def _save_book(self, book: PenaltyBook) -> None:
        self._saved_book = book
        if self.book_path is not None:
            _write_state(self.book_path, book.to_bytes(), "penalty book")

    def refresh_keys(self, now: int) -> None:
        """Re-verify current attestations now (keys of nodes attested mid-epoch), with the
        heartbeats of the liveness window."""
        epoch = now // self.epoch_s
        heartbeats = [
            r
            for e in range(max(epoch - self.liveness_lag, 0), epoch + 1)
            for r in self.store.query(type=Heartbeat.TYPE, epoch=e)
        ]
        self.verdicts(
            self.store.query(type=Attestation.TYPE)
            + self.store.query(type=NodeAd.TYPE)
            + heartbeats,
            now,
        )
