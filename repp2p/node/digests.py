"""This peer's own digests: built from its store once an epoch is sealed, signed once,
gossiped on ``/repp2p/1/digests``, and their leaves served to auditors.

* A full node publishes a :class:`~repp2p.records.WorkDigest` per epoch, a client a
  :class:`~repp2p.records.FeedbackDigest` for each epoch in which it offered tasks.
* A node that claimed nothing in ``E`` publishes an empty one ("nothing to report" is a
  statement too) only when ``E`` is not **quiet**: when it holds a digest with rows (its
  own or anyone's) covering ``E`` or ``E - 1``. The empty digest is needed then, and only
  then (docs/digests.md, "Quiet epochs"): it makes the node one of ``E``'s auditors (the
  candidates are the attested nodes among ``E``'s work-digest signers), its ID is entropy
  for ``E - 1``'s audit draw (only attested nodes' work digests are), and it keeps a
  client's verdicts on the node from counting as a silent node's.
  A network with no task in ``E - 1`` and ``E`` has nothing to audit, no verdict to
  answer and no draw to seed, so its idle nodes publish nothing for ``E`` (half the
  gossip of an idle devnet). A quiet epoch stays due: a digest with rows arriving later
  (within the gossip window) wakes the publisher, which then publishes the empty one.
* Everything comes from the store (and the small :class:`FailedTasks` file), never from
  memory alone, so a peer restarted mid-epoch publishes the digest it would have published
  without the restart, and can rebuild the leaves of any digest it signed to answer an
  audit.
* Final: a digest already in the store for an epoch is never re-signed (``seq`` is 0; a
  second, different digest of the slot would be an equivocation); it is gossiped again.
* Sealed epochs: from ``E + seal_lag_epochs`` on, this peer signs no per-task record of a
  task of ``E`` (:meth:`OwnDigests.sealed`; the task server and the client ask).
* Batches: when the network lets clients batch (``DigestParams.feedback_max_epochs`` = M >
  1), a client publishes one FeedbackDigest for several sealed epochs; nodes do the same
  with their WorkDigests when ``work_max_epochs`` = M > 1 (the same rules below, with
  claims for offers; a node that claimed nothing in a window still publishes one empty
  batch for it). Its epochs fall in
  aligned windows of M epochs (``w .. w + M - 1``, the windows shifted per client by a hash
  of its peer ID, so publications spread over the epochs); it publishes the epochs of a
  window not yet covered when the window's last epoch is sealed, or earlier, as soon as
  they fill ``flush_rows`` rows (a busy client gains nothing by waiting). Both rules read
  only the store, so a restarted client publishes the same batches. Views wait M - 1
  epochs for them (``NetworkParams.digest_lag``).
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import BinaryIO

import trio

from repp2p.clock import ClockAPI
from repp2p.digests import DigestPart, build_feedback, build_work, leaf_proof
from repp2p.digests.params import DigestParams
from repp2p.errors import DigestError, RecordError, ReppError
from repp2p.network_params import NetworkParams
from repp2p.node.metrics import NodeMetrics
from repp2p.node.schedules import next_phase_time
from repp2p.records import (
    DIGEST_MAX_ROWS,
    MAX_LIFETIME_S,
    Claim,
    Feedback,
    FeedbackDigest,
    Outcome,
    Receipt,
    Record,
    Refusal,
    SignedRecord,
    TaskOffer,
    WorkDigest,
    decode,
)
from repp2p.store import RecordStoreAPI

log = logging.getLogger("repp2p.digests")

#: parts of recent epochs kept built in memory (older ones are rebuilt from the store)
PARTS_CACHED = 32
_DAY_S = 86_400


class FailedTasks:
    """Task ids whose execution failed after this node claimed them, by epoch: a
    ``failed`` leaf rather than ``timeout`` in the work digest. Kept in a small append-only
    file (``failed-tasks.txt``: ``<epoch> <task id hex>`` per line) so that the digest
    built after a restart is the same; None as path keeps them in memory only.
    """

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._by_epoch: dict[int, set[bytes]] = {}
        if path is not None and path.exists():
            for line in path.read_text().splitlines():
                epoch, _, task = line.partition(" ")
                try:
                    self._by_epoch.setdefault(int(epoch), set()).add(bytes.fromhex(task))
                except ValueError:
                    log.warning("ignoring a damaged line of %s", path)

    def add(self, epoch: int, task_id: bytes) -> None:
        """Remember that the task of ``epoch`` failed after our claim."""
        self._by_epoch.setdefault(epoch, set()).add(task_id)
        if self._path is not None:
            with self._path.open("a") as out:
                out.write(f"{epoch} {task_id.hex()}\n")

    def of(self, epoch: int) -> frozenset[bytes]:
        """The failed task ids of ``epoch``."""
        return frozenset(self._by_epoch.get(epoch, ()))

    def forget_before(self, epoch: int) -> None:
        """Drop the epochs before ``epoch`` (their audits are over) and rewrite the file."""
        old = [e for e in self._by_epoch if e < epoch]
        if not old:
            return
        for e in old:
            del self._by_epoch[e]
        if self._path is not None:
            lines = [f"{e} {t.hex()}\n" for e, ts in sorted(self._by_epoch.items()) for t in ts]
            tmp = self._path.with_suffix(".tmp")
            tmp.write_text("".join(lines))
            tmp.replace(self._path)


class ClaimedOffers:
    """The offers this node claimed, as it claimed them, by epoch: its work digest and its
    audit answers name them. The store keeps only an offer's newest ``seq``, so without
    this a client could re-sign its offer after our claim and leave our digest unable to
    summarise (or prove) the task. One file per epoch, ``claimed-offers/<epoch>.bin``,
    of length-prefixed envelopes (4-byte big-endian length); None as folder keeps them in
    memory only. Pruned with the per-task records.
    """

    def __init__(self, folder: Path | None) -> None:
        self._folder = folder
        self._by_epoch: dict[int, dict[bytes, SignedRecord]] = {}
        # The file of the epoch last added to, kept open (unbuffered: each entry is
        # written through at once, as before): an open, a close and a mkdir per claimed
        # task were most of this class's cost on the task path.
        self._out: tuple[int, BinaryIO] | None = None
        self._folder_made = False

    def _file(self, epoch: int) -> Path | None:
        return None if self._folder is None else self._folder / f"{epoch}.bin"

    def add(self, offer: SignedRecord) -> None:
        """Remember an offer we are about to claim."""
        epoch = offer.record.epoch  # type: ignore[attr-defined]
        held = self.of(epoch)
        if offer.record_id in held:
            return
        held[offer.record_id] = offer
        if self._folder is not None:
            self._writer(epoch).write(len(offer.data).to_bytes(4, "big") + offer.data)

    def _writer(self, epoch: int) -> BinaryIO:
        """The open (append, unbuffered) file of ``epoch``."""
        if self._out is not None and self._out[0] == epoch:
            return self._out[1]
        self.close()
        path = self._file(epoch)
        assert path is not None
        if not self._folder_made:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._folder_made = True
        out = path.open("ab", buffering=0)
        self._out = (epoch, out)
        return out

    def close(self) -> None:
        """Close the open epoch file (entries are on disk already). Idempotent; a later
        :meth:`add` opens it again."""
        if self._out is not None:
            self._out[1].close()
            self._out = None

    def of(self, epoch: int) -> dict[bytes, SignedRecord]:
        """Record ID -> offer, of the offers of ``epoch`` we claimed."""
        held = self._by_epoch.get(epoch)
        if held is not None:
            return held
        held = self._by_epoch[epoch] = {}
        path = self._file(epoch)
        if path is not None and path.exists():
            data = path.read_bytes()
            at = 0
            while at + 4 <= len(data):
                size = int.from_bytes(data[at : at + 4], "big")
                chunk = data[at + 4 : at + 4 + size]
                at += 4 + size
                try:
                    signed = decode(chunk)  # our own file, still input: verified
                except RecordError:
                    log.warning("ignoring a damaged entry of %s", path)
                    continue
                if isinstance(signed.record, TaskOffer):
                    held[signed.record_id] = signed
        return held

    def forget_before(self, epoch: int) -> None:
        """Drop the offers of epochs before ``epoch``."""
        for e in [e for e in self._by_epoch if e < epoch]:
            del self._by_epoch[e]
        if self._out is not None and self._out[0] < epoch:
            self.close()
        if self._folder is not None and self._folder.exists():
            for path in self._folder.glob("*.bin"):
                if path.stem.lstrip("-").isdigit() and int(path.stem) < epoch:
                    path.unlink(missing_ok=True)


def digest_expires(epoch: int, epoch_s: int, network: NetworkParams, params: DigestParams) -> int:
    """When a digest of ``epoch`` expires: after the reputation window it counts in and the
    audit horizon, within the record core's 30-day cap counted from the seal (a day of
    slack for clocks). A function of the epoch alone, so a rebuilt digest is identical."""
    lifetime = network.task_record_lag + network.reputation.window_epochs
    wanted = (epoch + lifetime + params.audit_horizon_epochs + 1) * epoch_s
    cap = (epoch + params.seal_lag_epochs) * epoch_s + MAX_LIFETIME_S[WorkDigest.TYPE] - _DAY_S
    return min(wanted, cap)


def retention_epochs(network: NetworkParams, params: DigestParams) -> int:
    """Epochs a peer keeps per-task records: while they can count in a view (the record lag
    plus the reputation window) and then the audit horizon, in which a digest's leaves can
    still be challenged (a batch is audited as a digest of its last epoch, up to
    ``most_epochs - 1`` after its first: that much longer). Older ones are pruned, whatever
    their ``expires``."""
    return (
        network.task_record_lag
        + network.reputation.window_epochs
        + params.audit_horizon_epochs
        + params.most_epochs
        - 1
    )


class OwnDigests:
    """Builds, publishes and serves this peer's digests.

    Args:
        peer_id: this peer.
        role: ``full`` (work digests) or ``client`` (feedback digests).
        store: its record store (read only here; our digests enter it via ``publish``).
        publish: signs, stores and gossips one of our records
            (:meth:`repp2p.node.publisher.RecordPublisher.publish`).
        regossip: gossips already-signed record bytes (``RecordPublisher.gossip``).
        clock: the peer's clock.
        network: the network's parameters (epoch length, windows).
        params: the digest schedule.
        metrics: counts what was published.
        failed: the node's failed tasks (full nodes).
        claimed: the offers the node claimed, as claimed (full nodes).
        phase: when in each epoch the digests go out (``schedules.phase_of``).
        max_rows: most rows per part (the record format's cap; smaller in tests).
        flush_rows: a client's batch goes out early once it holds this many rows
            (default ``max_rows``).
        skip_quiet: a node publishes no empty digest for a quiet epoch (module
            docstring); False: an empty one for every epoch since it started, as before
            the rule (tests of the gossip path on idle networks).
    """

    def __init__(
        self,
        *,
        peer_id: str,
        role: str,
        store: RecordStoreAPI,
        publish: Callable[[Record], Awaitable[SignedRecord]],
        regossip: Callable[[bytes, str], Awaitable[None]],
        clock: ClockAPI,
        network: NetworkParams,
        params: DigestParams,
        metrics: NodeMetrics,
        failed: FailedTasks | None = None,
        claimed: ClaimedOffers | None = None,
        phase: float = 0.5,
        max_rows: int = DIGEST_MAX_ROWS,
        flush_rows: int | None = None,
        skip_quiet: bool = True,
    ) -> None:
        self._skip_quiet = skip_quiet
        self._wake = trio.Event()
        self._max_rows = max_rows
        self._flush_rows = max_rows if flush_rows is None else flush_rows
        if role not in ("full", "client"):
            raise ValueError(f"role must be full or client, not {role!r}")
        self.peer_id = peer_id
        self.role = role
        self.params = params
        self.failed = failed or FailedTasks(None)
        self.claimed = claimed or ClaimedOffers(None)
        self._store = store
        self._publish = publish
        self._regossip = regossip
        self._clock = clock
        self._network = network
        self._epoch_s = network.epoch_s
        self._metrics = metrics
        self._phase = phase
        self._kind: type[WorkDigest] | type[FeedbackDigest] = (
            WorkDigest if role == "full" else FeedbackDigest
        )
        self._parts: OrderedDict[tuple[int, int], tuple[DigestPart, ...]] = OrderedDict()
        self._batch_epochs = (
            params.feedback_max_epochs if role == "client" else params.work_max_epochs
        )
        seed = hashlib.sha256(b"repp2p/1/feedback-batch\0" + peer_id.encode()).digest()
        self._batch_shift = int.from_bytes(seed[:8], "big") % self._batch_epochs
        self._done: set[int] = set()
        self._started_epoch = self.current_epoch()

    # -- time --------------------------------------------------------------------------

    def current_epoch(self) -> int:
        return int(self._clock.now()) // self._epoch_s

    def sealed(self, epoch: int) -> bool:
        """True when this peer must sign no per-task record of a task of ``epoch``."""
        return self.params.sealed(epoch, self.current_epoch())

    # -- building ----------------------------------------------------------------------

    def _work_records(self, epoch: int, span: int = 1) -> list[SignedRecord]:
        """Our claims of ``epoch`` .. ``epoch + span - 1`` with their offers, our receipts
        and our refusals (a claimed task whose input our enclave refused is a ``refused``
        leaf; indexed lookups)."""
        out: list[SignedRecord] = []
        for e in range(epoch, epoch + span):
            out += self._work_records_of(e)
        return out

    def _work_records_of(self, epoch: int) -> list[SignedRecord]:
        out: list[SignedRecord] = []
        kept = self.claimed.of(epoch)
        for claim in self._store.query(type=Claim.TYPE, signer=self.peer_id, epoch=epoch):
            offer_id = claim.record.offer_id  # type: ignore[attr-defined]
            # As claimed: the store may hold a newer seq of the offer by now.
            offer = kept.get(offer_id) or self._store.get(offer_id)
            if offer is None:  # gone (purged): the task cannot be summarised any more
                log.warning("claim %s: its offer is not held", claim.record_id.hex()[:12])
                continue
            out += [claim, offer]
            for kind in (Receipt.TYPE, Refusal.TYPE):
                out += self._store.query(
                    type=kind,
                    signer=self.peer_id,
                    slot=claim.record.task_id,  # type: ignore[attr-defined]
                )
        return out

    def _feedback_records(self, epoch: int, span: int = 1) -> list[SignedRecord]:
        """Our offers of ``epoch`` .. ``epoch + span - 1`` and our feedback on them."""
        offers = [
            o
            for e in range(epoch, epoch + span)
            for o in self._store.query(type=TaskOffer.TYPE, signer=self.peer_id, epoch=e)
        ]
        tasks = {o.record.task_id for o in offers}  # type: ignore[attr-defined]
        feedback = [
            f
            for f in self._store.query(type=Feedback.TYPE, signer=self.peer_id)
            if f.record.task_id in tasks  # type: ignore[attr-defined]
        ]
        return offers + feedback

    def build(self, epoch: int, span: int = 1) -> tuple[DigestPart, ...]:
        """Our digest parts of ``epoch`` (a batch: of ``epoch`` .. ``epoch + span - 1``)
        from the store, as a never-restarted peer would build them.

        Raises:
            DigestError: the records do not fit the digest format.
        """
        cached = self._parts.get((epoch, span))
        if cached is not None:
            return cached
        last = epoch + span - 1
        expires = digest_expires(last, self._epoch_s, self._network, self.params)
        if self.role == "full":
            failed: set[bytes] = set()
            for e in range(epoch, epoch + span):
                failed |= self.failed.of(e)
            parts = build_work(
                self.peer_id,
                self._work_records(epoch, span),
                epoch,
                expires=expires,
                failed=failed,
                max_rows=self._max_rows,
                span=span,
            )
        else:
            parts = build_feedback(
                self.peer_id,
                self._feedback_records(epoch, span),
                epoch,
                expires=expires,
                max_rows=self._max_rows,
                span=span,
            )
        self._parts[(epoch, span)] = parts
        while len(self._parts) > PARTS_CACHED:
            self._parts.popitem(last=False)
        return parts

    def held(self, epoch: int) -> list[SignedRecord]:
        """Our digests covering ``epoch`` in the store (a batch, filed under its last
        epoch, may end up to ``feedback_max_epochs - 1`` (a node's: ``work_max_epochs -
        1``) later), by part."""
        found = [
            d
            for last in range(epoch, epoch + self._batch_epochs)
            for d in self._store.query(type=self._kind.TYPE, signer=self.peer_id, epoch=last)
            if d.record.covers(epoch)  # type: ignore[attr-defined]
        ]
        return sorted(found, key=lambda s: s.record.part)  # type: ignore[attr-defined]

    # -- batches -----------------------------------------------------------------------

    def batch_window(self, epoch: int) -> tuple[int, int]:
        """``(first, last)``: the aligned window of ``feedback_max_epochs`` (a node's:
        ``work_max_epochs``) epochs that holds ``epoch`` (this peer's; ``(epoch, epoch)``
        when it does not batch)."""
        m = self._batch_epochs
        first = epoch - (epoch - self._batch_shift) % m
        return first, first + m - 1

    def _batch_start(self, epoch: int) -> int:
        """The first epoch of the batch that would end at ``epoch``: the window's first
        epoch not covered by a batch we already signed."""
        first, _ = self.batch_window(epoch)
        for e in range(epoch - 1, first - 1, -1):
            if self.held(e):
                return e + 1
        return first

    def _batch_ready(self, epoch: int) -> tuple[int, int] | None:
        """``(first, span)`` of the batch to publish at sealed ``epoch``, or None to wait
        for more epochs of the window."""
        start = self._batch_start(epoch)
        span = epoch - start + 1
        if epoch == self.batch_window(epoch)[1]:
            return start, span
        rows = sum(len(p.digest.rows) for p in self.build(start, span))
        return (start, span) if rows >= self._flush_rows else None

    def quiet(self, first: int, last: int) -> bool:
        """True when no digest with rows covering any epoch of ``first - 1`` .. ``last`` is
        held (ours or anyone's): nothing of those epochs to audit, no verdict to answer."""
        kinds = (WorkDigest.TYPE, FeedbackDigest.TYPE)
        for epoch in range(first - 1, last + 1):
            for filed in range(epoch, epoch + self.params.most_epochs):  # batches: by last
                for kind in kinds:
                    for d in self._store.query(type=kind, epoch=filed):
                        if d.record.rows and d.record.covers(epoch):  # type: ignore[attr-defined]
                            return False
        return True

    def on_record(self, signed: SignedRecord, outcome: Outcome) -> None:
        """Pipeline listener: a digest with rows ends the quietness of the epochs it covers
        and of the next one; wake :meth:`run` if one of them is due, so the empty digest
        goes out now rather than at our next phase."""
        if self.role != "full" or not self._skip_quiet or outcome is Outcome.DUPLICATE:
            return
        record = signed.record
        if not isinstance(record, WorkDigest | FeedbackDigest) or not record.rows:
            return
        due = set(self.due())
        if any(e in due for e in range(record.epoch, record.last_epoch + 2)):
            self._wake.set()

    def _has_activity(self, epoch: int) -> bool:
        if self.role == "full":
            return bool(self._store.query(type=Claim.TYPE, signer=self.peer_id, epoch=epoch))
        return bool(self._store.query(type=TaskOffer.TYPE, signer=self.peer_id, epoch=epoch))

    # -- publishing --------------------------------------------------------------------

    async def publish_epoch(self, epoch: int) -> list[SignedRecord]:
        """Publish our digests of sealed ``epoch`` (idempotent).

        Digests already held are gossiped again, never re-signed. A client with no offer
        in the epoch publishes nothing; a node publishes an empty part for an epoch since
        it started that is not quiet (:meth:`quiet`; a quiet one is published later, if
        it stops being quiet while due), and for an earlier one only when it holds its
        claims.

        Returns:
            Our digests of the epoch (empty when there is nothing to publish).

        Raises:
            ValueError: ``epoch`` is not sealed yet.
            DigestError, RecordError: building or storing failed.
        """
        if not self.sealed(epoch):
            raise ValueError(f"epoch {epoch} is not sealed yet")
        held = self.held(epoch)
        if held:
            for signed in held:
                await self._regossip(signed.data, signed.type)
            held += await self._complete(held)
            self._done.add(epoch)
            return sorted(held, key=lambda s: s.record.part)  # type: ignore[attr-defined]
        first, span = epoch, 1
        if self._batch_epochs > 1:
            ready = self._batch_ready(epoch)
            if ready is None:
                return []  # not done: due again once the next epoch is sealed
            first, span = ready
        active = any(self._has_activity(e) for e in range(first, epoch + 1))
        if not active and (self.role == "client" or epoch < self._started_epoch):
            self._done.update(range(first, epoch + 1))
            return []
        if not active and self._skip_quiet and self.quiet(first, epoch):
            return []  # not done: a digest with rows of these epochs may still come
        out = []
        for part in self.build(first, span):
            out.append(await self._publish(part.digest))
            self._metrics.digests_published.labels(self._kind.TYPE).inc()
        self._done.update(range(first, epoch + 1))
        log.info(
            "published %d %s part(s) of epochs %d..%d", len(out), self._kind.TYPE, first, epoch
        )
        return out

    async def _complete(self, held: list[SignedRecord]) -> list[SignedRecord]:
        """Publish the parts of a split digest still missing (a crash between two parts):
        only when a build gives the same split, so no part conflicts with one signed."""
        parts = held[0].record.parts  # type: ignore[attr-defined]
        epoch, span = held[0].record.epoch, held[0].record.span  # type: ignore[attr-defined]
        have = {s.record.part for s in held}  # type: ignore[attr-defined]
        if len(have) >= parts:
            return []
        built = self.build(epoch, span)
        if len(built) != parts:
            log.error(
                "our digest of epoch %d: %d parts signed, a build gives %d; the missing "
                "parts are not published",
                epoch,
                parts,
                len(built),
            )
            return []
        out = []
        for part in built:
            if part.digest.part not in have:
                out.append(await self._publish(part.digest))
                self._metrics.digests_published.labels(self._kind.TYPE).inc()
        return out

    def due(self) -> list[int]:
        """Sealed epochs within the gossip window not published yet by this process."""
        current = self.current_epoch()
        first = current - self.params.gossip_max_age_epochs + 1
        last = self.params.last_sealed(current)
        return [e for e in range(max(first, 0), last + 1) if e not in self._done]

    async def publish_due(self) -> int:
        """Publish every due epoch; failures are logged (retried next round)."""
        published = 0
        for epoch in self.due():
            try:
                published += len(await self.publish_epoch(epoch))
            except (ReppError, ValueError) as exc:
                log.error("could not publish our digests of epoch %d: %s", epoch, exc)
            except Exception:  # our disk, say: the node must not stop; retried next round
                log.exception("could not publish our digests of epoch %d", epoch)
        # Forget only epochs that left the window (due() never returns them again).
        oldest = self.current_epoch() - self.params.gossip_max_age_epochs
        self._done = {e for e in self._done if e > oldest}
        return published

    async def run(self) -> None:
        """Publish due digests now, then at this peer's phase of every epoch, and whenever
        :meth:`on_record` says a quiet epoch no longer is."""
        while True:
            self._wake = trio.Event()
            await self.publish_due()
            now = self._clock.now()
            await self._sleep_or_wake(next_phase_time(now, self._epoch_s, self._phase))

    async def _sleep_or_wake(self, until: float) -> None:
        """Sleep until ``until`` on the peer's clock, or until :meth:`on_record` wakes us."""
        wake = self._wake
        async with trio.open_nursery() as nursery:

            async def timer() -> None:
                await self._clock.sleep_until(until)
                nursery.cancel_scope.cancel()

            async def woken() -> None:
                await wake.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(timer)
            nursery.start_soon(woken)

    # -- answering audits --------------------------------------------------------------

    def answer(self, digest_id: bytes, index: int) -> bytes | None:
        """The encoded :class:`~repp2p.digests.AuditResponse` for leaf ``index`` of our
        digest ``digest_id``, or None (not ours, not held, past the audit horizon, no such
        leaf)."""
        signed = self._store.get(digest_id)
        if signed is None or signed.signer != self.peer_id or signed.type != self._kind.TYPE:
            return None
        digest = signed.record
        epoch = digest.epoch  # type: ignore[attr-defined]
        if not self.params.answers_audits_of(digest.last_epoch, self.current_epoch()):  # type: ignore[attr-defined]
            return None
        if not 0 <= index < digest.leaf_count:  # type: ignore[attr-defined]
            return None
        try:
            parts = self.build(epoch, digest.span)  # type: ignore[attr-defined]
        except DigestError as exc:
            log.error("cannot rebuild our digest of epoch %d: %s", epoch, exc)
            return None
        for part in parts:
            if part.digest == digest:
                return leaf_proof(part, digest_id, index).encode()
        log.error("our digest %s no longer matches our store", digest_id.hex()[:12])
        return None


__all__ = ["ClaimedOffers", "FailedTasks", "OwnDigests", "digest_expires", "retention_epochs"]
