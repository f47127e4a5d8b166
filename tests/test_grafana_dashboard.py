"""docs/grafana.json queries only metrics (and labels) a node exports, and docs/grafana.md
describes every panel."""

from __future__ import annotations

import json
import re
from pathlib import Path

from repp2p.node.metrics import NodeMetrics

DOCS = Path(__file__).resolve().parent.parent / "docs"
METRIC = re.compile(r"\brepp2p_[a-z0-9_]+")
SELECTOR = re.compile(r"\b(repp2p_[a-z0-9_]+)\{([^}]*)\}")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
#: labels Prometheus adds to every scraped series (and the histogram bucket label)
SCRAPE_LABELS = {"instance", "job", "le"}


def _exported() -> dict[str, set[str]]:
    """Every series name a node's registry exposes, with its labels."""
    metrics = NodeMetrics()
    # prometheus_client keeps each metric's labels on the object (a labelled metric has no
    # samples until used, so the exposition alone cannot tell them)
    labels = {m._name: set(m._labelnames) for m in vars(metrics).values() if hasattr(m, "_name")}
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
    }
    out: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        for suffix in suffixes[family.type]:
            out[family.name + suffix] = labels[family.name]
    return out


def _panels() -> list[dict]:
    dashboard = json.loads((DOCS / "grafana.json").read_text())
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_the_exported_names_are_read_from_the_registry():
    exported = _exported()
    assert "repp2p_records_rejected_total" in exported
    assert exported["repp2p_records_rejected_total"] == {"reason", "source"}
    assert "repp2p_view_build_seconds_bucket" in exported and "repp2p_peers" in exported


def test_every_query_uses_exported_metrics_and_labels():
    exported = _exported()
    queried = set()
    for panel in _panels():
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            names = set(METRIC.findall(expr))
            assert names, f"{panel['title']}: no repp2p metric in {expr!r}"
            unknown = names - set(exported)
            assert not unknown, f"{panel['title']}: {sorted(unknown)} not exported by a node"
            queried |= names
            allowed = set().union(*(exported[n] for n in names)) | SCRAPE_LABELS
            for name, matchers in SELECTOR.findall(expr):
                for matcher in filter(None, (m.strip() for m in matchers.split(","))):
                    label = re.split(r"[=!~]", matcher, maxsplit=1)[0].strip()
                    assert label in exported[name] | SCRAPE_LABELS, f"{name} has no {label}"
            for group in GROUPING.findall(expr):
                for label in filter(None, (g.strip() for g in group.split(","))):
                    assert label in allowed, f"{panel['title']}: no label {label!r} on {names}"
    # every metric a node exports is on the dashboard somewhere
    families = {re.sub(r"_(total|created|bucket|sum|count)$", "", n) for n in exported}
    shown = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in queried}
    assert families <= shown, sorted(families - shown)


def test_the_docs_describe_every_panel():
    text = (DOCS / "grafana.md").read_text()
    for panel in _panels():
        assert f"**{panel['title']}**" in text, panel["title"]
        assert panel["description"], panel["title"]
