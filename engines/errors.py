"""Errors of the AI micro-engines, part of the one hierarchy rooted at ``ReppError``.

Rules of this file: one class, :class:`EngineError`, whose :class:`EngineReason` is what the
enclave reports back to the node (and, through it, what a client sees). An error's detail
text is written by engine code and must never quote the input: it leaves the enclave.
"""

from __future__ import annotations

import enum

from repp2p.errors import ReasonedError


class EngineReason(enum.Enum):
    """Why an engine could not produce an output. Values are stable wire/metric names."""

    #: the input is not what the engine's input schema describes (the client's fault)
    BAD_INPUT = "bad_input"
    #: the input is larger than the manifest's ``max_input_size`` (the client's fault)
    INPUT_TOO_LARGE = "input_too_large"
    #: the engine produced more than its ``max_output_size`` (the engine's fault)
    OUTPUT_TOO_LARGE = "output_too_large"
    #: no engine of that name is installed (entry point missing)
    NOT_FOUND = "not_found"
    #: the engine is installed but cannot run here (optional extra or model files missing)
    UNAVAILABLE = "unavailable"
    #: the manifest is missing, malformed, or names files that do not exist
    BAD_MANIFEST = "bad_manifest"
    #: the engine crashed or broke its contract (returned something other than bytes)
    INTERNAL = "internal"


class EngineError(ReasonedError):
    """An engine refused an input, could not be loaded, or failed.

    Attributes:
        reason: the :class:`EngineReason`.
        detail: human-readable detail; never parsed, never contains input data.
    """
