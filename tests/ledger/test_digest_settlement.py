"""The ledger settles from reconciled digest rows under the same rules as from per-task
records: on an honest history both give the same balances."""

from __future__ import annotations

import dataclasses

import numpy as np

from repp2p.digests import build_feedback, build_work, reconcile
from repp2p.ledger import LedgerParams, digest_work_units, replay, work_units
from repp2p.records import sign
from repp2p.reputation import collect, compute
from tests.core import factories as f

EPOCH_S = f.EPOCH_S
NODES, CLIENTS = ("n0", "n1", "n2"), ("c0", "c1", "c2")
EPOCHS = 6
EXPIRES = 10**6 * EPOCH_S


def _honest_history() -> f.Scenario:
    """Every epoch each node serves a task or two; some time out (claimed, never
    delivered); one client gives no feedback on one task."""
    s = f.Scenario()
    for name in NODES:
        s.add_node(name)
        s.heartbeats(name, range(EPOCHS + 4))
    for e in range(EPOCHS):
        for i, node in enumerate(NODES):
            s.task(CLIENTS[(i + e) % 3], node, e, "ok")
            if (i + e) % 2:
                s.task(CLIENTS[(i + e + 1) % 3], node, e, "ok")
            if (i + e) % 4 == 1:
                s.task(CLIENTS[e % 3], node, e, "timeout", deliver=False)
        if e == 2:
            s.task("c0", "n1", e, None)  # delivered, no feedback: no credit either way
    return s


def _reconciliations(s: f.Scenario, nodes: tuple[str, ...] = NODES) -> dict:
    out = {}
    for e in range(EPOCHS):
        digests = []
        for name in nodes:
            for part in build_work(f.peer(name), s.records, e, expires=EXPIRES):
                digests.append(sign(part.digest, f.key(name)))
        for name in CLIENTS:
            for part in build_feedback(f.peer(name), s.records, e, expires=EXPIRES):
                digests.append(sign(part.digest, f.key(name)))
        out[e] = reconcile(digests, e)
    return out


def test_per_record_and_digest_settlement_give_the_same_balances_on_an_honest_history():
    s = _honest_history()
    recons = _reconciliations(s)
    lp = LedgerParams(grace_epochs=2)
    now = (EPOCHS + 3) * EPOCH_S
    by_records = replay(s.records, s.attested, now=now, epoch_s=EPOCH_S, params=lp)
    by_digests = replay(
        s.records, s.attested, now=now, epoch_s=EPOCH_S, params=lp, reconciliations=recons
    )
    assert [x.work for x in by_digests.settlements] == [x.work for x in by_records.settlements]
    assert by_digests.final.balances == by_records.final.balances
    assert by_digests.pending.balances == by_records.pending.balances
    assert by_digests.final.digest == by_records.final.digest
    assert sum(by_records.final.balances.values()) > 0  # there was work to pay


def test_digest_work_follows_the_per_record_rule_epoch_by_epoch():
    s = _honest_history()
    recons = _reconciliations(s)
    ev = collect(s.records, s.attested, now=(EPOCHS + 3) * EPOCH_S)
    table = compute(ev, now=(EPOCHS + 3) * EPOCH_S, epoch_s=EPOCH_S)
    for e in range(EPOCHS):
        expected = work_units(ev, e, client_trust=table.client_trust)
        got = digest_work_units(recons[e], ev, client_trust=table.client_trust)
        assert np.array_equal(got, expected), e
        assert got.sum() > 0


def test_digest_rows_earn_nothing_for_an_unattested_node_or_an_untrusted_client():
    s = _honest_history()
    recons = _reconciliations(s)
    ev = collect(s.records, s.attested, now=(EPOCHS + 3) * EPOCH_S)
    n1 = ev.peers.index(f.peer("n1"))
    unverified = ev.verified.copy()
    unverified[n1] = False
    ev_bad = dataclasses.replace(ev, verified=unverified)
    assert digest_work_units(recons[0], ev_bad)[n1] == 0
    assert digest_work_units(recons[0], ev)[n1] > 0
    no_trust = np.zeros(ev.n_peers)
    assert digest_work_units(recons[0], ev, client_trust=no_trust).sum() == 0


def test_dispute_slashes_are_the_same_from_records_and_from_digests():
    # A cheater that lost confident disputes (three honest receipts against its one, the
    # client's feedback agreeing) is slashed by the same rule on both paths: slashes come
    # from the settlement's quality table, whatever the work column's source.
    s = _honest_history()
    s.add_node("bad")
    s.heartbeats("bad", range(EPOCHS + 4))
    for e in range(EPOCHS):
        s.task(CLIENTS[e % 3], "bad", e, "ok")
    for e, task in ((3, "d1"), (4, "d2"), (4, "d3")):
        off = f.offer("c0", task, e, k=3)
        s.records.append(off)
        for name, out, verdict in (
            ("n0", "right", "ok"),
            ("n1", "right", "ok"),
            ("n2", "right", "ok"),
            ("bad", "wrong", "wrong"),
        ):
            s.records += [
                f.claim(name, off),
                f.receipt(name, off, output=out),
                f.feedback("c0", off, name, verdict, rating=90 if verdict == "ok" else 0),
            ]
    recons = _reconciliations(s, (*NODES, "bad"))
    lp = LedgerParams(grace_epochs=2, dispute_slash_permille=100)
    now = (EPOCHS + 3) * EPOCH_S
    by_records = replay(s.records, s.attested, now=now, epoch_s=EPOCH_S, params=lp)
    by_digests = replay(
        s.records, s.attested, now=now, epoch_s=EPOCH_S, params=lp, reconciliations=recons
    )
    slashes = [x.slashes for x in by_records.settlements]
    assert slashes == [x.slashes for x in by_digests.settlements]
    bad = f.peer("bad")
    assert [(p, r) for x in slashes for p, r, _a in x] == [(bad, "dispute"), (bad, "dispute")]
    # the lost receipts are work on neither path, so the whole settlement agrees
    assert [x.work for x in by_digests.settlements] == [x.work for x in by_records.settlements]
    assert by_digests.final.digest == by_records.final.digest


def test_a_lost_receipt_is_no_digest_work_even_with_its_clients_ok():
    # The client's own verdict said ok on the cheater's receipts (a colluding client, or
    # one whose standings at the task's epoch left the dispute undecided), but the
    # settlement's table says they lost a confident dispute: per record they are no work,
    # and from digests the pair's ok counts only the node's receipts that did not lose.
    s = _honest_history()
    s.add_node("bad")
    s.heartbeats("bad", range(EPOCHS + 4))
    for e in range(EPOCHS):
        s.task(CLIENTS[e % 3], "bad", e, "ok")
    for e, task in ((3, "d1"), (4, "d2"), (4, "d3")):
        off = f.offer("c0", task, e, k=3)
        s.records.append(off)
        for name, out in (("n0", "right"), ("n1", "right"), ("n2", "right"), ("bad", "wrong")):
            s.records += [
                f.claim(name, off),
                f.receipt(name, off, output=out),
                f.feedback("c0", off, name, "ok", rating=90),
            ]
    recons = _reconciliations(s, (*NODES, "bad"))
    lp = LedgerParams(grace_epochs=2, dispute_slash_permille=100)
    now = (EPOCHS + 3) * EPOCH_S
    by_records = replay(s.records, s.attested, now=now, epoch_s=EPOCH_S, params=lp)
    by_digests = replay(
        s.records, s.attested, now=now, epoch_s=EPOCH_S, params=lp, reconciliations=recons
    )
    bad = f.peer("bad")
    work = {x.epoch: dict(x.work) for x in by_digests.settlements}
    assert work[4][bad] == 1  # its one undisputed task, not the two lost receipts
    assert [x.work for x in by_digests.settlements] == [x.work for x in by_records.settlements]
    assert [x.slashes for x in by_digests.settlements] == [
        x.slashes for x in by_records.settlements
    ]
    assert by_digests.final.digest == by_records.final.digest
    # the cap is the lost receipts only: without the table's column the ok counts in full
    ev = collect(s.records, s.attested, now=now)
    table = compute(ev, now=now, epoch_s=EPOCH_S)
    n_bad = ev.peers.index(bad)
    assert table.receipt_lost is not None and table.receipt_lost.any()
    assert digest_work_units(recons[4], ev)[n_bad] == 3
    assert digest_work_units(recons[4], ev, lost=table.receipt_lost)[n_bad] == 1
