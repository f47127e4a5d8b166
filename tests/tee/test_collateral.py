"""Fetching a TDX node's DCAP collateral from a PCS (here: a local HTTP server answering
as Intel's PCS does, for the test PCK chain's platform)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from repp2p.tee import collateral as collateral_module
from repp2p.tee.collateral import CollateralError, fetch_collateral, http_get, signed_member
from repp2p.tee.tdx_guest import load_collateral_file

from .fake_tdx import FMSPC, TestIntelChain

NOW = 1_800_000_000


class Pcs:
    """A local PCS: ``responses`` path -> (body, headers); ``requests`` logs the URLs."""

    def __init__(self, responses: dict[str, tuple[bytes, dict[str, str]]]) -> None:
        self.responses = responses
        self.requests: list[str] = []
        pcs = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                pcs.requests.append(self.path)
                found = pcs.responses.get(urlsplit(self.path).path)
                if found is None:
                    self.send_error(404)
                    return
                body, headers = found
                self.send_response(200)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def chain() -> TestIntelChain:
    return TestIntelChain.generate()


@pytest.fixture
def pcs(chain: TestIntelChain) -> Iterator[Pcs]:
    server = Pcs(chain.pcs_responses())
    yield server
    server.server.shutdown()
    server.server.server_close()


def fetch(chain: TestIntelChain, pcs: Pcs, quote: bytes | None = None) -> bytes:
    return fetch_collateral(
        quote or chain.quote(bytes(64)), NOW, pcs=pcs.url,
        root_crl_url=f"{pcs.url}/IntelSGXRootCA.der", backend=chain.backend(),
    )  # fmt: skip


def test_fetched_collateral_verifies_the_quote(
    chain: TestIntelChain, pcs: Pcs, tmp_path: Path
) -> None:
    collateral = fetch(chain, pcs)
    assert f"/tdx/certification/v4/tcb?fmspc={FMSPC.hex()}" in pcs.requests
    assert "/sgx/certification/v4/pckcrl?ca=platform&encoding=der" in pcs.requests
    # What the node reads and sends: any later quote of this platform verifies with it.
    path = tmp_path / "tdx-collateral.json"
    path.write_bytes(collateral)
    assert load_collateral_file(path) == collateral
    quote = chain.quote(b"\x03" * 64)
    assert chain.backend().verify(quote, collateral, NOW).report_data == b"\x03" * 64


def test_signed_members_are_cut_out_byte_exact() -> None:
    body = b'{"tcbInfo": {"b": 1,  "a": [1, 2]}, "signature": "00ff"}'
    assert signed_member(body, "tcbInfo") == ('{"b": 1,  "a": [1, 2]}', "00ff")
    for bad in (b"[]", b"{", b'{"tcbInfo": 3, "signature": "00"}', b'{"tcbInfo": {}}', b"\xff"):
        with pytest.raises(CollateralError):
            signed_member(bad, "tcbInfo")


def test_broken_pcs_answers_are_refused(chain: TestIntelChain, pcs: Pcs) -> None:
    good = dict(pcs.responses)
    body, headers = good["/tdx/certification/v4/tcb"]
    cases = {
        "no header": {"/tdx/certification/v4/tcb": (body, {})},
        "bad chain header": {"/tdx/certification/v4/tcb": (body, {"TCB-Info-Issuer-Chain": "x"})},
        "tampered": {
            "/tdx/certification/v4/tcb": (body.replace(b"UpToDate", b"UpToDatX"), headers)
        },
        "missing": {"/tdx/certification/v4/tcb": None},
    }
    for name, change in cases.items():
        pcs.responses = dict(good)
        for path, value in change.items():
            if value is None:
                del pcs.responses[path]
            else:
                pcs.responses[path] = value
        with pytest.raises(CollateralError):
            fetch(chain, pcs)
        assert name  # each case refused
    pcs.responses = good
    with pytest.raises(CollateralError, match="not a quote"):
        fetch(chain, pcs, quote=b"\x04" * 700)
    # The production root does not trust the test chain: nothing is returned.
    with pytest.raises(CollateralError, match="does not verify"):
        fetch_collateral(
            chain.quote(bytes(64)), NOW, pcs=pcs.url,
            root_crl_url=f"{pcs.url}/IntelSGXRootCA.der",
        )  # fmt: skip


def test_http_get_limits() -> None:
    with pytest.raises(CollateralError):
        http_get("file:///etc/passwd")
    with pytest.raises(CollateralError):
        http_get("http://127.0.0.1:9/", timeout_s=2)


def test_cli_fetch_collateral(
    chain: TestIntelChain, pcs: Pcs, tmp_path: Path, monkeypatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    from repp2p.cli import main

    monkeypatch.setattr(collateral_module, "DcapBackend", lambda: chain.backend())
    quote = tmp_path / "quote.bin"
    quote.write_bytes(chain.quote(bytes(64)))
    out = tmp_path / "etc" / "tdx-collateral.json"
    args = ["tee", "fetch-collateral", "--quote", str(quote), "--out", str(out),
            "--pcs", pcs.url, "--root-crl-url", f"{pcs.url}/IntelSGXRootCA.der"]  # fmt: skip
    assert main(args) == 0
    assert json.loads(out.read_bytes())["tcb_info"]
    assert "tdx-collateral.json" in capsys.readouterr().out
    pcs.responses = {}
    assert main(args) == 1  # the PCS fails: the old file stays
    assert json.loads(out.read_bytes())["tcb_info"]
    assert "GET" in capsys.readouterr().err
