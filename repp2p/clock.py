"""Time for the live layer: one ``Clock`` interface, a wall clock, and a trio-driven clock.

The pure core never reads the clock; it takes ``now`` as an argument. The live layer (node
parts, task server, client) reads and waits on time only through a :class:`ClockAPI`, so
tests of failover and epochs can run on trio's virtual time
(``trio.testing.MockClock(autojump_threshold=0)``) with a :class:`TrioClock` instead of
sleeping on the wall clock.

Rules: ``now()`` is unix seconds (float) as the network sees it: records carry it, epochs
are ``int(now()) // epoch_s``. ``sleep_until(t)`` returns once ``now() >= t`` (at once when
``t`` is past).
"""

from __future__ import annotations

import abc
import time

import trio


class ClockAPI(abc.ABC):
    """Unix time, and waiting for it."""

    @abc.abstractmethod
    def now(self) -> float:
        """Unix seconds (float)."""

    @abc.abstractmethod
    async def sleep_until(self, when: float) -> None:
        """Return once ``now() >= when``; at once when it already is."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time (none when ``seconds <= 0``)."""
        await self.sleep_until(self.now() + max(0.0, seconds))

    def epoch(self, epoch_s: int) -> int:
        """The current epoch for epochs of ``epoch_s`` seconds."""
        return int(self.now()) // epoch_s


class SystemClock(ClockAPI):
    """The wall clock (``time.time``); waits with trio, re-checking after each wake-up so a
    wall-clock step (NTP) cannot end a wait early."""

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, when: float) -> None:
        while (left := when - time.time()) > 0:
            await trio.sleep(left)


class TrioClock(ClockAPI):
    """Unix time that runs on trio's clock: ``start + trio.current_time()``.

    Under ``trio.testing.MockClock`` this clock is virtual: waits end as soon as every task
    is blocked (autojump), so a test of a 30 s failover takes milliseconds. Create it inside
    the trio run it serves.

    Args:
        start: unix seconds that trio time 0 maps to (default: now on the wall clock minus
            the current trio time, i.e. the two clocks agree at creation).
    """

    def __init__(self, start: float | None = None) -> None:
        self._offset = time.time() - trio.current_time() if start is None else start

    def now(self) -> float:
        return self._offset + trio.current_time()

    async def sleep_until(self, when: float) -> None:
        await trio.sleep_until(max(when - self._offset, trio.current_time()))


def as_clock(clock: ClockAPI | None) -> ClockAPI:
    """``clock``, or the wall clock when None."""
    return clock if clock is not None else SystemClock()
