"""Manifests, the measurement definition, and discovery errors."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from engines import EngineError, EngineReason, Manifest, get_engine, measure
from engines.abc import EngineAPI, run_checked
from engines.canonical import Fixed, canonical_json
from engines.echo.engine import EchoEngine
from engines.manifest import MEASUREMENT_DOMAIN

GOOD = """
[engine]
id = "toy"
version = "0.1"
description = "d"
max_input_size = 10
max_output_size = 10
input_schema = "i"
output_schema = "o"

[measurement]
files = ["code.py"]
"""


def _engine_dir(tmp_path: Path, manifest: str = GOOD) -> Path:
    (tmp_path / "manifest.toml").write_text(manifest)
    (tmp_path / "code.py").write_text("x = 1\n")
    return tmp_path


def test_measurement_matches_its_definition(tmp_path):
    folder = _engine_dir(tmp_path)
    manifest = Manifest.load(folder / "manifest.toml")

    def lp(b: bytes) -> bytes:
        return len(b).to_bytes(4, "big") + b

    files = sorted(
        (name.encode(), hashlib.sha256((folder / name).read_bytes()).digest())
        for name in ("manifest.toml", "code.py")
    )
    expected = hashlib.sha256(
        MEASUREMENT_DOMAIN
        + lp(b"toy")
        + lp(b"0.1")
        + len(files).to_bytes(4, "big")
        + b"".join(lp(name) + digest for name, digest in files)
    ).digest()
    assert manifest.measurement() == expected


def test_measurement_changes_with_code_version_and_order_does_not_matter(tmp_path):
    folder = _engine_dir(tmp_path)
    first = Manifest.load(folder / "manifest.toml").measurement()
    (folder / "code.py").write_text("x = 2\n")
    second = Manifest.load(folder / "manifest.toml").measurement()
    assert first != second
    (folder / "manifest.toml").write_text(GOOD.replace('"0.1"', '"0.2"'))
    assert Manifest.load(folder / "manifest.toml").measurement() not in (first, second)
    pairs = [("b", b"\x01" * 32), ("a", b"\x02" * 32)]
    assert measure("e", "1", pairs) == measure("e", "1", pairs[::-1])
    with pytest.raises(EngineError):
        measure("e", "1", [("a", b"\x01" * 32), ("a", b"\x02" * 32)])


def test_a_changed_engine_file_changes_the_engine_measurement(tmp_path):
    source = Path(EchoEngine.MANIFEST_PATH).parent
    copy = tmp_path / "echo"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__"))

    class Copied(EchoEngine):
        MANIFEST_PATH = copy / "manifest.toml"

    assert Copied().measurement == get_engine("echo").measurement
    with open(copy / "engine.py", "a") as f:
        f.write("# changed\n")
    assert Copied().measurement != get_engine("echo").measurement


@pytest.mark.parametrize(
    "change",
    [
        ('id = "toy"', 'id = "Toy!"'),
        ("max_input_size = 10", "max_input_size = 0"),
        ("max_input_size = 10", 'max_input_size = "10"'),
        ('files = ["code.py"]', 'files = ["../code.py"]'),
        ('files = ["code.py"]', 'files = ["/etc/passwd"]'),
        ('files = ["code.py"]', 'files = ["code.py", "code.py"]'),
        ('files = ["code.py"]', 'files = ["manifest.toml"]'),
        ('files = ["code.py"]', 'files = ["pkg:json"]'),
        ('output_schema = "o"', 'output_schema = "o"\nextra = 1'),
        ("[measurement]", "[other]"),
    ],
)
def test_bad_manifests_are_refused(tmp_path, change):
    folder = _engine_dir(tmp_path, GOOD.replace(*change))
    with pytest.raises(EngineError) as info:
        Manifest.load(folder / "manifest.toml")
    assert info.value.reason is EngineReason.BAD_MANIFEST


def test_missing_files(tmp_path):
    folder = _engine_dir(tmp_path, GOOD.replace('"code.py"', '"gone.py"'))
    with pytest.raises(EngineError) as info:
        Manifest.load(folder / "manifest.toml").measurement()
    assert info.value.reason is EngineReason.BAD_MANIFEST
    folder = _engine_dir(tmp_path, GOOD.replace('"code.py"', '"pkg:no_such_pkg_xyz/a.txt"'))
    with pytest.raises(EngineError) as info:
        Manifest.load(folder / "manifest.toml").measurement()
    assert info.value.reason is EngineReason.UNAVAILABLE
    with pytest.raises(EngineError) as info:
        Manifest.load(tmp_path / "nothing.toml")
    assert info.value.reason is EngineReason.BAD_MANIFEST


def test_unknown_engine_is_not_found():
    with pytest.raises(EngineError) as info:
        get_engine("no-such-engine")
    assert info.value.reason is EngineReason.NOT_FOUND


def test_run_checked_turns_crashes_into_typed_errors(tmp_path):
    folder = _engine_dir(tmp_path)

    class Crashing(EngineAPI):
        MANIFEST_PATH = folder / "manifest.toml"

        def run(self, data: bytes) -> bytes:
            if data == b"big":
                return b"x" * 11
            if data == b"str":
                return "text"  # type: ignore[return-value]
            raise KeyError(data)  # the message would quote the input

    engine = Crashing()
    for data, reason in (
        (b"secret", EngineReason.INTERNAL),
        (b"big", EngineReason.OUTPUT_TOO_LARGE),
        (b"str", EngineReason.INTERNAL),
        (b"x" * 11, EngineReason.INPUT_TOO_LARGE),
    ):
        with pytest.raises(EngineError) as info:
            run_checked(engine, data)
        assert info.value.reason is reason
        assert "secret" not in str(info.value)


def test_canonical_json():
    assert canonical_json({"b": [1, True, None], "a": Fixed(-0.00001, 4)}) == (
        b'{"a":0.0000,"b":[1,true,null]}'
    )
    assert canonical_json({"x": Fixed(0.12345, 4), "s": "\u00e9"}) == b'{"s":"\\u00e9","x":0.1235}'
    with pytest.raises(TypeError):
        canonical_json({"x": 0.5})
    with pytest.raises(ValueError):
        canonical_json(Fixed(float("nan"), 2))
