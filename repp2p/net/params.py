"""Frozen, validated parameters of the network layer (one object per concern).

Sizing notes for GossipParams: our traffic per node is about one heartbeat per
``heartbeat_interval_s`` (10 s), one ad and one attestation per republish period, plus task
traffic (an offer, k claims, k receipts and k feedbacks per task). At the 300 tasks/s the
task benchmark aims for across a 16-node network, a topic sees ~1,000 messages/s network-wide
and a single peer can legitimately originate ~100/s on the task topics. py-libp2p's spam
protection caps every peer at 10 messages/s per topic by default, which would drop honest
bursts, so we raise the per-peer rate to ``max_messages_per_peer_per_topic_s`` and rely on
our own validators (invalid records cost gossip score) for abuse.
"""

from __future__ import annotations

import dataclasses

from repp2p.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class GossipParams:
    """GossipSub settings.

    Attributes:
        degree: target mesh degree D (peers), 1..32.
        degree_low: D_lo, below which the mesh is grafted (peers), 1..degree.
        degree_high: D_hi, above which it is pruned (peers), degree..64.
        heartbeat_interval_s: gossipsub heartbeat (seconds), 1..60; 1 s keeps meshes fresh.
        max_messages_per_peer_per_topic_s: spam-protection rate per peer and topic, 1..10,000.
        max_pending_messages_per_peer: messages queued for one peer before dropping, 32..100,000.
        seen_ttl_s: how long a message ID stays in the seen cache (seconds), 10..3600.
        validation_timeout_s: a validator slower than this rejects (seconds), 0.1..60.
        eclipse_protection: demand IP diversity in meshes. Keep it on in production; a
            loopback devnet turns it off because all its peers share 127.0.0.1.
    """

    degree: int = 6
    degree_low: int = 4
    degree_high: int = 12
    heartbeat_interval_s: int = 1
    max_messages_per_peer_per_topic_s: float = 500.0
    max_pending_messages_per_peer: int = 2048
    seen_ttl_s: int = 120
    validation_timeout_s: float = 5.0
    eclipse_protection: bool = True

    def __post_init__(self) -> None:
        _bound("degree", self.degree, 1, 32)
        _bound("degree_low", self.degree_low, 1, self.degree)
        _bound("degree_high", self.degree_high, self.degree, 64)
        _bound("heartbeat_interval_s", self.heartbeat_interval_s, 1, 60)
        _bound(
            "max_messages_per_peer_per_topic_s", self.max_messages_per_peer_per_topic_s, 1, 10_000
        )
        _bound("max_pending_messages_per_peer", self.max_pending_messages_per_peer, 32, 100_000)
        _bound("seen_ttl_s", self.seen_ttl_s, 10, 3600)
        _bound("validation_timeout_s", self.validation_timeout_s, 0.1, 60)


@dataclasses.dataclass(frozen=True)
class SyncParams:
    """``/repp2p/sync/1`` settings.

    Attributes:
        page_records: records per page a server sends at most, 1..1024.
        page_bytes: bytes per page a server sends at most, 64 KiB..4 MiB (one record above
            it still travels alone).
        max_frame: the largest frame either side accepts (bytes); a page may not exceed it.
        request_timeout_s: a peer slower than this to answer one page is dropped (seconds).
        max_pages: pages one pull fetches from one peer before stopping, 1..1,000,000.
        max_invalid: invalid records one peer may send in one pull before it is cut off.
    """

    page_records: int = 256
    page_bytes: int = 1024 * 1024
    max_frame: int = 5 * 1024 * 1024
    request_timeout_s: float = 10.0
    max_pages: int = 10_000
    max_invalid: int = 16

    def __post_init__(self) -> None:
        _bound("page_records", self.page_records, 1, 1024)
        _bound("page_bytes", self.page_bytes, 64 * 1024, 4 * 1024 * 1024)
        _bound("max_frame", self.max_frame, self.page_bytes + 512 * 1024, 64 * 1024 * 1024)
        _bound("request_timeout_s", self.request_timeout_s, 0.1, 600)
        _bound("max_pages", self.max_pages, 1, 1_000_000)
        _bound("max_invalid", self.max_invalid, 0, 1_000_000)


@dataclasses.dataclass(frozen=True)
class ConnectionParams:
    """How many peers a node keeps connections to.

    Every connection costs CPU (gossip control traffic on six topics, identify, yamux
    windows): a node does not need to be connected to everyone, only to enough peers for
    healthy GossipSub meshes (D_hi = 12) and DHT lookups.

    Attributes:
        low_watermark: below this many connections the node dials known peers, 1..1000.
        high_watermark: above this many it prunes connections, low_watermark..2000.
        max_connections: hard cap on connections, high_watermark..10000.
    """

    low_watermark: int = 8
    high_watermark: int = 16
    max_connections: int = 64

    def __post_init__(self) -> None:
        _bound("low_watermark", self.low_watermark, 1, 1000)
        _bound("high_watermark", self.high_watermark, self.low_watermark, 2000)
        _bound("max_connections", self.max_connections, self.high_watermark, 10_000)


def _bound(name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is outside [{low}, {high}]")
