"""Every timing literal of the live layer, in one frozen structure.

The network-wide clock settings (epoch length, record lags) are :class:`NetworkParams`;
these are a peer's own patience: how often its loops look at the world and how long it
waits on others. Defaults are what a node runs with; tests shorten them through
``NodeConfig.timers`` instead of patching module constants. Each value is in seconds.
"""

from __future__ import annotations

import dataclasses

from repp2p.params_check import float_field


@dataclasses.dataclass(frozen=True)
class Timers:
    """Timeouts and loop periods of the node, the task server and the client (seconds).

    Every field is a number of seconds; "(0, x]" below means at least 1 ms.

    Attributes:
        tick_s: period of the node's polling loops (views, attestation schedule, DHT
            routing-table pruning), (0, 60].
        dial_timeout_s: one outbound connection attempt, (0, 120].
        dht_op_timeout_s: one DHT provide, put or routing-table refresh, (0, 300].
        refresh_interval_s: forced routing-table refresh once the table is healthy
            (the DHT also refreshes itself), [1, 86400].
        discovery_max_delay_s: the discovery loop backs off from 0.5 s to this, [0.5, 3600].
        shutdown_grace_s: closing connections on shutdown, (0, 60].
        task_idle_s: the node closes a task stream with no request started for this long,
            (0, 3600].
        task_request_s: once begun, a task request must arrive whole within this, (0, 600].
        task_reply_s: writing one task response, (0, 600].
        attempt_budget_s: what one node gets, after its failover turn opens, to return a
            verified result (the client then tries the next rank), (0, 3600].
        handover_s: a node gets this long to take a task's feedback (background), (0, 600].
        handover_delay_s: a client holds a node's feedback this long before handing it
            over, so that a busy client sends the feedback of many tasks in one request
            (0: at once), [0, 60]. Closing the client hands over what waits at once.
        lookup_poll_s: how often ``Client.wait_for_nodes`` re-checks the view, (0, 60].
        unreachable_s: a client skips a node it failed to connect to (within
            ``dial_timeout_s``) for this long, unless the node publishes a newer ad,
            (0, 3600].
        store_recover_s: a degraded node (its record store failed to write) counts as
            recovered once no write has failed for this long, (0, 3600]. On a nearly full
            disk small writes succeed between failing ones; this keeps ``/health`` from
            flapping.
    """

    tick_s: float = 0.5
    dial_timeout_s: float = 5.0
    dht_op_timeout_s: float = 10.0
    refresh_interval_s: float = 300.0
    discovery_max_delay_s: float = 15.0
    shutdown_grace_s: float = 5.0
    task_idle_s: float = 60.0
    task_request_s: float = 10.0
    task_reply_s: float = 10.0
    attempt_budget_s: float = 30.0
    handover_s: float = 10.0
    handover_delay_s: float = 0.5
    lookup_poll_s: float = 0.5
    unreachable_s: float = 30.0
    store_recover_s: float = 30.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            low, high = _BOUNDS[field.name]
            float_field(self, field.name, low, high)


#: (low, high) per field, as documented on :class:`Timers` ("(0, x]" is written 1 ms)
_BOUNDS = {
    "tick_s": (0.001, 60.0),
    "dial_timeout_s": (0.001, 120.0),
    "dht_op_timeout_s": (0.001, 300.0),
    "refresh_interval_s": (1.0, 86400.0),
    "discovery_max_delay_s": (0.5, 3600.0),
    "shutdown_grace_s": (0.001, 60.0),
    "task_idle_s": (0.001, 3600.0),
    "store_recover_s": (0.001, 3600.0),
    "unreachable_s": (0.001, 3600.0),
    "task_request_s": (0.001, 600.0),
    "task_reply_s": (0.001, 600.0),
    "attempt_budget_s": (0.001, 3600.0),
    "handover_s": (0.001, 600.0),
    "handover_delay_s": (0.0, 60.0),
    "lookup_poll_s": (0.001, 60.0),
}
