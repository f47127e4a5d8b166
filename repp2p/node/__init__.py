"""The repp2p node, in parts: interfaces in :mod:`repp2p.node.abc`, one module per part,
and :class:`Node` (:mod:`repp2p.node.app`), which wires them together and runs them."""

from repp2p.node.app import Node, NodeParts
from repp2p.node.metrics import NodeMetrics

__all__ = ["Node", "NodeMetrics", "NodeParts"]
