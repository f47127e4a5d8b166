"""Matching on views built from signed records: determinism, eligibility, penalties,
exploration, claims and the failover schedule."""

from __future__ import annotations

import dataclasses
import hashlib
import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import repp2p.matching as matching
import repp2p.reputation as reputation
from repp2p.errors import ConfigError
from repp2p.matching import (
    ClaimError,
    ClaimReason,
    MatchingParams,
    View,
    accepted_claims,
    claim_opens_at_ms,
    rank,
    should_claim,
    verify_claim,
)
from repp2p.network_params import NetworkParams
from repp2p.records import EngineOffer
from repp2p.reputation import PenaltyBook, PenaltyEntry
from tests.core import factories as f
from tests.core.conftest import EPOCHS, NODES

BEACON = hashlib.sha256(b"beacon").digest()
NAMES = {f.peer(n): n for n in NODES}
PARAMS = NetworkParams("test", epoch_s=f.EPOCH_S)


def view_of(s, epoch=EPOCHS, params=PARAMS, **kw) -> View:
    return View.build(s.records, s.attested, epoch=epoch, params=params, **kw)


def tasks(n, epoch=EPOCHS, **kw):
    return [f.offer("client-x", f"t{i}", epoch, **kw).record for i in range(n)]


@pytest.fixture(scope="module")
def view(base) -> View:
    return view_of(base)


def test_public_api_is_exported():
    for mod in (matching, reputation):
        assert isinstance(mod, types.ModuleType)
        for name in mod.__all__:
            assert hasattr(mod, name), name


@settings(max_examples=8, deadline=None)
@given(st.randoms(use_true_random=False))
def test_same_records_any_order_same_view_and_ranking(base, view, rnd):
    records = [*base.records, base.records[3], f.heartbeat("n2", 5, seq=0)]
    rnd.shuffle(records)
    other = View.build(records, dict(base.attested), epoch=EPOCHS, params=PARAMS)
    assert other.digest == view.digest and len(view.digest) == 32
    assert other.weight.tobytes() == view.weight.tobytes()
    for t in tasks(10, k=3):
        assert rank(t, other, BEACON) == rank(t, view, BEACON)


def test_digest_changes_with_records_verdicts_and_epoch(base, view):
    assert view_of(base, epoch=EPOCHS + 1).digest != view.digest
    more = dataclasses.replace(base, records=[*base.records, f.heartbeat("n0", 40)])
    assert view_of(more).digest != view.digest
    verdicts = dict(base.verdicts)
    verdicts[f.peer("n0")] = dataclasses.replace(verdicts[f.peer("n0")], tcb_degraded=True)
    assert View.build(base.records, verdicts, epoch=EPOCHS, params=PARAMS).digest != view.digest


def test_digest_covers_every_network_parameter(base, view):
    # An equal params object (built again, floats written as ints) gives the same digest...
    again = NetworkParams(
        "test",
        epoch_s=f.EPOCH_S,
        reputation=reputation.ReputationParams(w_success=12, half_life_epochs=48),
    )
    assert again == PARAMS and view_of(base, params=again).digest == view.digest
    # ...and any parameter peers must share, even one matching does not read, changes it.
    changed = [
        PARAMS.replace(name="other"),
        PARAMS.replace(task_record_lag=3),
        PARAMS.replace(ledger=dataclasses.replace(PARAMS.ledger, grace_epochs=5)),
        PARAMS.replace(matching=MatchingParams(claim_timeout_ms=2001)),
        PARAMS.replace(reputation=reputation.ReputationParams(prior_latency=0.71)),
    ]
    digests = {view_of(base, params=p).digest for p in changed}
    assert len(digests) == len(changed) and view.digest not in digests
    assert view.params is PARAMS and view.epoch_s == f.EPOCH_S
    assert view.matching_params is PARAMS.matching


def test_reference_and_fast_rank_agree_on_a_view(view):
    for t in tasks(30, k=2):
        assert view.rank_indices(t, BEACON) == view.rank_indices(t, BEACON, reference=True)


def test_ranking_is_complete_and_top_k_take_it(view):
    t = tasks(1, k=3)[0]
    ranked = rank(t, view, BEACON)
    assert len(ranked) == len(NODES)  # 8 nodes < k + failover_depth = 11
    assert len(set(ranked)) == len(ranked)
    assert rank(t, view, BEACON, limit=3) == ranked[:3]


def _fresh_network(n=12, epoch=EPOCHS):
    s = f.Scenario()
    for i in range(n):
        s.add_node(f"fresh-{i}")
        s.heartbeats(f"fresh-{i}", range(epoch - 3, epoch))
    return s


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 11))
def test_view_removing_one_node_moves_only_its_tasks(gone):
    s = _fresh_network()
    full = view_of(s)
    name = f"fresh-{gone}"
    without = dataclasses.replace(
        s, records=[r for r in s.records if r.signer != f.peer(name)], verdicts=dict(s.verdicts)
    )
    del without.verdicts[f.peer(name)]
    smaller = view_of(without)
    for t in tasks(40, k=2):
        before, after = rank(t, full, BEACON, limit=12), rank(t, smaller, BEACON, limit=12)
        assert after == [p for p in before if p != f.peer(name)]


def test_eligibility_filters():
    s = f.Scenario()
    s.add_node("cheap")
    s.add_node("pricey", price=10**6)
    s.add_node("sev", tee="sev-snp")
    s.add_node("busy", capacity=2)
    s.add_node("offline")
    s.add_node("unattested", attested=False)
    s.add_node("other-engine", engines=(EngineOffer("other", f.MEASUREMENT),))
    s.add_node("unmeasured")
    s.verdicts[f.peer("unmeasured")] = dataclasses.replace(
        f.verdict("unmeasured"), measurements=frozenset()
    )
    for name in ("cheap", "pricey", "sev", "busy", "unattested", "other-engine", "unmeasured"):
        s.heartbeats(name, range(EPOCHS - 3, EPOCHS), load=2 if name == "busy" else 0)
    s.heartbeats("offline", range(EPOCHS - 10, EPOCHS - 5))
    v = view_of(s)
    got = {f.peer(n): n for n in ("cheap", "pricey", "sev")}

    def names(task):
        return {got.get(p, p) for p in rank(task, v, BEACON)}

    assert names(tasks(1)[0]) == {"cheap", "pricey", "sev"}
    assert names(tasks(1, max_price=5000)[0]) == {"cheap", "sev"}
    assert names(tasks(1, tee_kinds=("sev-snp",))[0]) == {"sev"}
    assert names(tasks(1, min_rep=1000)[0]) == set()
    pinned = view_of(s, engine_pins={"echo": frozenset({f.digest("other")})})
    assert rank(tasks(1)[0], pinned, BEACON) == []


def test_penalised_node_gets_nothing_until_the_penalty_ends(base):
    target = f.peer("n4")
    book = PenaltyBook(
        epoch=EPOCHS - 1,
        entries={target: PenaltyEntry(strikes=1, until_epoch=EPOCHS + 2)},
    )
    for epoch in range(EPOCHS, EPOCHS + 4):
        v = view_of(base, epoch=epoch, penalties=book)
        book = v.penalties
        wins = [rank(t, v, BEACON, limit=2) for t in tasks(300, epoch=epoch, k=2)]
        held = sum(target in w for w in wins)
        if epoch < EPOCHS + 2:
            assert held == 0
        else:
            assert held > 0


def test_phase_out_grows_on_repeat():
    p = reputation.ReputationParams(phase_out_epochs=3, phase_out_penalty_epochs=5)
    peers = ("a", "b")

    def table(epoch, a_permille):
        permille = np.array([a_permille, 900])
        return reputation.ReputationTable(
            peers=peers,
            epoch=epoch,
            is_node=np.ones(2, bool),
            score=permille / 1000,
            permille=permille,
            components=np.zeros((5, 2)),
            feedback_mass=np.zeros(2),
            client_trust=np.zeros(2),
            is_newcomer=np.zeros(2, bool),
            is_offender=np.zeros(2, bool),
            offences=(),
        )

    book, penalised = PenaltyBook(), []
    for e in range(40):
        book = book.step(table(e, 100), p)
        penalised.append(book.is_penalised("a", e))
        assert not book.is_penalised("b", e)
    # below for 3 steps -> out for 5; 3 more -> out for 10; 3 more -> out for 20
    first = penalised.index(True)
    assert first == 2
    runs = "".join("x" if x else "." for x in penalised)
    assert runs == "..xxxxx..xxxxxxxxxx..xxxxxxxxxxxxxxxxxxxx"[:40]
    assert book.entry("a").strikes == 3
    with pytest.raises(ValueError):
        book.step(table(5, 100), p)


def test_exploration_share_is_bounded_whatever_the_number_of_newcomers(base):
    def newcomer_share(n_new):
        s = dataclasses.replace(base, records=list(base.records), verdicts=dict(base.verdicts))
        for i in range(n_new):
            s.add_node(f"new-{i}")
            s.heartbeats(f"new-{i}", range(EPOCHS - 2, EPOCHS))
        v = view_of(s)
        new = {f.peer(f"new-{i}") for i in range(n_new)}
        firsts = [rank(t, v, BEACON, limit=1)[0] for t in tasks(2000)]
        return sum(p in new for p in firsts) / len(firsts)

    one, many = newcomer_share(1), newcomer_share(40)
    expected = MatchingParams().exploration_permille / 1000
    assert 0.5 * expected < one < 1.5 * expected
    assert 0.5 * expected < many < 1.5 * expected


def test_verify_claim(base, view):
    off = f.offer("client-x", "claimed", EPOCHS, k=2)
    ranked = rank(off.record, view, BEACON)
    for r in (0, 1, 2):
        c = f.claim(NAMES[ranked[r]], off, rank=r, view_digest=view.digest)
        assert verify_claim(c, off, view, BEACON) == r
        # the caller's own ranking of the offer (a client's): the same verdict
        assert verify_claim(c, off, view, BEACON, ranking=ranked) == r

    def reason(c, o=off, **kw):
        with pytest.raises(ClaimError) as info:
            verify_claim(c, o, view, BEACON, **kw)
        return info.value.reason

    lying = f.claim(NAMES[ranked[3]], off, rank=0, view_digest=view.digest)
    assert reason(lying) is ClaimReason.WRONG_RANK
    assert reason(lying, ranking=ranked) is ClaimReason.WRONG_RANK
    assert reason(f.claim(NAMES[ranked[0]], off, rank=0)) is ClaimReason.VIEW_MISMATCH
    assert (
        verify_claim(f.claim(NAMES[ranked[0]], off, rank=0), off, view, BEACON, check_digest=False)
        == 0
    )
    outsider = f.claim("not-a-node", off, rank=0, view_digest=view.digest)
    assert reason(outsider) is ClaimReason.NOT_ELIGIBLE
    deep = f.claim(NAMES[ranked[0]], off, rank=200, view_digest=view.digest)
    assert reason(deep) is ClaimReason.RANK_TOO_DEEP
    other = f.offer("client-x", "other", EPOCHS)
    assert reason(f.claim(NAMES[ranked[0]], other, view_digest=view.digest)) is (
        ClaimReason.WRONG_OFFER
    )
    late = f.offer("client-x", "late", EPOCHS + 1)
    c = f.claim(NAMES[ranked[0]], late, view_digest=view.digest)
    assert reason(c, late) is ClaimReason.WRONG_EPOCH
    assert reason(off, off) is ClaimReason.NOT_A_CLAIM


def test_failover_schedule():
    p = MatchingParams(claim_timeout_ms=1000, failover_depth=4)
    # k = 1: rank r opens at r x timeout
    assert [claim_opens_at_ms(r, 1, p) for r in range(4)] == [0, 1000, 2000, 3000]
    # k = 2: the first two claim at once, then one timeout per extra rank
    assert [claim_opens_at_ms(r, 2, p) for r in range(4)] == [0, 0, 1000, 2000]
    assert should_claim(0, 1, [], p)
    assert not should_claim(1, 1, [400], p)  # rank 0 claimed within 1 x timeout
    assert should_claim(1, 1, [1500], p)  # rank 0 was late
    assert should_claim(2, 2, [100], p)  # only one of k=2 better claims appeared
    assert not should_claim(2, 2, [100, 900], p)
    assert not should_claim(5, 1, [], p)  # beyond k + failover_depth
    # the client replays the schedule: rank 0 silent, rank 1 took over, rank 2 too late
    assert accepted_claims({1: 1200, 2: 2500}, 1, p) == [1]
    assert accepted_claims({0: 10, 1: 1200}, 1, p) == [0]
    assert accepted_claims({0: 10, 1: 20, 3: 50}, 2, p) == [0, 1]


def test_matching_params_are_validated():
    with pytest.raises(ConfigError):
        MatchingParams(claim_timeout_ms=0)
    with pytest.raises(ConfigError):
        MatchingParams(exploration_permille=900)
    with pytest.raises(ConfigError):
        MatchingParams(failover_depth=1.5)
