"""REP ledger: integer payouts, conservation, order-independence, finality, slashes."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repp2p.errors import ConfigError
from repp2p.ledger import LedgerParams, LedgerState, replay, settle, work_units
from repp2p.reputation import Evidence, PenaltyBook, ReputationParams, compute
from tests.core import factories as f

EPOCH_S = f.EPOCH_S


def _scenario(epochs=6, nodes=("n0", "n1", "n2"), clients=("c0", "c1")):
    s = f.Scenario()
    for name in nodes:
        s.add_node(name)
        s.heartbeats(name, range(epochs + 4))
    for e in range(epochs):
        for i, name in enumerate(nodes):
            s.task(clients[(i + e) % len(clients)], name, e, "ok")
    return s


def _check_conservation(report):
    for s in report.settlements:
        assert sum(a for _p, a in s.payouts) + s.burned == s.emission
    for state in (report.final, report.pending):
        assert sum(state.balances.values()) == state.supply


def test_params_are_validated():
    with pytest.raises(ConfigError):
        LedgerParams(grace_epochs=-1)
    with pytest.raises(ConfigError):
        LedgerParams(emission_micro=1.5)
    with pytest.raises(ConfigError):
        LedgerParams(offence_slash_pct=101)
    assert LedgerParams(emission_micro=1000, halving_epochs=10).emission(25) == 250


def test_honest_nodes_share_the_emission_and_finality_follows_grace():
    s = _scenario()
    lp = LedgerParams(grace_epochs=2)
    report = replay(s.records, s.attested, now=8 * EPOCH_S, epoch_s=EPOCH_S, params=lp)
    assert report.current_epoch == 8
    finals = [x.epoch for x in report.settlements if x.final]
    pending = [x.epoch for x in report.settlements if not x.final]
    assert finals == [0, 1, 2, 3, 4, 5] and pending == [6, 7]
    _check_conservation(report)
    balances = report.final.balances
    assert set(balances) == {f.peer(n) for n in ("n0", "n1", "n2")}
    # equal work, near-equal reputation: near-equal shares
    assert max(balances.values()) - min(balances.values()) <= 0.01 * max(balances.values())
    assert report.final.supply > 0.99 * 6 * lp.emission_micro
    # epochs without work burn their emission
    idle = [x for x in report.settlements if x.epoch >= 6]
    assert all(x.burned == x.emission for x in idle)


def test_same_records_in_any_order_give_the_same_balances():
    s = _scenario()
    a = replay(s.records, s.attested, now=9 * EPOCH_S, epoch_s=EPOCH_S)
    shuffled = list(s.records)
    random.Random(7).shuffle(shuffled)
    b = replay(shuffled + shuffled[:5], s.attested, now=9 * EPOCH_S, epoch_s=EPOCH_S)
    assert [x.digest for x in a.settlements] == [x.digest for x in b.settlements]
    assert a.final.digest == b.final.digest


def test_unbacked_unclaimed_and_unattested_work_earns_nothing():
    s = _scenario(epochs=3)
    s.add_node("lone")
    s.add_node("ghost", attested=False)
    s.heartbeats("lone", range(8))
    s.heartbeats("ghost", range(8))
    for e in range(3):
        s.task("c0", "lone", e, None)  # delivered, but nobody backs it
        s.task("c1", "ghost", e, "ok")  # unattested
        off = f.offer("c0", f"unclaimed/{e}", e)
        s.records += [off, f.receipt("lone", off), f.feedback("c0", off, "lone")]
    report = replay(s.records, s.attested, now=6 * EPOCH_S, epoch_s=EPOCH_S)
    assert report.final.balance(f.peer("lone")) == 0
    assert report.final.balance(f.peer("ghost")) == 0
    assert report.final.balance(f.peer("n0")) > 0
    _check_conservation(report)


def test_redundancy_agreement_backs_work_and_a_proven_wrong_result_is_slashed():
    s = _scenario(epochs=4, nodes=("n0", "n1", "n2", "bad"))
    # epoch 4: a k=3 task, two agree, "bad" is outvoted: proven wrong
    off = f.offer("c0", "redundant", 4, k=3)
    s.records.append(off)
    for name, out in (("n0", "right"), ("n1", "right"), ("bad", "wrong")):
        s.records += [f.claim(name, off), f.receipt(name, off, output=out)]
    lp = LedgerParams(grace_epochs=1)
    # A count-quorum conviction is a hard offence only under the pre-issue-15 rule; by
    # default it is statistical evidence (graduated), so no offence slash.
    soft = replay(s.records, s.attested, now=8 * EPOCH_S, epoch_s=EPOCH_S, params=lp)
    assert not [p for x in soft.settlements for p, r, _a in x.slashes if r == "offence"]
    hard = ReputationParams(wrong_result_hard=True)
    report = replay(
        s.records, s.attested, now=8 * EPOCH_S, epoch_s=EPOCH_S, params=lp, reputation_params=hard
    )
    _check_conservation(report)
    by_epoch = {x.epoch: x for x in report.settlements}
    work4 = dict(by_epoch[4].work)
    assert work4.get(f.peer("n0")) == 1 and f.peer("bad") not in work4
    slashes = [(p, r) for x in report.settlements for p, r, _a in x.slashes]
    assert (f.peer("bad"), "offence") in slashes
    assert report.final.balance(f.peer("bad")) == 0  # 100% slash, no further pay
    assert report.final.balance(f.peer("n0")) > 0


def _columns(draw_ints, n_nodes, n_clients, n_offers, rng):
    peers = tuple(sorted(f"p{i:03d}" for i in range(n_nodes + n_clients)))
    nodes = rng.sample(range(len(peers)), n_nodes)
    clients = [i for i in range(len(peers)) if i not in nodes]
    is_node = np.zeros(len(peers), bool)
    is_node[nodes] = True
    cols = dict(
        is_node=is_node,
        capacity=np.where(is_node, 4, 0),
        verified=is_node.copy(),
        consistent=is_node.copy(),
        attested_at=np.full(len(peers), 10**9),
    )
    rows = {k: [] for k in ("offer_client", "offer_epoch", "offer_deadline_ms")}
    cl = {k: [] for k in ("claim_node", "claim_offer")}
    rc = {k: [] for k in ("receipt_node", "receipt_offer", "receipt_output")}
    fb = {k: [] for k in ("fb_client", "fb_node", "fb_offer", "fb_outcome")}
    fb.update(fb_latency_ms=[], fb_rating=[])
    for o in range(n_offers):
        c = rng.choice(clients)
        e = rng.randrange(3)
        rows["offer_client"].append(c)
        rows["offer_epoch"].append(e)
        rows["offer_deadline_ms"].append((e * 600 + 300) * 1000)
        for node in rng.sample(nodes, rng.randint(1, min(3, len(nodes)))):
            cl["claim_node"].append(node)
            cl["claim_offer"].append(o)
            if rng.random() < 0.9:
                rc["receipt_node"].append(node)
                rc["receipt_offer"].append(o)
                rc["receipt_output"].append(2 * o + (rng.random() < 0.2))
            if rng.random() < 0.8:
                fb["fb_client"].append(c)
                fb["fb_node"].append(node)
                fb["fb_offer"].append(o)
                fb["fb_outcome"].append(rng.choice([0, 0, 0, 1, 2]))
                fb["fb_latency_ms"].append(rng.randrange(1000))
                fb["fb_rating"].append(rng.randrange(101))
    hb = dict(
        hb_node=[n for n in nodes for _e in range(5)],
        hb_epoch=[e for _n in nodes for e in range(5)],
        hb_load=[0] * (5 * n_nodes),
    )
    return peers, {**cols, **rows, **cl, **rc, **fb, **hb}


def _permuted(cols, rng):
    out = dict(cols)
    for names in (
        ("claim_node", "claim_offer"),
        ("receipt_node", "receipt_offer", "receipt_output"),
        ("fb_client", "fb_node", "fb_offer", "fb_outcome", "fb_latency_ms", "fb_rating"),
        ("hb_node", "hb_epoch", "hb_load"),
    ):
        order = list(range(len(cols[names[0]])))
        rng.shuffle(order)
        for name in names:
            out[name] = [cols[name][i] for i in order]
    return out


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    n_nodes=st.integers(1, 6),
    n_clients=st.integers(1, 4),
    n_offers=st.integers(0, 30),
    emission=st.integers(0, 10**12),
    exponent=st.integers(0, 3),
)
def test_settlement_conserves_and_ignores_row_order(
    seed, n_nodes, n_clients, n_offers, emission, exponent
):
    rng = random.Random(seed)
    peers, cols = _columns(None, n_nodes, n_clients, n_offers, rng)
    lp = LedgerParams(emission_micro=emission, quality_exponent=exponent, grace_epochs=0)
    results = []
    for variant in (cols, _permuted(cols, rng)):
        ev = Evidence.from_columns(peers, **variant)
        table = compute(ev, now=3 * 600, epoch_s=600)
        book = PenaltyBook().step(table)
        state = LedgerState()
        digests = []
        for e in range(3):
            s = settle(state, ev, table, book, epoch=e, params=lp)
            assert sum(a for _p, a in s.payouts) + s.burned == s.emission == emission
            assert all(a > 0 for _p, a in s.payouts)
            state = state.apply(s)
            assert sum(state.balances.values()) == state.supply
            digests.append(s.digest)
        results.append((digests, state.digest))
    assert results[0] == results[1]


def test_work_units_from_columns_matches_the_rules():
    peers = ("a", "b", "c", "x")  # x is the client
    ev = Evidence.from_columns(
        peers,
        is_node=[True, True, True, False],
        verified=[True, True, True, False],
        offer_client=[3, 3],
        offer_epoch=[0, 0],
        offer_deadline_ms=[1, 1],
        claim_node=[0, 1, 2, 0],
        claim_offer=[0, 0, 0, 1],
        receipt_node=[0, 1, 2, 0],
        receipt_offer=[0, 0, 0, 1],
        receipt_output=[0, 0, 1, 2],
    )
    # offer 0: a and b agree, c outvoted; offer 1: a alone, no feedback -> unbacked
    assert work_units(ev, 0).tolist() == [1, 1, 0, 0]
    assert work_units(ev, 1).tolist() == [0, 0, 0, 0]


def test_phase_out_burns_part_of_the_balance_once_and_stops_pay():
    from repp2p.reputation import ReputationParams

    s = _scenario(epochs=3, nodes=("n0", "n1", "slow"))
    for e in range(3, 9):
        for name in ("n0", "n1"):
            s.task("c0", name, e, "ok")
        s.task("c1", "slow", e, None, deliver=False)  # claims, never delivers
        s.task("c0", "slow", e, "timeout", deliver=False)
    for name in ("n0", "n1", "slow"):
        s.heartbeats(name, range(7, 13))
    rp = ReputationParams(phase_out_permille=800, phase_out_epochs=2, phase_out_penalty_epochs=50)
    lp = LedgerParams(grace_epochs=0, phase_out_slash_pct=50)
    report = replay(
        s.records, s.attested, now=10 * EPOCH_S, epoch_s=EPOCH_S, params=lp, reputation_params=rp
    )
    _check_conservation(report)
    slashes = [(x.epoch, p, r) for x in report.settlements for p, r, _a in x.slashes]
    slow = f.peer("slow")
    assert [r for _e, p, r in slashes if p == slow] == ["phase_out"]
    first = next(e for e, p, _r in slashes if p == slow)
    paid_after = [dict(x.payouts).get(slow, 0) for x in report.settlements if x.epoch >= first]
    assert not any(paid_after)
    assert report.final.slashed > 0


# -- proportional slashing -------------------------------------------------------------------


def _disputed(s, epoch, task, *, cheater="bad", honest=("n0", "n1", "n2")):
    """A k=3 task escalated to a fourth node: three honest receipts against the cheater's
    (a confident standing-weighted verdict at equal standing: 3/4 > 0.67)."""
    off = f.offer("c0", task, epoch, k=3)
    s.records.append(off)
    for name in honest:
        s.records += [f.claim(name, off), f.receipt(name, off), f.feedback("c0", off, name)]
    s.records += [
        f.claim(cheater, off),
        f.receipt(cheater, off, output="wrong"),
        f.feedback("c0", off, cheater, "wrong", rating=0),
    ]
    return off


def _dispute_history():
    s = _scenario(epochs=6, nodes=("n0", "n1", "n2", "bad"))
    _disputed(s, 4, "d1")  # one lost dispute in epoch 4
    _disputed(s, 5, "d2")  # two in epoch 5
    _disputed(s, 5, "d3")
    return s


def test_lost_disputes_are_slashed_in_proportion_and_earn_nothing():
    s = _dispute_history()
    lp = LedgerParams(grace_epochs=1, dispute_slash_permille=100)
    report = replay(s.records, s.attested, now=9 * EPOCH_S, epoch_s=EPOCH_S, params=lp)
    _check_conservation(report)
    bad = f.peer("bad")
    by_epoch = {x.epoch: x for x in report.settlements}
    slashes = [(x.epoch, p, r, a) for x in report.settlements for p, r, a in x.slashes]
    # only the cheater, only for disputes, once per epoch it lost some
    assert {p for _e, p, _r, _a in slashes} == {bad}
    assert [(e, r) for e, _p, r, _a in slashes] == [(4, "dispute"), (5, "dispute")]
    # proportional: 1 lost receipt burns 10%, 2 burn 20% of the balance held before
    state = LedgerState()
    for x in report.settlements:
        held = state.balance(bad)
        burned = sum(a for p, r, a in x.slashes if p == bad)
        lost = {4: 1, 5: 2}.get(x.epoch, 0)
        assert burned == held * lost * 100 // 1000
        state = state.apply(x)
    # a lost receipt is no work, though its node claimed and delivered it
    work4 = dict(by_epoch[4].work)
    assert work4[f.peer("n0")] == 2 and work4[bad] == 1  # its own ok task only
    # with the slash off, nobody is slashed and the cheater keeps more
    off = replay(
        s.records,
        s.attested,
        now=9 * EPOCH_S,
        epoch_s=EPOCH_S,
        params=LedgerParams(grace_epochs=1, dispute_slash_permille=0),
    )
    assert not [x for x in off.settlements if x.slashes]
    assert off.final.balance(bad) > report.final.balance(bad)
    assert off.final.balance(f.peer("n0")) == report.final.balance(f.peer("n0"))


def test_slashes_for_applies_each_offence_in_proportion_and_in_order():
    from repp2p.ledger import slashes_for
    from repp2p.reputation import PenaltyEntry

    lp = LedgerParams(offence_slash_pct=100, phase_out_slash_pct=10, dispute_slash_permille=50)
    state = LedgerState(balances={"a": 1_000_000, "b": 1_000_000, "c": 1_000_000, "d": 999})
    book = PenaltyBook(
        epoch=5,
        entries={
            "a": PenaltyEntry(until_epoch=50, hard=True, evidence=("x",)),  # type: ignore[arg-type]
            "b": PenaltyEntry(until_epoch=50, strikes=3),
        },
    )
    got = slashes_for(state, book, {"a": 2, "b": 4, "c": 30, "d": 1}, lp)
    assert got == [
        ("a", "offence", 1_000_000),  # everything: nothing left for the dispute slash
        ("b", "phase_out", 300_000),  # the 3rd phase-out: 3 x 10%
        ("b", "dispute", 140_000),  # 4 x 5% of what the phase-out left
        ("c", "dispute", 1_000_000),  # 30 x 5% caps at everything
        ("d", "dispute", 49),  # floors
    ]
    # penalties already slashed (the state's marks) are not slashed again
    marked = LedgerState(balances=state.balances, marks={"a": (0, 1), "b": (3, 0)})
    assert slashes_for(marked, book, {}, lp) == []


def test_dispute_slashes_do_not_depend_on_record_order():
    s = _dispute_history()
    lp = LedgerParams(grace_epochs=1)
    a = replay(s.records, s.attested, now=9 * EPOCH_S, epoch_s=EPOCH_S, params=lp)
    shuffled = list(s.records)
    random.Random(11).shuffle(shuffled)
    b = replay(shuffled, s.attested, now=9 * EPOCH_S, epoch_s=EPOCH_S, params=lp)
    assert [x.slashes for x in a.settlements] == [x.slashes for x in b.settlements]
    assert any(r == "dispute" for x in a.settlements for _p, r, _a in x.slashes)
    assert a.final.digest == b.final.digest


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from("abcdef"),
        st.tuples(
            st.integers(0, 2**53),  # balance
            st.integers(0, 30),  # strikes in the book
            st.integers(0, 3),  # offences in the book
            st.integers(0, 30),  # strikes already slashed
            st.integers(0, 3),  # offences already slashed
            st.integers(0, 40),  # lost disputes
        ),
        max_size=6,
    ),
    st.integers(0, 100),
    st.integers(0, 100),
    st.integers(0, 1000),
    st.randoms(use_true_random=False),
)
def test_slashes_never_exceed_the_balance_nor_depend_on_order(
    rows, offence_pct, phase_pct, dispute_permille, rnd
):
    from repp2p.ledger import slashes_for
    from repp2p.reputation import PenaltyEntry

    lp = LedgerParams(
        offence_slash_pct=offence_pct,
        phase_out_slash_pct=phase_pct,
        dispute_slash_permille=dispute_permille,
    )
    balances = {p: r[0] for p, r in rows.items() if r[0] > 0}
    marks = {p: (r[3], r[4]) for p, r in rows.items()}
    entries = {
        p: PenaltyEntry(strikes=r[1], evidence=("x",) * r[2])  # type: ignore[arg-type]
        for p, r in rows.items()
        if r[1] or r[2]
    }
    losses = {p: r[5] for p, r in rows.items()}
    state = LedgerState(balances=balances, marks=marks)
    got = slashes_for(state, PenaltyBook(epoch=1, entries=entries), losses, lp)
    # another insertion order of every mapping: the same slashes, to the micro-REP
    order = list(rows)
    rnd.shuffle(order)
    again = slashes_for(
        LedgerState(
            balances={p: balances[p] for p in order if p in balances},
            marks={p: marks[p] for p in order},
        ),
        PenaltyBook(epoch=1, entries={p: entries[p] for p in order if p in entries}),
        {p: losses[p] for p in order},
        lp,
    )
    assert got == again
    assert [p for p, _r, _a in got] == sorted(p for p, _r, _a in got)
    for peer in rows:
        mine = [(r, a) for p, r, a in got if p == peer]
        assert all(a > 0 for _r, a in mine)
        assert sum(a for _r, a in mine) <= balances.get(peer, 0)  # never below zero
        reasons = [r for r, _a in mine]
        assert reasons in (
            [],
            ["offence"],
            ["phase_out"],
            ["dispute"],
            ["offence", "dispute"],
            ["phase_out", "dispute"],
        )
        if rows[peer][5] == 0:
            assert "dispute" not in reasons
