"""Build py-libp2p hosts the way repp2p needs them.

* Noise is the only security transport: py-libp2p's default also accepts plaintext and
  secio, which would let anyone read and forge traffic.
* ``max_connections_per_peer=1``: with more, every dial waits a 250 ms fallback delay.
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
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport

from repp2p.errors import ConfigError
from repp2p.identity import Identity
from repp2p.net.libp2p_compat import install as install_libp2p_patches
from repp2p.net.params import ConnectionParams


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

    ``connections`` bounds the connection count (py-libp2p's default dials up to 200 peers).
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
    )
