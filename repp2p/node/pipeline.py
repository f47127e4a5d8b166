"""The record pipeline: the only way a record enters a peer's store.

Every record that reaches a peer (gossip, sync, feed, a task stream, its own) goes through
:class:`RecordPipeline`: strict decode with the current time, family check for gossip,
replacement rules in the store. Nothing else writes the store, so the store holds only
valid records; a record travels on (gossip) only when the pipeline says so.

Its verdict on a record (:meth:`RecordPipeline.judge`) is GossipSub v1.1's: ACCEPT (store
and forward), REJECT (a record no honest peer forwards: the forwarder loses gossip score)
or IGNORE (drop, but blame nobody). IGNORE is for records whose signature verified but
that honest peers still forward: an older ``seq`` overtaken by a newer one (STALE), one
that expired in transit (EXPIRED), and every record of a batch our own store failed to
write. See :func:`verdict_of` and ``docs/protocol.md``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict

from repp2p.clock import ClockAPI
from repp2p.digests.params import DigestParams
from repp2p.errors import RecordError, RecordReason, StoreError
from repp2p.net.topics import topic_accepts
from repp2p.net.verdict import Verdict
from repp2p.node.abc import RecordListener, RecordPipelineAPI
from repp2p.node.metrics import NodeMetrics
from repp2p.records import DIGEST_TYPES, Outcome, SignedRecord, TaskOffer, decode
from repp2p.store import RecordStoreAPI
from repp2p.tasks import is_bound_offer

log = logging.getLogger("repp2p.node")

#: How many recent arrival times a peer remembers (for /record and the network benchmark).
ARRIVALS_KEPT = 10_000
#: the ``repp2p_records_rejected`` reason of records our own store failed to write
STORE_FAILED = "store_failed"

#: ``repp2p_records_rejected`` reasons of digests outside the accepted epochs (IGNORE: a
#: validly signed digest an honest peer may still hold, or sign with its clock a little off)
DIGEST_TOO_OLD, DIGEST_TOO_NEW = "digest_too_old", "digest_too_new"

#: decode failures an honest forwarder cannot avoid: IGNORE, not REJECT. decode() checks
#: the signature before the lifetime, so an EXPIRED record is well formed and signed; it
#: expired on the way (or our clock runs ahead). EXPIRES_TOO_FAR stays REJECT: an honest
#: signer keeps ``expires`` within its type's cap.
IGNORED_REASONS: frozenset[RecordReason] = frozenset({RecordReason.EXPIRED})


def verdict_of(reason: RecordReason) -> Verdict:
    """The gossip verdict on a record that failed to decode with ``reason``."""
    return Verdict.IGNORE if reason in IGNORED_REASONS else Verdict.REJECT


class RecordPipeline(RecordPipelineAPI):
    """Decode, validate and store; remembers when recent records first arrived.

    Args:
        store: the peer's record store (this pipeline is its only writer).
        metrics: counters of accepted and rejected records.
        clock: the peer's clock (records are judged at ``int(clock.now())``).
        epoch_s: the network's epoch length; with ``digests``, bounds the epochs of the
            digests accepted (:meth:`DigestParams.gossip_accepts` on gossip, not newer than
            :meth:`DigestParams.too_new` from any source). None: no bound (tools, tests).
        digests: the network's digest schedule.
    """

    def __init__(
        self,
        store: RecordStoreAPI,
        metrics: NodeMetrics,
        clock: ClockAPI,
        *,
        epoch_s: int | None = None,
        digests: DigestParams | None = None,
    ) -> None:
        self._epoch_s = epoch_s
        self._digests = digests or DigestParams()
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._listeners: list[RecordListener] = []
        # record id -> unix time of first acceptance, for the most recent records only.
        self._arrivals: OrderedDict[bytes, float] = OrderedDict()
        self._equivocators: dict[str, None] = {}  # signers warned about (recent ones)

    def on_record(self, listener: RecordListener) -> None:
        self._listeners.append(listener)

    def arrived_at(self, record_id: bytes) -> float | None:
        return self._arrivals.get(record_id)

    def judge(self, data: bytes, *, topic: str | None = None, source: str = "local") -> Verdict:
        return self._judge_many([data], topic, source)[0]

    def accept(self, data: bytes, *, topic: str | None = None, source: str = "local") -> bool:
        return self.judge(data, topic=topic, source=source) is Verdict.ACCEPT

    def accept_many(
        self, batch: list[bytes], *, topic: str | None = None, source: str = "local"
    ) -> list[bool]:
        return [v is Verdict.ACCEPT for v in self._judge_many(batch, topic, source)]

    def judge_many(
        self, batch: list[bytes], *, topic: str | None = None, source: str = "local"
    ) -> list[Verdict]:
        return self._judge_many(batch, topic, source)

    def accept_decoded(self, signed: SignedRecord, *, source: str) -> bool:
        verdict = [Verdict.REJECT]
        now = int(self._clock.now())
        self._store_batch([(0, signed)], verdict, now, source, time.perf_counter())
        return verdict[0] is Verdict.ACCEPT

    def _judge_many(self, batch: list[bytes], topic: str | None, source: str) -> list[Verdict]:
        """Decode, check and store ``batch`` (one store transaction); a verdict per record."""
        started = time.perf_counter()
        now = int(self._clock.now())
        verdicts: list[Verdict] = [Verdict.REJECT] * len(batch)
        fresh: list[tuple[int, SignedRecord]] = []
        for i, data in enumerate(batch):
            if topic is None and self._store.has(hashlib.sha256(data).digest()):
                # Held already (feeds deliver most records more than once): skip the
                # signature check. Gossip takes the full path, which checks the topic too.
                # Not decoded, so its type is unknown here: counted as type "any".
                self._metrics.accepted.labels("any", Outcome.DUPLICATE.value, source).inc()
                verdicts[i] = Verdict.ACCEPT
                continue
            try:
                signed = decode(data, now=now)
            except RecordError as exc:
                self._metrics.rejected.labels(exc.reason.value, source).inc()
                log.debug("rejected %s record: %s", source, exc)
                verdicts[i] = verdict_of(exc.reason)
                continue
            if topic is not None and not topic_accepts(topic, signed.type):
                self._metrics.rejected.labels("wrong_topic", source).inc()
                continue
            if isinstance(signed.record, TaskOffer) and not is_bound_offer(signed):
                # Someone else's task id under this signer's key (task-id squatting):
                # stored, it would let the squatter decide the task's epoch in views.
                self._metrics.rejected.labels("unbound_task_id", source).inc()
                continue
            if signed.type in DIGEST_TYPES and self._epoch_s is not None:
                refused = self._digest_epoch_refused(signed, now, gossip=topic is not None)
                if refused is not None:
                    self._metrics.rejected.labels(refused, source).inc()
                    verdicts[i] = Verdict.IGNORE
                    continue
            fresh.append((i, signed))
        self._store_batch(fresh, verdicts, now, source, started)
        return verdicts

    def _digest_epoch_refused(self, signed: SignedRecord, now: int, *, gossip: bool) -> str | None:
        """Why a digest's epoch is not accepted now, or None. A digest of a far epoch is a
        new store slot: without the bound one key could fill every store with them."""
        assert self._epoch_s is not None
        epoch, current = signed.record.epoch, now // self._epoch_s  # type: ignore[attr-defined]
        if self._digests.too_new(epoch, current):
            return DIGEST_TOO_NEW
        if gossip and not self._digests.gossip_accepts(epoch, current):
            return DIGEST_TOO_OLD
        return None

    def _log_equivocation(self, signed: SignedRecord) -> None:
        # One WARNING per signer (bounded memory): a throwaway key equivocating thousands
        # of times must not flood the operator's log; the rest go to DEBUG.
        if signed.signer in self._equivocators:
            log.debug("equivocation by %s (%s) again", signed.signer, signed.type)
            return
        if len(self._equivocators) >= ARRIVALS_KEPT:
            self._equivocators.pop(next(iter(self._equivocators)))
        self._equivocators[signed.signer] = None
        log.warning("equivocation by %s (%s): evidence kept", signed.signer, signed.type)

    def _store_batch(
        self,
        fresh: list[tuple[int, SignedRecord]],
        verdicts: list[Verdict],
        now: int,
        source: str,
        started: float,
    ) -> None:
        """Store decoded, verified records in one transaction; sets ``verdicts[i]``."""
        if not fresh:
            return
        try:
            # decode() refused anything expired at `now`, so put_many cannot raise EXPIRED.
            outcomes = self._store.put_many([signed for _, signed in fresh], now=now)
        except (RecordError, StoreError):
            # Our fault, not the records' (disk full, I/O error): IGNORE, so that no peer
            # forwarding them loses gossip score (blaming all of them would graylist the
            # network from us). Sync fetches them again once the store works.
            log.exception("record store failed; %d records not accepted", len(fresh))
            self._metrics.rejected.labels(STORE_FAILED, source).inc(len(fresh))
            for i, _ in fresh:
                verdicts[i] = Verdict.IGNORE
            return
        self._metrics.validation.observe((time.perf_counter() - started) / len(verdicts))
        for (i, signed), outcome in zip(fresh, outcomes, strict=True):
            self._metrics.accepted.labels(signed.type, outcome.value, source).inc()
            if outcome is Outcome.STALE:
                # Overtaken by a newer record of its slot: an honest race (the older one
                # came by a slower path), so IGNORE, never blame the forwarder.
                verdicts[i] = Verdict.IGNORE
                continue
            verdicts[i] = Verdict.ACCEPT
            if outcome is not Outcome.DUPLICATE:
                self._arrivals[signed.record_id] = self._clock.now()
                if len(self._arrivals) > ARRIVALS_KEPT:
                    self._arrivals.popitem(last=False)
                if outcome is Outcome.EQUIVOCATION:
                    self._log_equivocation(signed)
                for listener in self._listeners:
                    listener(signed, outcome)
