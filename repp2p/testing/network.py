"""A local network fixture: real py-libp2p full nodes on 127.0.0.1 inside one trio process.

Used by the network tests (and handy for experiments)::

    async with local_network(tmp_path, 4) as nodes:
        ...

The first node is the bootstrap of the others. Timings are shortened (5 s epochs, 1 s
heartbeats, fast republication) so behaviour shows up within a test's time budget; pass
``network_params=dev_params(epoch_s=N)`` for another epoch length.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import multiaddr
import trio

from repp2p.config import NodeConfig
from repp2p.identity import Identity
from repp2p.net.params import GossipParams
from repp2p.network_params import NetworkParams
from repp2p.node import Node

#: Epoch length of the test networks, seconds.
EPOCH_S = 5


def dev_params(epoch_s: int = EPOCH_S) -> NetworkParams:
    """The dev network's parameters (``bootstrap/dev.toml``) with another epoch length."""
    return NetworkParams.load("dev").replace(epoch_s=epoch_s)


FAST = {
    "heartbeat_interval_s": 1.0,
    "network_params": dev_params(),
    "republish_interval_s": 5.0,
    "status_listen": "",
    "gossip": GossipParams(eclipse_protection=False),
}


def node_config(
    folder: Path, name: str, bootstrap: tuple[str, ...] = (), **overrides: Any
) -> NodeConfig:
    """A dev-network NodeConfig listening on an ephemeral loopback port."""
    settings = {**FAST, "listen": ("/ip4/127.0.0.1/tcp/0",), **overrides}
    return NodeConfig(data_dir=folder / name, network="dev", bootstrap=bootstrap, **settings)


async def start_node(nursery: trio.Nursery, config: NodeConfig) -> Node:
    """Start a node in ``nursery`` and return it once it listens."""
    node = Node(config)
    await nursery.start(node.run)
    return node


@contextlib.asynccontextmanager
async def local_network(folder: Path, size: int, **overrides: Any) -> AsyncIterator[list[Node]]:
    """``size`` full nodes; node 0 is the bootstrap of the others. Stopped on exit."""
    async with trio.open_nursery() as nursery:
        boot = await start_node(nursery, node_config(folder, "node-0", **overrides))
        nodes = [boot]
        for i in range(1, size):
            config = node_config(folder, f"node-{i}", (boot.addrs()[0],), **overrides)
            nodes.append(await start_node(nursery, config))
        try:
            yield nodes
        finally:
            for node in nodes:
                node.stop()


def with_overrides(config: NodeConfig, **changes: Any) -> NodeConfig:
    return dataclasses.replace(config, **changes)


@contextlib.asynccontextmanager
async def gossiping_peer(identity: Identity, target: Node, topic: str) -> AsyncIterator[Any]:
    """A bare host that speaks only GossipSub (no record pipeline, no checks of its own),
    connected to ``target`` and subscribed to ``topic``: for tests that send a node
    hand-made, possibly hostile, records.

    Yields the py-libp2p ``Pubsub``; ``await pubsub.publish(topic, data)`` sends.
    """
    from libp2p.peer.peerinfo import info_from_p2p_addr
    from libp2p.tools.anyio_service import background_trio_service

    from repp2p.net.gossip import build_pubsub
    from repp2p.net.host import build_host

    host = build_host(identity)
    async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        pubsub, router = build_pubsub(host, GossipParams(eclipse_protection=False))
        async with background_trio_service(pubsub), background_trio_service(router):
            with trio.fail_after(20):
                await pubsub.wait_until_ready()
                await pubsub.subscribe(topic)
                await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(target.addrs()[0])))
                await pubsub.wait_for_subscription(target.host.get_id(), topic, timeout=10)
            await trio.sleep(1.5)  # a gossipsub heartbeat: the target meshes us
            yield pubsub
