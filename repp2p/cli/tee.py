"""``repp2p tee probe``: which TEE interfaces this machine offers, and why others are missing.
``repp2p tee fetch-collateral``: the DCAP collateral file a TDX node's ``tee_collateral``
names, fetched from Intel's PCS (or a PCCS) and checked against a quote of this machine.

Exit codes of ``probe``: 0 at least one hardware TEE kind is usable here; 2 none is (the
reasons are printed); 1 the command could not run. ``fetch-collateral``: 0 written, 1 not
(the file is replaced only by collateral that verifies the quote).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from repp2p.tee import collateral
from repp2p.tee.configfs_tsm import ConfigfsTsm
from repp2p.tee.errors import TeeInterfaceError
from repp2p.tee.guest_devices import TdxGuestDevice
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
    fetch = sub.add_parser(
        "fetch-collateral",
        help="fetch the DCAP collateral file a TDX node needs (tee_collateral)",
        description="Fetch TCB info, QE identity and CRLs for this machine's platform from "
        "Intel's PCS, check them against a quote, and write the collateral JSON. Run it "
        "daily (TCB info expires); the node re-reads the file at every attestation.",
    )
    fetch.add_argument("--out", required=True, help="the file to write (tee_collateral)")
    fetch.add_argument(
        "--quote",
        help="a quote of this platform (default: take one here, through configfs-tsm or "
        "/dev/tdx_guest)",
    )
    fetch.add_argument("--pcs", default=collateral.INTEL_PCS, help="PCS or PCCS base URL")
    fetch.add_argument(
        "--root-crl-url", default=collateral.INTEL_ROOT_CRL, help="the root CA's CRL"
    )
    fetch.set_defaults(func=handle_fetch_collateral)


def handle_probe(args: argparse.Namespace) -> int:
    """Handler of ``tee probe``; returns the exit code."""
    result = probe(args.root, create_entry=not args.no_entry)
    if args.json:
        print(json.dumps(result.to_json_dict(), indent=2))
    else:
        print(result.describe())
    return EXIT_USABLE if result.usable_kinds else EXIT_NONE


def _local_quote() -> bytes:
    """A quote of this TD about nothing: configfs-tsm, else /dev/tdx_guest and the QGS."""
    tsm, device = ConfigfsTsm(), TdxGuestDevice()
    if not tsm.report_dir.is_dir() and device.path.exists():
        return device.qgs.get_quote(device.tdreport(bytes(64)))
    return tsm.report(bytes(64), provider="tdx_guest").outblob  # MISSING names configfs-tsm


def handle_fetch_collateral(args: argparse.Namespace) -> int:
    """Handler of ``tee fetch-collateral``; returns the exit code."""
    try:
        quote = Path(args.quote).read_bytes() if args.quote else _local_quote()
        data = collateral.fetch_collateral(
            quote, int(time.time()), pcs=args.pcs, root_crl_url=args.root_crl_url
        )
    except (OSError, TeeInterfaceError, collateral.CollateralError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, out)  # readers see the old file or the new one, never half
    print(f"wrote {out} ({len(data)} bytes): it verifies this platform's quote")
    return 0
