"""Every CLI reads the network's parameters from its file (bootstrap/<network>.toml)."""

from __future__ import annotations

import contextlib

from repp2p.cli import main
from repp2p.errors import ReppError
from repp2p.network_params import NetworkParams


def test_submit_uses_the_dev_networks_epoch(monkeypatch, capsys):
    import repp2p.client

    seen = {}

    @contextlib.asynccontextmanager
    async def fake_open(bootstrap, **kwargs):
        seen.update(kwargs)
        raise ReppError("stop here")
        yield  # pragma: no cover

    monkeypatch.setattr(repp2p.client.Client, "open", fake_open)
    argv = ["submit", "--engine", "echo", "--input", "x", "--bootstrap", "/ip4/127.0.0.1/tcp/1"]
    assert main([*argv, "--network", "dev"]) == 1
    assert "stop here" in capsys.readouterr().err
    assert seen["network"] == "dev"
    assert seen["network_params"] == NetworkParams.load("dev")
    assert seen["network_params"].epoch_s == 10


def test_submit_refuses_a_network_without_a_file(capsys):
    argv = ["submit", "--engine", "echo", "--input", "x", "--bootstrap", "/ip4/127.0.0.1/tcp/1"]
    assert main([*argv, "--network", "nowhere"]) == 1
    assert "no network file" in capsys.readouterr().err
