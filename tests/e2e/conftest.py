"""Shared helpers for end-to-end task tests (real hosts on 127.0.0.1, real enclaves)."""

from __future__ import annotations

import trio


async def wait_until(predicate, timeout: float, interval: float = 0.1) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(interval)
