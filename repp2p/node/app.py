"""The node: wires its parts together and runs them.

Role and invariants:

* Every record that reaches the node goes through its :class:`RecordPipeline`; nothing else
  writes the store, so the store holds only valid records, and a record is forwarded on
  gossip only when the pipeline says so.
* The node's own records go out through its :class:`RecordPublisher` and are validated like
  anyone else's; their ``seq`` is the unix time in milliseconds.
* A ``full`` node runs its enclave (:class:`EnclaveSupervisor`), attests it on schedule,
  publishes heartbeats and its ad (:class:`OwnRecordSchedule`), provides its engines and
  serves ``/repp2p/task/1`` (:class:`repp2p.serving.TaskServer`). A ``client`` node is a
  light peer: the same record pipeline, views and discovery, no enclave, nothing announced,
  a DHT client; on a network whose views come from digests it holds no other client's
  tasks (:mod:`repp2p.node.light`: node-record and digest topics only, no feed
  following). The role is decided once, in :meth:`Node.run` (full nodes get an enclave
  supervisor and a task server; :meth:`Node._start_full` starts their duties).
* Shutdown (:meth:`stop`, SIGINT/SIGTERM in the CLI) cancels the loops, closes the host,
  the enclave and the store, and removes ``runtime.json``; the data dir keeps identity and
  records.

The parts exist while :meth:`run` runs; reading one outside raises
:class:`~repp2p.errors.NodeNotRunning`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
from collections.abc import Callable
from typing import Any

import trio
from libp2p.abc import IHost
from libp2p.kad_dht.kad_dht import DHTMode
from libp2p.tools.anyio_service import background_trio_service

from repp2p.attestation import load_policy
from repp2p.clock import ClockAPI, as_clock
from repp2p.config import NodeConfig
from repp2p.errors import ConfigError, KeyFileError, NodeNotRunning
from repp2p.explorer import Explorer
from repp2p.identity import Identity
from repp2p.net import audit as audit_protocol
from repp2p.net import connmgr, status_http
from repp2p.net import feed as feed_protocol
from repp2p.net import proof_sync as proofs_protocol
from repp2p.net.dht import NAMESPACE, AdValidator
from repp2p.net.gossip import build_pubsub, install_validators
from repp2p.net.host import build_host, parse_multiaddrs
from repp2p.net.libp2p_compat import RecordGossipSub, RecordPubsub, ServerOnlyKadDHT
from repp2p.net.params import BudgetParams
from repp2p.net.sync import PROTOCOL as SYNC_PROTOCOL
from repp2p.net.sync import make_handler
from repp2p.net.task import PROTOCOL as TASK_PROTOCOL
from repp2p.net.topics import PROOFS_FAMILY, TOPICS, subscribed_topics
from repp2p.net.verdict import Verdict
from repp2p.node.audits import Auditor, EvidenceLog, attested_nodes
from repp2p.node.budgets import BUDGETED, SignerBudgets, UnattestedQuota
from repp2p.node.digests import ClaimedOffers, FailedTasks, OwnDigests, retention_epochs
from repp2p.node.discovery import Discovery, peer_info
from repp2p.node.disputes import DisputeBook
from repp2p.node.enclave import EnclaveSupervisor
from repp2p.node.light import holds_only_own_tasks, own_tasks_only, served_to
from repp2p.node.metrics import NodeMetrics
from repp2p.node.offences import OffenceBook, ProofRouter
from repp2p.node.pipeline import RecordPipeline
from repp2p.node.proof_catchup import ProofCatchUp
from repp2p.node.publisher import RecordPublisher, capped_lifetime
from repp2p.node.schedules import OwnRecordSchedule, phase_of
from repp2p.node.serving import TaskServer
from repp2p.node.status import OperatorStatus
from repp2p.node.views import ViewService
from repp2p.records import EngineOffer, NodeAd, Record, SignedRecord
from repp2p.reputation.heartbeats import heartbeat_slot
from repp2p.store import SqliteRecordStore
from repp2p.tee.enclave import check_platform, missing_tee_setting
from repp2p.tee.errors import EnclaveError
from repp2p.viewer import ViewKeeper

log = logging.getLogger("repp2p.node")


@dataclasses.dataclass(frozen=True)
class NodeParts:
    """The running parts of a node (see the module docstring)."""

    store: SqliteRecordStore
    pipeline: RecordPipeline
    views: ViewService
    host: IHost
    dht: ServerOnlyKadDHT
    pubsub: RecordPubsub
    router: RecordGossipSub
    publisher: RecordPublisher
    discovery: Discovery
    feed: feed_protocol.FeedFollower
    status: OperatorStatus
    enclave: EnclaveSupervisor | None
    server: TaskServer | None
    own_digests: OwnDigests
    auditor: Auditor | None
    disputes: DisputeBook
    #: the verified offence proofs held (docs/digests.md, "Offence proofs ... on gossip")
    offences: OffenceBook | None = None
    #: retries and per-epoch pulls of proofs (None on a records network, which has none)
    proof_catchup: ProofCatchUp | None = None


class Node:
    """A repp2p node (full node or light peer, by ``config.role``).

    Args:
        config: the validated :class:`~repp2p.config.NodeConfig`.
        clock: the node's clock (default: the wall clock); tests may pass a
            :class:`~repp2p.clock.TrioClock` under trio's MockClock.

    Raises:
        ConfigError: the configuration names something this release cannot run.
    """

    def __init__(self, config: NodeConfig, *, clock: ClockAPI | None = None) -> None:
        self.config = config
        self.clock = as_clock(clock)
        self.metrics = NodeMetrics()
        self.identity = _load_or_create_identity(config)
        self.peer_id = self.identity.peer_id
        if config.role == "full":
            # [tee hook] a hardware tee_kind needs its kernel interface on this machine (the
            # message names it and `repp2p tee probe`); simulated is dev-only (NodeConfig).
            try:
                check_platform(config.tee_kind)
            except EnclaveError as exc:
                raise ConfigError(exc.detail) from None
            missing = missing_tee_setting(config)
            if missing:
                raise ConfigError(missing)
        self.policy = load_policy(config.policy_path())
        self.phase = phase_of(self.peer_id)
        self.conn_events = connmgr.ConnectionEvents(
            lambda event: self.metrics.connections.labels(event).inc()
        )
        self._parts: NodeParts | None = None
        self._status_address: str | None = None
        self._started = trio.Event()
        self._stop = trio.Event()

    # -- the parts, while running ---------------------------------------------------------

    @property
    def parts(self) -> NodeParts:
        """The running parts.

        Raises:
            NodeNotRunning: :meth:`run` has not started them (or has ended).
        """
        if self._parts is None:
            raise NodeNotRunning(f"node {self.peer_id} is not running")
        return self._parts

    @property
    def store(self) -> SqliteRecordStore:
        return self.parts.store

    @property
    def pipeline(self) -> RecordPipeline:
        return self.parts.pipeline

    @property
    def views(self) -> ViewService:
        return self.parts.views

    @property
    def keeper(self) -> ViewKeeper:
        return self.parts.views.keeper

    @property
    def host(self) -> Any:
        return self.parts.host

    @property
    def dht(self) -> ServerOnlyKadDHT:
        return self.parts.dht

    @property
    def publisher(self) -> RecordPublisher:
        return self.parts.publisher

    @property
    def discovery(self) -> Discovery:
        return self.parts.discovery

    @property
    def feed(self) -> feed_protocol.FeedFollower:
        return self.parts.feed

    @property
    def server(self) -> TaskServer | None:
        """The task server (None on a light peer)."""
        return self.parts.server

    @property
    def own_digests(self) -> OwnDigests:
        """This peer's digests (built, published, served to auditors)."""
        return self.parts.own_digests

    @property
    def disputes(self) -> DisputeBook:
        """The dispute proofs held (docs/digests.md, "Dispute proofs")."""
        return self.parts.disputes

    @property
    def auditor(self) -> Auditor | None:
        """The auditor of other peers' digests (None on a light peer)."""
        return self.parts.auditor

    @property
    def enclave(self) -> EnclaveSupervisor | None:
        """The enclave supervisor (None on a light peer)."""
        return self.parts.enclave

    def is_synced(self) -> bool:
        """True once the node pulled the record set from a peer (or had nobody to ask)."""
        return self._parts is not None and self._parts.discovery.is_synced()

    async def publish(self, record: Record) -> SignedRecord:
        """Sign, store and gossip one of our records (see :class:`RecordPublisher`)."""
        return await self.parts.publisher.publish(record)

    def accept(self, data: bytes, *, source: str = "local") -> bool:
        """Hand one record to the pipeline (see :class:`RecordPipeline`)."""
        return self.parts.pipeline.accept(data, source=source)

    def status(self) -> dict[str, Any]:
        """A JSON-ready summary for ``repp2p status`` and the devnet table."""
        return self.parts.status.status()

    @property
    def status_address(self) -> str | None:
        """``host:port`` of the running node's HTTP status endpoint (None when off)."""
        return self._status_address

    def addrs(self) -> list[str]:
        """Full multiaddrs of this node, each ending in ``/p2p/<peer id>``."""
        out = []
        for addr in self.parts.host.get_addrs():
            text = str(addr)
            out.append(text if "/p2p/" in text else f"{text}/p2p/{self.peer_id}")
        return out

    # -- lifecycle ------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to shut down gracefully."""
        self._stop.set()

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run until :meth:`stop`; ``task_status.started(self)`` once listening.

        Raises:
            ConfigError: a bad listen or bootstrap address.
            StoreError: the record store cannot be opened.
        """
        cfg = self.config
        listen = parse_multiaddrs(cfg.listen)
        bootstrap = [peer_info(a) for a in cfg.bootstrap_addrs()]
        store = SqliteRecordStore(cfg.data_dir / "records.db", synchronous="NORMAL")
        enclave: EnclaveSupervisor | None = None
        server: TaskServer | None = None
        # on a digest-view network every peer holds only the tasks it took part in
        light = holds_only_own_tasks(cfg.role, cfg.network_params)
        try:
            keeper = ViewKeeper(
                store,
                self.policy,
                cfg.network_params,
                book_path=cfg.data_dir / "penalties.cbor",
                ranks_path=cfg.data_dir / "offer-ranks.cbor",
            )
            pipeline = RecordPipeline(
                store,
                self.metrics,
                self.clock,
                recover_s=cfg.timers.store_recover_s,
                admit=_evidence_admission(keeper),
                budgets=SignerBudgets(cfg.budgets, cfg.epoch_s),
                network=cfg.network_params,
                quota=_unattested_quota(store, keeper, cfg.budgets, self.clock),
                keep=own_tasks_only(store, self.peer_id) if light else None,
            )
            views = ViewService(keeper, self.clock, self.metrics, tick_s=cfg.timers.tick_s)
            host = build_host(
                self.identity, enable_quic=cfg.enable_quic, connections=cfg.connections
            )
            is_full = cfg.role == "full"
            if is_full:
                enclave = await EnclaveSupervisor.start(
                    cfg.engines,
                    cheat=cfg.cheat,
                    tee_kind=cfg.tee_kind,
                    collateral_file=cfg.tee_collateral or None,
                    enclave_address=cfg.tee_enclave or None,
                    gpu=cfg.gpu or None,
                )
            async with host.run(listen_addrs=listen):
                mode = DHTMode.SERVER if is_full else DHTMode.CLIENT
                dht = ServerOnlyKadDHT(host, mode, strict_validation=True)
                dht.register_validator(NAMESPACE, AdValidator(self.clock.now))
                pubsub, router = build_pubsub(host, cfg.gossip, views.app_score)
                host.get_network().register_notifee(self.conn_events)
                disputes = DisputeBook(
                    folder=cfg.data_dir / "disputes",
                    epoch_s=cfg.epoch_s,
                    # a proof must be in before the first view that counts it is built
                    # (per offer, DisputeTiming.count, at most dispute_lag after its
                    # epoch): every peer's views then judge the same disputes
                    max_age_epochs=max(1, cfg.network_params.dispute_lag - 1),
                    keep_epochs=cfg.network_params.dispute_lag
                    + cfg.network_params.reputation.window_epochs,
                    now=self.clock.now,
                    verdict_of=keeper.verdict_at,
                    ranks_of=keeper.offer_ranks,
                    publish=lambda data: pubsub.publish(TOPICS[PROOFS_FAMILY], data),
                    # a contested proof lives until the last view that can count it
                    window_epochs=cfg.network_params.reputation.window_epochs,
                    grace_s=cfg.network_params.proof_grace_s,
                )
                keeper.disputes = disputes
                offences = OffenceBook(
                    folder=cfg.data_dir / "offences",
                    epoch_s=cfg.epoch_s,
                    horizon_epochs=cfg.digests.audit_horizon_epochs,
                    keep_epochs=cfg.digests.audit_horizon_epochs
                    + cfg.network_params.reputation.window_epochs
                    + 1,
                    now=self.clock.now,
                    publish=lambda data: pubsub.publish(TOPICS[PROOFS_FAMILY], data),
                )
                keeper.offences = offences
                proofs = ProofRouter(disputes, offences)
                install_validators(
                    pubsub,
                    lambda d, t, f: (
                        proofs.judge(d)
                        if t == TOPICS[PROOFS_FAMILY]
                        else pipeline.judge(d, topic=t, source="gossip")
                    ),
                )
                publisher = RecordPublisher(
                    self.identity,
                    pubsub.publish,
                    pipeline,
                    self.clock,
                    gossip_task_records=cfg.feed.gossip_task_records and not light,
                )
                own_digests = OwnDigests(
                    peer_id=self.peer_id,
                    role=cfg.role,
                    store=store,
                    publish=publisher.publish,
                    regossip=publisher.gossip,
                    clock=self.clock,
                    network=cfg.network_params,
                    params=cfg.digests,
                    metrics=self.metrics,
                    failed=FailedTasks(cfg.data_dir / "failed-tasks.txt") if is_full else None,
                    claimed=ClaimedOffers(cfg.data_dir / "claimed-offers") if is_full else None,
                    phase=self.phase,
                )
                # a digest with rows ends a quiet epoch: our empty digest of it goes out now
                pipeline.on_record(own_digests.on_record)
                discovery = Discovery(
                    host,
                    dht,
                    router,
                    pipeline,
                    store,
                    self.clock,
                    self.metrics,
                    bootstrap=bootstrap,
                    announces=is_full,
                    provides=cfg.engines,
                    conn_events=self.conn_events,
                    connections=cfg.connections,
                    sync=cfg.sync,
                    timers=cfg.timers,
                    republish_interval_s=cfg.republish_interval_s,
                )
                feed = feed_protocol.FeedFollower(
                    discovery.feed_candidates,
                    lambda peer: discovery.open_stream(peer, feed_protocol.PROTOCOL),
                    # An upstream is dropped for records that are its fault only (not
                    # for stale copies, records expiring on the way, or our own disk).
                    lambda batch: [
                        v is not Verdict.REJECT for v in pipeline.judge_many(batch, source="feed")
                    ],
                    cfg.feed,
                    self.clock.now,
                )
                if enclave is not None:
                    server = TaskServer(
                        peer_id=self.peer_id,
                        store=store,
                        pipeline=pipeline,
                        publisher=publisher,
                        views=views,
                        enclave=enclave,
                        clock=self.clock,
                        capacity=cfg.capacity,
                        timers=cfg.timers,
                        task_delay_s=cfg.task_delay_s,
                        on_limit=self.metrics.limit_counter("task"),
                        sealed=own_digests.sealed,
                        on_failed=own_digests.failed.add,
                        on_claimed=own_digests.claimed.add,
                        # digest views: a replica publishes the task's dispute proof
                        publish_dispute=disputes.publish
                        if cfg.network_params.reputation_source == "digests"
                        else None,
                    )
                host.set_stream_handler(
                    SYNC_PROTOCOL,
                    make_handler(
                        store,
                        cfg.sync,
                        self.clock.now,
                        on_limit=self.metrics.limit_counter("sync"),
                        serves=served_to(store) if light else None,
                    ),
                )
                host.set_stream_handler(
                    audit_protocol.PROTOCOL,
                    audit_protocol.make_handler(
                        own_digests.answer,
                        cfg.audit,
                        self.clock.now,
                        on_request=lambda result: self.metrics.audit_requests.labels(result).inc(),
                    ),
                )
                catchup = None
                if cfg.network_params.reputation_source == "digests":
                    # proofs reach every peer within the replay window: a peer that missed
                    # the gossip (offline, restarted, its view not ready) pulls them
                    host.set_stream_handler(
                        proofs_protocol.PROTOCOL,
                        proofs_protocol.make_handler(
                            proofs.served,
                            cfg.sync,
                            self.clock.now,
                            on_limit=self.metrics.limit_counter("proofs"),
                        ),
                    )
                    catchup = ProofCatchUp(
                        router=proofs,
                        disputes=disputes,
                        peers=lambda: [p.to_base58() for p in host.get_connected_peers()],
                        open_stream=lambda peer: discovery.open_stream(
                            peer, proofs_protocol.PROTOCOL
                        ),
                        params=cfg.sync,
                        clock=self.clock,
                        epoch_s=cfg.epoch_s,
                        tick_s=cfg.timers.tick_s,
                        is_synced=discovery.is_synced,
                        view_ready=lambda e: keeper.cached_view(e) is not None,
                        phase=self.phase,
                        grace_s=cfg.network_params.proof_grace_s,
                    )
                auditor = None
                if is_full:
                    auditor = Auditor(
                        peer_id=self.peer_id,
                        store=store,
                        clock=self.clock,
                        epoch_s=cfg.epoch_s,
                        params=cfg.digests,
                        audit=cfg.audit,
                        open_stream=lambda peer: discovery.open_stream(
                            peer, audit_protocol.PROTOCOL
                        ),
                        nodes=_audit_nodes(keeper, self.clock),
                        metrics=self.metrics,
                        evidence=EvidenceLog(cfg.data_dir / "audits"),
                        publish=lambda data: pubsub.publish(TOPICS[PROOFS_FAMILY], data),
                    )
                    # other auditors' unserved charges: verified, then re-checked by us
                    proofs.on_charge = auditor.on_charge
                if not light:  # on a digest-view network nobody follows per-task feeds
                    host.set_stream_handler(
                        feed_protocol.PROTOCOL,
                        feed_protocol.make_handler(
                            store,
                            cfg.feed,
                            self.clock.now,
                            feed,
                            on_limit=self.metrics.limit_counter("feed"),
                        ),
                    )
                async with (
                    background_trio_service(dht),
                    background_trio_service(pubsub),
                    background_trio_service(router),
                    trio.open_nursery() as nursery,
                ):
                    await pubsub.wait_until_ready()
                    status = OperatorStatus(
                        peer_id=self.peer_id,
                        config=cfg,
                        clock=self.clock,
                        metrics=self.metrics,
                        store=store,
                        pipeline=pipeline,
                        discovery=discovery,
                        views=views,
                        host=host,
                        dht=dht,
                        pubsub=pubsub,
                        router=router,
                        addrs=self.addrs,
                        started_at=self.clock.now(),
                        load=server,
                        enclave=enclave,
                    )
                    self._parts = NodeParts(
                        store=store,
                        pipeline=pipeline,
                        views=views,
                        host=host,
                        dht=dht,
                        pubsub=pubsub,
                        router=router,
                        publisher=publisher,
                        discovery=discovery,
                        feed=feed,
                        status=status,
                        enclave=enclave,
                        server=server,
                        own_digests=own_digests,
                        auditor=auditor,
                        disputes=disputes,
                        offences=offences,
                        proof_catchup=catchup,
                    )
                    nursery.start_soon(publisher.run)
                    if server is not None:  # served only once background work can start
                        host.set_stream_handler(TASK_PROTOCOL, server.handle_stream)
                    for topic in subscribed_topics(light=light):
                        subscription = await pubsub.subscribe(topic)
                        nursery.start_soon(_drain, subscription)
                    status_port = None
                    if cfg.status_listen:
                        explorer = Explorer(keeper, self.clock, peer_id=self.peer_id, role=cfg.role)
                        address, port = status_http.split_host_port(cfg.status_listen)
                        status_port = await nursery.start(
                            functools.partial(
                                status_http.serve, allowed_hosts=cfg.status_allowed_hosts
                            ),
                            address,
                            port,
                            status.status,
                            status.metrics_text,
                            status.record_status,
                            status.problems,
                            explorer.routes(),
                        )
                        # REP figures are replayed here once per epoch, never by a request
                        nursery.start_soon(explorer.run, cfg.timers.tick_s)
                    if status_port:
                        self._status_address = status_http.authority(address, status_port)
                    self._write_runtime()
                    nursery.start_soon(discovery.run)
                    nursery.start_soon(discovery.run_pruning)
                    nursery.start_soon(
                        connmgr.trim_loop,
                        host,
                        router,
                        cfg.connections,
                        self.metrics.connections.labels("trimmed").inc,
                    )
                    nursery.start_soon(views.run)
                    nursery.start_soon(self._purge_loop, store)
                    if not light:  # other peers' per-task feeds: nothing we would keep
                        nursery.start_soon(feed.run)
                    nursery.start_soon(own_digests.run)
                    if auditor is not None:
                        nursery.start_soon(auditor.run)
                    if catchup is not None:
                        nursery.start_soon(catchup.run)
                    if enclave is not None and server is not None:
                        await self._start_full(nursery, enclave, server, publisher, host)
                    log.info("node %s listening on %s", self.peer_id, self.addrs())
                    task_status.started(self)
                    await self._stop.wait()
                    log.info("node %s stopping", self.peer_id)
                    nursery.cancel_scope.cancel()
                    # Close connections and listeners while pubsub still runs: otherwise a
                    # message arriving mid-shutdown is pushed to pubsub's closed nursery.
                    with trio.move_on_after(cfg.timers.shutdown_grace_s) as scope:
                        scope.shield = True
                        await host.get_network().close()
        finally:
            self._parts = None
            self._status_address = None
            (cfg.data_dir / "runtime.json").unlink(missing_ok=True)
            if enclave is not None:
                # do not wait for running tasks on shutdown
                enclave.close(wait=not (server is not None and server.active))
            store.close()

    async def _start_full(
        self,
        nursery: trio.Nursery,
        enclave: EnclaveSupervisor,
        server: TaskServer,
        publisher: RecordPublisher,
        host: IHost,
    ) -> None:
        """A full node's own duties: attestation first, then heartbeats and ads."""
        cfg = self.config
        await enclave.attest(publisher, self.peer_id, self.policy, self.clock, cfg.epoch_s)
        nursery.start_soon(
            lambda: enclave.run_attestations(
                publisher,
                self.peer_id,
                self.policy,
                self.clock,
                cfg.epoch_s,
                phase=self.phase,
                tick_s=cfg.timers.tick_s,
            )
        )
        period = cfg.network_params.reputation.heartbeat_period_epochs
        schedule = OwnRecordSchedule(
            publisher,
            server,
            lambda: self._ad(host, enclave, publisher),
            self.clock,
            epoch_s=cfg.epoch_s,
            heartbeat_interval_s=cfg.heartbeat_interval_s,
            republish_interval_s=cfg.republish_interval_s,
            phase=self.phase,
            heartbeat_period_epochs=period,
            heartbeat_slot=heartbeat_slot(self.peer_id, period),
            heartbeat_lag=cfg.network_params.heartbeat_lag,
            sign_liveness=lambda epoch: enclave.sign_liveness(self.peer_id, epoch),
        )
        nursery.start_soon(schedule.run_heartbeats)
        nursery.start_soon(schedule.run_ads)

    def _ad(self, host: IHost, enclave: EnclaveSupervisor, publisher: RecordPublisher) -> NodeAd:
        now = int(self.clock.now())
        addrs = tuple(str(a) for a in host.get_addrs())[:16]
        return NodeAd(
            addrs=tuple(a.split("/p2p/")[0] for a in addrs),
            engines=tuple(
                EngineOffer(e, m) for e, m in sorted(enclave.engine_measurements.items())
            ),
            tee_kind=self.config.tee_kind,
            price=self.config.price,
            capacity=self.config.capacity,
            throughput=self.config.throughput,
            seq=publisher.next_seq(),
            expires=now + capped_lifetime(NodeAd.TYPE, 3 * self.config.republish_interval_s),
        )

    async def _purge_loop(self, store: SqliteRecordStore) -> None:
        """Once an epoch: drop expired records (evidence of equivocation is kept), and the
        per-task records older than the retention (:func:`retention_epochs`): the disk is
        bounded by the window, not by how long signers let their records live."""
        from repp2p.errors import StoreError

        cfg = self.config
        keep = retention_epochs(cfg.network_params, cfg.digests)
        while True:
            await self.clock.sleep(cfg.epoch_s)
            now = int(self.clock.now())
            try:
                dropped = store.purge_expired(now=now)
                pruned = store.prune_task_records(
                    before_epoch=now // cfg.epoch_s - keep, orphans_before=now - keep * cfg.epoch_s
                )
                if self._parts is not None:
                    self._parts.own_digests.failed.forget_before(now // cfg.epoch_s - keep)
                    self._parts.own_digests.claimed.forget_before(now // cfg.epoch_s - keep)
            except (StoreError, OSError):
                log.exception("purging old records failed")
                continue
            if dropped or pruned:
                log.debug("purged %d expired and %d old per-task records", dropped, pruned)

    def _write_runtime(self) -> None:
        info = {
            "peer_id": self.peer_id,
            "addrs": self.addrs(),
            "pid": os.getpid(),
            "network": self.config.network,
            "status": self._status_address,
        }
        path = self.config.data_dir / "runtime.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(info))
        tmp.replace(path)


def _load_or_create_identity(config: NodeConfig) -> Identity:
    path = config.key_path
    if path.exists():
        return Identity.load(path)
    identity = Identity.generate()
    try:
        identity.save(path)
    except KeyFileError:
        return Identity.load(path)  # created concurrently: use that one
    log.info("created identity key %s (%s)", path, identity.peer_id)
    return identity


async def _drain(subscription: Any) -> None:
    # Validators already stored every delivered record; draining keeps py-libp2p's
    # 32-message subscription buffer from filling and dropping.
    while True:
        await subscription.get()


__all__ = ["Node", "NodeParts"]


def _unattested_quota(
    store: SqliteRecordStore, keeper: ViewKeeper, params: BudgetParams, clock: ClockAPI
) -> UnattestedQuota:
    """The byte quota of unattested identities, counting what the store holds already
    (and evicting what no longer fits, e.g. after a smaller quota was configured)."""
    quota = UnattestedQuota(params, keeper.is_attested)
    held = [r for t in sorted(BUDGETED) for r in store.query(type=t)]
    evicted = quota.seed(held, int(clock.now()))
    if evicted:
        store.delete(evicted)
        log.info("unattested identities' quota: %d stored records evicted", len(evicted))
    return quota


def _audit_nodes(keeper: ViewKeeper, clock: ClockAPI) -> Callable[[int], frozenset[str] | None]:
    """The auditor's ``nodes(epoch)``: the attested nodes of the view of an audit epoch
    (:func:`repp2p.node.audits.attested_nodes`). The view of the current epoch is built
    if it is not yet (the view service builds it at the epoch's start all the same); an
    older one only when still held, never rebuilt here (a view rebuilt later could read
    other records); a later one is not held."""

    def nodes(epoch: int) -> frozenset[str] | None:
        if epoch == clock.epoch(keeper.epoch_s):
            view = keeper.view(epoch)
        else:
            view = keeper.cached_view(epoch)
        return None if view is None else attested_nodes(view)

    return nodes


def _evidence_admission(keeper: ViewKeeper) -> Callable[[SignedRecord, int], str | None]:
    """The record pipeline's content check: garbage attestation evidence is refused
    (``attestation_<reason>`` in ``repp2p_records_rejected_total``)."""

    def admit(signed: SignedRecord, now: int) -> str | None:
        reason = keeper.evidence_refusal(signed, now)
        return None if reason is None else f"attestation_{reason.value}"

    return admit
