"""Disputes in views from digests agree with views from records.

One history scored twice: from every per-task record (``compute``, a records view) and from
the digests' count rows plus the records of the disputed tasks only, as dispute proofs carry
them (``compute_pairs``, a digest view; docs/digests.md "Dispute proofs"). Both judge the
same disputes with the same rounds: the same receipts lose, ``disputes_lost`` and the
ledger's dispute losses (its slash) are equal per peer, a camouflaged cheater loses and
framing colluders at k = 3 never convict the honest node.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np

from repp2p.digests import build_feedback, build_work, count_rows, reconcile
from repp2p.digests.disputes import dispute_proof, records_of
from repp2p.ledger import LedgerParams, LedgerState, dispute_losses, slashes_for
from repp2p.records import sign
from repp2p.reputation import PenaltyBook, ReputationParams, collect, compute
from repp2p.reputation.pairs import PairState, compute_pairs, widen
from repp2p.testing import factories
from tests.digests.dispute_fixtures import attested, checked_proofs, disputed_task, traffic

EPOCH_S = 60
PARAMS = ReputationParams(window_epochs=20)
NOW = (factories.NOW // EPOCH_S + 100) * EPOCH_S
EPOCHS = range(NOW // EPOCH_S - 10, NOW // EPOCH_S - 4)
HONEST = [factories.identity(f"dnode-honest-{i}") for i in range(6)]
CHEATER = factories.identity("dnode-cheater")
COLLUDERS = [factories.identity(f"dnode-colluder-{i}") for i in range(2)]
NODES = [*HONEST, CHEATER, *COLLUDERS]
CLIENTS = [factories.identity(f"dclient-{i}") for i in range(5)]


def _disputed(client, epoch, label, runs, expires):
    """A task run by every ``(node, output)`` of ``runs``; the client says ``ok`` to the
    nodes with the majority output and ``wrong`` to the others. Returns ``(records,
    offer, [(claim, receipt)])``."""
    outputs = [out for _n, out in runs]
    majority = max(set(outputs), key=outputs.count)
    return disputed_task(
        client,
        epoch,
        label,
        runs,
        lambda _node, out: "ok" if out == majority else "wrong",
        expires,
    )


def _verdicts(ad):
    measurements = [x.measurement for x in ad.engines]
    return {
        n.peer_id: attested(n, now=NOW, tee_kind=ad.tee_kind, measurements=measurements)
        for n in NODES
    }


def _history():
    """Honest traffic on every node, the cheater right on most tasks; per epoch one task
    the cheater got wrong (outvoted by two honest nodes, then two honest replicas), and one
    the colluders frame an honest node on (2 to 1, no replicas: undecided), and from the
    third epoch on one they frame it on where four honest replicas answer."""
    expires = factories.far_future(NOW)
    rng = random.Random(7)
    records, proofs, state = [], [], PairState()
    for e in EPOCHS:
        tasks = traffic(rng, CLIENTS, NODES, e, 30, expires)
        h = HONEST
        disputes = [
            [(CHEATER, "bad"), (h[0], "right"), (h[1], "right"), (h[2], "right"), (h[3], "right")],
            [(COLLUDERS[0], "frame"), (COLLUDERS[1], "frame"), (h[4], "right")],
        ]
        if e >= EPOCHS[2]:
            disputes.append(
                [(COLLUDERS[0], "frame"), (COLLUDERS[1], "frame"), *((x, "right") for x in h[:5])]
            )
        for j, runs in enumerate(disputes):
            task, offer, pairs = _disputed(CLIENTS[j], e, f"d{e}-{j}", runs, expires)
            tasks += task
            proofs.append(dispute_proof(offer, pairs))
        records += tasks
        digests = [
            sign(p.digest, who)
            for who in NODES
            for p in build_work(who.peer_id, tasks, e, expires=expires)
        ] + [
            sign(p.digest, who)
            for who in CLIENTS
            for p in build_feedback(who.peer_id, tasks, e, expires=expires)
        ]
        state.fold(e, count_rows(reconcile(digests, e)), [d.record_id for d in digests])
    return records, proofs, state


def _tables():
    records, proofs, state = _history()
    ad = factories.sample_records(now=NOW)[0]
    ads = [sign(ad, n) for n in NODES]
    verdicts = _verdicts(ad)
    ev_r = collect(records + ads, verdicts, now=NOW)
    by_records = compute(ev_r, now=NOW, epoch_s=EPOCH_S, params=PARAMS)
    # what a digest-view peer holds of the disputes: the proofs, checked on arrival
    checked = checked_proofs(proofs, verdicts, NODES, epochs=(EPOCHS[0], EPOCHS[-1]), now=NOW)
    win = state.window(EPOCHS[0], EPOCHS[-1])
    ev_d = widen(collect(ads + records_of(checked), verdicts, now=NOW), win.peers)
    by_digests = compute_pairs(ev_d, win, now=NOW, epoch_s=EPOCH_S, params=PARAMS)
    return (ev_r, by_records), (ev_d, by_digests)


def _by_peer(ev, column) -> dict[str, float]:
    return {p: float(column[i]) for i, p in enumerate(ev.peers) if column[i]}


def test_digest_views_judge_disputes_as_records_views_do():
    (ev_r, by_records), (ev_d, by_digests) = _tables()
    # the same receipts lose, so the same decayed count per peer, to the bit
    lost_r = {ev_r.receipt_ids[i] for i in np.flatnonzero(by_records.receipt_lost)}
    lost_d = {ev_d.receipt_ids[i] for i in np.flatnonzero(by_digests.receipt_lost)}
    assert lost_r == lost_d and lost_r
    assert _by_peer(ev_r, by_records.disputes_lost) == _by_peer(ev_d, by_digests.disputes_lost)
    for table in (by_records, by_digests):
        cheater = table.get(CHEATER.peer_id)
        assert cheater.disputes_lost > 0
        for h in HONEST:
            honest = table.get(h.peer_id)
            assert honest.disputes_lost == 0  # framing at 2 to 1 convicts nobody
            assert honest.quality > cheater.quality
            assert honest.standing > cheater.standing
        for c in COLLUDERS:  # outvoted once four honest replicas answered
            assert table.get(c.peer_id).disputes_lost > 0
    # standing agrees closely (digests carry no ratings: quality differs a little), except
    # the node framed 2 to 1 with no replicas: its client's count vote said "wrong", which a
    # records view drops as an echo of the colluders' votes and a digest view cannot tell
    # apart in the count row (docs/digests.md, "What digest views still do not do")
    for n in [x for x in NODES if x is not HONEST[4]]:
        a, b = by_records.get(n.peer_id), by_digests.get(n.peer_id)
        assert abs(a.standing - b.standing) < 0.1, n.peer_id


def test_the_ledger_slashes_the_same_lost_disputes_on_both_paths():
    (ev_r, by_records), (ev_d, by_digests) = _tables()
    book = PenaltyBook()
    lp = LedgerParams()
    state = LedgerState(balances={n.peer_id: 1_000_000 for n in NODES}, emitted=9_000_000)
    for e in EPOCHS:
        lr = dispute_losses(ev_r, by_records, e)
        ld = dispute_losses(ev_d, by_digests, e)
        per_r = {ev_r.peers[i]: int(lr[i]) for i in np.flatnonzero(lr)}
        per_d = {ev_d.peers[i]: int(ld[i]) for i in np.flatnonzero(ld)}
        assert per_r == per_d and CHEATER.peer_id in per_d
        assert not {h.peer_id for h in HONEST} & set(per_d)
        slashed = slashes_for(state, book, per_d, lp)
        assert slashed == slashes_for(state, book, per_r, lp)
        assert {p for p, why, _a in slashed if why == "dispute"} == set(per_d)


def test_without_dispute_evidence_digest_views_keep_their_bits():
    """No offer or receipt tables: the dispute rounds are skipped and nothing moves."""
    (_ev_r, _r), (_ev_d, by_digests) = _tables()
    _records, _proofs, state = _history()
    win = state.window(EPOCHS[0], EPOCHS[-1])
    ad = factories.sample_records(now=NOW)[0]
    ads = [sign(ad, n) for n in NODES]
    plain = compute_pairs(
        widen(collect(ads, _verdicts(ad), now=NOW), win.peers),
        win,
        now=NOW,
        epoch_s=EPOCH_S,
        params=PARAMS,
    )
    assert not plain.disputes_lost.any()
    assert plain.standing.tobytes() == plain.quality.tobytes()
    # the disputes lower the cheater only through them
    i = plain.peers.index(CHEATER.peer_id)
    assert by_digests.quality[by_digests.peers.index(CHEATER.peer_id)] < plain.quality[i]


def test_compact_dispute_evidence_without_claims_is_judged_the_same():
    """The simulator's form: offer and receipt columns only (its receipts already held to
    the evidence rule); every receipt stands for its claim, and the verdicts are the same."""
    (_ev_r, _r), (ev_d, by_digests) = _tables()
    compact = dataclasses.replace(
        ev_d,
        claim_node=np.zeros(0, np.int64),
        claim_offer=np.zeros(0, np.int64),
    )
    _records, _proofs, state = _history()
    win = state.window(EPOCHS[0], EPOCHS[-1])
    table = compute_pairs(compact, win, now=NOW, epoch_s=EPOCH_S, params=PARAMS)
    assert table.receipt_lost.tobytes() == by_digests.receipt_lost.tobytes()
    assert table.disputes_lost.tobytes() == by_digests.disputes_lost.tobytes()
    assert table.receipt_lost.any()
