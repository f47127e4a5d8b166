"""Keep a node's connection count bounded.

py-libp2p 0.8.1 has a connection pruner, but it never closes a connection that carries a
stream, and every connection carries a long-lived pubsub stream: nodes held more
connections than the high watermark, and their gossip control traffic (and CPU) grew with
the size of the network instead of with the mesh (measurements: docs/design-notes.md,
"Connection trimming").

So the node trims its own connections: every ``trim_interval_s``, when it holds more than
``high_watermark``, it closes connections down to the *target*, the midpoint of the
watermarks (the count py-libp2p's auto-connector dials up to, so the two never fight).
Which ones go is :func:`choose_to_close`, a pure function:

* never a connection younger than ``grace_s`` (a new peer gets time to join our meshes);
* never one carrying a task or sync stream (work in progress);
* of the rest, feed connections (records we pull, or serve) last, and before them first
  those in the fewest of our GossipSub meshes (the peers our gossip flows through are kept
  while others exist), ties broken by a hash of (our ID, their ID) so every node drops a
  different, stable set instead of all dropping the same peer. A feed is not protected
  outright: it rotates upstreams anyway, and with every connection carrying one (2
  upstreams plus up to 8 follow-backs) nothing could be trimmed.

A closed peer stays in the DHT routing table and the peerstore, so it can be dialled again
when the count falls below the low watermark.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.abc import INotifee

from repp2p.errors import UnsupportedLibp2pError
from repp2p.net.libp2p_compat import close_in_background, is_outbound, opened_at
from repp2p.net.params import ConnectionParams

log = logging.getLogger(__name__)

#: Streams on these protocols mark a connection as in use (never trimmed).
BUSY_PROTOCOLS = frozenset({"/repp2p/task/1", "/repp2p/sync/1"})
#: Streams on this protocol make a connection the last to be trimmed.
FEED_PROTOCOL = "/repp2p/feed/1"


@dataclass(frozen=True)
class ConnInfo:
    """What trimming needs to know about one connection.

    Attributes:
        peer: the remote peer ID (base58).
        age_s: seconds since the connection was opened.
        meshes: in how many of our GossipSub topic meshes the peer is.
        busy: whether it carries a task or sync stream.
        feed: whether it carries a feed stream.
    """

    peer: str
    age_s: float
    meshes: int
    busy: bool
    feed: bool = False


def target_connections(params: ConnectionParams) -> int:
    """The count trimming goes down to: the midpoint of the watermarks."""
    return (params.low_watermark + params.high_watermark) // 2


def choose_to_close(
    conns: Iterable[ConnInfo],
    params: ConnectionParams,
    *,
    salt: str,
    transient: frozenset[str] = frozenset(),
) -> list[str]:
    """Peers whose connections to close (see the module docstring), best candidates first.

    Nothing while the count is at or below ``params.high_watermark``; otherwise enough of
    the eligible connections to come down to :func:`target_connections`, or all eligible
    ones when fewer qualify. Peers in ``transient`` (dialled just for a DHT query) go
    first and are not protected by the grace period.
    """
    conns = list(conns)
    if len(conns) <= params.high_watermark:
        return []
    excess = len(conns) - target_connections(params)
    eligible = [
        c for c in conns if not c.busy and (c.age_s >= params.grace_s or c.peer in transient)
    ]
    eligible.sort(
        key=lambda c: (c.peer not in transient, c.feed, c.meshes, _tiebreak(salt, c.peer))
    )
    return [c.peer for c in eligible[:excess]]


def _tiebreak(salt: str, peer: str) -> bytes:
    return hashlib.sha256(f"{salt}/{peer}".encode()).digest()


def snapshot(host: Any, router: Any, now: float | None = None) -> list[ConnInfo]:
    """:class:`ConnInfo` for each of ``host``'s connections.

    Args:
        host: our host.
        router: our GossipSub router (its ``mesh``), or anything without one.
        now: the time (``time.time()`` seconds); default now.

    Returns:
        One :class:`ConnInfo` per connection, skipping any closing under us.

    Raises:
        UnsupportedLibp2pError: py-libp2p no longer records when a connection opened.
    """
    now = time.time() if now is None else now
    meshes: dict[Any, int] = {}
    for peers in getattr(router, "mesh", {}).values():
        for peer in peers:
            meshes[peer] = meshes.get(peer, 0) + 1
    out = []
    for conn in host.get_network().get_connections():
        try:
            peer = conn.muxed_conn.peer_id
            age = now - opened_at(conn)
            protocols = {str(stream.get_protocol()) for stream in conn.get_streams()}
        except UnsupportedLibp2pError:
            raise
        except Exception:  # a connection closing under us: skip it this round
            continue
        out.append(
            ConnInfo(
                peer.to_base58(),
                age,
                meshes.get(peer, 0),
                busy=not protocols.isdisjoint(BUSY_PROTOCOLS),
                feed=FEED_PROTOCOL in protocols,
            )
        )
    return out


async def trim_once(
    host: Any, router: Any, params: ConnectionParams, transient: frozenset[str] = frozenset()
) -> int:
    """Close the connections :func:`choose_to_close` picks; returns how many were closed."""
    salt = host.get_id().to_base58()
    chosen = set(choose_to_close(snapshot(host, router), params, salt=salt, transient=transient))
    closed = 0
    for conn in list(host.get_network().get_connections()):
        try:
            peer = conn.muxed_conn.peer_id.to_base58()
        except Exception:
            continue
        if peer not in chosen:
            continue
        # Never cancelled by us: a close interrupted half-way leaves it counted for good.
        close_in_background(host, conn)
        closed += 1
    if closed:
        log.debug("trimmed %d connections", closed)
    return closed


async def trim_loop(
    host: Any,
    router: Any,
    params: ConnectionParams,
    on_trimmed: Callable[[int], None] = lambda n: None,
) -> None:
    """Run :func:`trim_once` every ``params.trim_interval_s`` seconds, forever.

    ``on_trimmed(n)`` is told how many connections each round closed (for metrics).
    """
    while True:
        await trio.sleep(params.trim_interval_s)
        try:
            on_trimmed(await trim_once(host, router, params))
        except Exception as exc:  # trimming is housekeeping: never take the node down
            log.warning("connection trimming failed: %r", exc)


@contextlib.asynccontextmanager
async def transient_dials(
    host: Any,
    router: Any,
    params: ConnectionParams,
    on_trimmed: Callable[[int], None] = lambda n: None,
) -> AsyncIterator[None]:
    """Trim, on exit, the excess that DHT queries run inside opened.

    A DHT query (refresh, provide, put) dials the peers closest to its key, connected or
    not; left to the periodic trim, those connections would push the count over the high
    watermark for ``grace_s`` and then cost the peers already in our meshes their place.
    Only connections *we* opened meanwhile count as the query's: a peer that dialled us
    during the query (a newcomer) keeps its grace period.
    """
    before = {p.to_base58() for p in host.get_connected_peers()}
    try:
        yield
    finally:
        with trio.CancelScope(shield=True):
            try:
                dialled = frozenset(
                    c.muxed_conn.peer_id.to_base58()
                    for c in host.get_network().get_connections()
                    if is_outbound(c) and c.muxed_conn.peer_id.to_base58() not in before
                )
                on_trimmed(await trim_once(host, router, params, dialled))
            except Exception as exc:
                log.debug("trimming after DHT queries failed: %r", exc)


class ConnectionEvents(INotifee):
    """Counts connections opened and closed (``on_event("opened"|"closed")``), whoever
    opened them: the churn figure that shows whether trimming and dialling agree. Also
    remembers when each peer's connection last closed, so the node does not re-dial a
    peer that has just trimmed it (:meth:`recently_closed`)."""

    KEPT = 4096

    def __init__(self, on_event: Callable[[str], None] = lambda e: None) -> None:
        self._on_event = on_event
        self._closed_at: dict[str, float] = {}

    def recently_closed(self, within_s: float) -> set[str]:
        """Peers whose connection closed less than ``within_s`` seconds ago."""
        horizon = time.monotonic() - within_s
        return {peer for peer, at in self._closed_at.items() if at >= horizon}

    async def connected(self, network: Any, conn: Any) -> None:
        self._on_event("opened")

    async def disconnected(self, network: Any, conn: Any) -> None:
        self._on_event("closed")
        try:
            peer = conn.muxed_conn.peer_id.to_base58()
        except Exception:
            return
        self._closed_at.pop(peer, None)
        self._closed_at[peer] = time.monotonic()
        if len(self._closed_at) > self.KEPT:
            self._closed_at.pop(next(iter(self._closed_at)))

    async def opened_stream(self, network: Any, stream: Any) -> None:
        pass

    async def closed_stream(self, network: Any, stream: Any) -> None:
        pass

    async def listen(self, network: Any, multiaddr: Any) -> None:
        pass

    async def listen_close(self, network: Any, multiaddr: Any) -> None:
        pass
