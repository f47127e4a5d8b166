"""Light client: joins the network as a DHT *client* (it serves no DHT queries and stays out
of routing tables), finds the nodes serving an engine through provider records, and reads
their signed ads from the DHT, without following gossip.

    async with LightClient.open(bootstrap=["/ip4/.../p2p/12D3KooW..."]) as client:
        peers = await client.find_providers("echo")
        ad = await client.get_ad(peers[0])
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence

import multiaddr
import trio
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.tools.anyio_service import background_trio_service

from repp2p.errors import ConfigError, NetworkError, RecordError
from repp2p.identity import Identity
from repp2p.net.dht import NAMESPACE, AdValidator, ad_key, engine_provider_key
from repp2p.net.host import build_host
from repp2p.records import NodeAd, SignedRecord, decode

log = logging.getLogger("repp2p.client")


class LightClient:
    """A light peer. Build it with :meth:`open`."""

    def __init__(self, identity: Identity, host: object, dht: KadDHT) -> None:
        self.identity = identity
        self.host = host
        self.dht = dht

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        bootstrap: Sequence[str],
        *,
        identity: Identity | None = None,
        connect_timeout: float = 10.0,
    ) -> AsyncIterator[LightClient]:
        """Connect to at least one bootstrap peer and yield a ready client.

        Raises:
            ConfigError: a bootstrap address is not a ``/p2p/`` multiaddr.
            NetworkError: no bootstrap peer could be reached within ``connect_timeout``.
        """
        identity = identity or Identity.generate()
        infos = []
        for text in bootstrap:
            try:
                infos.append(info_from_p2p_addr(multiaddr.Multiaddr(text)))
            except Exception as exc:
                raise ConfigError(f"bootstrap address {text!r} is not valid: {exc}") from None
        if not infos:
            raise ConfigError("a light client needs at least one bootstrap address")
        host = build_host(identity)
        async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
            dht = KadDHT(host, DHTMode.CLIENT, strict_validation=True)
            dht.register_validator(NAMESPACE, AdValidator())
            async with background_trio_service(dht):
                connected = 0
                with trio.move_on_after(connect_timeout):
                    for info in infos:
                        try:
                            await host.connect(info)
                            await dht.add_peer(info.peer_id)
                            connected += 1
                        except Exception as exc:
                            log.info("bootstrap %s unreachable: %r", info.peer_id, exc)
                if not connected:
                    raise NetworkError("no bootstrap peer reachable")
                with trio.move_on_after(connect_timeout):
                    await dht.refresh_routing_table()
                client = cls(identity, host, dht)
                try:
                    yield client
                finally:
                    with trio.move_on_after(5) as scope:
                        scope.shield = True
                        await host.get_network().close()

    @property
    def peer_id(self) -> str:
        return self.identity.peer_id

    async def find_providers(self, engine_id: str, count: int = 20) -> list[str]:
        """Peer IDs of nodes providing ``engine_id``, deduplicated, in discovery order."""
        infos = await self.dht.find_providers(engine_provider_key(engine_id), count)
        seen: dict[str, None] = {}
        for info in infos:
            peer = info.peer_id.to_base58()
            if peer != self.peer_id:
                seen.setdefault(peer)
            if info.addrs:
                self.host.get_peerstore().add_addrs(info.peer_id, info.addrs, 3600)
        return list(seen)

    async def get_ad(self, peer_id: str) -> SignedRecord | None:
        """The peer's latest signed NodeAd from the DHT, verified, or None."""
        value = await self.dht.get_value(ad_key(peer_id))
        if value is None:
            return None
        try:
            signed = decode(value, now=int(time.time()))
        except RecordError:
            return None
        if not isinstance(signed.record, NodeAd) or signed.signer != peer_id:
            return None
        return signed

    def connected_peers(self) -> list[str]:
        return [p.to_base58() for p in self.host.get_connected_peers()]
