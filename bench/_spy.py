"""Sampling profiles of a bench devnet's processes, by role (bench/tasks.py ``--profile``).

Not a bench itself. :func:`spy_tree` runs py-spy (from this Python's environment) on this
process and its descendants for a window, one raw (collapsed-stack) file per process named
by role and pid; :func:`summarise` reads them back and prints, per role, the functions
with the most samples, inclusive and self. py-spy leaves idle threads out (waiting in
``epoll``), so samples stand for CPU; read them as proportions: sampling, even
non-blocking, costs the sampled processes some CPU, so a profiled run's CPU figures are
not the bench's.
"""

from __future__ import annotations

import collections
import re
import sys
from pathlib import Path

import trio
from _devnet_load import tree_cpu_by_pid

RATE_HZ = 100
#: the event loop waiting for I/O (idle, when sampled without pausing the process)
_IDLE = "EpollIOManager.get_events"
_FRAME = re.compile(r"^(.*) \((.*?):\d+\)$")


async def spy_tree(folder: Path, seconds: float) -> None:
    """Sample every process of this tree for ``seconds`` into ``folder``/ROLE-PID.txt."""
    folder.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
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
