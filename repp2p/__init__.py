"""repp2p: a peer-to-peer marketplace of TEE compute nodes.

The pure core (``records``, ``attestation``, ``reputation``, ``matching``, ``ledger``) does no
I/O and never reads the clock; the live node and the simulator drive the same core.
"""

__version__ = "0.1.0"
