"""What connection trimming needs from py-libp2p 0.8.1's swarm beyond its public API.

py-libp2p's own connection pruner never closes a connection that carries a stream, so
repp2p trims connections itself (:mod:`repp2p.net.connmgr`); the three facts it needs that
the public interfaces do not give are reached only through these functions.
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


EXPECTS: tuple[Expect, ...] = (
    Expect(Swarm, "_close_connection_async", "self, connection"),
    Expect(Swarm, "manager"),
    Expect(SwarmConn, "direction"),
)
