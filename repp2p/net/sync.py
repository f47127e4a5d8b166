"""``/repp2p/sync/1``: pull the current record set from a peer in bounded pages.

A joining or restarted node catches up without waiting for republication. Conversation on
one stream, client first, every message one CBOR frame (see :mod:`repp2p.net.framing`)::

    client -> {"after": bytes, "limit": uint}      # cursor = last record ID seen, b"" first
    server -> {"records": [bytes...], "next": bytes | null}

The server walks its store in record-ID order; ``next`` is the cursor for the following
page, null at the end. A server may hold records back from a peer (on a network whose views
come from digests, a per-task record goes only to a party of its task:
:func:`repp2p.node.light.served_to`); the cursor still advances past them. Pages are
capped in records and bytes. Every record the client receives goes through the same
pipeline as gossip (decode, validate, store); a peer that sends more than ``max_invalid``
bad records is cut off, and so is one whose page an honest server would not send (a record
at or below the cursor, out of record-ID order, or above ``next``: else a server could
send the same records on every page of a pull). :func:`pull_many` pulls from several peers
at once, so a peer that drips pages just inside the page timeout holds up its own pull
only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol

import trio

from repp2p.errors import TIMEOUT_LIMIT, LimitError, ProtocolError, limit_of
from repp2p.net.framing import FrameReader, close_quietly, remote_peer, write_cbor
from repp2p.net.params import SyncParams
from repp2p.records import SignedRecord
from repp2p.store import RecordStoreAPI

PROTOCOL = "/repp2p/sync/1"
log = logging.getLogger("repp2p.sync")

#: accept(data) -> False only when the record is the sending peer's fault (invalid or
#: forged; a stale copy or our own store failing is not)
AcceptFn = Callable[[bytes], bool]
#: serves(record, peer) -> whether the server sends this record to this peer (None: the
#: peer's ID is unknown)
ServesFn = Callable[[SignedRecord, "str | None"], bool]


@dataclasses.dataclass
class SyncResult:
    """What one pull from one peer did."""

    pages: int = 0
    received: int = 0
    valid: int = 0
    invalid: int = 0
    complete: bool = False


def _request_ok(obj: Any) -> tuple[bytes, int]:
    if (
        type(obj) is not dict
        or obj.keys() != {"after", "limit"}
        or type(obj["after"]) is not bytes
        or len(obj["after"]) > 32
        or type(obj["limit"]) is not int
        or obj["limit"] < 1
    ):
        raise ProtocolError("bad sync request")
    return obj["after"], obj["limit"]


class _PeerBudget:
    """Bytes a server may still send one peer: a bucket refilled at
    ``peer_bytes_per_min`` per minute, holding at most a minute's worth."""

    def __init__(self, per_min: int, now: float) -> None:
        self.per_min = per_min
        self.tokens = float(per_min)
        self.at = now

    def wait_for(self, size: int, now: float) -> float:
        """Seconds until ``size`` bytes may be sent (0 when they may now)."""
        self.tokens = min(self.per_min, self.tokens + (now - self.at) * self.per_min / 60)
        self.at = now
        return max(0.0, (size - self.tokens) * 60 / self.per_min)

    def spend(self, size: int) -> None:
        self.tokens -= size


class QuotaParams(Protocol):
    """What a :class:`SyncQuota` reads (``SyncParams`` and ``AuditParams`` have it)."""

    @property
    def streams_per_peer(self) -> int: ...
    @property
    def peer_bytes_per_min(self) -> int: ...
    @property
    def request_timeout_s(self) -> float: ...


class SyncQuota:
    """Per-peer limits of a sync server: open streams, and bytes per minute (the audit
    server, :mod:`repp2p.net.audit`, uses one too).

    One peer that pulls the whole record set again and again (or opens many streams that
    never read) could otherwise make a server send it hundreds of megabytes a minute.
    """

    #: peers whose budget is remembered (the oldest are forgotten first)
    PEERS_KEPT = 4096

    def __init__(self, params: QuotaParams, clock: Callable[[], float]) -> None:
        self._params = params
        self._clock = clock
        self._streams: dict[str | None, int] = {}
        self._budgets: dict[str | None, _PeerBudget] = {}

    def open(self, peer: str | None) -> None:
        """Count a new stream of ``peer``.

        Raises:
            ProtocolError: the peer has ``streams_per_peer`` open already.
        """
        if self._streams.get(peer, 0) >= self._params.streams_per_peer:
            raise LimitError(
                "streams_per_peer", f"more than {self._params.streams_per_peer} streams"
            )
        self._streams[peer] = self._streams.get(peer, 0) + 1

    def close(self, peer: str | None) -> None:
        """A stream of ``peer`` ended."""
        left = self._streams.get(peer, 1) - 1
        if left:
            self._streams[peer] = left
        else:
            self._streams.pop(peer, None)

    async def pay(self, peer: str | None, size: int) -> None:
        """Wait until ``size`` more bytes may go to ``peer``, then count them.

        Raises:
            ProtocolError: the wait would be longer than a page may take.
        """
        budget = self._budgets.get(peer)
        if budget is None:
            while len(self._budgets) >= self.PEERS_KEPT:
                self._budgets.pop(next(iter(self._budgets)))
            budget = self._budgets[peer] = _PeerBudget(
                self._params.peer_bytes_per_min, self._clock()
            )
        wait = budget.wait_for(size, self._clock())
        if wait > self._params.request_timeout_s:
            raise LimitError("bytes_per_min", "over its byte budget")
        if wait:
            await trio.sleep(wait)
        budget.spend(size)


@contextlib.asynccontextmanager
async def served_stream(
    what: str, stream: Any, quota: SyncQuota, count: Callable[[str], None], logger: Any
) -> AsyncIterator[str | None]:
    """One served stream of a paging protocol (sync, proofs), within ``quota``.

    Yields the remote peer, or None when its stream is refused (``streams_per_peer``;
    the stream is closed already: the caller returns). The body's failures end the stream
    quietly: a peer's malformed request or a limit (logged, ``count(limit)``), a request
    that did not come in time, a reset. Whatever ends it, the peer's stream is uncounted
    and the stream closed. ``what`` names the protocol in ``logger``'s lines.
    """
    peer = remote_peer(stream)
    try:
        quota.open(peer)
    except ProtocolError as exc:
        logger.info("%s: refusing a stream of %s: %s", what, peer, exc)
        count(limit_of(exc))
        await close_quietly(stream)
        yield None
        return
    try:
        yield peer
    except ProtocolError as exc:
        logger.info("%s: dropping a client: %s", what, exc)
        count(limit_of(exc))
    except trio.TooSlowError:
        logger.info("%s: dropping a client: request not received in time", what)
        count(TIMEOUT_LIMIT)
    except Exception as exc:  # a reset stream, a closed connection
        logger.debug("%s: stream ended: %r", what, exc)
    finally:
        quota.close(peer)
        await close_quietly(stream)


def make_handler(
    store: RecordStoreAPI,
    params: SyncParams,
    clock: Callable[[], float] = time.time,
    quota: SyncQuota | None = None,
    on_limit: Callable[[str], None] | None = None,
    serves: ServesFn | None = None,
) -> Callable[[Any], Any]:
    """A stream handler serving pages of ``store`` (records expired at ``clock()`` skipped),
    within ``quota`` per peer (by default one of its own). ``on_limit(name)`` is told each
    time a peer's stream is ended by a limit (:func:`repp2p.errors.limit_of`). With
    ``serves``, a record it refuses for the requesting peer is skipped like an expired one
    (None: every record is served)."""
    quota = quota or SyncQuota(params, clock)
    count = on_limit or (lambda limit: None)

    async def handle(stream: Any) -> None:
        reader = FrameReader(stream, max_frame=4096)  # requests are tiny
        async with served_stream("sync", stream, quota, count, log) as peer:
            if peer is None:
                return
            with trio.fail_after(params.request_timeout_s * params.max_pages):
                while True:
                    with trio.fail_after(params.request_timeout_s):
                        request = await reader.read_cbor()
                    if request is None:
                        break
                    after, limit = _request_ok(request)
                    wanted = min(limit, params.page_records)
                    raw = store.page(after, wanted)
                    now = clock()
                    records: list[bytes] = []
                    size, last = 0, None
                    for signed in raw:
                        if records and size + len(signed.data) > params.page_bytes:
                            break
                        last = signed.record_id
                        if signed.record.expires <= now:
                            continue  # the peer would reject it as expired: don't send it
                        if serves is not None and not serves(signed, peer):
                            continue  # not this peer's to hold (another party's task)
                        records.append(signed.data)
                        size += len(signed.data)
                    more = len(raw) == wanted or (last is not None and last != raw[-1].record_id)
                    cursor = last if more else None
                    await quota.pay(peer, size)
                    await write_cbor(stream, {"records": records, "next": cursor})

    return handle


async def pull(stream: Any, accept: AcceptFn, params: SyncParams) -> SyncResult:
    """Fetch every page a peer offers over ``stream`` and feed each record to ``accept``.

    Raises:
        ProtocolError: the peer broke the protocol, was too slow, or sent too many invalid
            records (what it sent before is kept: each valid record was stored on arrival).
    """
    result = SyncResult()
    reader = FrameReader(stream, max_frame=params.max_frame)
    cursor = b""
    try:
        while result.pages < params.max_pages:
            await write_cbor(stream, {"after": cursor, "limit": params.page_records})
            with trio.fail_after(params.request_timeout_s):
                reply = await reader.read_cbor()
            if (
                type(reply) is not dict
                or reply.keys() != {"records", "next"}
                or type(reply["records"]) is not list
                or len(reply["records"]) > params.page_records
                or not (reply["next"] is None or type(reply["next"]) is bytes)
            ):
                raise ProtocolError("bad sync page")
            _check_page(reply["records"], cursor, reply["next"])
            result.pages += 1
            for data in reply["records"]:
                result.received += 1
                if accept(data):
                    result.valid += 1
                else:
                    result.invalid += 1
                    if result.invalid > params.max_invalid:
                        raise ProtocolError(f"peer sent {result.invalid} invalid records")
            if reply["next"] is None:
                result.complete = True
                break
            if reply["next"] <= cursor:
                raise ProtocolError("sync cursor did not advance")
            cursor = reply["next"]
    except trio.TooSlowError:
        raise ProtocolError("sync peer too slow") from None
    finally:
        await close_quietly(stream)
    return result


def _check_page(records: list[Any], cursor: bytes, after: bytes | None) -> None:
    """Refuse a page no honest server sends (:func:`make_handler` walks its store in
    record-ID order: each record's ID, its SHA-256, is above the cursor, ascending, and at
    most ``next``), before any of it is judged.

    Raises:
        ProtocolError: a record that is no byte string, or out of that order.
    """
    last = cursor
    for data in records:
        if type(data) is not bytes:
            raise ProtocolError("bad sync page: a record that is no byte string")
        record_id = hashlib.sha256(data).digest()
        if record_id <= last:
            raise ProtocolError("bad sync page: a record at or below the cursor, or out of order")
        last = record_id
    if after is not None and last > after:
        raise ProtocolError("bad sync page: a record above the next cursor")


#: opens a sync stream to a peer
OpenFn = Callable[[Any], Awaitable[Any]]


async def pull_many(
    peers: Sequence[Any],
    open_stream: OpenFn,
    accept: AcceptFn,
    params: SyncParams,
    *,
    grace_s: float,
    hedge_s: float,
    first: int = 2,
) -> dict[Any, SyncResult | Exception | None]:
    """Pull from several of ``peers`` at once (:func:`pull`, a stream each from
    ``open_stream(peer)``, opened within 4 page timeouts), in their order: ``first`` at
    the start, then one more every ``hedge_s`` while no pull has completed.

    Returns when every pull started has ended and none is left to start, or ``grace_s``
    after the first complete one: pulls still running are then cut (what they stored
    stays stored). Why: pulled one after the other, a peer that drips pages just inside
    the page timeout held the pulls after it for ``max_pages`` page timeouts (28 hours at
    the defaults), and a joining node's discovery with them; at once, it holds its own
    pull only, and while no pull completes another peer is asked.

    Returns:
        Per peer asked, its :class:`SyncResult`, the exception that ended its pull, or
        None when it was cut.
    """
    results: dict[Any, SyncResult | Exception | None] = {}
    first_complete = trio.Event()
    running = 0
    lane_ended = trio.Event()  # replaced after each wait for it

    async def lane(peer: Any) -> None:
        nonlocal running
        try:
            with trio.fail_after(params.request_timeout_s * 4):
                stream = await open_stream(peer)
            result = await pull(stream, accept, params)
        except Exception as exc:  # unreachable, reset, broke the protocol, too slow
            results[peer] = exc
            return
        else:
            results[peer] = result
            if result.complete:
                first_complete.set()
        finally:
            running -= 1
            lane_ended.set()

    async with trio.open_nursery() as outer:

        async def cut_after_grace() -> None:
            await first_complete.wait()
            await trio.sleep(grace_s)
            outer.cancel_scope.cancel()

        outer.start_soon(cut_after_grace)
        async with trio.open_nursery() as lanes:
            for i, peer in enumerate(peers):
                if i >= first:
                    # the next peer once hedge_s passed or no pull is left running;
                    # none once one completed
                    deadline = trio.current_time() + hedge_s
                    while running and not first_complete.is_set():
                        lane_ended = trio.Event()
                        with trio.move_on_at(deadline) as waited:
                            await lane_ended.wait()
                        if waited.cancelled_caught:
                            break
                    if first_complete.is_set():
                        break
                results[peer] = None
                running += 1
                lanes.start_soon(lane, peer)
        outer.cancel_scope.cancel()  # every pull ended: nothing left to cut
    return results
