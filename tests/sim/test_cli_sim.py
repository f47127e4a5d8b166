"""``repp2p sim run`` and ``repp2p sim sweep`` write their outputs."""

from __future__ import annotations

import argparse
import importlib.util
import json

from repp2p.cli import sim as sim_cli

SCENARIO = """
name = "tiny"
nodes = 20
epochs = 4
tasks_per_epoch = 100
[clients]
count = 10
[[adversary]]
behaviour = "wrong_result"
share = 0.2
[sweep]
"adversary.0.share" = [0.0, 0.4]
"""


def _run(argv):
    parser = argparse.ArgumentParser()
    sim_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_run_writes_metrics_summary_and_plots(tmp_path, capsys):
    path = tmp_path / "tiny.toml"
    path.write_text(SCENARIO)
    out = tmp_path / "out"
    assert _run(["sim", "run", str(path), "--out", str(out), "--seed", "3"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seed"] == 3 and len(summary["trace_hash"]) == 64
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,tasks,") and len(lines) == 5
    assert (out / "summary.md").exists()
    if importlib.util.find_spec("matplotlib") is not None:  # plots are optional
        assert (out / "outcomes.png").stat().st_size > 1000
    assert "trace_hash" in capsys.readouterr().out
    # same seed again: same hash
    out2 = tmp_path / "out2"
    _run(["sim", "run", str(path), "--out", str(out2), "--seed", "3", "--no-plots", "--quiet"])
    assert json.loads((out2 / "summary.json").read_text())["trace_hash"] == summary["trace_hash"]


def test_sweep_runs_the_grid(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(SCENARIO)
    out = tmp_path / "sweep"
    argv = [
        "sim",
        "sweep",
        str(path),
        "--out",
        str(out),
        "--quiet",
        "--grid",
        "reputation=true,false",
    ]
    assert _run(argv) == 0
    rows = (out / "sweep.csv").read_text().splitlines()
    assert len(rows) == 1 + 4
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "sweep_bad_rate.png").exists()
