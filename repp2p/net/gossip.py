"""GossipSub set-up for record families: validators, content IDs, scoring.

Every topic gets a synchronous validator that hands the message data to an ``accept``
callable (the node's record pipeline: decode, validate, store). A message is forwarded only
when ``accept`` says so; an invalid record counts against the forwarding peer's gossip score
(py-libp2p's P4 counter), and the score's application hook is where reputation feeds in.

Message IDs are content-addressed: ``sha256(data)`` (raw 32 bytes), so the same record
published by two peers is one message, and any implementation can compute the ID.

Four measured CPU costs of py-libp2p 0.8.1 are cut here (profiles of a 9-process devnet
showed nodes saturated by gossip control traffic):

* GossipSub v1.2 is not offered: its IDONTWANT sends one control RPC per mesh peer for every
  message received, pure overhead for our sub-kilobyte records. v1.1 interoperates with
  go/js/rust peers.
* Every RPC carries the sender's signed peer record, and py-libp2p verifies its Ed25519
  signature on every RPC. We remember the exact envelope bytes already accepted from a peer
  and skip re-verifying identical bytes (a changed record is verified as before).
* The sender's own signed peer record is rebuilt for every RPC sent; we reuse it for a few
  seconds (:func:`_envelope_cached`).
* Each received RPC took three or more stream reads (the length prefix byte by byte); we
  read ahead into a buffer (:func:`_read_rpc_buffered`).
"""

from __future__ import annotations

import hashlib
import random
import statistics
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import libp2p.pubsub.gossipsub as _gossipsub_module
import libp2p.pubsub.pubsub as _pubsub_module
from libp2p.exceptions import ParseError
from libp2p.io.exceptions import IncompleteReadError, MessageTooLarge
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.mcache import CacheEntry, MessageCache
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.score import ScoreParams, TopicScoreParams

from repp2p.net.params import GossipParams
from repp2p.net.topics import TOPICS

#: go-libp2p's opportunistic grafting: how often (heartbeats), below which median mesh
#: score, and how many peers at most (see RecordGossipSub._perform_opportunistic_grafting)
OPPORTUNISTIC_GRAFT_TICKS = 60
OPPORTUNISTIC_GRAFT_THRESHOLD = 1.0
OPPORTUNISTIC_GRAFT_PEERS = 2
#: every this many heartbeats each mesh link is confirmed with a GRAFT (idempotent)
MESH_REFRESH_TICKS = 30

#: accept(data, topic, forwarder_peer_id_str) -> forward?
AcceptFn = Callable[[bytes, str, str], bool]
#: application score of a peer (reputation), roughly in [-1, 1]
AppScoreFn = Callable[[str], float]


_verify_signed_record = _gossipsub_module.maybe_consume_signed_record
_accepted_records: dict[tuple[bytes, bytes, bytes], None] = {}
_ACCEPTED_RECORDS_KEPT = 4096


def _consume_signed_record_once(rpc: Any, host: Any, peer_id: Any) -> bool:
    """py-libp2p's sender-record check, skipped for bytes already accepted from that peer."""
    if not rpc.HasField("senderRecord"):
        return True
    key = (host.get_id().to_bytes(), peer_id.to_bytes(), rpc.senderRecord)
    if key in _accepted_records:
        return True
    ok = _verify_signed_record(rpc, host, peer_id)
    if ok:
        if len(_accepted_records) >= _ACCEPTED_RECORDS_KEPT:
            _accepted_records.pop(next(iter(_accepted_records)))
        _accepted_records[key] = None
    return ok


_envelope_for_rpc = _gossipsub_module.env_to_send_in_RPC
_envelopes: weakref.WeakKeyDictionary[Any, tuple[float, tuple[bytes, bool]]] = (
    weakref.WeakKeyDictionary()
)
#: our own signed peer record is rebuilt at most this often (seconds)
ENVELOPE_TTL_S = 5.0


def _envelope_cached(host: Any) -> tuple[bytes, bool]:
    """py-libp2p's own signed peer record for an outgoing RPC, rebuilt every few seconds.

    py-libp2p recomputes the host's addresses (multiaddr parsing, base58) and re-serialises
    the envelope for every RPC it sends: 17% of all CPU of a 3-hop gossip chain in a
    cProfile run. Listen addresses change rarely, and a record a few seconds stale only
    delays a peer learning a new address.
    """
    now = time.monotonic()
    cached = _envelopes.get(host)
    if cached is None or now - cached[0] > ENVELOPE_TTL_S:
        cached = (now, _envelope_for_rpc(host))
        _envelopes[host] = cached
    return cached[1]


_read_buffers: weakref.WeakKeyDictionary[Any, bytearray] = weakref.WeakKeyDictionary()
#: bytes asked of the stream per read beyond the RPC in hand (what yamux has buffered)
_READ_AHEAD = 64 * 1024


async def _read_rpc_buffered(stream: Any, max_length: int) -> bytes:
    """One varint-prefixed RPC from a pubsub stream, read ahead into a per-stream buffer.

    py-libp2p reads the length prefix one byte per ``stream.read(1)`` and then the body,
    each read a pass through yamux's locks and window accounting: three or more reads per
    RPC where one usually does. Same contract and errors as py-libp2p's
    ``read_varint_prefixed_bytes_limited``; the pubsub read loop is the stream's only
    reader, so bytes read ahead are never lost to another reader.
    """
    buf = _read_buffers.get(stream)
    if buf is None:
        buf = _read_buffers[stream] = bytearray()
    length = used = 0
    while True:
        for i in range(min(len(buf), 10)):
            length |= (buf[i] & 0x7F) << (7 * i)
            if not buf[i] & 0x80:
                used = i + 1
                break
        if used:
            break
        if len(buf) >= 10:
            raise ParseError("Varint decoding error: integer exceeds maximum size of 64 bits")
        length = 0
        chunk = await stream.read(_READ_AHEAD)
        if not chunk:
            raise IncompleteReadError(
                "Stream ended while reading varint length prefix",
                expected_bytes=1,
                received_bytes=0,
            )
        buf += chunk
    if length > max_length:
        raise MessageTooLarge(f"Message length {length} exceeds maximum allowed {max_length}")
    end = used + length
    while len(buf) < end:
        chunk = await stream.read(max(_READ_AHEAD, end - len(buf)))
        if not chunk:
            raise IncompleteReadError(
                "Stream ended while reading a message",
                expected_bytes=length,
                received_bytes=len(buf) - used,
            )
        buf += chunk
    data = bytes(buf[used:end])
    del buf[:end]
    return data


# Both modules bound the functions at import: patch each binding.
_gossipsub_module.maybe_consume_signed_record = _consume_signed_record_once
_pubsub_module.maybe_consume_signed_record = _consume_signed_record_once
_gossipsub_module.env_to_send_in_RPC = _envelope_cached
_pubsub_module.env_to_send_in_RPC = _envelope_cached
_pubsub_module.read_varint_prefixed_bytes_limited = _read_rpc_buffered


def message_id(msg: Any) -> bytes:
    """Content-addressed message ID: SHA-256 of the message data."""
    return hashlib.sha256(msg.data).digest()


def score_params(app_score: AppScoreFn | None) -> ScoreParams:
    """Peer-score parameters: invalid records cost score; reputation is the P6 hook.

    Behaviour penalties (GRAFT during back-off and the like) decay (x0.95 per 1 s
    heartbeat) above a threshold of 10: py-libp2p's default never decays them, and the
    GRAFT/PRUNE races of a network settling after trimming cost honest peers 10 points
    each, for good. Within a minute of set-up whole nodes sat below the gossip and
    graylist thresholds, in no mesh and sent no IHAVE (32-node devnet traces). A peer
    that keeps flooding GRAFTs still accumulates (steady state 200 at one a second).
    """
    return ScoreParams(
        p4_invalid_messages=TopicScoreParams(weight=-10.0, cap=1000.0, decay=0.99),
        p5_behavior_penalty_weight=1.0,
        p5_behavior_penalty_decay=0.95,
        p5_behavior_penalty_threshold=10.0,
        p6_appl_slack_weight=10.0 if app_score is not None else 0.0,
        app_specific_score_fn=(lambda peer: app_score(peer.to_base58())) if app_score else None,
        publish_threshold=-50.0,
        gossip_threshold=-20.0,
        graylist_threshold=-100.0,
        accept_px_threshold=0.0,
    )


class ContentIdMessageCache(MessageCache):
    """The gossip message cache keyed by our content message ID.

    py-libp2p 0.8.1 keys its cache by ``from + seqno`` whatever ``msg_id_constructor``
    the Pubsub uses, so the IHAVE it sends name IDs that no receiver's seen-cache (keyed
    by the real message ID) holds: every IHAVE drew an IWANT and a full retransmission of
    a message the peer already had. Measured on a 12-node network over 20 s with a mesh
    degree of 4: 428 IWANT for 2,415 advertised IDs.
    """

    def put(self, msg: Any) -> None:
        mid = message_id(msg)
        if mid in self.msgs:
            return
        self.msgs[mid] = msg
        self.history[0].append(CacheEntry(mid, msg.topicIDs))


class RecordGossipSub(GossipSub):
    """py-libp2p's GossipSub with the fixes our network needed (each measured).

    * go-libp2p's flood publishing of our own messages: a message this peer originates
      goes to its mesh and also to every other connected peer subscribed to the topic
      whose score is above the publish threshold (``GossipParams.flood_publish``);
      forwarded messages still follow the mesh only.
    * a message cache keyed by the content message ID (:class:`ContentIdMessageCache`).
    * go-libp2p's mesh pruning: keep the best-scoring two thirds of D, prune the rest at
      random (graylisted peers first). py-libp2p prunes the lowest scores, and since the
      score carries reputation (P6), every peer pruned the same low-reputation nodes
      (a bootstrap serving no engines, a newcomer): they were left in no mesh at all and
      got records only from IHAVE gossip, about a second late (measured on 16- and
      32-node devnets). Reputation should rank work, not cut a node off the gossip. The
      per-heartbeat replacement of the worst mesh peer is limited the same way.
    * a configurable D_lazy (``GossipParams.gossip_lazy``).
    * heartbeat control messages built per peer (py-libp2p sent each peer the GRAFTs and
      PRUNEs of the peers before it), GRAFTs only to reachable peers, and mesh links
      re-confirmed every 30 s (:meth:`_emit_control_msgs`).
    * go-libp2p's opportunistic grafting (once a minute, only for a poorly scoring mesh):
      py-libp2p's ran at every heartbeat and kept every mesh churning.

    Behaviour-penalty decay is in :func:`score_params`.
    """

    def __init__(
        self, *args: Any, flood_publish: bool = True, gossip_lazy: int = 6, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.flood_publish = flood_publish
        self.gossip_lazy = gossip_lazy
        self.mcache = ContentIdMessageCache(self.mcache.window_size, self.mcache.history_size)
        self._graft_ticks: dict[str, int] = {}
        self._heartbeats = 0

    def _select_peers_for_pruning(self, topic: str, num_to_prune: int) -> list[Any]:
        mesh = list(self.mesh.get(topic, ()))
        if num_to_prune <= 0:
            return []
        if len(mesh) <= num_to_prune:
            return mesh
        if self.scorer is None:
            return random.sample(mesh, num_to_prune)
        scores = {peer: self.scorer.score(peer, [topic]) for peer in mesh}
        graylist = self.scorer.params.graylist_threshold
        ranked = sorted(mesh, key=lambda p: scores[p], reverse=True)
        keep = min((2 * self.degree) // 3, len(mesh) - num_to_prune)
        rest = ranked[keep:]
        bad = [p for p in rest if scores[p] < graylist]
        others = [p for p in rest if scores[p] >= graylist]
        random.shuffle(others)
        return (bad + others)[:num_to_prune]

    async def _consider_peer_replacement(self, topic: str) -> None:
        # py-libp2p swaps the lowest-scoring mesh peer for a better-scoring outsider at
        # every heartbeat; with reputation in the score that again pushes low-reputation
        # nodes out of every mesh (see the class docstring). Only misbehaving peers (below
        # the gossip threshold) are replaced.
        scorer = self.scorer
        if scorer is None or topic not in self.mesh:
            return
        threshold = scorer.params.gossip_threshold
        if any(scorer.score(p, [topic]) < threshold for p in self.mesh[topic]):
            await super()._consider_peer_replacement(topic)

    async def _emit_control_msgs(
        self,
        peers_to_graft: dict[Any, list[str]],
        peers_to_prune: dict[Any, list[str]],
        peers_to_gossip: dict[Any, dict[str, list[bytes]]],
    ) -> None:
        """The heartbeat's GRAFT, PRUNE and IHAVE, one control RPC per peer.

        py-libp2p 0.8.1 builds the GRAFT/PRUNE/IHAVE lists once and never clears them
        between peers, so the second peer also got the first one's GRAFTs and PRUNEs, and
        so on: peers dropped us from meshes we kept them in (one-sided links, found on a
        32-node devnet where a node's 4 heartbeat mesh peers all lacked it and records
        reached it only by IHAVE gossip, 100-1,000 ms late). Also here:

        * a GRAFT to a peer we have no send queue for yet (its stream is still opening)
          would be dropped without a word: the peer leaves our mesh again, and the next
          heartbeat grafts whoever is reachable;
        * every MESH_REFRESH_TICKS heartbeats each mesh peer gets a GRAFT for the topics
          we mesh it in. GRAFT is idempotent for a peer that has us already; one that had
          dropped us (any lost control message) takes us back or answers PRUNE.
        """
        pubsub = self.pubsub
        if pubsub is None:
            return
        self._heartbeats += 1
        if self._heartbeats % MESH_REFRESH_TICKS == 0:
            for topic, peers in self.mesh.items():
                for peer in peers:
                    if topic not in peers_to_graft.get(peer, ()):
                        peers_to_graft.setdefault(peer, []).append(topic)
        for peer in set(peers_to_graft) | set(peers_to_prune) | set(peers_to_gossip):
            grafts = peers_to_graft.get(peer, [])
            if grafts and peer not in pubsub.peer_queues:
                for topic in grafts:
                    self.mesh.get(topic, set()).discard(peer)
                grafts = []
            control = self.pack_control_msgs(
                [
                    rpc_pb2.ControlIHave(messageIDs=ids, topicID=topic)
                    for topic, ids in peers_to_gossip.get(peer, {}).items()
                ],
                [rpc_pb2.ControlGraft(topicID=topic) for topic in grafts],
                [
                    rpc_pb2.ControlPrune(topicID=topic, backoff=self.prune_back_off)
                    for topic in peers_to_prune.get(peer, ())
                ],
            )
            if control.ByteSize():
                await self.emit_control_message(control, peer)

    def _get_adaptive_gossip_peers_count(self, topic: str, total_peers: int) -> int:
        # go-libp2p's rule, max(D_lazy, 0.25 x peers outside the mesh), with our D_lazy
        # (py-libp2p fixes it at 6; GossipParams.gossip_lazy says why ours is smaller).
        return max(self.gossip_lazy, int(total_peers * 0.25))

    def _perform_opportunistic_grafting(self, topic: str, peers_to_graft: Any) -> int:
        # py-libp2p runs its "enhanced" opportunistic grafting at every heartbeat for every
        # topic and grafts up to 2 peers whenever their score reaches half the mesh median:
        # with equal scores that is always. Meshes grew past D_hi, were pruned back, and
        # grew again: 1,278 GRAFTs and 969 PRUNEs per 10 s on an idle 33-node devnet, each
        # an RPC, with duplicates sent along every short-lived link. go-libp2p's rule
        # instead: every OPPORTUNISTIC_GRAFT_TICKS heartbeats, only when the mesh's median
        # score is below OPPORTUNISTIC_GRAFT_THRESHOLD, graft up to 2 peers scoring above it.
        ticks = self._graft_ticks.get(topic, 0) + 1
        self._graft_ticks[topic] = ticks
        scorer, pubsub = self.scorer, self.pubsub
        mesh = self.mesh.get(topic)
        if ticks % OPPORTUNISTIC_GRAFT_TICKS or scorer is None or pubsub is None or not mesh:
            return 0
        median = statistics.median(scorer.score(p, [topic]) for p in mesh)
        if median >= OPPORTUNISTIC_GRAFT_THRESHOLD:
            return 0
        candidates = [
            peer
            for peer in pubsub.peer_topics.get(topic, ())
            if peer not in mesh
            and not self._check_back_off(peer, topic)
            and scorer.score(peer, [topic]) > median
        ]
        chosen = random.sample(candidates, min(OPPORTUNISTIC_GRAFT_PEERS, len(candidates)))
        for peer in chosen:
            mesh.add(peer)
            self._notify_mesh_peer_added(peer, topic)
            scorer.on_join_mesh(peer, topic)
            peers_to_graft[peer].append(topic)
        return len(chosen)

    def _get_peers_to_send(
        self,
        topic_ids: Iterable[str],
        msg_forwarder: Any,
        origin: Any,
        msg_id: bytes | None = None,
    ) -> Iterator[Any]:
        topic_ids = list(topic_ids)
        peers = set(super()._get_peers_to_send(topic_ids, msg_forwarder, origin, msg_id))
        pubsub = self.pubsub
        if self.flood_publish and pubsub is not None and origin == pubsub.my_id:
            for topic in topic_ids:
                for peer in pubsub.peer_topics.get(topic, ()):
                    if self.scorer is None or self.scorer.allow_publish(peer, [topic]):
                        peers.add(peer)
            peers.discard(origin)
        yield from peers


def build_pubsub(
    host: Any, params: GossipParams, app_score: AppScoreFn | None = None
) -> tuple[Pubsub, RecordGossipSub]:
    """A GossipSub router inside a strictly signing Pubsub with our message IDs."""
    router = RecordGossipSub(
        flood_publish=params.flood_publish,
        gossip_lazy=params.gossip_lazy,
        protocols=[PROTOCOL_ID_V11, PROTOCOL_ID],
        degree=params.degree,
        degree_low=params.degree_low,
        degree_high=params.degree_high,
        heartbeat_interval=params.heartbeat_interval_s,
        score_params=score_params(app_score),
        max_messages_per_topic_per_second=params.max_messages_per_peer_per_topic_s,
        max_pending_messages_per_peer=params.max_pending_messages_per_peer,
        eclipse_protection_enabled=params.eclipse_protection,
        # Fixed mesh bounds: py-libp2p's adaptive gossip moves D_lo/D_hi with its own
        # health estimate, which would make the documented degrees untrue.
        adaptive_gossip_enabled=False,
        prune_back_off=params.prune_backoff_s,
    )
    pubsub = Pubsub(
        host,
        router,
        strict_signing=True,
        msg_id_constructor=message_id,
        seen_ttl=params.seen_ttl_s,
        validation_timeout=params.validation_timeout_s,
        allowed_topics=frozenset(TOPICS.values()),
    )
    return pubsub, router


def install_validators(pubsub: Pubsub, accept: AcceptFn) -> None:
    """Register ``accept`` as the validator of every record topic."""
    for topic in TOPICS.values():

        def validator(forwarder: Any, msg: Any, topic: str = topic) -> bool:
            return accept(bytes(msg.data), topic, forwarder.to_base58())

        pubsub.set_topic_validator(topic, validator, is_async_validator=False)
