"""An in-process task network for tests of the task protocol on trio's virtual time.

Real node parts (record pipeline, publisher, views, :class:`~repp2p.node.serving.TaskServer`)
and a real :class:`~repp2p.client.Client`, wired without libp2p: records reach every peer
through an in-memory bus the moment they are accepted (gossip and feeds at zero latency), task
streams are trio memory stream pairs, and each node's enclave runs in-process
(:class:`InProcessEnclave`: the simulated TEE's own enclave logic, development only, no real
security). Everything waits on one :class:`~repp2p.clock.TrioClock`, so under
``trio.testing.MockClock(autojump_threshold=0)`` a 30 s failover takes milliseconds::

    async with TaskNet.open(nodes=3, behaviours={0: "stall"}) as net:
        result = await net.client.submit("echo", b"hi", timeout=90)

Networking itself is tested on real hosts (tests/net, tests/e2e); this tests the rules.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import trio
import trio.testing

from repp2p.attestation import SIMULATED_LABEL, load_policy
from repp2p.client import Client
from repp2p.clock import ClockAPI, TrioClock
from repp2p.config import BOOTSTRAP_DIR
from repp2p.identity import Identity
from repp2p.matching import beacon
from repp2p.node.abc import EnclaveSupervisorAPI
from repp2p.node.metrics import NodeMetrics
from repp2p.node.pipeline import RecordPipeline
from repp2p.node.publisher import RecordPublisher, capped_lifetime
from repp2p.node.schedules import OwnRecordSchedule, phase_of
from repp2p.node.serving import TaskServer
from repp2p.node.views import ViewService
from repp2p.records import (
    Attestation,
    EngineOffer,
    Heartbeat,
    NodeAd,
    Outcome,
    Receipt,
    SignedRecord,
)
from repp2p.reputation.heartbeats import heartbeat_slot
from repp2p.store import SqliteRecordStore
from repp2p.tee.worker import EnclaveState
from repp2p.testing import factories
from repp2p.testing.network import dev_params
from repp2p.timers import Timers
from repp2p.viewer import ViewKeeper

#: virtual unix time the network starts at (an epoch boundary for every epoch_s dividing it)
START = 1_800_000_000 - 1_800_000_000 % 3600
#: what a node's enclave does: run tasks, never answer ("stall"), return wrong results
#: ("cheat"), or never answer if it is the first of the network to run a task
#: ("stall-first": whoever the matching puts first for the first task)
BEHAVIOURS = ("honest", "stall", "cheat", "stall-first")


class _FirstToRun:
    """Shared by a network's ``stall-first`` enclaves: True for the first caller only."""

    def __init__(self) -> None:
        self.taken = False

    def take(self) -> bool:
        first, self.taken = not self.taken, True
        return first


class InProcessEnclave(EnclaveSupervisorAPI):
    """The simulated enclave's logic in this process (SIMULATED TEE: no real security).

    Args:
        engines: engine ids it serves.
        seed: 32 bytes its keys derive from.
        behaviour: one of :data:`BEHAVIOURS`.
        first: the network's shared ``stall-first`` switch.
    """

    def __init__(
        self,
        engines: tuple[str, ...],
        *,
        seed: bytes,
        behaviour: str,
        first: _FirstToRun | None = None,
    ) -> None:
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"behaviour must be one of {BEHAVIOURS}")
        self._state = EnclaveState.create(
            {"engines": list(engines), "seed": seed, "cheat": behaviour == "cheat"}
        )
        self._behaviour = behaviour
        self._first = first or _FirstToRun()
        self.executed = 0
        self.stalled = False

    @property
    def kind(self) -> str:
        return "simulated"

    @property
    def engine_measurements(self) -> dict[str, bytes]:
        return {name: e.measurement for name, e in self._state.engines.items()}

    @property
    def keys(self) -> tuple[bytes, bytes]:
        """``(enc_key, result_key)``: the public keys bound into the attestation."""
        info = self._state.describe()
        return info["enc_key"], info["result_key"]

    def evidence(self, peer_id: str, epoch: int, nonce: bytes, now: int) -> bytes:
        """Simulated evidence binding the enclave keys to ``peer_id`` and ``epoch``."""
        request = {"peer_id": peer_id, "epoch": epoch, "nonce": nonce, "now": now}
        return self._state.attest(request)["evidence"]

    async def sign_liveness(self, peer_id: str, epoch: int) -> bytes:
        """The enclave's liveness signature on a heartbeat of ``epoch`` (as the enclave
        process signs it), so its node stays currently attested."""
        return self._state.sign_liveness({"peer_id": peer_id, "epoch": epoch})["enclave_sig"]

    async def execute(self, **task: Any) -> tuple[bytes, Receipt]:
        stall = self._behaviour == "stall"
        if self._behaviour == "stall-first":
            stall = self._first.take()
        if stall:
            self.stalled = True
            await trio.sleep_forever()
        request = {
            "task_id": task["task_id"],
            "offer_id": task["offer_id"],
            "engine_id": task["engine_id"],
            "input_digest": task["input_digest"],
            "client_key": task["client_result_key"],
            "sealed": task["sealed_input"],
            "started_ms": task["started_ms"],
            "expires": task["expires"],
            "input_size": task.get("input_size"),
            "seq": task.get("seq", 0),
        }
        if task.get("input_sig") is not None:  # raises InputRefused as the real one does
            request.update(offer=task["offer"], node=task["node"], input_sig=task["input_sig"])
        reply = self._state.execute(request)
        self.executed += 1
        return reply["encrypted"], Receipt(**reply["receipt"])

    @property
    def enc_key(self) -> bytes | None:
        return self.keys[0]

    def describe(self) -> dict[str, Any]:
        return {"kind": "simulated", "label": SIMULATED_LABEL, "pid": None, "measurement": ""}


#: What a peer joining the bus receives of what is already held: the nodes' records.
_SYNCED = (NodeAd, Attestation, Heartbeat)


class _Bus:
    """Delivers every record a peer accepts to every other peer, at once."""

    def __init__(self) -> None:
        self.pipelines: list[RecordPipeline] = []
        self._first: SqliteRecordStore | None = None

    def join(self, pipeline: RecordPipeline, store: SqliteRecordStore) -> None:
        """Add a peer; it first receives what the first peer holds of the nodes' records
        (ads, attestations, heartbeats), as a real node's first sync does. Without it a
        node added later lacked the earlier nodes' ads for good, so the nodes' views
        differed from one another (a test ranking on a node's view failed at random)."""
        if self._first is None:
            self._first = store
        else:
            held = [s for t in _SYNCED for s in self._first.query(type=t.TYPE)]
            pipeline.accept_decoded_many(held, source="sync")
        self.pipelines.append(pipeline)
        pipeline.on_record(lambda signed, outcome: self._forward(pipeline, signed, outcome))

    def _forward(self, origin: RecordPipeline, signed: SignedRecord, outcome: Outcome) -> None:
        # Listeners run for new records only, so a record stops once everyone holds it.
        for pipeline in self.pipelines:
            if pipeline is not origin:
                pipeline.accept(signed.data, source="feed")

    async def send(self, topic: str, data: bytes) -> None:
        """A gossip send: the record is already in the sender's store, so the bus has it."""


class _MemoryStream:
    """One end of a trio memory stream pair with the py-libp2p stream calls the task
    protocol uses (read, write, close, reset)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream

    async def read(self, n: int = -1) -> bytes:
        try:
            return await self._stream.receive_some(None if n < 0 else n)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return b""

    async def write(self, data: bytes) -> None:
        await self._stream.send_all(data)

    async def close(self) -> None:
        await self._stream.aclose()

    async def reset(self) -> None:
        await self._stream.aclose()


@dataclasses.dataclass
class TaskNode:
    """One node of a :class:`TaskNet`."""

    peer_id: str
    identity: Identity
    store: SqliteRecordStore
    pipeline: RecordPipeline
    publisher: RecordPublisher
    views: ViewService
    enclave: InProcessEnclave
    server: TaskServer


class TaskNet:
    """Nodes and a client on a bus (see the module docstring). Build with :meth:`open`."""

    def __init__(
        self, clock: ClockAPI, nursery: trio.Nursery, epoch_s: int, timers: Timers
    ) -> None:
        self.clock = clock
        self.epoch_s = epoch_s
        # a records network: the bus hands every record to every peer, as feeds do (on a
        # digest network per-task records would reach the task's parties only)
        self.params = dev_params(epoch_s).replace(reputation_source="records")
        self.timers = timers
        self.bus = _Bus()
        self._first = _FirstToRun()
        self.nodes: list[TaskNode] = []
        self._nursery = nursery
        self._cut: set[str] = set()
        self._policy = load_policy(BOOTSTRAP_DIR / "policy-dev.toml")
        self.client: Client

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        *,
        nodes: int = 3,
        engines: tuple[str, ...] = ("echo",),
        behaviours: Mapping[int, str] | None = None,
        epoch_s: int = 60,
        capacity: int = 4,
        timers: Timers | None = None,
        clock: ClockAPI | None = None,
    ) -> AsyncIterator[TaskNet]:
        """``nodes`` attested nodes with heartbeats running, and a client that sees them
        all eligible. Run it under ``trio.testing.MockClock(autojump_threshold=0)``."""
        behaviours = behaviours or {}
        clock = clock or TrioClock(start=START - trio.current_time())
        async with trio.open_nursery() as nursery:
            net = cls(clock, nursery, epoch_s, timers or Timers())
            # The client joins the bus first: a node joining later receives what the
            # client holds of the nodes' records (the bus's only sync), then what is
            # accepted after it joined.
            net.client = net._client(nursery)
            for i in range(nodes):
                await net._add_node(f"node-{i}", engines, behaviours.get(i, "honest"), capacity)
            with trio.fail_after(10 * epoch_s):
                while await net.client.wait_for_nodes(engines[0], nodes, timeout=epoch_s) < nodes:
                    pass
            try:
                yield net
            finally:
                nursery.cancel_scope.cancel()

    def _parts(self, name: str) -> tuple[Identity, SqliteRecordStore, RecordPipeline, ViewService]:
        identity = factories.identity(name)
        store = SqliteRecordStore(":memory:")
        pipeline = RecordPipeline(store, NodeMetrics(), self.clock)
        self.bus.join(pipeline, store)
        keeper = ViewKeeper(store, self._policy, self.params)
        views = ViewService(keeper, self.clock, NodeMetrics(), tick_s=self.timers.tick_s)
        return identity, store, pipeline, views

    async def _add_node(
        self, name: str, engines: tuple[str, ...], behaviour: str, capacity: int
    ) -> None:
        identity, store, pipeline, views = self._parts(name)
        peer_id = identity.peer_id
        publisher = RecordPublisher(identity, self.bus.send, pipeline, self.clock)
        seed = hashlib.sha256(b"tasknet enclave " + name.encode()).digest()
        enclave = InProcessEnclave(engines, seed=seed, behaviour=behaviour, first=self._first)
        server = TaskServer(
            peer_id=peer_id,
            store=store,
            pipeline=pipeline,
            publisher=publisher,
            views=views,
            enclave=enclave,
            clock=self.clock,
            capacity=capacity,
            timers=self.timers,
        )
        node = TaskNode(peer_id, identity, store, pipeline, publisher, views, enclave, server)
        self.nodes.append(node)
        now = int(self.clock.now())
        await publisher.publish(self._ad(node, now))
        epoch = now // self.epoch_s
        enc_key, result_key = enclave.keys
        await publisher.publish(
            Attestation(
                tee_kind="simulated",
                evidence=enclave.evidence(peer_id, epoch, beacon(epoch), now),
                collateral=b"",
                gpu_evidence=b"",
                enc_key=enc_key,
                result_key=result_key,
                epoch=epoch,
                nonce=beacon(epoch),
                seq=publisher.next_seq(),
                expires=now + capped_lifetime(Attestation.TYPE, 86_400),
            )
        )
        schedule = OwnRecordSchedule(
            publisher,
            server,
            lambda: self._ad(node, int(self.clock.now())),
            self.clock,
            epoch_s=self.epoch_s,
            heartbeat_interval_s=self.epoch_s,
            republish_interval_s=3600,
            phase=phase_of(peer_id),
            heartbeat_period_epochs=self.params.reputation.heartbeat_period_epochs,
            heartbeat_slot=heartbeat_slot(peer_id, self.params.reputation.heartbeat_period_epochs),
            heartbeat_lag=self.params.heartbeat_lag,
            sign_liveness=lambda e: enclave.sign_liveness(peer_id, e),
        )
        self._nursery.start_soon(publisher.run)
        self._nursery.start_soon(schedule.run_heartbeats)
        self._nursery.start_soon(views.run)

    def _ad(self, node: TaskNode, now: int) -> NodeAd:
        return NodeAd(
            addrs=("/ip4/127.0.0.1/tcp/1",),
            engines=tuple(
                EngineOffer(e, m) for e, m in sorted(node.enclave.engine_measurements.items())
            ),
            tee_kind="simulated",
            price=1000,
            capacity=4,
            throughput=600,
            seq=node.publisher.next_seq(),
            expires=now + capped_lifetime(NodeAd.TYPE, 3 * 3600),
        )

    def _client(self, nursery: trio.Nursery) -> Client:
        identity, store, pipeline, views = self._parts("client")
        publisher = RecordPublisher(identity, self.bus.send, pipeline, self.clock)
        nursery.start_soon(publisher.run)
        return Client(
            identity=identity,
            store=store,
            pipeline=pipeline,
            publisher=publisher,
            views=views,
            clock=self.clock,
            open_task_stream=self.open_stream,
            background=nursery,
            timers=self.timers,
        )

    def node(self, peer_id: str) -> TaskNode:
        """The node with this peer ID."""
        return next(n for n in self.nodes if n.peer_id == peer_id)

    def cut(self, *peer_ids: str) -> None:
        """Partition these nodes from the client: opening a stream to one hangs (as a dial
        whose packets are dropped does) until the caller's timeout. :meth:`heal` undoes it."""
        self._cut.update(peer_ids)

    def heal(self) -> None:
        """End every :meth:`cut`."""
        self._cut.clear()

    async def open_stream(self, peer_id: str) -> _MemoryStream:
        """A task stream to a node: its server handles the other end."""
        if peer_id in self._cut:
            await trio.sleep_forever()
        server = self.node(peer_id).server
        ours, theirs = trio.testing.memory_stream_pair()
        self._nursery.start_soon(server.handle_stream, _MemoryStream(theirs))
        return _MemoryStream(ours)
