"""``repp2p submit``: run one task on the network and print the verified result."""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import os
import sys
from pathlib import Path

import trio

from repp2p.config import load_bootstrap_list
from repp2p.errors import ConfigError
from repp2p.network_params import NetworkParams


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("submit", help="run a task on the network, print the result")
    p.add_argument("--engine", required=True, help="engine id, e.g. echo, sentiment")
    p.add_argument("--input", required=True, help="the input text, or @FILE to read a file")
    p.add_argument(
        "--bootstrap",
        action="append",
        default=[],
        metavar="MULTIADDR",
        help="a peer to join through (repeatable); default: the network's bootstrap list",
    )
    p.add_argument(
        "--network", default="dev", help="network name: bootstrap/<network>.toml (default dev)"
    )
    p.add_argument("--redundancy", type=int, default=1, help="nodes that run it (k)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds for the whole task")
    p.add_argument("--data-dir", help="client identity and records (default ~/.local/share)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _read_input(text: str) -> bytes:
    if text.startswith("@"):
        try:
            return Path(text[1:]).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {text[1:]}: {exc.strerror}") from None
    return text.encode("utf-8")


def run(args: argparse.Namespace) -> int:
    from repp2p.client import Client
    from repp2p.logs import setup_logging

    setup_logging("text", "WARNING")
    data = _read_input(args.input)
    # The network's file gives the epoch length (and every other shared parameter), the
    # same one its nodes read: a client on another epoch length would build other views.
    params = NetworkParams.load(args.network)
    bootstrap = args.bootstrap or list(load_bootstrap_list(args.network))
    if not bootstrap:
        raise ConfigError("no bootstrap peer: pass --bootstrap MULTIADDR")
    epoch_s = params.epoch_s
    data_dir = (
        Path(args.data_dir)
        if args.data_dir
        else Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
        / "repp2p"
        / f"client-{args.network}"
    )

    async def main():
        async with Client.open(
            bootstrap, data_dir=data_dir, network=args.network, network_params=params
        ) as client:
            await client.wait_for_nodes(args.engine, args.redundancy, timeout=2 * epoch_s)
            return await client.submit(
                args.engine, data, redundancy=args.redundancy, timeout=args.timeout
            )

    result = trio.run(main)
    try:
        text, encoding = result.output.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(result.output).decode(), "base64"
    if args.json:
        print(
            json.dumps(
                {
                    "output": text,
                    "output_encoding": encoding,
                    "task_id": result.task_id,
                    "offer_id": result.offer_id,
                    "engine": result.engine,
                    "redundancy": result.redundancy,
                    "agreed": result.agreed,
                    "latency_ms": result.latency_ms,
                    "proof": dataclasses.asdict(result.proof),
                    "proofs": [dataclasses.asdict(p) for p in result.proofs],
                }
            )
        )
    else:
        print(text)
        print(result.summary(), file=sys.stderr if not sys.stdout.isatty() else sys.stdout)
    return 0
