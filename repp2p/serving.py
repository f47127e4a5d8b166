"""Serving tasks: the node half of ``/repp2p/task/1`` (ARCHITECTURE section 6).

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
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import trio

from engines.errors import EngineError
from repp2p.errors import ProtocolError, RecordError
from repp2p.matching import beacon, claim_opens_at_ms, rank, should_claim
from repp2p.net.framing import FrameReader, write_cbor
from repp2p.net.task import (
    IDLE_TIMEOUT_S,
    MAX_REQUEST,
    REQUEST_TIMEOUT_S,
    error,
    parse_handover,
    parse_request,
)
from repp2p.records import Claim, Feedback, SignedRecord, TaskOffer, decode, task_id_for
from repp2p.tee import EnclaveError

if TYPE_CHECKING:
    from repp2p.node import Node

log = logging.getLogger("repp2p.serving")

RELEASING_OUTCOMES = frozenset({"timeout", "bad_proof"})
MAX_RELEASES = 16
#: an offer must stay valid this long after its deadline (our claim and receipt expire
#: with it, so they outlive the task).
EXPIRY_MARGIN_S = 60


def released(store: Any, offer: SignedRecord, claimant: str) -> bool:
    """True when the offer's owner released ``claimant`` with timeout/bad_proof feedback."""
    # Feedback slots are task id + node peer id: one indexed lookup.
    slot = offer.record.task_id + claimant.encode("ascii")
    for signed in store.query(type=Feedback.TYPE, signer=offer.signer, slot=slot):
        fb = signed.record
        if (
            fb.task_id == offer.record.task_id
            and fb.node == claimant
            and fb.outcome in RELEASING_OUTCOMES
        ):
            return True
    return False


def _is_release(data: bytes, offer: SignedRecord, now: float) -> bool:
    """A release is the offer owner's timeout/bad_proof Feedback for this very task."""
    try:
        signed = decode(data, now=int(now))
    except RecordError:
        return False
    fb = signed.record
    return (
        isinstance(fb, Feedback)
        and signed.signer == offer.signer
        and fb.task_id == offer.record.task_id
        and fb.outcome in RELEASING_OUTCOMES
    )


class TaskServer:
    """The task-serving half of a full node."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.active = 0
        self.done = 0
        self._handled: dict[bytes, float] = {}  # task id -> when we claimed it

    async def handle_stream(self, stream: Any) -> None:
        """``/repp2p/task/1`` stream handler: requests and responses in turn, until EOF.

        A client keeps a stream open for its next task (no stream set-up per task); a
        stream idle for :data:`~repp2p.net.task.IDLE_TIMEOUT_S` is closed.
        """
        reader = FrameReader(stream, max_frame=MAX_REQUEST)
        try:
            while await self._serve_one(stream, reader):
                pass
        finally:
            try:
                await stream.close()
            except Exception:
                pass

    async def _serve_one(self, stream: Any, reader: FrameReader) -> bool:
        """Answer one request on ``stream``; False when the stream is done."""
        keep = True
        try:
            with trio.move_on_after(IDLE_TIMEOUT_S) as idle:
                more = await reader.wait_data()
            if idle.cancelled_caught or not more:
                return False  # idle, or the client closed its side
            # Once a request has begun, it must arrive whole in REQUEST_TIMEOUT_S: a slow
            # sender cannot hold a 2 MiB buffer for the idle timeout.
            with trio.fail_after(REQUEST_TIMEOUT_S):
                request = await reader.read_cbor()
            if request is None:
                return False
            response = await self.serve(request)
        except ProtocolError as exc:
            response, keep = error("bad_request", str(exc)), False
        except trio.TooSlowError:
            response, keep = error("bad_request", "request not received in time"), False
        except Exception as exc:
            # Nothing a peer sends may escape a stream handler: in py-libp2p 0.8.1 that
            # cancels the swarm and stops the whole node. A reset stream ends up here too.
            if not isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError):
                log.exception("task request failed")
            response, keep = error("execution_failed", f"{type(exc).__name__}"), False
        try:
            with trio.fail_after(10):
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
        """Store a client's feedback on tasks this node served; returns how many it took.

        The client hands a task's feedback to each of the task's nodes, including feedback
        on the *other* nodes: a node that cheated cannot bury the evidence by not
        spreading it, since the task's honest nodes hold it too.
        """
        node = self.node
        stored = 0
        for data in handed:
            try:
                signed = decode(data, now=int(node.clock()))
            except RecordError:
                continue
            fb = signed.record
            if isinstance(fb, Feedback) and self._claimed_before(fb.task_id):
                stored += node.accept_decoded(signed, source="task")
        return stored

    async def run_task(self, request: Any) -> dict[str, Any]:
        node = self.node
        offer_data, sealed, releases = _parse(request)
        now = node.clock()
        try:
            offer = decode(offer_data, now=int(now))
        except RecordError as exc:
            return error("bad_offer", str(exc))
        if not isinstance(offer.record, TaskOffer):
            return error("bad_offer", f"a {offer.type} is not an offer")
        o: TaskOffer = offer.record
        if o.task_id != task_id_for(offer.signer_key, o.result_key):
            return error("bad_offer", "task id not bound to the offer's signer and result key")
        if o.deadline_ms <= now * 1000:
            return error("bad_offer", "deadline passed")
        if o.expires * 1000 < o.deadline_ms + EXPIRY_MARGIN_S * 1000:
            # Our claim and receipt expire with the offer: it must outlive the deadline.
            return error("bad_offer", f"offer must expire >= {EXPIRY_MARGIN_S} s after deadline")
        if self._claimed_before(o.task_id):
            return error("replayed", "this node already took this task")
        current = int(now) // node.config.epoch_s
        if o.epoch not in (current - 1, current):
            return error("wrong_epoch", f"offer epoch {o.epoch}, now {current}")
        view = node.keeper.view(o.epoch)
        ranking = rank(o, view, beacon(o.epoch))
        if node.peer_id not in ranking:
            # Checked before storing: an offer nobody assigned to us stays out of our feed.
            return error("not_assigned", "no claiming rank for this node in its view")
        my_rank = ranking.index(node.peer_id)
        held = node.store.get(offer.record_id) is not None
        if not node.accept_decoded(offer, source="task"):
            return error("bad_offer", "offer refused by the record pipeline")
        if not held:  # a client's offer enters the network through the nodes it chose
            node.spread(offer_data, TaskOffer.TYPE)
        for data in releases:
            if _is_release(data, offer, now):
                node.accept(data, source="task")

        first_seen = node.arrivals.get(offer.record_id, now)
        params = view.matching_params
        opens_at = first_seen + claim_opens_at_ms(my_rank, o.redundancy, params) / 1000
        if opens_at > node.clock():
            await trio.sleep(opens_at - node.clock())
            if o.deadline_ms <= node.clock() * 1000:
                return error("bad_offer", "deadline passed while waiting for this rank's turn")
        better = []
        for signed in node.store.query(type=Claim.TYPE, slot=o.task_id):
            if signed.signer == node.peer_id:
                continue
            if signed.signer in ranking[:my_rank] and not released(
                node.store, offer, signed.signer
            ):
                seen = node.arrivals.get(signed.record_id, first_seen)
                better.append(int((seen - first_seen) * 1000))
        if not should_claim(my_rank, o.redundancy, better, params):
            return error("not_my_turn", f"rank {my_rank}: better ranks claimed in time")
        if self.active >= node.config.capacity:
            return error("no_capacity", "all task slots busy")
        if o.task_id in self._handled:  # a concurrent duplicate request won the race
            return error("replayed", "this node already took this task")
        self._handled[o.task_id] = now
        claim = node.publish_soon(
            Claim(
                task_id=o.task_id,
                offer_id=offer.record_id,
                rank=my_rank,
                epoch=o.epoch,
                view_digest=view.digest,
                seq=1,
                expires=o.expires,
            )
        )
        self.active += 1
        started_ms = int(node.clock() * 1000)
        try:
            if node.config.task_delay_s:  # dev-only fault injection (failover tests)
                await trio.sleep(node.config.task_delay_s)
            encrypted, receipt = await node.enclave.execute_async(
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
            )
        except (EnclaveError, EngineError) as exc:
            log.info("task %s failed in the enclave: %s", o.task_id.hex()[:12], exc)
            return error("execution_failed", str(exc))
        finally:
            self.active -= 1
        self.done += 1
        signed_receipt = node.publish_soon(receipt)
        if len(self._handled) > 100_000:
            cutoff = time.time() - 3600
            self._handled = {t: at for t, at in self._handled.items() if at > cutoff}
        return {
            "ok": True,
            "claim": claim.data,
            "receipt": signed_receipt.data,
            "output": encrypted,
        }

    def _claimed_before(self, task_id: bytes) -> bool:
        if task_id in self._handled:
            return True
        mine = self.node.store.query(type=Claim.TYPE, signer=self.node.peer_id, slot=task_id)
        return bool(mine)


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
