"""The explorer on a real devnet: the JSON on a node's status port, and the page in Chromium.

Nodes are real py-libp2p hosts on 127.0.0.1 (5-s epochs). A node's view of an epoch is
built at the epoch's start, so nodes that joined later show up from the next epoch on.
The browser test drives Debian's ``chromium`` headless (:mod:`repp2p.testing.browser`) and
skips with the reason when none is installed; with ``REPP2P_EXPLORER_SCREENSHOT=PATH`` it
also saves its screenshot there (that is how docs/explorer.png is made).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import trio

from repp2p.attestation import SIMULATED_LABEL
from repp2p.net.status_http import fetch
from repp2p.testing.browser import find_chromium, headless_chromium
from repp2p.testing.network import local_network


async def _snapshot(address: str) -> dict:
    host, _, port = address.rpartition(":")
    return json.loads(await fetch(host, int(port), "/explorer.json"))


async def _until_all_verified(address: str, peers: set[str]) -> dict:
    """Poll the explorer's JSON until it lists exactly ``peers``, all attested."""
    while True:
        try:
            snap = await _snapshot(address)
        except OSError as exc:  # 503 until the node's first view is built
            assert "503" in str(exc), exc
            await trio.sleep(0.5)
            continue
        rows = {row["peer_id"]: row for row in snap["nodes"]}
        if set(rows) == peers and all(
            r["attestation"]["verdict"] == "verified" for r in rows.values()
        ):
            return snap
        await trio.sleep(0.5)


async def test_a_nodes_status_port_serves_the_explorer_json(tmp_path):
    async with local_network(tmp_path, 3, status_listen="127.0.0.1:0") as nodes:
        peers = {n.peer_id for n in nodes}
        with trio.fail_after(60):
            snap = await _until_all_verified(nodes[1].status_address, peers)
        assert snap["peer_id"] == nodes[1].peer_id and snap["role"] == "full"
        assert snap["network"] == "dev" and snap["epoch_s"] == 5
        (own,) = [r for r in snap["nodes"] if r["self"]]
        assert own["peer_id"] == nodes[1].peer_id
        for row in snap["nodes"]:
            # the devnet runs the simulated TEE, and every row says so
            assert row["simulated"] and row["label"] == SIMULATED_LABEL
            assert row["engines"] and 0 <= row["permille"] <= 1000
        view = nodes[1].keeper.cached_view(snap["view"]["epoch"])
        assert view is not None and snap["view"]["digest"] == view.digest.hex()
        host, _, port = nodes[1].status_address.rpartition(":")
        page = await fetch(host, int(port), "/explorer")
        assert page.startswith(b"<!doctype html>")
        # The node's background task replays the ledger once per epoch; requests only
        # ever serve its last figures, saying which epoch they are from.
        with trio.fail_after(60):
            while (snap := await _snapshot(nodes[1].status_address))["rep_status"] != "ready":
                assert snap["rep_status"] == "pending" and snap["rep_epoch"] is None
                await trio.sleep(0.2)
        assert snap["rep"]["unit"] == "micro-REP"
        assert snap["rep_epoch"] <= snap["view"]["epoch"]  # the refresher builds, then replays
        assert all(isinstance(row["rep"]["final"], int) for row in snap["nodes"])


@pytest.mark.skipif(
    find_chromium() is None,
    reason="no Chromium binary (chromium, chromium-browser, google-chrome or $REPP2P_CHROMIUM); "
    ".ci/run installs Debian's chromium",
)
async def test_the_explorer_page_renders_the_devnets_nodes_in_chromium(tmp_path):
    async with local_network(tmp_path, 3, status_listen="127.0.0.1:0") as nodes:
        peers = {n.peer_id for n in nodes}
        address = nodes[0].status_address
        with trio.fail_after(60):
            await _until_all_verified(address, peers)
        async with headless_chromium(timeout=30) as page:
            await page.navigate(f"http://{address}/explorer")
            rows = await page.wait_for(
                "(() => { const r = [...document.querySelectorAll('#nodes tbody tr')];"
                " return r.length === 3 && r.map(tr => [tr.dataset.peer,"
                " tr.children[2].textContent, tr.children[1].textContent]); })()",
                timeout=20,
            )
            assert {peer for peer, _, _ in rows} == peers
            assert all(att.startswith("verified") for _, att, _ in rows)
            assert all("SIMULATED" in tee for _, _, tee in rows)
            banner = await page.evaluate("document.getElementById('banner').textContent")
            assert banner.startswith(SIMULATED_LABEL) and "3 of 3 nodes" in banner
            assert await page.evaluate("document.getElementById('error').textContent") == ""
            # Live: the page refreshes by itself and follows the epochs.
            first = await page.evaluate("Number(document.body.dataset.epoch)")
            await page.wait_for(f"Number(document.body.dataset.epoch) > {first}", timeout=20)
            meta = await page.evaluate("document.getElementById('meta').textContent")
            assert f"epoch {first + 1}" in meta or f"epoch {first + 2}" in meta
            png = await page.screenshot(1400, 700)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        target = os.environ.get("REPP2P_EXPLORER_SCREENSHOT")
        if target:
            Path(target).write_bytes(png)
