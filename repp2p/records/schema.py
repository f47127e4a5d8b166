"""Field specifications: the one place that says what a valid record field is.

Each record field declares a :class:`Spec` in its dataclass metadata. A spec converts between
the Python value held by the frozen dataclass and the CBOR value on the wire, and validates
both ways, so a record that exists in memory is always encodable and a decoded record is
always valid. Specs raise :class:`FieldError`; the codec turns that into a ``RecordError``.

Rules of this file: no floats anywhere on the wire (prices, scores and ratios are integers in
stated units), integers are unsigned with explicit bounds, every text and byte string and
every array has a maximum size.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Callable
from typing import Any

from repp2p.records.peerid import peer_id_from_bytes, peer_id_to_bytes, public_key_from_peer_id

UINT64_MAX = 2**64 - 1


class FieldError(ValueError):
    """A field value is out of its spec (internal: the codec maps it to RecordError)."""


class Spec:
    """Validation and wire conversion for one field."""

    def check(self, value: Any) -> Any:
        """Validate a Python value; return it (possibly normalised)."""
        raise NotImplementedError

    def to_wire(self, value: Any) -> Any:
        return value

    def from_wire(self, obj: Any) -> Any:
        return self.check(obj)


@dataclasses.dataclass(frozen=True, slots=True)
class UInt(Spec):
    """An unsigned integer in ``[minimum, maximum]`` (bool is not an integer here)."""

    minimum: int = 0
    maximum: int = UINT64_MAX

    def check(self, value: Any) -> int:
        if type(value) is not int:
            raise FieldError(f"expected an integer, got {type(value).__name__}")
        if not self.minimum <= value <= self.maximum:
            raise FieldError(f"{value} outside [{self.minimum}, {self.maximum}]")
        return value


@dataclasses.dataclass(frozen=True, slots=True)
class Text(Spec):
    """A text string of at most ``max_len`` characters, optionally matching ``pattern``."""

    max_len: int
    pattern: str | None = None

    def check(self, value: Any) -> str:
        if type(value) is not str:
            raise FieldError(f"expected text, got {type(value).__name__}")
        if len(value) > self.max_len:
            raise FieldError(f"text longer than {self.max_len}")
        if self.pattern is not None and re.fullmatch(self.pattern, value) is None:
            raise FieldError(f"text {value[:40]!r} does not match {self.pattern}")
        return value


@dataclasses.dataclass(frozen=True, slots=True)
class Blob(Spec):
    """A byte string of exactly ``size`` bytes, or of at most ``max_size`` bytes."""

    size: int | None = None
    max_size: int | None = None

    def check(self, value: Any) -> bytes:
        if type(value) is not bytes:
            raise FieldError(f"expected bytes, got {type(value).__name__}")
        if self.size is not None and len(value) != self.size:
            raise FieldError(f"expected {self.size} bytes, got {len(value)}")
        if self.max_size is not None and len(value) > self.max_size:
            raise FieldError(f"more than {self.max_size} bytes")
        return value


@dataclasses.dataclass(frozen=True, slots=True)
class Choice(Spec):
    """One of a fixed set of text values."""

    values: frozenset[str]

    def check(self, value: Any) -> str:
        if type(value) is not str or value not in self.values:
            raise FieldError(f"{value!r} is not one of {sorted(self.values)}")
        return value


@dataclasses.dataclass(frozen=True, slots=True)
class PeerIdText(Spec):
    """A canonical Ed25519 libp2p peer ID string ("12D3KooW...")."""

    def check(self, value: Any) -> str:
        if type(value) is not str:
            raise FieldError("expected a peer ID string")
        try:
            public_key_from_peer_id(value)
        except ValueError as exc:
            raise FieldError(str(exc)) from None
        return value


@dataclasses.dataclass(frozen=True, slots=True)
class PeerIdBinary(PeerIdText):
    """A peer ID held as its canonical text (as :class:`PeerIdText`) but sent as its
    38-byte binary form (:func:`~repp2p.records.peerid.peer_id_to_bytes`): 40 bytes on the
    wire instead of 54. Binary forms sort as their texts do, so rules on the text's order
    hold unchanged."""

    def to_wire(self, value: str) -> bytes:
        return peer_id_to_bytes(value)

    def from_wire(self, obj: Any) -> str:
        if type(obj) is not bytes:
            raise FieldError(f"expected a binary peer ID, got {type(obj).__name__}")
        try:
            return peer_id_from_bytes(obj)
        except ValueError as exc:
            raise FieldError(str(exc)) from None


@dataclasses.dataclass(frozen=True, slots=True)
class ArrayOf(Spec):
    """A tuple (a CBOR array on the wire) of at most ``max_items`` items of ``item``.

    ``unique_sorted`` demands strictly increasing items, so a set has one spelling.
    """

    item: Spec
    max_items: int
    unique_sorted: bool = False

    def check(self, value: Any) -> tuple[Any, ...]:
        if type(value) is not tuple:
            raise FieldError(f"expected a tuple, got {type(value).__name__}")
        return self._items(value, self.item.check)

    def to_wire(self, value: tuple[Any, ...]) -> list[Any]:
        return [self.item.to_wire(v) for v in value]

    def from_wire(self, obj: Any) -> tuple[Any, ...]:
        if type(obj) is not list:
            raise FieldError(f"expected an array, got {type(obj).__name__}")
        return self._items(obj, self.item.from_wire)

    def _items(self, seq: Any, convert: Callable[[Any], Any]) -> tuple[Any, ...]:
        if len(seq) > self.max_items:
            raise FieldError(f"more than {self.max_items} items")
        items = tuple(convert(v) for v in seq)
        if self.unique_sorted and any(a >= b for a, b in itertools.pairwise(items)):
            raise FieldError("items must be unique and sorted")
        return items


@dataclasses.dataclass(frozen=True, slots=True)
class Nested(Spec):
    """A nested frozen dataclass whose fields carry specs: a CBOR map on the wire, or with
    ``array`` a CBOR array of its values in field order (:func:`to_wire_array`; for parts
    repeated many times in a record, such as digest rows, where the keys would cost more
    than the values)."""

    cls: type
    array: bool = False

    def check(self, value: Any) -> Any:
        if type(value) is not self.cls:
            raise FieldError(f"expected {self.cls.__name__}")
        return value

    def to_wire(self, value: Any) -> dict[str, Any] | list[Any]:
        return to_wire_array(value) if self.array else to_wire_map(value)

    def from_wire(self, obj: Any) -> Any:
        return from_wire_array(self.cls, obj) if self.array else from_wire_map(self.cls, obj)


def spec_field(spec: Spec, **kwargs: Any) -> Any:
    """Declare a dataclass field validated by ``spec``."""
    return dataclasses.field(metadata={"spec": spec}, **kwargs)


def optional_field(spec: Spec, default: Any) -> Any:
    """Declare a field added to a type after it shipped: it is left out of the wire map when
    it holds ``default`` (so encodings made before it existed stay valid, byte for byte),
    and a map that spells the default out is refused (one spelling per value)."""
    return dataclasses.field(default=default, metadata={"spec": spec, "omit": True})


def _optional(cls: type) -> dict[str, Any]:
    """``{name: default}`` of the optional fields of a spec'd dataclass (cached)."""
    cached = cls.__dict__.get("_repp2p_optional")
    if cached is None:
        cached = {
            f.name: f.default for f in dataclasses.fields(cls) if f.metadata.get("omit", False)
        }
        cls._repp2p_optional = cached  # type: ignore[attr-defined]
    return cached


def field_specs(cls: type) -> dict[str, Spec]:
    """The ``{name: spec}`` table of a spec'd dataclass (cached on the class)."""
    cached = cls.__dict__.get("_repp2p_specs")
    if cached is None:
        cached = {f.name: f.metadata["spec"] for f in dataclasses.fields(cls)}
        cls._repp2p_specs = cached  # type: ignore[attr-defined]
    return cached


def validate_fields(obj: Any) -> None:
    """Validate every field of a spec'd dataclass instance (called from ``__post_init__``),
    then the rules between its fields (:func:`check_invariants`)."""
    for name, spec in field_specs(type(obj)).items():
        value = getattr(obj, name)
        try:
            spec.check(value)
        except FieldError as exc:
            raise FieldError(f"{type(obj).__name__}.{name}: {exc}") from None
    check_invariants(obj)


def check_invariants(obj: Any) -> None:
    """Apply the rules that tie a type's fields together, when it declares any.

    A spec checks one field alone; a type whose fields constrain each other (a digest's rows
    must be sorted and add up to its leaf count) declares ``check_invariants(self)``, which
    raises :class:`FieldError`. It runs on construction and on decoding alike, so a value
    that breaks it can neither be built nor received.
    """
    check = getattr(type(obj), "check_invariants", None)
    if check is not None:
        try:
            check(obj)
        except FieldError as exc:
            raise FieldError(f"{type(obj).__name__}: {exc}") from None


def to_wire_map(obj: Any) -> dict[str, Any]:
    """The CBOR-ready map of a spec'd dataclass instance (optional fields holding their
    default left out)."""
    optional = _optional(type(obj))
    return {
        name: spec.to_wire(getattr(obj, name))
        for name, spec in field_specs(type(obj)).items()
        if name not in optional or getattr(obj, name) != optional[name]
    }


class UnknownFieldError(FieldError):
    """The map has a key the type does not define."""


class MissingFieldError(FieldError):
    """The map lacks a key the type requires."""


def from_wire_map(cls: type, obj: Any) -> Any:
    """Build a validated instance of ``cls`` from a decoded CBOR map, without re-validating."""
    if type(obj) is not dict:
        raise FieldError(f"{cls.__name__}: expected a map")
    specs = field_specs(cls)
    optional = _optional(cls)
    if len(obj) != len(specs) or obj.keys() != specs.keys():
        unknown = sorted(str(k) for k in obj if k not in specs)
        if unknown:
            raise UnknownFieldError(f"{cls.__name__}: unknown field(s) {unknown}")
        missing = sorted(k for k in specs if k not in obj and k not in optional)
        if missing:
            raise MissingFieldError(f"{cls.__name__}: missing field(s) {missing}")
    instance = object.__new__(cls)
    for name, spec in specs.items():
        if name not in obj:  # an optional field left out: its default
            object.__setattr__(instance, name, optional[name])
            continue
        try:
            value = spec.from_wire(obj[name])
        except (UnknownFieldError, MissingFieldError):
            raise
        except FieldError as exc:
            raise FieldError(f"{cls.__name__}.{name}: {exc}") from None
        if name in optional and value == optional[name]:
            raise FieldError(f"{cls.__name__}.{name}: its default is left out, not spelled")
        object.__setattr__(instance, name, value)
    check_invariants(instance)
    return instance


def _required_count(cls: type) -> int:
    """How many leading fields of ``cls`` an array must hold: every field before the first
    optional one (cached). Optional fields must all come last, or a left-out one would
    shift the positions after it."""
    cached = cls.__dict__.get("_repp2p_required")
    if cached is None:
        optional = _optional(cls)
        names = list(field_specs(cls))
        cached = next((i for i, name in enumerate(names) if name in optional), len(names))
        if any(name not in optional for name in names[cached:]):
            raise TypeError(f"{cls.__name__}: optional fields must come after required ones")
        cls._repp2p_required = cached  # type: ignore[attr-defined]
    return cached  # type: ignore[no-any-return]


def to_wire_array(obj: Any) -> list[Any]:
    """The CBOR-ready array of a spec'd dataclass instance: its values in field order, the
    trailing optional fields that hold their default left out (one spelling per value: an
    optional field followed by a non-default one is spelled out, even at its default)."""
    cls = type(obj)
    required = _required_count(cls)
    optional = _optional(cls)
    names = list(field_specs(cls))
    n = len(names)
    while n > required and getattr(obj, names[n - 1]) == optional[names[n - 1]]:
        n -= 1
    specs = field_specs(cls)
    return [specs[name].to_wire(getattr(obj, name)) for name in names[:n]]


def from_wire_array(cls: type, obj: Any) -> Any:
    """Build a validated instance of ``cls`` from a decoded CBOR array (the form
    :func:`to_wire_array` writes).

    Raises:
        FieldError: not an array, a value out of its spec, a last item that is an optional
            field at its default (it must be left out), or the type's invariants;
            :class:`MissingFieldError` when it is shorter than the required fields;
            :class:`UnknownFieldError` when it is longer than all the fields.
    """
    if type(obj) is not list:
        raise FieldError(f"{cls.__name__}: expected an array")
    specs = field_specs(cls)
    names = list(specs)
    required = _required_count(cls)
    optional = _optional(cls)
    if len(obj) < required:
        raise MissingFieldError(f"{cls.__name__}: missing field(s) {names[len(obj) : required]}")
    if len(obj) > len(names):
        raise UnknownFieldError(
            f"{cls.__name__}: {len(obj)} items, more than its {len(names)} fields"
        )
    instance = object.__new__(cls)
    for i, name in enumerate(names):
        if i >= len(obj):  # a trailing optional field left out: its default
            object.__setattr__(instance, name, optional[name])
            continue
        try:
            value = specs[name].from_wire(obj[i])
        except (UnknownFieldError, MissingFieldError):
            raise
        except FieldError as exc:
            raise FieldError(f"{cls.__name__}.{name}: {exc}") from None
        if i == len(obj) - 1 and name in optional and value == optional[name]:
            raise FieldError(f"{cls.__name__}.{name}: its default is left out, not spelled")
        object.__setattr__(instance, name, value)
    check_invariants(instance)
    return instance
