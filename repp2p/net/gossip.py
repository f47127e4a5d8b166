"""GossipSub set-up for record families: validators, content IDs, scoring.

Every topic gets a synchronous validator that hands the message data to an ``accept``
callable (the node's record pipeline: decode, validate, store). A message is forwarded only
when ``accept`` says so; an invalid record counts against the forwarding peer's gossip score
(py-libp2p's P4 counter), and the score's application hook is where reputation feeds in.

Message IDs are content-addressed: ``sha256(data)`` (raw 32 bytes), so the same record
published by two peers is one message, and any implementation can compute the ID.

Two measured CPU costs of py-libp2p 0.8.1 are cut here (profiles of a 9-process devnet
showed nodes saturated by gossip control traffic):

* GossipSub v1.2 is not offered: its IDONTWANT sends one control RPC per mesh peer for every
  message received, pure overhead for our sub-kilobyte records. v1.1 interoperates with
  go/js/rust peers.
* Every RPC carries the sender's signed peer record, and py-libp2p verifies its Ed25519
  signature on every RPC. We remember the exact envelope bytes already accepted from a peer
  and skip re-verifying identical bytes (a changed record is verified as before).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import libp2p.pubsub.gossipsub as _gossipsub_module
import libp2p.pubsub.pubsub as _pubsub_module
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.mcache import CacheEntry, MessageCache
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.score import ScoreParams, TopicScoreParams

from repp2p.net.params import GossipParams
from repp2p.net.topics import TOPICS

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


# Both modules bound the function at import: patch each binding.
_gossipsub_module.maybe_consume_signed_record = _consume_signed_record_once
_pubsub_module.maybe_consume_signed_record = _consume_signed_record_once


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

    Behaviour-penalty decay is in :func:`score_params`.
    """

    def __init__(self, *args: Any, flood_publish: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flood_publish = flood_publish
        self.mcache = ContentIdMessageCache(self.mcache.window_size, self.mcache.history_size)

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
