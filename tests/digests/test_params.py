"""DigestParams and AuditParams are network parameters (``NetworkParams.digests`` / ``.audit``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from repp2p.config import node_config_from_dict
from repp2p.digests.params import EPOCH_LAG, AuditParams, DigestParams
from repp2p.errors import ConfigError
from repp2p.network_params import NetworkParams
from repp2p.tasks import EPOCH_LAG as ADMISSION_EPOCH_LAG


def test_epoch_lag_matches_admission() -> None:
    # digests/params.py repeats the constant to avoid an import circle; it must agree.
    assert EPOCH_LAG == ADMISSION_EPOCH_LAG
    assert DigestParams().seal_lag_epochs == ADMISSION_EPOCH_LAG + 1


def test_network_file_sections() -> None:
    params = NetworkParams.from_dict(
        "t", {"digests": {"seal_lag_epochs": 5}, "audit": {"attempts": 2, "retry_s": 1.0}}
    )
    assert params.digests == DigestParams(seal_lag_epochs=5)
    assert params.audit == AuditParams(attempts=2, retry_s=1.0)
    # defaults when the sections are left out; the digest tells the two apart
    plain = NetworkParams.from_dict("t", {})
    assert plain.digests == DigestParams() and plain.audit == AuditParams()
    assert plain.digest() != params.digest()
    assert params.to_dict()["digests"]["seal_lag_epochs"] == 5


def test_network_file_refuses_bad_digest_values() -> None:
    with pytest.raises(ConfigError, match=r"DigestParams\.seal_lag_epochs"):
        NetworkParams.from_dict("t", {"digests": {"seal_lag_epochs": 1}})
    with pytest.raises(ConfigError, match=r"\[audit\]"):
        NetworkParams.from_dict("t", {"audit": {"nope": 1}})


def test_the_proof_grace_is_a_validated_network_value_of_at_most_one_epoch() -> None:
    """``[digests] proof_grace_s``: 60 .. 86400 seconds (an honest replica's proof may go
    out one 30-s execution after the deadline), an integer; what a network uses is at most
    one epoch (a network of short epochs keeps the one-epoch rule)."""
    for bad in (0, 59, 86_401, -5, 90.5, True, "120"):
        with pytest.raises(ConfigError, match=r"proof_grace_s"):
            NetworkParams.from_dict("t", {"digests": {"proof_grace_s": bad}})
    assert DigestParams().proof_grace_s == 120
    long = NetworkParams.from_dict("t", {"epoch_s": 600, "digests": {"proof_grace_s": 90}})
    assert long.proof_grace_s == 90 and long.to_dict()["digests"]["proof_grace_s"] == 90
    assert NetworkParams(name="t", epoch_s=600).proof_grace_s == 120
    assert NetworkParams(name="t", epoch_s=60).proof_grace_s == 60
    assert NetworkParams(name="t", epoch_s=10).proof_grace_s == 10  # the dev network's epochs
    assert long.digest() != long.replace(digests=DigestParams()).digest()


def test_node_config_reads_them_from_the_network(tmp_path: Path) -> None:
    params = NetworkParams(name="dev", digests=DigestParams(audit_samples=3))
    cfg = node_config_from_dict({"data_dir": "d"}, base_dir=tmp_path)
    assert cfg.digests == cfg.network_params.digests
    assert cfg.audit is cfg.network_params.audit
    from repp2p.config import NodeConfig

    assert NodeConfig(data_dir=tmp_path, network_params=params).digests.audit_samples == 3


@pytest.mark.parametrize("section", ["digests", "audit"])
def test_node_file_refuses_network_sections(tmp_path: Path, section: str) -> None:
    with pytest.raises(ConfigError, match=f"{section} is a network parameter"):
        node_config_from_dict({"data_dir": "d", section: {}}, base_dir=tmp_path)
