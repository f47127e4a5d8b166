"""The discrete-event kernel: a virtual clock and its own event heap (no trio, no sockets).

Rules of this file: time is an integer count of virtual milliseconds; events fire in
``(time, sequence)`` order, the sequence being the order they were scheduled, so a run is a
pure function of what was scheduled (and of the seeded generators the handlers use). The
kernel never reads the wall clock; progress reporting belongs to the caller.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any


class Kernel:
    """A virtual clock and an event heap.

    Attributes:
        now_ms: the virtual time of the event being handled (starts at ``start_ms``).
        events: how many events have been handled.
    """

    def __init__(self, start_ms: int = 0) -> None:
        self.now_ms = start_ms
        self.events = 0
        self._heap: list[tuple[int, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = 0

    def schedule(self, at_ms: int, handler: Callable[..., Any], *args: Any) -> None:
        """Call ``handler(*args)`` at virtual time ``at_ms`` (not before ``now_ms``).

        Raises:
            ValueError: ``at_ms`` is in the past.
        """
        if at_ms < self.now_ms:
            raise ValueError(f"cannot schedule at {at_ms} ms, before now ({self.now_ms} ms)")
        heapq.heappush(self._heap, (int(at_ms), self._seq, handler, args))
        self._seq += 1

    def after(self, delay_ms: int, handler: Callable[..., Any], *args: Any) -> None:
        """Call ``handler(*args)`` ``delay_ms`` after now."""
        self.schedule(self.now_ms + int(delay_ms), handler, *args)

    @property
    def pending(self) -> int:
        return len(self._heap)

    def run(self, until_ms: int | None = None) -> int:
        """Handle events in order until the heap is empty or the next one is past
        ``until_ms``; returns the number handled by this call."""
        handled = 0
        heap = self._heap
        while heap and (until_ms is None or heap[0][0] <= until_ms):
            at, _seq, handler, args = heapq.heappop(heap)
            self.now_ms = at
            handler(*args)
            handled += 1
        self.events += handled
        if until_ms is not None and until_ms > self.now_ms:
            self.now_ms = until_ms
        return handled
