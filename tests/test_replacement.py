"""Replacement rules (repp2p.records.replacement): a ``wrong`` Feedback is final in its
slot, and the current record depends only on the set of records seen, never their order."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repp2p.records import (
    Feedback,
    Heartbeat,
    Outcome,
    compare,
    evidence_group,
    is_final,
    sign,
    winner,
)
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


@settings(max_examples=40, deadline=None)
@given(_versions)
def test_stores_converge_on_the_current_record_and_evidence(versions):
    """Real stores, every arrival order: the same current record and the same evidence,
    which is the pair of the two smallest record IDs among the versions of the current
    record's group (its seq and finality) when it has two, and what ``collect`` finds."""
    records = [fb(o, seq, rating=r) for o, seq, r in versions]
    held, evidence = set(), set()
    with tempfile.TemporaryDirectory() as tmp:
        for i, order in enumerate(itertools.permutations(records)):
            with SqliteRecordStore(Path(tmp) / f"{i}.db", synchronous="NORMAL") as store:
                store.put_many(order, now=NOW)
                (current,) = store.query(type="Feedback")
                held.add(current.record_id)
                evidence.add(tuple(tuple(r.record_id for r in p) for p in store.equivocations()))
    best = _best(records)
    assert held == {best.record_id}
    (pairs,) = evidence  # whatever the order
    group = sorted(
        r.record_id for r in records if evidence_group(r.record) == evidence_group(best.record)
    )
    assert pairs == ((tuple(group[:2]),) if len(group) > 1 else ())
    offences = _current(records, NOW)[1]
    assert [o.record_ids for o in offences] == ([tuple(group)] if len(group) > 1 else [])


def test_versions_a_higher_seq_overtook_are_no_evidence_in_any_order(tmp_path):
    """Two heartbeats of seq 5 and one of seq 6: a peer that saw the pair before the seq 6
    one compared them, a peer that saw seq 6 first never did (they are stale). Neither
    keeps evidence, so their views agree (the pair went when seq 6 replaced it)."""
    a, b, newer = hb(5, load=1), hb(5, load=2), hb(6)
    held = []
    for i, order in enumerate(itertools.permutations((a, b, newer))):
        with SqliteRecordStore(tmp_path / f"{i}.db", synchronous="NORMAL") as store:
            outcomes = store.put_many(order, now=NOW)
            if order[2] is newer:  # the pair was compared, then overtaken
                assert outcomes[1] is Outcome.EQUIVOCATION
                assert outcomes[2] is Outcome.REPLACED
            held.append((store.equivocations(), [r.record_id for r in store.query()]))
    assert held == [([], [newer.record_id])] * 6
    assert _current([a, b, newer], NOW)[1] == []
    # at the current seq, the pair is evidence in every order
    twin = hb(6, load=9)
    pairs = set()
    for i, order in enumerate(itertools.permutations((a, b, newer, twin))):
        with SqliteRecordStore(tmp_path / f"t{i}.db", synchronous="NORMAL") as store:
            store.put_many(order, now=NOW)
            pairs.add(tuple((x.record_id, y.record_id) for x, y in store.equivocations()))
    assert pairs == {(tuple(sorted((newer.record_id, twin.record_id))),)}


def _best(records):
    best = records[0]
    for r in records[1:]:
        best = winner(best, r)
    return best
