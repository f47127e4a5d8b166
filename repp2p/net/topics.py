"""GossipSub topics: one per record family, ``/repp2p/1/<family>``.

Each message's data is exactly one encoded record (``repp2p.records.encode``), so any libp2p
implementation can read it. A record published on the wrong family's topic is invalid. The
one exception is the ``proofs`` family: each message is one canonical CBOR proof
(``repp2p.digests.disputes``), not a record.
"""

from __future__ import annotations

from repp2p.records import (
    Attestation,
    Claim,
    Feedback,
    FeedbackDigest,
    Heartbeat,
    NodeAd,
    Receipt,
    Refusal,
    TaskOffer,
    WorkDigest,
)

TOPIC_PREFIX = "/repp2p/1/"
#: The family whose messages are proofs, not records: dispute proofs
#: (repp2p.digests.disputes), on a network whose views come from digests.
PROOFS_FAMILY = "proofs"

#: family -> record types carried on its topic. Receipts travel with the task lifecycle.
#: ``digests``: the per-epoch WorkDigest and FeedbackDigest, global by design
#: (docs/digests.md): each party's once its epoch is sealed (repp2p.node.digests).
FAMILIES: dict[str, tuple[str, ...]] = {
    "ads": (NodeAd.TYPE,),
    "attestations": (Attestation.TYPE,),
    "heartbeats": (Heartbeat.TYPE,),
    "tasks": (TaskOffer.TYPE, Receipt.TYPE, Refusal.TYPE),
    "claims": (Claim.TYPE,),
    "feedback": (Feedback.TYPE,),
    "digests": (WorkDigest.TYPE, FeedbackDigest.TYPE),
    # no record type: proofs (canonical CBOR maps with a ``kind``) that carry other
    # parties' signed records, judged by repp2p.node.disputes (docs/digests.md)
    PROOFS_FAMILY: (),
}

TOPICS: dict[str, str] = {family: TOPIC_PREFIX + family for family in FAMILIES}
#: The families every peer subscribes to when views come from digests (repp2p.node.light:
#: per-task records stay with their parties): what matching needs, and the digests.
LIGHT_FAMILIES: tuple[str, ...] = ("ads", "attestations", "heartbeats", "digests", PROOFS_FAMILY)
_FAMILY_OF_TYPE = {t: family for family, types in FAMILIES.items() for t in types}
_FAMILY_OF_TOPIC = {topic: family for family, topic in TOPICS.items()}


def subscribed_topics(*, light: bool) -> tuple[str, ...]:
    """The topics a peer subscribes to: every family, or :data:`LIGHT_FAMILIES` for a peer
    that holds only its own tasks (any peer of a network whose views come from digests,
    ``repp2p.node.light``)."""
    families = LIGHT_FAMILIES if light else tuple(FAMILIES)
    return tuple(TOPICS[f] for f in families)


def topic_for(record_type: str) -> str:
    """The topic a record of ``record_type`` is published on."""
    return TOPICS[_FAMILY_OF_TYPE[record_type]]


def family_of_topic(topic: str) -> str | None:
    """The family of one of our topics, or None for a foreign topic."""
    return _FAMILY_OF_TOPIC.get(topic)


def topic_accepts(topic: str, record_type: str) -> bool:
    """True when ``record_type`` belongs on ``topic``."""
    family = _FAMILY_OF_TOPIC.get(topic)
    return family is not None and record_type in FAMILIES[family]
