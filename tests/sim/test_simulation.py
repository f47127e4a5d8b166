"""Seeded runs: trace hash, adversary outcomes, the core actually in the loop."""

from __future__ import annotations

import numpy as np
import pytest

from repp2p.matching import beacon, rank_reference, task_words
from repp2p.sim import Scenario, Simulation, simulate

SMALL = {
    "nodes": 40,
    "epochs": 8,
    "tasks_per_epoch": 300,
    "clients": {"count": 30},
    "min_reputation": 700,
}


def _sc(**kw):
    d = dict(SMALL)
    d.update(kw)
    return Scenario.from_dict(d)


def test_same_scenario_and_seed_give_the_same_trace_hash():
    sc = _sc(
        adversary=[{"behaviour": "wrong_result", "share": 0.2}],
        churn={"mean_up_epochs": 3.0, "mean_down_epochs": 1.0, "joins_per_epoch": 1.0},
        network={"loss": 0.05},
    )
    a, b = simulate(sc), simulate(sc)
    assert a.trace_hash == b.trace_hash
    assert a.rows == b.rows or np.allclose(
        [r["success_rate"] for r in a.rows], [r["success_rate"] for r in b.rows]
    )
    assert simulate(sc, seed=2).trace_hash != a.trace_hash
    assert len(a.trace_hash) == 64 and a.summary["trace_hash"] == a.trace_hash


def test_reputation_keeps_bad_outcomes_low_and_without_it_they_track_the_share():
    adv = [{"behaviour": "wrong_result", "share": 0.5}]
    with_rep = simulate(_sc(adversary=adv)).summary
    without = simulate(_sc(adversary=adv, reputation=False)).summary
    assert with_rep["bad_rate_after_warmup"] <= 0.02
    assert 0.4 <= without["bad_rate"] <= 0.6
    assert with_rep["phase_out"]["wrong_result"]["phased_out"] == 20


def test_unattested_sybils_get_no_task_and_attested_ones_are_phased_out():
    sc = _sc(
        adversary=[
            {"behaviour": "sybil", "count": 200, "attested": False, "join_epoch": 1},
            {"behaviour": "sybil", "count": 5, "attested": True, "join_epoch": 1},
        ]
    )
    s = simulate(sc).summary
    assert s["unattested_sybil_tasks"] == 0
    assert s["phase_out"]["sybil"]["phased_out"] == 5


def test_ledger_in_the_loop_conserves_and_pays_honest_nodes():
    sim = Simulation(_sc(adversary=[{"behaviour": "wrong_result", "share": 0.25}]))
    result = sim.run()
    led = sim.ledger
    # the closing boundary (epoch 8) settles epoch 8 - 1 - grace
    assert led.epoch == SMALL["epochs"] - 1 - sim.lp.grace_epochs
    assert sum(led.balances.values()) == led.supply == led.emitted - led.burned - led.slashed
    assert result.summary["by_behaviour"]["honest"]["rep_share"] > 0.95


def test_redundancy_outvotes_wrong_results_and_demotes_them():
    sim = Simulation(
        _sc(
            redundancy=3,
            tasks_per_epoch=100,
            adversary=[{"behaviour": "wrong_result", "share": 0.2}],
        )
    )
    sim.run()
    table = sim.view.reputation
    c = len(sim.client_names)
    losers = set(np.flatnonzero(np.asarray(table.disputes_lost[c:]) > 0))
    cheaters = set(np.flatnonzero(sim.malicious))
    assert losers and losers <= cheaters
    # statistical evidence: graduated, never a hard offence
    assert not [o for o in table.offences if o.kind == "wrong_result"]
    # every cheater that cheated is out of the serving tier (or penalised) by the end
    cheated = np.flatnonzero(sim.malicious & (sim.first_cheat >= 0))
    assert len(cheated) and (sim.caught[cheated] >= 0).all()


def test_batched_ranking_equals_the_scalar_definition():
    sim = Simulation(_sc(adversary=[{"behaviour": "lazy", "share": 0.2}], epochs=3))
    sim.run()
    rng = np.random.default_rng(0)
    words = [task_words(rng.bytes(32), beacon(sim.epoch - 1)) for _ in range(40)]
    a0 = np.array([w[0] for w in words], np.uint64)
    a1 = np.array([w[1] for w in words], np.uint64)
    explore = np.array([w[2] % 2 == 0 for w in words])
    got = sim._rank_first(a0, a1, explore)
    for j in range(len(words)):
        want: list[int] = []
        for pool in sim.view.pools(sim.eligible, bool(explore[j])):  # the View's pool order
            want = want or rank_reference(int(a0[j]), int(a1[j]), sim.words, sim.weight, pool, 1)
        assert got[j] == (want[0] if want else -1)


@pytest.mark.parametrize("behaviour", ["lazy", "on_off", "whitewasher"])
def test_each_behaviour_runs(behaviour):
    s = simulate(_sc(adversary=[{"behaviour": behaviour, "share": 0.2, "on_epochs": 2}]))
    assert s.summary["tasks"] > 0
    assert behaviour in s.summary["by_behaviour"]


def test_slanderers_cannot_phase_out_honest_nodes():
    s = simulate(_sc(clients={"count": 30, "malicious_share": 0.4}))
    assert s.summary["success_rate"] >= 0.99
    assert all(r["penalised_nodes"] == 0 for r in s.rows)


def test_regions_add_latency_without_changing_who_runs_what():
    near = simulate(_sc())
    far = simulate(_sc(network={"regions": 3, "inter_region_ms": 100.0}))
    assert far.summary["latency_mean_ms"] > near.summary["latency_mean_ms"] + 50
    assert far.summary["success_rate"] == near.summary["success_rate"]


def test_views_are_built_with_the_scenarios_network_params():
    sc = _sc(epochs=2, matching_params={"failover_depth": 3})
    sim = Simulation(sc)
    sim.run()
    assert sim.view.params == sc.network_params
    assert sim.view.matching_params.failover_depth == 3
