"""``/repp2p/audit/1``: an auditor asks a digest's publisher for challenged leaves.

Conversation on one stream, auditor first, every message one CBOR frame
(:mod:`repp2p.net.framing`), up to ``AuditParams.max_requests`` challenges per stream::

    auditor   -> {"digest": bytes(32), "index": uint}     # a digest's record ID, a leaf
    publisher -> {"response": bytes}                      # an AuditResponse (docs/digests.md)
               | {"error": "unknown"}                     # not ours, not held, past the
                                                          # audit horizon, or no such leaf

The publisher's answer is judged by :func:`repp2p.digests.verify_audit`; nothing in the
frame is trusted. Limits: requests are at most 256 bytes, answers at most
``MAX_RESPONSE_SIZE`` (24 KiB) plus framing; a publisher serves each peer at most
``streams_per_peer`` streams and ``peer_bytes_per_min`` answer bytes (a peer over its budget
waits, then is dropped), and a request must arrive within ``request_timeout_s``; an
auditor's try (:func:`fetch`: every answer on the stream) ends ``request_timeout_s`` after
it began, whatever the number of leaves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import trio

from repp2p.digests.audit import MAX_RESPONSE_SIZE
from repp2p.errors import ProtocolError
from repp2p.net.framing import FrameReader, close_quietly, remote_peer, write_cbor
from repp2p.net.params import AuditParams
from repp2p.net.sync import SyncQuota

PROTOCOL = "/repp2p/audit/1"
#: largest request frame (a 32-byte ID and an index need about 60)
MAX_REQUEST = 256
#: largest answer frame: the response and the map around it
MAX_ANSWER = MAX_RESPONSE_SIZE + 64
#: the error an unknown digest or leaf gets
UNKNOWN = "unknown"

log = logging.getLogger("repp2p.audit")

#: answer(digest_id, index) -> the encoded AuditResponse, or None when we have none
AnswerFn = Callable[[bytes, int], "bytes | None"]


def parse_request(obj: Any) -> tuple[bytes, int]:
    """The ``(digest_id, index)`` of a request frame.

    Raises:
        ProtocolError: anything else.
    """
    if (
        type(obj) is not dict
        or obj.keys() != {"digest", "index"}
        or type(obj["digest"]) is not bytes
        or len(obj["digest"]) != 32
        or type(obj["index"]) is not int
        or not 0 <= obj["index"] < 2**32
    ):
        raise ProtocolError("bad audit request")
    return obj["digest"], obj["index"]


def make_handler(
    answer: AnswerFn,
    params: AuditParams,
    clock: Callable[[], float],
    quota: SyncQuota | None = None,
    on_request: Callable[[str], None] = lambda result: None,
) -> Callable[[Any], Any]:
    """A stream handler answering challenges with ``answer`` within ``quota`` per peer
    (by default one of its own); ``on_request(result)`` counts each request
    (``answered``, ``unknown`` or ``refused``)."""
    quota = quota or SyncQuota(params, clock)

    async def handle(stream: Any) -> None:
        reader = FrameReader(stream, max_frame=MAX_REQUEST)
        peer = remote_peer(stream)
        try:
            quota.open(peer)
        except ProtocolError as exc:
            log.info("audit: refusing a stream of %s: %s", peer, exc)
            on_request("refused")
            await close_quietly(stream)
            return
        try:
            for _ in range(params.max_requests):
                with trio.fail_after(params.request_timeout_s):
                    request = await reader.read_cbor()
                if request is None:
                    break
                digest_id, index = parse_request(request)
                data = answer(digest_id, index)
                if data is None:
                    on_request(UNKNOWN)
                    await write_cbor(stream, {"error": UNKNOWN})
                    continue
                await quota.pay(peer, len(data))
                on_request("answered")
                await write_cbor(stream, {"response": data})
        except (ProtocolError, trio.TooSlowError) as exc:
            log.info("audit: dropping %s: %s", peer, exc)
            on_request("refused")
        except Exception as exc:  # a reset stream, a closed connection
            log.debug("audit: stream ended: %r", exc)
        finally:
            quota.close(peer)
            await close_quietly(stream)

    return handle


async def fetch(
    stream: Any,
    digest_id: bytes,
    indices: Sequence[int],
    params: AuditParams,
    *,
    deadline: float | None = None,
) -> dict[int, bytes | None]:
    """Ask the publisher at the other end of ``stream`` for leaves of ``digest_id``: one
    try of the grace period (docs/protocol.md), which ends at ``deadline``.

    Args:
        stream: a new ``/repp2p/audit/1`` stream (closed on return).
        digest_id: the digest's record ID.
        indices: the leaves, at most ``params.max_requests``.
        params: the audit settings.
        deadline: when the try ends (``trio.current_time()`` units); by default
            ``params.request_timeout_s`` from now. The whole try, not each answer: a
            publisher that answers each leaf just inside a per-answer timeout would
            otherwise stretch one try to ``len(indices)`` timeouts.

    Returns:
        Per index answered by the deadline, the response bytes as received (hostile: judge
        them with ``verify_audit``) or None when the publisher said ``unknown``. Indices
        not answered by then are missing (the caller asks again or charges them).

    Raises:
        ProtocolError: the publisher broke the protocol (what it answered before is lost
            with the exception; the caller retries).
    """
    if len(indices) > params.max_requests:
        raise ValueError(f"at most {params.max_requests} challenges per stream")
    if deadline is None:
        deadline = trio.current_time() + params.request_timeout_s
    reader = FrameReader(stream, max_frame=MAX_ANSWER)
    out: dict[int, bytes | None] = {}
    try:
        with trio.move_on_at(deadline) as scope:
            for index in indices:
                await write_cbor(stream, {"digest": digest_id, "index": index})
                reply = await reader.read_cbor()
                if reply is None:
                    raise ProtocolError("the publisher closed the stream")
                if type(reply) is dict and reply.keys() == {"response"}:
                    if type(reply["response"]) is not bytes:
                        raise ProtocolError("bad audit answer")
                    out[index] = reply["response"]
                elif reply == {"error": UNKNOWN}:
                    out[index] = None
                else:
                    raise ProtocolError("bad audit answer")
        if scope.cancelled_caught:
            log.info("audit: %d of %d leaves answered in time", len(out), len(indices))
    finally:
        await close_quietly(stream)
    return out


__all__ = ["MAX_ANSWER", "MAX_REQUEST", "PROTOCOL", "UNKNOWN", "fetch", "make_handler"]
