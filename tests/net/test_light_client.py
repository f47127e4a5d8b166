"""On a digest-view network every peer holds digests and what matching needs (ads,
attestations, heartbeats), and of the per-task records only those of tasks it took part in
(issue 14, items 1 and 7)."""

from __future__ import annotations

import trio

from repp2p.net.topics import LIGHT_FAMILIES, TOPICS, subscribed_topics, topic_for
from repp2p.node.app import Node
from repp2p.node.digests import digest_expires
from repp2p.node.light import holds_only_own_tasks, own_tasks_only, served_to
from repp2p.records import (
    FEED_TYPES,
    FeedbackDigest,
    NodeAd,
    TaskOffer,
    WorkDigest,
    sign,
)
from repp2p.store import SqliteRecordStore
from repp2p.testing import factories
from repp2p.testing.network import dev_params, node_config, start_node

DIGEST_VIEWS = dev_params().replace(reputation_source="digests")
RECORD_VIEWS = dev_params().replace(reputation_source="records")


def _digest_expires(epoch: int) -> int:
    """An honest digest's expiry (a peer's pipeline takes none later)."""
    return digest_expires(epoch, DIGEST_VIEWS.epoch_s, DIGEST_VIEWS, DIGEST_VIEWS.digests)


def test_who_holds_only_its_own_tasks():
    assert holds_only_own_tasks("client", DIGEST_VIEWS)
    assert holds_only_own_tasks("full", DIGEST_VIEWS)
    # views from records need every task's records: every peer then keeps them
    assert not holds_only_own_tasks("client", RECORD_VIEWS)
    assert not holds_only_own_tasks("full", RECORD_VIEWS)
    # the default: a network file that does not name its source has views from digests
    assert holds_only_own_tasks("full", dev_params())
    light = subscribed_topics(light=True)
    assert set(light) == {TOPICS[f] for f in LIGHT_FAMILIES}
    for t in FEED_TYPES:
        assert topic_for(t) not in light and topic_for(t) in subscribed_topics(light=False)
    assert topic_for(WorkDigest.TYPE) in light and topic_for(NodeAd.TYPE) in light


def test_own_tasks_only_keeps_our_tasks_and_node_records():
    me, other = factories.identity("me"), factories.identity("other")
    node = factories.identity("a-node")
    store = SqliteRecordStore(":memory:")
    mine = factories.task_records(me, node, 7, "mine")
    theirs = factories.task_records(other, node, 7, "theirs")
    keep = own_tasks_only(store, me.peer_id)
    assert keep(mine.offer) and keep(mine.feedback)  # signed by us
    # a node's claim and receipt of our task: kept once our offer is stored (it always is
    # before anyone can claim it)
    assert not keep(mine.claim)
    store.put(mine.offer, now=factories.NOW)
    assert keep(mine.claim) and keep(mine.receipt)
    assert not any(keep(r) for r in theirs.all())
    assert keep(sign(factories.sample_records()[0], node))  # a NodeAd
    assert keep(sign(factories.sample_digests()[1], other))  # a FeedbackDigest


def test_a_full_node_keeps_the_tasks_it_claimed_only():
    client = factories.identity("client")
    me, other = factories.identity("me-node"), factories.identity("other-node")
    store = SqliteRecordStore(":memory:")
    served = factories.task_records(client, me, 7, "served")
    elsewhere = factories.task_records(client, other, 7, "elsewhere")
    keep = own_tasks_only(store, me.peer_id)
    assert keep(served.claim) and keep(served.receipt)  # ours
    assert not keep(served.offer) and not keep(served.feedback)
    store.put(served.claim, now=factories.NOW)  # our claim is stored before anything else
    assert keep(served.offer) and keep(served.feedback)  # the client's, on our task
    assert not any(keep(r) for r in elsewhere.all())


def test_sync_serves_task_records_to_their_parties_only():
    client, stranger = factories.identity("client"), factories.identity("stranger")
    node, other = factories.identity("node"), factories.identity("other-node")
    store = SqliteRecordStore(":memory:")
    task = factories.task_records(client, node, 7, "t")
    for record in task.all():
        store.put(record, now=factories.NOW)
    serves = served_to(store)
    for record in task.all():
        assert serves(record, client.peer_id) and serves(record, node.peer_id)
        assert not serves(record, stranger.peer_id) and not serves(record, other.peer_id)
        assert not serves(record, None)
    ad = sign(factories.sample_records()[0], node)
    digest = sign(factories.sample_digests()[1], client)
    assert serves(ad, stranger.peer_id) and serves(digest, None)


async def test_sync_sends_a_peer_its_own_tasks_and_no_one_elses(tmp_path):
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            full = await start_node(
                nursery, node_config(tmp_path, "full", network_params=DIGEST_VIEWS)
            )
            # a full node of a digest-view network follows no per-task topic or feed
            assert set(full.parts.pubsub.topic_ids) == set(subscribed_topics(light=True))
            light = Node(
                node_config(
                    tmp_path,
                    "light",
                    (full.addrs()[0],),
                    network_params=DIGEST_VIEWS,
                    role="client",
                )
            )
            now = int(full.clock.now())
            epoch = now // DIGEST_VIEWS.epoch_s
            expires = now + 3600
            # the full node holds the light client's task and other clients' tasks (as
            # after serving them) and a digest of a sealed epoch
            someone, node = factories.identity("someone"), factories.identity("some-node")
            mine = factories.task_records(light.identity, node, epoch, "mine", expires=expires)
            theirs = [
                factories.task_records(someone, node, epoch, f"t{i}", expires=expires)
                for i in range(5)
            ]
            for record in [*mine.all(), *(r for t in theirs for r in t.all())]:
                assert full.pipeline.accept_decoded(record, source="test")
            old = epoch - DIGEST_VIEWS.digests.seal_lag_epochs - 1
            digest = sign(factories.empty_work_digest(old, expires=_digest_expires(old)), node)
            assert full.pipeline.accept_decoded(digest, source="test")

            await nursery.start(light.run)
            assert set(light.parts.pubsub.topic_ids) == set(subscribed_topics(light=True))
            await light.parts.discovery.wait_synced()
            while not (
                light.store.query(type=NodeAd.TYPE, signer=full.peer_id)
                and light.store.get(digest.record_id)
            ):
                await trio.sleep(0.2)
            # ... and new task records gossiped by the full node do not (not subscribed)
            extra = factories.task_records(someone, node, epoch, "late", expires=expires)
            await full.parts.pubsub.publish(topic_for(TaskOffer.TYPE), extra.offer.data)
            later = sign(
                factories.empty_work_digest(old + 1, expires=_digest_expires(old + 1)), someone
            )
            await full.parts.pubsub.publish(topic_for(FeedbackDigest.TYPE), later.data)
            while not light.store.get(later.record_id):
                await trio.sleep(0.2)
            held = {r.record_id for t in FEED_TYPES for r in light.store.query(type=t)}
            own = {r.record_id for r in mine.all()}
            assert held <= own  # its own task, nothing else
            # what it signed is always kept; the node's claim and receipt only when they
            # came after its offer (sync sends in record-ID order; the client's own store
            # holds them anyway)
            assert {mine.offer.record_id, mine.feedback.record_id} <= held
            assert len(full.store.query(type=TaskOffer.TYPE)) == 6  # the full node holds them
            # the other tasks' records were not even sent: all that was refused as not
            # ours is of our own task, ahead of its offer
            not_kept = light.metrics.rejected.labels("not_kept", "sync")._value.get()
            assert not_kept == len(own - held)
            light.stop()
            full.stop()
