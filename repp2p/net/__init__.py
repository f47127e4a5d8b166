"""The live network layer: py-libp2p hosts, DHT discovery, GossipSub, the sync protocol.

Everything here does I/O (trio + libp2p); the decisions it acts on come from the pure core.
The wire protocol is documented in ``docs/protocol.md``.
"""
