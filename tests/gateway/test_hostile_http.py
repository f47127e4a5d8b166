"""The gateway under hostile or careless HTTP clients: a client that hangs up mid-task gives
its task slot back, a flood of requests is capped with a clear 503, malformed headers are a
400 (never a 500), internal errors do not leak their messages, a failed batch input frees
the others' slots, and the bearer token is checked as RFC 7235 says.

The backend is a test implementation of ``TaskBackendAPI`` that blocks or fails on cue (no
network is faked: the network path is tests/gateway/test_openai_client.py). The disconnect
test runs the real server (Hypercorn's trio worker on 127.0.0.1); the others go through
httpx's ASGI transport or call the ASGI application directly.
"""

from __future__ import annotations

import json
import socket

import pytest
import trio

from repp2p.client import TaskError
from repp2p.errors import ConfigError, StoreError
from repp2p.gateway import GatewayConfig, TaskBackendAPI, build_app, handler_routes, serve
from repp2p.gateway import app as gateway_app
from repp2p.gateway.shapes import ModelInfo

httpx = pytest.importorskip("httpx", reason="httpx comes with the openai client")


class CueBackend(TaskBackendAPI):
    """``submit`` fails at once for inputs in ``fail`` (with that error) and blocks until
    cancelled for the others, counting starts and cancellations."""

    def __init__(self, fail: dict[bytes, BaseException] | None = None) -> None:
        self.fail = fail or {}
        self.started = 0
        self.cancelled = 0

    def models(self) -> tuple[int, list[ModelInfo]]:
        return 1000, [ModelInfo("echo", 1, ("simulated",))]

    async def submit(self, engine, data, **options):
        self.started += 1
        if data in self.fail:
            raise self.fail[data]
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            self.cancelled += 1
            raise


def _http(backend: TaskBackendAPI, extra_routes=(), **config) -> httpx.AsyncClient:
    app = build_app(backend, GatewayConfig(port=0, **config), extra_routes=extra_routes)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080/v1")


async def _post_task(http: httpx.AsyncClient, text: str) -> None:
    await http.post("/tasks", json={"engine": "echo", "input": text, "timeout_s": 60})


async def _wait_until(predicate, timeout: float = 10) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


async def test_a_client_that_hangs_up_mid_task_frees_its_slot(nursery):
    backend = CueBackend({b"quick": TaskError("no_nodes", "no eligible node serves 'echo'")})
    config = GatewayConfig(port=0, max_concurrent_tasks=1)
    (url,) = await nursery.start(serve, build_app(backend, config), config)
    host, port = url.removeprefix("http://").rsplit(":", 1)
    body = json.dumps({"engine": "echo", "input": "slow", "timeout_s": 60}).encode()
    stream = await trio.open_tcp_stream(host, int(port))
    await stream.send_all(
        b"POST /v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    await _wait_until(lambda: backend.started == 1)  # it holds the only slot
    await stream.aclose()  # the client gives up
    await _wait_until(lambda: backend.cancelled == 1)  # its task is cancelled...
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        done = await http.post(
            "/v1/tasks", json={"engine": "echo", "input": "quick", "timeout_s": 2}
        )
    # ...and its slot is free: the next request reaches the backend (not 429 gateway_busy).
    assert done.status_code == 503, done.text
    assert done.json()["error"]["code"] == "no_eligible_node" and backend.started == 2


async def test_a_client_dripping_its_headers_is_closed(nursery, monkeypatch):
    monkeypatch.setattr(gateway_app, "HEADERS_TIMEOUT_S", 0.5)
    backend = CueBackend()
    config = GatewayConfig(port=0)
    (url,) = await nursery.start(serve, build_app(backend, config), config)
    host, port = url.removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    with trio.fail_after(4):  # well before Hypercorn's own default (5 s) would close it
        await stream.send_all(b"POST /v1/tasks HTTP/1.1\r\nHost: gw\r\n")
        received = b""
        while True:  # one header line every 0.1 s: never complete, never idle for long
            try:
                await stream.send_all(b"X-Drip: 1\r\n")
            except trio.BrokenResourceError:
                break
            with trio.move_on_after(0.1):
                chunk = await stream.receive_some()
                if not chunk:
                    break
                received += chunk
    await stream.aclose()
    assert backend.started == 0 and b"200" not in received


async def test_requests_beyond_max_requests_get_503_with_retry_after():
    backend = CueBackend()
    async with _http(backend, max_requests=2) as http:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for text in ("a", "b"):
                    nursery.start_soon(_post_task, http, text)
                await _wait_until(lambda: backend.started == 2)
                over = await http.get("/models")  # a third request, whatever its route
                assert over.status_code == 503
                error = over.json()["error"]
                assert error["code"] == "gateway_overloaded" and "2" in error["message"]
                assert error["type"] == "service_unavailable_error"
                assert over.headers["retry-after"] == "1"
                nursery.cancel_scope.cancel()
        # Once they are done, requests are served again.
        assert (await http.get("/models")).status_code == 200


async def test_a_busy_gateway_says_when_to_retry():
    backend = CueBackend()
    async with _http(backend, max_concurrent_tasks=1) as http:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_post_task, http, "a")
                await _wait_until(lambda: backend.started == 1)
                busy = await http.post(
                    "/tasks", json={"engine": "echo", "input": "b", "timeout_s": 0.1}
                )
                nursery.cancel_scope.cancel()
    assert busy.status_code == 429 and busy.json()["error"]["code"] == "gateway_busy"
    assert busy.headers["retry-after"] == "1"


async def test_one_failed_input_cancels_the_rest_of_its_batch():
    # Input 2 has no node; inputs 0, 1 and 3 would run to their timeout (30 s) holding slots.
    backend = CueBackend({b"none": TaskError("no_nodes", "no eligible node serves it")})
    body = {"model": "embed-minilm", "input": ["a", "b", "none", "c"], "encoding_format": "float"}
    async with _http(backend) as http:
        with trio.fail_after(10):
            done = await http.post("/embeddings", json=body)
    assert done.status_code == 503, done.text
    error = done.json()["error"]
    assert error["code"] == "no_eligible_node" and error["message"].startswith("input[2]:")
    assert backend.cancelled == backend.started - 1  # every other task that started


async def test_an_internal_error_does_not_leak_its_message():
    secret = StoreError("database /home/alice/.local/share/repp2p/store.db is locked")
    backend = CueBackend({b"x": secret})
    async with _http(backend) as http:
        with trio.fail_after(10):
            done = await http.post("/tasks", json={"engine": "echo", "input": "x"})
    assert done.status_code == 504 and done.json()["error"]["code"] == "no_result"
    assert "/home/alice" not in done.text and "StoreError" in done.text


async def test_a_mounted_page_that_cannot_be_built_is_a_503():
    def broken() -> tuple[str, bytes]:
        raise StoreError("database /home/alice/records.db is locked")

    routes = handler_routes([("/explorer.json", broken)])
    transport = httpx.ASGITransport(
        app=build_app(CueBackend(), GatewayConfig(port=0), extra_routes=routes),
        raise_app_exceptions=False,
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        done = await http.get("/explorer.json")
    assert done.status_code == 503 and done.json()["error"]["code"] == "client_unavailable"
    assert "/home/alice" not in done.text


async def test_a_view_that_cannot_be_read_is_a_503_without_its_message():
    class Broken(CueBackend):
        def models(self):
            raise StoreError("database /home/alice/records.db is malformed")

    async with _http(Broken()) as http:
        for path in ("/models", "/models/echo"):
            done = await http.get(path)
            assert done.status_code == 503 and done.json()["error"]["code"] == "client_unavailable"
            assert "/home/alice" not in done.text and "StoreError" in done.text


async def _asgi(app, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes):
    """One request straight through the ASGI interface (headers exactly as given, which
    an HTTP client would normalise): ``(status, JSON body)``."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8080),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict] = []

    async def receive():
        if messages:
            return messages.pop()
        await trio.sleep_forever()

    async def send(message):
        sent.append(message)

    with trio.fail_after(10):
        await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(payload)


@pytest.mark.parametrize(
    ("length", "status", "code"),
    [
        ("\u00b2".encode("latin-1"), 400, "invalid_value"),  # "²".isdigit() is True
        (b"-1", 400, "invalid_value"),
        (b"9" * 5000, 413, "request_too_large"),  # int() of 5000 digits raises
        (b"0" * 5000 + b"2", 400, "invalid_value"),  # 2 bytes ("{}"): no engine given
    ],
)
async def test_a_malformed_content_length_is_a_4xx_not_a_500(length, status, code):
    app = build_app(CueBackend(), GatewayConfig(port=0))
    headers = [
        (b"host", b"127.0.0.1:8080"),
        (b"content-type", b"application/json"),
        (b"content-length", length),
    ]
    got, body = await _asgi(app, "POST", "/v1/tasks", headers, b"{}")
    assert (got, body["error"]["code"]) == (status, code)


async def test_the_bearer_scheme_is_case_insensitive_and_the_token_exact():
    token = "a-long-enough-token-0001"
    async with _http(CueBackend(), token=token) as http:
        for good in (f"Bearer {token}", f"bearer {token}", f"BEARER  {token} "):
            assert (await http.get("/models", headers={"Authorization": good})).status_code == 200
        for bad in (f"Bearer{token}", f"Token {token}", f"Bearer {token[:-1]}", "Bearer "):
            assert (await http.get("/models", headers={"Authorization": bad})).status_code == 401


def test_a_token_no_http_client_could_send_is_refused():
    with pytest.raises(ConfigError, match="ASCII"):
        GatewayConfig(token="jeton-très-long-0123456789")


def test_input_limits_are_read_once_not_per_request(monkeypatch):
    import engines

    scans = []
    real = engines.engine_entry_points

    def counting():
        scans.append(1)
        return real()

    monkeypatch.setattr(engines, "engine_entry_points", counting)
    gateway_app.installed_input_limits.cache_clear()
    try:
        sizes = [gateway_app.max_input_size(name) for name in ("echo", "made-up-1", "made-up-2")]
        assert gateway_app.max_input_size("echo") == sizes[0]
    finally:
        gateway_app.installed_input_limits.cache_clear()
    assert len(scans) == 1
    assert sizes[1:] == [gateway_app.DEFAULT_MAX_INPUT] * 2


async def test_without_a_token_only_ip_and_localhost_hosts_are_served():
    # A DNS-rebinding page reaches 127.0.0.1 under its own name, which is in Host.
    async with _http(CueBackend()) as http:
        served = ("127.0.0.1:8080", "localhost:8080", "LOCALHOST", "[::1]:8080", "10.0.0.2")
        for host in (*served, "app.localhost:8080"):
            done = await http.get("/models", headers={"Host": host})
            assert done.status_code == 200, host
        refused = ("evil.example:8080", "localhost.evil.example", "127.0.0.1.nip.io", "")
        for host in (*refused, "[::1", "localhost:port", "evil example"):
            done = await http.get("/models", headers={"Host": host})
            assert done.status_code == 403, host
            error = done.json()["error"]
            assert error["code"] == "untrusted_host" and "token" in error["message"]
    token = "a-long-enough-token-0001"
    async with _http(CueBackend(), token=token) as http:  # a token is the guard then
        auth = {"Host": "api.example.org", "Authorization": f"Bearer {token}"}
        assert (await http.get("/models", headers=auth)).status_code == 200


async def test_post_bodies_must_be_declared_json():
    # A cross-site form or no-cors fetch (no CORS preflight) cannot declare JSON.
    backend = CueBackend({b"x": TaskError("no_nodes", "no eligible node serves 'echo'")})
    body = json.dumps({"engine": "echo", "input": "x"})
    async with _http(backend) as http:
        for declared in ("text/plain", "application/x-www-form-urlencoded", None):
            headers = {} if declared is None else {"Content-Type": declared}
            done = await http.post("/tasks", content=body, headers=headers)
            assert done.status_code == 415, declared
            assert done.json()["error"]["code"] == "unsupported_media_type"
        done = await http.post(
            "/tasks", content=body, headers={"Content-Type": "Application/JSON; charset=utf-8"}
        )
        assert done.status_code == 503  # accepted, parsed, run: no node serves it
    assert backend.started == 1


@pytest.mark.skipif(
    not hasattr(socket, "TCP_USER_TIMEOUT"), reason="TCP_USER_TIMEOUT is Linux-only"
)
async def test_a_client_that_never_reads_its_answer_is_cut_off(nursery, monkeypatch):
    monkeypatch.setattr(gateway_app, "SEND_TIMEOUT_S", 1.0)
    backend = CueBackend()
    backend.submit = _embedding  # answers at once, ~300 KB for a full batch
    config = GatewayConfig(port=0, max_requests=1)
    (url,) = await nursery.start(serve, build_app(backend, config), config)
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # its window shuts soon
    await sock.connect((host, int(port)))
    body = json.dumps({"model": "embed-minilm", "input": ["x"] * 32, "encoding_format": "float"})
    await sock.send(
        b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body.encode())
    )
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:
        with trio.fail_after(10):
            while (await http.get("/v1/models")).status_code != 503:  # it holds the place
                await trio.sleep(0.05)
        with trio.fail_after(10):
            while (await http.get("/v1/models")).status_code != 200:  # until it is cut off
                await trio.sleep(0.1)
    sock.close()


async def _embedding(engine, data, **options):
    from tests.gateway.test_sdk_shapes import _result

    return _result(data)
