"""``repp2p gateway``: an OpenAI-compatible HTTP API over the marketplace.

A light client joins the network (:class:`repp2p.client.Client`) and serves, on loopback by
default, ``GET /v1/models`` (one model per engine with eligible nodes), ``POST
/v1/embeddings`` (the embed-minilm engine, in OpenAI's shapes) and ``POST /v1/tasks`` (any
engine). Every task response carries its verification (node, TEE kind, simulated or not,
measurement, claim and receipt IDs, agreement) in the ``repp2p_verification`` field and the
``x-repp2p-verification`` header. It also serves the network explorer (``/explorer``).
See docs/gateway.md.

Public API::

    GatewayConfig                                  # limits, token, defaults (frozen)
    build_app(backend, config, extra_routes=())    # the Starlette application
    build_client_app(client, config, explorer=True)  # ... over a Client, with the explorer
    handler_routes([(path, handler), ...])         # mount (content type, body) handlers
    serve(app, config, task_status=...)            # Hypercorn on trio, until cancelled
    TaskBackendAPI, ClientBackend                  # what runs the tasks
    ApiError, ApiReason                            # errors as OpenAI error objects

Needs the ``gateway`` extra (Starlette, Hypercorn): ``pip install 'repp2p[gateway]'``.
"""

from repp2p.gateway.app import build_app, build_client_app, handler_routes, serve
from repp2p.gateway.backend import ClientBackend, TaskBackendAPI
from repp2p.gateway.config import DEFAULT_LISTEN, GatewayConfig, parse_listen
from repp2p.gateway.errors import ApiError, ApiReason
from repp2p.gateway.shapes import VERIFICATION_FIELD, VERIFICATION_HEADER

__all__ = [
    "DEFAULT_LISTEN",
    "VERIFICATION_FIELD",
    "VERIFICATION_HEADER",
    "ApiError",
    "ApiReason",
    "ClientBackend",
    "GatewayConfig",
    "TaskBackendAPI",
    "build_app",
    "build_client_app",
    "handler_routes",
    "parse_listen",
    "serve",
]
