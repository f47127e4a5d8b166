"""Prometheus metrics of one node (its own registry, so tests can run many nodes)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class NodeMetrics:
    """The node's counters, gauges and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.peers = Gauge("repp2p_peers", "Connected libp2p peers", registry=r)
        self.records = Gauge("repp2p_records", "Current records held", ["type"], registry=r)
        self.limits = Counter(
            "repp2p_limits_total",
            "Peer streams ended by a per-peer limit, by protocol and limit",
            ["protocol", "limit"],
            registry=r,
        )
        self.degraded = Gauge(
            "repp2p_degraded",
            "1 while the node is degraded for this reason (store: its store cannot write)",
            ["reason"],
            registry=r,
        )
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
        self.digests_published = Counter(
            "repp2p_digests_published",
            "Own digest parts signed and published",
            ["type"],
            registry=r,
        )
        self.audits = Counter(
            "repp2p_audits",
            "Challenges this peer judged as an auditor (outcome=pass|unserved|offence)",
            ["outcome"],
            registry=r,
        )
        self.audit_requests = Counter(
            "repp2p_audit_requests",
            "Challenges of our digests we were asked (result=answered|unknown|refused)",
            ["result"],
            registry=r,
        )

    def limit_counter(self, protocol: str) -> Callable[[str], None]:
        """``on_limit`` for a stream handler of ``protocol``: counts in ``limits``."""

        def count(limit: str) -> None:
            self.limits.labels(protocol, limit).inc()

        return count


def totals(counter: Counter, label: str) -> dict[str, float]:
    """A Prometheus counter's totals per value of ``label`` (summed over other labels)."""
    out: dict[str, float] = {}
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                key = sample.labels[label]
                out[key] = out.get(key, 0.0) + sample.value
    return out
