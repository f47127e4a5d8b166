"""A light client of a digest-view network holds digests and what matching needs (ads,
attestations, heartbeats), not other people's tasks (issue 14, item 7)."""

from __future__ import annotations

import trio

from repp2p.net.topics import LIGHT_FAMILIES, TOPICS, subscribed_topics, topic_for
from repp2p.node.light import holds_only_own_tasks, own_tasks_only
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


def test_who_holds_only_its_own_tasks():
    assert holds_only_own_tasks("client", DIGEST_VIEWS)
    assert not holds_only_own_tasks("full", DIGEST_VIEWS)
    # views from records need every task's records: a light client then keeps them
    assert not holds_only_own_tasks("client", dev_params())
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


async def test_a_light_client_holds_no_other_clients_tasks(tmp_path):
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            full = await start_node(
                nursery, node_config(tmp_path, "full", network_params=DIGEST_VIEWS)
            )
            now = int(full.clock.now())
            epoch = now // DIGEST_VIEWS.epoch_s
            # the full node holds another client's tasks and a digest of a sealed epoch
            client, node = factories.identity("someone"), factories.identity("some-node")
            expires = now + 3600
            tasks = [
                factories.task_records(client, node, epoch, f"t{i}", expires=expires)
                for i in range(5)
            ]
            foreign = [r for t in tasks for r in t.all()]
            for record in foreign:
                assert full.pipeline.accept_decoded(record, source="test")
            old = epoch - DIGEST_VIEWS.digests.seal_lag_epochs - 1
            digest = sign(factories.empty_work_digest(old, expires=expires), node)
            assert full.pipeline.accept_decoded(digest, source="test")

            light = await start_node(
                nursery,
                node_config(
                    tmp_path,
                    "light",
                    (full.addrs()[0],),
                    network_params=DIGEST_VIEWS,
                    role="client",
                ),
            )
            assert set(light.parts.pubsub.topic_ids) == set(subscribed_topics(light=True))
            await light.parts.discovery.wait_synced()
            # what matching needs and the digests arrive ...
            while not (
                light.store.query(type=NodeAd.TYPE, signer=full.peer_id)
                and light.store.get(digest.record_id)
            ):
                await trio.sleep(0.2)
            # ... and new task records gossiped by the full node do not (not subscribed)
            extra = factories.task_records(client, node, epoch, "late", expires=expires)
            await full.parts.pubsub.publish(topic_for(TaskOffer.TYPE), extra.offer.data)
            later = sign(factories.empty_work_digest(old + 1, expires=expires), client)
            await full.parts.pubsub.publish(topic_for(FeedbackDigest.TYPE), later.data)
            while not light.store.get(later.record_id):
                await trio.sleep(0.2)
            held = [r for t in FEED_TYPES for r in light.store.query(type=t)]
            assert held == []  # none of another client's tasks
            assert len(full.store.query(type=TaskOffer.TYPE)) >= 5  # the full node holds them
            # the synced copies were refused as "not ours", not rejected as invalid
            not_kept = light.metrics.rejected.labels("not_kept", "sync")._value.get()
            assert not_kept >= len(foreign)
            light.stop()
            full.stop()
