"""A client's batched FeedbackDigests (``feedback_max_epochs`` > 1): one digest per window of
epochs, early when it fills, the same after a restart, audits answered, views count it."""

from __future__ import annotations

import dataclasses

from repp2p.attestation import load_policy
from repp2p.config import BOOTSTRAP_DIR
from repp2p.digests import AuditOutcome, build_feedback, build_work, reconcile, verify_audit
from repp2p.digests.params import DigestParams
from repp2p.node.digests import OwnDigests
from repp2p.records import FeedbackDigest, sign
from repp2p.store import SqliteRecordStore
from repp2p.testing import factories
from repp2p.testing.network import dev_params
from repp2p.viewer import ViewKeeper

from .own_digests_harness import Clock, Gossip, own_digests, sealed_clock, task_store

M = 4
PARAMS = DigestParams(feedback_max_epochs=M)
NETWORK = dataclasses.replace(dev_params(epoch_s=60), digests=PARAMS)
BASE = factories.NOW // 60 - 20
NODE, CLIENT = factories.identity("batch-node"), factories.identity("batch-client")


def _client(store, clock, **kw) -> tuple[OwnDigests, Gossip]:
    return own_digests(CLIENT, "client", store, clock, network=NETWORK, params=PARAMS, **kw)


def _store(epochs) -> SqliteRecordStore:
    return task_store(CLIENT, NODE, epochs, "b")


def _at(epoch: int) -> Clock:
    """Just after ``epoch`` is sealed."""
    return sealed_clock(epoch, PARAMS)


async def test_a_quiet_client_publishes_one_digest_per_window_and_views_count_it():
    own, gossip = _client(SqliteRecordStore(":memory:"), _at(BASE))
    first, last = own.batch_window(BASE + M)  # a whole window after BASE
    epochs = range(first, last + 1)
    store = _store(epochs)
    own, gossip = _client(store, _at(first))
    for e in epochs[:-1]:  # the window is still open: nothing yet
        own._clock.at = _at(e).at
        assert await own.publish_epoch(e) == []
        assert e not in own._done and e in own.due()
    own._clock.at = _at(last).at
    (batch,) = await own.publish_epoch(last)
    digest = batch.record
    assert isinstance(digest, FeedbackDigest)
    assert (digest.epoch, digest.span, digest.leaf_count) == (first, M, 2 * M)
    assert [row.offset for row in digest.rows] == list(range(M))
    assert len(gossip.sent) == 1 and all(e in own._done for e in epochs)
    # every epoch of the window now names the batch; publishing again re-gossips it only
    assert all(own.held(e) == [batch] for e in epochs)
    assert await own.publish_due() == 0  # this run is done with the window
    restarted, again = _client(store, _at(last))
    assert await restarted.publish_due() == M  # each epoch names the held batch
    assert {data for _, data in again.sent} == {batch.data}  # re-gossiped, not re-signed
    assert store.count(FeedbackDigest.TYPE) == 1
    # the store files it under its last epoch, where views and audits look for it
    assert store.query(type=FeedbackDigest.TYPE, epoch=last) == [batch]
    for e in epochs:
        (pair,) = reconcile([batch], e).pairs
        assert (pair.epoch, pair.client_reported, pair.client_covered) == (e, 2, True)
    # views wait for the batch: every epoch of it is folded after it went out
    assert NETWORK.digest_lag == PARAMS.seal_lag_epochs + 2 + M - 1
    assert first + NETWORK.digest_lag > last + PARAMS.seal_lag_epochs
    # its leaves are answered to auditors, rebuilt from the store
    fresh, _ = _client(store, _at(last))
    for i in range(digest.leaf_count):
        answer = fresh.answer(batch.record_id, i)
        assert verify_audit(batch, i, answer).outcome is AuditOutcome.PASS


async def test_a_batch_goes_out_early_once_it_fills_and_the_rest_follow():
    own, _ = _client(SqliteRecordStore(":memory:"), _at(BASE))
    first, last = own.batch_window(BASE + M)
    store = _store(range(first, last + 1))
    own, _ = _client(store, _at(first + 1), flush_rows=2)
    assert await own.publish_epoch(first) == []  # one row: wait
    (early,) = await own.publish_epoch(first + 1)  # two rows: out now
    assert (early.record.epoch, early.record.span) == (first, 2)
    own._clock.at = _at(last).at
    assert await own.publish_epoch(first + 2) == []
    (rest,) = await own.publish_epoch(last)
    assert (rest.record.epoch, rest.record.span) == (first + 2, 2)
    # a restarted client holding the same store publishes nothing new, the same batches
    again, _ = _client(store, _at(last), flush_rows=2)
    assert await again.publish_due() > 0
    assert store.count(FeedbackDigest.TYPE) == 2
    # the two batches do not overlap: no conflict in any epoch
    held = store.query(type=FeedbackDigest.TYPE)
    assert all(not reconcile(held, e).conflicted for e in range(first, last + 1))


async def test_an_idle_window_publishes_nothing():
    own, _ = _client(SqliteRecordStore(":memory:"), _at(BASE))
    first, last = own.batch_window(BASE + M)
    own, gossip = _client(SqliteRecordStore(":memory:"), _at(last))
    assert await own.publish_due() == 0
    assert gossip.sent == [] and all(e in own._done for e in range(first, last + 1))


def test_views_fold_each_epoch_of_a_batch_once_and_ignore_overlong_ones():

    network = NETWORK.replace(reputation_source="digests")
    epochs = range(BASE, BASE + M)
    store = _store(epochs)
    records = store.query()
    far = factories.far_future()
    work = [
        sign(p.digest, NODE)
        for e in epochs
        for p in build_work(NODE.peer_id, records, e, expires=far)
    ]
    (batch,) = build_feedback(CLIENT.peer_id, records, BASE, expires=far, span=M)
    store.put_many([*work, sign(batch.digest, CLIENT)], now=factories.NOW)
    keeper = ViewKeeper(store, load_policy(BOOTSTRAP_DIR / "policy-dev.toml"), network)
    for e in epochs:
        assert keeper.fold_digests(e)
        assert not keeper.fold_digests(e)  # once
        block = keeper.pairs.block(e)
        assert block is not None and block.digests == 2  # the node's digest and the batch
    # a batch longer than the network allows counts in no epoch, on every peer alike
    other = factories.identity("overlong-client")
    tasks = [factories.task_records(other, NODE, e, f"o{e}") for e in range(BASE + 8, BASE + 14)]
    store.put_many([r for t in tasks for r in t.all()], now=factories.NOW)
    records = store.query()
    (long_batch,) = build_feedback(other.peer_id, records, BASE + 8, expires=far, span=M + 2)
    store.put_many([sign(long_batch.digest, other)], now=factories.NOW)
    fresh = ViewKeeper(store, load_policy(BOOTSTRAP_DIR / "policy-dev.toml"), network)
    for e in range(BASE + 8, BASE + 14):
        assert fresh.fold_digests(e)
        assert fresh.pairs.block(e).digests == 0
