"""The simulation: behaviours, clients, churn and the task flow, on the kernel's virtual clock.

What runs per epoch ``E`` (an event at ``E * epoch_s``):

1. online nodes emit heartbeats for ``E`` (with a heartbeat period ``H > 1``, those whose
   slot is due and those that just came online); whitewashers whose identity is phased out leave;
2. the evidence of the last ``window_epochs`` epochs becomes canonical columns
   (``Evidence.from_columns``) and ``View.from_evidence`` builds the epoch's view: the live
   node's reputation, penalty book, eligibility and weights (with ``reputation = false``
   the ranking uses capacity weights over attested, online nodes instead);
3. the ledger settles epoch ``E - 1 - grace_epochs`` with ``repp2p.ledger.settle`` on that
   evidence, table and book (the same inputs ``repp2p.ledger.replay`` uses);
4. ``ticks_per_epoch`` task batches are scheduled. Each batch ranks its tasks with the
   matching package's array path (``rank_first_many``; ``rank_fast`` for failover and
   redundancy), exactly the ranking every live peer would compute on the same view, then
   draws network latency, loss and the assigned nodes' behaviour, and appends offers,
   claims, receipts and feedback to the evidence.

Churn (leave, crash, rejoin, new joins) runs as kernel events at exponential times. A node
that went offline after the view was built is still ranked and fails to claim, so the next
rank claims after ``claim_timeout_ms`` (the live failover rule).

Deliberate simplifications (docs/simulations.md): records are compact columns (no encoding,
no signatures: ``records = "columns"``, the only mode); messages other than the claim and the
result are not lost; a late result counts as a timeout; the client judges a k=1 result
wrong with probability ``detect_prob``.

Capacity (issue 15): a node declares ``node_capacity`` tasks at once and
``node_capacity * ticks_per_epoch`` tasks per epoch (``NodeAd.throughput``). A tick's tasks
arrive together; a node runs ``capacity`` of them at once and each further wave of
``capacity`` waits ``queue_ms`` more, so a node given more than about
``deadline / queue_ms`` times its capacity in a tick times out (heartbeat load stays 0: the
queue drains within the tick).

Digests (issue 14): with the scenario's ``[digests]`` table enabled, each epoch's tasks are
followed through the digest flow after the epoch closes (``repp2p.sim.digests``): the
digests every party publishes, their audits (and detection of misreported leaves, whose
publishers become proven offenders at the audit boundary), and per-peer bytes, records
verified and CPU. Without the table nothing of it runs and a run is unchanged.

Views from digests (issue 14): with ``reputation_source = "digests"`` step 2 is the live
digest path instead (``repp2p.sim.digest_views``): each closed epoch's tasks are reconciled
into the (client, node) count rows both sides' digests would report, folded once into a
``PairState`` at ``digest_lag``, and the view is ``compute_pairs`` over the folded window
plus the disputed tasks' offers and receipts (from each offer's count epoch, by its epoch
and deadline, at most ``dispute_lag`` epochs after it, as the live keeper reads dispute
proofs); the ledger settles each epoch from its digest
rows (``digest_work_units``) once they are folded. Without it nothing of this runs.

Disputes (issue 15): a k = 1 result the client reports wrong, and a k >= 2 task whose
receipts disagree, is escalated one replica at a time down the task's ranking (the same
matching) until ``repp2p.reputation.disputes.dispute_verdicts`` is confident under the
view's standings, at most ``MatchingParams.dispute_max_replicas`` replicas. Replicas claim
and post receipts like any rank, and get their client's feedback as a live client signs it
(``_replica_feedback``); a confident verdict on the right output gives the honest client
its result (counted ok when in time).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np

from repp2p.ledger import LedgerState, digest_work_units, settle, work_units
from repp2p.matching import View, beacon, rank_fast, rank_first_many, task_words
from repp2p.reputation import Evidence, PenaltyBook
from repp2p.reputation.disputes import dispute_verdicts
from repp2p.reputation.heartbeats import heartbeat_slot
from repp2p.sim.digest_views import DigestViews, reconcile_epoch
from repp2p.sim.digests import DigestFlow
from repp2p.sim.kernel import Kernel
from repp2p.sim.scenario import BEHAVIOURS, Scenario

HONEST, LAZY, WRONG, ON_OFF, SYBIL, WHITEWASH, SELF_DEALER = range(7)
#: Task outcome codes, as the honest client saw them (metrics and the trace hash).
OK, WRONG_ACCEPTED, WRONG_DETECTED, TIMEOUT, UNASSIGNED = range(5)
_FB_OK, _FB_WRONG, _FB_TIMEOUT = 0, 1, 2
#: Output ids per offer (the right one, the colluders' one, one per independent receipt).
_OUTS = 32
_BATCH = 16  # tasks per rank_first_many call (a T x N matrix): fastest on 10k-node views


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values (0: equal, ->1: concentrated)."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    n = len(v)
    if n == 0 or v.sum() <= 0:
        return 0.0
    cum = np.cumsum(v)
    return float((n + 1 - 2 * (cum / cum[-1]).sum()) / n)


class _Table:
    """Append-only column chunks per epoch (offer ids are global and increasing)."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.chunks: dict[int, list[tuple[np.ndarray, ...]]] = {}

    def add(self, epoch: int, *cols: np.ndarray) -> None:
        if len(cols[0]):
            self.chunks.setdefault(epoch, []).append(tuple(np.asarray(c, np.int64) for c in cols))

    def prune(self, first_epoch: int) -> None:
        for e in [e for e in self.chunks if e < first_epoch]:
            del self.chunks[e]

    def columns(self) -> list[np.ndarray]:
        parts = [c for e in sorted(self.chunks) for c in self.chunks[e]]
        if not parts:
            return [np.zeros(0, np.int64) for _ in self.names]
        return [np.concatenate([p[i] for p in parts]) for i in range(len(self.names))]

    def rows(self) -> int:
        return sum(len(c[0]) for chunks in self.chunks.values() for c in chunks)


@dataclasses.dataclass
class EpochStats:
    """Counters of one epoch (tasks of honest clients unless named otherwise)."""

    tasks: int = 0
    ok: int = 0
    wrong_accepted: int = 0
    wrong_detected: int = 0
    timeout: int = 0
    unassigned: int = 0
    to_malicious: int = 0
    all_tasks: int = 0
    latencies: list = dataclasses.field(default_factory=list)
    by_behaviour: dict = dataclasses.field(default_factory=dict)


class Simulation:
    """One run of a :class:`Scenario` with one seed. ``run()`` returns the results.

    Args:
        scenario: the question.
        seed: overrides ``scenario.seed``.
        on_epoch: called as ``on_epoch(epoch, epochs)`` after each epoch (progress bars).
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        seed: int | None = None,
        on_epoch: Callable[[int, int], None] | None = None,
    ) -> None:
        self.sc = s = scenario
        self.seed = s.seed if seed is None else seed
        streams = np.random.SeedSequence(self.seed).spawn(5)
        self.rng_init, self.rng_task, self.rng_net, self.rng_behave, self.rng_churn = (
            np.random.Generator(np.random.PCG64(x)) for x in streams
        )
        self.on_epoch = on_epoch
        self.kernel = Kernel()
        # Self-dealers (docs/simulations.md, "Self-dealing"): one invented client each,
        # after the honest clients, who alone draw the task load
        n_invented = sum(
            round(a.share * s.nodes) + a.count
            for a in s.adversaries
            if a.behaviour == "self_dealer"
        )
        # Digests (issue 14): a sixth stream, spawned after the five above so that their
        # draws are unchanged; used only when the scenario enables [digests].
        self.flow: DigestFlow | None = None
        if s.digests.enabled:
            rng_digest = np.random.Generator(
                np.random.PCG64(np.random.SeedSequence(self.seed).spawn(6)[5])
            )
            self.flow = DigestFlow(
                s.digests,
                s.digest_params,
                s.clients + n_invented,
                s.epoch_s,
                self.seed,
                rng_digest,
                reattest_period_s=s.network_params.reputation.reattest_period_s,
            )
        self.epoch_ms = s.epoch_s * 1000
        # The parameters the simulated peers share, as a live network's file gives them.
        self.params = s.network_params
        self.rp, self.mp, self.lp = self.params.reputation, self.params.matching, self.params.ledger
        # Views from digests (issue 14): the live keeper's fold-and-view path, and the
        # disputed tasks (their offers and receipts travel individually, as proofs).
        self.digest_views: DigestViews | None = None
        self.disputed: _Table | None = None
        if s.reputation_source == "digests":
            self.digest_views = DigestViews(self.params, redundancy=s.redundancy)
            # per disputed offer, at k = 1 the node the client's verdict is on (-1: k >= 2)
            self.disputed = _Table(("offer", "node"))
        # clients: peer indices 0..C-1 ("c..." sorts before "n...")
        c = s.clients
        self.n_task_clients = c
        self.client_names = [f"c{i:09d}" for i in range(c + n_invented)]
        n_bad = round(c * s.malicious_clients)
        self.client_bad = np.zeros(c + n_invented, bool)
        self.client_bad[self.rng_init.permutation(c)[:n_bad]] = True
        # regions: drawn only when there are several (keeps single-region runs unchanged)
        self.client_region = np.concatenate(
            (
                self.rng_init.integers(0, s.regions, c) if s.regions > 1 else np.zeros(c, np.int64),
                np.zeros(n_invented, np.int64),
            )
        )
        # node identities: peer index C + i
        self.node_names: list[str] = []
        cols = ("behaviour", "group", "attested", "capacity", "joined")
        self._node_cols: dict[str, list] = {k: [] for k in cols}
        self._node_cols["speed"] = []
        self._node_cols["region"] = []
        plan: list[tuple[int, int, int]] = []  # (behaviour, group, join_epoch)
        n_adv = 0
        for g, adv in enumerate(s.adversaries):
            b = BEHAVIOURS.index(adv.behaviour)
            k = round(adv.share * s.nodes)
            n_adv += k
            plan += [(b, g, adv.join_epoch)] * k
            plan += [(b, g, adv.join_epoch)] * adv.count
        plan = [(HONEST, -1, 0)] * max(0, s.nodes - n_adv) + plan
        for b, g, join in plan:
            self._new_identity(b, g, join)
        self._freeze_nodes()
        # per node, the client it invented (self-dealers; -1: none)
        self.dealer_client = np.full(self.n_nodes, -1, np.int64)
        dealers = np.flatnonzero(self.behaviour == SELF_DEALER)
        self.dealer_client[dealers] = c + np.arange(len(dealers), dtype=np.int64)
        self.self_tasks_of = np.zeros(self.n_nodes, np.int64)  # tasks served to them
        self.online = np.zeros(self.n_nodes, bool)
        # heartbeat periods (ReputationParams.heartbeat_period_epochs): online at the last
        # epoch start (a node that was not heartbeats at once, as the live schedule does),
        # each identity's slot, and each epoch's online nodes for the digest flow
        self.was_online = np.zeros(self.n_nodes, bool)
        self._hb_slots: list[int] = []
        self._online_at: dict[int, np.ndarray] = {}
        self.alive = np.ones(self.n_nodes, bool)
        self.first_cheat = np.full(self.n_nodes, -1, np.int64)
        self.phased = np.full(self.n_nodes, -1, np.int64)
        self.tasks_of = np.zeros(self.n_nodes, np.int64)
        self.lost_of = np.zeros(self.n_nodes, np.int64)  # honest clients' failed tasks
        self.caught = np.full(self.n_nodes, -1, np.int64)  # first epoch out of the tier
        self.ever_penalised = np.zeros(self.n_nodes, bool)
        # first epoch a node is a proven offender (a misreported digest caught by audit)
        self.offender_from = np.full(self.n_nodes, np.iinfo(np.int64).max, np.int64)
        self.busy = np.zeros(self.n_nodes, np.int64)  # tasks queued in the current tick
        # evidence tables
        self.offers = _Table(("client", "epoch", "deadline"))
        self.claims = _Table(("node", "offer"))
        self.receipts = _Table(("node", "offer", "output"))
        self.feedback = _Table(("client", "node", "offer", "outcome", "latency", "rating"))
        self.heartbeats = _Table(("node", "epoch", "load"))
        self.n_offers = 0
        self.offer_base: dict[int, int] = {}
        self.protocol_events = 0
        self.book = PenaltyBook()
        self.ledger = LedgerState()
        self.trace = hashlib.sha256(b"repp2p/1/sim-trace\0")
        self.rows: list[dict[str, Any]] = []
        self.stats = EpochStats()
        self.view: View | None = None
        self.epoch = -1
        for i, (_b, _g, join) in enumerate(plan):
            self.kernel.schedule(join * self.epoch_ms, self._join, i)

    # -- identities ------------------------------------------------------------------------
    def _new_identity(self, behaviour: int, group: int, join_epoch: int) -> int:
        i = len(self.node_names)
        self.node_names.append(f"n{i:09d}")
        adv = self.sc.adversaries[group] if group >= 0 else None
        nc = self._node_cols
        nc["behaviour"].append(behaviour)
        nc["group"].append(group)
        nc["attested"].append(adv.attested if adv is not None else True)
        nc["capacity"].append(self.sc.node_capacity)
        nc["joined"].append(join_epoch)
        nc["speed"].append(float(np.exp(self.rng_init.normal(0.0, self.sc.exec_sigma))))
        regions = self.sc.regions
        nc["region"].append(int(self.rng_init.integers(0, regions)) if regions > 1 else 0)
        return i

    def _freeze_nodes(self) -> None:
        nc = self._node_cols
        self.n_nodes = len(self.node_names)
        self.behaviour = np.array(nc["behaviour"], np.int64)
        self.group = np.array(nc["group"], np.int64)
        self.attested = np.array(nc["attested"], bool)
        self.capacity = np.array(nc["capacity"], np.int64)
        self.joined = np.array(nc["joined"], np.int64)
        self.speed = np.array(nc["speed"], np.float64)
        self.region = np.array(nc["region"], np.int64)
        advs = self.sc.adversaries
        pick = self.group.clip(0)

        def per_group(attr: str, default: float) -> np.ndarray:
            vals = np.array([getattr(a, attr) for a in advs] or [default], np.float64)
            return np.where(self.group >= 0, vals[pick], default)

        self.wrong_prob = per_group("wrong_prob", 0.0)
        self.drop_prob = np.where(self.behaviour == LAZY, per_group("drop_prob", 0.0), 0.0)
        self.delay_factor = np.where(self.behaviour == LAZY, per_group("delay_factor", 1.0), 1.0)
        self.on_epochs = per_group("on_epochs", 0).astype(np.int64)
        self.collude = per_group("collude", 0.0) > 0
        self.off_epochs = per_group("off_epochs", 1).astype(np.int64)
        self.digest_fault = per_group("digest_fault", 0.0)
        self.self_tasks = per_group("self_tasks", 0).astype(np.int64)
        self.grind = per_group("grind", 1.0) > 0
        self.malicious = self.behaviour != HONEST

    def _grow(self, extra: int) -> None:
        self._freeze_nodes()
        names = ("online", "first_cheat", "phased", "tasks_of", "lost_of", "alive", "caught")
        names = (*names, "was_online")
        names = (*names, "ever_penalised", "busy", "offender_from", "dealer_client")
        for name in (*names, "self_tasks_of"):
            arr = getattr(self, name)
            fill = {"online": False, "alive": True, "first_cheat": -1, "phased": -1}.get(name, 0)
            fill = -1 if name == "dealer_client" else fill
            fill = np.iinfo(np.int64).max if name == "offender_from" else fill
            fill = -1 if name == "caught" else fill
            setattr(self, name, np.concatenate((arr, np.full(extra, fill, arr.dtype))))

    # -- churn events ----------------------------------------------------------------------
    def _join(self, i: int) -> None:
        if not self.alive[i]:
            return
        self.online[i] = True
        self._schedule_leave(i)

    def _schedule_leave(self, i: int) -> None:
        s = self.sc
        if s.mean_up_epochs > 0 and self.behaviour[i] != WHITEWASH:
            up = self.rng_churn.exponential(s.mean_up_epochs) * self.epoch_ms
            self.kernel.after(max(1, int(up)), self._leave, i)

    def _leave(self, i: int) -> None:
        self.online[i] = False
        self._churn_events += 1
        down = self.rng_churn.exponential(max(self.sc.mean_down_epochs, 1e-9)) * self.epoch_ms
        self.kernel.after(max(1, int(down)), self._join, i)

    _churn_events = 0
    escalated_tasks = 0  # tasks escalated to replicas (disputes)
    replica_tasks = 0  # replica executions those escalations cost
    recovered = 0  # honest clients' noticed wrong results that a verdict put right

    def _new_joiner(self) -> None:
        i = self._new_identity(HONEST, -1, self.epoch)
        self._grow(1)
        self._join(i)

    def _whitewash(self, i: int) -> None:
        """Leave for good and come back later under a fresh identity."""
        self.online[i] = False
        self.alive[i] = False
        delay = self.sc.adversaries[self.group[i]].rejoin_epochs * self.epoch_ms
        self.kernel.after(max(1, delay), self._rejoin_as_new, i)

    def _rejoin_as_new(self, old: int) -> None:
        j = self._new_identity(int(self.behaviour[old]), int(self.group[old]), self.epoch)
        self._grow(1)
        self._join(j)

    # -- epochs ----------------------------------------------------------------------------
    def _peers(self) -> tuple[str, ...]:
        return tuple(self.client_names) + tuple(self.node_names)

    def _prune_tables(self) -> None:
        first = self.epoch - self.rp.window_epochs
        tables = (self.offers, self.claims, self.receipts, self.feedback, self.heartbeats)
        if self.digest_views is None or self.disputed is None:
            for t in tables:
                t.prune(first)
            return
        # digest views read the disputed tasks whose count epoch is in their dispute
        # window (offers at most ``dispute_lag`` epochs before it): keep those tables
        tasks = (self.offers, self.claims, self.receipts, self.disputed)
        dv = self.digest_views
        dispute_first = dv.dispute_timing.offer_epochs(*dv.dispute_window(self.epoch))[0]
        for t in tables:
            t.prune(dispute_first if t in tasks else first)
        self.disputed.prune(dispute_first)

    def _offers_base(self) -> int:
        """The offer id of the first offer still held (offer ids are contiguous)."""
        return min((self.offer_base[e] for e in self.offers.chunks), default=self.n_offers)

    def _node_columns(self) -> dict[str, Any]:
        """The per-peer evidence columns and heartbeats (what a view reads of the node
        records: ads, attestation verdicts, heartbeats, proven offences)."""
        c, n = len(self.client_names), self.n_nodes
        hn, he, hl = self.heartbeats.columns()
        is_node = np.concatenate((np.zeros(c, bool), np.ones(n, bool)))
        verified = np.concatenate((np.zeros(c, bool), self.attested))
        extra = {}
        if self.flow is not None:  # proven digest offences (only with [digests])
            offender = self.offender_from <= self.epoch
            extra["equivocated"] = np.concatenate((np.zeros(c, bool), offender))
        return dict(
            is_node=is_node,
            capacity=np.concatenate((np.zeros(c, np.int64), self.capacity)),
            throughput=np.concatenate(
                (np.zeros(c, np.int64), self.capacity * self.sc.ticks_per_epoch)
            ),
            verified=verified,
            consistent=verified,
            attested_at=np.where(is_node, self.epoch * self.sc.epoch_s, 0),
            hb_node=hn + c,
            hb_epoch=he,
            hb_load=hl,
            **extra,
        )

    def _evidence(self) -> Evidence:
        c = len(self.client_names)
        self._prune_tables()
        base = self._offers_base()
        oc, oe, od = self.offers.columns()
        cn, co = self.claims.columns()
        rn, ro, rout = self.receipts.columns()
        fc, fn, fo, fout, flat, frat = self.feedback.columns()
        return Evidence.from_columns(
            self._peers(),
            offer_client=oc,
            offer_epoch=oe,
            offer_deadline_ms=od,
            claim_node=cn + c,
            claim_offer=co - base,
            receipt_node=rn + c,
            receipt_offer=ro - base,
            receipt_output=rout - _OUTS * base,
            fb_client=fc,
            fb_node=fn + c,
            fb_offer=fo - base,
            fb_outcome=fout,
            fb_latency_ms=flat,
            fb_rating=frat,
            **self._node_columns(),
        )

    def _dispute_columns(self) -> dict[str, np.ndarray]:
        """The offers and receipts (the first k and every replica) of the disputed tasks
        whose count epoch (per offer, from its epoch and deadline:
        ``DigestViews.dispute_counts``) is in the dispute window, as the live keeper reads
        proofs (``DigestViews.dispute_window``), and nothing of the other tasks: on a
        digest network a disputed task travels individually, as a proof, and
        ``compute_pairs`` judges it. At k = 1 also the client's ``wrong`` verdict each
        (contested) proof carries."""
        assert self.disputed is not None and self.digest_views is not None
        c = len(self.client_names)
        dv = self.digest_views
        lo, hi = dv.dispute_window(self.epoch)
        first, last = dv.dispute_timing.offer_epochs(lo, hi)
        parts = [
            cols[0]
            for e in sorted(self.disputed.chunks)
            if first <= e <= last
            for cols in self.disputed.chunks[e]
        ]
        dis = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
        base = self._offers_base()
        oc, oe, od = self.offers.columns()
        count = dv.dispute_counts(oe[dis - base], od[dis - base])
        dis = dis[(lo <= count) & (count <= hi)]
        rn, ro, rout = self.receipts.columns()
        mine = np.isin(ro, dis)
        out = {
            "offer_client": oc[dis - base],
            "offer_epoch": oe[dis - base],
            "offer_deadline_ms": od[dis - base],
            "receipt_node": rn[mine] + c,
            "receipt_offer": np.searchsorted(dis, ro[mine]),
            "receipt_output": rout[mine] - _OUTS * base,
        }
        if self.sc.redundancy == 1:
            # every disputed task is a contested k = 1 one, whose proof carries the
            # client's wrong verdict on the node that ran it (not its feedback on the
            # replicas): the live proof's verdict, counted as its wrong
            fc, fn, fo, fout, flat, frat = self.feedback.columns()
            d_offer, d_node = self.disputed.columns()
            m = max(len(self.node_names), 1)
            v = np.isin(fo * m + fn, d_offer * m + d_node) & np.isin(fo, dis)
            v &= fout == _FB_WRONG
            out.update(
                fb_client=fc[v],
                fb_node=fn[v] + c,
                fb_offer=np.searchsorted(dis, fo[v]),
                fb_outcome=fout[v],
                fb_latency_ms=flat[v],
                fb_rating=frat[v],
            )
        return out

    def _digest_view(self, epoch: int) -> tuple[View, Any, Evidence]:
        """The view of ``epoch`` from folded digest rows (``reputation_source =
        "digests"``)."""
        assert self.digest_views is not None
        self._prune_tables()
        return self.digest_views.view(
            epoch, self._peers(), self._node_columns(), self._dispute_columns(), self.book
        )

    def _reconcile(self, e: int) -> None:
        """Epoch ``e``'s digests, reconciled, kept until a view folds them."""
        assert self.digest_views is not None
        (offer_client,) = _epoch_columns(self.offers, e, 1)
        base = self.offer_base.get(e, 0)
        cn, co = _epoch_columns(self.claims, e, 2)
        rn, ro, _out = _epoch_columns(self.receipts, e, 3)
        fc, fn, _fo, fout, flat, _rating = _epoch_columns(self.feedback, e, 6)
        published = np.zeros(self.n_nodes, bool)
        published[_epoch_columns(self.heartbeats, e, 1)[0]] = True
        published[cn] = True
        recon = reconcile_epoch(
            e,
            self.client_names,
            self.node_names,
            claims=(offer_client[co - base], cn),
            receipts=(offer_client[ro - base], rn),
            feedback=(fc, fn, fout, flat),
            node_published=published,
            digest_fault=self.digest_fault,
        )
        self.digest_views.add_epoch(recon)

    def _cheating(self, epoch: int) -> np.ndarray:
        b = self.behaviour
        cycle = self.on_epochs + self.off_epochs
        phase = (epoch - self.joined) % np.maximum(cycle, 1)
        on_off = (b == ON_OFF) & (phase >= self.on_epochs)
        return (b == WRONG) | (b == SYBIL) | (b == WHITEWASH) | on_off

    def _epoch_start(self, epoch: int) -> None:
        s = self.sc
        if self.epoch >= 0:
            self._close_epoch()
        self.epoch = epoch
        final = epoch >= s.epochs  # the closing boundary: settle, schedule nothing
        # new honest joiners arrive during the epoch
        if s.joins_per_epoch > 0 and not final:
            for _ in range(int(self.rng_churn.poisson(s.joins_per_epoch))):
                at = int(self.rng_churn.integers(0, self.epoch_ms))
                self.kernel.after(at, self._new_joiner)
        on = np.flatnonzero(self.online)
        beats = self._heartbeating(epoch, on)
        self.was_online = self.online.copy()
        if self.flow is not None:
            self._online_at[epoch] = on
        self.heartbeats.add(epoch, beats, np.full(len(beats), epoch), np.zeros(len(beats)))
        self.protocol_events += len(beats)
        if self.digest_views is None:
            ev = self._evidence()
            view = View.from_evidence(ev, epoch=epoch, params=self.params, penalties=self.book)
        else:
            view, _table, ev = self._digest_view(epoch)
        self.book = view.penalties
        self.view = view
        self.trace.update(view.digest)
        # whitewashers whose identity is burnt walk away (their next identity is a newcomer)
        c = len(self.client_names)
        table = view.reputation
        if s.reputation:
            permille = np.asarray(table.permille[c:])
            burnt = (~view.base_eligible & self.online) | (permille < s.min_reputation)
            burnt &= table.feedback_mass[c:] >= self.rp.newcomer_min_feedback
            burnt |= np.array([self.book.is_penalised(p, epoch) for p in self.node_names])
            for i in np.flatnonzero(burnt & (self.behaviour == WHITEWASH) & self.alive):
                self._whitewash(int(i))
            eligible = view.base_eligible & (view.permille >= s.min_reputation) & self.online
            # base_eligible needs a fresh heartbeat, which only online nodes emitted;
            # "& online" only drops whitewashers that just left.
            self.weight = view.weight
            self.newcomer = view.is_newcomer
            self.tier = view.tier
            self.standing = np.asarray(table.standing[c:], np.float64)
            cred = np.asarray(table.client_credibility[:c], np.float64)
            self.may_dispute = cred * 1000.0 >= self.mp.dispute_min_credibility_permille
        else:
            eligible = self.attested & self.online
            self.weight = np.minimum(self.capacity, self.mp.capacity_cap).astype(np.float64)
            self.newcomer = np.zeros(self.n_nodes, bool)
            self.tier = np.ones(self.n_nodes, bool)
            self.standing = np.ones(self.n_nodes, np.float64)
            self.may_dispute = np.ones(len(self.client_names), bool)
        self.penalised_now = np.array([self.book.is_penalised(p, epoch) for p in self.node_names])
        self.ever_penalised |= self.penalised_now
        self.eligible = eligible
        self.inv_weight = np.where(self.weight > 0, 1.0 / np.maximum(self.weight, 1e-300), np.inf)
        self.words = view.words
        self.cheat_now = self._cheating(epoch)
        # phase-out time: first epoch a cheater is online but no longer eligible
        gone = (self.first_cheat >= 0) & (self.phased < 0) & self.online & ~eligible
        self.phased[gone] = epoch
        # caught: out of the serving tier (or ineligible) while online, after cheating
        out = ~(eligible & self.tier & ~self.newcomer)
        out_now = (self.first_cheat >= 0) & (self.caught < 0) & self.online & out
        self.caught[out_now] = epoch
        # ledger: settle the epoch whose grace period just ended (from digest rows: once
        # they are folded, the same rules on the rows: docs/ledger.md)
        trust = table.client_trust if self.lp.feedback_needs_trust else None
        if self.digest_views is None:
            e = epoch - 1 - self.lp.grace_epochs
        else:
            e = epoch - self.digest_views.settle_lag
        if e >= 0:
            if self.digest_views is None:
                work = work_units(ev, e, client_trust=trust, reputation_params=self.rp)
            else:
                work = digest_work_units(
                    self.digest_views.reconciliation(e),
                    ev,
                    client_trust=trust,
                    lost=table.receipt_lost,
                )
            st = settle(self.ledger, ev, table, self.book, epoch=e, params=self.lp, work=work)
            self.ledger = self.ledger.apply(st)
            self.trace.update(st.digest)
        if final:
            return
        self.stats = EpochStats()
        self.beacon = beacon(epoch)
        self.offer_base[epoch] = self.n_offers
        per_tick = np.full(s.ticks_per_epoch, s.tasks_per_epoch // s.ticks_per_epoch)
        per_tick[: s.tasks_per_epoch % s.ticks_per_epoch] += 1
        tick_ms = self.epoch_ms // s.ticks_per_epoch
        for j, count in enumerate(per_tick):
            if count:
                self.kernel.after(j * tick_ms + 1, self._task_batch, int(count))
        if (self.dealer_client >= 0).any():
            self.kernel.after(tick_ms // 2 + 1, self._self_deal)
        self.kernel.after(self.epoch_ms, self._epoch_start, epoch + 1)

    # -- ranking ---------------------------------------------------------------------------
    def _pools(self, explore: bool) -> tuple[np.ndarray, ...]:
        """The ranking pools, as ``View.pools`` with our eligibility mask."""
        est = self.eligible & ~self.newcomer
        tier = est & self.tier
        main = (tier, est & ~tier, self.eligible & self.newcomer)
        return (main[2], main[0], main[1]) if explore else main

    def _rank_first(self, a0: np.ndarray, a1: np.ndarray, explore: np.ndarray) -> np.ndarray:
        """Rank-0 node per task, pool by pool (``View.pools``)."""
        out = np.full(len(a0), -1, np.int64)
        for flag in (False, True):
            sel = np.flatnonzero(explore == flag)
            if not len(sel):
                continue
            for pool in self._pools(flag):
                todo = sel[out[sel] < 0]
                if not len(todo) or not pool.any():
                    continue
                for k in range(0, len(todo), _BATCH):
                    part = todo[k : k + _BATCH]
                    out[part] = rank_first_many(a0[part], a1[part], self.words, self.weight, pool)
        return out

    def _rank_list(self, a0: int, a1: int, explore: bool, limit: int) -> list[int]:
        """Ranked nodes of one task, as ``View.rank_indices`` with our masks."""
        out: list[int] = []
        for pool in self._pools(explore):
            if len(out) >= limit:
                break
            got = rank_fast(
                a0, a1, self.words, self.weight, pool, limit - len(out), self.inv_weight
            )
            out += got.tolist()
        return out

    # -- tasks -----------------------------------------------------------------------------
    def _task_batch(self, count: int) -> None:
        s, e = self.sc, self.epoch
        self.busy[:] = 0  # the previous tick's queue has drained
        seed_bytes = self.seed.to_bytes(8, "big")
        a0 = np.empty(count, np.uint64)
        a1 = np.empty(count, np.uint64)
        coins = np.empty(count, np.int64)
        first_id = self.n_offers
        for j in range(count):
            tid = hashlib.sha256(b"sim-task\0" + seed_bytes + (first_id + j).to_bytes(8, "big"))
            w0, w1, w2 = task_words(tid.digest(), self.beacon)
            a0[j], a1[j] = w0, w1
            coins[j] = ((w2 >> 32) * 1000) >> 32
        explore = (coins < self.mp.exploration_permille) if s.reputation else np.zeros(count, bool)
        clients = self.rng_task.integers(0, self.n_task_clients, count)
        offer_ids = np.arange(first_id, first_id + count)
        self.n_offers += count
        deadline = e * self.epoch_ms + self.kernel.now_ms % self.epoch_ms + s.deadline_ms
        self.offers.add(e, clients, np.full(count, e), np.full(count, deadline))
        u_claim = self.rng_net.random(count)
        if s.redundancy == 1:
            r0 = self._rank_first(a0, a1, explore)
            claim_ok = (r0 >= 0) & self.online[r0.clip(0)] & (u_claim >= s.loss)
            nodes = np.where(claim_ok, r0, -1)
            delay = np.zeros(count, np.float64)
            depth = 1 + self.mp.failover_depth
            for j in np.flatnonzero((r0 >= 0) & ~claim_ok):
                ranked = self._rank_list(int(a0[j]), int(a1[j]), bool(explore[j]), depth)
                draws = self.rng_net.random(len(ranked))
                for r, i in enumerate(ranked[1:], 1):
                    if self.online[i] and draws[r] >= s.loss:
                        nodes[j], delay[j] = i, r * self.mp.claim_timeout_ms
                        break
            self._execute_single(clients, offer_ids, nodes, delay, a0, a1, explore)
        else:
            self._execute_redundant(clients, offer_ids, a0, a1, explore)

    def _self_deal(self) -> None:
        """Self-dealers serve the clients they invented (docs/simulations.md,
        "Self-dealing"): each online dealer's client sends ``self_tasks`` tasks this epoch.

        Grinding (the default, what task IDs allow today): the dealer grinds each task's ID
        until the matching ranks it first (about as many hashes as the first pool has
        nodes: free), so it deals while the view lets it rank first (eligible and in the
        pool rank 0 is drawn from: the serving tier, or the newcomers' for exploration
        tasks). It returns the right output and its client praises it: real receipts from
        its attested enclave, ``ok`` feedback and, on a digest network, digests that agree.

        ``grind = false`` (what-if: task IDs the client cannot choose): each task goes to
        whoever the matching ranks first, like an honest client's, and is praised when its
        output is right (a node cheating now returns a wrong one, reported wrong; no
        dispute is escalated). Not honest clients' tasks: no outcome metric counts them."""
        s, e = self.sc, self.epoch
        est = self.eligible & ~self.newcomer
        tier = est & self.tier
        first = (tier if tier.any() else est) | (self.eligible & self.newcomer)
        first |= ~self.grind  # (a dealer that does not grind sends its tasks anyway)
        dealers = np.flatnonzero((self.dealer_client >= 0) & self.online & first)
        per = self.self_tasks[dealers]
        dealer_of = np.repeat(dealers, per)
        m = len(dealer_of)
        if not m:
            return
        clients = self.dealer_client[dealer_of]
        ids = np.arange(self.n_offers, self.n_offers + m)
        self.n_offers += m
        deadline = e * self.epoch_ms + self.kernel.now_ms % self.epoch_ms + s.deadline_ms
        self.offers.add(e, clients, np.full(m, e), np.full(m, deadline))
        nodes = dealer_of.copy()
        fresh = ~self.grind[dealer_of]
        if fresh.any():  # ranked as an honest client's task would be
            seed_bytes = self.seed.to_bytes(8, "big")
            a0 = np.empty(m, np.uint64)
            a1 = np.empty(m, np.uint64)
            explore = np.zeros(m, bool)
            for j in np.flatnonzero(fresh):
                tid = hashlib.sha256(
                    b"sim-own-task\0" + seed_bytes + int(ids[j]).to_bytes(8, "big")
                )
                w0, w1, w2 = task_words(tid.digest(), self.beacon)
                a0[j], a1[j] = w0, w1
                explore[j] = (((w2 >> 32) * 1000) >> 32) < self.mp.exploration_permille
            at = np.flatnonzero(fresh)
            r0 = self._rank_first(a0[at], a1[at], explore[at])
            nodes[at] = np.where((r0 >= 0) & self.online[r0.clip(0)], r0, -1)
        ran = np.flatnonzero(nodes >= 0)
        nodes, clients, ids = nodes[ran], clients[ran], ids[ran]
        wrong = self.cheat_now[nodes] & ~self.grind[dealer_of[ran]]
        self.claims.add(e, nodes, ids)
        self.receipts.add(e, nodes, ids, _OUTS * ids + wrong)
        # latency: the enclave's execution time (the network's is no matter here)
        latency = np.minimum(s.exec_ms * self.speed[nodes], 2**31).astype(np.int64)
        fb = np.where(wrong, _FB_WRONG, _FB_OK)
        self.feedback.add(e, clients, nodes, ids, fb, latency, np.full(len(ran), 90))
        own = nodes == dealer_of[ran]
        np.add.at(self.self_tasks_of, nodes[own], 1)
        self.protocol_events += m + 3 * len(ran)
        self.trace.update(np.ascontiguousarray(nodes, np.int64).tobytes())

    def _queue_delay(self, nodes: np.ndarray) -> np.ndarray:
        """Extra delay of each (task, node) row from the node's queue in this tick.

        Rows are queued in order after what the node already holds this tick: the ``m``-th
        task (0-based) waits ``(m // capacity) * queue_ms``.
        """
        delay = np.zeros(len(nodes), np.float64)
        ok = np.flatnonzero(nodes >= 0)
        if not len(ok):
            return delay
        nd = nodes[ok]
        order = np.argsort(nd, kind="stable")
        sorted_nd = nd[order]
        starts = np.flatnonzero(np.concatenate(([True], sorted_nd[1:] != sorted_nd[:-1])))
        group_start = np.repeat(starts, np.diff(np.append(starts, len(nd))))
        pos = np.empty(len(nd), np.int64)
        pos[order] = np.arange(len(nd)) - group_start
        m = self.busy[nd] + pos
        np.add.at(self.busy, nd, 1)
        delay[ok] = (m // self.capacity[nd]) * self.sc.queue_ms
        return delay

    def _node_outputs(
        self,
        nodes: np.ndarray,
        delay: np.ndarray,
        offer_ids: np.ndarray,
        slot: np.ndarray,
        clients: np.ndarray,
    ):
        """Delivered?, wrong?, latency (ms), in time?, output id for each (task, node) row.

        Output ids are ``_OUTS * offer + code``: 0 the right output, 1 the colluders' shared
        wrong output, ``2 + slot`` the independent wrong output of the task's ``slot``-th
        receipt (distinct up to slot ``_OUTS - 3``, past k plus every escalation replica).
        """
        s = self.sc
        m = len(nodes)
        nd = nodes.clip(0)
        u = self.rng_behave.random((3, m))
        net = self.rng_net.lognormal(0.0, s.rtt_sigma, (2, m)) * s.rtt_ms
        lost = self.rng_net.random(m) < s.loss
        drop = u[0] < self.drop_prob[nd]
        wrong = self.cheat_now[nd] & (u[1] < self.wrong_prob[nd])
        latency = delay + net[0] + net[1] + s.exec_ms * self.speed[nd] * self.delay_factor[nd]
        latency = latency + self._queue_delay(nodes)
        if s.regions > 1:  # client <-> node across regions: both directions pay the gap
            far = self.region[nd] != self.client_region[clients]
            latency = latency + np.where(far, 2.0 * s.inter_region_ms, 0.0)
        delivered = (nodes >= 0) & ~drop
        in_time = delivered & ~lost & (latency <= s.deadline_ms)
        cheated = (nodes >= 0) & (wrong | drop) & self.malicious[nd]
        fresh = cheated & (self.first_cheat[nd] < 0)
        self.first_cheat[nd[fresh]] = self.epoch
        code = np.where(self.collude[nd], 1, 2 + np.minimum(slot, _OUTS - 3))
        output = _OUTS * offer_ids + np.where(wrong, code, 0)
        return delivered, wrong, latency, in_time, output, u[2]

    def _standing_of(self, nodes: np.ndarray) -> np.ndarray:
        """View standing of nodes (0 for identities newer than the view)."""
        st = self.standing
        return np.where(nodes < len(st), st[np.minimum(nodes, len(st) - 1)], 0.0)

    def _escalate(self, j, client, offer_id, a0, a1, explore, used, outputs, latest_ms):
        """Add replicas down task ``j``'s ranking until the verdict is confident.

        ``used``/``outputs`` are the nodes and output ids of the receipts so far (in time or
        not: a receipt votes whenever it arrived). Returns ``(decided, winner output, latency
        of the verdict, replica nodes, their outputs, their in-time flags, their
        latencies)``.
        """
        mp = self.mp
        limit = len(used) + mp.failover_depth + mp.dispute_max_replicas
        # Replicas come from the task's ranking without the exploration coin: the serving
        # tier first, so verdicts are reached by established nodes, not by newcomers.
        del explore
        ranked = [i for i in self._rank_list(a0, a1, False, limit) if i not in used]
        nodes, outs, times = list(used), list(outputs), []
        rep_nodes, rep_out, rep_time, rep_lat = [], [], [], []
        done, winner = self._verdict(nodes, outs)
        for i in ranked:
            if done or len(rep_nodes) >= mp.dispute_max_replicas:
                break
            if not self.online[i] or self.rng_net.random() < self.sc.loss:
                continue
            arr = np.array([i], np.int64)
            delivered, _w, lat, in_time, out, _u = self._node_outputs(
                arr,
                np.zeros(1),
                np.array([offer_id], np.int64),
                np.array([len(nodes)], np.int64),
                np.array([client], np.int64),
            )
            rep_nodes.append(i)
            rep_time.append(bool(in_time[0]))
            rep_lat.append(float(lat[0]))
            rep_out.append(int(out[0]) if delivered[0] else -1)
            if delivered[0]:
                nodes.append(i)
                outs.append(int(out[0]))
                times.append(float(lat[0]))
                done, winner = self._verdict(nodes, outs)
        verdict_ms = latest_ms + (max(times) if times else 0.0)
        return done, winner, verdict_ms, rep_nodes, rep_out, rep_time, rep_lat

    def _verdict(self, nodes: list[int], outputs: list[int]) -> tuple[bool, int]:
        """The core's standing-weighted verdict on one task's receipts."""
        if len(nodes) < 2:
            return False, -1
        nd = np.array(nodes, np.int64)
        out = np.array(outputs, np.int64)
        order = np.argsort(nd, kind="stable")  # the evidence sorts receipts by node
        upheld, _lost, decided = dispute_verdicts(
            np.zeros(len(nd), np.int64),
            out[order],
            self._standing_of(nd[order]),
            np.ones(len(nd), bool),
            1,
            quorum=self.rp.wrong_quorum,
            confidence=self.rp.dispute_confidence,
            min_support=self.rp.dispute_min_support,
        )
        if not decided[0]:
            return False, -1
        return True, int(out[order][upheld][0])

    def _replica_feedback(self, e, client, offer_id, replicas, judge) -> None:
        """The client's feedback on the replicas that answered in time, as a live client
        signs it (``repp2p.client``): ``ok`` on an output equal to ``judge`` (the output
        its check passes: a k = 1 client's check, which flagged the first node's output,
        passes the right one; at k >= 2 the confident verdict's), else ``wrong``; colluding
        clients' as on the first round (``wrong`` on honest nodes, ``ok`` on malicious
        ones). ``judge`` None: no feedback (an undecided k >= 2 verdict judges nobody)."""
        rep_nodes, rep_out, rep_time, rep_lat = replicas
        if not rep_nodes or judge is None:
            return
        nodes = np.array(rep_nodes, np.int64)
        out = np.array(rep_out, np.int64)
        lat = np.array(rep_lat, np.float64)
        answered = np.array(rep_time, bool) & (out >= 0)
        fb = np.where(out == judge, _FB_OK, _FB_WRONG)
        if self.client_bad[client]:
            fb = np.where(self.malicious[nodes], _FB_OK, _FB_WRONG)
        a = np.flatnonzero(answered)
        if not len(a):
            return
        self.feedback.add(
            e,
            np.full(len(a), client, np.int64),
            nodes[a],
            np.full(len(a), offer_id, np.int64),
            fb[a],
            np.minimum(lat[a], 2**31).astype(np.int64),
            np.full(len(a), 90),
        )
        self.protocol_events += len(a)

    def _record_replicas(self, e, offer_id, rep_nodes, rep_out) -> None:
        if not rep_nodes:
            return
        nodes = np.array(rep_nodes, np.int64)
        out = np.array(rep_out, np.int64)
        self.claims.add(e, nodes, np.full(len(nodes), offer_id))
        got = out >= 0
        self.receipts.add(e, nodes[got], np.full(int(got.sum()), offer_id), out[got])
        self.protocol_events += 2 * len(nodes)
        self.replica_tasks += len(nodes)
        np.add.at(self.tasks_of, nodes, 1)

    def _execute_single(self, clients, offer_ids, nodes, delay, a0, a1, explore) -> None:
        s, e = self.sc, self.epoch
        delivered, wrong, latency, in_time, output, u_detect = self._node_outputs(
            nodes, delay, offer_ids, np.zeros(len(nodes), np.int64), clients
        )
        assigned = nodes >= 0
        detected = wrong & (u_detect < s.detect_prob)
        outcome = np.full(len(nodes), UNASSIGNED, np.int64)
        outcome[assigned] = TIMEOUT
        outcome[in_time & ~wrong] = OK
        outcome[in_time & wrong & ~detected] = WRONG_ACCEPTED
        outcome[in_time & wrong & detected] = WRONG_DETECTED
        fb = np.where(outcome == OK, _FB_OK, np.where(outcome == TIMEOUT, _FB_TIMEOUT, _FB_WRONG))
        fb = np.where(outcome == WRONG_ACCEPTED, _FB_OK, fb)
        bad_client = self.client_bad[clients]
        nd = nodes.clip(0)
        # colluding slanderers: "wrong" for honest nodes, "ok" for malicious ones
        fb = np.where(bad_client, np.where(self.malicious[nd], _FB_OK, _FB_WRONG), fb)
        lat_out = np.where(in_time, latency, np.nan)
        # a delivered result reported wrong is disputed: escalate it
        disputed = np.flatnonzero(
            assigned & delivered & in_time & (fb == _FB_WRONG) & self.may_dispute[clients]
        )
        if self.sc.reputation and self.mp.dispute_max_replicas > 0:
            contested = []
            for j in disputed:
                done, winner, ms, rn, ro, rt, rl = self._escalate(
                    j,
                    int(clients[j]),
                    int(offer_ids[j]),
                    int(a0[j]),
                    int(a1[j]),
                    bool(explore[j]),
                    [int(nodes[j])],
                    [int(output[j])],
                    float(latency[j]),
                )
                self.escalated_tasks += 1
                self._record_replicas(e, int(offer_ids[j]), rn, ro)
                right_out = _OUTS * int(offer_ids[j])
                replicas = (rn, ro, rt, rl)
                self._replica_feedback(e, int(clients[j]), int(offer_ids[j]), replicas, right_out)
                if any(out >= 0 for out in ro):
                    contested.append((int(offer_ids[j]), int(nodes[j])))
                right = _OUTS * int(offer_ids[j])
                fixed = outcome[j] == WRONG_DETECTED and done and winner == right
                if fixed and ms <= s.deadline_ms:
                    outcome[j] = OK  # the verdict gave the client the right result
                    lat_out[j] = ms
                    self.recovered += 1
            # A contested k = 1 task travels as a proof once a replica has its receipt
            # (the replica publishes it, with the client's verdict): views judge those,
            # as the live keeper does; one no replica answered leaves no proof.
            if self.disputed is not None:
                pairs = np.array(contested, np.int64).reshape(-1, 2)
                self.disputed.add(e, pairs[:, 0], pairs[:, 1])
        a = np.flatnonzero(assigned)
        self.claims.add(e, nodes[a], offer_ids[a])
        r = np.flatnonzero(delivered)
        self.receipts.add(e, nodes[r], offer_ids[r], output[r])
        lat_ms = np.minimum(latency, 2**31).astype(np.int64)
        self.feedback.add(
            e, clients[a], nodes[a], offer_ids[a], fb[a], lat_ms[a], np.full(len(a), 90)
        )
        self.protocol_events += len(nodes) + 2 * len(a) + len(r)
        self._account(clients, nodes[:, None], outcome, lat_out)

    def _execute_redundant(self, clients, offer_ids, a0, a1, explore) -> None:
        s, e, k = self.sc, self.epoch, self.sc.redundancy
        limit = k + self.mp.failover_depth
        rows_node, rows_task, rows_delay, rows_slot = [], [], [], []
        for j in range(len(clients)):
            ranked = self._rank_list(int(a0[j]), int(a1[j]), bool(explore[j]), limit)
            draws = self.rng_net.random(len(ranked))
            got = 0
            for r, i in enumerate(ranked):
                if got == k:
                    break
                if self.online[i] and draws[r] >= s.loss:
                    rows_node.append(i)
                    rows_task.append(j)
                    rows_delay.append(max(0, r - k + 1) * self.mp.claim_timeout_ms)
                    rows_slot.append(got)
                    got += 1
        nodes = np.array(rows_node, np.int64)
        task = np.array(rows_task, np.int64)
        delay = np.array(rows_delay, np.float64)
        delivered, wrong, latency, in_time, output, _u = self._node_outputs(
            nodes, delay, offer_ids[task], np.array(rows_slot, np.int64), clients[task]
        )
        t = len(clients)
        right_votes = np.bincount(task, weights=in_time & ~wrong, minlength=t)
        wrong_votes = np.bincount(task, weights=in_time & wrong, minlength=t)
        claimed = np.bincount(task, minlength=t) > 0
        outcome = np.full(t, UNASSIGNED, np.int64)
        outcome[claimed] = TIMEOUT
        outcome[right_votes > wrong_votes] = OK
        outcome[(wrong_votes > right_votes)] = WRONG_ACCEPTED
        outcome[(wrong_votes == right_votes) & (wrong_votes > 0)] = WRONG_DETECTED
        majority_right = (right_votes > wrong_votes)[task]
        agree = np.where(wrong, ~majority_right, majority_right)
        fb = np.where(~in_time, _FB_TIMEOUT, np.where(agree, _FB_OK, _FB_WRONG))
        # latency of a task: when its majority was in (max over in-time nodes)
        lat = np.full(t, np.nan)
        if in_time.any():
            best = np.full(t, -np.inf)
            np.maximum.at(best, task[in_time], latency[in_time])
            lat = np.where(np.isfinite(best), best, np.nan)
        # disagreeing receipts: escalate; the confident verdict decides outcome and feedback
        escalate = self.sc.reputation and self.mp.dispute_max_replicas > 0
        n_out = np.zeros(t, np.int64)
        if escalate and len(task):
            keys = np.unique(task[delivered] * _OUTS + output[delivered] % _OUTS)
            np.add.at(n_out, keys // _OUTS, 1)
        no_feedback = np.zeros(len(nodes), bool)
        if self.disputed is not None:
            disputed = offer_ids[np.flatnonzero(n_out > 1)]
            self.disputed.add(e, disputed, np.full(len(disputed), -1))
        for j in np.flatnonzero(n_out > 1):
            rows = np.flatnonzero((task == j) & delivered)
            done, winner, ms, rn, ro, rt, rl = self._escalate(
                j,
                int(clients[j]),
                int(offer_ids[j]),
                int(a0[j]),
                int(a1[j]),
                bool(explore[j]),
                [int(x) for x in nodes[rows]],
                [int(x) for x in output[rows]],
                float(np.nanmax(np.where(in_time[rows], latency[rows], 0.0))),
            )
            self.escalated_tasks += 1
            self._record_replicas(e, int(offer_ids[j]), rn, ro)
            judge = int(winner) if done else None
            self._replica_feedback(e, int(clients[j]), int(offer_ids[j]), (rn, ro, rt, rl), judge)
            mine = task == j
            if not done:
                # No confident verdict: nobody is judged (no feedback); the client keeps
                # the plurality of the first k, as before disputes existed.
                no_feedback |= mine
                continue
            right = _OUTS * int(offer_ids[j])
            fb = np.where(mine & in_time, np.where(output == winner, _FB_OK, _FB_WRONG), fb)
            if winner != right:
                outcome[j] = WRONG_ACCEPTED
            elif ms <= s.deadline_ms:
                outcome[j] = OK
                lat[j] = ms
            else:
                outcome[j] = TIMEOUT
        bad_client = self.client_bad[clients[task]]
        fb = np.where(bad_client, np.where(self.malicious[nodes], _FB_OK, _FB_WRONG), fb)
        self.claims.add(e, nodes, offer_ids[task])
        r = np.flatnonzero(delivered)
        self.receipts.add(e, nodes[r], offer_ids[task][r], output[r])
        lat_ms = np.minimum(latency, 2**31).astype(np.int64)
        f = np.flatnonzero(~no_feedback)
        self.feedback.add(
            e, clients[task][f], nodes[f], offer_ids[task][f], fb[f], lat_ms[f], np.full(len(f), 90)
        )
        self.protocol_events += t + 2 * len(nodes) + len(r)
        matrix = np.full((t, k), -1, np.int64)
        slot = np.zeros(t, np.int64)
        for tj, ni in zip(task, nodes, strict=True):
            matrix[tj, slot[tj]] = ni
            slot[tj] += 1
        self._account(clients, matrix, outcome, lat)

    def _account(self, clients, nodes_matrix, outcome, latency) -> None:
        st = self.stats
        honest = ~self.client_bad[clients]
        o = outcome[honest]
        st.all_tasks += len(outcome)
        st.tasks += len(o)
        st.ok += int((o == OK).sum())
        st.wrong_accepted += int((o == WRONG_ACCEPTED).sum())
        st.wrong_detected += int((o == WRONG_DETECTED).sum())
        st.timeout += int((o == TIMEOUT).sum())
        st.unassigned += int((o == UNASSIGNED).sum())
        lat = latency[honest & (outcome == OK)]
        st.latencies.append(lat[np.isfinite(lat)])
        first = nodes_matrix[:, 0]
        got = first >= 0
        st.to_malicious += int((self.malicious[first.clip(0)] & got & honest).sum())
        flat = nodes_matrix[nodes_matrix >= 0]
        np.add.at(self.tasks_of, flat, 1)
        np.add.at(self.lost_of, first[got & honest & (outcome != OK)], 1)
        for b in np.unique(self.behaviour[first[got]]):
            st.by_behaviour[int(b)] = st.by_behaviour.get(int(b), 0) + int(
                (self.behaviour[first[got]] == b).sum()
            )
        self.trace.update(np.ascontiguousarray(nodes_matrix, np.int64).tobytes())
        self.trace.update(np.ascontiguousarray(outcome, np.int8).tobytes())

    # -- metrics ---------------------------------------------------------------------------
    def _heartbeating(self, epoch: int, on: np.ndarray) -> np.ndarray:
        """The online nodes that heartbeat in ``epoch``: all of them, or with a heartbeat
        period ``H > 1`` those whose slot is due and those that just came online (the live
        schedule, ``repp2p.node.schedules``)."""
        period = self.rp.heartbeat_period_epochs
        if period == 1:
            return on
        while len(self._hb_slots) < self.n_nodes:
            self._hb_slots.append(heartbeat_slot(self.node_names[len(self._hb_slots)], period))
        slots = np.asarray(self._hb_slots, np.int64)[on]
        return on[((epoch - slots) % period == 0) | ~self.was_online[on]]

    def _close_epoch(self) -> None:
        st, e = self.stats, self.epoch
        lat = np.concatenate(st.latencies) if st.latencies else np.zeros(0)
        c = len(self.client_names)
        balances = np.array([self.ledger.balance(p) for p in self.node_names], np.int64)
        total_rep = int(balances.sum())
        tasks = max(st.tasks, 1)
        view_pm = self.view.permille
        penalised = self.book.penalised(e)
        nv = len(view_pm)  # identities that joined during the epoch are not in the view
        row = {
            "epoch": e,
            "tasks": st.tasks,
            "ok": st.ok,
            "wrong_accepted": st.wrong_accepted,
            "wrong_detected": st.wrong_detected,
            "timeout": st.timeout,
            "unassigned": st.unassigned,
            "success_rate": st.ok / tasks,
            "bad_rate": (st.tasks - st.ok) / tasks,
            "malicious_task_share": st.to_malicious / tasks,
            "latency_mean_ms": float(lat.mean()) if len(lat) else float("nan"),
            "latency_p95_ms": float(np.percentile(lat, 95)) if len(lat) else float("nan"),
            "online_nodes": int(self.online.sum()),
            "eligible_nodes": int(self.eligible.sum()),
            "penalised_nodes": len(penalised),
            "honest_penalised": sum(
                1 for i, p in enumerate(self.node_names) if p in penalised and not self.malicious[i]
            ),
            "malicious_online": int((self.online & self.malicious).sum()),
            "mean_permille_honest": _mean(view_pm[(~self.malicious & self.online)[:nv]]),
            "mean_permille_malicious": _mean(view_pm[(self.malicious & self.online)[:nv]]),
            "rep_settled_epoch": self.ledger.epoch,
            "rep_supply": self.ledger.supply,
            "rep_gini": gini(balances),
            "rep_malicious_share": (
                int(balances[self.malicious].sum()) / total_rep if total_rep else 0.0
            ),
        }
        for b, name in enumerate(BEHAVIOURS):
            if (self.behaviour == b).any():
                row[f"tasks_{name}"] = st.by_behaviour.get(b, 0)
        del c
        if self.flow is not None:
            row.update(self._digest_epoch(e))
        if self.digest_views is not None:
            self._reconcile(e)
        self.rows.append(row)
        if self.on_epoch is not None:
            self.on_epoch(e, self.sc.epochs)

    def _digest_epoch(self, e: int) -> dict[str, Any]:
        """Epoch ``e``'s digests, audits and per-peer costs (``repp2p.sim.digests``)."""
        assert self.flow is not None

        (offer_client,) = _epoch_columns(self.offers, e, 1)
        hb_node = _epoch_columns(self.heartbeats, e, 1)[0]
        fc, fn, fo, fout, flat, _rating = _epoch_columns(self.feedback, e, 6)
        cn, co = _epoch_columns(self.claims, e, 2)
        rn, ro, _out = _epoch_columns(self.receipts, e, 3)
        online = self._online_at.pop(e, np.unique(hb_node))
        boundary = self.sc.digest_params.audit_epoch(e)
        # only attested nodes audit, and no offender (the live rule: the attested nodes of
        # the view of the audit boundary, docs/digests.md "Audits")
        auditors = online[self.attested[online] & (self.offender_from[online] > boundary)]
        costs, caught = self.flow.epoch(
            e,
            self.n_nodes,
            online,
            offer_client,
            self.offer_base[e],
            (cn, co),
            (rn, ro),
            (fc, fn, fo, fout, flat),
            self.digest_fault,
            heartbeats=np.unique(hb_node),
            auditors=auditors,
        )
        # a caught node is a proven offender from the audit boundary of epoch e on
        self.offender_from[caught] = np.minimum(self.offender_from[caught], boundary)
        return self.flow.record(e, costs, online)

    def run(self) -> SimResult:
        """Run every epoch; returns the :class:`SimResult`."""
        self.kernel.schedule(0, self._epoch_start, 0)
        self.kernel.run(until_ms=self.sc.epochs * self.epoch_ms)
        if self.epoch < self.sc.epochs:
            self._epoch_start(self.sc.epochs)  # closes the last epoch
        return SimResult.build(self)


def _epoch_columns(table: _Table, e: int, n: int) -> list[np.ndarray]:
    """The first ``n`` columns of ``table``'s rows of epoch ``e``."""
    parts = table.chunks.get(e, [])
    if not parts:
        return [np.zeros(0, np.int64) for _ in range(n)]
    return [np.concatenate([p[i] for p in parts]) for i in range(n)]


def _mean(a: np.ndarray) -> float:
    return float(np.mean(a)) if len(a) else float("nan")


@dataclasses.dataclass
class SimResult:
    """What a run produced: per-epoch rows, the headline summary and the trace hash."""

    scenario: Scenario
    seed: int
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    trace_hash: str
    per_node: dict[str, np.ndarray]

    @classmethod
    def build(cls, sim: Simulation) -> SimResult:
        rows = sim.rows
        tasks = sum(r["tasks"] for r in rows)
        ok = sum(r["ok"] for r in rows)
        warm = min(5, len(rows) // 2)
        steady = rows[warm:]
        t_steady = max(sum(r["tasks"] for r in steady), 1)
        balances = np.array([sim.ledger.balance(p) for p in sim.node_names], np.int64)
        total_rep = int(balances.sum())
        phase = {}
        for b, name in enumerate(BEHAVIOURS):
            cheaters = (sim.behaviour == b) & (sim.first_cheat >= 0)
            if b == HONEST or not cheaters.any():
                continue
            done = cheaters & (sim.phased >= 0)
            delays = (sim.phased - sim.first_cheat)[done]
            caught = cheaters & (sim.caught >= 0)
            to_catch = np.maximum(sim.caught - sim.first_cheat, 0)[caught]
            phase[name] = {
                "cheaters": int(cheaters.sum()),
                "phased_out": int(done.sum()),
                "mean_epochs_to_phase_out": float(delays.mean()) if len(delays) else None,
                "max_epochs_to_phase_out": int(delays.max()) if len(delays) else None,
                "caught": int(caught.sum()),
                "mean_epochs_to_catch": float(to_catch.mean()) if len(to_catch) else None,
                "max_epochs_to_catch": int(to_catch.max()) if len(to_catch) else None,
            }
        by_type = {}
        for b, name in enumerate(BEHAVIOURS):
            sel = sim.behaviour == b
            if sel.any():
                by_type[name] = {
                    "identities": int(sel.sum()),
                    "tasks": int(sim.tasks_of[sel].sum()),
                    "lost_tasks": int(sim.lost_of[sel].sum()),
                    "rep_share": int(balances[sel].sum()) / total_rep if total_rep else 0.0,
                }
                if b == SELF_DEALER:  # the tasks of the clients they invented
                    by_type[name]["self_tasks"] = int(sim.self_tasks_of[sel].sum())
        sybil = (sim.behaviour == SYBIL) & ~sim.attested
        honest = ~sim.malicious
        timeouts = sum(r["timeout"] for r in rows)
        summary = {
            "scenario": sim.sc.name,
            "seed": sim.seed,
            "epochs": sim.sc.epochs,
            "nodes_initial": sim.sc.nodes,
            "identities": sim.n_nodes,
            "reputation": sim.sc.reputation,
            "tasks": tasks,
            "success_rate": ok / max(tasks, 1),
            "bad_rate": (tasks - ok) / max(tasks, 1),
            "bad_rate_after_warmup": (
                sum(r["tasks"] - r["ok"] for r in steady) / t_steady if steady else None
            ),
            "warmup_epochs": warm,
            "wrong_accepted": sum(r["wrong_accepted"] for r in rows),
            "malicious_task_share": sum(r["malicious_task_share"] * r["tasks"] for r in rows)
            / max(tasks, 1),
            "unattested_sybil_tasks": int(sim.tasks_of[sybil].sum()),
            "honest_penalised_final": rows[-1]["honest_penalised"] if rows else 0,
            "honest_penalised_ever": int((sim.ever_penalised & honest).sum()),
            "honest_rep_share": int(balances[honest].sum()) / total_rep if total_rep else 0.0,
            "timeout_rate": timeouts / max(tasks, 1),
            "escalated_tasks": sim.escalated_tasks,
            "replica_tasks": sim.replica_tasks,
            "recovered_tasks": sim.recovered,
            # bad outcomes had no verdict put a noticed wrong result right (comparable with
            # runs before disputes existed)
            "first_result_bad_rate": (tasks - ok + sim.recovered) / max(tasks, 1),
            "latency_mean_ms": _nanmean([r["latency_mean_ms"] for r in rows]),
            "latency_p95_ms_mean": _nanmean([r["latency_p95_ms"] for r in rows]),
            "phase_out": phase,
            "by_behaviour": by_type,
            "rep_supply": sim.ledger.supply,
            "rep_gini": gini(balances),
            "rep_settled_through_epoch": sim.ledger.epoch,
            "kernel_events": sim.kernel.events,
            "protocol_events": sim.protocol_events,
            "trace_hash": sim.trace.hexdigest(),
        }
        if sim.digest_views is not None:  # records runs: the summary of before
            summary["reputation_source"] = "digests"
            summary["digest_lag"] = sim.digest_views.digest_lag
            summary["settle_lag"] = sim.digest_views.settle_lag
        if sim.flow is not None:
            cheaters = int(((sim.digest_fault > 0) & (sim.tasks_of > 0)).sum())
            summary["digests"] = sim.flow.summary(cheaters)
            # the two headline figures at the top level too, so sweeps tabulate them
            summary["gossip_bytes_s"] = summary["digests"]["gossip_bytes_s"]
            summary["digest_verify_share"] = summary["digests"]["digest_verify_share"]
        per_node = {
            "behaviour": sim.behaviour,
            "tasks": sim.tasks_of,
            "balance": balances,
            "first_cheat": sim.first_cheat,
            "phased": sim.phased,
        }
        return cls(sim.sc, sim.seed, rows, summary, summary["trace_hash"], per_node)


def _nanmean(values: list[float]) -> float | None:
    arr = np.array(values, np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if len(arr) else None


def simulate(scenario: Scenario, *, seed: int | None = None, on_epoch=None) -> SimResult:
    """Run ``scenario`` (with ``seed`` instead of its own, if given)."""
    return Simulation(scenario, seed=seed, on_epoch=on_epoch).run()
