"""The status endpoint answers only requests whose Host names it (a DNS rebinding guard).

A web page can make its own name resolve to 127.0.0.1 and read the node's status from the
operator's browser; its requests carry that name in Host, which is refused 421. Real
sockets on 127.0.0.1 against :func:`repp2p.net.status_http.serve`.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import trio

from repp2p.config import node_config_from_dict
from repp2p.errors import ConfigError
from repp2p.net import status_http

STATUS = {"peer_id": "12D3KooWsecret"}
METRICS = b"# TYPE repp2p_up gauge\nrepp2p_up 1.0\n"


async def _serve(nursery, allowed_hosts: tuple[str, ...] = ()) -> int:
    page = [("/explorer", lambda: ("text/html", b"<p>page</p>"))]
    serve = functools.partial(status_http.serve, allowed_hosts=allowed_hosts)
    with trio.fail_after(10):
        return await nursery.start(
            serve, "127.0.0.1", 0, lambda: STATUS, lambda: METRICS, None, None, page
        )


async def _raw(port: int, request: bytes) -> bytes:
    """Send ``request`` on a new connection; the raw answer, read until the server closes."""
    received = b""
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(request)
            while chunk := await stream.receive_some():
                received += chunk
    return received


def _get(path: str, *headers: str, version: str = "HTTP/1.1") -> bytes:
    lines = [f"GET {path} {version}", *headers, "", ""]
    return "\r\n".join(lines).encode("latin-1")


def _code(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


async def test_hosts_naming_the_endpoint_are_answered(nursery):
    port = await _serve(nursery, ("status.example.org",))
    for host in (
        f"127.0.0.1:{port}",
        "127.0.0.1",
        "localhost",
        f"localhost:{port}",
        "LOCALHOST",
        "LocalHost:1",
        "localhost.",
        "node.localhost",
        "[::1]",
        f"[::1]:{port}",
        "::1",  # unbracketed, as an old client may send it: still an address
        "10.1.2.3:80",  # any IP literal: an address cannot be rebound
        "status.example.org",
        f"STATUS.Example.ORG:{port}",
    ):
        answer = await _raw(port, _get("/status", f"Host: {host}"))
        assert _code(answer) == 200, (host, answer[:200])
        assert json.loads(answer.partition(b"\r\n\r\n")[2]) == STATUS


async def test_other_names_are_misdirected_and_see_nothing(nursery, caplog):
    port = await _serve(nursery, ("status.example.org",))
    for host in (
        "evil.example",
        f"evil.example:{port}",
        "EVIL.example",
        "status.example.org.evil.example",
        "localhost.evil.example",
        "127.0.0.1.evil.example",
        "127.1",  # not an address as written: a name, rebindable
    ):
        for path in ("/status", "/metrics", "/explorer", "/health", "/nothing"):
            answer = await _raw(port, _get(path, f"Host: {host}"))
            assert answer.startswith(b"HTTP/1.1 421 Misdirected Request\r\n"), (host, answer)
            body = answer.partition(b"\r\n\r\n")[2]
            assert b"secret" not in body and b"repp2p_up" not in body and b"page" not in body
            assert b"status_allowed_hosts" in body and len(body) < 200
    # one warning names the setting; the many later refusals are not logged as warnings
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "status_allowed_hosts" in warnings[0].getMessage()


async def test_malformed_hosts_are_bad_requests_and_the_endpoint_stays_up(nursery):
    port = await _serve(nursery, ("*",))  # even "*" refuses a malformed Host
    for headers in (
        ("Host: 127.0.0.1", "Host: 127.0.0.1"),
        ("Host: localhost", "host: evil.example"),
        ("Host: local\x01host",),
        ("Host: localhost\x00",),
        ("Host: local\rhost",),
        ("Host: evil.example\nHost: localhost",),
        ("Host: evil example",),
        ("Host: evil.example/status",),
        ("Host: ",),
        ("Host: :80",),
        ("Host: localhost:80x",),
        ("Host: localhost:123456",),
        ("Host: [::1",),
        ("Host: [evil.example]",),
        ("Host: [::1]x",),
        ("Host: 1:2:3",),
        ("Host: .",),
        ("Host: é.example",),
        ("Host : localhost",),
        ("Host: evil.example", " localhost"),  # a folded line
        ("X-Other",),  # a header line without a colon
        (),  # HTTP/1.1 without Host
    ):
        answer = await _raw(port, _get("/status", *headers))
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), (headers, answer)
        assert b"secret" not in answer
    with trio.fail_after(10):
        assert json.loads(await status_http.fetch("127.0.0.1", port, "/status")) == STATUS


async def test_http10_without_host_is_answered(nursery):
    # A browser always sends Host: a request without one cannot be a rebinding page's.
    port = await _serve(nursery)
    answer = await _raw(port, _get("/status", version="HTTP/1.0"))
    assert _code(answer) == 200
    answer = await _raw(port, _get("/status", "Host: evil.example", version="HTTP/1.0"))
    assert _code(answer) == 421


async def test_star_accepts_any_name(nursery):
    port = await _serve(nursery, ("*",))
    answer = await _raw(port, _get("/status", f"Host: status.proxy.example:{port}"))
    assert _code(answer) == 200


async def test_prometheus_scrape_and_fetch_name_the_endpoint(nursery):
    port = await _serve(nursery)
    # what Prometheus sends for a target 127.0.0.1:PORT
    scrape = _get(
        "/metrics",
        f"Host: 127.0.0.1:{port}",
        "User-Agent: Prometheus/2.53.0",
        "Accept: application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4",
        "Accept-Encoding: gzip",
        "X-Prometheus-Scrape-Timeout-Seconds: 10",
    )
    answer = await _raw(port, scrape)
    assert _code(answer) == 200 and answer.endswith(METRICS)
    with trio.fail_after(10):  # `repp2p status`, the benches, the devnet
        assert await status_http.fetch("127.0.0.1", port, "/metrics") == METRICS
        assert await status_http.fetch("localhost", port, "/explorer") == b"<p>page</p>"


async def test_a_head_over_the_cap_is_refused_not_routed(nursery):
    port = await _serve(nursery)
    # exactly the cap, the head not ended (sent whole, so that the server reads all of it
    # and closing does not reset the connection before its answer is read)
    start = b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: "
    answer = await _raw(port, start.ljust(status_http.MAX_HEAD, b"a"))
    assert _code(answer) == 431 and b"secret" not in answer


def test_listed_names_compare_lower_cased_without_port_or_final_dot():
    assert status_http.check_host(b"GET / HTTP/1.1\r\nHost: node1.lan:9464", frozenset()) == (
        421,
        b"misdirected request: this endpoint answers requests for its IP address, "
        b"localhost or the names in status_allowed_hosts\n",
    )
    allowed = frozenset({status_http.allowed_host_entry("Node1.LAN.")})
    assert status_http.check_host(b"GET / HTTP/1.1\r\nHost: node1.lan:9464", allowed) is None
    assert status_http.authority("::1", 9464) == "[::1]:9464"
    assert status_http.authority("127.0.0.1", 9464) == "127.0.0.1:9464"


def test_the_config_setting_is_checked(tmp_path: Path):
    def load(hosts: object):
        data = {"data_dir": "d", "status_allowed_hosts": hosts}
        return node_config_from_dict(data, base_dir=tmp_path)

    assert load(["status.example.org", "*"]).status_allowed_hosts == ("status.example.org", "*")
    assert node_config_from_dict({"data_dir": "d"}, base_dir=tmp_path).status_allowed_hosts == ()
    for bad in (
        ["status.example.org:9464"],
        ["a b"],
        ["[::1]"],
        ["*.example.org"],
        [""],
        [5],
        "status.example",
    ):
        with pytest.raises(ConfigError, match="status_allowed_hosts"):
            load(bad)


async def test_a_node_answers_the_names_its_config_lists(tmp_path: Path):
    from repp2p.testing.network import local_network

    hosts = ("status.example.org",)
    async with local_network(
        tmp_path, 1, status_listen="127.0.0.1:0", status_allowed_hosts=hosts
    ) as [node]:
        port = int(node.status_address.rpartition(":")[2])
        for host, code in (
            (f"127.0.0.1:{port}", 200),
            ("status.example.org", 200),
            ("evil.example", 421),
        ):
            answer = await _raw(port, _get("/status", f"Host: {host}"))
            assert _code(answer) == code, (host, answer[:200])
        with trio.fail_after(10):
            status = json.loads(await status_http.fetch("127.0.0.1", port, "/status"))
        assert status["peer_id"] == node.peer_id


def test_host_port_splits_an_ipv6_literal_out_of_its_brackets():
    assert status_http.split_host_port("[::1]:9464") == ("::1", 9464)
    assert status_http.split_host_port("127.0.0.1:0") == ("127.0.0.1", 0)
    assert status_http.authority("::1", 9464) == "[::1]:9464"
    with pytest.raises(ValueError):
        status_http.split_host_port("[::1]:port")


async def test_a_node_listening_on_ipv6_loopback_is_reachable(tmp_path: Path):
    """``status_listen = "[::1]:0"`` passed the config check but the node could not bind
    (the brackets went to the socket), nor could ``repp2p status`` read the address back."""
    from repp2p.testing.network import local_network

    async with local_network(tmp_path, 1, status_listen="[::1]:0") as [node]:
        assert node.status_address.startswith("[::1]:")
        host, port = status_http.split_host_port(node.status_address)
        with trio.fail_after(10):
            status = json.loads(await status_http.fetch(host, port, "/status"))
        assert status["peer_id"] == node.peer_id
