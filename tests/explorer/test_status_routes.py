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
