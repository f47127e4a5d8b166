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
    from repp2p.cli import (
        attest,
        demo,
        devnet,
        gateway,
        keys,
        ledger,
        node,
        sim,
        submit,
        tee,
        walkthrough,
    )

    parser = argparse.ArgumentParser(
        prog="repp2p", description="Peer-to-peer marketplace of TEE compute nodes."
    )
    parser.add_argument("--version", action="version", version=f"repp2p {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module in (
        keys,
        node,
        devnet,
        submit,
        gateway,
        demo,
        ledger,
        sim,
        attest,
        tee,
        walkthrough,
    ):
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
    except BaseExceptionGroup as group:
        # A node runs in a trio nursery, which wraps what escapes it in an exception group:
        # when every error in it is ours, it is still the operator's one-line error.
        errors = _leaves(group)
        if all(isinstance(e, ReppError) for e in errors):
            for exc in dict.fromkeys(str(e) for e in errors):
                print(f"repp2p: error: {exc}", file=sys.stderr)
            return 1
        if all(isinstance(e, KeyboardInterrupt) for e in errors):
            return 130
        raise
    except KeyboardInterrupt:
        return 130


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    """The exceptions of a (nested) exception group, in order."""
    out: list[BaseException] = []
    for exc in group.exceptions:
        out += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return out


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
