"""Count rows from reconciled digests: what reputation will fold per (client, node, epoch)."""

from __future__ import annotations

import random

import pytest

from repp2p.digests import CountRow, count_rows, reconcile
from repp2p.digests.counts import count_row

from .helpers import CLIENTS, EPOCH, NODES, world
from .test_reconcile import _signed_digests


def _recon(epoch: int = EPOCH, seed: int = 3):
    tasks = world(40, seed=seed, epoch=epoch)
    return reconcile(_signed_digests([r for t in tasks for r in t.all()], epoch=epoch), epoch)


def test_rows_carry_the_counted_and_disputed_verdicts_of_each_pair():
    recon = _recon()
    rows = count_rows(recon)
    assert rows and list(rows) == sorted(rows)
    by_pair = {(r.client, r.node): r for r in rows}
    for pair in recon.pairs:
        row = by_pair.get((pair.client, pair.node))
        if row is None:
            assert pair.counted == pair.disputed_client == pair.disputed_node == 0
            continue
        assert (row.ok, row.wrong, row.timeout, row.bad_proof) == (
            pair.ok,
            pair.wrong,
            pair.timeout,
            pair.bad_proof,
        )
        assert row.counted == pair.counted and row.latency_sum_ms == pair.latency_sum_ms
        assert row.node_silent is not pair.node_covered
    # An honest world: both sides published, nothing a side alone reports.
    assert all(not r.node_silent and not r.client_silent for r in rows)
    assert sum(r.ok for r in rows) > 0


def test_a_silent_node_leaves_its_clients_verdicts_disputed():
    tasks = world(40, seed=4)
    records = [r for t in tasks for r in t.all()]
    silent = NODES[1].peer_id
    digests = [d for d in _signed_digests(records) if d.signer != silent]
    rows = [r for r in count_rows(reconcile(digests, EPOCH)) if r.node == silent]
    assert rows
    for row in rows:
        assert row.node_silent and row.counted == 0 and row.disputed_client > 0


def test_several_epochs_fold_in_any_order_each_once():
    recons = [_recon(EPOCH + i, seed=10 + i) for i in range(3)]
    rows = count_rows(recons)
    assert rows == count_rows(random.Random(1).sample(recons, 3))
    assert {r.epoch for r in rows} == {EPOCH, EPOCH + 1, EPOCH + 2}
    with pytest.raises(ValueError):
        count_rows([recons[0], recons[0]])
    assert isinstance(count_row(recons[0].pairs[0]), CountRow)
    assert {r.client for r in rows} <= {c.peer_id for c in CLIENTS}
