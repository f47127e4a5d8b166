"""A sweep on local processes or on Dask writes exactly what the serial sweep writes."""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json

import pytest

from repp2p.cli import sim as sim_cli
from repp2p.errors import ConfigError
from repp2p.sim import Scenario
from repp2p.sim.sweep import grid_points, run_sweep

SCENARIO = """
name = "tiny-parallel"
nodes = 16
epochs = 3
tasks_per_epoch = 60
[clients]
count = 8
[[adversary]]
behaviour = "wrong_result"
share = 0.2
[sweep]
"adversary.0.share" = [0.0, 0.25, 0.5]
"""


def _sweep(tmp_path, name: str, *extra: str) -> dict[str, bytes]:
    """Run ``repp2p sim sweep`` into ``tmp_path/name``; every file it wrote, by path."""
    path = tmp_path / "tiny.toml"
    path.write_text(SCENARIO)
    out = tmp_path / name
    parser = argparse.ArgumentParser()
    sim_cli.add_parser(parser.add_subparsers())
    argv = ["sim", "sweep", str(path), "--out", str(out), "--seed", "5", "--no-plots"]
    args = parser.parse_args([*argv, "--quiet", *extra])
    assert args.func(args) == 0
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _trace_hashes(files: dict[str, bytes]) -> list[str]:
    return [
        json.loads(files[f"point{i:03d}/summary.json"])["trace_hash"]
        for i in range(sum(1 for k in files if k.endswith("summary.json")))
    ]


def test_two_workers_write_the_serial_sweeps_files_byte_for_byte(tmp_path):
    serial = _sweep(tmp_path, "serial", "--workers", "1")
    parallel = _sweep(tmp_path, "parallel", "--workers", "2")
    assert "sweep.csv" in serial and "point002/metrics.csv" in serial
    assert sorted(serial) == sorted(parallel)
    for name, data in serial.items():
        assert parallel[name] == data, f"{name} differs"
    hashes = _trace_hashes(serial)
    assert len(hashes) == 3 and len(set(hashes)) == 3  # three different runs, each reproduced
    digest = hashlib.sha256(serial["sweep.csv"]).hexdigest()
    assert digest == hashlib.sha256(parallel["sweep.csv"]).hexdigest()


def test_results_come_back_in_grid_order_whatever_finishes_first():
    base = Scenario.from_dict({"name": "t", "nodes": 12, "epochs": 2, "tasks_per_epoch": 30})
    points = grid_points(base, {"tasks_per_epoch": [60, 10], "epochs": [2, 3]})
    assert [dict(p.overrides) for p in points] == [
        {"tasks_per_epoch": 60, "epochs": 2},
        {"tasks_per_epoch": 60, "epochs": 3},
        {"tasks_per_epoch": 10, "epochs": 2},
        {"tasks_per_epoch": 10, "epochs": 3},
    ]
    seen = []
    results = run_sweep(points, seed=1, workers=2, on_result=lambda p, r, d, t: seen.append(d))
    assert seen == [1, 2, 3, 4]
    assert [r.scenario.epochs for r in results] == [2, 3, 2, 3]
    assert [r.scenario.tasks_per_epoch for r in results] == [60, 60, 10, 10]
    serial = run_sweep(points, seed=1, workers=1)
    assert [r.trace_hash for r in results] == [r.trace_hash for r in serial]


def test_bad_sweep_settings_are_refused_clearly():
    base = Scenario.from_dict({"name": "t", "nodes": 12, "epochs": 2, "tasks_per_epoch": 30})
    points = grid_points(base, {"epochs": [2]})
    with pytest.raises(ConfigError, match="at least 1"):
        run_sweep(points, workers=0)
    with pytest.raises(ConfigError, match="not both"):
        run_sweep(points, workers=2, dask="tcp://127.0.0.1:1")
    with pytest.raises(ConfigError, match="no grid"):
        grid_points(base, {})
    with pytest.raises(ConfigError, match="no grid"):
        grid_points(base, {"epochs": []})


@pytest.mark.skipif(
    importlib.util.find_spec("distributed") is None,
    reason="Dask distributed is not installed (pip install 'repp2p[dask]')",
)
def test_a_dask_cluster_writes_the_serial_sweeps_files(tmp_path):
    from distributed import LocalCluster

    # An in-process cluster (threads): the same client path as a remote scheduler.
    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster:
        on_dask = _sweep(tmp_path, "dask", "--dask", cluster.scheduler_address)
    serial = _sweep(tmp_path, "serial", "--workers", "1")
    assert sorted(serial) == sorted(on_dask)
    for name, data in serial.items():
        assert on_dask[name] == data, f"{name} differs"
