"""Per-signer budgets on gossiped node records, on real hosts and as a unit.

The attack: one key publishes node records by the hundred (a heartbeat for every epoch of
its 1-day lifetime, say), and every peer stores and forwards each one. Now a peer takes at
most its budget per signer, type and window from gossip, ignores the rest without
blaming the forwarder, and keeps taking everyone else's records.
"""

from __future__ import annotations

import hashlib
import time

import pytest
import trio

from repp2p.net.params import BudgetParams
from repp2p.net.topics import TOPICS
from repp2p.node.budgets import OVER_BUDGET, RECORD_CHARGE, SignerBudgets
from repp2p.records import Heartbeat, encode
from repp2p.testing import factories
from repp2p.testing.network import gossiping_peer, local_network


def _slot(epoch: int) -> bytes:
    return epoch.to_bytes(8, "big")


def test_budgets_count_new_slots_per_signer_type_and_window() -> None:
    budgets = SignerBudgets(BudgetParams(window_s=60, slots_per_epoch=2, floor=8), 10)
    allowed = budgets.allowed(Heartbeat.TYPE)
    assert allowed == 12  # 2 slots per epoch x 6 epochs of 10 s in a minute
    assert budgets.allowed("TaskOffer") is None  # per-task records are not budgeted here
    results = [budgets.admit("a", Heartbeat.TYPE, _slot(e), 1_000.0) for e in range(allowed + 5)]
    assert results == [True] * allowed + [False] * 5
    # a replacement for a slot admitted in this window still passes: no new storage
    assert all(budgets.admit("a", Heartbeat.TYPE, _slot(0), 1_000.0) for _ in range(50))
    assert budgets.admit("b", Heartbeat.TYPE, _slot(99), 1_000.0)  # another signer
    assert budgets.admit("a", "NodeAd", b"", 1_000.0)  # another type: its own budget
    assert budgets.admit("a", Heartbeat.TYPE, _slot(99), 1_080.0)  # the next window


def test_the_floor_covers_long_epochs() -> None:
    budgets = SignerBudgets(BudgetParams(window_s=60, floor=8), 600)
    assert budgets.allowed(Heartbeat.TYPE) == 8


def test_signers_kept_bounds_memory() -> None:
    budgets = SignerBudgets(BudgetParams(signers_kept=1000), 60)
    for i in range(5000):
        budgets.admit(f"s{i}", Heartbeat.TYPE, _slot(1), 0.0)
    assert len(budgets._slots) == 1000


@pytest.mark.slow
async def test_a_heartbeat_storm_from_one_key_is_cut_at_its_budget(tmp_path):
    async with local_network(tmp_path, 2) as (boot, gate):
        with trio.fail_after(20):
            while not (boot.is_synced() and gate.is_synced()):
                await trio.sleep(0.05)
        mallory = factories.identity("mallory")
        expires = int(time.time()) + 3600
        storm = [
            encode(Heartbeat(epoch=e, load=0, tasks_done=0, seq=1, expires=expires), mallory)
            for e in range(1, 81)
        ]
        allowed = SignerBudgets(gate.config.budgets, gate.config.epoch_s).allowed(Heartbeat.TYPE)
        assert allowed is not None and allowed < len(storm)
        topic = TOPICS["heartbeats"]
        async with gossiping_peer(mallory, gate, topic) as pubsub:
            with trio.fail_after(30):
                for data in storm:
                    await pubsub.publish(topic, data)
                    await trio.sleep(0.02)
                while gate.status()["rejected"].get(OVER_BUDGET, 0) < len(storm) - allowed:
                    await trio.sleep(0.05)
            score = gate.parts.router.scorer.score(pubsub.host.get_id(), [topic])
            assert score >= 0, f"an over-budget record cost its forwarder {score:+.0f}"
        held = [d for d in storm if gate.store.has(hashlib.sha256(d).digest())]
        # mallory has no attestation: of what its budget let in, its identity's byte
        # quota keeps a few (tests/net/test_unattested_quota.py)
        kept = gate.config.budgets.unattested_bytes // RECORD_CHARGE
        assert len(held) == min(allowed, kept)
        # The honest node's own heartbeats (one a second here) still arrive at the gate.
        own = lambda: gate.store.query(type=Heartbeat.TYPE, signer=boot.peer_id)  # noqa: E731
        before = len(own())
        with trio.fail_after(3 * gate.config.epoch_s + 10):
            while len(own()) <= before:
                await trio.sleep(0.2)
