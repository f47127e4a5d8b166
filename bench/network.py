"""Benchmark: devnet set-up time, RSS per node, and gossip reach time.

For each size (default 16 and 32 node processes, plus the bootstrap), this starts a real
devnet of `repp2p node run` processes on 127.0.0.1 and measures:

* set-up: from the first spawn until every node is listening, synced, has >= 4 peers and
  no more than the high watermark of connections (trimming has settled);
* RSS per node (VmRSS from /proc, after set-up);
* gossip reach: a probe peer (its own libp2p host, connected to two nodes) publishes
  heartbeat records one at a time; for each, the time until 99% of the nodes have accepted
  it, from each node's own arrival timestamp (``/record/<id>`` on its status endpoint; all
  processes share this machine's clock). p50 and p99 over the records.

Baseline, measured in the same run: one-hop delivery (probe -> a directly connected node)
p50 on the same devnet, the floor any multi-hop reach is compared with.
Target (issue 4): p99 <= 500 ms on 32 processes. Ends with one JSON line.

    python bench/network.py [--sizes 16,32] [--records 40] [--trace]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import multiaddr
import trio
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.tools.anyio_service import background_trio_service

from repp2p.cli.devnet import EPOCH_S, Devnet
from repp2p.identity import Identity
from repp2p.logs import setup_logging
from repp2p.net.gossip import build_pubsub
from repp2p.net.host import build_host
from repp2p.net.params import ConnectionParams, GossipParams
from repp2p.net.status_http import fetch
from repp2p.net.topics import TOPICS
from repp2p.records import Heartbeat, decode, encode


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def _arrivals(devnet: Devnet, record_id: bytes) -> list[float | None]:
    out: list[float | None] = [None] * len(devnet.info)

    async def one(i: int, address: str) -> None:
        host, _, port = address.rpartition(":")
        try:
            answer = json.loads(await fetch(host, int(port), f"/record/{record_id.hex()}", 2))
            out[i] = answer.get("arrived_at")
        except (OSError, ValueError, trio.TooSlowError):
            out[i] = None

    async with trio.open_nursery() as nursery:
        for i, info in enumerate(devnet.info):
            nursery.start_soon(one, i, info["status"])
    return out


async def measure(size: int, records: int, trace: bool = False) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix="repp2p-bench-"))
    devnet = Devnet(folder, size, ["echo"])
    high = ConnectionParams().high_watermark
    try:
        started = time.monotonic()
        await devnet.start()

        def settled(s: dict | None) -> bool:
            return bool(s and s["synced"] and min(4, size) <= s["peers"] <= high)

        with trio.move_on_after(180) as waited:
            while not all(settled(s) for s in await devnet.statuses()):
                await trio.sleep(0.25)
        if waited.cancelled_caught:
            statuses = await devnet.statuses()
            unsettled = {
                info["name"]: (s and {"peers": s["peers"], "synced": s["synced"]})
                for info, s in zip(devnet.info, statuses, strict=True)
                if not settled(s)
            }
            raise SystemExit(f"devnet of {size} did not settle within 180 s: {unsettled}")
        setup_s = time.monotonic() - started
        pids = [
            json.loads((folder / i["name"] / "runtime.json").read_text())["pid"]
            for i in devnet.info
        ]
        rss = [_rss_mb(p) for p in pids]

        probe = Identity.generate()
        host = build_host(probe)
        reach, one_hop, fractions = [], [], []
        async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
            pubsub, router = build_pubsub(host, GossipParams(eclipse_protection=False))
            async with background_trio_service(pubsub), background_trio_service(router):
                await pubsub.wait_until_ready()
                topic = TOPICS["heartbeats"]
                await pubsub.subscribe(topic)
                entry = [
                    info_from_p2p_addr(multiaddr.Multiaddr(info["addrs"][0]))
                    for info in (devnet.info[1], devnet.info[len(devnet.info) // 2])
                ]
                for peer in entry:
                    await host.connect(peer)
                await trio.sleep(3)  # a few gossipsub heartbeats: the probe joins meshes
                need = math.ceil(0.99 * len(devnet.info))
                redials = 0
                last_counts: dict[str, int] = {}
                for n in range(records):
                    # Nodes over their high watermark close idle gossip-only peers such as
                    # this probe; like any publisher, it dials again (outside the timing).
                    missing = [p for p in entry if p.peer_id not in host.get_connected_peers()]
                    for peer in missing:
                        try:
                            with trio.fail_after(10):
                                await host.connect(peer)
                        except Exception as exc:  # the other entry may still be there
                            print(f"  probe re-dial failed: {exc!r}", flush=True)
                        redials += 1
                    if missing:
                        await trio.sleep(3)
                    now = time.time()
                    data = encode(
                        Heartbeat(epoch=n, load=0, tasks_done=0, seq=1, expires=int(now) + 600),
                        probe,
                    )
                    record_id = decode(data).record_id
                    sent = time.time()
                    await pubsub.publish(topic, data)
                    with trio.move_on_after(10):
                        while True:
                            # Arrival times are stamped by the nodes; polling slowly keeps
                            # the measurement from loading the machine it measures.
                            await trio.sleep(1.0)
                            arrivals = await _arrivals(devnet, record_id)
                            got = sorted(a for a in arrivals if a is not None)
                            if len(got) >= need:
                                break
                    if len(got) >= need:
                        reach.append(got[need - 1] - sent)
                    if trace:
                        print(
                            f"  record {n} (sent {sent % EPOCH_S:.1f} s into the epoch): "
                            f"{len(got)}/{len(devnet.info)} nodes, "
                            f"99% after {1000 * (got[need - 1] - sent):.0f} ms, last: "
                            f"{devnet.info[arrivals.index(got[need - 1])]['name']}"
                            if len(got) >= need
                            else f"  record {n}: {len(got)}/{len(devnet.info)} nodes after 10 s",
                            flush=True,
                        )
                    if trace and len(got) < len(devnet.info):
                        statuses = await devnet.statuses()
                        for i, arrival in enumerate(arrivals):
                            if arrival is None and statuses[i]:
                                s = statuses[i]
                                print(
                                    f"    missing at {devnet.info[i]['name']}: "
                                    f"{s['peers']} peers, gossip {s.get('gossip')}",
                                    flush=True,
                                )
                    fractions.append(len(got) / len(devnet.info))
                    if len(got) >= need:
                        slowest = devnet.info[arrivals.index(got[need - 1])]["name"]
                        last_counts[slowest] = last_counts.get(slowest, 0) + 1
                    first = arrivals[1]
                    if first is not None:
                        one_hop.append(first - sent)
                if trace and last_counts:
                    # The node most often last: is it starved of CPU or of gossip peers?
                    name = max(last_counts, key=last_counts.__getitem__)
                    statuses = await devnet.statuses()
                    names = [info["name"] for info in devnet.info]
                    cpu = {n: _cpu_s(pid) for n, pid in zip(names, pids, strict=True)}
                    at = names.index(name)
                    me = devnet.info[at]["peer_id"]
                    hb = {
                        n: set(s["gossip"]["mesh_peers"]["heartbeats"])
                        for n, s in zip(names, statuses, strict=True)
                        if s
                    }
                    by_id = {info["peer_id"]: info["name"] for info in devnet.info}
                    mine = [by_id.get(p, p[-6:]) for p in sorted(hb.get(name, ()))]
                    meshed_back = [p for p in mine if p in hb and me in hb[p]]
                    holding = sorted(n for n, mesh in hb.items() if me in mesh)
                    print(
                        f"  {name}'s heartbeats mesh: {mine}; of those meshed back: "
                        f"{meshed_back}; nodes with {name} in their mesh: {holding}",
                        flush=True,
                    )
                    print(
                        f"  last most often: {name} ({last_counts[name]} of {records}); "
                        f"its CPU {cpu[name]:.1f} s, median node "
                        f"{statistics.median(cpu.values()):.1f} s; status: "
                        f"{statuses[at] and {k: statuses[at].get(k) for k in ('peers', 'gossip')}}",
                        flush=True,
                    )
                with trio.move_on_after(5) as scope:
                    scope.shield = True
                    await host.get_network().close()
        return {
            "nodes": len(devnet.info),
            "setup_s": setup_s,
            "rss_mb_mean": statistics.mean(rss),
            "rss_mb_max": max(rss),
            "reach_p50_ms": 1000 * _pct(reach, 0.50) if reach else float("nan"),
            "reach_p99_ms": 1000 * _pct(reach, 0.99) if reach else float("nan"),
            "reached": len(reach),
            "published": records,
            "one_hop_p50_ms": 1000 * _pct(one_hop, 0.50) if one_hop else float("nan"),
            "reached_share": statistics.mean(fractions) if fractions else float("nan"),
            "probe_redials": redials,
        }
    finally:
        await devnet.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="16,32")
    parser.add_argument("--records", type=int, default=40)
    parser.add_argument("--trace", action="store_true", help="print each record's reach")
    args = parser.parse_args()
    setup_logging("text", "WARNING", "CRITICAL")
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        r = trio.run(measure, size, args.records, args.trace)
        results.append(r)
        print(
            f"{r['nodes']:>3} processes: set-up {r['setup_s']:.1f} s, RSS {r['rss_mb_mean']:.0f} MB"
            f"/node (max {r['rss_mb_max']:.0f}), reach to 99% p50 {r['reach_p50_ms']:.0f} ms, "
            f"p99 {r['reach_p99_ms']:.0f} ms ({r['reached']}/{r['published']} reached), "
            f"one-hop p50 {r['one_hop_p50_ms']:.0f} ms; mean share of nodes holding a record "
            f"after 10 s: {r['reached_share']:.0%}; probe re-dials: {r['probe_redials']}",
            flush=True,
        )
    last = results[-1]
    figures = {"bench": "network"}
    for r in results:
        n = r["nodes"] - 1
        figures[f"setup_s_{n}"] = round(r["setup_s"], 2)
        figures[f"rss_mb_{n}"] = round(r["rss_mb_mean"], 1)
        figures[f"reach_p50_ms_{n}"] = round(r["reach_p50_ms"], 1)
        figures[f"reach_p99_ms_{n}"] = round(r["reach_p99_ms"], 1)
    figures["baseline"] = round(last["one_hop_p50_ms"], 1)
    figures["ratio"] = round(last["reach_p99_ms"] / last["one_hop_p50_ms"], 2)
    # NaN (no record reached 99% in time) is written as null: the line stays valid JSON.
    clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in figures.items()}
    print(json.dumps(clean))


if __name__ == "__main__":
    main()
