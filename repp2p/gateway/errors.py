"""The gateway's errors: each one an HTTP status and an OpenAI-shaped JSON body.

OpenAI's clients read errors as ``{"error": {"message", "type", "param", "code"}}`` with the
status code saying whose fault it was (4xx: the request's; 5xx: the network's or ours). Each
:class:`ApiReason` is one ``code``; :data:`STATUS` gives its status and ``type``, in one
table. A :class:`ApiError` is raised anywhere while a request is handled and turned into its
response in one place (:func:`repp2p.gateway.app.build_app`).
"""

from __future__ import annotations

import enum
from typing import Any

from repp2p.errors import ReasonedError


class ApiReason(enum.Enum):
    """Why a request failed; the value is the ``code`` of OpenAI's error object."""

    INVALID_JSON = "invalid_json"
    INVALID_VALUE = "invalid_value"
    UNKNOWN_PARAMETER = "unknown_parameter"
    MODEL_NOT_SUPPORTED = "model_not_supported"
    MODEL_NOT_FOUND = "model_not_found"
    REQUEST_TOO_LARGE = "request_too_large"
    REQUEST_TIMEOUT = "request_timeout"
    INVALID_API_KEY = "invalid_api_key"
    UNTRUSTED_HOST = "untrusted_host"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    GATEWAY_BUSY = "gateway_busy"
    GATEWAY_OVERLOADED = "gateway_overloaded"
    CLIENT_UNAVAILABLE = "client_unavailable"
    NO_ELIGIBLE_NODE = "no_eligible_node"
    NO_RESULT = "no_result"
    NO_MAJORITY = "no_majority"
    BAD_OUTPUT = "bad_output"
    INTERNAL_ERROR = "internal_error"


#: reason -> (HTTP status, OpenAI error ``type``)
STATUS: dict[ApiReason, tuple[int, str]] = {
    ApiReason.INVALID_JSON: (400, "invalid_request_error"),
    ApiReason.INVALID_VALUE: (400, "invalid_request_error"),
    ApiReason.UNKNOWN_PARAMETER: (400, "invalid_request_error"),
    ApiReason.MODEL_NOT_SUPPORTED: (400, "invalid_request_error"),
    ApiReason.MODEL_NOT_FOUND: (404, "invalid_request_error"),
    ApiReason.REQUEST_TOO_LARGE: (413, "invalid_request_error"),
    ApiReason.REQUEST_TIMEOUT: (408, "invalid_request_error"),
    ApiReason.INVALID_API_KEY: (401, "authentication_error"),
    # No token is configured and the Host header names a DNS name other than localhost:
    # what a DNS-rebinding web page sends (docs/gateway.md, "Browsers").
    ApiReason.UNTRUSTED_HOST: (403, "permission_error"),
    # A POST whose body is not declared JSON: what a cross-site form or a no-cors fetch
    # sends without a CORS preflight.
    ApiReason.UNSUPPORTED_MEDIA_TYPE: (415, "invalid_request_error"),
    ApiReason.NOT_FOUND: (404, "invalid_request_error"),
    ApiReason.METHOD_NOT_ALLOWED: (405, "invalid_request_error"),
    # Every task slot of the gateway stayed taken for the request's whole timeout.
    ApiReason.GATEWAY_BUSY: (429, "rate_limit_error"),
    # The gateway already holds its most requests at once (``max_requests``): refused at
    # once, before the body is read, so a flood cannot pile up waiting requests.
    ApiReason.GATEWAY_OVERLOADED: (503, "service_unavailable_error"),
    # The gateway's own client could not answer (its store or its view failed just now).
    ApiReason.CLIENT_UNAVAILABLE: (503, "service_unavailable_error"),
    # No node in the client's view serves the engine (or all are busy, penalised, down).
    ApiReason.NO_ELIGIBLE_NODE: (503, "service_unavailable_error"),
    # Nodes were chosen but none returned a verified result in time.
    ApiReason.NO_RESULT: (504, "server_error"),
    # Redundant nodes disagreed with no majority: no answer can be vouched for.
    ApiReason.NO_MAJORITY: (502, "server_error"),
    # A verified output that is not what the engine's schema promises.
    ApiReason.BAD_OUTPUT: (502, "server_error"),
    ApiReason.INTERNAL_ERROR: (500, "server_error"),
}

#: Reasons worth retrying soon: their answers carry ``Retry-After`` (seconds), which the
#: ``openai`` SDK honours between its retries.
RETRY_AFTER_S: dict[ApiReason, int] = {
    ApiReason.GATEWAY_BUSY: 1,
    ApiReason.GATEWAY_OVERLOADED: 1,
}

#: ``repp2p.client.TaskError.reason`` -> the gateway's reason
TASK_REASONS: dict[str, ApiReason] = {
    "no_nodes": ApiReason.NO_ELIGIBLE_NODE,
    "no_result": ApiReason.NO_RESULT,
    "no_majority": ApiReason.NO_MAJORITY,
    # a node's enclave proved the input unusable (a checked Refusal): the caller's input
    "input_refused": ApiReason.INVALID_VALUE,
}


class ApiError(ReasonedError):
    """A request that cannot be answered; ``param`` names the request field at fault."""

    def __init__(self, reason: ApiReason, detail: str, param: str | None = None) -> None:
        super().__init__(reason, detail)
        self.param = param

    @property
    def status(self) -> int:
        """The HTTP status code."""
        return STATUS[self.reason][0]

    def headers(self) -> dict[str, str]:
        """Extra response headers: ``Retry-After`` where :data:`RETRY_AFTER_S` has one."""
        after = RETRY_AFTER_S.get(self.reason)
        return {} if after is None else {"retry-after": str(after)}

    def body(self) -> dict[str, Any]:
        """OpenAI's error object: ``{"error": {"message", "type", "param", "code"}}``.

        Its text is always encodable: a detail or param that echoes the caller's text may
        hold a lone surrogate (JSON carries one, UTF-8 cannot), escaped here (``\\ud800``)
        instead of failing the answer with a 500.
        """
        return {
            "error": {
                "message": encodable(self.detail),
                "type": STATUS[self.reason][1],
                "param": None if self.param is None else encodable(self.param),
                "code": self.reason.value,
            }
        }


def encodable(text: str) -> str:
    """``text`` with what UTF-8 cannot encode (lone surrogates) backslash-escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
