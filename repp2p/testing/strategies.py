"""Hypothesis strategies for every registered record type, derived from the field specs.

Deriving them from :mod:`repp2p.records.schema` means a new record type or field is covered
by the round-trip and fuzz tests without anyone writing a strategy for it.
"""

from __future__ import annotations

from hypothesis import strategies as st

from repp2p.identity import Identity
from repp2p.records import RECORD_TYPES, Record
from repp2p.records.schema import (
    ArrayOf,
    Blob,
    Choice,
    Nested,
    PeerIdText,
    Spec,
    Text,
    UInt,
    field_specs,
)

_ADDR_ALPHABET = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
_ENGINE_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789._-"


def identities() -> st.SearchStrategy[Identity]:
    """Ed25519 identities from hypothesis-chosen seeds."""
    return st.binary(min_size=32, max_size=32).map(Identity.from_seed)


def for_spec(spec: Spec) -> st.SearchStrategy[object]:
    """A strategy producing valid values for one field spec."""
    if isinstance(spec, UInt):
        return st.integers(spec.minimum, spec.maximum)
    if isinstance(spec, Blob):
        if spec.size is not None:
            return st.binary(min_size=spec.size, max_size=spec.size)
        return st.binary(max_size=min(spec.max_size or 64, 256))
    if isinstance(spec, Choice):
        return st.sampled_from(sorted(spec.values))
    if isinstance(spec, PeerIdText):
        return identities().map(lambda i: i.peer_id)
    if isinstance(spec, Text):
        if spec.pattern and spec.pattern.startswith("[a-z0-9]"):
            return st.text(_ENGINE_ALPHABET, min_size=0, max_size=20).map(lambda s: "e" + s)
        if spec.pattern and spec.pattern.startswith("/"):
            return st.text(_ADDR_ALPHABET, min_size=1, max_size=40).map(lambda s: "/" + s)
        return st.text(max_size=min(spec.max_len, 40))
    if isinstance(spec, ArrayOf):
        items = st.lists(for_spec(spec.item), max_size=min(spec.max_items, 4))
        if spec.unique_sorted:
            items = items.map(lambda xs: sorted(set(xs)))
        return items.map(tuple)
    if isinstance(spec, Nested):
        return records_of(spec.cls)
    raise TypeError(f"no strategy for {spec!r}")


def records_of(cls: type) -> st.SearchStrategy[object]:
    """Valid instances of a spec'd dataclass (a record type or a nested part)."""
    return st.builds(cls, **{name: for_spec(spec) for name, spec in field_specs(cls).items()})


def records() -> st.SearchStrategy[Record]:
    """A valid record of any registered type."""
    return st.one_of(*(records_of(cls) for cls in RECORD_TYPES.values()))  # type: ignore[return-value]
