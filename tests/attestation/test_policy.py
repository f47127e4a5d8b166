from __future__ import annotations

from pathlib import Path

import pytest

from repp2p.attestation import Claims, Policy, TcbStatus, check_claims, load_policy, parse_policy
from repp2p.errors import AttestationError, AttestationReason, ConfigError

from .conftest import REPO

NOW = 1_800_000_000


def claims(**kw: object) -> Claims:
    base: dict[str, object] = {"kind": "nitro", "measurement": b"\x11" * 48, "signed_at": NOW}
    base.update(kw)
    return Claims(**base)  # type: ignore[arg-type]


def reason(fn, *a, **kw) -> AttestationReason:  # type: ignore[no-untyped-def]
    with pytest.raises(AttestationError) as err:
        fn(*a, **kw)
    return err.value.reason


def test_bootstrap_policies_load() -> None:
    dev = load_policy(REPO / "bootstrap" / "policy-dev.toml")
    prod = load_policy(REPO / "bootstrap" / "policy-production.toml")
    assert dev.profile == "dev" and dev.allow_simulated and dev.is_kind_accepted("simulated")
    assert prod.profile == "production" and not prod.allow_simulated
    assert not prod.is_kind_accepted("simulated")
    assert prod.require_pinned_measurements and not prod.allow_debug


@pytest.mark.parametrize(
    "text, fragment",
    [
        ('profile = "production"\nallow_simulated = true', "allow_simulated"),
        ('profile = "production"\nallow_debug = true', "allow_debug"),
        ('profile = "staging"', "profile"),
        ('accepted_kinds = ["sgx"]', "unknown TEE kinds"),
        ('accepted_kinds = ["simulated"]', "allow_simulated is false"),
        ("accepted_kinds = []", "empty"),
        ('min_tcb_status = "Great"', "min_tcb_status"),
        ("max_evidence_age_s = 0", "max_evidence_age_s"),
        ("max_evidence_age_s = true", "max_evidence_age_s"),
        ('reattest_period_s = "1h"', "reattest_period_s"),
        ("bogus = 1", "unknown keys"),
        ("[sev_snp.min_tcb]\nsnp = 300", "snp"),
        ("[sev_snp.min_tcb]\nflux = 1", "flux"),
        ('[measurements.e]\nnitro = ["zz"]', "not hex"),
        ('[measurements.e]\nnitro = ["00"]', "16..64-byte"),
        ('[measurements.e]\nsgx = ["' + "00" * 32 + '"]', "unknown kind"),
        ("allow_debug = 1", "allow_debug"),
        ("this is not toml", "invalid TOML"),
    ],
)
def test_bad_policies_are_config_errors(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_policy(text)


def test_production_with_simulated_cannot_be_built_programmatically() -> None:
    with pytest.raises(ConfigError):
        Policy(profile="production", allow_simulated=True)


def test_unreadable_policy_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_policy(tmp_path / "missing.toml")


def test_policy_is_frozen_and_fingerprinted() -> None:
    a = parse_policy('[measurements."*"]\nnitro = ["' + "11" * 48 + '"]')
    b = parse_policy('[measurements."*"]\nnitro = ["' + "11" * 48 + '"]')
    assert a.fingerprint == b.fingerprint and hash(a) == hash(b)
    assert a.fingerprint != Policy().fingerprint
    with pytest.raises(AttributeError):
        a.profile = "production"  # type: ignore[misc]
    with pytest.raises(TypeError):
        a.measurements["x"] = {}  # type: ignore[index]


def test_simulated_refused_by_production(prod_policy: Policy) -> None:
    c = claims(kind="simulated", simulated=True)
    assert reason(check_claims, c, prod_policy, NOW) is AttestationReason.SIMULATED_NOT_ALLOWED


def test_kind_debug_tcb_age_checks(prod_policy: Policy) -> None:
    assert (
        reason(
            check_claims, claims(kind="nvidia"), Policy(accepted_kinds=frozenset({"nitro"})), NOW
        )
        is AttestationReason.KIND_NOT_ALLOWED
    )
    assert reason(check_claims, claims(debug=True), prod_policy, NOW) is (
        AttestationReason.DEBUG_ENCLAVE
    )
    dcap = claims(kind="dcap", signed_at=None, tcb_status=TcbStatus.OUT_OF_DATE)
    assert reason(check_claims, dcap, prod_policy, NOW) is AttestationReason.TCB_OUT_OF_DATE
    revoked = claims(kind="dcap", signed_at=None, tcb_status=TcbStatus.REVOKED)
    assert reason(check_claims, revoked, prod_policy, NOW) is AttestationReason.REVOKED
    ok = claims(kind="dcap", signed_at=None, tcb_status=TcbStatus.SW_HARDENING_NEEDED)
    check_claims(ok, prod_policy, NOW)
    old = claims(signed_at=NOW - prod_policy.max_evidence_age_s - 1)
    assert reason(check_claims, old, prod_policy, NOW) is AttestationReason.STALE_EVIDENCE
    future = claims(signed_at=NOW + 3600)
    assert reason(check_claims, future, prod_policy, NOW) is AttestationReason.STALE_EVIDENCE
    expired = claims(valid_until=NOW - 1)
    assert reason(check_claims, expired, prod_policy, NOW) is AttestationReason.CERT_EXPIRED


def test_sev_snp_min_tcb() -> None:
    policy = Policy(sev_snp_min_tcb={"snp": 8, "microcode": 115})
    low = claims(kind="sev-snp", signed_at=None, tcb=(("snp", 5), ("microcode", 115)))
    assert reason(check_claims, low, policy, NOW) is AttestationReason.TCB_OUT_OF_DATE
    check_claims(
        claims(kind="sev-snp", signed_at=None, tcb=(("snp", 8), ("microcode", 200))), policy, NOW
    )


def test_measurement_pins_per_engine() -> None:
    good, other = b"\x11" * 48, b"\x22" * 48
    policy = Policy(
        measurements={
            "llm": {"nitro": frozenset({good})},
            "*": {"nitro": frozenset({good, other})},
        },
        require_pinned_measurements=True,
    )
    check_claims(claims(measurement=good), policy, NOW, engines=["llm"])
    check_claims(claims(measurement=other), policy, NOW)
    assert reason(check_claims, claims(measurement=other), policy, NOW, engines=["llm"]) is (
        AttestationReason.MEASUREMENT_NOT_ALLOWED
    )
    unpinned_kind = claims(kind="sev-snp", signed_at=None)
    assert reason(check_claims, unpinned_kind, policy, NOW) is (
        AttestationReason.MEASUREMENT_NOT_ALLOWED
    )


def test_reattestation_period() -> None:
    p = Policy(reattest_period_s=3600)
    assert not p.is_due_for_reattestation(NOW, NOW + 3599)
    assert p.is_due_for_reattestation(NOW, NOW + 3600)


def test_tcb_status_order_and_convergence() -> None:
    assert TcbStatus.UP_TO_DATE.is_at_least(TcbStatus.SW_HARDENING_NEEDED)
    assert not TcbStatus.OUT_OF_DATE.is_at_least(TcbStatus.SW_HARDENING_NEEDED)
    assert not TcbStatus.NOT_EVALUATED.is_at_least(TcbStatus.REVOKED)
    assert TcbStatus.worst(TcbStatus.OUT_OF_DATE, TcbStatus.CONFIGURATION_NEEDED) is (
        TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED
    )
    assert TcbStatus.worst(TcbStatus.UP_TO_DATE, TcbStatus.REVOKED) is TcbStatus.REVOKED
