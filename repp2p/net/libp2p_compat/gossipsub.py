"""py-libp2p 0.8.1's GossipSub router with the fixes our network needed.

Why each fix matters, with its measurements: docs/design-notes.md, "GossipSub router".

Subclassing, not patching: only routers built as :class:`RecordGossipSub` change. The
methods overridden here are private py-libp2p methods its heartbeat and publish path call;
``install()`` checks they still exist with the same parameters, and the canary tests check
py-libp2p still calls them.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.mcache import CacheEntry, MessageCache, default_msg_id_fn
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub

from repp2p.net.libp2p_compat.guard import Expect
from repp2p.net.libp2p_compat.hooks import count

#: go-libp2p's opportunistic grafting: how often (heartbeats), below which median mesh
#: score, and how many peers at most (see RecordGossipSub._perform_opportunistic_grafting)
OPPORTUNISTIC_GRAFT_TICKS = 60
OPPORTUNISTIC_GRAFT_THRESHOLD = 1.0
OPPORTUNISTIC_GRAFT_PEERS = 2
#: every this many heartbeats each mesh link is confirmed with a GRAFT (idempotent)
MESH_REFRESH_TICKS = 30


class ContentIdMessageCache(MessageCache):
    """The gossip message cache keyed by the Pubsub's message ID.

    py-libp2p 0.8.1 keys its cache by ``from + seqno`` whatever ``msg_id_constructor``
    the Pubsub uses, so the IHAVE it sends name IDs that no receiver's seen-cache (keyed
    by the real message ID) holds: every IHAVE drew an IWANT and a full retransmission of
    a message the peer already had.

    Args:
        window_size: heartbeats of history advertised in IHAVE.
        history_size: heartbeats of history kept.
        msg_id: the message ID function (the Pubsub's).
    """

    def __init__(self, window_size: int, history_size: int, msg_id: Callable[[Any], bytes]) -> None:
        super().__init__(window_size, history_size)
        self._msg_id = msg_id

    def put(self, msg: Any) -> None:
        """Cache ``msg`` under its message ID (py-libp2p's ``MessageCache.put``)."""
        count("MessageCache.put")
        mid = self._msg_id(msg)
        if mid in self.msgs:
            return
        self.msgs[mid] = msg
        self.history[0].append(CacheEntry(mid, msg.topicIDs))


class RecordGossipSub(GossipSub):
    """py-libp2p's GossipSub with go-libp2p's behaviour where py-libp2p's hurt us.

    * go-libp2p's flood publishing of our own messages: a message this peer originates
      goes to its mesh and also to every other connected peer subscribed to the topic
      whose score is above the publish threshold (``flood_publish``); forwarded messages
      still follow the mesh only.
    * a message cache keyed by the Pubsub's message ID (:class:`ContentIdMessageCache`).
    * go-libp2p's mesh pruning: keep the best-scoring two thirds of D, prune the rest at
      random (graylisted peers first). py-libp2p prunes the lowest scores, and since the
      score carries reputation (P6), every peer pruned the same low-reputation nodes
      (a bootstrap serving no engines, a newcomer): they were left in no mesh at all and
      got records only from IHAVE gossip, late. Reputation should rank work, not cut a
      node off the gossip. The per-heartbeat replacement of the worst mesh peer is
      limited the same way.
    * a configurable D_lazy (``gossip_lazy``).
    * heartbeat control messages built per peer (py-libp2p sent each peer the GRAFTs and
      PRUNEs of the peers before it), GRAFTs only to reachable peers, and mesh links
      re-confirmed every 30 heartbeats (:meth:`_emit_control_msgs`).
    * go-libp2p's opportunistic grafting (once a minute, only for a poorly scoring mesh):
      py-libp2p's ran at every heartbeat and kept every mesh churning.

    Args:
        *args: py-libp2p's ``GossipSub`` arguments.
        flood_publish: send our own messages beyond the mesh (see above).
        gossip_lazy: D_lazy, the fewest peers sent IHAVE per topic and heartbeat.
        **kwargs: py-libp2p's ``GossipSub`` keyword arguments.
    """

    def __init__(
        self, *args: Any, flood_publish: bool = True, gossip_lazy: int = 6, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.flood_publish = flood_publish
        self.gossip_lazy = gossip_lazy
        self.mcache = ContentIdMessageCache(
            self.mcache.window_size, self.mcache.history_size, self._message_id
        )
        self._graft_ticks: dict[str, int] = {}
        self._heartbeats = 0

    def _message_id(self, msg: Any) -> bytes:
        # The seen-cache key: whatever msg_id_constructor the attached Pubsub uses.
        pubsub: Pubsub | None = self.pubsub
        return pubsub.get_message_id(msg) if pubsub is not None else default_msg_id_fn(msg)

    def _select_peers_for_pruning(self, topic: str, num_to_prune: int) -> list[Any]:
        count("GossipSub._select_peers_for_pruning")
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
        count("GossipSub._consider_peer_replacement")
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
        so on: peers dropped us from meshes we kept them in (one-sided links: a node could
        be in none of its mesh peers' meshes and get records only by IHAVE gossip, late).
        Also here:

        * a GRAFT to a peer we have no send queue for yet (its stream is still opening)
          would be dropped without a word: the peer leaves our mesh again, and the next
          heartbeat grafts whoever is reachable;
        * every MESH_REFRESH_TICKS heartbeats each mesh peer gets a GRAFT for the topics
          we mesh it in. GRAFT is idempotent for a peer that has us already; one that had
          dropped us (any lost control message) takes us back or answers PRUNE.

        Args:
            peers_to_graft: topics to GRAFT, per peer.
            peers_to_prune: topics to PRUNE, per peer.
            peers_to_gossip: message IDs to advertise (IHAVE), per peer and topic.
        """
        count("GossipSub._emit_control_msgs")
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
        # (py-libp2p fixes it at 6).
        count("GossipSub._get_adaptive_gossip_peers_count")
        return max(self.gossip_lazy, int(total_peers * 0.25))

    def _perform_opportunistic_grafting(self, topic: str, peers_to_graft: Any) -> int:
        # py-libp2p runs its "enhanced" opportunistic grafting at every heartbeat for every
        # topic and grafts up to 2 peers whenever their score reaches half the mesh median:
        # with equal scores that is always. Meshes grew past D_hi, were pruned back, and
        # grew again, each GRAFT and PRUNE an RPC (measurements: docs/design-notes.md,
        # "GossipSub router"). go-libp2p's rule instead: every OPPORTUNISTIC_GRAFT_TICKS
        # heartbeats, only when the mesh's median score is below
        # OPPORTUNISTIC_GRAFT_THRESHOLD, graft up to 2 peers scoring above it.
        count("GossipSub._perform_opportunistic_grafting")
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
        # py-libp2p's mesh (or fanout) peers, plus, for our own messages, flood publishing.
        count("GossipSub._get_peers_to_send")
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


#: py-libp2p methods RecordGossipSub overrides (py-libp2p must call them with these
#: parameters) or calls, and the cache method ContentIdMessageCache replaces.
EXPECTS: tuple[Expect, ...] = (
    Expect(GossipSub, "_select_peers_for_pruning", "self, topic, num_to_prune"),
    Expect(GossipSub, "_consider_peer_replacement", "self, topic"),
    Expect(
        GossipSub, "_emit_control_msgs", "self, peers_to_graft, peers_to_prune, peers_to_gossip"
    ),
    Expect(GossipSub, "_get_adaptive_gossip_peers_count", "self, topic, total_peers"),
    Expect(GossipSub, "_perform_opportunistic_grafting", "self, topic, peers_to_graft"),
    Expect(GossipSub, "_get_peers_to_send", "self, topic_ids, msg_forwarder, origin, msg_id"),
    Expect(
        GossipSub, "pack_control_msgs", "self, ihave_msgs, graft_msgs, prune_msgs, idontwant_msgs"
    ),
    Expect(GossipSub, "emit_control_message", "self, control_msg, to_peer"),
    Expect(GossipSub, "_check_back_off", "self, peer, topic"),
    Expect(GossipSub, "_notify_mesh_peer_added", "self, peer_id, topic"),
    Expect(MessageCache, "__init__", "self, window_size, history_size"),
    Expect(MessageCache, "put", "self, msg"),
    Expect(CacheEntry, "__init__", "self, mid, topics"),
    Expect(Pubsub, "get_message_id", "self, msg"),
)

#: names under which RecordGossipSub's and ContentIdMessageCache's calls are counted
HOOKS: tuple[str, ...] = (
    "GossipSub._select_peers_for_pruning",
    "GossipSub._consider_peer_replacement",
    "GossipSub._emit_control_msgs",
    "GossipSub._get_adaptive_gossip_peers_count",
    "GossipSub._perform_opportunistic_grafting",
    "GossipSub._get_peers_to_send",
    "MessageCache.put",
)
