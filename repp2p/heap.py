"""Keep Python's cyclic garbage collector off the node's long-lived heap.

A node holds tens of thousands of decoded records (the store's cache) and a few epochs of
views. CPython's full (generation 2) collection walks every tracked object, and view builds
allocate enough to trigger one every epoch or two: a build that a full collection falls
into takes several times longer, on every node of the network at the same boundary
(measurements: docs/design-notes.md, "Heap and GC").

:func:`settle` (called after each view build) moves everything that survived into the
permanent generation (``gc.freeze``), which collections skip. Reference counting still
frees records as they are purged; only garbage *cycles* among frozen objects would wait,
so every ``full_every_s`` the heap is unfrozen and collected once. (Cycles that were
already garbage when frozen are held until then too: bounded by what ten minutes produce.)
"""

from __future__ import annotations

import gc
import time

FULL_EVERY_S = 600.0
_last_full = time.monotonic()


def settle(full_every_s: float = FULL_EVERY_S) -> None:
    """Freeze the surviving heap; unfreeze and collect it fully every ``full_every_s``."""
    global _last_full
    now = time.monotonic()
    if now - _last_full >= full_every_s:
        gc.unfreeze()
        gc.collect()
        _last_full = now
    gc.freeze()
