"""The status endpoint serves extra routes, and a route that fails says so (503)."""

from __future__ import annotations

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
