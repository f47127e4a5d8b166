"""The rendezvous draw: task id, peer id and epoch beacon -> ``u`` in (0, 1), bit-exact.

Definition (normative; docs/core.md repeats it):

1. task words: ``h = SHA-256(b"repp2p/1/match/task\\0" || beacon[32] || task_id[32])``;
   ``a0, a1, a2`` = bytes 0-7, 8-15, 16-23 of ``h`` as big-endian uint64.
2. peer word: ``b = `` bytes 0-7 of ``SHA-256(b"repp2p/1/match/peer\\0" || peer_id ascii)``
   as big-endian uint64 (computed once per view).
3. ``x = mix(mix(b XOR a0) XOR a1)`` with ``mix`` the SplitMix64 finaliser (all mod 2**64):
   ``z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27; z *= 0x94D049BB133111EB;
   z ^= z >> 31``. ``mix`` is a bijection, so for a beacon unknown when the peer's key was
   chosen, every peer's draw is exactly uniform: no key is better than another.
4. ``u = ((x >> 11) | 1) * 2**-53``: an odd 53-bit integer times a power of two, exact in
   binary64, never 0 or 1.
5. ``key = neg_ln(u) / w`` where ``neg_ln`` is :func:`repp2p.reputation.detmath.neg_ln`
   (basic IEEE operations only) and ``w`` is an integer weight converted exactly to float.
   Smallest key first; equal keys (never seen in practice) order by peer ID.
6. pool coin: ``((a2 >> 32) * 1000) >> 32`` in [0, 999]; the task ranks the newcomer pool
   first when the coin is below ``exploration_permille``.

The scalar functions here are the definition; the numpy ones must give the same bits.
"""

from __future__ import annotations

import hashlib

import numpy as np

TASK_DOMAIN = b"repp2p/1/match/task\0"
PEER_DOMAIN = b"repp2p/1/match/peer\0"
MASK64 = (1 << 64) - 1
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
TWO_POW_M53 = 2.0**-53


def task_words(task_id: bytes, beacon: bytes) -> tuple[int, int, int]:
    """The three 64-bit task words ``(a0, a1, a2)`` of a task under an epoch beacon.

    Raises:
        ValueError: ``beacon`` is not 32 bytes or ``task_id`` not 32 bytes.
    """
    if len(beacon) != 32 or len(task_id) != 32:
        raise ValueError("beacon and task_id must be 32 bytes")
    h = hashlib.sha256(TASK_DOMAIN + beacon + task_id).digest()
    return (
        int.from_bytes(h[0:8], "big"),
        int.from_bytes(h[8:16], "big"),
        int.from_bytes(h[16:24], "big"),
    )


def peer_word(peer_id: str) -> int:
    """The 64-bit word of a peer ID."""
    h = hashlib.sha256(PEER_DOMAIN + peer_id.encode("ascii")).digest()
    return int.from_bytes(h[0:8], "big")


def peer_words(peer_ids: tuple[str, ...]) -> np.ndarray:
    """:func:`peer_word` of many peers as a uint64 array."""
    return np.fromiter((peer_word(p) for p in peer_ids), dtype=np.uint64, count=len(peer_ids))


def mix(z: int) -> int:
    """SplitMix64 finaliser on a Python int (mod 2**64)."""
    z ^= z >> 30
    z = (z * _M1) & MASK64
    z ^= z >> 27
    z = (z * _M2) & MASK64
    return z ^ (z >> 31)


def draw(a0: int, a1: int, b: int) -> float:
    """``u`` in (0, 1) for task words ``a0, a1`` and peer word ``b`` (the definition)."""
    x = mix(mix(b ^ a0) ^ a1)
    return float((x >> 11) | 1) * TWO_POW_M53


_S30, _S27, _S31, _S11 = (np.uint64(s) for s in (30, 27, 31, 11))
_NM1, _NM2, _ONE = np.uint64(_M1), np.uint64(_M2), np.uint64(1)


def mix_array(z: np.ndarray) -> np.ndarray:
    z = z ^ (z >> _S30)
    z *= _NM1
    z ^= z >> _S27
    z *= _NM2
    z ^= z >> _S31
    return z


def draw_array(a0: int, a1: int, b: np.ndarray) -> np.ndarray:
    """:func:`draw` over a uint64 array of peer words; identical bits."""
    x = mix_array(b ^ np.uint64(a0))
    x ^= np.uint64(a1)
    x = mix_array(x)
    return ((x >> _S11) | _ONE).astype(np.float64) * TWO_POW_M53


def pool_coin(a2: int) -> int:
    """The task's exploration coin in [0, 999]."""
    return ((a2 >> 32) * 1000) >> 32
