"""Refuse to patch a py-libp2p the patches were not written for.

Every patch replaces or relies on private py-libp2p code, which changes without notice
between releases. So :func:`check_version` pins the release, and :class:`Expect` pins the
shape (name and parameters) of every attribute a patch replaces, overrides or calls.
Both raise :class:`~repp2p.errors.UnsupportedLibp2pError`; nothing is patched unless every
check passes.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
import os
from dataclasses import dataclass
from typing import Any

from repp2p.errors import UnsupportedLibp2pError

log = logging.getLogger(__name__)

#: py-libp2p releases the patches were written and tested against
SUPPORTED_VERSIONS: tuple[str, ...] = ("0.8.1",)
#: set to "1" to patch another py-libp2p release anyway (at your own risk: the shape checks
#: still run, the canary tests in tests/net/test_libp2p_compat.py say whether hooks still run)
ALLOW_ANY_VERSION_ENV = "REPP2P_ALLOW_ANY_LIBP2P"


def installed_version() -> str:
    """The installed py-libp2p version (from its distribution metadata)."""
    return importlib.metadata.version("libp2p")


def check_version(version: str | None = None) -> str:
    """Check that py-libp2p ``version`` (default: the installed one) is supported.

    Args:
        version: the version to check; ``None`` reads the installed one.

    Returns:
        The version checked.

    Raises:
        UnsupportedLibp2pError: the version is not in :data:`SUPPORTED_VERSIONS` and
            ``REPP2P_ALLOW_ANY_LIBP2P=1`` is not set.
    """
    version = installed_version() if version is None else version
    if version in SUPPORTED_VERSIONS:
        return version
    if os.environ.get(ALLOW_ANY_VERSION_ENV) == "1":
        log.warning(
            "py-libp2p %s is not one of %s; patching anyway (%s=1)",
            version,
            ", ".join(SUPPORTED_VERSIONS),
            ALLOW_ANY_VERSION_ENV,
        )
        return version
    raise UnsupportedLibp2pError(
        version,
        SUPPORTED_VERSIONS,
        f"pin libp2p=={SUPPORTED_VERSIONS[-1]}, or port the patches (docs/libp2p-fixes.md); "
        f"{ALLOW_ANY_VERSION_ENV}=1 overrides this check",
    )


def shape(target: Any) -> str:
    """A callable's parameters as ``"a, b, *, c"``: names and kinds, no defaults or types."""
    parts: list[str] = []
    star = False
    for param in inspect.signature(target).parameters.values():
        if param.kind is param.VAR_POSITIONAL:
            parts.append(f"*{param.name}")
            star = True
        elif param.kind is param.VAR_KEYWORD:
            parts.append(f"**{param.name}")
        else:
            if param.kind is param.KEYWORD_ONLY and not star:
                parts.append("*")
                star = True
            parts.append(param.name)
    return ", ".join(parts)


@dataclass(frozen=True)
class Expect:
    """An attribute of py-libp2p that a patch replaces, overrides or calls.

    Attributes:
        owner: the module or class holding it.
        attribute: its name.
        parameters: its expected :func:`shape`; ``None`` when it need only exist (a
            property or a plain attribute).
    """

    owner: Any
    attribute: str
    parameters: str | None = None

    @property
    def where(self) -> str:
        """``module.attribute`` or ``Class.attribute``, for messages."""
        return f"{getattr(self.owner, '__name__', self.owner)}.{self.attribute}"

    def check(self) -> None:
        """Raise unless the attribute exists with the expected parameters.

        Raises:
            UnsupportedLibp2pError: the attribute is missing or its parameters differ.
        """
        target = getattr(self.owner, self.attribute, None)
        if target is None:
            raise incompatible(f"{self.where} is missing")
        if self.parameters is None:
            return
        try:
            found = shape(target)
        except (TypeError, ValueError):
            raise incompatible(f"{self.where} is no longer a function") from None
        if found != self.parameters:
            raise incompatible(f"{self.where}({found}) is not ({self.parameters})")


def incompatible(detail: str) -> UnsupportedLibp2pError:
    """An :class:`UnsupportedLibp2pError` naming the installed version and ``detail``."""
    try:
        version = installed_version()
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return UnsupportedLibp2pError(version, SUPPORTED_VERSIONS, detail)
