"""Task frames are scanned before they are decoded (repp2p.net.task.decode_frame): a frame
the task protocol never sends (millions of tiny items, deep nesting, tags, indefinite
lengths) is a ProtocolError that costs at most MAX_*_ITEMS steps, and cbor2 never sees it.
Pure functions; the node and client paths on real hosts are tests/net/test_hostile_tasks.py.
"""

from __future__ import annotations

import time

import cbor2
import pytest

from repp2p.errors import ProtocolError
from repp2p.net import task
from repp2p.net.task import (
    MAX_REQUEST,
    MAX_REQUEST_ITEMS,
    MAX_RESPONSE_ITEMS,
    decode_frame,
    parse_response,
)


def _list_of(item: bytes, n: int) -> bytes:
    """A CBOR list of ``n`` copies of the one-byte item ``item`` (n < 2**32)."""
    return b"\x9a" + n.to_bytes(4, "big") + item * n


#: 2 MiB of one-byte items: what MAX_REQUEST lets a peer send in one frame. cbor2 turned
#: the empty maps into ~150 MB of dicts (0.1-0.4 s of the event loop).
BOMBS = {
    "empty maps": _list_of(b"\xa0", MAX_REQUEST - 5),
    "empty lists": _list_of(b"\x80", MAX_REQUEST - 5),
    "zeros": _list_of(b"\x00", MAX_REQUEST - 5),
    "map of many keys": b"\xba" + (300).to_bytes(4, "big") + b"\x00\x00" * 300,
    "nested lists": b"\x81" * 5000 + b"\x00",
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_a_frame_of_many_items_is_refused_without_decoding_it(name, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("cbor2 decoded a frame the scan should have refused")

    monkeypatch.setattr(task.cbor2, "loads", no_decoding)
    started = time.perf_counter()
    with pytest.raises(ProtocolError, match=r"CBOR items|nested deeper"):
        decode_frame(BOMBS[name], max_items=MAX_REQUEST_ITEMS)
    assert time.perf_counter() - started < 0.05  # a few hundred steps, not 2 MiB


@pytest.mark.parametrize(
    "payload, why",
    [
        (b"\xc1\x1a\x00\x00\x00\x00", "tags"),  # tag 1 (a date)
        (b"\xc2\x5a\x00\x10\x00\x00" + b"\xff" * 0x100000, "tags"),  # a 1 MiB bignum
        (b"\xd8\x1c\x81\xd8\x1d\x00", "tags"),  # a shared reference to itself
        (b"\x9f\x00\xff", "indefinite"),
        (b"\x5f\x41a\xff", "indefinite"),
        (b"\xa0\xa0", "trailing"),
        (b"\x5a\x00\x20\x00\x00ab", "longer than its frame"),
        (b"\x82\x00", "ends inside"),
        (b"\x1b\x00\x00", "ends inside"),
        (b"", "ends inside"),
        (b"\xa1\x41a\x81\x81\x40", "nested deeper"),
    ],
)
def test_what_the_task_protocol_never_sends_is_refused(payload, why):
    with pytest.raises(ProtocolError, match=why):
        decode_frame(payload, max_items=MAX_REQUEST_ITEMS)


def test_the_largest_honest_request_and_response_decode():
    request = {
        "offer": b"o" * 4096,
        "sealed": b"s" * (1 << 20),
        "input_sig": b"i" * 64,
        "releases": [b"f" * 250] * 16,
        "dispute": [b"r" * 700] * 80,
        "claims": [b"c" * 250] * 80,
        "verdict": b"v" * 250,
    }
    payload = cbor2.dumps(request, canonical=True)
    assert len(payload) <= MAX_REQUEST
    assert decode_frame(payload, max_items=MAX_REQUEST_ITEMS) == request
    handover = {"records": [b"f" * 250] * 16}
    assert decode_frame(cbor2.dumps(handover), max_items=MAX_REQUEST_ITEMS) == handover
    for response in (
        {"ok": True, "claim": b"c", "receipt": b"r", "output": b"o" * (1 << 20)},
        {"ok": False, "error": "input_refused", "detail": "bad_seal", "refusal": b"x"},
        {"ok": True, "stored": 2**64 - 1},
    ):
        payload = cbor2.dumps(response, canonical=True)
        assert decode_frame(payload, max_items=MAX_RESPONSE_ITEMS) == response


@pytest.mark.parametrize("code", [[1], {"a": 1}, 7, None, b"no_capacity"])
def test_an_error_code_that_is_no_string_is_a_protocol_error(code):
    """A list or map as the code made ``code in ERRORS`` raise TypeError (unhashable):
    not the typed error the client handles."""
    with pytest.raises(ProtocolError, match="bad task error response"):
        parse_response({"ok": False, "error": code, "detail": ""})
