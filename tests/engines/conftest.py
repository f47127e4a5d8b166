from __future__ import annotations

import pytest

from engines import EngineAPI, EngineError, get_engine


@pytest.fixture
def engine_named():
    """``engine_named(name)``: the installed engine, or a skip saying what is missing."""

    def load(name: str) -> EngineAPI:
        try:
            return get_engine(name)
        except EngineError as exc:
            pytest.skip(f"engine {name!r} unavailable here: {exc}")

    return load
