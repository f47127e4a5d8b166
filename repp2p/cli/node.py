"""``repp2p node run`` and ``repp2p status``: operate a full node."""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
from pathlib import Path

import trio

from repp2p.config import load_node_config
from repp2p.errors import ConfigError, NetworkError


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    node = subparsers.add_parser("node", help="run a full node")
    sub = node.add_subparsers(dest="node_command", metavar="ACTION")
    sub.required = True
    run = sub.add_parser("run", help="run a node until SIGINT/SIGTERM")
    run.add_argument("--config", required=True, help="node TOML file")
    run.add_argument(
        "--bootstrap",
        action="append",
        default=[],
        metavar="MULTIADDR",
        help="bootstrap peer (repeatable); overrides the config's list",
    )
    run.add_argument(
        "--ready-json",
        action="store_true",
        help="print one JSON line (peer_id, addrs, status) on stdout once listening",
    )
    run.set_defaults(func=_run)

    status = subparsers.add_parser("status", help="show a running node's peers, records, health")
    where = status.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", help="the node's TOML file (finds runtime.json)")
    where.add_argument("--data-dir", help="the node's data dir (finds runtime.json)")
    where.add_argument("--url", help="host:port of the node's status endpoint")
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    status.set_defaults(func=_status)


def _run(args: argparse.Namespace) -> int:
    from repp2p.logs import setup_logging
    from repp2p.node import Node

    config = load_node_config(args.config)
    if args.bootstrap:
        config = dataclasses.replace(config, bootstrap=tuple(args.bootstrap))
    setup_logging(config.log_format, config.log_level)
    if config.tee_kind == "simulated":
        print("repp2p: SIMULATED TEE — development only, NOT real security", file=sys.stderr)

    async def main() -> None:
        node = Node(config)
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            if args.ready_json:
                print(
                    json.dumps(
                        {
                            "peer_id": node.peer_id,
                            "addrs": node.addrs(),
                            "status": node.status_address,
                        }
                    ),
                    flush=True,
                )
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    node.stop()
                    break

    trio.run(main)
    return 0


def _status(args: argparse.Namespace) -> int:
    from repp2p.net.status_http import fetch, split_host_port

    if args.url:
        address = args.url
    else:
        data_dir = Path(args.data_dir) if args.data_dir else load_node_config(args.config).data_dir
        runtime = data_dir / "runtime.json"
        if not runtime.exists():
            raise NetworkError(f"no running node found ({runtime} is absent)")
        address = json.loads(runtime.read_text()).get("status")
        if not address:
            raise ConfigError('that node runs without a status endpoint (status_listen = "")')
    try:
        host, port = split_host_port(address)
    except ValueError:
        raise ConfigError(f"status address {address!r} is not host:port") from None
    try:
        body = trio.run(fetch, host, port, "/status")
    except (OSError, trio.TooSlowError) as exc:
        raise NetworkError(f"status endpoint {address} did not answer: {exc}") from None
    status = json.loads(body)
    if args.json:
        print(json.dumps(status, indent=1))
        return 0
    print(render_status(status))
    return 0


def render_status(status: dict) -> str:
    """A short human-readable view of one node's /status JSON."""
    tee = status["tee_kind"] + (
        "  (SIMULATED TEE — not real security)" if status.get("simulated_tee") else ""
    )
    records = ", ".join(f"{k} {v}" for k, v in status["records"].items() if v)
    rejected = ", ".join(f"{k} {int(v)}" for k, v in status["rejected"].items()) or "none"
    lines = [
        f"node      {status['peer_id']}",
        f"network   {status['network']}   tee {tee}",
        f"addrs     {' '.join(status['addrs'])}",
        f"peers     {status['peers']} connected, {status['routing_table']} in routing table",
        f"records   {status['records_total']} ({records or 'none'})",
        f"rejected  {rejected};  equivocations {status['equivocations']}",
        f"health    {'synced' if status['synced'] else 'syncing'}, up {status['uptime_s']} s",
    ]
    # A node of an older release has no "health" block: say nothing rather than "ok".
    for problem in status.get("health", {}).get("problems", []):
        lines.append(f"DEGRADED  {problem}")
    return "\n".join(lines)
