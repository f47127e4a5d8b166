"""Operator errors end as one ``repp2p: error:`` line and exit code 1, never a traceback,
even when they come out of the node's trio nursery (as an exception group)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from repp2p.cli import _leaves, main
from repp2p.errors import ConfigError, StoreError


def _node_toml(folder) -> str:
    path = folder / "node.toml"
    path.write_text(
        f'data_dir = "{folder / "data"}"\nlisten = ["/ip4/127.0.0.1/tcp/0"]\nstatus_listen = ""\n'
    )
    return str(path)


def test_a_corrupt_store_is_one_line_not_a_traceback(tmp_path):
    config = _node_toml(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "records.db").write_bytes(b"this is not a database" * 100)
    done = subprocess.run(
        [sys.executable, "-m", "repp2p", "node", "run", "--config", config],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("repp2p: error:")]
    assert len(errors) == 1 and "records.db" in errors[0]
    assert "Traceback" not in done.stderr


def test_exception_group_leaves_are_found_at_any_depth():
    group = BaseExceptionGroup("g", [ExceptionGroup("i", [StoreError("a")]), ConfigError("b")])
    assert [str(e) for e in _leaves(group)] == ["a", "b"]


def test_main_prints_each_error_of_a_group_once(monkeypatch, capsys):
    import argparse

    import repp2p.cli as cli

    def boom(args):
        raise BaseExceptionGroup(
            "nursery", [ExceptionGroup("inner", [StoreError("disk full")]), StoreError("disk full")]
        )

    parser = argparse.ArgumentParser()
    parser.set_defaults(func=boom)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert main([]) == 1
    assert capsys.readouterr().err == "repp2p: error: disk full\n"


def test_a_group_with_a_foreign_error_is_not_hidden(monkeypatch):
    import argparse

    import repp2p.cli as cli

    def boom(args):
        raise BaseExceptionGroup("nursery", [StoreError("ours"), RuntimeError("a bug")])

    parser = argparse.ArgumentParser()
    parser.set_defaults(func=boom)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    with pytest.raises(BaseExceptionGroup):
        main([])
