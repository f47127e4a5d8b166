"""Node configuration: one frozen, validated object, built from TOML in one place.

A node's own settings live here; what every peer of the network must share (epoch length,
matching, reputation and ledger parameters, record lags, the attestation policy's name)
does not: it comes from the network's file, ``bootstrap/<network>.toml`` or
``network_file``, as :class:`repp2p.network_params.NetworkParams` (``network_params``).

Example ``node.toml`` (every key optional except where noted)::

    network = "dev"                      # selects bootstrap/<network>.toml (params, peers)
    # network_file = "/etc/repp2p/main.toml"   # the network's file when not shipped
    data_dir = "./data/node1"            # required: records.db, node.key, runtime.json
    listen = ["/ip4/0.0.0.0/tcp/4001"]
    bootstrap = ["/ip4/203.0.113.7/tcp/4001/p2p/12D3KooW..."]
    engines = ["echo"]
    tee_kind = "simulated"
    price = 1000                         # micro-REP per task
    capacity = 4                         # concurrent tasks
    status_listen = "127.0.0.1:9464"     # /metrics and /status over HTTP; port 0 = any
    status_allowed_hosts = []            # Host names it answers besides IPs and localhost

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
    [budgets]                            # repp2p.net.params.BudgetParams fields
    slots_per_epoch = 2

``epoch_s`` is not a node key: it is the network's (a node on another epoch length than its
peers would disagree with them on every view), so a node file naming it is refused.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from repp2p.digests.params import DigestParams
from repp2p.errors import ConfigError
from repp2p.net.params import (
    AuditParams,
    BudgetParams,
    ConnectionParams,
    FeedParams,
    GossipParams,
    SyncParams,
)
from repp2p.net.status_http import allowed_host_entry
from repp2p.network_params import (
    BOOTSTRAP_DIR,
    NETWORK_NAME_PATTERN,
    NetworkParams,
    network_file,
    read_toml,
)
from repp2p.params_check import (
    bool_field,
    check_keys,
    choice_field,
    float_field,
    int_field,
    str_field,
)
from repp2p.records import TEE_KINDS
from repp2p.records.types import ENGINE_ID_PATTERN
from repp2p.timers import Timers

__all__ = [
    "BOOTSTRAP_DIR",
    "NodeConfig",
    "load_bootstrap_list",
    "load_node_config",
    "node_config_from_dict",
]

#: The network-layer sections of a node file and their classes.
_SECTIONS: dict[str, type] = {
    "gossip": GossipParams,
    "sync": SyncParams,
    "feed": FeedParams,
    "connections": ConnectionParams,
    "timers": Timers,
    "budgets": BudgetParams,
}


@dataclasses.dataclass(frozen=True)
class NodeConfig:
    """Everything a full node needs to run.

    Attributes:
        data_dir: folder holding ``records.db``, the key (by default) and ``runtime.json``.
        network: network name, ``[a-z0-9-]``, 1-32 characters; ``dev`` is the only one
            that may accept the simulated TEE.
        network_file: the network's file (parameters, bootstrap peers) when it is not
            shipped as ``bootstrap/<network>.toml``; None = that file.
        network_params: the network's parameters; None (the default) loads them from the
            network's file when the config is built. Given explicitly (tests, a devnet with
            short epochs), its ``name`` must equal ``network``.
        key_file: identity key (created 0600 on first start when missing).
        listen: multiaddrs to listen on (at least one).
        bootstrap: multiaddrs (with ``/p2p/``) of bootstrap peers; empty = the network's list.
        engines: engine ids this node serves.
        tee_kind: the TEE the node runs in (``simulated`` is development only; ``sev-snp``
            inside an SEV-SNP confidential VM, ``dcap`` -- or ``tdx``, stored as ``dcap``
            -- inside a TDX VM, ``nitro`` on a Nitro Enclaves parent instance: see
            ``repp2p tee probe`` and docs/operators.md).
        tee_collateral: sev-snp: a VCEK chain file (PEM or DER: VCEK, optionally ASK and
            ARK) sent with the evidence when the host's certificate table is empty ("" =
            none); dcap: the DCAP collateral JSON (required; docs/operators.md says how to
            fetch and refresh both).
        tee_enclave: nitro: ``vsock:CID:PORT`` of the enclave process running inside the
            Nitro Enclave (the node runs on the parent instance); "" for other kinds.
        gpu: ``nvidia``: the confidential VM has an NVIDIA confidential-computing GPU
            whose evidence every attestation carries (sev-snp and dcap only); "" = none.
        price: micro-REP per task, 0..2**63.
        capacity: concurrent tasks, 1..65535.
        throughput: tasks per epoch the node claims to sustain, 0..2**32-1.
        heartbeat_interval_s: seconds between heartbeats, 0.1..3600, sent at the node's
            fixed phase (15-85% into each interval, from its peer ID): an interval that
            divides ``epoch_s`` gives every epoch the same number, the last well before the
            boundary (views use an epoch's last one). None (the default) = half the
            network's epoch: two per epoch, the last for the views, the other a spare.
        republish_interval_s: seconds between NodeAd/provider republications, 1..28800 (an
            ad lives three periods, and records may live at most a day).
        status_listen: ``host:port`` of the HTTP /metrics and /status endpoint ("" = off).
        status_allowed_hosts: names (no port) the status endpoint answers in ``Host``
            besides IP addresses, ``localhost``, ``*.localhost`` and ``status_listen``'s
            host; ``"*"`` = any (only behind a reverse proxy that checks Host itself). A
            guard against DNS rebinding: other names are answered 421.
        enable_quic: also listen on QUIC where a ``/udp/.../quic-v1`` address is given.
        policy: path of the attestation policy TOML ("" = the network's,
            ``network_params.policy_file`` next to the network's file).
        log_format: ``text`` or ``json``. log_level: a logging level name.
        role: ``full`` (serves tasks, DHT server) or ``client`` (a light peer that follows
            gossip and submits tasks; DHT client mode, no enclave).
        cheat: TEST/DEMO ONLY, dev network only: the node's enclave returns wrong results
            (with valid receipts), so redundancy and reputation can be shown catching it.
        task_delay_s: TEST ONLY, dev network only: seconds the node waits between claiming
            a task and running it (fault injection for failover tests), 0..600.
        timers: the live layer's timeouts and loop periods (:class:`repp2p.timers.Timers`).
        budgets: per-signer budgets on gossiped node records
            (:class:`repp2p.net.params.BudgetParams`).
        gossip, sync, feed, connections: network-layer parameters (their classes in
            :mod:`repp2p.net.params` document each field's bounds).
        digests, audit: read-only, the network's ``network_params.digests`` and
            ``network_params.audit`` (network parameters: every peer must use the same).
    """

    data_dir: Path
    network: str = "dev"
    network_file: Path | None = None
    network_params: NetworkParams | None = None  # type: ignore[assignment]  # set below
    key_file: Path | None = None
    listen: tuple[str, ...] = ("/ip4/0.0.0.0/tcp/4001",)
    bootstrap: tuple[str, ...] = ()
    engines: tuple[str, ...] = ("echo",)
    tee_kind: str = "simulated"
    tee_collateral: str = ""
    tee_enclave: str = ""
    gpu: str = ""
    price: int = 1000
    capacity: int = 4
    throughput: int = 600
    heartbeat_interval_s: float | None = None
    republish_interval_s: float = 300.0
    status_listen: str = "127.0.0.1:0"
    status_allowed_hosts: tuple[str, ...] = ()
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
    budgets: BudgetParams = dataclasses.field(default_factory=BudgetParams)

    def __post_init__(self) -> None:
        str_field(self, "network", NETWORK_NAME_PATTERN)
        if self.tee_kind == "tdx":  # the operator's name for a TDX VM; its evidence is DCAP
            object.__setattr__(self, "tee_kind", "dcap")
        choice_field(self, "tee_kind", TEE_KINDS)
        if self.tee_kind == "simulated" and self.network != "dev":
            raise ConfigError(
                "tee_kind 'simulated' is for the dev network only: it gives no real security"
            )
        for engine in self.engines:
            if not re.fullmatch(ENGINE_ID_PATTERN, engine):
                raise ConfigError(f"engine id {engine!r} is not valid")
        if not self.listen:
            raise ConfigError("listen must name at least one address")
        int_field(self, "price", 0, 2**63)
        int_field(self, "capacity", 1, 65535)
        int_field(self, "throughput", 0, 2**32 - 1)
        float_field(self, "republish_interval_s", 1, 28800)
        float_field(self, "task_delay_s", 0, 600)
        for name in ("enable_quic", "cheat"):
            bool_field(self, name)
        for name in ("status_listen", "policy", "tee_collateral", "tee_enclave"):
            if not isinstance(getattr(self, name), str):  # a TOML number, say
                raise ConfigError(f"{name} must be a string, got {getattr(self, name)!r}")
        choice_field(self, "gpu", ("", "nvidia"))
        if self.gpu and self.tee_kind not in ("sev-snp", "dcap"):
            raise ConfigError(f"gpu {self.gpu!r} needs tee_kind 'sev-snp' or 'dcap' (a CVM)")
        if self.tee_enclave and not re.fullmatch(r"vsock:\d{1,10}:\d{1,10}", self.tee_enclave):
            raise ConfigError(f"tee_enclave {self.tee_enclave!r} must be vsock:CID:PORT")
        if self.status_listen and not _is_host_port(self.status_listen):
            raise ConfigError(f"status_listen {self.status_listen!r} must be host:port")
        self._check_status_allowed_hosts()
        choice_field(self, "log_format", ("text", "json"))
        if not isinstance(self.log_level, str) or self.log_level.upper() not in LOG_LEVELS:
            raise ConfigError(f"log_level {self.log_level!r}: one of {', '.join(LOG_LEVELS)}")
        choice_field(self, "role", ("full", "client"))
        if self.cheat and self.network != "dev":
            raise ConfigError("cheat is a dev-network demo switch only")
        if self.task_delay_s and self.network != "dev":
            raise ConfigError("task_delay_s is a dev-network test switch only")
        for section, cls in _SECTIONS.items():
            if not isinstance(getattr(self, section), cls):
                raise ConfigError(f"NodeConfig.{section} must be a {cls.__name__}")
        self._set_network_params()
        if self.heartbeat_interval_s is None:
            # Follows the epoch: a fixed 30 s would leave 10-s dev epochs without heartbeats.
            object.__setattr__(self, "heartbeat_interval_s", self.epoch_s / 2)
        float_field(self, "heartbeat_interval_s", 0.1, 3600)

    def _check_status_allowed_hosts(self) -> None:
        if not isinstance(self.status_allowed_hosts, tuple):
            raise ConfigError("status_allowed_hosts must be a list of host names")
        for entry in self.status_allowed_hosts:
            try:
                allowed_host_entry(entry)
            except ValueError as exc:
                raise ConfigError(f"status_allowed_hosts: {exc}") from None

    def _set_network_params(self) -> None:
        params = self.network_params
        if params is None:
            params = NetworkParams.load(self.network, self.network_file)
        elif not isinstance(params, NetworkParams):
            raise ConfigError(f"NodeConfig.network_params must be a NetworkParams, got {params!r}")
        elif params.name != self.network:
            raise ConfigError(
                f"network_params are those of network {params.name!r}, not {self.network!r}"
            )
        # A frozen dataclass may still complete itself in __post_init__.
        object.__setattr__(self, "network_params", params)

    @property
    def epoch_s(self) -> int:
        """The network's epoch length in seconds (``network_params.epoch_s``)."""
        return self.network_params.epoch_s

    @property
    def digests(self) -> DigestParams:
        """The network's digest schedule (``network_params.digests``)."""
        return self.network_params.digests

    @property
    def audit(self) -> AuditParams:
        """The network's audit grace period and quotas (``network_params.audit``)."""
        return self.network_params.audit

    @property
    def key_path(self) -> Path:
        """Where the identity key lives."""
        return self.key_file or self.data_dir / "node.key"

    @property
    def network_folder(self) -> Path:
        """The folder of the network's file (its policy file is looked up there)."""
        return self.network_file.parent if self.network_file else BOOTSTRAP_DIR

    def policy_path(self) -> Path:
        """The attestation policy file: ``policy``, or the network's policy file
        (``network_params.policy_file``, by default ``policy-<network>.toml``) next to the
        network's file."""
        if self.policy:
            return Path(self.policy)
        default = self.network_folder / self.network_params.policy_file
        if not default.exists():
            raise ConfigError(
                f'no attestation policy: set policy = "..." (no {default} for '
                f"network {self.network!r})"
            )
        return default

    def bootstrap_addrs(self) -> tuple[str, ...]:
        """The configured bootstrap list, or the network's list from its file."""
        if self.bootstrap:
            return self.bootstrap
        return load_bootstrap_list(self.network, path=self.network_file)


#: the values ``log_level`` takes (the standard library's level names, any case)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _is_host_port(text: str) -> bool:
    host, sep, port = text.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 <= int(port) <= 65535)


def load_bootstrap_list(
    network: str, folder: Path = BOOTSTRAP_DIR, *, path: Path | None = None
) -> tuple[str, ...]:
    """Bootstrap multiaddrs of a network from its file (``path``, by default
    ``<folder>/<network>.toml``); empty when the file or its ``peers`` key is absent."""
    path = path or network_file(network, folder)
    if not path.exists():
        return ()
    peers = read_toml(path).get("peers", [])
    if not isinstance(peers, list) or not all(isinstance(p, str) for p in peers):
        raise ConfigError(f"{path}: 'peers' must be a list of multiaddr strings")
    return tuple(peers)


def _sub(cls: type, table: Any, where: str) -> Any:
    check_keys(f"[{where}]", table, [f.name for f in dataclasses.fields(cls)])
    return cls(**table)


def node_config_from_dict(data: dict[str, Any], *, base_dir: Path) -> NodeConfig:
    """Build a NodeConfig from parsed TOML; relative paths are relative to ``base_dir``."""
    data = dict(data)
    for key in ("epoch_s", "digests", "audit"):
        if key in data:
            where = data.get("network_file") or f"bootstrap/{data.get('network', 'dev')}.toml"
            raise ConfigError(
                f"{key} is a network parameter, not a node setting: every peer of the network "
                f"must use the same, so it is read from the network's file ({where})"
            )
    known = {f.name for f in dataclasses.fields(NodeConfig)} - {"network_params"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown configuration keys {unknown}")
    if "data_dir" not in data:
        raise ConfigError("data_dir is required")
    for key in ("data_dir", "key_file", "network_file"):
        if key in data:
            if not isinstance(data[key], str):
                raise ConfigError(f"{key} must be a path string")
            data[key] = (base_dir / data[key]).resolve()
    for key in ("policy", "tee_collateral"):
        if isinstance(data.get(key), str) and data[key]:
            data[key] = str((base_dir / data[key]).resolve())
    for key in ("listen", "bootstrap", "engines", "status_allowed_hosts"):
        if key in data:
            if not isinstance(data[key], list) or not all(isinstance(x, str) for x in data[key]):
                raise ConfigError(f"{key} must be a list of strings")
            data[key] = tuple(data[key])
    for section, cls in _SECTIONS.items():
        if section in data:
            data[section] = _sub(cls, data[section], section)
    try:
        return NodeConfig(**data)
    except TypeError as exc:
        raise ConfigError(f"bad configuration value: {exc}") from None


def load_node_config(path: str | Path) -> NodeConfig:
    """Read and validate a node TOML file."""
    path = Path(path)
    return node_config_from_dict(read_toml(path), base_dir=path.parent.resolve())
