"""Receipts nobody asked for count for nothing (docs/core.md, "Evidence: who ran a task").

Two colluding attested nodes post a Claim and a Receipt on offers they were never ranked
for. Copying the honest output digest they were paid as much as the node that did the
work; posting another output with more standing than the honest node they made it lose a
confident dispute (its work, a dispute slash). The evidence now counts a receipt only when
its node's attested enclave signed it and its claim holds a rank the matching gave that
node on the view of the offer's epoch; both attacks fail, with junk enclave signatures or
with real ones.
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from repp2p.ledger import LedgerParams, replay
from repp2p.matching import (
    Assignments,
    MatchingParams,
    View,
    assigned_ranks,
    beacon,
    escalation_order,
)
from repp2p.network_params import NetworkParams
from repp2p.reputation import collect, compute
from repp2p.tasks.escalation import escalation_ranking
from repp2p.viewer import before_epoch
from tests.core import factories as f

EPOCH_S = f.EPOCH_S
NOW = 10 * EPOCH_S
LP = LedgerParams(grace_epochs=1)
#: ranks 0..1 may claim a k = 1 task and no replicas: in a network of 4 to 6 nodes most
#: nodes have no rank for a given task, as in a large network with the default depths
PARAMS = NetworkParams(
    name="unasked",
    epoch_s=EPOCH_S,
    matching=MatchingParams(failover_depth=1, dispute_max_replicas=0),
)


class Ranked:
    """A :class:`f.Scenario` whose honest tasks go to the node the matching ranks first.

    Tasks must be added epoch by epoch, oldest first: the view of epoch ``e`` reads only
    task records of epochs ``<= e - 2``, so it is built once and stays right.
    """

    def __init__(self, names, *, params=PARAMS):
        self.s = f.Scenario()
        self.params = params
        for name in names:
            self.s.add_node(name)
            self.s.heartbeats(name, range(12))
        self.assignments = Assignments()
        self._views: dict[int, View] = {}
        self._label = itertools.count()

    def view_of(self, epoch: int) -> View:
        if epoch not in self._views:
            self._views[epoch] = View.build(
                before_epoch(self.s.records, epoch, self.params),
                self.s.attested,
                epoch=epoch,
                params=self.params,
                assignments=self.ranks,
            )
        return self._views[epoch]

    def ranks(self, offer):
        return self.assignments.ranks(offer, self.view_of)

    def offer_for(self, client: str, epoch: int, first: str, *, unranked=()):
        """An offer of ``client`` whose rank 0 is ``first`` and on which none of
        ``unranked`` has any rank (the first such task label: deterministic)."""
        view = self.view_of(epoch)
        for _ in range(500):
            off = f.offer(client, f"{client}/{epoch}/{next(self._label)}", epoch)
            given = assigned_ranks(off.record, view)
            if view.rank(off.record, beacon(epoch))[:1] != [f.peer(first)]:
                continue
            if any(f.peer(n) in given for n in unranked):
                continue
            return off
        raise AssertionError("no such task label")

    def task(self, client: str, node: str, epoch: int, outcome="ok", *, unranked=()):
        off = self.offer_for(client, epoch, node, unranked=unranked)
        self.s.records += [
            off,
            f.claim(node, off, rank=0),
            f.receipt(node, off),
            f.feedback(client, off, node, outcome),
        ]
        return off


def _free_ride(junk_sig: bool) -> Ranked:
    """h does every task; c1 and c2 never run one but post a self-made claim and a receipt
    with the honest output digest on each (junk or real enclave signatures)."""
    net = Ranked(("h", "c1", "c2", "x", "y", "z"))
    for e in range(1, 8):  # no node is online at epoch 0 (no heartbeat before it)
        for _ in range(3):
            off = net.task("cl0", "h", e, unranked=("c1", "c2"))
            for c in ("c1", "c2"):
                net.s.records += [f.claim(c, off, rank=1), f.receipt(c, off, junk_sig=junk_sig)]
    return net


@pytest.mark.parametrize("junk_sig", [True, False], ids=["junk_enclave_sig", "real_enclave_sig"])
def test_free_riders_are_not_paid(junk_sig):
    net = _free_ride(junk_sig)
    rep = replay(
        net.s.records, net.s.attested, now=NOW, epoch_s=EPOCH_S, params=LP, assignments=net.ranks
    )
    h, c1, c2 = (f.peer(n) for n in ("h", "c1", "c2"))
    assert rep.final.balance(h) > 0
    assert rep.final.balance(c1) == rep.final.balance(c2) == 0
    for s in rep.settlements:
        assert {p for p, _ in s.work} <= {h}, s.epoch
    assert dict(rep.settlements[3].work) == {h: 3}


def test_free_riders_with_real_enclave_signatures_need_the_rank_check():
    """Control: the colluders' own enclaves signed, so only the claim's rank stops them;
    without the offer's rankings they are paid as much as h (the hole as it was)."""
    net = _free_ride(junk_sig=False)
    rep = replay(net.s.records, net.s.attested, now=NOW, epoch_s=EPOCH_S, params=LP)
    h, c1 = f.peer("h"), f.peer("c1")
    assert rep.final.balance(c1) == rep.final.balance(h) > 0


def _framing(junk_sig: bool) -> tuple[Ranked, list]:
    """c1 and c2 build more standing than h; then on three k = 1 tasks h ran, they post a
    self-made claim and a receipt with another output."""
    net = Ranked(("h", "c1", "c2", "x"))
    framed = []
    for e in range(1, 8):  # no node is online at epoch 0 (no heartbeat before it)
        net.task("cl0", "h", e)
        for _ in range(3):
            net.task("cl1", "c1", e)
            net.task("cl1", "c2", e)
        net.task("cl1", "x", e)
        if e in (5, 6):
            for _ in range(1 if e == 5 else 2):
                off = net.task("cl0", "h", e, unranked=("c1", "c2"))
                framed.append(off)
                for c in ("c1", "c2"):
                    net.s.records += [
                        f.claim(c, off, rank=1),
                        f.receipt(c, off, output="framed", junk_sig=junk_sig),
                    ]
    return net, framed


@pytest.mark.parametrize("junk_sig", [True, False], ids=["junk_enclave_sig", "real_enclave_sig"])
def test_colluders_cannot_frame_an_honest_node(junk_sig):
    net, framed = _framing(junk_sig)
    h = f.peer("h")
    ev = collect(net.s.records, net.s.attested, now=NOW, assignments=net.ranks)
    table = compute(ev, now=NOW, epoch_s=EPOCH_S)
    hi = ev.index(h)
    assert not table.receipt_lost[ev.receipt_node == hi].any()
    # only the colluders' own 21 tasks count, none of their receipts on h's tasks
    for c in ("c1", "c2"):
        assert (ev.receipt_node == ev.index(f.peer(c))).sum() == 21
    assert table.get(h).disputes_lost == 0
    rep = replay(
        net.s.records, net.s.attested, now=NOW, epoch_s=EPOCH_S, params=LP, assignments=net.ranks
    )
    assert not [x for s in rep.settlements for x in s.slashes if x[0] == h]
    assert len(framed) == 3


def test_framing_with_real_enclave_signatures_needs_the_rank_check():
    """Control: without the rankings, the colluders' signed receipts still frame h."""
    net, _ = _framing(junk_sig=False)
    h = f.peer("h")
    ev = collect(net.s.records, net.s.attested, now=NOW)
    table = compute(ev, now=NOW, epoch_s=EPOCH_S)
    assert table.receipt_lost[ev.receipt_node == ev.index(h)].sum() == 3
    rep = replay(net.s.records, net.s.attested, now=NOW, epoch_s=EPOCH_S, params=LP)
    assert [x for s in rep.settlements for x in s.slashes if x[0] == h]


def test_honest_failover_and_replica_claims_count():
    """A rank the matching gave counts: the claiming ranks and the escalation ranks."""
    params = dataclasses.replace(
        PARAMS, matching=MatchingParams(failover_depth=1, dispute_max_replicas=2)
    )
    net = Ranked(("a", "b", "c", "d", "e", "g"), params=params)
    for e in range(1, 4):
        net.task("cl", "a", e)
    off = net.offer_for("cl", 4, "a")
    view = net.view_of(4)
    ranking = view.rank(off.record, beacon(4))
    escalation = escalation_ranking(off.record, view, beacon(4))
    assert escalation == escalation_order(off.record, view, beacon(4))
    given = assigned_ranks(off.record, view)
    assert set(given) == set(ranking) | set(escalation)
    failover = ranking[1]
    replica = next(p for p in escalation if p not in ranking[:2])
    names = {f.peer(n): n for n in "abcdeg"}
    rep_rank = escalation.index(replica)
    net.s.records += [
        off,
        f.claim("a", off, rank=0),
        f.claim(names[failover], off, rank=1),
        f.claim(names[replica], off, rank=rep_rank),
    ]
    net.s.records += [f.receipt(n, off) for n in ("a", names[failover], names[replica])]
    ev = collect(net.s.records, net.s.attested, now=7 * EPOCH_S, assignments=net.ranks)
    o = ev.offer_epoch.tolist().index(4)
    claimed = {ev.peers[n] for n, oo in zip(ev.claim_node, ev.claim_offer, strict=True) if oo == o}
    assert claimed == {f.peer("a"), failover, replica}
    # the same nodes stating another rank still count (views may differ by a place); a
    # node with no rank for the offer never does, whatever rank it states
    unranked = next(n for p, n in names.items() if p not in given)
    restated = [
        f.claim("a", off, rank=1, seq=2),
        f.claim(names[failover], off, rank=0, seq=2),
        f.claim(unranked, off, rank=0),
        f.receipt(unranked, off),
    ]
    ev = collect(net.s.records + restated, net.s.attested, now=7 * EPOCH_S, assignments=net.ranks)
    claimed = {ev.peers[n] for n, oo in zip(ev.claim_node, ev.claim_offer, strict=True) if oo == o}
    assert claimed == {f.peer("a"), failover, replica}
    got = {ev.peers[n] for n, oo in zip(ev.receipt_node, ev.receipt_offer, strict=True) if oo == o}
    assert got == claimed


def test_receipt_needs_the_key_valid_for_its_offer_epoch():
    """An enclave restarted with fresh keys: its old key signs receipts of offers up to the
    epoch it was replaced in, not after; the current key any; another node's key never."""
    s = f.Scenario()
    s.add_node("n")
    s.add_node("m")
    offs = [f.offer("cl", f"t{e}", e) for e in (2, 4, 5)]
    old = f.result_key("old-n")
    s.verdicts[f.peer("n")] = dataclasses.replace(
        s.verdicts[f.peer("n")], earlier_result_keys=((old, 4),)
    )
    for off in offs:
        s.records += [off, f.claim("n", off), f.receipt("n", off, enclave="old-n")]
    ev = collect(s.records, s.attested, now=NOW)
    epochs = sorted(int(ev.offer_epoch[o]) for o in ev.receipt_offer)
    assert epochs == [2, 4]
    # the current key: every epoch; another attested node's enclave key: none
    s2 = f.Scenario(records=[r for r in s.records if r.type != "Receipt"], verdicts=s.verdicts)
    s2.records += [f.receipt("n", off) for off in offs]
    s2.records += [f.receipt("m", off, enclave="n") for off in offs]
    ev = collect(s2.records, s2.attested, now=NOW)
    assert sorted(ev.peers[n] for n in ev.receipt_node) == [f.peer("n")] * 3
    # an unverified node: nothing, whatever the key
    s2.verdicts[f.peer("n")] = dataclasses.replace(s2.verdicts[f.peer("n")], verified=False)
    assert len(collect(s2.records, s2.attested, now=NOW).receipt_node) == 0


def test_receipt_for_another_input_does_not_count():
    s = f.Scenario()
    s.add_node("n")
    off = f.offer("cl", "t", 2)
    other = f.offer("cl", "u", 2)
    rc = f.receipt("n", other)  # signed by n's enclave, but for another input
    moved = dataclasses.replace(rc.record, task_id=off.record.task_id, offer_id=off.record_id)
    resigned = f.enclave_key("n").sign(f.receipt_message(moved)).signature
    forged = f.sign(dataclasses.replace(moved, enclave_sig=resigned), f.key("n"))
    s.records += [off, f.claim("n", off), forged]
    assert len(collect(s.records, s.attested, now=NOW).receipt_node) == 0
    s.records[-1] = f.receipt("n", off)
    assert len(collect(s.records, s.attested, now=NOW).receipt_node) == 1


def test_assignments_rank_each_offer_once():
    net = Ranked(("a", "b", "c"))
    calls = []

    def view_of(e):
        calls.append(e)
        return net.view_of(e)

    off = f.offer("cl", "t", 1)
    a = Assignments()
    first = a.ranks(off, view_of)
    assert first and a.ranks(off, view_of) == first and calls == [1]
    assert a.ranks(off, lambda e: None) == first  # cached: the view is not asked again
    assert Assignments().ranks(off, lambda e: None) is None
    a.keep({off.record_id})
    assert len(a) == 1  # still held: kept
    a.keep(set())
    assert len(a) == 0
    a.ranks(off, view_of)
    a.forget_before(1)
    assert len(a) == 1
    a.forget_before(2)
    assert len(a) == 0


def test_a_refusal_by_an_earlier_enclave_counts_for_its_epochs_only():
    """Refusals follow the receipts' key rule: the earlier key up to its replacement."""
    from repp2p.records import refusal_message
    from tests.core import test_refusals as tr

    s = f.Scenario()
    s.add_node("n")
    old = f.enclave_key("old-n")
    s.verdicts[f.peer("n")] = dataclasses.replace(
        s.verdicts[f.peer("n")], earlier_result_keys=((bytes(old.verify_key), 4),)
    )
    offs = [f.offer("cl", f"r{e}", e) for e in (3, 5)]
    for off in offs:
        rec = dataclasses.replace(
            tr.refusal("n", off, client="cl").record, result_key=bytes(old.verify_key)
        )
        rec = dataclasses.replace(rec, enclave_sig=old.sign(refusal_message(rec)).signature)
        s.records += [off, f.claim("n", off), f.sign(rec, f.key("n"))]
    ev = collect(s.records, s.attested, now=NOW)
    assert [int(ev.offer_epoch[o]) for o, _n in ev.refusals] == [3]
