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


def _feedback_on_disputes(sim: Simulation):
    """Per feedback row on a disputed offer: (client, node, offer, outcome), and per
    (offer, node) its receipt's output."""
    fc, fn, fo, fout, _lat, _rat = sim.feedback.columns()
    d_offer, d_node = sim.disputed.columns()
    on = np.isin(fo, d_offer)
    rn, ro, rout = sim.receipts.columns()
    output = dict(zip(zip(ro.tolist(), rn.tolist(), strict=True), rout.tolist(), strict=True))
    verdict_on = dict(zip(d_offer.tolist(), d_node.tolist(), strict=True))
    rows = list(
        zip(fc[on].tolist(), fn[on].tolist(), fo[on].tolist(), fout[on].tolist(), strict=True)
    )
    return rows, output, verdict_on


def test_replicas_get_the_clients_feedback_as_live_clients_sign_it():
    """A live client signs feedback on each replica that answered (repp2p.client): an honest
    k = 1 client ``ok`` on the right output and ``wrong`` on another, a colluding one
    ``wrong`` on honest replicas; the simulator does the same (before, replicas got none:
    their work earned no client's ok)."""
    from repp2p.sim.simulation import _OUTS

    sim = _run()
    rows, output, verdict_on = _feedback_on_disputes(sim)
    replica_rows = [r for r in rows if verdict_on[r[2]] != r[1]]
    assert len(replica_rows) > 0
    bad, malicious = sim.client_bad, sim.malicious
    seen = set()
    for client, node, offer, outcome in replica_rows:
        assert (offer, node) in output  # a replica with a receipt
        assert (client, node, offer) not in seen  # once
        seen.add((client, node, offer))
        if bad[client]:
            assert outcome == (0 if malicious[node] else 1)
        else:
            assert outcome == (0 if output[(offer, node)] == _OUTS * offer else 1)
    # the verdict on the first node stays the only one a contested proof carries
    for _client, node, offer, outcome in rows:
        if verdict_on[offer] == node:
            assert outcome == 1
    assert {r[0] for r in replica_rows if not bad[r[0]]} and {
        r[0] for r in replica_rows if bad[r[0]]
    }
