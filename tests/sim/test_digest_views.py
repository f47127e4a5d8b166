"""Views from digests in the simulator (``reputation_source = "digests"``, issue 14).

The simulator's digest mode must be the live path: each epoch's count rows are what the
core's ``reconcile`` makes of both sides' real digests, they are folded once into a
``PairState`` at ``digest_lag``, and a view is ``compute_pairs`` over the window, exactly
the keeper's sequence (``ViewKeeper._view_from_digests``). Records mode must not move.
"""

from __future__ import annotations

import functools
import hashlib

import nacl.signing
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repp2p.digests import count_rows, reconcile
from repp2p.digests.disputes import DisputeTiming, replica_claims
from repp2p.errors import ConfigError
from repp2p.matching import View
from repp2p.network_params import NetworkParams
from repp2p.records import (
    FeedbackDigest,
    FeedbackRow,
    WorkDigest,
    WorkRow,
    peer_id_from_public_key,
    sign,
)
from repp2p.reputation import Evidence
from repp2p.reputation.pairs import PairState, compute_pairs
from repp2p.sim import Scenario, Simulation, simulate
from repp2p.sim.digest_views import digest_ids, reconcile_epoch

SMALL = {
    "nodes": 30,
    "epochs": 12,
    "tasks_per_epoch": 240,
    "clients": {"count": 20},
    "min_reputation": 700,
}
FAR = 4_000_000_000


def _sc(**kw):
    d = dict(SMALL)
    d.update(kw)
    return Scenario.from_dict(d)


def _run(sc: Scenario) -> Simulation:
    sim = Simulation(sc)
    sim.run()
    return sim


# -- the scenario key ---------------------------------------------------------------------


def test_reputation_source_is_a_validated_scenario_key():
    with pytest.raises(ConfigError, match="reputation_source"):
        _sc(reputation_source="rows")
    with pytest.raises(ConfigError, match="reputation_source"):
        _sc(reputation_source=1)
    sc = _sc(reputation_source="digests", digest_params={"seal_lag_epochs": 5})
    params = sc.network_params
    assert params.reputation_source == "digests"
    assert params.digests == sc.digest_params
    assert params.digest_lag == 5 + 2  # seal lag + 2, as a live network's
    assert Scenario.from_dict(sc.to_dict()) == sc
    assert sc.with_overrides({"reputation_source": "records"}).reputation_source == "records"


def test_records_runs_are_unchanged_by_the_key():
    """A records run's parameters, dump and trace are those of a scenario without the key
    (the reference results' trace hashes do not move)."""
    plain = _sc(adversary=[{"behaviour": "wrong_result", "share": 0.2}])
    explicit = _sc(
        adversary=[{"behaviour": "wrong_result", "share": 0.2}], reputation_source="records"
    )
    assert explicit == plain
    assert "reputation_source" not in plain.to_dict()
    assert plain.network_params == NetworkParams(
        name="sim", epoch_s=plain.epoch_s, reputation_source="records"
    )
    a = simulate(plain)
    assert a.trace_hash == simulate(explicit).trace_hash
    assert "reputation_source" not in a.summary and "digest_lag" not in a.summary
    sim = _run(plain)
    assert sim.digest_views is None and sim.disputed is None


# -- the rows: what the core's reconcile makes of both sides' real digests ---------------


@functools.cache
def _key(name: str) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(hashlib.sha256(b"sim-digest-view/" + name.encode()).digest())


@functools.cache
def _peer(name: str) -> str:
    return peer_id_from_public_key(bytes(_key(name).verify_key))


def _real_digests(sim: Simulation, e: int) -> list:
    """Epoch ``e``'s WorkDigests and FeedbackDigests as a live party would sign them, from
    the simulator's task columns (peer IDs for the simulator's names)."""

    def cols(table, n):
        parts = table.chunks.get(e, [])
        return [np.concatenate([p[i] for p in parts]) for i in range(n)]

    (offer_client,) = cols(sim.offers, 1)
    base = sim.offer_base[e]
    cn, co = cols(sim.claims, 2)
    rn, ro, _ = cols(sim.receipts, 3)
    fc, fn, _fo, fout, flat, _r = cols(sim.feedback, 6)
    work: dict[tuple[int, int], list[int]] = {}
    for node, client in zip(cn, offer_client[co - base], strict=True):
        work.setdefault((int(node), int(client)), [0, 0])[0] += 1
    for node, client in zip(rn, offer_client[ro - base], strict=True):
        work[(int(node), int(client))][1] += 1
    fb: dict[tuple[int, int], list[int]] = {}
    for client, node, out, lat in zip(fc, fn, fout, flat, strict=True):
        row = fb.setdefault((int(client), int(node)), [0, 0, 0, 0])
        row[int(out)] += 1
        row[3] += int(lat)
    out = []
    for node in sorted({n for n, _ in work}):
        name = sim.node_names[node]
        rows = sorted(
            (
                WorkRow(_peer(sim.client_names[c]), k, r, k - r, 0)
                for (n, c), (k, r) in work.items()
                if n == node
            ),
            key=lambda row: row.client,
        )
        d = WorkDigest(
            epoch=e,
            part=0,
            parts=1,
            rows=tuple(rows),
            leaf_count=sum(r.claims for r in rows),
            merkle_root=hashlib.sha256(name.encode()).digest(),
            seq=0,
            expires=FAR,
        )
        out.append(sign(d, _key(name)))
    for client in sorted({c for c, _ in fb}):
        name = sim.client_names[client]
        frows = sorted(
            (
                FeedbackRow(_peer(sim.node_names[n]), ok, wrong, timeout, 0, lat)
                for (c, n), (ok, wrong, timeout, lat) in fb.items()
                if c == client
            ),
            key=lambda row: row.node,
        )
        d = FeedbackDigest(
            epoch=e,
            part=0,
            parts=1,
            rows=tuple(frows),
            leaf_count=sum(r.ok + r.wrong + r.timeout for r in frows),
            merkle_root=hashlib.sha256(name.encode()).digest(),
            seq=0,
            expires=FAR,
        )
        out.append(sign(d, _key(name)))
    return out


def test_epoch_rows_equal_the_cores_reconcile_of_real_signed_digests():
    sc = _sc(
        epochs=4,
        reputation_source="digests",
        adversary=[{"behaviour": "wrong_result", "share": 0.3, "wrong_prob": 0.5}],
        clients={"count": 20, "malicious_share": 0.2, "detect_prob": 0.5},
        network={"loss": 0.05},
    )
    sim = _run(sc)
    back = {_peer(n): n for n in (*sim.client_names, *sim.node_names)}
    checked = 0
    for e in range(sc.epochs):
        real = count_rows(reconcile(_real_digests(sim, e), e))
        mine = count_rows(sim.digest_views.reconciliation(e))
        assert len(real) == len(mine) > 0
        as_names = sorted(
            r.__class__(**{**r.__dict__, "client": back[r.client], "node": back[r.node]})
            for r in real
        )
        assert as_names == list(mine)
        checked += sum(r.wrong + r.timeout for r in mine)
    assert checked > 0  # the run had wrong verdicts and timeouts to reconcile


def test_double_entry_keeps_only_what_both_sides_support_and_faulty_nodes_inflate_receipts():
    clients, nodes = ["c0", "c1"], ["n0", "n1"]
    # c0 -> n0: 3 claims, 2 receipts; the client says ok 3 (one more than delivered).
    # c1 -> n1: 2 claims, 0 receipts; the client says timeout 2.
    kw = dict(
        claims=(np.array([0, 0, 0, 1, 1]), np.array([0, 0, 0, 1, 1])),
        receipts=(np.array([0, 0]), np.array([0, 0])),
        feedback=(
            np.array([0, 0, 0, 1, 1]),
            np.array([0, 0, 0, 1, 1]),
            np.array([0, 0, 0, 2, 2]),
            np.array([100, 100, 100, 900, 900]),
        ),
        node_published=np.array([True, True]),
    )
    honest = reconcile_epoch(7, clients, nodes, digest_fault=np.zeros(2), **kw)
    a, b = honest.pairs
    assert (a.client, a.node, a.ok, a.disputed_client, a.node_receipts) == ("c0", "n0", 2, 1, 2)
    assert a.latency_sum_ms == 300 * 2 // 3
    assert (b.timeout, b.node_receipts, b.disputed_node) == (2, 0, 0)
    # n1 misreports half of its leaves: one timed-out task reported delivered; a better
    # throughput, but the client's timeouts still count (double entry)
    faulty = reconcile_epoch(7, clients, nodes, digest_fault=np.array([0.0, 0.5]), **kw)
    assert faulty.pairs[0] == a
    assert faulty.pairs[1].node_receipts == 1 and faulty.pairs[1].timeout == 2
    assert digest_ids(honest) != digest_ids(faulty)


# -- the view: the keeper's fold-and-view sequence ----------------------------------------


def test_digest_view_is_the_keepers_pairstate_path_on_the_same_rows():
    """Fold the sim's rows into a fresh PairState the way ViewKeeper._view_from_digests
    does, score with compute_pairs: the same table and the same view digest."""
    sc = _sc(
        epochs=12,
        reputation_source="digests",
        adversary=[{"behaviour": "wrong_result", "share": 0.2}],
    )
    sim = _run(sc)
    dv = sim.digest_views
    epoch = sc.epochs  # the last view, built at the closing boundary
    params = sc.network_params
    lo, hi = epoch - params.digest_lag - params.reputation.window_epochs + 1, epoch - 6
    assert (lo, hi) == dv.digest_window(epoch)
    state = PairState()
    for e in range(max(lo, 0), hi + 1):
        recon = dv.reconciliation(e)
        state.fold(e, count_rows(recon), digest_ids(recon))
    window = state.window(lo, hi)
    assert window.epochs == dv.last_window.epochs and window.rows > 0
    ev = dv.last_evidence
    node_only = Evidence.from_columns(ev.peers, **sim._node_columns())
    widened, peer_at = state.widen(node_only, window)
    assert widened.peers == ev.peers
    table = compute_pairs(
        ev,
        window,
        now=epoch * sc.epoch_s,
        epoch_s=sc.epoch_s,
        params=params.reputation,
        peer_at=peer_at,
    )
    assert np.array_equal(table.permille, sim.view.reputation.permille)
    assert np.array_equal(table.client_trust, sim.view.reputation.client_trust)
    # demand: the work digests' claims less the replicas of the disputed offers (beyond
    # each offer's redundancy), as the records path's recent_demand ignores them
    answered = np.bincount(ev.receipt_offer, minlength=len(ev.offer_epoch))
    replicas = replica_claims(
        (int(e), int(n), sc.redundancy) for e, n in zip(ev.offer_epoch, answered, strict=True)
    )
    assert sum(replicas.values()) > 0
    claims = max(
        (
            int(state.block(e).counts[6].sum()) - replicas.get(e, 0)
            for e in (hi, hi - 1, hi - 2)
            if state.block(e)
        ),
        default=0,
    )
    view = View.from_evidence(
        ev,
        epoch=epoch,
        params=params,
        penalties=sim.book,
        table=table,
        digests=window.epochs,
        demand=claims,
    )
    assert view.digest == sim.view.digest
    # the records path on the same run would score from every task instead
    assert sim.view.digest != View.from_evidence(sim._evidence(), epoch=epoch, params=params).digest


def test_digest_evidence_counts_only_after_digest_lag():
    """The rows of epoch e first count in the view of e + digest_lag (6 by default), and
    the ledger settles e only then."""
    before = _run(_sc(epochs=5, reputation_source="digests"))
    assert before.digest_views.digest_lag == 6
    assert before.digest_views.last_window.rows == 0
    assert before.view.reputation.feedback_mass.sum() == 0
    at = _run(_sc(epochs=6, reputation_source="digests"))
    assert [e for e, _ in at.digest_views.last_window.epochs] == [0]
    assert at.view.reputation.feedback_mass.sum() > 0
    res = simulate(_sc(epochs=10, reputation_source="digests"))
    assert res.summary["reputation_source"] == "digests"
    assert res.summary["digest_lag"] == res.summary["settle_lag"] == 6
    assert res.summary["rep_settled_through_epoch"] == 10 - 6
    assert simulate(_sc(epochs=10)).summary["rep_settled_through_epoch"] == 10 - 3


def test_digest_mode_is_deterministic_and_differs_from_records():
    sc = _sc(
        reputation_source="digests",
        adversary=[{"behaviour": "wrong_result", "share": 0.2}],
        churn={"mean_up_epochs": 3.0, "mean_down_epochs": 1.0, "joins_per_epoch": 1.0},
        network={"loss": 0.05},
    )
    a, b = simulate(sc), simulate(sc)
    assert a.trace_hash == b.trace_hash and a.rows == b.rows
    assert simulate(sc, seed=2).trace_hash != a.trace_hash
    assert simulate(sc.with_overrides({"reputation_source": "records"})).trace_hash != (
        a.trace_hash
    )


def test_cheaters_are_phased_out_from_digest_rows():
    sc = _sc(
        epochs=20,
        reputation_source="digests",
        adversary=[{"behaviour": "wrong_result", "share": 0.3}],
    )
    s = simulate(sc).summary
    phase = s["phase_out"]["wrong_result"]
    assert phase["phased_out"] == phase["cheaters"] == 9
    # a wrong result the client escalates is a dispute proof, which counts from
    # dispute_lag (5), before the epoch's count rows do (digest_lag, 6)
    assert phase["max_epochs_to_phase_out"] < s["digest_lag"]
    assert s["honest_penalised_ever"] == 0


# -- disputes: the disputed tasks' offers and receipts, and nothing else ------------------


@pytest.mark.parametrize(
    "extra",
    [
        {
            "redundancy": 3,
            "adversary": [{"behaviour": "wrong_result", "share": 0.3, "collude": True}],
        },
        {"adversary": [{"behaviour": "wrong_result", "share": 0.3}]},
    ],
    ids=["k3-collusion", "k1-noticed"],
)
def test_disputed_tasks_offers_and_receipts_fill_the_digest_evidence(extra):
    sc = _sc(epochs=8, reputation_source="digests", **extra)
    sim = _run(sc)
    ev = sim.digest_views.last_evidence
    dv = sim.digest_views
    lo, hi = dv.dispute_window(sc.epochs)
    assert hi == sc.epochs
    dis = [c[0] for e in sorted(sim.disputed.chunks) for c in sim.disputed.chunks[e]]
    dis = np.unique(np.concatenate(dis))
    base = sim._offers_base()
    oc, oe, od = sim.offers.columns()
    count = dv.dispute_counts(oe[dis - base], od[dis - base])
    dis = dis[(lo <= count) & (count <= hi)]
    # the cheaters' disputes of epoch E count from E + 2 (30-s deadlines), so they leave
    # at once and every dispute (all of epochs 0-1) is in the last view
    assert set(sim.disputed.chunks) <= {0, 1, 2}
    assert sim.escalated_tasks == len(dis) > 0
    # exactly the disputed offers (not the other tasks of the window)
    total_offers = sim.offers.rows()
    assert len(ev.offer_client) == len(dis) < total_offers
    assert np.array_equal(ev.offer_client, oc[dis - base])
    assert np.array_equal(ev.offer_epoch, oe[dis - base])
    # every receipt of those offers: the first k and each replica's
    rn, ro, _out = sim.receipts.columns()
    mine = np.isin(ro, dis)
    assert len(ev.receipt_node) == int(mine.sum())
    got = sorted(
        zip(ev.receipt_offer.tolist(), (ev.receipt_node - sc.clients).tolist(), strict=True)
    )
    want = sorted(zip(np.searchsorted(dis, ro[mine]).tolist(), rn[mine].tolist(), strict=True))
    assert got == want
    per_offer = np.bincount(ev.receipt_offer, minlength=len(dis))
    assert per_offer.min() >= 1 and per_offer.max() > sc.redundancy  # replicas are in
    # receipts disagree on a disputed task (the colluders' or the cheater's output)
    first = np.flatnonzero(per_offer >= 2)[0]
    assert len(set(ev.receipt_output[ev.receipt_offer == first].tolist())) >= 2
    # no claims travel: those stay with the parties; feedback only as a k = 1 proof's
    # verdict, the client's wrong on the node that ran the task, one per disputed offer
    assert len(ev.claim_node) == 0
    if sc.redundancy > 1:
        assert len(ev.fb_node) == 0
    else:
        assert sorted(ev.fb_offer.tolist()) == list(range(len(dis)))
        assert (ev.fb_outcome == 1).all()  # OUTCOME_CODES["wrong"]
        assert (ev.offer_client[ev.fb_offer] == ev.fb_client).all()


def test_a_disputed_task_counts_from_its_count_epoch_as_on_the_live_keeper():
    """The digest view of V judges exactly the disputed tasks whose count epoch
    (DisputeTiming.count of the offer's epoch and deadline, the live keeper's rule) is in
    V - window_epochs + 1 .. V (ViewKeeper.dispute_window): with the scenario's 30-s
    deadlines in 600-s epochs and the default 120-s proof grace, a task disputed in epoch E
    first counts in the view of E + 1 when its deadline is more than 120 s before E's end
    (E + 2 otherwise), not E + dispute_lag."""
    sc = _sc(
        epochs=12,
        reputation_source="digests",
        adversary=[{"behaviour": "wrong_result", "share": 0.3}],
    )
    p = sc.network_params
    timing = DisputeTiming(p.epoch_s, p.dispute_lag, grace_s=p.proof_grace_s)
    assert timing.dispute_lag == 5 and sc.deadline_ms < sc.epoch_s * 1000
    assert timing.grace == 120 < p.epoch_s
    seen: dict[int, list[tuple[int, int]]] = {}
    disputed: dict[int, list[tuple[int, int]]] = {}

    class Probe(Simulation):
        def _digest_view(self, epoch):
            out = super()._digest_view(epoch)
            ev = self.digest_views.last_evidence
            seen[epoch] = sorted(
                zip(ev.offer_epoch.tolist(), ev.offer_deadline_ms.tolist(), strict=True)
            )
            base = self._offers_base()
            _oc, oe, od = self.offers.columns()
            ids = [c[0] for parts in self.disputed.chunks.values() for c in parts]
            dis = np.unique(np.concatenate(ids)) if ids else np.zeros(0, np.int64)
            disputed[epoch] = sorted(
                zip(oe[dis - base].tolist(), od[dis - base].tolist(), strict=True)
            )
            return out

    Probe(sc).run()
    w = sc.network_params.reputation.window_epochs
    lags = set()
    for v, offers in seen.items():
        # the keeper's scalar rule picks the same offers among those the sim still holds
        want = [(e, d) for e, d in disputed[v] if v - w + 1 <= timing.count(e, d) <= v]
        assert offers == want, v
        lags |= {timing.count(e, d) - e for e, d in offers}
    assert lags and lags <= {1, 2} and 1 in lags
    first = min(e for d in disputed.values() for e, _d in d)
    firsts = [timing.count(e, d) for x in disputed.values() for e, d in x if e == first]
    assert not any(e == first for e, _d in seen[min(firsts) - 1])
    assert any(e == first for e, _d in seen[min(firsts)])


@settings(max_examples=200, deadline=None)
@given(
    epoch_s=st.integers(1, 3_600),
    grace=st.integers(60, 7_200),
    seal_lag=st.integers(4, 8),
    epochs=st.lists(st.integers(0, 10**7), min_size=1, max_size=8),
    offsets_ms=st.lists(st.integers(-(10**7), 10**8), min_size=8, max_size=8),
)
def test_the_simulators_dispute_counts_are_the_keepers_rule(
    epoch_s, grace, seal_lag, epochs, offsets_ms
):
    """``DigestViews.dispute_counts`` (vectorised) equals ``DisputeTiming.count`` (the
    keeper's scalar rule) for any epoch length, proof grace, seal lag, offer epoch and
    deadline around it (before the offer's epoch, at epoch edges, past the seal)."""
    from repp2p.digests.params import DigestParams
    from repp2p.sim.digest_views import DigestViews

    params = NetworkParams(
        name="t",
        epoch_s=epoch_s,
        reputation_source="digests",
        digests=DigestParams(
            seal_lag_epochs=seal_lag, gossip_max_age_epochs=16, proof_grace_s=grace
        ),
    )
    sim = DigestViews(params)
    e = np.array(epochs, np.int64)
    deadlines = np.maximum(e * epoch_s * 1000 + np.array(offsets_ms[: len(e)], np.int64), 0)
    timing = DisputeTiming(params.epoch_s, params.dispute_lag, grace_s=params.proof_grace_s)
    want = [timing.count(int(x), int(d)) for x, d in zip(e, deadlines, strict=True)]
    assert sim.dispute_counts(e, deadlines).tolist() == want
