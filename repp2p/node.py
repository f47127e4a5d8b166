"""The full node: a libp2p host, the DHT, gossip, sync, and the record pipeline.

Role and invariants:

* Every record that reaches this node — from gossip, from sync, from itself — goes through
  :meth:`Node.accept`: strict decode with the current time, family check, replacement rules
  in the store. Nothing else writes the store, so the store holds only valid records.
* A record is forwarded on gossip only when ``accept`` says so: invalid or replayed records
  stop here, and their forwarder loses gossip score.
* The node's own records (ads, heartbeats) are published through gossip and validated like
  anyone else's; their ``seq`` is the unix time in milliseconds, so it grows across restarts.
* A full node runs its enclave (the simulated TEE runs in a separate process), publishes
  an ``Attestation`` binding the enclave keys to its peer ID every epoch (well inside the
  policy's epoch lag), and serves ``/repp2p/task/1`` (:mod:`repp2p.serving`). A ``client``
  role node is a light peer: it follows gossip and syncs, but runs no enclave, announces
  nothing and stays a DHT client.
* Shutdown (``stop()``, SIGINT/SIGTERM in the CLI) cancels the loops, closes the host, the
  enclave and the store, and removes ``runtime.json``; the data dir keeps identity and
  records.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import multiaddr
import trio
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.tools.anyio_service import background_trio_service
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from repp2p import heap
from repp2p.attestation import SIMULATED_LABEL, load_policy
from repp2p.config import NodeConfig
from repp2p.errors import ConfigError, KeyFileError, RecordError, RecordReason, StoreError
from repp2p.identity import Identity
from repp2p.matching import beacon
from repp2p.net import connmgr, status_http
from repp2p.net import feed as feed_protocol
from repp2p.net.dht import NAMESPACE, AdValidator, ServerOnlyKadDHT, ad_key, engine_provider_key
from repp2p.net.gossip import build_pubsub, install_validators
from repp2p.net.host import build_host, parse_multiaddrs
from repp2p.net.sync import PROTOCOL as SYNC_PROTOCOL
from repp2p.net.sync import make_handler, pull
from repp2p.net.task import PROTOCOL as TASK_PROTOCOL
from repp2p.net.topics import TOPICS, topic_accepts, topic_for
from repp2p.records import (
    FEED_TYPES,
    MAX_LIFETIME_S,
    RECORD_TYPES,
    Attestation,
    EngineOffer,
    Heartbeat,
    NodeAd,
    Outcome,
    Record,
    SignedRecord,
    decode,
    encode,
)
from repp2p.serving import TaskServer
from repp2p.store import SqliteRecordStore
from repp2p.viewer import ViewKeeper

log = logging.getLogger("repp2p.node")

#: Seconds between routing-table refreshes we force once the table is healthy.
REFRESH_INTERVAL_S = 300.0
#: How many recent arrival times a node remembers (for /record and the network benchmark).
ARRIVALS_KEPT = 10_000


class NodeMetrics:
    """Prometheus metrics of one node (its own registry, so tests can run many nodes)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.peers = Gauge("repp2p_peers", "Connected libp2p peers", registry=r)
        self.records = Gauge("repp2p_records", "Current records held", ["type"], registry=r)
        self.accepted = Counter(
            "repp2p_records_accepted",
            "Records accepted",
            ["type", "outcome", "source"],
            registry=r,
        )
        self.rejected = Counter(
            "repp2p_records_rejected", "Records rejected", ["reason", "source"], registry=r
        )
        self.validation = Histogram(
            "repp2p_record_validation_seconds",
            "Decode+validate+store time per record",
            registry=r,
            buckets=(1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2, 0.25),
        )
        self.dht = Histogram(
            "repp2p_dht_operation_seconds",
            "DHT operation time",
            ["op"],
            registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.sync_records = Counter(
            "repp2p_sync_records", "Records received by sync", ["result"], registry=r
        )
        self.connections = Counter(
            "repp2p_connections",
            "Connections opened and closed (event=opened|closed), and closed by trimming",
            ["event"],
            registry=r,
        )
        self.view_build = Histogram(
            "repp2p_view_build_seconds",
            "Time to build an epoch's view (reputation and matching inputs) at its start",
            registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )


class Node:
    """A repp2p full node.

    Args:
        config: the validated :class:`~repp2p.config.NodeConfig`.
        clock: unix time source (seconds, float); tests may pass a fake one.
    """

    def __init__(self, config: NodeConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.metrics = NodeMetrics()
        self.identity = self._load_or_create_identity()
        self.peer_id = self.identity.peer_id
        self.is_client = config.role == "client"
        if not self.is_client and config.tee_kind != "simulated":
            raise ConfigError(
                f"tee_kind {config.tee_kind!r}: this release runs only the simulated enclave; "
                "hardware enclave runtimes are not implemented yet (attestation of hardware "
                "evidence is: see 'repp2p attest verify')"
            )
        self.policy = load_policy(config.policy_path())
        self.enclave: Any = None
        self.keeper: ViewKeeper | None = None
        self.server = TaskServer(self)
        self.feed = feed_protocol.FeedFollower(
            self.feed_candidates,
            self._open_feed,
            lambda batch: self.accept_many(batch, source="feed"),
            config.feed,
            self.clock,
        )
        self.attested_epoch: int | None = None
        self.attestation_expires = 0.0
        self._background: Any = None  # the run() nursery, for fire-and-forget gossip
        self.store: SqliteRecordStore | None = None
        self.host: Any = None
        self.dht: KadDHT | None = None
        self.pubsub: Any = None
        self.router: Any = None
        self.conn_events = connmgr.ConnectionEvents(
            lambda event: self.metrics.connections.labels(event).inc()
        )
        self.status_port: int | None = None
        self.started_at = 0.0
        self.synced = trio.Event()
        self._stop = trio.Event()
        self._listeners: list[Callable[[SignedRecord, Outcome], None]] = []
        # peer id -> reputation-derived gossip score in [-1, 1] (GossipSub P6 hook).
        self.peer_scores: dict[str, float] = {}
        # record id -> unix time of first acceptance, for the most recent records only.
        self.arrivals: OrderedDict[bytes, float] = OrderedDict()
        self._last_seq = 0

    # -- identity and records --------------------------------------------------------

    def _load_or_create_identity(self) -> Identity:
        path = self.config.key_path
        if path.exists():
            return Identity.load(path)
        identity = Identity.generate()
        try:
            identity.save(path)
        except KeyFileError:
            return Identity.load(path)  # created concurrently: use that one
        log.info("created identity key %s (%s)", path, identity.peer_id)
        return identity

    def next_seq(self) -> int:
        """A fresh ``seq`` for our own records: unix milliseconds, strictly increasing."""
        self._last_seq = max(self._last_seq + 1, int(self.clock() * 1000))
        return self._last_seq

    def on_record(self, listener: Callable[[SignedRecord, Outcome], None]) -> None:
        """Call ``listener(signed, outcome)`` for every record this node accepts."""
        self._listeners.append(listener)

    def accept(self, data: bytes, *, topic: str | None = None, source: str = "local") -> bool:
        """Decode, validate and store one record; True when it should travel on.

        ``topic`` is the gossip topic it arrived on (its type must belong there); ``source``
        labels metrics (``gossip``, ``sync``, ``feed``, ``task``, ``local``). Never raises
        for bad input.
        """
        return self.accept_many([data], topic=topic, source=source)[0]

    def accept_many(
        self, batch: list[bytes], *, topic: str | None = None, source: str = "local"
    ) -> list[bool]:
        """:meth:`accept` for several records, stored in one transaction (feed pages)."""
        started = time.perf_counter()
        now = int(self.clock())
        assert self.store is not None
        verdicts: list[bool] = [False] * len(batch)
        fresh: list[tuple[int, SignedRecord]] = []
        for i, data in enumerate(batch):
            if topic is None and self.store.has(hashlib.sha256(data).digest()):
                # Held already (feeds deliver most records more than once): skip the
                # signature check. Gossip takes the full path, which checks the topic too.
                # Not decoded, so its type is unknown here: counted as type "any".
                self.metrics.accepted.labels("any", Outcome.DUPLICATE.value, source).inc()
                verdicts[i] = True
                continue
            try:
                signed = decode(data, now=now)
            except RecordError as exc:
                self.metrics.rejected.labels(exc.reason.value, source).inc()
                log.debug("rejected %s record: %s", source, exc)
                continue
            if topic is not None and not topic_accepts(topic, signed.type):
                self.metrics.rejected.labels("wrong_topic", source).inc()
                continue
            fresh.append((i, signed))
        self._store_batch(fresh, verdicts, now, source, started)
        return verdicts

    def _store_batch(
        self,
        fresh: list[tuple[int, SignedRecord]],
        verdicts: list[bool],
        now: int,
        source: str,
        started: float,
    ) -> None:
        """Store decoded, verified records in one transaction; sets ``verdicts[i]``."""
        assert self.store is not None
        if not fresh:
            return
        try:
            # decode() refused anything expired at `now`, so put_many cannot raise EXPIRED.
            outcomes = self.store.put_many([signed for _, signed in fresh], now=now)
        except (RecordError, StoreError):
            log.exception("record store failed; %d records not accepted", len(fresh))
            return
        self.metrics.validation.observe((time.perf_counter() - started) / len(verdicts))
        for (i, signed), outcome in zip(fresh, outcomes, strict=True):
            self.metrics.accepted.labels(signed.type, outcome.value, source).inc()
            if outcome is Outcome.STALE:
                continue
            verdicts[i] = True
            if outcome is not Outcome.DUPLICATE:
                self.arrivals[signed.record_id] = self.clock()
                if len(self.arrivals) > ARRIVALS_KEPT:
                    self.arrivals.popitem(last=False)
                if outcome is Outcome.EQUIVOCATION:
                    log.warning(
                        "equivocation by %s (%s): evidence kept", signed.signer, signed.type
                    )
                for listener in self._listeners:
                    listener(signed, outcome)

    def accept_decoded(self, signed: SignedRecord, *, source: str) -> bool:
        """:meth:`accept` for a record the caller decoded (and so verified) with our clock."""
        verdict = [False]
        self._store_batch([(0, signed)], verdict, int(self.clock()), source, time.perf_counter())
        return verdict[0]

    def publish_soon(self, record: Record) -> SignedRecord:
        """Like :meth:`publish`, but the gossip send happens in the background.

        The record is signed and stored (so it is ours and servable by sync) before this
        returns; the task path uses it to keep gossip I/O off the client's latency.
        """
        data, signed = self._store_own(record)
        self.spread(data, record.TYPE)
        return signed

    def spread(self, data: bytes, record_type: str) -> None:
        """Make a stored record travel: gossip it in the background, unless it is a per-task
        record, which peers pull from our feed (``/repp2p/feed/1``)."""
        if record_type not in FEED_TYPES or self.config.feed.gossip_task_records:
            self._background.start_soon(self.gossip, data, record_type)

    async def publish(self, record: Record) -> SignedRecord:
        """Sign ``record``, publish it on its topic, and return it once stored locally.

        Raises:
            RecordError: our own pipeline refused it (expired, or a stale ``seq``).
        """
        data, signed = self._store_own(record)
        await self.pubsub.publish(topic_for(record.TYPE), data)
        return signed

    def _store_own(self, record: Record) -> tuple[bytes, SignedRecord]:
        """Sign and store one of our records; RecordError with the reason when refused."""
        data = encode(record, self.identity)
        now = int(self.clock())
        signed = decode(data, now=now)  # expired / expires_too_far, named
        # Store first: a record is ours to publish only once our own pipeline accepted it.
        # The gossip validator then sees a duplicate, which it lets travel on. Verified
        # just above: straight to the store, no second signature check.
        if not self.accept_decoded(signed, source="local"):
            raise RecordError(
                RecordReason.BAD_FIELD,
                f"own {record.TYPE} refused: seq not above the stored one, or the store "
                "failed (logged)",
            )
        return data, signed

    def _lifetime(self, record_type: str, wanted_s: int) -> int:
        """``wanted_s``, within the record core's cap for the type (MAX_LIFETIME_S)."""
        return min(int(wanted_s), MAX_LIFETIME_S[record_type])

    # -- records we originate ----------------------------------------------------------

    def _ad(self) -> NodeAd:
        now = int(self.clock())
        addrs = tuple(str(a) for a in self.host.get_addrs())[:16]
        return NodeAd(
            addrs=tuple(a.split("/p2p/")[0] for a in addrs),
            engines=tuple(
                EngineOffer(e, m) for e, m in sorted(self.enclave.engine_measurements.items())
            ),
            tee_kind=self.config.tee_kind,
            price=self.config.price,
            capacity=self.config.capacity,
            throughput=self.config.throughput,
            seq=self.next_seq(),
            expires=now + self._lifetime(NodeAd.TYPE, 3 * self.config.republish_interval_s),
        )

    def _heartbeat(self) -> Heartbeat:
        now = int(self.clock())
        return Heartbeat(
            epoch=now // self.config.epoch_s,
            load=self.server.active,
            tasks_done=self.server.done,
            seq=self.next_seq(),
            expires=now + self._lifetime(Heartbeat.TYPE, 3 * self.config.epoch_s),
        )

    # -- lifecycle -----------------------------------------------------------------------

    def app_score(self, peer_id: str) -> float:
        """GossipSub application score of a peer: its reputation mapped to [-1, 1]."""
        return self.peer_scores.get(peer_id, 0.0)

    def stop(self) -> None:
        """Ask :meth:`run` to shut down gracefully."""
        self._stop.set()

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run until :meth:`stop`; ``task_status.started(self)`` once listening."""
        cfg = self.config
        listen = parse_multiaddrs(cfg.listen)
        bootstrap = [_peer_info(a) for a in cfg.bootstrap_addrs()]
        self.store = SqliteRecordStore(cfg.data_dir / "records.db", synchronous="NORMAL")
        self.keeper = ViewKeeper(
            self.store, self.policy, epoch_s=cfg.epoch_s, book_path=cfg.data_dir / "penalties.cbor"
        )
        self.host = build_host(
            self.identity, enable_quic=cfg.enable_quic, connections=cfg.connections
        )
        try:
            if not self.is_client:
                from repp2p.tee import Enclave

                self.enclave = await trio.to_thread.run_sync(
                    lambda: Enclave.start(list(cfg.engines), cheat=cfg.cheat)
                )
                if cfg.cheat:
                    log.warning("CHEAT MODE (demo): this node's enclave returns wrong results")
            async with self.host.run(listen_addrs=listen):
                mode = DHTMode.CLIENT if self.is_client else DHTMode.SERVER
                self.dht = ServerOnlyKadDHT(self.host, mode, strict_validation=True)
                self.dht.register_validator(NAMESPACE, AdValidator())
                self.pubsub, self.router = build_pubsub(self.host, cfg.gossip, self.app_score)
                self.host.get_network().register_notifee(self.conn_events)
                install_validators(
                    self.pubsub, lambda d, t, f: self.accept(d, topic=t, source="gossip")
                )
                self.host.set_stream_handler(
                    SYNC_PROTOCOL, make_handler(self.store, cfg.sync, self.clock)
                )
                self.host.set_stream_handler(
                    feed_protocol.PROTOCOL,
                    feed_protocol.make_handler(self.store, cfg.feed, self.clock, self.feed),
                )
                async with (
                    background_trio_service(self.dht),
                    background_trio_service(self.pubsub),
                    background_trio_service(self.router),
                    trio.open_nursery() as nursery,
                ):
                    await self.pubsub.wait_until_ready()
                    self._background = nursery
                    if not self.is_client:  # served only once background work can start
                        self.host.set_stream_handler(TASK_PROTOCOL, self.server.handle_stream)
                    for topic in TOPICS.values():
                        subscription = await self.pubsub.subscribe(topic)
                        nursery.start_soon(_drain, subscription)
                    if cfg.status_listen:
                        host, _, port = cfg.status_listen.rpartition(":")
                        self.status_port = await nursery.start(
                            status_http.serve,
                            host,
                            int(port),
                            self.status,
                            self.metrics_text,
                            self.record_status,
                        )
                    self.started_at = self.clock()
                    self._write_runtime()
                    nursery.start_soon(self._discovery_loop, bootstrap)
                    nursery.start_soon(self._prune_loop)
                    nursery.start_soon(
                        connmgr.trim_loop,
                        self.host,
                        self.router,
                        cfg.connections,
                        self.metrics.connections.labels("trimmed").inc,
                    )
                    nursery.start_soon(self._view_loop)
                    nursery.start_soon(self._purge_loop)
                    nursery.start_soon(self.feed.run)
                    if not self.is_client:
                        await self._attest()
                        nursery.start_soon(self._attestation_loop)
                        nursery.start_soon(self._heartbeat_loop)
                        nursery.start_soon(self._republish_loop)
                    log.info("node %s listening on %s", self.peer_id, self.addrs())
                    task_status.started(self)
                    await self._stop.wait()
                    log.info("node %s stopping", self.peer_id)
                    nursery.cancel_scope.cancel()
                    # Close connections and listeners while pubsub still runs: otherwise a
                    # message arriving mid-shutdown is pushed to pubsub's closed nursery.
                    with trio.move_on_after(5) as scope:
                        scope.shield = True
                        await self.host.get_network().close()
        finally:
            (cfg.data_dir / "runtime.json").unlink(missing_ok=True)
            if self.enclave is not None:
                if self.server.active:
                    self.enclave.terminate()  # do not wait for running tasks on shutdown
                else:
                    self.enclave.close()
            self.store.close()

    def addrs(self) -> list[str]:
        """Full multiaddrs of this node, each ending in ``/p2p/<peer id>``."""
        out = []
        for addr in self.host.get_addrs():
            text = str(addr)
            out.append(text if "/p2p/" in text else f"{text}/p2p/{self.peer_id}")
        return out

    def _write_runtime(self) -> None:
        info = {
            "peer_id": self.peer_id,
            "addrs": self.addrs(),
            "pid": os.getpid(),
            "network": self.config.network,
            "status": f"{self.config.status_listen.rpartition(':')[0]}:{self.status_port}"
            if self.status_port
            else None,
        }
        path = self.config.data_dir / "runtime.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(info))
        tmp.replace(path)

    # -- background loops ----------------------------------------------------------------

    async def _connect(self, info: PeerInfo) -> bool:
        if info.peer_id == self.host.get_id():
            return False
        if info.peer_id in self.host.get_connected_peers():
            return True
        try:
            with trio.fail_after(5):
                await self.host.connect(info)
        except Exception as exc:
            log.debug("dial %s failed: %r", info.peer_id, exc)
            return False
        return True

    async def _discovery_loop(self, bootstrap: list[PeerInfo]) -> None:
        delay, provided_at, refreshed_at = 0.5, -1e18, -1e18
        low = self.config.connections.low_watermark
        while True:
            await self._dial_up_to(low, bootstrap)
            if self.host.get_connected_peers():
                # Lookups cost every peer CPU; the DHT refreshes itself periodically, so we
                # only push a refresh while our table is still small (joining) or stale.
                table = self.dht.get_routing_table_size()
                if table < low or (self.clock() - refreshed_at >= REFRESH_INTERVAL_S):
                    started = time.perf_counter()
                    try:
                        with trio.fail_after(10):
                            async with self._transient_dials():
                                await self.dht.refresh_routing_table()
                    except Exception as exc:
                        log.debug("routing table refresh failed: %r", exc)
                    refreshed_at = self.clock()
                    self.metrics.dht.labels("refresh").observe(time.perf_counter() - started)
                await self._dial_up_to(low, bootstrap)
                if not self.synced.is_set():
                    await self._sync_once()
                if not self.is_client and (
                    self.clock() - provided_at >= self.config.republish_interval_s
                ):
                    async with self._transient_dials():
                        await self._provide()
                    provided_at = self.clock()
            elif not bootstrap and not self.synced.is_set():
                self.synced.set()  # the first node of a network has nobody to sync from
            await trio.sleep(delay)
            delay = min(delay * 2, 15.0)

    async def _dial_up_to(self, low: int, bootstrap: list[PeerInfo]) -> None:
        """Dial known peers while below ``low`` connections (gossip meshes need a dozen
        peers, not everyone).

        Routing-table peers come first: bootstrap peers are for joining and for recovering
        from isolation, and dialling them on every round would undo the trimming of both
        sides. Peers whose connection closed in the last minute (most likely they trimmed
        us) come last, so two nodes do not close and re-open the same connection forever.
        """
        if len(self.host.get_connected_peers()) >= low:
            return
        recent = self.conn_events.recently_closed(60.0)
        boot_ids = {info.peer_id for info in bootstrap}
        table = [
            PeerInfo(peer, self.host.get_peerstore().addrs(peer))
            for peer in self.dht.routing_table.get_peer_ids()
            if peer not in boot_ids
        ]
        fresh = [i for i in table if i.peer_id.to_base58() not in recent]
        boot = [i for i in bootstrap if i.peer_id.to_base58() not in recent]
        rest = [i for i in table + bootstrap if i.peer_id.to_base58() in recent]
        for info in fresh + boot + rest:
            if len(self.host.get_connected_peers()) >= low:
                return
            if await self._connect(info) and info.peer_id in boot_ids:
                await self.dht.add_peer(info.peer_id)

    def _transient_dials(self) -> Any:
        return connmgr.transient_dials(
            self.host,
            self.router,
            self.config.connections,
            self.metrics.connections.labels("trimmed").inc,
        )

    def feed_candidates(self) -> list[str]:
        """Connected full nodes (peers with a stored ad): where we pull task records from."""
        assert self.store is not None
        out = []
        for peer in self.host.get_connected_peers():
            text = peer.to_base58()
            if self.store.query(type=NodeAd.TYPE, signer=text, limit=1):
                out.append(text)
        return out

    async def _open_feed(self, peer: str) -> Any:
        from libp2p.peer.id import ID as PeerID

        return await self.host.new_stream(PeerID.from_base58(peer), [feed_protocol.PROTOCOL])

    def prune_routing_table(self) -> int:
        """Drop DHT-client peers from the routing table; returns how many were dropped.

        py-libp2p adds every peer that queries us (including light clients, which serve no
        queries), so lookups would hit "protocol not supported". A peer whose identify
        protocols are known and lack the Kademlia protocol is not a server.
        """
        from libp2p.kad_dht.common import PROTOCOL_ID as KAD_PROTOCOL

        dropped = 0
        peerstore = self.host.get_peerstore()
        for peer in self.dht.routing_table.get_peer_ids():
            try:
                protocols = peerstore.get_protocols(peer)
            except Exception:
                continue
            if protocols and str(KAD_PROTOCOL) not in protocols:
                self.dht.routing_table.remove_peer(peer)
                dropped += 1
        return dropped

    async def _prune_loop(self) -> None:
        while True:
            await trio.sleep(0.5)
            self.prune_routing_table()

    async def _sync_once(self) -> None:
        """Pull the record set from up to two connected peers; synced once one pull completes
        (the discovery loop retries otherwise)."""
        total, complete = 0, False
        for peer in list(self.host.get_connected_peers())[:2]:
            try:
                with trio.fail_after(self.config.sync.request_timeout_s * 4):
                    stream = await self.host.new_stream(peer, [SYNC_PROTOCOL])
                result = await pull(
                    stream, lambda d: self.accept(d, source="sync"), self.config.sync
                )
            except Exception as exc:
                log.info("sync from %s failed: %r", peer, exc)
                continue
            self.metrics.sync_records.labels("valid").inc(result.valid)
            self.metrics.sync_records.labels("invalid").inc(result.invalid)
            total += result.valid
            complete = complete or result.complete
        if complete:
            log.info("synced %d records from peers", total)
            self.synced.set()

    async def _provide(self) -> None:
        for engine in self.config.engines:
            started = time.perf_counter()
            try:
                with trio.fail_after(10):
                    await self.dht.provide(engine_provider_key(engine))
            except Exception as exc:
                log.debug("provide %s failed: %r", engine, exc)
            self.metrics.dht.labels("provide").observe(time.perf_counter() - started)
        ad = self.store.query(type=NodeAd.TYPE, signer=self.peer_id) if self.store else []
        if ad:
            try:
                with trio.fail_after(10):
                    await self.dht.put_value(ad_key(self.peer_id), ad[0].data)
            except Exception as exc:
                log.debug("DHT put of our ad failed: %r", exc)

    async def gossip(self, data: bytes, record_type: str) -> None:
        """Publish already-encoded record bytes on their topic (e.g. a client's offer)."""
        try:
            await self.pubsub.publish(topic_for(record_type), data)
        except Exception as exc:  # no peers yet, a closing connection: sync repairs it
            log.debug("gossip of a %s failed: %r", record_type, exc)

    async def _attest(self) -> None:
        """Publish a fresh Attestation binding the enclave keys to this peer and epoch."""
        if not self.enclave.is_alive:
            from repp2p.tee import Enclave

            log.warning("enclave process died; starting a new one (new keys, new attestation)")
            self.enclave = await trio.to_thread.run_sync(
                lambda: Enclave.start(list(self.config.engines), cheat=self.config.cheat)
            )
        now = int(self.clock())
        epoch = now // self.config.epoch_s
        nonce = beacon(epoch)
        evidence = await self.enclave.attest_async(self.peer_id, epoch, nonce, now)
        lifetime = self._lifetime(
            Attestation.TYPE,
            self.policy.reattest_period_s + (self.policy.max_epoch_lag + 1) * self.config.epoch_s,
        )
        await self.publish(
            Attestation(
                tee_kind=self.enclave.kind,
                evidence=evidence,
                collateral=b"",
                gpu_evidence=b"",
                enc_key=self.enclave.enc_key,
                result_key=self.enclave.result_key,
                epoch=epoch,
                nonce=nonce,
                seq=self.next_seq(),
                expires=now + lifetime,
            )
        )
        self.attested_epoch = epoch
        self.attestation_expires = now + lifetime

    async def _attestation_loop(self) -> None:
        # Re-attest at mid-epoch, as often as the policy needs: an attestation's binding
        # epoch may lag the current one by at most max_epoch_lag; reattest_period_s caps it.
        while True:
            await trio.sleep(0.5)
            now = self.clock()
            epoch = int(now) // self.config.epoch_s
            # Mid-epoch (at this node's phase), so the attestation peers snapshot at the
            # boundary is stable.
            mid_epoch = now - epoch * self.config.epoch_s >= self.config.epoch_s * self.phase
            due = self.policy.is_due_for_reattestation(
                (self.attested_epoch or 0) * self.config.epoch_s, int(now)
            )
            # ...and before our attestation expires (its lifetime is capped at a day).
            margin = min(self.config.epoch_s, MAX_LIFETIME_S[Attestation.TYPE] // 2)
            due = due or now >= self.attestation_expires - margin
            # Every epoch the policy's max_epoch_lag still accepts (each epoch when it is 1):
            # attestations are the largest gossiped records, and peers re-verify each.
            every = max(1, self.policy.max_epoch_lag)
            stale = self.attested_epoch is None or epoch - self.attested_epoch >= every
            if (mid_epoch and stale) or due or not self.enclave.is_alive:
                try:
                    await self._attest()
                except Exception:
                    log.exception("re-attestation failed; retrying")

    async def _purge_loop(self) -> None:
        """Drop expired records once an epoch (evidence of equivocation is kept)."""
        while True:
            await trio.sleep(self.config.epoch_s)
            try:
                dropped = self.store.purge_expired(now=int(self.clock()))
            except StoreError:
                log.exception("purging expired records failed")
                continue
            if dropped:
                log.debug("purged %d expired records", dropped)

    async def _view_loop(self) -> None:
        """Build each epoch's view once; reputation feeds the gossip score and status."""
        built = None
        while True:
            epoch = int(self.clock()) // self.config.epoch_s
            if epoch != built:
                started = time.perf_counter()
                try:
                    view = self.keeper.view(epoch)
                except (StoreError, OSError):  # a damaged store: say so, keep the node up
                    log.exception("building the view of epoch %d failed; retrying", epoch)
                    await trio.sleep(0.5)
                    continue
                self.metrics.view_build.observe(time.perf_counter() - started)
                heap.settle()
                table = view.reputation
                self.peer_scores = {
                    table.peers[i]: (int(table.permille[i]) - 500) / 500
                    for i in range(len(table.peers))
                    if table.is_node[i]
                }
                built = epoch
            await trio.sleep(0.5)

    @property
    def phase(self) -> float:
        """This node's fixed phase in [0.15, 0.85): when, as a fraction of an interval, its
        heartbeats and re-attestations go out. Derived from the peer ID, so nodes spread
        over the epoch instead of all publishing at the same instant; clear of the first
        0.15 (every peer builds its view then) and the last 0.15 (a heartbeat must reach
        every peer before the boundary whose view counts it). Measured on a 33-node devnet
        with [0.25, 0.75): 1.4-1.8 cores busy inside that window on a 2-core machine."""
        digest = hashlib.sha256(b"repp2p/1/phase\0" + self.peer_id.encode()).digest()
        return 0.15 + 0.7 * int.from_bytes(digest[:2], "big") / 65536

    async def _heartbeat_loop(self) -> None:
        interval = self.config.heartbeat_interval_s
        await self.publish(self._heartbeat())
        while True:
            # At a fixed phase of each interval: with an interval that divides the epoch,
            # every epoch gets the same number of heartbeats and the last one travels well
            # before the boundary (views take an epoch's last one). No drift, so an
            # interval equal to the epoch still never leaves an epoch without one.
            now = self.clock()
            next_at = (math.floor(now / interval - self.phase) + 1 + self.phase) * interval
            await trio.sleep(max(0.0, next_at - now))
            await self.publish(self._heartbeat())

    async def _republish_loop(self) -> None:
        while True:
            await self.publish(self._ad())
            await trio.sleep(self.config.republish_interval_s)

    # -- operator views ------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """A JSON-ready summary for ``repp2p status`` and the devnet table."""
        assert self.store is not None
        peers = [str(p) for p in self.host.get_connected_peers()]
        counts = {t: self.store.count(t) for t in RECORD_TYPES}
        rejected = _totals(self.metrics.rejected, "reason")
        churn = {"opened": 0.0, "closed": 0.0, "trimmed": 0.0}
        churn.update(_totals(self.metrics.connections, "event"))
        return {
            "peer_id": self.peer_id,
            "network": self.config.network,
            "tee_kind": self.config.tee_kind,
            "simulated_tee": self.config.tee_kind == "simulated",
            "addrs": self.addrs(),
            "peers": len(peers),
            "peer_ids": peers,
            "connections": {k: int(v) for k, v in churn.items()},
            "gossip": {
                "peers": len(self.pubsub.peers) if self.pubsub else 0,
                "mesh": {
                    family: len(self.router.mesh.get(topic, ())) if self.router else 0
                    for family, topic in TOPICS.items()
                },
                "subscribers": {
                    family: len(self.pubsub.peer_topics.get(topic, ())) if self.pubsub else 0
                    for family, topic in TOPICS.items()
                },
                # who forwards us each family; a peer listed here that does not list us
                # back is a one-sided link: its records reach us by IHAVE gossip only
                "mesh_peers": {
                    family: sorted(p.to_base58() for p in self.router.mesh.get(topic, ()))
                    if self.router
                    else []
                    for family, topic in TOPICS.items()
                },
            },
            "routing_table": self.dht.get_routing_table_size() if self.dht else 0,
            "records": counts,
            "records_total": sum(counts.values()),
            "rejected": rejected,
            "equivocations": len(self.store.equivocations()),
            "synced": self.synced.is_set(),
            "uptime_s": round(self.clock() - self.started_at, 1),
            "engines": list(self.config.engines),
            "reputation": self.reputation_of(self.peer_id),
            "tasks_done": self.server.done,
            "tasks_active": self.server.active,
            "enclave": None
            if self.enclave is None
            else {
                "kind": self.enclave.kind,
                "label": SIMULATED_LABEL if self.enclave.kind == "simulated" else "",
                "pid": self.enclave.pid,
                "measurement": self.enclave.measurement.hex(),
            },
            "role": self.config.role,
        }

    def reputation_of(self, peer_id: str) -> int | None:
        """The peer's reputation in permille in the current epoch's view, if built."""
        if self.keeper is None:
            return None
        epoch = int(self.clock()) // self.config.epoch_s
        view = self.keeper._views.get(epoch)
        if view is None:
            return None
        try:
            return view.reputation.get(peer_id).permille
        except KeyError:
            return None

    def record_status(self, hex_id: str) -> dict[str, Any]:
        """Whether this node holds a record, and when it first accepted it (if recent)."""
        try:
            record_id = bytes.fromhex(hex_id)
        except ValueError:
            return {"error": "record id must be hex"}
        held = self.store is not None and self.store.get(record_id) is not None
        return {"held": held, "arrived_at": self.arrivals.get(record_id)}

    def metrics_text(self) -> bytes:
        """Prometheus text exposition of this node's metrics."""
        if self.host is not None:
            self.metrics.peers.set(len(self.host.get_connected_peers()))
        if self.store is not None:
            for t in RECORD_TYPES:
                self.metrics.records.labels(t).set(self.store.count(t))
        return generate_latest(self.metrics.registry)


async def _drain(subscription: Any) -> None:
    # Validators already stored every delivered record; draining keeps py-libp2p's
    # 32-message subscription buffer from filling and dropping.
    while True:
        await subscription.get()


def _peer_info(text: str) -> PeerInfo:
    try:
        return info_from_p2p_addr(multiaddr.Multiaddr(text))
    except Exception as exc:
        raise ConfigError(
            f"bootstrap address {text!r} must be a multiaddr ending in /p2p/<id>: {exc}"
        ) from None


def _totals(counter: Counter, label: str) -> dict[str, float]:
    """A Prometheus counter's totals per value of ``label`` (summed over other labels)."""
    out: dict[str, float] = {}
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                key = sample.labels[label]
                out[key] = out.get(key, 0.0) + sample.value
    return out
