"""One replacement of a py-libp2p attribute, checked before it is applied."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from repp2p.net.libp2p_compat.guard import Expect
from repp2p.net.libp2p_compat.hooks import counted


@dataclass(frozen=True)
class Patch:
    """Replace ``target`` with ``replacement`` (counted under ``hook``).

    Attributes:
        hook: the name its calls are counted under (``libp2p_compat.hook_calls()``).
        target: the attribute replaced, with the parameters py-libp2p calls it with.
        replacement: our function (same parameters, in order, as the target).
        requires: other py-libp2p attributes the replacement calls or reads.
    """

    hook: str
    target: Expect
    replacement: Callable[..., Any]
    requires: tuple[Expect, ...] = ()

    def applied(self) -> bool:
        """Whether the target is already our (counted) replacement."""
        current = getattr(self.target.owner, self.target.attribute, None)
        return getattr(current, "__wrapped__", None) is self.replacement

    def check(self) -> None:
        """Raise unless the target and every requirement have the expected shape.

        Raises:
            UnsupportedLibp2pError: one of them is missing or changed.
        """
        if not self.applied():
            self.target.check()
        for expect in self.requires:
            expect.check()

    def apply(self) -> None:
        """Bind the counted replacement in place of the target (idempotent)."""
        if not self.applied():
            setattr(self.target.owner, self.target.attribute, counted(self.hook, self.replacement))
