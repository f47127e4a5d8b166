"""Run the fuzzing campaign: ``python -m fuzz.run [--inputs N] [--engine ...] [TARGET ...]``.

The inputs are shared out evenly over the chosen targets. With ``--engine atheris``
(the default when it is installed) each target runs in its own process under libFuzzer's
coverage guidance, starting from the target's seed corpus; with ``--engine mutate`` the
built-in mutator runs in this process with a per-input time limit. A *crash* is any
exception outside the target's documented rejections; a *hang* is an input that runs past
``--timeout-s``. Each finding is written to ``--out`` (``fuzz/findings/`` by default) as the
raw input, to become a regression test.

The last line printed is the campaign's JSON figures (``bench`` = ``fuzz``).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from fuzz.mutate import mutations
from fuzz.targets import REPO, Target, targets

DEFAULT_OUT = REPO / "fuzz" / "findings"


class Hang(Exception):
    """An input ran past the time limit."""


def _on_alarm(signum: int, frame: object) -> None:
    raise Hang


def _save(out: Path, target: str, kind: str, data: bytes) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{target}-{kind}-{hashlib.sha256(data).hexdigest()[:16]}"
    path.write_bytes(data)
    return path


def run_mutate(target: Target, inputs: int, *, seed: int, timeout_s: float, out: Path) -> dict:
    """The built-in engine on one target; returns its figures."""
    crashes = hangs = accepted = 0
    seeds = target.seeds()
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    try:
        for data in [*seeds, *mutations(seeds, inputs, seed=seed, max_len=target.max_len)]:
            signal.setitimer(signal.ITIMER_REAL, timeout_s)
            try:
                accepted += bool(target.run(data))
            except target.expected:
                pass
            except Hang:
                hangs += 1
                print(f"  HANG {target.name}: {_save(out, target.name, 'hang', data)}")
            except Exception:
                crashes += 1
                path = _save(out, target.name, "crash", data)
                print(f"  CRASH {target.name}: {path}\n{traceback.format_exc(limit=6)}")
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, previous)
    return {"inputs": inputs + len(seeds), "crashes": crashes, "hangs": hangs, "accepted": accepted}


def run_atheris(target: Target, inputs: int, *, seed: int, timeout_s: float, out: Path) -> dict:
    """libFuzzer (atheris) on one target, in a child process; returns its figures."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"repp2p-corpus-{target.name}-") as corpus:
        for i, data in enumerate(target.seeds()):
            Path(corpus, f"seed-{i}").write_bytes(data)
        cmd = [
            sys.executable,
            "-m",
            "fuzz.atheris_main",
            target.name,
            f"-runs={inputs}",
            f"-seed={seed + 1}",  # libFuzzer's 0 means "pick one at random"
            f"-timeout={max(1, int(timeout_s))}",
            f"-max_len={target.max_len}",
            "-rss_limit_mb=4096",
            f"-artifact_prefix={out}/{target.name}-",
            "-print_final_stats=1",
            corpus,
        ]
        proc = subprocess.run(
            cmd,
            cwd=REPO,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    log = proc.stdout + proc.stderr
    done = re.findall(r"stat::number_of_executed_units:\s*(\d+)", log)
    executed = int(done[-1]) if done else 0
    hang = "ERROR: libFuzzer: timeout" in log
    crash = proc.returncode != 0 and not hang
    if proc.returncode != 0:  # the finding, without libFuzzer's progress lines
        (out / f"{target.name}-log.txt").write_text(log)
        noise = ("#", "INFO:", "MERGE")
        print("\n".join(ln for ln in log.splitlines() if not ln.startswith(noise))[-6000:])
    return {"inputs": executed, "crashes": int(crash), "hangs": int(hang), "accepted": None}


def main(argv: list[str] | None = None) -> int:
    all_targets = targets()
    parser = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__.split("\n")[0])
    parser.add_argument(
        "targets", nargs="*", help=f"targets (default: all): {', '.join(all_targets)}"
    )
    parser.add_argument(
        "--inputs", type=int, default=20_000, help="inputs in total (default 20000)"
    )
    parser.add_argument("--engine", choices=("auto", "atheris", "mutate"), default="auto")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout-s", type=float, default=10.0, help="per-input limit (hang)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where findings go")
    args = parser.parse_args(argv)
    unknown = [t for t in args.targets if t not in all_targets]
    if unknown:
        parser.error(f"unknown targets {unknown}; known: {', '.join(all_targets)}")
    chosen = [all_targets[t] for t in args.targets or all_targets]
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if importlib.util.find_spec("atheris") else "mutate"
    run = run_atheris if engine == "atheris" else run_mutate
    each = max(1, args.inputs // len(chosen))
    totals = {"inputs": 0, "crashes": 0, "hangs": 0}
    began = time.monotonic()
    for target in chosen:
        t0 = time.monotonic()
        figures = run(target, each, seed=args.seed, timeout_s=args.timeout_s, out=args.out)
        for key in totals:
            totals[key] += figures[key]
        print(
            f"{target.name:24} {figures['inputs']:>9} inputs  {figures['crashes']} crashes  "
            f"{figures['hangs']} hangs  {time.monotonic() - t0:7.1f} s",
            flush=True,
        )
    elapsed = time.monotonic() - began
    print(
        json.dumps(
            {
                "bench": "fuzz",
                "engine": engine,
                "targets": len(chosen),
                "inputs": totals["inputs"],
                "crashes": totals["crashes"],
                "hangs": totals["hangs"],
                "inputs_per_s": round(totals["inputs"] / elapsed, 1) if elapsed else None,
                "baseline": args.inputs,
                "ratio": round(totals["inputs"] / args.inputs, 3),
            }
        )
    )
    return 1 if totals["crashes"] or totals["hangs"] else 0


if __name__ == "__main__":
    sys.exit(main())
