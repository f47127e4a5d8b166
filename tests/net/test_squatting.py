"""Task-id squatting, on real hosts: an offer signed under someone else's task id is
refused by every path into the store (gossip, feed, task stream), so it can neither hide
the victim's receipts from views nor be served.

The attack (found on a loopback devnet): offers signed by an attacker with the victims'
task ids and epoch 2^64-1 were stored by every node, and the victims' receipts for those
tasks vanished from views.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time

import pytest
import trio

from repp2p.net.topics import TOPICS
from repp2p.records import encode
from repp2p.testing import factories
from repp2p.testing.network import dev_params, gossiping_peer, local_network

pytestmark = pytest.mark.slow


async def _wait_until(predicate, timeout: float) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.05)


async def test_a_squatting_offer_is_refused_on_gossip_and_feeds(tmp_path):
    # Offers travel on gossip and feeds on records networks only (on a digest network they
    # go to the matched node over /repp2p/task/1, which refuses a squatting one too:
    # tests/e2e/test_tasks.py::test_replayed_and_expired_offers_are_ignored).
    records = dev_params().replace(reputation_source="records")
    async with local_network(tmp_path, 2, network_params=records) as (boot, gate):
        await _wait_until(lambda: boot.is_synced() and gate.is_synced(), 20)
        victim, mallory = factories.identity("victim"), factories.identity("mallory")
        real = factories.sample_records(now=time.time(), client=victim)[3]
        squat = encode(dataclasses.replace(real, epoch=2**64 - 1, seq=2), mallory)
        # mallory's own, bound offer: the marker that must get through
        own = encode(factories.sample_records(now=time.time(), client=mallory)[3], mallory)
        topic = TOPICS["tasks"]
        async with gossiping_peer(mallory, gate, topic) as pubsub:
            with trio.fail_after(10):
                await pubsub.publish(topic, squat)
                await pubsub.publish(topic, own)
            marker = hashlib.sha256(own).digest()
            await _wait_until(lambda: gate.store.get(marker) is not None, 15)
        assert gate.status()["rejected"].get("unbound_task_id") == 1
        offers = gate.store.query(type="TaskOffer")
        assert [s.signer for s in offers] == [mallory.peer_id]  # only the bound one
        # The feed path refuses it too (a peer serving it in a page).
        assert gate.pipeline.accept_many([squat], source="feed") == [False]
        assert gate.status()["rejected"].get("unbound_task_id") == 2
