"""A tiny HTTP endpoint for operators: ``/metrics`` (Prometheus), ``/status`` (JSON), ``/health``.

Deliberately minimal (GET only, one request per connection, 8 KiB request cap, 5 s
deadline, at most :data:`MAX_CONNECTIONS` connections at once, and as many again waiting
:data:`REFUSE_S` for their 503; beyond that a connection is closed at once) so it adds no
dependency beyond prometheus-client's text exposition. Bind it to loopback unless a
firewall protects it: it exposes operational data, never keys. A handler that fails is
answered 503 (a :class:`~repp2p.errors.ReppError`, e.g. a store that cannot be read just
now) or 500 (a bug), naming the error's kind only: its message, which may hold local paths,
goes to the log.

A request is answered only when its ``Host`` names the endpoint itself (see
:func:`check_host`): a web page the operator visits can make its own DNS name resolve to
127.0.0.1 (DNS rebinding) and read the status from the operator's browser, but its
requests then carry that name, which is refused 421. HTTP/1.x only: no HTTP/2, so no
``:authority`` to check.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
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
#: The request head read at most; a head not complete within it is answered 431.
MAX_HEAD = 8192
#: The ``allowed_hosts`` entry that accepts every well-formed Host (behind a reverse proxy
#: that checks Host itself).
ANY_HOST = "*"

# RFC 3986 reg-name characters (lower case: names are compared lower-cased); a Host holding
# anything else (a space, a slash, a control character) is malformed.
_NAME = re.compile(r"[a-z0-9._~!$&'()*+,;=%-]+")
_PORT = re.compile(r"[0-9]{0,5}")
# A header line holding a control character other than HTAB is malformed (RFC 9110 5.5);
# refusing it keeps this parser from disagreeing with another on where a header ends.
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


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
    allowed_hosts: Iterable[str] = (),
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
    ``allowed_hosts`` are the names accepted in ``Host`` besides IP literals, ``localhost``
    and ``host`` itself (:func:`check_host`; ``"*"`` accepts any well-formed name); a
    malformed entry raises ValueError.
    """
    pages = dict(routes)
    allowed = frozenset(allowed_host_entry(entry) for entry in allowed_hosts)
    try:  # the name the endpoint is bound to names it (`repp2p status` sends it as Host)
        allowed |= {allowed_host_entry(host)}
    except ValueError:  # an IP literal, "" (all addresses): accepted as such anyway
        pass
    active = refusing = 0
    misdirected = 0

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
                while b"\r\n\r\n" not in request and len(request) < MAX_HEAD:
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        return
                    request += chunk
                head, complete, _ = request.partition(b"\r\n\r\n")
                line = head.split(b"\r\n", 1)[0].decode("latin-1").split()
                if len(line) != 3 or line[0] != "GET":
                    await _reply(stream, 405, "text/plain", b"GET only\n")
                    return
                if not complete:  # its Host may be cut off: nothing to check it by
                    await _reply(stream, 431, "text/plain", b"request head over 8 KiB\n")
                    return
                refused = check_host(head, allowed)
                if refused is not None:
                    note_refused(*refused)
                    await _reply(stream, refused[0], "text/plain", refused[1])
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

    def note_refused(code: int, body: bytes) -> None:
        """Log a refused Host: the first 421 as a warning (an operator behind a reverse
        proxy learns which setting to change), later ones at debug (a rebinding page may
        send many)."""
        nonlocal misdirected
        if code != 421:
            log.debug("status endpoint: malformed Host: %s", body.decode().strip())
            return
        misdirected += 1
        level = logging.WARNING if misdirected == 1 else logging.DEBUG
        log.log(
            level,
            "status endpoint: request %d for a name not in status_allowed_hosts "
            "refused (421; DNS rebinding guard)",
            misdirected,
        )

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


def check_host(head: bytes, allowed: frozenset[str]) -> tuple[int, bytes] | None:
    """None when the request ``head`` (request line and headers, without the blank line)
    is addressed to this endpoint, else the ``(status code, plain body)`` to answer.

    Accepted: a ``Host`` naming an IP literal (an address cannot be rebound: rebinding
    needs a DNS name), ``localhost`` or a ``*.localhost`` name (browsers resolve those to
    loopback themselves), a name in ``allowed`` (lower case, see
    :func:`allowed_host_entry`), or anything well-formed when ``allowed`` holds ``"*"``;
    with any port or none. An HTTP/1.0 request without ``Host`` is accepted: browsers always
    send one, so it cannot be a rebinding page's, and old scrapers may omit it. Refused 421:
    any other name. Refused 400: a malformed head or Host (several Host headers, control
    characters, spaces, no Host on HTTP/1.1).
    """
    try:
        value = _host_header(head)
        if value is None:
            return None
        name, literal = parse_host(value)
    except ValueError as exc:
        return 400, f"bad request: {exc}\n".encode()
    if literal or _host_allowed(name, allowed):
        return None
    return 421, (
        b"misdirected request: this endpoint answers requests for its IP address, "
        b"localhost or the names in status_allowed_hosts\n"
    )


def _host_header(head: bytes) -> str | None:
    """The ``Host`` value of a request head (None: an HTTP/1.0 request without one); raises
    ValueError when the head is malformed or its Host is missing or repeated."""
    lines = head.split(b"\r\n")
    hosts = []
    for line in lines[1:]:
        if _CONTROL.search(line):
            raise ValueError("a control character in a header")
        if line[:1] in (b" ", b"\t"):  # obsolete line folding (RFC 9112 5.2): refused
            raise ValueError("a folded header line")
        name, colon, value = line.partition(b":")
        if not colon:
            raise ValueError("a header line without a colon")
        if name.lower() == b"host":
            hosts.append(value)
        elif name.strip(b" \t").lower() == b"host":  # "Host :": others may read it
            raise ValueError("whitespace in the Host header's name")
    if len(hosts) > 1:
        raise ValueError("several Host headers")
    if hosts:
        return hosts[0].strip(b" \t").decode("latin-1")
    if lines[0].split()[-1:] == [b"HTTP/1.0"]:
        return None
    raise ValueError("no Host header")


def parse_host(value: str) -> tuple[str, bool]:
    """``(name, whether it is an IP literal)`` of a Host value: lower-cased, without its
    port, brackets or final dot. Raises ValueError when it is malformed."""
    text = value.lower()
    if text.startswith("["):
        inner, bracket, rest = text[1:].partition("]")
        port_ok = not rest or (rest[0] == ":" and _PORT.fullmatch(rest[1:]))
        if not bracket or not port_ok:
            raise ValueError("a malformed Host")
        return _ipv6(inner), True
    if text.count(":") > 1:  # an IPv6 address without brackets (and so without a port)
        return _ipv6(text), True
    name, _, port = text.partition(":")
    if not _NAME.fullmatch(name) or not _PORT.fullmatch(port) or name == ".":
        raise ValueError("a malformed Host")
    name = name.removesuffix(".")  # "localhost." is localhost
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return name, False
    return name, True


def _ipv6(text: str) -> str:
    try:
        return str(ipaddress.IPv6Address(text))
    except ValueError:
        raise ValueError("a malformed IPv6 address in Host") from None


def _host_allowed(name: str, allowed: frozenset[str]) -> bool:
    if name == "localhost" or name.endswith(".localhost"):
        return True
    return ANY_HOST in allowed or name in allowed


def allowed_host_entry(entry: str) -> str:
    """An ``allowed_hosts`` entry as compared (lower case, no final dot): a host name
    without a port (every port is accepted), or ``"*"``. Raises ValueError otherwise."""
    if entry == ANY_HOST:
        return entry
    name = entry.lower() if isinstance(entry, str) else ""
    # "*" within a name would match only a Host of that very text: not the sub-domain
    # wildcard an operator writing "*.example.org" means, so it is refused
    if not _NAME.fullmatch(name) or name == "." or ANY_HOST in name:
        raise ValueError(
            f"{entry!r} is not a host name (without a port: any port is accepted; IP "
            'addresses need no entry) or "*" alone'
        )
    return name.removesuffix(".")


def split_host_port(text: str) -> tuple[str, int]:
    """``(host, port)`` of ``host:port``, an IPv6 host without its brackets (as sockets
    take it: ``[::1]:9464`` -> ``("::1", 9464)``). Raises ValueError when the port is
    not a number."""
    host, _, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def authority(host: str, port: int) -> str:
    """``host:port`` as a Host header writes it (an IPv6 address in brackets)."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


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
        400: "Bad Request",
        404: "Not Found",
        405: "Method Not Allowed",
        421: "Misdirected Request",
        431: "Request Header Fields Too Large",
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
                request = f"GET {path} HTTP/1.1\r\nHost: {authority(host, port)}\r\n\r\n"
                await stream.send_all(request.encode())
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
