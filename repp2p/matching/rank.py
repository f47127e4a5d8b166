"""Weighted rendezvous ranking over plain arrays: the scalar definition and the fast path.

``rank_reference`` is the definition, written for clarity (one Python loop, the scalar
functions of :mod:`repp2p.matching.hashing`). ``rank_fast`` returns the same list for every
input (a property test holds it to that) in O(N) numpy work per task:

1. draw ``u`` for every peer (uint64 mixing, vectorised);
2. bound each key without a logarithm: ``1 - u <= -ln(u) <= (1 - u) / u``, so
   ``lb = (1 - u) / w`` and ``ub = (1 - u) / (u w)`` (widened by 1e-9 relative, far more
   than the ~1e-15 error of the float steps);
3. ``tau`` = the ``L``-th smallest ``ub``: at least ``L`` peers have a key <= ``tau``, so
   every peer of the true top ``L`` has ``lb <= key <= tau``;
4. exact keys (``neg_ln(u) / w``, the definition's float steps) only for peers with
   ``lb <= tau``, usually a handful, then sort by (key, index).

Indices are positions in the caller's peer arrays; the caller keeps peers sorted by peer ID
so that index order is the peer-ID tie-break of the definition.
"""

from __future__ import annotations

import numpy as np

from repp2p.matching.hashing import draw, draw_array, mix_array
from repp2p.reputation.detmath import neg_ln, neg_ln_array

_LOW = 1.0 - 1e-9
_HIGH = 1.0 + 1e-9


def rank_reference(
    a0: int, a1: int, words: np.ndarray, weights: np.ndarray, eligible: np.ndarray, limit: int
) -> list[int]:
    """The definition: indices of eligible peers with weight > 0, smallest key first.

    Args:
        a0, a1: task words (:func:`repp2p.matching.hashing.task_words`).
        words: uint64 peer words.
        weights: float64 integer-valued weights (> 0 to take part).
        eligible: boolean mask.
        limit: how many to return at most.
    """
    keyed = []
    for i in range(len(words)):
        if eligible[i] and weights[i] > 0.0:
            u = draw(a0, a1, int(words[i]))
            keyed.append((neg_ln(u) / float(weights[i]), i))
    keyed.sort()
    return [i for _key, i in keyed[:limit]]


def rank_fast(
    a0: int,
    a1: int,
    words: np.ndarray,
    weights: np.ndarray,
    eligible: np.ndarray,
    limit: int,
    inv_weights: np.ndarray | None = None,
) -> np.ndarray:
    """Same result as :func:`rank_reference`, as an int64 array, in vectorised O(N).

    ``inv_weights`` (``1 / weights``, inf where 0) may be passed to save a division when
    the weights are fixed for many tasks (a view).
    """
    if limit <= 0 or len(words) == 0:
        return np.zeros(0, np.int64)
    take = eligible & (weights > 0.0)
    n_take = int(np.count_nonzero(take))
    if n_take == 0:
        return np.zeros(0, np.int64)
    if inv_weights is None:
        with np.errstate(divide="ignore"):
            inv_weights = 1.0 / weights
    u = draw_array(a0, a1, words)
    base = (1.0 - u) * inv_weights
    lb = np.where(take, base * _LOW, np.inf)
    limit = min(limit, n_take)
    if n_take <= 4 * limit:
        cand = np.flatnonzero(take)
    else:
        ub = np.where(take, base / u * _HIGH, np.inf)
        tau = np.partition(ub, limit - 1)[limit - 1]
        cand = np.flatnonzero(lb <= tau)
    keys = neg_ln_array(u[cand]) / weights[cand]
    order = np.lexsort((cand, keys))
    return cand[order[:limit]]


def rank_first_many(
    a0s: np.ndarray,
    a1s: np.ndarray,
    words: np.ndarray,
    weights: np.ndarray,
    eligible: np.ndarray,
) -> np.ndarray:
    """Rank-0 index for many tasks at once (-1 when nobody is eligible).

    Same result per task as ``rank_reference(a0, a1, ..., limit=1)``, vectorised over tasks
    (a T x N matrix): for simulations and share statistics over many tasks.
    """
    t = len(a0s)
    take = eligible & (weights > 0.0)
    if t == 0 or not take.any():
        return np.full(t, -1, np.int64)
    cols = np.flatnonzero(take)
    w = weights[cols]
    inv = 1.0 / w
    b = words[cols][None, :]
    x = mix_array(b ^ a0s.astype(np.uint64)[:, None])
    x ^= a1s.astype(np.uint64)[:, None]
    x = mix_array(x)
    u = ((x >> np.uint64(11)) | np.uint64(1)).astype(np.float64) * 2.0**-53
    base = (1.0 - u) * inv
    tau = (base / u * _HIGH).min(axis=1)
    rows, cc = np.nonzero(base * _LOW <= tau[:, None])
    keys = neg_ln_array(u[rows, cc]) / w[cc]
    order = np.lexsort((cc, keys, rows))
    rows, cc = rows[order], cc[order]
    first = np.concatenate(([True], rows[1:] != rows[:-1]))
    out = np.full(t, -1, np.int64)
    out[rows[first]] = cols[cc[first]]
    return out
