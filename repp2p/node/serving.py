"""Serving tasks: the node half of ``/repp2p/task/1`` (docs/protocol.md).

For each request the node checks the offer (signature, expiry, deadline, epoch, replay),
ranks it on its own view of the offer's epoch, follows the failover schedule, publishes its
``Claim``, runs the task in its enclave, publishes the enclave-signed ``Receipt`` wrapped in
its own record signature, and returns the encrypted output. The enclave (a separate
process in the simulated backend) is the only place the plaintext exists.

Failover and released claims: a better rank's claim blocks a worse rank unless the offer's
owner has published ``timeout`` or ``bad_proof`` feedback on that claimant for this task —
a *release*. Releases are public records, so any peer can check why rank ``r`` took over;
the client may also hand them over with its request so the next node needs not wait for
gossip.

Dispute replicas (docs/core.md "Disputes and escalation"): a request that carries
``"dispute"`` (the task's disagreeing receipts) asks this node to run the task as a replica.
It is admitted by :mod:`repp2p.tasks.escalation`'s rules only (the receipts must be attested
enclaves' and really disagree, and this node must be among the next ranks of the ranking
without the exploration coin), never by the failover schedule: see :meth:`TaskServer._run_replica`.
A k = 1 replica request carries the client's signed ``wrong`` verdict and the claims of the
carried receipts; on a digest network the replica publishes the task's dispute proof (the
verdict and every receipt, its own included) once it has its receipt, so views judge the
verdict even when every replica agrees with the node (docs/core.md, "Live escalation at
k = 1").
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from engines.errors import EngineError
from repp2p import tasks
from repp2p.clock import ClockAPI
from repp2p.digests.disputes import DisputeProof, dispute_proof
from repp2p.errors import TIMEOUT_LIMIT, ProtocolError, RecordError, limit_of
from repp2p.matching import beacon, rank
from repp2p.net.framing import FrameReader, remote_peer, reset_quietly, write_cbor
from repp2p.net.task import (
    MAX_RELEASES,
    MAX_REQUEST,
    MAX_REQUEST_ITEMS,
    MAX_REQUESTS_PER_PEER,
    MAX_STREAMS_PER_PEER,
    decode_frame,
    error,
    input_signature,
    parse_handover,
    parse_request,
)
from repp2p.node.abc import (
    EnclaveSupervisorAPI,
    RecordPipelineAPI,
    RecordPublisherAPI,
    TaskLoadAPI,
    ViewServiceAPI,
)
from repp2p.records import Claim, Feedback, SignedRecord, TaskOffer, decode, sealed_input_signed
from repp2p.store import RecordStoreAPI
from repp2p.tee import EnclaveError, InputRefused
from repp2p.timers import Timers

log = logging.getLogger("repp2p.serving")

#: the limit counted when a peer's request waited ``task_idle_s`` for one of its
#: :data:`~repp2p.net.task.MAX_REQUESTS_PER_PEER` slots (its stream is closed unanswered)
REQUESTS_PER_PEER_LIMIT = "requests_per_peer"
#: the limit counted when a peer's stream beyond its MAX_STREAMS_PER_PEER is reset
STREAMS_PER_PEER_LIMIT = "streams_per_peer"


class _PeerSlots:
    """One remote peer's task requests in progress (a semaphore of
    :data:`MAX_REQUESTS_PER_PEER`) and its open task streams (the entry is dropped with the
    last one)."""

    __slots__ = ("requests", "streams")

    def __init__(self) -> None:
        self.requests = trio.Semaphore(MAX_REQUESTS_PER_PEER)
        self.streams = 0


class TaskServer(TaskLoadAPI):
    """The task-serving half of a full node.

    Args:
        peer_id: this node's peer ID (its rank is looked up under it).
        store: the node's records (claims, feedback, releases are read from it).
        pipeline: offers, releases and feedback handed over enter through it.
        publisher: publishes our claims and receipts.
        views: the views the node ranks offers on.
        enclave: runs the tasks.
        clock: the node's clock.
        capacity: concurrent tasks. timers: the live layer's timers.
        task_delay_s: TEST ONLY (dev network): wait between claim and execution.
        on_limit: told the limit's name each time a stream is ended by a limit
            (``request_timeout``, ``malformed``, ``requests_per_peer``,
            ``streams_per_peer``) or a task refused for ``capacity``.
        sealed: ``sealed(epoch)``: True once our digest of ``epoch`` is due (no claim or
            receipt of a task of that epoch may be signed any more:
            :meth:`repp2p.node.digests.OwnDigests.sealed`). Default: never.
        on_failed: ``on_failed(epoch, task_id)``: a claimed task's execution failed (it is a
            ``failed`` leaf of our work digest: :class:`repp2p.node.digests.FailedTasks`).
        on_claimed: ``on_claimed(offer)``: we are about to claim this offer (kept as
            claimed: :class:`repp2p.node.digests.ClaimedOffers`).
        publish_dispute: ``await publish_dispute(proof)`` holds and gossips a dispute proof
            (:meth:`repp2p.node.disputes.DisputeBook.publish`); given on a digest-view
            network only, where it publishes the proof of each k = 1 replica run.
    """

    def __init__(
        self,
        *,
        peer_id: str,
        store: RecordStoreAPI,
        pipeline: RecordPipelineAPI,
        publisher: RecordPublisherAPI,
        views: ViewServiceAPI,
        enclave: EnclaveSupervisorAPI,
        clock: ClockAPI,
        capacity: int,
        timers: Timers,
        task_delay_s: float = 0.0,
        on_limit: Callable[[str], None] | None = None,
        sealed: Callable[[int], bool] = lambda epoch: False,
        on_failed: Callable[[int, bytes], None] = lambda epoch, task_id: None,
        on_claimed: Callable[[SignedRecord], None] = lambda offer: None,
        publish_dispute: Callable[[DisputeProof], Awaitable[Any]] | None = None,
    ) -> None:
        self._publish_dispute = publish_dispute
        self._on_limit = on_limit or (lambda limit: None)
        self._on_claimed = on_claimed
        self._sealed = sealed
        self._on_failed = on_failed
        self._peer_id = peer_id
        self._store = store
        self._pipeline = pipeline
        self._publisher = publisher
        self._views = views
        self._enclave = enclave
        self._clock = clock
        self._capacity = capacity
        self._timers = timers
        self._task_delay_s = task_delay_s
        self._active = 0
        self._done = 0
        self._handled: dict[bytes, float] = {}  # task id -> when we claimed it
        self._peers: dict[str | None, _PeerSlots] = {}  # remote peer -> its requests

    @property
    def active(self) -> int:
        return self._active

    @property
    def done(self) -> int:
        return self._done

    async def handle_stream(self, stream: Any) -> None:
        """``/repp2p/task/1`` stream handler: requests and responses in turn, until EOF.

        A client keeps a stream open for its next task (no stream set-up per task); a
        stream idle for ``Timers.task_idle_s`` is closed. One peer has at most
        :data:`MAX_STREAMS_PER_PEER` streams open (a further one is reset at once) and
        :data:`MAX_REQUESTS_PER_PEER` requests in progress over all its streams (a further
        one is not read until one of them ends, at most ``task_idle_s``).
        """
        reader = FrameReader(stream, max_frame=MAX_REQUEST)
        peer = remote_peer(stream)
        slots = self._peers.get(peer)
        if slots is None:
            slots = self._peers[peer] = _PeerSlots()
        slots.streams += 1
        try:
            if slots.streams > MAX_STREAMS_PER_PEER:
                # each stream holds a handler for task_idle_s though it never carries a byte
                log.info("task stream reset: its peer has %d open", MAX_STREAMS_PER_PEER)
                self._on_limit(STREAMS_PER_PEER_LIMIT)
                await reset_quietly(stream)
                return
            while await self._serve_one(stream, reader, slots.requests):
                pass
        finally:
            slots.streams -= 1
            if not slots.streams:
                del self._peers[peer]
            try:
                await stream.close()
            except Exception:
                pass

    def requests_in_progress(self, peer: str | None) -> int:
        """Task requests of ``peer`` begun and not yet answered (for tests and status)."""
        slots = self._peers.get(peer)
        return MAX_REQUESTS_PER_PEER - slots.requests.value if slots is not None else 0

    async def _serve_one(self, stream: Any, reader: FrameReader, slots: trio.Semaphore) -> bool:
        """Answer one request on ``stream``; False when the stream is done."""
        try:
            with trio.move_on_after(self._timers.task_idle_s) as idle:
                more = await reader.wait_data()
        except Exception:  # a reset stream
            return False
        if idle.cancelled_caught or not more:
            return False  # idle, or the client closed its side
        # A request has begun: it is read once the peer has a free slot. Its requests in
        # progress (each may hold a 2 MiB frame through a failover wait and a run) are
        # bounded, however many streams it opens; the rest stay unread, flow-controlled.
        with trio.move_on_after(self._timers.task_idle_s) as queued:
            await slots.acquire()
        if queued.cancelled_caught:
            log.info("task stream closed: its peer has requests in progress at the limit")
            self._on_limit(REQUESTS_PER_PEER_LIMIT)
            return False
        try:
            return await self._answer(stream, reader)
        finally:
            slots.release()

    async def _answer(self, stream: Any, reader: FrameReader) -> bool:
        """Read, serve and answer the request that has begun on ``stream``; False when the
        stream is done."""
        keep = True
        try:
            # Once a request has begun, it must arrive whole in task_request_s: a slow
            # sender cannot hold a 2 MiB buffer for the idle timeout.
            with trio.fail_after(self._timers.task_request_s):
                payload = await reader.read_bytes()
            if payload is None:
                return False
            # its CBOR is scanned before it is decoded: a frame of two million empty maps
            # would cost ~150 MB and 0.1-0.4 s of the event loop (docs/security.md)
            request = decode_frame(payload, max_items=MAX_REQUEST_ITEMS)
            del payload
            response = await self.serve(request)
        except ProtocolError as exc:
            self._on_limit(limit_of(exc))
            response, keep = error("bad_request", str(exc)), False
        except trio.TooSlowError:
            self._on_limit(TIMEOUT_LIMIT)
            response, keep = error("bad_request", "request not received in time"), False
        except Exception as exc:
            # Nothing a peer sends may escape a stream handler: in py-libp2p 0.8.1 that
            # cancels the swarm and stops the whole node. A reset stream ends up here too.
            if not isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError):
                log.exception("task request failed")
            response, keep = error("execution_failed", f"{type(exc).__name__}"), False
        try:
            with trio.fail_after(self._timers.task_reply_s):
                await write_cbor(stream, response)
        except Exception as exc:  # the client went away: the receipt is public anyway
            log.info("task response not delivered: %r", exc)
            return False
        return keep

    async def serve(self, request: Any) -> dict[str, Any]:
        """Answer one request frame (a task, or a hand-over of feedback)."""
        handed = parse_handover(request)
        if handed is not None:
            return {"ok": True, "stored": self.take_records(handed)}
        return await self.run_task(request)

    def take_records(self, handed: list[bytes]) -> int:
        """Store a client's feedback on tasks this node served; returns how many of the
        envelopes it holds now (taken, or held already: a replay costs a hash and a lookup).

        The client hands a task's feedback to each of the task's nodes, including feedback
        on the *other* nodes: a node that cheated cannot bury the evidence by not
        spreading it, since the task's honest nodes hold it too.

        Only feedback views count is kept (it is no free storage): on a task we claimed,
        signed by its offer's owner (views drop anyone else's feedback on a task), on a
        node that may have run it (:class:`_HandOverRule`). Else anyone could store
        feedback under throwaway keys, and an owner on any number of made-up nodes, 16
        records a message, for every task we ever claimed.
        """
        now = int(self._clock.now())
        taken = []
        held = 0
        judged: dict[bytes, _HandOverRule | None] = {}  # task id -> its rule
        for data in handed:
            if self._store.has(hashlib.sha256(data).digest()):
                held += 1  # ours already (feeds bring most of it): nothing to check again
                continue
            try:
                signed = decode(data, now=now)
            except RecordError:
                continue
            fb = signed.record
            if not isinstance(fb, Feedback):
                continue
            if fb.task_id not in judged:
                judged[fb.task_id] = self._feedback_rule(fb.task_id)
            rule = judged[fb.task_id]
            if rule is not None and rule.keeps(signed.signer, fb.node):
                taken.append(signed)
        # One store transaction for the hand-over (a busy client batches many tasks'
        # feedback in one): the commit is most of a small record's cost.
        if taken:
            held += sum(self._pipeline.accept_decoded_many(taken, source="task"))
        return held

    async def run_task(self, request: Any) -> dict[str, Any]:
        """Admit a task by the rules of :mod:`repp2p.tasks.admission`, then run it.

        This method does the I/O between the rules' steps (views, store, sleeping until a
        failover turn) and the claim, execution and receipt once admitted.
        """
        request, dispute = _pop_dispute(request)
        request, verdict = _pop_verdict(request, dispute)
        request, claims = _pop_claims(request, dispute)
        offer_data, sealed, releases = _parse(request)
        input_sig = input_signature(request)
        now_ms = self._now_ms()
        offer = tasks.check_offer(offer_data, now_ms=now_ms)
        if isinstance(offer, tasks.Reject):
            return _refusal(offer)
        o: TaskOffer = offer.record  # type: ignore[assignment]
        stale = tasks.check_fresh(
            o,
            claimed_before=self._claimed_before(o.task_id),
            now_ms=now_ms,
            epoch_s=self._views.epoch_s,
        )
        if stale is not None:
            return _refusal(stale)
        if dispute is not None:
            return await self._run_replica(
                offer, offer_data, sealed, dispute, now_ms, releases, input_sig, verdict, claims
            )
        view = self._views.view(o.epoch)
        ranking = rank(o, view, beacon(o.epoch))
        # Checked before storing: an offer nobody assigned to us stays out of our feed.
        assigned = tasks.assigned_rank(ranking, self._peer_id)
        if isinstance(assigned, tasks.Reject):
            return _refusal(assigned)
        # The owner's signature over the sealed bytes, before we store, verify releases or
        # wait for our turn: offers are public, and without this anyone could replay one
        # with junk bytes and hold a 2 MiB request here through the failover wait. Checked
        # again before the claim (our enclave key may change meanwhile).
        unsigned = self._unsigned_input(offer, sealed, input_sig)
        if unsigned is not None:
            return error("bad_request", unsigned)
        held = self._store.get(offer.record_id) is not None
        if not self._pipeline.accept_decoded(offer, source="task"):
            return _refusal(tasks.REFUSED_BY_PIPELINE)
        if not held:  # a client's offer enters the network through the nodes it chose
            self._publisher.spread(offer_data, TaskOffer.TYPE)
        for release in tasks.releases_in(releases, offer, now_ms=now_ms):
            self._pipeline.accept_decoded(release, source="task")
        arrived = self._pipeline.arrived_at(offer.record_id)
        first_seen_ms = int(arrived * 1000) if arrived is not None else now_ms
        waited = False
        while True:
            decision = tasks.take_turn(
                o,
                ranking=ranking,
                me=self._peer_id,
                now_ms=self._now_ms(),
                first_seen_ms=first_seen_ms,
                waited=waited,
                claims_seen=self._claims_seen(o.task_id, first_seen_ms),
                released=self._released(offer),
                active=self._active,
                capacity=self._capacity,
                already_taken=o.task_id in self._handled,
                params=view.matching_params,
            )
            if not isinstance(decision, tasks.WaitUntil):
                break
            await self._clock.sleep_until(decision.at_ms / 1000)
            waited = True
        if isinstance(decision, tasks.Reject):
            if decision.code is tasks.ErrorCode.NO_CAPACITY:
                self._on_limit("capacity")
            return _refusal(decision)
        if self._sealed(o.epoch):
            # Our digest of the epoch is out (or due): a claim now would contradict it.
            return _refusal(tasks.Reject(tasks.ErrorCode.WRONG_EPOCH, "the epoch is sealed"))
        unsigned = self._unsigned_input(offer, sealed, input_sig)
        if unsigned is not None:
            return error("bad_request", unsigned)
        return await self._execute(offer, sealed, decision.rank, view.digest, input_sig)

    def _unsigned_input(
        self, offer: SignedRecord, sealed: bytes, input_sig: bytes | None
    ) -> str | None:
        """Why we must not claim a task whose input the client did not sign, or None.

        Checked before the claim: without the client's signature over the sealed bytes
        (and the enclave key it sealed to), our enclave could not prove a bad input was
        the client's, and the failure would count against us. An input sealed to another
        enclave key (ours changed since the client's view) is nobody's fault: declined too.
        """
        if input_sig is None:
            return "the sealed input is not signed (input_sig)"
        enc_key = self._enclave.enc_key
        if enc_key is None:
            return None  # an enclave that cannot say: it checks the signature itself
        ok = sealed_input_signed(
            offer.signer_key,
            input_sig,
            task_id=offer.record.task_id,  # type: ignore[attr-defined]
            node=self._peer_id,
            enc_key=enc_key,
            sealed_digest=hashlib.sha256(sealed).digest(),
        )
        return None if ok else "input_sig does not verify for our current enclave key"

    def _refused(self, o: TaskOffer, exc: InputRefused) -> dict[str, Any]:
        """The reply to a task our enclave refused for the client's input: its signed
        ``Refusal`` goes into our feed (it proves the failure is not ours) and to the client."""
        log.info("task %s: the client's input was refused: %s", o.task_id.hex()[:12], exc)
        if self._sealed(o.epoch):  # after the seal nothing about the task may change
            return error("execution_failed", "input refused after its epoch was sealed")
        self._on_failed(o.epoch, o.task_id)
        signed = self._publisher.publish_soon(exc.refusal)
        reply = error("input_refused", exc.refusal.code)
        reply["refusal"] = signed.data
        return reply

    async def _run_replica(
        self,
        offer: SignedRecord,
        offer_data: bytes,
        sealed: bytes,
        dispute: list[bytes],
        now_ms: int,
        releases: list[bytes],
        input_sig: bytes | None = None,
        verdict: bytes | None = None,
        claims: list[bytes] | None = None,
    ) -> dict[str, Any]:
        """Admit a dispute replica by :mod:`repp2p.tasks.escalation`'s rules, then run it.

        Checked on this node's own view of the offer's epoch: this node is in the escalation
        ranking (``may_be_replica``), the owner's signature over the sealed input, this
        node's place in the replica window on the signers the carried receipts name
        (``in_replica_window``: before their signatures, so a node the request cannot make a
        replica, such as one further down the ranking that an owner replays its request
        to, verifies none of them), the carried receipts
        (``check_dispute``: attested enclaves of nodes ranked for this task, really
        disagreeing), this node's replica rank (``replica_rank``; the owner's releases, handed
        over in ``releases`` or held, name the first-round nodes that failed, which the
        client skipped and so does the window), then a free slot
        (``take_replica``). No failover wait: the dispute is the replica's turn. The offer
        and the receipts are stored (they are the dispute's evidence) once the receipts and the
        rank check out.

        With a ``verdict`` (k = 1: the client's signed ``wrong`` Feedback on the one node
        that ran it), the client's credibility on the same view must reach
        ``dispute_min_credibility_permille`` (``low_credibility``), the receipts need not
        disagree, and the verdict must check out (``check_verdict``: ``bad_verdict``), the
        offer and the verdict must live until the last view that can count the dispute
        (``check_verdict_lifetime``: ``bad_verdict``), and the request must carry the
        claim of each carried receipt (``check_verdict_claims``: ``bad_dispute``). The
        verdict is stored with the receipts. Once our receipt is signed, the dispute proof
        (the offer, the verdict, every carried claim and receipt and ours) is published
        when ``publish_dispute`` is given: the client cannot keep its refuted verdict from
        the views by publishing nothing. Without a verdict (k >= 2) the ``claims`` are
        optional and checked when carried; with them, the proof (the carried claims and
        receipts and ours) is published the same way.
        """
        o: TaskOffer = offer.record  # type: ignore[assignment]
        view = self._views.view(o.epoch)
        b = beacon(o.epoch)
        escalation = tasks.escalation_ranking(o, view, b)
        outside = tasks.may_be_replica(escalation, self._peer_id)
        if outside is not None:  # before verifying the receipts: that costs signatures
            return _refusal(outside)
        if verdict is not None:  # k = 1: the client's word, if the view finds it credible
            low = tasks.check_credibility(
                tasks.client_credibility(view.reputation, offer.signer),
                view.matching_params.dispute_min_credibility_permille,
            )
            if low is not None:
                return _refusal(low)
        # Before the carried receipts (up to 2 x 80 signatures): offers and receipts are
        # public, so anyone could replay a dispute with junk bytes; only the owner can sign
        # the sealed input. Checked again before the claim.
        unsigned = self._unsigned_input(offer, sealed, input_sig)
        if unsigned is not None:
            return error("bad_request", unsigned)
        # The window on the receipts' named signers, still before their signatures: the
        # owner signs the input for any node it likes, so its genuine request replayed to
        # nodes past the window had each verify every carried receipt (and claim) first.
        held_released = self._released(offer)
        outside = tasks.in_replica_window(
            escalation,
            self._peer_id,
            dispute,
            view.matching_params.dispute_max_replicas,
            released=held_released,
            unverified_releases=len(releases),
        )
        if outside is not None:
            return _refusal(outside)
        receipts = tasks.check_dispute(
            dispute,
            offer,
            now_ms=now_ms,
            may_have_run={*rank(o, view, b), *escalation},
            result_key_of=self._result_key_of,
            contested=verdict is not None,
        )
        if isinstance(receipts, tasks.Reject):
            return _refusal(receipts)
        judged = None
        runs: list[tuple[SignedRecord, SignedRecord]] = []
        if verdict is not None:
            judged = tasks.check_verdict(verdict, offer, receipts, now_ms=now_ms)
            if isinstance(judged, tasks.Reject):
                return _refusal(judged)
            short = tasks.check_verdict_lifetime(
                offer,
                judged,
                epoch_s=self._views.epoch_s,
                window_epochs=self._views.reputation_params.window_epochs,
                dispute_lag=self._views.params.dispute_lag,
            )
            if short is not None:
                return _refusal(short)
        if verdict is not None or claims is not None:
            # k = 1: required; k >= 2: optional (clients before k >= 2 proofs by replicas
            # sent none), checked when carried
            carried = tasks.check_verdict_claims(claims or [], offer, receipts, now_ms=now_ms)
            if isinstance(carried, tasks.Reject):
                return _refusal(carried)
            runs = list(zip(carried, receipts, strict=True))
        # The owner's releases (first-round nodes that failed): the client skipped them too.
        handed = tasks.releases_in(releases, offer, now_ms=now_ms)
        assigned = tasks.replica_rank(
            escalation,
            self._peer_id,
            {r.signer for r in receipts},
            view.matching_params.dispute_max_replicas,
            released=tasks.released_claimants(handed, offer) | held_released,
        )
        if isinstance(assigned, tasks.Reject):
            return _refusal(assigned)
        held = self._store.get(offer.record_id) is not None
        if not self._pipeline.accept_decoded(offer, source="task"):
            return _refusal(tasks.REFUSED_BY_PIPELINE)
        if not held:
            self._publisher.spread(offer_data, TaskOffer.TYPE)
        for receipt in receipts:
            self._pipeline.accept_decoded(receipt, source="task")
        if judged is not None:
            # the client's verdict is the dispute's evidence too: held, it spreads like any
            # feedback on a records network (a client cannot keep it from the views)
            self._pipeline.accept_decoded(judged, source="task")
        for release in handed:
            self._pipeline.accept_decoded(release, source="task")
        decision = tasks.take_replica(
            assigned,
            active=self._active,
            capacity=self._capacity,
            already_taken=o.task_id in self._handled,
        )
        if isinstance(decision, tasks.Reject):
            if decision.code is tasks.ErrorCode.NO_CAPACITY:
                self._on_limit("capacity")
            return _refusal(decision)
        if self._sealed(o.epoch):
            return _refusal(tasks.Reject(tasks.ErrorCode.WRONG_EPOCH, "the epoch is sealed"))
        unsigned = self._unsigned_input(offer, sealed, input_sig)
        if unsigned is not None:
            return error("bad_request", unsigned)
        log.info("replica for disputed task %s at rank %d", o.task_id.hex()[:12], decision.rank)
        reply = await self._execute(offer, sealed, decision.rank, view.digest, input_sig)
        if runs and reply["ok"]:
            await self._publish_replica_proof(offer, judged, runs, reply)
        return reply

    async def _publish_replica_proof(
        self,
        offer: SignedRecord,
        verdict: SignedRecord | None,
        runs: list[tuple[SignedRecord, SignedRecord]],
        reply: dict[str, Any],
    ) -> None:
        """Publish the dispute proof of a task we ran as a replica: the offer, the carried
        claims and receipts and ours, and for a k = 1 task the client's verdict (its
        receipts may all agree). Before the answer goes back: a client that hangs up once
        it has the output, or never publishes its own proof, cannot keep the dispute from
        the views. Never fails the task."""
        if self._publish_dispute is None:
            return
        try:
            now = int(self._clock.now())
            mine = (decode(reply["claim"], now=now), decode(reply["receipt"], now=now))
            proof = dispute_proof(offer, [*runs, mine][: tasks.MAX_DISPUTE_RECEIPTS], verdict)
            await self._publish_dispute(proof)
        except Exception as exc:  # our gossip closing, say: the task's result stands
            log.warning("dispute proof of task %s not published: %r", offer.record_id.hex(), exc)

    def _result_key_of(self, peer: str) -> bytes | None:
        keys = self._views.enclave_keys(peer)
        return keys[1] if keys is not None else None

    async def _execute(
        self,
        offer: SignedRecord,
        sealed: bytes,
        my_rank: int,
        view_digest: bytes,
        input_sig: bytes | None = None,
    ) -> dict[str, Any]:
        """Claim the task, run it in the enclave, publish the receipt; the reply frame."""
        o: TaskOffer = offer.record  # type: ignore[assignment]
        self._handled[o.task_id] = self._clock.now()
        self._on_claimed(offer)
        claim = self._publisher.publish_soon(
            Claim(
                task_id=o.task_id,
                offer_id=offer.record_id,
                rank=my_rank,
                epoch=o.epoch,
                view_digest=view_digest,
                seq=1,
                expires=o.expires,
            )
        )
        self._active += 1
        started_ms = self._now_ms()
        try:
            if self._task_delay_s:  # dev-only fault injection (failover tests)
                await self._clock.sleep(self._task_delay_s)
            encrypted, receipt = await self._enclave.execute(
                task_id=o.task_id,
                offer_id=offer.record_id,
                engine_id=o.engine_id,
                input_digest=o.input_digest,
                sealed_input=sealed,
                client_result_key=o.result_key,
                started_ms=started_ms,
                expires=o.expires,
                input_size=o.input_size,
                seq=1,
                offer=offer.data,
                node=self._peer_id,
                input_sig=input_sig,
            )
        except InputRefused as exc:
            return self._refused(o, exc)
        except (EnclaveError, EngineError) as exc:
            log.info("task %s failed in the enclave: %s", o.task_id.hex()[:12], exc)
            if not self._sealed(o.epoch):  # after the seal the digest must not change
                self._on_failed(o.epoch, o.task_id)
            return error("execution_failed", str(exc))
        finally:
            self._active -= 1
        if self._sealed(o.epoch):
            # Finished after the seal: the digest (built, maybe signed) says the task was
            # not delivered, so no receipt may exist and nothing about it may change.
            log.warning("task %s finished after its epoch was sealed", o.task_id.hex()[:12])
            return error("execution_failed", "finished after its epoch was sealed")
        if self._now_ms() > o.deadline_ms:
            # Finished after the offer's deadline (queued behind other tasks in the
            # enclave, say): its client stopped waiting at the deadline, and a receipt, or
            # a replica's dispute proof, this late could reach peers after the dispute
            # closed (DisputeTiming: a proof grace after the deadline), so that some
            # peers' views count it and others' do not. No receipt: not delivered.
            log.info("task %s finished after its deadline", o.task_id.hex()[:12])
            self._on_failed(o.epoch, o.task_id)
            return error("execution_failed", "finished after the offer's deadline")
        self._done += 1
        signed_receipt = self._publisher.publish_soon(receipt)
        if len(self._handled) > 100_000:
            cutoff = self._clock.now() - 3600
            self._handled = {t: at for t, at in self._handled.items() if at > cutoff}
        return {
            "ok": True,
            "claim": claim.data,
            "receipt": signed_receipt.data,
            "output": encrypted,
        }

    def _now_ms(self) -> int:
        return int(self._clock.now() * 1000)

    def _claims_seen(self, task_id: bytes, first_seen_ms: int) -> list[tasks.ClaimSeen]:
        """The claims on a task in our store, with when each arrived (the offer's first
        sighting when we no longer remember)."""
        seen = []
        for signed in self._store.query(type=Claim.TYPE, slot=task_id):
            arrived = self._pipeline.arrived_at(signed.record_id)
            at_ms = int(arrived * 1000) if arrived is not None else first_seen_ms
            seen.append(tasks.ClaimSeen(signed.signer, at_ms))
        return seen

    def _released(self, offer: SignedRecord) -> frozenset[str]:
        """Claimants of this task the offer's owner released (Feedback slots are task id +
        node peer id: one indexed lookup per claimant)."""
        task_id = offer.record.task_id  # type: ignore[attr-defined]
        feedback = []
        for claim in self._store.query(type=Claim.TYPE, slot=task_id):
            slot = task_id + claim.signer.encode("ascii")
            feedback += self._store.query(type=Feedback.TYPE, signer=offer.signer, slot=slot)
        return tasks.released_claimants(feedback, offer)

    def _feedback_rule(self, task_id: bytes) -> _HandOverRule | None:
        """Which feedback handed over on ``task_id`` we keep; None when we did not claim
        the task (or no longer hold its offer): we keep nothing on it."""
        if not self._claimed_before(task_id):
            return None
        offers = self._store.query(type=TaskOffer.TYPE, slot=task_id)
        bound = [o for o in offers if tasks.is_bound_offer(o)]
        if not bound:
            return None
        claimants = {c.signer for c in self._store.query(type=Claim.TYPE, slot=task_id)}
        current = tasks.current_epoch(self._now_ms(), self._views.epoch_s)
        return _HandOverRule(
            bound[0],
            near=frozenset({self._peer_id, *claimants}),
            views=self._views if tasks.epoch_accepted(bound[0].record.epoch, current) else None,
        )

    def _claimed_before(self, task_id: bytes) -> bool:
        if task_id in self._handled:
            return True
        mine = self._store.query(type=Claim.TYPE, signer=self._peer_id, slot=task_id)
        return bool(mine)


class _HandOverRule:
    """The feedback on one task a hand-over may leave with us: signed by its offer's
    owner (views count no one else's), on a node that may have run it: ourselves, a
    claimant we hold, or, while the offer's epoch is one we serve (``views`` given:
    ``EPOCH_LAG``), a node of its ranking or escalation ranking on our view (the nodes its
    client may have tried; computed once, when first needed)."""

    def __init__(self, offer: SignedRecord, *, near: frozenset[str], views: Any) -> None:
        self.owner = offer.signer
        self._offer = offer.record
        self._near = near
        self._views = views
        self._ranked: frozenset[str] | None = None

    def keeps(self, signer: str, node: str) -> bool:
        if signer != self.owner:
            return False
        if node in self._near:
            return True
        if self._views is None:
            return False
        if self._ranked is None:
            o: TaskOffer = self._offer  # type: ignore[assignment]
            view, b = self._views.view(o.epoch), beacon(o.epoch)
            self._ranked = frozenset({*rank(o, view, b), *tasks.escalation_ranking(o, view, b)})
        return node in self._ranked


def _refusal(reject: tasks.Reject) -> dict[str, Any]:
    return error(reject.code.value, reject.detail)


def _pop_dispute(request: Any) -> tuple[Any, list[bytes] | None]:
    """The request without its ``dispute`` receipts, and those receipts (None: not a
    replica request). A ``dispute`` that is not a list of 1..MAX_DISPUTE_RECEIPTS byte
    strings is malformed (the rules on its content are :func:`repp2p.tasks.check_dispute`'s)."""
    if type(request) is not dict or "dispute" not in request:
        return request, None
    request = dict(request)
    raw = request.pop("dispute")
    if (
        type(raw) is not list
        or not 1 <= len(raw) <= tasks.MAX_DISPUTE_RECEIPTS
        or any(type(r) is not bytes for r in raw)
    ):
        raise ProtocolError("bad dispute")
    return request, raw


def _pop_verdict(request: Any, dispute: list[bytes] | None) -> tuple[Any, bytes | None]:
    """The request without its ``verdict`` (k = 1: the client's signed ``wrong`` Feedback),
    and that verdict (None: none). A verdict that is not a byte string, or comes without
    ``dispute`` receipts, is malformed (its content is :func:`repp2p.tasks.check_verdict`'s,
    its size too: an oversize verdict is ``bad_verdict``)."""
    if type(request) is not dict or "verdict" not in request:
        return request, None
    request = dict(request)
    raw = request.pop("verdict")
    if type(raw) is not bytes or dispute is None:
        raise ProtocolError("bad verdict: a byte string, with the dispute's receipts")
    return request, raw


def _pop_claims(request: Any, dispute: list[bytes] | None) -> tuple[Any, list[bytes] | None]:
    """The request without its ``claims`` (the claims of the carried receipts, which the
    replica publishes the dispute proof with), and those claims (None: none). Claims that
    are not a list of at most MAX_DISPUTE_RECEIPTS byte strings, or come without a
    ``dispute``, are malformed (their content is :func:`repp2p.tasks.check_verdict_claims`'s)."""
    if type(request) is not dict or "claims" not in request:
        return request, None
    request = dict(request)
    raw = request.pop("claims")
    if (
        dispute is None
        or type(raw) is not list
        or len(raw) > tasks.MAX_DISPUTE_RECEIPTS
        or any(type(c) is not bytes for c in raw)
    ):
        raise ProtocolError("bad claims: byte strings, with a dispute")
    return request, raw


def _parse(request: Any) -> tuple[bytes, bytes, list[bytes]]:
    releases: list[bytes] = []
    if type(request) is dict and "releases" in request:
        request = dict(request)
        raw = request.pop("releases")
        if (
            type(raw) is not list
            or len(raw) > MAX_RELEASES
            or any(type(r) is not bytes for r in raw)
        ):
            raise ProtocolError("bad releases")
        releases = raw
    offer, sealed = parse_request(request)
    return offer, sealed, releases
