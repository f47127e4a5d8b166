"""Engine discovery through package entry points (group ``repp2p.engines``).

Any installed distribution can add engines::

    [project.entry-points."repp2p.engines"]
    my-engine = "my_package.my_engine:MyEngine"

The entry point name must equal the manifest's ``id``. Instances are created once per
process and cached: engines are stateless apart from models they load in ``prepare``.
"""

from __future__ import annotations

import threading
from importlib.metadata import EntryPoint, entry_points

from engines.abc import EngineAPI
from engines.errors import EngineError, EngineReason

ENTRY_POINT_GROUP = "repp2p.engines"

_lock = threading.Lock()
_instances: dict[str, EngineAPI] = {}


def engine_entry_points() -> dict[str, EntryPoint]:
    """Installed engine entry points by name (available or not), sorted by name.

    Raises:
        EngineError: BAD_MANIFEST when two distributions register one name differently.
    """
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found and found[ep.name].value != ep.value:
            raise EngineError(EngineReason.BAD_MANIFEST, f"engine {ep.name!r} is registered twice")
        found[ep.name] = ep
    return dict(sorted(found.items()))


def get_engine(name: str) -> EngineAPI:
    """The engine called ``name`` (cached per process).

    Raises:
        EngineError: NOT_FOUND (no such entry point), UNAVAILABLE (a dependency such as an
            optional extra is missing), BAD_MANIFEST (the entry point does not name an
            ``EngineAPI`` whose manifest id is ``name``).
    """
    with _lock:
        if name in _instances:
            return _instances[name]
        eps = engine_entry_points()
        if name not in eps:
            raise EngineError(EngineReason.NOT_FOUND, f"no engine {name!r} installed")
        try:
            cls = eps[name].load()
        except ImportError as exc:
            raise EngineError(EngineReason.UNAVAILABLE, f"{name}: {exc}") from None
        if not (isinstance(cls, type) and issubclass(cls, EngineAPI)):
            raise EngineError(EngineReason.BAD_MANIFEST, f"{name}: not an EngineAPI class")
        engine = cls()
        if engine.name != name:
            raise EngineError(
                EngineReason.BAD_MANIFEST,
                f"entry point {name!r} loads an engine whose manifest id is {engine.name!r}",
            )
        _instances[name] = engine
        return engine


def load_engines(names: list[str] | None = None) -> dict[str, EngineAPI]:
    """Every engine that can run here (or the named ones), by name.

    Args:
        names: engines to load; ``None`` loads every installed engine and silently leaves
            out the unavailable ones (see :func:`unavailable_engines` for why).

    Raises:
        EngineError: when a *named* engine cannot be loaded.
    """
    if names is not None:
        return {name: get_engine(name) for name in names}
    loaded = {}
    for name in engine_entry_points():
        try:
            loaded[name] = get_engine(name)
        except EngineError as exc:
            if exc.reason is not EngineReason.UNAVAILABLE:
                raise
    return loaded


def unavailable_engines() -> dict[str, EngineError]:
    """Installed engines that cannot run here, with the error that says why."""
    missing = {}
    for name in engine_entry_points():
        try:
            get_engine(name)
        except EngineError as exc:
            missing[name] = exc
    return missing
