"""Benchmark: what an idle devnet costs each node (issue 14, "idle cost per node").

Starts a devnet of N ``repp2p node run`` processes plus its bootstrap on 127.0.0.1 (as
bench/scaling.py does; views from digests, the dev network as shipped, unless ``--views
records`` runs a copy of its file with views from records), waits until every node is
synced and has peers, lets it run ``--settle`` seconds (first views, first digests), and
then measures, with no task at all, over ``--seconds`` (whole epochs, so every window holds
the same number of boundaries):

* **CPU**: node-process CPU per node per second (cores), from Linux /proc, the enclave
  processes beside it. Noisy on a shared machine: the machine's busy CPU is printed too.
* **load-independent counts**, per node and epoch, from each node's ``/metrics``: records
  accepted by record type, outcome and source (``gossip``, ``sync``, ``local``...; each
  new one is one store transaction) and own digests published: what the idle network
  makes every node receive, validate and store, which does not depend on how busy the
  machine is; and DHT operations by kind (``dht_operation{op="refresh"}``: routing-table
  refreshes); gossip RPCs sent and read (``libp2p_hook_calls{hook="pubsub.write_msg"}``
  and ``{hook="pubsub.read_varint_prefixed_bytes_limited"}``), and the RPCs sent by kind
  (``{hook="pubsub.sent.messages"}``, ``.ihave_only``, ``.control``, ``.subscriptions``).

``--profile K`` runs py-spy (``record --format raw``, the .venv's) on node-K for the window and
writes the folded stacks beside the JSON line's ``profile`` path. Ends with one JSON line;
``baseline`` is ``--baseline`` (cores per node idle, 0 when not given) and ``ratio`` this
run's figure over it.

    python bench/idle.py [--nodes 8] [--seconds 60] [--settle 40] [--views records]
                         [--profile 3] [--baseline 0.04]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _devnet_load import VIEWS, dev_network_file, machine_busy_s, node_counters, tree_cpu_by_pid

from repp2p.cli.devnet import EPOCH_S, Devnet

#: the py-libp2p hooks that count gossip RPCs sent and read (repp2p_libp2p_hook_calls)
_RPC_HOOKS = ('hook="pubsub.write_msg"', 'hook="pubsub.read_varint_prefixed_bytes_limited"')


def _reported(name: str, labels: str) -> bool:
    """Whether a counter goes in the JSON line: records, digests, DHT operations, and the
    gossip RPCs sent (in all and by kind: ``pubsub.sent.*``) and read."""
    if name in ("repp2p_records_accepted", "repp2p_digests_published", "repp2p_dht_operation"):
        return True
    return name == "repp2p_libp2p_hook_calls" and (
        labels in _RPC_HOOKS or labels.startswith('hook="pubsub.sent.')
    )


class _SequentialDevnet(Devnet):
    """A devnet whose nodes start one after another: started all at once, 17 Python
    processes importing on a busy 2-core machine miss the 60-s start-up limit."""

    async def start(self) -> None:
        boot = await self._spawn("bootstrap", None)
        self.info.append(boot)
        for i in range(1, self.size + 1):
            self.info.append(await self._spawn(f"node-{i}", boot["addrs"][0]))


def _node_cpu(pids: set[int]) -> tuple[float, float]:
    nodes = enclaves = 0.0
    for pid, (role, cpu) in tree_cpu_by_pid().items():
        if pid in pids:
            nodes += cpu
        elif role == "enclaves":
            enclaves += cpu
    return nodes, enclaves


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="repp2p-bench-idle-"))
    network_file = dev_network_file(folder / "network", args.views)
    extra = {"network_file": str(network_file)} if network_file is not None else {}
    devnet = _SequentialDevnet(folder / "net", args.nodes, ["echo"], extra=extra)
    try:
        await devnet.start()
        with trio.fail_after(args.ready_timeout):
            while True:
                statuses = await devnet.statuses()
                if all(s is not None and s["synced"] and s["peers"] > 0 for s in statuses):
                    break
                await trio.sleep(1)
        await trio.sleep(args.settle)
        pids = {
            json.loads((devnet.folder / i["name"] / "runtime.json").read_text())["pid"]
            for i in devnet.info
        }
        spy = None
        profile_path = None
        if args.profile is not None:
            info = devnet.info[args.profile]
            pid = json.loads((devnet.folder / info["name"] / "runtime.json").read_text())["pid"]
            profile_path = Path(args.profile_out or f"idle-profile-{args.nodes}.txt").resolve()
            spy_bin = Path(sys.executable).parent / "py-spy"
            spy = subprocess.Popen(
                [
                    *(str(spy_bin), "record", "--format", "raw", "--nonblocking"),
                    *("-o", str(profile_path), "--pid", str(pid), "-d", str(int(args.seconds))),
                ],
                stdout=subprocess.DEVNULL,
                stderr=open(profile_path.with_suffix(".log"), "wb"),  # noqa: SIM115
            )
        before = await node_counters(devnet)
        cpu0, enc0 = _node_cpu(pids)
        busy0, t0 = machine_busy_s(), time.monotonic()
        await trio.sleep(args.seconds)
        cpu1, enc1 = _node_cpu(pids)
        busy1, t1 = machine_busy_s(), time.monotonic()
        after = await node_counters(devnet)
        if spy is not None:
            await trio.to_thread.run_sync(spy.wait)
    finally:
        await devnet.stop()
        shutil.rmtree(folder, ignore_errors=True)
    span = t1 - t0
    processes = len(devnet.info)
    epochs = span / EPOCH_S
    counts: dict[str, float] = {}
    for b, a in zip(before, after, strict=True):
        for key, value in a.items():
            name, labels = key
            if not _reported(name, labels):
                continue
            label = f"{name.removeprefix('repp2p_')}{{{labels}}}" if labels else name
            counts[label] = counts.get(label, 0.0) + value - b.get(key, 0.0)
    per_node_epoch = {k: round(v / processes / epochs, 2) for k, v in sorted(counts.items()) if v}
    cores = (cpu1 - cpu0) / span / processes
    return {
        "nodes": args.nodes,
        "processes": processes,
        "views": args.views,
        "window_s": round(span, 1),
        "cores_per_node": round(cores, 4),
        "cores_nodes": round((cpu1 - cpu0) / span, 3),
        "cores_enclaves": round((enc1 - enc0) / span, 3),
        "machine_busy_cores": round((busy1 - busy0) / span, 2),
        "per_node_per_epoch": per_node_epoch,
        "profile": str(profile_path) if profile_path else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=8, help="nodes besides the bootstrap")
    parser.add_argument("--seconds", type=float, default=60.0, help="window (whole epochs)")
    parser.add_argument("--settle", type=float, default=40.0, help="wait before the window")
    parser.add_argument("--views", choices=VIEWS, default="digests")
    parser.add_argument("--ready-timeout", type=float, default=180.0)
    parser.add_argument("--profile", type=int, default=None, help="py-spy this node index")
    parser.add_argument("--profile-out", default=None)
    parser.add_argument("--baseline", type=float, default=0.0, help="cores per node before")
    args = parser.parse_args()
    if args.seconds % EPOCH_S:
        raise SystemExit(f"--seconds must be a whole number of epochs ({EPOCH_S} s)")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    result = trio.run(measure, args)
    figure = result["cores_per_node"]
    print(
        json.dumps(
            {
                "bench": "idle",
                **result,
                "baseline": args.baseline,
                "ratio": round(figure / args.baseline, 3) if args.baseline else None,
            }
        )
    )


if __name__ == "__main__":
    main()
