"""``repp2p attest verify`` through argparse, as the main CLI wires it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from repp2p.attestation import SIMULATED_LABEL, SimulatedEnclave
from repp2p.cli import attest

from .conftest import MEASUREMENT, REPO, VECTORS, vector


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="repp2p")
    attest.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_nitro_accepted_and_json(capsys) -> None:  # type: ignore[no-untyped-def]
    vector("nitro/valid-attestation-doc-bytes")
    path = str(VECTORS / "nitro/valid-attestation-doc-bytes")
    assert run(["attest", "verify", path, "--kind", "nitro", "--at", "2022-10-13T09:00:00Z"]) == 0
    assert "ACCEPTED" in capsys.readouterr().out
    code = run(
        [
            "attest",
            "verify",
            path,
            "--kind",
            "nitro",
            "--at",
            "2022-10-13T09:00:00Z",
            "--json",
            "--policy",
            str(REPO / "bootstrap/policy-production.toml"),
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["accepted"] and out["claims"]["kind"] == "nitro"


def test_rejections_exit_2_with_reason(capsys) -> None:  # type: ignore[no-untyped-def]
    vector("nitro/debug-mode-attestation-doc-bytes")
    path = str(VECTORS / "nitro/debug-mode-attestation-doc-bytes")
    code = run(
        [
            "attest",
            "verify",
            path,
            "--kind",
            "nitro",
            "--at",
            "2022-10-12T13:51:00Z",
            "--policy",
            str(REPO / "bootstrap/policy-production.toml"),
        ]
    )
    assert code == 2 and "debug_enclave" in capsys.readouterr().out
    code = run(["attest", "verify", path, "--kind", "sev-snp", "--json"])
    assert code == 2 and json.loads(capsys.readouterr().out)["reason"] == "malformed"


def test_sev_snp_chain_files_and_dcap_collateral(capsys) -> None:  # type: ignore[no-untyped-def]
    vector("sev-snp/attestation.bin")
    sev = VECTORS / "sev-snp"
    code = run(
        [
            "attest",
            "verify",
            str(sev / "attestation.bin"),
            "--kind",
            "sev-snp",
            "--chain",
            str(sev / "vcek.testcer"),
            "--collateral",
            str(sev / "ask_ark_milan.pem"),
            "--at",
            "2023-01-01",
        ]
    )
    assert code == 0
    dcap = VECTORS / "tdx-sgx"
    code = run(
        [
            "attest",
            "verify",
            str(dcap / "tdx_quote"),
            "--kind",
            "dcap",
            "--collateral",
            str(dcap / "tdx_quote_collateral.json"),
            "--at",
            "2025-06-20T00:00:00Z",
        ]
    )
    assert code == 0 and "UpToDate" in capsys.readouterr().out


def test_simulated_is_labelled_loudly(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    ev = SimulatedEnclave(seed=b"\x01" * 32, measurement=MEASUREMENT).evidence(b"\0" * 64, 10**9)
    path = tmp_path / "sim.cbor"
    path.write_bytes(ev)
    assert (
        run(["attest", "verify", str(path), "--kind", "simulated", "--at", "2001-09-09T01:46:40Z"])
        == 0
    )
    out = capsys.readouterr().out
    assert out.count(SIMULATED_LABEL) >= 2
    assert (
        run(
            [
                "attest",
                "verify",
                str(path),
                "--kind",
                "simulated",
                "--json",
                "--at",
                "2001-09-09T01:46:40Z",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["claims"]["label"] == SIMULATED_LABEL
    code = run(
        [
            "attest",
            "verify",
            str(path),
            "--kind",
            "simulated",
            "--at",
            "2001-09-09T01:46:40Z",
            "--policy",
            str(REPO / "bootstrap/policy-production.toml"),
        ]
    )
    assert code == 2 and "simulated_not_allowed" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["attest", "verify", "/nonexistent", "--kind", "nitro"],
        ["attest", "verify", __file__, "--kind", "nitro", "--at", "yesterday"],
        ["attest", "verify", __file__, "--kind", "nitro", "--policy", "/nonexistent.toml"],
        ["attest", "verify", __file__, "--kind", "nitro", "--chain", __file__],
        ["attest", "verify", __file__, "--kind", "sev-snp", "--chain", __file__],
    ],
)
def test_errors_exit_1(argv: list[str], capsys) -> None:  # type: ignore[no-untyped-def]
    assert run(argv) == 1
    assert "error" in capsys.readouterr().err


def test_without_at_or_policy_an_expired_window_is_rejected(capsys) -> None:  # type: ignore[no-untyped-def]
    # The 2022 Nitro document verifies at its own time but not today: no policy means no
    # age limit, not "any time goes".
    vector("nitro/valid-attestation-doc-bytes")
    path = str(VECTORS / "nitro/valid-attestation-doc-bytes")
    assert run(["attest", "verify", path, "--kind", "nitro"]) == 2
    out = capsys.readouterr().out
    assert "REJECTED: cert_expired" in out
