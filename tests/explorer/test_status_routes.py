"""The status endpoint serves extra routes, and a route that fails says so (503)."""

from __future__ import annotations

import functools

import pytest
import trio

from repp2p.errors import StoreError
from repp2p.net import status_http


def _broken() -> tuple[str, bytes]:
    raise StoreError("database is locked")


async def test_extra_routes_are_served_and_their_errors_answered(nursery):
    routes = [("/page", lambda: ("text/html", b"<p>hi</p>")), ("/broken", _broken)]
    port = await nursery.start(
        status_http.serve, "127.0.0.1", 0, dict, lambda: b"", None, None, routes
    )
    assert await status_http.fetch("127.0.0.1", port, "/page") == b"<p>hi</p>"
    with pytest.raises(OSError, match="503"):
        await status_http.fetch("127.0.0.1", port, "/broken")
    with pytest.raises(OSError, match="404"):
        await status_http.fetch("127.0.0.1", port, "/page.json")
    with trio.fail_after(5):  # the server is still up after the failed route
        assert await status_http.fetch("127.0.0.1", port, "/page") == b"<p>hi</p>"


async def test_connections_beyond_the_cap_get_503_and_the_port_recovers(nursery):
    routes = [("/page", lambda: ("text/html", b"<p>hi</p>"))]
    port = await nursery.start(
        functools.partial(
            status_http.serve,
            "127.0.0.1",
            0,
            dict,
            lambda: b"",
            None,
            None,
            routes,
            max_connections=2,
        )
    )
    # Two clients that open a connection and send nothing hold both places (5 s each).
    held = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(2)]
    with trio.fail_after(10):
        while True:  # until the server has accepted both (then a third is refused)
            try:
                await status_http.fetch("127.0.0.1", port, "/page")
            except OSError as exc:
                assert "503" in str(exc)
                break
            await trio.sleep(0.02)
    for stream in held:
        await stream.aclose()
    with trio.fail_after(10):
        while True:  # the places are given back once those connections end
            try:
                assert await status_http.fetch("127.0.0.1", port, "/page") == b"<p>hi</p>"
                break
            except OSError:
                await trio.sleep(0.02)


async def _raw_get(port: int, path: str) -> bytes:
    """One GET on a new connection: the raw answer (b"" when closed without one)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    received = b""
    with trio.fail_after(10):
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        while chunk := await stream.receive_some():
            received += chunk
    await stream.aclose()
    return received


async def test_a_failing_handler_is_answered_by_kind_never_with_its_message(nursery):
    def locked() -> dict:
        raise StoreError("record store /home/alice/.local/share/repp2p/node/records.db: locked")

    def buggy() -> tuple[str, bytes]:
        raise KeyError("/home/alice/.local/share/repp2p/node/identity.key")

    routes = [("/explorer.json", _broken_with_path), ("/buggy", buggy)]
    port = await nursery.start(
        status_http.serve, "127.0.0.1", 0, locked, lambda: b"", None, None, routes
    )
    for path, status in (("/status", 503), ("/explorer.json", 503), ("/buggy", 500)):
        answer = await _raw_get(port, path)
        # an answer, not a closed connection; typed by its status, naming the error's kind
        assert answer.startswith(f"HTTP/1.1 {status} ".encode()), (path, answer[:200])
        assert b"/home/alice" not in answer and b"records.db" not in answer, answer
    assert b"StoreError" in await _raw_get(port, "/status")
    with pytest.raises(OSError, match=r"503.*StoreError"):  # what `repp2p status` then says
        await status_http.fetch("127.0.0.1", port, "/status")
    with trio.fail_after(5):  # the endpoint is still up
        assert await _raw_get(port, "/health") == (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
            b"Connection: close\r\n\r\nok\n"
        )


def _broken_with_path() -> tuple[str, bytes]:
    raise StoreError("record store /home/alice/.local/share/repp2p/node/records.db: locked")


async def test_a_connection_flood_beyond_the_cap_is_closed_not_held(nursery, monkeypatch):
    # A refused connection waits up to REFUSE_S for its request: long here, so that only
    # the bound on refusals can explain a flood's connections being closed at once.
    monkeypatch.setattr(status_http, "REFUSE_S", 30.0)
    port = await nursery.start(
        functools.partial(status_http.serve, "127.0.0.1", 0, dict, lambda: b"", max_connections=1)
    )
    holder = await trio.open_tcp_stream("127.0.0.1", port)  # silent: holds the place 5 s
    with trio.fail_after(10):
        while True:  # until the server has accepted it: then one more is refused
            try:
                await status_http.fetch("127.0.0.1", port, "/status")
            except OSError as exc:
                assert "503" in str(exc)
                break
            await trio.sleep(0.02)
    flood = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(10)]
    closed = 0

    async def watch(stream: trio.SocketStream) -> None:
        nonlocal closed
        try:
            while await stream.receive_some():
                pass
        except trio.BrokenResourceError:
            pass
        closed += 1

    # At most max_connections (1) of them wait to be answered 503; the rest are closed
    # at once instead of each holding a descriptor for REFUSE_S.
    with trio.move_on_after(4):
        async with trio.open_nursery() as watchers:
            for stream in flood:
                watchers.start_soon(watch, stream)
    assert closed >= len(flood) - 1, closed
    for stream in [holder, *flood]:
        await stream.aclose()
