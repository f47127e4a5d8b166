"""Hypothesis strategies for every registered record type, derived from the field specs.

Deriving them from :mod:`repp2p.records.schema` means a new record type or field is covered
by the round-trip and fuzz tests without anyone writing a strategy for it.
"""

from __future__ import annotations

from hypothesis import strategies as st

from repp2p.identity import Identity
from repp2p.records import (
    DIGEST_MAX_SPAN,
    EMPTY_MERKLE_ROOT,
    RECORD_TYPES,
    FeedbackDigest,
    FeedbackRow,
    Heartbeat,
    Record,
    WorkDigest,
    WorkRow,
    part_of,
)
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
    """Valid instances of a spec'd dataclass (a record type or a nested part).

    Types whose fields constrain each other (``check_invariants``) have their own strategy
    in :data:`_CONSTRAINED`; the rest are built field by field from their specs.
    """
    if cls in _CONSTRAINED:
        return _CONSTRAINED[cls]()
    return st.builds(cls, **{name: for_spec(spec) for name, spec in field_specs(cls).items()})


_COUNT = st.integers(0, 2**19)  # five rows of four counts each stay under DIGEST_MAX_LEAVES
_peer_ids = identities().map(lambda i: i.peer_id)
#: A row alone may be of any epoch of a batch; a digest's rows draw offsets below its span.
_ANY_OFFSET = st.integers(0, DIGEST_MAX_SPAN - 1)


def _work_rows(offsets: st.SearchStrategy[int] = _ANY_OFFSET) -> st.SearchStrategy[WorkRow]:
    def row(peer: str, r: int, t: int, f: int, refused: int, offset: int) -> WorkRow:
        if r + t + f + refused == 0:
            r = 1  # a row counts at least one claim
        claims = r + t + f + refused
        return WorkRow(peer, claims, r, t, f, offset=offset, refused=refused)

    # refused is mostly 0 (left out on the wire), sometimes not (spelled, after the offset)
    refused = st.one_of(st.just(0), _COUNT)
    return st.builds(row, _peer_ids, _COUNT, _COUNT, _COUNT, refused, offsets)


def _feedback_rows(
    offsets: st.SearchStrategy[int] = _ANY_OFFSET,
) -> st.SearchStrategy[FeedbackRow]:
    @st.composite
    def row(draw: st.DrawFn) -> FeedbackRow:
        ok, wrong, timeout, bad = (draw(_COUNT) for _ in range(4))
        if ok + wrong + timeout + bad == 0:
            ok = 1  # a row counts at least one verdict
        total = ok + wrong + timeout + bad
        latency = draw(st.integers(0, total * (2**32 - 1)))
        node = draw(_peer_ids)
        return FeedbackRow(
            node=node,
            ok=ok,
            wrong=wrong,
            timeout=timeout,
            bad_proof=bad,
            latency_sum_ms=latency,
            offset=draw(offsets),
        )

    return row()


def _digests(cls: type[WorkDigest] | type[FeedbackDigest]) -> st.SearchStrategy[object]:
    rows_for = _work_rows if cls is WorkDigest else _feedback_rows
    total_of = (lambda r: r.claims) if cls is WorkDigest else (lambda r: r.total)

    @st.composite
    def digest(draw: st.DrawFn) -> object:
        parts = draw(st.integers(1, 3))
        part = draw(st.integers(0, parts - 1))
        span = draw(st.sampled_from((1, 1, 2, DIGEST_MAX_SPAN)))  # single epochs and batches
        row_strategy = rows_for(st.integers(0, span - 1))
        rows = draw(st.lists(row_strategy, max_size=5, unique_by=lambda r: (r.offset, r.peer)))
        rows = sorted(
            (r for r in rows if part_of(r.peer, parts) == part), key=lambda r: (r.offset, r.peer)
        )
        leaf_count = sum(total_of(r) for r in rows)
        root = EMPTY_MERKLE_ROOT if leaf_count == 0 else draw(st.binary(min_size=32, max_size=32))
        return cls(
            epoch=draw(st.integers(0, 2**64 - span)),
            part=part,
            parts=parts,
            rows=tuple(rows),
            leaf_count=leaf_count,
            merkle_root=root,
            seq=0,
            expires=draw(st.integers(0, 2**64 - 1)),
            span=span,
        )

    return digest()


def _heartbeats() -> st.SearchStrategy[Heartbeat]:
    specs = field_specs(Heartbeat)
    fields = {name: for_spec(spec) for name, spec in specs.items() if name != "enclave_sig"}
    # an enclave signature is 64 bytes or absent (check_invariants)
    sigs = st.one_of(st.just(b""), st.binary(min_size=64, max_size=64))
    return st.builds(Heartbeat, enclave_sig=sigs, **fields)


_CONSTRAINED = {
    Heartbeat: _heartbeats,
    WorkRow: _work_rows,
    FeedbackRow: _feedback_rows,
    WorkDigest: lambda: _digests(WorkDigest),
    FeedbackDigest: lambda: _digests(FeedbackDigest),
}


def records() -> st.SearchStrategy[Record]:
    """A valid record of any registered type."""
    return st.one_of(*(records_of(cls) for cls in RECORD_TYPES.values()))  # type: ignore[return-value]
