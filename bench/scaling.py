"""Benchmark: per-node CPU per network-wide task, as the devnet grows (issue 14).

For each size N in ``--sizes`` (default 4, 8, 16, 32), this starts a fresh devnet of N
``repp2p node run`` processes plus its bootstrap (N + 1 node processes, each with its
simulated enclave process) on 127.0.0.1, waits until every node is synced and has peers,
joins it with an in-process client, waits until the nodes are eligible in the client's
view (at least ``--min-eligible`` of them, default half; the rest are named), runs
``--warmup`` tasks one at a time (first contacts: dials, task streams), and then measures:

* **idle**: CPU of the node processes over ``--idle-seconds`` with no task running;
* **base** and **load**: two paced loads, the same at every size: tasks started open-loop
  at ``--base-rate`` (default half of ``--rate``) and then at ``--rate`` per second (echo
  engine, k=1; at most ``--max-in-flight`` at once, offers beyond that are counted as
  dropped), the base load for ``--steady`` seconds (60: the work digests of loaded epochs
  go out ``seal_lag`` epochs later, and the base window must hold them as the load window
  does) and the load for ``--lead`` seconds before its window of ``--seconds``. Tasks =
  those that completed inside the window; CPU = CPU of the node processes inside the
  window (Linux /proc).

The figure, in ms: **node CPU per network-wide task per node** = (node-process CPU in the
load window - node-process CPU in the base window) / (tasks of the load window - tasks of
the base window) / (N + 1): what one more network-wide task costs each node, the marginal
cost. All node processes count, the bootstrap included (it serves tasks like any node),
and the divisor is the number of processes whose CPU is summed, so a constant
per-process cost gives the same figure at every size. Enclave and client CPU are reported
beside it, not in it. A least-squares fit over the nodes, of each node's extra CPU per
extra task against its share of the extra tasks served, splits the figure into what every
node pays per network-wide task (the intercept) and what serving a task costs the node
that serves it (the slope); with k=1 the figure is about intercept + slope / (N + 1).

Why against a base load, not idle: a node's per-epoch work (heartbeats, its work digest,
everyone else's digests, view builds) grows with the number of peers, not with tasks, and
at a fixed task rate counting it in would make the per-task figure grow with N whatever
the task path costs. Idle is no longer the right base for it: a node that served nothing
in an epoch and the one before skips its empty work digest (docs/digests.md, "Quiet
epochs"), so an idle devnet sends no digests while a loaded one sends one per node and
epoch, and subtracting idle CPU left those in the figure (at 16 nodes net of idle rose
0.97 -> 2.73 ms when quiet epochs landed, while gross fell). Under both paced loads almost
every node publishes its digest every epoch, so the difference holds the tasks' own cost.
The figure net of idle ("idle_net") and the gross figure are printed beside it. Both
windows are whole multiples of the epoch (``EPOCH_S``, 10 s on the dev network), so each
holds the same number of epoch boundaries. The difference of two windows is noisier than
either: on a shared machine, read it with the whole machine's busy CPU printed beside it.

Why the same offered load: the question is what one more network-wide task costs each
peer as peers are added. With the rate fixed, a design where per-task records stay with
a task's parties spreads a constant total cost over more nodes (the figure falls as 1/N);
a design where every node pulls, verifies and stores every task's records keeps it flat.
Closed-loop load (as in bench/tasks.py) would instead let each size run at its own
saturation rate, mixing the per-task cost with contention on the machine's cores. The
default rate (5/s) is about the most the largest devnet takes on a 2-core machine: its 33
node processes use about one core idle and 1.7 cores at 5 tasks/s.

Eligibility only decides which nodes may serve: every node process follows the feeds and
counts in the figure. On 2 cores a 33-process devnet keeps some nodes out of the client's
view (their re-attestation reaches it more than ``max_epoch_lag`` epochs late), so
requiring all of them would stop the bench there.

Beside the CPU figures, a count that does not depend on how busy the machine is: the
records each node verified and stored per extra task (``stored_per_task_per_node``; the
load window's over the base window's, from each node's ``repp2p_records_accepted_total``
with outcome new, replaced or equivocation, by type), and its ratio largest size over
smallest (``stored_ratio``). With per-task records kept by their parties it is the
serving node's records of a task spread over N + 1 nodes, so it falls as 1/N; where
every node stores every task's records it stays flat.

Per size it also prints p50/p99 latency (submit -> verified, tasks completed in the
window), tasks/s, how many nodes served tasks, connection churn during the windows, and
the records each node holds per type at the end (``/status`` "records").
Every devnet runs the dev network as shipped, whose views come from digests: per-task
records stay with their parties, so the every-node part of the figure should vanish.
``--views records`` runs a copy of its file with ``reputation_source = "records"``
(every node pulls every task's records) for comparison.
Target (issue 14): the 32-node figure <= 1/4 of the 4-node figure (``ratio``, the largest
size's figure over the smallest's, <= 0.25). Ends with one JSON line.

    python bench/scaling.py [--sizes 4,8,16,32] [--rate 5] [--base-rate 2.5] [--seconds 30]
                            [--idle-seconds 30] [--steady 60] [--lead 5] [--warmup 20]
                            [--min-eligible 0.5]
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from _devnet_load import (
    ROLES,
    VIEWS,
    dev_network_file,
    machine_busy_s,
    node_counters,
    pct,
    tree_cpu_by_pid,
)

from repp2p.cli.devnet import EPOCH_S, Devnet
from repp2p.client import Client, TaskError
from repp2p.errors import NetworkError
from repp2p.logs import setup_logging
from repp2p.net.params import ConnectionParams
from repp2p.network_params import NetworkParams

TASK_RECORD_TYPES = ("TaskOffer", "Claim", "Receipt", "Feedback")
TARGET_RATIO = 0.25
#: seconds for a record to reach every node over the feeds (a few 0.5 s pull hops)
FEED_SETTLE_S = 2.5


Snapshot = dict[int, tuple[str, float]]


class NotReady(Exception):
    """A devnet did not come up; the message names the nodes."""


def _first(exc: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _delta(after: Snapshot, before: Snapshot, role: str) -> float:
    """CPU seconds a role used between two snapshots (processes present in both)."""
    return sum(
        cpu - before[pid][1] for pid, (r, cpu) in after.items() if r == role and pid in before
    )


async def _settle(devnet: Devnet, size: int, timeout: float) -> None:
    """Until every node answers /status synced, with peers, within the high watermark;
    else NotReady naming the nodes that are not there."""
    high = ConnectionParams().high_watermark

    def settled(s: dict[str, Any] | None) -> bool:
        return bool(s and s["synced"] and min(4, size) <= s["peers"] <= high)

    with trio.move_on_after(timeout):
        while not all(settled(s) for s in await devnet.statuses()):
            await trio.sleep(1.0)
        return
    statuses = await devnet.statuses()
    missing = {
        info["name"]: (s and {"peers": s["peers"], "synced": s["synced"]}) or "no /status answer"
        for info, s in zip(devnet.info, statuses, strict=True)
        if not settled(s)
    }
    raise NotReady(f"devnet of {size} nodes did not settle within {timeout:.0f} s: {missing}")


def _why_not_eligible(
    client: Client, devnet: Devnet, statuses: list[dict[str, Any] | None]
) -> dict[str, str]:
    """name -> why, for the nodes the client's current view does not rank (diagnostics:
    reads the view's columns)."""
    epoch = client.views.current_epoch()
    view = client.views.view(epoch)
    ev = view.evidence
    at = {p: i for i, p in enumerate(ev.peers)}
    heartbeats: dict[int, int] = {}
    for node, hb_epoch in zip(ev.hb_node.tolist(), ev.hb_epoch.tolist(), strict=True):
        heartbeats[node] = max(heartbeats.get(node, -1), hb_epoch)
    ranked = set(view.peers[i] for i in range(len(view.peers)) if view.base_eligible[i])
    out = {}
    for info, status in zip(devnet.info, statuses, strict=True):
        peer = info["peer_id"]
        if peer in ranked:
            continue
        node = f"{status['peers']} peers" if status else "no /status answer"
        i = at.get(peer)
        if i is None:
            out[info["name"]] = f"not in the view of epoch {epoch} ({node})"
            continue
        out[info["name"]] = (
            f"verified={bool(ev.verified[i])} consistent={bool(ev.consistent[i])} "
            f"last heartbeat epoch {heartbeats.get(i, 'none')} (view epoch {epoch}; {node})"
        )
    return out


async def _paced(
    client: Client, devnet: Devnet, rate: float, args: argparse.Namespace, lead: float
) -> dict[str, Any]:
    """Tasks offered open-loop at ``rate`` per second for ``lead`` seconds and then over a
    window of ``--seconds``: CPU snapshots and the nodes' ``/status`` (tasks served) at the
    window's edges, the tasks completed inside it and their latencies, failures and drops
    over the whole run."""
    latencies: list[float] = []  # of tasks completed inside the window
    window: dict[str, Any] = {"open": False, "done": 0}
    counts = {"failed": 0, "dropped": 0, "in_flight": 0}

    async def one(i: int) -> None:
        counts["in_flight"] += 1
        t = trio.current_time()
        try:
            await client.submit("echo", b"scaling %g %d" % (rate, i))
        except TaskError:
            counts["failed"] += 1
        else:
            if window["open"]:
                window["done"] += 1
                latencies.append((trio.current_time() - t) * 1000)
        finally:
            counts["in_flight"] -= 1

    async def close_window() -> None:
        await trio.sleep_until(t0 + lead)
        window["cpu_0"], window["busy_0"] = tree_cpu_by_pid(), machine_busy_s()
        window["open"] = True
        opened = trio.current_time()
        window["status_0"] = await devnet.statuses()
        window["counters_0"] = await node_counters(devnet)
        await trio.sleep_until(opened + args.seconds)
        window["open"] = False
        window["cpu_1"], window["busy_1"] = tree_cpu_by_pid(), machine_busy_s()
        window["status_1"] = await devnet.statuses()
        window["counters_1"] = await node_counters(devnet)

    offers = round(rate * (lead + args.seconds))
    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(close_window)
        for i in range(offers):
            await trio.sleep_until(t0 + i / rate)
            if counts["in_flight"] >= args.max_in_flight:
                counts["dropped"] += 1
                continue
            nursery.start_soon(one, i)
    return {
        **window,
        "latencies": latencies,
        "failed": counts["failed"],
        "dropped": counts["dropped"],
    }


async def _drive(
    client: Client, devnet: Devnet, size: int, args: argparse.Namespace
) -> dict[str, Any]:
    """Eligibility, warm-up, the idle window, then the base load and the load, each paced
    and measured in its own window."""
    processes = len(devnet.info)
    need = math.ceil(args.min_eligible * processes)
    eligible = await client.wait_for_nodes("echo", need, args.ready_timeout)
    why = _why_not_eligible(client, devnet, await devnet.statuses()) if eligible < processes else {}
    if eligible < need:
        raise NotReady(
            f"devnet of {size} nodes: {eligible} of {processes} eligible in the client's view "
            f"after {args.ready_timeout:.0f} s (--min-eligible needs {need}); not eligible: {why}"
        )
    ready_at = time.monotonic()
    for i in range(args.warmup):
        await client.submit("echo", b"warm-up %d" % i)
    await trio.sleep(2 * FEED_SETTLE_S)  # the warm-up's records finish spreading

    idle_0, busy_0 = tree_cpu_by_pid(), machine_busy_s()
    await trio.sleep(args.idle_seconds)
    idle_1, busy_1 = tree_cpu_by_pid(), machine_busy_s()

    before = await devnet.statuses()
    # the base load runs --steady seconds before its window: the work digests of the
    # epochs it serves go out only seal_lag epochs later, and the window must hold them
    base = await _paced(client, devnet, args.base_rate, args, args.steady)
    load = await _paced(client, devnet, args.rate, args, args.lead)
    await trio.sleep(2 * FEED_SETTLE_S)  # the last records spread before counting
    after = await devnet.statuses()
    return {
        "ready_at": ready_at,
        "eligible": eligible,
        "not_eligible": why,
        "statuses": (before, after),
        "idle": (idle_0, idle_1, busy_1 - busy_0),
        "base": base,
        "load": load,
    }


async def measure(size: int, args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="repp2p-bench-scaling-"))
    network_file = dev_network_file(folder / "network", args.views)
    extra = {"network_file": str(network_file)} if network_file is not None else {}
    devnet = Devnet(folder / "net", size, ["echo"], extra=extra)
    try:
        started = time.monotonic()
        try:
            await devnet.start()
        except* NetworkError as group:  # "node-N did not start; see its log"
            raise NotReady(f"devnet of {size} nodes did not come up: {_first(group)}") from None
        await _settle(devnet, size, args.ready_timeout)
        raw: dict[str, Any] | None = None
        failure: Exception | None = None
        try:
            async with Client.open(
                [devnet.info[0]["addrs"][0]],
                data_dir=folder / "client",
                sync_timeout=args.ready_timeout,
                network_params=NetworkParams.load("dev", network_file),
            ) as client:
                try:
                    raw = await _drive(client, devnet, size, args)
                except Exception as exc:  # raised below, once the client is closed
                    failure = exc
        except Exception as exc:
            if raw is None and failure is None:  # Client.open itself failed
                if isinstance(exc, NetworkError):
                    raise NotReady(
                        f"devnet of {size} nodes: the client did not join: {exc}"
                    ) from None
                raise
            # py-libp2p can fail while the client's host shuts down on a busy network
            # (pubsub scheduling a task on a closed nursery); what was measured stands.
            print(f"  (the client's shutdown raised {exc!r}; ignored)", flush=True)
        if failure is not None:
            raise failure
        assert raw is not None
        return _summarise(raw, devnet, size, args, setup_s=raw["ready_at"] - started)
    finally:
        with trio.CancelScope(shield=True):
            await devnet.stop()
        shutil.rmtree(folder, ignore_errors=True)


#: store outcomes of a record that was verified and written (docs/records.md)
_STORED = ('outcome="new"', 'outcome="replaced"', 'outcome="equivocation"')


def _stored(window: dict[str, Any]) -> collections.Counter[str]:
    """Records every node verified and stored inside ``window``, summed over the nodes
    that answered at both edges, by record type (from ``repp2p_records_accepted_total``)."""
    out: collections.Counter[str] = collections.Counter()
    for c0, c1 in zip(window["counters_0"], window["counters_1"], strict=True):
        if not c0 or not c1:
            continue
        for (metric, labels), value in c1.items():
            if metric == "repp2p_records_accepted" and any(o in labels for o in _STORED):
                kind = labels.split('type="', 1)[1].split('"', 1)[0]
                out[kind] += value - c0.get((metric, labels), 0.0)
    return out


def _cpu(window: dict[str, Any], role: str) -> float:
    return _delta(window["cpu_1"], window["cpu_0"], role)


def _summarise(
    raw: dict[str, Any], devnet: Devnet, size: int, args: argparse.Namespace, setup_s: float
) -> dict[str, Any]:
    processes = len(devnet.info)
    base, load = raw["base"], raw["load"]
    first, after = raw["statuses"]
    idle_0, idle_1, idle_busy = raw["idle"]
    idle_node_cores = _delta(idle_1, idle_0, "nodes") / args.idle_seconds
    done, extra = load["done"], load["done"] - base["done"]
    node_cpu = _cpu(load, "nodes")
    extra_cpu = node_cpu - _cpu(base, "nodes")
    up = [s for s in after if s]
    records = {t: statistics.mean(s["records"].get(t, 0) for s in up) for t in up[0]["records"]}

    def served(s0: list[Any], s1: list[Any]) -> list[int]:
        return [
            b["tasks_done"] - a["tasks_done"] if a and b else 0 for a, b in zip(s0, s1, strict=True)
        ]

    # tasks each node served inside each window (its /status, read at the window's edges)
    served_base = served(base["status_0"], base["status_1"])
    served_load = served(load["status_0"], load["status_1"])
    churn = {
        k: sum(
            b["connections"][k] - a["connections"][k]
            for a, b in zip(first, after, strict=True)
            if a and b
        )
        for k in ("opened", "closed", "trimmed")
    }
    # Per node: the CPU the load window took beyond the base window, per extra task (y),
    # against its share of the extra tasks served (f). The fit y = a + b f splits the
    # figure (the mean of y, = a + b / (N + 1) with k=1) into what every node pays per
    # network-wide task (a) and what serving one costs the node that serves it (b).
    pids = [
        json.loads((devnet.folder / i["name"] / "runtime.json").read_text())["pid"]
        for i in devnet.info
    ]
    extra_served = [hi - lo for hi, lo in zip(served_load, served_base, strict=True)]
    total_extra = sum(extra_served) or 1
    snaps = (base["cpu_0"], base["cpu_1"], load["cpu_0"], load["cpu_1"])
    points = [
        (
            n / total_extra,
            (
                (load["cpu_1"][pid][1] - load["cpu_0"][pid][1])
                - (base["cpu_1"][pid][1] - base["cpu_0"][pid][1])
            )
            * 1000
            / extra,
        )
        for pid, n in zip(pids, extra_served, strict=True)
        if extra > 0 and all(pid in snap for snap in snaps)
    ]
    try:
        fit = statistics.linear_regression([f for f, _ in points], [y for _, y in points])
        every_node_ms, serving_ms = fit.intercept, fit.slope
    except statistics.StatisticsError:  # every node served the same share, or no extra task
        every_node_ms = serving_ms = math.nan
    per = max(done, 1) * processes
    latencies = load["latencies"]
    stored_extra = _stored(load) - _stored(base)
    return {
        "size": size,
        "processes": processes,
        "setup_s": setup_s,
        "eligible": raw["eligible"],
        "not_eligible": raw["not_eligible"],
        "done": done,
        "base_done": base["done"],
        "failed": load["failed"] + base["failed"],
        "dropped": load["dropped"] + base["dropped"],
        "tasks_per_s": done / args.seconds,
        "p50_ms": pct(latencies, 0.5) if latencies else math.nan,
        "p99_ms": pct(latencies, 0.99) if latencies else math.nan,
        "idle_node_cores": idle_node_cores,
        "base_node_cores": _cpu(base, "nodes") / args.seconds,
        "load_node_cores": node_cpu / args.seconds,
        "idle_machine_cores": idle_busy / args.idle_seconds,
        "load_machine_cores": (load["busy_1"] - load["busy_0"]) / args.seconds,
        "load_bench_cores": sum(_cpu(load, role) for role in ROLES) / args.seconds,
        "cpu_ms_per_task_per_node": (
            extra_cpu * 1000 / (extra * processes) if extra > 0 else math.nan
        ),
        "idle_net_cpu_ms_per_task_per_node": (
            (node_cpu - idle_node_cores * args.seconds) * 1000 / per
        ),
        "gross_cpu_ms_per_task_per_node": node_cpu * 1000 / per,
        "client_ms_per_task": _cpu(load, "client") * 1000 / max(done, 1),
        "enclaves_ms_per_task": _cpu(load, "enclaves") * 1000 / max(done, 1),
        "every_node_ms_per_task": every_node_ms,
        # load-independent: records each node verified and stored per extra task
        "stored_per_task_per_node": (
            sum(stored_extra.values()) / (extra * processes) if extra > 0 else math.nan
        ),
        "stored_per_task_by_type": {
            t: round(v / (extra * processes), 4) for t, v in sorted(stored_extra.items()) if v
        }
        if extra > 0
        else {},
        "serving_ms_per_served_task": serving_ms,
        "records": {t: v for t, v in records.items() if v},
        "task_records_min": min(sum(s["records"].get(t, 0) for t in TASK_RECORD_TYPES) for s in up),
        "served_by": sum(1 for n in served_load if n > 0),
        "served_max": max(served_load, default=0),
        "churn": churn,
    }


def _whole_epochs(name: str, seconds: float) -> None:
    if seconds <= 0 or abs(seconds / EPOCH_S - round(seconds / EPOCH_S)) > 1e-9:
        raise SystemExit(f"{name} must be a whole number of {EPOCH_S} s epochs, got {seconds}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="4,8,16,32", help="devnet sizes (nodes besides the bootstrap)"
    )
    parser.add_argument(
        "--rate", type=float, default=5.0, help="offered tasks/s, the same at every size"
    )
    parser.add_argument(
        "--base-rate",
        type=float,
        default=None,
        help="offered tasks/s of the base window the figure is taken against (default: half "
        "of --rate)",
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="load window (whole epochs)")
    parser.add_argument(
        "--idle-seconds", type=float, default=30.0, help="idle window (whole epochs)"
    )
    parser.add_argument("--lead", type=float, default=5.0, help="load before the load window opens")
    parser.add_argument(
        "--steady",
        type=float,
        default=60.0,
        help="base load before the base window opens: long enough for the work digests of "
        "loaded epochs to go out (they are published seal_lag epochs later)",
    )
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--max-in-flight", type=int, default=64)
    parser.add_argument("--ready-timeout", type=float, default=300.0)
    parser.add_argument(
        "--views",
        choices=VIEWS,
        default="digests",
        help="what views score nodes from (reputation_source); on digests, per-task records "
        "stay with their parties",
    )
    parser.add_argument(
        "--min-eligible",
        type=float,
        default=0.5,
        help="share of the node processes that must be eligible in the client's view",
    )
    args = parser.parse_args()
    if args.base_rate is None:
        args.base_rate = args.rate / 2
    if not 0 < args.base_rate < args.rate:
        raise SystemExit(f"--base-rate must be in (0, --rate), got {args.base_rate}")
    _whole_epochs("--seconds", args.seconds)
    _whole_epochs("--idle-seconds", args.idle_seconds)
    setup_logging("text", "ERROR", "CRITICAL")
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        try:
            r = trio.run(measure, size, args)
        except* NotReady as group:
            raise SystemExit(f"scaling: {_first(group)}") from None
        results.append(r)
        held = ", ".join(f"{t} {v:.0f}" for t, v in sorted(r["records"].items()))
        stored = ", ".join(f"{t} {v:.3f}" for t, v in r["stored_per_task_by_type"].items())
        print(
            f"{size:>3} nodes + bootstrap (set-up {r['setup_s']:.0f} s, {r['eligible']} of "
            f"{r['processes']} eligible): {r['done']} tasks in "
            f"{args.seconds:.0f} s = {r['tasks_per_s']:.1f}/s (offered {args.rate:g}/s; "
            f"{r['failed']} failed, {r['dropped']} dropped), served by {r['served_by']} of "
            f"{r['processes']} nodes (most {r['served_max']}); p50 {r['p50_ms']:.1f} ms, p99 "
            f"{r['p99_ms']:.1f} ms; base window {r['base_done']} tasks at "
            f"{args.base_rate:g}/s\n"
            f"    node CPU per extra task per node {r['cpu_ms_per_task_per_node']:.3f} ms "
            f"(load over base window; {r['idle_net_cpu_ms_per_task_per_node']:.3f} net of idle, "
            f"{r['gross_cpu_ms_per_task_per_node']:.3f} gross; fit over the nodes: "
            f"{r['every_node_ms_per_task']:.3f} ms on every node + "
            f"{r['serving_ms_per_served_task']:.2f} ms on the serving one); node processes "
            f"{r['load_node_cores']:.2f} cores under load, {r['base_node_cores']:.2f} under "
            f"the base load, {r['idle_node_cores']:.2f} idle; "
            f"all bench processes {r['load_bench_cores']:.2f} cores under load (whole "
            f"machine, others' work included: {r['load_machine_cores']:.2f} under load, "
            f"{r['idle_machine_cores']:.2f} idle, of {os.cpu_count()}); "
            f"client {r['client_ms_per_task']:.2f} ms/task, enclaves "
            f"{r['enclaves_ms_per_task']:.2f} ms/task; connections opened/closed/trimmed "
            f"during the windows {r['churn']['opened']}/{r['churn']['closed']}/"
            f"{r['churn']['trimmed']}\n"
            f"    records verified and stored per extra task per node (load-independent): "
            f"{r['stored_per_task_per_node']:.3f} ({stored or 'none'})\n"
            f"    records held per node at the end (mean): {held}; fewest task records on "
            f"one node: {r['task_records_min']}",
            flush=True,
        )
        if r["not_eligible"]:
            print(f"    not eligible when the load started: {r['not_eligible']}", flush=True)
    figures: dict[str, Any] = {"bench": "scaling"}
    for r in results:
        figures[f"cpu_ms_per_task_per_node_{r['size']}"] = round(r["cpu_ms_per_task_per_node"], 3)
    for r in results:
        figures[f"tasks_per_s_{r['size']}"] = round(r["tasks_per_s"], 1)
    for key, digits in (
        ("idle_net_cpu_ms_per_task_per_node", 3),
        ("gross_cpu_ms_per_task_per_node", 3),
        ("every_node_ms_per_task", 3),
        ("serving_ms_per_served_task", 2),
        ("stored_per_task_per_node", 3),
        ("idle_node_cores", 2),
        ("base_node_cores", 2),
        ("load_node_cores", 2),
        ("p50_ms", 1),
        ("p99_ms", 1),
    ):
        for r in results:
            figures[f"{key}_{r['size']}"] = round(r[key], digits)
    first, last = results[0], results[-1]
    figures["offered_per_s"] = args.rate
    figures["base_offered_per_s"] = args.base_rate
    figures["views"] = args.views
    figures["seconds"] = args.seconds
    figures["cpus"] = os.cpu_count()
    figures["baseline"] = round(first["cpu_ms_per_task_per_node"], 3)
    # the largest size's figure over the smallest's (32 over 4 with the default sizes)
    base = first["cpu_ms_per_task_per_node"]
    figures["ratio"] = round(last["cpu_ms_per_task_per_node"] / base, 3) if base > 0 else math.nan
    figures["target_ratio"] = TARGET_RATIO
    # the same ratio for the load-independent count (records verified and stored per node)
    stored = first["stored_per_task_per_node"]
    figures["stored_ratio"] = (
        round(last["stored_per_task_per_node"] / stored, 3) if stored > 0 else math.nan
    )
    clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in figures.items()}
    print(json.dumps(clean))


if __name__ == "__main__":
    main()
