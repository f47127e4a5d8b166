"""``repp2p sim``: run simulation scenarios and parameter sweeps.

``repp2p sim run FILE --out DIR [--seed N]`` runs one scenario with a progress bar and writes
``metrics.csv``, ``summary.json``, ``summary.md`` and PNG plots into ``DIR``.
``repp2p sim sweep FILE --out DIR [--grid KEY=V1,V2 ...]`` runs the grid (the file's
``[sweep]`` table by default), one sub-folder per point, plus ``sweep.csv`` and plots; on
``--workers N`` local processes (default: the cores) or a Dask cluster (``--dask ADDR``),
with the same files as a serial run (:mod:`repp2p.sim.sweep`).
The wall clock is read here only, for the progress bar and the elapsed time.
"""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from repp2p.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sim = subparsers.add_parser("sim", help="run network simulations (scenarios, sweeps)")
    sub = sim.add_subparsers(dest="sim_command", metavar="ACTION")
    sub.required = True
    run = sub.add_parser("run", help="run one scenario")
    run.add_argument("file", help="scenario TOML")
    run.add_argument("--out", required=True, type=Path, help="output folder")
    run.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    run.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a key"
    )
    run.add_argument("--no-plots", action="store_true", help="skip PNG plots")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=_run)
    sweep = sub.add_parser("sweep", help="run a parameter grid")
    sweep.add_argument("file", help="scenario TOML (its [sweep] table is the default grid)")
    sweep.add_argument("--out", required=True, type=Path, help="output folder")
    sweep.add_argument("--seed", type=int, default=None)
    sweep.add_argument(
        "--grid", action="append", default=[], metavar="KEY=V1,V2", help="a grid axis"
    )
    sweep.add_argument("--no-plots", action="store_true")
    sweep.add_argument("--quiet", action="store_true")
    sweep.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="run grid points on N local processes (default: the cores; 1: in this process)",
    )
    sweep.add_argument(
        "--dask",
        default=None,
        metavar="ADDR",
        help="run grid points on a Dask cluster (tcp://scheduler:8786; extra 'dask')",
    )
    sweep.set_defaults(func=_sweep)


def parse_value(text: str) -> Any:
    """A TOML value (``0.3``, ``true``, ``"x"``); bare words are strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


class _Progress:
    def __init__(self, label: str, quiet: bool) -> None:
        self.label, self.quiet, self.start = label, quiet, time.monotonic()

    def __call__(self, epoch: int, total: int) -> None:
        if self.quiet:
            return
        done = epoch + 1
        width = 30
        fill = int(width * done / max(total, 1))
        elapsed = time.monotonic() - self.start
        eta = elapsed / done * (total - done)
        sys.stderr.write(
            f"\r{self.label} [{'#' * fill}{'.' * (width - fill)}] {done}/{total} epochs "
            f"{elapsed:5.1f}s eta {eta:5.1f}s"
        )
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _run(args: argparse.Namespace) -> int:
    from repp2p.sim import load_scenario, simulate, write_outputs
    from repp2p.sim.outputs import summary_table

    scenario = load_scenario(args.file)
    overrides = {k: parse_value(v) for k, v in map(_pair, args.set)}
    if overrides:
        scenario = scenario.with_overrides(overrides)
    result = simulate(scenario, seed=args.seed, on_epoch=_Progress(scenario.name, args.quiet))
    write_outputs(result, args.out, plots=not args.no_plots)
    print(summary_table(result.summary), end="")
    print(f"outputs in {args.out}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from repp2p.sim import load_scenario, write_sweep
    from repp2p.sim.sweep import default_workers, grid_points, run_sweep, write_point

    scenario = load_scenario(args.file)
    grid: dict[str, tuple[Any, ...]] = dict(scenario.sweep)
    for key, values in map(_pair, args.grid):
        grid[key] = tuple(parse_value(v) for v in values.split(","))
    points = grid_points(scenario, grid)
    workers = args.workers if args.workers is not None else default_workers()
    if args.dask is not None:
        workers = 1

    def on_result(point, result, done, total) -> None:
        # each point's files as it arrives: their bytes do not depend on the order
        write_point(result, args.out, point.index)
        print(
            f"[{done}/{total}] {point.label}: success {result.summary['success_rate']:.4f} "
            f"bad {result.summary['bad_rate']:.4f} trace {result.trace_hash[:16]}",
            flush=True,
        )

    def on_epoch(point):
        return _Progress(f"[{point.index + 1}/{len(points)}] {point.label}", args.quiet)

    results = run_sweep(
        points,
        seed=args.seed,
        workers=workers,
        dask=args.dask,
        on_result=on_result,
        on_epoch=on_epoch,
    )
    pairs = [(dict(p.overrides), r.summary) for p, r in zip(points, results, strict=True)]
    write_sweep(pairs, args.out, plots=not args.no_plots)
    print(f"outputs in {args.out}")
    return 0
