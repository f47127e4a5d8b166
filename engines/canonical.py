"""Canonical JSON output for engines: one byte string per value, on every machine.

``canonical_json`` writes objects with sorted keys, no spaces, ASCII only, and refuses
Python floats: a float is written only through :class:`Fixed`, a fixed number of decimal
places (``f"{x:.{places}f}"``, correctly rounded by CPython on every platform, ``-0`` written
as ``0``). So outputs compare bit for bit across redundant runs.
"""

from __future__ import annotations

import dataclasses
import json
import math

from engines.errors import EngineError, EngineReason


@dataclasses.dataclass(frozen=True)
class Fixed:
    """A float to be written with exactly ``places`` decimals."""

    value: float
    places: int

    def render(self) -> str:
        if not math.isfinite(self.value):
            raise ValueError("canonical JSON has no NaN or infinity")
        text = f"{self.value:.{self.places}f}"
        if text.lstrip("-").strip("0.") == "":
            text = text.lstrip("-")  # -0.0000 -> 0.0000
        return text


def _write(obj: object, out: list[str]) -> None:
    if isinstance(obj, Fixed):
        out.append(obj.render())
    elif obj is None or isinstance(obj, bool | int | str):
        out.append(json.dumps(obj, ensure_ascii=True))
    elif isinstance(obj, dict):
        if not all(isinstance(key, str) for key in obj):
            raise TypeError("canonical JSON keys are strings")
        out.append("{")
        for i, key in enumerate(sorted(obj)):
            if i:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=True))
            out.append(":")
            _write(obj[key], out)
        out.append("}")
    elif isinstance(obj, list | tuple):
        out.append("[")
        for i, item in enumerate(obj):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise TypeError(f"canonical JSON cannot hold {type(obj).__name__}")


def canonical_json(obj: object) -> bytes:
    """Encode ``obj`` (dict, list, tuple, str, int, bool, None, :class:`Fixed`) canonically."""
    out: list[str] = []
    _write(obj, out)
    return "".join(out).encode("ascii")


def decode_text(data: bytes, *, engine: str) -> str:
    """Input bytes as UTF-8 text, or ``EngineError(BAD_INPUT)`` (shared by text engines)."""
    try:
        return data.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        raise EngineError(EngineReason.BAD_INPUT, f"{engine}: input is not UTF-8") from None
