"""The fuzz harnesses (fuzz/) stay honest and the crashes the campaign found stay fixed.

A short run of the built-in mutator over every target is part of ``make test``; the
1,000,000-input campaign is ``make fuzz`` (bench/RESULTS.md has its figures).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz.mutate import mutations
from fuzz.run import run_mutate
from fuzz.targets import VECTORS, targets
from repp2p.attestation.policy import load_policy
from repp2p.config import load_node_config
from repp2p.errors import ConfigError, ProofError
from repp2p.network_params import NetworkParams
from repp2p.sim.scenario import load_scenario

ALL = sorted(targets())
#: targets whose seeds are the real-hardware vectors (absent in some checkouts)
NEEDS_VECTORS = {
    "attestation-nitro",
    "attestation-sev-snp",
    "attestation-dcap",
    "attestation-nvidia",
}


def _seeds(name: str) -> list[bytes]:
    seeds = targets()[name].seeds()
    if not seeds and name in NEEDS_VECTORS:
        pytest.skip(f"attestation vectors not found under {VECTORS} (set REPP2P_VECTORS)")
    return seeds


@pytest.mark.parametrize("name", ALL)
def test_seeds_are_accepted(name: str) -> None:
    """A target whose valid inputs are rejected would fuzz nothing but its first check."""
    seeds = _seeds(name)
    assert seeds, f"{name} has no seed corpus"
    for data in seeds:
        assert targets()[name].run(data) is True


@pytest.mark.parametrize("name", ALL)
def test_short_campaign_finds_nothing(name: str, tmp_path: Path) -> None:
    _seeds(name)
    figures = run_mutate(targets()[name], 150, seed=7, timeout_s=10.0, out=tmp_path)
    assert figures["crashes"] == 0 and figures["hangs"] == 0, sorted(tmp_path.iterdir())
    assert figures["inputs"] >= 150


def test_mutations_are_deterministic_and_bounded() -> None:
    seeds = [b"\xa2aa\x01ab\x02" * 20]
    first = list(mutations(seeds, 200, seed=3, max_len=64))
    assert first == list(mutations(seeds, 200, seed=3, max_len=64))
    assert all(len(d) <= 64 for d in first)
    assert len(set(first)) > 100  # it mutates, not repeats


# Found by the campaign: a file that is not UTF-8 escaped the loaders as UnicodeDecodeError.
NOT_UTF8 = b'network = "dev"\nname = "\xff\xfe"\n'


@pytest.mark.parametrize(
    "load",
    [
        load_node_config,
        load_policy,
        load_scenario,
        lambda path: NetworkParams.load("x", path),
    ],
    ids=["node-config", "policy", "scenario", "network-params"],
)
def test_non_utf8_files_are_config_errors(load, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.toml"
    path.write_bytes(NOT_UTF8)
    with pytest.raises(ConfigError, match=r"UTF-8|cannot read"):
        load(path)


# Found by the campaign: a number where the config wants a string escaped as AttributeError.
@pytest.mark.parametrize(
    "line",
    ["status_listen = 30", "policy = 7", "log_level = 10", 'log_level = "LOUD"'],
)
def test_config_values_of_the_wrong_type_are_config_errors(line: str, tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(f'network = "dev"\ndata_dir = "./data"\n{line}\n')
    with pytest.raises(ConfigError):
        load_node_config(path)


# The structure-aware targets (replica-mix, dispute-mix) must reach the rules a byte
# mutator cannot (every envelope signed): one or two choices from an accepted input.
def _mix_choices(offer: str, pairs: list[tuple[str, str]], verdict: str) -> bytes:
    """The dispute-mix input of a contested proof: ``pairs`` of (claim, receipt) pool
    names in the proof's order (sorted by node) and the verdict's name."""
    from fuzz.targets import _choose, _envelope_pool, _pool_index
    from repp2p.records import decode

    pool, index = _envelope_pool(), _pool_index()
    pairs = sorted(pairs, key=lambda p: decode(pool[index[p[1]]][1]).signer)
    return b"\x01" + _choose(offer, [c for c, _ in pairs], [r for _, r in pairs], verdict)


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        (("k1-claim-late-1", "k1-right-1"), "wrong_epoch"),
        (("k1-claim-2", "k1-right-otherkey-2"), "unattested"),
        (("k1-claim-3", "k1-right-unsigned-3"), "not_enclave_signed"),
        (("k1-claim-6", "k1-right-6"), "unranked"),
        (("k1-claim-1", "k1-right-1"), None),
    ],
)
def test_the_dispute_mix_reaches_the_deep_rules(first, reason) -> None:
    data = _mix_choices("k1", [first, ("k1-claim-0", "k1-right-0")], "k1-verdict-0")
    if reason is None:
        assert targets()["dispute-mix"].run(data) is True
        return
    with pytest.raises(ProofError) as info:
        targets()["dispute-mix"].run(data)
    assert info.value.reason.value == reason


@pytest.mark.parametrize(
    ("verdict", "claims", "refused"),
    [
        ("k1-verdict-0", ["k1-claim-0", "k1-claim-1", "k1-claim-2"], None),
        ("k1-verdict-6", ["k1-claim-0", "k1-claim-1", "k1-claim-2"], "no carried receipt"),
        ("k1-ok-0", ["k1-claim-0", "k1-claim-1", "k1-claim-2"], "disputes nothing"),
        ("k1-forged-0", ["k1-claim-0", "k1-claim-1", "k1-claim-2"], "owner's"),
        ("k1-right-0", ["k1-claim-0", "k1-claim-1", "k1-claim-2"], "not a verdict"),
        ("k1-verdict-0", ["k1-claim-1", "k1-claim-0", "k1-claim-2"], "in their order"),
        ("k1-verdict-0", ["k1-claim-0", "k1-claim-late-1", "k1-claim-2"], "another task"),
        ("k1-verdict-0", ["k1-claim-0", "k1-claim-1"], "one claim per receipt"),
    ],
)
def test_the_replica_mix_reaches_the_verdict_rules(verdict, claims, refused, monkeypatch) -> None:
    from fuzz.targets import _choose
    from repp2p.tasks import escalation

    details: list[str] = []
    for name in ("_bad", "_bad_verdict"):
        real = getattr(escalation, name)
        monkeypatch.setattr(escalation, name, lambda d, real=real: details.append(d) or real(d))
    receipts = ["k1-right-0", "k1-right-1", "k1-right-2"]
    data = b"\x03" + _choose("k1", receipts, verdict, claims)
    assert targets()["replica-mix"].run(data) is (refused is None)
    assert details == ([] if refused is None else [details[0]])
    assert refused is None or refused in details[0]
