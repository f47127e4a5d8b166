"""A tiny HTTP endpoint for operators: ``/metrics`` (Prometheus), ``/status`` (JSON), ``/health``.

Deliberately minimal (GET only, one request per connection, 8 KiB request cap, 5 s
deadline, at most :data:`MAX_CONNECTIONS` connections at once, and as many again waiting
:data:`REFUSE_S` for their 503; beyond that a connection is closed at once) so it adds no
dependency beyond prometheus-client's text exposition. Bind it to loopback unless a
firewall protects it: it exposes operational data, never keys. A handler that fails is
answered 503 (a :class:`~repp2p.errors.ReppError`, e.g. a store that cannot be read just
now) or 500 (a bug), naming the error's kind only: its message, which may hold local paths,
goes to the log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import trio

from repp2p.errors import ReppError

log = logging.getLogger("repp2p.status")

#: Connections handled at once; one more is answered 503 and closed. The node's libp2p
#: host shares the process's file descriptors: a flood on the status port must not take
#: the descriptors its peers need (each connection lasts 5 s at most).
MAX_CONNECTIONS = 64
#: Seconds a connection over the limit may take to send its request before it is closed
#: (it is answered 503 if the request comes in time).
REFUSE_S = 1.0


async def serve(
    host: str,
    port: int,
    status: Callable[[], dict[str, Any]],
    metrics: Callable[[], bytes],
    record: Callable[[str], dict[str, Any]] | None = None,
    problems: Callable[[], list[str]] | None = None,
    routes: Sequence[tuple[str, Callable[[], tuple[str, bytes]]]] = (),
    *,
    max_connections: int = MAX_CONNECTIONS,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; ``task_status.started(port)`` reports the bound port.

    ``record(hex_id)`` answers ``/record/<hex record id>`` (whether the node holds a record
    and when it arrived; the network benchmark measures gossip reach with it).
    ``problems()`` lists why the node is degraded: ``/health`` answers 200 ``ok`` while it
    is empty, else 503 with one ``degraded: ...`` line per problem (for load balancers and
    probes; ``/status`` carries the same list under ``health``).
    ``routes`` adds ``(path, handler)`` pages; a handler returns ``(content type, body)``
    (the explorer's page and JSON).
    ``max_connections`` bounds the connections handled at once; one more gets 503
    ``busy`` at once, as many again may wait (:data:`REFUSE_S`) for that answer, and a
    connection beyond those is closed at once: a flood holds at most twice
    ``max_connections`` file descriptors, for seconds at most.
    """
    pages = dict(routes)
    active = refusing = 0

    async def handle(stream: trio.SocketStream) -> None:
        nonlocal active, refusing
        if active >= max_connections:
            if refusing >= max_connections:
                await stream.aclose()  # a flood: closed at once, no descriptor held
                return
            refusing += 1
            try:
                await _refuse(stream)
            finally:
                refusing -= 1
            return
        active += 1
        try:
            await answer(stream)
        finally:
            active -= 1

    async def answer(stream: trio.SocketStream) -> None:
        try:
            with trio.fail_after(5):
                request = b""
                while b"\r\n\r\n" not in request and len(request) < 8192:
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        return
                    request += chunk
                line = request.split(b"\r\n", 1)[0].decode("latin-1").split()
                if len(line) != 3 or line[0] != "GET":
                    await _reply(stream, 405, "text/plain", b"GET only\n")
                    return
                path = line[1].split("?", 1)[0]
                try:
                    code, ctype, body = route(path)
                except ReppError as exc:  # e.g. a store that cannot be read just now
                    # the message may hold local paths (a store's): logged, not answered
                    log.warning("status endpoint: %r failed: %r", path[:200], exc)
                    code, ctype = 503, "text/plain"
                    body = f"{path[:200]} cannot be answered just now ({type(exc).__name__})\n"
                    body = body.encode("utf-8", "backslashreplace")
                except Exception:
                    log.exception("status endpoint: %r failed", path[:200])
                    code, ctype, body = 500, "text/plain", b"internal error (logged)\n"
                await _reply(stream, code, ctype, body)
        except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception:
            log.exception("status endpoint failed on a request")
        finally:
            await stream.aclose()

    def route(path: str) -> tuple[int, str, bytes]:
        """``(status code, content type, body)`` of a GET of ``path``."""
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4", metrics()
        if path == "/status":
            return 200, "application/json", json.dumps(status(), indent=1).encode()
        if path.startswith("/record/") and record is not None:
            return 200, "application/json", json.dumps(record(path[len("/record/") :])).encode()
        if path in pages:
            ctype, body = pages[path]()
            return 200, ctype, body
        if path == "/health":
            found = problems() if problems is not None else []
            if found:
                return 503, "text/plain", "".join(f"degraded: {p}\n" for p in found).encode()
            return 200, "text/plain", b"ok\n"
        return 404, "text/plain", b"not found\n"

    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]
    task_status.started(bound)
    await trio.serve_listeners(handle, listeners)


async def _refuse(stream: trio.SocketStream) -> None:
    """503 to a connection over the limit, spending at most :data:`REFUSE_S` on it (the
    request is read first so that closing does not reset the connection before the answer
    is read)."""
    try:
        with trio.move_on_after(REFUSE_S):
            await stream.receive_some(8192)
            await _reply(stream, 503, "text/plain", b"busy: too many connections\n")
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await stream.aclose()


async def _reply(stream: trio.SocketStream, code: int, ctype: str, body: bytes) -> None:
    reason = {
        200: "OK",
        404: "Not Found",
        405: "Method Not Allowed",
        500: "Internal Server Error",
        503: "Service Unavailable",
    }[code]
    head = (
        f"HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    await stream.send_all(head + body)


async def fetch(host: str, port: int, path: str, timeout: float = 5.0) -> bytes:
    """GET ``path`` from a status endpoint; returns the body (raises OSError on failure)."""
    try:
        with trio.fail_after(timeout):
            stream = await trio.open_tcp_stream(host, port)
            async with stream:
                await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                data = b""
                while chunk := await stream.receive_some(65536):
                    data += chunk
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise OSError(f"status endpoint {host}:{port}: {exc}") from None
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        first_line = head.split(b"\r\n", 1)[0]
        reason = body.split(b"\n", 1)[0][:200].decode("utf-8", "replace")
        said = f": {reason}" if reason else ""
        raise OSError(f"status endpoint answered {first_line!r}{said}")
    return body
