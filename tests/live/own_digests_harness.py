"""What the OwnDigests tests share: a settable clock, a gossip recorder, a peer's
``OwnDigests`` over a store, and a store of one pair's task records."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from repp2p.clock import ClockAPI
from repp2p.digests.params import DigestParams
from repp2p.identity import Identity
from repp2p.network_params import NetworkParams
from repp2p.node.digests import OwnDigests
from repp2p.node.metrics import NodeMetrics
from repp2p.node.pipeline import RecordPipeline
from repp2p.node.publisher import RecordPublisher
from repp2p.store import SqliteRecordStore
from repp2p.testing import factories


class Clock(ClockAPI):
    """A clock the test sets; sleeping moves it forward instead of waiting."""

    def __init__(self, now: float) -> None:
        self.at = now

    def now(self) -> float:
        return self.at

    async def sleep_until(self, when: float) -> None:
        self.at = max(self.at, when)

    async def sleep(self, seconds: float) -> None:
        self.at += seconds


class Gossip:
    """Records what is published, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def __call__(self, topic: str, data: bytes) -> None:
        self.sent.append((topic, data))


def own_digests(
    identity: Identity,
    role: str,
    store: SqliteRecordStore,
    clock: ClockAPI,
    *,
    network: NetworkParams,
    params: DigestParams,
    **kw: object,
) -> tuple[OwnDigests, Gossip]:
    """``identity``'s OwnDigests publishing through a real RecordPublisher into ``store``."""
    gossip = Gossip()
    publisher = RecordPublisher(
        identity, gossip, RecordPipeline(store, NodeMetrics(), clock), clock
    )
    own = OwnDigests(
        peer_id=identity.peer_id,
        role=role,
        store=store,
        publish=publisher.publish,
        regossip=publisher.gossip,
        clock=clock,
        network=network,
        params=params,
        metrics=NodeMetrics(),
        **kw,  # type: ignore[arg-type]
    )
    return own, gossip


def task_store(
    client: Identity,
    node: Identity,
    epochs: Iterable[int],
    prefix: str,
    *,
    undelivered: Collection[tuple[int, int]] = (),
) -> SqliteRecordStore:
    """An in-memory store with two tasks of ``client`` on ``node`` per epoch
    (``(epoch, i)`` in ``undelivered`` never delivered)."""
    store = SqliteRecordStore(":memory:")
    tasks = [
        factories.task_records(
            client, node, e, f"{prefix}{e}-{i}", delivered=(e, i) not in undelivered
        )
        for e in epochs
        for i in (0, 1)
    ]
    store.put_many([r for t in tasks for r in t.all()], now=factories.NOW)
    return store


def sealed_clock(epoch: int, params: DigestParams, epoch_s: int = 60) -> Clock:
    """A clock just after ``epoch`` is sealed."""
    return Clock((epoch + params.seal_lag_epochs) * epoch_s + 5)
