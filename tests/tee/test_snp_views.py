"""Peers' views of an SEV-SNP node: its engines are established by the policy's pins.

A CVM's launch measurement covers its whole image, not repp2p's runtime+engines hash, so a
verified sev-snp attestation establishes the engines a node advertises only when the
network's policy pins that measurement for each of them (``Policy.pins_engines``).
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import pytest

from repp2p.attestation import Policy, default_backends, expected_report_data
from repp2p.attestation import verify as verify_module
from repp2p.records import Attestation, EngineOffer, NodeAd, decode, encode
from repp2p.store import SqliteRecordStore
from repp2p.tee.configfs_tsm import ConfigfsTsm
from repp2p.tee.snp_guest import SnpGuest
from repp2p.testing import factories
from repp2p.testing.network import dev_params
from repp2p.viewer import ViewKeeper

from .fake_snp import MEASUREMENT, FakeSnpKernel, TestAmdChain

NOW = 1_800_000_000
EPOCH_S = dev_params().epoch_s
ECHO = EngineOffer("echo", factories.digest("echo engine"))


def _policy(pins: dict) -> Policy:
    return Policy(
        profile="dev", accepted_kinds=frozenset({"sev-snp"}), allow_debug=True, measurements=pins
    )


@pytest.fixture
def records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list:
    chain = TestAmdChain.generate()
    trusted = dict(default_backends(), **{"sev-snp": chain.backend()})
    monkeypatch.setattr(verify_module, "_DEFAULT", MappingProxyType(trusted))
    node = factories.identity("cvm")
    enc, res, nonce, epoch = (
        factories.digest("enc"),
        bytes(factories.enclave_key(node.peer_id).verify_key),
        b"\1" * 32,
        NOW // EPOCH_S,
    )
    guest = SnpGuest(ConfigfsTsm(tmp_path, files=FakeSnpKernel(tmp_path, chain)))
    evidence, collateral = guest.evidence(
        expected_report_data(node.peer_id, enc, res, epoch, nonce)
    )
    expires = NOW + 3600
    attestation = Attestation(
        tee_kind="sev-snp", evidence=evidence, collateral=collateral, gpu_evidence=b"",
        enc_key=enc, result_key=res, epoch=epoch, nonce=nonce, seq=1, expires=expires,
    )  # fmt: skip
    ad = NodeAd(
        addrs=("/ip4/127.0.0.1/tcp/4001",), engines=(ECHO,), tee_kind="sev-snp", price=1,
        capacity=1, throughput=1, seq=1, expires=expires,
    )  # fmt: skip
    # the node is live: its enclave signed the heartbeat of the epoch before
    live = factories.live_heartbeat(node, epoch - 1, expires=expires)
    return [*(decode(encode(r, node), now=NOW) for r in (ad, attestation)), live]


@pytest.mark.parametrize(
    ("pins", "established"),
    [
        ({"echo": {"sev-snp": frozenset({MEASUREMENT})}}, True),
        ({}, False),  # verified, but nothing says this image runs echo
        ({"*": {"sev-snp": frozenset({MEASUREMENT})}}, False),  # "*" names no engine
        ({"echo": {"sev-snp": frozenset({b"\1" * 48})}, "*": {}}, None),  # another image
    ],
    ids=["pinned", "unpinned", "star-only", "other-image"],
)
def test_engines_established_by_per_engine_pins(
    tmp_path: Path, records: list, pins: dict, established: bool | None
) -> None:
    store = SqliteRecordStore(tmp_path / "records.db")
    try:
        keeper = ViewKeeper(store, _policy(pins), dev_params())
        verdict = keeper.verdicts(records, NOW)[records[0].signer]
    finally:
        store.close()
    if established is None:  # the pin refuses the measurement outright
        assert not verdict.verified and verdict.failed
        return
    assert verdict.verified and verdict.tee_kind == "sev-snp"
    assert verdict.measurements == (frozenset({ECHO.measurement}) if established else frozenset())


def test_pins_engines() -> None:
    policy = _policy({"a": {"sev-snp": frozenset({MEASUREMENT})}, "b": {"nitro": frozenset()}})
    assert policy.pins_engines("sev-snp", MEASUREMENT, ["a"])
    assert not policy.pins_engines("sev-snp", MEASUREMENT, ["a", "b"])
    assert not policy.pins_engines("sev-snp", MEASUREMENT, [])
    assert not policy.pins_engines("nitro", MEASUREMENT, ["a"])
