"""Shared fixtures: the real evidence vectors (read in place, never copied) and policies."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import pytest

from repp2p.attestation import Policy, SimulatedEnclave, TcbStatus

REPO = Path(__file__).resolve().parents[2]
VECTORS = Path(os.environ.get("REPP2P_VECTORS", REPO.parent / "shared" / "attestation-vectors"))


def ts(iso: str) -> int:
    """Unix seconds of an ISO-8601 UTC time."""
    return int(datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


def vector(relative: str) -> bytes:
    """Bytes of a shared vector, or skip the test with the reason."""
    path = VECTORS / relative
    if not path.is_file():
        pytest.skip(f"attestation vector {relative} not found under {VECTORS} (set REPP2P_VECTORS)")
    return path.read_bytes()


# Times to verify each vector at (from each SOURCES.md).
NITRO_VALID_AT = ts("2022-10-13T08:58:30Z")
NITRO_DEBUG_AT = ts("2022-10-12T13:50:30Z")
NITRO_B64_AT = ts("2023-09-18T15:04:00Z")
SEV_GO_AT = ts("2023-01-01T00:00:00Z")
SEV_VIRTEE_AT = ts("2023-06-01T00:00:00Z")
SEV_TURIN_AT = ts("2025-01-01T00:00:00Z")
DCAP_SGX_AT = ts("2025-06-20T00:00:00Z")
DCAP_TDX_AT = ts("2025-06-20T00:00:00Z")
DCAP_TDX_V5_AT = ts("2026-02-19T00:00:00Z")
DCAP_SPR_AT = ts("2023-07-01T01:00:00Z")
NVIDIA_AT = ts("2025-01-01T00:00:00Z")

PEER_ID = "12D3KooWGzh8ZLf2y3bU4mbqCqx6sYfYJtmyE4pN7vUjEGbN3oXz"
ENC_KEY = bytes(range(32))
RESULT_KEY = bytes(range(32, 64))
NONCE = b"\x42" * 32
MEASUREMENT = bytes.fromhex("ab" * 48)


@pytest.fixture
def enclave() -> SimulatedEnclave:
    return SimulatedEnclave(seed=b"\x01" * 32, measurement=MEASUREMENT)


@pytest.fixture
def dev_policy() -> Policy:
    return Policy(
        profile="dev",
        accepted_kinds=frozenset({"simulated", "nitro", "sev-snp", "dcap", "nvidia"}),
        allow_simulated=True,
        allow_debug=True,
        min_tcb_status=TcbStatus.OUT_OF_DATE,
        max_evidence_age_s=10 * 365 * 86400,
    )


@pytest.fixture
def prod_policy() -> Policy:
    return Policy(
        profile="production",
        accepted_kinds=frozenset({"nitro", "sev-snp", "dcap", "nvidia"}),
        min_tcb_status=TcbStatus.SW_HARDENING_NEEDED,
        max_evidence_age_s=10 * 365 * 86400,
    )
