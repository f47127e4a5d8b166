"""Benchmark: attestation records gossiped per node on an idle devnet, and idle node CPU.

Starts a `repp2p.cli.devnet.Devnet` of `--nodes` nodes (echo engine, a copy of the dev
network's file with `reputation_source = "digests"`, as `bench/tasks.py --views digests`),
waits `--settle` seconds, then reads `repp2p_records_accepted_total` per record type from
node 1's `/metrics` twice `--window` seconds apart, and the CPU seconds the whole devnet
(node and enclave processes) used in between (`_devnet_load.tree_cpu_s`). No task runs.

Figures: accepted records per second at that node by type (`attestations_per_s`,
`heartbeats_per_s`), and `idle_cores` (devnet CPU seconds per second). `baseline` is the
rate re-attesting every epoch would give (every other node's attestation once per epoch:
`(nodes - 1) / epoch_s`); `ratio` is the measured attestation rate over it.

Usage: python bench/freshness.py [--nodes 16] [--settle 40] [--window 60]
Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import re
import time

import trio
from _devnet_load import echo_devnet, machine_busy_s, tree_cpu_s

from repp2p.cli.devnet import EPOCH_S
from repp2p.net.status_http import fetch

_ACCEPTED = re.compile(r"^repp2p_records_accepted_total\{([^}]*)\} ([0-9.e+]+)$", re.M)


async def accepted(address: str) -> dict[str, float]:
    """``record type -> accepted so far`` from one node's ``/metrics`` (summed over labels)."""
    host, _, port = address.rpartition(":")
    text = (await fetch(host, int(port), "/metrics", timeout=5)).decode()
    out: dict[str, float] = {}
    for labels, value in _ACCEPTED.findall(text):
        kind = re.search(r'type="([^"]+)"', labels)
        if kind:
            out[kind.group(1)] = out.get(kind.group(1), 0.0) + float(value)
    return out


async def measure(args: argparse.Namespace) -> dict[str, float]:
    async with echo_devnet("freshness", args.nodes, "digests") as bench:
        devnet = bench.devnet
        await trio.sleep(args.settle)
        status = devnet.info[1]["status"]
        before, cpu0, busy0, t0 = (
            await accepted(status),
            tree_cpu_s()["total"],
            machine_busy_s(),
            time.perf_counter(),
        )
        await trio.sleep(args.window)
        after, cpu1, busy1, t1 = (
            await accepted(status),
            tree_cpu_s()["total"],
            machine_busy_s(),
            time.perf_counter(),
        )
        elapsed = t1 - t0
        rate = {k: (after.get(k, 0.0) - before.get(k, 0.0)) / elapsed for k in after}
        return {
            "nodes": args.nodes,
            "epoch_s": EPOCH_S,
            "window_s": elapsed,
            "attestations_per_s": rate.get("Attestation", 0.0),
            "heartbeats_per_s": rate.get("Heartbeat", 0.0),
            "ads_per_s": rate.get("NodeAd", 0.0),
            "idle_cores": (cpu1 - cpu0) / elapsed,
            "machine_busy_cores": (busy1 - busy0) / elapsed,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=16)
    parser.add_argument("--settle", type=float, default=40.0)
    parser.add_argument("--window", type=float, default=60.0)
    args = parser.parse_args()
    figures = trio.run(measure, args)
    baseline = (args.nodes - 1) / EPOCH_S
    print(
        json.dumps(
            {
                "bench": "freshness",
                **figures,
                "baseline": baseline,
                "ratio": figures["attestations_per_s"] / baseline,
            }
        )
    )


if __name__ == "__main__":
    main()
