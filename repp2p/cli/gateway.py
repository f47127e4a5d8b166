"""``repp2p gateway``: serve the OpenAI-compatible HTTP API (docs/gateway.md).

Joins the network as a client (its identity and records in ``--data-dir``), then serves on
``--listen`` (loopback by default) until Ctrl-C or SIGTERM. The bearer token is read from
a file or the ``REPP2P_GATEWAY_TOKEN`` environment variable, never from the command line
(which every local user can read in the process list).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from repp2p.config import load_bootstrap_list
from repp2p.errors import ConfigError
from repp2p.network_params import NetworkParams

if TYPE_CHECKING:
    from repp2p.gateway import GatewayConfig

#: Environment variable holding the bearer token (when no --token-file is given).
TOKEN_ENV = "REPP2P_GATEWAY_TOKEN"


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "gateway", help="serve an OpenAI-compatible HTTP API (embeddings, tasks, models)"
    )
    p.add_argument(
        "--listen", default="127.0.0.1:8080", help="IP:PORT to serve on (default 127.0.0.1:8080)"
    )
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
    p.add_argument("--data-dir", help="client identity and records (default ~/.local/share)")
    p.add_argument(
        "--token-file",
        help=f"file holding the bearer token clients must send (default: ${TOKEN_ENV}; "
        "none: no token asked)",
    )
    p.add_argument("--redundancy", type=int, default=1, help="default nodes per task (k)")
    p.add_argument("--timeout", type=float, default=30.0, help="default seconds per task")
    p.add_argument(
        "--max-body", type=int, default=1 << 20, help="largest request body, bytes (1 MiB)"
    )
    p.add_argument(
        "--max-requests",
        type=int,
        default=64,
        help="HTTP requests handled at once; more get 503 gateway_overloaded (default 64)",
    )
    p.add_argument(
        "--no-explorer", action="store_true", help="do not serve the explorer at /explorer"
    )
    p.add_argument(
        "--ready-json", action="store_true", help="print one JSON line once serving (tools)"
    )
    p.set_defaults(func=run)


#: Longest token file read, bytes (a token is a line; a bigger file is a mistake).
MAX_TOKEN_FILE = 4096


def _token(args: argparse.Namespace) -> str:
    if args.token_file:
        path = Path(args.token_file)
        try:
            with path.open("rb") as file:
                data = file.read(MAX_TOKEN_FILE + 1)
            mode = path.stat().st_mode
            text = data.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read --token-file {args.token_file}: {exc}") from None
        if len(data) > MAX_TOKEN_FILE:
            raise ConfigError(f"--token-file {args.token_file}: over {MAX_TOKEN_FILE} bytes")
        if mode & 0o077:
            print(
                f"repp2p: warning: --token-file {args.token_file} can be read by other users "
                "(chmod 600 it)",
                file=sys.stderr,
            )
        return text.strip()
    return os.environ.get(TOKEN_ENV, "").strip()


def run(args: argparse.Namespace) -> int:
    try:
        import hypercorn.trio  # noqa: F401  (imported when serving; missing: say so now)

        from repp2p.gateway import GatewayConfig, parse_listen
    except ImportError as exc:
        raise ConfigError(
            f"repp2p gateway needs the 'gateway' extra ({exc.name} is missing): "
            "pip install 'repp2p[gateway]'"
        ) from None
    from repp2p.gateway.config import is_loopback
    from repp2p.logs import setup_logging

    setup_logging("text", "WARNING")
    host, port = parse_listen(args.listen)
    config = GatewayConfig(
        host=host,
        port=port,
        token=_token(args),
        max_body_bytes=args.max_body,
        max_requests=args.max_requests,
        redundancy=args.redundancy,
        timeout_s=args.timeout,
    )
    if not is_loopback(host) and not config.token:
        print(
            f"repp2p: warning: serving on {host} without a bearer token: anyone who can reach "
            f"it spends this client's tasks (set {TOKEN_ENV} or --token-file)",
            file=sys.stderr,
        )
    params = NetworkParams.load(args.network)
    bootstrap = args.bootstrap or list(load_bootstrap_list(args.network))
    if not bootstrap:
        raise ConfigError("no bootstrap peer: pass --bootstrap MULTIADDR")
    data_dir = (
        Path(args.data_dir)
        if args.data_dir
        else Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
        / "repp2p"
        / f"gateway-{args.network}"
    )
    trio.run(_main, args, config, params, bootstrap, data_dir)
    return 0


async def _main(
    args: argparse.Namespace,
    config: GatewayConfig,
    params: NetworkParams,
    bootstrap: list[str],
    data_dir: Path,
) -> None:
    from repp2p.client import Client
    from repp2p.gateway import ClientBackend, build_client_app, serve

    async with Client.open(
        bootstrap, data_dir=data_dir, network=args.network, network_params=params
    ) as client:
        backend = ClientBackend(client)
        # A client that has just synced may see no eligible node until the next epoch's
        # view: wait for one (two epochs at most) so that "ready" means able to serve.
        with trio.move_on_after(2 * params.epoch_s):
            while not backend.models()[1]:
                await trio.sleep(0.5)
        if not backend.models()[1]:
            print("repp2p: warning: no eligible node serves any engine yet", file=sys.stderr)
        app = build_client_app(client, config, explorer=not args.no_explorer)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                urls = await nursery.start(serve, app, config)
                if args.ready_json:
                    print(json.dumps({"ready": True, "urls": urls}), flush=True)
                else:
                    print(
                        f"repp2p gateway: serving {', '.join(urls)} (OpenAI base_url: "
                        f"{urls[0]}/v1), client {client.peer_id}; Ctrl-C stops",
                        flush=True,
                    )
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break
