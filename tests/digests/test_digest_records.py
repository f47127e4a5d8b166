"""The WorkDigest and FeedbackDigest record types: fields, caps, slots, strict decoding."""

from __future__ import annotations

import dataclasses

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repp2p.errors import RecordError, RecordReason
from repp2p.net.topics import TOPICS, topic_accepts, topic_for
from repp2p.records import (
    DIGEST_MAX_LEAVES,
    DIGEST_MAX_PARTS,
    DIGEST_MAX_ROWS,
    DIGEST_TYPES,
    EMPTY_MERKLE_ROOT,
    FEED_TYPES,
    MAX_LIFETIME_S,
    FeedbackDigest,
    FeedbackRow,
    Outcome,
    WorkDigest,
    WorkRow,
    decode,
    encode,
    part_of,
    sign,
)
from repp2p.records.codec import DOMAIN
from repp2p.records.peerid import peer_id_to_bytes
from repp2p.store import SqliteRecordStore
from repp2p.testing import factories
from repp2p.testing.strategies import identities, records_of

ALICE = factories.identity("alice")
WORK, FEEDBACK = factories.sample_digests()
PEERS = sorted(factories.identity(f"peer-{i}").peer_id for i in range(DIGEST_MAX_ROWS + 1))


def _resign(type_tag: str, body: dict, key=ALICE) -> bytes:
    raw = cbor2.dumps(body, canonical=True)
    sig = key.signing_key.sign(DOMAIN + type_tag.encode() + b"\0" + raw).signature
    return cbor2.dumps(
        {"type": type_tag, "body": raw, "signer": key.public_key, "sig": sig}, canonical=True
    )


def _body(record) -> dict:
    return cbor2.loads(cbor2.loads(encode(record, ALICE))["body"])


@pytest.mark.parametrize("cls", [WorkDigest, FeedbackDigest, WorkRow, FeedbackRow])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_strategies_build_valid_values(cls, data):
    value = data.draw(records_of(cls))
    assert type(value) is cls


@pytest.mark.parametrize("cls", [WorkDigest, FeedbackDigest])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip(cls, data):
    record = data.draw(records_of(cls))
    key = data.draw(identities())
    signed = decode(encode(record, key))
    assert signed.record == record
    assert signed.record.slot() == record.epoch.to_bytes(8, "big") + record.part.to_bytes(2, "big")


def test_registry_topic_and_feed():
    assert {"WorkDigest", "FeedbackDigest"} == DIGEST_TYPES
    assert not DIGEST_TYPES & FEED_TYPES  # global, not per task: gossiped, not in the feed
    for t in DIGEST_TYPES:
        assert topic_for(t) == TOPICS["digests"] == "/repp2p/1/digests"
        assert topic_accepts(TOPICS["digests"], t)
        assert not topic_accepts(TOPICS["feedback"], t)
        assert MAX_LIFETIME_S[t] == 30 * 86_400
    assert not topic_accepts(TOPICS["digests"], "Feedback")


def test_part_of_is_deterministic_in_range_and_balanced():
    counts = [0] * 4
    for peer in PEERS:
        p = part_of(peer, 4)
        assert p == part_of(peer, 4)
        counts[p] += 1
    assert all(40 <= c <= 90 for c in counts), counts  # 257 peers into 4 parts
    assert {part_of(peer, 1) for peer in PEERS} == {0}
    for bad in (0, DIGEST_MAX_PARTS + 1, True, -1):
        with pytest.raises(ValueError):
            part_of(PEERS[0], bad)


def _work(rows, *, parts=1, part=0, root=b"\x01" * 32, **kw) -> WorkDigest:
    fields = dict(
        epoch=3,
        part=part,
        parts=parts,
        rows=tuple(rows),
        leaf_count=sum(r.claims for r in rows),
        merkle_root=root if rows else EMPTY_MERKLE_ROOT,
        seq=0,
        expires=factories.far_future(),
    )
    fields.update(kw)
    return WorkDigest(**fields)


def _row(peer, r=1, t=0, f=0) -> WorkRow:
    return WorkRow(client=peer, claims=r + t + f, receipts=r, timeouts=t, failures=f)


def _bad(build) -> None:
    with pytest.raises(RecordError) as info:
        build()
    assert info.value.reason is RecordReason.BAD_FIELD


def test_row_rules():
    _bad(lambda: WorkRow(client=PEERS[0], claims=2, receipts=1, timeouts=0, failures=0))
    _bad(lambda: WorkRow(client=PEERS[0], claims=0, receipts=0, timeouts=0, failures=0))
    _bad(lambda: WorkRow(client="not-a-peer", claims=1, receipts=1, timeouts=0, failures=0))
    big = DIGEST_MAX_LEAVES + 1
    _bad(lambda: WorkRow(client=PEERS[0], claims=big, receipts=big, timeouts=0, failures=0))
    _bad(
        lambda: FeedbackRow(node=PEERS[0], ok=0, wrong=0, timeout=0, bad_proof=0, latency_sum_ms=0)
    )
    _bad(
        lambda: FeedbackRow(
            node=PEERS[0], ok=2, wrong=0, timeout=0, bad_proof=0, latency_sum_ms=2 * 2**32
        )
    )
    FeedbackRow(node=PEERS[0], ok=2, wrong=0, timeout=0, bad_proof=0, latency_sum_ms=2 * 2**32 - 2)


def test_digest_rules():
    a, b = PEERS[0], PEERS[1]
    _work([_row(a), _row(b)])
    _bad(lambda: _work([_row(b), _row(a)]))  # unsorted
    _bad(lambda: _work([_row(a), _row(a)]))  # duplicate
    _bad(lambda: _work([_row(a)], leaf_count=2))  # rows and leaves disagree
    _bad(lambda: _work([], merkle_root=b"\x01" * 32))  # empty part, non-empty root
    _bad(lambda: _work([_row(a)], seq=1))  # digests are final: seq is 0
    _bad(lambda: _work([], parts=2, part=2))  # part outside the split
    _bad(lambda: _work([], parts=DIGEST_MAX_PARTS + 1, part=0))
    wrong_part = next(p for p in PEERS if part_of(p, 2) == 1)
    _bad(lambda: _work([_row(wrong_part)], parts=2, part=0))  # a row in another part
    _work([_row(wrong_part)], parts=2, part=1)
    _work([], parts=3, part=2)  # an empty part is a statement too


def test_invariants_hold_on_decode_too():
    good = _body(_work([_row(PEERS[0]), _row(PEERS[1])]))
    assert decode(_resign("WorkDigest", good)).record.leaf_count == 2
    first, second = good["rows"]
    swapped = dict(good, rows=list(reversed(good["rows"])))
    lying = dict(good, leaf_count=3)
    bad_sum = dict(good, rows=[[first[0], 5, *first[2:]], second])
    seq = dict(good, seq=1)
    for body in (swapped, lying, bad_sum, seq):
        with pytest.raises(RecordError) as info:
            decode(_resign("WorkDigest", body))
        assert info.value.reason is RecordReason.BAD_FIELD
    # a row longer than every field (offset and refused included) has an unknown field
    extra = dict(good, rows=[[*first, 1, 1, 1], second])
    with pytest.raises(RecordError) as info:
        decode(_resign("WorkDigest", extra))
    assert info.value.reason is RecordReason.UNKNOWN_FIELD
    short = dict(good, rows=[first[:4], second])
    with pytest.raises(RecordError) as info:
        decode(_resign("WorkDigest", short))
    assert info.value.reason is RecordReason.MISSING_FIELD


def test_the_largest_part_fits_its_cap_and_one_more_row_does_not():
    # Every count as wide as CBOR makes it (5-byte integers, 9-byte latency sums) and every
    # optional field spelled out: an upper bound on any valid part, since a valid one cannot
    # have them all that large.
    rows = [
        [peer_id_to_bytes(p), 2**24, 2**24, 2**24, 2**24, 15, 2**24]
        for p in PEERS[:DIGEST_MAX_ROWS]
    ]
    body = dict(_body(WORK), rows=rows, leaf_count=2**24, expires=2**64 - 1, epoch=2**64 - 1)
    body["span"] = 16
    size = len(_resign("WorkDigest", body))
    assert size <= WorkDigest.MAX_SIZE, size
    assert size < 18 * 1024, size  # docs/records.md: at most about 17.5 KiB
    frows = [
        [peer_id_to_bytes(p), 2**24, 2**24, 2**24, 2**24, 2**64 - 1, 15]
        for p in PEERS[:DIGEST_MAX_ROWS]
    ]
    fbody = dict(_body(FEEDBACK), rows=frows, leaf_count=2**24, expires=2**64 - 1, span=16)
    size = len(_resign("FeedbackDigest", fbody))
    assert size <= FeedbackDigest.MAX_SIZE, size
    assert size < 19 * 1024, size  # docs/records.md: at most about 18.5 KiB
    # A valid part with the most rows encodes; one row more is refused.
    full = _work([_row(p) for p in PEERS[:DIGEST_MAX_ROWS]])
    assert decode(encode(full, ALICE)).record == full
    _bad(lambda: _work([_row(p) for p in PEERS]))


def test_two_digests_for_one_slot_are_an_equivocation_in_the_store():
    store = SqliteRecordStore(":memory:")
    first = sign(WORK, ALICE)
    other = sign(dataclasses.replace(WORK, merkle_root=factories.digest("other-root")), ALICE)
    next_epoch = sign(dataclasses.replace(WORK, epoch=8), ALICE)
    assert store.put(first, now=factories.NOW) is Outcome.NEW
    assert store.put(first, now=factories.NOW) is Outcome.DUPLICATE
    assert store.put(other, now=factories.NOW) is Outcome.EQUIVOCATION
    assert store.put(next_epoch, now=factories.NOW) is Outcome.NEW
    (pair,) = store.equivocations()
    assert {pair[0].record_id, pair[1].record_id} == {first.record_id, other.record_id}
    # Both peers keep the same current digest whatever order they saw them in.
    (current,) = store.query(type="WorkDigest", epoch=7)
    assert current.record_id == min(first.record_id, other.record_id)
    # Another signer's digest of the same epoch and part is another slot.
    assert store.put(sign(WORK, factories.identity("bob")), now=factories.NOW) is Outcome.NEW
