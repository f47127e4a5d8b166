"""The gateway's HTTP application (Starlette) and its server (Hypercorn's trio worker).

Rules of this file: every route handler reads its body through :func:`_read_body` (size
limit before parsing), checks the bearer token first when one is configured, parses with
:mod:`repp2p.gateway.shapes` and runs tasks through a :class:`TaskBackendAPI` under one
concurrency limit; any :class:`ApiError` becomes OpenAI's error object in one handler, and
nothing else escapes as a stack trace to the caller (500 ``internal_error``, logged here).
The application runs in the caller's trio run: the client it submits through lives there.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from engines.manifest import MANIFEST_NAME, Manifest
from repp2p.errors import ReppError
from repp2p.gateway.backend import ClientBackend, TaskBackendAPI
from repp2p.gateway.config import GatewayConfig
from repp2p.gateway.errors import TASK_REASONS, ApiError, ApiReason
from repp2p.gateway.shapes import (
    VERIFICATION_FIELD,
    VERIFICATION_HEADER,
    Limits,
    embeddings_response,
    model_object,
    parse_embeddings,
    parse_json,
    parse_task,
    task_response,
    verification_header,
)

if TYPE_CHECKING:
    from repp2p.client import Client, TaskResult

log = logging.getLogger("repp2p.gateway")

#: Largest input of one task when the engine's manifest is not installed here (the nodes
#: refuse what exceeds their engine's own ``max_input_size``).
DEFAULT_MAX_INPUT = 1 << 20
#: Seconds a task may run past its own timeout before the gateway gives up on it.
SUBMIT_MARGIN_S = 10.0


def max_input_size(engine: str) -> int:
    """The engine's ``max_input_size`` from its manifest, when the engine is installed here
    (found through its entry point, not loaded: its weights need not be here); else
    :data:`DEFAULT_MAX_INPUT` (the nodes still refuse what exceeds their own limit)."""
    import importlib.util

    from engines import engine_entry_points

    try:
        entry = engine_entry_points().get(engine)
        spec = importlib.util.find_spec(entry.module) if entry is not None else None
        if spec is None or spec.origin is None:
            return DEFAULT_MAX_INPUT
        return Manifest.load(Path(spec.origin).with_name(MANIFEST_NAME)).max_input_size
    except (ReppError, ImportError, OSError):  # EngineError is a ReppError
        return DEFAULT_MAX_INPUT


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
    expected = f"Bearer {config.token}".encode()

    def check_token(request: Request) -> None:
        if not config.token:
            return
        given = request.headers.get("authorization", "").encode("latin-1", "replace")
        if not hmac.compare_digest(given, expected):
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
            raise ApiError(ApiReason.NO_RESULT, f"{engine}: {exc}") from exc
        except trio.TooSlowError:
            raise ApiError(ApiReason.NO_RESULT, f"{engine}: no result in {timeout:g} s") from None
        finally:
            slots.release()

    async def list_models(request: Request) -> Response:
        check_token(request)
        created, models = backend.models()
        return JSONResponse({"object": "list", "data": [model_object(m, created) for m in models]})

    async def get_model(request: Request) -> Response:
        check_token(request)
        name = request.path_params["model"]
        created, models = backend.models()
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
        body = parse_json(await _read_body(request, config.max_body_bytes, config.body_timeout_s))
        wanted = parse_embeddings(body, limits, max_input_size)
        results: list[TaskResult | None] = [None] * len(wanted.inputs)
        errors: list[ApiError | None] = [None] * len(wanted.inputs)

        async def one(i: int, data: bytes) -> None:
            try:
                results[i] = await run_task(
                    wanted.model, data, config.timeout_s, redundancy=wanted.redundancy
                )
            except ApiError as exc:
                errors[i] = exc

        async with trio.open_nursery() as nursery:
            for i, data in enumerate(wanted.inputs):
                nursery.start_soon(one, i, data)
        failed = [e for e in errors if e is not None]
        if failed:
            first = failed[0]
            where = f"input[{errors.index(first)}]" if len(errors) > 1 else "the input"
            raise ApiError(first.reason, f"{where}: {first.detail}", first.param)
        done = [r for r in results if r is not None]
        payload = embeddings_response(wanted.model, done, wanted.encoding_format)
        return _answer(payload)

    async def tasks(request: Request) -> Response:
        check_token(request)
        body = parse_json(await _read_body(request, config.max_body_bytes, config.body_timeout_s))
        wanted = parse_task(body, limits, max_input_size)
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

    routes = [
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", get_model, methods=["GET"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/tasks", tasks, methods=["POST"]),
        *extra_routes,
    ]
    return Starlette(
        routes=routes,
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
            content_type, body = handler()
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
    return build_app(ClientBackend(client), config, extra_routes=routes)


def _answer(payload: dict[str, Any]) -> Response:
    header = verification_header(payload[VERIFICATION_FIELD])
    return JSONResponse(payload, headers={VERIFICATION_HEADER: header})


async def _read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The request body, refused (413) past ``limit`` bytes whether or not the client
    announced its length, and (408) when it has not arrived within ``timeout`` seconds."""
    announced = request.headers.get("content-length")
    if announced is not None:
        if not announced.isdigit():
            raise ApiError(ApiReason.INVALID_VALUE, "Content-Length is not a number")
        if int(announced) > limit:
            raise _too_large(limit)
    chunks, size = [], 0
    # A client dripping its body holds a connection and its buffer: it has a deadline.
    with trio.move_on_after(timeout):
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        return b"".join(chunks)
    raise ApiError(
        ApiReason.REQUEST_TIMEOUT, f"the request body did not arrive within {timeout:g} s"
    )


def _too_large(limit: int) -> ApiError:
    return ApiError(ApiReason.REQUEST_TOO_LARGE, f"the request body exceeds {limit} bytes")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), status_code=exc.status)


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
    log.exception("gateway: %s %s failed", request.method, request.url.path)
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
    """
    from hypercorn.config import Config
    from hypercorn.trio import serve as hypercorn_serve

    hyper = Config()
    host = f"[{config.host}]" if ":" in config.host else config.host
    hyper.bind = [f"{host}:{config.port}"]
    hyper.accesslog = None
    hyper.errorlog = log
    # Headers beyond 16 KiB are refused before the app sees the request.
    hyper.h11_max_incomplete_size = 16 * 1024
    hyper.include_server_header = False
    # No hyper.read_timeout: it also closes a connection whose client is silently waiting
    # for a long task's answer. The body's deadline is the app's (_read_body).
    await hypercorn_serve(app, hyper, task_status=task_status)  # type: ignore[arg-type]
