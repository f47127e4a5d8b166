"""Profiles of a bench devnet's processes, by role (bench/tasks.py ``--profile`` and
``--cprofile``).

Not a bench itself. Two kinds. ``--cprofile``: deterministic profiles of CPU time
(``cProfile`` with ``time.process_time``) of the client in this process and, through
bench/_cprofile/sitecustomize.py, of every node and enclave process, over the throughput
window (:func:`cprofile_start`, :func:`cprofile_stop`, :func:`cprofile_summary`): the
figure to trust for where CPU goes, though many small Python calls are inflated.
``--profile``: :func:`spy_tree` runs py-spy (from this Python's environment) on this
process and its descendants for a window, one raw (collapsed-stack) file per process named
by role and pid; :func:`summarise` reads them back and prints, per role, the functions
with the most samples, inclusive and self. py-spy leaves idle threads out (waiting in
``epoll``), so samples stand for CPU; read them as proportions: sampling, even
non-blocking, costs the sampled processes some CPU, so a profiled run's CPU figures are
not the bench's.
"""

from __future__ import annotations

import collections
import cProfile
import os
import pstats
import re
import signal
import sys
import time
from pathlib import Path

import trio
from _devnet_load import tree_cpu_by_pid

RATE_HZ = 100
#: the event loop waiting for I/O (idle, when sampled without pausing the process)
_IDLE = "EpollIOManager.get_events"
_FRAME = re.compile(r"^(.*) \((.*?):\d+\)$")


def spy_path() -> Path:
    """py-spy beside this Python; SystemExit with the command that installs it if absent
    (checked before the devnet starts, not once per process in the window)."""
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        raise SystemExit(f"--profile needs py-spy: {sys.executable} -m pip install py-spy")
    return spy


async def spy_tree(folder: Path, seconds: float) -> None:
    """Sample every process of this tree for ``seconds`` into ``folder``/ROLE-PID.txt."""
    folder.mkdir(parents=True, exist_ok=True)
    spy = spy_path()
    async with trio.open_nursery() as nursery:
        for pid, (role, _) in tree_cpu_by_pid().items():
            command = [
                str(spy), "record", "--pid", str(pid), "--rate", str(RATE_HZ),
                "--duration", str(max(1, round(seconds))), "--nonblocking", "--format", "raw",
                "--output", str(folder / f"{role}-{pid}.txt"),
            ]  # fmt: skip
            nursery.start_soon(_quietly, command)


async def _quietly(command: list[str]) -> None:
    await trio.run_process(command, check=False, capture_stdout=True, capture_stderr=True)


def _name(frame: str) -> str:
    """``function (path:line)`` -> ``module-ish path:function`` (the line dropped, so a
    function's samples add up)."""
    match = _FRAME.match(frame)
    if match is None:
        return frame
    function, path = match.groups()
    for marker in ("site-packages/", "repp2p/", "lib/python3"):
        if marker in path:
            path = path[path.index(marker) :]
            break
    return f"{path}:{function}"


def summarise(folder: Path, top: int = 25) -> str:
    """Per role (the node processes summed: each serves its share of the tasks): total
    samples, then the ``top`` functions by inclusive and self share. Samples in the event
    loop's ``epoll_wait`` are left out: non-blocking sampling cannot always tell that a
    thread waits there (idle), so they would dilute every share."""
    by_file: dict[Path, tuple[collections.Counter, collections.Counter, int]] = {}
    for path in sorted(folder.glob("*.txt")):
        inclusive: collections.Counter = collections.Counter()
        own: collections.Counter = collections.Counter()
        total = 0
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            frames = [_name(f) for f in stack.split(";")[1:]]  # [0] is the thread
            if frames and frames[-1].endswith(_IDLE):
                continue
            total += n
            for name in set(frames):
                inclusive[name] += n
            if frames:
                own[frames[-1]] += n
        by_file[path] = (inclusive, own, total)
    groups: dict[str, list[Path]] = collections.defaultdict(list)
    for path in by_file:
        groups[path.name.split("-")[0]].append(path)
    out = []
    for role in ("client", "nodes", "enclaves"):
        inclusive, own, total = collections.Counter(), collections.Counter(), 0
        for path in groups.get(role, []):
            inclusive.update(by_file[path][0])
            own.update(by_file[path][1])
            total += by_file[path][2]
        out.append(f"== {role}: {total} samples ({len(groups.get(role, []))} processes)")
        for title, counter in (("inclusive", inclusive), ("self", own)):
            out.append(f"  -- {title}")
            for name, n in counter.most_common(top):
                out.append(f"  {100 * n / max(total, 1):5.1f}%  {name}")
    return "\n".join(out)


if __name__ == "__main__":
    print(summarise(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 25))


CPROFILE_SITE = Path(__file__).with_name("_cprofile")


def cprofile_children(folder: Path) -> None:
    """Make the processes this one starts from now on load bench/_cprofile/sitecustomize.py
    (profiling on SIGUSR1, dumping to ``folder`` on SIGUSR2)."""
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["REPP2P_CPROFILE_DIR"] = str(folder)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(CPROFILE_SITE), os.environ.get("PYTHONPATH")) if p
    )


def cprofile_start() -> tuple[cProfile.Profile, dict[int, str]]:
    """Start profiling this process and (SIGUSR1) every descendant; pid -> role."""
    roles = {pid: role for pid, (role, _) in tree_cpu_by_pid().items()}
    for pid, role in roles.items():
        if role != "client":
            os.kill(pid, signal.SIGUSR1)
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    return profile, roles


async def cprofile_stop(
    started: tuple[cProfile.Profile, dict[int, str]], folder: Path, tasks: int
) -> None:
    """Stop the profiles :func:`cprofile_start` began and write them, by role, with the
    task count (for per-task figures) to ``folder``."""
    profile, roles = started
    profile.disable()
    profile.dump_stats(folder / f"{os.getpid()}.prof")
    for pid, role in roles.items():
        if role != "client":
            os.kill(pid, signal.SIGUSR2)
    with trio.move_on_after(10):
        while not all((folder / f"{pid}.prof").exists() for pid in roles):
            await trio.sleep(0.1)
    (folder / "roles.txt").write_text(
        f"tasks {tasks}\n" + "".join(f"{pid} {role}\n" for pid, role in roles.items())
    )


def cprofile_summary(folder: Path, top: int = 30) -> str:
    """Per role: CPU ms per task the profile saw, then the ``top`` functions by own and
    by cumulative time, in us per task."""
    lines = (folder / "roles.txt").read_text().split("\n")
    tasks = max(1, int(lines[0].split()[1]))
    by_role: dict[str, list[Path]] = collections.defaultdict(list)
    for line in lines[1:]:
        if line:
            pid, role = line.split()
            if (folder / f"{pid}.prof").exists():
                by_role[role].append(folder / f"{pid}.prof")
    out = []
    for role in ("client", "nodes", "enclaves"):
        if not by_role.get(role):
            continue
        stats = pstats.Stats(*map(str, by_role[role]))
        total = stats.total_tt
        out.append(f"== {role}: {1000 * total / tasks:.2f} ms CPU per task in profile")
        entries = stats.stats.items()  # type: ignore[attr-defined]
        for title, key in (("own", 2), ("cumulative", 3)):
            out.append(f"  -- {title} (us per task)")
            ranked = sorted(entries, key=lambda kv: kv[1][key], reverse=True)[:top]
            for (path, line, name), row in ranked:
                short = path
                for marker in ("site-packages/", "repp2p/", "lib/python3"):
                    if marker in short:
                        short = short[short.index(marker) :]
                        break
                per_task = f"{1e6 * row[key] / tasks:8.1f}  {row[1] / tasks:6.1f} calls"
                out.append(f"  {per_task}  {short}:{line}:{name}")
    return "\n".join(out)
