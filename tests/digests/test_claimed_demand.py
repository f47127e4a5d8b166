"""The recent demand the serving tier covers, on a digest network: the claims of the
nodes the view ranks, as their work digests report them (``ClaimedDemand``). A work
digest is any key's to sign, so what a key that is no node, a node's row naming itself as
the client, or an offender reports must not size every peer's tier."""

from __future__ import annotations

import dataclasses

import numpy as np

from repp2p.matching import ClaimedDemand
from repp2p.net.verdict import Verdict
from repp2p.records import DIGEST_MAX_LEAVES, WorkDigest, WorkRow, encode, sign
from repp2p.store import SqliteRecordStore
from repp2p.testing import factories
from tests.digests.test_hostile_digests import EPOCH_S, _pipeline, _root, _work
from tests.test_viewer import (
    D_NODES,
    NOW,
    _block_claims,
    _digest_store,
    _digests_of,
    _verified_keeper,
)

M = DIGEST_MAX_LEAVES
HOSTILE = factories.identity("hostile-demand")


def test_the_demand_is_the_ranked_nodes_claims():
    store = _digest_store(range(10, 21), SqliteRecordStore(":memory:"))
    keeper = _verified_keeper(store)
    view = keeper.view(26)  # folds epochs <= 20
    assert view.demand == max(_block_claims(keeper, e) for e in (18, 19, 20)) > 0


def test_one_throwaway_key_cannot_widen_the_serving_tier():
    """One digest of a key that is no node, with one row at the format's maximum (its own
    peer ID as the client), set the demand of every peer's view to 2**24 claims: the tier
    was then every established node, quality first no more."""
    store = _digest_store(range(10, 21), SqliteRecordStore(":memory:"))
    clean = _verified_keeper(store).view(26)
    pipeline = _pipeline(store, 26 * EPOCH_S)
    for client in (HOSTILE.peer_id, D_NODES[0].peer_id):
        row = WorkRow(client=client, claims=M, receipts=M, timeouts=0, failures=0)
        signed = encode(_work(20, [row]), HOSTILE)
        assert pipeline.judge(signed, source="sync") is Verdict.ACCEPT
        inflated = _verified_keeper(store).view(26)
        assert inflated.demand == clean.demand
        assert np.array_equal(inflated.tier, clean.tier)


def test_a_nodes_row_naming_itself_is_no_demand():
    """An attested node's work digest with a row whose client is the node itself: no
    client serves itself, so those claims are not demand (the node's other rows are)."""
    honest = _digest_store(range(10, 21), SqliteRecordStore(":memory:"))
    clean = _verified_keeper(honest).view(26)
    node = D_NODES[2]
    store = _digest_store(range(10, 20), SqliteRecordStore(":memory:"))
    for signed in _digests_of(20):
        if signed.signer == node.peer_id and signed.type == WorkDigest.TYPE:
            rec = signed.record
            extra = M - rec.leaf_count  # the format's most
            mine = WorkRow(
                client=node.peer_id, claims=extra, receipts=extra, timeouts=0, failures=0
            )
            rows = tuple(sorted((*rec.rows, mine), key=lambda r: r.client))
            forged = dataclasses.replace(rec, rows=rows, leaf_count=M, merkle_root=_root(rows))
            store.put(sign(forged, node), now=NOW)
        else:
            store.put(signed, now=NOW)
    inflated = _verified_keeper(store).view(26)
    folded = _verified_keeper(store)
    folded.view(26)
    assert _block_claims(folded, 20) >= M // 2  # the row is folded ...
    assert inflated.demand == clean.demand  # ... and not counted


def test_claimed_demand_counts_only_the_nodes_it_is_told_to():
    demand = ClaimedDemand(
        claims=(np.array([5, 0, 7, 100]), np.array([9, 0, 0, 1000])),
        replicas=(2, 0),
    )
    nodes = np.array([0, 2, 3])  # peer 1 is a client
    assert demand.count(nodes, np.array([True, True, True])) == 1009
    # the node at evidence position 3 is not attested
    assert demand.count(nodes, np.array([True, True, False])) == 10  # max(12 - 2, 9)
    assert demand.count(nodes, np.zeros(3, bool)) == 0
    assert demand.count(np.zeros(0, np.int64), np.zeros(0, bool)) == 0
