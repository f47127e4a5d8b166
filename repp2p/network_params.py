"""``NetworkParams``: the settings every peer of one network must share, in one object.

A network's epoch length, its matching, reputation, ledger, digest and audit parameters,
its attestation policy file and the lags with which records enter views are not a node's
choice: peers that
disagree on any of them build different views (claims then fail with ``view_mismatch``) or
different balances. So they live in one file per network, ``bootstrap/<network>.toml``
(next to the network's bootstrap ``peers``), and every peer — node, client, CLI, simulator —
reads them through this class. A key left out of the file takes the default documented
below; a section left out (``[matching]``, ``[reputation]``, ``[ledger]``, ``[digests]``,
``[audit]``) takes the defaults of its class; an unknown key is refused, naming the file
and the key.

``digest()`` identifies the parameters: SHA-256 of the canonical CBOR of their plain-data
form (:meth:`NetworkParams.to_dict`). It goes into every view's digest, so two peers with
different parameters see different view digests rather than silently different rankings.

Importing this module does no I/O (the pure core may use the dataclass); only
:meth:`NetworkParams.load` reads a file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cbor2

from repp2p.digests.params import AuditParams, DigestParams
from repp2p.errors import ConfigError
from repp2p.ledger.params import LedgerParams
from repp2p.matching.params import MatchingParams
from repp2p.params_check import check_keys, check_str, choice_field, int_field, str_field
from repp2p.reputation.params import ReputationParams

#: Folder of the network files shipped with the package (``<network>.toml``, policies):
#: package data in a wheel; in a source checkout ``repp2p/bootstrap`` is a link to the
#: top-level ``bootstrap/`` folder, so both read the same path without probing for it.
BOOTSTRAP_DIR = Path(__file__).resolve().parent / "bootstrap"
#: A network name: lower-case letters, digits and dashes, 1-32 characters.
NETWORK_NAME_PATTERN = r"[a-z0-9][a-z0-9-]{0,31}"
#: Default of ``NetworkParams.task_record_lag``.
TASK_RECORD_LAG = 2
#: Default of ``NetworkParams.heartbeat_lag``.
HEARTBEAT_LAG = 1
#: Values of ``NetworkParams.reputation_source``.
REPUTATION_SOURCES = ("records", "digests")

# A policy file name, looked up next to the network file: no folders, no "..".
_POLICY_PATTERN = r"(|[A-Za-z0-9][A-Za-z0-9._-]{0,127})"
# Keys of a network file that are not parameters (read by repp2p.config).
_FILE_ONLY_KEYS = ("peers",)
_SECTIONS: dict[str, type] = {
    "matching": MatchingParams,
    "reputation": ReputationParams,
    "ledger": LedgerParams,
    "digests": DigestParams,
    "audit": AuditParams,
}


@dataclasses.dataclass(frozen=True)
class NetworkParams:
    """The parameters shared by every peer of a network (see the module docstring).

    Build with :meth:`load` (from ``bootstrap/<name>.toml``), :meth:`from_dict`, or the
    constructor; derive variants with :meth:`replace`. Construction validates every field
    and raises :class:`~repp2p.errors.ConfigError`.

    Attributes:
        name: the network's name (``NodeConfig.network``), ``[a-z0-9-]``, 1-32 characters.
            Not a key of the file: the file is named after it.
        epoch_s: epoch length in seconds, 1..86400 (default 60). Epoch ``e`` covers unix
            seconds ``[e * epoch_s, (e + 1) * epoch_s)``; views, heartbeats, beacons,
            attestation binding and the ledger count in epochs.
        policy: file name of the network's attestation policy, next to the network file;
            ``""`` (default) means ``policy-<name>.toml``. A node's ``policy`` setting
            overrides it locally.
        task_record_lag: task records (offers and claims by their epoch, receipts and
            feedback by their offer's epoch) enter the view of epoch ``E`` only from epochs
            ``<= E - task_record_lag``, epochs, 1..100 (default 2): tasks in flight at a
            boundary keep producing records, and peers building a view moments apart must
            not see different reputations.
        reputation_source: what views score nodes from, ``"digests"`` (default: each
            sealed epoch's reconciled digest count rows, folded once, so a view costs
            O(new digests) and per-task records stay with their parties; docs/core.md,
            "Views from digests") or ``"records"`` (every task's offer, claims, receipts
            and feedback of the window, re-read at each view; every peer then pulls every
            task's records on feeds). Digests of ``E`` enter the view of ``V`` from
            ``E <= V - digest_lag``.
        heartbeat_lag: heartbeats enter the view of ``E`` from epochs ``<= E -
            heartbeat_lag``, epochs, 1..100 (default 1), at most
            ``matching.heartbeat_max_age_epochs - reputation.heartbeat_period_epochs + 1``
            (a node heartbeating once every ``H`` epochs, on schedule, has one of epoch
            ``>= E - heartbeat_lag - H + 1`` in the view of ``E``; with a smaller maximum
            age it would count as offline between its heartbeats).
        matching: :class:`~repp2p.matching.MatchingParams` (file section ``[matching]``).
        reputation: :class:`~repp2p.reputation.ReputationParams` (``[reputation]``).
        ledger: :class:`~repp2p.ledger.LedgerParams` (``[ledger]``).
        digests: :class:`~repp2p.digests.params.DigestParams` (``[digests]``): when digests
            are sealed, accepted and audited, and how many leaves each audit samples.
        audit: :class:`~repp2p.digests.params.AuditParams` (``[audit]``): the grace period
            a publisher has to answer an audit and the quotas it answers under.
    """

    name: str
    epoch_s: int = 60
    policy: str = ""
    task_record_lag: int = TASK_RECORD_LAG
    heartbeat_lag: int = HEARTBEAT_LAG
    reputation_source: str = "digests"
    matching: MatchingParams = dataclasses.field(default_factory=MatchingParams)
    reputation: ReputationParams = dataclasses.field(default_factory=ReputationParams)
    ledger: LedgerParams = dataclasses.field(default_factory=LedgerParams)
    digests: DigestParams = dataclasses.field(default_factory=DigestParams)
    audit: AuditParams = dataclasses.field(default_factory=AuditParams)

    def __post_init__(self) -> None:
        str_field(self, "name", NETWORK_NAME_PATTERN)
        int_field(self, "epoch_s", 1, 86_400)
        str_field(self, "policy", _POLICY_PATTERN)
        int_field(self, "task_record_lag", 1, 100)
        int_field(self, "heartbeat_lag", 1, 100)
        choice_field(self, "reputation_source", REPUTATION_SOURCES)
        for section, cls in _SECTIONS.items():
            if not isinstance(getattr(self, section), cls):
                raise ConfigError(
                    f"NetworkParams.{section} must be a {cls.__name__}, "
                    f"got {getattr(self, section)!r}"
                )
        period = self.reputation.heartbeat_period_epochs
        if self.heartbeat_lag + period - 1 > self.matching.heartbeat_max_age_epochs:
            raise ConfigError(
                f"NetworkParams.heartbeat_lag={self.heartbeat_lag} exceeds "
                f"matching.heartbeat_max_age_epochs={self.matching.heartbeat_max_age_epochs}"
                f" - reputation.heartbeat_period_epochs={period} + 1: "
                "a node heartbeating on schedule would count as offline (the maximum age "
                "must be at least heartbeat_lag + heartbeat_period_epochs - 1)"
            )

    # -- building ------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any], *, where: str = "") -> NetworkParams:
        """Build from a TOML-shaped mapping (a network file's content).

        ``peers`` (the bootstrap list) is accepted and ignored: it is not a parameter.
        ``where`` (the file) prefixes every error message.
        """
        where = where or f"network {name!r}"
        known = [f.name for f in dataclasses.fields(cls) if f.name != "name"]
        check_keys(where, data, [*known, *_FILE_ONLY_KEYS])
        values: dict[str, Any] = {k: v for k, v in data.items() if k not in _FILE_ONLY_KEYS}
        try:
            for section, klass in _SECTIONS.items():
                if section in values:
                    table = values[section]
                    check_keys(f"{where} [{section}]", table, _field_names(klass))
                    values[section] = klass(**table)
            return cls(name=name, **values)
        except ConfigError as exc:
            if str(exc).startswith(where):
                raise
            raise ConfigError(f"{where}: {exc}") from None

    @classmethod
    def load(cls, name: str, path: str | Path | None = None) -> NetworkParams:
        """Read the parameters of network ``name`` from ``path``, by default
        ``bootstrap/<name>.toml`` in the package.

        Raises:
            ConfigError: no such file, invalid TOML, an unknown key or a bad value.
        """
        if path is None:
            # Checked first: a name with "/" or ".." must not pick a file elsewhere.
            check_str("NetworkParams", "name", name, NETWORK_NAME_PATTERN)
            path = network_file(name)
        path = Path(path)
        if not path.exists():
            raise ConfigError(
                f"no network file {path} for network {name!r}: every peer of a network "
                "reads its epoch length and parameters from one (see docs/operators.md)"
            )
        return cls.from_dict(name, read_toml(path), where=str(path))

    def replace(self, **changes: Any) -> NetworkParams:
        """A copy with ``changes`` applied (validated again), e.g. ``replace(epoch_s=5)``
        for a test network with short epochs."""
        return dataclasses.replace(self, **changes)

    # -- reading -------------------------------------------------------------------------

    @property
    def digest_lag(self) -> int:
        """Epochs between a digest epoch ``E`` and the first view that counts it:
        ``digests.seal_lag_epochs + 2``. The digests of ``E`` go out during ``E +
        seal_lag_epochs``, each party's at its phase of the epoch (as late as 85% into it);
        views are built at the start of an epoch, so one more whole epoch lets the last of
        them spread before any view counts the epoch (peers that fold different digests
        see different view digests). When clients may batch their feedback
        (``digests.feedback_max_epochs`` = M > 1), a batch covering ``E`` may end at ``E +
        M - 1`` and go out only once that epoch is sealed, so views wait ``M - 1`` epochs
        more: every row of ``E``, batched or not, is folded once, at the same boundary on
        every peer (no late rows). Nodes' work batches (``digests.work_max_epochs``) wait
        the same way; views wait for the longer of the two."""
        return self.digests.seal_lag_epochs + 2 + self.digests.most_epochs - 1

    @property
    def dispute_lag(self) -> int:
        """The most epochs between an offer's epoch ``E`` and the first digest view that
        counts a dispute proof of it: ``digests.seal_lag_epochs + 1`` (derived, not a
        field). Per offer the count epoch is earlier when its deadline is
        (:class:`repp2p.digests.disputes.DisputeTiming`: the first boundary more than
        :attr:`proof_grace_s` after the deadline, ``E + 2`` for a deadline in ``E`` on a
        network of epochs no longer than the grace); this is its cap, reached by an offer
        whose deadline is past the seal.

        A proof goes out when its client's escalation ends, which may be as late as the
        epoch's seal: nodes admit offers of ``E`` until ``E + EPOCH_LAG`` and sign a claim
        or receipt of a task of ``E`` until ``E + seal_lag_epochs - 1``
        (:meth:`~repp2p.digests.DigestParams.sealed`), so the last receipt, and with it the
        last proof, is out at the start of ``E + seal_lag_epochs`` at the latest. Peers
        accept proofs of ``E`` until the end of that epoch (``dispute_lag - 1`` epochs
        back: the replay window), a whole epoch in which gossip, the per-epoch pulls and
        the retries of pending proofs reach every peer, and the view of ``E +
        dispute_lag`` is the first to count them. A smaller lag would count a proof that
        late peers may not hold yet (views with different digests), or refuse an honest
        late one as ``too_old``. Unlike ``digest_lag`` it does not wait for batched
        digests: a proof carries its own records."""
        return self.digests.seal_lag_epochs + 1

    @property
    def proof_grace_s(self) -> int:
        """The seconds peers have after an offer's deadline to receive its dispute
        proofs before a digest view counts them (``DisputeTiming.grace_s``):
        ``digests.proof_grace_s``, at most one epoch. Gossip carries a proof in well under
        a second, and an honest one is out by the deadline; the grace also covers a peer that
        missed it, which pulls the open proofs again late
        inside it (``ProofCatchUp``). A longer grace than an epoch would only delay
        verdicts: the rule before it, one whole epoch, is what networks with epochs of
        ``proof_grace_s`` or less keep."""
        return min(self.digests.proof_grace_s, self.epoch_s)

    @property
    def policy_file(self) -> str:
        """The attestation policy's file name: ``policy`` or ``policy-<name>.toml``."""
        return self.policy or f"policy-{self.name}.toml"

    def to_dict(self) -> dict[str, Any]:
        """The plain-data form: every field, sections as nested tables (``from_dict`` of
        it, with ``name`` removed, gives back an equal object)."""
        return dataclasses.asdict(self)

    def digest(self) -> bytes:
        """SHA-256 of the canonical CBOR of :meth:`to_dict` (32 bytes).

        Float fields are stored as floats whatever the file wrote (``12`` or ``12.0``),
        so equal parameters always have the same digest.
        """
        return hashlib.sha256(cbor2.dumps(self.to_dict(), canonical=True)).digest()


def network_file(name: str, folder: Path = BOOTSTRAP_DIR) -> Path:
    """Where the file of network ``name`` lives by default: ``<folder>/<name>.toml``."""
    return folder / f"{name}.toml"


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; ConfigError (naming the file) when unreadable or invalid."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8; a stray byte is not a crash
        raise ConfigError(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]
