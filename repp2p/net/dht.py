"""Kademlia DHT conventions: provider keys per engine, and our value namespace.

* **Provider keys** are CIDs, as the DHT spec and js-libp2p require: CIDv1, codec ``raw``
  (0x55), multihash SHA2-256 of ``b"/repp2p/engine/" + engine_id``, written base32
  (multibase ``b``). A node provides the key of every engine it serves, so a light client
  finds the nodes serving an engine without following gossip.
* **Values** live under the namespace ``repp2p`` only, with a strict validator: the key
  ``/repp2p/ad/<peer-id>`` holds that peer's latest signed ``NodeAd`` envelope; a value not
  signed by the peer named in its key is refused, and among several the highest ``seq`` is
  selected. A peer without our validator discards these values (documented in
  ``docs/protocol.md`` so other implementations can register one).

Full nodes run :class:`ServerOnlyKadDHT` (from :mod:`repp2p.net.libp2p_compat`), which keeps
light clients out of their routing tables.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable

from libp2p.records.validator import Validator

from repp2p.errors import RecordError
from repp2p.records import NodeAd, decode

NAMESPACE = "repp2p"
ENGINE_KEY_PREFIX = b"/repp2p/engine/"
_CID_V1_RAW_SHA256 = b"\x01\x55\x12\x20"


def engine_provider_key(engine_id: str) -> str:
    """The CIDv1 (base32) under which nodes serving ``engine_id`` are providers."""
    digest = hashlib.sha256(ENGINE_KEY_PREFIX + engine_id.encode("utf-8")).digest()
    return "b" + base64.b32encode(_CID_V1_RAW_SHA256 + digest).decode("ascii").lower().rstrip("=")


def ad_key(peer_id: str) -> str:
    """The DHT value key of a peer's NodeAd."""
    return f"/{NAMESPACE}/ad/{peer_id}"


class InvalidValue(Exception):
    """A DHT value under our namespace failed validation (raised to py-libp2p)."""


class AdValidator(Validator):
    """Strict validator of ``/repp2p/ad/<peer-id>`` values (see module docstring).

    Args:
        clock: unix seconds now (the peer's clock: an expired ad is no ad).
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock

    def validate(self, key: str, value: bytes) -> None:
        parts = key.split("/")
        if len(parts) != 4 or parts[1] != NAMESPACE or parts[2] != "ad":
            raise InvalidValue(f"unknown repp2p DHT key {key[:80]!r}")
        try:
            signed = decode(value, now=int(self._clock()))  # an expired ad is no ad
        except RecordError as exc:
            raise InvalidValue(f"invalid record under {key[:80]!r}: {exc}") from None
        if not isinstance(signed.record, NodeAd) or signed.signer != parts[3]:
            raise InvalidValue(f"value under {key[:80]!r} is not that peer's NodeAd")

    def select(self, key: str, values: list[bytes]) -> int:
        best, best_seq = 0, -1
        for i, value in enumerate(values):
            try:
                self.validate(key, value)
            except InvalidValue:
                continue
            seq = decode(value).record.seq
            if seq > best_seq:
                best, best_seq = i, seq
        return best
