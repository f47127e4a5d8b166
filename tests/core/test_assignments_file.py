"""Offer ranks kept across restarts (``Assignments.to_bytes`` / ``from_bytes``): the same
ranks back, canonical bytes, and a typed refusal of anything else (a file is input too)."""

from __future__ import annotations

import cbor2
import pytest

from repp2p.errors import StoreError
from repp2p.matching import Assignments

OID = bytes(range(32))


def _filled() -> Assignments:
    a = Assignments()
    a._cache[OID] = (7, {"peer-b": frozenset({3, 0}), "peer-a": frozenset({1})})
    a._cache[bytes(32)] = (5, {})
    return a


def test_ranks_come_back_from_their_bytes_and_the_bytes_are_canonical() -> None:
    a = _filled()
    data = a.to_bytes()
    b = Assignments.from_bytes(data)
    assert b._cache == a._cache and not b.changed
    assert b.to_bytes() == data
    assert cbor2.loads(data)["offers"][1] == [OID, 7, [["peer-a", [1]], ["peer-b", [0, 3]]]]


def test_caching_and_dropping_mark_the_ranks_changed() -> None:
    a = _filled()
    assert not a.changed  # (filled by hand: nothing ranked)
    a.forget_before(6)  # drops the offer of epoch 5
    assert a.changed and len(a) == 1
    a.to_bytes()
    assert a.changed  # writing the bytes is not saving them: the keeper clears it
    a.changed = False
    a.keep({OID})
    assert not a.changed  # nothing dropped
    a.keep(set())
    assert a.changed and len(a) == 0


def _entry(**change):
    fields = {"oid": OID, "epoch": 7, "ranked": [["p", [1]]]}
    fields.update(change)
    return [fields["oid"], fields["epoch"], fields["ranked"]]


@pytest.mark.parametrize(
    "obj",
    [
        [],
        {"v": 2, "offers": []},
        {"v": 1},
        {"v": 1, "offers": {}},
        {"v": 1, "offers": [[OID, 7]]},
        {"v": 1, "offers": [_entry(oid=b"short")]},
        {"v": 1, "offers": [_entry(), _entry()]},  # an offer twice
        {"v": 1, "offers": [_entry(epoch=-1)]},
        {"v": 1, "offers": [_entry(epoch=2**64)]},
        {"v": 1, "offers": [_entry(epoch="7")]},
        {"v": 1, "offers": [_entry(ranked=[["p", [256]]])]},
        {"v": 1, "offers": [_entry(ranked=[["p", [-1]]])]},
        {"v": 1, "offers": [_entry(ranked=[["p", []]])]},
        {"v": 1, "offers": [_entry(ranked=[["p", [1, 2, 3]]])]},
        {"v": 1, "offers": [_entry(ranked=[["p", [1]], ["p", [2]]])]},
        {"v": 1, "offers": [_entry(ranked=[[b"p", [1]]])]},
        {"v": 1, "offers": [_entry(ranked=[["p", [True]]])]},
    ],
)
def test_anything_else_is_a_store_error(obj) -> None:
    with pytest.raises(StoreError, match="offer ranks"):
        Assignments.from_bytes(cbor2.dumps(obj))


@pytest.mark.parametrize("data", [b"", b"\xff\x00", _filled().to_bytes()[:-3], b"\x9f" * 64])
def test_damaged_bytes_are_a_store_error(data) -> None:
    with pytest.raises(StoreError, match="offer ranks"):
        Assignments.from_bytes(data)
