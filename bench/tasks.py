"""Benchmark: submit -> verified result on a local devnet (echo engine).

Starts a devnet of `repp2p node run` processes (default 16 nodes + bootstrap) on
127.0.0.1, joins it with an in-process client and measures:

* latency: one task at a time (k=1), submit -> verified, decrypted result: p50 and p99;
* throughput: tasks completed per second with `--concurrency` tasks in flight, and the CPU
  time all devnet processes (nodes, enclaves, client) spent per task meanwhile;
* the CPU an idle devnet burns (cores), which the 2-core machine cannot spend on tasks;
* the replication floor: CPU one node spends per task record (decode with signature
  check, store, duplicate lookup), measured in this process, times the nodes and the four
  records of a task; the throughput ceiling it leaves on this machine's cores before any
  transport, client or serving cost.

`--task-records gossip` runs the same with per-task records published on GossipSub (the
design before /repp2p/feed/1), for comparison. By default (`--views digests`, the dev
network as shipped) views come from digests: per-task records stay with their parties (no
feed, no per-task gossip), and the replication floor printed does not apply;
`--views records` runs a copy of the dev network's file with
`reputation_source = "records"`, where it does.

Baseline, measured in the same run: the enclave alone — seal, execute in a simulated
enclave process, open and verify the receipt — with no network, matching or gossip.
Targets (issue 6): p50 <= 25 ms, p99 <= 100 ms, >= 300 tasks/s. Ends with one JSON line.

    python bench/tasks.py [--nodes 16] [--tasks 200] [--concurrency 16] [--seconds 15]
                          [--task-records feed|gossip] [--views digests|records]
                          [--profile DIR] [--cprofile DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import trio
from _devnet_load import VIEWS, capacity_refusals, echo_devnet, pct, tree_cpu_s
from _spy import (
    cprofile_children,
    cprofile_start,
    cprofile_stop,
    cprofile_summary,
    spy_path,
    spy_tree,
    summarise,
)

from repp2p.cli.devnet import EPOCH_S
from repp2p.client import Client, TaskError
from repp2p.logs import setup_logging
from repp2p.net.params import FeedParams
from repp2p.network_params import NetworkParams
from repp2p.records import decode, encode
from repp2p.store import SqliteRecordStore
from repp2p.tee import Enclave, TaskSecret, open_result, seal_input
from repp2p.testing.factories import identity, sample_records


def baseline(n: int) -> list[float]:
    """ms per seal -> enclave execute -> open+verify, no network."""
    out = []
    with Enclave.start(["echo"]) as enclave:
        for i in range(n):
            secret = TaskSecret.generate()
            task_id = os.urandom(32)
            data = b"bench %d" % i
            t = time.perf_counter()
            sealed, _ = seal_input(data, enclave.enc_key, task_id=task_id, secret=secret)
            encrypted, receipt = enclave.execute(
                task_id=task_id,
                offer_id=bytes(32),
                engine_id="echo",
                input_digest=secret.digest(data),
                sealed_input=sealed,
                client_result_key=secret.public_key,
                started_ms=0,
                expires=2**40,
            )
            open_result(
                encrypted,
                receipt,
                secret,
                enclave_enc_key=enclave.enc_key,
                enclave_result_key=enclave.result_key,
                task_id=task_id,
                input_digest=secret.digest(data),
            )
            out.append((time.perf_counter() - t) * 1000)
    return out


#: each per-task record reaches a node about this many times over the feeds (2 x upstreams)
COPIES_PER_NODE = 4
TASK_RECORD_TYPES = ("TaskOffer", "Claim", "Receipt", "Feedback")


def replication_floor(n: int = 4000) -> dict[str, float]:
    """CPU a node spends per task record, measured in this process: strict decode with the
    signature check, storing in pages of 256 (as feed pages are), and the lookup that
    drops a copy already held. The floor of the replication every full node does."""
    now = time.time()
    records = [r for r in sample_records(now=now) if r.TYPE in TASK_RECORD_TYPES]
    signers = [identity(f"bench-{i}") for i in range(64)]
    data = [
        encode(
            dataclasses.replace(records[k % 4], task_id=hashlib.sha256(b"%d" % k).digest()),
            signers[k % 64],
        )
        for k in range(n)
    ]
    t = time.process_time()
    signed = [decode(d, now=int(now)) for d in data]
    decode_s = (time.process_time() - t) / n
    folder = Path(tempfile.mkdtemp(prefix="repp2p-bench-floor-"))
    try:
        store = SqliteRecordStore(folder / "records.db", synchronous="NORMAL")
        t = time.process_time()
        for i in range(0, n, 256):
            store.put_many(signed[i : i + 256], now=int(now))
        store_s = (time.process_time() - t) / n
        t = time.process_time()
        for d in data:
            store.has(hashlib.sha256(d).digest())
        duplicate_s = (time.process_time() - t) / n
        store.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"decode_us": decode_s * 1e6, "store_us": store_s * 1e6, "dup_us": duplicate_s * 1e6}


async def measure(args: argparse.Namespace) -> dict[str, float]:
    if args.profile is not None:
        spy_path()
    if args.cprofile is not None:
        cprofile_children(args.cprofile)
    feed = FeedParams(gossip_task_records=args.task_records == "gossip")
    extra: dict = {"feed": {"gossip_task_records": True}} if feed.gossip_task_records else {}
    async with echo_devnet("tasks", args.nodes, args.views, extra) as bench:
        devnet, folder, network_file = bench.devnet, bench.folder, bench.network_file
        async with Client.open(
            [devnet.info[0]["addrs"][0]],
            data_dir=folder / "client",
            feed=feed,
            network_params=NetworkParams.load("dev", network_file),
        ) as client:
            eligible = await client.wait_for_nodes("echo", len(devnet.info), 3 * EPOCH_S)
            cold = []
            for i in range(args.warmup):  # first contacts: dials, stream set-up, views settle
                t = time.perf_counter()
                await client.submit("echo", b"warm-up %d" % i)
                cold.append((time.perf_counter() - t) * 1000)
            latencies = []
            for i in range(args.tasks):
                t = time.perf_counter()
                await client.submit("echo", b"latency %d" % i)
                latencies.append((time.perf_counter() - t) * 1000)
            idle_cpu = tree_cpu_s()["total"]
            await trio.sleep(5)
            idle_cores = (tree_cpu_s()["total"] - idle_cpu) / 5
            done = failed = 0
            opened_before = client.streams.opened
            handovers_before = client.hand_overs.requests
            refused_before = await capacity_refusals(devnet)
            cpu_before = tree_cpu_s()
            started = time.perf_counter()

            async def lane() -> None:
                nonlocal done, failed
                while time.perf_counter() - started < args.seconds:
                    try:
                        await client.submit("echo", b"throughput %d" % done)
                        done += 1
                    except TaskError:
                        failed += 1

            profiled = cprofile_start() if args.cprofile is not None else None
            async with trio.open_nursery() as nursery:
                for _ in range(args.concurrency):
                    nursery.start_soon(lane)
                if args.profile is not None:
                    nursery.start_soon(spy_tree, args.profile, args.seconds - 1)
            elapsed = time.perf_counter() - started
            cpu_after = tree_cpu_s()
            if profiled is not None:
                await cprofile_stop(profiled, args.cprofile, done)
            cpu_used = {k: cpu_after[k] - cpu_before[k] for k in cpu_after}
            opened = client.streams.opened - opened_before
            handovers = client.hand_overs.requests - handovers_before
            refused = await capacity_refusals(devnet) - refused_before
        return {
            "eligible": eligible,
            "cold_max_ms": max(cold, default=0.0),
            "p50_ms": pct(latencies, 0.5),
            "p99_ms": pct(latencies, 0.99),
            "tasks_per_s": done / elapsed,
            **{
                ("cpu_ms_per_task" if k == "total" else f"cpu_ms_per_task_{k}"): v
                * 1000
                / max(done, 1)
                for k, v in cpu_used.items()
            },
            "idle_cores": idle_cores,
            "failed": failed,
            "streams_per_task": opened / max(done, 1),
            "handovers_per_task": handovers / max(done, 1),
            "full_per_task": refused / max(done, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument(
        "--task-records",
        choices=("feed", "gossip"),
        default="feed",
        help="how per-task records spread: pulled feeds (default) or GossipSub (the old way)",
    )
    parser.add_argument(
        "--views",
        choices=VIEWS,
        default="digests",
        help="what views score nodes from (reputation_source); on digests, per-task records "
        "stay with their parties: no feed, --task-records is ignored",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample every process with py-spy during the throughput window into DIR and "
        "print where each role's CPU went (the profiled run's CPU figures are inflated)",
    )
    parser.add_argument(
        "--cprofile",
        type=Path,
        metavar="DIR",
        help="profile every process's CPU time (cProfile) during the throughput window "
        "into DIR and print where each role's CPU went (figures inflated)",
    )
    args = parser.parse_args()
    setup_logging("text", "ERROR", "CRITICAL")
    base = baseline(200)
    floor = replication_floor()
    nodes = args.nodes + 1
    per_record_us = floor["decode_us"] + floor["store_us"] + (COPIES_PER_NODE - 1) * floor["dup_us"]
    floor_ms = nodes * len(TASK_RECORD_TYPES) * per_record_us / 1000
    ceiling = (os.cpu_count() or 1) * 1000 / floor_ms
    print(
        f"replication floor: decode+verify {floor['decode_us']:.0f} us, store "
        f"{floor['store_us']:.0f} us, duplicate {floor['dup_us']:.0f} us per record; "
        f"{nodes} nodes x {len(TASK_RECORD_TYPES)} records x ~{COPIES_PER_NODE} copies = "
        f"{floor_ms:.2f} ms CPU per task: at most {ceiling:.0f} tasks/s on "
        f"{os.cpu_count()} cores before any transport, client or serving cost"
    )
    r = trio.run(measure, args)
    base_p50 = pct(base, 0.5)
    print(f"enclave only (baseline): p50 {base_p50:.1f} ms, p99 {pct(base, 0.99):.1f} ms")
    print(
        f"devnet of {args.nodes + 1} processes, {r['eligible']} eligible, task records by "
        f"{args.task_records if args.views == 'records' else 'their parties only'}, views "
        f"from {args.views}: submit -> verified p50 "
        f"{r['p50_ms']:.1f} ms, "
        f"p99 {r['p99_ms']:.1f} ms (k=1, one at a time, after {args.warmup} warm-up tasks "
        f"of which the slowest took {r['cold_max_ms']:.0f} ms); {r['tasks_per_s']:.1f} "
        f"tasks/s with {args.concurrency} in flight ({r['failed']} failed); "
        f"{r['cpu_ms_per_task']:.1f} ms CPU per task over all processes (client "
        f"{r['cpu_ms_per_task_client']:.1f}, nodes {r['cpu_ms_per_task_nodes']:.1f}, "
        f"enclaves {r['cpu_ms_per_task_enclaves']:.1f}); idle devnet "
        f"{r['idle_cores']:.2f} cores  [targets: p50 <= 25, p99 <= 100, >= 300/s]"
    )
    if args.profile is not None:
        print(summarise(args.profile))
    if args.cprofile is not None:
        print(cprofile_summary(args.cprofile))
    print(
        json.dumps(
            {
                "bench": "tasks",
                "p50_ms": round(r["p50_ms"], 1),
                "p99_ms": round(r["p99_ms"], 1),
                "tasks_per_s": round(r["tasks_per_s"], 1),
                "cpu_ms_per_task": round(r["cpu_ms_per_task"], 1),
                **{
                    f"cpu_ms_per_task_{k}": round(r[f"cpu_ms_per_task_{k}"], 2)
                    for k in ("client", "nodes", "enclaves")
                },
                "idle_cores": round(r["idle_cores"], 2),
                "streams_per_task": round(r["streams_per_task"], 3),
                "handovers_per_task": round(r["handovers_per_task"], 3),
                "full_per_task": round(r["full_per_task"], 3),
                "nodes": args.nodes,
                "task_records": args.task_records if args.views == "records" else "parties",
                "views": args.views,
                "cpus": os.cpu_count(),
                "floor_ms_per_task": round(floor_ms, 2),
                "ceiling_tasks_per_s": round(ceiling),
                "baseline": round(base_p50, 2),
                "ratio": round(r["p50_ms"] / base_p50, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
