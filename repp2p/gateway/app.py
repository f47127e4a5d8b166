"""The gateway's HTTP application (Starlette) and its server (Hypercorn's trio worker).

Rules of this file: every route handler reads its body through :func:`_read_body` (size
limit before parsing), checks the bearer token first when one is configured, parses with
:mod:`repp2p.gateway.shapes` and runs tasks through a :class:`TaskBackendAPI` under one
concurrency limit; any :class:`ApiError` becomes OpenAI's error object in one handler, and
nothing else escapes as a stack trace to the caller (500 ``internal_error``, logged here).
At most ``max_requests`` requests are handled at once (:class:`_RequestCap`, 503 beyond),
each write of an answer has a deadline (:data:`SEND_TIMEOUT_S`), at most
``max_connections`` connections are held at once (:func:`serve`, 503 beyond), and a request
whose client hangs up is cancelled, its task slots freed (:func:`_unless_disconnected`).
The application runs in the caller's trio run: the client it submits through lives there.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from engines.manifest import MANIFEST_NAME, Manifest
from repp2p.errors import ReppError
from repp2p.gateway.backend import ClientBackend, TaskBackendAPI
from repp2p.gateway.config import GatewayConfig
from repp2p.gateway.errors import TASK_REASONS, ApiError, ApiReason
from repp2p.gateway.shapes import (
    VERIFICATION_FIELD,
    VERIFICATION_HEADER,
    Limits,
    ModelInfo,
    embeddings_response,
    model_object,
    parse_embeddings,
    parse_json,
    parse_task,
    task_response,
    verification_header,
)
from repp2p.net.status_http import parse_host

if TYPE_CHECKING:
    from repp2p.client import Client, TaskResult

log = logging.getLogger("repp2p.gateway")

#: Largest input of one task when the engine's manifest is not installed here (the nodes
#: refuse what exceeds their engine's own ``max_input_size``).
DEFAULT_MAX_INPUT = 1 << 20
#: Seconds a task may run past its own timeout before the gateway gives up on it.
SUBMIT_MARGIN_S = 10.0
#: Seconds a connection may stay idle, or take to send a request's headers.
HEADERS_TIMEOUT_S = 5.0
#: Seconds one write of an answer may wait for the client to read (its TCP receive window
#: shut, or over HTTP/2 its stream's flow-control window) before the connection is aborted.
SEND_TIMEOUT_S = 30.0
#: Seconds a connection over ``max_connections`` may take to send its request before it is
#: closed (it is answered 503 ``gateway_overloaded`` if the request comes in time).
REFUSE_S = 1.0
#: The key, in each connection's ASGI ``scope["state"]``, of the callable that aborts that
#: connection (set by :func:`serve`; absent under other servers).
ABORT_CONNECTION = "repp2p.abort_connection"


def max_input_size(engine: str) -> int:
    """The engine's ``max_input_size`` from its manifest, when the engine is installed here
    (found through its entry point, not loaded: its weights need not be here); else
    :data:`DEFAULT_MAX_INPUT` (the nodes still refuse what exceeds their own limit)."""
    return installed_input_limits().get(engine, DEFAULT_MAX_INPUT)


@functools.cache
def installed_input_limits() -> dict[str, int]:
    """``{engine: max_input_size}`` of the engines installed here, read once per process:
    scanning entry points and reading a manifest takes milliseconds, which every request
    (and any engine name a request makes up) would otherwise spend in the event loop."""
    import importlib.util

    from engines import engine_entry_points

    limits: dict[str, int] = {}
    try:
        entries = engine_entry_points()
    except ReppError:  # two distributions claim one name: no limit known for any
        return limits
    for engine, entry in entries.items():
        try:
            spec = importlib.util.find_spec(entry.module)
            if spec is not None and spec.origin is not None:
                manifest = Manifest.load(Path(spec.origin).with_name(MANIFEST_NAME))
                limits[engine] = manifest.max_input_size
        except (ReppError, ImportError, OSError):  # EngineError is a ReppError
            continue
    return limits


def build_app(
    backend: TaskBackendAPI,
    config: GatewayConfig | None = None,
    *,
    extra_routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """The gateway's ASGI application.

    Args:
        backend: runs the tasks (:class:`~repp2p.gateway.backend.ClientBackend` over a live
            client).
        config: limits, default redundancy and timeout, bearer token.
        extra_routes: more routes served beside ``/v1`` (the network explorer's pages);
            the bearer token does not guard them (they show public network records).

    Returns:
        A Starlette application; serve it with :func:`serve` inside a trio run.
    """
    config = config or GatewayConfig()
    limits = Limits(
        max_batch=config.max_batch,
        redundancy=config.redundancy,
        max_redundancy=config.max_redundancy,
        timeout_s=config.timeout_s,
        max_timeout_s=config.max_timeout_s,
    )
    slots = trio.Semaphore(config.max_concurrent_tasks)
    expected = config.token.encode("ascii")

    def check_token(request: Request) -> None:
        if not config.token:
            _check_host(request)
            return
        # The scheme is case-insensitive (RFC 7235); the token is compared in constant time.
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        presented = given.strip().encode("latin-1", "replace")
        if not (scheme.lower() == "bearer") & hmac.compare_digest(presented, expected):
            raise ApiError(
                ApiReason.INVALID_API_KEY,
                "missing or wrong bearer token (Authorization: Bearer TOKEN)",
            )

    async def run_task(engine: str, data: bytes, timeout: float, **options: Any) -> TaskResult:
        from repp2p.client import TaskError

        # The wait for a slot counts against the task's time: a request is never held
        # longer than it asked for.
        deadline = trio.current_time() + timeout
        acquired = False
        with trio.move_on_at(deadline):
            await slots.acquire()
            acquired = True
        left = deadline - trio.current_time()
        if not acquired or left <= 0:
            if acquired:
                slots.release()
            raise ApiError(
                ApiReason.GATEWAY_BUSY,
                f"all {config.max_concurrent_tasks} task slots stayed busy for {timeout:g} s",
            )
        try:
            # The client keeps to ``left`` itself; the margin only bounds a client that
            # would not (its overrun is a missing result, not a hung request).
            with trio.fail_after(left + SUBMIT_MARGIN_S):
                return await backend.submit(engine, data, timeout=left, **options)
        except TaskError as exc:
            reason = TASK_REASONS.get(exc.reason, ApiReason.NO_RESULT)
            raise ApiError(reason, str(exc)) from None
        except ReppError as exc:
            # Not a verdict on the task but a failure of the client under the gateway (its
            # store, its streams): logged whole here, named only by its kind to the caller,
            # since its message may hold local paths.
            log.warning("gateway: %s task failed in the client: %r", engine, exc)
            raise ApiError(
                ApiReason.NO_RESULT,
                f"{engine}: the gateway's client failed on this task ({type(exc).__name__})",
            ) from None
        except trio.TooSlowError:
            raise ApiError(ApiReason.NO_RESULT, f"{engine}: no result in {timeout:g} s") from None
        finally:
            slots.release()

    def network_models() -> tuple[int, list[ModelInfo]]:
        try:
            return backend.models()
        except ReppError as exc:  # e.g. the client's store cannot be read just now
            log.warning("gateway: the client's view failed: %r", exc)
            raise ApiError(
                ApiReason.CLIENT_UNAVAILABLE,
                f"the gateway's client cannot read its view just now ({type(exc).__name__})",
            ) from None

    async def list_models(request: Request) -> Response:
        check_token(request)
        created, models = network_models()
        return JSONResponse({"object": "list", "data": [model_object(m, created) for m in models]})

    async def get_model(request: Request) -> Response:
        check_token(request)
        name = request.path_params["model"]
        created, models = network_models()
        for model in models:
            if model.engine == name:
                return JSONResponse(model_object(model, created))
        raise ApiError(
            ApiReason.MODEL_NOT_FOUND,
            f"no eligible node serves {name!r} in the current view",
            "model",
        )

    async def embeddings(request: Request) -> Response:
        check_token(request)
        _check_json(request)
        body = parse_json(await _read_body(request, config.max_body_bytes, config.body_timeout_s))
        wanted = parse_embeddings(body, limits, max_input_size)
        results: list[TaskResult | None] = [None] * len(wanted.inputs)
        errors: list[ApiError | None] = [None] * len(wanted.inputs)

        async def run_batch() -> Response:
            async def one(i: int, data: bytes, cancel: trio.CancelScope) -> None:
                try:
                    results[i] = await run_task(
                        wanted.model, data, config.timeout_s, redundancy=wanted.redundancy
                    )
                except ApiError as exc:
                    errors[i] = exc
                    # One failed input fails the request: the others' tasks would be
                    # thrown away, so they give their slots back now.
                    cancel.cancel()

            async with trio.open_nursery() as nursery:
                for i, data in enumerate(wanted.inputs):
                    nursery.start_soon(one, i, data, nursery.cancel_scope)
            failed = [(i, e) for i, e in enumerate(errors) if e is not None]
            if failed:
                i, first = failed[0]
                where = f"input[{i}]" if len(errors) > 1 else "the input"
                raise ApiError(first.reason, f"{where}: {first.detail}", first.param)
            done = [r for r in results if r is not None]
            payload = embeddings_response(wanted.model, done, wanted.encoding_format)
            return _answer(payload)

        return await _unless_disconnected(request, run_batch)

    async def tasks(request: Request) -> Response:
        check_token(request)
        _check_json(request)
        body = parse_json(await _read_body(request, config.max_body_bytes, config.body_timeout_s))
        wanted = parse_task(body, limits, max_input_size)

        async def run_one() -> Response:
            result = await run_task(
                wanted.engine,
                wanted.data,
                wanted.timeout_s,
                redundancy=wanted.redundancy,
                tee_kinds=wanted.tee_kinds,
                max_price=wanted.max_price,
                min_reputation=wanted.min_reputation,
            )
            return _answer(task_response(result))

        return await _unless_disconnected(request, run_one)

    routes = [
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", get_model, methods=["GET"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/tasks", tasks, methods=["POST"]),
        *extra_routes,
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(_RequestCap, limit=config.max_requests)],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
    )


def handler_routes(handlers: Sequence[tuple[str, Callable[[], tuple[str, bytes]]]]) -> list[Route]:
    """Starlette ``GET`` routes for ``(path, handler)`` pairs whose handler takes no arguments
    and returns ``(content type, body)``, as :meth:`repp2p.explorer.Explorer.routes` gives.

    The handlers run in the event loop, as on a node's status port: they read the client's
    record store, which belongs to this thread.
    """

    def endpoint(handler: Callable[[], tuple[str, bytes]]) -> Callable[[Request], Any]:
        async def serve_handler(request: Request) -> Response:
            try:
                content_type, body = handler()
            except ReppError as exc:  # e.g. the store cannot be read just now: try again
                log.warning("gateway: %r failed: %r", request.url.path, exc)
                raise ApiError(
                    ApiReason.CLIENT_UNAVAILABLE,
                    f"{request.url.path} cannot be built just now ({type(exc).__name__})",
                ) from None
            return Response(body, media_type=content_type)

        return serve_handler

    return [Route(path, endpoint(handler), methods=["GET"]) for path, handler in handlers]


def build_client_app(
    client: Client,
    config: GatewayConfig | None = None,
    *,
    explorer: bool = True,
    extra_routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """:func:`build_app` over a live client, with the network explorer's page and JSON at
    ``/explorer`` and ``/explorer.json`` (public, as on a node's status port; docs/explorer.md)
    unless ``explorer`` is False. This is what ``repp2p gateway`` serves."""
    routes = list(extra_routes)
    # The explorer reads the client's view keeper, which the concrete view service exposes.
    keeper = getattr(client.views, "keeper", None)
    if explorer and keeper is not None:
        from repp2p.explorer import Explorer

        pages = Explorer(keeper, client.clock, peer_id=client.peer_id, role="client")
        routes += handler_routes(pages.routes())
        app = build_app(ClientBackend(client), config, extra_routes=routes)
        # The explorer's REP figures are replayed by a background task for the app's
        # lifetime (once per epoch), never by a request (docs/explorer.md).
        app.router.lifespan_context = _background(pages.run)
        return app
    return build_app(ClientBackend(client), config, extra_routes=routes)


def _background(run: Callable[[], Awaitable[None]]) -> Callable[[Any], Any]:
    """A Starlette lifespan that runs ``run()`` from startup until shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            yield
            nursery.cancel_scope.cancel()

    return lifespan


class _RequestCap:
    """ASGI middleware: at most ``limit`` HTTP requests in the application at once; one
    more is answered 503 ``gateway_overloaded`` with ``Retry-After`` without reading its
    body. Idle connections and unfinished headers are Hypercorn's to close
    (``keep_alive_timeout``, 5 s), so they hold no request here.

    Every write of an answer must complete within :data:`SEND_TIMEOUT_S`: a client that
    leaves its answer unread (its TCP window shut, or over HTTP/2 a stream window it never
    opens, which no TCP timeout sees) would otherwise hold its request, and its place
    under ``limit``, forever. Past the deadline the request ends and its connection is
    aborted (through :data:`ABORT_CONNECTION`, where :func:`serve` runs it).
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def bounded_send(message: Any) -> None:
            with trio.move_on_after(SEND_TIMEOUT_S) as waited:
                await send(message)
            if waited.cancelled_caught:
                abort = (scope.get("state") or {}).get(ABORT_CONNECTION)
                if abort is not None:
                    abort()
                raise _AnswerUnread

        try:
            if self.active >= self.limit:
                error = ApiError(
                    ApiReason.GATEWAY_OVERLOADED,
                    f"the gateway is handling its most requests at once ({self.limit}); "
                    "retry shortly",
                )
                response = JSONResponse(error.body(), error.status, headers=error.headers())
                await response(scope, receive, bounded_send)
                return
            self.active += 1
            try:
                await self.app(scope, receive, bounded_send)
            finally:
                self.active -= 1
        except _AnswerUnread:
            # %r: the path is the caller's text (newlines would forge log lines)
            log.info(
                "gateway: %r: the client left its answer unread for %g s; connection closed",
                scope.get("path"),
                SEND_TIMEOUT_S,
            )


class _AnswerUnread(Exception):
    """A write of an answer outlived :data:`SEND_TIMEOUT_S` (raised through the app to
    :class:`_RequestCap`, which ends the request quietly)."""


async def _unless_disconnected(
    request: Request, work: Callable[[], Awaitable[Response]]
) -> Response:
    """``await work()``, cancelled if the client hangs up first: a task nobody will read
    gives its slot back at once instead of running to its timeout. Call it once the body
    has been read (what arrives next on the ASGI channel is the disconnect)."""
    done: list[Response] = []
    failed: list[ApiError] = []

    async def watch(cancel: trio.CancelScope) -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        cancel.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch, nursery.cancel_scope)
        try:
            done.append(await work())
        except ApiError as exc:  # raised after the nursery: it is the caller's answer
            failed.append(exc)
        finally:
            nursery.cancel_scope.cancel()
    if failed:
        raise failed[0]
    if done:
        return done[0]
    # The client is gone: this answer is never read (499: nginx's "client closed request").
    return Response(status_code=499)


def _bound_unacknowledged_sends(sock: socket.socket) -> None:
    """Abort a connection whose peer leaves sent data unacknowledged, its window shut, for
    :data:`SEND_TIMEOUT_S` (``TCP_USER_TIMEOUT``, inherited by accepted connections).

    Hypercorn writes answers without a deadline; a client that asks for a large answer
    and never reads it would hold its request, and its place under ``max_requests``,
    forever. Linux only; elsewhere such a client is bounded by ``max_requests`` alone.
    """
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if option is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, option, int(SEND_TIMEOUT_S * 1000))


def _check_host(request: Request) -> None:
    """Without a token, serve only requests addressed to an IP address or ``localhost``.

    A web page the user visits can make its own DNS name resolve to 127.0.0.1 (DNS
    rebinding) and then call the gateway as a same-origin site, reading answers and
    spending the client's tasks; its requests carry that name in ``Host``. An IP literal
    cannot be rebound, so it, ``localhost`` and ``*.localhost`` (browsers resolve those to
    loopback themselves) are the names a token-less gateway answers; parsed as the status
    endpoint parses it (:func:`repp2p.net.status_http.parse_host`: a malformed Host names
    nothing).
    """
    host = request.headers.get("host", "")
    try:
        name, literal = parse_host(host)
    except ValueError:  # malformed: no name it could be checked against
        name, literal = "", False
    if literal or name == "localhost" or name.endswith(".localhost"):
        return
    raise ApiError(
        ApiReason.UNTRUSTED_HOST,
        f"requests for host {host[:100]!r} need a bearer token: without one the gateway "
        "answers only requests to an IP address or localhost (a guard against DNS "
        "rebinding); configure a token to serve other names",
    )


def _check_json(request: Request) -> None:
    """POST bodies must be declared JSON. A cross-site page can send a form or a
    ``text/plain`` body to the gateway without a CORS preflight (and so without asking);
    ``application/json`` needs a preflight, which the gateway never grants."""
    declared = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if declared != "application/json":
        raise ApiError(
            ApiReason.UNSUPPORTED_MEDIA_TYPE,
            f"the body must be sent as Content-Type: application/json (got {declared[:60]!r})",
        )


def _answer(payload: dict[str, Any]) -> Response:
    header = verification_header(payload[VERIFICATION_FIELD])
    return JSONResponse(payload, headers={VERIFICATION_HEADER: header})


async def _read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The request body, refused (413) past ``limit`` bytes whether or not the client
    announced its length, and (408) when it has not arrived within ``timeout`` seconds."""
    announced = request.headers.get("content-length")
    if announced is not None:
        # ASCII digits only ("²".isdigit() is true), and short: int() of thousands of
        # digits raises, and 20 significant digits already exceed any limit.
        if not (announced.isascii() and announced.isdigit()):
            raise ApiError(ApiReason.INVALID_VALUE, "Content-Length is not a number")
        digits = announced.lstrip("0")
        if len(digits) > 19 or int(digits or "0") > limit:
            raise _too_large(limit)
    chunks, size = [], 0
    # A client dripping its body holds a connection and its buffer: it has a deadline.
    with trio.move_on_after(timeout):
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
        except ClientDisconnect:  # nobody reads the answer; not a gateway failure to log
            raise ApiError(
                ApiReason.INVALID_VALUE, "the client closed the connection mid-body"
            ) from None
        return b"".join(chunks)
    raise ApiError(
        ApiReason.REQUEST_TIMEOUT, f"the request body did not arrive within {timeout:g} s"
    )


def _too_large(limit: int) -> ApiError:
    return ApiError(ApiReason.REQUEST_TOO_LARGE, f"the request body exceeds {limit} bytes")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    reason = {404: ApiReason.NOT_FOUND, 405: ApiReason.METHOD_NOT_ALLOWED}.get(exc.status_code)
    if reason is None:
        return JSONResponse(
            {
                "error": {
                    "message": exc.detail,
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            },
            status_code=exc.status_code,
        )
    detail = f"{request.method} {request.url.path}: {exc.detail}"
    return JSONResponse(ApiError(reason, detail).body(), status_code=exc.status_code)


async def _internal_error(request: Request, exc: Exception) -> Response:
    # %r: a path is the caller's text, and may hold newlines that would forge log lines
    log.exception("gateway: %s %r failed", request.method, request.url.path)
    error = ApiError(ApiReason.INTERNAL_ERROR, "the gateway failed on this request (logged)")
    return JSONResponse(error.body(), status_code=error.status)


async def serve(
    app: Starlette,
    config: GatewayConfig,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``config.host:config.port`` until cancelled (Hypercorn, trio).

    ``task_status.started`` gets the bound URLs, e.g. ``["http://127.0.0.1:8080"]``.

    Hypercorn's own accept loop holds every connection it is offered (idle ones for its
    keep-alive timeout), so a flood of connections would take the file descriptors the
    gateway's client needs for the network. This loop hands Hypercorn at most
    ``config.max_connections`` connections at once; one more is answered 503
    ``gateway_overloaded`` (within :data:`REFUSE_S`) and closed, and beyond as many again
    waiting for that answer, a connection is closed at once.
    """
    from hypercorn.config import Config
    from hypercorn.trio.lifespan import Lifespan
    from hypercorn.trio.tcp_server import TCPServer
    from hypercorn.trio.worker_context import WorkerContext
    from hypercorn.typing import ConnectionState
    from hypercorn.utils import repr_socket_addr, wrap_app

    hyper = Config()
    host = f"[{config.host}]" if ":" in config.host else config.host
    hyper.bind = [f"{host}:{config.port}"]
    hyper.accesslog = None
    hyper.errorlog = log
    # Headers beyond 16 KiB are refused before the app sees the request over HTTP/1.1;
    # HTTP/2 clients (Hypercorn also speaks h2c) are told the same limit in its settings.
    hyper.h11_max_incomplete_size = 16 * 1024
    hyper.h2_max_header_list_size = 16 * 1024
    # A connection's headers must arrive within this of its opening (or of its previous
    # answer): Hypercorn's idle timer runs until a request's headers are complete, so a
    # client dripping its headers is closed. Set here, not left to Hypercorn's default.
    hyper.keep_alive_timeout = HEADERS_TIMEOUT_S
    hyper.include_server_header = False
    # No hyper.read_timeout: it also closes a connection whose client is silently waiting
    # for a long task's answer. The body's deadline is the app's (_read_body).

    asgi = wrap_app(app, hyper.wsgi_max_body_size, "asgi")
    lifespan_state: dict[str, Any] = {}
    lifespan = Lifespan(asgi, hyper, lifespan_state)
    context = WorkerContext(None)
    sockets = hyper.create_sockets()
    listeners, urls = [], []
    for sock in sockets.insecure_sockets:
        _bound_unacknowledged_sends(sock)
        sock.listen(hyper.backlog)
        listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
        urls.append(f"http://{repr_socket_addr(sock.family, sock.getsockname())}")
    held = refusing = 0

    async def connection(stream: trio.SocketStream) -> None:
        nonlocal held, refusing
        if held >= config.max_connections:
            if refusing < config.max_connections:  # else closed at once (serve_listeners)
                refusing += 1
                try:
                    await _refuse_connection(stream, config.max_connections)
                finally:
                    refusing -= 1
            return
        held += 1
        try:
            with trio.CancelScope() as scope:
                # Each request's scope["state"] is a copy of this: the app can abort the
                # connection it came on (an answer left unread, _RequestCap).
                state = ConnectionState({**lifespan_state, ABORT_CONNECTION: scope.cancel})
                await TCPServer(asgi, hyper, context, state, _ClosingStream(stream, scope.cancel))
        except Exception as exc:
            # One connection's failure inside the HTTP server ends that connection, never
            # the gateway: Hypercorn 0.18's HTTP/2 raised KeyError on a DATA frame for a
            # request it had already answered, and serve_listeners let it out.
            _connection_failed(exc)
        finally:
            held -= 1

    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        for url in urls:
            log.info("gateway: serving on %s", url)
        task_status.started(urls)
        try:
            # serve_listeners closes each connection once its handler returns.
            await trio.serve_listeners(connection, listeners)
        finally:
            lifespan_nursery.cancel_scope.cancel()


def _connection_failed(exc: Exception) -> None:
    """Log a connection that failed inside Hypercorn (it is closed): its kind at WARNING,
    the traceback at DEBUG (the caller's bytes may be in it)."""

    def kinds(e: BaseException) -> set[str]:
        if isinstance(e, BaseExceptionGroup):
            return set().union(*(kinds(inner) for inner in e.exceptions))
        return {type(e).__name__}

    log.warning(
        "gateway: a connection failed in the HTTP server (%s); closed",
        ", ".join(sorted(kinds(exc))),
    )
    log.debug("gateway: the failed connection's error", exc_info=exc)


class _ClosingStream:
    """A connection's stream as Hypercorn is handed it: once the client has closed it (end
    of file, or a reset) or Hypercorn closes it, the connection's handling ends, as if
    the client hung up (which it did; Hypercorn too treats end of file as a hang-up).
    Hypercorn would keep a closed connection, and its socket, until its idle timer runs
    out (``keep_alive_timeout``): here its place under ``max_connections`` and its file
    descriptor are given back at once."""

    def __init__(self, stream: trio.SocketStream, on_close: Callable[[], None]) -> None:
        self._stream = stream
        self._on_close = on_close

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        try:
            data = await self._stream.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._on_close()
            raise
        if not data:
            self._on_close()
        return data

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            self._on_close()


async def _refuse_connection(stream: trio.SocketStream, limit: int) -> None:
    """503 ``gateway_overloaded`` to a connection over ``max_connections``, spending at most
    :data:`REFUSE_S` on it (its request is read first, so that closing does not reset the
    connection before the answer is read)."""
    error = ApiError(
        ApiReason.GATEWAY_OVERLOADED,
        f"the gateway holds its most connections at once ({limit}); retry shortly",
    )
    body = json.dumps(error.body()).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nretry-after: 1\r\nconnection: close\r\n\r\n"
    )
    with trio.move_on_after(REFUSE_S):
        try:
            await stream.receive_some(16 * 1024)
            await stream.send_all(head.encode() + body)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
