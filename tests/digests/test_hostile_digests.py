"""Digests a hostile peer with a valid key can sign that the record pipeline takes (the
signature and the schema hold, the epochs are within the window, each expires when an
honest digest of its last epoch does): what they do to the
stages after it, the reconciled count rows, the folded pairs, the digest views and the
ledger settled from them (docs/digests.md, "Double entry"; docs/ledger.md, "Settling from
digests"). Each goes in through the pipeline, as on a node."""

from __future__ import annotations

import dataclasses
import hashlib
import random

from repp2p.clock import ClockAPI
from repp2p.digest_ledger import digest_report, max_digest_age
from repp2p.digests import reconcile
from repp2p.net.topics import TOPICS
from repp2p.net.verdict import Verdict
from repp2p.node.digests import digest_expires
from repp2p.node.metrics import NodeMetrics
from repp2p.node.pipeline import RecordPipeline
from repp2p.records import (
    DIGEST_MAX_LEAVES,
    DIGEST_MAX_PARTS,
    EMPTY_MERKLE_ROOT,
    MAX_LIFETIME_S,
    FeedbackDigest,
    FeedbackRow,
    NodeAd,
    WorkDigest,
    WorkRow,
    encode,
    part_of,
    sign,
)
from repp2p.store import SqliteRecordStore
from repp2p.testing import factories
from tests.test_viewer import (
    D_CLIENTS,
    D_NODES,
    DIGESTS,
    _digest_store,
    _verified_keeper,
)

EPOCH_S = DIGESTS.epoch_s
#: a network whose clients and nodes batch up to three epochs
BATCHING = DIGESTS.replace(
    digests=dataclasses.replace(DIGESTS.digests, work_max_epochs=3, feedback_max_epochs=3)
)
M = DIGEST_MAX_LEAVES
#: the largest latency sum a row of ``n`` verdicts may state
LATENCY_CAP = 2**32 - 1
HOSTILE = factories.identity("hostile-signer")
STRANGERS = [factories.identity(f"stranger-{i}") for i in range(4)]
#: a client whose only digests are overlapping batches (none of its slots holds an honest
#: digest as well, whose record ID would decide which of the two is current)
BATCHER = factories.identity("hostile-batcher")


class _Clock(ClockAPI):
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now

    async def sleep_until(self, when: float) -> None:  # pragma: no cover - never waits
        raise AssertionError("the pipeline never waits")


def _expires(last: int) -> int:
    """The ``expires`` every signer following the rules gives a digest of last epoch
    ``last``: the latest the pipeline takes."""
    return digest_expires(last, EPOCH_S, DIGESTS, DIGESTS.digests)


def _root(rows: tuple) -> bytes:
    """Any 32 bytes for a part with leaves (the schema cannot check a root it has no
    leaves of: audits do), the empty tree's root for one without."""
    return hashlib.sha256(repr(rows).encode()).digest() if rows else EMPTY_MERKLE_ROOT


def _work(epoch: int, rows: list[WorkRow], *, part=0, parts=1, span=1, expires=None):
    return WorkDigest(
        epoch=epoch,
        part=part,
        parts=parts,
        rows=tuple(rows),
        leaf_count=sum(r.claims for r in rows),
        merkle_root=_root(tuple(rows)),
        seq=0,
        expires=_expires(epoch + span - 1) if expires is None else expires,
        span=span,
    )


def _feedback(epoch: int, rows: list[FeedbackRow], *, part=0, parts=1, span=1, expires=None):
    return FeedbackDigest(
        epoch=epoch,
        part=part,
        parts=parts,
        rows=tuple(rows),
        leaf_count=sum(r.total for r in rows),
        merkle_root=_root(tuple(rows)),
        seq=0,
        expires=_expires(epoch + span - 1) if expires is None else expires,
        span=span,
    )


def _in_part(peers, parts: int, part: int) -> list[str]:
    return sorted(p.peer_id for p in peers if part_of(p.peer_id, parts) == part)


def _hostile_digests(epoch: int) -> list[bytes]:
    """Signed digests an honest peer never signs but the schema takes, of ``epoch`` (and
    batches covering it): counts and latency sums at the format's maxima, rows naming the
    signer itself, every refused, one of 256 parts, overlapping batches and equivocations
    of one signer, a client's verdicts on a node that did not publish, and on a signer
    that is no node at all."""
    node, client = D_NODES[0], D_CLIENTS[0]
    out = []
    # a node and a client at the maxima, on each other and on themselves
    out.append(
        encode(
            _work(
                epoch,
                [
                    WorkRow(client=p, claims=M // 2, receipts=M // 2, timeouts=0, failures=0)
                    for p in sorted((client.peer_id, node.peer_id))
                ],
            ),
            node,
        )
    )
    out.append(
        encode(
            _feedback(
                epoch,
                [
                    FeedbackRow(
                        node=p,
                        ok=0,
                        wrong=M // 4,
                        timeout=0,
                        bad_proof=M // 4,
                        latency_sum_ms=(M // 2) * LATENCY_CAP,
                    )
                    for p in sorted((client.peer_id, node.peer_id))
                ],
            ),
            client,
        )
    )
    # a stranger's node row: all refused, at the maximum; and its verdicts on itself
    out.append(
        encode(
            _work(
                epoch,
                [
                    WorkRow(
                        client=D_CLIENTS[1].peer_id,
                        claims=M,
                        receipts=0,
                        timeouts=0,
                        failures=0,
                        refused=M,
                    )
                ],
            ),
            HOSTILE,
        )
    )
    out.append(
        encode(
            _feedback(
                epoch,
                [
                    FeedbackRow(
                        node=HOSTILE.peer_id,
                        ok=M,
                        wrong=0,
                        timeout=0,
                        bad_proof=0,
                        latency_sum_ms=M * LATENCY_CAP,
                    )
                ],
            ),
            HOSTILE,
        )
    )
    # one part of 256 (the others never published: the clients in them are silent)
    parts = DIGEST_MAX_PARTS
    for part in range(parts):
        peers = _in_part(D_CLIENTS, parts, part)
        if peers:
            rows = [WorkRow(client=p, claims=3, receipts=1, timeouts=1, failures=1) for p in peers]
            out.append(encode(_work(epoch, rows, part=part, parts=parts), D_NODES[1]))
            break
    # overlapping batches of one client that are no split of one range (a conflict), and
    # a second, different part 0 of one epoch (an equivocation: one slot)
    rows = [
        FeedbackRow(
            node=D_NODES[2].peer_id,
            ok=5,
            wrong=0,
            timeout=0,
            bad_proof=0,
            latency_sum_ms=50,
            offset=1,
        )
    ]
    out.append(encode(_feedback(epoch - 1, rows, span=3), BATCHER))
    out.append(encode(_feedback(epoch, [dataclasses.replace(rows[0], offset=0)], span=2), BATCHER))
    for expires in (_expires(epoch), _expires(epoch) - 1):
        out.append(encode(_work(epoch, [], expires=expires), D_NODES[2]))
    # a client's verdicts on strangers that published nothing
    rows = [
        FeedbackRow(node=p, ok=1, wrong=1, timeout=M // 8, bad_proof=0, latency_sum_ms=0)
        for p in sorted(s.peer_id for s in STRANGERS)
    ]
    out.append(encode(_feedback(epoch, rows), D_CLIENTS[3]))
    return out


def _keeper_with(hostile: list[bytes], order: int):
    """A digest keeper whose store holds honest digests of epochs 10..20 and ``hostile``,
    fed through the record pipeline (sync) in a shuffled order."""
    store = _digest_store(range(10, 21), SqliteRecordStore(":memory:"))
    pipeline = RecordPipeline(store, NodeMetrics(), _Clock(26 * EPOCH_S), network=BATCHING)
    batch = list(hostile)
    random.Random(order).shuffle(batch)
    for data in batch:
        assert pipeline.judge(data, source="sync") is Verdict.ACCEPT
    return store, _verified_keeper(store, BATCHING)


def test_hostile_digests_pass_the_pipeline_and_every_stage_after_it_copes():
    """No stage raises on what the pipeline takes, and what comes out does not depend on
    the order the digests arrived in: the views of every epoch that folds them, and the
    ledger settled from the same rows."""
    hostile = [d for e in (18, 19, 20) for d in _hostile_digests(e)]
    results = []
    for order in (1, 2):
        store, keeper = _keeper_with(hostile, order)
        views = [keeper.view(v) for v in range(24, 30)]
        verdicts = keeper.verdicts(store.query(type=NodeAd.TYPE), 30 * EPOCH_S)
        report = digest_report(store, keeper.policy, BATCHING, now=30 * EPOCH_S, verdicts=verdicts)
        results.append(([v.digest for v in views], report.final.digest, report.pending.digest))
        # the same signer's overlapping batches count for none of their epochs
        conflicted = reconcile(keeper.digests_of(19), 19).conflicted
        assert (BATCHER.peer_id, FeedbackDigest.TYPE) in conflicted
        assert (D_NODES[1].peer_id, WorkDigest.TYPE) in conflicted  # 1 part, then 256
    assert results[0] == results[1]


def _pipeline(store, now: int) -> RecordPipeline:
    """The record pipeline as a node of the network runs it."""
    return RecordPipeline(store, NodeMetrics(), _Clock(now), network=DIGESTS)


def test_a_digest_of_an_old_epoch_does_not_stretch_the_ledger_replay():
    """The digest ledger (``repp2p ledger``, every explorer snapshot of a node) rebuilds a
    view for every epoch from the oldest digest held. No digest signed by the rules lives
    past :func:`~repp2p.node.digests.digest_expires` of its last epoch (the record lag, the
    reputation window and the audit horizon after it), and the record pipeline refuses one
    that claims to, from gossip and sync alike (sync takes a digest of any sealed epoch: it
    took one of a long-gone epoch living 30 days). A store the pipeline never judged (a
    hostile or damaged file, a store kept from before that rule) may still hold one: the
    replay starts no earlier than the oldest epoch a digest signed by the rules can still
    cover (it stopped only at 30 days back, 259,200 views at 10-s epochs)."""
    current = 100_000
    now = current * EPOCH_S
    store = SqliteRecordStore(":memory:")
    judge = _pipeline(store, now)
    old = _work(current - 5_000, [], expires=now + MAX_LIFETIME_S[WorkDigest.TYPE] - 60)
    data = encode(old, HOSTILE)
    assert judge.judge(data, topic=TOPICS["digests"], source="gossip") is Verdict.IGNORE
    assert judge.judge(data, source="sync") is Verdict.IGNORE  # digest_expires_too_far
    assert not store.query(type=WorkDigest.TYPE)
    # the oldest digest a peer following the rules still holds now
    oldest = next(
        e
        for e in range(current - 10_000, current)
        if digest_expires(e, EPOCH_S, DIGESTS, DIGESTS.digests) > now
    )
    honest = _work(oldest, [], expires=digest_expires(oldest, EPOCH_S, DIGESTS, DIGESTS.digests))
    assert judge.judge(encode(honest, D_NODES[0]), source="sync") is Verdict.ACCEPT
    # ... and one an epoch older has expired, whatever it claims
    gone = encode(_work(oldest - 1, []), D_NODES[0])
    assert judge.judge(gone, source="sync") is Verdict.IGNORE
    store.put_many([sign(old, HOSTILE)], now=now)  # written past the pipeline
    report = digest_report(store, None, DIGESTS, now=now, verdicts={})  # type: ignore[arg-type]
    epochs = [s.epoch for s in report.settlements]
    assert oldest in epochs  # an honest digest still held is settled
    # a view per epoch from the oldest such digest's epoch on (one of clock slack), not
    # one per epoch since the hostile one's
    assert epochs[0] >= oldest - 1, f"{current - epochs[0]} epochs replayed"
    assert epochs == list(range(current - max_digest_age(DIGESTS), current))
    store.close()
