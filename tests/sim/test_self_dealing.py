"""Self-dealing in the simulator (docs/simulations.md, "Self-dealing"): nodes that serve a
client they invented, and what the ledger pays them for it (docs/ledger.md)."""

from __future__ import annotations

import pytest

from repp2p.errors import ConfigError
from repp2p.sim import Scenario, Simulation, simulate

SMALL = {
    "nodes": 30,
    "epochs": 12,
    "tasks_per_epoch": 300,
    "clients": {"count": 30},
    "min_reputation": 700,
}


def _sc(self_tasks: int, grind: bool = True, **kw) -> Scenario:
    d = dict(SMALL)
    adv = {"behaviour": "self_dealer", "share": 0.2, "self_tasks": self_tasks, "grind": grind}
    d["adversary"] = [adv]
    d.update(kw)
    return Scenario.from_dict(d)


def _dealers(summary: dict) -> dict:
    return summary["by_behaviour"]["self_dealer"]


@pytest.mark.parametrize("source", ["records", "digests"])
def test_invented_tasks_are_paid_like_honest_work(source):
    # the hole, measured: what a dealer serves its own client earns REP as honest work does
    plain = simulate(_sc(0, reputation_source=source)).summary
    dealing = simulate(_sc(60, reputation_source=source)).summary
    assert _dealers(plain)["self_tasks"] == 0
    assert _dealers(dealing)["self_tasks"] > 0
    assert _dealers(dealing)["rep_share"] > _dealers(plain)["rep_share"] + 0.15
    assert dealing["honest_rep_share"] < plain["honest_rep_share"] - 0.15
    # the REP share follows the work share, the invented tasks counted in
    d, h = _dealers(dealing), dealing["by_behaviour"]["honest"]
    work = (d["tasks"] + d["self_tasks"]) / (d["tasks"] + d["self_tasks"] + h["tasks"])
    assert d["rep_share"] == pytest.approx(work, abs=0.05)


@pytest.mark.parametrize("source", ["records", "digests"])
def test_ungrindable_task_ids_leave_dealing_nothing(source):
    # the what-if of docs/ledger.md: each invented task goes to whoever the matching ranks
    # first, so the dealers earn their share of the honest clients' tasks and no more
    ground = simulate(_sc(60, reputation_source=source)).summary
    ranked = simulate(_sc(60, grind=False, reputation_source=source)).summary
    d = _dealers(ranked)
    assert 0 < d["self_tasks"] < _dealers(ground)["self_tasks"] / 10
    matching_share = d["tasks"] / ranked["tasks"]
    assert d["rep_share"] == pytest.approx(matching_share, abs=0.03)
    assert d["rep_share"] < _dealers(ground)["rep_share"] - 0.25


def test_invented_tasks_are_no_outcome_of_honest_clients():
    res = simulate(_sc(60))
    s = res.summary
    # outcomes count the honest clients' tasks only: the load of the scenario
    assert s["tasks"] == SMALL["tasks_per_epoch"] * SMALL["epochs"]
    assert s["success_rate"] > 0.99


def test_invented_clients_follow_the_honest_ones():
    sim = Simulation(_sc(10))
    dealers = (sim.dealer_client >= 0).nonzero()[0]
    assert len(dealers) == round(0.2 * SMALL["nodes"])
    # one client each, after the honest clients (who alone draw the task load)
    assert sorted(sim.dealer_client[dealers]) == list(
        range(SMALL["clients"]["count"], SMALL["clients"]["count"] + len(dealers))
    )
    assert len(sim.client_names) == SMALL["clients"]["count"] + len(dealers)
    assert sim.n_task_clients == SMALL["clients"]["count"]
    assert not sim.client_bad[sim.n_task_clients :].any()


def test_a_dealer_the_view_does_not_rank_first_deals_nothing():
    # min_reputation above anything reachable: nobody is eligible, nobody is ranked
    sim = Simulation(_sc(50, min_reputation=1000, epochs=4))
    res = sim.run()
    assert _dealers(res.summary)["self_tasks"] == 0


def test_self_tasks_belong_to_self_dealers():
    with pytest.raises(ConfigError, match="self_tasks"):
        Scenario.from_dict(
            {"adversary": [{"behaviour": "wrong_result", "share": 0.1, "self_tasks": 5}]}
        )
    with pytest.raises(ConfigError, match="self_tasks"):
        Scenario.from_dict(
            {"adversary": [{"behaviour": "self_dealer", "share": 0.1, "self_tasks": -1}]}
        )
