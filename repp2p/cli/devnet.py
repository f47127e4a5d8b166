"""``repp2p devnet``: a local network of node processes on 127.0.0.1.

Starts a bootstrap node and N nodes, each a separate ``repp2p node run`` process with its
own data dir, shows a live status table (or JSON lines with ``--json``), and on Ctrl-C,
SIGTERM or the end of ``--duration`` stops every process (SIGTERM, then SIGKILL after a
grace period), leaving nothing running.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from repp2p.errors import NetworkError, ReppError
from repp2p.network_params import NetworkParams

GRACE_S = 10.0
#: Lines of a node's log that an error about the node carries.
LOG_TAIL_LINES = 20
#: The dev network's epoch in seconds, read from bootstrap/dev.toml: the devnet's nodes
#: read the same file, and its clients (demo, benches, tests) must use the same value.
EPOCH_S = NetworkParams.load("dev").epoch_s


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("devnet", help="run a local network of node processes")
    p.add_argument("--nodes", type=int, default=4, help="nodes besides the bootstrap (default 4)")
    p.add_argument("--duration", type=float, default=math.inf, help="stop after S seconds")
    p.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    p.add_argument("--dir", help="keep data dirs here (default: a temporary folder, removed)")
    p.add_argument(
        "--engines", default="echo,sentiment", help="comma-separated engines every node serves"
    )
    p.set_defaults(func=run)


def _config(
    folder: Path, name: str, engines: list[str], extra: dict[str, Any] | None = None
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = {
        "network": "dev",
        "data_dir": ".",
        "listen": ["/ip4/127.0.0.1/tcp/0"],
        "engines": engines,
        "status_listen": "127.0.0.1:0",
        "heartbeat_interval_s": float(EPOCH_S),  # one per epoch: views take an epoch's last one
        # republish_interval_s stays at the node default (300 s): each round re-provides
        # every engine on the DHT, dialling the peers closest to each key, and those
        # connections are trimmed again soon after; a short interval makes that churn a
        # large share of an idle devnet's CPU (docs/design-notes.md, "Connection trimming").
        "log_level": "WARNING",
        **(extra or {}),
    }
    tables = {key: settings.pop(key) for key in list(settings) if isinstance(settings[key], dict)}
    # Every devnet peer is on 127.0.0.1: mesh IP diversity cannot hold.
    tables["gossip"] = {"eclipse_protection": False, **tables.get("gossip", {})}
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    for table, values in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    lines.append("")
    path = folder / "node.toml"
    path.write_text("\n".join(lines))
    return path


def log_tail(path: Path, max_lines: int = LOG_TAIL_LINES) -> str:
    """The last ``max_lines`` lines of the log at ``path`` (at most 8 KiB), indented; a note
    when it cannot be read or is empty."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 8192))
            text = f.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"  (cannot read the log: {exc.strerror})"
    lines = text.splitlines()[-max_lines:]
    return "\n".join(f"  {line}" for line in lines) if lines else "  (the log is empty)"


class Devnet:
    """The running processes of a devnet."""

    def __init__(
        self,
        folder: Path,
        size: int,
        engines: list[str],
        extra: dict[str, Any] | None = None,
        per_node: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.folder = folder
        self.size = size
        self.engines = engines
        self.extra = extra or {}  # config keys for every node (tests, demo)
        self.per_node = per_node or {}  # name -> config keys for one node
        self.procs: list[trio.Process] = []
        self.info: list[dict[str, Any]] = []

    async def _spawn(self, name: str, bootstrap: str | None) -> dict[str, Any]:
        settings = {**self.extra, **self.per_node.get(name, {})}
        config = _config(self.folder / name, name, self.engines, settings)
        cmd = [
            sys.executable,
            "-m",
            "repp2p",
            "node",
            "run",
            "--config",
            str(config),
            "--ready-json",
        ]
        if bootstrap:
            cmd += ["--bootstrap", bootstrap]
        log = open(self.folder / name / "node.log", "ab")  # noqa: SIM115 (owned by the process)
        proc = await trio.lowlevel.open_process(cmd, stdout=subprocess.PIPE, stderr=log)
        log.close()
        self.procs.append(proc)
        line = b""
        with trio.move_on_after(60):
            while not line.endswith(b"\n"):
                chunk = await proc.stdout.receive_some(1)
                if not chunk:
                    break
                line += chunk
        try:
            info = json.loads(line)
        except ValueError:
            # The folder may be temporary (removed when the devnet stops): the error carries
            # the log's last lines rather than only a path that is gone by the time it is read.
            path = self.folder / name / "node.log"
            raise NetworkError(
                f"{name} did not start; {path} ends with:\n{log_tail(path)}"
            ) from None
        info["name"] = name
        return info

    async def start(self) -> None:
        boot = await self._spawn("bootstrap", None)
        self.info.append(boot)
        async with trio.open_nursery() as nursery:
            results: dict[int, dict[str, Any]] = {}

            async def one(i: int) -> None:
                results[i] = await self._spawn(f"node-{i}", boot["addrs"][0])

            for i in range(1, self.size + 1):
                nursery.start_soon(one, i)
        self.info += [results[i] for i in sorted(results)]

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        with trio.move_on_after(GRACE_S):
            for proc in self.procs:
                await proc.wait()
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    async def statuses(self) -> list[dict[str, Any] | None]:
        from repp2p.net.status_http import fetch

        out: list[dict[str, Any] | None] = [None] * len(self.info)

        async def one(i: int, address: str) -> None:
            host, _, port = address.rpartition(":")
            try:
                out[i] = json.loads(await fetch(host, int(port), "/status", timeout=2))
            except (OSError, ValueError, trio.TooSlowError):
                out[i] = None

        async with trio.open_nursery() as nursery:
            for i, info in enumerate(self.info):
                if info.get("status"):
                    nursery.start_soon(one, i, info["status"])
        return out


def _table(devnet: Devnet, statuses: list[dict[str, Any] | None], elapsed: float) -> str:
    rows = [
        f"repp2p devnet — {len(devnet.info)} processes, {elapsed:5.1f} s  "
        "(SIMULATED TEE: development only)   Ctrl-C stops all",
        f"{'name':<10} {'peer id':<20} {'peers':>5} {'records':>8} {'rejected':>8} "
        f"{'synced':>6} {'reputation':>10}",
    ]
    for info, status in zip(devnet.info, statuses, strict=True):
        if status is None:
            rows.append(f"{info['name']:<10} {info['peer_id'][:18] + '..':<20} {'down':>5}")
            continue
        rep = status.get("reputation")
        rows.append(
            f"{info['name']:<10} {info['peer_id'][:18] + '..':<20} {status['peers']:>5} "
            f"{status['records_total']:>8} {int(sum(status['rejected'].values())):>8} "
            f"{'yes' if status['synced'] else 'no':>6} {'-' if rep is None else rep:>10}"
        )
    return "\n".join(rows)


def run(args: argparse.Namespace) -> int:
    if args.nodes < 1 or args.nodes > 64:
        raise ReppError("--nodes must be between 1 and 64")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    temporary = args.dir is None
    folder = Path(tempfile.mkdtemp(prefix="repp2p-devnet-")) if temporary else Path(args.dir)
    try:
        trio.run(_main, args, folder, engines)
    finally:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


async def _main(args: argparse.Namespace, folder: Path, engines: list[str]) -> None:
    devnet = Devnet(folder, args.nodes, engines)
    started = time.monotonic()
    try:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:

                async def watch_signals() -> None:
                    async for _ in signals:
                        nursery.cancel_scope.cancel()
                        return

                nursery.start_soon(watch_signals)
                await devnet.start()
                if args.json:
                    for info in devnet.info:
                        role = "bootstrap" if info["name"] == "bootstrap" else "node"
                        print(
                            json.dumps(
                                {
                                    "name": info["name"],
                                    "role": role,
                                    "peer_id": info["peer_id"],
                                    "addrs": info["addrs"],
                                    "status": info["status"],
                                }
                            ),
                            flush=True,
                        )
                    print(json.dumps({"ready": True}), flush=True)
                with trio.move_on_after(args.duration):
                    tty = sys.stdout.isatty()
                    while True:
                        if not args.json:
                            table = _table(
                                devnet, await devnet.statuses(), time.monotonic() - started
                            )
                            print(("\x1b[H\x1b[2J" if tty else "") + table + "\n", flush=True)
                        await trio.sleep(1.0 if tty else 5.0)
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            if not args.json:
                print("stopping all nodes...", flush=True)
            await devnet.stop()
            if args.json:
                print(json.dumps({"stopped": True}), flush=True)
