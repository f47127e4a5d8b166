"""A node that restarts (on a new port) is reachable again as soon as its new ad arrives.

The fault (found on a loopback devnet): py-libp2p 0.8.1's dial negative cache refused a
peer for 60 s after all its addresses failed, and the client never used the addresses in
the node's new ad: 27-31 task attempts on a restarted node timed out over ~60 s.
"""

from __future__ import annotations

import pytest
import trio

from repp2p.client import Client
from repp2p.records import NodeAd
from repp2p.testing.network import dev_params, node_config, start_node

from .conftest import wait_until

pytestmark = pytest.mark.slow


async def test_a_restarted_node_is_dialled_again_once_its_new_ad_arrives(tmp_path):
    async with trio.open_nursery() as nursery:
        boot = await start_node(nursery, node_config(tmp_path, "boot"))
        config = node_config(tmp_path, "worker", (boot.addrs()[0],))
        worker = await start_node(nursery, config)
        peer = worker.peer_id
        async with Client.open(
            [boot.addrs()[0]], data_dir=tmp_path / "c", network_params=dev_params()
        ) as client:

            def ad_seq() -> int:
                ads = client.store.query(type=NodeAd.TYPE, signer=peer, limit=1)
                return ads[0].record.seq if ads else 0

            await wait_until(lambda: ad_seq() > 0, 20)
            with trio.fail_after(10):
                stream = await client.open_stream(peer)  # connected: it works
            await stream.close()
            old_addrs = worker.addrs()
            worker.stop()
            await wait_until(lambda: not (tmp_path / "worker" / "runtime.json").exists(), 10)
            with trio.fail_after(30), pytest.raises(Exception):  # noqa: B017 (any dial failure)
                await client.open_stream(peer)  # down: the dial fails (and is cached)
            failed_at = client.clock.now()

            again = await start_node(nursery, config)  # same identity, a new port
            assert again.peer_id == peer and again.addrs() != old_addrs
            await wait_until(lambda: ad_seq() / 1000 > failed_at, 20)
            with trio.fail_after(10):  # not py-libp2p's 60 s
                stream = await client.open_stream(peer)
            await stream.close()
        boot.stop()
        again.stop()
