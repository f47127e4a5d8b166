"""Prometheus metrics of one node (its own registry, so tests can run many nodes)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily

from repp2p.net.libp2p_compat.hooks import hook_calls


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
            "Challenges this peer judged as an auditor (outcome=pass|unserved|offence; "
            "recheck_<outcome> for re-checked charges, charge_other_entropy for charges "
            "drawn under an entropy this peer does not hold)",
            ["outcome"],
            registry=r,
        )
        self.audit_requests = Counter(
            "repp2p_audit_requests",
            "Challenges of our digests we were asked (result=answered|unknown|refused)",
            ["result"],
            registry=r,
        )
        self.hook_calls = _HookCalls()
        r.register(self.hook_calls)

    def limit_counter(self, protocol: str) -> Callable[[str], None]:
        """``on_limit`` for a stream handler of ``protocol``: counts in ``limits``."""

        def count(limit: str) -> None:
            self.limits.labels(protocol, limit).inc()

        return count


class _HookCalls:
    """``repp2p_libp2p_hook_calls_total{hook}``: how often py-libp2p called each of our
    hooks (docs/libp2p-fixes.md), read at each scrape. Process-wide: several nodes in one
    process (tests) share them. ``pubsub.write_msg`` counts the gossip RPCs sent,
    ``pubsub.read_varint_prefixed_bytes_limited`` those read."""

    # named as prometheus_client names its metrics' (tools read a metric's labels there)
    _name = "repp2p_libp2p_hook_calls"
    _labelnames = ("hook",)

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            self._name,
            "Calls of each py-libp2p hook in this process (docs/libp2p-fixes.md)",
            labels=list(self._labelnames),
        )
        for hook, calls in sorted(hook_calls().items()):
            family.add_metric([hook], calls)
        yield family


def totals(counter: Counter, label: str) -> dict[str, float]:
    """A Prometheus counter's totals per value of ``label`` (summed over other labels)."""
    out: dict[str, float] = {}
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                key = sample.labels[label]
                out[key] = out.get(key, 0.0) + sample.value
    return out
