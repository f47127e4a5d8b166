"""Parameter sweeps: a grid of scenario variants, run serially, on local processes or on Dask.

A run is a pure function of its scenario and seed (:func:`~repp2p.sim.simulate`), so where
a grid point runs changes nothing in its result: the serial loop, ``workers`` local
processes and a Dask cluster give the same summaries, the same trace hashes and (written by
:func:`write_point` and :func:`~repp2p.sim.write_sweep` on the caller's side, in grid
order) the same files, byte for byte.

Workers return whole :class:`~repp2p.sim.SimResult` objects and the caller writes every
file, so Dask workers need the package installed but no shared file system.

Public API::

    grid_points(scenario, grid) -> list[SweepPoint]
    run_sweep(points, *, seed=None, workers=1, dask=None, on_result=None) -> list[SimResult]
    write_point(result, out_dir, index) -> Path
    default_workers() -> int
"""

from __future__ import annotations

import dataclasses
import itertools
import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from repp2p.errors import ConfigError
from repp2p.sim.outputs import write_outputs
from repp2p.sim.scenario import Scenario
from repp2p.sim.simulation import SimResult, simulate


@dataclasses.dataclass(frozen=True)
class SweepPoint:
    """One point of a grid.

    Attributes:
        index: its place in the grid (row-major over the grid's keys, as given).
        overrides: ``key -> value`` applied to the base scenario.
        scenario: the base scenario with ``overrides`` applied.
    """

    index: int
    overrides: Mapping[str, Any]
    scenario: Scenario

    @property
    def label(self) -> str:
        """``share=0.2,redundancy=3``: the last part of each key and its value."""
        return ",".join(f"{k.split('.')[-1]}={v}" for k, v in self.overrides.items())


#: ``on_result(point, result, done, total)``: called in the caller's process as results
#: arrive (in completion order when parallel)
OnResult = Callable[[SweepPoint, SimResult, int, int], None]


def grid_points(scenario: Scenario, grid: Mapping[str, Sequence[Any]]) -> list[SweepPoint]:
    """Every combination of ``grid``'s values, applied to ``scenario``, in grid order.

    Raises:
        ConfigError: an empty grid or axis, or an override the scenario refuses.
    """
    if not grid or any(len(values) == 0 for values in grid.values()):
        raise ConfigError("no grid: give --grid KEY=V1,V2 or a [sweep] table in the scenario")
    keys = list(grid)
    points = []
    for index, combo in enumerate(itertools.product(*(grid[k] for k in keys))):
        overrides = dict(zip(keys, combo, strict=True))
        points.append(SweepPoint(index, overrides, scenario.with_overrides(overrides)))
    return points


def default_workers() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_point(scenario: Scenario, seed: int | None) -> SimResult:
    """Run one grid point (module level, so process pools and Dask can pickle it)."""
    return simulate(scenario, seed=seed)


def run_sweep(
    points: Sequence[SweepPoint],
    *,
    seed: int | None = None,
    workers: int = 1,
    dask: str | None = None,
    on_result: OnResult | None = None,
    on_epoch: Callable[[SweepPoint], Callable[[int, int], None]] | None = None,
) -> list[SimResult]:
    """Run every point; returns the results in grid order.

    Args:
        points: from :func:`grid_points`.
        seed: every point's seed (None: each scenario's own).
        workers: local processes; 1 runs in this process (with ``on_epoch`` progress).
        dask: a Dask scheduler address (``tcp://host:8786``); needs the ``dask`` extra
            (``dask[distributed]``) here and ``repp2p`` installed on every worker.
        on_result: told of each result as it arrives.
        on_epoch: serial runs only: a per-point epoch progress callback factory.

    Raises:
        ConfigError: ``workers`` < 1, both ``workers`` > 1 and ``dask``, or Dask missing.
    """
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if dask is not None and workers > 1:
        raise ConfigError("give --workers or --dask, not both")
    results: list[SimResult | None] = [None] * len(points)
    done = 0

    def arrived(point: SweepPoint, result: SimResult) -> None:
        nonlocal done
        results[point.index] = result
        done += 1
        if on_result is not None:
            on_result(point, result, done, len(points))

    if dask is not None:
        _run_dask(points, seed, dask, arrived)
    elif workers == 1 or len(points) == 1:
        for point in points:
            progress = on_epoch(point) if on_epoch is not None else None
            arrived(point, simulate(point.scenario, seed=seed, on_epoch=progress))
    else:
        # spawn, not fork: a forked child inherits whatever threads and locks the parent
        # holds; the work is seconds per point, the start-up cost does not matter
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(points)), mp_context=context) as pool:
            futures = {pool.submit(run_point, p.scenario, seed): p for p in points}
            for future in as_completed(futures):
                arrived(futures[future], future.result())
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


def _run_dask(
    points: Sequence[SweepPoint],
    seed: int | None,
    address: str,
    arrived: Callable[[SweepPoint, SimResult], None],
) -> None:
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError:
        raise ConfigError(
            "--dask needs Dask distributed: pip install 'repp2p[dask]' (and repp2p on every worker)"
        ) from None
    # the default client while open (Dask's as_completed finds its client that way)
    with Client(address) as client:
        # pure=False: equal scenarios at two points are still two tasks (each is written)
        futures = [client.submit(run_point, p.scenario, seed, pure=False) for p in points]
        by_key = {f.key: p for f, p in zip(futures, points, strict=True)}
        for future, result in dask_completed(futures, with_results=True):
            arrived(by_key[future.key], result)


def write_point(result: SimResult, out_dir: Path, index: int) -> Path:
    """Write one point's outputs (no plots) into ``out_dir/pointNNN``; returns the folder."""
    folder = Path(out_dir) / f"point{index:03d}"
    write_outputs(result, folder, plots=False)
    return folder
