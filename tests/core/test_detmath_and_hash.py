"""The float and hash definitions: scalar == vector bit for bit, and pinned known answers.

The known-answer values pin the definition: if a refactor or a platform changes one bit of
a draw or a key, these fail (and every peer would disagree on assignments).
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from repp2p.matching.hashing import draw, draw_array, peer_word, pool_coin, task_words
from repp2p.reputation.detmath import decay_table_fixed, exp2_neg, neg_ln, neg_ln_array

units = st.floats(min_value=2.0**-53, max_value=1.0 - 2.0**-53, allow_subnormal=False)
u64 = st.integers(min_value=0, max_value=2**64 - 1)


@settings(max_examples=300, deadline=None)
@given(st.lists(units, min_size=1, max_size=50))
def test_neg_ln_vector_equals_scalar_and_is_accurate(us):
    arr = np.array(us)
    vec = neg_ln_array(arr)
    for u, v in zip(us, vec, strict=True):
        s = neg_ln(u)
        assert s == v  # bit-identical
        assert math.isclose(s, -math.log(u), rel_tol=1e-14, abs_tol=1e-300)


@settings(max_examples=200, deadline=None)
@given(u64, u64, st.lists(u64, min_size=1, max_size=40))
def test_draw_vector_equals_scalar(a0, a1, words):
    vec = draw_array(a0, a1, np.array(words, dtype=np.uint64))
    for b, v in zip(words, vec, strict=True):
        u = draw(a0, a1, b)
        assert u == v
        assert 0.0 < u < 1.0


def test_exp2_neg_accuracy():
    for x in np.linspace(0.0, 80.0, 2001):
        assert math.isclose(exp2_neg(float(x)), 2.0 ** -float(x), rel_tol=1e-14)
    assert list(decay_table_fixed(1.0, 4, 16)) == [65536, 32768, 16384, 8192]


def test_known_answers_pin_the_definition():
    task, beacon = bytes(range(32)), bytes(range(32, 64))
    a0, a1, a2 = task_words(task, beacon)
    peer = "12D3KooWBLfJLPCtAWB1w2MXyeMrfwG7RMZcA3vkZqN249ken9CE"
    b = peer_word(peer)
    u = draw(a0, a1, b)
    key = neg_ln(u) / 957.0
    assert (a0, a1, a2) == KNOWN["words"]
    assert b == KNOWN["peer"]
    assert u.hex() == KNOWN["u"]
    assert key.hex() == KNOWN["key"]
    assert pool_coin(a2) == KNOWN["coin"]
    assert neg_ln(0.5).hex() == math.log(2.0).hex()


# Computed once from the definition in repp2p/matching/hashing.py (also in docs/core.md).
KNOWN = {
    "words": (5027776782739545947, 13011818782733047521, 8328222540471159401),
    "peer": 10384044815337091104,
    "u": "0x1.6ccbe7c8e2196p-2",
    "key": "0x1.1ab971d3be42dp-10",
    "coin": 451,
}
