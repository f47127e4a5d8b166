"""Hostile peers and a hostile disk against reliable proof delivery (docs/protocol.md,
"Stream protocol /repp2p/proofs/1"): a client that names digests without end or holds its
stream, a server whose pages break the order an honest server keeps, drips, or never ends,
and a proof folder holding what no book wrote. Real py-libp2p hosts on 127.0.0.1; each
refusal is typed, bounded in time, and loses nothing held."""

from __future__ import annotations

import hashlib
import os
import tracemalloc

import multiaddr
import pytest
import trio
from libp2p.peer.peerinfo import info_from_p2p_addr

from repp2p.errors import ProtocolError
from repp2p.net.framing import FrameReader, close_quietly, write_cbor
from repp2p.net.host import build_host
from repp2p.net.params import SyncParams
from repp2p.net.proof_sync import MAX_HAVE, PROTOCOL, make_handler, pull
from repp2p.net.verdict import Verdict
from repp2p.node.proof_catchup import ProofCatchUp
from repp2p.testing import factories
from tests.digests import test_dispute_proofs as dp
from tests.net.test_proof_sync import FixedClock, Peer, _clock, _files

LOCAL = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")
#: short page timeouts: the bounds under test are a few of them
QUICK = SyncParams(max_invalid=2, request_timeout_s=0.5)


async def _connect(client, server) -> None:
    addr = multiaddr.Multiaddr(f"{server.get_addrs()[0]}/p2p/{server.get_id()}")
    with trio.fail_after(10):
        await client.connect(info_from_p2p_addr(addr))


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _old_proofs(n: int, label: str) -> list[bytes]:
    """``n`` validly signed dispute proofs of offers older than the replay window (IGNOREd
    ``too_old``, no penalty: anyone can sign as many), in SHA-256 order: what a hostile
    server can page through exactly as an honest one would."""
    proofs = [
        dp._proof(dp._offer(f"{label}{i}", dp.EPOCH - 6), outputs=("a", "b")).encode()
        for i in range(n)
    ]
    return sorted(proofs, key=_sha)


def _hostile(pages, delay: float = 0.0):
    """A proofs server answering request ``i`` with ``pages(i)`` after ``delay`` s."""

    async def handle(stream) -> None:
        reader = FrameReader(stream, 64 * 1024)
        try:
            i = 0
            while await reader.read_cbor() is not None:
                await trio.sleep(delay)
                await write_cbor(stream, pages(i))
                i += 1
        except Exception:  # the client cut us off
            pass
        finally:
            await close_quietly(stream)

    return handle


def _paged(proofs: list[bytes], *, endless: bool = False):
    """One proof per page, in order, each page's ``next`` its proof's SHA-256 (as an honest
    server pages); the last page ends the pull unless ``endless``."""

    def page(i: int) -> dict:
        if i >= len(proofs):
            return {"proofs": [], "next": None}
        last = i == len(proofs) - 1 and not endless
        return {"proofs": [proofs[i]], "next": None if last else _sha(proofs[i])}

    return page


# -- the server ----------------------------------------------------------------------------


async def test_a_server_remembers_at_most_max_have_digests_per_stream(tmp_path):
    """The server keeps every digest a stream's requests name (``have``), so a client that
    named 1,024 new ones in each request grew one stream's set without end: about 100 MB
    per 1,000 requests, ~1 GB within the stream's lifetime. An honest client names what it
    holds once, in its first request (at most ``MAX_HAVE``): more is malformed."""
    clock = _clock()
    peer = Peer(tmp_path / "s", clock)
    limits: list[str] = []
    server, client = build_host(factories.identity("hp-a")), build_host(factories.identity("hp-b"))
    async with server.run(listen_addrs=[LOCAL]), client.run(listen_addrs=[LOCAL]):
        server.set_stream_handler(
            PROTOCOL, make_handler(peer.router.served, QUICK, clock.now, on_limit=limits.append)
        )
        await _connect(client, server)
        with trio.fail_after(10):
            stream = await client.new_stream(server.get_id(), [PROTOCOL])
            reader = FrameReader(stream, QUICK.max_frame)
            first = [os.urandom(32) for _ in range(MAX_HAVE)]
            await write_cbor(stream, {"have": first, "after": b""})
            assert await reader.read_cbor() == {"proofs": [], "next": None}
            await write_cbor(stream, {"have": [os.urandom(32)], "after": b""})
            assert await reader.read_cbor() is None  # closed, not answered
    assert limits == ["malformed"]


async def test_a_client_cannot_hold_a_proofs_stream_for_longer_than_a_pull(tmp_path):
    """Each request must come within ``request_timeout_s``, and the stream's whole life was
    bounded by ``max_pages`` of them (10,000 x 10 s: 28 hours at the defaults): a client
    sending a small request now and then held the stream (and one of its
    ``streams_per_peer``) that long. A stream lives as long as a client's pull may."""
    clock = _clock()
    peer = Peer(tmp_path / "s", clock)
    limits: list[str] = []
    server, client = build_host(factories.identity("hp-c")), build_host(factories.identity("hp-d"))
    async with server.run(listen_addrs=[LOCAL]), client.run(listen_addrs=[LOCAL]):
        server.set_stream_handler(
            PROTOCOL, make_handler(peer.router.served, QUICK, clock.now, on_limit=limits.append)
        )
        await _connect(client, server)
        stream = await client.new_stream(server.get_id(), [PROTOCOL])
        reader = FrameReader(stream, QUICK.max_frame)
        answered = 0
        with trio.fail_after(5 * QUICK.request_timeout_s + 2):
            while True:
                await write_cbor(stream, {"have": [], "after": b"\xff" * 32})
                if await reader.read_cbor() is None:
                    break
                answered += 1
                await trio.sleep(0.6 * QUICK.request_timeout_s)
    assert answered >= 2 and limits == ["request_timeout"]


# -- the client ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    ["empty pages", "a proof named as held", "one proof on every page", "a proof past next"],
)
async def test_a_page_an_honest_server_would_not_send_ends_the_pull_at_once(tmp_path, case):
    """An honest server sends the proofs above the cursor that the client does not hold,
    in SHA-256 order, ``next`` the last one's: a page that is not the last carries at
    least one, and no proof comes twice. A server that broke this kept the client pulling
    for ``max_pages`` pages: empty pages whose cursor advanced (10,000 pages in 4.5 s on
    loopback, nothing received), or the client's own held proof on every page (judged
    ``known`` 4,174 times in 5 s). Now the first such page ends the pull, typed, and
    nothing held changes."""
    clock = _clock()
    victim = Peer(tmp_path / "v", clock)
    held = dp._proof(dp._offer("held"), outputs=("a", "b")).encode()
    assert victim.router.judge(held) is Verdict.ACCEPT
    before, files = victim.counted(), _files(tmp_path / "v")
    (old,) = _old_proofs(1, "replayed")

    def high(i: int) -> bytes:  # a cursor that advances, above (almost) every SHA-256
        return b"\xff" * 28 + (i + 1).to_bytes(4, "big")

    pages = {
        "empty pages": lambda i: {"proofs": [], "next": high(i)},
        "a proof named as held": lambda i: {"proofs": [held], "next": high(i)},
        "one proof on every page": lambda i: {"proofs": [old], "next": high(i)},
        # a cursor that stays below the proof: the next page may send it again
        "a proof past next": lambda i: {"proofs": [old], "next": (i + 1).to_bytes(32, "big")},
    }
    server, client = build_host(factories.identity("hp-e")), build_host(factories.identity("hp-f"))
    async with server.run(listen_addrs=[LOCAL]), client.run(listen_addrs=[LOCAL]):
        server.set_stream_handler(PROTOCOL, _hostile(pages[case]))
        await _connect(client, server)
        with trio.fail_after(5), pytest.raises(ProtocolError, match="proofs page"):
            stream = await client.new_stream(server.get_id(), [PROTOCOL])
            await pull(stream, victim.router.have(), victim.router.judge_pulled, QUICK)
    assert sum(victim.refusals().values()) <= 1  # at most the first page's proof judged
    assert victim.counted() == before and _files(tmp_path / "v") == files


async def test_a_server_that_drips_well_formed_pages_is_cut_off_at_the_pull_bound(tmp_path):
    """Pages in order, each just inside ``request_timeout_s``, each with one new proof the
    client IGNOREs (validly signed, too old: anyone can sign as many): nothing a page check
    can refuse. Such a server held a pull for ``max_pages`` page timeouts; a pull now ends
    within a few of them, and what it judged stays judged."""
    clock = _clock()
    victim = Peer(tmp_path / "v", clock)
    drip = _paged(_old_proofs(20, "drip"))
    server, client = build_host(factories.identity("hp-g")), build_host(factories.identity("hp-h"))
    async with server.run(listen_addrs=[LOCAL]), client.run(listen_addrs=[LOCAL]):
        server.set_stream_handler(PROTOCOL, _hostile(drip, delay=0.6 * QUICK.request_timeout_s))
        await _connect(client, server)
        with trio.fail_after(7 * QUICK.request_timeout_s), pytest.raises(ProtocolError):
            stream = await client.new_stream(server.get_id(), [PROTOCOL])
            await pull(stream, victim.router.have(), victim.router.judge_pulled, QUICK)
    assert 1 <= victim.refusals().get("too_old", 0) < 20


# -- the pull loop -------------------------------------------------------------------------


@pytest.mark.parametrize("hostile", ["drips", "never ends"])
async def test_a_hostile_server_does_not_keep_the_loop_from_an_honest_one(tmp_path, hostile):
    """The node's loop pulls from one peer at a time, a failed pull going to the next. A
    hostile server first in turn that drips its pages (within each page's timeout) kept
    the loop for the whole pull; one that pages without end until ``max_pages`` made the
    pull count as done: either way the epoch's pull never reached the honest peer. A pull
    now ends within its bound, and only a complete one counts as done."""
    clock = _clock()
    holder = Peer(tmp_path / "holder", clock)
    proof = dp._proof(dp._offer("honest"), outputs=("a", "b")).encode()
    assert holder.router.judge(proof) is Verdict.ACCEPT
    fresh = Peer(tmp_path / "fresh", clock)
    if hostile == "drips":
        # 60 pages at 0.3 s: 18 s held without the bound, well past the wait below
        params, delay, pages = QUICK, 0.6 * QUICK.request_timeout_s, _paged(_old_proofs(60, "d"))
    else:
        params = SyncParams(max_invalid=2, request_timeout_s=0.5, max_pages=3)
        delay, pages = 0.0, _paged(_old_proofs(20, "n"), endless=True)
    bad, good = sorted(
        (build_host(factories.identity("hp-x")), build_host(factories.identity("hp-y"))),
        key=lambda h: h.get_id().to_base58(),
    )
    client = build_host(factories.identity("hp-client"))
    async with (
        bad.run(listen_addrs=[LOCAL]),
        good.run(listen_addrs=[LOCAL]),
        client.run(listen_addrs=[LOCAL]),
    ):
        bad.set_stream_handler(PROTOCOL, _hostile(pages, delay))
        good.set_stream_handler(PROTOCOL, make_handler(holder.router.served, params, clock.now))
        await _connect(client, bad)
        await _connect(client, good)
        hosts = {h.get_id().to_base58(): h for h in (bad, good)}
        loop = ProofCatchUp(
            router=fresh.router,
            disputes=fresh.disputes,
            peers=lambda: list(hosts),
            open_stream=lambda peer: client.new_stream(hosts[peer].get_id(), [PROTOCOL]),
            params=params,
            clock=clock,
            epoch_s=dp.EPOCH_S,
            tick_s=0.05,
            is_synced=lambda: True,
            view_ready=lambda epoch: True,
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(loop.run)
            # generous for a loaded 2-core machine (stream opens, proof checks), and still
            # far below what the hostile peer would hold the loop for without the bounds
            # until the honest pull is recorded, not only its proof counted: the proof is
            # judged while its page is read, before the pull returns and is recorded
            # (cancelling in between lost the record under load)
            good_id = good.get_id().to_base58()
            with trio.fail_after(5 * params.request_timeout_s + 8):
                while not any(peer == good_id for peer, _ in loop.pulls):
                    await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    assert [peer for peer, _ in loop.pulls] == [bad.get_id().to_base58(), good.get_id().to_base58()]
    assert fresh.counted() == holder.counted()


# -- the proof folder ----------------------------------------------------------------------


def _folder_with(tmp_path, make) -> tuple:
    """A peer folder whose dispute book kept one proof, and ``make(disputes folder)``."""
    peer = Peer(tmp_path / "p", FixedClock(dp.NOW))
    assert peer.router.judge(dp._proof(dp._offer("kept"), outputs=("a", "b")).encode()) is (
        Verdict.ACCEPT
    )
    folder = tmp_path / "p" / "disputes"
    make(folder)
    return peer, folder


def test_a_directory_among_kept_proofs_does_not_stop_the_book(tmp_path):
    """A directory named like a proof file: reading it failed, and deleting it failed with
    IsADirectoryError out of the book's constructor: the node could not start."""
    peer, folder = _folder_with(tmp_path, lambda f: (f / ("00" * 32 + ".cbor")).mkdir())
    again = Peer(tmp_path / "p", FixedClock(dp.NOW))
    assert again.counted() == peer.counted() and again.counted()[0]
    assert (folder / ("00" * 32 + ".cbor")).is_dir()  # left alone: not a proof file


@pytest.mark.parametrize("entry", ["a FIFO", "a link to a FIFO"])
async def test_a_fifo_among_kept_proofs_does_not_hang_the_start(tmp_path, entry):
    """A FIFO (or a link to one, or to ``/dev/zero``: 2.2 GB read in 5 s) named like a
    proof file: reading it blocked the book's constructor for ever. Only regular files are
    read; the odd entry is dropped."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    name = "00" * 32 + ".cbor"

    def make(folder):
        if entry == "a FIFO":
            os.replace(fifo, folder / name)
        else:
            (folder / name).symlink_to(fifo)

    peer, folder = _folder_with(tmp_path, make)
    try:
        with trio.fail_after(5):
            again = await trio.to_thread.run_sync(
                lambda: Peer(tmp_path / "p", FixedClock(dp.NOW)), abandon_on_cancel=True
            )
    finally:  # a reader still blocked in open() (the test failing) gets its EOF
        target = folder / name if entry == "a FIFO" else fifo
        if target.exists():
            try:
                os.close(os.open(target, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
    assert again.counted() == peer.counted() and again.counted()[0]
    assert not os.path.lexists(folder / name)


def test_an_oversized_file_among_kept_proofs_is_not_read(tmp_path):
    """A file far above any proof's size cap was read whole before the book refused it
    (a 64 MiB one cost 64 MiB of memory at start). It is now dropped unread."""
    name = "00" * 32 + ".cbor"

    def make(folder):
        with open(folder / name, "wb") as f:
            f.truncate(64 * 1024 * 1024)  # sparse: costs no disk

    peer, folder = _folder_with(tmp_path, make)
    tracemalloc.start()
    try:
        again = Peer(tmp_path / "p", FixedClock(dp.NOW))
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"{peak / 2**20:.0f} MiB allocated loading the folder"
    assert again.counted() == peer.counted() and not (folder / name).exists()
