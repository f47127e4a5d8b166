"""Pinned bits of views from count rows: a fixed history gives a known table.

The per-pair sums, the trust graphs and the verdict weights of
:func:`~repp2p.reputation.pairs.compute_pairs` have been re-arranged for speed (one pass
per column over cached per-block columns, sums over the window's pairs only, zero sums
taken as such); every peer must still get the very bits it got before. These digests were
taken from the code before those changes: a change of any output bit of a view, however
small, fails here (the view digest alone names the view's sources, not its scores).
"""

from __future__ import annotations

import dataclasses
import hashlib
import random

import numpy as np
import pytest

from repp2p.digests import CountRow
from repp2p.reputation import Evidence, ReputationParams
from repp2p.reputation.pairs import PairState, compute_pairs

EPOCH_S = 60
NODES = [f"node-{i:02d}" for i in range(8)]
CLIENTS = [f"client-{i:02d}" for i in range(16)]
EXACT = ReputationParams(window_epochs=20)
STREAM = ReputationParams(
    window_epochs=20, trust_view_steps=1, trust_chain_steps=4, trust_chain_epochs=7
)
TABLE_ARRAYS = (
    "score",
    "permille",
    "components",
    "feedback_mass",
    "client_trust",
    "is_newcomer",
    "is_offender",
    "quality",
    "standing",
    "disputes_lost",
    "client_credibility",
)


def _history(seed: int, epochs: range, *, rare: bool) -> dict[int, list[CountRow]]:
    """Every column of a count row in use: wrong, timeout, bad proof, latency, claims,
    receipts, a node that is also a client of itself and, with ``rare``, silent nodes and
    refused inputs (without them, the view takes their sums as zeros)."""
    rng = random.Random(seed)
    out = {}
    for e in epochs:
        pairs = {(rng.choice(CLIENTS + NODES[:2]), rng.choice(NODES)) for _ in range(40)}
        rows = []
        for client, node in sorted(pairs):
            ok = rng.randrange(0, 6)
            wrong = rng.randrange(0, 3) if node == NODES[0] else int(rng.random() < 0.1)
            timeout = int(rng.random() < 0.2)
            bad = int(rng.random() < 0.05)
            counted = ok + wrong + timeout + bad
            silent = rare and rng.random() < 0.05
            rows.append(
                CountRow(
                    epoch=e,
                    client=client,
                    node=node,
                    ok=ok,
                    wrong=wrong,
                    timeout=timeout,
                    bad_proof=bad,
                    latency_sum_ms=rng.randrange(0, 2 * EPOCH_S * 1000 * max(counted, 1)),
                    disputed_client=counted if silent else 0,
                    disputed_node=0,
                    node_silent=silent,
                    client_silent=False,
                    node_claims=counted + int(rng.random() < 0.1),
                    node_receipts=ok + wrong + bad,
                    node_refused=int(rare and rng.random() < 0.05),
                )
            )
        out[e] = rows
    return out


def _nodes_evidence(equivocator: str | None) -> Evidence:
    n = len(NODES)
    return Evidence.from_columns(
        NODES,
        is_node=[True] * n,
        capacity=[4] * n,
        verified=[i != 3 for i in range(n)],
        consistent=[True] * n,
        attested_at=[100 * EPOCH_S] * n,
        equivocated=[p == equivocator for p in NODES],
        hb_node=[i for i in range(n) for _ in range(5)],
        hb_epoch=[e for _ in range(n) for e in range(95, 100)],
        hb_load=[0] * (5 * n),
    )


def _digest(table) -> str:
    h = hashlib.sha256()
    for name in TABLE_ARRAYS:
        h.update(name.encode() + np.ascontiguousarray(getattr(table, name)).tobytes())
    h.update(repr(table.peers).encode())
    return h.hexdigest()[:24]


def _views(params: ReputationParams, equivocator: str | None, rare: bool) -> list[str]:
    history = _history(5, range(60, 100), rare=rare)
    state = PairState(compact_slack=0)
    out = []
    for e in range(60, 100):
        state.fold(e, history[e], [b"d%d" % e])
        state.prune(e - 22)
        if e >= 90:
            epoch = e + 2  # digest lag 2
            win = state.window(epoch - 2 - 20 + 1, epoch - 2)
            ev, peer_at = state.widen(_nodes_evidence(equivocator), win)
            table = compute_pairs(
                ev, win, now=epoch * EPOCH_S, epoch_s=EPOCH_S, params=params, peer_at=peer_at
            )
            out.append(_digest(table))
    return out


@pytest.mark.parametrize(
    ("params", "equivocator", "rare", "expected"),
    [
        (STREAM, None, True, "4ff99462247924c10206ed0f"),
        (EXACT, None, True, "3f840b4a77ccd724875a2851"),
        (STREAM, NODES[1], True, "1c60fe6c0dbbdbb1675c53f3"),
        (STREAM, None, False, "4052eb0b758c4ad46f3b3de5"),
        (EXACT, NODES[1], False, "192754056c951f958f9ebd2d"),
    ],
)
def test_a_fixed_history_gives_known_bits(params, equivocator, rare, expected) -> None:
    """Ten views, streaming (the chains' graph a view leaves behind included) and exact,
    with and without an offender, with and without silent nodes and refused inputs."""
    views = _views(params, equivocator, rare)
    assert len(set(views)) == len(views)  # every view its own bits
    assert hashlib.sha256(" ".join(views).encode()).hexdigest()[:24] == expected


def test_the_window_union_is_the_union() -> None:
    """:meth:`PairState.widen` places node peers by their stable IDs: the same union and
    places as :func:`~repp2p.reputation.pairs._union`, for peers in the window, peers
    registered but pruned out of it, and peers never seen."""
    from repp2p.reputation.pairs import _union

    history = _history(9, range(0, 30), rare=False)
    history[0].append(dataclasses.replace(history[0][0], node="node-zz"))
    state = PairState(compact_slack=10**6)
    for e in range(0, 30):
        state.fold(e, sorted(history[e]), [b"d%d" % e])
    state.prune(10)  # node-zz stays registered, out of every block
    win = state.window(10, 29)
    for a in (
        tuple(NODES),
        ("a-new", *NODES, "node-zz", "zz-new"),
        (),
        ("node-zz",),
        tuple(win.peers[::3]),
    ):
        got = state._window_union(a, win)
        want = _union(a, win.peers)
        assert got[0] == want[0]
        assert got[1].tolist() == want[1].tolist()
        assert got[2].tolist() == want[2].tolist()


def test_the_canonical_peers_follow_the_order() -> None:
    """The pairs' client and node kept in canonical order on insertion (what a window and
    a fold read instead of gathering them) stay those of the canonical order, through new
    pairs, new peers, prunes and registry rebuilds."""
    history = _history(11, range(0, 40), rare=True)
    state = PairState(compact_slack=0)
    rebuilt = 0
    for e in range(0, 40):
        state.fold(e, history[e], [b"d%d" % e])
        before = len(state._pc)
        state.prune(e - 1)  # one epoch kept: the registry is rebuilt now and then
        rebuilt += len(state._pc) < before
        assert state._order_pc.tolist() == state._pc[state._order].tolist()
        assert state._order_pn.tolist() == state._pn[state._order].tolist()
        keys = state._canonical_keys(state._order)
        assert (np.diff(keys) > 0).all()
    assert rebuilt > 0
