"""Kernel ordering and scenario validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from repp2p.errors import ConfigError
from repp2p.sim import Kernel, Scenario, load_scenario
from repp2p.sim.scenario import RECORD_MODES
from tests.test_purity import _violations

ROOT = Path(__file__).resolve().parents[2]


def test_events_fire_in_time_then_schedule_order():
    k = Kernel()
    seen = []
    k.schedule(10, seen.append, "b")
    k.schedule(5, seen.append, "a")
    k.schedule(10, seen.append, "c")
    k.schedule(5, lambda: k.after(0, seen.append, "a2"))
    assert k.run(until_ms=7) == 3 and seen == ["a", "a2"]
    assert k.now_ms == 7
    k.run()
    assert seen == ["a", "a2", "b", "c"] and k.events == 5 and k.now_ms == 10
    with pytest.raises(ValueError):
        k.schedule(3, seen.append, "past")


def test_sim_kernel_is_pure():
    for name in ("kernel.py", "simulation.py", "scenario.py", "digests.py"):
        assert _violations(ROOT / "repp2p" / "sim" / name) == []


@pytest.mark.parametrize("path", sorted((ROOT / "simulations").glob("*.toml")), ids=str)
def test_shipped_scenarios_load(path):
    sc = load_scenario(path)
    assert sc.name == path.stem
    assert sc.records in RECORD_MODES


@pytest.mark.parametrize(
    "bad",
    [
        {"nodes": -1},
        {"epochs": 0},
        {"redundancy": 17},
        {"records": "signed"},
        {"bogus": 1},
        {"network": {"loss": 1.0}},
        {"adversary": [{"behaviour": "honest", "share": 0.1}]},
        {"adversary": [{"behaviour": "lazy", "share": 0.6}, {"behaviour": "lazy", "share": 0.6}]},
        {"reputation_params": {"w_success": -1.0}},
        {"ledger_params": {"grace_epochs": -1}},
        {"reputation": "yes"},
    ],
)
def test_bad_scenarios_are_config_errors(bad):
    with pytest.raises(ConfigError):
        Scenario.from_dict(bad)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"epochs": 40.0}, r"scenario\.epochs must be an integer in \[1, 100000\], got 40\.0"),
        ({"seed": True}, r"scenario\.seed must be an integer .* got True"),
        ({"network": {"regions": 2.5}}, r"scenario \[network\]\.regions .* got 2\.5"),
        ({"clients": {"detect_prob": False}}, r"scenario \[clients\]\.detect_prob"),
        ({"adversary": [{"behaviour": "lazy", "count": 1.5}]}, r"\[\[adversary\]\]\.count"),
        ({"adversary": [{"behaviour": "lazy", "attested": 1}]}, r"attested must be true"),
        ({"matching_params": {"failover_depth": 2.0}}, r"MatchingParams\.failover_depth"),
        ({"matching_params": {"depth": 2}}, r"scenario \[matching_params\]: unknown key 'depth'"),
        ({"churn": {"up": 1.0}}, r"scenario \[churn\]: unknown key 'up'"),
    ],
)
def test_scenario_numbers_are_checked_strictly(bad, message):
    with pytest.raises(ConfigError, match=message):
        Scenario.from_dict(bad)


def test_a_scenario_is_a_simulated_network_with_network_params():
    sc = Scenario.from_dict(
        {"epoch_s": 120, "matching_params": {"failover_depth": 3}, "reputation_params": {}}
    )
    p = sc.network_params
    assert p.epoch_s == 120 and p.matching.failover_depth == 3 and p.name == "sim"
    assert (p.reputation, p.ledger) == (sc.reputation_params, sc.ledger_params)
    # Numbers keep their type through the scenario: floats stay floats, so equal
    # parameters written either way give the same digest (and the same trace).
    written_as_ints = Scenario.from_dict({"reputation_params": {"w_success": 12}})
    assert written_as_ints.network_params.digest() == Scenario().network_params.digest()


def test_overrides_round_trip():
    sc = Scenario.from_dict({"adversary": [{"behaviour": "wrong_result", "share": 0.1}]})
    sc2 = sc.with_overrides({"adversary.0.share": 0.5, "network.loss": 0.1, "seed": 9})
    assert sc2.adversaries[0].share == 0.5 and sc2.loss == 0.1 and sc2.seed == 9
    assert Scenario.from_dict(sc.to_dict()) == sc
