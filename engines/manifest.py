"""Engine manifests and measurements.

Every engine folder holds a ``manifest.toml``::

    [engine]
    id = "sentiment"                  # the engine id on the wire (records' ENGINE_ID_PATTERN)
    version = "1.0.0"
    description = "one line"
    max_input_size = 16384            # bytes, 0 < n <= 16 MiB
    max_output_size = 4096            # bytes, 0 < n <= 16 MiB
    input_schema = "what run() accepts"
    output_schema = "what run() returns"

    [measurement]
    files = ["engine.py", "pkg:vaderSentiment/vader_lexicon.txt"]

``files`` names every file whose bytes decide the engine's behaviour: its code and its
weights. A plain name is relative to the manifest's folder (no ``..``, not absolute); a
``pkg:NAME/path`` name is a file inside the installed top-level package ``NAME`` (found with
``importlib.util.find_spec``, without importing it), so weights shipped by a registry package
are measured where they are loaded from. The manifest itself is always measured, as
``manifest.toml``.

The measurement (:func:`measure`) is reproducible by anyone holding the same files::

    M = SHA-256( "repp2p/engine-measurement/v1\\0"
                 || lp(id) || lp(version) || u32(count)
                 || for each file, sorted by the UTF-8 bytes of its name:
                        lp(name) || SHA-256(file bytes) )

where ``lp(x) = u32(len(x)) || x`` and ``u32`` is 4 bytes big-endian. Changing one byte of
code or weights, renaming a file or bumping the version changes ``M``. Bytes are hashed as
they are on disk: a checkout that rewrites line endings measures differently.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from engines.errors import EngineError, EngineReason
from repp2p.records.types import ENGINE_ID_PATTERN

MANIFEST_NAME = "manifest.toml"
MEASUREMENT_DOMAIN = b"repp2p/engine-measurement/v1\0"
MAX_IO_SIZE = 16 * 1024 * 1024
_PKG_PREFIX = "pkg:"
_ENGINE_KEYS = {
    "id",
    "version",
    "description",
    "max_input_size",
    "max_output_size",
    "input_schema",
    "output_schema",
}
_VERSION_PATTERN = r"[0-9A-Za-z.+_-]{1,64}"


def _bad(detail: str) -> EngineError:
    return EngineError(EngineReason.BAD_MANIFEST, detail)


def _lp(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def measure(engine_id: str, version: str, file_digests: Iterable[tuple[str, bytes]]) -> bytes:
    """The measurement of an engine from its id, version and ``(name, SHA-256)`` pairs.

    Args:
        engine_id: the manifest's ``id``.
        version: the manifest's ``version``.
        file_digests: ``(name as written in the manifest, SHA-256 of the file)`` for every
            measured file, the manifest included; any order (they are sorted here).

    Returns:
        32 bytes (see the module docstring for the exact encoding).

    Raises:
        EngineError: BAD_MANIFEST when a name appears twice or a digest is not 32 bytes.
    """
    pairs = sorted((name.encode("utf-8"), digest) for name, digest in file_digests)
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise _bad("a measured file is listed twice")
    hasher = hashlib.sha256(MEASUREMENT_DOMAIN)
    hasher.update(_lp(engine_id.encode("utf-8")) + _lp(version.encode("utf-8")))
    hasher.update(len(pairs).to_bytes(4, "big"))
    for name, digest in pairs:
        if len(digest) != 32:
            raise _bad("file digests are SHA-256 (32 bytes)")
        hasher.update(_lp(name) + digest)
    return hasher.digest()


def file_sha256(path: Path) -> bytes:
    """SHA-256 of a file's bytes, read in chunks (weights may be large)."""
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            hasher.update(chunk)
    return hasher.digest()


def _package_dir(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A parsed, validated ``manifest.toml``.

    Attributes:
        id: the engine id (``[a-z0-9][a-z0-9._-]{0,63}``).
        version: the engine version (free text, 1-64 of ``[0-9A-Za-z.+_-]``).
        description: one line for humans.
        max_input_size: largest input accepted, bytes.
        max_output_size: largest output the engine may return, bytes.
        input_schema: what ``run`` accepts, for humans.
        output_schema: what ``run`` returns, for humans.
        files: measured file names, as written in the manifest (manifest excluded).
        directory: the folder holding the manifest.
    """

    id: str
    version: str
    description: str
    max_input_size: int
    max_output_size: int
    input_schema: str
    output_schema: str
    files: tuple[str, ...]
    directory: Path

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        """Read and validate a manifest file.

        Raises:
            EngineError: BAD_MANIFEST (missing, not TOML, unknown or missing keys, bad values).
        """
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise _bad(f"{path}: {exc}") from None
        return cls.from_mapping(data, path.parent)

    @classmethod
    def from_mapping(cls, data: dict, directory: Path) -> Manifest:
        """Validate the parsed TOML of a manifest (see :meth:`load`)."""
        if set(data) != {"engine", "measurement"}:
            raise _bad("a manifest has exactly the tables [engine] and [measurement]")
        engine, measurement = data["engine"], data["measurement"]
        if not isinstance(engine, dict) or set(engine) != _ENGINE_KEYS:
            raise _bad(f"[engine] must have exactly the keys {sorted(_ENGINE_KEYS)}")
        if not isinstance(measurement, dict) or set(measurement) != {"files"}:
            raise _bad("[measurement] must have exactly the key 'files'")
        for key in ("id", "version", "description", "input_schema", "output_schema"):
            if not isinstance(engine[key], str):
                raise _bad(f"engine.{key} must be a string")
        if not re.fullmatch(ENGINE_ID_PATTERN, engine["id"]):
            raise _bad(f"engine.id {engine['id']!r} does not match {ENGINE_ID_PATTERN}")
        if not re.fullmatch(_VERSION_PATTERN, engine["version"]):
            raise _bad(f"engine.version {engine['version']!r} does not match {_VERSION_PATTERN}")
        for key in ("max_input_size", "max_output_size"):
            value = engine[key]
            if not isinstance(value, int) or isinstance(value, bool):
                raise _bad(f"engine.{key} must be an integer")
            if not 0 < value <= MAX_IO_SIZE:
                raise _bad(f"engine.{key} must be in 1..{MAX_IO_SIZE}")
        files = measurement["files"]
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise _bad("measurement.files must be a list of strings")
        for name in files:
            _check_file_name(name)
        if len(set(files)) != len(files) or MANIFEST_NAME in files:
            raise _bad("measurement.files lists a file twice (the manifest is implicit)")
        return cls(
            id=engine["id"],
            version=engine["version"],
            description=engine["description"],
            max_input_size=engine["max_input_size"],
            max_output_size=engine["max_output_size"],
            input_schema=engine["input_schema"],
            output_schema=engine["output_schema"],
            files=tuple(files),
            directory=directory,
        )

    def resolve(self, name: str) -> Path:
        """The path of a measured file.

        Raises:
            EngineError: UNAVAILABLE when a ``pkg:`` package is not installed or lacks the
                file; BAD_MANIFEST when a local file is missing.
        """
        if name == MANIFEST_NAME:
            return self.directory / MANIFEST_NAME
        if name.startswith(_PKG_PREFIX):
            package, _, rest = name[len(_PKG_PREFIX) :].partition("/")
            base = _package_dir(package)
            if base is None:
                raise EngineError(
                    EngineReason.UNAVAILABLE, f"{self.id}: package {package!r} is not installed"
                )
            path = base / rest
            if not path.is_file():
                raise EngineError(
                    EngineReason.UNAVAILABLE, f"{self.id}: {name} missing from {package!r}"
                )
            return path
        path = self.directory / name
        if not path.is_file():
            raise _bad(f"{self.id}: measured file {name} is missing")
        return path

    def file_digests(self) -> tuple[tuple[str, bytes], ...]:
        """``(name, SHA-256)`` of every measured file, the manifest first, then as listed."""
        names = (MANIFEST_NAME, *self.files)
        return tuple((name, file_sha256(self.resolve(name))) for name in names)

    def measurement(self) -> bytes:
        """The engine measurement over the files as they are now (see :func:`measure`)."""
        return measure(self.id, self.version, self.file_digests())


def _check_file_name(name: str) -> None:
    rest = name[len(_PKG_PREFIX) :] if name.startswith(_PKG_PREFIX) else name
    pure = PurePosixPath(rest)
    if (
        not rest
        or pure.is_absolute()
        or "\\" in rest
        or any(part in ("", ".", "..") for part in rest.split("/"))
    ):
        raise _bad(f"measured file name {name!r} must be a relative path without '..'")
    if name.startswith(_PKG_PREFIX) and len(pure.parts) < 2:
        raise _bad(f"{name!r}: a pkg: name is pkg:PACKAGE/path/in/package")
