"""The byte quota of unattested identities, as a unit, in the pipeline, and on real hosts.

The attack (issue 16, finding 6): thousands of fresh keys, each within its per-window
budget, publish node records that every peer stores for up to a day. Now identities with
no verified attestation share a small byte quota (per identity and in total); what falls
out of it is evicted in one fixed order, so peers that received the same records hold the
same ones whatever order they came in, and attested nodes are never touched.
"""

from __future__ import annotations

import hashlib
import random
import time

import pytest
import trio

from repp2p.clock import ClockAPI
from repp2p.net.params import BudgetParams
from repp2p.net.topics import TOPICS
from repp2p.node.budgets import (
    OVER_UNATTESTED_QUOTA,
    RECORD_CHARGE,
    UNATTESTED_EVICTED,
    UnattestedQuota,
    quota_key,
)
from repp2p.node.metrics import NodeMetrics, totals
from repp2p.node.pipeline import RecordPipeline
from repp2p.records import EngineOffer, Heartbeat, NodeAd, decode, encode
from repp2p.store import SqliteRecordStore
from repp2p.testing import factories
from repp2p.testing.network import gossiping_peer, local_network

NOW = factories.NOW
KIB = 1024


def heartbeat(name: str, epoch: int, *, seq: int = 1, expires: int | None = None):
    record = Heartbeat(
        epoch=epoch, load=0, tasks_done=0, seq=seq, expires=expires or factories.far_future()
    )
    return decode(encode(record, factories.identity(name)))


def ad(name: str, *, addrs: int = 1, seq: int = 1, expires: int | None = None):
    """An ad of about 300 bytes, plus ~260 bytes per further address (16 at most)."""
    record = NodeAd(
        addrs=tuple(f"/dns4/{'h' * 230}{i}.example/tcp/{4000 + i}" for i in range(addrs)),
        engines=(EngineOffer("echo", factories.digest("echo")),),
        tee_kind="simulated",
        price=1,
        capacity=1,
        throughput=1,
        seq=seq,
        expires=expires or factories.far_future(),
    )
    return decode(encode(record, factories.identity(name)))


def never_attested(signer, now, record) -> bool:
    return False


class Peer:
    """A peer's store as far as the quota goes: admitted records in, evicted ones out."""

    def __init__(self, params: BudgetParams, is_attested=never_attested) -> None:
        self.quota = UnattestedQuota(params, is_attested)
        self.held: dict[bytes, object] = {}

    def receive(self, signed, now: int = NOW) -> bool:
        ok, evicted = self.quota.admit(signed, now)
        if ok:
            # the store's replacement rule: one record per (signer, type, slot), the
            # highest seq wins (an older one is refused as stale)
            slot = (signed.signer, signed.type, signed.record.slot())
            same = [o for o in self.held.values() if (o.signer, o.type, o.record.slot()) == slot]
            if all(o.record.seq < signed.record.seq for o in same):
                for o in same:
                    del self.held[o.record_id]
                self.held[signed.record_id] = signed
        for rid in evicted:
            self.held.pop(rid, None)
        return ok

    def held_bytes(self) -> int:
        return sum(len(s.data) for s in self.held.values())

    def charged(self) -> int:
        return RECORD_CHARGE * len(self.held)


def test_one_identity_holds_at_most_its_quota_and_the_rest_is_refused_or_evicted():
    params = BudgetParams(unattested_bytes=16 * KIB, unattested_total_bytes=1024 * KIB)
    peer = Peer(params)
    beats = [heartbeat("mallory", e) for e in range(200)]
    results = [peer.receive(b) for b in beats]
    assert len(peer.held) == 16 * KIB // RECORD_CHARGE == 4
    assert peer.quota.held_bytes == peer.charged() and peer.held_bytes() <= 16 * KIB
    assert sum(results) < len(beats)
    # What it holds is the best of the identity's records in the quota's one order.
    wanted = sorted(beats, key=quota_key)[:4]
    assert set(peer.held) == {b.record_id for b in wanted}
    # Another identity is not affected by mallory's use of its own quota.
    assert peer.receive(heartbeat("newcomer", 1))


def test_the_same_records_in_any_order_leave_every_peer_holding_the_same():
    params = BudgetParams(unattested_bytes=8 * KIB, unattested_total_bytes=64 * KIB)
    records = [heartbeat(f"key-{k}", e) for k in range(40) for e in range(12)]
    records += [ad(f"key-{k}", addrs=1 + k % 12) for k in range(40)]
    records += [ad(f"key-{k}", addrs=2, seq=2) for k in range(0, 40, 5)]  # replacements
    held = []
    for seed in range(6):
        order = list(records)
        random.Random(seed).shuffle(order)
        peer = Peer(params)
        for signed in order:
            peer.receive(signed)
        assert peer.held_bytes() <= peer.charged() == peer.quota.held_bytes <= 64 * KIB
        held.append(frozenset(peer.held))
    assert len(set(held)) == 1, "peers that saw the same records hold different ones"
    # Ads rank before heartbeats: under pressure an identity's ad is what stays.
    kept = {peer.held[rid].type for rid in held[0]}
    assert "NodeAd" in kept


def test_attested_identities_are_exempt_and_leave_the_quota():
    attested: set[str] = set()
    params = BudgetParams(unattested_bytes=32 * KIB, unattested_total_bytes=64 * KIB)
    peer = Peer(params, lambda signer, now, record: signer in attested)
    node = factories.identity("honest-node").peer_id
    # Before its attestation arrives, a node's first records fit its identity's quota.
    assert peer.receive(ad("honest-node"))
    for e in range(5):
        assert peer.receive(heartbeat("honest-node", e))
    counted = peer.quota.held_bytes
    assert counted == 6 * RECORD_CHARGE
    attested.add(node)  # its attestation verified
    for e in range(5, 300):
        assert peer.receive(heartbeat("honest-node", e))  # never refused
    assert peer.quota.held_bytes == 0  # and no longer counted
    assert len(peer.held) == 301


def test_a_record_larger_than_the_charge_is_refused_without_evicting():
    params = BudgetParams(unattested_bytes=32 * KIB, unattested_total_bytes=64 * KIB)
    peer = Peer(params)
    for e in range(5):
        assert peer.receive(heartbeat("big", e))
    before = set(peer.held)
    huge = ad("big", addrs=16)
    assert len(huge.data) > RECORD_CHARGE
    assert not peer.receive(huge)
    assert set(peer.held) == before


def test_replacements_stale_records_and_expiry():
    params = BudgetParams(unattested_bytes=4 * KIB, unattested_total_bytes=64 * KIB)
    peer = Peer(params)
    first = ad("x", seq=1, expires=NOW + 100)
    assert peer.receive(first)
    assert peer.quota.held_bytes == RECORD_CHARGE
    newer = ad("x", addrs=2, seq=2, expires=NOW + 100)
    assert peer.receive(newer) and peer.quota.held_bytes == RECORD_CHARGE  # replaced
    # An older seq changes nothing in the count (the store refuses it as stale).
    assert peer.quota.admit(first, NOW) == (True, [])
    assert peer.quota.held_bytes == RECORD_CHARGE
    # An expired record frees its room.
    assert peer.quota.admit(heartbeat("y", 1), NOW + 100)[0]
    assert peer.quota.held_bytes == RECORD_CHARGE


# -- in the pipeline, with a real store --------------------------------------------------------


class FixedClock(ClockAPI):
    def now(self) -> float:
        return float(NOW)

    async def sleep_until(self, when: float) -> None:  # pragma: no cover - never waits
        raise AssertionError("the pipeline never waits")


def test_the_pipeline_refuses_and_evicts_in_the_store(tmp_path):
    params = BudgetParams(unattested_bytes=8 * KIB, unattested_total_bytes=64 * KIB)
    store = SqliteRecordStore(tmp_path / "records.db")
    metrics = NodeMetrics()
    quota = UnattestedQuota(params, never_attested)
    pipeline = RecordPipeline(store, metrics, FixedClock(), quota=quota)
    try:
        records = [ad(f"k{k}", addrs=3) for k in range(40)]
        verdicts = pipeline.judge_many([s.data for s in records], source="sync")
        held = store.query(type=NodeAd.TYPE)
        assert len(held) == 64 * KIB // RECORD_CHARGE
        assert quota.held_bytes == RECORD_CHARGE * len(held)
        rejected = totals(metrics.rejected, "reason")
        assert rejected.get(OVER_UNATTESTED_QUOTA, 0) + rejected.get(UNATTESTED_EVICTED, 0) > 0
        assert all(v.name in ("ACCEPT", "IGNORE") for v in verdicts)  # nobody is blamed
        # The same records in another order: the same ones held.
        store2 = SqliteRecordStore(tmp_path / "records2.db")
        pipeline2 = RecordPipeline(
            store2, NodeMetrics(), FixedClock(), quota=UnattestedQuota(params, never_attested)
        )
        shuffled = list(records)
        random.Random(3).shuffle(shuffled)
        for signed in shuffled:
            pipeline2.judge(signed.data, source="gossip")
        assert {s.record_id for s in store2.query(type=NodeAd.TYPE)} == {s.record_id for s in held}
        store2.close()
        # Our own records are never counted or refused.
        own = ad("k99", addrs=3)
        assert pipeline.accept(own.data, source="local")
        assert store.get(own.record_id) is not None
    finally:
        store.close()


# -- on real hosts -----------------------------------------------------------------------------


@pytest.mark.slow
async def test_fresh_keys_flooding_ads_fill_only_the_quota(tmp_path):
    budgets = BudgetParams(unattested_bytes=8 * KIB, unattested_total_bytes=64 * KIB)
    async with local_network(tmp_path, 2, budgets=budgets) as (boot, gate):
        with trio.fail_after(20):
            while not (boot.is_synced() and gate.is_synced()):
                await trio.sleep(0.05)
        expires = int(time.time()) + 3600
        flood = []
        for k in range(60):  # ~3 KiB ads from 60 fresh keys: ~180 KiB in all
            key = factories.identity(f"fresh-{k}")
            record = NodeAd(
                addrs=tuple(f"/dns4/{'h' * 230}{i}.example/tcp/{4000 + i}" for i in range(12)),
                engines=(),
                tee_kind="simulated",
                price=1,
                capacity=1,
                throughput=1,
                seq=int(time.time() * 1000),
                expires=expires,
            )
            flood.append(encode(record, key))
        assert sum(map(len, flood)) > 2 * 64 * KIB and max(map(len, flood)) <= RECORD_CHARGE
        topic = TOPICS["ads"]
        sender = factories.identity("flooder")
        async with gossiping_peer(sender, gate, topic) as pubsub:
            with trio.fail_after(30):
                for data in flood:
                    await pubsub.publish(topic, data)
                    await trio.sleep(0.02)

                def dealt_with() -> int:
                    rejected = gate.status()["rejected"]
                    held = sum(gate.store.has(hashlib.sha256(d).digest()) for d in flood)
                    out = rejected.get(OVER_UNATTESTED_QUOTA, 0)
                    return held + out + rejected.get(UNATTESTED_EVICTED, 0)

                while dealt_with() < len(flood):
                    await trio.sleep(0.05)
            score = gate.parts.router.scorer.score(pubsub.host.get_id(), [topic])
            assert score >= 0, f"a record over the quota cost its forwarder {score:+.0f}"
        held = [d for d in flood if gate.store.has(hashlib.sha256(d).digest())]
        assert 0 < len(held) <= 64 * KIB // RECORD_CHARGE
        # The attested nodes' own records are untouched: the gate still holds boot's ad
        # and takes its new heartbeats.
        assert gate.store.query(type=NodeAd.TYPE, signer=boot.peer_id)
        own = lambda: gate.store.query(type=Heartbeat.TYPE, signer=boot.peer_id)  # noqa: E731
        before = len(own())
        with trio.fail_after(3 * gate.config.epoch_s + 10):
            while len(own()) <= before:
                await trio.sleep(0.2)


def test_at_start_the_quota_counts_the_store_and_evicts_what_no_longer_fits():
    # A store filled under a larger quota (or before the quota existed): seeding counts it
    # and names what the configured quota keeps out, the same as if it arrived now.
    records = [heartbeat("old-key", e) for e in range(20)] + [ad(f"k{k}") for k in range(30)]
    params = BudgetParams(unattested_bytes=8 * KIB, unattested_total_bytes=64 * KIB)
    quota = UnattestedQuota(params, never_attested)
    shuffled = list(records)
    random.Random(1).shuffle(shuffled)
    evicted = set(quota.seed(shuffled, NOW))
    kept = [s for s in records if s.record_id not in evicted]
    assert len(kept) == 64 * KIB // RECORD_CHARGE == quota.held_bytes // RECORD_CHARGE
    peer = Peer(params)
    for signed in records:
        peer.receive(signed)
    assert {s.record_id for s in kept} == set(peer.held)


def test_an_identity_attested_meanwhile_is_not_evicted_by_a_flood():
    # Counted while unattested, then its attestation verified (by a view, say) with no new
    # record of it arriving: a flood of fresh keys must not evict its records.
    attested: set[str] = set()
    params = BudgetParams(unattested_bytes=32 * KIB, unattested_total_bytes=64 * KIB)
    peer = Peer(params, lambda signer, now, record: signer in attested)
    node = ad("late-attested", addrs=12)  # large: the first in line to be pushed out
    assert peer.receive(node)
    attested.add(node.signer)
    for k in range(40):
        peer.receive(ad(f"flood-{k}"))
    assert node.record_id in peer.held
    assert peer.quota.held_bytes == 64 * KIB  # the flood fills the quota, nothing more
