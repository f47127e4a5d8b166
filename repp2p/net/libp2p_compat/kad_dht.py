"""Keep DHT clients out of py-libp2p 0.8.1's Kademlia routing table.

py-libp2p adds every peer that opens a Kademlia stream to us with the server-mode check
skipped, so light clients (DHT client mode, serving no queries) land in routing tables
and later lookups hit "protocol not supported". :class:`ServerOnlyKadDHT` keeps the check
on; :func:`prune_client_peers` drops those that got in before identify told us what they
speak. The routing table is py-libp2p internals, reached only through these functions.
"""

from __future__ import annotations

import logging
from typing import Any

from libp2p.kad_dht.common import PROTOCOL_ID as KAD_PROTOCOL
from libp2p.kad_dht.kad_dht import KadDHT
from libp2p.kad_dht.provider_store import ProviderStore
from libp2p.kad_dht.routing_table import RoutingTable
from libp2p.peer.id import ID

from repp2p.net.libp2p_compat.guard import Expect
from repp2p.net.libp2p_compat.hooks import count

log = logging.getLogger(__name__)


#: distinct content keys a node keeps provider records for (repp2p provides one key per
#: engine; py-libp2p caps providers per key and ADD_PROVIDER messages per peer, but not
#: the keys, so many peers announcing random keys would grow the store without bound)
MAX_PROVIDER_KEYS = 10_000


class BoundedProviderStore(ProviderStore):
    """py-libp2p's ProviderStore holding provider records for at most ``max_keys`` keys.

    A record for a new key is dropped while the store is full, unless it is our own
    (keys we provide are always kept); records for keys already held update as before,
    and expired ones leave through py-libp2p's cleanup, making room again.
    """

    max_keys = MAX_PROVIDER_KEYS

    def add_provider(self, key: bytes, provider: Any) -> None:
        """py-libp2p's ``add_provider``, refusing new keys beyond ``max_keys``."""
        ours = key in self.providing_keys or (
            provider is not None and getattr(provider, "peer_id", None) == self.local_peer_id
        )
        if key not in self.providers and len(self.providers) >= self.max_keys and not ours:
            log.debug("provider store full (%d keys): record for a new key dropped", self.max_keys)
            return
        super().add_provider(key, provider)


class ServerOnlyKadDHT(KadDHT):
    """KadDHT that never skips the server-mode check when adding a peer, and keeps its
    provider records in a :class:`BoundedProviderStore`.

    With the check on, a peer whose identify protocols lack Kademlia is refused; one not
    yet identified is added, and :func:`prune_client_peers` drops it later.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Replaced before anything runs: py-libp2p reads the attribute at each use.
        self.provider_store = BoundedProviderStore(
            host=self.host, peer_routing=self.peer_routing, persist_path=None
        )

    async def add_peer(self, peer_id: ID, *, skip_server_mode_check: bool = False) -> bool:
        """py-libp2p's ``add_peer``, always with the server-mode check.

        Args:
            peer_id: the peer to add.
            skip_server_mode_check: ignored (py-libp2p passes True for every peer that
                opens a Kademlia stream to us).

        Returns:
            Whether the peer was added or updated.
        """
        count("KadDHT.add_peer")
        return await super().add_peer(peer_id, skip_server_mode_check=False)


def routing_table_peers(dht: KadDHT) -> list[ID]:
    """The peers in ``dht``'s routing table.

    Args:
        dht: a running py-libp2p ``KadDHT``.

    Returns:
        Their peer IDs, in bucket order.
    """
    return dht.routing_table.get_peer_ids()


def prune_client_peers(host: Any, dht: KadDHT) -> int:
    """Drop from ``dht``'s routing table the peers identify says are not DHT servers.

    A peer whose identify protocols are known and lack the Kademlia protocol serves no
    queries; one whose protocols are not known yet stays.

    Args:
        host: our host (its peerstore holds identify's protocol lists).
        dht: a running py-libp2p ``KadDHT``.

    Returns:
        How many peers were dropped.
    """
    dropped = 0
    peerstore = host.get_peerstore()
    for peer in dht.routing_table.get_peer_ids():
        try:
            protocols = peerstore.get_protocols(peer)
        except Exception:  # not in the peerstore (any more): nothing known about it
            continue
        if protocols and str(KAD_PROTOCOL) not in protocols:
            dht.routing_table.remove_peer(peer)
            dropped += 1
    return dropped


EXPECTS: tuple[Expect, ...] = (
    Expect(KadDHT, "add_peer", "self, peer_id, *, skip_server_mode_check"),
    Expect(RoutingTable, "get_peer_ids", "self"),
    Expect(RoutingTable, "remove_peer", "self, peer_id"),
    Expect(ProviderStore, "add_provider", "self, key, provider"),
    Expect(ProviderStore, "__init__", "self, host, peer_routing, persist_path"),
)

HOOKS: tuple[str, ...] = ("KadDHT.add_peer",)
