"""An equivocation flood from one throwaway key, on real hosts: every peer keeps a bounded
amount of evidence for it and drops that evidence once it expires.

The attack (found on a loopback devnet): one identity published 300 heartbeats and 25 large
attestations at the same seq; every node added one evidence row per distinct record (323),
kept them after expiry and two purges, and logged a warning for each.
"""

from __future__ import annotations

import hashlib
import time

import pytest
import trio

from repp2p.net.topics import TOPICS
from repp2p.records import Heartbeat, encode
from repp2p.store.sqlite import MAX_EVIDENCE_PER_SIGNER
from repp2p.testing import factories
from repp2p.testing.network import gossiping_peer, local_network

pytestmark = pytest.mark.slow


async def _wait_until(predicate, timeout: float) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.05)


async def test_equivocation_evidence_per_signer_is_bounded_and_purged(tmp_path):
    async with local_network(tmp_path, 2) as (boot, gate):
        await _wait_until(lambda: boot.is_synced() and gate.is_synced(), 20)
        mallory = factories.identity("mallory")
        expires = int(time.time()) + 120
        storm = [
            encode(Heartbeat(epoch=1, load=i, tasks_done=0, seq=7, expires=expires), mallory)
            for i in range(40)
        ]
        marker = encode(Heartbeat(epoch=2, load=0, tasks_done=0, seq=1, expires=expires), mallory)
        topic = TOPICS["heartbeats"]
        async with gossiping_peer(mallory, gate, topic) as pubsub:
            with trio.fail_after(30):
                for data in storm:
                    await pubsub.publish(topic, data)
                    await trio.sleep(0.1)  # under the peers' per-topic rate limit
                await trio.sleep(1.0)
                await pubsub.publish(topic, marker)
            digest = hashlib.sha256(marker).digest()
            await _wait_until(lambda: gate.store.get(digest) is not None, 15)
        for node in (gate, boot):  # the gate and the peer it forwarded to
            evidence = node.store.equivocations()
            assert 1 <= len(evidence) <= MAX_EVIDENCE_PER_SIGNER
            assert {a.signer for a, _ in evidence} == {mallory.peer_id}
        assert gate.status()["equivocations"] <= MAX_EVIDENCE_PER_SIGNER
        # Purged with its records: at the storm's expiry nothing of it is left.
        gate.store.purge_expired(now=expires)
        assert gate.store.equivocations() == []
