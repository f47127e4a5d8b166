"""Node configuration: TOML in, a frozen validated object out, clear errors otherwise."""

from __future__ import annotations

import re

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
        ('data_dir = "d"\n[gossip]\ndegree = 100', r"GossipParams.degree .* \[1, 32\], got 100"),
        ('data_dir = "d"\n[gossip]\ndegree = 4.5', r"GossipParams.degree .* got 4.5"),
        ('data_dir = "d"\n[gossip]\nfoo = 1', r"\[gossip\]: unknown key 'foo'"),
        ('data_dir = "d"\nstatus_listen = "nowhere"', "host:port"),
        ('data_dir = "d"\nprice = true', r"NodeConfig.price must be an integer .* got True"),
        ('data_dir = "d"\ncapacity = 2.5', r"NodeConfig.capacity .* got 2.5"),
        ('data_dir = "d"\nepoch_s = 60', r"epoch_s is a network parameter.*bootstrap/dev.toml"),
        ('data_dir = "d"\nnetwork = "nowhere"\ntee_kind = "nitro"', "no network file"),
        ('data_dir = "d"\nnetwork_params = 1', "unknown configuration keys"),
        ('data_dir = "d"\ncheat = 1', "NodeConfig.cheat must be true or false"),
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


# -- the network's parameters ----------------------------------------------------------------


def test_a_dev_node_and_the_dev_network_file_agree_on_the_epoch(tmp_path):
    from repp2p.cli import devnet
    from repp2p.network_params import NetworkParams

    config = load_node_config(write(tmp_path, 'data_dir = "d"'))
    dev = NetworkParams.load("dev")
    assert config.network_params == dev and config.epoch_s == dev.epoch_s == devnet.EPOCH_S
    # Two heartbeats per epoch by default: views use the last, the other is a spare.
    assert config.heartbeat_interval_s == dev.epoch_s / 2
    # The devnet's node files name no epoch: its nodes read the network's.
    path = devnet._config(tmp_path / "n1", "n1", ["echo"])
    assert "epoch_s" not in path.read_text()
    assert load_node_config(path).epoch_s == devnet.EPOCH_S


def test_a_node_may_name_its_networks_file(tmp_path):
    (tmp_path / "main.toml").write_text(
        'peers = ["/ip4/192.0.2.1/tcp/4001/p2p/12D3KooWabc"]\nepoch_s = 120\n'
        'policy = "main-policy.toml"\n[matching]\nfailover_depth = 3\n'
    )
    (tmp_path / "main-policy.toml").write_text("")
    config = load_node_config(
        write(
            tmp_path,
            'data_dir = "d"\nnetwork = "main"\nnetwork_file = "main.toml"\ntee_kind = "nitro"',
        )
    )
    assert config.epoch_s == 120 and config.heartbeat_interval_s == 60.0
    assert config.network_params.name == "main"
    assert config.network_params.matching.failover_depth == 3
    assert config.policy_path() == tmp_path / "main-policy.toml"
    assert config.bootstrap_addrs() == ("/ip4/192.0.2.1/tcp/4001/p2p/12D3KooWabc",)


def test_network_params_given_in_code_must_be_the_networks(tmp_path):
    import dataclasses

    from repp2p.config import NodeConfig
    from repp2p.network_params import NetworkParams

    short = NetworkParams.load("dev").replace(epoch_s=5)
    config = NodeConfig(data_dir=tmp_path, network_params=short)
    assert config.epoch_s == 5 and config.network_params is short
    assert dataclasses.replace(config, bootstrap=("x",)).epoch_s == 5  # kept, not reloaded
    with pytest.raises(ConfigError, match="network_params are those of network 'other'"):
        NodeConfig(data_dir=tmp_path, network_params=short.replace(name="other"))
    with pytest.raises(ConfigError, match="must be a NetworkParams"):
        NodeConfig(data_dir=tmp_path, network_params={"epoch_s": 5})


def test_epoch_s_is_the_networks_and_read_only(tmp_path):
    from repp2p.config import NodeConfig
    from repp2p.network_params import NetworkParams

    config = NodeConfig(data_dir=tmp_path)
    assert config.epoch_s == NetworkParams.load("dev").epoch_s
    seven = NodeConfig(data_dir=tmp_path, network_params=config.network_params.replace(epoch_s=7))
    assert seven.epoch_s == 7
    with pytest.raises(TypeError):
        NodeConfig(data_dir=tmp_path, epoch_s=7)  # not a node setting
    with pytest.raises(AttributeError):
        config.epoch_s = 5  # a read-only view of the network's value


@pytest.mark.parametrize(
    "field, bad",
    [
        ("capacity", 2.5),
        ("capacity", True),
        ("price", -1),
        ("throughput", 1.0),
        ("heartbeat_interval_s", True),
        ("republish_interval_s", 0.5),
        ("task_delay_s", 601),
        ("enable_quic", 1),
        ("log_format", "xml"),
        ("role", "relay"),
        ("network", "Dev"),
    ],
)
def test_node_config_fields_are_strict(tmp_path, field, bad):
    from repp2p.config import NodeConfig

    message = rf"NodeConfig\.{field} must .* got {re.escape(repr(bad))}"
    with pytest.raises(ConfigError, match=message):
        NodeConfig(data_dir=tmp_path, **{field: bad})
