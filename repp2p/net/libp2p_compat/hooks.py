"""How often py-libp2p called each of our hooks, process-wide.

A patch that py-libp2p stops calling (a renamed private method, a function now bound
under another name) fails silently: the fix is simply gone. The canary tests drive real
hosts and check each counter moves; an operator can read the same counters.
"""

from __future__ import annotations

import functools
import inspect
from collections import Counter
from collections.abc import Callable
from typing import Any

_calls: Counter[str] = Counter()


def count(hook: str) -> None:
    """Record one call of ``hook`` (cheap: one dict update)."""
    _calls[hook] += 1


def hook_calls() -> dict[str, int]:
    """A snapshot of the call count of every hook called at least once.

    Returns:
        ``{hook name: calls}``; hook names are listed in ``libp2p_compat.HOOKS``.
    """
    return dict(_calls)


def counted(hook: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` wrapped to :func:`count` ``hook`` on every call (sync or async alike)."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def counted_async(*args: Any, **kwargs: Any) -> Any:
            _calls[hook] += 1
            return await fn(*args, **kwargs)

        return counted_async

    @functools.wraps(fn)
    def counted_sync(*args: Any, **kwargs: Any) -> Any:
        _calls[hook] += 1
        return fn(*args, **kwargs)

    return counted_sync
