"""Discovery: dialling peers, keeping the DHT healthy, the first sync, providing engines.

A node keeps between the connection watermarks (gossip meshes need a dozen peers, not
everyone): it dials routing-table peers first, bootstrap peers next, and peers that just
closed on us last. While its routing table is small (joining) or stale it refreshes it
(:class:`RefreshSchedule`: on a network smaller than the low watermark the table stays
small for good, so refreshes that find nobody new back off); a full node provides its
engines and puts its ad in the DHT every republish period. Until a first pull of the
record set completes, it syncs from two connected peers each round.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID as PeerID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr

from repp2p.clock import ClockAPI
from repp2p.errors import ConfigError
from repp2p.net import connmgr
from repp2p.net.dht import ad_key, engine_provider_key
from repp2p.net.libp2p_compat import (
    RecordGossipSub,
    ServerOnlyKadDHT,
    lift_dial_backoff,
    prune_client_peers,
    routing_table_peers,
)
from repp2p.net.params import ConnectionParams, SyncParams
from repp2p.net.sync import PROTOCOL as SYNC_PROTOCOL
from repp2p.net.sync import SyncResult, pull_many
from repp2p.net.verdict import Verdict
from repp2p.node.abc import DiscoveryAPI, RecordPipelineAPI
from repp2p.node.metrics import NodeMetrics
from repp2p.records import NodeAd
from repp2p.store import RecordStoreAPI
from repp2p.timers import Timers

log = logging.getLogger("repp2p.node")

#: how long addresses taken from a peer's ad stay in the peerstore (seconds)
AD_ADDRS_TTL_S = 3600
#: failed dials remembered (the oldest are forgotten first)
DIAL_FAILURES_KEPT = 4096


def peer_info(text: str) -> PeerInfo:
    """A bootstrap multiaddr (ending in ``/p2p/<id>``) as a PeerInfo.

    Raises:
        ConfigError: the address is not such a multiaddr.
    """
    try:
        return info_from_p2p_addr(multiaddr.Multiaddr(text))
    except Exception as exc:
        raise ConfigError(
            f"bootstrap address {text!r} must be a multiaddr ending in /p2p/<id>: {exc}"
        ) from None


class RefreshSchedule:
    """When the discovery loop refreshes the DHT routing table.

    Every ``interval_s`` in any case (the table goes stale). While the table holds fewer
    than ``low`` peers (joining) sooner: at once while refreshes keep finding peers, then,
    when one finds nobody new, after a wait that doubles from ``first_wait_s`` up to
    ``interval_s`` (the discovery loop passes its first round delay, 0.5 s: while a node
    joins, its rounds are that frequent anyway). A network smaller than ``low`` (a devnet,
    a small private network) keeps the table small for good, and a lookup costs every peer
    it asks CPU: without the back-off each of its nodes refreshed every discovery round
    (every 15 s), about a fifth of an idle 4-node devnet's CPU. The wait starts over when
    the table shrinks (peers left: look for others) or grows (the network is growing).

    Args:
        low: the table size below which the node is still joining (the low watermark).
        interval_s: the forced refresh period of a healthy table.
        first_wait_s: the first back-off wait after a refresh found nobody new.
    """

    def __init__(self, low: int, interval_s: float, first_wait_s: float) -> None:
        self._low = low
        self._interval_s = interval_s
        self._first_wait_s = min(first_wait_s, interval_s)
        self._wait_s = 0.0
        self._refreshed_at = -1e18
        self._table_after = -1

    def due(self, now: float, table: int) -> bool:
        """Whether to refresh now, with ``table`` peers in the routing table."""
        if table != self._table_after:  # changed since our last refresh: look again soon
            self._wait_s = 0.0
        since = now - self._refreshed_at
        return since >= self._interval_s or (table < self._low and since >= self._wait_s)

    def done(self, now: float, before: int, after: int) -> None:
        """A refresh ended at ``now``; the table held ``before`` peers, now ``after``."""
        self._refreshed_at = now
        self._table_after = after
        if after > before:
            self._wait_s = 0.0
        else:
            self._wait_s = min(max(2 * self._wait_s, self._first_wait_s), self._interval_s)

    @property
    def wait_s(self) -> float:
        """The current back-off wait while the table is small (0: refresh at once)."""
        return self._wait_s


class Discovery(DiscoveryAPI):
    """Peers, routing table, first sync and (for full nodes) provider records.

    Args:
        host, dht, router: the running py-libp2p host, Kademlia DHT and GossipSub router.
        pipeline: where synced records go.
        store: the peer's store (our ad for the DHT; which peers are full nodes).
        bootstrap: bootstrap peers.
        announces: whether to provide engines and put our ad in the DHT (a full node; a
            light peer announces nothing and stays a DHT client).
        provides: engine ids to provide.
        conn_events: connection open/close history (peers that just closed on us).
        connections, sync: network-layer parameters; timers: the live layer's timers.
        republish_interval_s: how often to provide and put our ad.
    """

    def __init__(
        self,
        host: IHost,
        dht: ServerOnlyKadDHT,
        router: RecordGossipSub,
        pipeline: RecordPipelineAPI,
        store: RecordStoreAPI,
        clock: ClockAPI,
        metrics: NodeMetrics,
        *,
        bootstrap: list[PeerInfo],
        announces: bool,
        provides: tuple[str, ...],
        conn_events: connmgr.ConnectionEvents,
        connections: ConnectionParams,
        sync: SyncParams,
        timers: Timers,
        republish_interval_s: float,
    ) -> None:
        self._host = host
        self._dht = dht
        self._router = router
        self._pipeline = pipeline
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._bootstrap = bootstrap
        self._announces = announces
        self._provides = provides
        self._conn_events = conn_events
        self._connections = connections
        self._sync = sync
        self._timers = timers
        self._republish_interval_s = republish_interval_s
        self._synced = trio.Event()
        self._sync_rounds = 0
        self._dial_failed_at: dict[str, float] = {}  # peer -> when a dial to it last failed

    # -- DiscoveryAPI ---------------------------------------------------------------------

    def is_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    def connected_peers(self) -> list[str]:
        return [p.to_base58() for p in self._host.get_connected_peers()]

    def feed_candidates(self) -> list[str]:
        out = []
        for peer in self._host.get_connected_peers():
            text = peer.to_base58()
            if self._store.query(type=NodeAd.TYPE, signer=text, limit=1):
                out.append(text)
        return out

    async def open_stream(self, peer: str, protocol: str) -> Any:
        """A new stream to ``peer`` (base58 peer ID) speaking ``protocol``.

        When not connected, the addresses of the peer's latest signed ad are added first,
        and a dial back-off left by an earlier failure is lifted once the peer has published
        a newer ad since (a node that restarted, maybe on a new port, is back at once
        instead of after py-libp2p's 60 s negative cache); when connected (it dialled us
        since), such a back-off is lifted at once.
        """
        pid = PeerID.from_base58(peer)
        if pid not in self._host.get_connected_peers():
            self._prepare_dial(peer, pid)
        elif self._dial_failed_at.pop(peer, None) is not None:
            # It connected to us since our dial failed (a restarted node dials its peers),
            # and py-libp2p 0.8.1's dial_peer looks at its negative cache before at the
            # connections it holds: a stream over the live connection was refused for 60 s.
            lift_dial_backoff(self._host, pid)
        try:
            return await self._host.new_stream(pid, [protocol])
        except Exception:
            # Kept even while a connection is still listed: one closing as its peer went
            # down is listed a moment longer than the dial that fails over it, and that
            # dial's failure is what py-libp2p's negative cache then holds for 60 s.
            self._dial_failed_at[peer] = self._clock.now()
            while len(self._dial_failed_at) > DIAL_FAILURES_KEPT:
                self._dial_failed_at.pop(next(iter(self._dial_failed_at)))
            raise

    def _prepare_dial(self, peer: str, pid: PeerID) -> None:
        ads = self._store.query(type=NodeAd.TYPE, signer=peer, limit=1)
        if not ads:
            return
        ad: NodeAd = ads[0].record  # type: ignore[assignment]
        addrs = []
        for text in ad.addrs:
            try:
                addrs.append(multiaddr.Multiaddr(text))
            except Exception:  # a peer's ad is input too: skip what does not parse
                continue
        if addrs:
            peerstore = self._host.get_peerstore()
            try:
                known = list(peerstore.addrs(pid))
            except Exception:  # PeerStoreError: not known, or its addresses expired
                known = []
            # The signed ad's addresses go first: py-libp2p dials only the first address of
            # each transport class, and an address learnt earlier (the port a restarted
            # node no longer listens on) would be the only one tried.
            peerstore.clear_addrs(pid)
            rest = [a for a in known if a not in addrs]
            peerstore.add_addrs(pid, addrs + rest, AD_ADDRS_TTL_S)
        failed = self._dial_failed_at.get(peer)
        # The ad's seq is its signer's unix milliseconds: newer than our failure means the
        # node announced itself again since.
        if failed is not None and ad.seq / 1000 > failed:
            lift_dial_backoff(self._host, pid)
            del self._dial_failed_at[peer]

    # -- loops ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Keep connected, refresh the routing table, provide; and, in a task of its own,
        sync until synced (:meth:`sync_once`: a slow sync never holds up discovery);
        until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._sync_until_synced)
            await self._discover()

    async def _sync_until_synced(self) -> None:
        delay = 0.5
        while not self._synced.is_set():
            if not self._host.get_connected_peers():
                if not self._bootstrap:
                    self._synced.set()  # the first node of a network has nobody to sync from
                    return
                await self._clock.sleep(0.25)  # discovery is dialing
                continue
            await self.sync_once()
            if not self._synced.is_set():
                await self._clock.sleep(delay)
                delay = min(delay * 2, self._timers.discovery_max_delay_s)

    async def _discover(self) -> None:
        timers = self._timers
        delay, provided_at = 0.5, -1e18
        low = self._connections.low_watermark
        # Lookups cost every peer CPU; the DHT refreshes itself periodically, so we only
        # push a refresh while our table is still small (joining) or stale.
        # the first back-off wait is the loop's first delay: while joining, refreshes come
        # as often as before (every round), and thin out only while nothing changes
        refreshes = RefreshSchedule(low, timers.refresh_interval_s, first_wait_s=delay)
        while True:
            await self._dial_up_to(low)
            if self._host.get_connected_peers():
                table = self._dht.get_routing_table_size()
                if refreshes.due(self._clock.now(), table):
                    started = time.perf_counter()
                    try:
                        with trio.fail_after(timers.dht_op_timeout_s):
                            async with self._transient_dials():
                                await self._dht.refresh_routing_table()
                    except Exception as exc:
                        log.debug("routing table refresh failed: %r", exc)
                    refreshes.done(self._clock.now(), table, self._dht.get_routing_table_size())
                    self._metrics.dht.labels("refresh").observe(time.perf_counter() - started)
                await self._dial_up_to(low)
                if self._announces and (
                    self._clock.now() - provided_at >= self._republish_interval_s
                ):
                    async with self._transient_dials():
                        await self._provide()
                    provided_at = self._clock.now()
            await self._clock.sleep(delay)
            delay = min(delay * 2, timers.discovery_max_delay_s)

    async def run_pruning(self) -> None:
        """Keep DHT-client peers out of the routing table (see :meth:`prune_routing_table`)."""
        while True:
            await self._clock.sleep(self._timers.tick_s)
            self.prune_routing_table()

    def prune_routing_table(self) -> int:
        """Drop DHT-client peers from the routing table; returns how many were dropped.

        py-libp2p adds every peer that queries us (including light clients, which serve no
        queries), so lookups would hit "protocol not supported"
        (:func:`repp2p.net.libp2p_compat.prune_client_peers`).
        """
        return prune_client_peers(self._host, self._dht)

    async def sync_once(self) -> None:
        """Pull the record set from connected peers (:func:`repp2p.net.sync.pull_many`):
        two at once, one more every 4 page timeouts while none has completed, starting at
        a different peer each round; synced once one pull completes (the sync task tries
        again otherwise). A peer that drips pages holds up its own pull only."""
        peers = sorted(self._host.get_connected_peers(), key=str)
        if not peers:
            return
        turn = self._sync_rounds % len(peers)
        self._sync_rounds += 1
        wait = self._sync.request_timeout_s * 4
        results = await pull_many(
            peers[turn:] + peers[:turn],
            lambda peer: self._host.new_stream(peer, [SYNC_PROTOCOL]),
            # Stale copies and our own store failures are not the peer's fault.
            lambda d: self._pipeline.judge(d, source="sync") is not Verdict.REJECT,
            self._sync,
            grace_s=wait,
            hedge_s=wait,
        )
        total, complete = 0, False
        for peer, result in results.items():
            if isinstance(result, SyncResult):
                self._metrics.sync_records.labels("valid").inc(result.valid)
                self._metrics.sync_records.labels("invalid").inc(result.invalid)
                total += result.valid
                complete = complete or result.complete
            elif result is not None:
                log.info("sync from %s failed: %r", peer, result)
        if complete:
            log.info("synced %d records from peers", total)
            self._synced.set()

    async def _provide(self) -> None:
        timeout = self._timers.dht_op_timeout_s
        for engine in self._provides:
            started = time.perf_counter()
            try:
                with trio.fail_after(timeout):
                    await self._dht.provide(engine_provider_key(engine))
            except Exception as exc:
                log.debug("provide %s failed: %r", engine, exc)
            self._metrics.dht.labels("provide").observe(time.perf_counter() - started)
        me = self._host.get_id().to_base58()
        ad = self._store.query(type=NodeAd.TYPE, signer=me)
        if ad:
            try:
                with trio.fail_after(timeout):
                    await self._dht.put_value(ad_key(me), ad[0].data)
            except Exception as exc:
                log.debug("DHT put of our ad failed: %r", exc)

    async def _connect(self, info: PeerInfo) -> bool:
        if info.peer_id == self._host.get_id():
            return False
        if info.peer_id in self._host.get_connected_peers():
            return True
        try:
            with trio.fail_after(self._timers.dial_timeout_s):
                await self._host.connect(info)
        except Exception as exc:
            log.debug("dial %s failed: %r", info.peer_id, exc)
            return False
        return True

    async def _dial_up_to(self, low: int) -> None:
        """Dial known peers while below ``low`` connections.

        Routing-table peers come first: bootstrap peers are for joining and for recovering
        from isolation, and dialling them on every round would undo the trimming of both
        sides. Peers whose connection closed in the last minute (most likely they trimmed
        us) come last, so two nodes do not close and re-open the same connection forever.
        """
        if len(self._host.get_connected_peers()) >= low:
            return
        recent = self._conn_events.recently_closed(60.0)
        boot_ids = {info.peer_id for info in self._bootstrap}
        table = [
            PeerInfo(peer, self._host.get_peerstore().addrs(peer))
            for peer in routing_table_peers(self._dht)
            if peer not in boot_ids
        ]
        fresh = [i for i in table if i.peer_id.to_base58() not in recent]
        boot = [i for i in self._bootstrap if i.peer_id.to_base58() not in recent]
        rest = [i for i in table + self._bootstrap if i.peer_id.to_base58() in recent]
        for info in fresh + boot + rest:
            if len(self._host.get_connected_peers()) >= low:
                return
            if await self._connect(info) and info.peer_id in boot_ids:
                await self._dht.add_peer(info.peer_id)

    def _transient_dials(self) -> Any:
        return connmgr.transient_dials(
            self._host,
            self._router,
            self._connections,
            self._metrics.connections.labels("trimmed").inc,
        )
