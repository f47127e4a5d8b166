"""Garbage attestations from fresh keys, on real hosts: no peer stores them.

The attack (found on a loopback devnet): 120 fresh keys published 320 KiB "attestations"
with garbage evidence and a 1-day lifetime; every node stored them (~36 MB each time).
Evidence that no TEE produced is now refused before it is stored, and the forwarder pays
the invalid-record gossip penalty; a node's real (here simulated-TEE) attestation still
goes through.
"""

from __future__ import annotations

import hashlib
import time

import pytest
import trio

from repp2p.net.topics import TOPICS
from repp2p.records import Attestation, encode
from repp2p.testing import factories
from repp2p.testing.network import gossiping_peer, local_network

pytestmark = pytest.mark.slow


async def _wait_until(predicate, timeout: float) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.05)


def _garbage(i: int, expires: int, epoch: int | None = None) -> bytes:
    record = Attestation(
        tee_kind="sev-snp",
        evidence=bytes([i % 251]) * (60 * 1024),
        collateral=b"\x30\x82" * (90 * 1024),
        gpu_evidence=b"",
        enc_key=factories.digest(f"enc-{i}"),
        result_key=factories.digest(f"res-{i}"),
        epoch=int(time.time()) // 10 if epoch is None else epoch,
        nonce=factories.digest(f"nonce-{i}"),
        seq=1,
        expires=expires,
    )
    return encode(record, factories.identity(f"sybil-{i}"))


async def test_garbage_attestations_are_not_stored_and_cost_the_forwarder(tmp_path):
    async with local_network(tmp_path, 2) as (boot, gate):
        await _wait_until(lambda: boot.is_synced() and gate.is_synced(), 20)
        # The honest nodes' own (simulated-TEE) attestations are held by both.
        await _wait_until(lambda: boot.store.count(Attestation.TYPE) >= 2, 30)
        held_before = gate.store.count(Attestation.TYPE)
        mallory = factories.identity("mallory")
        expires = int(time.time()) + 86_000
        # ... one of them with an old epoch: age must not let garbage evidence through
        garbage = [_garbage(i, expires) for i in range(5)] + [_garbage(5, expires, epoch=1)]
        topic = TOPICS["attestations"]
        async with gossiping_peer(mallory, gate, topic) as pubsub:
            with trio.fail_after(30):
                for data in garbage:
                    await pubsub.publish(topic, data)
                    await trio.sleep(0.2)

            def refused() -> float:
                counts = gate.status()["rejected"]
                return sum(v for reason, v in counts.items() if reason.startswith("attestation_"))

            await _wait_until(lambda: refused() >= len(garbage), 20)
            scorer = gate.parts.router.scorer
            score = scorer.score(pubsub.host.get_id(), [topic])
            assert score < 0, f"junk attestations left the forwarder at {score:+.0f}"
        for node in (gate, boot):
            assert node.store.count(Attestation.TYPE) == held_before
            assert not any(node.store.has(hashlib.sha256(d).digest()) for d in garbage)
