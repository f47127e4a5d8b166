"""Build py-libp2p hosts the way repp2p needs them.

* Noise is the only security transport: py-libp2p's default also accepts plaintext and
  secio, which would let anyone read and forge traffic.
* ``max_connections_per_peer=1``: with more, every dial waits a 250 ms fallback delay.
* The host-wide stream limit (:func:`host_stream_limit`) holds every connection's share of
  inbound streams and our own: py-libp2p's 10,000 was used up by 20 peers each holding
  the 512 yamux lets it, and a stream beyond it waits, ours included.
* The identity is the node's Ed25519 key, so the host's peer ID is the signer of its records.
* py-libp2p is patched (:func:`repp2p.net.libp2p_compat.install`) when the first host is
  built, never at import.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import multiaddr
from libp2p import new_host
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.network.config import ConnectionConfig
from libp2p.rcmgr import ResourceLimits, new_resource_manager
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport

from repp2p.errors import ConfigError
from repp2p.identity import Identity
from repp2p.net.libp2p_compat import install as install_libp2p_patches
from repp2p.net.libp2p_compat.yamux import MAX_INBOUND_STREAMS
from repp2p.net.params import ConnectionParams

#: Streams of our own (outbound) the host-wide limit leaves room for beyond every
#: connection's inbound share: gossip, sync, feed and audit pulls, DHT queries and task
#: attempts open a few per peer at most.
OUTBOUND_STREAMS = 4096


def host_stream_limit(connections: ConnectionParams) -> int:
    """The host-wide stream limit for a host with these connection limits.

    py-libp2p counts every stream of a host, inbound and outbound, against one limit
    behind a semaphore that waits: past it no peer's new stream is served and the host
    opens none of its own until another ends. Yamux resets a peer's streams beyond
    :data:`~repp2p.net.libp2p_compat.yamux.MAX_INBOUND_STREAMS` held on its connection
    and the swarm holds at most ``max_connections`` connections, so with this limit the
    peers together can never reach it, whatever each holds within its own share
    (memory: under 10 KiB per stream held, measured with tracemalloc for both ends of
    500 streams together, so at most ~320 MB at the default 64 connections, all full).

    Args:
        connections: the host's connection limits.

    Returns:
        ``max_connections x MAX_INBOUND_STREAMS +`` :data:`OUTBOUND_STREAMS`.
    """
    return connections.max_connections * MAX_INBOUND_STREAMS + OUTBOUND_STREAMS


def parse_multiaddrs(addrs: Sequence[str]) -> list[multiaddr.Multiaddr]:
    """Parse multiaddr strings, with a clear ConfigError for a bad one."""
    parsed = []
    for text in addrs:
        try:
            parsed.append(multiaddr.Multiaddr(text))
        except Exception as exc:
            raise ConfigError(f"invalid multiaddr {text!r}: {exc}") from None
    return parsed


def build_host(
    identity: Identity, *, enable_quic: bool = False, connections: ConnectionParams | None = None
) -> Any:
    """A libp2p host for ``identity`` speaking Noise only, Yamux, TCP (and QUIC if asked).

    ``connections`` bounds the connection count (py-libp2p's default dials up to 200 peers)
    and, through it, the host-wide stream limit (:func:`host_stream_limit`).
    The first call patches py-libp2p for the whole process (``libp2p_compat.install``).

    Args:
        identity: the node's key pair (the host's peer ID is its signer ID).
        enable_quic: also listen and dial over QUIC.
        connections: connection watermarks, limits and grace period.

    Returns:
        The ``IHost``; run it with ``async with host.run(listen_addrs=[...])``.

    Raises:
        UnsupportedLibp2pError: the installed py-libp2p is not one the patches support.
    """
    install_libp2p_patches()
    connections = connections or ConnectionParams()
    keypair = identity.to_libp2p_keypair()
    # py-libp2p's default manager, but with our stream limit, and without its "graceful
    # degradation", which cuts every limit by up to half under pressure and so would
    # bring back the exhaustion the limit is sized against
    resources = new_resource_manager(
        limits=ResourceLimits(max_streams=host_stream_limit(connections)),
        enable_graceful_degradation=False,
    )
    security = {
        NOISE_PROTOCOL_ID: NoiseTransport(
            keypair, noise_privkey=create_x25519_key_pair().private_key
        )
    }
    return new_host(
        key_pair=keypair,
        sec_opt=security,
        muxer_preference="YAMUX",
        enable_quic=enable_quic,
        connection_config=ConnectionConfig(
            max_connections_per_peer=1,
            min_connections=min(connections.low_watermark, 4),
            low_watermark=connections.low_watermark,
            high_watermark=connections.high_watermark,
            max_connections=connections.max_connections,
            grace_period=connections.grace_s,
        ),
        resource_manager=resources,
    )
