"""The engine interface: what every AI micro-engine implements.

An engine is a deterministic function ``bytes -> bytes`` with a manifest (id, version,
schemas, size limits, measured files). Determinism is the contract that makes redundant
execution work: two honest nodes running the same engine (same measurement) on the same
input must return bit-identical output, so engines avoid unordered iteration, clocks,
randomness, and print floats only through a fixed format.

The enclave calls :func:`run_checked`, never ``run`` directly: it enforces the size limits
and turns any unexpected exception into ``EngineError(INTERNAL)`` whose detail names only
the exception type (an exception's message may quote the input, and it leaves the enclave).
"""

from __future__ import annotations

import abc
import functools
from pathlib import Path
from typing import ClassVar

from engines.errors import EngineError, EngineReason
from engines.manifest import MANIFEST_NAME, Manifest


class EngineAPI(abc.ABC):
    """Base of every engine.

    Subclasses set ``MANIFEST_PATH`` (usually ``Path(__file__).with_name("manifest.toml")``),
    implement :meth:`run`, and may override :meth:`check_available` (raise
    ``EngineError(UNAVAILABLE)`` when an optional dependency is missing) and :meth:`prepare`
    (load a model once, before the first run).

    Class attributes used by the conformance suite (:mod:`engines.testing`):
        EXAMPLES: valid inputs; each must produce an output.
        BAD_INPUTS: inputs the engine must refuse with ``EngineError(BAD_INPUT)``.
    """

    MANIFEST_PATH: ClassVar[Path]
    EXAMPLES: ClassVar[tuple[bytes, ...]] = ()
    BAD_INPUTS: ClassVar[tuple[bytes, ...]] = ()

    def __init__(self) -> None:
        """Load the manifest and check the engine can run here.

        Raises:
            EngineError: BAD_MANIFEST, or UNAVAILABLE when a dependency is missing.
        """
        self.manifest = Manifest.load(self.MANIFEST_PATH)
        self.check_available()

    # -- description, all from the manifest ---------------------------------------------

    @property
    def name(self) -> str:
        """The engine id (the manifest's ``id``), as used in ``TaskOffer.engine_id``."""
        return self.manifest.id

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def description(self) -> str:
        return self.manifest.description

    @property
    def input_schema(self) -> str:
        """What :meth:`run` accepts, in words."""
        return self.manifest.input_schema

    @property
    def output_schema(self) -> str:
        """What :meth:`run` returns, in words."""
        return self.manifest.output_schema

    @property
    def max_input_size(self) -> int:
        return self.manifest.max_input_size

    @property
    def max_output_size(self) -> int:
        return self.manifest.max_output_size

    @functools.cached_property
    def measurement(self) -> bytes:
        """SHA-256 over the manifest and the measured files (:func:`engines.manifest.measure`).

        Computed once per instance, from the files as they were then.
        """
        return self.manifest.measurement()

    # -- behaviour -----------------------------------------------------------------------

    def check_available(self) -> None:
        """Raise ``EngineError(UNAVAILABLE)`` when the engine cannot run here.

        The default resolves every measured file, so a missing ``pkg:`` package is caught.
        """
        for name in (MANIFEST_NAME, *self.manifest.files):
            self.manifest.resolve(name)

    def prepare(self) -> None:  # noqa: B027 -- optional hook, a no-op by default
        """Load whatever :meth:`run` needs (models, lexicons). Idempotent; may be slow."""

    @abc.abstractmethod
    def run(self, data: bytes) -> bytes:
        """Compute the output for ``data``. Deterministic: same bytes in, same bytes out.

        Args:
            data: the input, at most ``max_input_size`` bytes.

        Returns:
            The output, at most ``max_output_size`` bytes.

        Raises:
            EngineError: BAD_INPUT when ``data`` does not match the input schema. The detail
                must not quote the input.
        """

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.version}>"


def run_checked(engine: EngineAPI, data: bytes) -> bytes:
    """Run ``engine`` on ``data`` with the contract enforced.

    Returns:
        The engine's output.

    Raises:
        EngineError: INPUT_TOO_LARGE, BAD_INPUT (as raised by the engine), OUTPUT_TOO_LARGE,
            or INTERNAL (any other exception, or a result that is not bytes; the detail
            names only the exception type).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise EngineError(EngineReason.BAD_INPUT, "input must be bytes")
    data = bytes(data)
    if len(data) > engine.max_input_size:
        raise EngineError(
            EngineReason.INPUT_TOO_LARGE, f"{len(data)} > {engine.max_input_size} bytes"
        )
    try:
        engine.prepare()
        output = engine.run(data)
    except EngineError:
        raise
    except Exception as exc:
        raise EngineError(
            EngineReason.INTERNAL, f"{engine.name} raised {type(exc).__name__}"
        ) from None
    if not isinstance(output, bytes):
        raise EngineError(EngineReason.INTERNAL, f"{engine.name} returned a non-bytes result")
    if len(output) > engine.max_output_size:
        raise EngineError(
            EngineReason.OUTPUT_TOO_LARGE, f"{len(output)} > {engine.max_output_size} bytes"
        )
    return output
