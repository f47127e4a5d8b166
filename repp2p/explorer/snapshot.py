"""The explorer's data: what one peer knows about the network, as plain JSON-ready data.

Everything comes from the peer's own :class:`~repp2p.viewer.ViewKeeper`: the view of the
current epoch (built by the view service at the epoch's start; built here when a peer has
none yet), the attestation verdicts that view was built with, its reputation table and
penalty book, and the record store behind it. Nothing is taken on a node's word: a node's
row says what *this* peer concluded about it. Two peers holding the same records show the
same rows (the view digest says whether they do).

The simulated TEE is development only: every row of a node on it carries
``simulated: true`` and :data:`~repp2p.attestation.SIMULATED_LABEL`, and so does the page.

Task counts and latencies are of settled epochs only (a view counts task records from
``epoch - task_record_lag`` back), so the newest epochs in the table lag the clock.

Serving is cheap by construction: :meth:`Explorer.snapshot` (what every public GET of
``/explorer.json`` runs, on the peer's event loop) never builds a view nor replays the
ledger. The expensive parts are :meth:`Explorer.refresh` (synchronous, for tools and
tests) and :meth:`Explorer.run` (the background task a node or gateway starts): once per
epoch **while someone is watching** (a snapshot was asked for within the last
:data:`WATCH_S` seconds) it reads the store on the loop and replays the ledger in a worker
thread, from data copied on the loop (the sqlite store belongs to the loop's thread). An
unwatched peer replays nothing: the replay reads every record held, every epoch, and most
nodes' pages are never opened. The snapshot says which epoch its REP figures are from
(``rep_epoch``; None while the first replay is pending): the first request after a quiet
spell shows the last figures computed (or ``pending``), and the next tick brings them up
to date.
"""

from __future__ import annotations

import json
import logging
import statistics
from collections.abc import Callable
from importlib import resources
from typing import Any

import numpy as np
import trio

from repp2p.attestation import SIMULATED_LABEL, Policy, VerificationCache, verify_node
from repp2p.clock import ClockAPI
from repp2p.digest_ledger import HeldProofs, HeldRecords, digest_report
from repp2p.errors import AttestationError, ReppError, StoreError
from repp2p.ledger import MICRO, LedgerParams, LedgerReport, replay
from repp2p.matching import View
from repp2p.network_params import NetworkParams
from repp2p.records import RECORD_TYPES, Attestation, FeedbackDigest, SignedRecord, WorkDigest
from repp2p.reputation import AttestedNode, ReputationParams
from repp2p.reputation.evidence import OUTCOME_CODES
from repp2p.viewer import ViewKeeper

#: version of the snapshot's layout (the page checks it)
SNAPSHOT_VERSION = 1
#: how many settled epochs the task table covers
TASK_EPOCHS = 8
#: the reputation components, in the order of ``ReputationTable.components``
COMPONENTS = ("uptime", "success", "throughput", "latency", "attestation")

#: seconds after the last snapshot request during which :meth:`Explorer.run` keeps the REP
#: figures current (an open page asks every 2 s; once it is closed the replays stop)
WATCH_S = 60.0

#: a failed node's reason before the background task has found it
REASON_PENDING = "reason pending (being checked)"

#: A route's handler: no arguments, returns ``(content type, body)``.
Handler = Callable[[], tuple[str, bytes]]

_OUTCOME_NAMES = {code: name for name, code in OUTCOME_CODES.items()}

log = logging.getLogger("repp2p.explorer")


class ExplorerPending(ReppError):
    """The explorer has no view to show yet (none built since the peer started): its
    background task builds one; HTTP servers answer 503 meanwhile."""


class Explorer:
    """A peer's picture of the network for the explorer page.

    Args:
        keeper: the peer's view keeper (its store, policy, parameters and views).
        clock: the peer's clock (the current epoch and the page's "as of").
        peer_id: this peer's ID (the page marks its row).
        role: ``full`` or ``client`` (shown on the page).
        ledger: compute REP balances (a replay of the record log, once per epoch, by
            :meth:`run` or :meth:`refresh`; never by :meth:`snapshot`); off leaves ``rep``
            out of every row.
    """

    def __init__(
        self,
        keeper: ViewKeeper,
        clock: ClockAPI,
        *,
        peer_id: str = "",
        role: str = "full",
        ledger: bool = True,
    ) -> None:
        self._keeper = keeper
        self._clock = clock
        self._peer_id = peer_id
        self._role = role
        self._ledger = ledger
        # (peer, view time) -> refusal reason: the keeper's verdicts carry the outcome, not
        # the reason; a view's verdicts never change, so its reasons are found once (not a
        # store query per failed node on every snapshot)
        self._reasons: dict[tuple[str, int], str | None] = {}
        self._cache: VerificationCache = VerificationCache(256)
        self._balances: tuple[int, dict[str, Any]] | None = None
        self._digest_counts: tuple[tuple[int, ...], dict[str, dict[str, int]]] | None = None
        self._served: tuple[float, bytes] | None = None
        # when a snapshot was last asked for (the peer's clock); None: never
        self._watched_at: float | None = None

    # -- data ------------------------------------------------------------------------------

    def current_view(self) -> View:
        """The view of the current epoch (the keeper's, built now if it has none)."""
        epoch = self._clock.epoch(self._keeper.epoch_s)
        return self._keeper.cached_view(epoch) or self._keeper.view(epoch)

    def shown_view(self) -> View | None:
        """The newest view the keeper has already built, up to the current epoch (never
        builds one: at an epoch's start, until its view is built, the previous one)."""
        epoch = self._clock.epoch(self._keeper.epoch_s)
        for e in range(epoch, epoch - 4, -1):  # the keeper keeps the last four views
            view = self._keeper.cached_view(e)
            if view is not None:
                return view
        return None

    @property
    def rep_epoch(self) -> int | None:
        """The view epoch the REP figures are from; None before the first replay."""
        return None if self._balances is None else self._balances[0]

    def refresh(self) -> None:
        """Build the current view if the keeper has none, find why its failed nodes failed,
        and replay the ledger for it if not done yet: :meth:`run`'s work, done
        synchronously on the calling thread (tools, tests). Never called by a request
        handler."""
        view = self.current_view()
        for peer in self._unexplained(view):
            self._refusal(view, peer)
        if self._ledger and self.rep_epoch != view.epoch:
            figures, inputs = self._rep_inputs(view)
            self._balances = (view.epoch, figures(*inputs))

    async def refresh_async(self) -> None:
        """:meth:`refresh` for the event loop: refusal reasons are found a few nodes at a
        time (yielding between them: a view may hold many nodes with bad evidence); the
        store is read here, on the loop's thread (its sqlite connection is this thread's),
        and the replay (the long part: ~1 s for 12,000 records) runs in a worker thread on
        the copied records, so the loop keeps serving the network meanwhile."""
        view = self.current_view()  # usually the view service's, already built
        for n, peer in enumerate(self._unexplained(view)):
            self._refusal(view, peer)
            if n % 16 == 15:
                await trio.sleep(0)
        if not self._ledger or self.rep_epoch == view.epoch:
            return
        figures, inputs = self._rep_inputs(view)
        self._balances = (view.epoch, await trio.to_thread.run_sync(figures, *inputs))

    def _unexplained(self, view: View) -> list[str]:
        """Nodes of ``view`` whose attestation did not verify and whose reason is not
        found yet."""
        verdicts = view.evidence.verdicts
        return [
            peer
            for peer in view.peers
            if (v := verdicts.get(peer)) is not None
            and not v.verified
            and (peer, view.now) not in self._reasons
        ]

    def watched(self, watch_s: float = WATCH_S) -> bool:
        """Whether a snapshot was asked for within the last ``watch_s`` seconds."""
        if self._watched_at is None:
            return False
        return 0 <= self._clock.now() - self._watched_at <= watch_s

    async def run(self, tick_s: float = 1.0, watch_s: float = WATCH_S) -> None:
        """Keep the REP figures current while someone watches: every ``tick_s`` seconds of
        the peer's clock, if a snapshot was asked for within the last ``watch_s`` seconds
        and the epoch has moved on, replay the ledger for its view (:meth:`refresh_async`).
        Runs until cancelled; a store that cannot be read is logged and retried."""
        while True:
            try:
                if self.watched(watch_s):
                    await self.refresh_async()
            except (StoreError, OSError):  # a damaged store: say so, keep the peer up
                log.exception("explorer: replaying the ledger failed; retrying")
            await self._clock.sleep(tick_s)

    def snapshot(self) -> dict[str, Any]:
        """The explorer's JSON: the network as this peer sees it now. Cheap: it shows the
        newest view already built and the last REP figures computed (:meth:`refresh`,
        :meth:`run`); it never builds a view nor replays the ledger.

        Returns:
            A dict of plain data (str, int, float, bool, None, lists, dicts):
            ``version``, ``peer_id``, ``role``, ``network``, ``now``, ``epoch``,
            ``epoch_s``, ``epoch_progress`` (0..1), ``simulated_label``, ``view`` (epoch,
            digest, counts), ``nodes`` (one row per node, sorted by peer ID), ``tasks``
            (per settled epoch), ``records`` (current records by type), ``digests``
            (WorkDigest and FeedbackDigest records held, by epoch), ``rep`` (the ledger's
            epochs and supply, or None: ledger off or first replay pending),
            ``rep_status`` (``off``, ``pending`` or ``ready``) and ``rep_epoch`` (the
            view epoch the REP figures are from, or None).

        Raises:
            ExplorerPending: no view has been built yet.
        """
        params = self._keeper.params
        now = self._clock.now()
        self._watched_at = now  # someone is watching: run() keeps the REP figures current
        epoch = self._clock.epoch(params.epoch_s)
        view = self.shown_view()
        if view is None:
            raise ExplorerPending("the explorer's first view is being built; retry shortly")
        balances = self._balances[1] if self._ledger and self._balances is not None else None
        nodes = [self._node_row(view, i, balances) for i in range(len(view.peers))]
        store = self._keeper.store
        return {
            "version": SNAPSHOT_VERSION,
            "peer_id": self._peer_id,
            "role": self._role,
            "network": params.name,
            "now": round(now, 3),
            "epoch": epoch,
            "epoch_s": params.epoch_s,
            "epoch_progress": round(now / params.epoch_s - epoch, 4),
            "simulated_label": SIMULATED_LABEL,
            "view": {
                "epoch": view.epoch,
                "digest": view.digest.hex(),
                "nodes": len(view.peers),
                "eligible": int(np.count_nonzero(view.base_eligible)),
                "tier": int(np.count_nonzero(view.tier & view.base_eligible)),
                "demand": int(view.demand),
                "penalised": len(view.penalties.penalised(view.epoch)),
                "offences": len(view.reputation.offences),
            },
            "nodes": nodes,
            "tasks": _task_epochs(view),
            "records": {t: store.count(t) for t in RECORD_TYPES},
            "digests": self._digests(),
            "rep": None if balances is None else balances["summary"],
            "rep_status": "off" if not self._ledger else "pending" if balances is None else "ready",
            "rep_epoch": self.rep_epoch if self._ledger else None,
        }

    def _digests(self) -> dict[str, dict[str, int]]:
        """Digest parts held per epoch, by type; decoded again only when a count changed
        (a store holds thousands of digests, and the page asks every 2 s)."""
        store = self._keeper.store
        key = tuple(store.count(t) for t in (WorkDigest.TYPE, FeedbackDigest.TYPE))
        if self._digest_counts is None or self._digest_counts[0] != key:
            counts = {
                t: _digest_counts(store.query(type=t))
                for t in (WorkDigest.TYPE, FeedbackDigest.TYPE)
            }
            self._digest_counts = (key, counts)
        return self._digest_counts[1]

    def _node_row(self, view: View, i: int, balances: dict[str, Any] | None) -> dict[str, Any]:
        peer = view.peers[i]
        ev, table = view.evidence, view.reputation
        ad, verdict = ev.ads.get(peer), ev.verdicts.get(peer)
        rep = table.get(peer)
        column = table.components[:, table.index(peer)]
        # The view's ``tee_kind`` is the ad's word; only a verified attestation establishes
        # a kind. A node may claim "nitro" in its ad while its evidence is simulated (it is
        # then ineligible, but still listed): the row shows the established kind, and the
        # label whenever any of its records says simulated.
        claimed = ad.tee_kind if ad else view.tee_kind[i]
        attested = verdict.tee_kind if verdict else ""
        verified = bool(verdict and verdict.verified)
        tee_kind = (attested if verified else "") or claimed or attested
        simulated = "simulated" in (claimed, attested)
        entry = view.penalties.entry(peer)
        row: dict[str, Any] = {
            "peer_id": peer,
            "self": peer == self._peer_id,
            "tee_kind": tee_kind,
            "tee_kind_verified": verified,
            "tee_kind_claimed": claimed,
            "simulated": simulated,
            "label": SIMULATED_LABEL if simulated else "",
            "attestation": self._attestation(view, peer),
            "engines": [e.engine_id for e in ad.engines] if ad else [],
            "price": int(view.price[i]),
            "capacity": ad.capacity if ad else 0,
            "permille": int(view.permille[i]),
            "quality": int(view.quality[i]) if len(view.quality) else None,
            "standing": round(rep.standing, 4),
            "components": {
                name: round(float(value), 4) for name, value in zip(COMPONENTS, column, strict=True)
            },
            "newcomer": bool(view.is_newcomer[i]),
            "offender": rep.is_offender,
            "eligible": bool(view.base_eligible[i]),
            "tier": bool(view.tier[i] and view.base_eligible[i]),
            "penalty": {
                "penalised": entry.until_epoch > view.epoch,
                "until_epoch": entry.until_epoch,
                "strikes": entry.strikes,
                "hard": entry.hard,
                "offences": [o.kind for o in entry.evidence],
            },
            "rep": None,
        }
        if balances is not None:
            row["rep"] = balances["peers"].get(peer, {"final": 0, "pending": 0})
        return row

    def _attestation(self, view: View, peer: str) -> dict[str, Any]:
        """The verdict this peer's view holds on ``peer``'s attestation, with its reason."""
        verdict = view.evidence.verdicts.get(peer)
        if verdict is None:
            return {"verdict": "none", "reason": "no attestation record", "attested_at": None}
        if verdict.verified:
            return {
                "verdict": "verified",
                "reason": None,
                "attested_at": verdict.attested_at,
                "engines_established": len(verdict.measurements),
            }
        return {
            "verdict": "failed" if verdict.failed else "unverified",
            # found by the background task (a verification per node: not for a request)
            "reason": self._reasons.get((peer, view.now), REASON_PENDING),
            "attested_at": verdict.attested_at,
            "engines_established": 0,
        }

    def _refusal(self, view: View, peer: str) -> str | None:
        """Why ``peer``'s attestation did not verify at ``view``'s time: the verification
        the view ran, repeated for its reason (cached per node and view time)."""
        key = (peer, view.now)
        if key in self._reasons:
            return self._reasons[key]
        records = self._keeper.store.query(type=Attestation.TYPE, signer=peer)
        if not records:
            reason = "attestation record no longer held"
        else:
            signed = records[-1]
            rec: Attestation = signed.record  # type: ignore[assignment]
            ad = view.evidence.ads.get(peer)
            engines = tuple(e.engine_id for e in ad.engines) if ad else ()
            try:
                verify_node(
                    peer,
                    rec.tee_kind,
                    rec.evidence,
                    rec.collateral,
                    rec.gpu_evidence,
                    rec.enc_key,
                    rec.result_key,
                    rec.epoch,
                    rec.nonce,
                    self._keeper.policy,
                    view.now,
                    engines=engines,
                    current_epoch=view.epoch,
                    epoch_s=self._keeper.epoch_s,
                    cache=self._cache,
                )
                # the evidence holds: what failed is its enclave's liveness, or nothing
                reason = self._keeper.not_live_reason(peer) or "verified since the view was built"
            except AttestationError as exc:
                reason = str(exc)  # "<reason>: <detail>"
        if len(self._reasons) > 4096:  # keep this view's reasons, drop older views'
            self._reasons = {k: v for k, v in self._reasons.items() if k[1] == view.now}
        self._reasons[key] = reason
        return reason

    def _rep_inputs(self, view: View) -> tuple[Callable[..., dict[str, Any]], tuple[Any, ...]]:
        """``(figures, inputs)``: the replay for ``view`` and what it reads, copied from the
        store on the calling thread: the records (and the other half of each equivocation),
        the view's verdicts, and each offer's assigned ranks resolved now (the keeper's
        ranking reads its views and its store, so the worker thread must not call it). On a
        digest network: the node records, digests and proofs the digest views read
        (:class:`~repp2p.digest_ledger.HeldRecords`), settled from digests."""
        params = self._keeper.params
        if params.reputation_source == "digests":
            # a digest network's peer holds only its own tasks' records: the ledger
            # settles from the digests and digest views (docs/ledger.md)
            held = HeldRecords(self._keeper.store)
            proofs = HeldProofs.of(self._keeper)
            verdicts = dict(view.evidence.verdicts)
            policy = self._keeper.policy
            return _digest_rep_figures, (held, proofs, verdicts, view.now, params, policy)
        store = self._keeper.store
        evidence = [r for pair in store.equivocations() for r in pair]
        records = store.query() + evidence
        verdicts = dict(view.evidence.verdicts)
        ranks_of = self._keeper.assignments(view.epoch + 1, records, verdicts)
        ranks = {s.record_id: ranks_of(s) for s in records if s.type == "TaskOffer"}
        inputs = (records, verdicts, view.now, params.epoch_s, params.ledger, params.reputation)
        return _rep_figures, (*inputs, ranks)

    # -- HTTP ------------------------------------------------------------------------------

    def routes(self, prefix: str = "/explorer") -> list[tuple[str, Handler]]:
        """``[(path, handler)]`` for an HTTP server: ``prefix`` (the page) and
        ``prefix + ".json"`` (:meth:`snapshot`). Handlers take no arguments and return
        ``(content type, body)``; the page fetches the JSON from its own path + ``.json``.
        """
        page = page_html()
        return [
            (prefix, lambda: ("text/html; charset=utf-8", page)),
            (prefix + ".json", lambda: ("application/json", self.snapshot_json())),
        ]

    def snapshot_json(self, max_age_s: float = 1.0) -> bytes:
        """:meth:`snapshot` as UTF-8 JSON, reused for ``max_age_s`` seconds (every open
        page asks every 2 s; a node answers them all with one snapshot per second)."""
        now = self._clock.now()
        if self._served is None or not 0 <= now - self._served[0] < max_age_s:
            self._served = (now, json.dumps(self.snapshot(), sort_keys=True).encode())
        return self._served[1]


def _rep_figures(
    records: list[SignedRecord],
    verdicts: dict[str, AttestedNode],
    now: int,
    epoch_s: int,
    ledger: LedgerParams,
    reputation: ReputationParams,
    ranks: dict[bytes, Any],
) -> dict[str, Any]:
    """REP balances replayed from ``records`` as of ``now``: the snapshot's ``rep`` summary
    and per-peer figures. Pure on its arguments (safe in a worker thread)."""
    report = replay(
        records,
        verdicts,
        now=now,
        epoch_s=epoch_s,
        params=ledger,
        reputation_params=reputation,
        assignments=lambda offer: ranks.get(offer.record_id),
    )
    return _figures(report)


def _digest_rep_figures(
    held: HeldRecords,
    proofs: HeldProofs,
    verdicts: dict[str, AttestedNode],
    now: int,
    params: NetworkParams,
    policy: Policy,
) -> dict[str, Any]:
    """:func:`_rep_figures` of a digest network: settled from the digests and digest views
    (:func:`repp2p.digest_ledger.digest_report`) on the copies made on the event loop.
    Pure on its arguments (safe in a worker thread)."""
    return _figures(digest_report(held, policy, params, now=now, verdicts=verdicts, proofs=proofs))


def _figures(report: LedgerReport) -> dict[str, Any]:
    """The snapshot's ``rep`` summary and per-peer figures of a ledger report."""
    peers = set(report.final.balances) | set(report.pending.balances)
    return {
        "summary": {
            "unit": "micro-REP",
            "micro": MICRO,
            "final_through_epoch": report.final.epoch,
            "pending_through_epoch": report.pending.epoch,
            "final_supply": report.final.supply,
            "pending_supply": report.pending.supply,
        },
        "peers": {
            p: {"final": report.final.balance(p), "pending": report.pending.balance(p)}
            for p in peers
        },
    }


def page_html() -> bytes:
    """The explorer page (package data: one static file, no external assets)."""
    return resources.files("repp2p.explorer").joinpath("explorer.html").read_bytes()


def _task_epochs(view: View) -> list[dict[str, Any]]:
    """Tasks of the last settled epochs the view holds: offers, claims, receipts, feedback
    by outcome and the median feedback latency."""
    ev = view.evidence
    if not len(ev.offer_epoch):
        return []
    last = int(ev.offer_epoch.max())
    out = []
    for epoch in range(max(int(ev.offer_epoch.min()), last - TASK_EPOCHS + 1), last + 1):
        offers = ev.offer_epoch == epoch
        claims = offers[ev.claim_offer] if len(ev.claim_offer) else np.zeros(0, bool)
        receipts = offers[ev.receipt_offer] if len(ev.receipt_offer) else np.zeros(0, bool)
        fb = offers[ev.fb_offer] if len(ev.fb_offer) else np.zeros(0, bool)
        latency = ev.fb_latency_ms[fb & (ev.fb_outcome == OUTCOME_CODES["ok"])]
        outcomes: dict[str, int] = {}
        for code in ev.fb_outcome[fb].tolist():
            name = _OUTCOME_NAMES.get(code, str(code))
            outcomes[name] = outcomes.get(name, 0) + 1
        out.append(
            {
                "epoch": epoch,
                "offers": int(np.count_nonzero(offers)),
                "claims": int(np.count_nonzero(claims)),
                "receipts": int(np.count_nonzero(receipts)),
                "feedback": outcomes,
                "latency_ms_p50": statistics.median(latency.tolist()) if len(latency) else None,
            }
        )
    return out


def _digest_counts(records: list[Any]) -> dict[str, int]:
    """``{epoch: digest parts held}`` (epochs as strings: JSON keys), newest epochs last."""
    out: dict[str, int] = {}
    for epoch in sorted(s.record.epoch for s in records):
        out[str(epoch)] = out.get(str(epoch), 0) + 1
    return out
