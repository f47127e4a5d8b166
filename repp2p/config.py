"""Node configuration: one frozen, validated object, built from TOML in one place.

Example ``node.toml`` (every key optional except where noted)::

    network = "dev"                      # selects bootstrap/<network>.toml when bootstrap = []
    data_dir = "./data/node1"            # required: records.db, node.key, runtime.json
    listen = ["/ip4/0.0.0.0/tcp/4001"]
    bootstrap = ["/ip4/203.0.113.7/tcp/4001/p2p/12D3KooW..."]
    engines = ["echo"]
    tee_kind = "simulated"
    price = 1000                         # micro-REP per task
    capacity = 4                         # concurrent tasks
    status_listen = "127.0.0.1:9464"     # /metrics and /status over HTTP; port 0 = any

    [gossip]                             # repp2p.net.params.GossipParams fields
    degree = 6
    [sync]                               # repp2p.net.params.SyncParams fields
    page_records = 256
    [feed]                               # repp2p.net.params.FeedParams fields
    interval_s = 0.5
    [connections]                        # repp2p.net.params.ConnectionParams fields
    low_watermark = 8
    [timers]                             # repp2p.timers.Timers fields
    attempt_budget_s = 30
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from repp2p.errors import ConfigError
from repp2p.net.params import ConnectionParams, FeedParams, GossipParams, SyncParams
from repp2p.records import TEE_KINDS
from repp2p.records.types import ENGINE_ID_PATTERN
from repp2p.timers import Timers

BOOTSTRAP_DIR = Path(__file__).resolve().parent.parent / "bootstrap"


@dataclasses.dataclass(frozen=True)
class NodeConfig:
    """Everything a full node needs to run.

    Attributes:
        data_dir: folder holding ``records.db``, the key (by default) and ``runtime.json``.
        network: network name; ``dev`` is the only one that may accept the simulated TEE.
        key_file: identity key (created 0600 on first start when missing).
        listen: multiaddrs to listen on.
        bootstrap: multiaddrs (with ``/p2p/``) of bootstrap peers; empty = the network's list.
        engines: engine ids this node serves.
        tee_kind: the TEE the node runs in (``simulated`` is development only).
        price: micro-REP per task. capacity: concurrent tasks (1..65535).
        throughput: tasks per epoch the node claims to sustain.
        heartbeat_interval_s: seconds between heartbeats (1..3600), sent at the node's
            fixed phase (25-75% into each interval, from its peer ID): an interval that
            divides ``epoch_s`` gives every epoch the same number, the last well before the
            boundary (views use an epoch's last one).
        epoch_s: epoch length in seconds (1..86400); heartbeats are per epoch.
        republish_interval_s: seconds between NodeAd/provider republications (1..28800: an
            ad lives three periods, and records may live at most a day).
        status_listen: ``host:port`` of the HTTP /metrics and /status endpoint ("" = off).
        enable_quic: also listen on QUIC where a ``/udp/.../quic-v1`` address is given.
        policy: path of the attestation policy TOML ("" = the network's default).
        log_format: ``text`` or ``json``. log_level: a logging level name.
        role: ``full`` (serves tasks, DHT server) or ``client`` (a light peer that follows
            gossip and submits tasks; DHT client mode, no enclave).
        cheat: TEST/DEMO ONLY, dev network only: the node's enclave returns wrong results
            (with valid receipts), so redundancy and reputation can be shown catching it.
        task_delay_s: TEST ONLY, dev network only: seconds the node waits between claiming
            a task and running it (fault injection for failover tests), 0..600.
        gossip, sync, feed, connections: network-layer parameters.
        timers: the live layer's timeouts and loop periods (:class:`repp2p.timers.Timers`).
    """

    data_dir: Path
    network: str = "dev"
    key_file: Path | None = None
    listen: tuple[str, ...] = ("/ip4/0.0.0.0/tcp/4001",)
    bootstrap: tuple[str, ...] = ()
    engines: tuple[str, ...] = ("echo",)
    tee_kind: str = "simulated"
    price: int = 1000
    capacity: int = 4
    throughput: int = 600
    heartbeat_interval_s: float = 30.0
    epoch_s: int = 60
    republish_interval_s: float = 300.0
    status_listen: str = "127.0.0.1:0"
    enable_quic: bool = False
    policy: str = ""
    log_format: str = "text"
    log_level: str = "INFO"
    role: str = "full"
    cheat: bool = False
    task_delay_s: float = 0.0
    gossip: GossipParams = dataclasses.field(default_factory=GossipParams)
    sync: SyncParams = dataclasses.field(default_factory=SyncParams)
    feed: FeedParams = dataclasses.field(default_factory=FeedParams)
    connections: ConnectionParams = dataclasses.field(default_factory=ConnectionParams)
    timers: Timers = dataclasses.field(default_factory=Timers)

    def __post_init__(self) -> None:
        import re

        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,31}", self.network):
            raise ConfigError(f"network name {self.network!r} must be [a-z0-9-], 1-32 chars")
        if self.tee_kind not in TEE_KINDS:
            raise ConfigError(f"tee_kind {self.tee_kind!r} is not one of {sorted(TEE_KINDS)}")
        if self.tee_kind == "simulated" and self.network != "dev":
            raise ConfigError(
                "tee_kind 'simulated' is for the dev network only: it gives no real security"
            )
        for engine in self.engines:
            if not re.fullmatch(ENGINE_ID_PATTERN, engine):
                raise ConfigError(f"engine id {engine!r} is not valid")
        if not self.listen:
            raise ConfigError("listen must name at least one address")
        checks = (
            ("price", self.price, 0, 2**63),
            ("capacity", self.capacity, 1, 65535),
            ("throughput", self.throughput, 0, 2**32 - 1),
            ("heartbeat_interval_s", self.heartbeat_interval_s, 0.1, 3600),
            ("epoch_s", self.epoch_s, 1, 86400),
            ("republish_interval_s", self.republish_interval_s, 1, 28800),
        )
        for name, value, low, high in checks:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{name} must be a number")
            if not low <= value <= high:
                raise ConfigError(f"{name}={value} is outside [{low}, {high}]")
        if self.status_listen and not _is_host_port(self.status_listen):
            raise ConfigError(f"status_listen {self.status_listen!r} must be host:port")
        if self.log_format not in ("text", "json"):
            raise ConfigError("log_format must be 'text' or 'json'")
        if self.role not in ("full", "client"):
            raise ConfigError("role must be 'full' or 'client'")
        if self.cheat and self.network != "dev":
            raise ConfigError("cheat is a dev-network demo switch only")
        if self.task_delay_s and self.network != "dev":
            raise ConfigError("task_delay_s is a dev-network test switch only")
        if not 0 <= self.task_delay_s <= 600:
            raise ConfigError("task_delay_s must be within [0, 600]")

    @property
    def key_path(self) -> Path:
        """Where the identity key lives."""
        return self.key_file or self.data_dir / "node.key"

    def policy_path(self) -> Path:
        """The attestation policy file: ``policy`` or ``bootstrap/policy-<network>.toml``."""
        if self.policy:
            return Path(self.policy)
        default = BOOTSTRAP_DIR / f"policy-{self.network}.toml"
        if not default.exists():
            raise ConfigError(
                f'no attestation policy: set policy = "..." (no {default.name} for '
                f"network {self.network!r})"
            )
        return default

    def bootstrap_addrs(self) -> tuple[str, ...]:
        """The configured bootstrap list, or the network's list from ``bootstrap/``."""
        if self.bootstrap:
            return self.bootstrap
        return load_bootstrap_list(self.network)


def _is_host_port(text: str) -> bool:
    host, sep, port = text.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 <= int(port) <= 65535)


def load_bootstrap_list(network: str, folder: Path = BOOTSTRAP_DIR) -> tuple[str, ...]:
    """Bootstrap multiaddrs of a network from ``bootstrap/<network>.toml`` (empty if none)."""
    path = folder / f"{network}.toml"
    if not path.exists():
        return ()
    data = _read_toml(path)
    peers = data.get("peers", [])
    if not isinstance(peers, list) or not all(isinstance(p, str) for p in peers):
        raise ConfigError(f"{path}: 'peers' must be a list of multiaddr strings")
    return tuple(peers)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def _sub(cls: type, table: Any, where: str) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"[{where}] must be a table")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"[{where}] has unknown keys {unknown}")
    return cls(**table)


def node_config_from_dict(data: dict[str, Any], *, base_dir: Path) -> NodeConfig:
    """Build a NodeConfig from parsed TOML; relative paths are relative to ``base_dir``."""
    data = dict(data)
    known = {f.name for f in dataclasses.fields(NodeConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown configuration keys {unknown}")
    if "data_dir" not in data:
        raise ConfigError("data_dir is required")
    for key in ("data_dir", "key_file"):
        if key in data:
            if not isinstance(data[key], str):
                raise ConfigError(f"{key} must be a path string")
            data[key] = (base_dir / data[key]).resolve()
    if isinstance(data.get("policy"), str) and data["policy"]:
        data["policy"] = str((base_dir / data["policy"]).resolve())
    for key in ("listen", "bootstrap", "engines"):
        if key in data:
            if not isinstance(data[key], list) or not all(isinstance(x, str) for x in data[key]):
                raise ConfigError(f"{key} must be a list of strings")
            data[key] = tuple(data[key])
    if "gossip" in data:
        data["gossip"] = _sub(GossipParams, data["gossip"], "gossip")
    if "sync" in data:
        data["sync"] = _sub(SyncParams, data["sync"], "sync")
    if "feed" in data:
        data["feed"] = _sub(FeedParams, data["feed"], "feed")
    if "connections" in data:
        data["connections"] = _sub(ConnectionParams, data["connections"], "connections")
    if "timers" in data:
        data["timers"] = _sub(Timers, data["timers"], "timers")
    try:
        return NodeConfig(**data)
    except TypeError as exc:
        raise ConfigError(f"bad configuration value: {exc}") from None


def load_node_config(path: str | Path) -> NodeConfig:
    """Read and validate a node TOML file."""
    path = Path(path)
    return node_config_from_dict(_read_toml(path), base_dir=path.parent.resolve())
