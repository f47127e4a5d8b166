"""AI micro-engines: deterministic, measured ``bytes -> bytes`` functions run in enclaves.

Public API::

    EngineAPI                      # the interface (engines.abc)
    run_checked(engine, data)      # run with size limits and typed errors
    get_engine(name) / load_engines(names=None) / unavailable_engines()
    Manifest, measure(...)         # manifests and the measurement definition
    EngineError, EngineReason

Engines are found through the entry point group ``repp2p.engines``; each has a folder with
a ``manifest.toml``. See docs/engines.md.
"""

from engines.abc import EngineAPI, run_checked
from engines.errors import EngineError, EngineReason
from engines.manifest import MANIFEST_NAME, MEASUREMENT_DOMAIN, Manifest, measure
from engines.registry import (
    ENTRY_POINT_GROUP,
    engine_entry_points,
    get_engine,
    load_engines,
    unavailable_engines,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "MANIFEST_NAME",
    "MEASUREMENT_DOMAIN",
    "EngineAPI",
    "EngineError",
    "EngineReason",
    "Manifest",
    "engine_entry_points",
    "get_engine",
    "load_engines",
    "measure",
    "run_checked",
    "unavailable_engines",
]
