"""The simulator's digest views read a contested k = 1 task as the live keeper does: once a
replica answered (the replica publishes the proof, with the client's verdict), and not
before (one receipt: no proof). Slandering clients, whose k = 1 verdicts the replicas
refute, lose credibility on the simulated digest views as on the live ones
(docs/core.md, "Live escalation at k = 1")."""

from __future__ import annotations

import numpy as np

from repp2p.sim import Scenario, Simulation

SLANDER = {
    "nodes": 30,
    "epochs": 12,
    "tasks_per_epoch": 240,
    "redundancy": 1,
    "min_reputation": 700,
    "reputation_source": "digests",
    "clients": {"count": 20, "malicious_share": 0.3, "detect_prob": 1.0},
    "adversary": [{"behaviour": "wrong_result", "share": 0.2}],
}


def _run(**kw) -> Simulation:
    sim = Simulation(Scenario.from_dict({**SLANDER, **kw}))
    sim.run()
    return sim


def test_contested_k1_tasks_are_read_once_a_replica_answered():
    # lossy, one replica per dispute: some escalations get no replica answer
    sim = _run(network={"loss": 0.6}, matching_params={"dispute_max_replicas": 1})
    disputed = np.unique(
        np.concatenate([c[0] for parts in sim.disputed.chunks.values() for c in parts])
    )
    _rn, ro, _out = sim.receipts.columns()
    offers, receipts = np.unique(ro, return_counts=True)
    # k = 1: an offer has a second receipt only when a replica answered its escalation
    answered = offers[receipts >= 2]
    assert len(answered) > 0
    assert np.array_equal(disputed, answered)
    # escalations no replica answered are not read (the live network has no proof of them)
    assert sim.escalated_tasks > len(disputed)


def test_refuted_k1_slander_costs_credibility_on_simulated_digest_views():
    sim = _run()
    c = len(sim.client_names)
    cred = np.asarray(sim.view.reputation.client_credibility[:c])
    bad = sim.client_bad
    assert bad.any() and (~bad).any()
    assert cred[bad].max() < 0.5
    assert cred[~bad].min() > cred[bad].max()
