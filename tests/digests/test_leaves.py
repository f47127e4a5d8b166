"""Leaf encodings and the block layout that pins every leaf to its row."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repp2p.digests.leaves import FeedbackLeaf, Layout, WorkLeaf, decode_leaf, leaf_key, misplaced
from repp2p.errors import ProofError, ProofReason
from repp2p.records import OUTCOMES, WORK_OUTCOMES, WorkDigest
from repp2p.testing import factories
from repp2p.testing.strategies import identities

from .helpers import forge

ids = st.binary(min_size=32, max_size=32)
peers = identities().map(lambda i: i.peer_id)


@st.composite
def work_leaves(draw):
    outcome = draw(st.sampled_from(WORK_OUTCOMES))
    return WorkLeaf(
        task_id=draw(ids),
        client=draw(peers),
        outcome=outcome,
        offer_id=draw(ids),
        claim_id=draw(ids),
        receipt_id=draw(ids) if outcome == "done" else b"",
        refusal_id=draw(ids) if outcome == "refused" else b"",
    )


feedback_leaves = st.builds(
    FeedbackLeaf,
    task_id=ids,
    node=peers,
    outcome=st.sampled_from(sorted(OUTCOMES)),
    latency_ms=st.integers(0, 2**32 - 1),
    feedback_id=ids,
    offer_id=ids,
)


@settings(max_examples=80, deadline=None)
@given(st.one_of(work_leaves(), feedback_leaves))
def test_round_trip_and_key(leaf):
    digest_type = "WorkDigest" if isinstance(leaf, WorkLeaf) else "FeedbackDigest"
    data = leaf.encode()
    assert decode_leaf(digest_type, data) == leaf
    assert len(data) < 300
    key = leaf.key()
    assert key == leaf_key(leaf.peer, leaf.OUTCOMES.index(leaf.outcome), leaf.task_id)
    assert len(key) == 52 + 1 + 32


def _reason(digest_type, data) -> ProofReason:
    with pytest.raises(ProofError) as info:
        decode_leaf(digest_type, data)
    return info.value.reason


def test_strict_decoding():
    leaf = WorkLeaf(
        task_id=b"\x01" * 32,
        client=factories.identity("c").peer_id,
        outcome="done",
        offer_id=b"\x02" * 32,
        claim_id=b"\x03" * 32,
        receipt_id=b"\x04" * 32,
    )
    body = cbor2.loads(leaf.encode())
    assert _reason("FeedbackDigest", leaf.encode()) is ProofReason.BAD_LEAF
    assert _reason("Heartbeat", leaf.encode()) is ProofReason.WRONG_TYPE
    assert _reason("WorkDigest", b"\xff") is ProofReason.MALFORMED
    assert _reason("WorkDigest", b"x" * 600) is ProofReason.OVERSIZE
    assert _reason("WorkDigest", "text") is ProofReason.MALFORMED
    timeout_with_receipt = cbor2.dumps(dict(body, outcome="timeout"), canonical=True)
    assert _reason("WorkDigest", timeout_with_receipt) is ProofReason.BAD_LEAF
    done_without = cbor2.dumps(dict(body, receipt_id=b""), canonical=True)
    assert _reason("WorkDigest", done_without) is ProofReason.BAD_LEAF
    short = cbor2.dumps(dict(body, receipt_id=b"\x04" * 31), canonical=True)
    assert _reason("WorkDigest", short) is ProofReason.BAD_LEAF
    unsorted = b"\xa6" + b"".join(
        cbor2.dumps(k) + cbor2.dumps(body[k]) for k in reversed(sorted(body))
    )
    assert _reason("WorkDigest", unsorted) is ProofReason.NON_CANONICAL
    with pytest.raises(ValueError):
        WorkLeaf(**dict(body, outcome="nope"))


def test_layout_pins_each_leaf_to_its_block():
    clients = sorted(factories.identity(f"c{i}").peer_id for i in range(3))
    leaves = []
    counts = [(2, 1, 0, 0), (0, 0, 1, 1), (1, 0, 2, 0)]
    for c, row in zip(clients, counts, strict=True):
        for outcome, count in zip(WORK_OUTCOMES, row, strict=True):
            for i in range(count):
                leaves.append(
                    WorkLeaf(
                        task_id=bytes([i]) * 32,
                        client=c,
                        outcome=outcome,
                        offer_id=b"\x00" * 32,
                        claim_id=b"\x00" * 32,
                        receipt_id=b"\x09" * 32 if outcome == "done" else b"",
                        refusal_id=b"\x0a" * 32 if outcome == "refused" else b"",
                    )
                )
    leaves.sort(key=lambda leaf: leaf.key())
    part = forge(WorkDigest, leaves, [()] * 8)
    layout = Layout(part.digest)
    assert layout.size == len(leaves) == 8
    assert [(b.peer, b.outcome, b.lo, b.hi) for b in layout.blocks] == [
        (clients[0], "done", 0, 2),
        (clients[0], "timeout", 2, 3),
        (clients[0], "failed", 3, 3),
        (clients[0], "refused", 3, 3),
        (clients[1], "done", 3, 3),
        (clients[1], "timeout", 3, 3),
        (clients[1], "failed", 3, 4),
        (clients[1], "refused", 4, 5),
        (clients[2], "done", 5, 6),
        (clients[2], "timeout", 6, 6),
        (clients[2], "failed", 6, 8),
        (clients[2], "refused", 8, 8),
    ]
    for i, leaf in enumerate(leaves):
        assert misplaced(layout, i, leaf) is None
        assert layout.at(i).peer == leaf.client
    assert misplaced(layout, 0, leaves[2]) is not None  # a timeout where a done must be
    assert misplaced(layout, 3, leaves[0]) is not None  # another client's place
    assert layout.of_peer("nobody") == ()
    with pytest.raises(IndexError):
        layout.at(8)
