"""Standing-weighted verdicts on tasks whose receipts disagree (or are disputed).

A disagreement is not a conviction. The receipts of one task vote for their outputs, each
with the standing of its node (its quality before disputes count, so a verdict cannot lift
the voters that made it). The output with the largest standing wins a **confident** verdict
only if

* at least ``wrong_quorum`` receipts carry it,
* it holds more than ``dispute_confidence`` of the standing of all the task's receipts, and
* its receipts' standing sums to at least ``dispute_min_support``.

Otherwise the task is undecided: nobody is upheld or outvoted, and the protocol escalates it
to the next ranks of the same matching (``MatchingParams.dispute_max_replicas``) until it is
confident. Two colluders against one honest node of equal standing hold 2/3 of the standing:
not confident at the default 0.67, so the honest node is not outvoted; the extra replicas
come from the front of the quality ranking, where colluders that lost before no longer are.

A lost verdict is statistical evidence (graduated: it weighs ``dispute_weight`` bad results
in the node's success), never a hard penalty: only cryptographic proof (equivocation) is.
"""

from __future__ import annotations

import numpy as np


def dispute_verdicts(
    offer: np.ndarray,
    output: np.ndarray,
    standing: np.ndarray,
    valid: np.ndarray,
    n_offers: int,
    *,
    quorum: int,
    confidence: float,
    min_support: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Verdicts over receipt rows.

    Args:
        offer: offer index per receipt row (rows sorted by offer, then node).
        output: output id per row, unique per (offer, output digest).
        standing: the voting node's standing per row, in [0, 1].
        valid: rows that vote (claimed, attested node).
        n_offers: number of offers (index bound).
        quorum, confidence, min_support: the rule of the module docstring.

    Returns:
        ``(upheld, lost, decided)``: per row, the receipt carries / contradicts the output
        of a confident verdict; per offer, the verdict is confident.
    """
    m = len(offer)
    if m == 0 or not valid.any():
        z = np.zeros(m, bool)
        return z, z.copy(), np.zeros(n_offers, bool)
    idx = np.flatnonzero(valid)
    out_ids, group = np.unique(output[idx], return_inverse=True)
    g_count = np.bincount(group, minlength=len(out_ids))
    # Sums in row order (rows are canonical): the same bits on every peer.
    g_weight = np.bincount(group, weights=standing[idx], minlength=len(out_ids))
    g_offer = np.zeros(len(out_ids), np.int64)
    g_offer[group] = offer[idx]
    total = np.bincount(g_offer, weights=g_weight, minlength=n_offers)
    top = np.full(n_offers, -1.0)
    np.maximum.at(top, g_offer, g_weight)
    at_top = g_weight == top[g_offer]
    n_top = np.bincount(g_offer, weights=at_top, minlength=n_offers)
    winner = np.full(n_offers, -1, np.int64)
    winner[g_offer[at_top]] = out_ids[at_top]
    win_count = np.zeros(n_offers, np.int64)
    win_count[g_offer[at_top]] = g_count[at_top]
    decided = (
        (n_top == 1) & (win_count >= quorum) & (top > confidence * total) & (top >= min_support)
    )
    row_decided = valid & decided[offer]
    upheld = row_decided & (output == winner[offer])
    lost = row_decided & ~upheld
    return upheld, lost, decided
