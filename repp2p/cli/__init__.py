"""The ``repp2p`` command line.

Each command group lives in its own module exposing ``add_parser(subparsers)``; handlers
return the exit code. Errors of the :class:`~repp2p.errors.ReppError` family are printed as
one clear line on stderr with exit code 1, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from repp2p import __version__
from repp2p.errors import ReppError


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and docs)."""
    from repp2p.cli import attest, demo, devnet, keys, ledger, node, sim, submit, walkthrough

    parser = argparse.ArgumentParser(
        prog="repp2p", description="Peer-to-peer marketplace of TEE compute nodes."
    )
    parser.add_argument("--version", action="version", version=f"repp2p {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module in (keys, node, devnet, submit, demo, ledger, sim, attest, walkthrough):
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ReppError as exc:
        print(f"repp2p: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
