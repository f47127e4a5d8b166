"""``/repp2p/proofs/1``: pull the proofs of the replay window from a peer.

GossipSub delivers each message of the ``proofs`` topic once: a peer that was offline, or
restarted, or whose neighbours IGNOREd a proof they could not judge yet, would never get it,
and its digest views would count other disputes and offences than everyone else's. This
protocol lets a peer ask any other for the proofs it can still take (dispute proofs of
offers in the replay window, offence proofs within the audit horizon: what
:meth:`repp2p.node.disputes.DisputeBook.served` and
:meth:`repp2p.node.offences.OffenceBook.served` return). Conversation on one stream, client
first, every message one CBOR frame (:mod:`repp2p.net.framing`)::

    client -> {"have": [bytes(32)...], "after": bytes}   # SHA-256s held; cursor, b"" first
    server -> {"proofs": [bytes...], "next": bytes | null}

The server orders what it serves by the SHA-256 of each proof's bytes and sends those
above the cursor that the client does not hold (the ``have`` lists of every request on the
stream), at most :data:`MAX_PAGE_PROOFS` proofs and ``page_bytes`` per page (one proof
above it still travels alone); ``next`` is the cursor for the following page, null at the
end. Every proof the client receives goes through the same validator as gossip (the
:class:`~repp2p.node.offences.ProofRouter`), except unserved charges, which no server sends:
they are a peer's word, re-checked by whoever receives them on gossip. A server that sends
more than ``max_invalid`` proofs the validator REJECTs (forged, malformed, oversized), or a
page no honest server sends (:func:`parse_page`: out of order, a proof twice or one the
client holds, an empty page that is not the last), is cut off; what it sent before that
stays judged on its own. A pull, and a server's stream, ends within :data:`PULL_TIMEOUTS`
page timeouts, and a stream names at most :data:`MAX_HAVE` held proofs in all.

Why not ``/repp2p/sync/1``: sync pages the record store by record ID, and a proof is no
record (it has no record ID, is merged per offer, and is judged by the proof books, not the
record pipeline); sync also runs once, when a peer first connects, while proofs are pulled
again every epoch (docs/protocol.md, "Stream protocol /repp2p/proofs/1"). Its limits are
the ``[sync]`` settings (:class:`~repp2p.net.params.SyncParams`): page bytes, frame size,
per-page timeout, pages per pull, invalid proofs, streams and bytes per peer and minute.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Collection, Iterable
from typing import Any

import trio

from repp2p.errors import ProtocolError
from repp2p.net.framing import FrameReader, close_quietly, write_cbor
from repp2p.net.params import SyncParams
from repp2p.net.sync import SyncQuota, served_stream
from repp2p.net.verdict import Verdict

PROTOCOL = "/repp2p/proofs/1"
#: SHA-256s one request may name (more held: the rest may come again, and are ``known``)
MAX_HAVE = 1024
#: largest request frame: MAX_HAVE digests, a cursor and the map around them
MAX_REQUEST = MAX_HAVE * 34 + 128
#: proofs one page carries at most
MAX_PAGE_PROOFS = 64
#: a whole pull, and the server's stream, ends within this many page timeouts
#: (``SyncParams.request_timeout_s``): 30 s at the defaults, far more than an honest pull
#: of the window takes. Bounding each page only, a peer that drips pages (or requests)
#: just inside the page timeout held a pull, or a server's stream, for ``max_pages`` of
#: them (28 hours at the defaults), and the node's pull loop with it.
PULL_TIMEOUTS = 3

log = logging.getLogger("repp2p.proof_sync")

#: served() -> the encoded proofs this peer offers now
ServedFn = Callable[[], Iterable[bytes]]
#: judge(data) -> the gossip validator's verdict on a pulled proof
JudgeFn = Callable[[bytes], Verdict]


@dataclasses.dataclass
class ProofPullResult:
    """What one pull from one peer did: proofs received and their verdicts."""

    pages: int = 0
    received: int = 0
    accepted: int = 0
    ignored: int = 0
    rejected: int = 0
    complete: bool = False


def parse_request(obj: Any) -> tuple[list[bytes], bytes]:
    """The ``(have, after)`` of a request frame.

    Raises:
        ProtocolError: anything else (wrong keys or types, more than :data:`MAX_HAVE`
            digests, a digest or cursor that is not 32 bytes).
    """
    if (
        type(obj) is not dict
        or obj.keys() != {"have", "after"}
        or type(obj["have"]) is not list
        or len(obj["have"]) > MAX_HAVE
        or any(type(d) is not bytes or len(d) != 32 for d in obj["have"])
        or type(obj["after"]) is not bytes
        or len(obj["after"]) not in (0, 32)
    ):
        raise ProtocolError("bad proofs request")
    return obj["have"], obj["after"]


def parse_page(
    obj: Any, cursor: bytes, have: Collection[bytes]
) -> tuple[list[bytes], bytes | None]:
    """The ``(proofs, next)`` of a page answering a request after ``cursor`` by a client
    that named ``have``: what an honest server sends (:func:`make_handler`), checked
    before any proof is judged.

    An honest server pages the proofs above the cursor that the client does not hold, in
    SHA-256 order, ``next`` at or above the last one's (null on the last page), so a page
    that is not the last carries at least one proof and no proof comes twice in a pull.
    Without these checks a server could keep a client pulling for ``max_pages`` pages that
    bring nothing (empty pages, a cursor that advances) or the same proof again and again.

    Raises:
        ProtocolError: anything else (wrong keys or types, more than
            :data:`MAX_PAGE_PROOFS` proofs, a proof that is no byte string, one at or
            below the cursor, out of order, above ``next`` or named in ``have``, an empty
            page that is not the last).
    """
    if (
        type(obj) is not dict
        or obj.keys() != {"proofs", "next"}
        or type(obj["proofs"]) is not list
        or len(obj["proofs"]) > MAX_PAGE_PROOFS
        or any(type(d) is not bytes for d in obj["proofs"])
        or not (obj["next"] is None or (type(obj["next"]) is bytes and len(obj["next"]) == 32))
    ):
        raise ProtocolError("bad proofs page")
    proofs, after = obj["proofs"], obj["next"]
    last = cursor
    for data in proofs:
        digest = hashlib.sha256(data).digest()
        if digest <= last:
            raise ProtocolError("bad proofs page: a proof at or below the cursor, or out of order")
        if digest in have:
            raise ProtocolError("bad proofs page: a proof the client holds")
        last = digest
    if after is not None and (not proofs or last > after):
        raise ProtocolError("bad proofs page: the cursor does not follow its proofs")
    return proofs, after


def make_handler(
    served: ServedFn,
    params: SyncParams,
    clock: Callable[[], float],
    quota: SyncQuota | None = None,
    on_limit: Callable[[str], None] | None = None,
) -> Callable[[Any], Any]:
    """A stream handler serving ``served()`` within ``quota`` per peer (by default one of
    its own); ``on_limit(name)`` is told each time a peer's stream is ended by a limit."""
    quota = quota or SyncQuota(params, clock)
    count = on_limit or (lambda limit: None)

    async def handle(stream: Any) -> None:
        reader = FrameReader(stream, max_frame=MAX_REQUEST)
        async with served_stream("proofs", stream, quota, count, log) as peer:
            if peer is None:
                return
            # one snapshot per stream: the cursor walks a list that does not move
            offered = sorted((hashlib.sha256(d).digest(), d) for d in served())
            held: set[bytes] = set()
            with trio.fail_after(params.request_timeout_s * PULL_TIMEOUTS):
                while True:
                    with trio.fail_after(params.request_timeout_s):
                        request = await reader.read_cbor()
                    if request is None:
                        break
                    have, after = parse_request(request)
                    # A client names what it holds once (later requests send []): naming
                    # new digests in every request grew this set without end.
                    if len(held) + len(have) > MAX_HAVE:
                        raise ProtocolError(f"more than {MAX_HAVE} digests named on a stream")
                    held.update(have)
                    page: list[bytes] = []
                    size, more = 0, False
                    cursor = after
                    for digest, data in offered:
                        if digest <= after or digest in held:
                            continue
                        if page and (
                            len(page) >= MAX_PAGE_PROOFS or size + len(data) > params.page_bytes
                        ):
                            more = True
                            break
                        page.append(data)
                        size += len(data)
                        cursor = digest
                    await quota.pay(peer, size)
                    await write_cbor(stream, {"proofs": page, "next": cursor if more else None})

    return handle


async def pull(
    stream: Any, have: list[bytes], judge: JudgeFn, params: SyncParams
) -> ProofPullResult:
    """Fetch every page of proofs a peer offers over ``stream`` and judge each.

    Each page must come within ``request_timeout_s`` and the whole pull within
    :data:`PULL_TIMEOUTS` of them; it stops after ``max_pages`` pages (the result is then
    not ``complete``).

    Args:
        stream: a new ``/repp2p/proofs/1`` stream (closed on return).
        have: SHA-256s of the proofs we hold (the first :data:`MAX_HAVE` are sent).
        judge: the validator gossip uses (a REJECT is the sending peer's fault).
        params: the ``[sync]`` limits.

    Raises:
        ProtocolError: the peer broke the protocol (a page :func:`parse_page` refuses),
            was too slow, or sent more than ``max_invalid`` proofs that were REJECTed
            (what was judged before stays judged).
    """
    result = ProofPullResult()
    reader = FrameReader(stream, max_frame=params.max_frame)
    cursor = b""
    named = list(have[:MAX_HAVE])
    held = set(named)
    request: dict[str, Any] = {"have": named, "after": cursor}
    try:
        # the whole pull as well as each page (PULL_TIMEOUTS)
        with trio.fail_after(params.request_timeout_s * PULL_TIMEOUTS):
            while result.pages < params.max_pages:
                await write_cbor(stream, request)
                with trio.fail_after(params.request_timeout_s):
                    reply = await reader.read_cbor()
                proofs, after = parse_page(reply, cursor, held)
                result.pages += 1
                for data in proofs:
                    result.received += 1
                    verdict = judge(data)
                    if verdict is Verdict.ACCEPT:
                        result.accepted += 1
                    elif verdict is Verdict.IGNORE:
                        result.ignored += 1
                    else:
                        result.rejected += 1
                        if result.rejected > params.max_invalid:
                            raise ProtocolError(f"peer sent {result.rejected} invalid proofs")
                if after is None:
                    result.complete = True
                    break
                cursor = after
                request = {"have": [], "after": cursor}  # the server remembers what we hold
    except trio.TooSlowError:
        raise ProtocolError("proofs peer too slow") from None
    finally:
        await close_quietly(stream)
    return result


__all__ = [
    "MAX_HAVE",
    "MAX_PAGE_PROOFS",
    "MAX_REQUEST",
    "PROTOCOL",
    "PULL_TIMEOUTS",
    "ProofPullResult",
    "make_handler",
    "parse_page",
    "parse_request",
    "pull",
]
