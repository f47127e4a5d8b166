"""The node's heap policy: survivors frozen out of full collections, cycles still freed."""

from __future__ import annotations

import gc
import weakref

from repp2p import heap


class Node:
    pass


def test_settle_freezes_survivors_and_a_full_pass_frees_frozen_cycles():
    try:
        cycle = Node()
        cycle.self = cycle
        alive = weakref.ref(cycle)
        heap.settle(full_every_s=1e9)
        assert gc.get_freeze_count() > 0
        del cycle
        gc.collect()
        assert alive() is not None  # a frozen cycle waits for the periodic full pass
        heap.settle(full_every_s=0)  # the full pass: unfreeze, collect, freeze again
        assert alive() is None
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
