"""Benchmark: cold verification time per TEE kind, and cached re-verification.

Cold = a fresh ``backend.verify`` of the evidence (parsing, every certificate, signature and
collateral check; nothing reused between calls). Cached = ``verify_node`` with a
``VerificationCache`` holding the result (hash of the inputs + the policy's time checks).
Baseline, measured in the same run: one raw ECDSA P-384/SHA-384 verification by
``cryptography`` (the primitive Nitro and SEV-SNP need several of); ``ratio`` is the Nitro
cold time over it (Nitro does 5 such verifications).

Targets: Nitro and SEV-SNP <= 3 ms, DCAP <= 10 ms, cached <= 50 µs. Reads the vectors from
``$REPP2P_VECTORS`` (default ``../shared/attestation-vectors``). Single thread. Ends with one
JSON line of the figures.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from repp2p.attestation import (
    DcapBackend,
    NitroBackend,
    NvidiaBackend,
    Policy,
    SevSnpBackend,
    SimulatedEnclave,
    TcbStatus,
    VerificationCache,
    verify_node,
)

REPO = Path(__file__).resolve().parents[1]
VECTORS = Path(os.environ.get("REPP2P_VECTORS", REPO.parent / "shared" / "attestation-vectors"))


def ts(iso: str) -> int:
    return int(datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


def per_call(fn, min_time_s: float = 0.5, repeats: int = 5) -> float:
    """Median seconds per call over ``repeats`` batches of at least ``min_time_s / repeats``."""
    fn()  # warm-up (imports, pinned roots)
    samples = []
    for _ in range(repeats):
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < min_time_s / repeats:
            fn()
            n += 1
        samples.append(elapsed / n)
    return statistics.median(samples)


def main() -> None:
    if not VECTORS.is_dir():
        sys.exit(f"attestation vectors not found at {VECTORS} (set REPP2P_VECTORS)")

    def read(rel: str) -> bytes:
        return (VECTORS / rel).read_bytes()

    cases = {
        "nitro": (NitroBackend(), read("nitro/valid-attestation-doc-bytes"), b"",
                  ts("2022-10-13T08:58:30Z")),
        "sev_snp": (SevSnpBackend(), read("sev-snp/attestation.bin"),
                    read("sev-snp/vcek.testcer"), ts("2023-01-01T00:00:00Z")),
        "dcap_sgx": (DcapBackend(), read("tdx-sgx/sgx_quote"),
                     read("tdx-sgx/sgx_quote_collateral.json"), ts("2025-06-20T00:00:00Z")),
        "dcap_tdx": (DcapBackend(), read("tdx-sgx/tdx_quote"),
                     read("tdx-sgx/tdx_quote_collateral.json"), ts("2025-06-20T00:00:00Z")),
        "nvidia": (NvidiaBackend(), read("nvidia-h100/hopperAttestationReport.txt"),
                   read("nvidia-h100/hopperCertChain.txt"), ts("2025-01-01T00:00:00Z")),
    }  # fmt: skip
    results_ms = {}
    for name, (backend, evidence, collateral, now) in cases.items():
        results_ms[name] = per_call(lambda b=backend, e=evidence, c=collateral, t=now:
                                    b.verify(e, c, t)) * 1e3  # fmt: skip
        print(f"{name:10s} cold verify: {results_ms[name]:7.3f} ms")

    # Cached re-verification of a node (simulated evidence carries our binding).
    enclave = SimulatedEnclave(seed=b"\x01" * 32, measurement=b"\xab" * 48)
    peer, enc, res, nonce, now = (
        "12D3KooWBenchPeer",
        b"\x01" * 32,
        b"\x02" * 32,
        b"\x03" * 32,
        10**9,
    )
    evidence = enclave.attest(peer, enc, res, 5, nonce, now)
    policy = Policy(profile="dev", accepted_kinds=frozenset({"simulated"}), allow_simulated=True,
                    min_tcb_status=TcbStatus.UP_TO_DATE)  # fmt: skip
    cache: VerificationCache = VerificationCache()

    def node(c: VerificationCache | None) -> object:
        return verify_node(peer, "simulated", evidence, b"", b"", enc, res, 5, nonce, policy,
                           now + 1, cache=c)  # fmt: skip

    simulated_cold_ms = per_call(lambda: node(None)) * 1e3
    node(cache)
    cached_us = per_call(lambda: node(cache)) * 1e6
    print(f"simulated  verify_node cold: {simulated_cold_ms:7.3f} ms")
    print(f"cached     verify_node hit:  {cached_us:7.1f} us")

    key = ec.generate_private_key(ec.SECP384R1())
    message = b"x" * 672
    signature = key.sign(message, ec.ECDSA(hashes.SHA384()))
    public = key.public_key()
    baseline_ms = per_call(lambda: public.verify(signature, message,
                                                 ec.ECDSA(hashes.SHA384()))) * 1e3  # fmt: skip
    print(f"baseline   raw P-384 ECDSA verify: {baseline_ms:7.3f} ms")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}"
    )
    dcap_ms = max(results_ms["dcap_sgx"], results_ms["dcap_tdx"])
    print(
        json.dumps(
            {
                "bench": "attestation",
                "nitro_ms": round(results_ms["nitro"], 3),
                "sev_snp_ms": round(results_ms["sev_snp"], 3),
                "dcap_ms": round(dcap_ms, 3),
                "nvidia_ms": round(results_ms["nvidia"], 3),
                "simulated_ms": round(simulated_cold_ms, 3),
                "cached_us": round(cached_us, 1),
                "baseline": round(baseline_ms, 3),
                "ratio": round(results_ms["nitro"] / baseline_ms, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
