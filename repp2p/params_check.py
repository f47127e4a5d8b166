"""One strict validation helper for every parameter object (pure: no I/O, no clock).

Every frozen params class (``NodeConfig``, the ``repp2p.net.params`` classes,
``MatchingParams``, ``ReputationParams``, ``LedgerParams``, ``NetworkParams``, the
simulator's ``Scenario``) checks its fields through these functions, so the rules and the
messages are the same everywhere:

* an integer field takes an ``int`` only: ``4.5``, ``4.0`` and ``True`` are refused (a bool
  is not a number here, although Python makes it an ``int``);
* a float field takes an ``int`` or a ``float``, finite, and stores it as ``float`` (and
  ``-0.0`` as ``0.0``): the canonical digest of a params object must not depend on whether
  a TOML file wrote ``12`` or ``12.0``;
* bounds are inclusive, and every error is a :class:`~repp2p.errors.ConfigError` naming the
  class, the field, the bounds and the value refused.

The ``*_field`` forms read a dataclass field, check it, and (floats) write the normalised
value back; they are meant for ``__post_init__`` of frozen dataclasses.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from repp2p.errors import ConfigError


def check_int(owner: str, name: str, value: Any, low: int, high: int) -> int:
    """``value`` if it is an ``int`` (not a bool) in ``[low, high]``, else ConfigError."""
    if type(value) is not int or not low <= value <= high:
        raise ConfigError(f"{owner}.{name} must be an integer in [{low}, {high}], got {value!r}")
    return value


def check_float(owner: str, name: str, value: Any, low: float, high: float) -> float:
    """``float(value)`` if it is a finite int or float (not a bool) in ``[low, high]``."""
    ok = type(value) in (int, float) and math.isfinite(value) and low <= value <= high
    if not ok:
        raise ConfigError(f"{owner}.{name} must be a number in [{low}, {high}], got {value!r}")
    # "+ 0.0" turns -0.0 into 0.0: equal values must have one canonical (CBOR) form.
    return float(value) + 0.0


def check_bool(owner: str, name: str, value: Any) -> bool:
    """``value`` if it is ``True`` or ``False`` (not 0 or 1), else ConfigError."""
    if type(value) is not bool:
        raise ConfigError(f"{owner}.{name} must be true or false, got {value!r}")
    return value


def check_choice(owner: str, name: str, value: Any, choices: Collection[Any]) -> Any:
    """``value`` if it is one of ``choices`` (compared with ``==``, same type), else
    ConfigError listing them."""
    if not any(type(value) is type(c) and value == c for c in choices):
        listed = sorted(choices, key=repr)
        raise ConfigError(f"{owner}.{name} must be one of {listed}, got {value!r}")
    return value


def check_str(owner: str, name: str, value: Any, pattern: str) -> str:
    """``value`` if it is a string matching the regular expression ``pattern`` in full."""
    if not isinstance(value, str) or not re.fullmatch(pattern, value):
        raise ConfigError(f"{owner}.{name} must match {pattern}, got {value!r}")
    return value


def check_keys(where: str, table: Mapping[str, Any], known: Iterable[str]) -> None:
    """Refuse a TOML table that is not a table or has keys outside ``known``.

    ``where`` names the file and table in the message (e.g. ``"bootstrap/dev.toml
    [matching]"``), so an operator finds the key to fix.
    """
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table, got {table!r}")
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {sorted(known)})")


def int_field(obj: object, name: str, low: int, high: int) -> int:
    """Check the integer field ``name`` of ``obj`` (see :func:`check_int`)."""
    return check_int(type(obj).__name__, name, getattr(obj, name), low, high)


def float_field(obj: object, name: str, low: float, high: float) -> float:
    """Check the float field ``name`` of ``obj`` and store it back as a ``float``."""
    value = check_float(type(obj).__name__, name, getattr(obj, name), low, high)
    # Frozen dataclasses refuse setattr; __post_init__ may still normalise its own fields.
    object.__setattr__(obj, name, value)
    return value


def bool_field(obj: object, name: str) -> bool:
    """Check the boolean field ``name`` of ``obj`` (see :func:`check_bool`)."""
    return check_bool(type(obj).__name__, name, getattr(obj, name))


def choice_field(obj: object, name: str, choices: Collection[Any]) -> Any:
    """Check that the field ``name`` of ``obj`` is one of ``choices``."""
    return check_choice(type(obj).__name__, name, getattr(obj, name), choices)


def str_field(obj: object, name: str, pattern: str) -> str:
    """Check that the string field ``name`` of ``obj`` matches ``pattern`` in full."""
    return check_str(type(obj).__name__, name, getattr(obj, name), pattern)
