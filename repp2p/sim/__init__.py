"""The network simulator: the same core on a virtual clock (docs/simulations.md).

Public API::

    load_scenario(path) -> Scenario              # TOML, validated (ConfigError)
    Scenario.from_dict(mapping) / .with_overrides({"adversary.0.share": 0.3})
    simulate(scenario, *, seed=None, on_epoch=None) -> SimResult
    write_outputs(result, out_dir, *, plots=True) -> dict   # CSV, PNG, summary.json
    Kernel                                        # the discrete-event kernel
    CostModel                                     # [digests]: digest flow, per-peer costs

No trio, no sockets, no wall clock, no global randomness: a run is a function of the scenario
and the seed, and ``SimResult.trace_hash`` identifies it.
"""

from repp2p.sim.digests import CostModel
from repp2p.sim.kernel import Kernel
from repp2p.sim.outputs import write_outputs, write_sweep
from repp2p.sim.scenario import BEHAVIOURS, Adversary, Scenario, load_scenario
from repp2p.sim.simulation import SimResult, Simulation, gini, simulate

__all__ = [
    "BEHAVIOURS",
    "Adversary",
    "CostModel",
    "Kernel",
    "Scenario",
    "SimResult",
    "Simulation",
    "gini",
    "load_scenario",
    "simulate",
    "write_outputs",
    "write_sweep",
]
