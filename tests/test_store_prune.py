"""Pruning per-task records by their task's epoch: the disk is bounded by the retention,
not by the expiry signers choose."""

from __future__ import annotations

from repp2p.digests.params import DigestParams
from repp2p.node.digests import retention_epochs
from repp2p.records import sign
from repp2p.store import SqliteRecordStore
from repp2p.testing import factories
from repp2p.testing.network import dev_params

NOW = factories.NOW
CLIENT, NODE = factories.identity("prune-client"), factories.identity("prune-node")


def test_old_tasks_go_whole_recent_ones_digests_and_evidence_stay():
    store = SqliteRecordStore(":memory:")
    old = [factories.task_records(CLIENT, NODE, 10, f"old{i}") for i in range(3)]
    new = [factories.task_records(CLIENT, NODE, 20, f"new{i}") for i in range(2)]
    orphan = factories.task_records(CLIENT, NODE, 5, "orphan")  # its offer never arrived
    digest = sign(factories.empty_work_digest(10), NODE)
    records = [r for t in old + new for r in t.all()] + [orphan.receipt, orphan.feedback, digest]
    store.put_many(records, now=NOW)
    # All of them far from expiring: expiry alone would keep them.
    assert store.purge_expired(now=NOW) == 0

    assert store.prune_task_records(before_epoch=15, orphans_before=NOW - 10) == 12
    held = {s.record_id for s in store.query()}
    assert held == {r.record_id for t in new for r in t.all()} | {
        orphan.receipt.record_id,
        orphan.feedback.record_id,
        digest.record_id,
    }
    # Orphans go once they are old enough, by their arrival.
    assert store.prune_task_records(before_epoch=15, orphans_before=NOW + 1) == 2
    assert store.count("Receipt") == 2 and store.count("Feedback") == 2
    assert store.count("WorkDigest") == 1


def test_retention_is_the_window_plus_the_audit_horizon():
    network = dev_params()
    params = DigestParams()
    assert retention_epochs(network, params) == (
        network.task_record_lag + network.reputation.window_epochs + params.audit_horizon_epochs
    )
