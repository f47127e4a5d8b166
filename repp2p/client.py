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
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import multiaddr
import trio
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.tools.anyio_service import background_trio_service

from repp2p.errors import ConfigError, NetworkError, RecordError
from repp2p.identity import Identity
from repp2p.matching import (
    ClaimError,
    ClaimReason,
    beacon,
    claim_opens_at_ms,
    rank,
    verify_claim,
)
from repp2p.net.dht import NAMESPACE, AdValidator, ad_key, engine_provider_key
from repp2p.net.host import build_host
from repp2p.net.params import FeedParams
from repp2p.net.task import MAX_HANDOVER
from repp2p.net.task import PROTOCOL as TASK_PROTOCOL
from repp2p.net.task_streams import TaskStreams
from repp2p.network_params import TASK_RECORD_LAG
from repp2p.records import (
    MAX_LIFETIME_S,
    Claim,
    Feedback,
    NodeAd,
    SignedRecord,
    TaskOffer,
    decode,
    task_id_for,
)
from repp2p.tee import ResultError, ResultReason, TaskSecret, open_result, seal_input

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
                    with trio.move_on_after(5) as scope:
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


@dataclasses.dataclass(frozen=True)
class TaskResult:
    """A verified task result.

    Attributes:
        output: the engine's output (decrypted; its digest is in every agreeing receipt).
        task_id: hex task id; offer_id: hex record id of the client's TaskOffer.
        engine: engine id; redundancy: k; agreed: how many receipts agree with ``output``.
        proofs: one per node that answered (agreeing or not), best rank first.
        latency_ms: from publishing the offer to the verified result.
    """

    output: bytes
    task_id: str
    offer_id: str
    engine: str
    redundancy: int
    agreed: int
    proofs: tuple[Proof, ...]
    latency_ms: int

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
    """

    def __init__(self, node: Any) -> None:
        from libp2p.peer.id import ID as PeerID

        self.node = node
        self.streams = TaskStreams(
            lambda peer: node.host.new_stream(PeerID.from_base58(peer), [TASK_PROTOCOL])
        )

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        bootstrap: Sequence[str],
        *,
        data_dir: str | os.PathLike[str],
        network: str = "dev",
        epoch_s: int = 60,
        policy: str = "",
        sync_timeout: float = 30.0,
        feed: FeedParams | None = None,
    ) -> AsyncIterator[Client]:
        """Join the network through ``bootstrap`` and wait until synced.

        ``data_dir`` keeps the client's identity (its history earns its feedback weight)
        and its record store. ``epoch_s`` must match the network's; ``feed``
        (:class:`repp2p.net.params.FeedParams`) too where the network changed it.

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
            epoch_s=epoch_s,
            policy=policy,
            status_listen="",
            gossip=GossipParams(eclipse_protection=network != "dev"),
            feed=feed or FeedParams(),
        )
        node = Node(config)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(node.run)
                try:
                    with trio.move_on_after(sync_timeout):
                        await node.synced.wait()
                    if not node.synced.is_set():
                        raise NetworkError("could not sync with the network")
                    client = cls(node)
                    try:
                        yield client
                    finally:
                        await client.streams.aclose()
                finally:
                    node.stop()
        except BaseExceptionGroup as group:
            # The caller's error (a TaskError, say) arrives wrapped by our nursery: hand it
            # back as itself when it is the only one.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise

    @property
    def peer_id(self) -> str:
        return self.node.peer_id

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
                await trio.sleep(0.5)
        return len(self._ranking_probe(engine))

    def _ranking_probe(self, engine: str) -> list[str]:
        epoch = int(self.node.clock()) // self.node.config.epoch_s
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
        view = self.node.keeper.view(epoch)
        return rank(probe, view, beacon(epoch), limit=64)

    def _task_records_expire(self, epoch: int, deadline: float) -> int:
        """When this task's records expire: once they have left every reputation window.

        A task's records enter views ``TASK_RECORD_LAG`` epochs late and count for
        ``window_epochs`` more; expiring earlier would make a node's record vanish from
        reputations (and from what a fresh peer can sync) while it should still count.
        """
        keeper = self.node.keeper
        epoch_s = self.node.config.epoch_s
        last_counted = epoch + TASK_RECORD_LAG + keeper.reputation_params.window_epochs
        wanted = max((last_counted + 1) * epoch_s, int(deadline) + MIN_TASK_RECORD_LIFETIME_S)
        return min(wanted, int(self.node.clock()) + MAX_TASK_RECORD_LIFETIME_S)

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
    ) -> TaskResult:
        """Run ``data`` through ``engine`` on matched nodes and return the verified result.

        The client signs a ``TaskOffer``, ranks it on its own view, sends it with the input
        sealed to each chosen node's *attested* key over ``/repp2p/task/1`` (the nodes put
        the offer in their feeds), checks each claim against its view and each receipt
        against the node's attestation, decrypts, compares outputs when
        ``redundancy > 1``, and signs ``Feedback``, handed to the task's nodes in the
        background. A node that fails (no answer, bad proof) is released with feedback
        and the next rank takes over.

        Raises:
            TaskError: no eligible node, no valid result in time, or no majority among
                redundant results (reason in ``.reason``).
        """
        node = self.node
        started = node.clock()
        epoch = int(started) // node.config.epoch_s
        view = node.keeper.view(epoch)
        secret = TaskSecret.generate()
        offer_record = TaskOffer(
            task_id=task_id_for(node.identity.public_key, secret.public_key),
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
        # their feeds (repp2p.net.feed), from which every peer pulls it.
        offer = node.publish_soon(offer_record)
        ranking = rank(offer_record, view, beacon(epoch))
        if not ranking:
            raise TaskError("no_nodes", f"no eligible node serves {engine!r} in this view")
        attempt = _Attempt(self, offer, secret, data, view, ranking, started + timeout)
        try:
            answers = await attempt.run(redundancy)
            return await attempt.conclude(answers, started)
        finally:
            # Also when the task failed or we were cancelled: releases are evidence too.
            node._background.start_soon(attempt.hand_over)


#: task records live at least this long after the deadline (claims, receipts and feedback
#: expire with the offer)
MIN_TASK_RECORD_LIFETIME_S = 3600
#: ... and at most this long: the record core's cap for task records, less a day for the
#: clocks of the peers that check it
MAX_TASK_RECORD_LIFETIME_S = MAX_LIFETIME_S[TaskOffer.TYPE] - 86_400

#: seconds one node gets, after its failover turn opens, to return a verified result
ATTEMPT_BUDGET_S = 30.0
#: seconds a node gets to take a task's feedback (background, after the result)
HANDOVER_TIMEOUT_S = 10.0


class TaskError(NetworkError):
    """A task could not be completed: ``reason`` is no_nodes, no_result or no_majority."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclasses.dataclass
class _Answer:
    peer: str
    rank: int
    output: bytes | None
    claim: SignedRecord | None
    receipt: SignedRecord | None
    latency_ms: int
    outcome: str  # provisional: ok (verified), timeout, bad_proof


class _Attempt:
    """One task's tries across ranks (internal to :meth:`Client.submit`)."""

    def __init__(
        self,
        client: Client,
        offer: SignedRecord,
        secret: Any,
        data: bytes,
        view: Any,
        ranking: list[str],
        deadline: float,
    ) -> None:
        self.client, self.node = client, client.node
        self.offer, self.secret, self.data = offer, secret, data
        self.view, self.ranking, self.deadline = view, ranking, deadline
        self.next_rank = 0
        self.releases: list[bytes] = []
        self.answers: list[_Answer] = []
        self.feedbacks: list[bytes] = []  # our Feedback envelopes on this task

    async def run(self, redundancy: int) -> list[_Answer]:
        async with trio.open_nursery() as nursery:
            for _ in range(min(redundancy, len(self.ranking))):
                nursery.start_soon(self._lane)
        return self.answers

    async def _lane(self) -> None:
        while self.next_rank < len(self.ranking) and self.node.clock() < self.deadline:
            r = self.next_rank
            self.next_rank += 1
            answer = await self._try(self.ranking[r], r)
            if answer is None:
                continue  # the node declined (not its turn, busy): nothing to release
            self.answers.append(answer)
            if answer.outcome == "ok":
                return
            await self._release(answer)

    async def _try(self, peer: str, r: int) -> _Answer | None:
        keys = self.node.keeper.enclave_keys(peer)
        if keys is None:
            return None
        enc_key, result_key = keys
        o = self.offer.record
        sealed, _ = seal_input(self.data, enc_key, task_id=o.task_id, secret=self.secret)
        sent = self.node.clock()
        request = {"offer": self.offer.data, "sealed": sealed}
        if self.releases:
            request["releases"] = list(self.releases)
        # One node may not eat the whole budget: its turn plus one execution at most.
        opens = claim_opens_at_ms(r, o.redundancy, self.view.matching_params) / 1000
        budget = min(self.deadline - sent, opens + ATTEMPT_BUDGET_S)
        try:
            with trio.fail_after(max(0.1, budget)):
                reply = await self.client.streams.request(peer, request)
        except Exception as exc:  # dead node, reset stream, protocol violation, timeout
            log.info("task attempt on %s (rank %d) failed: %r", peer, r, exc)
            await self.client.streams.forget(peer)
            # It may have claimed (its claim reaches us by the feeds, maybe not yet):
            # release it. Timeout feedback on a node that never claimed weighs nothing.
            latency = int((self.node.clock() - sent) * 1000)
            return _Answer(peer, r, None, self._claim_of(peer), None, latency, "timeout")
        latency = int((self.node.clock() - sent) * 1000)
        if not reply["ok"]:
            log.info("rank %d (%s) declined: %s %s", r, peer, reply["error"], reply["detail"])
            if reply["error"] in ("execution_failed", "replayed"):
                # It claimed, then failed (or our retry of a request whose answer was lost
                # met its claim): release it so the next rank may take over.
                return _Answer(peer, r, None, self._claim_of(peer), None, latency, "timeout")
            return None
        try:
            claim = decode(reply["claim"], now=int(self.node.clock()))
            receipt = decode(reply["receipt"], now=int(self.node.clock()))
            if claim.signer != peer or receipt.signer != peer:
                raise ResultError(ResultReason.WRONG_KEY, "claim or receipt not signed by node")
            try:
                verify_claim(claim, self.offer, self.view, beacon(o.epoch), check_digest=False)
            except ClaimError as exc:
                # The node ranked itself on its own view; a different rank there only
                # changed its failover timing. We chose it from our ranking, so only a
                # claim for another offer or epoch is a bad proof.
                if exc.reason is not ClaimReason.WRONG_RANK:
                    raise
                log.info("claim of %s ranks differently in its view: %s", peer, exc)
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
        except (RecordError, ResultError, ClaimError) as exc:
            log.warning("bad proof from %s: %s", peer, exc)
            return _Answer(peer, r, None, self._claim_of(peer), None, latency, "bad_proof")
        # Keep the node's public records: they are what feedback and the ledger rest on.
        self.node.accept_decoded(claim, source="task")
        self.node.accept_decoded(receipt, source="task")
        return _Answer(peer, r, output, claim, receipt, latency, "ok")

    def _claim_of(self, peer: str) -> SignedRecord | None:
        task_id = self.offer.record.task_id
        found = self.node.store.query(type=Claim.TYPE, signer=peer, slot=task_id)
        return found[0] if found else None

    async def _release(self, answer: _Answer) -> None:
        """Publish timeout/bad_proof feedback so the next rank may take over."""
        fb = await self._feedback(answer.peer, answer.outcome, answer.latency_ms)
        self.releases.append(fb.data)

    async def _feedback(self, peer: str, outcome: str, latency_ms: int) -> SignedRecord:
        o = self.offer.record
        signed = self.node.publish_soon(
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

    async def hand_over(self) -> None:
        """Give this task's feedback to every node that answered or failed it (they spread
        it: a client's feed has no followers).

        Background work after the result is returned; a node that is gone is skipped.
        """
        if not self.feedbacks:
            return
        chunks = [
            self.feedbacks[i : i + MAX_HANDOVER]
            for i in range(0, len(self.feedbacks), MAX_HANDOVER)
        ]

        async def give(peer: str) -> None:
            try:
                with trio.fail_after(HANDOVER_TIMEOUT_S):
                    for chunk in chunks:
                        await self.client.streams.request(peer, {"records": chunk})
            except Exception as exc:
                log.info("feedback hand-over to %s failed: %r", peer, exc)

        # Every node we tried and that may hold a claim; a dead one delays nobody else.
        async with trio.open_nursery() as nursery:
            for peer in dict.fromkeys(a.peer for a in self.answers):
                nursery.start_soon(give, peer)

    async def conclude(self, answers: list[_Answer], started: float) -> TaskResult:
        o = self.offer.record
        good = [a for a in answers if a.outcome == "ok" and a.output is not None]
        if not good:
            raise TaskError("no_result", f"no node delivered a verified result for {o.engine_id}")
        votes: dict[bytes, list[_Answer]] = {}
        for a in good:
            votes.setdefault(a.output, []).append(a)
        output, agreeing = max(
            votes.items(), key=lambda kv: (len(kv[1]), -min(a.rank for a in kv[1]))
        )
        majority = len(agreeing) * 2 > len(good)
        if not majority:
            raise TaskError("no_majority", f"{len(good)} verified results disagree")
        proofs = []
        for a in sorted(answers, key=lambda a: a.rank):
            outcome = a.outcome
            if outcome == "ok" and a.output != output:
                outcome = "wrong"  # outvoted by the redundant majority
            if outcome in ("ok", "wrong"):
                await self._feedback(a.peer, outcome, a.latency_ms)
            verdict = (
                self.node.keeper.verdict_of(a.peer)
                if hasattr(self.node.keeper, "verdict_of")
                else None
            )
            kind = getattr(verdict, "tee_kind", "simulated")
            proofs.append(
                Proof(
                    node=a.peer,
                    rank=a.rank,
                    tee_kind=kind,
                    simulated=kind == "simulated",
                    measurement=a.receipt.record.measurement.hex() if a.receipt else "",
                    claim_id=a.claim.record_id.hex() if a.claim else "",
                    receipt_id=a.receipt.record_id.hex() if a.receipt else "",
                    latency_ms=a.latency_ms,
                    outcome=outcome,
                )
            )
        return TaskResult(
            output=output,
            task_id=o.task_id.hex(),
            offer_id=self.offer.record_id.hex(),
            engine=o.engine_id,
            redundancy=o.redundancy,
            agreed=len(agreeing),
            proofs=tuple(proofs),
            latency_ms=int((self.node.clock() - started) * 1000),
        )
