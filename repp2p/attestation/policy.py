"""Attestation policy: which verified claims a network accepts.

One frozen, validated object per network, built from TOML in one place
(:func:`load_policy` / :func:`parse_policy`). Backends say what evidence *proves*; the policy
says what is *good enough*: accepted TEE kinds, debug enclaves, pinned measurements per
engine, minimum TCB, evidence age, re-attestation period, and whether the simulated TEE is
allowed -- only ever in a ``dev`` network profile: a production policy with simulated
allowed is a :class:`~repp2p.errors.ConfigError`, so it cannot exist.

All times are unix seconds; all durations are seconds (``*_s``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType

from repp2p.attestation.claims import Claims, TcbStatus
from repp2p.errors import AttestationError, AttestationReason, ConfigError

#: Every TEE kind a policy may name.
KNOWN_KINDS = frozenset({"simulated", "nitro", "sev-snp", "dcap", "nvidia"})
PROFILES = frozenset({"dev", "production"})
#: Engine key whose pins apply to every node, whatever engines it serves.
ANY_ENGINE = "*"
#: SEV-SNP TCB components a policy may put a floor on.
SEV_SNP_TCB_FIELDS = frozenset({"fmc", "bootloader", "tee", "snp", "microcode"})
_MAX_DURATION_S = 10 * 365 * 86400


@dataclasses.dataclass(frozen=True)
class Policy:
    """A validated attestation policy.

    Attributes:
        profile: network profile, ``dev`` or ``production``.
        accepted_kinds: TEE kinds accepted (``simulated`` only with ``allow_simulated``).
        allow_simulated: accept the simulated TEE; only valid when ``profile == "dev"``.
        allow_debug: accept debug-mode enclaves (default False; never in production).
        min_tcb_status: worst acceptable TCB status, for kinds that report one (DCAP).
        sev_snp_min_tcb: minimum SEV-SNP TCB component versions (``bootloader``, ``tee``,
            ``snp``, ``microcode``, ``fmc``), each 0..255.
        max_evidence_age_s: oldest acceptable evidence, for formats with a signing time
            (Nitro, simulated), in seconds, 1..10 years.
        max_clock_skew_s: how far in the future a signing time may be, seconds, 0..3600.
        reattest_period_s: how often a node must publish a fresh attestation (new
            hardware evidence), seconds; an attestation counts for
            :meth:`attestation_max_age_epochs` after its binding epoch.
        max_epoch_lag: freshness in epochs: how old the latest enclave-signed heartbeat
            may be for its node to count as alive (:mod:`repp2p.attestation.liveness`), and
            the margin an attestation keeps beyond ``reattest_period_s``.
        measurements: engine id (or ``*`` for any node) -> kind -> accepted measurements.
        require_pinned_measurements: refuse a node when no pin applies to its kind/engines.
    """

    profile: str = "dev"
    accepted_kinds: frozenset[str] = frozenset({"nitro", "sev-snp", "dcap", "nvidia"})
    allow_simulated: bool = False
    allow_debug: bool = False
    min_tcb_status: TcbStatus = TcbStatus.UP_TO_DATE
    sev_snp_min_tcb: Mapping[str, int] = dataclasses.field(
        default_factory=lambda: MappingProxyType({})
    )
    max_evidence_age_s: int = 86400
    max_clock_skew_s: int = 300
    reattest_period_s: int = 3600
    max_epoch_lag: int = 1
    measurements: Mapping[str, Mapping[str, frozenset[bytes]]] = dataclasses.field(
        default_factory=lambda: MappingProxyType({})
    )
    require_pinned_measurements: bool = False

    def __post_init__(self) -> None:
        _validate(self)
        frozen = MappingProxyType(
            {e: MappingProxyType(dict(kinds)) for e, kinds in self.measurements.items()}
        )
        object.__setattr__(self, "measurements", frozen)
        object.__setattr__(self, "sev_snp_min_tcb", MappingProxyType(dict(self.sev_snp_min_tcb)))
        object.__setattr__(self, "accepted_kinds", frozenset(self.accepted_kinds))

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    @property
    def fingerprint(self) -> bytes:
        """SHA-256 over a canonical encoding of every field (cache keys, logs)."""
        canon = {
            "profile": self.profile,
            "accepted_kinds": sorted(self.accepted_kinds),
            "allow_simulated": self.allow_simulated,
            "allow_debug": self.allow_debug,
            "min_tcb_status": self.min_tcb_status.value,
            "sev_snp_min_tcb": dict(sorted(self.sev_snp_min_tcb.items())),
            "max_evidence_age_s": self.max_evidence_age_s,
            "max_clock_skew_s": self.max_clock_skew_s,
            "reattest_period_s": self.reattest_period_s,
            "max_epoch_lag": self.max_epoch_lag,
            "measurements": {
                e: {k: sorted(m.hex() for m in v) for k, v in sorted(kinds.items())}
                for e, kinds in sorted(self.measurements.items())
            },
            "require_pinned_measurements": self.require_pinned_measurements,
        }
        return hashlib.sha256(json.dumps(canon, sort_keys=True).encode()).digest()

    def is_kind_accepted(self, kind: str) -> bool:
        if kind == "simulated":
            return self.allow_simulated and self.profile == "dev"
        return kind in self.accepted_kinds

    def pins_for(self, kind: str, engines: Iterable[str] = ()) -> list[frozenset[bytes]]:
        """The pin sets that apply: the ``*`` entry and one per named engine that has pins.

        A measurement must be in *every* returned set.
        """
        out = []
        for engine in (ANY_ENGINE, *engines):
            kinds = self.measurements.get(engine)
            if kinds is not None and kind in kinds:
                out.append(kinds[kind])
            elif kinds is not None and engine != ANY_ENGINE and self.require_pinned_measurements:
                out.append(frozenset())  # engine pinned for other kinds only: nothing matches
        return out

    def pins_engines(self, kind: str, measurement: bytes, engines: Iterable[str]) -> bool:
        """True when every one of ``engines`` (at least one) has its own pin set for
        ``kind`` holding ``measurement``: the network says this image runs those engines.

        This is how a hardware TEE whose measurement covers a whole image (an SEV-SNP VM's
        launch measurement) establishes the engines a node advertises; the ``*`` entry
        does not count, since it names no engine.
        """
        engines = tuple(engines)
        return bool(engines) and all(
            measurement in self.measurements.get(e, {}).get(kind, frozenset()) for e in engines
        )

    def attestation_max_age_epochs(self, epoch_s: int) -> int:
        """How many epochs after its binding epoch an attestation still counts:
        ``ceil(reattest_period_s / epoch_s) + max_epoch_lag`` (its node re-attests every
        ``reattest_period_s``; the margin covers the wait for its phase and gossip)."""
        if epoch_s <= 0:
            raise ValueError("epoch_s must be positive")
        return -(-self.reattest_period_s // epoch_s) + self.max_epoch_lag

    def is_due_for_reattestation(self, attested_at: int, now: int) -> bool:
        """True when an attestation verified at ``attested_at`` must be refreshed by ``now``."""
        return now - attested_at >= self.reattest_period_s


def _bad(msg: str) -> ConfigError:
    return ConfigError(f"attestation policy: {msg}")


def _check_int(name: str, value: object, lo: int, hi: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise _bad(f"{name} must be an integer in {lo}..{hi}, got {value!r}")


def _validate(p: Policy) -> None:
    if p.profile not in PROFILES:
        raise _bad(f"profile must be one of {sorted(PROFILES)}, got {p.profile!r}")
    kinds = set(p.accepted_kinds)
    unknown = kinds - KNOWN_KINDS
    if unknown:
        raise _bad(f"unknown TEE kinds {sorted(unknown)}; known: {sorted(KNOWN_KINDS)}")
    for name in ("allow_simulated", "allow_debug", "require_pinned_measurements"):
        if not isinstance(getattr(p, name), bool):
            raise _bad(f"{name} must be true or false")
    if p.allow_simulated and p.profile != "dev":
        raise _bad(
            "allow_simulated is only permitted in the dev profile (simulated TEEs are "
            "not real security)"
        )
    if "simulated" in kinds and not p.allow_simulated:
        raise _bad("accepted_kinds lists 'simulated' but allow_simulated is false")
    if p.allow_debug and p.profile != "dev":
        raise _bad("allow_debug is only permitted in the dev profile")
    if not kinds and not p.allow_simulated:
        raise _bad("accepted_kinds is empty: no node could ever be accepted")
    if not isinstance(p.min_tcb_status, TcbStatus) or p.min_tcb_status is TcbStatus.NOT_EVALUATED:
        raise _bad("min_tcb_status must be a TCB status")
    _check_int("max_evidence_age_s", p.max_evidence_age_s, 1, _MAX_DURATION_S)
    _check_int("max_clock_skew_s", p.max_clock_skew_s, 0, 3600)
    _check_int("reattest_period_s", p.reattest_period_s, 1, _MAX_DURATION_S)
    _check_int("max_epoch_lag", p.max_epoch_lag, 0, 1_000_000)
    for field, value in p.sev_snp_min_tcb.items():
        if field not in SEV_SNP_TCB_FIELDS:
            raise _bad(f"sev_snp.min_tcb: unknown component {field!r}")
        _check_int(f"sev_snp.min_tcb.{field}", value, 0, 255)
    for engine, per_kind in p.measurements.items():
        if not isinstance(engine, str) or not engine:
            raise _bad("measurement engine ids must be non-empty strings")
        for kind, pins in per_kind.items():
            if kind not in KNOWN_KINDS:
                raise _bad(f"measurements.{engine}: unknown kind {kind!r}")
            if not isinstance(pins, frozenset) or not all(
                isinstance(m, bytes) and 16 <= len(m) <= 64 for m in pins
            ):
                raise _bad(f"measurements.{engine}.{kind}: 16..64-byte measurements expected")


_KEYS = {
    "profile", "accepted_kinds", "allow_simulated", "allow_debug", "min_tcb_status",
    "max_evidence_age_s", "max_clock_skew_s", "reattest_period_s", "max_epoch_lag",
    "require_pinned_measurements", "measurements", "sev_snp",
}  # fmt: skip


def policy_from_mapping(data: Mapping[str, object]) -> Policy:
    """Build a :class:`Policy` from a parsed TOML table.

    Raises:
        ConfigError: unknown keys, wrong types or values out of bounds.
    """
    unknown = set(data) - _KEYS
    if unknown:
        raise _bad(f"unknown keys {sorted(unknown)}")
    kwargs: dict[str, object] = {}
    for key in (
        "profile",
        "allow_simulated",
        "allow_debug",
        "require_pinned_measurements",
        "max_evidence_age_s",
        "max_clock_skew_s",
        "reattest_period_s",
        "max_epoch_lag",
    ):
        if key in data:
            kwargs[key] = data[key]
    if "accepted_kinds" in data:
        kinds = data["accepted_kinds"]
        if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
            raise _bad("accepted_kinds must be a list of strings")
        kwargs["accepted_kinds"] = frozenset(kinds)
    if "min_tcb_status" in data:
        try:
            kwargs["min_tcb_status"] = TcbStatus(data["min_tcb_status"])
        except ValueError:
            raise _bad(
                f"min_tcb_status {data['min_tcb_status']!r} is not one of "
                f"{[s.value for s in TcbStatus if s is not TcbStatus.NOT_EVALUATED]}"
            ) from None
    if "sev_snp" in data:
        sev = data["sev_snp"]
        if not isinstance(sev, dict) or set(sev) - {"min_tcb"}:
            raise _bad("[sev_snp] may only contain min_tcb")
        min_tcb = sev.get("min_tcb", {})
        if not isinstance(min_tcb, dict):
            raise _bad("sev_snp.min_tcb must be a table")
        kwargs["sev_snp_min_tcb"] = min_tcb
    if "measurements" in data:
        kwargs["measurements"] = _parse_measurements(data["measurements"])
    return Policy(**kwargs)  # type: ignore[arg-type]


def _parse_measurements(table: object) -> dict[str, dict[str, frozenset[bytes]]]:
    if not isinstance(table, dict):
        raise _bad("[measurements] must be a table of engines")
    out: dict[str, dict[str, frozenset[bytes]]] = {}
    for engine, per_kind in table.items():
        if not isinstance(per_kind, dict):
            raise _bad(f"measurements.{engine} must be a table of kind = [hex, ...]")
        out[engine] = {}
        for kind, values in per_kind.items():
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise _bad(f"measurements.{engine}.{kind} must be a list of hex strings")
            try:
                out[engine][kind] = frozenset(bytes.fromhex(v) for v in values)
            except ValueError:
                raise _bad(f"measurements.{engine}.{kind}: not hex") from None
    return out


def parse_policy(text: str) -> Policy:
    """Parse policy TOML text. Raises ConfigError with the problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _bad(f"invalid TOML: {exc}") from None
    return policy_from_mapping(data)


def load_policy(path: str | Path) -> Policy:
    """Read and parse a policy TOML file. Raises ConfigError (also when unreadable)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _bad(f"cannot read {path}: {exc}") from None
    return parse_policy(text)


def check_claims(claims: Claims, policy: Policy, now: int, engines: Iterable[str] = ()) -> None:
    """Apply ``policy`` to verified ``claims`` at unix time ``now``.

    Args:
        claims: claims returned by a backend (never taken from the wire).
        policy: the network's policy.
        now: unix seconds.
        engines: engine ids the node offers; their measurement pins apply.

    Raises:
        AttestationError: SIMULATED_NOT_ALLOWED, KIND_NOT_ALLOWED, DEBUG_ENCLAVE, REVOKED,
            TCB_OUT_OF_DATE, STALE_EVIDENCE, CERT_EXPIRED/CERT_NOT_YET_VALID (outside the
            claims' validity window) or MEASUREMENT_NOT_ALLOWED.
    """
    if claims.simulated or claims.kind == "simulated":
        if not (policy.allow_simulated and policy.profile == "dev"):
            raise AttestationError(
                AttestationReason.SIMULATED_NOT_ALLOWED,
                "simulated TEE evidence is only accepted by a dev-profile policy",
            )
    elif claims.kind not in policy.accepted_kinds:
        raise AttestationError(AttestationReason.KIND_NOT_ALLOWED, f"kind {claims.kind!r}")
    if claims.debug and not policy.allow_debug:
        raise AttestationError(AttestationReason.DEBUG_ENCLAVE, f"{claims.kind} debug enclave")
    if claims.tcb_status is TcbStatus.REVOKED:
        raise AttestationError(AttestationReason.REVOKED, "TCB status Revoked")
    if claims.tcb_status is not TcbStatus.NOT_EVALUATED and not claims.tcb_status.is_at_least(
        policy.min_tcb_status
    ):
        raise AttestationError(
            AttestationReason.TCB_OUT_OF_DATE,
            f"TCB status {claims.tcb_status.value} below {policy.min_tcb_status.value}",
        )
    if claims.kind == "sev-snp":
        tcb = claims.tcb_map
        for name, minimum in policy.sev_snp_min_tcb.items():
            if name in tcb and tcb[name] < minimum:
                raise AttestationError(
                    AttestationReason.TCB_OUT_OF_DATE, f"SEV-SNP {name} {tcb[name]} < {minimum}"
                )
    if claims.signed_at is not None:
        if now - claims.signed_at > policy.max_evidence_age_s:
            raise AttestationError(
                AttestationReason.STALE_EVIDENCE,
                f"evidence is {now - claims.signed_at} s old (max {policy.max_evidence_age_s})",
            )
        if claims.signed_at - now > policy.max_clock_skew_s:
            raise AttestationError(AttestationReason.STALE_EVIDENCE, "evidence from the future")
    if now < claims.valid_from:
        raise AttestationError(AttestationReason.CERT_NOT_YET_VALID, "verification window")
    if now > claims.valid_until:
        raise AttestationError(AttestationReason.CERT_EXPIRED, "verification window")
    pins = policy.pins_for(claims.kind, engines)
    if policy.require_pinned_measurements and not pins:
        raise AttestationError(
            AttestationReason.MEASUREMENT_NOT_ALLOWED, f"no measurement pinned for {claims.kind}"
        )
    for allowed in pins:
        if claims.measurement not in allowed:
            raise AttestationError(
                AttestationReason.MEASUREMENT_NOT_ALLOWED,
                f"{claims.kind} measurement {claims.measurement.hex()[:32]}... not pinned",
            )
