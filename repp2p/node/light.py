"""What a light client holds: digests and what matching needs, not other people's tasks.

A light client (``role = "client"``) matches tasks to nodes on its own view. When the
network's views are built from digests (``NetworkParams.reputation_source = "digests"``),
that view needs the node records (ads, attestations, heartbeats) and the per-epoch digests,
and nothing of the tasks of other clients. Such a client then:

* subscribes to the node-record and digest topics only
  (:func:`repp2p.net.topics.subscribed_topics`), not to the per-task families;
* does not follow other peers' per-task feeds (``/repp2p/feed/1``);
* keeps, of the per-task records that still reach it (by sync, or a peer's mistake), only
  its own tasks' (:func:`own_tasks_only`): its offers and feedback, and the claims and
  receipts of tasks whose offer it signed. The rest is ignored, not rejected: an honest
  full node holds and forwards them.

With ``reputation_source = "records"`` a view is computed from every task's records, so a
light client needs them to agree with the nodes' rankings; it follows the feeds as a full
node does (:func:`holds_only_own_tasks` is False).
"""

from __future__ import annotations

from collections.abc import Callable

from repp2p.network_params import NetworkParams
from repp2p.records import FEED_TYPES, Claim, Receipt, SignedRecord, TaskOffer
from repp2p.store import RecordStoreAPI


def holds_only_own_tasks(role: str, params: NetworkParams) -> bool:
    """True for a light client of a network whose views come from digests."""
    return role == "client" and params.reputation_source == "digests"


def own_tasks_only(store: RecordStoreAPI, me: str) -> Callable[[SignedRecord], bool]:
    """The record pipeline's ``keep`` check of a light client: every record that is not a
    per-task record, the per-task records ``me`` signed, and the claims and receipts of a
    task whose offer ``me`` signed (looked up in ``store``, where our own offer is stored
    before any node can claim it)."""

    def keep(signed: SignedRecord) -> bool:
        if signed.type not in FEED_TYPES or signed.signer == me:
            return True
        rec = signed.record
        if isinstance(rec, Claim | Receipt):
            return bool(store.query(type=TaskOffer.TYPE, signer=me, slot=rec.task_id, limit=1))
        return False

    return keep


__all__ = ["holds_only_own_tasks", "own_tasks_only"]
