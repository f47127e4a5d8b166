"""When a full node's own records go out: heartbeats and ad republication.

Each node publishes at a fixed phase of every interval, derived from its peer ID, so the
nodes of a network spread over the epoch instead of all publishing at the same instant.
With the network's ``reputation.heartbeat_period_epochs = H > 1`` a node heartbeats only
in the epochs of its slot (one in ``H``, :func:`repp2p.reputation.heartbeats.heartbeat_slot`),
so the nodes of a network also spread over the epochs; it heartbeats once at start
whatever its slot (a restarted node is seen at once).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from collections.abc import Awaitable, Callable

from repp2p.clock import ClockAPI
from repp2p.errors import ReppError
from repp2p.node.abc import RecordPublisherAPI, TaskLoadAPI
from repp2p.node.publisher import capped_lifetime
from repp2p.records import Heartbeat, NodeAd, Record

log = logging.getLogger("repp2p.node")

#: the phase window: clear of the first 15% of an interval (every peer builds its view
#: then) and the last 15% (a heartbeat must reach every peer before the boundary whose
#: view counts it)
PHASE_START, PHASE_SPAN = 0.15, 0.7


def phase_of(peer_id: str) -> float:
    """A node's fixed phase in [0.15, 0.85): when, as a fraction of an interval, its
    heartbeats and re-attestations go out."""
    digest = hashlib.sha256(b"repp2p/1/phase\0" + peer_id.encode()).digest()
    return PHASE_START + PHASE_SPAN * int.from_bytes(digest[:2], "big") / 65536


def next_phase_time(now: float, interval: float, phase: float) -> float:
    """The first time after ``now`` that is ``phase`` of the way into an interval."""
    t = (math.floor(now / interval - phase) + 1 + phase) * interval
    # rounding (now / interval - phase one ulp under an integer) may give back ``now``
    # itself when ``now`` is a phase time: the caller would publish twice
    return t + interval if t <= now else t


def heartbeat_lifetime_epochs(period_epochs: int = 1, lag: int = 1) -> int:
    """Epochs a heartbeat lives (its ``expires``): ``period_epochs + lag + 1``, 3 by default.

    A heartbeat of epoch ``h`` must still be held when the view of ``h + period + lag`` is
    built (its successor, of ``h + period``, counts only from that view on): a store purges
    expired records, and a heartbeat gone before its successor counts would leave the node
    offline for the rest of the period.
    """
    return period_epochs + lag + 1


def next_heartbeat_time(
    now: float,
    interval: float,
    phase: float,
    *,
    epoch_s: float,
    period_epochs: int = 1,
    slot: int = 0,
) -> float:
    """The node's next heartbeat after ``now``: the first time ``phase`` of the way into an
    interval that falls in one of its epochs (``(epoch - slot) % period_epochs == 0``).

    With ``period_epochs = 1`` every phase time qualifies (:func:`next_phase_time`). An
    interval that never lands in a due epoch (longer than ``period_epochs`` epochs and a
    multiple of it) gets the next phase time anyway: a heartbeat that comes late is better
    than none.
    """
    first = t = next_phase_time(now, interval, phase)
    for _ in range(period_epochs + 2):  # each step jumps to a due epoch's first phase time
        epoch = math.floor(t / epoch_s)
        wait = (slot - epoch) % period_epochs
        if wait == 0:
            return t
        t = next_phase_time((epoch + wait) * epoch_s, interval, phase)
    return first


class OwnRecordSchedule:
    """Publishes the node's heartbeats (at its phase) and its ad (every republish period).

    Args:
        publisher: signs, stores and spreads the records.
        load: the task server's load, reported in heartbeats.
        make_ad: builds the node's current NodeAd (addresses and engines change).
        clock: the node's clock.
        epoch_s: epoch length; heartbeat_interval_s, republish_interval_s: periods.
        phase: the node's phase (:func:`phase_of`).
        heartbeat_period_epochs: the network's ``reputation.heartbeat_period_epochs``.
        heartbeat_slot: the node's slot
            (:func:`repp2p.reputation.heartbeats.heartbeat_slot`).
        heartbeat_lag: the network's ``heartbeat_lag`` (how long a heartbeat must live:
            :func:`heartbeat_lifetime_epochs`).
        sign_liveness: ``epoch -> enclave_sig``: the node's enclave signs each heartbeat
            (:meth:`repp2p.node.enclave.EnclaveSupervisor.sign_liveness`); when it fails
            (the enclave died) the heartbeat goes out unsigned and proves no liveness.
            None: unsigned heartbeats (tools, tests).
    """

    def __init__(
        self,
        publisher: RecordPublisherAPI,
        load: TaskLoadAPI,
        make_ad: Callable[[], NodeAd],
        clock: ClockAPI,
        *,
        epoch_s: int,
        heartbeat_interval_s: float,
        republish_interval_s: float,
        phase: float,
        heartbeat_period_epochs: int = 1,
        heartbeat_slot: int = 0,
        heartbeat_lag: int = 1,
        sign_liveness: Callable[[int], Awaitable[bytes]] | None = None,
    ) -> None:
        self._sign_liveness = sign_liveness
        self._publisher = publisher
        self._load = load
        self._make_ad = make_ad
        self._clock = clock
        self._epoch_s = epoch_s
        self._heartbeat_interval_s = heartbeat_interval_s
        self._republish_interval_s = republish_interval_s
        self._phase = phase
        self._period_epochs = heartbeat_period_epochs
        self._slot = heartbeat_slot
        self._lag = heartbeat_lag

    def heartbeat(self) -> Heartbeat:
        """The node's heartbeat now. It lives ``heartbeat_lifetime_epochs`` epochs: until
        its successor is in every view, not only until the next epoch."""
        now = int(self._clock.now())
        lifetime = heartbeat_lifetime_epochs(self._period_epochs, self._lag) * self._epoch_s
        return Heartbeat(
            epoch=now // self._epoch_s,
            load=self._load.active,
            tasks_done=self._load.done,
            seq=self._publisher.next_seq(),
            expires=now + capped_lifetime(Heartbeat.TYPE, lifetime),
        )

    async def signed_heartbeat(self) -> Heartbeat:
        """The node's heartbeat now, with its enclave's liveness signature when it has one."""
        heartbeat = self.heartbeat()
        if self._sign_liveness is None:
            return heartbeat
        try:
            sig = await self._sign_liveness(heartbeat.epoch)
        except Exception as exc:  # EnclaveError: the enclave died; re-attestation follows
            log.warning("enclave did not sign the heartbeat of epoch %d: %s", heartbeat.epoch, exc)
            return heartbeat
        return dataclasses.replace(heartbeat, enclave_sig=sig)

    async def _publish_heartbeat(self) -> None:
        heartbeat = await self.signed_heartbeat()
        await self._publish(lambda: heartbeat)

    async def run_heartbeats(self) -> None:
        """One heartbeat now, then one at the node's phase of every interval of its
        heartbeat epochs (every epoch unless the network's period is longer)."""
        interval = self._heartbeat_interval_s
        await self._publish_heartbeat()
        while True:
            # At a fixed phase of each interval: with an interval that divides the epoch,
            # every due epoch gets the same number of heartbeats and the last one travels
            # well before the boundary (views take an epoch's last one). No drift, so an
            # interval equal to the epoch still never leaves a due epoch without one.
            at = next_heartbeat_time(
                self._clock.now(),
                interval,
                self._phase,
                epoch_s=self._epoch_s,
                period_epochs=self._period_epochs,
                slot=self._slot,
            )
            await self._clock.sleep_until(at)
            await self._publish_heartbeat()

    async def run_ads(self) -> None:
        """The node's ad now, then every republish interval."""
        while True:
            await self._publish(self._make_ad)
            await self._clock.sleep(self._republish_interval_s)

    async def _publish(self, make: Callable[[], Record]) -> None:
        """Publish one of our records; a refusal (our store failing: a full disk, say) is
        logged and the schedule goes on, so the node recovers when the store does."""
        try:
            await self._publisher.publish(make())
        except ReppError as exc:
            log.error("could not publish our own record (will retry on schedule): %s", exc)
