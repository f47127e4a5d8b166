"""The sync protocol against honest and hostile peers, and the frame reader's limits."""

from __future__ import annotations

import contextlib
import hashlib

import cbor2
import multiaddr
import pytest
import trio
from libp2p.peer.peerinfo import info_from_p2p_addr

from repp2p.errors import ProtocolError
from repp2p.net.framing import FrameReader, encode_varint, write_cbor
from repp2p.net.host import build_host
from repp2p.net.params import SyncParams
from repp2p.net.sync import PROTOCOL, SyncResult, make_handler, pull, pull_many
from repp2p.records import Heartbeat, sign
from repp2p.store import SqliteRecordStore
from repp2p.testing import factories

LOCAL = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")
NOW = 1_700_000_000


class FakeStream:
    """An in-memory byte stream with libp2p's read/write/close surface (for framing only)."""

    def __init__(self, data: bytes = b"", chunk: int = 3) -> None:
        self.data, self.chunk, self.written = bytearray(data), chunk, b""

    async def read(self, n: int) -> bytes:
        out = bytes(self.data[: min(n, self.chunk)])
        del self.data[: len(out)]
        return out

    async def write(self, data: bytes) -> None:
        self.written += data

    async def close(self) -> None:
        pass


async def test_frames_round_trip_across_tiny_reads():
    out = FakeStream()
    await write_cbor(out, {"a": 1})
    await write_cbor(out, {"b": b"x" * 300})
    reader = FrameReader(FakeStream(out.written, chunk=1), max_frame=1000)
    assert await reader.read_cbor() == {"a": 1}
    assert await reader.read_cbor() == {"b": b"x" * 300}
    assert await reader.read_cbor() is None


@pytest.mark.parametrize(
    "data, message",
    [
        (encode_varint(10_000) + b"x", "exceeds the cap"),
        (b"\xff" * 8, "length prefix too long"),
        (encode_varint(5) + b"ab", "stream ended"),
        (encode_varint(2) + b"\xff\xff", "indefinite-length"),
        (encode_varint(2) + b"\x01\x01", "trailing bytes"),
        (encode_varint(3) + b"\xc2\x41\x01", "tags"),  # a bignum
    ],
)
async def test_frame_reader_rejects_hostile_input(data, message):
    with pytest.raises(ProtocolError, match=message):
        await FrameReader(FakeStream(data), max_frame=1000).read_cbor()


async def test_a_frame_of_tiny_items_is_refused_before_it_is_decoded():
    """A frame of one-byte items (empty maps) made cbor2 build a Python object per byte,
    ~70 bytes of memory per byte of frame, for a message that costs its sender nothing:
    within a 5 MiB sync frame, ~350 MiB. Refused unread; honest frames (byte strings in a
    few maps and lists, 32-byte hashes the smallest) pass."""
    import tracemalloc

    n = 1_000_000
    payload = b"\x9a" + n.to_bytes(4, "big") + b"\xa0" * n  # a list of a million {}
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError, match="more than"):
            await FrameReader(
                FakeStream(encode_varint(len(payload)) + payload, chunk=1 << 20), max_frame=5 << 20
            ).read_cbor()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"{peak >> 20} MiB to refuse a {len(payload) >> 20} MiB frame"
    # an honest page: 256 records, and a list of 1,024 32-byte IDs
    out = FakeStream()
    page = {"records": [b"r" * 120] * 256, "next": b"\x01" * 32}
    have = {"after": b"", "have": [bytes([i % 256]) * 32 for i in range(1024)]}
    await write_cbor(out, page)
    await write_cbor(out, have)
    reader = FrameReader(FakeStream(out.written, chunk=1 << 16), max_frame=5 << 20)
    assert await reader.read_cbor() == page
    assert await reader.read_cbor() == have


async def _connect(client, server) -> None:
    addr = multiaddr.Multiaddr(f"{server.get_addrs()[0]}/p2p/{server.get_id()}")
    with trio.fail_after(10):
        await client.connect(info_from_p2p_addr(addr))


def _fill(store, count: int) -> list:
    records = [
        sign(
            Heartbeat(epoch=e, load=0, tasks_done=0, seq=1, expires=factories.far_future(NOW)), key
        )
        for e in range(count // 4)
        for key in (factories.identity(f"s{i}") for i in range(4))
    ]
    store.put_many(records, now=NOW)
    return records


async def test_pull_pages_through_everything(tmp_path):
    served = SqliteRecordStore(tmp_path / "served.db")
    records = _fill(served, 200)
    fresh = SqliteRecordStore(tmp_path / "fresh.db")
    params = SyncParams(page_records=16)
    server, client = build_host(factories.identity("a")), build_host(factories.identity("b"))
    async with server.run(listen_addrs=[LOCAL]), client.run(listen_addrs=[LOCAL]):
        server.set_stream_handler(PROTOCOL, make_handler(served, params, lambda: NOW))
        await _connect(client, server)
        with trio.fail_after(20):
            stream = await client.new_stream(server.get_id(), [PROTOCOL])
            result = await pull(stream, lambda d: fresh.ingest(d, now=NOW) is not None, params)
    assert result.complete and result.valid == len(records) and result.invalid == 0
    assert result.pages >= len(records) // 16
    assert [s.record_id for s in fresh.query()] == [s.record_id for s in served.query()]


async def test_pull_cuts_off_a_peer_that_sends_garbage(tmp_path):
    fresh = SqliteRecordStore(tmp_path / "fresh.db")
    good = sign(
        Heartbeat(epoch=1, load=0, tasks_done=0, seq=1, expires=factories.far_future(NOW)),
        factories.identity("honest"),
    )
    params = SyncParams(max_invalid=3)

    # junk in record-ID order after the good record, as an honest server pages (a page out
    # of that order is refused before anything on it is judged: the next test)
    junk = sorted(
        (d for d in (b"junk-%d" % i for i in range(40)) if _id(d) > good.record_id),
        key=_id,
    )[:10]

    async def liar(stream):
        reader = FrameReader(stream, max_frame=4096)
        while await reader.read_cbor() is not None:
            page = [good.data, *junk]
            await write_cbor(stream, {"records": page, "next": _id(page[-1])})

    def accept(data: bytes) -> bool:
        try:
            fresh.ingest(data, now=NOW)
        except Exception:
            return False
        return True

    server, client = build_host(factories.identity("liar")), build_host(factories.identity("c"))
    async with server.run(listen_addrs=[LOCAL]), client.run(listen_addrs=[LOCAL]):
        server.set_stream_handler(PROTOCOL, liar)
        await _connect(client, server)
        with trio.fail_after(20):
            stream = await client.new_stream(server.get_id(), [PROTOCOL])
            with pytest.raises(ProtocolError, match="invalid records"):
                await pull(stream, accept, params)
    # The valid record that came before the garbage was kept.
    assert fresh.get(good.record_id) is not None and fresh.count() == 1


async def test_server_drops_a_malformed_request(tmp_path):
    served = SqliteRecordStore(tmp_path / "served.db")
    _fill(served, 8)
    server, client = build_host(factories.identity("d")), build_host(factories.identity("e"))
    limits: list[str] = []
    async with server.run(listen_addrs=[LOCAL]), client.run(listen_addrs=[LOCAL]):
        server.set_stream_handler(
            PROTOCOL, make_handler(served, SyncParams(), on_limit=limits.append)
        )
        await _connect(client, server)
        with trio.fail_after(20):
            stream = await client.new_stream(server.get_id(), [PROTOCOL])
            payload = cbor2.dumps({"after": "not bytes", "limit": 5})
            await stream.write(encode_varint(len(payload)) + payload)
            reader = FrameReader(stream, max_frame=1 << 20)
            assert await reader.read_cbor() is None  # closed without an answer
    assert limits == ["malformed"]


async def test_a_peer_cannot_pull_more_than_its_byte_budget(tmp_path):
    """The attack: one peer re-pulled the whole record set again and again (321 MB served
    in a run); now a server sends one peer at most peer_bytes_per_min a minute."""
    served = SqliteRecordStore(tmp_path / "served.db")
    _fill(served, 200)
    params = SyncParams(peer_bytes_per_min=1024 * 1024, request_timeout_s=0.5)
    server, client = build_host(factories.identity("a")), build_host(factories.identity("b"))
    got = 0
    limits: list[str] = []
    async with server.run(listen_addrs=[LOCAL]), client.run(listen_addrs=[LOCAL]):
        server.set_stream_handler(
            PROTOCOL, make_handler(served, params, lambda: NOW, on_limit=limits.append)
        )
        await _connect(client, server)
        started = trio.current_time()
        with trio.move_on_after(4):
            while True:  # full pulls, one after the other, as fast as the server answers
                stream = await client.new_stream(server.get_id(), [PROTOCOL])
                reader = FrameReader(stream, max_frame=params.max_frame)
                after = b""
                while True:
                    await write_cbor(stream, {"after": after, "limit": 1024})
                    page = await reader.read_cbor()
                    if page is None:
                        break  # dropped: over the budget
                    got += sum(len(r) for r in page["records"])
                    if page["next"] is None:
                        break
                    after = page["next"]
                await stream.close()
        elapsed = trio.current_time() - started
    budget = params.peer_bytes_per_min
    # A full bucket plus what refills meanwhile, and one page over (paid, then sent).
    assert got <= budget + budget * elapsed / 60 + params.page_bytes
    assert got >= budget // 2  # and the honest part was served
    assert "bytes_per_min" in limits and set(limits) == {"bytes_per_min"}  # counted


async def test_a_peer_may_hold_only_a_few_sync_streams(tmp_path):
    served = SqliteRecordStore(tmp_path / "served.db")
    _fill(served, 10)
    params = SyncParams(streams_per_peer=2)
    server, client = build_host(factories.identity("a")), build_host(factories.identity("b"))
    limits: list[str] = []
    async with server.run(listen_addrs=[LOCAL]), client.run(listen_addrs=[LOCAL]):
        server.set_stream_handler(
            PROTOCOL, make_handler(served, params, lambda: NOW, on_limit=limits.append)
        )
        await _connect(client, server)
        with trio.fail_after(20):
            held = [await client.new_stream(server.get_id(), [PROTOCOL]) for _ in range(2)]
            await trio.sleep(0.3)  # the server has counted them
            extra = await client.new_stream(server.get_id(), [PROTOCOL])
            await write_cbor(extra, {"after": b"", "limit": 16})
            assert await FrameReader(extra, max_frame=params.max_frame).read_cbor() is None
            # The streams held still work.
            await write_cbor(held[0], {"after": b"", "limit": 16})
            page = await FrameReader(held[0], max_frame=params.max_frame).read_cbor()
            assert page["records"]
            assert limits == ["streams_per_peer"]


def _id(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _heartbeats(count: int, name: str = "h") -> list:
    key = factories.identity(name)
    beats = [
        sign(
            Heartbeat(epoch=e, load=0, tasks_done=0, seq=1, expires=factories.far_future(NOW)), key
        )
        for e in range(count)
    ]
    return sorted(beats, key=lambda b: b.record_id)


async def test_pull_refuses_a_page_an_honest_server_would_not_send(tmp_path):
    """A server that sends the same valid records on every page with an advancing cursor
    kept a pull going for max_pages pages; pages must follow the record-ID order."""
    fresh = SqliteRecordStore(tmp_path / "fresh.db")
    beats = _heartbeats(3)
    pages = 0

    async def repeater(stream):
        nonlocal pages
        reader = FrameReader(stream, max_frame=4096)
        cursor = b"\x00" * 31
        while await reader.read_cbor() is not None:
            pages += 1
            cursor = (int.from_bytes(cursor, "big") + 1).to_bytes(32, "big")
            page = [b.data for b in beats]
            await write_cbor(stream, {"records": page, "next": max(cursor, beats[-1].record_id)})

    server, client = build_host(factories.identity("rep")), build_host(factories.identity("c"))
    async with server.run(listen_addrs=[LOCAL]), client.run(listen_addrs=[LOCAL]):
        server.set_stream_handler(PROTOCOL, repeater)
        await _connect(client, server)
        with trio.fail_after(20):
            stream = await client.new_stream(server.get_id(), [PROTOCOL])
            with pytest.raises(ProtocolError, match="bad sync page"):
                await pull(stream, lambda d: fresh.ingest(d, now=NOW) is not None, SyncParams())
    assert pages == 2  # the second page repeats the first: refused at once
    assert fresh.count() == len(beats)  # the first page's records were judged and kept


def _dripper(delay: float):
    """A sync server that answers each request after ``delay`` with an empty page whose
    cursor advances by one: never the end, each page just inside the page timeout."""

    async def drip(stream):
        reader = FrameReader(stream, max_frame=4096)
        cursor = 1
        while await reader.read_cbor() is not None:
            await trio.sleep(delay)
            cursor += 1
            await write_cbor(stream, {"records": [], "next": cursor.to_bytes(32, "big")})

    return drip


@pytest.mark.parametrize("drippers", [1, 2])
async def test_pull_many_is_held_up_by_no_dripping_peer(tmp_path, drippers):
    """Pulled one after the other, a dripping peer held the next pulls (and a joining
    node's discovery) for max_pages page timeouts. At once, the honest peer completes;
    with both first peers dripping, a third is asked after hedge_s."""
    params = SyncParams(page_records=16, request_timeout_s=1.0)
    served = SqliteRecordStore(tmp_path / "served.db")
    records = _fill(served, 64)
    fresh = SqliteRecordStore(tmp_path / "fresh.db")
    honest = build_host(factories.identity("honest"))
    slow = [build_host(factories.identity(f"drip{i}")) for i in range(drippers)]
    client = build_host(factories.identity("client"))
    hosts = [*slow, honest, client]
    async with contextlib.AsyncExitStack() as stack:
        for host in hosts:
            await stack.enter_async_context(host.run(listen_addrs=[LOCAL]))
        honest.set_stream_handler(PROTOCOL, make_handler(served, params, lambda: NOW))
        for host in slow:
            host.set_stream_handler(PROTOCOL, _dripper(0.6 * params.request_timeout_s))
        for host in (*slow, honest):
            await _connect(client, host)
        order = [h.get_id() for h in (*slow, honest)]
        started = trio.current_time()
        with trio.fail_after(15):
            results = await pull_many(
                order,
                lambda peer: client.new_stream(peer, [PROTOCOL]),
                lambda d: fresh.ingest(d, now=NOW) is not None,
                params,
                grace_s=0.5,
                hedge_s=1.5,
            )
        took = trio.current_time() - started
    done = results[honest.get_id()]
    assert isinstance(done, SyncResult) and done.complete and done.valid == len(records)
    assert all(results[h.get_id()] is None for h in slow)  # cut, still dripping
    # 64 pages x 0.6 s of dripping would be 38 s; the honest pull (after hedge_s when
    # both first peers drip) plus the grace
    assert took < (1.5 if drippers == 2 else 0) + 0.5 + 5
