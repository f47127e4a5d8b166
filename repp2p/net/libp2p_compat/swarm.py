"""What connection trimming needs from py-libp2p 0.8.1's swarm beyond its public API.

py-libp2p's own connection pruner never closes a connection that carries a stream, so
repp2p trims connections itself (:mod:`repp2p.net.connmgr`); the three facts it needs that
the public interfaces do not give are reached only through these functions, as is the
lifting of its dial back-off (:func:`lift_dial_backoff`).
"""

from __future__ import annotations

from typing import Any

from libp2p.network.connection.swarm_connection import SwarmConn
from libp2p.network.swarm import Swarm
from libp2p.rcmgr import Direction

from repp2p.net.libp2p_compat.guard import Expect, incompatible


def opened_at(conn: Any) -> float:
    """When ``conn`` was opened (``time.time()`` seconds).

    Args:
        conn: a connection from ``host.get_network().get_connections()``.

    Returns:
        Its creation time, as py-libp2p's own pruner reads it.

    Raises:
        UnsupportedLibp2pError: the connection no longer records it (without it every
            connection would look brand new and none would ever be trimmed).
    """
    created = getattr(conn, "_created_at", None)
    if not isinstance(created, int | float):
        raise incompatible(f"{type(conn).__name__} has no _created_at time")
    return float(created)


def is_outbound(conn: Any) -> bool:
    """Whether we dialled ``conn`` (a connection of unknown direction is not outbound)."""
    return getattr(conn, "direction", None) == Direction.OUTBOUND


def close_in_background(host: Any, conn: Any) -> None:
    """Close ``conn`` in the swarm's own task, never cancelled by the caller.

    A close interrupted half-way (a stalled peer) leaves the connection marked closed but
    still counted, and a second ``close()`` returns at once; py-libp2p closes the
    connections it trims the same way.

    Args:
        host: our host.
        conn: one of its connections.
    """
    network = host.get_network()
    network.manager.run_task(network._close_connection_async, conn)


def lift_dial_backoff(host: Any, peer_id: Any) -> None:
    """Let ``peer_id`` be dialled again at once.

    py-libp2p 0.8.1's ``Swarm.dial_peer`` refuses, for 60 s, a peer all of whose addresses
    failed, before it even looks at new addresses: a node that restarted (on a new port)
    stayed unreachable for a minute. The caller lifts that when it has fresh evidence the
    peer is back (a newer signed ad).

    Args:
        host: our host.
        peer_id: the peer's ``ID``.
    """
    host.get_network().unblock_peer(peer_id)


EXPECTS: tuple[Expect, ...] = (
    Expect(Swarm, "unblock_peer", "self, peer_id"),
    Expect(Swarm, "_close_connection_async", "self, connection"),
    Expect(Swarm, "manager"),
    Expect(SwarmConn, "direction"),
)
