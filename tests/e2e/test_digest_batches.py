"""Feedback batches on a live network: with ``feedback_max_epochs = 3`` the client publishes
one FeedbackDigest per window of three epochs, the nodes accept and store it under its last
epoch, and their views (``reputation_source = "digests"``) count its rows in each task's own
epoch."""

from __future__ import annotations

import dataclasses

import pytest
import trio

from repp2p.client import Client
from repp2p.records import FeedbackDigest
from repp2p.reputation.pairs import COLUMNS
from repp2p.testing.network import dev_params, local_network

from .conftest import wait_until

pytestmark = pytest.mark.slow

EPOCH_S = 2
M = 3


async def test_a_clients_batched_feedback_digest_is_published_and_counted(tmp_path):
    base = dev_params(EPOCH_S)
    params = base.replace(
        reputation_source="digests",
        digests=dataclasses.replace(base.digests, feedback_max_epochs=M),
    )
    assert params.digest_lag == params.digests.seal_lag_epochs + 2 + M - 1
    async with (
        local_network(tmp_path, 2, network_params=params) as nodes,
        Client.open(
            [nodes[0].addrs()[0]], data_dir=tmp_path / "client", network_params=params
        ) as client,
    ):
        with trio.fail_after(30):
            assert await client.wait_for_nodes("echo", 1, timeout=25) >= 1
            for i in range(4):
                await client.submit("echo", b"batch me %d" % i)
        epochs = {
            s.record.epoch for s in client.store.query(type="TaskOffer", signer=client.peer_id)
        }

        def batches():
            return [
                s
                for s in nodes[0].store.query(type=FeedbackDigest.TYPE, signer=client.peer_id)
                if any(s.record.covers(e) for e in epochs)
            ]

        def covered() -> bool:
            return all(sum(s.record.covers(e) for s in batches()) == 1 for e in epochs)

        # the last task epoch's window ends at most M - 1 epochs later, then is sealed
        horizon = (max(epochs) + M - 1 + params.digests.seal_lag_epochs + 2) * EPOCH_S
        await wait_until(covered, horizon - client.clock.now() + 20)
        held = batches()
        assert all(s.record.span == M for s in held)  # one per window, nothing earlier
        assert sum(s.record.leaf_count for s in held) == 4
        # filed under its last epoch, where views and audits look for it
        for s in held:
            found = nodes[0].store.query(type=FeedbackDigest.TYPE, epoch=s.record.last_epoch)
            assert s.record_id in {d.record_id for d in found}

        # Counted: once the views reach digest_lag past each task epoch, every node's
        # folded block of that epoch holds the client's verdicts (all "ok": echo)
        keepers = [node.keeper for node in nodes]
        ok = COLUMNS.index("ok")

        def counted() -> int:
            total = 0
            for e in epochs:
                block = keepers[0].pairs.block(e)
                if block is None:
                    return -1
                total += int(block.counts[ok].sum())
            return total

        last_view = (max(epochs) + params.digest_lag + 1) * EPOCH_S
        await wait_until(lambda: counted() == 4, last_view - client.clock.now() + 20)
        for keeper in keepers[1:]:
            await wait_until(
                lambda k=keeper: all(k.pairs.folded(e) for e in epochs),
                2 * EPOCH_S + 10,
            )
            assert (
                sum(int(k.pairs.block(e).counts[ok].sum()) for e in epochs for k in [keeper]) == 4
            )
