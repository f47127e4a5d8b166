"""Refusals in views from digests agree with views from records: a task the node's enclave
refused for the client's own input (a ``refused`` work leaf naming the node's Refusal) is
out of the node's throughput and costs the client credibility (``REFUSAL_WEIGHT``), in
``compute_pairs`` exactly as in ``compute`` (docs/core.md, "Views from digests")."""

from __future__ import annotations

import random

from repp2p.digests import build_feedback, build_work, count_rows, reconcile
from repp2p.records import sign
from repp2p.reputation import AttestedNode, ReputationParams, collect, compute
from repp2p.reputation.pairs import PairState, compute_pairs, widen
from repp2p.testing import factories
from tests.digests.helpers import refusal_of

EPOCH_S = 60
PARAMS = ReputationParams(window_epochs=20)
# late enough that every task's deadline (the factories' NOW + 1 h) has passed: the
# records view counts a claim in throughput only then
NOW = (factories.NOW // EPOCH_S + 100) * EPOCH_S
EPOCHS = range(NOW // EPOCH_S - 10, NOW // EPOCH_S - 4)
VICTIM, OTHER = factories.identity("rnode-victim"), factories.identity("rnode-other")
NODES = [VICTIM, OTHER]
HONEST = [factories.identity(f"rclient-{i}") for i in range(4)]
BAD = factories.identity("rclient-bad")


def _history(kind: str):
    """Honest clients use both nodes; ``BAD`` gets some results too, then (unless
    ``kind == "none"``) sends the victim 3 inputs a epoch that its enclave refuses
    (``refused``: it holds the Refusals; ``blamed``: it holds none, so they are timeouts)."""
    expires = factories.far_future(NOW)
    rng = random.Random(5)
    records, refusals, state = [], [], PairState()
    for e in EPOCHS:
        tasks = []
        for i in range(24):
            client = rng.choice([*HONEST, BAD])
            node = NODES[i % 2]
            tasks.append(factories.task_records(client, node, e, f"h{e}-{i}", expires=expires))
        epoch_refusals = []
        if kind != "none":
            for i in range(3):
                t = factories.task_records(
                    BAD, VICTIM, e, f"r{e}-{i}", delivered=False, outcome=None, expires=expires
                )
                tasks.append(t)
                if kind == "refused":
                    epoch_refusals.append(refusal_of(t, BAD, VICTIM))
        epoch_records = [r for t in tasks for r in t.all()] + epoch_refusals
        records += epoch_records
        refusals += epoch_refusals
        digests = [
            sign(p.digest, who)
            for who in NODES
            for p in build_work(who.peer_id, epoch_records, e, expires=expires)
        ] + [
            sign(p.digest, who)
            for who in [*HONEST, BAD]
            for p in build_feedback(who.peer_id, epoch_records, e, expires=expires)
        ]
        state.fold(e, count_rows(reconcile(digests, e)), [d.record_id for d in digests])
    ad = factories.sample_records(now=NOW)[0]
    ads = [sign(ad, n) for n in NODES]
    verdicts = {
        n.peer_id: AttestedNode(
            peer_id=n.peer_id,
            tee_kind=ad.tee_kind,
            measurements=frozenset(x.measurement for x in ad.engines),
            verified=True,
            attested_at=NOW,
            result_key=bytes(factories.enclave_key(n.peer_id).verify_key),
        )
        for n in NODES
    }
    ev = collect(records + ads, verdicts, now=NOW)
    assert len(ev.refusals) == len(refusals)  # every refusal checks out in the records view
    by_records = compute(ev, now=NOW, epoch_s=EPOCH_S, params=PARAMS)
    win = state.window(EPOCHS[0], EPOCHS[-1])
    node_ev = widen(collect(ads, verdicts, now=NOW), win.peers)
    by_digests = compute_pairs(node_ev, win, now=NOW, epoch_s=EPOCH_S, params=PARAMS)
    return by_records, by_digests


def _credibility(table, who) -> float:
    return float(table.client_credibility[table.peers.index(who.peer_id)])


def test_refused_tasks_cost_the_node_no_throughput_in_both_views():
    none, refused, blamed = _history("none"), _history("refused"), _history("blamed")
    for view in range(2):
        victim = refused[view].get(VICTIM.peer_id)
        # as if the refused tasks had never been sent...
        assert abs(victim.throughput - none[view].get(VICTIM.peer_id).throughput) < 1e-12
        # ...while without the Refusals they are the node's timeouts
        assert blamed[view].get(VICTIM.peer_id).throughput < victim.throughput - 0.01
    # and the two views give the node the same throughput
    assert abs(refused[0].get(VICTIM.peer_id).throughput - victim.throughput) < 1e-12


def test_refused_tasks_cost_the_client_the_same_credibility_in_both_views():
    by_records, by_digests = _history("refused")
    bad_r, bad_d = _credibility(by_records, BAD), _credibility(by_digests, BAD)
    assert bad_r < 0.5 and bad_d < 0.5
    assert abs(bad_r - bad_d) < 1e-9
    for client in HONEST:
        assert _credibility(by_records, client) == _credibility(by_digests, client) == 1.0
    # without Refusals nobody's credibility is lowered, in either view
    for table in _history("blamed"):
        assert _credibility(table, BAD) == 1.0
