"""Benchmark: who holds which per-task records after many tasks (issue 14, item 1).

Starts a devnet of ``--nodes`` ``repp2p node run`` processes plus its bootstrap on
127.0.0.1 on a network whose views come from digests (``--views digests``, the default;
``records`` for comparison), joins it with an in-process client, runs ``--tasks`` echo
tasks (k=1, ``--concurrency`` at once), lets the records settle, and reads every node's
``/status`` "records" per type. On a digest-view network each per-task record stays with
its task's parties (repp2p.node.light): a node holds the records of the tasks it served
and none of the others', so the per-task records held across the devnet add up to about
one copy per task and party, and a node that served none holds none. One more node
serves another engine (``sentiment``), so at least one node serves none of the tasks.

Ends with one JSON line: ``held_per_task`` (per-task records held by all nodes together,
per task; 3 = each task's offer, claim and receipt on its one node, plus its feedback once
handed over: about 4), ``idle_node_task_records`` (what the node serving another engine
holds: 0 is the target), ``baseline`` (the same figure if every node held every task's four
records: 4 x nodes) and ``ratio`` (held_per_task / baseline).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import trio
from _devnet_load import VIEWS, dev_network_file

from repp2p.cli.devnet import EPOCH_S, Devnet
from repp2p.client import Client, TaskError
from repp2p.logs import setup_logging
from repp2p.network_params import NetworkParams

TASK_RECORD_TYPES = ("TaskOffer", "Claim", "Receipt", "Feedback", "Refusal")


async def measure(args: argparse.Namespace) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="repp2p-bench-parties-"))
    network_file = dev_network_file(folder / "network", args.views)
    extra = {"network_file": str(network_file)} if network_file is not None else {}
    idle = f"node-{args.nodes + 1}"
    other_engine = {idle: {"engines": ["sentiment"]}}
    devnet = Devnet(folder / "net", args.nodes + 1, ["echo"], extra=extra, per_node=other_engine)
    try:
        await devnet.start()
        async with Client.open(
            [devnet.info[0]["addrs"][0]],
            data_dir=folder / "client",
            network_params=NetworkParams.load("dev", network_file),
        ) as client:
            await client.wait_for_nodes("echo", args.nodes + 1, 6 * EPOCH_S)
            done = failed = 0
            started = time.perf_counter()

            async def lane(lane_no: int) -> None:
                nonlocal done, failed
                while done + failed < args.tasks:
                    try:
                        await client.submit("echo", b"parties %d/%d" % (lane_no, done))
                        done += 1
                    except TaskError:
                        failed += 1

            async with trio.open_nursery() as nursery:
                for i in range(args.concurrency):
                    nursery.start_soon(lane, i)
            elapsed = time.perf_counter() - started
            await trio.sleep(2 * EPOCH_S)  # feedback hand-overs, feeds (records networks)
            statuses = await devnet.statuses()
        per_node = []
        for info, status in zip(devnet.info, statuses, strict=True):
            records = status["records"] if status else {}
            per_node.append(
                {
                    "name": info["name"],
                    "served": status["tasks_done"] if status else None,
                    **{t: records.get(t, 0) for t in TASK_RECORD_TYPES},
                }
            )
        return {
            "done": done,
            "failed": failed,
            "tasks_per_s": done / elapsed,
            "per_node": per_node,
            "idle": next(n for n in per_node if n["name"] == idle),
        }
    finally:
        with trio.CancelScope(shield=True):
            await devnet.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4, help="echo nodes besides the bootstrap")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--views", choices=VIEWS, default="digests")
    args = parser.parse_args()
    setup_logging("text", "ERROR", "CRITICAL")
    r = trio.run(measure, args)
    for n in r["per_node"]:
        held = ", ".join(f"{t} {n[t]}" for t in TASK_RECORD_TYPES)
        print(f"{n['name']:>10}: served {n['served']}, holds {held}")
    held = sum(n[t] for n in r["per_node"] for t in TASK_RECORD_TYPES)
    idle_held = sum(r["idle"][t] for t in TASK_RECORD_TYPES)
    nodes = len(r["per_node"])
    per_task = held / max(r["done"], 1)
    print(
        f"{r['done']} tasks ({r['failed']} failed) at {r['tasks_per_s']:.1f}/s on "
        f"{nodes} node processes, views from {args.views}: {held} per-task records held by "
        f"all nodes, {per_task:.2f} per task; the node serving another engine holds {idle_held}"
    )
    print(
        json.dumps(
            {
                "bench": "parties",
                "views": args.views,
                "tasks": r["done"],
                "failed": r["failed"],
                "nodes": nodes,
                "tasks_per_s": round(r["tasks_per_s"], 1),
                "held_per_task": round(per_task, 2),
                "idle_node_task_records": idle_held,
                "baseline": 4 * nodes,
                "ratio": round(per_task / (4 * nodes), 3),
            }
        )
    )


if __name__ == "__main__":
    main()
