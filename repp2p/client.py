"""Clients: :class:`Client` submits tasks; :class:`LightClient` only looks nodes up.

:class:`Client` follows gossip (it needs the records matching runs on) in DHT client mode
and submits tasks (``await client.submit(engine, data)``).

Light client: joins the network as a DHT *client* (it serves no DHT queries and stays out
of routing tables), finds the nodes serving an engine through provider records, and reads
their signed ads from the DHT, without following gossip.

    async with LightClient.open(bootstrap=["/ip4/.../p2p/12D3KooW..."]) as client:
        peers = await client.find_providers("echo")
        ad = await client.get_ad(peers[0])
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import multiaddr
import trio
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.tools.anyio_service import background_trio_service
from libp2p.tools.anyio_service.exceptions import LifecycleError

from repp2p import tasks
from repp2p.clock import ClockAPI
from repp2p.digests.disputes import dispute_proof
from repp2p.errors import ConfigError, NetworkError, RecordError
from repp2p.identity import Identity
from repp2p.matching import ClaimError, ClaimReason, beacon, rank, verify_claim
from repp2p.net.dht import NAMESPACE, AdValidator, ad_key, engine_provider_key
from repp2p.net.host import build_host
from repp2p.net.params import FeedParams
from repp2p.net.task import INPUT_REFUSED, MAX_HANDOVER, MAX_RELEASES
from repp2p.net.task import PROTOCOL as TASK_PROTOCOL
from repp2p.net.task_streams import TaskStreams
from repp2p.network_params import NetworkParams
from repp2p.node.abc import RecordPipelineAPI, RecordPublisherAPI, ViewServiceAPI
from repp2p.records import (
    MAX_LIFETIME_S,
    Claim,
    Feedback,
    NodeAd,
    Receipt,
    Refusal,
    SignedRecord,
    TaskOffer,
    check_refusal,
    decode,
    sign_sealed_input,
    task_id_for,
)
from repp2p.store import RecordStoreAPI
from repp2p.tee import ResultError, ResultReason, TaskSecret, open_result, seal_input
from repp2p.timers import Timers

log = logging.getLogger("repp2p.client")


class LightClient:
    """A light peer. Build it with :meth:`open`."""

    def __init__(self, identity: Identity, host: object, dht: KadDHT) -> None:
        self.identity = identity
        self.host = host
        self.dht = dht

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        bootstrap: Sequence[str],
        *,
        identity: Identity | None = None,
        connect_timeout: float = 10.0,
    ) -> AsyncIterator[LightClient]:
        """Connect to at least one bootstrap peer and yield a ready client.

        Raises:
            ConfigError: a bootstrap address is not a ``/p2p/`` multiaddr.
            NetworkError: no bootstrap peer could be reached within ``connect_timeout``.
        """
        identity = identity or Identity.generate()
        infos = []
        for text in bootstrap:
            try:
                infos.append(info_from_p2p_addr(multiaddr.Multiaddr(text)))
            except Exception as exc:
                raise ConfigError(f"bootstrap address {text!r} is not valid: {exc}") from None
        if not infos:
            raise ConfigError("a light client needs at least one bootstrap address")
        host = build_host(identity)
        async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
            dht = KadDHT(host, DHTMode.CLIENT, strict_validation=True)
            dht.register_validator(NAMESPACE, AdValidator())
            async with background_trio_service(dht):
                connected = 0
                with trio.move_on_after(connect_timeout):
                    for info in infos:
                        try:
                            await host.connect(info)
                            await dht.add_peer(info.peer_id)
                            connected += 1
                        except Exception as exc:
                            log.info("bootstrap %s unreachable: %r", info.peer_id, exc)
                if not connected:
                    raise NetworkError("no bootstrap peer reachable")
                with trio.move_on_after(connect_timeout):
                    await dht.refresh_routing_table()
                client = cls(identity, host, dht)
                try:
                    yield client
                finally:
                    with trio.move_on_after(Timers().shutdown_grace_s) as scope:
                        scope.shield = True
                        await host.get_network().close()

    @property
    def peer_id(self) -> str:
        return self.identity.peer_id

    async def find_providers(self, engine_id: str, count: int = 20) -> list[str]:
        """Peer IDs of nodes providing ``engine_id``, deduplicated, in discovery order."""
        infos = await self.dht.find_providers(engine_provider_key(engine_id), count)
        seen: dict[str, None] = {}
        for info in infos:
            peer = info.peer_id.to_base58()
            if peer != self.peer_id:
                seen.setdefault(peer)
            if info.addrs:
                self.host.get_peerstore().add_addrs(info.peer_id, info.addrs, 3600)
        return list(seen)

    async def get_ad(self, peer_id: str) -> SignedRecord | None:
        """The peer's latest signed NodeAd from the DHT, verified, or None."""
        value = await self.dht.get_value(ad_key(peer_id))
        if value is None:
            return None
        try:
            signed = decode(value, now=int(time.time()))
        except RecordError:
            return None
        if not isinstance(signed.record, NodeAd) or signed.signer != peer_id:
            return None
        return signed

    def connected_peers(self) -> list[str]:
        return [p.to_base58() for p in self.host.get_connected_peers()]


# -- task submission -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Proof:
    """What backs one node's answer: checked by the client, never taken on the node's word.

    Attributes:
        node: the node's peer ID (signer of the claim and the receipt record).
        rank: its rank for the task in the client's own view (0 = first choice).
        tee_kind: the TEE kind its verified attestation established.
        simulated: True for the simulated TEE (development only: NOT real security).
        measurement: the engine measurement in the enclave-signed receipt (hex).
        claim_id, receipt_id: record IDs of the node's public Claim and Receipt (hex).
        latency_ms: from sending the sealed input to the verified result.
        outcome: the feedback the client published: ok, wrong, timeout or bad_proof.
        replica: a dispute replica (docs/core.md "Disputes and escalation"); ``rank`` is
            then its place in the escalation ranking.
    """

    node: str
    rank: int
    tee_kind: str
    simulated: bool
    measurement: str
    claim_id: str
    receipt_id: str
    latency_ms: int
    outcome: str
    replica: bool = False


@dataclasses.dataclass(frozen=True)
class TaskResult:
    """A verified task result.

    Attributes:
        output: the engine's output (decrypted; its digest is in every agreeing receipt).
        task_id: hex task id; offer_id: hex record id of the client's TaskOffer.
        engine: engine id; redundancy: k; agreed: how many receipts agree with ``output``.
        proofs: one per node that answered (agreeing or not), best rank first.
        latency_ms: from publishing the offer to the verified result.
        escalated: the replicas asked when the answers disagreed, in order (empty: the
            task was not disputed, or escalation is off).
        upheld: a confident standing-weighted verdict decided the output (the task was
            disputed and escalation resolved it).
    """

    output: bytes
    task_id: str
    offer_id: str
    engine: str
    redundancy: int
    agreed: int
    proofs: tuple[Proof, ...]
    latency_ms: int
    escalated: tuple[str, ...] = ()
    upheld: bool = False

    @property
    def proof(self) -> Proof:
        """The proof of the best-ranked node whose output was accepted."""
        return next(p for p in self.proofs if p.outcome == "ok")

    def summary(self) -> str:
        """One line: node, TEE kind, measurement, latency (and SIMULATED TEE when so)."""
        p = self.proof
        tee = "SIMULATED TEE (no real security)" if p.simulated else p.tee_kind
        return (
            f"verified by {p.node} rank {p.rank}, {tee}, measurement {p.measurement[:16]}..., "
            f"{self.agreed}/{self.redundancy} agree, {self.latency_ms} ms"
        )


class Client:
    """A client peer: follows gossip (so it holds the records matching runs on), joins the
    DHT in client mode, and submits tasks with :meth:`submit`. Build it with :meth:`open`.

    Args:
        identity: the client's key (signs offers and feedback).
        store: its record store; pipeline: the only way records enter it.
        publisher: signs, stores and spreads the client's records.
        views: the per-epoch views it ranks tasks on.
        clock: its clock.
        open_task_stream: opens a ``/repp2p/task/1`` stream to a peer (base58 ID).
        background: a nursery for work after a result (feedback hand-over).
        timers: the live layer's timers.
        sealed: ``sealed(epoch)``: True once our feedback digest of ``epoch`` is due; no
            feedback on a task of that epoch is signed after it
            (:meth:`repp2p.node.digests.OwnDigests.sealed`). Default: never.
        disputes: where a disputed task's proof goes (``publish(DisputeProof)``, a
            :class:`repp2p.node.disputes.DisputeBook`) on a network whose views come from
            digests; None: not published.
    """

    def __init__(
        self,
        *,
        identity: Identity,
        store: RecordStoreAPI,
        pipeline: RecordPipelineAPI,
        publisher: RecordPublisherAPI,
        views: ViewServiceAPI,
        clock: ClockAPI,
        open_task_stream: Callable[[str], Awaitable[Any]],
        background: trio.Nursery,
        timers: Timers | None = None,
        sealed: Callable[[int], bool] = lambda epoch: False,
        disputes: Any = None,
    ) -> None:
        self.sealed = sealed
        self.disputes = disputes
        self.identity = identity
        self.store = store
        self.pipeline = pipeline
        self.publisher = publisher
        self.views = views
        self.clock = clock
        self.timers = timers or Timers()
        self._background = background
        self._open_task_stream = open_task_stream
        self.streams = TaskStreams(self._connect)
        self.hand_overs = HandOvers(self.streams, self.timers, background)
        # peer -> unix time of our last failure to connect to it (bounded, oldest dropped)
        self._unreachable: dict[str, float] = {}

    async def _connect(self, peer: str) -> Any:
        """A fresh task stream, or an error within ``timers.dial_timeout_s``: a node hidden
        by a partition (or dead) must not eat a rank's whole attempt budget."""
        try:
            with trio.fail_after(self.timers.dial_timeout_s):
                stream = await self._open_task_stream(peer)
        except Exception:  # TooSlowError or the transport's dial failure; not cancellation
            self._unreachable.pop(peer, None)
            self._unreachable[peer] = self.clock.now()
            while len(self._unreachable) > MAX_UNREACHABLE_KEPT:
                self._unreachable.pop(next(iter(self._unreachable)))
            raise
        self._unreachable.pop(peer, None)
        return stream

    def is_unreachable(self, peer: str) -> bool:
        """Whether attempts should skip ``peer`` for now: we failed to connect to it within
        the last ``timers.unreachable_s`` and it has published no ad since (a node that
        restarted announces itself with a new ad and is tried again at once)."""
        failed = self._unreachable.get(peer)
        if failed is None:
            return False
        if self.clock.now() - failed >= self.timers.unreachable_s:
            del self._unreachable[peer]
            return False
        ads = self.store.query(type=NodeAd.TYPE, signer=peer, limit=1)
        # An ad's seq is its signer's unix milliseconds.
        return not (ads and ads[0].record.seq / 1000 > failed)

    async def open_stream(self, peer: str) -> Any:
        """A new, unpooled ``/repp2p/task/1`` stream to ``peer`` (for tools and tests)."""
        return await self._open_task_stream(peer)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        bootstrap: Sequence[str],
        *,
        data_dir: str | os.PathLike[str],
        network: str = "dev",
        network_params: NetworkParams | None = None,
        policy: str = "",
        sync_timeout: float = 30.0,
        feed: FeedParams | None = None,
        timers: Timers | None = None,
        clock: ClockAPI | None = None,
    ) -> AsyncIterator[Client]:
        """Join the network through ``bootstrap`` and wait until synced.

        ``data_dir`` keeps the client's identity (its history earns its feedback weight)
        and its record store. ``network_params`` are the network's shared settings (epoch
        length, matching, reputation, ledger): by default ``bootstrap/<network>.toml``;
        ``feed`` (:class:`repp2p.net.params.FeedParams`) must match where the network
        changed it.

        Raises:
            NetworkError: not synced with any peer within ``sync_timeout``.
        """
        from repp2p.config import NodeConfig
        from repp2p.net.params import GossipParams
        from repp2p.node import Node

        config = NodeConfig(
            data_dir=Path(data_dir),
            network=network,
            role="client",
            listen=("/ip4/127.0.0.1/tcp/0",),
            bootstrap=tuple(bootstrap),
            engines=(),
            network_params=network_params,
            policy=policy,
            status_listen="",
            gossip=GossipParams(eclipse_protection=network != "dev"),
            feed=feed or FeedParams(),
            timers=timers or Timers(),
        )
        node = Node(config, clock=clock)
        done = False  # the caller's block ended without an error
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(node.run)
                try:
                    with trio.move_on_after(sync_timeout):
                        await node.discovery.wait_synced()
                    if not node.is_synced():
                        raise NetworkError("could not sync with the network")
                    async with trio.open_nursery() as background:
                        client = cls(
                            identity=node.identity,
                            store=node.store,
                            pipeline=node.pipeline,
                            publisher=node.publisher,
                            views=node.views,
                            clock=node.clock,
                            open_task_stream=lambda peer: node.discovery.open_stream(
                                peer, TASK_PROTOCOL
                            ),
                            background=background,
                            timers=config.timers,
                            sealed=node.own_digests.sealed,
                            disputes=node.disputes,
                        )
                        try:
                            yield client
                            done = True
                        finally:
                            # Feedback still waiting goes now; hand-overs running get
                            # their own timeout, then we go.
                            client.hand_overs.flush()
                            await client.streams.aclose()
                finally:
                    node.stop()
        except BaseExceptionGroup as group:
            if done and only_shutdown_races(group):
                # py-libp2p 0.8.1 can start a task on a service that is closing (pubsub
                # reading one more message): nothing the caller did or lost.
                log.warning("client closed; py-libp2p raised while shutting down: %r", group)
                return
            # The caller's error (a TaskError, say) arrives wrapped by our nurseries: hand
            # it back as itself when it is the only one.
            while isinstance(group, BaseExceptionGroup) and len(group.exceptions) == 1:
                group = group.exceptions[0]
            raise group from None

    @property
    def peer_id(self) -> str:
        return self.identity.peer_id

    async def wait_for_nodes(self, engine: str, count: int, timeout: float = 30.0) -> int:
        """Wait until ``count`` nodes serving ``engine`` are eligible in the current view.

        A view is fixed at its epoch's start, so nodes that joined since appear only in the
        next epoch's view. Returns how many are eligible (fewer on timeout).
        """
        with trio.move_on_after(timeout):
            while True:
                n = len(self._ranking_probe(engine))
                if n >= count:
                    return n
                await self.clock.sleep(self.timers.lookup_poll_s)
        return len(self._ranking_probe(engine))

    def _ranking_probe(self, engine: str) -> list[str]:
        epoch = self.views.current_epoch()
        probe = TaskOffer(
            task_id=bytes(32),
            engine_id=engine,
            epoch=epoch,
            tee_kinds=(),
            min_reputation=0,
            max_price=2**63,
            redundancy=16,
            deadline_ms=0,
            input_digest=bytes(32),
            input_size=0,
            result_key=bytes(32),
            seq=0,
            expires=0,
        )
        view = self.views.view(epoch)
        return rank(probe, view, beacon(epoch), limit=64)

    def _task_records_expire(self, epoch: int, deadline: float) -> int:
        """When this task's records expire: once they have left every reputation window.

        A task's records enter views ``TASK_RECORD_LAG`` epochs late and count for
        ``window_epochs`` more; expiring earlier would make a node's record vanish from
        reputations (and from what a fresh peer can sync) while it should still count. A
        dispute proof of the task counts from its count epoch, at most ``dispute_lag``
        after the task's, for ``window_epochs`` views, and replicas refuse a k = 1
        verdict whose offer or feedback (which inherits the offer's expiry) expires
        earlier (:func:`repp2p.tasks.check_verdict_lifetime`): the later of the two lags.
        """
        epoch_s = self.views.epoch_s
        params = self.views.params
        lag = max(params.task_record_lag, params.dispute_lag)
        last_counted = epoch + lag + params.reputation.window_epochs
        wanted = max((last_counted + 1) * epoch_s, int(deadline) + MIN_TASK_RECORD_LIFETIME_S)
        return min(wanted, int(self.clock.now()) + MAX_TASK_RECORD_LIFETIME_S)

    async def submit(
        self,
        engine: str,
        data: bytes,
        *,
        redundancy: int = 1,
        tee_kinds: Sequence[str] = (),
        max_price: int = 2**63,
        min_reputation: int = 0,
        timeout: float = 30.0,
        check: Callable[[bytes], bool] | None = None,
    ) -> TaskResult:
        """Run ``data`` through ``engine`` on matched nodes and return the verified result.

        The client signs a ``TaskOffer``, ranks it on its own view, sends it with the input
        sealed to each chosen node's *attested* key over ``/repp2p/task/1`` (the nodes put
        the offer in their feeds), checks each claim against its view and each receipt
        against the node's attestation, decrypts, compares outputs when
        ``redundancy > 1``, and signs ``Feedback``, handed to the task's nodes in the
        background. A node that fails (no answer, bad proof) is released with feedback
        and the next rank takes over.

        ``check`` (only with ``redundancy=1``): the caller's judgement of the verified
        output, ``check(output) -> bool``. False means wrong: the client signs ``wrong``
        Feedback on the node (its **verdict**) and escalates the task live (docs/core.md,
        "Live escalation at k = 1"): further ranks run it as replicas, one at a time, until
        a confident verdict or ``dispute_max_replicas``; on a digest network the dispute
        proof is published once the receipts disagree. The result is then the upheld
        output, when the check passes it.

        Raises:
            TaskError: no eligible node, no valid result in time, or no majority among
                redundant results; ``check_failed``: ``check`` judged the output wrong and
                escalation found no upheld output that passes it (reason in ``.reason``).
            ValueError: ``check`` with ``redundancy`` other than 1.
        """
        if check is not None and redundancy != 1:
            raise ValueError("check= judges a k = 1 result: at k >= 2 the receipts are compared")
        started = self.clock.now()
        epoch = int(started) // self.views.epoch_s
        view = self.views.view(epoch)
        secret = TaskSecret.generate()
        offer_record = TaskOffer(
            task_id=task_id_for(self.identity.public_key, secret.public_key),
            engine_id=engine,
            epoch=epoch,
            tee_kinds=tuple(sorted(set(tee_kinds))),
            min_reputation=min_reputation,
            max_price=max_price,
            redundancy=redundancy,
            deadline_ms=int((started + timeout) * 1000),
            input_digest=secret.digest(data),
            input_size=len(data),
            result_key=secret.public_key,
            seq=1,
            expires=self._task_records_expire(epoch, started + timeout),
        )
        # Stored here, then it travels with each request: the nodes we chose put it in
        # their feeds (repp2p.net.feed), from which every peer pulls it; on a network whose
        # views come from digests only those nodes and we hold it (repp2p.node.light).
        offer = self.publisher.publish_soon(offer_record)
        ranking = rank(offer_record, view, beacon(epoch))
        if not ranking:
            raise TaskError("no_nodes", f"no eligible node serves {engine!r} in this view")
        attempt = _Attempt(self, offer, secret, data, view, ranking)
        try:
            await attempt.run()
            if check is not None:
                upheld = await attempt.escalate_verdict(check)
            else:
                upheld = await attempt.escalate()
            return await attempt.conclude(started, upheld)
        finally:
            # Also when the task failed or we were cancelled: releases are evidence too.
            self._hand_over_later(attempt, offer_record.task_id)

    def _hand_over_later(self, attempt: _Attempt, task_id: bytes) -> None:
        for peer in attempt.hand_over_to():
            if not self.hand_overs.add(peer, attempt.feedbacks):
                # The client is closing (its background nursery takes no new work): skip
                # the hand-over rather than raise from a ``finally`` here, which would
                # replace the error the task is really ending with (a TaskError, a
                # cancellation).
                log.debug("client closing: feedback hand-over of task %s skipped", task_id.hex())
                return


#: peers whose connection failure a client remembers (for skipping them, timers.unreachable_s)
MAX_UNREACHABLE_KEPT = 4096

#: task records live at least this long after the deadline (claims, receipts and feedback
#: expire with the offer)
MIN_TASK_RECORD_LIFETIME_S = 3600
#: ... and at most this long: the record core's cap for task records, less a day for the
#: clocks of the peers that check it
MAX_TASK_RECORD_LIFETIME_S = MAX_LIFETIME_S[TaskOffer.TYPE] - 86_400


#: feedback envelopes waiting for one node at most; past it the oldest are dropped (a node
#: that stopped answering must not hold the client's memory)
MAX_HANDOVER_PENDING = 4096


class HandOvers:
    """Feedback waiting to be handed over, per node, and one sender per node.

    A task's feedback goes to each node it tried (``/repp2p/task/1`` hand-over requests of
    at most :data:`MAX_HANDOVER` envelopes). A node's sender first waits
    ``timers.handover_delay_s``, and while it waits or a hand-over to the node is in
    flight, the feedback of later tasks joins the next request: a busy client sends one
    hand-over per node per delay (or round trip), not one per task, which halves the
    requests a node answers per task. :meth:`flush` ends the waits (the client is
    closing). Each request gets ``timers.handover_s``; one that fails is logged and its
    envelopes dropped, as a node that is gone cannot take them (the feedback is in our
    store and our feedback digest anyway).

    Args:
        streams: the client's task streams.
        timers: ``handover_delay_s`` and ``handover_s``.
        background: the nursery the senders run in.
    """

    def __init__(self, streams: TaskStreams, timers: Timers, background: trio.Nursery) -> None:
        self._streams = streams
        self._timers = timers
        self._background = background
        self._pending: dict[str, list[bytes]] = {}  # peer -> envelopes not sent yet
        self._flushing = trio.Event()
        self.requests = 0  # hand-over requests sent (for tests and metrics)
        self.delivered = 0  # envelopes in hand-overs the node answered

    def add(self, peer: str, records: Sequence[bytes]) -> bool:
        """Queue ``records`` for ``peer`` and start its sender if none runs; False when the
        client is closing (its background nursery takes no new work: nothing queued)."""
        pending = self._pending.get(peer)
        if pending is not None:  # its sender is running: it takes these next
            pending += records
            if len(pending) > MAX_HANDOVER_PENDING:
                log.info("feedback hand-over to %s: backlog full, oldest dropped", peer)
                del pending[: len(pending) - MAX_HANDOVER_PENDING]
            return True
        try:
            self._background.start_soon(self._send, peer)
        except RuntimeError:
            return False
        self._pending[peer] = list(records)
        return True

    def busy(self) -> bool:
        """True while a sender runs (envelopes wait, or a request is in flight)."""
        return bool(self._pending)

    def flush(self) -> None:
        """Hand over what waits now, and every later feedback at once (closing)."""
        self._flushing.set()

    async def _send(self, peer: str) -> None:
        try:
            with trio.move_on_after(self._timers.handover_delay_s):
                await self._flushing.wait()
            while pending := self._pending.get(peer):
                chunk = pending[:MAX_HANDOVER]
                del pending[:MAX_HANDOVER]
                try:
                    with trio.fail_after(self._timers.handover_s):
                        self.requests += 1
                        await self._streams.request(peer, {"records": chunk})
                    self.delivered += len(chunk)
                except Exception as exc:  # a node that is gone is skipped
                    log.info("feedback hand-over to %s failed: %r", peer, exc)
        finally:
            self._pending.pop(peer, None)


def _shutdown_race(exc: BaseException) -> bool:
    """Whether ``exc`` is py-libp2p starting a task on a service that is closing."""
    if isinstance(exc, LifecycleError):
        return True
    return isinstance(exc, RuntimeError) and "closed to new arrivals" in str(exc)


def only_shutdown_races(group: BaseExceptionGroup) -> bool:
    """Whether every exception in ``group`` (nested groups included) is py-libp2p
    starting a task on a service that is closing (the client closing then ignores it)."""
    _, other = group.split(_shutdown_race)
    return other is None


class TaskError(NetworkError):
    """A task could not be completed: ``reason`` is no_nodes, no_result or no_majority, or
    input_refused (a node's enclave proved the input unusable: a checked ``Refusal``), or
    check_failed (``submit(check=...)`` judged the k = 1 output wrong and escalation upheld
    no output that passes the check)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


class _Attempt:
    """One task's tries across ranks (internal to :meth:`Client.submit`).

    The rules (which rank next, how long to wait for it, which answers release a node, the
    vote) are :class:`repp2p.tasks.AttemptPlan`'s; this class does the I/O: sealing, the
    task streams, checking proofs, publishing feedback.
    """

    def __init__(
        self,
        client: Client,
        offer: SignedRecord,
        secret: Any,
        data: bytes,
        view: Any,
        ranking: list[str],
    ) -> None:
        self.client = client
        self.clock, self.views = client.clock, client.views
        self.offer, self.secret, self.data, self.view = offer, secret, data, view
        self.ranking = ranking  # rank(offer, view, beacon) with the default limit
        o: TaskOffer = offer.record  # type: ignore[assignment]
        self.plan = tasks.AttemptPlan(
            ranking,
            o.redundancy,
            deadline_ms=o.deadline_ms,
            params=view.matching_params,
            budget_ms=int(client.timers.attempt_budget_s * 1000),
        )
        self.releases: list[bytes] = []
        self.refused: str | None = None  # a checked Refusal's code: our input is at fault
        self.feedbacks: list[bytes] = []  # our Feedback envelopes on this task
        # rank -> the node's claim and receipt records (None where it never answered)
        self.records: dict[int, tuple[SignedRecord | None, SignedRecord | None]] = {}
        # dispute replicas: peer -> its claim and receipt; the replicas asked, in order
        self.replica_records: dict[str, tuple[SignedRecord | None, SignedRecord | None]] = {}
        self.escalated: tuple[str, ...] = ()
        # k = 1 with check=: our signed wrong verdict on the node, sent with each replica
        # request; the peers whose feedback is signed already (conclude skips them)
        self.verdict: bytes | None = None
        self.judged: set[str] = set()

    def _now_ms(self) -> int:
        return int(self.clock.now() * 1000)

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(self.plan.lanes):
                nursery.start_soon(self._lane)

    async def _lane(self) -> None:
        while (attempt := self.plan.next_attempt(self._now_ms())) is not None:
            step = await self._try(attempt)
            if isinstance(step, tasks.LaneDone) or self.refused is not None:
                return  # done, or our input cannot work on any node
            if isinstance(step, tasks.Release):
                fb = await self._feedback(step.peer, step.outcome.value, step.latency_ms)
                if fb is not None:
                    self.releases.append(fb.data)

    async def _try(self, attempt: tasks.Attempt) -> tasks.Step:
        peer, r = attempt.peer, attempt.rank
        keys = self.views.enclave_keys(peer)
        if keys is None or self.client.is_unreachable(peer):
            # No attested keys, or we could not reach it lately (a partition hides it):
            # the next rank takes over after its failover turn instead of after a dial
            # timeout per task.
            return self.plan.on_skipped(r)
        enc_key, result_key = keys
        o: TaskOffer = self.offer.record  # type: ignore[assignment]
        sealed, _ = seal_input(self.data, enc_key, task_id=o.task_id, secret=self.secret)
        sent = self.clock.now()
        request = {"offer": self.offer.data, "sealed": sealed}
        request["input_sig"] = self._input_sig(peer, enc_key, sealed)
        if self.releases:  # the latest: the node may not hold them yet
            request["releases"] = self.releases[-MAX_RELEASES:]
        try:
            with trio.fail_after(attempt.budget_ms / 1000):
                reply = await self.client.streams.request(peer, request)
        except Exception as exc:  # dead node, reset stream, protocol violation, timeout
            log.info("task attempt on %s (rank %d) failed: %r", peer, r, exc)
            await self.client.streams.forget(peer)
            # It may have claimed (its claim reaches us by the feeds, maybe not yet):
            # release it. Timeout feedback on a node that never claimed weighs nothing.
            self.records[r] = (self._claim_of(peer), None)
            return self.plan.on_failed(r, "timeout", self._since(sent))
        latency = self._since(sent)
        if not reply["ok"]:
            log.info("rank %d (%s) declined: %s %s", r, peer, reply["error"], reply["detail"])
            # execution_failed / replayed: it claimed, then failed (or our retry of a
            # request whose answer was lost met its claim): the plan releases it.
            self.records[r] = (self._claim_of(peer), None)
            self._note_refusal(reply, peer, result_key)
            return self.plan.on_declined(r, reply["error"], latency)
        try:
            output, claim, receipt = self._check(reply, peer, enc_key, result_key)
        except (RecordError, ResultError, ClaimError) as exc:
            log.warning("bad proof from %s: %s", peer, exc)
            self.records[r] = (self._claim_of(peer), None)
            return self.plan.on_failed(r, "bad_proof", latency)
        # Keep the node's public records: they are what feedback and the ledger rest on.
        # One store transaction for both: neither is of use without the other.
        self.client.pipeline.accept_decoded_many([claim, receipt], source="task")
        self.records[r] = (claim, receipt)
        return self.plan.on_reply_ok(r, output, latency)

    def _note_refusal(self, reply: dict[str, Any], peer: str, result_key: bytes) -> None:
        """Keep a node's refusal of our input when it checks out: trying further ranks
        would only get the same refusal (each one costing us credibility), so the task
        ends with ``input_refused``. One that does not check out changes nothing."""
        if reply["error"] != INPUT_REFUSED or "refusal" not in reply:
            return
        try:
            signed = decode(reply["refusal"], now=int(self.clock.now()))
        except RecordError:
            return
        if (
            signed.signer != peer
            or not isinstance(signed.record, Refusal)
            or check_refusal(signed.record, node=peer, offer=self.offer, result_key=result_key)
        ):
            log.warning("%s sent a refusal of our input that does not check out", peer)
            return
        self.client.pipeline.accept_decoded(signed, source="task")
        self.refused = signed.record.code

    def _input_sig(self, peer: str, enc_key: bytes, sealed: bytes) -> bytes:
        """Our signature over the sealed input for ``peer``: with it the node's enclave can
        prove a bad input was ours (a signed Refusal), so it is never blamed for one."""
        task_id = self.offer.record.task_id  # type: ignore[attr-defined]
        return sign_sealed_input(
            self.client.identity, task_id=task_id, node=peer, enc_key=enc_key, sealed=sealed
        )

    def _since(self, sent: float) -> int:
        return int((self.clock.now() - sent) * 1000)

    def _check(
        self,
        reply: dict[str, Any],
        peer: str,
        enc_key: bytes,
        result_key: bytes,
        *,
        replica: bool = False,
    ) -> tuple[bytes, SignedRecord, SignedRecord]:
        """The verified output, claim and receipt of a node's answer (``replica``: a
        dispute replica's, whose claim carries an escalation rank). The claim and the
        receipt must not expire before the offer (``expires_early``).

        Raises:
            RecordError, ResultError, ClaimError: the answer does not check out.
        """
        o: TaskOffer = self.offer.record  # type: ignore[assignment]
        now = int(self.clock.now())
        claim = decode(reply["claim"], now=now)
        receipt = decode(reply["receipt"], now=now)
        if claim.signer != peer or receipt.signer != peer:
            raise ResultError(ResultReason.WRONG_KEY, "claim or receipt not signed by node")
        if not isinstance(receipt.record, Receipt):
            # any other record the node signed (its claim, say) would reach open_result,
            # which reads a receipt's fields: an AttributeError that ended the whole task
            raise ResultError(ResultReason.MALFORMED, f"a {receipt.type} is not a receipt")
        try:
            if replica:
                tasks.check_replica_claim(claim, self.offer, peer=peer)
            else:
                verify_claim(
                    claim,
                    self.offer,
                    self.view,
                    beacon(o.epoch),
                    check_digest=False,
                    ranking=self.ranking,  # ranked on this view at submit: not again
                )
        except ClaimError as exc:
            # The node ranked itself on its own view; a different rank there only
            # changed its failover timing. We chose it from our ranking, so only a
            # claim for another offer or epoch is a bad proof.
            if exc.reason is not ClaimReason.WRONG_RANK:
                raise
            log.info("claim of %s ranks differently in its view: %s", peer, exc)
        for signed in (claim, receipt):
            # an honest node copies our offer's expiry: an earlier one would take its
            # records out of every store (and a dispute over them) before our task's
            if (fault := tasks.expiry_fault(signed, self.offer)) is not None:
                raise ResultError(ResultReason.EXPIRES_EARLY, fault)
        output = open_result(
            reply["output"],
            receipt.record,
            self.secret,
            enclave_enc_key=enc_key,
            enclave_result_key=result_key,
            task_id=o.task_id,
            input_digest=o.input_digest,
            offer_id=self.offer.record_id,
            engine_id=o.engine_id,
        )
        return output, claim, receipt

    def _claim_of(self, peer: str) -> SignedRecord | None:
        task_id = self.offer.record.task_id  # type: ignore[attr-defined]
        found = self.client.store.query(type=Claim.TYPE, signer=peer, slot=task_id)
        return found[0] if found else None

    async def _feedback(self, peer: str, outcome: str, latency_ms: int) -> SignedRecord | None:
        """Sign and store our feedback on ``peer``; None once the task's epoch is sealed
        (our feedback digest of it is out: a later feedback would contradict it)."""
        o: TaskOffer = self.offer.record  # type: ignore[assignment]
        if self.client.sealed(o.epoch):
            log.warning("no %s feedback on %s: epoch %d is sealed", outcome, peer, o.epoch)
            return None
        signed = self.client.publisher.publish_soon(
            Feedback(
                task_id=o.task_id,
                node=peer,
                outcome=outcome,
                latency_ms=min(latency_ms, 2**32 - 1),
                rating=100 if outcome == "ok" else 0,
                seq=1,
                expires=o.expires,
            )
        )
        self.feedbacks.append(signed.data)
        return signed

    def hand_over_to(self) -> list[str]:
        """The nodes this task's feedback goes to: every node we tried that may hold a
        claim (a node that cheated cannot bury the evidence by not spreading it)."""
        return list(dict.fromkeys(a.peer for a in self.plan.answers)) if self.feedbacks else []

    async def conclude(self, started: float, upheld: bytes | None = None) -> TaskResult:
        o: TaskOffer = self.offer.record  # type: ignore[assignment]
        verdict = self.plan.conclude(upheld)
        if isinstance(verdict, tasks.NoVerdict) and self.refused is not None:
            raise TaskError("input_refused", f"a node's enclave refused the input: {self.refused}")
        if isinstance(verdict, tasks.NoVerdict):
            raise TaskError(verdict.reason.value, verdict.detail(o.engine_id))
        for a in verdict.feedback:
            if a.peer not in self.judged:  # our k = 1 verdict is signed already
                await self._feedback(a.peer, a.outcome.value, a.latency_ms)
        proofs = []
        for a in verdict.answers:
            if a.replica:
                claim, receipt = self.replica_records.get(a.peer, (None, None))
            else:
                claim, receipt = self.records.get(a.rank, (None, None))
            verdict_of = self.views.verdict_of(a.peer)
            kind = verdict_of.tee_kind if verdict_of is not None else "simulated"
            proofs.append(
                Proof(
                    node=a.peer,
                    rank=a.rank,
                    tee_kind=kind,
                    simulated=kind == "simulated",
                    measurement=receipt.record.measurement.hex() if receipt else "",  # type: ignore[attr-defined]
                    claim_id=claim.record_id.hex() if claim else "",
                    receipt_id=receipt.record_id.hex() if receipt else "",
                    latency_ms=a.latency_ms,
                    outcome=a.outcome.value,
                    replica=a.replica,
                )
            )
        return TaskResult(
            output=verdict.output,
            task_id=o.task_id.hex(),
            offer_id=self.offer.record_id.hex(),
            engine=o.engine_id,
            redundancy=o.redundancy,
            agreed=verdict.agreed,
            proofs=tuple(proofs),
            latency_ms=int((self.clock.now() - started) * 1000),
            escalated=self.escalated,
            upheld=upheld is not None,
        )

    # -- dispute escalation (docs/core.md "Disputes and escalation") ---------------------------
    async def escalate(self) -> bytes | None:
        """Run a disputed task on further ranks until a confident verdict; its output.

        The rules are :mod:`repp2p.tasks.escalation`'s: when the verified answers disagree,
        the next nodes of the offer's ranking without the exploration coin (skipping every
        node that answered or failed) are asked one at a time, each request carrying every
        receipt so far (the node admits a replica only on disagreeing attested receipts),
        until the standing-weighted verdict on the client's view is confident or
        ``dispute_max_replicas`` were asked, and never past the deadline. Returns the
        upheld output, or None (not disputed, or still undecided: the count vote decides
        as before).
        """
        o: TaskOffer = self.offer.record  # type: ignore[assignment]
        votes = [
            tasks.Vote(a.peer, a.output)
            for a in self.plan.answers
            if a.outcome is tasks.Outcome.OK and a.output is not None
        ]
        mp, rp = self.view.matching_params, self.view.reputation_params
        if not tasks.is_disputed(votes):
            return None
        if mp.dispute_max_replicas == 0:
            await self._publish_dispute()
            return None
        ranking = tasks.escalation_ranking(o, self.view, beacon(o.epoch))
        plan = tasks.EscalationPlan(
            ranking,
            votes,
            self._standings({*ranking, *(v.peer for v in votes)}),
            max_replicas=mp.dispute_max_replicas,
            quorum=rp.wrong_quorum,
            confidence=rp.dispute_confidence,
            min_support=rp.dispute_min_support,
            tried=[a.peer for a in self.plan.answers],
        )
        while self._now_ms() < o.deadline_ms and (step := plan.next_replica()) is not None:
            rank_, peer = step
            plan.on_replica(peer, await self._try_replica(rank_, peer))
        self.escalated = plan.asked
        upheld = plan.verdict()
        await self._publish_dispute()
        log.info(
            "task %s disputed: %d replica(s) asked, %s",
            o.task_id.hex()[:12],
            len(plan.asked),
            "resolved" if upheld is not None else "undecided",
        )
        return upheld

    async def escalate_verdict(self, check: Callable[[bytes], bool]) -> bytes | None:
        """k = 1 with ``submit(check=...)``: judge the verified output; when ``check`` says
        wrong, escalate on our signed verdict (docs/core.md, "Live escalation at k = 1").

        Returns None when the check passes (or there is no verified output: the vote then
        says ``no_result``), else the output a confident verdict upheld, which the check
        passes. The ``wrong`` verdict on the first node is signed before any replica is
        asked (every replica request carries it) and is final: it is not replaced whatever
        the replicas say. Replicas are judged by ``check`` too when no output passing it is
        upheld.

        Raises:
            TaskError: ``check_failed``: no confident verdict upheld an output the check
                passes (the replicas agreed with the first node, were undecided, our
                credibility is below the bar, the epoch is sealed, no replicas, or our
                task records expire before the last view that could count the dispute:
                ``check_verdict_lifetime``, replicas would refuse).
        """
        o: TaskOffer = self.offer.record  # type: ignore[assignment]
        good = [a for a in self.plan.answers if a.outcome is tasks.Outcome.OK]
        if len(good) != 1 or good[0].output is None or check(good[0].output):
            return None
        first = good[0]
        signed = await self._feedback(first.peer, "wrong", first.latency_ms)
        self.judged.add(first.peer)
        if signed is None:
            raise TaskError("check_failed", "the output is wrong; its epoch is sealed: no verdict")
        self.verdict = signed.data
        mp, rp = self.view.matching_params, self.view.reputation_params
        credibility = tasks.client_credibility(self.view.reputation, self.client.peer_id)
        if tasks.check_credibility(credibility, mp.dispute_min_credibility_permille) is not None:
            raise TaskError(
                "check_failed",
                f"the output is wrong; our credibility {credibility:.3f} is below the bar "
                "for a k = 1 dispute: not escalated",
            )
        if mp.dispute_max_replicas == 0:
            raise TaskError("check_failed", "the output is wrong; dispute_max_replicas is 0")
        net = self.client.views.params
        short = tasks.check_verdict_lifetime(
            self.offer,
            signed,
            epoch_s=self.client.views.epoch_s,
            window_epochs=net.reputation.window_epochs,
            dispute_lag=net.dispute_lag,
        )
        if short is not None:  # the lifetime cap cut our records short: replicas would refuse
            raise TaskError("check_failed", f"the output is wrong; not escalated: {short.detail}")
        ranking = tasks.escalation_ranking(o, self.view, beacon(o.epoch))
        votes = [tasks.Vote(first.peer, first.output)]
        plan = tasks.EscalationPlan(
            ranking,
            votes,
            self._standings({*ranking, first.peer}),
            max_replicas=mp.dispute_max_replicas,
            quorum=rp.wrong_quorum,
            confidence=rp.dispute_confidence,
            min_support=rp.dispute_min_support,
            tried=[a.peer for a in self.plan.answers],
            contested=True,
        )
        while self._now_ms() < o.deadline_ms and (step := plan.next_replica()) is not None:
            rank_, peer = step
            plan.on_replica(peer, await self._try_replica(rank_, peer))
        self.escalated = plan.asked
        upheld = plan.verdict()
        if tasks.is_disputed(plan.votes):
            # A replica disagreed: the receipts now show it, and we publish the proof
            # (with our verdict). When all agree, each replica publishes it (with our
            # verdict, which its agreeing receipt refutes): docs/core.md.
            await self._publish_dispute()
        log.info(
            "k = 1 task %s judged wrong: %d replica(s) asked, %s",
            o.task_id.hex()[:12],
            len(plan.asked),
            "upheld another output" if upheld not in (None, first.output) else "not resolved",
        )
        if upheld is not None and upheld != first.output and check(upheld):
            return upheld
        for a in self.plan.answers:
            if a.replica and a.outcome is tasks.Outcome.OK and a.output is not None:
                outcome = "ok" if check(a.output) else "wrong"
                await self._feedback(a.peer, outcome, a.latency_ms)
                self.judged.add(a.peer)
        if upheld == first.output:
            why = "the replicas upheld it: nothing is proven against the node"
        elif upheld is None:
            why = f"no confident verdict after {len(plan.asked)} replica(s)"
        else:
            why = "the output the replicas upheld fails the check too"
        raise TaskError("check_failed", f"the output is wrong and {why}")

    async def _publish_dispute(self) -> None:
        """On a digest-view network, gossip the disputed task's offer, claims and receipts
        (first round and replicas) as a dispute proof, so every view judges the dispute
        (docs/digests.md, "Dispute proofs"). Never fails the task."""
        book = self.client.disputes
        if book is None or self.client.views.params.reputation_source != "digests":
            return
        try:
            await book.publish(dispute_proof(self.offer, self._dispute_runs(), self.verdict))
        except Exception as exc:  # our gossip closing, say: the task's result stands
            log.warning(
                "dispute proof of task %s not published: %r", self.offer.record_id.hex(), exc
            )

    def _standings(self, peers: set[str]) -> dict[str, float]:
        """``peer -> standing`` on the offer's view (0 for a peer it does not know)."""
        out = {}
        for peer in peers:
            try:
                out[peer] = self.view.reputation.get(peer).standing
            except KeyError:
                out[peer] = 0.0
        return out

    def _dispute_runs(self) -> list[tuple[SignedRecord, SignedRecord]]:
        """``(claim, receipt)`` of every verified answer of this task so far (first round,
        then replicas)."""
        runs = [*self.records.values(), *self.replica_records.values()]
        found = [(c, rc) for c, rc in runs if c is not None and rc is not None]
        return found[: tasks.MAX_DISPUTE_RECEIPTS]

    async def _try_replica(self, r: int, peer: str) -> bytes | None:
        """Ask ``peer`` (rank ``r`` of the escalation ranking) to run the task as a
        replica; its verified output, or None (no answer: declined, failed, unreachable).

        A replica that failed after it may have claimed is released with ``timeout``
        feedback, and one whose answer does not check out with ``bad_proof``, as in the
        first round.
        """
        keys = self.views.enclave_keys(peer)
        if keys is None or self.client.is_unreachable(peer):
            return None
        enc_key, result_key = keys
        o: TaskOffer = self.offer.record  # type: ignore[assignment]
        sealed, _ = seal_input(self.data, enc_key, task_id=o.task_id, secret=self.secret)
        runs = self._dispute_runs()
        request = {
            "offer": self.offer.data,
            "sealed": sealed,
            "dispute": [r.data for _c, r in runs],
        }
        if self.verdict is not None:  # k = 1: our signed wrong verdict backs the request
            request["verdict"] = self.verdict
        if self.verdict is not None or self.client.views.params.reputation_source == "digests":
            # the receipts' claims: the replica publishes the dispute proof with them, so
            # the dispute reaches digest views even if we never publish ours (we crash,
            # say); a records network's views see the receipts themselves
            request["claims"] = [c.data for c, _r in runs]
        request["input_sig"] = self._input_sig(peer, enc_key, sealed)
        if self.releases:  # the first round's failures: the node skips them as the plan does
            request["releases"] = self.releases[:MAX_RELEASES]  # a request carries at most 16
        budget_s = min(self.client.timers.attempt_budget_s, (o.deadline_ms - self._now_ms()) / 1000)
        sent = self.clock.now()
        failure: str | None = None
        try:
            with trio.fail_after(max(tasks.MIN_ATTEMPT_MS / 1000, budget_s)):
                reply = await self.client.streams.request(peer, request)
        except Exception as exc:  # dead node, reset stream, protocol violation, timeout
            log.info("replica %s (rank %d) failed: %r", peer, r, exc)
            await self.client.streams.forget(peer)
            failure = "timeout"
        else:
            if not reply["ok"]:
                log.info("replica %s declined: %s %s", peer, reply["error"], reply["detail"])
                if tasks.DECLINES.get(tasks.ErrorCode(reply["error"])) is None:
                    return None  # it did not claim: nothing to release
                failure = "timeout"
        latency = self._since(sent)
        if failure is None:
            try:
                output, claim, receipt = self._check(reply, peer, enc_key, result_key, replica=True)
            except (RecordError, ResultError, ClaimError) as exc:
                log.warning("bad proof from replica %s: %s", peer, exc)
                failure = "bad_proof"
        if failure is not None:
            self.replica_records[peer] = (self._claim_of(peer), None)
            self.plan.on_replica(r, peer, failure, latency)
            await self._feedback(peer, failure, latency)
            return None
        self.client.pipeline.accept_decoded_many([claim, receipt], source="task")
        self.replica_records[peer] = (claim, receipt)
        self.plan.on_replica(r, peer, "ok", latency, output)
        return output
