"""The pure core must not do I/O or read the clock (docs/architecture.md, "The sans-IO rule").

Two checks: a static scan of every core module's syntax tree for forbidden imports and clock
or global-randomness calls, and a fresh interpreter that imports the core and must not have
loaded trio, libp2p, socket or asyncio as a side effect.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

# params_check is imported by the core's params classes, so it is held to the same rules.
CORE = [
    "records",
    "attestation",
    "reputation",
    "matching",
    "ledger",
    "tasks",
    "digests",
    "params_check",
]
ROOT = Path(__file__).resolve().parent.parent / "repp2p"
FORBIDDEN_MODULES = {"trio", "libp2p", "socket", "asyncio", "anyio", "multiaddr"}
FORBIDDEN_CALLS = {
    ("time", "time"),
    ("time", "time_ns"),
    ("time", "monotonic"),
    ("time", "perf_counter"),
    ("time", "localtime"),
    ("time", "gmtime"),
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
    ("random", "random"),
    ("random", "randint"),
    ("random", "choice"),
    ("random", "shuffle"),
    ("random", "uniform"),
    ("os", "urandom"),
}


def _core_files() -> list[Path]:
    files = []
    for name in CORE:
        package = ROOT / name
        if package.is_dir():
            files += sorted(package.rglob("*.py"))
        elif (ROOT / f"{name}.py").exists():
            files.append(ROOT / f"{name}.py")
    return files


def _violations(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            names = []
        for name in names:
            if name.split(".")[0] in FORBIDDEN_MODULES:
                found.append(f"{path}:{node.lineno} imports {name}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            owner_name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
            if (owner_name, node.func.attr) in FORBIDDEN_CALLS:
                found.append(f"{path}:{node.lineno} calls {owner_name}.{node.func.attr}()")
    return found


def test_core_exists():
    assert (ROOT / "records").is_dir(), "the records core is missing"


def test_scanner_catches_what_it_should(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import trio\nfrom libp2p import x\nimport time\nt = time.time()\n")
    assert len(_violations(bad)) == 3


@pytest.mark.parametrize("path", _core_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_module_is_pure(path):
    assert _violations(path) == []


# cryptography.x509 (mandated for attestation) imports email.utils, which imports socket;
# the static scan above still forbids our own code from importing socket.
RUNTIME_FORBIDDEN = FORBIDDEN_MODULES - {"socket"}


def test_importing_the_core_loads_no_io_module():
    present = [f"repp2p.{n}" for n in CORE if (ROOT / n).is_dir() or (ROOT / f"{n}.py").exists()]
    code = (
        "import sys, json\n"
        + "".join(f"import {m}\n" for m in present)
        + f"bad = {sorted(RUNTIME_FORBIDDEN)!r}\n"
        + "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in bad)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
