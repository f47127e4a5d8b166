"""Bounded polling for tests that watch a live network settle."""

from __future__ import annotations

from collections.abc import Callable

import trio


async def until(
    predicate: Callable[[], object], timeout: float, what: str, *, interval: float = 0.05
) -> None:
    """Return once ``predicate()`` is true, polling every ``interval`` seconds.

    Raises:
        AssertionError: not within ``timeout`` seconds; the message names ``what``.
    """
    try:
        with trio.fail_after(timeout):
            while not predicate():
                await trio.sleep(interval)
    except trio.TooSlowError:
        raise AssertionError(f"not within {timeout} s: {what}") from None
