"""Digest rows on the wire: CBOR arrays in field order with binary peer IDs (docs/records.md,
"Digests"). Round trips, one spelling per digest, and typed refusals of every malformed row.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repp2p.errors import RecordError, RecordReason
from repp2p.records import (
    DIGEST_MAX_ROWS,
    FeedbackDigest,
    FeedbackRow,
    WorkDigest,
    WorkRow,
    decode,
    encode,
)
from repp2p.records.codec import DOMAIN
from repp2p.records.peerid import (
    PEER_ID_BYTES,
    b58encode,
    peer_id_from_bytes,
    peer_id_to_bytes,
)
from repp2p.records.schema import (
    FieldError,
    MissingFieldError,
    PeerIdBinary,
    UnknownFieldError,
    from_wire_array,
    to_wire_array,
)
from repp2p.testing import factories
from repp2p.testing.strategies import identities, records_of

ALICE = factories.identity("alice")
WORK, FEEDBACK = factories.sample_digests()
PEERS = sorted(factories.identity(f"peer-{i}").peer_id for i in range(DIGEST_MAX_ROWS + 1))
_SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _resign(type_tag: str, body: Any, key=ALICE) -> bytes:
    raw = body if type(body) is bytes else cbor2.dumps(body, canonical=True)
    sig = key.signing_key.sign(DOMAIN + type_tag.encode() + b"\0" + raw).signature
    return cbor2.dumps(
        {"type": type_tag, "body": raw, "signer": key.public_key, "sig": sig}, canonical=True
    )


def _body(record) -> dict:
    return cbor2.loads(cbor2.loads(encode(record, ALICE))["body"])


def _refused(type_tag: str, body: Any) -> RecordReason:
    with pytest.raises(RecordError) as info:
        decode(_resign(type_tag, body))
    return info.value.reason


# -- binary peer IDs ------------------------------------------------------------------------


@_SETTINGS
@given(a=identities(), b=identities())
def test_binary_peer_ids_round_trip_and_sort_as_their_texts(a, b):
    for who in (a, b):
        raw = peer_id_to_bytes(who.peer_id)
        assert len(raw) == PEER_ID_BYTES and raw[6:] == who.public_key
        assert peer_id_from_bytes(raw) == who.peer_id
        assert b58encode(raw) == who.peer_id  # the binary form is what the text spells
    # rows are sorted by peer ID text (and leaves by it): the binary form must agree
    texts = sorted((a.peer_id, b.peer_id))
    assert sorted((peer_id_to_bytes(a.peer_id), peer_id_to_bytes(b.peer_id))) == [
        peer_id_to_bytes(t) for t in texts
    ]


def test_binary_peer_ids_order_like_texts_across_many_peers():
    assert sorted(PEERS, key=peer_id_to_bytes) == PEERS


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        peer_id_to_bytes(PEERS[0])[:-1],  # 37 bytes
        peer_id_to_bytes(PEERS[0]) + b"\0",  # 39 bytes
        b"\x12\x20" + bytes(36),  # a SHA-256 multihash, not an identity one
        b"\x00\x24\x08\x02\x12\x20" + bytes(32),  # a secp256k1 key type, not Ed25519
        b"\x00\x24\x08\x01\x12\x21" + bytes(32),  # a wrong key length in the protobuf
    ],
)
def test_bad_binary_peer_ids_are_refused(raw):
    with pytest.raises(ValueError):
        peer_id_from_bytes(raw)
    with pytest.raises(FieldError):
        PeerIdBinary().from_wire(raw)


@pytest.mark.parametrize("obj", [PEERS[0], bytearray(peer_id_to_bytes(PEERS[0])), None, 5, []])
def test_a_binary_peer_id_must_be_a_byte_string(obj):
    with pytest.raises(FieldError):
        PeerIdBinary().from_wire(obj)


# -- rows -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [WorkRow, FeedbackRow])
@_SETTINGS
@given(data=st.data())
def test_rows_round_trip_without_trailing_defaults(cls, data):
    row = data.draw(records_of(cls))
    wire = to_wire_array(row)
    assert from_wire_array(cls, wire) == row
    assert wire[0] == peer_id_to_bytes(row.peer)
    fields = [f.name for f in dataclasses.fields(cls)]
    # a trailing optional field at its default is never on the wire; one before a field
    # that is not at its default is (positions are fixed)
    last = fields[len(wire) - 1]
    assert last not in ("offset", "refused") or getattr(row, last) != 0
    assert len(wire) >= 5 if cls is WorkRow else len(wire) >= 6
    assert wire[1:] == [getattr(row, name) for name in fields[1 : len(wire)]]


@pytest.mark.parametrize("cls", [WorkDigest, FeedbackDigest])
@_SETTINGS
@given(data=st.data())
def test_a_digest_has_one_encoding(cls, data):
    record = data.draw(records_of(cls))
    key = data.draw(identities())
    encoded = encode(record, key)
    signed = decode(encoded)
    assert signed.record == record
    # decoding then encoding gives the same bytes: one byte string per digest, so its
    # record ID (and the signature, Ed25519 being deterministic) is well defined
    assert encode(signed.record, key) == encoded
    rows = cbor2.loads(cbor2.loads(encoded)["body"])["rows"]
    assert all(type(r) is list and len(r[0]) == PEER_ID_BYTES for r in rows)


def test_digest_rows_are_arrays_of_binary_peer_ids_and_counts():
    work, feedback = _body(WORK), _body(FEEDBACK)
    a, b = (r.client for r in WORK.rows)
    assert work["rows"] == [[peer_id_to_bytes(a), 3, 2, 1, 0], [peer_id_to_bytes(b), 1, 0, 0, 1]]
    n1, n2 = (r.node for r in FEEDBACK.rows)
    assert feedback["rows"] == [
        [peer_id_to_bytes(n1), 2, 0, 1, 0, 900],
        [peer_id_to_bytes(n2), 0, 1, 0, 0, 40],
    ]
    # 44 bytes a work row here (array head, 2 + 38 for the peer, a byte per count), against
    # 96 + the counts as a map with a text peer ID
    assert len(cbor2.dumps(work["rows"][0])) == 1 + 2 + PEER_ID_BYTES + 4


def test_a_middle_optional_field_at_its_default_is_spelled():
    row = WorkRow(PEERS[0], 3, 1, 1, 0, offset=0, refused=1)
    assert to_wire_array(row) == [peer_id_to_bytes(PEERS[0]), 3, 1, 1, 0, 0, 1]
    batch = WorkRow(PEERS[0], 2, 1, 1, 0, offset=4)
    assert to_wire_array(batch) == [peer_id_to_bytes(PEERS[0]), 2, 1, 1, 0, 4]


def test_array_arity_errors_are_typed():
    wire = to_wire_array(WORK.rows[0])
    with pytest.raises(MissingFieldError):
        from_wire_array(WorkRow, wire[:4])
    with pytest.raises(MissingFieldError):
        from_wire_array(WorkRow, [])
    with pytest.raises(UnknownFieldError):
        from_wire_array(WorkRow, [*wire, 1, 1, 1])
    with pytest.raises(FieldError):
        from_wire_array(WorkRow, {"client": WORK.rows[0].client})


# -- refusals of whole digests -------------------------------------------------------------


def _with_row(body: dict, index: int, row: Any) -> dict:
    rows = list(body["rows"])
    rows[index] = row
    return dict(body, rows=rows)


_W0 = to_wire_array(WORK.rows[0])  # [peer, 3, 2, 1, 0]
_F0 = to_wire_array(FEEDBACK.rows[0])  # [peer, 2, 0, 1, 0, 900]
_BIG = 2**24 + 1


@pytest.mark.parametrize(
    ("type_tag", "row", "reason"),
    [
        # arity
        ("WorkDigest", _W0[:4], RecordReason.MISSING_FIELD),
        ("WorkDigest", [*_W0, 1, 1, 1], RecordReason.UNKNOWN_FIELD),
        ("FeedbackDigest", _F0[:5], RecordReason.MISSING_FIELD),
        ("FeedbackDigest", [*_F0, 1, 1], RecordReason.UNKNOWN_FIELD),
        # wrong kinds
        ("WorkDigest", [PEERS[0], *_W0[1:]], RecordReason.BAD_FIELD),  # text peer ID
        ("WorkDigest", [_W0[0], True, 1, 1, 0], RecordReason.BAD_FIELD),  # bool count
        ("WorkDigest", [_W0[0], "3", 2, 1, 0], RecordReason.BAD_FIELD),
        ("WorkDigest", [_W0[0], 3, 2, 1, None], RecordReason.BAD_FIELD),
        ("WorkDigest", [_W0[0], 3, 2, 1, 0.0], RecordReason.BAD_FIELD),
        ("WorkDigest", [_W0[0], -3, 2, 1, 0], RecordReason.BAD_FIELD),
        ("FeedbackDigest", [*_F0[:5], b"\x03\x84"], RecordReason.BAD_FIELD),
        ("WorkDigest", [[_W0[0]], 3, 2, 1, 0], RecordReason.BAD_FIELD),
        ("WorkDigest", dict(enumerate(_W0)), RecordReason.BAD_FIELD),
        ("WorkDigest", 3, RecordReason.BAD_FIELD),
        # the map rows of before this encoding: a flag day, refused
        (
            "WorkDigest",
            {"client": PEERS[0], "claims": 3, "receipts": 2, "timeouts": 1, "failures": 0},
            RecordReason.BAD_FIELD,
        ),
        # bad peer ID bytes
        ("WorkDigest", [_W0[0][:-1], *_W0[1:]], RecordReason.BAD_FIELD),
        ("WorkDigest", [b"\x01" + _W0[0][1:], *_W0[1:]], RecordReason.BAD_FIELD),
        ("FeedbackDigest", [bytes(PEER_ID_BYTES), *_F0[1:]], RecordReason.BAD_FIELD),
        # counts out of range, and rows that break their own rules
        ("WorkDigest", [_W0[0], _BIG, _BIG, 0, 0], RecordReason.BAD_FIELD),
        ("WorkDigest", [_W0[0], 4, 2, 1, 0], RecordReason.BAD_FIELD),  # 4 != 2 + 1 + 0
        ("WorkDigest", [_W0[0], 0, 0, 0, 0], RecordReason.BAD_FIELD),  # an empty row
        ("WorkDigest", [*_W0, 16], RecordReason.BAD_FIELD),  # offset past any span
        ("FeedbackDigest", [*_F0[:5], 3 * (2**32 - 1) + 1], RecordReason.BAD_FIELD),
        # one spelling per value: a trailing optional field at its default
        ("WorkDigest", [*_W0, 0], RecordReason.BAD_FIELD),  # offset 0
        ("WorkDigest", [*_W0, 0, 0], RecordReason.BAD_FIELD),  # refused 0
        ("FeedbackDigest", [*_F0, 0], RecordReason.BAD_FIELD),  # offset 0
    ],
)
def test_malformed_rows_are_refused_with_a_typed_error(type_tag, row, reason):
    body = _body(WORK if type_tag == "WorkDigest" else FEEDBACK)
    assert _refused(type_tag, _with_row(body, 0, row)) is reason


def test_a_row_with_refusals_but_no_offset_spells_the_offset():
    body = _body(WORK)
    # one refused task more (claims 4 = 2 + 1 + 0 + 1): offset 0 is spelled before it
    row = [*_W0[:1], 4, 2, 1, 0, 0, 1]
    decoded = decode(_resign("WorkDigest", dict(_with_row(body, 0, row), leaf_count=5)))
    assert decoded.record.rows[0].refused == 1 and decoded.record.rows[0].offset == 0


def test_unsorted_duplicate_and_too_many_rows_are_refused():
    body = _body(WORK)
    first, second = body["rows"]
    assert _refused("WorkDigest", dict(body, rows=[second, first])) is RecordReason.BAD_FIELD
    twice = dict(body, rows=[first, first], leaf_count=6)
    assert _refused("WorkDigest", twice) is RecordReason.BAD_FIELD
    rows = [[peer_id_to_bytes(p), 1, 1, 0, 0] for p in PEERS]  # DIGEST_MAX_ROWS + 1, sorted
    many = dict(body, rows=rows, leaf_count=len(rows))
    assert _refused("WorkDigest", many) is RecordReason.BAD_FIELD
    # the most rows a part may hold decode
    ok = dict(body, rows=rows[:DIGEST_MAX_ROWS], leaf_count=DIGEST_MAX_ROWS)
    assert len(decode(_resign("WorkDigest", ok)).record.rows) == DIGEST_MAX_ROWS


def test_an_oversize_row_is_refused_before_parsing():
    body = _with_row(_body(WORK), 0, [b"\0" * (41 * 1024), *_W0[1:]])
    assert _refused("WorkDigest", body) is RecordReason.OVERSIZE


def test_non_canonical_and_indefinite_rows_are_refused():
    body = cbor2.dumps(_body(WORK), canonical=True)
    row = cbor2.dumps(_W0, canonical=True)
    assert row[0] == 0x85 and body.count(row) == 1  # an array of five, once in the body
    # claims 3 in two bytes (0x18 0x03) instead of one: decodes to the same, not canonical
    wide = row[:41] + b"\x18" + row[41:]
    assert cbor2.loads(wide) == _W0
    assert _refused("WorkDigest", body.replace(row, wide)) is RecordReason.NON_CANONICAL
    # the peer ID's length in two bytes (0x59 0x00 0x26) instead of one
    wide_len = b"\x85\x59\x00" + row[2:]
    assert cbor2.loads(wide_len) == _W0
    assert _refused("WorkDigest", body.replace(row, wide_len)) is RecordReason.NON_CANONICAL
    # an indefinite-length array
    indefinite = b"\x9f" + row[1:] + b"\xff"
    assert cbor2.loads(indefinite) == _W0
    assert _refused("WorkDigest", body.replace(row, indefinite)) is RecordReason.MALFORMED


_CBOR_ITEMS = st.recursive(
    st.one_of(
        st.integers(-(2**64), 2**64),
        st.booleans(),
        st.none(),
        st.binary(max_size=40),
        st.text(max_size=8),
        st.just(peer_id_to_bytes(PEERS[1])),
        st.sampled_from([0, 1, 2, 3, 15, 16, 2**24, 2**24 + 1]),
    ),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=6,
)


@pytest.mark.parametrize("type_tag", ["WorkDigest", "FeedbackDigest"])
@_SETTINGS
@given(data=st.data())
def test_fuzzed_rows_decode_canonically_or_are_refused(type_tag, data):
    body = _body(WORK if type_tag == "WorkDigest" else FEEDBACK)
    index = data.draw(st.integers(0, 1))
    row = list(body["rows"][index])
    # edit the row: replace, drop or append items
    for _ in range(data.draw(st.integers(1, 3))):
        action = data.draw(st.sampled_from(["set", "drop", "append"]))
        if action == "set" and row:
            row[data.draw(st.integers(0, len(row) - 1))] = data.draw(_CBOR_ITEMS)
        elif action == "drop" and row:
            row.pop()
        else:
            row.append(data.draw(_CBOR_ITEMS))
    leaf_count = data.draw(st.sampled_from([body["leaf_count"], *range(8)]))
    forged = _resign(type_tag, dict(_with_row(body, index, row), leaf_count=leaf_count))
    try:
        signed = decode(forged)
    except RecordError as exc:
        assert isinstance(exc.reason, RecordReason)
        return
    # accepted: then these are exactly the bytes its record encodes to
    assert encode(signed.record, ALICE) == forged
