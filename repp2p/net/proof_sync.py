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
more than ``max_invalid`` proofs the validator REJECTs (forged, malformed, oversized) is cut
off; what it sent before that stays judged on its own.

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
from collections.abc import Callable, Iterable
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
            with trio.fail_after(params.request_timeout_s * params.max_pages):
                while True:
                    with trio.fail_after(params.request_timeout_s):
                        request = await reader.read_cbor()
                    if request is None:
                        break
                    have, after = parse_request(request)
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

    Args:
        stream: a new ``/repp2p/proofs/1`` stream (closed on return).
        have: SHA-256s of the proofs we hold (the first :data:`MAX_HAVE` are sent).
        judge: the validator gossip uses (a REJECT is the sending peer's fault).
        params: the ``[sync]`` limits.

    Raises:
        ProtocolError: the peer broke the protocol, was too slow, or sent more than
            ``max_invalid`` proofs that were REJECTed (those judged before stay judged).
    """
    result = ProofPullResult()
    reader = FrameReader(stream, max_frame=params.max_frame)
    cursor = b""
    request: dict[str, Any] = {"have": list(have[:MAX_HAVE]), "after": cursor}
    try:
        while result.pages < params.max_pages:
            await write_cbor(stream, request)
            with trio.fail_after(params.request_timeout_s):
                reply = await reader.read_cbor()
            if (
                type(reply) is not dict
                or reply.keys() != {"proofs", "next"}
                or type(reply["proofs"]) is not list
                or len(reply["proofs"]) > MAX_PAGE_PROOFS
                or not (
                    reply["next"] is None
                    or (type(reply["next"]) is bytes and len(reply["next"]) == 32)
                )
            ):
                raise ProtocolError("bad proofs page")
            result.pages += 1
            for data in reply["proofs"]:
                result.received += 1
                verdict = judge(data) if type(data) is bytes else Verdict.REJECT
                if verdict is Verdict.ACCEPT:
                    result.accepted += 1
                elif verdict is Verdict.IGNORE:
                    result.ignored += 1
                else:
                    result.rejected += 1
                    if result.rejected > params.max_invalid:
                        raise ProtocolError(f"peer sent {result.rejected} invalid proofs")
            if reply["next"] is None:
                result.complete = True
                break
            if reply["next"] <= cursor:
                raise ProtocolError("proofs cursor did not advance")
            cursor = reply["next"]
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
    "ProofPullResult",
    "make_handler",
    "parse_request",
    "pull",
]
