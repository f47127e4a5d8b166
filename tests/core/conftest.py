"""Shared scenarios for the core tests (built once per session: signing costs ~0.1 ms)."""

from __future__ import annotations

import pytest

from tests.core import factories as f

NODES = [f"n{i}" for i in range(8)]
CLIENTS = [f"c{i}" for i in range(4)]
EPOCHS = 30


def base_scenario() -> f.Scenario:
    """8 attested nodes with heartbeats in epochs 0..35; 4 clients with good history."""
    s = f.Scenario()
    for name in NODES:
        s.add_node(name)
        s.heartbeats(name, range(36))
    for e in range(EPOCHS):
        for i, name in enumerate(NODES):
            s.task(CLIENTS[(i + e) % len(CLIENTS)], name, e, "ok")
    return s


@pytest.fixture(scope="session")
def base() -> f.Scenario:
    return base_scenario()
