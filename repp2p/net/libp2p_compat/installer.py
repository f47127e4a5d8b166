"""Apply every process-wide patch of py-libp2p, once, after checking all of them."""

from __future__ import annotations

import logging

from repp2p.net.libp2p_compat import (
    gossipsub,
    ignore,
    kad_dht,
    pubsub,
    score,
    service,
    swarm,
    yamux,
)
from repp2p.net.libp2p_compat.guard import Expect, check_version
from repp2p.net.libp2p_compat.patch import Patch

log = logging.getLogger(__name__)

#: every replacement of a py-libp2p attribute, in the order applied
PATCHES: tuple[Patch, ...] = pubsub.PATCHES + yamux.PATCHES + service.PATCHES
#: replacements py-libp2p calls only for a peer that breaks the protocol (applied after
#: PATCHES; their canaries are tests/net/test_hostile_yamux.py, so they are not in HOOKS)
GUARDS: tuple[Patch | yamux.WindowEnforcement, ...] = yamux.GUARDS
#: py-libp2p attributes our subclasses override and our helpers call
EXPECTS: tuple[Expect, ...] = (
    gossipsub.EXPECTS + ignore.EXPECTS + kad_dht.EXPECTS + swarm.EXPECTS + score.EXPECTS
)
#: every hook whose calls are counted (see ``hook_calls()``); each has a canary test
HOOKS: tuple[str, ...] = (
    tuple(patch.hook for patch in PATCHES) + gossipsub.HOOKS + ignore.HOOKS + kad_dht.HOOKS
)

_installed = False


def install() -> None:
    """Check py-libp2p, then apply every patch (idempotent; call before building a host).

    Importing repp2p changes nothing in py-libp2p: the patches apply here, process-wide.
    Nothing is patched unless every check passes.

    Raises:
        UnsupportedLibp2pError: the installed py-libp2p is not a supported version (unless
            ``REPP2P_ALLOW_ANY_LIBP2P=1``), or an attribute a patch replaces, overrides or
            relies on is missing or has other parameters, or yamux no longer keeps its
            receive windows as the window check expects, or the scorer's sign convention
            changed, or ``Pubsub.push_msg`` no longer penalises a failed validation
            synchronously (the IGNORE verdict relies on it).
    """
    global _installed
    version = check_version()
    if _installed:
        return
    for patch in PATCHES + GUARDS:
        patch.check()
    for expect in EXPECTS:
        expect.check()
    score.check_sign_convention()
    ignore.check()
    for patch in PATCHES + GUARDS:
        patch.apply()
    _installed = True
    log.debug("py-libp2p %s patched: %s", version, ", ".join(p.hook for p in PATCHES + GUARDS))


def installed() -> bool:
    """Whether :func:`install` has patched py-libp2p in this process."""
    return _installed
