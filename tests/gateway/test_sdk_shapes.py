"""Every answer of the gateway, as the official ``openai`` SDK parses it: models, embeddings
(with ``usage``), and each error status as the SDK's exception with OpenAI's ``code``.

Fast and network-free: the SDK talks to the ASGI application through httpx's transport, and
the backend hands back canned, well-formed results (tests/gateway/test_openai_client.py runs
the same SDK against a real devnet).
"""

from __future__ import annotations

import json

import pytest
import trio

from repp2p.client import Proof, TaskError, TaskResult
from repp2p.gateway import VERIFICATION_FIELD, GatewayConfig, TaskBackendAPI, build_app
from repp2p.gateway.shapes import ModelInfo

openai = pytest.importorskip("openai", reason="the openai client is a dev dependency")
httpx = pytest.importorskip("httpx", reason="httpx comes with the openai client")

TOKEN = "sdk-token-0123456789abcdef"
VALUES = list(range(-192, 192))


def _result(data: bytes) -> TaskResult:
    proof = Proof(
        node="12D3KooWnode",
        rank=0,
        tee_kind="simulated",
        simulated=True,
        measurement="ab" * 32,
        claim_id="cd" * 32,
        receipt_id="ef" * 32,
        latency_ms=3,
        outcome="ok",
    )
    output = {"dim": 384, "embedding": VALUES, "scale": 10000, "tokens": len(data) + 2}
    return TaskResult(
        output=json.dumps(output).encode(),
        task_id="01" * 32,
        offer_id="02" * 32,
        engine="embed-minilm",
        redundancy=1,
        agreed=1,
        proofs=(proof,),
        latency_ms=5,
    )


class CannedBackend(TaskBackendAPI):
    """Embeds any text (a fixed vector); ``"busy"`` holds its slot, ``"none"`` has no node."""

    def __init__(self) -> None:
        self.hold = trio.Event()
        self.holding = trio.Event()

    def models(self) -> tuple[int, list[ModelInfo]]:
        return 1_764_720_000, [ModelInfo("embed-minilm", 2, ("simulated",))]

    async def submit(self, engine, data, **options):
        if data == b"none":
            raise TaskError("no_nodes", f"no eligible node serves {engine!r} in this view")
        if data == b"busy":
            self.holding.set()
            await self.hold.wait()
        return _result(data)


def _sdk(app, **options) -> openai.AsyncOpenAI:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False))
    return openai.AsyncOpenAI(
        base_url="http://127.0.0.1:8080/v1", http_client=http, max_retries=0, **options
    )


async def test_models_and_embeddings_parse_in_the_sdk():
    sdk = _sdk(build_app(CannedBackend(), GatewayConfig(port=0, token=TOKEN)), api_key=TOKEN)
    with trio.fail_after(30):
        (model,) = (await sdk.models.list()).data
        assert (model.id, model.object, model.created, model.owned_by) == (
            "embed-minilm",
            "model",
            1_764_720_000,
            "repp2p-network",
        )
        retrieved = await sdk.models.retrieve("embed-minilm")
        assert retrieved.model_extra["repp2p"]["simulated"] is True
        # The SDK's default asks for base64 and decodes it; floats when asked.
        for fmt in ({}, {"encoding_format": "float"}):
            done = await sdk.embeddings.create(model="embed-minilm", input=["ab", "cde"], **fmt)
            assert [d.index for d in done.data] == [0, 1] and done.object == "list"
            assert done.data[0].embedding == pytest.approx([v / 10000 for v in VALUES])
            assert (done.usage.prompt_tokens, done.usage.total_tokens) == (4 + 5, 4 + 5)
            assert done.model == "embed-minilm"
            assert len(done.model_extra[VERIFICATION_FIELD]) == 2


async def test_every_error_is_the_sdks_exception_with_openais_code():
    backend = CannedBackend()
    app = build_app(backend, GatewayConfig(port=0, token=TOKEN, max_concurrent_tasks=1))
    sdk = _sdk(app, api_key=TOKEN)
    cases = [
        (_sdk(app, api_key="wrong-token-0123456789").models.list(), "AuthenticationError", 401),
        (sdk.models.retrieve("sentiment"), "NotFoundError", 404),
        (sdk.embeddings.create(model="echo", input="x"), "BadRequestError", 400),
        (sdk.embeddings.create(model="embed-minilm", input="none"), "InternalServerError", 503),
    ]
    with trio.fail_after(30):
        for call, name, status in cases:
            with pytest.raises(getattr(openai, name)) as caught:
                await call
            assert caught.value.status_code == status
            body = caught.value.body
            assert set(body) == {"message", "type", "param", "code"} and body["code"]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: sdk.embeddings.create(model="embed-minilm", input="busy", timeout=20)
            )
            await backend.holding.wait()  # it holds the only slot
            with pytest.raises(openai.RateLimitError) as caught:
                await sdk.post(
                    "/tasks",
                    body={"engine": "echo", "input": "x", "timeout_s": 0.1},
                    cast_to=object,
                )
            assert caught.value.code == "gateway_busy"
            assert caught.value.response.headers["retry-after"] == "1"
            backend.hold.set()
