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

import dataclasses
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from repp2p.clock import ClockAPI
from repp2p.digests.params import DigestParams
from repp2p.errors import RecordError, RecordReason, StoreError
from repp2p.net.topics import topic_accepts
from repp2p.net.verdict import Verdict
from repp2p.network_params import NetworkParams
from repp2p.node.abc import RecordListener, RecordPipelineAPI
from repp2p.node.budgets import (
    OVER_BUDGET,
    OVER_UNATTESTED_QUOTA,
    UNATTESTED_EVICTED,
    SignerBudgets,
    UnattestedQuota,
)
from repp2p.node.digests import digest_expires
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
#: a batch covering more epochs than the network allows its type (views would not count it)
DIGEST_TOO_LONG = "digest_too_long"
#: a digest that expires later than every honest one of its last epoch
#: (:func:`repp2p.node.digests.digest_expires`): it would outlive the views and audits of
#: its epochs, up to the 30-day lifetime cap (from sync, a long-gone epoch's digest would)
DIGEST_EXPIRES_TOO_FAR = "digest_expires_too_far"
#: ``repp2p_records_rejected`` reason of a valid record this peer does not hold (IGNORE):
#: another client's per-task record on a light client (repp2p.node.light)
NOT_KEPT = "not_kept"

#: decode failures an honest forwarder cannot avoid: IGNORE, not REJECT. decode() checks
#: the signature before the lifetime, so an EXPIRED record is well formed and signed; it
#: expired on the way (or our clock runs ahead). EXPIRES_TOO_FAR stays REJECT: an honest
#: signer keeps ``expires`` within its type's cap.
IGNORED_REASONS: frozenset[RecordReason] = frozenset({RecordReason.EXPIRED})


@dataclasses.dataclass(frozen=True)
class StoreFault:
    """The record store is failing to write (a full disk, an I/O error): the node is
    degraded. It keeps serving what it holds and accepts no new record until a write
    succeeds again (sync then fetches what it missed).

    Attributes:
        since: unix time of the first failed write of this episode.
        last: unix time of the latest failed write.
        error: the store's latest error, as text (the cause an operator acts on).
    """

    since: float
    last: float
    error: str


def verdict_of(reason: RecordReason) -> Verdict:
    """The gossip verdict on a record that failed to decode with ``reason``."""
    return Verdict.IGNORE if reason in IGNORED_REASONS else Verdict.REJECT


class RecordPipeline(RecordPipelineAPI):
    """Decode, validate and store; remembers when recent records first arrived.

    Args:
        store: the peer's record store (this pipeline is its only writer).
        metrics: counters of accepted and rejected records.
        clock: the peer's clock (records are judged at ``int(clock.now())``).
        recover_s: a store fault ends once no write has failed for this long.
        admit: a content check run on each decoded record before it is stored: the
            reason (a metric label) to refuse it, or None to store it. The node passes
            :meth:`repp2p.viewer.ViewKeeper.evidence_refusal` (garbage attestation
            evidence); a refusal is a REJECT.
        budgets: per-signer budgets on node records arriving by gossip
            (:class:`repp2p.node.budgets.SignerBudgets`); over budget is an IGNORE.
        quota: the byte quota on node records of identities with no verified
            attestation, from any source but ``local``
            (:class:`repp2p.node.budgets.UnattestedQuota`): a record past it is an
            IGNORE, records it pushes out are deleted from the store.
        epoch_s: the network's epoch length; with ``digests``, bounds the epochs of the
            digests accepted (:meth:`DigestParams.gossip_accepts` on gossip, not newer than
            :meth:`DigestParams.too_new` from any source). None: no bound (tools, tests).
        digests: the network's digest schedule.
        network: the network's parameters (the node passes them): ``epoch_s`` and
            ``digests`` are its (pass neither with it), and a digest's ``expires`` is
            bounded too, from any source: at most
            :func:`repp2p.node.digests.digest_expires` of its last epoch, what every
            honest signer sets. None: ``expires`` is bounded by its type's lifetime cap
            only (tools, tests).
        keep: whether this peer holds a valid record at all (a light client keeps only
            its own tasks' records, :func:`repp2p.node.light.own_tasks_only`); a record it
            does not keep is an IGNORE, counted as ``not_kept``. None: keep everything.
    """

    def __init__(
        self,
        store: RecordStoreAPI,
        metrics: NodeMetrics,
        clock: ClockAPI,
        *,
        recover_s: float = 30.0,
        admit: Callable[[SignedRecord, int], str | None] | None = None,
        budgets: SignerBudgets | None = None,
        epoch_s: int | None = None,
        digests: DigestParams | None = None,
        quota: UnattestedQuota | None = None,
        keep: Callable[[SignedRecord], bool] | None = None,
        network: NetworkParams | None = None,
    ) -> None:
        if network is not None:
            if epoch_s is not None or digests is not None:
                raise TypeError("pass network alone: epoch_s and digests are the network's")
            epoch_s, digests = network.epoch_s, network.digests
        self._network = network
        self._keep = keep
        self._budgets = budgets
        self._quota = quota
        self._epoch_s = epoch_s
        self._digests = digests or DigestParams()
        self._store = store
        self._recover_s = recover_s
        self._admit = admit
        self._metrics = metrics
        self._clock = clock
        self._listeners: list[RecordListener] = []
        # record id -> unix time of first acceptance, for the most recent records only.
        self._arrivals: OrderedDict[bytes, float] = OrderedDict()
        self._equivocators: dict[str, None] = {}  # signers warned about (recent ones)
        self._store_fault: StoreFault | None = None
        self._accepted: dict[tuple[str, Outcome, str], Any] = {}  # metric children

    @property
    def store_fault(self) -> StoreFault | None:
        """Why the node is degraded (its store failed to write within ``recover_s``), or
        None."""
        fault = self._store_fault
        if fault is not None and self._clock.now() - fault.last >= self._recover_s:
            log.warning(
                "record store writable again (no failed write for %.0f s); node no longer degraded",
                self._recover_s,
            )
            self._store_fault = fault = None
            self._metrics.degraded.labels("store").set(0)
        return fault

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
        return self.accept_decoded_many([signed], source=source)[0]

    def accept_decoded_many(self, batch: list[SignedRecord], *, source: str) -> list[bool]:
        """:meth:`accept_decoded` for several records in one store transaction (a commit
        is most of a single record's cost): whether each was accepted, in order. Records
        of one task stored at one point of its path (a client storing a node's claim and
        receipt, say) lose nothing by sharing it: none of them is durable before all are.
        """
        verdicts = [Verdict.REJECT] * len(batch)
        now = int(self._clock.now())
        self._store_batch(list(enumerate(batch)), verdicts, now, source, time.perf_counter())
        return [v is Verdict.ACCEPT for v in verdicts]

    def _judge_many(self, batch: list[bytes], topic: str | None, source: str) -> list[Verdict]:
        """Decode, check and store ``batch`` (one store transaction); a verdict per record."""
        started = time.perf_counter()
        now = int(self._clock.now())
        verdicts: list[Verdict] = [Verdict.REJECT] * len(batch)
        fresh: list[tuple[int, SignedRecord]] = []
        evicted: list[bytes] = []
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
            if (
                source == "gossip"
                and self._budgets is not None
                and not self._budgets.admit(signed.signer, signed.type, signed.record.slot(), now)
            ):
                # A valid record an honest forwarder passes on: drop it, blame nobody.
                self._metrics.rejected.labels(OVER_BUDGET, source).inc()
                verdicts[i] = Verdict.IGNORE
                continue
            if self._admit is not None and (refusal := self._admit(signed, now)) is not None:
                # Content no honest peer stores or forwards (e.g. attestation evidence no
                # TEE produced): it would only cost disk, so REJECT.
                self._metrics.rejected.labels(refusal, source).inc()
                log.debug("refused %s %s from %s: %s", source, signed.type, signed.signer, refusal)
                continue
            if self._keep is not None and not self._keep(signed):
                # Valid, but not ours to hold (another client's task on a light client):
                # an honest peer holds and forwards it, so nobody is blamed.
                self._metrics.rejected.labels(NOT_KEPT, source).inc()
                verdicts[i] = Verdict.IGNORE
                continue
            if signed.type in DIGEST_TYPES and self._epoch_s is not None:
                refused = self._digest_epoch_refused(signed, now, gossip=topic is not None)
                if refused is not None:
                    # IGNORE, every reason: an honest peer forwards such digests too (a
                    # skewed clock; a peer of a release before a bound existed), and must
                    # not lose gossip score for them
                    self._metrics.rejected.labels(refused, source).inc()
                    verdicts[i] = Verdict.IGNORE
                    continue
            if not self._within_quota(signed, now, source, evicted):
                verdicts[i] = Verdict.IGNORE
                continue
            fresh.append((i, signed))
        self._store_batch(fresh, verdicts, now, source, started)
        self._evict(evicted, source)
        return verdicts

    def _within_quota(
        self, signed: SignedRecord, now: int, source: str, evicted: list[bytes]
    ) -> bool:
        """The unattested identities' byte quota: False refuses ``signed`` (a valid record
        an honest forwarder passes on: IGNORE, nobody blamed); what it pushes out of the
        quota joins ``evicted``. Our own records are never counted."""
        if self._quota is None or source == "local":
            return True
        ok, out = self._quota.admit(signed, now)
        evicted += out
        if not ok:
            self._metrics.rejected.labels(OVER_UNATTESTED_QUOTA, source).inc()
        return ok

    def _evict(self, record_ids: list[bytes], source: str) -> None:
        """Delete the records the quota pushed out (after the batch that pushed them)."""
        if not record_ids:
            return
        try:
            self._store.delete(record_ids)
        except StoreError as exc:
            self._on_store_failure(exc, len(record_ids))
            return
        self._metrics.rejected.labels(UNATTESTED_EVICTED, source).inc(len(record_ids))

    def _digest_epoch_refused(self, signed: SignedRecord, now: int, *, gossip: bool) -> str | None:
        """Why a digest's epochs, or its lifetime, are not accepted now, or None. A digest
        of a far epoch is a new store slot: without the bound one key could fill every
        store with them. A batch (``span`` > 1) is judged by its last epoch, the one it is
        filed under and goes out after (docs/digests.md), and may cover at most the
        network's epochs for its type.

        With the network's parameters, a digest may not expire later than
        :func:`~repp2p.node.digests.digest_expires` of its last epoch, the ``expires``
        every honest signer sets (a function of the epoch alone: no clock, no slack).
        Outside gossip no age bound applies (a peer syncs the digests its peers hold), so
        without it one key could fill every store with digests of long-gone epochs living
        30 days. A digest older than that lifetime is refused whatever its ``expires``:
        here when it claims more, by ``decode`` (``expired``) when it does not."""
        assert self._epoch_s is not None
        record = signed.record
        first, last = record.epoch, record.last_epoch  # type: ignore[attr-defined]
        current = now // self._epoch_s
        if last - first + 1 > self._digests.max_epochs(signed.type):
            return DIGEST_TOO_LONG
        if self._digests.too_new(last, current):
            return DIGEST_TOO_NEW
        if gossip and not self._digests.batch_accepts(
            first, last - first + 1, current, signed.type
        ):
            return DIGEST_TOO_OLD
        if self._network is not None and record.expires > digest_expires(
            last, self._epoch_s, self._network, self._digests
        ):
            return DIGEST_EXPIRES_TOO_FAR
        return None

    def _accepted_counter(self, record_type: str, outcome: Outcome, source: str) -> Any:
        """The ``repp2p_records_accepted`` child of these labels, looked up once (a
        ``labels()`` call per stored record showed on the task path)."""
        key = (record_type, outcome, source)
        child = self._accepted.get(key)
        if child is None:
            child = self._accepted[key] = self._metrics.accepted.labels(
                record_type, outcome.value, source
            )
        return child

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

    def _on_store_failure(self, exc: Exception, count: int) -> None:
        # One ERROR per episode: while the disk stays full every gossip batch fails, and a
        # traceback per batch would bury the cause (and fill what little disk is left).
        now = self._clock.now()
        if self.store_fault is None:
            self._store_fault = StoreFault(now, now, str(exc))
            self._metrics.degraded.labels("store").set(1)
            log.error(
                "record store cannot write (%s): node degraded, accepting no new records "
                "until it can; still serving what it holds",
                exc,
            )
        else:
            self._store_fault = dataclasses.replace(self._store_fault, last=now, error=str(exc))
            log.debug("record store still failing; %d records not accepted: %s", count, exc)

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
        except (RecordError, StoreError) as exc:
            # Our fault, not the records' (disk full, I/O error): IGNORE, so that no peer
            # forwarding them loses gossip score (blaming all of them would graylist the
            # network from us). Sync fetches them again once the store works.
            self._on_store_failure(exc, len(fresh))
            self._metrics.rejected.labels(STORE_FAILED, source).inc(len(fresh))
            for i, _ in fresh:
                verdicts[i] = Verdict.IGNORE
            return
        self._metrics.validation.observe((time.perf_counter() - started) / len(verdicts))
        for (i, signed), outcome in zip(fresh, outcomes, strict=True):
            self._accepted_counter(signed.type, outcome, source).inc()
            if outcome is Outcome.STALE:
                # Outranked by the record held in its slot (a newer one, or a final
                # `wrong` verdict: records/replacement.py): an honest race (the older one
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
