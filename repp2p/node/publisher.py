"""This peer's own records: signed, stored through the pipeline, then spread.

A record is ours to publish only once our own pipeline accepted it (so a stale ``seq`` or an
expired record is refused here, with its reason, before any peer sees it). Gossip sends that
must not hold up the caller (the task path) go through a bounded queue drained by
:meth:`RecordPublisher.run`; per-task records are not gossiped: on a network whose views
come from records peers pull them from our feed (``/repp2p/feed/1``), on one whose views
come from digests they stay with the task's parties (:mod:`repp2p.node.light`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable

import cbor2
import trio

from repp2p.clock import ClockAPI
from repp2p.errors import RecordError, RecordReason
from repp2p.identity import Identity
from repp2p.net.topics import topic_for
from repp2p.node.abc import RecordPipelineAPI, RecordPublisherAPI
from repp2p.records import MAX_LIFETIME_S, Record, SignedRecord, check_lifetime, encode
from repp2p.store.sqlite import FEED_TYPES

log = logging.getLogger("repp2p.node")

#: publish(topic, data): the gossip send (py-libp2p's ``Pubsub.publish``)
GossipSend = Callable[[str, bytes], Awaitable[None]]
#: background gossip sends waiting; past this a send is dropped (feeds and sync repair it)
QUEUE_SIZE = 4096


def capped_lifetime(record_type: str, wanted_s: float) -> int:
    """``wanted_s``, within the record core's lifetime cap for the type."""
    return min(int(wanted_s), MAX_LIFETIME_S[record_type])


class RecordPublisher(RecordPublisherAPI):
    """Signs with ``identity``, stores through ``pipeline``, spreads by gossip or feed.

    Args:
        identity: this peer's key (the signer of every record it publishes).
        send: the gossip send, ``await send(topic, data)`` (py-libp2p's ``Pubsub.publish``).
        pipeline: the record pipeline (our records are validated like anyone's).
        clock: the peer's clock (``seq`` is unix milliseconds, so it grows across restarts).
        gossip_task_records: gossip per-task records too (the old way, for comparison; the
            node never sets it on a network whose views come from digests).
    """

    def __init__(
        self,
        identity: Identity,
        send: GossipSend,
        pipeline: RecordPipelineAPI,
        clock: ClockAPI,
        *,
        gossip_task_records: bool = False,
    ) -> None:
        self._identity = identity
        self._pipeline = pipeline
        self._clock = clock
        self._gossip_task_records = gossip_task_records
        self._send = send
        self._last_seq = 0
        self._queue_send, self._queue_receive = trio.open_memory_channel[tuple[bytes, str]](
            QUEUE_SIZE
        )

    def next_seq(self) -> int:
        self._last_seq = max(self._last_seq + 1, int(self._clock.now() * 1000))
        return self._last_seq

    async def publish(self, record: Record) -> SignedRecord:
        data, signed = self._store_own(record)
        await self._gossip_now(data, record.TYPE, quiet=False)
        return signed

    def publish_soon(self, record: Record) -> SignedRecord:
        data, signed = self._store_own(record)
        self.spread(data, record.TYPE)
        return signed

    def spread(self, data: bytes, record_type: str) -> None:
        if record_type in FEED_TYPES and not self._gossip_task_records:
            return  # peers pull it from our feed, or only the task's parties hold it
        try:
            self._queue_send.send_nowait((data, record_type))
        except trio.WouldBlock:
            log.debug("gossip queue full: a %s travels by feed/sync only", record_type)

    async def gossip(self, data: bytes, record_type: str) -> None:
        """Publish already-encoded record bytes on their topic; failures are logged only."""
        await self._gossip_now(data, record_type, quiet=True)

    async def run(self) -> None:
        """Send queued gossip until cancelled."""
        async with self._queue_receive:
            async for data, record_type in self._queue_receive:
                await self._gossip_now(data, record_type, quiet=True)

    async def _gossip_now(self, data: bytes, record_type: str, *, quiet: bool) -> None:
        if not quiet:
            await self._send(topic_for(record_type), data)
            return
        try:
            await self._send(topic_for(record_type), data)
        except Exception as exc:  # no peers yet, a closing connection: sync repairs it
            log.debug("gossip of a %s failed: %r", record_type, exc)

    def _store_own(self, record: Record) -> tuple[bytes, SignedRecord]:
        """Sign and store one of our records; RecordError with the reason when refused."""
        data = encode(record, self._identity)
        # expired / expires_too_far, named, as decode() would; but not decode() itself: the
        # signature is ours, made just now, and checking it again cost a verification per
        # own record on the task path (claims, receipts; a client's offers and feedback).
        check_lifetime(record, int(self._clock.now()))
        envelope = cbor2.loads(data)
        signed = SignedRecord(
            record, envelope["signer"], envelope["sig"], data, hashlib.sha256(data).digest()
        )
        # Store first: a record is ours to publish only once our own pipeline accepted it.
        # The gossip validator then sees a duplicate, which it lets travel on.
        if not self._pipeline.accept_decoded(signed, source="local"):
            raise RecordError(
                RecordReason.BAD_FIELD,
                f"own {record.TYPE} refused: the stored one outranks it (a higher seq, or a "
                "final wrong verdict), or the store failed (logged)",
            )
        return data, signed
