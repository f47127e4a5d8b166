"""Scenarios: one frozen, validated object per simulation question, loaded from TOML.

A scenario names the network size, the task load, the latency, loss and churn models, the
adversaries and clients, and optional overrides of the shared ``ReputationParams``,
``MatchingParams`` and ``LedgerParams``. ``docs/simulations.md`` lists every key. Together
with ``epoch_s`` they form the simulated network's
:class:`~repp2p.network_params.NetworkParams` (:attr:`Scenario.network_params`), the object a
live network reads from its file. Numbers are checked by :mod:`repp2p.params_check`:
integer keys take integers only, bools are not numbers.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from repp2p.digests.params import DigestParams
from repp2p.errors import ConfigError
from repp2p.ledger import LedgerParams
from repp2p.matching import MatchingParams
from repp2p.network_params import REPUTATION_SOURCES, NetworkParams
from repp2p.params_check import check_bool, check_float, check_int, check_keys
from repp2p.reputation import ReputationParams
from repp2p.sim.digests import CostModel

#: Node behaviours (``[[adversary]] behaviour = ...``); "honest" fills the rest.
BEHAVIOURS = ("honest", "lazy", "wrong_result", "on_off", "sybil", "whitewasher", "self_dealer")
#: How records enter the core. Only ``columns`` exists: compact evidence columns
#: (``Evidence.from_columns``), i.e. **no record encoding and no signatures**. Everything
#: after that (reputation, penalties, matching, ledger) is the live node's code.
RECORD_MODES = ("columns",)


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(f"scenario: {msg}")


class _Table:
    """Checked reads of one TOML table; errors name the table (``where``) and the key."""

    def __init__(self, data: Mapping[str, Any], where: str) -> None:
        self.data, self.where = data, where

    def integer(self, key: str, default: int, lo: int, hi: int) -> int:
        return check_int(self.where, key, self.data.get(key, default), lo, hi)

    def number(self, key: str, default: float, lo: float, hi: float) -> float:
        return check_float(self.where, key, self.data.get(key, default), lo, hi)

    def boolean(self, key: str, default: bool) -> bool:
        return check_bool(self.where, key, self.data.get(key, default))


@dataclasses.dataclass(frozen=True)
class Adversary:
    """One adversary group.

    Attributes:
        behaviour: one of :data:`BEHAVIOURS` except honest.
        share: fraction of the initial nodes (0..1); or ``count`` identities.
        count: number of identities (Sybil operators); added to ``share``.
        wrong_prob: probability a cheating task returns a wrong result.
        drop_prob: lazy: probability a claimed task is never delivered.
        delay_factor: lazy: latency multiplier on delivered tasks.
        on_epochs, off_epochs: on-off: honest for ``on_epochs``, then cheating for
            ``off_epochs``, repeating.
        attested: sybil: identities hold a valid attestation (a TEE each).
        join_epoch: epoch the group's nodes join (sybil waves), default 0.
        rejoin_epochs: whitewasher: epochs offline before rejoining under a new identity.
        collude: cheaters of this group return the *same* wrong output for a task (so with
            redundancy they can outvote an honest node); otherwise each wrong output differs.
        digest_fault: share of the leaves of each of its work digests a node of this group
            misreports (needs ``[digests] enabled``; docs/simulations.md, "Digests and
            per-peer costs").
        self_tasks: self_dealer: tasks per epoch a node of this group serves to a client it
            invented (its own key), on top of the honest clients' tasks it serves honestly
            (docs/simulations.md, "Self-dealing").
        grind: self_dealer: it grinds its invented tasks' IDs until the matching ranks it
            first (true, what task IDs allow); false: a what-if of IDs the client cannot
            choose, where each goes to whoever the matching ranks first.
    """

    behaviour: str
    share: float = 0.0
    count: int = 0
    wrong_prob: float = 1.0
    drop_prob: float = 0.5
    delay_factor: float = 3.0
    on_epochs: int = 10
    off_epochs: int = 1000
    attested: bool = True
    join_epoch: int = 0
    rejoin_epochs: int = 1
    collude: bool = False
    digest_fault: float = 0.0
    self_tasks: int = 0
    grind: bool = True

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Adversary:
        """Build and validate one ``[[adversary]]`` table (raises ConfigError)."""
        where = "scenario [[adversary]]"
        check_keys(where, d, [f.name for f in dataclasses.fields(cls)])
        b = d.get("behaviour")
        _check(b in BEHAVIOURS and b != "honest", f"adversary behaviour {b!r} unknown")
        t = _Table(d, where)
        return cls(
            behaviour=b,
            share=t.number("share", 0.0, 0.0, 1.0),
            count=t.integer("count", 0, 0, 10**7),
            wrong_prob=t.number("wrong_prob", 1.0, 0.0, 1.0),
            drop_prob=t.number("drop_prob", 0.5, 0.0, 1.0),
            delay_factor=t.number("delay_factor", 3.0, 1.0, 1000.0),
            on_epochs=t.integer("on_epochs", 10, 0, 10**6),
            off_epochs=t.integer("off_epochs", 1000, 1, 10**6),
            attested=t.boolean("attested", True),
            join_epoch=t.integer("join_epoch", 0, 0, 10**6),
            rejoin_epochs=t.integer("rejoin_epochs", 1, 0, 10**6),
            collude=t.boolean("collude", False),
            digest_fault=t.number("digest_fault", 0.0, 0.0, 1.0),
            self_tasks=t.integer("self_tasks", 0, 0, 10**6),
            grind=t.boolean("grind", True),
        )


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A simulation question (see ``docs/simulations.md`` for every key and unit)."""

    name: str = "scenario"
    description: str = ""
    seed: int = 1
    epochs: int = 30
    epoch_s: int = 600
    nodes: int = 100
    tasks_per_epoch: int = 1000
    ticks_per_epoch: int = 10
    redundancy: int = 1
    min_reputation: int = 0
    deadline_ms: int = 30_000
    node_capacity: int = 4
    reputation: bool = True
    records: str = "columns"
    #: what views score nodes from, as the live network parameter: ``"records"`` (every
    #: task's records of the window) or ``"digests"`` (each sealed epoch's count rows,
    #: folded once at ``digest_lag``; docs/simulations.md, "Views from digests")
    reputation_source: str = "records"
    # network
    rtt_ms: float = 60.0
    rtt_sigma: float = 0.5
    exec_ms: float = 200.0
    exec_sigma: float = 0.3
    loss: float = 0.0
    regions: int = 1
    inter_region_ms: float = 0.0
    queue_ms: float = 10_000.0
    # churn (0 disables); epochs are the unit
    mean_up_epochs: float = 0.0
    mean_down_epochs: float = 2.0
    crash_share: float = 0.5
    joins_per_epoch: float = 0.0
    # clients
    clients: int = 100
    malicious_clients: float = 0.0
    detect_prob: float = 1.0
    adversaries: tuple[Adversary, ...] = ()
    reputation_params: ReputationParams = dataclasses.field(default_factory=ReputationParams)
    matching_params: MatchingParams = dataclasses.field(default_factory=MatchingParams)
    ledger_params: LedgerParams = dataclasses.field(default_factory=LedgerParams)
    digests: CostModel = dataclasses.field(default_factory=CostModel)
    digest_params: DigestParams = dataclasses.field(default_factory=DigestParams)
    sweep: Mapping[str, tuple[Any, ...]] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scenario:
        """Build and validate from a TOML-shaped mapping (raises ConfigError)."""
        d = dict(data)
        tables = {}
        for key in ("network", "churn", "clients"):
            tables[key] = d.pop(key, {})
            _check(isinstance(tables[key], dict), f"[{key}] must be a table")
        net, churn, clients = (dict(tables[k]) for k in ("network", "churn", "clients"))
        advs = d.pop("adversary", [])
        _check(isinstance(advs, list), "[[adversary]] must be an array of tables")
        params: dict[str, Any] = {}
        for key, klass in (
            ("reputation_params", ReputationParams),
            ("matching_params", MatchingParams),
            ("ledger_params", LedgerParams),
        ):
            table = d.pop(key, {})
            check_keys(f"scenario [{key}]", table, [f.name for f in dataclasses.fields(klass)])
            params[key] = klass(**table)
        table = d.pop("digest_params", {})
        _check(isinstance(table, dict), "[digest_params] must be a table")
        check_keys(
            "scenario [digest_params]", table, [f.name for f in dataclasses.fields(DigestParams)]
        )
        params["digest_params"] = DigestParams(**table)
        table = d.pop("digests", {})
        _check(isinstance(table, dict), "[digests] must be a table")
        params["digests"] = CostModel.from_dict(table)
        sweep = d.pop("sweep", {})
        _check(isinstance(sweep, dict), "[sweep] must be a table of lists")
        for k, v in sweep.items():
            _check(isinstance(v, list) and v, f"sweep.{k} must be a non-empty list")
        name = d.pop("name", "scenario")
        description = d.pop("description", "")
        records = d.pop("records", "columns")
        _check(records in RECORD_MODES, f"records={records!r}: only {RECORD_MODES} exist")
        source = d.pop("reputation_source", "records")
        _check(
            source in REPUTATION_SOURCES,
            f"reputation_source must be one of {REPUTATION_SOURCES}, got {source!r}",
        )
        t = _Table(d, "scenario")
        rep = t.boolean("reputation", True)
        top = {
            "seed": t.integer("seed", 1, 0, 2**63),
            "epochs": t.integer("epochs", 30, 1, 100_000),
            "epoch_s": t.integer("epoch_s", 600, 1, 86_400),
            "nodes": t.integer("nodes", 100, 0, 10**7),
            "tasks_per_epoch": t.integer("tasks_per_epoch", 1000, 0, 10**9),
            "ticks_per_epoch": t.integer("ticks_per_epoch", 10, 1, 10_000),
            "redundancy": t.integer("redundancy", 1, 1, 16),
            "min_reputation": t.integer("min_reputation", 0, 0, 1000),
            "deadline_ms": t.integer("deadline_ms", 30_000, 1, 10**9),
            "node_capacity": t.integer("node_capacity", 4, 1, 65535),
        }
        check_keys("scenario", d, [*top, "reputation"])
        t = _Table(net, "scenario [network]")
        netv = {
            "rtt_ms": t.number("rtt_ms", 60.0, 0.0, 1e6),
            "rtt_sigma": t.number("rtt_sigma", 0.5, 0.0, 5.0),
            "exec_ms": t.number("exec_ms", 200.0, 0.0, 1e7),
            "exec_sigma": t.number("exec_sigma", 0.3, 0.0, 5.0),
            "loss": t.number("loss", 0.0, 0.0, 0.99),
            "regions": t.integer("regions", 1, 1, 1000),
            "inter_region_ms": t.number("inter_region_ms", 0.0, 0.0, 1e6),
            "queue_ms": t.number("queue_ms", 10_000.0, 0.0, 1e7),
        }
        check_keys(t.where, net, netv)
        t = _Table(churn, "scenario [churn]")
        churnv = {
            "mean_up_epochs": t.number("mean_up_epochs", 0.0, 0.0, 1e6),
            "mean_down_epochs": t.number("mean_down_epochs", 2.0, 0.0, 1e6),
            "crash_share": t.number("crash_share", 0.5, 0.0, 1.0),
            "joins_per_epoch": t.number("joins_per_epoch", 0.0, 0.0, 1e6),
        }
        check_keys(t.where, churn, churnv)
        t = _Table(clients, "scenario [clients]")
        clientv = {
            "clients": t.integer("count", 100, 1, 10**7),
            "malicious_clients": t.number("malicious_share", 0.0, 0.0, 1.0),
            "detect_prob": t.number("detect_prob", 1.0, 0.0, 1.0),
        }
        check_keys(t.where, clients, ("count", "malicious_share", "detect_prob"))
        adversaries = tuple(Adversary.from_dict(a) for a in advs)
        _check(sum(a.share for a in adversaries) <= 1.0, "adversary shares exceed 1")
        _check(
            params["digests"].enabled or not any(a.digest_fault for a in adversaries),
            "digest_fault needs [digests] enabled = true",
        )
        _check(
            all(a.behaviour == "self_dealer" or not a.self_tasks for a in adversaries),
            'self_tasks is for behaviour = "self_dealer" only',
        )
        scenario = cls(
            name=name,
            description=description,
            records=records,
            reputation_source=source,
            reputation=rep,
            adversaries=adversaries,
            sweep={k: tuple(v) for k, v in sweep.items()},
            **top,
            **netv,
            **churnv,
            **clientv,
            **params,
        )
        # checks across tables (a heartbeat period longer than the maximum age, say) are
        # the network parameters': refused here, not when the run starts
        _ = scenario.network_params
        return scenario

    @property
    def network_params(self) -> NetworkParams:
        """The simulated network's shared parameters: ``epoch_s`` and the three params
        tables, as a live network's file gives them (its digest enters every view's).
        Always the run's ``reputation_source`` (a live network's default is digests; a
        records run must say records), and with ``"digests"`` the digest schedule
        (``[digest_params]``, which sets ``digest_lag``); a records run leaves that at the
        default, so its view digests (and trace hashes) are those of before."""
        extra: dict[str, Any] = {"reputation_source": self.reputation_source}
        if self.reputation_source != "records":
            extra["digests"] = self.digest_params
        return NetworkParams(
            name="sim",
            epoch_s=self.epoch_s,
            matching=self.matching_params,
            reputation=self.reputation_params,
            ledger=self.ledger_params,
            **extra,
        )

    def to_dict(self) -> dict[str, Any]:
        """A TOML-shaped mapping (``from_dict(to_dict())`` round-trips)."""
        d: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "records": self.records,
            "reputation": self.reputation,
        }
        if self.reputation_source != "records":  # records runs dump as before
            d["reputation_source"] = self.reputation_source
        for k in [
            "seed",
            "epochs",
            "epoch_s",
            "nodes",
            "tasks_per_epoch",
            "ticks_per_epoch",
            "redundancy",
            "min_reputation",
            "deadline_ms",
            "node_capacity",
        ]:
            d[k] = getattr(self, k)
        d["network"] = {
            k: getattr(self, k)
            for k in (
                "rtt_ms",
                "rtt_sigma",
                "exec_ms",
                "exec_sigma",
                "loss",
                "regions",
                "inter_region_ms",
                "queue_ms",
            )
        }
        d["churn"] = {
            k: getattr(self, k)
            for k in ("mean_up_epochs", "mean_down_epochs", "crash_share", "joins_per_epoch")
        }
        d["clients"] = {
            "count": self.clients,
            "malicious_share": self.malicious_clients,
            "detect_prob": self.detect_prob,
        }
        d["adversary"] = [dataclasses.asdict(a) for a in self.adversaries]
        for key in ("reputation_params", "matching_params", "ledger_params", "digest_params"):
            d[key] = dataclasses.asdict(getattr(self, key))
        d["digests"] = dataclasses.asdict(self.digests)
        if self.sweep:
            d["sweep"] = {k: list(v) for k, v in self.sweep.items()}
        return d

    def with_overrides(self, overrides: Mapping[str, Any]) -> Scenario:
        """A copy with dotted-key overrides (``seed``, ``network.loss``,
        ``adversary.0.share``, ``reputation_params.w_success``...)."""
        d = self.to_dict()
        d.pop("sweep", None)
        for dotted, value in overrides.items():
            parts = dotted.split(".")
            target: Any = d
            for p in parts[:-1]:
                target = target[int(p)] if isinstance(target, list) else target.setdefault(p, {})
            last = parts[-1]
            if isinstance(target, list):
                target[int(last)] = value
            else:
                target[last] = value
        return Scenario.from_dict(d)


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario TOML file (raises ConfigError when missing or invalid)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"scenario {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"scenario {path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"scenario {path}: {exc}") from None
    data.setdefault("name", path.stem)
    return Scenario.from_dict(data)
