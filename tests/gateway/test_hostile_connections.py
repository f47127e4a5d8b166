"""The gateway's real server (Hypercorn's trio worker on 127.0.0.1) under hostile
connections: a connection flood is capped (one more connection gets a clear 503, a flood
beyond that is closed at once, not held), an HTTP/2 client that never opens its flow-control
window cannot keep request places forever, an HTTP/2 body sent after its answer closes
that connection only (it took the whole gateway down), and a request key that JSON can carry
but UTF-8 cannot (a lone surrogate) is a 400, not a 500 with a logged traceback.

Every wait is bounded; the backend is the cue backend of test_hostile_http.py.
"""

from __future__ import annotations

import contextlib
import json

import pytest
import trio

from repp2p.gateway import GatewayConfig, build_app, serve
from repp2p.gateway import app as gateway_app
from tests.gateway.test_hostile_http import CueBackend

httpx = pytest.importorskip("httpx", reason="httpx comes with the openai client")
h2_connection = pytest.importorskip("h2.connection", reason="h2 comes with Hypercorn")


async def _serve(nursery, backend=None, **config) -> tuple[str, int, str]:
    settings = GatewayConfig(port=0, **config)
    (url,) = await nursery.start(serve, build_app(backend or CueBackend(), settings), settings)
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port), url


async def _exchange(host: str, port: int, request: bytes, timeout: float = 5) -> bytes:
    """Send ``request`` on a new connection and read until the server closes it (or the
    answer is complete): the raw answer, b"" when closed without one."""
    stream = await trio.open_tcp_stream(host, port)
    received = b""
    try:
        with trio.move_on_after(timeout):
            await stream.send_all(request)
            while chunk := await stream.receive_some():
                received += chunk
                head, _, body = received.partition(b"\r\n\r\n")
                length = [
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ]
                if length and len(body) >= length[0]:
                    break
    except trio.BrokenResourceError:  # reset: closed without (the rest of) an answer
        pass
    finally:
        await stream.aclose()
    return received


async def _closed_by_server(stream: trio.SocketStream) -> None:
    """Return once the server has closed ``stream`` (EOF or reset)."""
    try:
        while await stream.receive_some():
            pass
    except trio.BrokenResourceError:
        pass


GET_MODELS = b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


async def test_a_lone_surrogate_key_is_a_400_not_a_500(nursery):
    host, port, _ = await _serve(nursery)
    for path, body in (
        (b"/v1/tasks", b'{"\\ud800": 1, "engine": "echo", "input": "x"}'),
        (b"/v1/embeddings", b'{"model": "embed-minilm", "input": "x", "\\udfff": 2}'),
        (b"/v1/tasks", json.dumps({"k" * 100_000: 1}).encode()),
    ):
        request = (
            b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (path, len(body), body)
        )
        answer = await _exchange(host, port, request)
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400"), answer[:300]
        error = json.loads(payload)["error"]
        assert error["code"] == "unknown_parameter"
        # the caller's text is echoed short and escaped, never a megabyte of it
        assert len(error["message"]) < 200 and len(error["param"]) < 100


async def test_connections_beyond_the_cap_get_503_and_a_flood_is_not_held(nursery, monkeypatch):
    # Idle connections and refused ones would otherwise be closed after 5 s and 1 s: long
    # enough here that only the cap can explain a connection closed at once.
    monkeypatch.setattr(gateway_app, "HEADERS_TIMEOUT_S", 30.0)
    monkeypatch.setattr(gateway_app, "REFUSE_S", 30.0)
    host, port, url = await _serve(nursery, max_connections=2)
    held = [await trio.open_tcp_stream(host, port) for _ in range(2)]  # idle: both places
    with trio.fail_after(10):
        while True:  # until the server has accepted both: then one more is refused
            answer = await _exchange(host, port, GET_MODELS)
            if answer.startswith(b"HTTP/1.1 503"):
                break
            assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
            await trio.sleep(0.05)
    head, _, payload = answer.partition(b"\r\n\r\n")
    error = json.loads(payload)["error"]
    assert error["code"] == "gateway_overloaded" and "2" in error["message"]
    assert b"retry-after: 1" in head.lower() and b"connection: close" in head.lower()
    # A flood of silent connections: at most max_connections of them wait to be refused,
    # the others are closed at once (they hold no descriptor for seconds).
    flood = [await trio.open_tcp_stream(host, port) for _ in range(10)]
    closed = 0

    async def watch(stream: trio.SocketStream) -> None:
        nonlocal closed
        await _closed_by_server(stream)
        closed += 1

    with trio.move_on_after(5):
        async with trio.open_nursery() as watchers:
            for stream in flood:
                watchers.start_soon(watch, stream)
    assert closed >= len(flood) - 2, closed
    for stream in held + flood:
        await stream.aclose()
    # Once the holders are gone the gateway serves again.
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:
        with trio.fail_after(10):
            while (await http.get("/v1/models")).status_code != 200:
                await trio.sleep(0.05)


async def test_an_http2_client_that_opens_no_window_cannot_hold_request_places(
    nursery, monkeypatch
):
    import h2.config
    import h2.settings

    monkeypatch.setattr(gateway_app, "SEND_TIMEOUT_S", 1.0)
    host, port, url = await _serve(nursery, max_requests=2)
    # HTTP/2 with prior knowledge (h2c), every stream's window 0: no answer's body can be
    # sent, and the TCP connection stays healthy (TCP_USER_TIMEOUT never fires).
    conn = h2_connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.local_settings = h2.settings.Settings(
        client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0}
    )
    conn.initiate_connection()
    for stream_id in (1, 3):  # one per request place
        conn.send_headers(
            stream_id,
            [
                (":method", "GET"),
                (":path", "/v1/models"),
                (":scheme", "http"),
                (":authority", f"127.0.0.1:{port}"),
            ],
            end_stream=True,
        )
    stalled = await trio.open_tcp_stream(host, port)
    await stalled.send_all(conn.data_to_send())
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:
        with trio.fail_after(10):
            while (await http.get("/v1/models")).status_code != 503:  # both places held
                await trio.sleep(0.05)
        with trio.fail_after(10):  # ...until their answers' deadline frees them
            while (await http.get("/v1/models")).status_code != 200:
                await trio.sleep(0.1)
    with trio.fail_after(5):  # and the stalled connection itself is closed
        await _closed_by_server(stalled)
    await stalled.aclose()


async def test_an_http2_body_after_its_answer_closes_that_connection_only(nursery):
    """An h2c request refused before its body was read (415: not JSON), whose DATA frame
    then arrives: Hypercorn's HTTP/2 raised KeyError for the stream it had already
    forgotten, and that one connection took the whole gateway down (the exception left
    serve). Now that connection is closed and the gateway goes on serving."""
    import h2.config
    import h2.events

    host, port, url = await _serve(nursery)
    conn = h2_connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(
        1,
        [
            (":method", "POST"),
            (":path", "/v1/tasks"),
            (":scheme", "http"),
            (":authority", f"127.0.0.1:{port}"),
            ("content-type", "text/plain"),
        ],
    )
    attacker = await trio.open_tcp_stream(host, port)
    await attacker.send_all(conn.data_to_send())
    with trio.fail_after(5):  # the gateway answers in full before it reads the body
        status, ended = None, False
        while not ended:
            for event in conn.receive_data(await attacker.receive_some()):
                if isinstance(event, h2.events.ResponseReceived):
                    status = dict(event.headers)[b":status"]
                ended = ended or isinstance(event, h2.events.StreamEnded)
            await attacker.send_all(conn.data_to_send())
    assert status == b"415"
    # the body, after the answer: a byte at a time (Hypercorn forgets the stream a moment
    # after its answer ends; a byte before that is taken as body), bypassing h2's state
    data = b"\x00\x00\x01\x00\x00\x00\x00\x00\x01{"  # DATA, stream 1, 1 byte

    async def drip() -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while True:
                await attacker.send_all(data)
                await trio.sleep(0.05)

    with trio.fail_after(5):
        async with trio.open_nursery() as dripping:
            dripping.start_soon(drip)
            await _closed_by_server(attacker)
            dripping.cancel_scope.cancel()
    await attacker.aclose()
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:
        assert (await http.get("/v1/models")).status_code == 200
