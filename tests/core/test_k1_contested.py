"""A k = 1 ``wrong`` verdict that the replicas refute costs the client credibility, on
records views and on digest views alike (docs/core.md, "Live escalation at k = 1").

One history: honest traffic; per epoch a slandering client judges two of its k = 1 tasks
on an honest victim ``wrong`` and escalates them to three honest replicas that all agree
with the victim (a *contested* task: no two outputs, only the client's verdict); an honest
client judges a k = 1 result of a cheater ``wrong`` and four honest replicas outvote it.
Scored from every per-task record (``compute``) and from the digests' count rows plus the
contested dispute proofs (offer, verdict, claims, receipts: ``compute_pairs``).
"""

from __future__ import annotations

import dataclasses
import random

import pytest

from repp2p.digests.disputes import check_dispute_proof, dispute_proof, records_of
from repp2p.errors import ProofError, ProofReason
from repp2p.records import Outcome, sign
from repp2p.reputation import collect, compute
from repp2p.reputation.pairs import PairState, compute_pairs, widen
from repp2p.store import SqliteRecordStore
from repp2p.testing import factories
from tests.core.test_pairs_disputes import (
    CHEATER,
    CLIENTS,
    EPOCH_S,
    EPOCHS,
    HONEST,
    NODES,
    NOW,
    PARAMS,
    _verdicts,
)
from tests.digests.dispute_fixtures import checked_proofs, disputed_task, epoch_rows, traffic

SLANDERER = factories.identity("dclient-k1-slanderer")
VICTIM = HONEST[0]


def _contested(client, epoch, label, runs, verdict_of, expires, *, with_verdict=True):
    """A k = 1 task of ``client`` run first by ``runs[0]``'s node, then by the replicas of
    ``runs[1:]``; the client's ``wrong`` verdict on the first node. ``(records, proof)``:
    the proof carries the verdict unless ``with_verdict`` is false."""
    records, offer, pairs = disputed_task(client, epoch, label, runs, verdict_of, expires)
    assert offer.record.redundancy == 1
    verdict = next(
        r for r in records if r.type == "Feedback" and r.record.node == runs[0][0].peer_id
    )
    assert verdict.record.outcome == "wrong"
    return records, dispute_proof(offer, pairs, verdict if with_verdict else None)


def _base_epoch(rng: random.Random, epoch: int, expires: int) -> list:
    """One epoch's honest traffic and the slanderer's 20 ``ok`` tasks elsewhere (its
    trust): every record of each."""
    tasks = traffic(rng, CLIENTS, NODES, epoch, 36, expires)
    for i in range(20):
        tasks += factories.task_records(
            SLANDERER, HONEST[1 + i % 5], epoch, f"k{epoch}-{i}", expires=expires
        ).all()
    return tasks


def _history(
    *, slander: bool = True, cheat: bool = True, with_verdict: bool = True, digest: str = "true"
):
    """Per epoch: honest traffic, the slanderer's 20 ``ok`` tasks elsewhere (its trust),
    its two contested tasks on the victim (``wrong`` when ``slander``; else no escalation,
    ``ok``), and, when ``cheat``, one contested task of an honest client on the cheater.
    ``digest``: what the slanderer's feedback digests report of its contested tasks:
    ``true``, ``omit`` (no feedback at all) or ``resign`` (each verdict re-signed ``ok``
    at a higher seq, the version its digest summarises). Returns ``(records, epoch rows,
    proofs)``."""
    expires = factories.far_future(NOW)
    rng = random.Random(11)
    records, rows, proofs = [], [], []
    for e in EPOCHS:
        tasks = _base_epoch(rng, e, expires)
        for i in range(2):
            if not slander:
                tasks += factories.task_records(
                    SLANDERER, VICTIM, e, f"v{e}-{i}", expires=expires
                ).all()
                continue
            runs = [(VICTIM, "right"), *((h, "right") for h in HONEST[1:4])]
            recs, proof = _contested(
                SLANDERER,
                e,
                f"v{e}-{i}",
                runs,
                # a check that fails every output: wrong on the replicas too
                lambda _node, _out: "wrong",
                expires,
                with_verdict=with_verdict,
            )
            if digest == "omit":
                recs = [r for r in recs if r.type != "Feedback"]
            elif digest == "resign":
                recs = [
                    sign(dataclasses.replace(r.record, outcome="ok", rating=90, seq=2), SLANDERER)
                    if r.type == "Feedback"
                    else r
                    for r in recs
                ]
            tasks += recs
            proofs.append(proof)
        if cheat:
            runs = [(CHEATER, "bad"), *((h, "right") for h in HONEST[1:5])]
            recs, proof = _contested(
                CLIENTS[0],
                e,
                f"c{e}",
                runs,
                lambda _node, out: "ok" if out == "right" else "wrong",
                expires,
            )
            tasks += recs
            proofs.append(proof)
        records += tasks
        rows.append(epoch_rows([*NODES, *CLIENTS, SLANDERER], tasks, e, expires))
    return records, rows, proofs


def _ads():
    ad = factories.sample_records(now=NOW)[0]
    return [sign(ad, n) for n in NODES], _verdicts(ad)


def _by_records(records):
    ads, verdicts = _ads()
    return compute(
        collect(records + ads, verdicts, now=NOW), now=NOW, epoch_s=EPOCH_S, params=PARAMS
    )


def _by_digests(rows, proofs):
    ads, verdicts = _ads()
    checked = checked_proofs(proofs, verdicts, NODES, epochs=(EPOCHS[0], EPOCHS[-1]), now=NOW)
    state = PairState()
    for e, r, ids in rows:
        state.fold(e, r, ids)
    win = state.window(EPOCHS[0], EPOCHS[-1])
    ev = widen(collect(ads + records_of(checked), verdicts, now=NOW), win.peers)
    return compute_pairs(ev, win, now=NOW, epoch_s=EPOCH_S, params=PARAMS)


def _cred(table, who) -> float:
    return float(table.client_credibility[table.peers.index(who.peer_id)])


@pytest.fixture(scope="module")
def history():
    return _history()


def test_a_refuted_k1_verdict_lowers_the_client_on_records_views(history):
    records, _rows, _proofs = history
    table = _by_records(records)
    assert _cred(table, SLANDERER) < 0.5
    # the honest client whose verdict the replicas upheld keeps full credibility
    assert _cred(table, CLIENTS[0]) == 1.0
    # the same history where the slanderer said ok (and escalated nothing)
    clean, _r, _p = _history(slander=False)
    assert _cred(_by_records(clean), SLANDERER) == 1.0
    # the victim, upheld by every replica, lost nothing
    assert table.get(VICTIM.peer_id).disputes_lost == 0


def test_a_refuted_k1_verdict_lowers_the_client_on_digest_views(history):
    _records, rows, proofs = history
    table = _by_digests(rows, proofs)
    assert _cred(table, SLANDERER) < 0.5
    assert _cred(table, CLIENTS[0]) == 1.0
    assert table.get(VICTIM.peer_id).disputes_lost == 0
    # without the proofs nothing refutes it (its bare wrongs count for nothing either)
    assert _cred(_by_digests(rows, []), SLANDERER) == 1.0


def test_an_upheld_k1_verdict_convicts_the_node_on_both_paths(history):
    records, rows, proofs = history
    for table in (_by_records(records), _by_digests(rows, proofs)):
        assert table.get(CHEATER.peer_id).disputes_lost > 0
        for h in HONEST:
            assert table.get(h.peer_id).disputes_lost == 0
        assert table.get(CHEATER.peer_id).quality < min(
            table.get(h.peer_id).quality for h in HONEST
        )


def test_both_paths_judge_the_contested_tasks_alike(history):
    """The same receipts are upheld and lost on both paths (the rule is one:
    ``dispute_verdicts`` over the task's receipts, the client's verdict not a vote)."""
    records, rows, proofs = history
    by_r, by_d = _by_records(records), _by_digests(rows, proofs)
    for who in (CHEATER, *HONEST):
        assert by_r.get(who.peer_id).disputes_lost == by_d.get(who.peer_id).disputes_lost
    # and the refuted verdicts cost the slanderer the same credibility, to the bit
    assert _cred(by_d, SLANDERER) == _cred(by_r, SLANDERER) < 1.0


def test_an_agreeing_proof_needs_the_verdict():
    """Without the client's verdict an all-agreeing task proves nothing: refused, typed."""
    _records, _rows, proofs = _history(cheat=False, with_verdict=False)
    _unused, verdicts = _ads()
    with pytest.raises(ProofError) as err:
        check_dispute_proof(
            proofs[0],
            now=NOW,
            epochs=(EPOCHS[0], EPOCHS[-1]),
            verdict_of=lambda peer, _e: verdicts.get(peer),
            ranks_of=lambda offer: {n.peer_id: frozenset({0}) for n in NODES},
        )
    assert err.value.reason is ProofReason.NO_OFFENCE


@pytest.mark.parametrize("digest", ["omit", "resign"])
def test_a_slanderer_cannot_take_back_a_verdict_its_proof_carries(history, digest):
    """The contested proof's verdict counts as the client's ``wrong`` on that node for that
    task whatever its feedback digest says: leaving the verdicts out, or re-signing them
    ``ok`` at a higher seq, does not restore its credibility on digest views."""
    _records, rows, proofs = _history(digest=digest)
    table = _by_digests(rows, proofs)
    assert _cred(table, SLANDERER) < 0.5
    # at least as refuted as the verdicts its proofs carry (each on the victim only: the
    # honest digest also counts its wrongs on the replicas)
    assert _cred(table, SLANDERER) >= _cred(_by_digests(*history[1:]), SLANDERER)
    # the honest client and the nodes are judged as before
    assert _cred(table, CLIENTS[0]) == 1.0
    assert table.get(VICTIM.peer_id).disputes_lost == 0
    assert table.get(CHEATER.peer_id).disputes_lost > 0


def test_a_proof_verdict_changes_nothing_a_truthful_digest_already_counts(history):
    """Per pair the larger of the digest's wrongs and the proofs' verdicts: a client whose
    digest reports its verdicts is judged to the bit as when the proofs carried none of
    them as feedback (what views did before verdicts counted from proofs)."""
    _records, rows, proofs = history
    with_v = _by_digests(rows, proofs)
    ads, verdicts = _ads()
    checked = checked_proofs(proofs, verdicts, NODES, epochs=(EPOCHS[0], EPOCHS[-1]), now=NOW)
    bare = [r for r in records_of(checked) if r.type != "Feedback"]
    state = PairState()
    for e, r, ids in rows:
        state.fold(e, r, ids)
    win = state.window(EPOCHS[0], EPOCHS[-1])
    ev = widen(collect(ads + bare, verdicts, now=NOW), win.peers)
    without = compute_pairs(ev, win, now=NOW, epoch_s=EPOCH_S, params=PARAMS)
    assert with_v.client_credibility.tobytes() == without.client_credibility.tobytes()
    assert with_v.score.tobytes() == without.score.tobytes()


def test_a_slanderer_cannot_take_back_a_verdict_on_records_views(history):
    """Records views: the client re-signs each refuted ``wrong`` as ``ok`` at a higher seq
    and both versions reach every peer (the replicas hold the verdict). The ``wrong`` is
    final (docs/records.md, "Replacement rules"): it stays current in every store and
    every view, in any order of arrival, so the refutation costs the client exactly what
    it did before the re-signing."""
    truthful, _rows, _proofs = history
    resigned, _rows, _proofs = _history(digest="resign")
    ok_versions = [r for r in resigned if r.type == "Feedback" and r.record.seq == 2]
    assert ok_versions and all(r.record.outcome == "ok" for r in ok_versions)
    before = _by_records(truthful)
    for seen in (truthful + ok_versions, ok_versions + truthful):
        table = _by_records(seen)
        assert _cred(table, SLANDERER) < 0.5
        assert table.client_credibility.tobytes() == before.client_credibility.tobytes()
        assert table.score.tobytes() == before.score.tobytes()
    # what the re-signed ok would have bought had it replaced the wrong (the rule before):
    # the verdicts gone from the view, the refutation with them
    assert _cred(_by_records(resigned), SLANDERER) > _cred(before, SLANDERER)


def test_a_store_keeps_the_refuted_verdict_over_its_resigned_ok(tmp_path, history):
    """The same through a record store, as a live records-network peer builds its view."""
    truthful, _rows, _proofs = history
    resigned, _rows, _proofs = _history(digest="resign")
    ok_versions = [r for r in resigned if r.type == "Feedback" and r.record.seq == 2]
    with SqliteRecordStore(tmp_path / "records.db", synchronous="NORMAL") as store:
        outcomes = store.put_many(truthful + ok_versions, now=NOW)
        assert set(outcomes[len(truthful) :]) == {Outcome.STALE}
        held = store.query()
    assert not any(
        r.type == "Feedback" and r.record.outcome == "ok" and r.record.seq == 2 for r in held
    )
    assert _cred(_by_records(held), SLANDERER) == _cred(_by_records(truthful), SLANDERER)


def _praise_history(*, praise: bool, refuted: bool = True):
    """Per epoch: honest traffic, the slanderer's 20 ``ok`` tasks elsewhere (its trust),
    and two of its k = 1 tasks on the victim escalated to three replicas that agree with
    the victim. Its verdict on the victim is ``wrong`` (refuted by the replicas) or, when
    not ``refuted``, ``ok`` (the escalation stands for one a client with a good check
    asked for); on the replicas ``ok`` when ``praise``, else no feedback at all."""
    expires = factories.far_future(NOW)
    rng = random.Random(11)
    records = []
    for e in EPOCHS:
        tasks = _base_epoch(rng, e, expires)
        for i in range(2):
            runs = [(VICTIM, "right"), *((h, "right") for h in HONEST[1:4])]
            first = "wrong" if refuted else "ok"
            recs, _offer, _pairs = disputed_task(
                SLANDERER,
                e,
                f"p{e}-{i}",
                runs,
                lambda node, _out, first=first: first if node is VICTIM else "ok",
                expires,
            )
            if not praise:
                recs = [r for r in recs if r.type != "Feedback" or r.record.node == VICTIM.peer_id]
            tasks += recs
        records += tasks
    return records


def test_a_refuted_verdict_discredits_the_clients_feedback_on_the_replicas_it_called_in():
    """A colluding client slanders an honest node's k = 1 result and praises the replicas
    the escalation reached (its friends among them): the slander is refuted, and none of
    its feedback on that task counts, the praise included (records views; measured in the
    simulator: simulations/results/README.md, 2026-12-04). The same praise on a task whose
    verdict stands counts."""
    replicas = [h.peer_id for h in HONEST[1:4]]

    def mass(records):
        table = _by_records(records)
        return [float(table.get(p).feedback_mass) for p in replicas]

    # (not equal: the praise still enters the trust graph, which is built before the
    # disputes are judged; 127 against 74.5 each when it counted)
    praised, silent = mass(_praise_history(praise=True)), mass(_praise_history(praise=False))
    assert all(a <= b for a, b in zip(praised, silent, strict=True))
    praised = mass(_praise_history(praise=True, refuted=False))
    silent = mass(_praise_history(praise=False, refuted=False))
    assert all(a > b + 50 for a, b in zip(praised, silent, strict=True))
