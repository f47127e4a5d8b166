"""The pipeline's epoch window for digests: gossip takes recent epochs only, no source
takes an epoch not sealed yet (IGNORE, counted by reason)."""

from __future__ import annotations

import dataclasses

import pytest

from repp2p.clock import ClockAPI
from repp2p.digests.params import DigestParams
from repp2p.net.topics import TOPICS
from repp2p.net.verdict import Verdict
from repp2p.node.metrics import NodeMetrics, totals
from repp2p.node.pipeline import RecordPipeline
from repp2p.records import encode
from repp2p.store import SqliteRecordStore
from repp2p.testing import factories

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
