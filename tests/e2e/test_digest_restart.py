"""Nothing lost: a node restarted after serving tasks, before their epoch is sealed, still
publishes the work digest of that epoch, with every task it served in it."""

from __future__ import annotations

import pytest
import trio

from repp2p.client import Client
from repp2p.digests import work_digests
from repp2p.digests.params import DigestParams
from repp2p.node.digests import digest_expires
from repp2p.records import Claim, WorkDigest
from repp2p.testing.network import dev_params, node_config, start_node

from .conftest import wait_until

pytestmark = pytest.mark.slow

EPOCH_S = 2


# on "digests" the node holds only its own tasks' records (repp2p.node.light): the digest
# is built from them alone, as before from every record
@pytest.mark.parametrize("views", ["records", "digests"])
async def test_a_node_restarted_before_the_seal_publishes_the_full_digest(tmp_path, views):
    params = dev_params(EPOCH_S).replace(reputation_source=views)
    config = node_config(tmp_path, "node", network_params=params)
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, config)
        async with Client.open(
            [node.addrs()[0]], data_dir=tmp_path / "client", network_params=params
        ) as client:
            with trio.fail_after(30):
                assert await client.wait_for_nodes("echo", 1, timeout=25) >= 1
                for i in range(3):
                    await client.submit("echo", b"before the restart %d" % i)
        claims = node.store.query(type=Claim.TYPE, signer=node.peer_id)
        epochs = {c.record.epoch for c in claims}
        assert len(claims) == 3
        sealed_at = (min(epochs) + DigestParams().seal_lag_epochs) * EPOCH_S
        assert node.clock.now() < sealed_at  # restarted before the first epoch is sealed
        held_before = {e: node.own_digests.held(e) for e in epochs}
        assert not any(held_before.values())
        node.stop()
        await wait_until(lambda: not (tmp_path / "node" / "runtime.json").exists(), 10)

        again = await start_node(nursery, config)
        assert again.peer_id == node.peer_id

        def published() -> list:
            return [
                d
                for e in epochs
                for d in again.store.query(type=WorkDigest.TYPE, signer=again.peer_id, epoch=e)
            ]

        await wait_until(lambda: len(published()) == len(epochs), (len(epochs) + 6) * EPOCH_S)
        digests = published()
        assert sum(d.record.leaf_count for d in digests) == 3
        assert sum(row.receipts for d in digests for row in d.record.rows) == 3
        # What a node that never restarted signs: a build over every record it holds
        # (expires is a function of the epoch alone).
        records = again.store.query()
        for d in digests:
            e = d.record.epoch
            expires = digest_expires(e, EPOCH_S, params, DigestParams())
            assert work_digests(again.peer_id, records, e, expires=expires) == [d.record]
        again.stop()
