"""``repp2p tee probe``: which TEE interfaces this machine offers, and why others are missing.

Exit codes: 0 at least one hardware TEE kind is usable here; 2 none is (the reasons are
printed); 1 the command could not run.
"""

from __future__ import annotations

import argparse
import json

from repp2p.tee.probe import probe

EXIT_USABLE = 0
EXIT_NONE = 2


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``tee probe`` on the top-level ``repp2p`` subparsers."""
    tee = subparsers.add_parser("tee", help="inspect this machine's TEE interfaces")
    sub = tee.add_subparsers(dest="tee_command", metavar="ACTION")
    sub.required = True
    cmd = sub.add_parser(
        "probe",
        help="say which TEE kinds this machine offers and why the others are missing",
        description="Probe configfs-tsm, /dev/sev-guest, /dev/tdx_guest, /dev/nsm, "
        "/dev/nitro_enclaves and NVIDIA GPUs. Exit 0 when a hardware TEE kind is usable, 2 "
        "when none is.",
    )
    cmd.add_argument("--json", action="store_true", help="print one JSON object")
    cmd.add_argument(
        "--root", default="/", help="filesystem root to probe (default /; tests use a fake tree)"
    )
    cmd.add_argument(
        "--no-entry",
        action="store_true",
        help="do not create a configfs-tsm entry to read its provider",
    )
    cmd.set_defaults(func=handle_probe)


def handle_probe(args: argparse.Namespace) -> int:
    """Handler of ``tee probe``; returns the exit code."""
    result = probe(args.root, create_entry=not args.no_entry)
    if args.json:
        print(json.dumps(result.to_json_dict(), indent=2))
    else:
        print(result.describe())
    return EXIT_USABLE if result.usable_kinds else EXIT_NONE
