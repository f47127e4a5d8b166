"""Replacement rules (repp2p.records.replacement): a ``wrong`` Feedback is final in its
slot, and the current record depends only on the set of records seen, never their order."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repp2p.records import Feedback, Heartbeat, Outcome, compare, is_final, sign, winner
from repp2p.reputation.evidence import _current
from repp2p.store import SqliteRecordStore
from repp2p.testing import factories

CLIENT = factories.identity("replacement-client")
NODE = factories.identity("replacement-node")
NOW = 1_700_000_000
TASK = factories.digest("replacement-task")


def fb(outcome: str, seq: int, *, rating: int = 0, task: bytes = TASK):
    return sign(
        Feedback(
            task_id=task,
            node=NODE.peer_id,
            outcome=outcome,
            latency_ms=10,
            rating=rating,
            seq=seq,
            expires=NOW + 600,
        ),
        CLIENT,
    )


def hb(seq: int, load: int = 0):
    return sign(Heartbeat(epoch=1, load=load, tasks_done=0, seq=seq, expires=NOW + 600), CLIENT)


def _apply(current, incoming):
    """What a store holds current after ``incoming`` (the store's use of compare/winner)."""
    outcome = compare(current, incoming)
    if outcome in (Outcome.NEW, Outcome.REPLACED):
        return incoming
    if outcome is Outcome.EQUIVOCATION and winner(current, incoming) is incoming:
        return incoming
    return current


def test_only_a_wrong_feedback_is_final():
    assert is_final(fb("wrong", 1).record)
    for outcome in ("ok", "timeout", "bad_proof"):
        assert not is_final(fb(outcome, 1).record)
    assert not is_final(hb(1).record)


def test_an_ok_resigned_at_a_higher_seq_does_not_replace_a_wrong():
    wrong, ok = fb("wrong", 1), fb("ok", 2, rating=90)
    assert compare(wrong, ok) is Outcome.STALE
    assert compare(ok, wrong) is Outcome.REPLACED  # whatever its seq
    assert winner(wrong, ok) is wrong and winner(ok, wrong) is wrong
    # any other verdict, at any later seq
    for outcome in ("ok", "timeout", "bad_proof"):
        assert compare(wrong, fb(outcome, 2**64 - 1)) is Outcome.STALE


def test_a_wrong_after_an_ok_replaces_it_whatever_its_seq():
    for ok_seq, wrong_seq in ((1, 2), (5, 2)):
        ok, wrong = fb("ok", ok_seq, rating=90), fb("wrong", wrong_seq)
        assert compare(ok, wrong) is Outcome.REPLACED
        assert compare(wrong, ok) is Outcome.STALE


def test_two_wrongs_follow_the_ordinary_rules():
    old, new = fb("wrong", 1), fb("wrong", 2, rating=5)
    assert compare(old, new) is Outcome.REPLACED
    assert compare(new, old) is Outcome.STALE
    assert winner(old, new) is new is winner(new, old)
    twin = fb("wrong", 1, rating=7)
    assert compare(old, twin) is Outcome.EQUIVOCATION
    smaller = min((old, twin), key=lambda s: s.record_id)
    assert winner(old, twin) is smaller is winner(twin, old)


def test_a_same_seq_ok_and_wrong_equivocate_and_the_wrong_stays_current():
    wrong = fb("wrong", 3)
    # an ok of the smaller record ID: the old tie-break would have kept it
    ok = next(o for r in range(101) if (o := fb("ok", 3, rating=r)).record_id < wrong.record_id)
    assert compare(ok, wrong) is Outcome.EQUIVOCATION
    assert compare(wrong, ok) is Outcome.EQUIVOCATION
    # not the smaller record ID: the final one, in both orders
    assert winner(ok, wrong) is wrong is winner(wrong, ok)


def test_other_types_keep_the_seq_rules():
    a, b = hb(1), hb(2)
    assert compare(a, b) is Outcome.REPLACED and compare(b, a) is Outcome.STALE
    assert compare(a, a) is Outcome.DUPLICATE
    with pytest.raises(ValueError):
        compare(a, fb("ok", 1))


_versions = st.lists(
    st.tuples(st.sampled_from(["ok", "wrong", "timeout"]), st.integers(1, 3), st.integers(0, 2)),
    min_size=3,
    max_size=4,
    unique=True,
)


@settings(max_examples=150, deadline=None)
@given(_versions)
def test_the_current_record_is_the_same_in_every_arrival_order(versions):
    """Over every permutation of 3-4 versions of one slot (random outcomes, seqs, ties):
    one current record, the one the evidence builder picks, and winner/compare agree."""
    records = [fb(o, seq, rating=r) for o, seq, r in versions]
    for a, b in itertools.permutations(records, 2):
        assert winner(a, b) is winner(b, a)
        took = _apply(a, b) is b
        assert took == (winner(a, b) is b)
    finals = set()
    for order in itertools.permutations(records):
        current = None
        for r in order:
            current = _apply(current, r)
        finals.add(current.record_id)
    assert len(finals) == 1
    (held,) = _current(records, NOW)[0].values()
    assert {held.record_id} == finals
    # a wrong among them is current: the verdict cannot be taken back
    if any(o == "wrong" for o, _s, _r in versions):
        assert held.record.outcome == "wrong"


@settings(max_examples=25, deadline=None)
@given(_versions)
def test_stores_converge_on_the_current_record_and_evidence(versions):
    """Real stores, every arrival order: the same current record and, where the slot's
    versions form one same-seq group, the same evidence pair."""
    records = [fb(o, seq, rating=r) for o, seq, r in versions]
    held, evidence = set(), set()
    with tempfile.TemporaryDirectory() as tmp:
        for i, order in enumerate(itertools.permutations(records)):
            with SqliteRecordStore(Path(tmp) / f"{i}.db", synchronous="NORMAL") as store:
                store.put_many(order, now=NOW)
                (current,) = store.query(type="Feedback")
                held.add(current.record_id)
                evidence.add(tuple(tuple(r.record_id for r in p) for p in store.equivocations()))
    assert held == {_best(records).record_id}
    if len({r.record.seq for r in records}) == 1:
        (pairs,) = evidence
        smallest = tuple(sorted(r.record_id for r in records)[:2])
        assert pairs == (smallest,)


def _best(records):
    best = records[0]
    for r in records[1:]:
        best = winner(best, r)
    return best
