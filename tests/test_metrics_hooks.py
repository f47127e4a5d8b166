"""A node's /metrics carries the py-libp2p hook counters (repp2p.node.metrics)."""

from __future__ import annotations

from prometheus_client import generate_latest

from repp2p.net.libp2p_compat.hooks import count, hook_calls
from repp2p.node.metrics import NodeMetrics


def _hook_lines(metrics: NodeMetrics) -> dict[str, float]:
    out = {}
    for line in generate_latest(metrics.registry).decode().splitlines():
        if line.startswith("repp2p_libp2p_hook_calls_total{"):
            labels, value = line.rsplit(" ", 1)
            out[labels.split('hook="', 1)[1].split('"', 1)[0]] = float(value)
    return out


def test_hook_calls_are_exported_and_read_at_each_scrape():
    metrics = NodeMetrics()
    before = _hook_lines(metrics).get("pubsub.write_msg", 0.0)
    assert before == hook_calls().get("pubsub.write_msg", 0)
    count("pubsub.write_msg")
    count("pubsub.write_msg")
    assert _hook_lines(metrics)["pubsub.write_msg"] == before + 2
    # every counted hook appears, with its process-wide count
    assert _hook_lines(metrics) == {h: float(n) for h, n in hook_calls().items()}
