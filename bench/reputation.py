"""Benchmark: recompute every reputation score, 10,000 nodes and 1,000,000 feedback records.

What is measured: :func:`repp2p.reputation.compute` on evidence already in the compact,
pre-decoded column form (:class:`repp2p.reputation.Evidence`): decoding and verifying a
million signed records is the records benchmark's business, not this one. Building the
columns (sorting them into canonical order) is timed and printed separately.

Inputs (seeded, synthetic): 10,000 attested nodes, 50,000 clients, 1,000,000 task offers each
claimed by one node, a receipt for 95% of them, 1,000,000 feedback records (85% ok, 5%
wrong, 10% timeout; 2% slander from 2,000 Sybil clients with no history), heartbeats for
the last 48 epochs (480,000 rows), over a 168-epoch window.

Baseline, measured in the same run: a plain Python implementation of the feedback part
(validity checks, decayed sums per (client, node), 30 EigenTrust iterations over dicts) on a
100,000-record slice, scaled by 10 (running it on all 1,000,000 takes minutes).

Single process, single thread. Ends with one JSON line.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time

import numpy as np

from repp2p.reputation import Evidence, ReputationParams, compute

N_NODES = 10_000
N_CLIENTS = 50_000
N_SYBILS = 2_000
N_FEEDBACK = 1_000_000
EPOCH_S = 600
EPOCH = 1_000
HB_EPOCHS = 48


def build(seed: int = 1):
    rng = np.random.default_rng(seed)
    n_peers = N_NODES + N_CLIENTS + N_SYBILS
    peers = tuple(sorted(hashlib.sha256(b"p%d" % i).hexdigest() for i in range(n_peers)))
    perm = rng.permutation(n_peers)
    nodes, clients, sybils = np.split(perm, [N_NODES, N_NODES + N_CLIENTS])
    is_node = np.zeros(n_peers, bool)
    is_node[nodes] = True
    capacity = np.where(is_node, rng.integers(1, 65, n_peers), 0)

    n = N_FEEDBACK
    offer_client = clients[rng.integers(0, N_CLIENTS, n)]
    slander = rng.random(n) < 0.02
    offer_client[slander] = sybils[rng.integers(0, N_SYBILS, int(slander.sum()))]
    offer_epoch = EPOCH - 1 - rng.integers(0, 160, n)
    offer_deadline = (offer_epoch * EPOCH_S + 300) * 1000
    node = nodes[rng.integers(0, N_NODES, n)]
    offers = np.arange(n)
    delivered = rng.random(n) < 0.95
    roll = rng.random(n)
    outcome = np.where(roll < 0.85, 0, np.where(roll < 0.90, 1, 2))
    outcome[slander] = 1
    hb_node = np.repeat(nodes, HB_EPOCHS)
    hb_epoch = np.tile(np.arange(EPOCH - HB_EPOCHS, EPOCH), N_NODES)
    keep_hb = rng.random(len(hb_node)) < 0.97
    columns = dict(
        is_node=is_node,
        capacity=capacity,
        throughput=capacity * 10,
        price=np.where(is_node, 1000, 0).astype(np.uint64),
        verified=is_node,
        attested_at=np.full(n_peers, EPOCH * EPOCH_S - 100),
        consistent=is_node,
        offer_client=offer_client,
        offer_epoch=offer_epoch,
        offer_deadline_ms=offer_deadline,
        claim_node=node,
        claim_offer=offers,
        receipt_node=node[delivered],
        receipt_offer=offers[delivered],
        receipt_output=offers[delivered],
        fb_client=offer_client,
        fb_node=node,
        fb_offer=offers,
        fb_outcome=outcome,
        fb_latency_ms=rng.integers(100, 200_000, n),
        fb_rating=rng.integers(50, 101, n),
        hb_node=hb_node[keep_hb],
        hb_epoch=hb_epoch[keep_hb],
        hb_load=np.zeros(int(keep_hb.sum()), np.int64),
    )
    return peers, columns, sybils


def naive(columns, n_rows: int, params: ReputationParams) -> float:
    """Plain-Python feedback aggregation + EigenTrust on the first ``n_rows`` records."""
    start = time.perf_counter()
    cols = {
        k: v[:n_rows].tolist() if k.startswith(("fb_", "claim_")) else v.tolist()
        for k, v in columns.items()
        if k.startswith(("fb_", "claim_", "offer_", "verified"))
    }
    claimed = set(zip(cols["claim_offer"], cols["claim_node"], strict=True))
    half = params.half_life_epochs
    pair: dict[tuple[int, int], list[float]] = {}
    for c, nd, o, out, rating in zip(
        cols["fb_client"],
        cols["fb_node"],
        cols["fb_offer"],
        cols["fb_outcome"],
        cols["fb_rating"],
        strict=True,
    ):
        if cols["offer_client"][o] != c or (o, nd) not in claimed or c == nd:
            continue
        d = 2.0 ** (-(EPOCH - 1 - cols["offer_epoch"][o]) / half)
        good = d * (0.8 + 0.2 * rating / 100) if out == 0 else 0.0
        bad = d if out == 1 else (0.5 * d if out == 2 else 0.0)
        acc = pair.setdefault((c, nd), [0.0, 0.0, 0.0])
        acc[0] += good
        acc[1] += d
        acc[2] += good - bad
    out_edges: dict[int, dict[int, float]] = {}
    for (c, nd), acc in pair.items():
        if acc[2] > 0:
            out_edges.setdefault(c, {})[nd] = acc[2]
        out_edges.setdefault(nd, {})[c] = acc[1]  # vouch edge, simplified
    pre = [i for i, v in enumerate(cols["verified"]) if v]
    p = {i: 1.0 / len(pre) for i in pre}
    t = dict(p)
    a = params.trust_alpha
    for _ in range(params.trust_iterations):
        nxt: dict[int, float] = {i: a * v for i, v in p.items()}
        for src, edges in out_edges.items():
            ts = t.get(src, 0.0)
            if ts:
                total = sum(edges.values())
                for dst, w in edges.items():
                    nxt[dst] = nxt.get(dst, 0.0) + (1 - a) * ts * w / total
        t = nxt
    success: dict[int, list[float]] = {}
    for (c, nd), acc in pair.items():
        s = success.setdefault(nd, [0.0, 0.0])
        s[0] += t.get(c, 0.0) * acc[0]
        s[1] += t.get(c, 0.0) * acc[1]
    return time.perf_counter() - start


def main() -> None:
    params = ReputationParams()
    t0 = time.perf_counter()
    peers, columns, sybils = build()
    t1 = time.perf_counter()
    evidence = Evidence.from_columns(peers, **columns)
    t2 = time.perf_counter()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        table = compute(evidence, now=EPOCH * EPOCH_S, epoch_s=EPOCH_S, params=params)
        best = min(best, time.perf_counter() - start)
    again = compute(evidence, now=EPOCH * EPOCH_S, epoch_s=EPOCH_S, params=params)
    assert again.score.tobytes() == table.score.tobytes()
    node_perm = table.permille[table.is_node]
    slice_rows = 100_000
    naive_s = naive(columns, slice_rows, params) * (N_FEEDBACK / slice_rows)
    print(
        f"machine: {platform.machine()} python {platform.python_version()} numpy {np.__version__}"
    )
    print(
        f"inputs: {N_NODES:,} nodes, {N_CLIENTS:,} clients, {N_SYBILS:,} sybil clients, "
        f"{N_FEEDBACK:,} feedback, {len(columns['hb_node']):,} heartbeats "
        f"(synthetic, pre-decoded: signing/decoding is not measured)"
    )
    print(f"generate inputs:                {t1 - t0:8.3f} s  (not measured)")
    print(f"Evidence.from_columns (sort):    {t2 - t1:8.3f} s  (canonical order, once per view)")
    print(f"compute() all scores, best of 3: {best:8.3f} s  (target <= 2 s)")
    print(f"naive Python (100k slice x10):   {naive_s:8.3f} s  (baseline)")
    print(
        f"node permille p10/p50/p90: {np.percentile(node_perm, [10, 50, 90]).tolist()}; "
        f"sybil client trust max: {float(table.client_trust[sybils].max())}"
    )
    print(
        json.dumps(
            {
                "bench": "reputation",
                "compute_s": round(best, 3),
                "nodes": N_NODES,
                "feedback": N_FEEDBACK,
                "columns_sort_s": round(t2 - t1, 3),
                "baseline": round(naive_s, 3),
                "baseline_kind": "pure-Python feedback+EigenTrust, 100k slice x10",
                "ratio": round(naive_s / best, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
