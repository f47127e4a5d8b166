"""GossipSub set-up for record families: validators, content IDs, scoring.

Every topic gets a synchronous validator that hands the message data to a ``judge``
callable (the node's record pipeline: decode, validate, store), whose verdict is GossipSub
v1.1's: ACCEPT forwards the message; REJECT drops it and costs the forwarding peer gossip
score (P4); IGNORE drops it and blames nobody (an honest race, or our own failure; see
:class:`repp2p.net.libp2p_compat.RecordPubsub`). The score's application hook is where
reputation feeds in.

Message IDs are content-addressed: ``sha256(data)`` (raw 32 bytes), so the same record
published by two peers is one message, and any implementation can compute the ID.

GossipSub v1.2 is not offered: its IDONTWANT sends one control RPC per mesh peer for every
message received, pure overhead for our sub-kilobyte records. v1.1 interoperates with
go/js/rust peers. The router itself, with its fixes of py-libp2p, is
:class:`repp2p.net.libp2p_compat.RecordGossipSub`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11
from libp2p.pubsub.score import ScoreParams

from repp2p.net.libp2p_compat import RecordGossipSub, RecordPubsub, invalid_messages_penalty
from repp2p.net.params import GossipParams
from repp2p.net.topics import TOPICS
from repp2p.net.verdict import Verdict

#: judge(data, topic, forwarder_peer_id_str) -> verdict
JudgeFn = Callable[[bytes, str, str], Verdict]
#: application score of a peer (reputation), roughly in [-1, 1]
AppScoreFn = Callable[[str], float]


def message_id(msg: Any) -> bytes:
    """Content-addressed message ID: SHA-256 of the message data."""
    return hashlib.sha256(msg.data).digest()


def score_params(app_score: AppScoreFn | None) -> ScoreParams:
    """Peer-score parameters: invalid records cost score; reputation is the P6 hook.

    Each invalid (REJECTed) record costs its forwarder 10 points (decaying x0.99 per
    heartbeat), so one sending junk is below the publish threshold (-50) after six, and its
    messages are dropped before they reach our validator. IGNOREd records cost nothing.

    Behaviour penalties (GRAFT during back-off and the like) decay (x0.95 per 1 s
    heartbeat) above a threshold of 10: py-libp2p's default never decays them, and the
    GRAFT/PRUNE races of a network settling after trimming cost honest peers 10 points
    each, for good, until whole nodes sat below the gossip and graylist thresholds. A
    peer that keeps flooding GRAFTs still accumulates (measurements:
    docs/design-notes.md, "Scoring").
    """
    return ScoreParams(
        p4_invalid_messages=invalid_messages_penalty(10.0, cap=1000.0, decay=0.99),
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


def build_pubsub(
    host: Any, params: GossipParams, app_score: AppScoreFn | None = None
) -> tuple[RecordPubsub, RecordGossipSub]:
    """A GossipSub router inside a strictly signing Pubsub with our message IDs, whose
    validators may IGNORE (:class:`RecordPubsub`).

    Args:
        host: a host from :func:`repp2p.net.host.build_host` (which patched py-libp2p).
        params: the gossip settings.
        app_score: the application score of a peer (reputation), if any.

    Returns:
        ``(pubsub, router)``; run both as services (``background_trio_service``).
    """
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
    pubsub = RecordPubsub(
        host,
        router,
        strict_signing=True,
        msg_id_constructor=message_id,
        seen_ttl=params.seen_ttl_s,
        validation_timeout=params.validation_timeout_s,
        allowed_topics=frozenset(TOPICS.values()),
    )
    return pubsub, router


def install_validators(pubsub: RecordPubsub, judge: JudgeFn) -> None:
    """Register ``judge`` as the validator of every record topic.

    ACCEPT forwards the message, REJECT drops it and penalises the forwarder (P4), IGNORE
    drops it without a penalty (:meth:`RecordPubsub.set_topic_judge`).
    """
    for topic in TOPICS.values():

        def validator(forwarder: Any, msg: Any, topic: str = topic) -> Verdict:
            return judge(bytes(msg.data), topic, forwarder.to_base58())

        pubsub.set_topic_judge(topic, validator)
