"""PenaltyBook.to_bytes / from_bytes: what a node keeps across restarts, read back safely."""

from __future__ import annotations

import cbor2
import pytest

from repp2p.errors import StoreError
from repp2p.reputation import PenaltyBook
from repp2p.reputation.evidence import Offence
from repp2p.reputation.penalties import PenaltyEntry


def _book() -> PenaltyBook:
    return PenaltyBook(
        12,
        {
            "12D3KooWa": PenaltyEntry(below_epochs=2),
            "12D3KooWb": PenaltyEntry(strikes=3, until_epoch=40),
            "12D3KooWc": PenaltyEntry(
                until_epoch=2**40,
                hard=True,
                evidence=(
                    Offence("wrong_result", "12D3KooWc", (b"\x01" * 32, b"\x02" * 32), 9),
                    Offence("equivocation", "12D3KooWc", (b"\x03" * 32,), None),
                ),
            ),
        },
    )


def test_round_trip_keeps_every_field_and_the_digest():
    book = _book()
    again = PenaltyBook.from_bytes(book.to_bytes())
    assert dict(again.entries) == dict(book.entries)
    assert again.epoch == book.epoch and again.digest == book.digest
    assert again.to_bytes() == book.to_bytes()  # canonical
    assert PenaltyBook.from_bytes(PenaltyBook().to_bytes()).epoch == -1


def _mutated(change) -> bytes:
    obj = cbor2.loads(_book().to_bytes())
    change(obj)
    return cbor2.dumps(obj)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xff",
        cbor2.dumps([1, 2, 3]),
        _mutated(lambda o: o.update(v=2)),
        _mutated(lambda o: o.update(epoch="12")),
        _mutated(lambda o: o.update(epoch=-5)),
        _mutated(lambda o: o.update(epoch=2**64)),
        _mutated(lambda o: o.update(extra=1)),
        _mutated(lambda o: o.update(entries=[])),
        _mutated(lambda o: o["entries"].update({"12D3KooWa": [0, 0, 0, False]})),
        _mutated(lambda o: o["entries"].update({"12D3KooWa": [0, 0, -1, False, []]})),
        _mutated(lambda o: o["entries"].update({"12D3KooWa": [0, 0, 0, 1, []]})),
        _mutated(lambda o: o["entries"]["12D3KooWc"][4][0].__setitem__(2, [b"short"])),
        _mutated(lambda o: o["entries"]["12D3KooWc"][4].append("not an offence")),
        _mutated(lambda o: o["entries"].update({7: [0, 0, 0, False, []]})),
        b"\x81" * 10_000 + b"\x00",  # deeply nested
    ],
)
def test_damaged_or_foreign_bytes_are_a_store_error(data):
    with pytest.raises(StoreError, match="penalty book unreadable"):
        PenaltyBook.from_bytes(data)
