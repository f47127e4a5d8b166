"""Parameters: one strict validation helper, one NetworkParams per network, one digest."""

from __future__ import annotations

import dataclasses
import hashlib
import re

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repp2p.errors import ConfigError, ReppError
from repp2p.ledger import LedgerParams
from repp2p.matching import MatchingParams
from repp2p.net.params import ConnectionParams, FeedParams, GossipParams, SyncParams
from repp2p.network_params import BOOTSTRAP_DIR, NetworkParams
from repp2p.params_check import check_bool, check_choice, check_float, check_int, check_keys
from repp2p.reputation import ReputationParams
from repp2p.testing.network import dev_params

PARAM_CLASSES = [
    GossipParams,
    SyncParams,
    FeedParams,
    ConnectionParams,
    MatchingParams,
    ReputationParams,
    LedgerParams,
]


def _fields(cls, kind):
    """(name, default) of the fields of ``cls`` whose default is of exactly ``kind``."""
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if type(default) is kind:
            out.append((cls, f.name, default))
    return out


INT_FIELDS = [x for cls in PARAM_CLASSES for x in _fields(cls, int)]
FLOAT_FIELDS = [x for cls in PARAM_CLASSES for x in _fields(cls, float)]
BOOL_FIELDS = [x for cls in PARAM_CLASSES for x in _fields(cls, bool)]


def _id(x):
    return f"{x[0].__name__}.{x[1]}"


# -- the helper ----------------------------------------------------------------------------


def test_check_int_refuses_floats_bools_and_out_of_range_with_a_clear_message():
    assert check_int("C", "n", 5, 1, 10) == 5
    for bad in (4.5, 5.0, True, "5", None, 0, 11):
        with pytest.raises(ConfigError) as info:
            check_int("C", "n", bad, 1, 10)
        assert str(info.value) == f"C.n must be an integer in [1, 10], got {bad!r}"
    assert issubclass(ConfigError, ReppError)


def test_check_float_takes_ints_as_floats_and_refuses_bools_and_non_finite():
    value = check_float("C", "x", 3, 0.0, 10.0)
    assert value == 3.0 and type(value) is float
    # -0.0 == 0.0 but encodes differently: stored as 0.0, so equal params share a digest.
    assert str(check_float("C", "x", -0.0, 0.0, 10.0)) == "0.0"
    assert NetworkParams("a", reputation=ReputationParams(w_uptime=-0.0)).digest() == (
        NetworkParams("a", reputation=ReputationParams(w_uptime=0.0)).digest()
    )
    for bad in (True, float("nan"), float("inf"), -0.5, 10.5, "1"):
        with pytest.raises(ConfigError, match=r"C\.x must be a number in \[0\.0, 10\.0\], got"):
            check_float("C", "x", bad, 0.0, 10.0)


def test_check_bool_choice_and_keys():
    assert check_bool("C", "b", False) is False
    for bad in (0, 1, "true", None):
        with pytest.raises(ConfigError, match=r"C\.b must be true or false"):
            check_bool("C", "b", bad)
    assert check_choice("C", "c", "json", ("text", "json")) == "json"
    with pytest.raises(ConfigError, match=r"C\.c must be one of \['json', 'text'\], got 'xml'"):
        check_choice("C", "c", "xml", ("text", "json"))
    with pytest.raises(ConfigError, match="must be one of"):
        check_choice("C", "c", True, (1, 2))  # True == 1, but it is not an int here
    check_keys("f.toml [s]", {"a": 1}, ["a", "b"])
    with pytest.raises(ConfigError, match=r"f\.toml \[s\]: unknown key 'z'"):
        check_keys("f.toml [s]", {"a": 1, "z": 2}, ["a", "b"])
    with pytest.raises(ConfigError, match="must be a table"):
        check_keys("f.toml [s]", [1], ["a"])


# -- every params class --------------------------------------------------------------------


@pytest.mark.parametrize("cls, name, default", INT_FIELDS, ids=map(_id, INT_FIELDS))
def test_integer_fields_refuse_floats_and_bools(cls, name, default):
    for bad in (default + 0.5, float(default), True):
        with pytest.raises(ConfigError, match=rf"{cls.__name__}\.{name} must be an integer in"):
            cls(**{name: bad})


@pytest.mark.parametrize("cls, name, default", FLOAT_FIELDS, ids=map(_id, FLOAT_FIELDS))
def test_float_fields_refuse_bools_and_store_ints_as_floats(cls, name, default):
    with pytest.raises(ConfigError, match=rf"{cls.__name__}\.{name} must be a number in"):
        cls(**{name: True})
    if default.is_integer():
        built = getattr(cls(**{name: int(default)}), name)
        assert built == default and type(built) is float


@pytest.mark.parametrize("cls, name, default", BOOL_FIELDS, ids=map(_id, BOOL_FIELDS))
def test_bool_fields_refuse_numbers(cls, name, default):
    with pytest.raises(ConfigError, match=rf"{cls.__name__}\.{name} must be true or false"):
        cls(**{name: int(default)})


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: GossipParams(degree=4.5), r"GossipParams\.degree .* \[1, 32\], got 4\.5"),
        (lambda: GossipParams(degree=33), r"GossipParams\.degree .* got 33"),
        (lambda: GossipParams(degree=6, degree_low=7), r"degree_low .* \[1, 6\], got 7"),
        (lambda: SyncParams(page_bytes=10), r"SyncParams\.page_bytes"),
        (lambda: FeedParams(interval_s=0.01), r"FeedParams\.interval_s .* got 0\.01"),
        (lambda: ConnectionParams(high_watermark=4), r"high_watermark .* \[8, 2000\], got 4"),
        (lambda: MatchingParams(failover_depth=240), r"MatchingParams\.failover_depth"),
        (lambda: ReputationParams(trust_alpha=1.0), r"ReputationParams\.trust_alpha"),
        (lambda: LedgerParams(grace_epochs=-1), r"LedgerParams\.grace_epochs .* got -1"),
    ],
)
def test_out_of_range_values_are_refused_naming_class_field_bounds_and_value(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


# -- NetworkParams -------------------------------------------------------------------------


def test_dev_network_file_gives_the_devnets_epoch():
    from repp2p.cli.devnet import EPOCH_S

    dev = NetworkParams.load("dev")
    assert dev.name == "dev" and dev.epoch_s == EPOCH_S == 10
    assert dev.policy_file == "policy-dev.toml" and (BOOTSTRAP_DIR / dev.policy_file).exists()
    assert (dev.task_record_lag, dev.heartbeat_lag) == (2, 1)
    # Live networks score nodes from digests unless their file says "records" (issue 14).
    assert dev.reputation_source == NetworkParams("x").reputation_source == "digests"
    # No section in the file: the classes' defaults.
    assert (dev.matching, dev.reputation, dev.ledger) == (
        MatchingParams(),
        ReputationParams(),
        LedgerParams(),
    )


def test_the_defaults_documented_in_dev_toml_are_the_real_ones():
    import tomllib

    text = (BOOTSTRAP_DIR / "dev.toml").read_text()
    # Uncomment every "# key = value" line: the file then spells out every default.
    spelled = re.sub(r"(?m)^# (\w+ = )", r"\1", text)
    data = tomllib.loads(spelled)
    assert set(data["matching"]) == {f.name for f in dataclasses.fields(MatchingParams)}
    assert set(data["reputation"]) == {f.name for f in dataclasses.fields(ReputationParams)}
    assert set(data["ledger"]) == {f.name for f in dataclasses.fields(LedgerParams)}
    assert NetworkParams.from_dict("dev", data) == NetworkParams.load("dev")


def _network_file(tmp_path, text, name="net"):
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def test_a_network_file_sets_every_parameter(tmp_path):
    path = _network_file(
        tmp_path,
        """
peers = ["/ip4/127.0.0.1/tcp/1/p2p/12D3KooWabc"]
epoch_s = 30
policy = "policy-production.toml"
task_record_lag = 3
heartbeat_lag = 2
[matching]
failover_depth = 4
[reputation]
w_success = 10
[ledger]
grace_epochs = 0
""",
    )
    p = NetworkParams.load("net", path)
    assert (p.epoch_s, p.policy_file, p.task_record_lag, p.heartbeat_lag) == (
        30,
        "policy-production.toml",
        3,
        2,
    )
    assert p.matching.failover_depth == 4 and p.ledger.grace_epochs == 0
    assert p.reputation.w_success == 10.0 and type(p.reputation.w_success) is float


@pytest.mark.parametrize(
    "text, message",
    [
        ("epoch = 10", r"net\.toml: unknown key 'epoch'"),
        ("[matching]\nclaim_timeout = 1", r"net\.toml \[matching\]: unknown key 'claim_timeout'"),
        ("[ledger]\nfoo = 1", r"net\.toml \[ledger\]: unknown key 'foo'"),
        ("matching = 3", r"net\.toml \[matching\] must be a table"),
        ("epoch_s = 60.5", r"net\.toml: NetworkParams\.epoch_s .* got 60\.5"),
        ("epoch_s = true", r"net\.toml: NetworkParams\.epoch_s .* got True"),
        ("epoch_s = 0", r"net\.toml: NetworkParams\.epoch_s .* \[1, 86400\], got 0"),
        ("[reputation]\nwindow_epochs = 0", r"net\.toml: ReputationParams\.window_epochs"),
        ('policy = "../secret.toml"', r"NetworkParams\.policy must match"),
        ("heartbeat_lag = 3", r"heartbeat_lag=3 exceeds matching\.heartbeat_max_age_epochs=2"),
        ("name = 'x'", r"unknown key 'name'"),
        ("epoch_s = [", "not valid TOML"),
    ],
)
def test_network_files_are_strict_and_errors_name_the_file_and_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        NetworkParams.load("net", _network_file(tmp_path, text))


def test_a_missing_network_file_or_a_bad_name_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="no network file"):
        NetworkParams.load("nowhere")
    with pytest.raises(ConfigError, match=r"NetworkParams\.name must match"):
        NetworkParams.load("../bootstrap/dev")  # never read as a path
    with pytest.raises(ConfigError, match=r"NetworkParams\.name"):
        NetworkParams("Dev Net")
    with pytest.raises(ConfigError, match=r"NetworkParams\.matching must be a MatchingParams"):
        NetworkParams("x", matching={"failover_depth": 1})


def test_digest_is_sha256_of_canonical_cbor_of_every_field():
    p = dev_params()  # a heartbeat every epoch: heartbeat_lag = 2 below is valid
    plain = p.to_dict()
    assert set(plain) == {f.name for f in dataclasses.fields(NetworkParams)}
    assert plain["matching"] == dataclasses.asdict(p.matching)
    assert p.digest() == hashlib.sha256(cbor2.dumps(plain, canonical=True)).digest()
    assert len(p.digest()) == 32
    # Every top-level field is in it.
    variants = [
        p.replace(name="dev2"),
        p.replace(epoch_s=11),
        p.replace(policy="other.toml"),
        p.replace(task_record_lag=3),
        p.replace(heartbeat_lag=2),
        p.replace(matching=MatchingParams(capacity_cap=65)),
        p.replace(reputation=ReputationParams(wrong_quorum=3)),
        p.replace(ledger=LedgerParams(feedback_needs_trust=False)),
    ]
    assert len({v.digest() for v in [p, *variants]}) == len(variants) + 1


def test_replace_validates_again_and_leaves_the_original():
    dev = NetworkParams.load("dev")
    short = dev.replace(epoch_s=5)
    assert short.epoch_s == 5 and dev.epoch_s == 10 and short.matching is dev.matching
    with pytest.raises(ConfigError, match="epoch_s"):
        dev.replace(epoch_s=2.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        dev.epoch_s = 5  # type: ignore[misc]


# -- property: valid values round-trip -----------------------------------------------------

_matching = st.builds(
    MatchingParams,
    claim_timeout_ms=st.integers(1, 600_000),
    failover_depth=st.integers(0, 239),
    exploration_permille=st.integers(0, 500),
    reputation_exponent=st.integers(0, 3),
    capacity_cap=st.integers(1, 65535),
    heartbeat_max_age_epochs=st.integers(2, 1000),
)
_unit = st.floats(0.0, 1.0, allow_nan=False) | st.integers(0, 1)
_reputation = st.builds(
    ReputationParams,
    w_uptime=st.floats(0.0, 100.0) | st.integers(0, 100),
    w_success=st.floats(0.5, 100.0),
    half_life_epochs=st.floats(0.5, 100_000.0),
    prior_uptime=_unit,
    trust_alpha=st.floats(1e-6, 1.0 - 1e-6),
    window_epochs=st.integers(1, 100_000),
    wrong_quorum=st.integers(2, 16),
)
_ledger = st.builds(
    LedgerParams,
    emission_micro=st.integers(0, 2**53),
    grace_epochs=st.integers(0, 1000),
    feedback_needs_trust=st.booleans(),
    offence_slash_pct=st.integers(0, 100),
)
_network = st.builds(
    NetworkParams,
    name=st.from_regex(r"[a-z0-9][a-z0-9-]{0,31}", fullmatch=True),
    epoch_s=st.integers(1, 86_400),
    policy=st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True) | st.just(""),
    task_record_lag=st.integers(1, 100),
    heartbeat_lag=st.integers(1, 2),
    matching=_matching,
    reputation=_reputation,
    ledger=_ledger,
)


def _toml(data: dict) -> str:
    """A minimal TOML writer for the plain form (scalars and one level of tables)."""

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        return repr(v) if not isinstance(v, str) else f'"{v}"'

    top = [f"{k} = {value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for k, v in data.items():
        if isinstance(v, dict):
            top.append(f"[{k}]")
            top += [f"{kk} = {value(vv)}" for kk, vv in v.items()]
    return "\n".join(top) + "\n"


@settings(max_examples=60, deadline=None)
@given(_network)
def test_valid_network_params_round_trip_through_their_plain_form_and_a_file(p):
    plain = p.to_dict()
    name = plain.pop("name")
    again = NetworkParams.from_dict(name, plain)
    assert again == p and again.digest() == p.digest()
    import tomllib

    from_file = NetworkParams.from_dict(name, tomllib.loads(_toml(plain)))
    assert from_file == p and from_file.digest() == p.digest()


@settings(max_examples=60, deadline=None)
@given(
    degree=st.integers(1, 32),
    data=st.data(),
    interval=st.floats(0.05, 60) | st.integers(1, 60),
)
def test_valid_network_layer_params_are_accepted_as_given(degree, data, interval):
    low = data.draw(st.integers(1, degree))
    high = data.draw(st.integers(degree, 64))
    g = GossipParams(degree=degree, degree_low=low, degree_high=high)
    assert (g.degree, g.degree_low, g.degree_high) == (degree, low, high)
    assert dataclasses.replace(g) == g
    f = FeedParams(interval_s=interval, idle_interval_s=600)
    assert f.interval_s == interval and type(f.interval_s) is float
