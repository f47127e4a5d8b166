"""Frozen, validated parameters of the network layer (one object per concern).

Gossip volume: a node gossips its heartbeats, attestations, ads and digests; per-task records
stay with their parties on a digest network (the default) and on a records network spread
by pulls over ``/repp2p/feed/1`` (FeedParams), not by gossip, unless ``gossip_task_records``
is set. Then one peer can legitimately originate bursts far above py-libp2p's default spam
cap (10 messages/s per peer and topic), so GossipParams raises the per-peer rate
(``max_messages_per_peer_per_topic_s``) and relies on our own validators (invalid records
cost gossip score) for abuse. The sizing estimate: docs/design-notes.md, "Mesh parameters".
"""

from __future__ import annotations

import dataclasses

from repp2p.digests.params import AuditParams  # noqa: F401  (re-exported, see below)
from repp2p.params_check import bool_field, float_field, int_field

#: ``AuditParams`` is a network parameter (``NetworkParams.audit``): it is defined with the
#: digest schedule in :mod:`repp2p.digests.params` and re-exported here for the audit stream.


@dataclasses.dataclass(frozen=True)
class GossipParams:
    """GossipSub settings.

    The mesh is smaller than go-libp2p's (D=6, D_hi=12): every node sends each message
    to every mesh peer, and in py-libp2p each hop of a message costs CPU (framing, Noise,
    protobuf) that a larger mesh multiplies. D_hi stays twice D as in go-libp2p: mesh
    links are symmetric (a node's mesh is the peers it grafted plus those that grafted
    it), so a tighter D_hi keeps meshes overflowing and pruned peers backing off. Own
    records go to every connected peer anyway (flood publish). Measurements of each knob:
    docs/design-notes.md, "Mesh parameters".

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
        prune_backoff_s: how long a peer pruned from a mesh (either way) waits before it
            may GRAFT again (seconds), 1..600. Shorter than go-libp2p's 60: a node that
            lost its meshes while the network settled after trimming stays in none for the
            whole back-off, receiving records only by IHAVE gossip.
        gossip_lazy: D_lazy, the fewest peers outside the mesh sent IHAVE gossip per topic
            at each heartbeat (more when a quarter of those peers is more), 1..32. 3, not
            go-libp2p's 6: records travel by flood publish and the mesh, gossip only
            repairs, and IHAVE was a large share of all gossip RPCs.
        flood_publish: send the records this node originates to every connected peer on
            the topic (whose score allows it), not only to its mesh, as go-libp2p does by
            default. py-libp2p 0.8.1 sends to the mesh only, and a mesh is empty for up to
            the prune back-off after GRAFTs are refused: a record published then reached
            nobody.
    """

    degree: int = 4
    degree_low: int = 3
    degree_high: int = 8
    heartbeat_interval_s: int = 1
    max_messages_per_peer_per_topic_s: float = 500.0
    max_pending_messages_per_peer: int = 2048
    seen_ttl_s: int = 120
    validation_timeout_s: float = 5.0
    eclipse_protection: bool = True
    flood_publish: bool = True
    prune_backoff_s: int = 15
    gossip_lazy: int = 3

    def __post_init__(self) -> None:
        int_field(self, "degree", 1, 32)
        int_field(self, "degree_low", 1, self.degree)
        int_field(self, "degree_high", self.degree, 64)
        int_field(self, "heartbeat_interval_s", 1, 60)
        float_field(self, "max_messages_per_peer_per_topic_s", 1, 10_000)
        int_field(self, "max_pending_messages_per_peer", 32, 100_000)
        int_field(self, "seen_ttl_s", 10, 3600)
        float_field(self, "validation_timeout_s", 0.1, 60)
        bool_field(self, "eclipse_protection")
        bool_field(self, "flood_publish")
        int_field(self, "prune_backoff_s", 1, 600)  # sent as an integer in PRUNE
        int_field(self, "gossip_lazy", 1, 32)


@dataclasses.dataclass(frozen=True)
class SyncParams:
    """``/repp2p/sync/1`` settings (also the limits of ``/repp2p/proofs/1``,
    :mod:`repp2p.net.proof_sync`, whose pages count proofs instead of records).

    Attributes:
        page_records: records per page a server sends at most, 1..1024.
        page_bytes: bytes per page a server sends at most, 64 KiB..4 MiB (one record above
            it still travels alone).
        max_frame: the largest frame either side accepts (bytes); a page may not exceed it,
            page_bytes + 512 KiB..64 MiB.
        request_timeout_s: a peer slower than this to answer one page is dropped (seconds),
            0.1..600.
        max_pages: pages one pull fetches from one peer before stopping, 1..1,000,000.
        max_invalid: invalid records one peer may send in one pull before it is cut off,
            0..1,000,000.
        streams_per_peer: sync streams one peer may have open on a server at once, 1..64.
        peer_bytes_per_min: bytes a server sends one peer per minute at most (a token
            bucket holding up to a minute's worth); pages beyond it wait, and a peer whose
            next page would wait longer than ``request_timeout_s`` is dropped,
            1 MiB..4 GiB.
    """

    page_records: int = 256
    page_bytes: int = 1024 * 1024
    max_frame: int = 5 * 1024 * 1024
    request_timeout_s: float = 10.0
    max_pages: int = 10_000
    max_invalid: int = 16
    streams_per_peer: int = 2
    peer_bytes_per_min: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        int_field(self, "page_records", 1, 1024)
        int_field(self, "page_bytes", 64 * 1024, 4 * 1024 * 1024)
        int_field(self, "max_frame", self.page_bytes + 512 * 1024, 64 * 1024 * 1024)
        float_field(self, "request_timeout_s", 0.1, 600)
        int_field(self, "max_pages", 1, 1_000_000)
        int_field(self, "max_invalid", 0, 1_000_000)
        int_field(self, "streams_per_peer", 1, 64)
        int_field(self, "peer_bytes_per_min", 1024 * 1024, 4 * 1024**3)


@dataclasses.dataclass(frozen=True)
class FeedParams:
    """``/repp2p/feed/1`` settings: how per-task records spread (see repp2p.net.feed).

    Attributes:
        interval_s: seconds between two pulls from each upstream, 0.05..60.
        idle_interval_s: while pulls bring nothing new, the interval doubles up to this,
            interval_s..600.
        upstreams: full nodes pulled from at once, 1..16 (each record reaches a node about
            this many times; more upstreams spread faster and resist a lying upstream).
        rotate_s: one upstream is swapped for a random other peer this often (seconds),
            1..86,400, so the pull graph heals and no fixed peer can starve us.
        rewind_s: a new upstream first serves what it received this long ago, 0..86,400.
        page_records: records per answer at most, 1..1024.
        page_bytes: bytes per answer at most, 64 KiB..4 MiB (one record above it travels
            alone).
        pages_per_round: answers fetched from one upstream per pull at most, 1..1000.
        request_timeout_s: an upstream slower than this to answer is dropped (seconds),
            0.1..600.
        max_invalid: invalid records one upstream may send before it is dropped,
            0..1,000,000.
        gossip_task_records: also publish per-task records on their GossipSub topics (the
            old way: every task costs every node several gossip messages; for comparison).
    """

    interval_s: float = 0.5
    idle_interval_s: float = 2.0
    upstreams: int = 2
    rotate_s: float = 60.0
    rewind_s: int = 120
    page_records: int = 256
    page_bytes: int = 1024 * 1024
    pages_per_round: int = 8
    request_timeout_s: float = 10.0
    max_invalid: int = 16
    gossip_task_records: bool = False

    def __post_init__(self) -> None:
        float_field(self, "interval_s", 0.05, 60)
        float_field(self, "idle_interval_s", self.interval_s, 600)
        int_field(self, "upstreams", 1, 16)
        float_field(self, "rotate_s", 1, 86_400)
        int_field(self, "rewind_s", 0, 86_400)
        int_field(self, "page_records", 1, 1024)
        int_field(self, "page_bytes", 64 * 1024, 4 * 1024 * 1024)
        int_field(self, "pages_per_round", 1, 1000)
        float_field(self, "request_timeout_s", 0.1, 600)
        int_field(self, "max_invalid", 0, 1_000_000)
        bool_field(self, "gossip_task_records")


@dataclasses.dataclass(frozen=True)
class ConnectionParams:
    """How many peers a node keeps connections to.

    Every connection costs CPU (gossip control traffic on six topics, identify, yamux
    windows): a node does not need to be connected to everyone, only to enough peers for
    healthy GossipSub meshes (D_hi = 8 per topic, six topics) and DHT lookups.

    Attributes:
        low_watermark: below this many connections the node dials known peers (and its
            bootstrap peers), 1..1000.
        high_watermark: above this many it closes connections down to the midpoint of
            the watermarks (:mod:`repp2p.net.connmgr`), low_watermark..2000.
        max_connections: hard cap on connections, high_watermark..10000.
        trim_interval_s: how often the count is checked against the high watermark,
            0.1..3600 s.
        grace_s: a connection younger than this is never closed by trimming, 0..3600 s.
    """

    low_watermark: int = 8
    high_watermark: int = 16
    max_connections: int = 64
    trim_interval_s: float = 10.0
    grace_s: float = 20.0

    def __post_init__(self) -> None:
        int_field(self, "low_watermark", 1, 1000)
        int_field(self, "high_watermark", self.low_watermark, 2000)
        int_field(self, "max_connections", self.high_watermark, 10_000)
        float_field(self, "trim_interval_s", 0.1, 3600)
        float_field(self, "grace_s", 0, 3600)


@dataclasses.dataclass(frozen=True)
class BudgetParams:
    """Per-signer budgets on the node records a peer takes from gossip.

    A node's own records fill few slots (one ad, one attestation, a heartbeat per epoch);
    one key that publishes records for hundreds of fresh slots (a heartbeat for every epoch
    of its 1-day lifetime, say) costs every peer disk and CPU. So per signer and type a
    window of ``window_s`` admits records for at most
    ``max(floor, slots_per_epoch x ceil(window_s / epoch_s))`` distinct slots; records for
    a slot already admitted in the window (replacements: a newer heartbeat of the same
    epoch) always pass, as they cost no storage. Over budget, records are IGNOREd (not
    stored, not forwarded, no penalty for the forwarder, who may be honest). Sync is not
    budgeted: it fetches records that exist already, bounded by their slots and lifetimes.

    Attributes:
        window_s: the budget window, 1..3600 s.
        slots_per_epoch: new slots per signer, type and epoch of the window, 1..1000
            (an honest node fills at most one heartbeat slot per epoch).
        floor: the least any window admits, 1..100000.
        signers_kept: signers counted at once (memory bound; the oldest are forgotten),
            1000..10000000.
        unattested_bytes: bytes of node records one identity with no verified
            attestation may have stored, from any source but our own, each record
            charged 4 KiB and none larger kept
            (:class:`repp2p.node.budgets.UnattestedQuota`), 4 KiB..16 MiB: 32 KiB is an
            ad and 7 heartbeats; an honest node attests first and stays inside it.
        unattested_total_bytes: bytes all such identities may have stored together
            (charged the same way), 64 KiB..4 GiB.
    """

    window_s: float = 60.0
    slots_per_epoch: int = 2
    floor: int = 8
    signers_kept: int = 100_000
    unattested_bytes: int = 32 * 1024
    unattested_total_bytes: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        float_field(self, "window_s", 1, 3600)
        int_field(self, "slots_per_epoch", 1, 1000)
        int_field(self, "floor", 1, 100_000)
        int_field(self, "signers_kept", 1000, 10_000_000)
        int_field(self, "unattested_bytes", 4 * 1024, 16 * 1024 * 1024)
        int_field(self, "unattested_total_bytes", 64 * 1024, 4 * 1024**3)
