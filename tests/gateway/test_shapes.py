"""The gateway's request parsing and response shapes, without a network: hostile bodies are
refused with a 400 naming the field, never a crash; outputs are checked before they are
handed on."""

from __future__ import annotations

import base64
import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from repp2p.client import Proof, TaskResult
from repp2p.errors import ConfigError
from repp2p.gateway.config import GatewayConfig, parse_listen
from repp2p.gateway.errors import STATUS, ApiError, ApiReason
from repp2p.gateway.shapes import (
    HEADER_KEYS,
    SIMULATED_WARNING,
    Limits,
    embedding_of,
    embeddings_response,
    encode_embedding,
    parse_embeddings,
    parse_json,
    parse_task,
    task_response,
    verification_header,
)

LIMITS = Limits(max_batch=4, redundancy=1, max_redundancy=3, timeout_s=30.0, max_timeout_s=60.0)


def _max_input(engine: str) -> int:
    return 100


def _code(call) -> tuple[str, str | None]:
    with pytest.raises(ApiError) as caught:
        call()
    return caught.value.reason.value, caught.value.param


def test_every_reason_has_a_status_and_an_openai_type():
    assert set(STATUS) == set(ApiReason)
    for status, kind in STATUS.values():
        assert 400 <= status < 600 and kind.endswith("_error")
    body = ApiError(ApiReason.INVALID_VALUE, "bad input", "input").body()
    assert body == {
        "error": {
            "message": "bad input",
            "type": "invalid_request_error",
            "param": "input",
            "code": "invalid_value",
        }
    }


def test_embeddings_requests():
    wanted = parse_embeddings({"model": "embed-minilm", "input": "hi"}, LIMITS, _max_input)
    assert (wanted.inputs, wanted.encoding_format, wanted.redundancy) == ((b"hi",), "float", 1)
    body = {
        "model": "embed-minilm",
        "input": ["a", "b"],
        "encoding_format": "base64",
        "user": "u",
        "redundancy": 3,
        "dimensions": 384,
    }
    wanted = parse_embeddings(body, LIMITS, _max_input)
    assert (wanted.inputs, wanted.encoding_format, wanted.redundancy) == ((b"a", b"b"), "base64", 3)


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"input": "x"}, "invalid_value", "model"),
        ({"model": 5, "input": "x"}, "invalid_value", "model"),
        ({"model": "echo", "input": "x"}, "model_not_supported", "model"),
        ({"model": "embed-minilm"}, "invalid_value", "input"),
        ({"model": "embed-minilm", "input": []}, "invalid_value", "input"),
        ({"model": "embed-minilm", "input": ["a"] * 5}, "invalid_value", "input"),
        ({"model": "embed-minilm", "input": [1, 2]}, "invalid_value", "input"),
        ({"model": "embed-minilm", "input": " \n"}, "invalid_value", "input"),
        ({"model": "embed-minilm", "input": "x" * 101}, "invalid_value", "input"),
        ({"model": "embed-minilm", "input": "\ud800"}, "invalid_value", "input"),
        ({"model": "embed-minilm", "input": "x", "dimensions": 3}, "invalid_value", "dimensions"),
        ({"model": "embed-minilm", "input": "x", "redundancy": 4}, "invalid_value", "redundancy"),
        (
            {"model": "embed-minilm", "input": "x", "redundancy": True},
            "invalid_value",
            "redundancy",
        ),
        ({"model": "embed-minilm", "input": "x", "user": 1}, "invalid_value", "user"),
        ({"model": "embed-minilm", "input": "x", "top_p": 1}, "unknown_parameter", "top_p"),
    ],
)
def test_bad_embeddings_requests_name_the_field(body, code, param):
    assert _code(lambda: parse_embeddings(body, LIMITS, _max_input)) == (code, param)


def test_task_requests():
    wanted = parse_task({"engine": "echo", "input": "héllo"}, LIMITS, _max_input)
    assert (wanted.engine, wanted.data, wanted.timeout_s) == ("echo", "héllo".encode(), 30.0)
    body = {
        "engine": "echo",
        "input_base64": base64.b64encode(b"\x00\xff").decode(),
        "timeout_s": 5,
        "tee_kinds": ["simulated", "nitro", "simulated"],
        "max_price": 10,
        "min_reputation": 500,
    }
    wanted = parse_task(body, LIMITS, _max_input)
    assert wanted.data == b"\x00\xff" and wanted.tee_kinds == ("nitro", "simulated")
    assert (wanted.max_price, wanted.min_reputation, wanted.timeout_s) == (10, 500, 5.0)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"engine": "echo"}, "input"),
        ({"engine": "echo", "input": ""}, "input"),
        ({"engine": "echo", "input": 5}, "input"),
        ({"engine": "echo", "input": "x" * 101}, "input"),
        ({"engine": "echo", "input_base64": "%%%"}, "input_base64"),
        ({"engine": "echo", "input_base64": 7}, "input_base64"),
        ({"engine": "../etc", "input": "x"}, "engine"),
        ({"engine": "echo", "input": "x", "timeout_s": 0}, "timeout_s"),
        ({"engine": "echo", "input": "x", "timeout_s": float("nan")}, "timeout_s"),
        ({"engine": "echo", "input": "x", "timeout_s": "5"}, "timeout_s"),
        ({"engine": "echo", "input": "x", "tee_kinds": "simulated"}, "tee_kinds"),
        ({"engine": "echo", "input": "x", "max_price": -1}, "max_price"),
        ({"engine": "echo", "input": "x", "min_reputation": 1001}, "min_reputation"),
    ],
)
def test_bad_task_requests_name_the_field(body, param):
    assert _code(lambda: parse_task(body, LIMITS, _max_input)) == ("invalid_value", param)


@given(st.binary(max_size=200))
def test_any_body_parses_or_is_a_400(data):
    for parse in (parse_embeddings, parse_task):
        try:
            parse(parse_json(data), LIMITS, _max_input)
        except ApiError as exc:
            assert exc.status == 400


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(), st.lists, max_leaves=8))
def test_any_json_value_parses_or_is_a_400(value):
    body = {"model": "embed-minilm", "engine": "echo", "input": value}
    for parse in (parse_embeddings, parse_task):
        try:
            parse(body, LIMITS, _max_input)
        except ApiError as exc:
            assert exc.status == 400


def _output(values: list[int], **changes) -> bytes:
    value = {"dim": 384, "embedding": values, "scale": 10000, "tokens": 5, **changes}
    return json.dumps(value).encode()


def test_embedding_outputs_are_checked():
    values = list(range(-192, 192))
    floats, tokens = embedding_of(_output(values))
    assert floats == [v / 10000 for v in values] and tokens == 5
    for bad in [
        b"not json",
        b"[]",
        _output(values[:-1]),
        _output(values, dim=383),
        _output(values, scale=0),
        _output([*values[:-1], 1.5]),
        _output([*values[:-1], True]),
        _output(values, tokens=-1),
    ]:
        assert _code(lambda b=bad: embedding_of(b)) == ("bad_output", None)


def test_base64_embeddings_are_little_endian_float32():
    encoded = encode_embedding([0.5, -1.0], "base64")
    assert base64.b64decode(encoded) == struct.pack("<2f", 0.5, -1.0)
    assert encode_embedding([0.5], "float") == [0.5]


def _result(output: bytes, simulated: bool = True) -> TaskResult:
    proof = Proof(
        node="12D3KooWnode",
        rank=0,
        tee_kind="simulated" if simulated else "nitro",
        simulated=simulated,
        measurement="ab" * 32,
        claim_id="cd" * 32,
        receipt_id="ef" * 32,
        latency_ms=12,
        outcome="ok",
    )
    return TaskResult(
        output=output,
        task_id="01" * 32,
        offer_id="02" * 32,
        engine="embed-minilm",
        redundancy=1,
        agreed=1,
        proofs=(proof,),
        latency_ms=20,
    )


def test_responses_carry_the_verification():
    body = embeddings_response("embed-minilm", [_result(_output([1] * 384))], "float")
    assert body["data"][0]["embedding"] == [0.0001] * 384
    assert body["usage"] == {"prompt_tokens": 5, "total_tokens": 5}
    (item,) = body["repp2p_verification"]
    assert item["receipt_id"] == "ef" * 32 and item["warning"] == SIMULATED_WARNING
    assert item["proofs"][0]["outcome"] == "ok"
    header = verification_header(body["repp2p_verification"])
    assert header.isascii() and json.loads(header)[0]["receipt_id"] == "ef" * 32
    # A full batch's header fits the 16 KiB of headers HTTP clients accept, with room.
    full = verification_header(body["repp2p_verification"] * GatewayConfig().max_batch)
    assert len(full) < 12 * 1024 and set(json.loads(full)[0]) == set(HEADER_KEYS)
    real = task_response(_result(b"\xff", simulated=False))
    assert real["output"] is None and real["output_base64"] == "/w=="
    assert "warning" not in real["repp2p_verification"][0]


def test_config_bounds():
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ["localhost:80", "127.0.0.1", "127.0.0.1:70000", "1.2.3.4:x"]:
        with pytest.raises(ConfigError):
            parse_listen(bad)
    for bad in [
        {"host": "example.org"},
        {"token": "short"},
        {"token": "has a space in it, long enough"},
        {"max_body_bytes": 10},
        {"redundancy": 6},
        {"timeout_s": 0},
        {"timeout_s": 500},
        {"body_timeout_s": 0},
        {"max_batch": True},
    ]:
        with pytest.raises(ConfigError):
            GatewayConfig(**bad)


def test_an_oversized_base64_input_is_refused_before_it_is_decoded():
    # 1000 characters would decode to far more than 100 bytes; the stray "*" shows the
    # length is what refused it, not the decoder.
    body = {"engine": "echo", "input_base64": "A" * 1000 + "*"}
    with pytest.raises(ApiError) as caught:
        parse_task(body, LIMITS, _max_input)
    assert caught.value.param == "input_base64" and "more than 100 bytes" in str(caught.value)
    # The longest base64 of an allowed input still parses.
    exact = base64.b64encode(b"x" * 100).decode()
    assert parse_task({"engine": "echo", "input_base64": exact}, LIMITS, _max_input).data == (
        b"x" * 100
    )
    assert _code(
        lambda: parse_task({"engine": "echo", "input_base64": ""}, LIMITS, _max_input)
    ) == (
        "invalid_value",
        "input_base64",
    )


def test_null_optional_embedding_fields_are_not_given():
    body = {"model": "embed-minilm", "input": "x", "encoding_format": None, "user": None}
    wanted = parse_embeddings(body, LIMITS, _max_input)
    assert wanted.encoding_format == "float"


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 200_000 + b"]" * 200_000,  # nesting past the recursion limit
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        b'{"engine": "echo", "input": "x", "max_price": ' + b"9" * 5000 + b"}",  # huge int
    ],
)
def test_json_bombs_are_a_400(body):
    with pytest.raises(ApiError) as caught:
        parse_task(parse_json(body), LIMITS, _max_input)
    assert caught.value.status == 400


def test_a_huge_batch_is_refused_by_its_count():
    body = {"model": "embed-minilm", "input": ["a"] * 200_000}
    assert _code(lambda: parse_embeddings(body, LIMITS, _max_input)) == ("invalid_value", "input")


def test_the_verification_header_cannot_be_split():
    # Values a hostile peer could influence are escaped: no CR, LF or non-ASCII in the header.
    item = dict.fromkeys(HEADER_KEYS, "x\r\nSet-Cookie: a=b\u2028é\x00")
    header = verification_header([item])
    assert header.isascii() and header.isprintable()
    assert json.loads(header)[0]["node"] == item["node"]
