"""A pure, explicit cache of successful verifications.

Verifying evidence costs milliseconds (a chain of ECDSA/RSA verifications); a node's
attestation is re-checked far more often than it changes. The cache maps a digest of
*every input that affects the result* (kind, evidence, collateral, GPU evidence, binding
fields, policy fingerprint, engines) to the verified result and the window of time in which
that result holds (``Claims.valid_from .. valid_until``: certificates, collateral). A hit
outside the window is a miss. The caller still re-applies the (cheap) time-dependent policy
checks on a hit, so a cached result never outlives the policy's evidence age either.

Only successes are cached: a failure may depend on time in ways the window cannot express
(e.g. not yet valid), and failures are cheap to recompute for honest peers.
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


def cache_key(*parts: bytes | str | int | Iterable[str] | None) -> bytes:
    """SHA-256 over a length-prefixed encoding of ``parts`` (unambiguous)."""
    h = hashlib.sha256(b"repp2p/attestation/cache/v1")
    for part in parts:
        if part is None:
            data = b"\xff"
        elif isinstance(part, bytes):
            data = b"b" + part
        elif isinstance(part, str):
            data = b"s" + part.encode("utf-8", "surrogatepass")
        elif isinstance(part, int):
            data = b"i" + str(part).encode()
        else:
            data = b"l" + "\0".join(sorted(part)).encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.digest()


class VerificationCache(Generic[T]):
    """LRU map ``key -> (value, valid_from, valid_until)``; times are unix seconds.

    Args:
        max_entries: entries kept before the least recently used is dropped (>= 1).
    """

    def __init__(self, max_entries: int = 4096) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self._max = max_entries
        self._entries: collections.OrderedDict[bytes, tuple[T, int, int]] = (
            collections.OrderedDict()
        )
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes, now: int) -> T | None:
        """The cached value when present and ``now`` is inside its window, else None."""
        entry = self._entries.get(key)
        if entry is None or not entry[1] <= now <= entry[2]:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[0]

    def put(self, key: bytes, value: T, valid_from: int, valid_until: int) -> None:
        """Remember ``value`` for ``[valid_from, valid_until]``."""
        self._entries[key] = (value, valid_from, valid_until)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def evict_expired(self, now: int) -> int:
        """Drop entries whose window ended before ``now``; return how many."""
        stale = [k for k, (_v, _f, until) in self._entries.items() if until < now]
        for k in stale:
            del self._entries[k]
        return len(stale)

    def clear(self) -> None:
        self._entries.clear()
