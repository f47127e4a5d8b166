"""The HTTP layer's answers to what a task backend does: each task failure becomes its
OpenAI-shaped error, the concurrency limit answers 429, and a bug answers 500 without a
stack trace. The backend here is a test implementation of ``TaskBackendAPI`` (no network is
faked: the network path is tests/gateway/test_openai_client.py); the app runs in-process
through httpx's ASGI transport."""

from __future__ import annotations

import pytest
import trio

from repp2p.client import TaskError
from repp2p.gateway import GatewayConfig, TaskBackendAPI, build_app
from repp2p.gateway.shapes import ModelInfo

httpx = pytest.importorskip("httpx", reason="httpx comes with the openai client")


class ScriptedBackend(TaskBackendAPI):
    """Raises what it is told to, or waits until released."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.release = trio.Event()
        self.started = 0

    def models(self) -> tuple[int, list[ModelInfo]]:
        return 1000, [ModelInfo("echo", 3, ("simulated",))]

    async def submit(self, engine, data, **options):
        self.started += 1
        if self.error is not None:
            raise self.error
        await self.release.wait()
        raise TaskError("no_result", "released")


def _client(backend: TaskBackendAPI, **config) -> httpx.AsyncClient:
    app = build_app(backend, GatewayConfig(port=0, **config))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://gateway/v1")


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (TaskError("no_nodes", "no eligible node serves 'echo'"), 503, "no_eligible_node"),
        (TaskError("no_result", "no valid result within 30 s"), 504, "no_result"),
        (TaskError("no_majority", "1 vs 1"), 502, "no_majority"),
        (TaskError("input_refused", "refused the input: bad_input"), 400, "invalid_value"),
    ],
)
async def test_task_failures_become_openai_errors(error, status, code):
    async with _client(ScriptedBackend(error)) as http:
        with trio.fail_after(10):
            done = await http.post("/tasks", json={"engine": "echo", "input": "x"})
    assert done.status_code == status
    body = done.json()["error"]
    assert body["code"] == code and body["message"] == str(error)


async def test_a_bug_is_a_500_without_a_stack_trace():
    async with _client(ScriptedBackend(RuntimeError("secret internals"))) as http:
        with trio.fail_after(10):
            done = await http.post("/tasks", json={"engine": "echo", "input": "x"})
    assert done.status_code == 500 and done.json()["error"]["code"] == "internal_error"
    assert "secret internals" not in done.text and "Traceback" not in done.text


async def test_models_come_from_the_backend():
    async with _client(ScriptedBackend()) as http:
        done = await http.get("/models")
    (model,) = done.json()["data"]
    assert (model["id"], model["created"], model["repp2p"]["eligible_nodes"]) == ("echo", 1000, 3)


async def test_when_every_slot_stays_busy_the_request_gets_429():
    backend = ScriptedBackend()
    async with _client(backend, max_concurrent_tasks=1) as http:
        answers = {}

        async def holder():
            answers["first"] = await http.post(
                "/tasks", json={"engine": "echo", "input": "a", "timeout_s": 60}
            )

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(holder)
                while backend.started == 0:  # the first request holds the only slot
                    await trio.sleep(0.01)
                second = await http.post(
                    "/tasks", json={"engine": "echo", "input": "b", "timeout_s": 0.2}
                )
                backend.release.set()
    assert second.status_code == 429 and second.json()["error"]["code"] == "gateway_busy"
    assert backend.started == 1  # the second never reached the network
    assert answers["first"].status_code == 504  # released with no result


async def test_without_a_configured_token_none_is_asked_and_with_one_it_is():
    async with _client(ScriptedBackend()) as http:
        assert (await http.get("/models")).status_code == 200
    token = "a-long-enough-token-0001"
    async with _client(ScriptedBackend(), token=token) as http:
        assert (await http.get("/models")).status_code == 401
        for wrong in ("Bearer nope", f"Basic {token}", f"Bearer {token}x", token):
            done = await http.get("/models", headers={"Authorization": wrong})
            assert done.status_code == 401 and done.json()["error"]["type"] == (
                "authentication_error"
            )
        done = await http.get("/models", headers={"Authorization": f"Bearer {token}"})
        assert done.status_code == 200


async def test_a_dripped_body_gets_408():
    async def drip():
        yield b'{"engine": "echo",'
        await trio.sleep(5)
        yield b' "input": "x"}'

    backend = ScriptedBackend()
    async with _client(backend, body_timeout_s=0.2) as http:
        with trio.fail_after(10):
            done = await http.post("/tasks", content=drip())
    assert done.status_code == 408 and done.json()["error"]["code"] == "request_timeout"
    assert backend.started == 0
