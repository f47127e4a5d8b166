"""``repp2p keys``: create and inspect identity key files."""

from __future__ import annotations

import argparse

from repp2p.identity import Identity


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    keys = subparsers.add_parser("keys", help="create and inspect identity keys")
    sub = keys.add_subparsers(dest="keys_command", metavar="ACTION")
    sub.required = True
    new = sub.add_parser("new", help="write a new Ed25519 key file (mode 0600)")
    new.add_argument("path", help="key file to create")
    new.add_argument("--force", action="store_true", help="overwrite an existing file")
    new.set_defaults(func=_new)
    show = sub.add_parser("show", help="print the peer ID of a key file")
    show.add_argument("path", help="key file to read")
    show.set_defaults(func=_show)


def _new(args: argparse.Namespace) -> int:
    identity = Identity.generate()
    identity.save(args.path, overwrite=args.force)
    print(identity.peer_id)
    return 0


def _show(args: argparse.Namespace) -> int:
    print(Identity.load(args.path).peer_id)
    return 0
