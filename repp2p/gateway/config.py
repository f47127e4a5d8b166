"""``GatewayConfig``: the gateway's settings, one frozen, validated object.

Built from ``repp2p gateway`` flags in one place (:mod:`repp2p.cli.gateway`); every field
has its unit and bounds here, and :meth:`GatewayConfig.__post_init__` refuses a value out
of them with a :class:`~repp2p.errors.ConfigError`.
"""

from __future__ import annotations

import dataclasses
import ipaddress

from repp2p.errors import ConfigError

#: Default listen address: loopback only (a gateway spends its client's identity and REP).
DEFAULT_LISTEN = "127.0.0.1:8080"


def parse_listen(text: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (``"[::1]:8080"`` for IPv6) -> ``(host, port)``; port 0 = any.

    Raises:
        ConfigError: not an IP address and a port in 0..65535.
    """
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        number = -1
    if not sep or not 0 <= number <= 65535:
        raise ConfigError(f"--listen {text!r}: expected IP:PORT, e.g. {DEFAULT_LISTEN}")
    return host, number


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP address) is a loopback address."""
    return ipaddress.ip_address(host).is_loopback


@dataclasses.dataclass(frozen=True)
class GatewayConfig:
    """Settings of one gateway.

    Attributes:
        host, port: where it listens (default 127.0.0.1:8080; port 0 = any free port).
        token: bearer token every ``/v1`` request must carry (``Authorization: Bearer
            TOKEN``); empty: no token asked (fine on loopback, not beyond it).
        max_body_bytes: largest request body, bytes, 1 KiB..64 MiB (413 beyond).
        max_batch: most inputs in one embeddings request, 1..256 (400 beyond).
        max_concurrent_tasks: tasks the gateway runs at once over all requests, 1..1024
            (more wait for a free slot, within their timeout).
        max_requests: HTTP requests the gateway handles at once, all routes, 1..4096;
            one more is answered 503 ``gateway_overloaded`` (with ``Retry-After``) at once,
            before its body is read.
        max_connections: connections the gateway holds at once (idle, sending a request,
            or waiting for an answer), 1..16384; one more is answered 503
            ``gateway_overloaded`` and closed, and a flood beyond twice this many is closed
            at once (a flood of connections cannot take the file descriptors the gateway's
            client needs for the network).
        redundancy: default k (nodes that run each task and must agree), 1..16.
        max_redundancy: largest k a request may ask for, 1..16.
        timeout_s: default seconds for one task, (0, max_timeout_s].
        max_timeout_s: longest a request may ask for, seconds, (0, 3600].
        body_timeout_s: seconds within which a request body must arrive in full, (0, 600]
            (408 beyond: a client dripping its body cannot hold a connection).
    """

    host: str = "127.0.0.1"
    port: int = 8080
    token: str = ""
    max_body_bytes: int = 1 << 20
    max_batch: int = 32
    max_concurrent_tasks: int = 16
    max_requests: int = 64
    max_connections: int = 256
    redundancy: int = 1
    max_redundancy: int = 5
    timeout_s: float = 30.0
    max_timeout_s: float = 120.0
    body_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            raise ConfigError(f"gateway host {self.host!r} is not an IP address") from None
        checks = (
            ("port", self.port, 0, 65535),
            ("max_body_bytes", self.max_body_bytes, 1024, 64 << 20),
            ("max_batch", self.max_batch, 1, 256),
            ("max_concurrent_tasks", self.max_concurrent_tasks, 1, 1024),
            ("max_requests", self.max_requests, 1, 4096),
            ("max_connections", self.max_connections, 1, 16384),
            ("max_redundancy", self.max_redundancy, 1, 16),
            ("redundancy", self.redundancy, 1, self.max_redundancy),
        )
        for name, value, low, high in checks:
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"gateway {name} must be an integer in {low}..{high}")
        if not 0 < self.max_timeout_s <= 3600:
            raise ConfigError("gateway max_timeout_s must be in (0, 3600]")
        if not 0 < self.body_timeout_s <= 600:
            raise ConfigError("gateway body_timeout_s must be in (0, 600]")
        if not 0 < self.timeout_s <= self.max_timeout_s:
            raise ConfigError(f"gateway timeout_s must be in (0, {self.max_timeout_s}]")
        # ASCII only: HTTP clients (httpx, so the openai SDK) send headers as ASCII, so a
        # token beyond it could never be presented.
        if self.token and (
            len(self.token) < 16
            or not self.token.isascii()
            or not self.token.isprintable()
            or any(c.isspace() for c in self.token)
        ):
            raise ConfigError("gateway token: at least 16 printable characters (ASCII), no spaces")
