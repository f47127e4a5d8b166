"""Benchmark: the simulator at 10,000 nodes and 1,000,000 tasks (issue 7: <= 5 min, <= 4 GiB).

What is measured: one seeded run of a scenario with 10,000 nodes (10% wrong-result, light
churn and 1% message loss), 10,000 clients, 20 epochs x 50,000 tasks, reputation on. Every
epoch builds the real view (``Evidence.from_columns`` + ``View.from_evidence``: reputation,
EigenTrust, penalties) over all the evidence so far, and settles the ledger; every task is
ranked with the matching package's exact array path (``rank_first_many``, bit-identical to
the scalar definition). Printed: wall time, kernel events, protocol events (offers, claims,
receipts, feedback, heartbeats) per second, time per task, peak RSS.

Baseline, measured in the same run: the naive simulator loop, one Python iteration per task
that ranks it with the scalar definition (``rank_reference``: a Python loop over the nodes)
on the same final view, timed on a sample of tasks. ``ratio`` = baseline time per task /
simulator time per task (end to end, view builds included).

Single process. Ends with one JSON line. ``--nodes/--epochs/--tasks-per-epoch`` shrink it.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import numpy as np

from repp2p.matching import beacon, rank_reference, task_words
from repp2p.sim import Scenario, Simulation


def scenario(nodes: int, epochs: int, tasks_per_epoch: int) -> Scenario:
    return Scenario.from_dict(
        {
            "name": "bench",
            "seed": 7,
            "nodes": nodes,
            "epochs": epochs,
            "tasks_per_epoch": tasks_per_epoch,
            "ticks_per_epoch": 10,
            "min_reputation": 700,
            "network": {"loss": 0.01},
            "churn": {"mean_up_epochs": 20.0, "mean_down_epochs": 1.0, "joins_per_epoch": 5.0},
            "clients": {"count": nodes},
            "adversary": [{"behaviour": "wrong_result", "share": 0.1}],
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--tasks-per-epoch", type=int, default=50_000)
    ap.add_argument("--baseline-sample", type=int, default=20)
    args = ap.parse_args()
    sc = scenario(args.nodes, args.epochs, args.tasks_per_epoch)
    marks = []

    def progress(epoch: int, total: int) -> None:
        marks.append(time.perf_counter())
        print(f"epoch {epoch + 1}/{total}: {marks[-1] - t0:7.1f} s", flush=True)

    t0 = time.perf_counter()
    sim = Simulation(sc, on_epoch=progress)
    result = sim.run()
    wall = time.perf_counter() - t0
    rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    s = result.summary
    all_tasks = sc.epochs * sc.tasks_per_epoch
    per_task_us = wall / all_tasks * 1e6
    events = s["protocol_events"] + s["kernel_events"]

    # baseline: naive per-task Python loop with the scalar ranking, same view
    rng = np.random.default_rng(1)
    b = beacon(sim.epoch - 1)
    t1 = time.perf_counter()
    for _ in range(args.baseline_sample):
        a0, a1, _a2 = task_words(rng.bytes(32), b)
        rank_reference(a0, a1, sim.words, sim.weight, sim.eligible, 1)
    base_us = (time.perf_counter() - t1) / args.baseline_sample * 1e6

    print(f"nodes {args.nodes}, identities {s['identities']}, tasks {all_tasks:,}")
    print(f"wall {wall:.1f} s, peak RSS {rss_gib:.2f} GiB")
    print(f"events {events:,} ({events / wall:,.0f}/s; kernel {s['kernel_events']:,})")
    print(f"time per task {per_task_us:.1f} us (end to end); naive loop {base_us:.0f} us/task")
    print(f"success {s['success_rate']:.4f}, bad {s['bad_rate']:.4f}, trace {s['trace_hash']}")
    print(
        json.dumps(
            {
                "bench": "sim",
                "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cpu",
                "nodes": args.nodes,
                "tasks": all_tasks,
                "epochs": sc.epochs,
                "wall_s": round(wall, 1),
                "peak_rss_gib": round(rss_gib, 2),
                "events": events,
                "events_per_s": round(events / wall),
                "us_per_task": round(per_task_us, 1),
                "baseline": {
                    "what": "naive per-task loop, scalar ranking",
                    "us_per_task": round(base_us),
                },
                "ratio": round(base_us / per_task_us, 1),
                "target": {"wall_s": 300, "peak_rss_gib": 4},
                "trace_hash": s["trace_hash"],
            }
        )
    )


if __name__ == "__main__":
    main()
