"""Work from digest rows: the ledger's ``work`` column from reconciled ``PairRow``s
(docs/ledger.md, "Settling from digests").

Per-record settlement counts, per node, the receipts it produced for offers of the epoch
that are *backed* (an ``ok`` from the task's owner, or another claimant's agreeing
receipt) and not proven wrong, from a node whose attestation verified and who never
equivocated; an ``ok`` counts only from a client with EigenTrust > 0 when
``feedback_needs_trust``. From digests the same rule reads one number per pair: the pair
row's ``ok``, the client's accepted results that the node's own digest backs with
receipts (double entry: ``ok <= receipts - wrong - bad_proof``). The other inputs of
:func:`~repp2p.ledger.settle` (quality, penalties, slashes) are unchanged, so the two paths
pay the same on an honest history.

Where they differ, by design: a receipt backed only by redundancy agreement, whose client
then published no ``ok`` for it, earns under per-record rules but not from digests (honest
clients publish their verdicts); a ``wrong`` verdict the node's digest cannot carry is
``disputed``, never counted against it.

A receipt that lost a confident dispute (``ReputationTable.receipt_lost``) is no work on
either path: per record it is never counted; from digests a pair's ``ok`` counts at most
the node's receipts for that client that did not lose one (``lost``). A client's own
verdict usually already says ``wrong`` on them, but one whose view differed (its standings
at the task's epoch, or a client colluding with the node) may have said ``ok``.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import numpy as np

from repp2p.digests import Reconciliation
from repp2p.reputation import Evidence


def digest_work_units(
    reconciliation: Reconciliation,
    evidence: Evidence,
    *,
    client_trust: np.ndarray | None = None,
    lost: np.ndarray | None = None,
) -> np.ndarray:
    """Backed results per peer of the reconciled epoch (int64, index = ``evidence.peers``).

    Args:
        reconciliation: the epoch's pair rows (:func:`repp2p.digests.reconcile`).
        evidence: the per-peer columns (``verified``, ``failed``, ``equivocated``) and the
            peer index, as :func:`~repp2p.ledger.work_units` reads them.
        client_trust: per-peer EigenTrust; when given, a pair's ``ok`` counts only if its
            client's trust is > 0.
        lost: per receipt row of ``evidence``, the receipt lost a confident dispute
            (``ReputationTable.receipt_lost``, computed on ``evidence``); a pair's ``ok``
            then counts at most ``node_receipts`` minus the pair's lost receipts for offers
            of the reconciled epoch. None (or a column of another length): no cap.

    Returns:
        The work column :func:`~repp2p.ledger.settle` takes as ``work``.
    """
    ev = evidence
    index = {peer: i for i, peer in enumerate(ev.peers)}
    work = np.zeros(ev.n_peers, np.int64)
    lost_by_pair = _lost_by_pair(reconciliation.epoch, ev, lost)
    for row in reconciliation.pairs:
        node, client = index.get(row.node), index.get(row.client)
        if node is None or row.ok <= 0 or row.client == row.node:
            continue
        if not ev.verified[node] or ev.failed[node] or ev.equivocated[node]:
            continue
        if client is not None and ev.equivocated[client]:
            continue
        if client_trust is not None and (client is None or client_trust[client] <= 0.0):
            continue
        ok = row.ok
        n_lost = lost_by_pair.get((client, node), 0) if client is not None else 0
        if n_lost:
            ok = min(ok, max(0, row.node_receipts - n_lost))
        work[node] += ok
    return work


def _lost_by_pair(epoch: int, ev: Evidence, lost: np.ndarray | None) -> dict[tuple[int, int], int]:
    """``(client index, node index) -> receipts that lost a dispute`` for offers of
    ``epoch`` (empty without a ``lost`` column of the evidence's receipt rows)."""
    if lost is None or len(lost) != len(ev.receipt_node) or not len(lost):
        return {}
    rows = np.flatnonzero(np.asarray(lost, bool) & (ev.offer_epoch[ev.receipt_offer] == epoch))
    out: dict[tuple[int, int], int] = {}
    for i in rows:
        key = (int(ev.offer_client[ev.receipt_offer[i]]), int(ev.receipt_node[i]))
        out[key] = out.get(key, 0) + 1
    return out


__all__ = ["digest_work_units"]
