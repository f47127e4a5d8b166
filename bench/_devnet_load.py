"""Helpers shared by the benches that load a devnet (bench/tasks.py, bench/scaling.py,
bench/freshness.py, bench/parties.py).

Not a bench itself: a bench's devnet of echo nodes in a temporary folder
(:func:`echo_devnet`), percentiles, and CPU time of this process's tree from Linux /proc,
by process role (the in-process client, its children the node processes, their children
the simulated enclave processes).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from repp2p.cli.devnet import Devnet

ROLES = ("client", "nodes", "enclaves")


async def capacity_refusals(devnet: Devnet) -> float:
    """Tasks the devnet's nodes refused so far for want of a free slot (``capacity``),
    summed from their ``/metrics``; a node that does not answer counts 0."""
    from repp2p.net.status_http import fetch

    total = 0.0
    for info in devnet.info:
        address = info.get("status")
        if not address:
            continue
        host, _, port = address.rpartition(":")
        try:
            text = (await fetch(host, int(port), "/metrics", timeout=2)).decode()
        except (OSError, trio.TooSlowError):
            continue
        for line in text.splitlines():
            wanted = ("repp2p_limits_total{", 'limit="capacity"', 'protocol="task"')
            if line.startswith(wanted[0]) and all(w in line for w in wanted[1:]):
                total += float(line.rsplit(" ", 1)[1])
    return total


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def tree_cpu_by_pid() -> dict[int, tuple[str, float]]:
    """pid -> (role, CPU seconds used so far) for this process and its descendants.

    Role: ``client`` (this process), ``nodes`` (its children: the node processes) or
    ``enclaves`` (their children). CPU = utime + stime + the times of reaped children.
    """
    tick = os.sysconf("SC_CLK_TCK")
    procs: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, and the times of reaped children
        procs[int(entry)] = (int(fields[1]), sum(int(x) for x in fields[11:15]) / tick)
    me = os.getpid()
    out: dict[int, tuple[str, float]] = {}
    for pid, (_, cpu) in procs.items():
        walk, depth = pid, 0
        while walk in procs and walk != me:  # up the parent chain (ends at pid 0)
            walk, depth = procs[walk][0], depth + 1
        if walk == me:
            out[pid] = (ROLES[min(depth, 2)], cpu)
    return out


def tree_cpu_s() -> dict[str, float]:
    """CPU seconds used so far by this process and its descendants, by role (see
    :func:`tree_cpu_by_pid`), plus ``total``."""
    out = dict.fromkeys((*ROLES, "total"), 0.0)
    for role, cpu in tree_cpu_by_pid().values():
        out[role] += cpu
        out["total"] += cpu
    return out


def machine_busy_s() -> float:
    """CPU seconds all of this machine's cores have been busy since boot (/proc/stat),
    whoever's work it was: sampled around a window, it shows whether the cores were
    saturated."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


#: ``--views`` choices of the devnet benches: what the network's views score nodes from
#: (``NetworkParams.reputation_source``); on "digests" per-task records stay with the
#: task's parties (repp2p.node.light)
VIEWS = ("records", "digests")


def dev_network_file(folder: Path, views: str) -> Path | None:
    """A copy of the dev network's file (and its attestation policy) in ``folder`` with
    ``reputation_source = views``; None for ``"digests"`` (the shipped file's default,
    unchanged)."""
    if views == "digests":
        return None
    from repp2p.config import BOOTSTRAP_DIR

    folder.mkdir(parents=True, exist_ok=True)
    text = (BOOTSTRAP_DIR / "dev.toml").read_text()
    marker = '# reputation_source = "digests"'
    if marker not in text:
        raise SystemExit(f"{BOOTSTRAP_DIR / 'dev.toml'} no longer has the line {marker!r}")
    (folder / "dev.toml").write_text(text.replace(marker, f'reputation_source = "{views}"'))
    shutil.copy(BOOTSTRAP_DIR / "policy-dev.toml", folder / "policy-dev.toml")
    return folder / "dev.toml"


@dataclasses.dataclass(frozen=True)
class BenchDevnet:
    """A started bench devnet (:func:`echo_devnet`).

    Attributes:
        devnet: the running devnet.
        folder: the temporary folder it lives in (removed at the end), for the bench's
            own files (a client's data directory).
        network_file: the network file its nodes load (None: the shipped dev network).
    """

    devnet: Devnet
    folder: Path
    network_file: Path | None


@asynccontextmanager
async def echo_devnet(
    name: str, nodes: int, views: str = "records", extra: dict | None = None
) -> AsyncIterator[BenchDevnet]:
    """A started devnet of ``nodes`` echo nodes in a temporary folder, stopped and removed
    on exit (even when cancelled).

    Args:
        name: the bench, in the folder's name (``repp2p-bench-NAME-...``).
        nodes: ``Devnet``'s node count.
        views: ``reputation_source`` of its network (:func:`dev_network_file`).
        extra: more node config (``Devnet``'s ``extra``); ``network_file`` is added.
    """
    folder = Path(tempfile.mkdtemp(prefix=f"repp2p-bench-{name}-"))
    network_file = dev_network_file(folder / "network", views)
    config = dict(extra or {})
    if network_file is not None:
        config["network_file"] = str(network_file)
    devnet = Devnet(folder / "net", nodes, ["echo"], extra=config)
    try:
        await devnet.start()
        yield BenchDevnet(devnet, folder, network_file)
    finally:
        with trio.CancelScope(shield=True):
            await devnet.stop()
        shutil.rmtree(folder, ignore_errors=True)


_SAMPLE = re.compile(r"^(repp2p_[a-z0-9_]+?)(?:_total|_seconds_count)(?:\{([^}]*)\})? (\S+)$")


def parse_counters(text: str) -> dict[tuple[str, str], float]:
    """(metric, labels) -> value of the counters we read (``*_total`` samples)."""
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if line.startswith("#") or ("_total" not in line and "_seconds_count" not in line):
            continue
        m = _SAMPLE.match(line)
        if m:
            out[(m.group(1), m.group(2))] = float(m.group(3))
    return out


async def node_counters(devnet: Devnet) -> list[dict[tuple[str, str], float]]:
    """Each node's counters from its ``/metrics`` (:func:`parse_counters`), in
    ``devnet.info`` order; empty for a node that does not answer."""
    from repp2p.net.status_http import fetch

    out: list[dict[tuple[str, str], float]] = [{} for _ in devnet.info]

    async def one(i: int, address: str) -> None:
        host, _, port = address.rpartition(":")
        try:
            out[i] = parse_counters((await fetch(host, int(port), "/metrics", timeout=5)).decode())
        except (OSError, ValueError, trio.TooSlowError):
            out[i] = {}

    async with trio.open_nursery() as nursery:
        for i, info in enumerate(devnet.info):
            if info.get("status"):
                nursery.start_soon(one, i, info["status"])
    return out
