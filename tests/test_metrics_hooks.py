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


def test_gossip_rpcs_sent_are_counted_by_kind():
    """What each RPC sent carries (repp2p.net.libp2p_compat.pubsub._rpc_kind)."""
    from libp2p.pubsub.pb import rpc_pb2

    from repp2p.net.libp2p_compat.pubsub import _rpc_kind

    message = rpc_pb2.RPC()
    message.publish.add(data=b"a record")
    message.control.ihave.add(topicID="t")
    assert _rpc_kind(message) == "pubsub.sent.messages"
    gossip = rpc_pb2.RPC()
    gossip.control.ihave.add(topicID="t")
    assert _rpc_kind(gossip) == "pubsub.sent.ihave_only"
    gossip.control.graft.add(topicID="t")
    assert _rpc_kind(gossip) == "pubsub.sent.control"
    joined = rpc_pb2.RPC()
    joined.subscriptions.add(subscribe=True, topicid="t")
    assert _rpc_kind(joined) == "pubsub.sent.subscriptions"
