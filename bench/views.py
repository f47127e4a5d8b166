"""Benchmark: one epoch's view from digest count rows, with 1,000,000 tasks in the window.

What is measured, per epoch in steady state (``reputation_source = "digests"``):

* ``fold_ms``: folding the new epoch's reconciled count rows into the
  :class:`~repp2p.reputation.pairs.PairState` (once per epoch) and pruning the epoch that
  left the window;
* ``view_ms``: building the view: the window's rows (:meth:`PairState.window`), the node
  evidence widened to the rows' peers, :func:`~repp2p.reputation.pairs.compute_pairs`
  (EigenTrust on the aggregated pair rows) and :meth:`View.from_evidence` (eligibility,
  serving tier, view digest);
* ``epoch_ms`` = both: the figure against the target (<= 100 ms).

Not timed: the node records' evidence (10,000 ads, attestations and heartbeats through
``collect``), which costs O(nodes) whatever the number of tasks, as in a records view.

Inputs (seeded, synthetic): 10,000 attested nodes with heartbeats, 50,000 clients,
1,000,000 tasks over the 168-epoch window (5,953 a epoch, each to a random node; 85% ok,
5% wrong, 10% timeout), so about one count row per task: the worst case, where no client
sends two tasks of an epoch to one node (``--pairs-per-epoch N`` sends them to N pairs
instead, to show that the cost follows the count rows, not the tasks). Reconciling signed
digests into count rows
(:func:`repp2p.digests.reconcile`) is not timed: it costs O(the epoch's digests) once.

Baseline, measured in the same run: what a view costs from records on the same state,
:func:`repp2p.reputation.compute` on 1,000,000 tasks' pre-decoded columns (decoding and
verifying the 4,000,000 signed records, and ``collect``, come on top of it in a live view).

EigenTrust: streaming by default (``trust_view_steps = 1``, ``trust_chain_steps = 1``,
``trust_chain_epochs = 30``: docs/core.md, "Streaming EigenTrust"; its chains advance once
per epoch in the :class:`PairState`, so the first view after a start replays them and is
not timed); ``--trust exact`` runs the exact 30-step path instead. The ``trust`` key of the
JSON line says which.

Single process, single thread. Ends with one JSON line; its ``view_bits`` digests every
output bit of the last view measured (:func:`view_bits`), so runs of two versions of the
code can be checked for the same view.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import statistics
import time

import numpy as np

from repp2p.digests import CountRow
from repp2p.matching import View
from repp2p.network_params import NetworkParams
from repp2p.reputation import Evidence, ReputationParams, compute
from repp2p.reputation.pairs import PairState, compute_pairs

N_NODES = 10_000
N_CLIENTS = 50_000
N_TASKS = 1_000_000
WINDOW = 168
EPOCH_S = 600
EPOCH = 1_000  # the first view measured
STEADY = 5  # epochs measured in steady state
STREAMING = ReputationParams(trust_view_steps=1, trust_chain_steps=1, trust_chain_epochs=30)
PARAMS = NetworkParams(
    name="bench", epoch_s=EPOCH_S, reputation_source="digests", reputation=STREAMING
)
EXACT = PARAMS.replace(reputation=ReputationParams())


def _peers(seed: int) -> tuple[list[str], list[str]]:
    names = [hashlib.sha256(b"p%d" % i).hexdigest()[:52] for i in range(N_NODES + N_CLIENTS)]
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(names))
    return [names[i] for i in perm[:N_NODES]], [names[i] for i in perm[N_NODES:]]


def epoch_rows(
    epoch: int, nodes: list[str], clients: list[str], seed: int, pairs: int | None = None
) -> list[CountRow]:
    """One epoch's count rows: N_TASKS / WINDOW tasks, one row per (client, node) pair.

    ``pairs``: the epoch's tasks go to this many random (client, node) pairs (clients
    that send several tasks of an epoch to one node); None: each task to a random pair."""
    rng = np.random.default_rng([seed, epoch])
    per_epoch = N_TASKS // WINDOW
    if pairs is None:
        c = rng.integers(0, len(clients), per_epoch)
        n = rng.integers(0, len(nodes), per_epoch)
    else:
        pick = rng.integers(0, pairs, per_epoch)
        c = rng.integers(0, len(clients), pairs)[pick]
        n = rng.integers(0, len(nodes), pairs)[pick]
    roll = rng.random(per_epoch)
    outcome = np.where(roll < 0.85, 0, np.where(roll < 0.90, 1, 2))
    lat = rng.integers(100, 5_000, per_epoch)
    acc: dict[tuple[int, int], list[int]] = {}
    for ci, ni, o, la in zip(c.tolist(), n.tolist(), outcome.tolist(), lat.tolist(), strict=True):
        a = acc.setdefault((ci, ni), [0, 0, 0, 0])
        a[o] += 1
        a[3] += la
    rows = []
    for (ci, ni), (ok, wrong, timeout, lat_sum) in acc.items():
        rows.append(
            CountRow(
                epoch=epoch,
                client=clients[ci],
                node=nodes[ni],
                ok=ok,
                wrong=wrong,
                timeout=timeout,
                bad_proof=0,
                latency_sum_ms=lat_sum,
                disputed_client=0,
                disputed_node=0,
                node_silent=False,
                client_silent=False,
                node_claims=ok + wrong + timeout,
                node_receipts=ok + wrong,
            )
        )
    return sorted(rows)


def node_evidence(nodes: list[str], epoch: int, seed: int) -> Evidence:
    """The node records' evidence: ads, verdicts, two epochs of heartbeats."""
    rng = np.random.default_rng(seed)
    peers = sorted(nodes)
    n = len(peers)
    capacity = rng.integers(1, 65, n)
    hb_epochs = (epoch - 2, epoch - 1)
    return Evidence.from_columns(
        peers,
        is_node=np.ones(n, bool),
        capacity=capacity,
        throughput=capacity * 10,
        price=np.full(n, 1000, np.uint64),
        verified=np.ones(n, bool),
        consistent=np.ones(n, bool),
        attested_at=np.full(n, epoch * EPOCH_S - 100),
        hb_node=np.repeat(np.arange(n), len(hb_epochs)),
        hb_epoch=np.tile(hb_epochs, n),
        hb_load=np.zeros(n * len(hb_epochs), np.int64),
        # the IDs of each node's ad, attestation and heartbeats (what the view digest hashes)
        record_ids=tuple(sorted(hashlib.sha256(b"r%d" % i).digest() for i in range(4 * n))),
    )


def view_of(
    state: PairState, epoch: int, nodes_ev: Evidence, params: NetworkParams = PARAMS
) -> View:
    """The view of ``epoch`` as :class:`repp2p.viewer.ViewKeeper` builds it, from the node
    records' evidence ``nodes_ev``."""
    lo, hi = epoch - params.digest_lag - WINDOW + 1, epoch - params.digest_lag
    win = state.window(lo, hi)
    ev, peer_at = state.widen(nodes_ev, win)
    table = compute_pairs(
        ev, win, now=epoch * EPOCH_S, epoch_s=EPOCH_S, params=params.reputation, peer_at=peer_at
    )
    return View.from_evidence(ev, epoch=epoch, params=params, table=table, digests=win.epochs)


def view_bits(view: View) -> str:
    """A digest of every output bit of a view: its digest (which names its sources only),
    the reputation table's arrays and the view's own (to check that a faster build gives
    the same view)."""
    h = hashlib.sha256(view.digest)
    t = view.reputation
    for name in (
        "score",
        "permille",
        "components",
        "feedback_mass",
        "client_trust",
        "is_newcomer",
        "is_offender",
        "quality",
        "standing",
        "disputes_lost",
        "client_credibility",
    ):
        h.update(name.encode() + np.ascontiguousarray(getattr(t, name)).tobytes())
    for name in ("words", "price", "permille", "weight", "base_eligible", "quality", "tier"):
        h.update(name.encode() + np.ascontiguousarray(getattr(view, name)).tobytes())
    h.update(repr((t.peers, t.offences, view.peers, view.demand)).encode())
    return h.hexdigest()[:16]


def baseline(nodes: list[str], clients: list[str], seed: int) -> float:
    """Seconds of :func:`compute` on 1,000,000 tasks' columns (the records view's core)."""
    rng = np.random.default_rng(seed)
    peers = tuple(sorted(nodes + clients))
    index = {p: i for i, p in enumerate(peers)}
    node_ix = np.array([index[p] for p in nodes])
    client_ix = np.array([index[p] for p in clients])
    is_node = np.zeros(len(peers), bool)
    is_node[node_ix] = True
    m = N_TASKS
    offers = np.arange(m)
    offer_client = client_ix[rng.integers(0, len(clients), m)]
    offer_epoch = EPOCH - 1 - rng.integers(0, WINDOW, m)
    node = node_ix[rng.integers(0, len(nodes), m)]
    roll = rng.random(m)
    outcome = np.where(roll < 0.85, 0, np.where(roll < 0.90, 1, 2))
    ev = Evidence.from_columns(
        peers,
        is_node=is_node,
        capacity=np.where(is_node, 4, 0),
        verified=is_node,
        consistent=is_node,
        attested_at=np.full(len(peers), EPOCH * EPOCH_S - 100),
        offer_client=offer_client,
        offer_epoch=offer_epoch,
        offer_deadline_ms=(offer_epoch * EPOCH_S + 300) * 1000,
        claim_node=node,
        claim_offer=offers,
        receipt_node=node[outcome != 2],
        receipt_offer=offers[outcome != 2],
        receipt_output=offers[outcome != 2],
        fb_client=offer_client,
        fb_node=node,
        fb_offer=offers,
        fb_outcome=outcome,
        fb_latency_ms=rng.integers(100, 5_000, m),
        fb_rating=np.full(m, 100),
    )
    start = time.perf_counter()
    compute(ev, now=EPOCH * EPOCH_S, epoch_s=EPOCH_S, params=EXACT.reputation)
    return time.perf_counter() - start


def main(seed: int = 1, pairs: int | None = None, trust: str = "streaming") -> dict:
    params = PARAMS if trust == "streaming" else EXACT
    nodes, clients = _peers(seed)
    lag = PARAMS.digest_lag
    state = PairState()
    first = EPOCH - lag - WINDOW + 1
    span = range(first, EPOCH - lag + STEADY)
    rows = {e: epoch_rows(e, nodes, clients, seed, pairs) for e in span}
    start = time.perf_counter()
    for e in range(first, EPOCH - lag + 1):
        state.fold(e, rows[e], [hashlib.sha256(b"d%d" % e).digest()])
    initial_fold_s = time.perf_counter() - start
    view_of(state, EPOCH, node_evidence(nodes, EPOCH, seed), params)  # the first after a start
    fold_ms, view_ms, epoch_ms = [], [], []
    for epoch in range(EPOCH + 1, EPOCH + STEADY):
        nodes_ev = node_evidence(nodes, epoch, seed)  # O(nodes), not timed: see the docstring
        t0 = time.perf_counter()
        state.fold(epoch - lag, rows[epoch - lag], [hashlib.sha256(b"d%d" % epoch).digest()])
        state.prune(epoch - lag - WINDOW + 1)
        t1 = time.perf_counter()
        view = view_of(state, epoch, nodes_ev, params)
        t2 = time.perf_counter()
        fold_ms.append((t1 - t0) * 1000)
        view_ms.append((t2 - t1) * 1000)
        epoch_ms.append((t2 - t0) * 1000)
    win = state.window(EPOCH + STEADY - 1 - lag - WINDOW + 1, EPOCH + STEADY - 1 - lag)
    tasks = int(win.counts[6].sum())
    base_s = baseline(nodes, clients, seed)
    figure = statistics.median(epoch_ms)
    return {
        "bench": "views",
        "tasks_in_window": tasks,
        "count_rows": win.rows,
        "pairs": len(np.unique(win.row_pos)),
        "nodes": N_NODES,
        "clients": N_CLIENTS,
        "fold_ms": round(statistics.median(fold_ms), 1),
        "view_ms": round(statistics.median(view_ms), 1),
        "epoch_ms": round(figure, 1),
        "initial_fold_s": round(initial_fold_s, 2),
        "eligible": int(view.base_eligible.sum()),
        "view_bits": view_bits(view),
        "target_ms": 100,
        "trust": trust,
        "python": platform.python_version(),
        "baseline": round(base_s * 1000, 1),
        "ratio": round(base_s * 1000 / figure, 2),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pairs-per-epoch",
        type=int,
        default=None,
        help="send each epoch's tasks to this many (client, node) pairs (default: every "
        "task to a random pair, about one count row per task: the worst case)",
    )
    parser.add_argument(
        "--trust",
        choices=("streaming", "exact"),
        default="streaming",
        help="EigenTrust: streaming chains (default) or the exact 30 steps every view",
    )
    args = parser.parse_args()
    print(json.dumps(main(pairs=args.pairs_per_epoch, trust=args.trust)))
