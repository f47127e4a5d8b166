"""A node's batched WorkDigests (``work_max_epochs`` > 1): one digest per window of epochs,
the same after a restart mid-window, failed tasks kept, audits answered, views fold every
epoch of the batch once."""

from __future__ import annotations

import dataclasses

from repp2p.attestation import load_policy
from repp2p.config import BOOTSTRAP_DIR
from repp2p.digests import AuditOutcome, build_feedback, build_work, reconcile, verify_audit
from repp2p.digests.params import DigestParams
from repp2p.node.digests import FailedTasks, OwnDigests
from repp2p.records import WorkDigest, sign
from repp2p.store import SqliteRecordStore
from repp2p.testing import factories
from repp2p.testing.network import dev_params
from repp2p.viewer import ViewKeeper

from .own_digests_harness import Clock, Gossip, own_digests, sealed_clock, task_store

M = 4
PARAMS = DigestParams(work_max_epochs=M)
NETWORK = dataclasses.replace(dev_params(epoch_s=60), digests=PARAMS)
BASE = factories.NOW // 60 - 20
NODE, CLIENT = factories.identity("wbatch-node"), factories.identity("wbatch-client")


def _node(store, clock, **kw) -> tuple[OwnDigests, Gossip]:
    return own_digests(NODE, "full", store, clock, network=NETWORK, params=PARAMS, **kw)


def _store(epochs, *, undelivered=()) -> SqliteRecordStore:
    return task_store(CLIENT, NODE, epochs, "w", undelivered=undelivered)


def _at(epoch: int) -> Clock:
    """Just after ``epoch`` is sealed."""
    return sealed_clock(epoch, PARAMS)


def _window():
    probe, _ = _node(SqliteRecordStore(":memory:"), _at(BASE))
    return probe.batch_window(BASE + M)


async def test_a_node_publishes_one_work_digest_per_window_restart_safe_and_audited():
    first, last = _window()
    epochs = range(first, last + 1)
    store = _store(epochs)
    own, gossip = _node(store, _at(first))
    for e in epochs[:-1]:  # the window is still open: nothing yet
        own._clock.at = _at(e).at
        assert await own.publish_epoch(e) == []
    # a restart in the middle of the window: the new process reads the same store
    own, gossip = _node(store, _at(last))
    (batch,) = await own.publish_epoch(last)
    digest = batch.record
    assert isinstance(digest, WorkDigest)
    assert (digest.epoch, digest.span, digest.leaf_count) == (first, M, 2 * M)
    assert [row.offset for row in digest.rows] == list(range(M))
    assert len(gossip.sent) == 1
    assert all(own.held(e) == [batch] for e in epochs)
    # the same batch as a never-restarted node signs, byte for byte
    never = build_work(NODE.peer_id, store.query(), first, expires=digest.expires, span=M)
    assert sign(never[0].digest, NODE).data == batch.data
    restarted, again = _node(store, _at(last))
    assert await restarted.publish_due() == M
    assert {data for _, data in again.sent} == {batch.data}  # re-gossiped, not re-signed
    assert store.count(WorkDigest.TYPE) == 1
    assert store.query(type=WorkDigest.TYPE, epoch=last) == [batch]
    for e in epochs:
        (pair,) = reconcile([batch], e).pairs
        assert (pair.epoch, pair.node_claims, pair.node_covered) == (e, 2, True)
    assert NETWORK.digest_lag == PARAMS.seal_lag_epochs + 2 + M - 1
    fresh, _ = _node(store, _at(last))
    for i in range(digest.leaf_count):
        answer = fresh.answer(batch.record_id, i)
        assert verify_audit(batch, i, answer).outcome is AuditOutcome.PASS


async def test_failed_tasks_of_any_epoch_of_the_window_are_failed_leaves(tmp_path):
    first, last = _window()
    store = _store(range(first, last + 1), undelivered={(first + 1, 0), (last, 1)})
    failed = FailedTasks(tmp_path / "failed-tasks.txt")
    failed_task = factories.task_records(CLIENT, NODE, first + 1, f"w{first + 1}-0").offer
    failed.add(first + 1, failed_task.record.task_id)
    own, _ = _node(store, _at(last), failed=FailedTasks(tmp_path / "failed-tasks.txt"))
    (batch,) = await own.publish_epoch(last)
    rows = {row.offset: row for row in batch.record.rows}
    assert (rows[1].failures, rows[1].timeouts) == (1, 0)
    assert (rows[M - 1].failures, rows[M - 1].timeouts) == (0, 1)


async def test_an_idle_node_publishes_one_empty_batch_per_window():
    first, last = _window()
    store = SqliteRecordStore(":memory:")
    # another node served tasks in the window's second epoch: the window is not quiet
    busy = factories.sample_digests()[0]
    other = factories.identity("wbatch-other")
    store.put(sign(dataclasses.replace(busy, epoch=first + 1), other), now=factories.NOW)
    own, gossip = _node(store, _at(first - 1))
    for e in range(first, last):
        own._clock.at = _at(e).at
        assert await own.publish_epoch(e) == []
    own._clock.at = _at(last).at
    (empty,) = await own.publish_epoch(last)
    assert (empty.record.epoch, empty.record.span, empty.record.rows) == (first, M, ())
    assert len(gossip.sent) == 1


async def test_an_idle_node_publishes_no_batch_for_a_quiet_window():
    first, last = _window()
    store = SqliteRecordStore(":memory:")
    own, gossip = _node(store, _at(first - 1))
    own._clock.at = _at(last).at
    assert await own.publish_epoch(last) == [] and gossip.sent == []
    assert last in own.due()  # still due: published if a digest with rows of it comes


def test_views_fold_each_epoch_of_a_work_batch_once_and_ignore_overlong_ones():
    network = NETWORK.replace(reputation_source="digests")
    epochs = range(BASE, BASE + M)
    store = _store(epochs)
    records = store.query()
    far = factories.far_future()
    feedback = [
        sign(p.digest, CLIENT)
        for e in epochs
        for p in build_feedback(CLIENT.peer_id, records, e, expires=far)
    ]
    (batch,) = build_work(NODE.peer_id, records, BASE, expires=far, span=M)
    store.put_many([*feedback, sign(batch.digest, NODE)], now=factories.NOW)
    keeper = ViewKeeper(store, load_policy(BOOTSTRAP_DIR / "policy-dev.toml"), network)
    for e in epochs:
        assert keeper.fold_digests(e)
        assert not keeper.fold_digests(e)
        block = keeper.pairs.block(e)
        assert block is not None and block.digests == 2  # the batch and the client's digest
    other = factories.identity("overlong-node")
    tasks = [factories.task_records(CLIENT, other, e, f"o{e}") for e in range(BASE + 8, BASE + 14)]
    store.put_many([r for t in tasks for r in t.all()], now=factories.NOW)
    (long_batch,) = build_work(other.peer_id, store.query(), BASE + 8, expires=far, span=M + 2)
    store.put_many([sign(long_batch.digest, other)], now=factories.NOW)
    fresh = ViewKeeper(store, load_policy(BOOTSTRAP_DIR / "policy-dev.toml"), network)
    for e in range(BASE + 8, BASE + 14):
        assert fresh.fold_digests(e)
        assert fresh.pairs.block(e).digests == 0


def test_records_are_kept_until_the_last_audit_of_the_batch_holding_them():
    from repp2p.node.digests import retention_epochs

    single = dataclasses.replace(NETWORK, digests=DigestParams())
    assert retention_epochs(NETWORK, PARAMS) == retention_epochs(single, DigestParams()) + M - 1
    # a network with a one-epoch window: the batch of E .. E + M - 1 is answered until
    # E + M - 1 + audit_horizon, and E's records are still there
    short = dataclasses.replace(
        NETWORK,
        task_record_lag=1,
        reputation=dataclasses.replace(NETWORK.reputation, window_epochs=1),
    )
    first = 100
    last = first + M - 1
    kept_until = first + retention_epochs(short, PARAMS)
    assert PARAMS.answers_audits_of(last, last + PARAMS.audit_horizon_epochs)
    assert kept_until >= last + PARAMS.audit_horizon_epochs
    # (without the batch's M - 1 epochs: gone 1 epoch before its last audit)
    assert first + retention_epochs(short, PARAMS) - (M - 1) < last + PARAMS.audit_horizon_epochs
