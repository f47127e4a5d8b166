"""ViewKeeper: the views count a claim only at a rank the matching gave its node on the view
of the offer's epoch, and a receipt only under the node's attested enclave key for that
epoch (docs/core.md, "Evidence: who ran a task")."""

from __future__ import annotations

import dataclasses

from repp2p.attestation import load_policy
from repp2p.config import BOOTSTRAP_DIR
from repp2p.matching import MatchingParams, beacon
from repp2p.network_params import NetworkParams
from repp2p.records import sign
from repp2p.reputation import collect
from repp2p.store import SqliteRecordStore
from repp2p.testing import factories
from repp2p.viewer import ViewKeeper, before_epoch

#: rank 0 alone may hold a k = 1 task: every other node is unasked; views of records (a
#: digest view reads no claim: a node's work is checked by audits, docs/digests.md)
PARAMS = NetworkParams.load("dev").replace(
    reputation_source="records",
    matching=MatchingParams(failover_depth=0, dispute_max_replicas=0),
)
EPOCH = factories.NOW // PARAMS.epoch_s
NOW = EPOCH * PARAMS.epoch_s
FAR = factories.far_future(NOW)
CLIENT = factories.identity("client")
NODES = [factories.identity(f"n{i}") for i in range(3)]


def _attestation(identity, epoch: int, result_key: bytes):
    ad = dataclasses.replace(factories.sample_records(now=NOW)[0], expires=FAR)
    att = factories.simulated_attestation(
        identity,
        ad,
        epoch,
        at=epoch * PARAMS.epoch_s + 1,
        result_key=result_key,
        seq=epoch,
        expires=FAR,
    )
    return sign(ad, identity), sign(att, identity)


def _node(identity, attested_epoch: int) -> list:
    """Ad, attestation of ``attested_epoch`` (a policy lag of 2 epochs) and heartbeats."""
    key = bytes(factories.enclave_key(identity.peer_id).verify_key)
    # enclave-signed, as a running node's (the views count a node only while it is live)
    beats = [factories.live_heartbeat(identity, e, expires=FAR) for e in range(EPOCH - 8, EPOCH)]
    return [*_attestation(identity, attested_epoch, key), *beats]


def test_the_view_drops_a_claim_and_receipt_of_a_node_the_matching_did_not_ask():
    store = SqliteRecordStore(":memory:")
    task_epoch = EPOCH - 3
    # the view of the tasks' epoch is built on time, on the attestations of then
    store.put_many([r for n in NODES for r in _node(n, task_epoch - 1)], now=NOW)
    keeper = ViewKeeper(store, load_policy(BOOTSTRAP_DIR / "policy-dev.toml"), PARAMS)
    by_peer = {n.peer_id: n for n in NODES}
    honest, unasked = [], []
    for i in range(6):
        probe = factories.task_records(CLIENT, NODES[0], task_epoch, f"t{i}", expires=FAR)
        ranked = keeper.view(task_epoch).rank(probe.offer.record, beacon(task_epoch))
        first = by_peer[ranked[0]]
        other = next(n for n in NODES if n.peer_id != first.peer_id)
        task = factories.task_records(CLIENT, first, task_epoch, f"t{i}", expires=FAR)
        # the same task, claimed and "run" by a node that has no rank for it: a valid
        # enclave signature, a copied output digest, the self-made rank 0
        stolen = factories.task_records(CLIENT, other, task_epoch, f"t{i}", expires=FAR)
        assert stolen.offer.record_id == task.offer.record_id
        honest.append(first.peer_id)
        unasked.append(other.peer_id)
        store.put_many([*task.all(), stolen.claim, stolen.receipt], now=NOW)
    # the nodes re-attest (same keys); the view of EPOCH reads the tasks
    store.put_many([r for n in NODES for r in _node(n, EPOCH - 1)], now=NOW)
    view = keeper.view(EPOCH)
    ev = view.evidence
    assert len(ev.offer_epoch) == 6
    claims = sorted(ev.peers[n] for n in ev.claim_node)
    receipts = sorted(ev.peers[n] for n in ev.receipt_node)
    assert claims == receipts == sorted(honest)
    # control: without the rankings the unasked node's signed receipts would all count
    loose = collect(before_epoch(store.query(), EPOCH, PARAMS), ev.verdicts, now=NOW)
    assert sorted(loose.peers[n] for n in loose.receipt_node) == sorted(honest + unasked)
    # a fresh keeper (a restart: no view of the offers' epoch held) rebuilds it and agrees
    again = ViewKeeper(store, load_policy(BOOTSTRAP_DIR / "policy-dev.toml"), PARAMS)
    ev2 = again.view(EPOCH).evidence
    assert sorted(ev2.peers[n] for n in ev2.receipt_node) == sorted(honest)


def test_a_replaced_enclave_key_still_signs_the_offers_of_its_epochs():
    store = SqliteRecordStore(":memory:")
    keeper = ViewKeeper(store, load_policy(BOOTSTRAP_DIR / "policy-dev.toml"), PARAMS)
    node = NODES[0]
    old_enclave, new_enclave = factories.enclave_key("old"), factories.enclave_key("new")
    old, new = bytes(old_enclave.verify_key), bytes(new_enclave.verify_key)
    first = keeper.verdicts(
        [
            *_attestation(node, EPOCH - 4, old),
            factories.live_heartbeat(node, EPOCH - 4, old_enclave),
        ],
        NOW - 3 * PARAMS.epoch_s,
    )
    assert first[node.peer_id].result_key == old
    assert first[node.peer_id].earlier_result_keys == ()
    later = keeper.verdicts(
        [
            *_attestation(node, EPOCH - 2, new),
            factories.live_heartbeat(node, EPOCH - 1, new_enclave),
        ],
        NOW,
    )
    verdict = later[node.peer_id]
    assert verdict.result_key == new
    assert verdict.earlier_result_keys == ((old, EPOCH - 2),)
    assert verdict.result_key_for(old, EPOCH - 2) and not verdict.result_key_for(old, EPOCH - 1)
    assert verdict.result_key_for(new, EPOCH - 9)
