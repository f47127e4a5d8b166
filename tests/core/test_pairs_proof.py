"""Views from digests count a client's ``wrong`` only as far as a dispute proof backs it
(docs/core.md, "Verdicts backed by proof").

One history, scored from its digests' count rows plus the records of the disputed tasks
(what dispute proofs carry): a slandering client reports ``wrong`` on every task of an
honest node (bare counts), and escalates some of them, where honest replicas uphold the
node (refuted slander); an honest client catches a cheater whose wrong result four honest
replicas outvote (proven). Compared with the same history where the slanderer says ``ok``.
"""

from __future__ import annotations

import dataclasses
import random

from repp2p.digests import build_feedback, build_work, count_rows, reconcile
from repp2p.digests.disputes import dispute_proof, records_of
from repp2p.records import sign
from repp2p.reputation import collect
from repp2p.reputation.pairs import PairState, compute_pairs, widen
from repp2p.testing import factories
from tests.core.test_pairs_disputes import (
    CHEATER,
    CLIENTS,
    COLLUDERS,
    EPOCH_S,
    EPOCHS,
    HONEST,
    NODES,
    NOW,
    PARAMS,
    _verdicts,
)
from tests.digests.dispute_fixtures import checked_proofs, disputed_task, epoch_rows, traffic

SLANDERER = factories.identity("dclient-slanderer")
VICTIM = HONEST[0]
#: How far bare slander may move the victim's quality below its honest history's: the
#: slandered tasks count neither for nor against it (here 15 of its ~20 tasks an epoch), so
#: only the lower confidence bound of a smaller sample moves.
QUALITY_BOUND = 0.05


def _dispute(client, epoch, label, runs, verdict_of, expires):
    """A task run by every ``(node, output)`` of ``runs``, the client's verdict on each
    node given by ``verdict_of(node, output)``; ``(records, proof)``."""
    records, offer, pairs = disputed_task(client, epoch, label, runs, verdict_of, expires)
    return records, dispute_proof(offer, pairs)


def _history(*, slander: bool, refute: bool = True, cheat: bool = True, prover=None):
    """Honest traffic on every node; per epoch the slanderer's 15 tasks on the victim
    (``wrong`` when ``slander``, else ``ok``) and 20 ``ok`` ones elsewhere, and one more
    escalated to three honest replicas and a colluding one when ``refute``; one wrong
    result of the cheater outvoted by four honest replicas when ``cheat``, on a task of
    ``prover`` (default an honest client). Returns ``(epoch rows, proofs)``."""
    expires = factories.far_future(NOW)
    rng = random.Random(5)
    rows, proofs = [], []
    for e in EPOCHS:
        tasks = traffic(rng, CLIENTS, NODES, e, 36, expires)
        verdict = "wrong" if slander else "ok"
        for i in range(20):  # its honest-looking traffic elsewhere earns it trust
            tasks += factories.task_records(
                SLANDERER, HONEST[1 + i % 5], e, f"t{e}-{i}", expires=expires
            ).all()
        for i in range(15):
            tasks += factories.task_records(
                SLANDERER, VICTIM, e, f"s{e}-{i}", outcome=verdict, expires=expires
            ).all()
        if refute:
            # a proof needs receipts that disagree: a colluding replica frames the victim
            runs = [(VICTIM, "right"), *((h, "right") for h in HONEST[1:4]), (COLLUDERS[0], "x")]
            recs, proof = _dispute(
                SLANDERER,
                e,
                f"r{e}",
                runs,
                lambda node, _out, v=verdict: v if node is VICTIM else "ok",
                expires,
            )
            tasks += recs
            proofs.append(proof)
        if cheat:
            runs = [(CHEATER, "bad"), *((h, "right") for h in HONEST[1:5])]
            recs, proof = _dispute(
                prover or CLIENTS[0],
                e,
                f"c{e}",
                runs,
                lambda _node, out: "ok" if out == "right" else "wrong",
                expires,
            )
            tasks += recs
            proofs.append(proof)
        rows.append(epoch_rows([*NODES, *CLIENTS, SLANDERER], tasks, e, expires))
    return rows, proofs


def _cred(table, who) -> float:
    return float(table.client_credibility[table.peers.index(who.peer_id)])


def _state(rows, order=None) -> PairState:
    state = PairState()
    for e, r, ids in order(rows) if order else rows:
        state.fold(e, r, ids)
    return state


def _table(rows, proofs, *, with_proofs: bool = True, state: PairState | None = None):
    ad = factories.sample_records(now=NOW)[0]
    ads = [sign(ad, n) for n in NODES]
    verdicts = _verdicts(ad)
    checked = checked_proofs(
        (proofs if with_proofs else []), verdicts, NODES, epochs=(EPOCHS[0], EPOCHS[-1]), now=NOW
    )
    win = (state or _state(rows)).window(EPOCHS[0], EPOCHS[-1])
    ev = widen(collect(ads + records_of(checked), verdicts, now=NOW), win.peers)
    return compute_pairs(ev, win, now=NOW, epoch_s=EPOCH_S, params=PARAMS)


def test_bare_slander_does_not_sink_an_honest_node():
    honest = _table(*_history(slander=False, refute=False))
    slandered = _table(*_history(slander=True, refute=False))
    q_honest = honest.get(VICTIM.peer_id).quality
    q_slandered = slandered.get(VICTIM.peer_id).quality
    assert q_slandered >= q_honest - QUALITY_BOUND, (q_honest, q_slandered)
    # and it stays with the other honest nodes, above the cheater
    assert q_slandered > slandered.get(CHEATER.peer_id).quality
    others = [slandered.get(h.peer_id).quality for h in HONEST[1:]]
    assert q_slandered >= min(others) - QUALITY_BOUND
    # the success component sees no bad evidence from the slanderer's 90 bare "wrong"s
    assert slandered.get(VICTIM.peer_id).success >= honest.get(VICTIM.peer_id).success - 0.02


def test_a_proven_wrong_result_lowers_the_cheater():
    rows, proofs = _history(slander=False, refute=False)
    proven = _table(rows, proofs)
    bare = _table(rows, proofs, with_proofs=False)
    cheater_p, cheater_b = proven.get(CHEATER.peer_id), bare.get(CHEATER.peer_id)
    assert cheater_p.disputes_lost > 0 and cheater_b.disputes_lost == 0
    assert cheater_p.quality < cheater_b.quality
    assert cheater_p.success < cheater_b.success
    # the client's "wrong" verdicts now count: more feedback mass on the cheater
    assert cheater_p.feedback_mass > cheater_b.feedback_mass
    for h in HONEST:
        assert proven.get(h.peer_id).quality > cheater_p.quality
    # the honest client whose verdicts were proven keeps full credibility
    assert _cred(proven, CLIENTS[0]) == 1.0


def test_refuted_slander_lowers_the_client_credibility():
    rows, proofs = _history(slander=True, refute=True)
    table = _table(rows, proofs)
    slanderer = _cred(table, SLANDERER)
    assert slanderer < 1.0
    assert all(_cred(table, c) == 1.0 for c in CLIENTS)
    # without the proofs nothing refutes it
    assert _cred(_table(rows, proofs, with_proofs=False), SLANDERER) == 1.0
    # a client that said "ok" on the same escalated tasks is not hit
    rows_ok, proofs_ok = _history(slander=False, refute=True)
    assert _cred(_table(rows_ok, proofs_ok), SLANDERER) == 1.0
    # the victim, upheld by its replicas, is not lowered below its honest history
    honest = _table(rows_ok, proofs_ok).get(VICTIM.peer_id).quality
    assert table.get(VICTIM.peer_id).quality >= honest - QUALITY_BOUND


def test_proof_weighted_views_are_deterministic():
    """Any fold order, and a restarted peer that folds the blocks again, give the same
    bits with proofs judged (credibility, quality, standing, scores)."""
    rows, proofs = _history(slander=True, refute=True)
    first = _table(rows, proofs)
    shuffled = _table(
        rows, proofs, state=_state(rows, order=lambda r: random.Random(3).sample(r, len(r)))
    )
    restarted = _table(rows, proofs, state=_state(list(reversed(rows))))
    for other in (shuffled, restarted):
        for field in (
            "score",
            "permille",
            "quality",
            "standing",
            "client_credibility",
            "disputes_lost",
            "feedback_mass",
        ):
            assert getattr(first, field).tobytes() == getattr(other, field).tobytes(), field


def test_the_bound_on_unproven_verdicts():
    """Unproven ``wrong`` counts of a pair weigh at most as much again as its proven ones:
    a client with one proof on a node cannot sink it with many bare verdicts."""
    rows, proofs = _history(slander=False, refute=False)
    base = _table(rows, proofs).get(CHEATER.peer_id)
    # the same proofs, plus ten bare "wrong"s per epoch from the same client on the cheater
    expires = factories.far_future(NOW)
    extra_rows = []
    for (e, _r, _ids), (_e2, r2, ids2) in zip(rows, rows, strict=True):
        tasks = [
            rec
            for i in range(10)
            for rec in factories.task_records(
                CLIENTS[0], CHEATER, e, f"x{e}-{i}", outcome="wrong", expires=expires
            ).all()
        ]
        digests = [
            sign(p.digest, who)
            for who in (CHEATER, CLIENTS[0])
            for build in (build_work, build_feedback)
            for p in build(who.peer_id, tasks, e, expires=expires)
        ]
        extra = {(x.client, x.node): x for x in count_rows(reconcile(digests, e))}
        merged = []
        for x in r2:
            y = extra.pop((x.client, x.node), None)
            if y is not None:
                x = dataclasses.replace(
                    x,
                    wrong=x.wrong + y.wrong,
                    node_claims=x.node_claims + y.node_claims,
                    node_receipts=x.node_receipts + y.node_receipts,
                )
            merged.append(x)
        extra_rows.append((e, merged, ids2))
    more = _table(extra_rows, proofs).get(CHEATER.peer_id)
    assert more.quality <= base.quality  # more evidence may only count against it...
    # ...bounded: the 60 bare verdicts add at most as much bad mass as the proven ones
    # (bad mass = feedback mass - good; the good mass is the same)
    assert more.feedback_mass - base.feedback_mass <= base.feedback_mass


def test_proofs_against_a_sacrificed_colluder_buy_no_slander():
    """The slanderer proves its own colluder's wrong results (credibility up), then
    slanders the victim with bare verdicts: the bound is per pair, so the victim stays
    within the bound of its honest history."""
    honest = _table(*_history(slander=False, refute=False, prover=SLANDERER))
    table = _table(*_history(slander=True, refute=False, prover=SLANDERER))
    assert _cred(table, SLANDERER) == 1.0  # its proofs back it, nothing refutes it
    assert table.get(CHEATER.peer_id).disputes_lost > 0
    q_honest = honest.get(VICTIM.peer_id).quality
    assert table.get(VICTIM.peer_id).quality >= q_honest - QUALITY_BOUND
