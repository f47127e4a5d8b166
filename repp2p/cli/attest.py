"""``repp2p attest verify``: verify TEE evidence offline and print its claims.

Exit codes: 0 the evidence verified (and the policy, when given, accepted it); 2 it was
rejected (the reason is printed); 1 the command could not run (unreadable file, bad policy,
bad arguments). Simulated evidence is always printed under a loud label.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

from repp2p.attestation import (
    KNOWN_KINDS,
    SIMULATED_LABEL,
    Claims,
    default_backends,
    load_policy,
    verify_evidence,
)
from repp2p.attestation.certs import load_certificates
from repp2p.errors import AttestationError, AttestationReason, ConfigError

EXIT_ACCEPTED = 0
EXIT_ERROR = 1
EXIT_REJECTED = 2
#: Kinds whose collateral is a certificate bundle (``--chain`` and ``--collateral`` merge).
_CHAIN_KINDS = frozenset({"sev-snp", "nvidia"})


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``attest verify`` on the top-level ``repp2p`` subparsers."""
    attest = subparsers.add_parser("attest", help="verify TEE attestation evidence offline")
    sub = attest.add_subparsers(dest="attest_command", metavar="ACTION")
    sub.required = True
    verify = sub.add_parser(
        "verify",
        help="verify evidence and print its claims",
        description="Verify TEE evidence offline. Exit 0 accepted, 2 rejected, 1 error.",
    )
    verify.add_argument("file", help="evidence file (raw, base64 or hex as the kind allows)")
    verify.add_argument("--kind", required=True, choices=sorted(KNOWN_KINDS), help="TEE kind")
    verify.add_argument(
        "--collateral", help="collateral file (DCAP: collateral JSON; SEV-SNP/NVIDIA: certs)"
    )
    verify.add_argument(
        "--chain", action="append", default=[], help="certificate file(s) to add (PEM or DER)"
    )
    verify.add_argument(
        "--at", help="verify at this time (ISO 8601, e.g. 2023-01-01T00:00:00Z); default: now"
    )
    verify.add_argument("--policy", help="policy TOML; without it only the evidence is checked")
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    verify.set_defaults(func=handle_verify)


def parse_time(text: str) -> int:
    """Unix seconds of an ISO-8601 time; naive times are taken as UTC."""
    try:
        dt = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--at {text!r} is not an ISO 8601 time") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.UTC)
    return int(dt.timestamp())


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None


def _collateral(kind: str, collateral: str | None, chains: list[str]) -> bytes:
    files = ([collateral] if collateral else []) + list(chains)
    if kind not in _CHAIN_KINDS:
        if chains:
            raise ConfigError(f"--chain is not used by kind {kind!r}")
        return _read(collateral) if collateral else b""
    # Certificate bundles may mix PEM and DER files: normalise to concatenated DER.
    return b"".join(c.der for path in files for c in load_certificates(_read(path)))


def _print_claims(claims: Claims, policy_name: str, as_json: bool) -> None:
    if as_json:
        print(
            json.dumps({"accepted": True, "policy": policy_name, "claims": claims.to_json_dict()})
        )
        return
    if claims.simulated:
        bar = "!" * len(SIMULATED_LABEL)
        print(f"{bar}\n{SIMULATED_LABEL}\n{bar}")
    print(f"ACCEPTED ({policy_name})")
    print(claims.describe())


def handle_verify(args: argparse.Namespace) -> int:
    """Handler of ``attest verify``; returns the exit code."""
    try:
        evidence = _read(args.file)
        now = parse_time(args.at) if args.at else int(time.time())
        policy = load_policy(args.policy) if args.policy else None
        collateral = _collateral(args.kind, args.collateral, args.chain)
    except (ConfigError, AttestationError) as exc:
        print(f"repp2p attest: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        if policy is None:
            claims = default_backends()[args.kind].verify(evidence, collateral, now)
            # Without a policy there is no age limit, but the verification window
            # (certificates, collateral) still has to hold at the requested time.
            if now < claims.valid_from:
                raise AttestationError(
                    AttestationReason.CERT_NOT_YET_VALID,
                    f"valid from {claims.valid_from}, verified at {now} (use --at)",
                )
            if now > claims.valid_until:
                raise AttestationError(
                    AttestationReason.CERT_EXPIRED,
                    f"valid until {claims.valid_until}, verified at {now} (use --at)",
                )
            policy_name = "evidence only, no policy"
        else:
            claims = verify_evidence(args.kind, evidence, collateral, policy, now)
            policy_name = f"policy {args.policy}"
    except AttestationError as exc:
        if args.json:
            print(json.dumps({"accepted": False, "reason": exc.reason.value, "detail": exc.detail}))
        else:
            print(f"REJECTED: {exc.reason.value}: {exc.detail}")
        return EXIT_REJECTED
    _print_claims(claims, policy_name, args.json)
    return EXIT_ACCEPTED
