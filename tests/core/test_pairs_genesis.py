"""Disputes judged before a node has count rows (a digest network's first views).

A digest view has count rows only ``digest_lag`` epochs after the work, while a dispute
counts from its offer's epoch + 2. In between, every node's standing is the same prior, so
a colluding majority of a task's receipts wins the first round of verdicts. Without count
rows a node's upheld receipts count as good evidence (docs/core.md, "Disputes without count
rows"): colluders at 45% of the nodes then frame no honest node, while a lone cheater
outvoted in every dispute still falls below a task's minimum at once.
"""

from __future__ import annotations

import random

import numpy as np

from repp2p.digests import CountRow
from repp2p.reputation import Evidence, ReputationParams
from repp2p.reputation.pairs import PairState, compute_pairs, widen

EPOCH_S = 600
EPOCH = 100  # the view's epoch; disputes of EPOCH - 3 and EPOCH - 2
PARAMS = ReputationParams()
MIN_REPUTATION = 700  # the scenarios' task minimum
RIGHT, COLLUDED = 0, 1  # output ids; a lone cheater's output is its own


def _peers(honest: int, colluders: int, clients: int = 5):
    h = [f"node-h{i:02d}" for i in range(honest)]
    c = [f"node-c{i:02d}" for i in range(colluders)]
    return h, c, [f"client-{i:02d}" for i in range(clients)]


def _evidence(peers, nodes, tasks):
    """Node columns (attested, heartbeating) and the disputed tasks: ``tasks`` is a list
    of ``(client, epoch, [(node, output), ...])``."""
    at = {p: i for i, p in enumerate(peers)}
    node_idx = [at[x] for x in nodes]
    is_node = np.zeros(len(peers), bool)
    is_node[node_idx] = True
    offer_client, offer_epoch, r_node, r_offer, r_out = [], [], [], [], []
    for j, (client, epoch, runs) in enumerate(tasks):
        offer_client.append(at[client])
        offer_epoch.append(epoch)
        for node, out in runs:
            r_node.append(at[node])
            r_offer.append(j)
            r_out.append(out)
    return Evidence.from_columns(
        peers,
        is_node=is_node,
        capacity=is_node * 4,
        verified=is_node,
        consistent=is_node,
        attested_at=is_node * (EPOCH * EPOCH_S),
        hb_node=[i for i in node_idx for _ in range(4)],
        hb_epoch=[e for _ in node_idx for e in range(EPOCH - 4, EPOCH)],
        hb_load=[0] * (4 * len(node_idx)),
        offer_client=offer_client,
        offer_epoch=offer_epoch,
        offer_deadline_ms=[(e * EPOCH_S + 30) * 1000 for e in offer_epoch],
        receipt_node=r_node,
        receipt_offer=r_offer,
        receipt_output=[j * 1000 + o for j, o in zip(r_offer, r_out, strict=True)],
    )


def _table(peers, nodes, tasks, rows=()):
    """The view of ``EPOCH`` over ``rows`` (count rows of ``EPOCH - 3``; none: a
    network's first views) and the disputed ``tasks``."""
    state = PairState()
    state.fold(EPOCH - 3, list(rows), [b"\x01" * 32])
    win = state.window(EPOCH - 10, EPOCH - 1)
    ev = widen(_evidence(peers, nodes, tasks), win.peers)
    return compute_pairs(ev, win, now=EPOCH * EPOCH_S, epoch_s=EPOCH_S, params=PARAMS)


def _ok_row(client, node, ok):
    return CountRow(
        epoch=EPOCH - 3,
        client=client,
        node=node,
        ok=ok,
        wrong=0,
        timeout=0,
        bad_proof=0,
        latency_sum_ms=100 * ok,
        disputed_client=0,
        disputed_node=0,
        node_silent=False,
        client_silent=False,
        node_claims=ok,
        node_receipts=ok,
    )


def _framing_tasks(honest, colluders, clients, n_tasks, seed=1):
    """Tasks of 5 random nodes each; the colluders answer one shared wrong output. Only
    the mixed tasks are disputed (the others never reach a proof)."""
    rng = random.Random(seed)
    nodes = honest + colluders
    tasks = []
    while len(tasks) < n_tasks:
        five = rng.sample(nodes, 5)
        bad = [x for x in five if x in colluders]
        if 0 < len(bad) < 5:
            runs = sorted((x, COLLUDED if x in colluders else RIGHT) for x in five)
            tasks.append((rng.choice(clients), EPOCH - 3 + len(tasks) % 2, runs))
    return tasks


def test_colluders_at_45_percent_frame_no_honest_node_before_count_rows():
    honest, colluders, clients = _peers(11, 9)
    tasks = _framing_tasks(honest, colluders, clients, 300)
    # the colluders hold over 0.67 of some tasks' receipts at equal standing: round 0
    # outvotes an honest node there
    framed = {
        x
        for _c, _e, runs in tasks
        for x, out in runs
        if out == RIGHT and sum(o == COLLUDED for _x, o in runs) == 4
    }
    assert len(framed) >= 8
    peers = sorted({*honest, *colluders, *clients})
    table = _table(peers, honest + colluders, tasks)
    h = [table.get(x) for x in honest]
    c = [table.get(x) for x in colluders]
    assert all(r.permille >= MIN_REPUTATION for r in h), [r.permille for r in h]
    assert all(r.permille < MIN_REPUTATION for r in c), [r.permille for r in c]
    assert min(r.standing for r in h) > max(r.standing for r in c)
    assert not any(r.disputes_lost for r in h)  # the rounds acquit every framed node
    assert all(r.disputes_lost > 0 for r in c)


def test_a_lone_cheater_is_out_from_its_first_counted_dispute():
    honest, _c, clients = _peers(8, 0)
    cheater = "node-x00"
    # two tasks: the cheater's own wrong output against four honest receipts each
    tasks = [
        (clients[j], EPOCH - 3, sorted([(cheater, 7), *((x, RIGHT) for x in honest[j : j + 4])]))
        for j in range(2)
    ]
    peers = sorted({*honest, cheater, *clients})
    table = _table(peers, [*honest, cheater], tasks)
    bad = table.get(cheater)
    assert bad.disputes_lost > 0
    assert bad.permille < MIN_REPUTATION
    lost = np.flatnonzero(table.receipt_lost)
    assert len(lost) == 2 and not table.receipt_upheld[lost].any()  # nothing to credit
    # the upheld honest nodes rose above the prior; the one in no dispute sits at it
    prior = _table(peers, [*honest, cheater], []).get(honest[0]).success
    assert table.get(honest[1]).success > prior
    assert table.get(honest[7]).success == prior
    assert bad.success < prior


def test_count_rows_replace_the_credit_for_upheld_receipts():
    honest, _c, clients = _peers(6, 0)
    cheater = "node-x00"
    peers = sorted({*honest, cheater, *clients})
    nodes = [*honest, cheater]

    def tasks(n):  # honest[0] upheld in n disputes against the cheater
        return [
            (clients[0], EPOCH - 3, sorted([(cheater, 7), *((x, RIGHT) for x in honest[:4])]))
            for _ in range(n)
        ]

    rows = [_ok_row(clients[1], honest[0], 3)]
    with_rows = [_table(peers, nodes, tasks(n), rows).get(honest[0]) for n in (1, 4)]
    rowless = [_table(peers, nodes, tasks(n)).get(honest[0]) for n in (1, 4)]
    assert with_rows[0].success == with_rows[1].success
    assert rowless[0].success < rowless[1].success
    # a node with no row still gets the credit while another has rows
    assert _table(peers, nodes, tasks(4), rows).get(honest[1]).success == rowless[1].success
