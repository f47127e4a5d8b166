"""The engine conformance suite: every engine must pass :func:`check_engine`.

What it requires of an engine:

* a valid manifest and a 32-byte measurement that is stable (recomputing gives the same);
* every ``EXAMPLES`` input produces bytes within ``max_output_size``;
* determinism: the same input gives bit-identical output when repeated, when interleaved
  with other inputs, and from a freshly constructed instance (no hidden state);
* every ``BAD_INPUTS`` input is refused with ``EngineError(BAD_INPUT)`` by ``run`` itself;
* size limits: one byte over ``max_input_size`` is ``INPUT_TOO_LARGE``; an input of exactly
  ``max_input_size`` (an ASCII example repeated) is accepted;
* hostile input (seeded random bytes, bit flips and truncations of the examples) gives
  either an output or ``EngineError(BAD_INPUT)``, the same one twice -- never another
  exception.

Randomness comes from the ``seed`` argument (a SHA-256 counter stream), never from a
global generator, so a failure reproduces.
"""

from __future__ import annotations

import hashlib
import re

from engines.abc import EngineAPI, run_checked
from engines.errors import EngineError, EngineReason
from repp2p.records.types import ENGINE_ID_PATTERN


def _stream(seed: int, label: bytes, n: int) -> bytes:
    out = b""
    counter = 0
    while len(out) < n:
        block = seed.to_bytes(8, "big", signed=True) + label + counter.to_bytes(8, "big")
        out += hashlib.sha256(block).digest()
        counter += 1
    return out[:n]


def _outcome(engine: EngineAPI, data: bytes) -> bytes | EngineReason:
    """Output bytes, or the reason of the EngineError; anything else fails the suite."""
    try:
        return run_checked(engine, data)
    except EngineError as exc:
        if not isinstance(exc.reason, EngineReason):
            raise AssertionError(f"{engine.name}: error reason is not an EngineReason") from exc
        if exc.reason is EngineReason.INTERNAL:
            raise AssertionError(f"{engine.name}: crashed on input: {exc}") from exc
        return exc.reason


def check_metadata(engine: EngineAPI) -> None:
    assert re.fullmatch(ENGINE_ID_PATTERN, engine.name), engine.name
    assert engine.version and engine.description
    assert engine.input_schema and engine.output_schema
    assert engine.max_input_size > 0 and engine.max_output_size > 0
    assert isinstance(engine.measurement, bytes) and len(engine.measurement) == 32
    assert engine.manifest.measurement() == engine.measurement, "measurement is not stable"
    assert engine.EXAMPLES, f"{engine.name}: declare EXAMPLES for the conformance suite"


def check_examples(engine: EngineAPI) -> None:
    fresh = type(engine)()
    outputs = [run_checked(engine, x) for x in engine.EXAMPLES]
    for data, output in zip(engine.EXAMPLES, outputs, strict=True):
        assert isinstance(output, bytes) and len(output) <= engine.max_output_size
        assert run_checked(engine, data) == output, f"{engine.name}: not deterministic"
        assert run_checked(fresh, data) == output, f"{engine.name}: depends on instance state"
    # interleaved in reverse order: no state carried from one run to the next
    for data, output in reversed(list(zip(engine.EXAMPLES, outputs, strict=True))):
        assert run_checked(engine, data) == output, f"{engine.name}: depends on run order"


def check_bad_inputs(engine: EngineAPI) -> None:
    for data in engine.BAD_INPUTS:
        for call in (engine.run, lambda d: run_checked(engine, d)):
            try:
                call(data)
            except EngineError as exc:
                assert exc.reason is EngineReason.BAD_INPUT, (engine.name, exc)
            else:
                raise AssertionError(f"{engine.name}: accepted a bad input")


def check_size_limits(engine: EngineAPI) -> None:
    limit = engine.max_input_size
    try:
        run_checked(engine, b"a" * (limit + 1))
    except EngineError as exc:
        assert exc.reason is EngineReason.INPUT_TOO_LARGE, exc
    else:
        raise AssertionError(f"{engine.name}: accepted an input over max_input_size")
    ascii_examples = [x for x in engine.EXAMPLES if x and x.isascii()]
    if ascii_examples:
        base = ascii_examples[0] + b" "
        data = (base * (limit // len(base) + 1))[:limit]
        output = run_checked(engine, data)  # once: the largest input is the slowest
        assert len(output) <= engine.max_output_size


def check_hostile_inputs(engine: EngineAPI, seed: int = 0, count: int = 24) -> None:
    inputs = []
    for i in range(count):
        size = int.from_bytes(_stream(seed, b"size%d" % i, 2), "big") % 300
        inputs.append(_stream(seed, b"data%d" % i, size))
    for j, example in enumerate(engine.EXAMPLES):
        if not example:
            continue
        noise = _stream(seed, b"flip%d" % j, 4)
        position = int.from_bytes(noise[:2], "big") % len(example)
        flipped = bytearray(example)
        flipped[position] ^= 1 << (noise[2] % 8)
        inputs += [bytes(flipped), example[: position or 1], example[::-1]]
    for data in inputs:
        first = _outcome(engine, data)
        assert _outcome(engine, data) == first, f"{engine.name}: not deterministic"
        if isinstance(first, EngineReason):
            assert first is EngineReason.BAD_INPUT, (engine.name, first)


def check_engine(engine: EngineAPI, seed: int = 0) -> None:
    """Run the whole conformance suite on ``engine``; raises AssertionError on a failure."""
    check_metadata(engine)
    check_examples(engine)
    check_bad_inputs(engine)
    check_size_limits(engine)
    check_hostile_inputs(engine, seed)
