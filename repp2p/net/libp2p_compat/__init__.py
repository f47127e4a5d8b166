"""Every patch and override of py-libp2p that repp2p needs, in one place.

py-libp2p 0.8.1 cost our network measured CPU and correctness in a few places (see
``docs/libp2p-fixes.md``: each fix, its effect, and the upstream change that would let us
delete it). Everything that touches py-libp2p internals lives here, so the rest of repp2p
uses py-libp2p's public API plus the functions below:

* :func:`install` applies the process-wide patches (pubsub per-RPC costs, yamux window
  updates, receive windows enforced, inbound streams capped) after checking the
  py-libp2p version and the shape of every patched attribute.
  ``build_host()`` calls it; importing repp2p patches nothing.
* :class:`RecordGossipSub` / :class:`ContentIdMessageCache`: the GossipSub router fixes.
* :class:`RecordPubsub`: validators with GossipSub v1.1's IGNORE (no penalty for the
  forwarder), which py-libp2p's bool validators lack.
* :func:`invalid_messages_penalty`: P4 weights in py-libp2p's sign convention.
* :class:`ServerOnlyKadDHT`, :func:`routing_table_peers`, :func:`prune_client_peers`:
  the DHT routing table.
* :func:`opened_at`, :func:`is_outbound`, :func:`close_in_background`: what connection
  trimming needs from the swarm.
* :func:`hook_calls` / :data:`HOOKS`: how often py-libp2p called each hook (canaries).
"""

from repp2p.net.libp2p_compat.gossipsub import ContentIdMessageCache, RecordGossipSub
from repp2p.net.libp2p_compat.guard import (
    ALLOW_ANY_VERSION_ENV,
    SUPPORTED_VERSIONS,
    check_version,
    installed_version,
)
from repp2p.net.libp2p_compat.hooks import hook_calls
from repp2p.net.libp2p_compat.ignore import RecordPubsub
from repp2p.net.libp2p_compat.installer import HOOKS, install, installed
from repp2p.net.libp2p_compat.kad_dht import (
    ServerOnlyKadDHT,
    prune_client_peers,
    routing_table_peers,
)
from repp2p.net.libp2p_compat.score import invalid_messages_penalty
from repp2p.net.libp2p_compat.swarm import (
    close_in_background,
    is_outbound,
    lift_dial_backoff,
    opened_at,
)

__all__ = [
    "ALLOW_ANY_VERSION_ENV",
    "HOOKS",
    "SUPPORTED_VERSIONS",
    "ContentIdMessageCache",
    "RecordGossipSub",
    "RecordPubsub",
    "ServerOnlyKadDHT",
    "check_version",
    "close_in_background",
    "hook_calls",
    "install",
    "installed",
    "installed_version",
    "invalid_messages_penalty",
    "is_outbound",
    "lift_dial_backoff",
    "opened_at",
    "prune_client_peers",
    "routing_table_peers",
]
