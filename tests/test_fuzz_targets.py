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
from repp2p.errors import ConfigError
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
