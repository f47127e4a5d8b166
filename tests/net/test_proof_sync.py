"""Reliable proof delivery (docs/protocol.md, "Stream protocol /repp2p/proofs/1"): a peer
that joins or restarts after a proof was gossiped pulls it and counts it; a peer whose view
could not judge a proof yet keeps it and counts it once its view can; hostile servers and
clients are refused with a typed reason, and nothing held is lost. Real py-libp2p hosts on
127.0.0.1; the peers' views are the dispute tests' fixed verdicts and rankings."""

from __future__ import annotations

import hashlib

import cbor2
import multiaddr
import pytest
import trio
from libp2p.peer.peerinfo import info_from_p2p_addr

from repp2p.clock import TrioClock
from repp2p.digests import build_work, conflict_proof
from repp2p.digests.disputes import MAX_DISPUTE_SIZE, decode_dispute
from repp2p.errors import ProtocolError
from repp2p.net.framing import FrameReader, write_cbor
from repp2p.net.host import build_host
from repp2p.net.params import SyncParams
from repp2p.net.proof_sync import MAX_HAVE, PROTOCOL, make_handler, pull
from repp2p.net.verdict import Verdict
from repp2p.node import disputes as disputes_module
from repp2p.node.app import Node
from repp2p.node.disputes import DisputeBook
from repp2p.node.offences import OffenceBook, ProofRouter
from repp2p.node.proof_catchup import ProofCatchUp
from repp2p.node.proof_files import ProofFolder
from repp2p.records import sign
from repp2p.testing import factories
from repp2p.testing.factories import task_records
from repp2p.testing.network import dev_params, node_config, start_node
from tests.digests import test_dispute_proofs as dp
from tests.digests import test_offence_gossip as og

LOCAL = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")
PARAMS = SyncParams(max_invalid=2, request_timeout_s=5.0)
DIGEST_VIEWS = dev_params().replace(reputation_source="digests")


class Peer:
    """One peer's proof books and router, on a clock at ``dp.NOW``; its view ranks every
    offer unless ``ranks_ready`` is False (the view of the offer's epoch not built yet)."""

    def __init__(self, folder, clock) -> None:
        self.ranks_ready = True
        self.folder = folder
        self.clock = clock
        self.disputes = DisputeBook(
            folder=folder / "disputes",
            epoch_s=dp.EPOCH_S,
            max_age_epochs=5,
            keep_epochs=200,
            now=clock.now,
            verdict_of=lambda peer, _epoch: dp.VERDICTS.get(peer),
            ranks_of=lambda offer: dp._ranks(offer) if self.ranks_ready else None,
        )
        self.offences = OffenceBook(
            folder=folder / "offences",
            epoch_s=og.EPOCH_S,
            horizon_epochs=16,
            keep_epochs=200,
            now=clock.now,
        )
        self.router = ProofRouter(self.disputes, self.offences)

    def refusals(self) -> dict[str, int]:
        """Refusals by reason, of the router and both books."""
        out: dict[str, int] = {}
        for part in (self.router.refused, self.disputes.refused, self.offences.refused):
            for reason, n in part.items():
                out[reason] = out.get(reason, 0) + n
        return out

    def counted(self) -> tuple[list[bytes], list[tuple]]:
        """What this peer's digest views read: the disputed records of the window and the
        offences held (record IDs, offence identities)."""
        ids = [r.record_id for r in self.disputes.records(dp.EPOCH - 5, dp.EPOCH)]
        offences = [(o.kind, o.peer_id, o.epoch) for o in self.offences.offences(og.EPOCH)]
        return ids, offences


def _files(folder) -> list[bytes]:
    return sorted(p.read_bytes() for p in folder.rglob("*.cbor"))


async def _connect(client, server) -> None:
    addr = multiaddr.Multiaddr(f"{server.get_addrs()[0]}/p2p/{server.get_id()}")
    with trio.fail_after(10):
        await client.connect(info_from_p2p_addr(addr))


def _loop(peer: Peer, clock, peers, open_stream, *, tick_s: float = 0.05, **kw) -> ProofCatchUp:
    """The node's pull loop for ``peer``: ``peers()`` connected, ``open_stream(peer)``."""
    return ProofCatchUp(
        router=peer.router,
        disputes=peer.disputes,
        peers=peers,
        open_stream=open_stream,
        params=PARAMS,
        clock=clock,
        epoch_s=dp.EPOCH_S,
        tick_s=tick_s,
        is_synced=lambda: True,
        **kw,
    )


def _catchup(peer: Peer, server, client, clock, **kw) -> ProofCatchUp:
    """The node's pull loop for ``peer``, pulling from ``server`` over ``client``."""
    return _loop(
        peer,
        clock,
        lambda: [server.get_id().to_base58()],
        lambda _peer: client.new_stream(server.get_id(), [PROTOCOL]),
        **kw,
    )


def _clock() -> TrioClock:
    return TrioClock(dp.NOW - trio.current_time())


async def _pull(client_host, server_host, peer: Peer):
    with trio.fail_after(20):
        stream = await client_host.new_stream(server_host.get_id(), [PROTOCOL])
        return await pull(stream, peer.router.have(), peer.router.judge_pulled, PARAMS)


async def test_a_peer_that_joins_after_the_gossip_pulls_every_proof_and_counts_it(tmp_path):
    clock = _clock()
    old = Peer(tmp_path / "old", clock)
    offer = dp._offer("late")
    assert old.router.judge(dp._proof(offer, outputs=("right", "bad")).encode()) is Verdict.ACCEPT
    assert old.router.judge(og._conflict()) is Verdict.ACCEPT
    late = Peer(tmp_path / "late", clock)
    assert late.counted() == ([], [])
    server, client = build_host(factories.identity("ps-a")), build_host(factories.identity("ps-b"))
    async with server.run(listen_addrs=[LOCAL]), client.run(listen_addrs=[LOCAL]):
        server.set_stream_handler(PROTOCOL, make_handler(old.router.served, PARAMS, clock.now))
        await _connect(client, server)
        result = await _pull(client, server, late)
        assert result.complete and (result.accepted, result.rejected) == (2, 0)
        assert late.counted() == old.counted() and late.counted()[0] and late.counted()[1]
        # a second pull sends nothing: the client named what it holds
        again = await _pull(client, server, late)
        assert again.complete and again.received == 0
        # a later proof with more receipts (a replica's) reaches the late peer too
        more = dp._proof(offer, outputs=("right", "bad", "right"))
        assert old.router.judge(more.encode()) is Verdict.ACCEPT
        third = await _pull(client, server, late)
        assert third.accepted == 1 and len(late.disputes.get(offer.record_id).receipts) == 3
    # restarted from its disk, the late peer holds what it pulled
    restarted = Peer(tmp_path / "late", clock)
    assert restarted.counted() == old.counted()


async def test_a_restarted_peer_pulls_what_it_missed_while_down_from_a_peer_of_its_choice(
    tmp_path,
):
    """A peer down while a proof was gossiped restarts with what it kept on disk and gets
    the rest by its per-epoch pull (the node's loop, on real hosts)."""
    clock = _clock()
    up = Peer(tmp_path / "up", clock)
    down = Peer(tmp_path / "down", clock)
    kept = dp._proof(dp._offer("kept"), outputs=("a", "b")).encode()
    assert up.router.judge(kept) is Verdict.ACCEPT and down.router.judge(kept) is Verdict.ACCEPT
    missed = dp._proof(dp._offer("missed"), outputs=("a", "b", "a")).encode()
    assert up.router.judge(missed) is Verdict.ACCEPT  # gossiped while `down` was down
    restarted = Peer(tmp_path / "down", clock)
    assert len(restarted.disputes) == 1
    server, client = build_host(factories.identity("ps-c")), build_host(factories.identity("ps-d"))
    async with server.run(listen_addrs=[LOCAL]), client.run(listen_addrs=[LOCAL]):
        server.set_stream_handler(PROTOCOL, make_handler(up.router.served, PARAMS, clock.now))
        await _connect(client, server)
        loop = _catchup(restarted, server, client, clock, view_ready=lambda epoch: True)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(loop.run)
            with trio.fail_after(20):
                while not loop.pulls:
                    await trio.sleep(0.05)
            await trio.sleep(0.3)  # a few more ticks: still one pull this epoch
            nursery.cancel_scope.cancel()
    assert restarted.counted() == up.counted()
    ((peer, result),) = loop.pulls  # once per epoch: one pull
    assert peer == server.get_id().to_base58() and result is not None and result.accepted == 1


def test_the_grace_pull_is_due_late_in_the_grace_whatever_the_phase():
    """Where the grace is shorter than an epoch, the second pull of each epoch is due
    between 40% and 15% of the grace before its end (at least 60% of the grace after the
    deadline of a dispute the next view counts); otherwise one pull an epoch."""

    def loop(phase: float, grace: float | None) -> ProofCatchUp:
        return ProofCatchUp(
            router=None,
            disputes=None,
            peers=list,
            open_stream=None,
            params=PARAMS,
            clock=None,
            epoch_s=600,
            tick_s=1.0,
            is_synced=lambda: True,
            view_ready=lambda epoch: True,
            phase=phase,
            grace_s=grace,
        )

    for phase in (0.0, 0.15, 0.5, 0.85, 0.999):
        first, second = loop(phase, 120).pull_times(10)
        assert first == (10 + phase) * 600
        assert 11 * 600 - 0.4 * 120 <= second <= 11 * 600 - 0.15 * 120
        assert loop(phase, 600).pull_times(10) == loop(phase, None).pull_times(10) == [first]


async def test_no_pull_is_spent_while_no_peer_is_connected(tmp_path):
    """A pull due while no peer is connected waits for one: the epoch's tries (3, each to
    the next peer while pulls fail) are not spent on nobody."""
    clock = _clock()
    peer = Peer(tmp_path / "p", clock)
    connected: list[str] = []
    opened: list[str] = []

    async def open_stream(name: str):
        opened.append(name)
        raise ConnectionError("refused")  # a peer that does not speak the protocol

    loop = _loop(
        peer, clock, lambda: list(connected), open_stream, tick_s=0.02, view_ready=lambda e: True
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(loop.run)
        await trio.sleep(0.3)  # ~15 looks with nobody to pull from
        assert opened == [] and loop.pulls == []
        connected.append("peer-a")
        with trio.fail_after(10):
            while len(opened) < ProofCatchUp.PULLS_PER_EPOCH:
                await trio.sleep(0.02)
        await trio.sleep(0.3)  # the tries of this epoch are spent: no fourth
        nursery.cancel_scope.cancel()
    assert opened == ["peer-a"] * ProofCatchUp.PULLS_PER_EPOCH
    assert [r for _, r in loop.pulls] == [None] * ProofCatchUp.PULLS_PER_EPOCH


async def test_with_a_grace_shorter_than_an_epoch_a_missed_proof_is_pulled_before_the_boundary(
    tmp_path,
):
    """``proof_grace_s`` shorter than an epoch: a dispute counts at the first boundary
    more than a grace after its deadline, so the per-epoch pull alone could come after the
    view that counts it. The loop pulls once more late in the epoch's last ``grace``
    seconds (40% to 15% of it before the boundary): a proof the peer missed after its
    first pull is held before the boundary."""
    grace = 20
    boundary = (dp.EPOCH + 1) * dp.EPOCH_S
    books = TrioClock(boundary - 30 - trio.current_time())  # the books' clock, in EPOCH
    up = Peer(tmp_path / "up", books)
    late = Peer(tmp_path / "late", books)
    first = dp._proof(dp._offer("first"), outputs=("a", "b")).encode()
    assert up.router.judge(first) is Verdict.ACCEPT
    server, client = build_host(factories.identity("ps-g")), build_host(factories.identity("ps-h"))
    async with server.run(listen_addrs=[LOCAL]), client.run(listen_addrs=[LOCAL]):
        server.set_stream_handler(PROTOCOL, make_handler(up.router.served, PARAMS, books.now))
        await _connect(client, server)
        # the loop's clock starts 2 s before the grace pull (phase 0: 0.4 * grace before
        # the boundary), once the hosts are up: the first pull is due at once, the second
        # at its time, whatever the set-up took
        clock = TrioClock(boundary - 0.4 * grace - 2 - trio.current_time())
        loop = _catchup(late, server, client, clock, view_ready=lambda epoch: True, grace_s=grace)
        _, at = loop.pull_times(dp.EPOCH)
        assert at == boundary - 0.4 * grace
        async with trio.open_nursery() as nursery:
            nursery.start_soon(loop.run)
            with trio.fail_after(20):
                while not loop.pulls:
                    await trio.sleep(0.05)
            # gossiped now, after our first pull, and missed by ``late``
            missed = dp._proof(dp._offer("missed"), outputs=("a", "b", "a")).encode()
            assert up.router.judge(missed) is Verdict.ACCEPT
            with trio.fail_after(20):
                while len(loop.pulls) < 2:
                    await trio.sleep(0.05)
            pulled_at = clock.now()
            await trio.sleep(0.3)  # a few more ticks: no third pull in this epoch
            nursery.cancel_scope.cancel()
    assert at <= pulled_at < boundary  # at its time, before the view that counts it
    assert [r.accepted for _, r in loop.pulls] == [1, 1]
    assert late.counted() == up.counted() and len(late.counted()[0]) > 0


async def test_a_proof_that_came_before_the_view_was_ready_is_counted_once_it_is(tmp_path):
    """Pulled (or gossiped) while the view of the offer's epoch is not built: IGNOREd and
    kept pending, then held when the node's loop sees the new view."""
    clock = _clock()
    source = Peer(tmp_path / "source", clock)
    early = Peer(tmp_path / "early", clock)
    early.ranks_ready = False
    proof = dp._proof(dp._offer("early"), outputs=("x", "y")).encode()
    assert source.router.judge(proof) is Verdict.ACCEPT
    assert early.router.judge(proof) is Verdict.IGNORE  # gossip, view not ready
    assert early.disputes.refused == {"unranked": 1} and early.disputes.pending == 1
    assert early.counted() == ([], [])
    server, client = build_host(factories.identity("ps-e")), build_host(factories.identity("ps-f"))
    async with server.run(listen_addrs=[LOCAL]), client.run(listen_addrs=[LOCAL]):
        server.set_stream_handler(PROTOCOL, make_handler(source.router.served, PARAMS, clock.now))
        await _connect(client, server)
        # the pull does not bring it again (we named it as pending)
        assert (await _pull(client, server, early)).received == 0
        view_built = False
        loop = _catchup(early, server, client, clock, view_ready=lambda epoch: view_built)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(loop.run)
            await trio.sleep(0.3)
            assert early.disputes.pending == 1  # retried with a backoff: still unranked
            early.ranks_ready = view_built = True  # the view of the offer's epoch is built
            with trio.fail_after(20):
                while early.disputes.pending:
                    await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    assert early.counted() == source.counted() and early.counted()[0]
    assert early.disputes.pending_counts["accepted"] == 1


async def test_hostile_proofs_pulled_are_refused_typed_and_a_liar_is_cut_off(tmp_path):
    clock = _clock()
    victim = Peer(tmp_path / "victim", clock)
    offer = dp._offer("held")
    held_proof = dp._proof(offer, outputs=("right", "bad")).encode()
    assert victim.router.judge(held_proof) is Verdict.ACCEPT
    assert victim.router.judge(og._conflict()) is Verdict.ACCEPT
    before, files = victim.counted(), _files(tmp_path / "victim")
    forged = bytearray(dp._proof(dp._offer("forged"), outputs=("a", "b")).encode())
    forged[-40] ^= 1  # inside the last receipt's signed bytes
    # each proof with the reason it is refused for, and whether that is a REJECT
    refusals = {
        bytes(MAX_DISPUTE_SIZE + 1): ("oversize", True),
        dp._proof(dp._offer("old", dp.EPOCH - 6), outputs=("a", "b")).encode(): (
            "too_old",
            False,
        ),
        og._conflict(epoch=og.EPOCH - 17, label="old"): ("too_old", False),  # an offence
        bytes(forged): ("bad_record", True),  # a bad signature
        cbor2.dumps({"kind": "unserved"}): ("wrong_type", True),  # a charge: never served
    }
    hostile = list(refusals)
    # The server sends them in SHA-256 order and the client cuts it off at the REJECT
    # past max_invalid: what is judged before that depends on the bytes' hashes.
    expected: dict[str, int] = {}
    rejects = 0
    for proof in sorted(hostile, key=lambda data: hashlib.sha256(data).digest()):
        reason, reject = refusals[proof]
        expected[reason] = expected.get(reason, 0) + 1
        rejects += reject
        if rejects > PARAMS.max_invalid:
            break
    server, client = build_host(factories.identity("ps-g")), build_host(factories.identity("ps-h"))
    async with server.run(listen_addrs=[LOCAL]), client.run(listen_addrs=[LOCAL]):
        server.set_stream_handler(PROTOCOL, make_handler(lambda: hostile, PARAMS, clock.now))
        await _connect(client, server)
        with pytest.raises(ProtocolError, match="invalid proofs"):
            await _pull(client, server, victim)
    # each refused with its reason, up to the third REJECT (the liar is cut off there)
    assert victim.refusals() == expected
    assert victim.counted() == before and _files(tmp_path / "victim") == files
    assert victim.disputes.pending == 0  # a forged or expired proof is never kept pending


async def test_each_refusal_of_a_pulled_proof_has_its_reason(tmp_path):
    clock = _clock()
    victim = Peer(tmp_path / "v", clock)
    cases = {
        "oversize": bytes(MAX_DISPUTE_SIZE + 1),
        "too_old": dp._proof(dp._offer("old", dp.EPOCH - 6), outputs=("a", "b")).encode(),
        "no_offence": dp._proof(dp._offer("same"), outputs=("s", "s")).encode(),
        "malformed": cbor2.dumps({"kind": "dispute", "offer": 1}),
    }
    expected = {
        "oversize": Verdict.REJECT,
        "too_old": Verdict.IGNORE,
        "no_offence": Verdict.REJECT,
        "malformed": Verdict.REJECT,
    }
    for reason, data in cases.items():
        assert victim.router.judge_pulled(data) is expected[reason], reason
    assert victim.router.judge_pulled(cbor2.dumps({"kind": "unserved"})) is Verdict.REJECT
    assert victim.refusals() == {**dict.fromkeys(cases, 1), "wrong_type": 1}
    assert len(victim.disputes) == 0 and victim.disputes.pending == 0


async def test_a_server_refuses_hostile_requests_and_too_many_streams(tmp_path):
    clock = _clock()
    peer = Peer(tmp_path / "s", clock)
    assert peer.router.judge(dp._proof(dp._offer("s"), outputs=("a", "b")).encode()) is (
        Verdict.ACCEPT
    )
    limits: list[str] = []
    server, client = build_host(factories.identity("ps-i")), build_host(factories.identity("ps-j"))
    async with server.run(listen_addrs=[LOCAL]), client.run(listen_addrs=[LOCAL]):
        server.set_stream_handler(
            PROTOCOL, make_handler(peer.router.served, PARAMS, clock.now, on_limit=limits.append)
        )
        await _connect(client, server)
        bad = [
            {"have": [b"short"], "after": b""},
            {"have": [b"\x00" * 32] * (MAX_HAVE + 1), "after": b""},
            {"have": [], "after": b"\x00" * 5},
            {"have": [], "after": b"", "extra": 1},
        ]
        for request in bad:
            with trio.fail_after(20):
                stream = await client.new_stream(server.get_id(), [PROTOCOL])
                await write_cbor(stream, request)
                # the server closes the stream without a page
                assert await FrameReader(stream, PARAMS.max_frame).read_cbor() is None
        assert limits == ["malformed"] * len(bad)
        # a valid request after them is served
        fresh = Peer(tmp_path / "fresh", clock)
        result = await _pull(client, server, fresh)
        assert result.accepted == 1 and len(fresh.disputes) == 1


def test_pending_proofs_are_bounded_per_offer_and_in_bytes_and_expire(tmp_path, monkeypatch):
    now = [float(dp.NOW)]
    book = DisputeBook(
        folder=tmp_path / "d",
        epoch_s=dp.EPOCH_S,
        max_age_epochs=5,
        keep_epochs=200,
        now=lambda: now[0],
        verdict_of=lambda peer, _epoch: dp.VERDICTS.get(peer),
        ranks_of=lambda offer: None,  # no view yet
    )
    held_offer = dp._offer("h")
    held = dp._proof(held_offer, outputs=("a", "b"))
    offer = dp._offer("p")
    # five different proofs of one offer: four kept, the fifth is over the per-offer cap
    outputs = [("a", "b"), ("a", "c"), ("b", "c"), ("a", "d"), ("b", "d")]
    for out in outputs:
        assert book.judge(dp._proof(offer, outputs=out).encode()) is Verdict.IGNORE
    assert book.pending == disputes_module.PENDING_PER_OFFER == 4
    assert book.pending_counts == {"kept": 4, "full": 1}
    # a byte cap: nothing more is kept once it is reached
    monkeypatch.setattr(disputes_module, "PENDING_BYTES", 0)
    assert book.judge(dp._proof(dp._offer("q"), outputs=("a", "b")).encode()) is Verdict.IGNORE
    assert book.pending == 4 and book.pending_counts["full"] == 2
    monkeypatch.undo()
    # and a count cap
    monkeypatch.setattr(disputes_module, "PENDING_MAX", 4)
    assert book.judge(dp._proof(dp._offer("r"), outputs=("a", "b")).encode()) is Verdict.IGNORE
    assert book.pending == 4 and book.pending_counts["full"] == 3
    monkeypatch.undo()
    # what is held is not touched by pending proofs, and outlives them
    book._ranks_of = dp._ranks
    assert book.judge(held.encode()) is Verdict.ACCEPT
    book._ranks_of = lambda offer: None
    files = _files(tmp_path / "d")
    # past the replay window the pending ones are dropped unjudged
    now[0] += 6 * dp.EPOCH_S
    assert book.retry_pending(force=True) == 0
    assert book.pending == 0 and book.pending_counts["expired"] == 4
    assert book._pending_per_offer == {} and book._pending_bytes == 0
    assert book.get(held_offer.record_id) is not None
    assert _files(tmp_path / "d") == files


def _live_conflict(epoch: int, expires: int) -> bytes:
    """A conflict proof of ``og.NODE``'s work digest of ``epoch``, live until ``expires``."""
    tasks = [
        task_records(c, og.NODE, epoch, f"live{i}", expires=expires)
        for i, c in enumerate(og.CLIENTS)
    ]
    records = [r for t in tasks for r in t.all()]
    (full,) = build_work(og.NODE.peer_id, records, epoch, expires=expires)
    (fewer,) = build_work(og.NODE.peer_id, records[:4], epoch, expires=expires)
    return conflict_proof(sign(full.digest, og.NODE), sign(fewer.digest, og.NODE)).encode()


async def test_a_client_that_joins_a_digest_network_late_pulls_the_offences_of_the_window(
    tmp_path,
):
    """Two real nodes: the full node holds an offence proof gossiped before the light
    client started; the client's node loop pulls it once synced, so its views count it."""
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            full = await start_node(
                nursery, node_config(tmp_path, "full", network_params=DIGEST_VIEWS)
            )
            now = int(full.clock.now())
            epoch = now // DIGEST_VIEWS.epoch_s
            proof = _live_conflict(epoch - 1, now + 3600)
            assert full.parts.offences is not None
            full.parts.offences.add(proof)  # gossiped while the client was not there
            light = Node(
                node_config(
                    tmp_path,
                    "light",
                    (full.addrs()[0],),
                    network_params=DIGEST_VIEWS,
                    role="client",
                )
            )
            await nursery.start(light.run)
            offences, catchup = light.parts.offences, light.parts.proof_catchup
            assert offences is not None and catchup is not None
            # (a pull whose stream failed, the full node still starting, goes to the log)
            while not any(r is not None and r.accepted for _p, r in catchup.pulls):
                await trio.sleep(0.1)
            ((offence,),) = [offences.offences(epoch)]
            assert (offence.kind, offence.peer_id, offence.epoch) == (
                "digest_conflict",
                og.NODE.peer_id,
                epoch - 1,
            )
            assert [r.accepted for _p, r in catchup.pulls if r is not None and r.accepted] == [1]
            light.stop()
            full.stop()


def test_both_books_keep_proofs_in_one_kind_of_folder_and_drop_damaged_files(tmp_path):
    """The shared ProofFolder: what a book keeps comes back after a restart; a damaged or
    foreign file is dropped at start (never trusted, never fatal); no temp file is left."""
    peer = Peer(tmp_path / "p", FixedClock(dp.NOW))
    assert peer.router.judge(dp._proof(dp._offer("f"), outputs=("a", "b")).encode()) is (
        Verdict.ACCEPT
    )
    assert peer.router.judge(og._conflict()) is Verdict.ACCEPT
    kept = _files(tmp_path / "p")
    assert len(kept) == 2 and not list((tmp_path / "p").rglob("*.tmp"))
    for sub in ("disputes", "offences"):
        (tmp_path / "p" / sub / ("00" * 32 + ".cbor")).write_bytes(b"\xa1damaged")
    # a read-only reader (an offline tool) skips the damaged files and leaves them
    reader = ProofFolder(tmp_path / "p" / "disputes", "dispute proof")
    assert len(reader.load(decode_dispute, drop=False)) == 1
    assert len(list((tmp_path / "p" / "disputes").iterdir())) == 2
    again = Peer(tmp_path / "p", FixedClock(dp.NOW))
    assert again.counted() == peer.counted() and _files(tmp_path / "p") == kept


class FixedClock:
    """A clock standing at ``t`` (the books read ``now`` only)."""

    def __init__(self, t: float) -> None:
        self.t = float(t)

    def now(self) -> float:
        return self.t


async def test_a_failed_pull_goes_to_the_next_peer_and_a_pull_is_tried_a_few_times_an_epoch(
    tmp_path,
):
    """A connected peer without the protocol (an old release, say) costs one failed pull;
    the loop asks the next peer in turn, in the same epoch."""
    clock = _clock()
    holder = Peer(tmp_path / "holder", clock)
    proof = dp._proof(dp._offer("next"), outputs=("a", "b")).encode()
    assert holder.router.judge(proof) is Verdict.ACCEPT
    fresh = Peer(tmp_path / "fresh", clock)
    # the peer without the protocol is the first in turn (peers are taken in ID order)
    old, good = sorted(
        (build_host(factories.identity("ps-x")), build_host(factories.identity("ps-y"))),
        key=lambda h: h.get_id().to_base58(),
    )
    client = build_host(factories.identity("ps-client"))
    async with (
        old.run(listen_addrs=[LOCAL]),
        good.run(listen_addrs=[LOCAL]),
        client.run(listen_addrs=[LOCAL]),
    ):
        good.set_stream_handler(PROTOCOL, make_handler(holder.router.served, PARAMS, clock.now))
        await _connect(client, old)
        await _connect(client, good)
        hosts = {h.get_id().to_base58(): h for h in (old, good)}
        loop = _loop(
            fresh,
            clock,
            lambda: list(hosts),
            lambda peer: client.new_stream(hosts[peer].get_id(), [PROTOCOL]),
            view_ready=lambda epoch: True,
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(loop.run)
            with trio.fail_after(30):
                while len(loop.pulls) < 2:
                    await trio.sleep(0.05)
            await trio.sleep(0.3)  # more ticks: no third pull this epoch
            nursery.cancel_scope.cancel()
    (first, failed), (second, result) = loop.pulls
    assert first == old.get_id().to_base58() and failed is None
    assert second == good.get_id().to_base58() and result is not None and result.accepted == 1
    assert fresh.counted() == holder.counted() and fresh.counted()[0]
