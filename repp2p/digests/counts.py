"""Count rows: an epoch's reconciled pairs in the shape reputation folds.

Reputation computed from aggregates needs, per ``(client, node, epoch)``, how many of the
client's verdicts on the node count, and how many are only one side's word.
:func:`count_rows` turns a :class:`~repp2p.digests.Reconciliation` into exactly that:

* ``ok``, ``wrong``, ``timeout``, ``bad_proof``: the verdicts both digests support (double
  entry, :mod:`repp2p.digests.reconcile`), ``latency_sum_ms`` over them;
* ``disputed_client``: verdicts the client reported that the node's digest does not back
  (with ``node_silent``, the node published nothing covering the pair: a node that went
  silent without claiming; views may weigh these by the client's trust);
* ``disputed_node``: claims of the node the client's digest does not account for;
* ``node_claims``, ``node_receipts``: what the node's own row reports (its throughput);
* ``node_refused``: claims the node's row reports refused for the client's own input
  (out of its throughput, against the client's credibility, as in the records view).

Rows with nothing in them are left out, and signers whose digests of the epoch conflict
(``Reconciliation.conflicted``) have already been treated as silent by ``reconcile``.
Views fold them once per epoch (:class:`repp2p.reputation.pairs.PairState`, with
``reputation_source = "digests"``).

Pure: no I/O, no clock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from repp2p.digests.reconcile import PairRow, Reconciliation


@dataclasses.dataclass(frozen=True, order=True)
class CountRow:
    """What one epoch's digests say about one (client, node) pair, ready to fold.

    Ordered by ``(epoch, client, node)``, the order :func:`count_rows` returns.
    """

    epoch: int
    client: str
    node: str
    ok: int
    wrong: int
    timeout: int
    bad_proof: int
    latency_sum_ms: int
    disputed_client: int
    disputed_node: int
    node_silent: bool
    client_silent: bool
    node_claims: int = 0
    node_receipts: int = 0
    node_refused: int = 0

    @property
    def counted(self) -> int:
        """Verdicts both sides support."""
        return self.ok + self.wrong + self.timeout + self.bad_proof

    @property
    def empty(self) -> bool:
        """Nothing counted, nothing disputed and nothing refused."""
        return not (self.counted or self.disputed_client or self.disputed_node or self.node_refused)


def count_row(pair: PairRow) -> CountRow:
    """The count row of one reconciled pair."""
    return CountRow(
        epoch=pair.epoch,
        client=pair.client,
        node=pair.node,
        ok=pair.ok,
        wrong=pair.wrong,
        timeout=pair.timeout,
        bad_proof=pair.bad_proof,
        latency_sum_ms=pair.latency_sum_ms,
        disputed_client=pair.disputed_client,
        disputed_node=pair.disputed_node,
        node_silent=not pair.node_covered,
        client_silent=not pair.client_covered,
        node_claims=pair.node_claims,
        node_receipts=pair.node_receipts,
        node_refused=pair.node_refused,
    )


def count_rows(reconciliations: Reconciliation | Iterable[Reconciliation]) -> tuple[CountRow, ...]:
    """The non-empty count rows of one or several epochs' reconciliations, sorted by
    ``(epoch, client, node)``; the same whatever order the epochs come in.

    Raises:
        ValueError: two reconciliations of the same epoch (an epoch is folded once).
    """
    recons = (
        [reconciliations] if isinstance(reconciliations, Reconciliation) else list(reconciliations)
    )
    epochs = [r.epoch for r in recons]
    if len(set(epochs)) != len(epochs):
        raise ValueError("an epoch's reconciliation given twice")
    rows = (count_row(pair) for recon in recons for pair in recon.pairs)
    return tuple(sorted(row for row in rows if not row.empty))


__all__ = ["CountRow", "count_row", "count_rows"]
