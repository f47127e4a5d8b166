"""Issue 15 in the simulator: capacity queueing, quality-first tier, disputes, framing."""

from __future__ import annotations

import numpy as np

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


def test_a_node_past_its_capacity_waits_then_times_out():
    sim = Simulation(_sc(node_capacity=2, network={"queue_ms": 10_000.0}))
    nodes = np.array([3, 3, 3, 3, 3, 3, 3, 5], np.int64)
    delay = sim._queue_delay(nodes)
    # waves of 2: 0, 0, 10 s, 10 s, 20 s, 20 s, 30 s (past the 30 s deadline); node 5 free
    assert list(delay) == [0, 0, 10_000, 10_000, 20_000, 20_000, 30_000, 0]
    # the queue persists within the tick: the next row for node 3 waits 30 s as well
    assert sim._queue_delay(np.array([3]))[0] == 30_000


def test_overload_costs_timeouts_without_quality_first_spreading():
    # 20 nodes of capacity 1, 600 tasks an epoch in 10 ticks (60 a tick, 3 per node):
    # with queue waves of 20 s a third of the tasks of each node are late.
    sc = _sc(nodes=20, node_capacity=1, tasks_per_epoch=600, network={"queue_ms": 20_000.0})
    s = simulate(sc).summary
    assert s["timeout_rate"] > 0.2
    # the same load on nodes of capacity 4 fits
    assert (
        simulate(_sc(nodes=20, node_capacity=4, tasks_per_epoch=600)).summary["timeout_rate"] < 0.01
    )


def test_tier_concentrates_work_on_the_best_and_cheaters_lose_it():
    adv = [{"behaviour": "wrong_result", "share": 0.5, "wrong_prob": 0.3}]
    sim = Simulation(_sc(adversary=adv, epochs=10, clients={"count": 30, "detect_prob": 0.5}))
    res = sim.run()
    v = sim.view
    # the tier covers the demand with the headroom, and holds no caught cheater
    assert 0 < v.tier.sum() < v.base_eligible.sum()
    caught = sim.caught >= 0
    assert not (v.tier & caught[: len(v.tier)]).any()
    assert res.summary["honest_rep_share"] > 0.8
    assert res.summary["bad_rate_after_warmup"] < 0.02


def test_noticed_wrong_results_are_escalated_and_put_right():
    adv = [{"behaviour": "wrong_result", "share": 0.3}]
    s = simulate(_sc(adversary=adv)).summary
    assert s["escalated_tasks"] > 0 and s["replica_tasks"] >= s["escalated_tasks"]
    assert s["recovered_tasks"] > 0
    assert s["bad_rate"] < s["first_result_bad_rate"]


def test_colluders_cannot_frame_honest_replicas():
    adv = [{"behaviour": "wrong_result", "share": 0.45, "collude": True}]
    sim = Simulation(_sc(adversary=adv, redundancy=3, tasks_per_epoch=150, epochs=10))
    res = sim.run()
    c = len(sim.client_names)
    lost = np.asarray(sim.view.reputation.disputes_lost[c:])
    honest = ~sim.malicious
    assert (lost[honest] == 0).all()
    assert (lost[sim.malicious] > 0).any()
    assert res.summary["honest_penalised_ever"] == 0
    cheated = sim.malicious & (sim.first_cheat >= 0)
    assert (sim.caught[cheated] >= 0).all()


def test_slanderers_lose_credibility_and_honest_nodes_keep_their_quality():
    sc = _sc(clients={"count": 30, "malicious_share": 0.3})
    sim = Simulation(sc)
    sim.run()
    table = sim.view.reputation
    c = len(sim.client_names)
    cred = np.asarray(table.client_credibility[:c])
    assert cred[sim.client_bad].max() < 0.5 <= cred[~sim.client_bad].min()
    assert np.asarray(table.quality[c:]).min() > 0.5
