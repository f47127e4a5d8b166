"""A small deterministic mutation fuzzer (no coverage feedback).

Used by the smoke test in ``make test`` and by ``make fuzz`` where atheris is not
installed. Each input is one seed put through 1-4 random edits (bit flips, interesting
bytes and integers, insertions, deletions, duplications, splices with another seed,
truncation), all drawn from one ``random.Random(seed)`` so a run is reproducible.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

#: byte values that tend to sit on boundaries (CBOR major-type heads, lengths, signs)
_INTERESTING = (
    0x00,
    0x01,
    0x17,
    0x18,
    0x19,
    0x1A,
    0x1B,
    0x1F,
    0x3F,
    0x40,
    0x5F,
    0x7F,
    0x80,
    0x9F,
    0xA0,
    0xBF,
    0xC0,
    0xF4,
    0xF5,
    0xF6,
    0xF7,
    0xFF,
)
_BIG = (
    b"\xff\xff\xff\xff",
    b"\x7f\xff\xff\xff",
    b"\x80\x00\x00\x00",
    b"\x00\x00\x00\x00",
    b"\x1b\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\x9f" * 64,
    b"\xa1" * 64,
)


def _edit(rng: random.Random, data: bytearray, seeds: Sequence[bytes]) -> None:
    op = rng.randrange(8)
    n = len(data)
    if op == 0 and n:
        i = rng.randrange(n)
        data[i] ^= 1 << rng.randrange(8)
    elif op == 1 and n:
        data[rng.randrange(n)] = rng.choice(_INTERESTING)
    elif op == 2:
        i = rng.randrange(n + 1)
        data[i:i] = rng.randbytes(rng.randrange(1, 16))
    elif op == 3 and n:
        i = rng.randrange(n)
        del data[i : i + rng.randrange(1, 64)]
    elif op == 4 and n:
        i = rng.randrange(n)
        chunk = data[i : i + rng.randrange(1, 64)]
        j = rng.randrange(n + 1)
        data[j:j] = chunk * rng.randrange(1, 4)
    elif op == 5 and seeds:
        other = rng.choice(seeds)
        i, j = rng.randrange(n + 1), rng.randrange(len(other) + 1)
        data[i:] = other[j:]
    elif op == 6 and n:
        del data[rng.randrange(n) :]
    else:
        i = rng.randrange(n + 1)
        data[i : i + 4] = rng.choice(_BIG)


def mutations(
    seeds: Sequence[bytes], count: int, *, seed: int = 0, max_len: int = 4096
) -> Iterator[bytes]:
    """``count`` inputs mutated from ``seeds`` (random bytes when there are none)."""
    rng = random.Random(seed)
    for _ in range(count):
        if not seeds or rng.random() < 0.02:
            yield rng.randbytes(rng.randrange(max_len // 8 + 1))
            continue
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(1, 5)):
            _edit(rng, data, seeds)
        yield bytes(data[:max_len])
