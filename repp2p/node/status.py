"""Operator status: what ``repp2p status``, ``/status``, ``/metrics`` and ``/record`` show."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from libp2p.abc import IHost
from prometheus_client import generate_latest

from repp2p.clock import ClockAPI
from repp2p.config import NodeConfig
from repp2p.net.libp2p_compat import RecordGossipSub, RecordPubsub, ServerOnlyKadDHT
from repp2p.net.topics import TOPICS
from repp2p.node.abc import (
    DiscoveryAPI,
    EnclaveSupervisorAPI,
    OperatorStatusAPI,
    RecordPipelineAPI,
    TaskLoadAPI,
    ViewServiceAPI,
)
from repp2p.node.metrics import NodeMetrics, totals
from repp2p.records import RECORD_TYPES
from repp2p.store import RecordStoreAPI


class OperatorStatus(OperatorStatusAPI):
    """A node's status, read from its parts (``load`` and ``enclave`` are None on a light
    peer, which runs neither)."""

    def __init__(
        self,
        *,
        peer_id: str,
        config: NodeConfig,
        clock: ClockAPI,
        metrics: NodeMetrics,
        store: RecordStoreAPI,
        pipeline: RecordPipelineAPI,
        discovery: DiscoveryAPI,
        views: ViewServiceAPI,
        host: IHost,
        dht: ServerOnlyKadDHT,
        pubsub: RecordPubsub,
        router: RecordGossipSub,
        addrs: Callable[[], list[str]],
        started_at: float,
        load: TaskLoadAPI | None,
        enclave: EnclaveSupervisorAPI | None,
    ) -> None:
        self._peer_id = peer_id
        self._config = config
        self._clock = clock
        self._metrics = metrics
        self._store = store
        self._pipeline = pipeline
        self._discovery = discovery
        self._views = views
        self._host = host
        self._dht = dht
        self._pubsub = pubsub
        self._router = router
        self._addrs = addrs
        self._started_at = started_at
        self._load = load
        self._enclave = enclave

    def problems(self) -> list[str]:
        """Why the node is degraded, in words an operator acts on; empty when healthy."""
        out = []
        fault = self._pipeline.store_fault
        if fault is not None:
            down = self._clock.now() - fault.since
            out.append(
                f"record store cannot write, first failure {down:.0f} s ago ({fault.error}): "
                "accepting no new records; free disk space and it resumes by itself"
            )
        return out

    def status(self) -> dict[str, Any]:
        peers = self._discovery.connected_peers()
        counts = {t: self._store.count(t) for t in RECORD_TYPES}
        churn = {"opened": 0.0, "closed": 0.0, "trimmed": 0.0}
        churn.update(totals(self._metrics.connections, "event"))
        mesh, peer_topics = self._router.mesh, self._pubsub.peer_topics
        return {
            "peer_id": self._peer_id,
            "network": self._config.network,
            "tee_kind": self._config.tee_kind,
            "simulated_tee": self._config.tee_kind == "simulated",
            "addrs": self._addrs(),
            "peers": len(peers),
            "peer_ids": peers,
            "connections": {k: int(v) for k, v in churn.items()},
            "gossip": {
                "peers": len(self._pubsub.peers),
                "mesh": {family: len(mesh.get(topic, ())) for family, topic in TOPICS.items()},
                "subscribers": {
                    family: len(peer_topics.get(topic, ())) for family, topic in TOPICS.items()
                },
                # who forwards us each family; a peer listed here that does not list us
                # back is a one-sided link: its records reach us by IHAVE gossip only
                "mesh_peers": {
                    family: sorted(p.to_base58() for p in mesh.get(topic, ()))
                    for family, topic in TOPICS.items()
                },
            },
            "routing_table": self._dht.get_routing_table_size(),
            "records": counts,
            "records_total": sum(counts.values()),
            "rejected": totals(self._metrics.rejected, "reason"),
            "equivocations": len(self._store.equivocations()),
            # our digests signed, our audits of others by outcome, challenges of ours
            "digests": {
                "published": totals(self._metrics.digests_published, "type"),
                "audits": totals(self._metrics.audits, "outcome"),
                "audit_requests": totals(self._metrics.audit_requests, "result"),
            },
            "synced": self._discovery.is_synced(),
            "uptime_s": round(self._clock.now() - self._started_at, 1),
            "engines": list(self._config.engines),
            "reputation": self._views.reputation_of(self._peer_id),
            "tasks_done": self._load.done if self._load else 0,
            "tasks_active": self._load.active if self._load else 0,
            "enclave": self._enclave.describe() if self._enclave else None,
            "role": self._config.role,
            "health": {"ok": not (problems := self.problems()), "problems": problems},
        }

    def record_status(self, hex_id: str) -> dict[str, Any]:
        try:
            record_id = bytes.fromhex(hex_id)
        except ValueError:
            return {"error": "record id must be hex"}
        held = self._store.get(record_id) is not None
        return {"held": held, "arrived_at": self._pipeline.arrived_at(record_id)}

    def metrics_text(self) -> bytes:
        self.problems()  # ends a store fault that is over, so the gauge says so
        self._metrics.peers.set(len(self._discovery.connected_peers()))
        for t in RECORD_TYPES:
            self._metrics.records.labels(t).set(self._store.count(t))
        return generate_latest(self._metrics.registry)
