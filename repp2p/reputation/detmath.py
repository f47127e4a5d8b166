"""Deterministic elementary functions: the same bits on every IEEE-754 machine.

Library ``log``/``exp`` (libm, numpy's SIMD loops) may differ by an ulp between platforms,
CPUs and versions, and one ulp can reorder two rendezvous keys or move a score across a
permille boundary. Everything here is built only from operations IEEE-754 rounds correctly
(``+ - * /``), exact scaling (``frexp``/``ldexp``) and float literals, evaluated in a fixed
order, once in scalar Python and once over numpy arrays; the two give identical bits (a test
holds us to it). Accuracy is about 1e-15 relative, far below what the callers need; what
matters is that every peer computes the same value.

Rules of this file: no ``math.log``/``math.exp``/``np.log``/``np.exp``; every vector function
has a scalar twin evaluating the same operations in the same order.
"""

from __future__ import annotations

import functools
import math

import numpy as np

#: ln 2 as the nearest double (a literal, so the same bits everywhere).
LN2 = 0.6931471805599453
#: sqrt(1/2) as the nearest double: mantissas are folded into [SQRT_HALF, 2 * SQRT_HALF).
SQRT_HALF = 0.7071067811865476

# ln(m) = 2 * atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716, so s^2 <= 0.0295:
# 2 * (1 + s2/3 + s2^2/5 + ...) with 12 terms leaves a remainder below 1e-18.
_ATANH = tuple(1.0 / (2 * i + 1) for i in range(12))
# exp(-y) for y in [0, ln 2): Taylor terms (-1)^n / n!, 18 terms leave < 1e-19.
_EXP = tuple((-1.0) ** n / math.factorial(n) for n in range(18))


def neg_ln(u: float) -> float:
    """``-ln(u)`` for ``0 < u < 1``, deterministically (scalar twin of :func:`neg_ln_array`)."""
    m, e = math.frexp(u)
    if m < SQRT_HALF:
        m = m * 2.0
        e -= 1
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    p = _ATANH[-1]
    for c in _ATANH[-2::-1]:
        p = p * s2 + c
    ln_m = 2.0 * s * p
    return -(float(e) * LN2 + ln_m)


def neg_ln_array(u: np.ndarray) -> np.ndarray:
    """``-ln(u)`` element-wise over a float64 array in (0, 1); bit-identical to :func:`neg_ln`."""
    m, e = np.frexp(u)
    low = m < SQRT_HALF
    m = np.where(low, m * 2.0, m)
    e = np.where(low, e - 1, e)
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    p = np.full_like(s, _ATANH[-1])
    for c in _ATANH[-2::-1]:
        p = p * s2 + c
    ln_m = 2.0 * s * p
    return -(e.astype(np.float64) * LN2 + ln_m)


def exp2_neg(x: float) -> float:
    """``2 ** -x`` for ``x >= 0``, deterministically (used for half-life decay tables)."""
    if x < 0.0:
        raise ValueError("exp2_neg needs x >= 0")
    n = math.floor(x)
    f = x - float(n)  # exact: subtracting the integer part of a double
    y = f * LN2
    p = _EXP[-1]
    for c in _EXP[-2::-1]:
        p = p * y + c
    return math.ldexp(p, -n)


@functools.lru_cache(maxsize=64)
def decay_table_fixed(half_life: float, length: int, scale_bits: int) -> np.ndarray:
    """Integer decay weights ``round(2**scale_bits * 2**(-age / half_life))`` for ages 0..length-1.

    Evidence is summed in this fixed point so that sums are exact integers: independent of
    the order records arrived in and of the platform. The table is read-only and
    remembered per arguments (several are needed per view; each costs ``length`` scalar
    ``exp2_neg`` calls).
    """
    scale = float(1 << scale_bits)
    table = np.array(
        [math.floor(exp2_neg(age / half_life) * scale + 0.5) for age in range(length)],
        dtype=np.int64,
    )
    table.setflags(write=False)
    return table
