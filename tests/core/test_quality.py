"""Issue 15: posterior quality, standing-weighted verdicts, refuted slander."""

from __future__ import annotations

import dataclasses

import numpy as np

from repp2p.reputation import ReputationParams, collect, compute
from repp2p.reputation.disputes import dispute_verdicts
from repp2p.reputation.estimates import beta_lcb, beta_posterior
from tests.core import factories as f
from tests.core.conftest import EPOCHS

NOW = EPOCHS * f.EPOCH_S


def table_of(records, verdicts, params=None):
    return compute(collect(records, verdicts, now=NOW), now=NOW, epoch_s=f.EPOCH_S, params=params)


def test_lower_bound_rewards_evidence_and_punishes_thin_bad_histories():
    a, b = beta_posterior(np.array([0.0, 9.0, 90.0]), np.array([0.0, 1.0, 10.0]), 0.7, 5.0)
    lcb = beta_lcb(a, b, 1.0, 0.7)
    # same observed 90% success: the longer history has the higher bound
    assert lcb[0] < lcb[1] < lcb[2] < 0.9
    # z = 0 is the posterior mean
    assert np.allclose(beta_lcb(a, b, 0.0, 0.7), a / (a + b))
    # the same bits in any evaluation (only + - * / sqrt)
    assert beta_lcb(a, b, 1.0, 0.7).tobytes() == lcb.tobytes()


def _verdict(outputs, standing, quorum=2, confidence=0.67, support=1.5):
    n = len(outputs)
    return dispute_verdicts(
        np.zeros(n, np.int64),
        np.array(outputs, np.int64),
        np.array(standing, np.float64),
        np.ones(n, bool),
        1,
        quorum=quorum,
        confidence=confidence,
        min_support=support,
    )


def test_two_colluders_do_not_outvote_one_node_of_equal_standing():
    upheld, lost, decided = _verdict([0, 1, 1], [0.9, 0.9, 0.9])
    assert not decided[0] and not lost.any() and not upheld.any()


def test_escalated_majority_decides():
    # 3 against 2 of equal standing is 60%: still undecided, escalate further
    assert not _verdict([0, 1, 1, 0, 0], [0.9] * 5)[2][0]
    upheld, lost, decided = _verdict([0, 1, 0, 0], [0.9] * 4)
    assert decided[0]
    assert list(lost) == [False, True, False, False]
    assert list(upheld) == [True, False, True, True]


def test_low_standing_majority_cannot_convict_a_high_standing_node():
    # three shaken identities (standing 0.3) against two established nodes
    _, lost, decided = _verdict([0, 0, 1, 1, 1], [0.95, 0.95, 0.3, 0.3, 0.3])
    assert decided[0] and list(lost) == [False, False, True, True, True]
    # thin identities alone lack the support to decide anything
    _, _, decided = _verdict([1, 1, 1], [0.4, 0.4, 0.4])
    assert not decided[0]


def _with_replicas(base, client, node, outcome, output, replicas, n_tasks=6):
    s = dataclasses.replace(base, records=list(base.records))
    for i in range(n_tasks):
        off = f.offer(client, f"{client}/{node}/{i}", EPOCHS - 2)
        s.records += [off, f.claim(node, off), f.receipt(node, off, output=output)]
        s.records.append(f.feedback(client, off, node, outcome))
        for r in replicas:
            s.records += [f.claim(r, off, rank=1), f.receipt(r, off, output="right")]
    return s


def test_slander_upheld_by_replicas_is_refuted(base):
    # c0 has a long good history (trusted); it now reports n0 wrong on right results
    alone = _with_replicas(base, "c0", "n0", "wrong", "right", ())
    checked = _with_replicas(base, "c0", "n0", "wrong", "right", ("n1", "n2"))
    t_alone, t_checked = (table_of(s.records, base.attested) for s in (alone, checked))
    q_alone = t_alone.get(f.peer("n0")).quality
    q_checked = t_checked.get(f.peer("n0")).quality
    assert q_checked > q_alone
    assert t_checked.get(f.peer("n0")).disputes_lost == 0.0
    # and the slanderer's other verdicts weigh less: its praise of n3 moves n3 less
    assert t_checked.get(f.peer("n3")).feedback_mass < t_alone.get(f.peer("n3")).feedback_mass


def test_confirmed_wrong_result_is_graduated_not_hard(base):
    caught = _with_replicas(base, "c0", "n0", "wrong", "forged", ("n1", "n2"), n_tasks=2)
    t = table_of(caught.records, base.attested)
    r = t.get(f.peer("n0"))
    assert r.disputes_lost > 0 and not r.is_offender
    clean = table_of(base.records, base.attested).get(f.peer("n0"))
    assert r.quality < clean.quality - 0.2
    assert r.permille < clean.permille
    # the replicas that outvoted it lost nothing
    assert t.get(f.peer("n1")).disputes_lost == 0.0


def test_new_parameters_are_validated():
    import pytest

    from repp2p.errors import ConfigError
    from repp2p.matching import MatchingParams

    for bad in (
        {"bad_weight": 0.5},
        {"dispute_confidence": 0.4},
        {"quality_z": -1.0},
        {"wrong_result_hard": 1},
    ):
        with pytest.raises(ConfigError):
            ReputationParams(**bad)
    for bad in ({"tier_headroom_permille": -1}, {"quality_first": 0}, {"dispute_max_replicas": 65}):
        with pytest.raises(ConfigError):
            MatchingParams(**bad)


def test_serving_tier_takes_the_best_until_the_demand_is_covered():
    from repp2p.matching.view import serving_tier

    n = 10
    quality = np.array([900, 100, 950, 950, 500, 980, 200, 940, 930, 600], np.int64)
    cand = np.ones(n, bool)
    cand[5] = False  # best quality but not eligible
    words = np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    cap = np.full(n, 10, np.int64)
    # demand 30 with 25% headroom needs 37.5: four nodes of 10
    tier = serving_tier(cand, quality, cap, words, 7, 30, 250)
    assert set(np.flatnonzero(tier)) == {2, 3, 7, 8}
    # no headroom: three
    assert np.count_nonzero(serving_tier(cand, quality, cap, words, 7, 30, 0)) == 3
    # no demand yet: every candidate
    assert (serving_tier(cand, quality, cap, words, 7, 0, 250) == cand).all()
    # ties broken by a per-epoch hash, not by index: some epoch picks node 3 over node 2
    eq = np.full(n, 500, np.int64)
    picks = {int(np.flatnonzero(serving_tier(cand, eq, cap, words, e, 5, 0))[0]) for e in range(20)}
    assert len(picks) > 3


def test_recent_demand_counts_redundancy_not_escalation_replicas():
    from repp2p.matching.view import recent_demand
    from repp2p.reputation import Evidence

    # epoch 4: three offers at k = 2 (two claims each) and one escalated to five claims
    offer_epoch = [4, 4, 4, 4, 3]
    claims = [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]
    claims += [(3, 3), (3, 4), (4, 0)]
    ev = Evidence.from_columns(
        [f"p{i}" for i in range(5)],
        offer_client=[0] * 5,
        offer_epoch=offer_epoch,
        offer_deadline_ms=[0] * 5,
        claim_offer=[o for o, _ in claims],
        claim_node=[n for _, n in claims],
    )
    assert recent_demand(ev, 5) == 4 * 2  # four offers x median two claims
    assert recent_demand(ev, 4) == 1  # epoch 3: one offer, one claim
    assert recent_demand(ev, 9) == 0  # nothing in the three epochs before
