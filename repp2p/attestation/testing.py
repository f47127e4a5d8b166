"""Test tooling that ships with the package: the backend conformance suite.

Every :class:`~repp2p.attestation.TEEBackendAPI` must pass :func:`check_backend` given one
sample it accepts. The suite feeds it hostile input -- empty, truncated, random, bit
flipped, garbage collateral -- and requires an :class:`AttestationError` (never another
exception, never acceptance), with MALFORMED where the input cannot even be parsed.
Randomness comes from the ``seed`` argument (a hash-based stream: the core imports no
``random`` at all, so no test can mistake it for global randomness).
"""

from __future__ import annotations

import dataclasses
import hashlib

from repp2p.attestation.abc import TEEBackendAPI
from repp2p.errors import AttestationError, AttestationReason


class SeededBytes:
    """Deterministic pseudo-random stream (SHA-256 in counter mode) for test inputs only."""

    def __init__(self, seed: int) -> None:
        self._seed = seed.to_bytes(8, "big", signed=True)
        self._counter = 0

    def randbytes(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            block = self._seed + self._counter.to_bytes(8, "big")
            out += hashlib.sha256(block).digest()
            self._counter += 1
        return out[:n]

    def randrange(self, n: int) -> int:
        return int.from_bytes(self.randbytes(8), "big") % n

    def choice(self, options: list[int]) -> int:
        return options[self.randrange(len(options))]


@dataclasses.dataclass(frozen=True)
class Sample:
    """A sample the backend accepts: evidence, collateral and the time to verify at."""

    evidence: bytes
    collateral: bytes
    now: int
    name: str = "sample"


def expect_rejection(
    backend: TEEBackendAPI, evidence: bytes, collateral: bytes, now: int
) -> AttestationError:
    """Run the backend; return its AttestationError, fail on acceptance or a crash."""
    try:
        claims = backend.verify(evidence, collateral, now)
    except AttestationError as exc:
        if not isinstance(exc.reason, AttestationReason):
            raise AssertionError(f"{backend.kind}: reason is not an AttestationReason") from exc
        return exc
    except Exception as exc:
        raise AssertionError(f"{backend.kind}: crashed with {exc!r}") from exc
    raise AssertionError(f"{backend.kind}: accepted hostile input (claims {claims.kind})")


def check_accepts(backend: TEEBackendAPI, sample: Sample) -> None:
    claims = backend.verify(sample.evidence, sample.collateral, sample.now)
    assert claims.kind == backend.kind, claims.kind
    assert claims.valid_from <= claims.valid_until
    assert claims == backend.verify(sample.evidence, sample.collateral, sample.now)
    assert claims.simulated == (backend.kind == "simulated")


def check_empty(backend: TEEBackendAPI, sample: Sample) -> None:
    exc = expect_rejection(backend, b"", sample.collateral, sample.now)
    assert exc.reason is AttestationReason.MALFORMED, exc


def check_truncated(backend: TEEBackendAPI, sample: Sample) -> None:
    ev = sample.evidence
    for cut in sorted({1, 2, 16, len(ev) // 2, len(ev) - 1}):
        if 0 < cut < len(ev):
            exc = expect_rejection(backend, ev[:cut], sample.collateral, sample.now)
            assert exc.reason is AttestationReason.MALFORMED, (cut, exc)


def check_extended(backend: TEEBackendAPI, sample: Sample) -> None:
    """Appended bytes are rejected, or ignored: they can never change what is claimed."""
    original = backend.verify(sample.evidence, sample.collateral, sample.now)
    for tail in (b"\x00", b"\x01" * 64):
        try:
            claims = backend.verify(sample.evidence + tail, sample.collateral, sample.now)
        except AttestationError:
            continue
        assert claims == original, f"{backend.kind}: trailing bytes changed the claims"


def check_random(backend: TEEBackendAPI, sample: Sample, seed: int = 0, rounds: int = 20) -> None:
    rng = SeededBytes(seed)
    for _ in range(rounds):
        size = rng.choice([1, 7, 64, len(sample.evidence)])
        expect_rejection(backend, rng.randbytes(size), sample.collateral, sample.now)


def check_bit_flips(
    backend: TEEBackendAPI, sample: Sample, seed: int = 0, rounds: int = 40
) -> None:
    """Flipping any single byte of the evidence must make it fail."""
    rng = SeededBytes(seed)
    ev = sample.evidence
    positions = {0, len(ev) - 1, *(rng.randrange(len(ev)) for _ in range(rounds))}
    for pos in sorted(positions):
        flipped = ev[:pos] + bytes([ev[pos] ^ (1 << rng.randrange(8))]) + ev[pos + 1 :]
        expect_rejection(backend, flipped, sample.collateral, sample.now)


def check_garbage_collateral(backend: TEEBackendAPI, sample: Sample, seed: int = 0) -> None:
    if not sample.collateral:
        return  # self-contained format: collateral is ignored
    rng = SeededBytes(seed)
    for junk in (b"x", rng.randbytes(100), sample.collateral[: len(sample.collateral) // 2]):
        expect_rejection(backend, sample.evidence, junk, sample.now)


ALL_CHECKS = (
    check_accepts,
    check_empty,
    check_truncated,
    check_extended,
    check_random,
    check_bit_flips,
    check_garbage_collateral,
)


def check_backend(backend: TEEBackendAPI, sample: Sample) -> None:
    """Run every conformance check against ``backend``."""
    for check in ALL_CHECKS:
        check(backend, sample)
