"""When the discovery loop refreshes the DHT routing table (repp2p.node.discovery)."""

from __future__ import annotations

import itertools

from repp2p.node.discovery import RefreshSchedule

LOW, INTERVAL, FIRST = 8, 300.0, 0.5


def _refresh_times(schedule: RefreshSchedule, tables: list[int], step: float) -> list[float]:
    """Run the loop every ``step`` seconds; the table holds ``tables[i]`` after the i-th
    refresh (the last value from then on). Returns when it refreshed."""
    out, now, i = [], 0.0, 0
    table = tables[0]
    while now <= 1800:
        if schedule.due(now, table):
            out.append(now)
            after = tables[min(i + 1, len(tables) - 1)]
            schedule.done(now, table, after)
            table, i = after, i + 1
        now += step
    return out


def test_a_joining_node_refreshes_every_round_while_it_finds_peers():
    schedule = RefreshSchedule(LOW, INTERVAL, FIRST)
    times = _refresh_times(schedule, [1, 3, 5, 7, 9, 10], step=15.0)
    # 1 -> 3 -> 5 -> 7 -> 9: every round while the table grows; at 9 >= LOW only the
    # interval is left
    assert times[:4] == [0.0, 15.0, 30.0, 45.0]
    assert times[4] - times[3] == INTERVAL


def test_on_a_network_smaller_than_the_watermark_the_refreshes_back_off():
    schedule = RefreshSchedule(LOW, INTERVAL, FIRST)
    times = _refresh_times(schedule, [4], step=15.0)  # a 4-node devnet: the table stays 4
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # every 15-s round at first (waits 0.5, 1, 2, 4, 8 s), then doubling to the interval
    assert gaps[:5] == [15.0] * 5 and gaps[5:9] == [30.0, 45.0, 75.0, 135.0]
    assert gaps[-1] == INTERVAL and gaps == sorted(gaps)
    # before: one refresh per 15-s round, 121 in these 30 minutes
    assert len(times) == 14


def test_a_shrinking_table_starts_the_back_off_over():
    schedule = RefreshSchedule(LOW, INTERVAL, FIRST)
    now = 0.0
    while schedule.wait_s < 64:  # backed off: 0.5, 1, 2, ..., 64 s
        assert schedule.due(now, 4)
        schedule.done(now, 4, 4)
        now += schedule.wait_s
    assert not schedule.due(now - 1, 4)
    assert schedule.due(now - 1, 3)  # a peer left: look for others at once
    schedule.done(now - 1, 3, 3)
    assert schedule.wait_s == FIRST


def test_a_healthy_table_refreshes_only_every_interval():
    schedule = RefreshSchedule(LOW, INTERVAL, FIRST)
    assert schedule.due(0.0, 20)
    schedule.done(0.0, 20, 20)
    assert not schedule.due(299.0, 20) and not schedule.due(299.0, 21)
    assert schedule.due(300.0, 20)
