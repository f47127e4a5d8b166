"""The attestation core is sans-IO: no network/async imports, no clock, no global random."""

from __future__ import annotations

import ast
from pathlib import Path

import repp2p.attestation

PACKAGE = Path(repp2p.attestation.__file__).parent
FORBIDDEN_MODULES = {"trio", "libp2p", "socket", "asyncio", "time", "random", "secrets"}
FORBIDDEN_CALLS = {"now", "utcnow", "today", "time", "time_ns", "monotonic", "perf_counter"}
ALLOWED: set[tuple[str, str]] = set()


def test_core_has_no_io_clock_or_global_random() -> None:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.split(".")[0]]
            for name in names:
                if name in FORBIDDEN_MODULES and (path.name, name) not in ALLOWED:
                    problems.append(f"{path.name}: imports {name}")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in FORBIDDEN_CALLS
            ):
                problems.append(f"{path.name}:{node.lineno}: uses .{node.attr}")
    assert not problems, problems


def test_public_surface() -> None:
    for name in repp2p.attestation.__all__:
        assert getattr(repp2p.attestation, name) is not None
