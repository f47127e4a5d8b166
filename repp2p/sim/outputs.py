"""Writing a run's outputs: per-epoch CSV, summary.json, a summary table, PNG plots.

Plots use matplotlib's Agg backend (no display); when matplotlib is not installed the
tables are still written and ``plots`` in the returned mapping is empty.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from repp2p.sim.simulation import SimResult


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def summary_table(summary: dict[str, Any]) -> str:
    """A Markdown table of the headline metrics."""
    keys = [
        "scenario",
        "seed",
        "epochs",
        "nodes_initial",
        "identities",
        "reputation",
        "tasks",
        "success_rate",
        "bad_rate",
        "bad_rate_after_warmup",
        "malicious_task_share",
        "unattested_sybil_tasks",
        "honest_penalised_final",
        "latency_mean_ms",
        "latency_p95_ms_mean",
        "rep_gini",
        "rep_supply",
        "trace_hash",
    ]
    lines = ["| metric | value |", "|---|---|"]
    for k in keys:
        v = summary.get(k)
        text = f"{v:.4f}" if isinstance(v, float) else str(v)
        lines.append(f"| {k} | {text} |")
    if summary.get("reputation_source") == "digests":  # records runs: the table of before
        lines.append(
            f"| reputation source | digests: an epoch's rows count {summary['digest_lag']} "
            f"epochs later, settle {summary['settle_lag']} epochs later |"
        )
    for name, p in summary.get("phase_out", {}).items():
        lines.append(
            f"| phase-out {name} | {p['phased_out']}/{p['cheaters']} cheaters, mean "
            f"{p['mean_epochs_to_phase_out']} epochs |"
        )
    for name, b in summary.get("by_behaviour", {}).items():
        lines.append(
            f"| {name} | {b['identities']} identities, {b['tasks']} tasks "
            f"({b['lost_tasks']} failed), "
            f"REP share {b['rep_share']:.4f} |"
        )
    lines += digest_lines(summary.get("digests"))
    return "\n".join(lines) + "\n"


def digest_lines(d: dict[str, Any] | None) -> list[str]:
    """Table rows of a run's digest section (issue 14): per-peer gossip and the share of
    one core spent verifying digests, against their targets. Empty without digests."""
    if not d:
        return []
    t, node, client = d["targets"], d["per_peer"]["node"], d["per_peer"]["client"]
    met = {True: "met", False: "NOT met"}
    a = d["audits"]
    lines = [
        f"| per-peer gossip (node p99) | {d['gossip_bytes_s']:,.0f} bytes/s (target <= "
        f"{t['gossip_bytes_s']:,.0f}: {met[t['gossip_met']]}) |",
        f"| digest verification (node p99) | {100 * d['digest_verify_share']:.2f}% of one core "
        f"(target <= {100 * t['digest_verify_share']:.0f}%: {met[t['verify_met']]}) |",
        f"| node bytes/s sent, received (mean) | {node['sent_bytes_s']['mean']:,.0f}, "
        f"{node['recv_bytes_s']['mean']:,.0f} |",
        f"| node records verified per epoch (mean, p99) | "
        f"{node['records_verified']['mean']:,.0f}, {node['records_verified']['p99']:,.0f} |",
        f"| node verification, all records (p99) | {100 * node['verify_share']['p99']:.2f}% "
        f"of one core |",
        f"| client bytes/s sent, received (mean) | {client['sent_bytes_s']['mean']:,.0f}, "
        f"{client['recv_bytes_s']['mean']:,.0f} |",
        f"| digests per epoch (work, feedback) | {d['per_epoch'].get('work_digests', 0):,.0f}, "
        f"{d['per_epoch'].get('feedback_digests', 0):,.0f}, {d['digest_bytes_mean']:.0f} "
        f"bytes each |",
    ]
    if a["faulty_digests"]:
        lines.append(
            f"| audits | {a['caught_digests']}/{a['faulty_digests']} faulty digests caught "
            f"({a['observed_detection']:.3f}; expected {a['expected_detection']:.3f}), "
            f"{a['cheaters_caught']}/{a['cheaters']} misreporting nodes |"
        )
    return lines


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def write_outputs(result: SimResult, out_dir: str | Path, *, plots: bool = True) -> dict:
    """Write ``metrics.csv``, ``summary.json``, ``summary.md`` and plots into ``out_dir``.

    Returns:
        ``{"metrics": path, "summary": path, "table": path, "plots": [paths]}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "metrics.csv", result.rows)
    summary = _clean(result.summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    (out / "summary.md").write_text(f"# {result.scenario.name}\n\n" + summary_table(summary))
    written: list[str] = []
    plt = _pyplot() if plots else None
    if plt is not None and result.rows:
        epochs = [r["epoch"] for r in result.rows]
        panels = (
            ("outcomes.png", "task outcomes (honest clients)", ("success_rate", "bad_rate")),
            ("malicious.png", "tasks to malicious nodes", ("malicious_task_share",)),
            (
                "reputation.png",
                "mean permille",
                ("mean_permille_honest", "mean_permille_malicious"),
            ),
            ("rep.png", "REP distribution", ("rep_gini", "rep_malicious_share")),
            ("latency.png", "latency of ok tasks (ms)", ("latency_mean_ms", "latency_p95_ms")),
        )
        target: dict[str, float] = {}
        if "digests" in summary:
            t = summary["digests"]["targets"]
            panels += (
                (
                    "gossip.png",
                    "per-peer gossip (bytes/s)",
                    (
                        "node_gossip_bytes_s_mean",
                        "node_gossip_bytes_s_p99",
                        "client_gossip_bytes_s_p99",
                    ),
                ),
                (
                    "peer_bytes.png",
                    "per-peer bytes/s, all traffic (p99)",
                    (
                        "node_sent_bytes_s_p99",
                        "node_recv_bytes_s_p99",
                        "client_sent_bytes_s_p99",
                        "client_recv_bytes_s_p99",
                    ),
                ),
                (
                    "verify.png",
                    "share of one core verifying (p99)",
                    (
                        "node_digest_verify_share_p99",
                        "node_verify_share_p99",
                        "client_digest_verify_share_p99",
                    ),
                ),
                (
                    "records_verified.png",
                    "records verified per peer and epoch (mean)",
                    ("node_records_verified_mean", "client_records_verified_mean"),
                ),
            )
            target = {
                "gossip.png": t["gossip_bytes_s"],
                "verify.png": t["digest_verify_share"],
            }
        for fname, title, keys in panels:
            fig, ax = plt.subplots(figsize=(6, 3.5))
            for k in keys:
                ax.plot(epochs, [r.get(k) for r in result.rows], label=k)
            if fname in target:
                ax.axhline(target[fname], color="red", linestyle="--", label="target")
            ax.set_xlabel("epoch")
            ax.set_title(f"{result.scenario.name}: {title}")
            ax.legend()
            ax.grid(alpha=0.3)
            fig.tight_layout()
            fig.savefig(out / fname, dpi=90)
            plt.close(fig)
            written.append(str(out / fname))
    return {
        "metrics": str(out / "metrics.csv"),
        "summary": str(out / "summary.json"),
        "table": str(out / "summary.md"),
        "plots": written,
    }


def write_sweep(
    points: Sequence[tuple[dict[str, Any], dict[str, Any]]],
    out_dir: str | Path,
    *,
    x: str | None = None,
    series: str | None = None,
    metrics: Sequence[str] = ("bad_rate", "success_rate", "malicious_task_share"),
    plots: bool = True,
) -> dict:
    """Write a parameter grid's results: ``sweep.csv``, ``sweep.json`` and a plot.

    Args:
        points: ``(overrides, summary)`` per grid point.
        x: the override plotted on the x axis (default: the first one).
        series: the override that separates lines (default: the second one, if any).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for overrides, summary in points:
        row = dict(overrides)
        for k, v in summary.items():
            if not isinstance(v, dict):
                row[k] = v
        rows.append(row)
    _write_csv(out / "sweep.csv", rows)
    (out / "sweep.json").write_text(
        json.dumps(_clean([{"overrides": o, "summary": s} for o, s in points]), indent=2) + "\n"
    )
    written = []
    keys = list(points[0][0]) if points else []
    x = x or (keys[0] if keys else None)
    series = series or (keys[1] if len(keys) > 1 else None)
    plt = _pyplot() if plots and x else None
    if plt is not None:
        for metric in metrics:
            fig, ax = plt.subplots(figsize=(6, 3.5))
            groups: dict[Any, list] = {}
            for o, s in points:
                groups.setdefault(o.get(series) if series else None, []).append(
                    (o[x], s.get(metric))
                )
            for label, pts in groups.items():
                pts.sort(key=lambda p: p[0])
                name = f"{series}={label}" if series else metric
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
            ax.set_xlabel(x)
            ax.set_ylabel(metric)
            ax.grid(alpha=0.3)
            ax.legend()
            fig.tight_layout()
            path = out / f"sweep_{metric}.png"
            fig.savefig(path, dpi=90)
            plt.close(fig)
            written.append(str(path))
    return {"csv": str(out / "sweep.csv"), "json": str(out / "sweep.json"), "plots": written}
