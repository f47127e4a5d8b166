"""py-libp2p 0.8.1's peer-score sign conventions, in one place.

The gossipsub v1.1 spec (and go-libp2p) give P4, the invalid-message counter, a *negative*
weight that is added. py-libp2p's ``PeerScorer.topic_score`` instead *subtracts*
``weight * count``: a spec-style weight of -10 made every invalid record *raise* its
forwarder's score by 10, so junk was never gated (measurements: docs/design-notes.md,
"Scoring"). P5 (behaviour penalty) is subtracted too,
with a positive weight; P6 (application score) is added with a positive weight, as in
the spec.
"""

from __future__ import annotations

from libp2p.peer.id import ID
from libp2p.pubsub.score import PeerScorer, ScoreParams, TopicScoreParams

from repp2p.net.libp2p_compat.guard import Expect, incompatible


def invalid_messages_penalty(points: float, *, cap: float, decay: float) -> TopicScoreParams:
    """P4 parameters under which each invalid message costs its forwarder ``points``.

    Args:
        points: score lost per invalid message (positive).
        cap: the most invalid messages counted.
        decay: factor the count is multiplied by at each heartbeat.

    Returns:
        py-libp2p's ``TopicScoreParams`` with the weight in its sign convention.

    Raises:
        ValueError: ``points`` is not positive (that would reward invalid messages).
    """
    if not points > 0:
        raise ValueError(f"an invalid message must cost points, got {points!r}")
    return TopicScoreParams(weight=points, cap=cap, decay=decay)


def check_sign_convention() -> None:
    """Check that py-libp2p's scorer still lowers a score for an invalid message under
    :func:`invalid_messages_penalty` (were upstream to adopt the spec's convention, our
    weights would reward junk again).

    Raises:
        UnsupportedLibp2pError: one invalid message does not cost exactly the points.
    """
    scorer = PeerScorer(
        ScoreParams(p4_invalid_messages=invalid_messages_penalty(1.0, cap=10.0, decay=1.0))
    )
    peer, topic = ID(b"sign-check"), "sign-check"
    scorer.on_invalid_message(peer, topic)
    if scorer.topic_score(peer, topic) != -1.0:
        raise incompatible("PeerScorer no longer subtracts the P4 weight (score sign flipped)")


EXPECTS: tuple[Expect, ...] = (
    Expect(PeerScorer, "topic_score", "self, peer, topic"),
    Expect(PeerScorer, "on_invalid_message", "self, peer, topic"),
)
