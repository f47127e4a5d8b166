"""Node configuration: TOML in, a frozen validated object out, clear errors otherwise."""

from __future__ import annotations

import pytest

from repp2p.config import load_node_config
from repp2p.errors import ConfigError
from repp2p.net.params import GossipParams, SyncParams


def write(tmp_path, text: str):
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_full_config_round_trip(tmp_path):
    config = load_node_config(
        write(
            tmp_path,
            """
network = "dev"
data_dir = "data"
listen = ["/ip4/127.0.0.1/tcp/4001"]
engines = ["echo", "sentiment"]
price = 5
[gossip]
degree = 8
degree_high = 16
[sync]
page_records = 64
""",
        )
    )
    assert config.data_dir == (tmp_path / "data").resolve()
    assert config.key_path == config.data_dir / "node.key"
    assert config.engines == ("echo", "sentiment")
    assert config.gossip.degree == 8 and config.sync.page_records == 64
    with pytest.raises(AttributeError):
        config.price = 1  # frozen


@pytest.mark.parametrize(
    "text, message",
    [
        ('network = "dev"', "data_dir is required"),
        ('data_dir = "d"\nbogus = 1', "unknown configuration keys"),
        ('data_dir = "d"\nnetwork = "main"\ntee_kind = "simulated"', "dev network only"),
        ('data_dir = "d"\ntee_kind = "sgx-magic"', "tee_kind"),
        ('data_dir = "d"\ncapacity = 0', "capacity"),
        ('data_dir = "d"\nengines = ["Bad Engine"]', "engine id"),
        ('data_dir = "d"\nlisten = "one"', "list of strings"),
        ('data_dir = "d"\n[gossip]\ndegree = 100', "degree=100"),
        ('data_dir = "d"\n[gossip]\nfoo = 1', "unknown keys"),
        ('data_dir = "d"\nstatus_listen = "nowhere"', "host:port"),
        ('data_dir = "d"\nprice = true', "price must be a number"),
        ("data_dir = [", "not valid TOML"),
    ],
)
def test_bad_configs_are_refused_clearly(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_node_config(write(tmp_path, text))


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_node_config(tmp_path / "absent.toml")


def test_params_validate_on_build():
    with pytest.raises(ConfigError):
        GossipParams(degree=6, degree_low=7)
    with pytest.raises(ConfigError):
        SyncParams(page_bytes=10)
    assert GossipParams().heartbeat_interval_s == 1
