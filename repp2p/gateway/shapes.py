"""Request and response shapes of the gateway's API: parsing and building, no I/O.

Every request body is hostile: it is parsed here into a frozen request object, or refused
with an :class:`~repp2p.gateway.errors.ApiError` naming the field (400), never a crash.
Responses follow OpenAI's shapes (``/v1/models``, ``/v1/embeddings``) plus the
verification of each task in the extra field :data:`VERIFICATION_FIELD` (docs/gateway.md).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from repp2p.gateway.errors import ApiError, ApiReason
from repp2p.records import TEE_KINDS
from repp2p.records.types import ENGINE_ID_PATTERN

if TYPE_CHECKING:  # only for annotations: repp2p.client pulls in the network stack
    from repp2p.client import TaskResult

#: The extra response field that carries one verification per task (in input order).
VERIFICATION_FIELD = "repp2p_verification"
#: The response header that carries the same, without the per-node proofs (compact JSON).
VERIFICATION_HEADER = "x-repp2p-verification"
#: Engines whose output is an embedding (their id is the OpenAI ``model``).
EMBEDDING_ENGINES = frozenset({"embed-minilm"})
#: Dimensions of embed-minilm's embeddings.
EMBEDDING_DIM = 384
#: Said with every result a simulated TEE vouches for.
SIMULATED_WARNING = "SIMULATED TEE: development only, NOT real security"

_EMBEDDING_KEYS = frozenset({"model", "input", "encoding_format", "dimensions", "user"})
_TASK_KEYS = frozenset(
    {"engine", "input", "input_base64", "timeout_s", "tee_kinds", "max_price", "min_reputation"}
)
# Also accepted by both: the repp2p-specific choices.
_SHARED_KEYS = frozenset({"redundancy"})


@dataclasses.dataclass(frozen=True)
class Limits:
    """What a request may ask for (from :class:`repp2p.gateway.config.GatewayConfig`)."""

    max_batch: int
    redundancy: int
    max_redundancy: int
    timeout_s: float
    max_timeout_s: float


@dataclasses.dataclass(frozen=True)
class EmbeddingsRequest:
    """A parsed ``POST /v1/embeddings``: one task per input, in order."""

    model: str
    inputs: tuple[bytes, ...]
    encoding_format: str  # "float" or "base64"
    redundancy: int


@dataclasses.dataclass(frozen=True)
class TaskRequest:
    """A parsed ``POST /v1/tasks``: one task on any engine."""

    engine: str
    data: bytes
    redundancy: int
    timeout_s: float
    tee_kinds: tuple[str, ...]
    max_price: int
    min_reputation: int


def _bad(detail: str, param: str | None = None) -> ApiError:
    return ApiError(ApiReason.INVALID_VALUE, detail, param)


def parse_json(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 400."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise ApiError(ApiReason.INVALID_JSON, "the request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise ApiError(ApiReason.INVALID_JSON, "the request body must be a JSON object")
    return value


#: Most characters of the caller's own text (a key, a TEE kind) an error message repeats.
ECHO_CHARS = 64


def _echo(text: str) -> str:
    """The caller's ``text`` as an error repeats it: at most :data:`ECHO_CHARS` characters
    (a 1 MiB body must not come back as a 1 MiB error message)."""
    return text if len(text) <= ECHO_CHARS else text[:ECHO_CHARS] + "..."


def _check_keys(body: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(body) - allowed - _SHARED_KEYS)
    if unknown:
        raise ApiError(
            ApiReason.UNKNOWN_PARAMETER,
            f"unrecognized request argument: {_echo(unknown[0])}",
            _echo(unknown[0]),
        )


def _int(body: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(f"{key} must be an integer in {low}..{high}", key)
    return value


def _redundancy(body: Mapping[str, Any], limits: Limits) -> int:
    return _int(body, "redundancy", limits.redundancy, 1, limits.max_redundancy)


def _engine_id(value: Any, param: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(ENGINE_ID_PATTERN, value):
        raise _bad(f"{param} must be an engine id, e.g. embed-minilm", param)
    return value


def parse_embeddings(
    body: Mapping[str, Any], limits: Limits, max_input_of: Callable[[str], int]
) -> EmbeddingsRequest:
    """``POST /v1/embeddings`` (OpenAI's request: ``model``, ``input``, ``encoding_format``,
    ``dimensions``, ``user``) plus ``redundancy``.

    ``input`` is a string or a list of up to ``limits.max_batch`` strings, each non-blank
    and at most ``max_input_of(model)`` UTF-8 bytes; token arrays are refused (the engine
    tokenises).
    """
    _check_keys(body, _EMBEDDING_KEYS)
    model = _engine_id(body.get("model"), "model")
    if model not in EMBEDDING_ENGINES:
        raise ApiError(
            ApiReason.MODEL_NOT_SUPPORTED,
            f"{model!r} does not produce embeddings; use one of {sorted(EMBEDDING_ENGINES)}",
            "model",
        )
    max_input = max_input_of(model)
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts:
        raise _bad("input must be a string or a non-empty list of strings", "input")
    if len(texts) > limits.max_batch:
        raise _bad(f"input holds {len(texts)} items; at most {limits.max_batch}", "input")
    inputs = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise _bad(
                f"input[{i}] is not a string (token arrays are not supported: send text)",
                "input",
            )
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            raise _bad(f"input[{i}] is not valid Unicode (lone surrogate)", "input") from None
        if not text.strip():
            raise _bad(f"input[{i}] is blank", "input")
        if len(data) > max_input:
            raise _bad(f"input[{i}] is {len(data)} bytes; at most {max_input}", "input")
        inputs.append(data)
    # null is "not given", as OpenAI's API takes it (some clients send every field).
    encoding = body.get("encoding_format")
    encoding = "float" if encoding is None else encoding
    if encoding not in ("float", "base64"):
        raise _bad("encoding_format must be 'float' or 'base64'", "encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None and dimensions != EMBEDDING_DIM:
        raise _bad(f"{model} embeddings have {EMBEDDING_DIM} dimensions", "dimensions")
    if body.get("user") is not None and not isinstance(body["user"], str):
        raise _bad("user must be a string", "user")
    return EmbeddingsRequest(model, tuple(inputs), encoding, _redundancy(body, limits))


def parse_task(
    body: Mapping[str, Any], limits: Limits, max_input_of: Callable[[str], int]
) -> TaskRequest:
    """``POST /v1/tasks``: ``engine``; ``input`` (UTF-8 text) or ``input_base64``; optional
    ``redundancy``, ``timeout_s``, ``tee_kinds``, ``max_price``, ``min_reputation``. The
    input is at most ``max_input_of(engine)`` bytes."""
    _check_keys(body, _TASK_KEYS)
    engine = _engine_id(body.get("engine"), "engine")
    max_input = max_input_of(engine)
    if ("input" in body) == ("input_base64" in body):
        raise _bad("give exactly one of input (text) and input_base64", "input")
    if "input" in body:
        if not isinstance(body["input"], str):
            raise _bad("input must be a string (binary: input_base64)", "input")
        try:
            data = body["input"].encode("utf-8")
        except UnicodeEncodeError:
            raise _bad("input is not valid Unicode (lone surrogate)", "input") from None
    else:
        encoded = body["input_base64"]
        # Refused by its length before it is decoded: base64 holds 3 bytes per 4 characters.
        if isinstance(encoded, str) and len(encoded) > 4 * -(-max_input // 3):
            raise _bad(
                f"input_base64 is {len(encoded)} characters: more than {max_input} bytes",
                "input_base64",
            )
        try:
            if not isinstance(encoded, str):
                raise ValueError
            data = base64.b64decode(encoded, validate=True)
        except (ValueError, binascii.Error):
            raise _bad("input_base64 must be standard base64", "input_base64") from None
    param = "input" if "input" in body else "input_base64"
    if not data:
        raise _bad("the input is empty", param)
    if len(data) > max_input:
        raise _bad(f"the input is {len(data)} bytes; at most {max_input}", param)
    timeout = body.get("timeout_s", limits.timeout_s)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or not 0 < timeout <= limits.max_timeout_s
    ):
        raise _bad(f"timeout_s must be a number in (0, {limits.max_timeout_s}]", "timeout_s")
    kinds = body.get("tee_kinds", [])
    if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
        raise _bad("tee_kinds must be a list of TEE kinds", "tee_kinds")
    for kind in kinds:
        if kind not in TEE_KINDS:
            raise _bad(f"unknown TEE kind {_echo(kind)!r}; one of {sorted(TEE_KINDS)}", "tee_kinds")
    return TaskRequest(
        engine=engine,
        data=data,
        redundancy=_redundancy(body, limits),
        timeout_s=float(timeout),
        tee_kinds=tuple(sorted(set(kinds))),
        max_price=_int(body, "max_price", 2**63, 0, 2**63),
        min_reputation=_int(body, "min_reputation", 0, 0, 1000),
    )


# -- responses ----------------------------------------------------------------------------


def verification(result: TaskResult) -> dict[str, Any]:
    """What backs one task's result (docs/gateway.md, "Verification"): the accepted node's
    proof at the top level, every answering node's proof in ``proofs``."""
    proof = result.proof
    out: dict[str, Any] = {
        "task_id": result.task_id,
        "offer_id": result.offer_id,
        "engine": result.engine,
        "node": proof.node,
        "tee_kind": proof.tee_kind,
        "simulated": proof.simulated,
        "measurement": proof.measurement,
        "claim_id": proof.claim_id,
        "receipt_id": proof.receipt_id,
        "agreed": result.agreed,
        "redundancy": result.redundancy,
        "latency_ms": result.latency_ms,
        "proofs": [dataclasses.asdict(p) for p in result.proofs],
    }
    if any(p.simulated for p in result.proofs):
        out["warning"] = SIMULATED_WARNING
    return out


#: The keys of a verification that the header repeats: enough to find and check the
#: records (a full batch stays well under the 16 KiB of headers HTTP clients accept).
HEADER_KEYS = ("task_id", "node", "tee_kind", "simulated", "receipt_id", "agreed", "redundancy")


def verification_header(verifications: Sequence[Mapping[str, Any]]) -> str:
    """The header's value: :data:`HEADER_KEYS` of each verification, as compact ASCII JSON."""
    slim = [{k: item[k] for k in HEADER_KEYS} for item in verifications]
    return json.dumps(slim, separators=(",", ":"), ensure_ascii=True)


def embedding_of(output: bytes) -> tuple[list[float], int]:
    """``(embedding, tokens)`` from embed-minilm's canonical JSON output.

    The output is verified (receipts agree on its digest), but what a node's engine wrote
    is still checked against the engine's schema before it is handed on.

    Raises:
        ApiError: BAD_OUTPUT when it is not ``{"dim", "embedding", "scale", "tokens"}``.
    """
    try:
        value = json.loads(output)
        scale, dim, tokens = value["scale"], value["dim"], value["tokens"]
        ints = value["embedding"]
        ok = (
            all(isinstance(x, int) and not isinstance(x, bool) for x in (scale, dim, tokens))
            and scale > 0
            and dim == EMBEDDING_DIM
            and tokens >= 0
            and isinstance(ints, list)
            and len(ints) == dim
            and all(isinstance(x, int) and not isinstance(x, bool) for x in ints)
        )
    except (ValueError, TypeError, KeyError):
        ok = False
    if not ok:
        raise ApiError(ApiReason.BAD_OUTPUT, "the engine's output is not an embedding")
    return [x / scale for x in ints], tokens


def encode_embedding(values: Sequence[float], encoding_format: str) -> list[float] | str:
    """As OpenAI sends it: a list of floats, or base64 of little-endian float32s."""
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")
    return list(values)


def embeddings_response(
    model: str,
    results: Sequence[TaskResult],
    encoding_format: str,
) -> dict[str, Any]:
    """OpenAI's embeddings response for ``results`` (one per input, in order)."""
    data, tokens = [], 0
    for i, result in enumerate(results):
        values, count = embedding_of(result.output)
        tokens += count
        data.append(
            {
                "object": "embedding",
                "index": i,
                "embedding": encode_embedding(values, encoding_format),
            }
        )
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        VERIFICATION_FIELD: [verification(r) for r in results],
    }


def task_response(result: TaskResult) -> dict[str, Any]:
    """``POST /v1/tasks``'s response: the output (as text when it is UTF-8) and its proof."""
    try:
        text: str | None = result.output.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {
        "object": "task",
        "id": result.task_id,
        "engine": result.engine,
        "output": text,
        "output_base64": base64.b64encode(result.output).decode("ascii"),
        VERIFICATION_FIELD: [verification(result)],
    }


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """One engine as the network offers it: eligible nodes and their TEE kinds."""

    engine: str
    nodes: int
    tee_kinds: tuple[str, ...]


def model_object(model: ModelInfo, created: int) -> dict[str, Any]:
    """OpenAI's model object, with the engine's nodes in an extra ``repp2p`` field."""
    return {
        "id": model.engine,
        "object": "model",
        "created": created,
        "owned_by": "repp2p-network",
        "repp2p": {
            "eligible_nodes": model.nodes,
            "tee_kinds": list(model.tee_kinds),
            "simulated": "simulated" in model.tee_kinds,
        },
    }
