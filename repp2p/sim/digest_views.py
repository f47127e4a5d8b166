"""Views from digests in the simulator (``reputation_source = "digests"``, issue 14).

A live network with ``reputation_source = "digests"`` never reads per-task records to
score nodes: each sealed epoch's WorkDigests and FeedbackDigests are reconciled into one
count row per (client, node) pair (double entry, :mod:`repp2p.digests.reconcile`), folded
once into a :class:`~repp2p.reputation.pairs.PairState` at ``digest_lag``, and every view
runs :func:`~repp2p.reputation.pairs.compute_pairs` over the window's folded rows
(:meth:`repp2p.viewer.ViewKeeper._view_from_digests`). This module gives the simulator that
path, with the core's functions:

* :func:`reconcile_epoch`: the :class:`~repp2p.digests.Reconciliation` of one simulated
  epoch, i.e. what both sides' digests of it report. A node's work row for a client counts
  the claims and receipts it made on that client's tasks of the epoch (replicas included;
  the rest are timeouts); a client's feedback row for a node counts its ``ok`` /
  ``wrong`` / ``timeout`` verdicts and their latency sum. Honest parties report
  truthfully; a node of a group with ``digest_fault = f`` reports ``ceil(f * claims)`` (at
  least one) of its undelivered tasks of each row as delivered (misreported leaves: more receipts, a
  better throughput, exactly what audits of its leaves would catch). The double-entry
  rule is the core's :func:`~repp2p.digests.reconcile.count_pair`, per pair; what the
  rows are built from is the only simulated part (no signatures, no Merkle trees).
* :class:`DigestViews`: the keeper's fold-and-view sequence: fold each epoch of the
  window once (``count_rows`` of its reconciliation), prune, ``window``, ``widen``,
  ``compute_pairs``, ``View.from_evidence`` with the folded epochs' digest-ID hashes and
  the recent demand of the newest folded epochs. Disputes: the evidence passed to
  ``compute_pairs`` carries the offers and receipts of the disputed tasks only (on a
  digest network they travel individually, as proofs).

Every party publishes its digests of every epoch (no silent parties; offline nodes
publish nothing because they claimed nothing). A digest's record ID is stood for by a hash
of its party, epoch and rows.

Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import cbor2
import numpy as np

from repp2p.digests import Reconciliation, count_rows
from repp2p.digests.disputes import DisputeTiming, replica_claims
from repp2p.digests.reconcile import PairRow, count_pair
from repp2p.matching import ClaimedDemand, View
from repp2p.network_params import NetworkParams
from repp2p.reputation import Evidence, PenaltyBook, ReputationTable
from repp2p.reputation.pairs import PairState, PairWindow, compute_pairs

_FB_OK, _FB_WRONG, _FB_TIMEOUT = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class _WorkSide:
    """What :func:`count_pair` reads of a node's ``WorkRow`` (the simulator's peer names
    are not peer IDs, so no real row can be built)."""

    claims: int
    receipts: int
    refused: int = 0


@dataclasses.dataclass(frozen=True)
class _FeedbackSide:
    """What :func:`count_pair` reads of a client's ``FeedbackRow``."""

    ok: int
    wrong: int
    timeout: int
    bad_proof: int = 0

    def counts(self) -> tuple[int, int, int, int]:
        return (self.ok, self.wrong, self.timeout, self.bad_proof)


def reconcile_epoch(
    epoch: int,
    client_names: Sequence[str],
    node_names: Sequence[str],
    *,
    claims: tuple[np.ndarray, np.ndarray],
    receipts: tuple[np.ndarray, np.ndarray],
    feedback: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    node_published: np.ndarray,
    digest_fault: np.ndarray,
) -> Reconciliation:
    """The reconciled pair rows of one simulated epoch (see the module docstring).

    Args:
        epoch: the epoch (its tasks' offers carry it).
        client_names, node_names: peer names by index (clients sort before nodes, each
            list sorted).
        claims: ``(client, node)`` indices per claim of a task of the epoch (replicas too).
        receipts: ``(client, node)`` per receipt.
        feedback: ``(client, node, outcome 0 ok / 1 wrong / 2 timeout, latency ms)`` per
            feedback record.
        node_published: per node, whether it publishes a work digest of the epoch (it
            claimed something or was online).
        digest_fault: per node, the share of its leaves it misreports (0: honest).

    Returns:
        The :class:`~repp2p.digests.Reconciliation`, pairs sorted by (client, node) as
        :func:`~repp2p.digests.reconcile` sorts them.
    """
    n = max(len(node_names), 1)
    cc, cn = (np.asarray(x, np.int64) for x in claims)
    rc, rn = (np.asarray(x, np.int64) for x in receipts)
    fc, fn, fout, flat = (np.asarray(x, np.int64) for x in feedback)
    # pair key client * n + node: sorted keys are sorted (client name, node name)
    keys = np.unique(np.concatenate((cc * n + cn, fc * n + fn)))
    m = len(keys)

    def per_key(k: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(np.searchsorted(keys, k), weights=weights, minlength=m)

    k_claims = per_key(cc * n + cn).astype(np.int64)
    k_receipts = per_key(rc * n + rn).astype(np.int64)
    fkey = fc * n + fn
    f_ok, f_wrong, f_timeout = (per_key(fkey[fout == x]).astype(np.int64) for x in range(3))
    f_lat = np.round(per_key(fkey, flat.astype(np.float64))).astype(np.int64)
    node = keys % n
    fault = np.asarray(digest_fault, np.float64)[node] if m else np.zeros(0)
    # a misreporting node claims "delivered" for ceil(f * claims) (at least one) of its
    # undelivered tasks, the leaves repp2p.sim.digests draws for its audits
    bad = np.where(fault > 0, np.maximum(1, np.ceil(fault * k_claims)), 0).astype(np.int64)
    k_receipts = k_receipts + np.minimum(k_claims - k_receipts, bad)
    client_published = np.zeros(len(client_names), bool)
    client_published[fc] = True
    pairs = []
    for j in range(m):
        ci, ni = int(keys[j] // n), int(node[j])
        node_covered = bool(node_published[ni])
        claimed = int(k_claims[j])
        work = _WorkSide(claimed, int(k_receipts[j])) if node_covered and claimed else None
        reported = int(f_ok[j] + f_wrong[j] + f_timeout[j])
        client_covered = bool(client_published[ci])
        fb = (
            _FeedbackSide(int(f_ok[j]), int(f_wrong[j]), int(f_timeout[j]))
            if client_covered and reported
            else None
        )
        ok, wrong, timeout, bad_proof = count_pair(work, fb)  # type: ignore[arg-type]
        counted = ok + wrong + timeout + bad_proof
        reported = reported if fb else 0
        w_claims = work.claims if work else 0
        pairs.append(
            PairRow(
                epoch=epoch,
                client=client_names[ci],
                node=node_names[ni],
                ok=ok,
                wrong=wrong,
                timeout=timeout,
                bad_proof=bad_proof,
                latency_sum_ms=int(f_lat[j]) * counted // reported if fb else 0,
                node_claims=w_claims,
                node_receipts=work.receipts if work else 0,
                client_reported=reported,
                disputed_client=reported - counted,
                disputed_node=w_claims - counted,
                node_covered=node_covered,
                client_covered=client_covered,
            )
        )
    return Reconciliation(epoch, tuple(pairs), ())


def digest_ids(recon: Reconciliation) -> list[bytes]:
    """Stand-ins for the record IDs of the digests an epoch's rows come from: one per
    publishing party, a hash of its kind, name, epoch and rows (equal rows, equal IDs)."""
    work: dict[str, list[list[Any]]] = defaultdict(list)
    feedback: dict[str, list[list[Any]]] = defaultdict(list)
    for p in recon.pairs:
        if p.node_covered and p.node_claims:
            work[p.node].append([p.client, p.node_claims, p.node_receipts])
        if p.client_covered and p.client_reported:
            feedback[p.client].append([p.node, p.client_reported, p.counted, p.latency_sum_ms])
    out = []
    for kind, parties in (("work", work), ("feedback", feedback)):
        for party in sorted(parties):
            body = cbor2.dumps([kind, party, recon.epoch, parties[party]], canonical=True)
            out.append(hashlib.sha256(b"repp2p/sim/digest-id\0" + body).digest())
    return out


class DigestViews:
    """Each epoch's view from digest count rows, as the live view keeper builds it.

    Args:
        params: the simulated network's parameters (``reputation_source = "digests"``).
    """

    def __init__(self, params: NetworkParams, *, redundancy: int = 1) -> None:
        self.params = params
        #: the redundancy of every simulated offer (the scenario's ``redundancy``): what
        #: a disputed offer's answers beyond it are replicas, left out of the demand
        self.redundancy = redundancy
        self.pairs = PairState()
        self._recons: dict[int, Reconciliation] = {}
        #: the evidence and window of the last view (for the ledger and for tests)
        self.last_evidence: Evidence | None = None
        self.last_window: PairWindow | None = None

    @property
    def digest_lag(self) -> int:
        """Epochs between a digest epoch and the first view that counts it."""
        return self.params.digest_lag

    @property
    def settle_lag(self) -> int:
        """Epochs between an epoch and its settlement from digest rows: the ledger's
        grace period, but never before the epoch's rows are folded (``digest_lag``): the
        live ledger's rule (:meth:`repp2p.ledger.LedgerParams.settle_lag`)."""
        return self.params.ledger.settle_lag(self.digest_lag)

    def digest_window(self, epoch: int) -> tuple[int, int]:
        """``(lo, hi)``: the digest epochs the view of ``epoch`` counts (the keeper's)."""
        hi = epoch - self.digest_lag
        return hi - self.params.reputation.window_epochs + 1, hi

    @property
    def dispute_lag(self) -> int:
        """The most epochs between an offer's epoch and the first view that counts a
        dispute of it (``NetworkParams.dispute_lag``)."""
        return self.params.dispute_lag

    @property
    def dispute_timing(self) -> DisputeTiming:
        """When a dispute of an offer counts (``ViewKeeper.dispute_timing``)."""
        p = self.params
        return DisputeTiming(p.epoch_s, p.dispute_lag, grace_s=p.proof_grace_s)

    def dispute_window(self, epoch: int) -> tuple[int, int]:
        """``(lo, hi)``: the count epochs of the disputes the view of ``epoch`` counts
        (``ViewKeeper.dispute_window``)."""
        return epoch - self.params.reputation.window_epochs + 1, epoch

    def dispute_counts(self, epochs: np.ndarray, deadlines_ms: np.ndarray) -> np.ndarray:
        """:meth:`DisputeTiming.count` of offers (their epochs and deadlines), vectorised
        (tests/sim/test_digest_views.py checks it against the scalar rule)."""
        t = self.dispute_timing
        e = np.asarray(epochs, np.int64)
        d = np.maximum(np.maximum(np.asarray(deadlines_ms, np.int64), 0) // 1000, e * t.epoch_s)
        close = np.maximum(e, np.minimum((d + t.grace) // t.epoch_s, e + t.dispute_lag - 1))
        return close + 1

    def add_epoch(self, recon: Reconciliation) -> None:
        """Keep a closed epoch's reconciliation until a view folds it."""
        if recon.epoch in self._recons or self.pairs.folded(recon.epoch):
            raise ValueError(f"epoch {recon.epoch} is already reconciled")
        self._recons[recon.epoch] = recon

    def reconciliation(self, epoch: int) -> Reconciliation:
        """The reconciliation of ``epoch`` (empty when none was kept)."""
        return self._recons.get(epoch, Reconciliation(epoch, (), ()))

    def view(
        self,
        epoch: int,
        peers: Sequence[str],
        node_columns: Mapping[str, Any],
        dispute_columns: Mapping[str, Any],
        book: PenaltyBook,
    ) -> tuple[View, ReputationTable, Evidence]:
        """The view of ``epoch`` (``ViewKeeper._view_from_digests``, step by step).

        Args:
            peers: every peer, sorted (clients, then nodes).
            node_columns: the node evidence columns (ads, verdicts, heartbeats,
                offences) for :meth:`Evidence.from_columns`, no task tables.
            dispute_columns: offer and receipt columns of the disputed tasks only, those
                whose count epoch is in :meth:`dispute_window` (the caller picks them).
            book: the penalty book of the previous view.

        Returns:
            ``(view, table, evidence)``: the evidence is what ``compute_pairs`` scored
            (node columns plus the disputed tasks), the one the ledger settles on.
        """
        lo, hi = self.digest_window(epoch)
        for e in range(max(lo, 0), hi + 1):
            if not self.pairs.folded(e):
                recon = self.reconciliation(e)
                self.pairs.fold(e, count_rows(recon), digest_ids(recon))
        # keep the blocks the views of the three epochs before need too (the keeper's rule)
        self.pairs.prune(lo - 3)
        keep_from = min(lo - 3, epoch - self.settle_lag)
        for e in [e for e in self._recons if e < keep_from]:
            del self._recons[e]
        window = self.pairs.window(lo, hi)
        node_ev, peer_at = self.pairs.widen(Evidence.from_columns(peers, **node_columns), window)
        if node_ev.peers != tuple(peers):
            raise ValueError("digest rows name a peer the simulation does not know")
        ev = Evidence.from_columns(peers, **node_columns, **dispute_columns)
        p = self.params
        table = compute_pairs(
            ev,
            window,
            now=epoch * p.epoch_s,
            epoch_s=p.epoch_s,
            params=p.reputation,
            peer_at=peer_at,
        )
        replicas = _replicas(dispute_columns, self.redundancy)
        recent = (hi, hi - 1, hi - 2)
        demand = ClaimedDemand(
            claims=tuple(self.pairs.node_claims(e, window, peer_at, ev.n_peers) for e in recent),
            replicas=tuple(replicas.get(e, 0) for e in recent),
        )
        view = View.from_evidence(
            ev,
            epoch=epoch,
            params=p,
            penalties=book,
            table=table,
            digests=window.epochs,
            demand=demand,
        )
        self.last_evidence, self.last_window = ev, window
        return view, table, ev


def _replicas(dispute_columns: Mapping[str, Any], redundancy: int) -> dict[int, int]:
    """:func:`~repp2p.digests.disputes.replica_claims` of the disputed tasks' columns:
    per disputed offer its epoch and the nodes that answered it (its receipts, one claim
    each in a proof)."""
    epochs = np.asarray(dispute_columns.get("offer_epoch", ()), np.int64)
    if not len(epochs):
        return {}
    answered = np.bincount(
        np.asarray(dispute_columns["receipt_offer"], np.int64), minlength=len(epochs)
    )
    return replica_claims(
        (int(e), int(n), redundancy) for e, n in zip(epochs, answered, strict=True)
    )


__all__ = ["DigestViews", "digest_ids", "reconcile_epoch"]
