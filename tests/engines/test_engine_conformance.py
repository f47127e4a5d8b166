"""Every discovered engine passes the conformance suite (engines.testing)."""

from __future__ import annotations

import pytest

from engines import engine_entry_points, load_engines
from engines.testing import check_engine

SHIPPED = ("echo", "sentiment", "embed-minilm")


def test_shipped_engines_are_registered():
    assert set(SHIPPED) <= set(engine_entry_points())


def test_default_install_has_echo_and_sentiment():
    engines = load_engines()
    assert {"echo", "sentiment"} <= set(engines)
    assert all(engine.name == name for name, engine in engines.items())


@pytest.mark.parametrize("name", sorted(engine_entry_points()))
def test_conformance(name, engine_named):
    check_engine(engine_named(name))


def test_measurements_differ_between_engines():
    engines = load_engines()
    measurements = [engine.measurement for engine in engines.values()]
    assert len(set(measurements)) == len(measurements)
