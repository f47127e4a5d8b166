"""``python -m repp2p.explorer.screenshot OUT.png``: the explorer page of a busy devnet.

Starts 4 nodes on 127.0.0.1 (the test network: 5-s epochs, simulated TEE), submits echo
tasks with a client for a few epochs, waits until they settle into the views, and saves a
headless Chromium screenshot of node 0's ``/explorer`` (how docs/explorer.png is made:
``make explorer-screenshot``). Needs Chromium (:mod:`repp2p.testing.browser`).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import trio

from repp2p.client import Client
from repp2p.testing.browser import headless_chromium
from repp2p.testing.network import EPOCH_S, dev_params, local_network

NODES = 4
TASK_EPOCHS = 3


async def capture(out: Path, *, nodes: int = NODES, width: int = 1400, height: int = 900) -> None:
    """Run the devnet, its tasks and the browser; write the PNG to ``out``."""
    with tempfile.TemporaryDirectory(prefix="repp2p-explorer-") as folder:
        root = Path(folder)
        async with local_network(root, nodes, status_listen="127.0.0.1:0") as network:
            ctx = Client.open(
                [network[0].addrs()[0]], data_dir=root / "client", network_params=dev_params()
            )
            async with ctx as client:
                with trio.fail_after(6 * EPOCH_S):
                    await client.wait_for_nodes("echo", nodes, timeout=6 * EPOCH_S)
                with trio.move_on_after(TASK_EPOCHS * EPOCH_S):
                    n = 0
                    while True:
                        with trio.fail_after(30):
                            await client.submit("echo", b"explorer %d" % n, redundancy=2)
                        n += 1
            # task records count in views two epochs after their own
            await trio.sleep(3 * EPOCH_S)
            async with headless_chromium() as page:
                await page.navigate(f"http://{network[0].status_address}/explorer")
                await page.wait_for(
                    f"document.querySelectorAll('#nodes tbody tr[data-peer]').length === {nodes}",
                    timeout=30,
                )
                out.write_bytes(await page.screenshot(width, height))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m repp2p.explorer.screenshot OUT.png", file=sys.stderr)
        return 2
    trio.run(capture, Path(argv[0]))
    print(f"wrote {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
