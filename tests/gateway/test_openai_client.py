"""The gateway driven by the official ``openai`` client, over a real network.

Two nodes (real py-libp2p hosts on 127.0.0.1, real enclave processes with the SIMULATED
TEE) serve echo and embed-minilm; a real :class:`repp2p.client.Client` joins them; the
gateway serves on an ephemeral loopback port with a bearer token. Embeddings must equal a
local run of the engine, and every response must carry the verification the client made.
"""

from __future__ import annotations

import base64
import json
import struct

import pytest
import trio
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from engines import get_engine, unavailable_engines
from repp2p.client import Client
from repp2p.gateway import (
    VERIFICATION_FIELD,
    VERIFICATION_HEADER,
    GatewayConfig,
    build_client_app,
    serve,
)
from repp2p.gateway.shapes import HEADER_KEYS
from repp2p.testing.network import EPOCH_S, dev_params, local_network

openai = pytest.importorskip("openai", reason="the openai client is a dev dependency")
httpx = pytest.importorskip("httpx", reason="httpx comes with the openai client")

pytestmark = pytest.mark.slow

TOKEN = "test-token-0123456789abcdef"
TEXTS = ["peer to peer compute", "A man is playing a guitar."]


def _expected(text: str) -> list[float]:
    value = json.loads(get_engine("embed-minilm").run(text.encode()))
    return [x / value["scale"] for x in value["embedding"]]


def _check_verification(item: dict, nodes: set[str], engine: str) -> None:
    assert item["engine"] == engine and item["node"] in nodes
    assert item["simulated"] is True and item["tee_kind"] == "simulated"
    assert "SIMULATED TEE" in item["warning"]
    assert len(bytes.fromhex(item["receipt_id"])) == 32
    assert len(bytes.fromhex(item["claim_id"])) == 32
    # A node that does not answer in time is released and the others' answers stand: at
    # least one verified answer, never more agreeing than asked for.
    assert 1 <= item["agreed"] <= item["redundancy"]
    assert item["agreed"] <= len(item["proofs"])
    accepted = [p for p in item["proofs"] if p["outcome"] == "ok"]
    assert accepted and accepted[0]["receipt_id"] == item["receipt_id"]


async def test_openai_client_gets_verified_embeddings_from_a_devnet(tmp_path):
    if "embed-minilm" in unavailable_engines():
        pytest.skip(f"embed-minilm unavailable: {unavailable_engines()['embed-minilm']}")
    async with local_network(tmp_path, 2, engines=("echo", "embed-minilm")) as nodes:
        peer_ids = {n.peer_id for n in nodes}
        async with Client.open(
            [nodes[0].addrs()[0]], data_dir=tmp_path / "client", network_params=dev_params()
        ) as client:
            with trio.fail_after(4 * EPOCH_S):
                assert await client.wait_for_nodes("embed-minilm", 2, timeout=4 * EPOCH_S) == 2
            config = GatewayConfig(port=0, token=TOKEN, max_body_bytes=64 * 1024, max_batch=4)
            # A mounted route (as the explorer mounts its pages): served beside /v1, public.
            extra = [Route("/hello", lambda request: PlainTextResponse("hello"))]
            app = build_client_app(client, config, extra_routes=extra)
            async with trio.open_nursery() as nursery:
                urls = await nursery.start(serve, app, config)
                base = f"{urls[0]}/v1"
                oa = openai.AsyncOpenAI(base_url=base, api_key=TOKEN, max_retries=0, timeout=60)
                with trio.fail_after(120):
                    await _models(oa)
                    await _embeddings(oa, peer_ids)
                    await _errors(oa, base)
                    await _tasks(base, peer_ids)
                nursery.cancel_scope.cancel()


async def _models(oa) -> None:
    models = await oa.models.list()
    by_id = {m.id: m for m in models.data}
    assert set(by_id) == {"echo", "embed-minilm"}
    extra = by_id["embed-minilm"].model_extra["repp2p"]
    assert extra == {"eligible_nodes": 2, "tee_kinds": ["simulated"], "simulated": True}
    assert (await oa.models.retrieve("echo")).id == "echo"
    with pytest.raises(openai.NotFoundError) as caught:
        await oa.models.retrieve("sentiment")  # no node serves it
    assert caught.value.code == "model_not_found"


async def _embeddings(oa, peer_ids: set[str]) -> None:
    # Floats, a batch: one task per input, in order.
    raw = await oa.embeddings.with_raw_response.create(
        model="embed-minilm", input=TEXTS, encoding_format="float"
    )
    response = raw.parse()
    assert [d.index for d in response.data] == [0, 1]
    for text, item in zip(TEXTS, response.data, strict=True):
        assert item.embedding == _expected(text)  # bit-identical to a local run
    assert response.usage.prompt_tokens == response.usage.total_tokens > 2
    body = response.model_extra[VERIFICATION_FIELD]
    assert len(body) == 2 and body[0]["task_id"] != body[1]["task_id"]
    for item in body:
        _check_verification(item, peer_ids, "embed-minilm")
    header = json.loads(raw.headers[VERIFICATION_HEADER])
    assert [h["receipt_id"] for h in header] == [b["receipt_id"] for b in body]
    assert all(set(h) == set(HEADER_KEYS) for h in header)

    # base64, with redundancy 2 (an extra body field): both nodes must agree.
    raw = await oa.embeddings.with_raw_response.create(
        model="embed-minilm",
        input=TEXTS[0],
        encoding_format="base64",
        extra_body={"redundancy": 2},
    )
    packed = json.loads(raw.http_response.content)["data"][0]["embedding"]
    floats = struct.unpack("<384f", base64.b64decode(packed))
    assert list(floats) == [
        struct.unpack("<f", struct.pack("<f", x))[0] for x in _expected(TEXTS[0])
    ]
    item = raw.parse().model_extra[VERIFICATION_FIELD][0]
    _check_verification(item, peer_ids, "embed-minilm")
    assert item["redundancy"] == 2 and {p["node"] for p in item["proofs"]} <= peer_ids

    # The client's default (no encoding_format): it asks for base64 and decodes it.
    default = await oa.embeddings.create(model="embed-minilm", input=TEXTS[1])
    assert default.data[0].embedding == pytest.approx(_expected(TEXTS[1]), abs=1e-6)


async def _errors(oa, base: str) -> None:
    wrong = openai.AsyncOpenAI(base_url=base, api_key="not-the-token-000000", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        await wrong.models.list()
    assert caught.value.code == "invalid_api_key"
    bad_inputs = [
        ({"model": "echo", "input": "x"}, "model_not_supported", "model"),
        ({"model": "embed-minilm", "input": ""}, "invalid_value", "input"),
        ({"model": "embed-minilm", "input": ["a"] * 5}, "invalid_value", "input"),
        ({"model": "embed-minilm", "input": [[101, 102]]}, "invalid_value", "input"),
        ({"model": "embed-minilm", "input": "x" * 20000}, "invalid_value", "input"),
        ({"model": "embed-minilm", "input": "x", "dimensions": 16}, "invalid_value", "dimensions"),
        (
            {"model": "embed-minilm", "input": "x", "encoding_format": "hex"},
            "invalid_value",
            "encoding_format",
        ),
        ({"model": "embed-minilm", "input": "x", "redundancy": 99}, "invalid_value", "redundancy"),
    ]
    for body, code, param in bad_inputs:
        with pytest.raises(openai.BadRequestError) as caught:
            await oa.embeddings.create(
                model=body.pop("model"), input=body.pop("input"), extra_body=body
            )
        assert (caught.value.code, caught.value.param) == (code, param), body
        assert caught.value.body["message"]


async def _tasks(base: str, peer_ids: set[str]) -> None:
    # The raw bodies below are declared JSON, as the gateway asks (415 otherwise).
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=base, headers=auth, timeout=60) as http:
        done = await http.post("/tasks", json={"engine": "echo", "input": "hello, gateway"})
        assert done.status_code == 200, done.text
        body = done.json()
        assert body["output"] == "hello, gateway"
        assert base64.b64decode(body["output_base64"]) == b"hello, gateway"
        _check_verification(body[VERIFICATION_FIELD][0], peer_ids, "echo")
        assert json.loads(done.headers[VERIFICATION_HEADER])[0]["task_id"] == body["id"]

        binary = bytes(range(256))
        done = await http.post(
            "/tasks", json={"engine": "echo", "input_base64": base64.b64encode(binary).decode()}
        )
        assert done.status_code == 200, done.text
        assert done.json()["output"] is None
        assert base64.b64decode(done.json()["output_base64"]) == binary

        # No node serves sentiment: 503 with a clear message, OpenAI's error shape.
        done = await http.post("/tasks", json={"engine": "sentiment", "input": "great"})
        assert done.status_code == 503
        error = done.json()["error"]
        assert error["code"] == "no_eligible_node" and "sentiment" in error["message"]
        assert error["type"] == "service_unavailable_error"

        # Request size limit (64 KiB here), announced or not.
        done = await http.post("/tasks", content=b"{" + b" " * (65 * 1024) + b"}")
        assert done.status_code == 413 and done.json()["error"]["code"] == "request_too_large"

        async def chunks():
            for _ in range(70):
                yield b" " * 1024

        done = await http.post("/tasks", content=chunks())
        assert done.status_code == 413 and done.json()["error"]["code"] == "request_too_large"

        for content, code in [
            (b"not json", "invalid_json"),
            (b"[1, 2]", "invalid_json"),
            (b'{"engine": "echo", "input": "x", "colour": "red"}', "unknown_parameter"),
            (b'{"engine": "Echo!", "input": "x"}', "invalid_value"),
            (b'{"engine": "echo", "input": "x", "input_base64": "eA=="}', "invalid_value"),
            (b'{"engine": "echo", "input_base64": "***"}', "invalid_value"),
            (b'{"engine": "echo", "input": "x", "timeout_s": 1e9}', "invalid_value"),
            (b'{"engine": "echo", "input": "x", "tee_kinds": ["sgx"]}', "invalid_value"),
        ]:
            done = await http.post("/tasks", content=content)
            assert done.status_code == 400, (content, done.text)
            assert done.json()["error"]["code"] == code, content

        async with httpx.AsyncClient(timeout=10) as public:
            done = await public.get(base.removesuffix("/v1") + "/hello")
        assert (done.status_code, done.text) == (200, "hello")

        # The explorer (what `repp2p gateway` serves beside /v1): public, the devnet's nodes.
        async with httpx.AsyncClient(timeout=30) as public:
            root = base.removesuffix("/v1")
            page = await public.get(root + "/explorer")
            snapshot = (await public.get(root + "/explorer.json")).json()
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert snapshot["role"] == "client"
        assert {row["peer_id"] for row in snapshot["nodes"]} == peer_ids

        done = await http.get("/nowhere")
        assert done.status_code == 404 and done.json()["error"]["code"] == "not_found"
        done = await http.get("/tasks")
        assert done.status_code == 405
        assert done.json()["error"]["code"] == "method_not_allowed"
        done = await http.post(
            "/tasks",
            json={"engine": "echo", "input": "x"},
            headers={"Authorization": "Bearer wrong"},
        )
        assert done.status_code == 401
