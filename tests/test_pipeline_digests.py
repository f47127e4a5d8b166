"""The pipeline's epoch window for digests: gossip takes recent epochs only, no source
takes an epoch not sealed yet (IGNORE, counted by reason); with the network's parameters,
no source takes a digest that expires later than an honest one of its last epoch."""

from __future__ import annotations

import dataclasses

import pytest

from repp2p.clock import ClockAPI
from repp2p.digests.params import DigestParams
from repp2p.net.topics import TOPICS
from repp2p.net.verdict import Verdict
from repp2p.node.digests import digest_expires
from repp2p.node.metrics import NodeMetrics, totals
from repp2p.node.pipeline import RecordPipeline
from repp2p.records import decode, encode
from repp2p.store import SqliteRecordStore
from repp2p.testing import factories
from repp2p.testing.network import dev_params
from tests.live.own_digests_harness import Clock, own_digests, sealed_clock, task_store

NOW = factories.NOW
EPOCH_S = 60
CURRENT = NOW // EPOCH_S
PARAMS = DigestParams()
SIGNER = factories.identity("digest-signer")


class _Clock(ClockAPI):
    def now(self) -> float:
        return float(NOW)

    async def sleep_until(self, when: float) -> None:  # pragma: no cover - never waits
        raise AssertionError("the pipeline never waits")


def _digest(epoch: int) -> bytes:
    return encode(factories.empty_work_digest(epoch, expires=factories.far_future(NOW)), SIGNER)


@pytest.fixture
def pipeline():
    metrics = NodeMetrics()
    store = SqliteRecordStore(":memory:")
    yield RecordPipeline(store, metrics, _Clock(), epoch_s=EPOCH_S, digests=PARAMS), metrics
    store.close()


@pytest.mark.parametrize(
    ("offset", "gossip", "other"),
    [
        (PARAMS.seal_lag_epochs, Verdict.ACCEPT, Verdict.ACCEPT),  # just sealed
        (PARAMS.seal_lag_epochs - 1, Verdict.ACCEPT, Verdict.ACCEPT),  # a clock a bit ahead
        (PARAMS.seal_lag_epochs - 2, Verdict.IGNORE, Verdict.IGNORE),  # not sealed
        (0, Verdict.IGNORE, Verdict.IGNORE),
        (-(10**6), Verdict.IGNORE, Verdict.IGNORE),  # a far future epoch
        (PARAMS.gossip_max_age_epochs, Verdict.ACCEPT, Verdict.ACCEPT),
        (PARAMS.gossip_max_age_epochs + 1, Verdict.IGNORE, Verdict.ACCEPT),  # sync: held
        (CURRENT, Verdict.IGNORE, Verdict.ACCEPT),  # epoch 0
    ],
)
def test_digest_epochs_are_bounded(pipeline, offset, gossip, other):
    judge, metrics = pipeline
    data = _digest(CURRENT - offset)
    assert judge.judge(data, topic=TOPICS["digests"], source="gossip") is gossip
    assert judge.judge(data, source="sync") is other
    rejected = totals(metrics.rejected, "reason")
    assert set(rejected) <= {"digest_too_old", "digest_too_new"}
    assert sum(rejected.values()) == (gossip is Verdict.IGNORE) + (other is Verdict.IGNORE)


def test_without_an_epoch_length_the_pipeline_does_not_bound_digests():
    store = SqliteRecordStore(":memory:")
    free = RecordPipeline(store, NodeMetrics(), _Clock())
    assert free.judge(_digest(CURRENT + 5), topic=TOPICS["digests"]) is Verdict.ACCEPT


BATCHING = DigestParams(work_max_epochs=4)


def _batch(first: int, span: int) -> bytes:
    digest = dataclasses.replace(
        factories.empty_work_digest(first, expires=factories.far_future(NOW)), span=span
    )
    return encode(digest, SIGNER)


@pytest.fixture
def batching():
    metrics = NodeMetrics()
    store = SqliteRecordStore(":memory:")
    yield RecordPipeline(store, metrics, _Clock(), epoch_s=EPOCH_S, digests=BATCHING), metrics
    store.close()


@pytest.mark.parametrize(
    ("first_offset", "span", "verdict", "reason"),
    [
        # a batch goes out once its last epoch is sealed, whatever its first epoch's age
        (BATCHING.seal_lag_epochs + 3, 4, Verdict.ACCEPT, None),
        (BATCHING.gossip_max_age_epochs + 3, 4, Verdict.ACCEPT, None),
        # its last epoch not sealed yet: too new, however old its first epoch is
        (BATCHING.seal_lag_epochs + 1, 4, Verdict.IGNORE, "digest_too_new"),
        # its last epoch past the gossip window: too old
        (BATCHING.gossip_max_age_epochs + 4, 4, Verdict.IGNORE, "digest_too_old"),
        # more epochs than the network lets a work digest cover: never counted, never kept
        (BATCHING.seal_lag_epochs + 4, 5, Verdict.IGNORE, "digest_too_long"),
    ],
)
def test_batches_are_judged_by_their_last_epoch_and_span(
    batching, first_offset, span, verdict, reason
):
    judge, metrics = batching
    data = _batch(CURRENT - first_offset, span)
    assert judge.judge(data, topic=TOPICS["digests"], source="gossip") is verdict
    rejected = totals(metrics.rejected, "reason")
    assert rejected == ({} if reason is None else {reason: 1})


def test_a_batch_is_too_long_on_a_network_that_does_not_batch(pipeline):
    judge, metrics = pipeline
    data = _batch(CURRENT - PARAMS.seal_lag_epochs - 1, 2)
    assert judge.judge(data, source="sync") is Verdict.IGNORE
    assert totals(metrics.rejected, "reason") == {"digest_too_long": 1}


# -- a digest's lifetime: at most what an honest signer gives its last epoch ----------------

NETWORK = dev_params(epoch_s=EPOCH_S)
BATCH_NETWORK = dataclasses.replace(
    NETWORK, digests=DigestParams(work_max_epochs=4, feedback_max_epochs=4)
)


def _honest_expires(last: int, network=NETWORK) -> int:
    return digest_expires(last, EPOCH_S, network, network.digests)


def _network_pipeline(network=NETWORK, now: float = NOW):
    metrics = NodeMetrics()
    store = SqliteRecordStore(":memory:")
    return RecordPipeline(store, metrics, Clock(now), network=network), metrics


def test_a_digest_may_not_outlive_its_epoch_from_any_source():
    """An honest digest's ``expires`` is :func:`digest_expires` of its last epoch; one
    that expires later (up to the 30-day cap) is IGNOREd as ``digest_expires_too_far``
    from gossip and sync alike, a batch judged by its last epoch."""
    epoch = CURRENT - NETWORK.digests.seal_lag_epochs
    honest = _honest_expires(epoch)
    for source, topic in (("gossip", TOPICS["digests"]), ("sync", None)):
        judge, metrics = _network_pipeline()
        later = encode(factories.empty_work_digest(epoch, expires=honest + 1), SIGNER)
        assert judge.judge(later, topic=topic, source=source) is Verdict.IGNORE
        assert totals(metrics.rejected, "reason") == {"digest_expires_too_far": 1}
        on_time = encode(factories.empty_work_digest(epoch, expires=honest), SIGNER)
        assert judge.judge(on_time, topic=topic, source=source) is Verdict.ACCEPT
    # a batch of epochs first .. last expires as a digest of last, not of first
    judge, metrics = _network_pipeline(BATCH_NETWORK)
    first = epoch - 3
    for expires, verdict in (
        (_honest_expires(epoch, BATCH_NETWORK) + 1, Verdict.IGNORE),
        (_honest_expires(epoch, BATCH_NETWORK), Verdict.ACCEPT),
    ):
        batch = dataclasses.replace(factories.empty_work_digest(first, expires=expires), span=4)
        assert judge.judge(encode(batch, SIGNER), source="sync") is verdict
    assert totals(metrics.rejected, "reason") == {"digest_expires_too_far": 1}


def test_a_synced_digest_of_a_long_gone_epoch_is_refused_whatever_its_expires():
    """Sync has no age bound (peers hold digests for the reputation window and more), so
    the lifetime rule is what keeps a digest of a long-gone epoch out: one claiming to live
    on is ``digest_expires_too_far``, one that does not has expired (``expired``)."""
    judge, metrics = _network_pipeline()
    old = CURRENT - 10_000
    assert _honest_expires(old) < NOW  # an honest digest of it is gone from every store
    far = encode(factories.empty_work_digest(old, expires=factories.far_future(NOW)), SIGNER)
    assert judge.judge(far, source="sync") is Verdict.IGNORE
    gone = encode(factories.empty_work_digest(old, expires=_honest_expires(old)), SIGNER)
    assert judge.judge(gone, source="sync") is Verdict.IGNORE
    assert totals(metrics.rejected, "reason") == {"digest_expires_too_far": 1, "expired": 1}
    # the oldest epoch an honest digest of is still alive: taken
    oldest = next(e for e in range(old, CURRENT) if _honest_expires(e) > NOW)
    alive = encode(factories.empty_work_digest(oldest, expires=_honest_expires(oldest)), SIGNER)
    assert judge.judge(alive, source="sync") is Verdict.ACCEPT


def test_the_network_gives_the_epoch_length_and_schedule():
    store = SqliteRecordStore(":memory:")
    with pytest.raises(TypeError):
        RecordPipeline(store, NodeMetrics(), _Clock(), epoch_s=EPOCH_S, network=NETWORK)
    with pytest.raises(TypeError):
        RecordPipeline(store, NodeMetrics(), _Clock(), digests=PARAMS, network=NETWORK)
    # with the network, the epoch bounds hold as with epoch_s and digests
    judge = RecordPipeline(store, NodeMetrics(), _Clock(), network=NETWORK)
    assert judge.judge(_digest(CURRENT), source="sync") is Verdict.IGNORE  # not sealed


@pytest.mark.parametrize(
    ("network", "role", "span"),
    [
        (NETWORK, "full", 1),
        (NETWORK, "client", 1),
        (BATCH_NETWORK, "full", 4),
        (BATCH_NETWORK, "client", 4),
    ],
)
async def test_honest_digests_pass_from_gossip_and_sync_until_they_expire(network, role, span):
    """What an honest peer publishes (:class:`OwnDigests`, a node's work digest or a
    client's feedback digest, one epoch or a batch) passes every peer's pipeline as the
    node configures it: on gossip when it goes out, and on sync to the last second of its
    life."""
    node, client = factories.identity("life-node"), factories.identity("life-client")
    base = CURRENT - 40
    me = node if role == "full" else client
    probe, _ = own_digests(
        me,
        role,
        SqliteRecordStore(":memory:"),
        Clock(NOW),
        network=network,
        params=network.digests,
    )
    first, last = probe.batch_window(base + 4) if span > 1 else (base, base)
    store = task_store(client, node, range(first, last + 1), f"life-{role}-{span}")
    clock = sealed_clock(last, network.digests, EPOCH_S)
    own, gossip = own_digests(me, role, store, clock, network=network, params=network.digests)
    for e in range(first, last + 1):
        await own.publish_epoch(e)
    assert gossip.sent, "nothing published"
    for _topic, data in gossip.sent:
        digest = decode(data, now=int(clock.at)).record
        assert (digest.epoch, digest.last_epoch) == (first, last)
        assert digest.expires == _honest_expires(last, network)
        judge, metrics = _network_pipeline(network, clock.at)
        assert judge.judge(data, topic=TOPICS["digests"], source="gossip") is Verdict.ACCEPT
        judge, metrics = _network_pipeline(network, digest.expires - 1)
        assert judge.judge(data, source="sync") is Verdict.ACCEPT
        assert totals(metrics.rejected, "reason") == {}
