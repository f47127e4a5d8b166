"""Benchmark: decode + verify throughput of signed records, per core.

Baseline, measured in the same run: the raw Ed25519 verify rate of libsodium (via PyNaCl)
over messages of the same size. The target is decode + verify >= 70% of that rate: our
envelope parsing, canonical checks and field validation may cost at most ~30% on top of the
signature check that every record needs anyway.

Single process, single thread (= one core). Ends with one JSON line of the figures.
"""

from __future__ import annotations

import json
import platform
import time

import nacl.signing

from repp2p.records import decode, encode
from repp2p.testing import factories

DURATION_S = 2.0


def _rate(fn, items) -> float:
    """Operations per second of ``fn`` over ``items``, best of three ~DURATION_S/3 runs."""
    best = 0.0
    for _ in range(3):
        done, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < DURATION_S / 3:
            for item in items:
                fn(item)
            done += len(items)
        best = max(best, done / elapsed)
    return best


def main() -> None:
    keys = [factories.identity(f"bench-{i}") for i in range(64)]
    samples = factories.sample_records()
    mix = [s for s in samples if s.TYPE in ("Heartbeat", "Claim", "Feedback", "TaskOffer")]
    envelopes = [encode(mix[i % len(mix)], keys[i % len(keys)]) for i in range(1024)]

    # Baseline: raw verify of (message, signature) pairs of the same sizes.
    raw = []
    for i, data in enumerate(envelopes):
        key: nacl.signing.SigningKey = keys[i % len(keys)].signing_key
        msg = data[: len(data) - 70]
        raw.append((key.verify_key, msg, key.sign(msg).signature))
    verify_rate = _rate(lambda t: t[0].verify(t[1], t[2]), raw)
    decode_rate = _rate(decode, envelopes)
    ratio = decode_rate / verify_rate
    print(
        f"machine: {platform.machine()} {platform.processor() or ''} "
        f"python {platform.python_version()}"
    )
    print(f"raw Ed25519 verify (baseline):   {verify_rate:10,.0f} /s/core")
    print(f"records decode + verify:        {decode_rate:10,.0f} /s/core")
    print(f"ratio:                           {ratio:10.2%}  (target >= 70%)")
    print(
        json.dumps(
            {
                "bench": "records",
                "decode_verify_per_s": round(decode_rate),
                "baseline": round(verify_rate),
                "ratio": round(ratio, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
