"""Streaming EigenTrust (docs/core.md, "Streaming EigenTrust"): trust chains warm-start the
views, and the vector is a function of the folded window alone, whatever a peer's past."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from repp2p.errors import ConfigError
from repp2p.reputation import Evidence, ReputationParams, compute, eigentrust
from repp2p.reputation.pairs import PairState, compute_pairs, widen
from repp2p.reputation.scores import chain_anchors

from .test_pairs import CLIENTS, EPOCH_S, NODES, _history, _nodes_evidence, _row, _same

LAG = 5
STREAM = ReputationParams(
    window_epochs=20, trust_view_steps=1, trust_chain_steps=4, trust_chain_epochs=7
)
EXACT = ReputationParams(window_epochs=20)


def _view(state: PairState, epoch: int, params: ReputationParams = STREAM):
    win = state.window(epoch - LAG - params.window_epochs + 1, epoch - LAG)
    ev, peer_at = state.widen(_nodes_evidence(), win)
    return compute_pairs(
        ev, win, now=epoch * EPOCH_S, epoch_s=EPOCH_S, params=params, peer_at=peer_at
    )


def _fold(history, order, state=None) -> PairState:
    state = state or PairState(compact_slack=0)
    for e in order:
        state.fold(e, history[e], [bytes([e % 256]) * 32])
    return state


def test_chain_schedule() -> None:
    assert chain_anchors(0, 7) == (-7, 0)
    assert chain_anchors(13, 7) == (0, 7)
    assert chain_anchors(14, 7) == (7, 14)
    assert chain_anchors(-1, 7) == (-14, -7)


def test_a_running_peer_and_a_restarted_one_get_identical_bits() -> None:
    """A peer that folded every epoch and built every view (its chains advanced one
    epoch at a time, pruning as it went) and peers that folded the window in any order
    and built one view (chains replayed from the blocks) agree bit for bit."""
    history = _history(11, range(40, 121))
    running = PairState(compact_slack=0)
    tables = {}
    for epoch in range(60, 126):
        running.fold(epoch - LAG, history[epoch - LAG], [bytes([epoch % 256]) * 32])
        running.prune(epoch - LAG - STREAM.window_epochs - 2)
        tables[epoch] = _view(running, epoch)
    for epoch in (75, 97, 111, 125):  # inside a chain period, at and after an anchor
        window = range(epoch - LAG - STREAM.window_epochs + 1, epoch - LAG + 1)
        order = random.Random(epoch).sample(list(window), len(window))
        restarted = _fold(history, order)
        _same(_view(restarted, epoch), tables[epoch])
    # the chains are not the exact path: a view's trust differs from 30 fresh steps
    exact = _view(_fold(history, range(96, 116)), 120, EXACT)
    assert exact.client_trust.tobytes() != tables[120].client_trust.tobytes()
    assert np.max(np.abs(exact.client_trust - tables[120].client_trust)) < 0.05


def test_a_view_of_a_past_epoch_replays_and_keeps_the_newer_chains() -> None:
    history = _history(12, range(40, 110))
    state = _fold(history, range(40, 105))
    late = _view(state, 108)
    past = _view(state, 104)  # older chains: replayed, not read from the newer ones
    _same(past, _view(_fold(history, range(79, 100)), 104))
    _same(_view(state, 108), late)


def test_a_late_fold_inside_a_chain_is_replayed() -> None:
    history = _history(13, range(60, 100))
    partial = _fold(history, [e for e in range(60, 96) if e != 90])
    before = _view(partial, 100)
    partial.fold(90, history[90], [bytes([90]) * 32])  # counted by the chains already
    after = _view(partial, 100)
    _same(after, _view(_fold(history, range(60, 96)), 100))
    assert before.client_trust.tobytes() != after.client_trust.tobytes()


def test_streaming_converges_to_the_exact_vector_on_a_static_matrix() -> None:
    """Every epoch the same rows: each view's graph is the same, so the warm vector has
    taken at least ``trust_iterations`` steps on it and lands at least as near the fixed
    point as the exact path's 30 steps."""
    rng = random.Random(14)
    rows = sorted(
        {(rng.choice(CLIENTS), rng.choice(NODES)) for _ in range(30)}
        | {(n, NODES[(i + 1) % len(NODES)]) for i, n in enumerate(NODES)}
    )
    history = {
        e: [_row(e, c, n, ok=1 + (hash((c, n)) % 3), timeout=(c < "client-03")) for c, n in rows]
        for e in range(0, 140)
    }
    state = _fold(history, range(0, 136))
    fixed = _view(state, 140, ReputationParams(window_epochs=20, trust_iterations=1000))
    exact = _view(state, 140, EXACT)
    for epoch in (128, 134, 140):  # early and late in a chain's reading period
        stream = _view(state, epoch)
        err_stream = np.max(np.abs(stream.client_trust - fixed.client_trust))
        err_exact = np.max(np.abs(exact.client_trust - fixed.client_trust))
        assert err_stream <= err_exact
        assert err_stream < 1e-3
    assert exact.client_trust.tobytes() != fixed.client_trust.tobytes()


def test_eigentrust_from_a_fixed_point_stays_there() -> None:
    rng = np.random.default_rng(15)
    n = 40
    src, dst = rng.integers(0, n, 300), rng.integers(0, n, 300)
    weight = rng.integers(0, 5, 300).astype(np.float64)
    pre = np.zeros(n, bool)
    pre[:5] = True
    fixed = eigentrust(n, src, dst, weight, pre, alpha=0.15, iterations=2000)
    again = eigentrust(n, src, dst, weight, pre, alpha=0.15, iterations=3, start=fixed)
    assert np.max(np.abs(again - fixed)) < 1e-15
    # started anywhere, it converges to the same vector
    far = eigentrust(n, src, dst, weight, pre, alpha=0.15, iterations=400, start=np.ones(n))
    assert np.max(np.abs(far - fixed)) < 1e-12


def test_records_path_streams_deterministically_and_fresh_sybils_weigh_nothing() -> None:
    """The records path replays the chain from the evidence: a pure function; Sybil
    clients nobody vouches for have trust exactly 0, as on the exact path."""
    nodes = [f"n{i}" for i in range(5)]
    clients = [f"c{i}" for i in range(8)] + [f"sybil{i}" for i in range(6)]
    peers = sorted(nodes + clients)
    ix = {p: i for i, p in enumerate(peers)}
    rng = np.random.default_rng(16)
    m = 400
    client = rng.integers(0, 8, m)
    node = rng.integers(0, 5, m)
    offer_epoch = rng.integers(60, 100, m)
    fb_client = np.array([ix[f"c{c}"] for c in client])
    fb_node = np.array([ix[f"n{n}"] for n in node])
    # Sybils own offers and report on n0 without any claim or receipt behind them
    syb = np.array([ix[f"sybil{i}"] for i in range(6)])
    offers = np.arange(m)
    is_node = np.array([p.startswith("n") for p in peers])
    order = np.lexsort((fb_node, fb_client))
    ev = Evidence.from_columns(
        peers,
        is_node=is_node,
        capacity=np.where(is_node, 4, 0),
        verified=is_node,
        consistent=is_node,
        attested_at=np.full(len(peers), 100 * EPOCH_S),
        offer_client=np.concatenate((fb_client, syb)),
        offer_epoch=np.concatenate((offer_epoch, np.full(6, 98))),
        offer_deadline_ms=np.concatenate(((offer_epoch * EPOCH_S + 30) * 1000, np.zeros(6))),
        claim_node=fb_node,
        claim_offer=offers,
        receipt_node=fb_node,
        receipt_offer=offers,
        receipt_output=offers,
        fb_client=np.concatenate((fb_client[order], syb)),
        fb_node=np.concatenate((fb_node[order], np.full(6, ix["n0"]))),
        fb_offer=np.concatenate((offers[order], m + np.arange(6))),
        fb_outcome=np.concatenate((np.zeros(m, np.int64), np.ones(6, np.int64))),
        fb_latency_ms=np.full(m + 6, 100),
        fb_rating=np.full(m + 6, 100),
    )
    params = ReputationParams(
        window_epochs=50, trust_view_steps=1, trust_chain_steps=4, trust_chain_epochs=8
    )
    a = compute(ev, now=100 * EPOCH_S, epoch_s=EPOCH_S, params=params)
    b = compute(ev, now=100 * EPOCH_S, epoch_s=EPOCH_S, params=params)
    _same(a, b)
    exact = compute(
        ev, now=100 * EPOCH_S, epoch_s=EPOCH_S, params=ReputationParams(window_epochs=50)
    )
    assert a.client_trust.tobytes() != exact.client_trust.tobytes()
    assert np.max(np.abs(a.client_trust - exact.client_trust)) < 0.02
    for i in range(6):
        assert a.get(f"sybil{i}").client_trust == 0.0
    assert a.get("c0").client_trust > 0.0


def _bare(win):
    """The same window without its state (compute_pairs sums its rows)."""
    return dataclasses.replace(win, state=None, sids=None)


def test_sums_by_block_equal_sums_by_row() -> None:
    history = _history(18, range(60, 100))
    for e in (70, 80, 90):  # refused tasks and silent nodes exercise every column
        history[e] = [
            *history[e],
            _row(e, "client-zz", NODES[3], ok=2, timeout=1, latency=90_000, claims=4),
            _row(e, "client-zy", NODES[4], disputed_client=2, node_silent=True, claims=0),
        ]
        history[e][-2] = dataclasses.replace(history[e][-2], node_refused=1)
        history[e] = sorted(history[e])
    state = _fold(history, range(60, 100))
    win = state.window(76, 95)
    ev = widen(_nodes_evidence(), win.peers)
    for params in (EXACT, ReputationParams(window_epochs=20, bad_half_life_epochs=7.0)):
        a = compute_pairs(ev, win, now=100 * EPOCH_S, epoch_s=EPOCH_S, params=params)
        b = compute_pairs(ev, _bare(win), now=100 * EPOCH_S, epoch_s=EPOCH_S, params=params)
        _same(a, b)
        assert a.client_credibility.tobytes() == b.client_credibility.tobytes()


def test_streaming_needs_windows_from_a_state() -> None:
    state = _fold(_history(17, range(60, 80)), range(60, 80))
    win = state.window(56, 75)
    bare = _bare(win)
    ev = widen(_nodes_evidence(), win.peers)
    with pytest.raises(ValueError, match="PairState"):
        compute_pairs(ev, bare, now=80 * EPOCH_S, epoch_s=EPOCH_S, params=STREAM)


def test_streaming_parameters_are_validated() -> None:
    with pytest.raises(ConfigError, match="trust_chain_steps"):
        ReputationParams(trust_view_steps=1, trust_chain_steps=1, trust_chain_epochs=10)
    with pytest.raises(ConfigError, match="trust_view_steps"):
        ReputationParams(trust_view_steps=-1)
    with pytest.raises(ConfigError, match="trust_chain_epochs"):
        ReputationParams(trust_view_steps=1, trust_chain_epochs=0)
    with pytest.raises(ConfigError, match="window_epochs"):
        ReputationParams(window_epochs=50, trust_view_steps=1, trust_chain_epochs=30)
    ok = ReputationParams(trust_view_steps=1, trust_chain_steps=1, trust_chain_epochs=29)
    assert ok.is_streaming_trust and not ReputationParams().is_streaming_trust
