"""The explorer page treats every network-sourced string as text: a snapshot whose peer
IDs, TEE kinds, engines, reasons, offences and table keys are markup renders them verbatim
and runs none of it (headless Chromium, as in test_devnet.py; skips without a browser).

The snapshot is served as a node's status port serves it (``/explorer`` and
``/explorer.json`` through :func:`repp2p.net.status_http.serve`); its values are what a
hostile peer or a hostile store could put there, whatever the records' own checks allow.
"""

from __future__ import annotations

import json

import pytest
import trio

from repp2p.attestation import SIMULATED_LABEL
from repp2p.explorer import SNAPSHOT_VERSION, page_html
from repp2p.net import status_http
from repp2p.testing.browser import find_chromium, headless_chromium

pytestmark = pytest.mark.skipif(
    find_chromium() is None,
    reason="no Chromium binary (chromium, chromium-browser, google-chrome or $REPP2P_CHROMIUM); "
    ".ci/run installs Debian's chromium",
)

#: Markup in every attribute and element context the page could misuse.
EVIL = "<img src=x onerror=\"window.pwned='{0}'\">\"'><script>window.pwned='{0}'</script>"


def _evil(where: str) -> str:
    return EVIL.format(where)


def _snapshot() -> dict:
    node = {
        "peer_id": _evil("peer"),
        "self": True,
        "tee_kind": _evil("tee"),
        "tee_kind_verified": False,
        "tee_kind_claimed": _evil("claimed"),
        "simulated": True,
        "label": _evil("label"),
        "attestation": {
            "verdict": _evil("verdict"),
            "reason": _evil("reason"),
            "attested_at": 0,
            "engines_established": 0,
        },
        "engines": [_evil("engine")],
        "price": 5,
        "capacity": 1,
        "permille": 500,
        "quality": None,
        "standing": 0.5,
        "components": dict.fromkeys(
            ("uptime", "success", "throughput", "latency", "attestation"), 0.5
        ),
        "newcomer": False,
        "offender": True,
        "eligible": False,
        "tier": False,
        "penalty": {
            "penalised": True,
            "until_epoch": 9,
            "strikes": 1,
            "hard": True,
            "offences": [_evil("offence")],
        },
        "rep": {"final": 1, "pending": 2},
    }
    return {
        "version": SNAPSHOT_VERSION,
        "peer_id": _evil("self"),
        "role": _evil("role"),
        "network": _evil("network"),
        "now": 1_764_720_000.5,
        "epoch": 7,
        "epoch_s": 10,
        "epoch_progress": 0.5,
        "simulated_label": SIMULATED_LABEL,
        "view": {
            "epoch": 7,
            "digest": _evil("digest"),
            "nodes": 1,
            "eligible": 0,
            "tier": 0,
            "demand": 0,
            "penalised": 1,
            "offences": 1,
        },
        "nodes": [node],
        "tasks": [
            {
                "epoch": 5,
                "offers": 1,
                "claims": 1,
                "receipts": 1,
                "feedback": {_evil("outcome"): 1},
                "latency_ms_p50": 12,
            }
        ],
        "records": {_evil("record"): 3},
        "digests": {_evil("digest-type"): {_evil("digest-epoch"): 1}},
        "rep": {"unit": "micro-REP", "micro": 1_000_000},
    }


async def test_network_strings_are_shown_as_text_and_never_run(nursery):
    body = json.dumps(_snapshot()).encode()
    routes = [
        ("/explorer", lambda: ("text/html; charset=utf-8", page_html())),
        ("/explorer.json", lambda: ("application/json", body)),
    ]
    port = await nursery.start(
        status_http.serve, "127.0.0.1", 0, dict, lambda: b"", None, None, routes
    )
    with trio.fail_after(60):
        async with headless_chromium(timeout=30) as page:
            await page.navigate(f"http://127.0.0.1:{port}/explorer")
            await page.wait_for("document.body.dataset.refreshes === '1'", timeout=20)
            # The page rendered the snapshot without throwing...
            assert await page.evaluate("document.getElementById('error').textContent") == ""
            # ...ran none of its markup and made no element of it...
            assert await page.evaluate("window.pwned === undefined")
            assert await page.evaluate("document.querySelectorAll('img').length") == 0
            assert await page.evaluate("document.scripts.length") == 1  # the page's own
            text = await page.evaluate("document.body.textContent")
            # ...and shows each string verbatim, as text.
            for where in ("network", "tee", "claimed", "reason", "engine", "offence"):
                assert _evil(where) in text, where
            for where in ("outcome", "record", "digest-type", "digest-epoch"):
                assert _evil(where) in text, where
            # The full peer ID is in the row's tooltip and data attribute, as text.
            peer = await page.evaluate(
                "(() => { const tr = document.querySelector('#nodes tbody tr');"
                " return [tr.dataset.peer, tr.children[0].title]; })()"
            )
            assert peer == [_evil("peer"), _evil("peer")]
            # The simulated row is labelled whatever else it says.
            banner = await page.evaluate("document.getElementById('banner').textContent")
            assert banner.startswith(SIMULATED_LABEL)
            assert "SIMULATED" in await page.evaluate(
                "document.querySelector('#nodes tbody tr').children[1].textContent"
            )
