"""Posterior estimates with uncertainty: a Beta posterior and its lower confidence bound.

Success is a Beta posterior: ``prior_strength`` pseudo-observations at ``prior`` plus the
trust-weighted good mass ``good`` and bad mass ``bad`` (bad evidence already multiplied by
``bad_weight`` and decayed with the slower ``bad_half_life_epochs``, docs/core.md). Matching
orders nodes by the lower confidence bound ``mean - z * sd``: a thin history has a wide
posterior and sits low, so a node earns the front of the queue with evidence, and a few bad
results on a short history cost more than on a long one.

Only ``+ - * /`` and ``sqrt`` are used; IEEE-754 rounds all of them correctly, so every peer
computes the same bits.
"""

from __future__ import annotations

import numpy as np


def beta_posterior(
    good: np.ndarray, bad: np.ndarray, prior: float, strength: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(a, b)`` of the Beta posterior: ``a = strength * prior + good``, likewise ``b``."""
    a = strength * prior + np.asarray(good, np.float64)
    b = strength * (1.0 - prior) + np.asarray(bad, np.float64)
    return a, b


def beta_mean(a: np.ndarray, b: np.ndarray, prior: float) -> np.ndarray:
    """Posterior mean ``a / (a + b)``; ``prior`` where there is neither prior nor evidence."""
    n = a + b
    return np.where(n > 0.0, a / np.where(n > 0.0, n, 1.0), prior)


def beta_lcb(a: np.ndarray, b: np.ndarray, z: float, prior: float) -> np.ndarray:
    """Lower confidence bound ``mean - z * sd`` of Beta(a, b), clipped to [0, 1].

    ``sd = sqrt(a * b / (n * n * (n + 1)))`` with ``n = a + b``; 0 for an empty posterior
    (no prior, no evidence), so nothing ranks on nothing.
    """
    n = a + b
    safe = np.where(n > 0.0, n, 1.0)
    mean = a / safe
    sd = np.sqrt(a * b / (safe * safe * (safe + 1.0)))
    return np.where(n > 0.0, np.clip(mean - z * sd, 0.0, 1.0), 0.0 * prior)
