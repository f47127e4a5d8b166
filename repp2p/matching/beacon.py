"""The epoch beacon: the public per-epoch value that keys every task's ranking."""

from __future__ import annotations

import hashlib

BEACON_DOMAIN = b"repp2p/1/beacon\0"


def beacon(epoch: int) -> bytes:
    """The epoch beacon: SHA-256 of a domain tag and the epoch (u64 big-endian).

    Public and predictable by design (every peer must derive it alone); the matching docs
    explain what a client grinding ``task_id`` against it can and cannot gain.
    """
    return hashlib.sha256(BEACON_DOMAIN + epoch.to_bytes(8, "big")).digest()
