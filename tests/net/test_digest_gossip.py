"""Digests on ``/repp2p/1/digests`` between real hosts: published once an epoch is sealed,
held by peers; digests of epochs outside the accepted window, or living past an honest
digest of their epoch, are dropped, not forwarded."""

from __future__ import annotations

import dataclasses
import hashlib
import time

import trio

from repp2p.digests.params import DigestParams
from repp2p.net.topics import TOPICS
from repp2p.node.digests import digest_expires
from repp2p.records import WorkDigest, encode, sign
from repp2p.testing import factories
from repp2p.testing.network import dev_params, gossiping_peer, local_network

EPOCH_S = 2
NETWORK = dev_params(EPOCH_S)


async def _wait_until(predicate, timeout: float) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.1)


async def test_nodes_publish_work_digests_of_sealed_epochs_and_peers_hold_them(tmp_path):
    async with local_network(tmp_path, 2, network_params=dev_params(EPOCH_S)) as nodes:
        a, b = nodes

        def held_by_b() -> list:
            return b.store.query(type=WorkDigest.TYPE, signer=a.peer_id)

        # An idle network's epochs are quiet: a node that claimed nothing publishes no
        # empty digest when nobody's digest has rows (docs/digests.md, "Quiet epochs").
        params = DigestParams()
        await trio.sleep((params.seal_lag_epochs + 3) * EPOCH_S)
        assert held_by_b() == [] and a.store.count(WorkDigest.TYPE) == 0
        # Another node's digest with rows of a sealed epoch reaches a: that epoch and the
        # next are not quiet any more, and a's empty digests of them go out at once.
        current = int(time.time()) // EPOCH_S
        epoch = current - params.seal_lag_epochs - 1
        busy = dataclasses.replace(
            factories.sample_digests(expires=factories.far_future(time.time()))[0], epoch=epoch
        )
        assert a.pipeline.accept_decoded(sign(busy, factories.identity("busy")), source="test")
        await _wait_until(lambda: len(held_by_b()) >= 2, EPOCH_S + 10)
        assert sorted(d.record.epoch for d in held_by_b())[:2] == [epoch, epoch + 1]
        digest = held_by_b()[0]
        assert digest.record.leaf_count == 0
        assert a.store.get(digest.record_id) is not None
        assert DigestParams().sealed(digest.record.epoch, current + 1)
        assert a.status()["records"]["WorkDigest"] >= 3  # the busy one and a's two


async def test_digests_of_epochs_outside_the_window_are_dropped(tmp_path):
    async with local_network(tmp_path, 3, network_params=NETWORK) as nodes:
        gate, far = nodes[1], nodes[2]
        mallory = factories.identity("mallory-digests")
        params = DigestParams()
        async with gossiping_peer(mallory, gate, TOPICS["digests"]) as pubsub:
            current = int(time.time()) // EPOCH_S
            expires = factories.far_future(time.time())

            def digest(epoch: int, expires: int = expires) -> bytes:
                return encode(factories.empty_work_digest(epoch, expires=expires), mallory)

            sealed = current - params.seal_lag_epochs
            honest = digest_expires(sealed, EPOCH_S, NETWORK, NETWORK.digests)
            good = digest(sealed, honest)
            with trio.fail_after(10):
                for epoch in (current, current + 1000, 2**40, current - 1000, 0):
                    await pubsub.publish(TOPICS["digests"], digest(epoch))
                # within the window, but living past what an honest signer gives it
                await pubsub.publish(TOPICS["digests"], digest(sealed - 1, honest + 60))
                await pubsub.publish(TOPICS["digests"], good)  # the marker
            marker = hashlib.sha256(good).digest()
            await _wait_until(lambda: far.store.get(marker) is not None, 15)
            rejected = gate.status()["rejected"]
            assert rejected.get("digest_too_new") == 3
            assert rejected.get("digest_too_old") == 2
            assert rejected.get("digest_expires_too_far") == 1
            # Only the marker of mallory's digests was stored, at the gate and beyond.
            for node in (gate, far):
                assert len(node.store.query(type=WorkDigest.TYPE, signer=mallory.peer_id)) == 1
            assert "digest_too_new" not in far.status()["rejected"]
