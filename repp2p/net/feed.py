"""``/repp2p/feed/1``: per-task records spread by pulls from a few upstream peers.

Why not gossip: a task produces an offer, k claims, k receipts and k feedbacks. Published
on GossipSub, each is a separate message that every node receives several times, each time
paying py-libp2p's per-message cost (RPC framing, Noise, signed peer records, validation),
which capped a devnet at a few tasks per second (measurements: docs/design-notes.md,
"Feeds"). Nobody needs these records within milliseconds: views take task records
two epochs late (repp2p.viewer). So they travel in batches instead: every node follows the
*feed* of ``upstreams`` full nodes, pulling every ``interval_s`` whatever each upstream
accepted since the last pull, and serves its own feed the same way. Records hop along a
random pull graph: each node picks its upstreams at random and swaps one every
``rotate_s``, and follows back the full nodes that chose it (so a node that is followed is
pulled from in turn, and records do not stay where they entered). A record reaches every node in a
few pulls, and each node receives it about ``2 x upstreams`` times, in frames with many
others; the copies cost a hash lookup, not a signature check.

Conversation, one stream per upstream kept open, client first, CBOR frames
(:mod:`repp2p.net.framing`), repeated::

    client -> {"after": int, "limit": uint, "back"?: bool}
        after: the last feed position received from this server; -1 on first contact
        (the server then starts at what it received ``rewind_s`` ago); back: true when the
        client pulls because the server pulls from it (the server then does not follow
        back in turn); otherwise the server follows the client back while the stream lives
    server -> {"records": [bytes, ...], "next": int}
        records: encoded records in the order the server received them, at most ``limit``
        and ``page_bytes``; next: the position to ask after next (below ``after`` only
        when the server's store was reset and it started over)

Feed positions are the server's own (its store's feed sequence) and only grow. Every record
goes through the same pipeline as gossip (decode, verify, validate, store); an upstream that
sends more than ``max_invalid`` invalid records, breaks the protocol or stalls is dropped
and avoided for :data:`BACKOFF_S`. Upstreams are pulled side by side.
The server skips records that expired. Who originates a per-task record hands it to the
peers that need it directly (a client's offer travels with its request, its feedback is
handed to the task's nodes over ``/repp2p/task/1``), so the record enters some node's feed.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from repp2p.errors import TIMEOUT_LIMIT, LimitError, ProtocolError, limit_of
from repp2p.net.framing import FrameReader, remote_peer, reset_quietly, write_cbor
from repp2p.net.params import FeedParams
from repp2p.store import RecordStoreAPI

PROTOCOL = "/repp2p/feed/1"
#: a server closes a feed stream without a request for this long
IDLE_TIMEOUT_S = 120.0
#: ...and a request, once begun, must be complete within this
REQUEST_TIMEOUT_S = 10.0
#: peers followed back at most (beyond the upstreams we choose)
MAX_FOLLOW_BACK = 8
#: feed streams one peer may hold open to us at once
MAX_STREAMS_PER_PEER = 2
#: a server answers one stream's requests at most this often (seconds between them)
MIN_REQUEST_GAP_S = 0.02
#: the largest page frame a client accepts: the largest page_bytes a server may use, plus
#: one record above it and CBOR overhead (pages of other servers' settings must fit)
MAX_PAGE_FRAME = 4 * 1024 * 1024 + 512 * 1024
#: an upstream dropped for a fault (invalid records, bad page, stall) is avoided this long
BACKOFF_S = 300.0
log = logging.getLogger("repp2p.feed")


def _request_ok(obj: Any) -> tuple[int, int, bool]:
    if (
        type(obj) is not dict
        or not {"after", "limit"} <= obj.keys() <= {"after", "limit", "back"}
        or type(obj.get("back", False)) is not bool
        or type(obj["after"]) is not int
        or obj["after"] < -1
        or obj["after"] >= 2**63
        or type(obj["limit"]) is not int
        or obj["limit"] < 1
    ):
        raise ProtocolError("bad feed request")
    return obj["after"], obj["limit"], obj.get("back", False)


def serve_page(
    store: RecordStoreAPI, after: int, limit: int, params: FeedParams, now: float
) -> dict[str, Any]:
    """The answer to one feed request (``after`` = -1: start ``rewind_s`` back)."""
    if after == -1 or after > store.feed_position(2**62):
        # First contact, or a cursor past our end: our store was reset since (positions
        # restart), so start over at the rewind point rather than serve nothing for ever.
        after = store.feed_position(int(now) - params.rewind_s)
    entries, last = store.feed(after, min(limit, params.page_records))
    records: list[bytes] = []
    size = 0
    for position, data, expires in entries:
        if records and size + len(data) > params.page_bytes:
            last = position - 1  # resume at this record next time
            break
        if expires > now:  # the client would reject an expired record
            records.append(data)
            size += len(data)
    return {"records": records, "next": last}


def make_handler(
    store: RecordStoreAPI,
    params: FeedParams,
    clock: Callable[[], float] = time.time,
    follower: FeedFollower | None = None,
    on_limit: Callable[[str], None] | None = None,
) -> Callable[[Any], Awaitable[None]]:
    """A stream handler serving this store's feed, request after request.

    With ``follower``, a peer that chose to pull from us is followed back while its stream
    lives (its requests say ``back: true`` when it is itself following back).
    ``on_limit(name)`` is told each time a peer's stream is ended by a limit.
    """
    count = on_limit or (lambda limit: None)

    open_streams: dict[str | None, int] = {}

    async def handle(stream: Any) -> None:
        reader = FrameReader(stream, max_frame=4096)  # requests are tiny
        peer, following_back = remote_peer(stream), False
        open_streams[peer] = open_streams.get(peer, 0) + 1
        try:
            if open_streams[peer] > MAX_STREAMS_PER_PEER:
                raise LimitError(
                    "streams_per_peer", f"more than {MAX_STREAMS_PER_PEER} feed streams"
                )
            while True:
                with trio.move_on_after(IDLE_TIMEOUT_S) as idle:
                    more = await reader.wait_data()
                if idle.cancelled_caught or not more:
                    break
                # Once a request has begun it must arrive whole in REQUEST_TIMEOUT_S: a
                # peer dripping a byte at a time cannot hold the stream for the idle time.
                with trio.fail_after(REQUEST_TIMEOUT_S):
                    request = await reader.read_cbor()
                if request is None:
                    break
                after, limit, back = _request_ok(request)
                if follower is not None and peer and not back and not following_back:
                    following_back = follower.follow_back(peer)
                await write_cbor(stream, serve_page(store, after, limit, params, clock()))
                # Pages cost us a query and a frame: one stream gets a bounded rate.
                await trio.sleep(MIN_REQUEST_GAP_S)
        except ProtocolError as exc:
            log.info("feed: dropping a client: %s", exc)
            count(limit_of(exc))
        except trio.TooSlowError:
            log.info("feed: dropping a client: request not received in time")
            count(TIMEOUT_LIMIT)
        except Exception as exc:  # a reset stream, a closed connection
            log.debug("feed: stream ended: %r", exc)
        finally:
            open_streams[peer] -= 1
            if not open_streams[peer]:
                del open_streams[peer]
            if following_back:
                follower.stop_following_back(peer)
            await reset_quietly(stream)

    return handle


class _Upstream:
    __slots__ = ("back", "chosen_at", "peer", "reader", "stream")

    def __init__(
        self, peer: str, stream: Any, reader: FrameReader, chosen_at: float, back: bool
    ) -> None:
        self.peer, self.stream, self.reader, self.chosen_at = peer, stream, reader, chosen_at
        self.back = back  # followed back (it pulls from us), not chosen by us


class FeedFollower:
    """Pulls per-task records from ``params.upstreams`` peers, forever (see the module doc).

    Args:
        candidates: peer IDs we may pull from now (connected full nodes).
        open_stream: opens a negotiated ``/repp2p/feed/1`` stream to a peer ID.
        accept: the record pipeline for a page: one verdict per record, False only when
            the record is the upstream's fault (invalid, forged); what it accepted is kept
            whatever follows.
        params: feed settings.
        clock: seconds (time.time in a node).
        rng: picks upstreams.
    """

    def __init__(
        self,
        candidates: Callable[[], list[str]],
        open_stream: Callable[[str], Awaitable[Any]],
        accept: Callable[[list[bytes]], list[bool]],
        params: FeedParams,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._candidates = candidates
        self._open_stream = open_stream
        self._accept = accept
        self.params = params
        self._clock = clock
        self._rng = rng or random.Random()
        self.upstreams: dict[str, _Upstream] = {}
        #: peer -> (last position received, when): resumed when the peer is chosen again
        self._cursors: dict[str, tuple[int, float]] = {}
        self._invalid_from: dict[str, int] = {}  # per peer, since its last fault
        self._backoff: dict[str, float] = {}  # peer -> until when we avoid it
        self._wanted_back: set[str] = set()  # peers pulling from us: we pull from them too
        self._rotated_at = clock()
        self.received = self.valid = self.invalid = 0

    async def run(self) -> None:
        """Pull every ``interval_s`` until cancelled; never raises for a peer's fault."""
        interval = self.params.interval_s
        try:
            while True:
                if await self.round():
                    interval = self.params.interval_s
                else:  # quiet network: poll less (each empty pull still costs both sides)
                    interval = min(interval * 2, self.params.idle_interval_s)
                await trio.sleep(interval)
        finally:
            for up in list(self.upstreams.values()):
                await reset_quietly(up.stream)

    def follow_back(self, peer: str) -> bool:
        """``peer`` chose to pull from us: pull from it too (so every node that follows
        someone is followed, and no record stays where it entered). False when at the cap."""
        if peer in self._wanted_back or len(self._wanted_back) >= MAX_FOLLOW_BACK:
            return False
        # Only full nodes we could pull from (light clients and unknown keys would take the
        # slots and never be pulled), and none we dropped for a fault lately.
        if self._backed_off(peer) or peer not in self._candidates():
            return False
        self._wanted_back.add(peer)
        return True

    def _backed_off(self, peer: str) -> bool:
        until = self._backoff.get(peer)
        if until is None:
            return False
        if self._clock() >= until:
            del self._backoff[peer]
            return False
        return True

    def stop_following_back(self, peer: str) -> None:
        """``peer`` stopped pulling from us."""
        self._wanted_back.discard(peer)

    async def round(self) -> int:
        """Refresh the upstream set and pull once from each, all at once (a slow upstream
        delays nobody else); returns the valid records taken."""
        await self._choose()
        taken = 0

        async def pull(up: _Upstream) -> None:
            nonlocal taken
            try:
                with trio.fail_after(self.params.request_timeout_s * self.params.pages_per_round):
                    taken += await self._pull(up)
            except (ProtocolError, trio.TooSlowError) as exc:
                log.info("feed: dropping upstream %s for %.0f s: %s", up.peer, BACKOFF_S, exc)
                self._backoff[up.peer] = self._clock() + BACKOFF_S
                self._wanted_back.discard(up.peer)
                self._invalid_from[up.peer] = 0
                await self._drop(up.peer)
            except Exception as exc:  # the stream or connection went away
                log.debug("feed: upstream %s failed: %r", up.peer, exc)
                await self._drop(up.peer)

        async with trio.open_nursery() as nursery:
            for up in list(self.upstreams.values()):
                nursery.start_soon(pull, up)
        return taken

    async def _pull(self, up: _Upstream) -> int:
        p = self.params
        after = self._cursor(up.peer)
        taken = 0
        for _ in range(p.pages_per_round):
            request: dict[str, Any] = {"after": after, "limit": p.page_records}
            if up.back:
                request["back"] = True  # do not follow us back in turn
            await write_cbor(up.stream, request)
            with trio.fail_after(p.request_timeout_s):
                reply = await up.reader.read_cbor()
            if (
                type(reply) is not dict
                or reply.keys() != {"records", "next"}
                or type(reply["records"]) is not list
                or len(reply["records"]) > p.page_records
                or type(reply["next"]) is not int
                or not 0 <= reply["next"] < 2**63
            ):
                raise ProtocolError("bad feed page")
            batch = reply["records"]
            if any(type(data) is not bytes for data in batch):
                raise ProtocolError("a feed record is not a byte string")
            verdicts = self._accept(batch) if batch else []
            good = sum(verdicts)
            self.received += len(batch)
            self.valid += good
            self.invalid += len(batch) - good
            taken += good
            self._invalid_from[up.peer] = self._invalid_from.get(up.peer, 0) + len(batch) - good
            if self._invalid_from[up.peer] > p.max_invalid:
                raise ProtocolError(f"sent {self._invalid_from[up.peer]} invalid records")
            after = reply["next"]
            self._cursors[up.peer] = (after, self._clock())
            if len(reply["records"]) < p.page_records:
                break  # caught up (a short page may also be a byte-capped one: next round)
        return taken

    def _cursor(self, peer: str) -> int:
        known = self._cursors.get(peer)
        if known is None or self._clock() - known[1] > self.params.rewind_s:
            return -1  # new, or followed too long ago: start at the server's rewind point
        return known[0]

    async def _choose(self) -> None:
        candidates = [c for c in self._candidates() if not self._backed_off(c)]
        alive = set(candidates)
        for up in list(self.upstreams.values()):
            if up.peer not in alive or (up.back and up.peer not in self._wanted_back):
                await self._drop(up.peer)
        chosen = [u for u in self.upstreams.values() if not u.back]
        now = self._clock()
        if (
            now - self._rotated_at >= self.params.rotate_s
            and chosen
            and len(candidates) > len(chosen)
        ):
            # Swap the longest-held upstream for a fresh one: the pull graph keeps mixing.
            oldest = min(chosen, key=lambda u: u.chosen_at)
            await self._drop(oldest.peer)
            chosen.remove(oldest)
            self._rotated_at = now
        spare = [c for c in candidates if c not in self.upstreams]
        self._rng.shuffle(spare)
        while len(chosen) < self.params.upstreams and spare:
            up = await self._open(spare.pop(), now, back=False)
            if up is not None:
                chosen.append(up)
        for peer in sorted(self._wanted_back & alive):
            if peer not in self.upstreams:
                await self._open(peer, now, back=True)

    async def _open(self, peer: str, now: float, *, back: bool) -> _Upstream | None:
        try:
            with trio.fail_after(self.params.request_timeout_s):
                stream = await self._open_stream(peer)
        except Exception as exc:
            log.debug("feed: cannot open a stream to %s: %r", peer, exc)
            return None
        reader = FrameReader(stream, max_frame=MAX_PAGE_FRAME)
        up = self.upstreams[peer] = _Upstream(peer, stream, reader, now, back)
        return up

    async def _drop(self, peer: str) -> None:
        up = self.upstreams.pop(peer, None)
        if up is not None:
            await reset_quietly(up.stream)
