"""Who holds which per-task records on a network whose views come from digests.

When the network's views are built from digests (``NetworkParams.reputation_source =
"digests"``), a view needs the node records (ads, attestations, heartbeats) and the
per-epoch digests, and nothing of the tasks of others. Per-task records (offers, claims,
receipts, feedback, refusals) then stay with their *parties* (:func:`tasks_stay_with_parties`):
the client that signed the offer and the nodes that claimed it (or refused its input).
Every peer of such a network, full node and light client alike:

* subscribes to the node-record and digest topics only
  (:func:`repp2p.net.topics.subscribed_topics`), not to the per-task families, and
  publishes no per-task record by gossip (:class:`repp2p.node.publisher.RecordPublisher`);
* neither follows nor serves per-task feeds (``/repp2p/feed/1``);
* keeps, of the per-task records that still reach it by the record pipeline (sync, or a
  peer's mistake), only those of tasks it took part in (:func:`own_tasks_only`); the rest
  is ignored, not rejected (a records-network peer holds and forwards them honestly);
* serves a per-task record over ``/repp2p/sync/1`` only to a party of its task
  (:func:`served_to`).

What a party receives over ``/repp2p/task/1`` directly (an offer with its request, the
owner's releases, the feedback a client hands over on a task the node claimed) is stored
as before: that is how the parties get each other's records.

With ``reputation_source = "records"`` a view is computed from every task's records, so
every peer needs them to agree with the others' rankings: the feeds, topics and sync carry
them as before (:func:`holds_only_own_tasks` is False for every role).
"""

from __future__ import annotations

from collections.abc import Callable

from repp2p.network_params import NetworkParams
from repp2p.records import FEED_TYPES, Claim, Refusal, SignedRecord, TaskOffer
from repp2p.store import RecordStoreAPI


def tasks_stay_with_parties(params: NetworkParams) -> bool:
    """True when per-task records stay with their parties (views come from digests)."""
    return params.reputation_source == "digests"


def holds_only_own_tasks(role: str, params: NetworkParams) -> bool:
    """True for every peer (``role`` ``"full"`` or ``"client"``) of a network whose views
    come from digests: it holds only the per-task records of tasks it took part in."""
    del role  # full nodes and light clients alike
    return tasks_stay_with_parties(params)


def is_party(store: RecordStoreAPI, peer: str, task_id: bytes) -> bool:
    """True when ``store`` shows ``peer`` took part in task ``task_id``: it signed the
    task's offer, a claim on it, or a refusal of its input (indexed look-ups by slot)."""
    for record_type in (TaskOffer.TYPE, Claim.TYPE, Refusal.TYPE):
        if store.query(type=record_type, signer=peer, slot=task_id, limit=1):
            return True
    return False


def own_tasks_only(store: RecordStoreAPI, me: str) -> Callable[[SignedRecord], bool]:
    """The record pipeline's ``keep`` check of a peer that holds only its own tasks: every
    record that is not a per-task record, the per-task records ``me`` signed, and the
    records of a task ``me`` took part in (:func:`is_party`: our own offer, claim or
    refusal is stored before anyone else's record of the task can reach us)."""

    def keep(signed: SignedRecord) -> bool:
        if signed.type not in FEED_TYPES or signed.signer == me:
            return True
        return is_party(store, me, signed.record.task_id)  # type: ignore[attr-defined]

    return keep


def served_to(store: RecordStoreAPI) -> Callable[[SignedRecord, str | None], bool]:
    """The sync server's check of whether to send ``signed`` to ``peer``: every record that
    is not a per-task record; a per-task record only to its signer or another party of its
    task (:func:`is_party`). An unknown peer (None) gets no per-task record."""

    def serves(signed: SignedRecord, peer: str | None) -> bool:
        if signed.type not in FEED_TYPES:
            return True
        if peer is None:
            return False
        return signed.signer == peer or is_party(store, peer, signed.record.task_id)  # type: ignore[attr-defined]

    return serves


__all__ = [
    "holds_only_own_tasks",
    "is_party",
    "own_tasks_only",
    "served_to",
    "tasks_stay_with_parties",
]
