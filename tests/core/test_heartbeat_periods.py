"""Heartbeat periods (issue 14): nodes heartbeat once every ``H`` epochs at a slot of their
own; uptime and eligibility treat a node on that schedule as a node heartbeating every
epoch, and ``H = 1`` is the rule before periods existed, bit for bit."""

from __future__ import annotations

import collections

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repp2p.errors import ConfigError
from repp2p.matching import MatchingParams, View
from repp2p.network_params import NetworkParams
from repp2p.reputation import ReputationParams, collect, compute
from repp2p.reputation.detmath import decay_table_fixed
from repp2p.reputation.heartbeats import covered_weights, heartbeat_slot, is_heartbeat_epoch
from tests.core import factories as f
from tests.core.conftest import EPOCHS

NOW = EPOCHS * f.EPOCH_S


def _table(records, attested, params):
    return compute(collect(records, attested, now=NOW), now=NOW, epoch_s=f.EPOCH_S, params=params)


def _old_hits(node, epoch_col, n, epoch, w, decay):
    """The uptime numerator before heartbeat periods (one heartbeat covers its epoch)."""
    age = (epoch - 1) - epoch_col
    ok = (age >= 0) & (age <= w - 1)
    hb_d = np.where(ok, decay[np.clip(age, 0, w)], 0)
    return np.bincount(node, weights=hb_d.astype(np.float64), minlength=n)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.sets(st.tuples(st.integers(0, 5), st.integers(-20, 60)), max_size=80),
    epoch=st.integers(0, 50),
    window=st.integers(1, 40),
)
def test_a_period_of_one_is_the_old_rule_bit_for_bit(rows, epoch, window):
    ordered = sorted(rows)
    node = np.array([r[0] for r in ordered], np.int64)
    col = np.array([r[1] for r in ordered], np.int64)
    decay = decay_table_fixed(12.0, window + 1, 16)
    new = covered_weights(
        node, col, n_peers=6, epoch=epoch, window=window, period_epochs=1, decay=decay
    )
    old = _old_hits(node, col, 6, epoch, window, decay)
    assert new.astype(np.float64).tobytes() == old.tobytes()


@settings(max_examples=40, deadline=None)
@given(
    beats=st.sets(st.integers(0, 60), max_size=40),
    period=st.integers(1, 12),
    epoch=st.integers(1, 70),
    window=st.integers(1, 40),
)
def test_each_epoch_counts_once_however_many_heartbeats_cover_it(beats, period, epoch, window):
    decay = decay_table_fixed(12.0, window + 1, 16)
    col = np.array(sorted(beats), np.int64)
    got = covered_weights(
        np.zeros(len(col), np.int64),
        col,
        n_peers=1,
        epoch=epoch,
        window=window,
        period_epochs=period,
        decay=decay,
    )[0]
    covered = {e + i for e in beats for i in range(period)}
    ages = [epoch - 1 - e for e in covered if 0 <= epoch - 1 - e <= window - 1]
    assert got == sum(int(decay[a]) for a in ages)


def test_slots_are_fixed_by_the_peer_id_and_spread_evenly():
    peers = [f.peer(f"node-{i}") for i in range(1000)]
    slots = [heartbeat_slot(p, 10) for p in peers]
    assert slots == [heartbeat_slot(p, 10) for p in peers]
    counts = collections.Counter(slots)
    assert set(counts) == set(range(10))
    assert max(counts.values()) < 150 and min(counts.values()) > 50  # 100 expected each
    assert {heartbeat_slot(p, 1) for p in peers} == {0}
    with pytest.raises(ValueError):
        heartbeat_slot(peers[0], 0)
    due = [e for e in range(30) if is_heartbeat_epoch(e, 7, 10)]
    assert due == [7, 17, 27]


def _params(period: int, max_age: int) -> NetworkParams:
    return NetworkParams(
        "test",
        epoch_s=f.EPOCH_S,
        reputation=ReputationParams(heartbeat_period_epochs=period),
        matching=MatchingParams(heartbeat_max_age_epochs=max_age),
    )


def test_the_maximum_age_must_cover_a_period():
    with pytest.raises(ConfigError, match="heartbeat_period_epochs=4"):
        _params(4, 3)  # heartbeat_lag 1 + 4 - 1 = 4 > 3
    assert _params(4, 4).reputation.heartbeat_period_epochs == 4
    for bad in (0, 1001):
        with pytest.raises(ConfigError, match="heartbeat_period_epochs"):
            ReputationParams(heartbeat_period_epochs=bad)
    with pytest.raises(ConfigError, match="heartbeat_period_epochs"):
        ReputationParams(window_epochs=5, heartbeat_period_epochs=6)
    # a new parameter: part of the view digest like every other
    assert _params(4, 5).digest() != _params(1, 5).digest()


def _scheduled(s, name: str, period: int, epochs) -> None:
    slot = heartbeat_slot(f.peer(name), period)
    s.heartbeats(name, [e for e in epochs if is_heartbeat_epoch(e, slot, period)])


def test_a_node_on_schedule_has_the_uptime_of_one_heartbeating_every_epoch():
    period = 5
    s = f.Scenario()
    s.add_node("on-schedule")
    _scheduled(s, "on-schedule", period, range(EPOCHS))
    first = heartbeat_slot(f.peer("on-schedule"), period)  # where it is first seen
    s.add_node("every-epoch")
    s.heartbeats("every-epoch", range(first, EPOCHS))
    s.add_node("half-schedule")  # skips every other due heartbeat
    slot = heartbeat_slot(f.peer("half-schedule"), period)
    due = [e for e in range(EPOCHS) if is_heartbeat_epoch(e, slot, period)]
    s.heartbeats("half-schedule", due[::2])
    params = ReputationParams(heartbeat_period_epochs=period)
    t = _table(s.records, s.attested, params)
    every = t.get(f.peer("every-epoch")).uptime
    # seen first in the same epoch, both are up in every epoch since
    assert t.get(f.peer("on-schedule")).uptime == pytest.approx(every, abs=1e-12)
    assert t.get(f.peer("half-schedule")).uptime < every - 0.2
    # heartbeating more often than the schedule earns nothing more than it did with H = 1
    old = _table(s.records, s.attested, ReputationParams())
    assert every == old.get(f.peer("every-epoch")).uptime
    # with H = 1, the scheduled node's epochs without a heartbeat count against it
    assert old.get(f.peer("on-schedule")).uptime < every - 0.3


def test_a_node_on_schedule_is_eligible_in_every_view():
    period = 6
    s = f.Scenario()
    for i in range(8):
        s.add_node(f"n-{i}")
        _scheduled(s, f"n-{i}", period, range(EPOCHS))
    good = _params(period, period)  # heartbeat_lag + period - 1 = 6
    for epoch in range(period + 1, EPOCHS):
        view = View.build(s.records, s.attested, epoch=epoch, params=good)
        assert view.base_eligible.all(), epoch
    # the old maximum age (2) leaves them offline between heartbeats (and is refused)
    with pytest.raises(ConfigError):
        _params(period, 2)
    # a node that stops heartbeating drops out once its last heartbeat is too old
    s.add_node("gone")
    s.heartbeats("gone", [0])
    view = View.build(s.records, s.attested, epoch=EPOCHS - 1, params=good)
    gone = list(view.peers).index(f.peer("gone"))
    assert not view.base_eligible[gone]
