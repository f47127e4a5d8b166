"""``repp2p ledger`` over a real SQLite record store."""

from __future__ import annotations

import argparse
import json

from repp2p.cli import ledger as ledger_cli
from repp2p.network_params import BOOTSTRAP_DIR
from repp2p.store import SqliteRecordStore
from tests.ledger.test_ledger import EPOCH_S, _scenario


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="repp2p")
    ledger_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser


def _records_network(tmp_path, text: str = ""):
    """A network file whose views (and ledger) read every task's records, as these stores
    hold them (``repp2p ledger`` on a digest network: test_digest_cli.py)."""
    net = tmp_path / "net.toml"
    net.write_text(f'policy = "policy-dev.toml"\nreputation_source = "records"\n{text}')
    (tmp_path / "policy-dev.toml").write_bytes((BOOTSTRAP_DIR / "policy-dev.toml").read_bytes())
    return ["--network", "net", "--network-file", str(net)]


def test_ledger_command_prints_final_and_pending(tmp_path, capsys):
    s = _scenario(epochs=4)
    store = SqliteRecordStore(tmp_path / "records.db")
    store.put_many(s.records, now=0)
    store.close()
    base = ["ledger", "--data-dir", str(tmp_path), "--epoch", "7", "--epoch-s", str(EPOCH_S)]
    base += _records_network(tmp_path)
    args = _parser().parse_args([*base, "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["current_epoch"] == 7
    assert out["final_through_epoch"] == 4 and out["pending_through_epoch"] == 6
    assert out["unit"] == "micro-REP"
    # no Attestation records in the store: nobody verifies, nobody is paid, all burned
    assert out["final_supply"] == 0
    assert all(x["burned"] == x["emission"] for x in out["settlements"])
    args = _parser().parse_args(base)
    assert args.func(args) == 0
    assert "final through epoch 4" in capsys.readouterr().out


def test_missing_store_is_a_config_error(tmp_path):
    import pytest

    from repp2p.errors import ConfigError

    args = _parser().parse_args(["ledger", "--data-dir", str(tmp_path), "--epoch", "3"])
    with pytest.raises(ConfigError):
        args.func(args)


def test_ledger_command_takes_the_networks_parameters_from_its_file(tmp_path, capsys):
    s = _scenario(epochs=4)
    store = SqliteRecordStore(tmp_path / "records.db")
    store.put_many(s.records, now=0)
    store.close()
    network = _records_network(tmp_path, f"epoch_s = {EPOCH_S}\n[ledger]\ngrace_epochs = 0\n")
    base = ["ledger", "--data-dir", str(tmp_path), "--epoch", "7", "--json"]
    args = _parser().parse_args([*base, *network])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["final_through_epoch"] == 6  # grace 0 from the file (the default is 2)
    # The command line still overrides the network's values when asked to.
    args = _parser().parse_args([*base, *network, "--grace-epochs", "2"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["final_through_epoch"] == 4
