"""A digest-view peer restarted after a disputed task pulls the task's dispute proof and
counts it: it holds no view of the offer's epoch, so it ranks the offer on a view of that
epoch rebuilt from what it holds (docs/core.md, "Views of epochs a peer was down for").

Real py-libp2p hosts on loopback, real enclave processes (simulated TEE), the real client:
four nodes, one of them returning wrong results (``cheat``), and a light peer that is down
while the client publishes the proof and restarts an epoch or more later.
"""

from __future__ import annotations

import contextlib

import pytest
import trio

from repp2p.client import Client, TaskError
from repp2p.digests.disputes import DisputeTiming
from repp2p.testing.network import dev_params, node_config, start_node

from .conftest import wait_until

pytestmark = pytest.mark.slow

#: long enough for a restart and a pull within the replay window (dispute_lag - 1 epochs)
EPOCH_S = 5


async def test_a_peer_restarted_after_a_disputed_task_pulls_its_proof_and_counts_it(tmp_path):
    params = dev_params(EPOCH_S).replace(reputation_source="digests")
    async with trio.open_nursery() as nursery:
        boot = await start_node(nursery, node_config(tmp_path, "n0", network_params=params))
        nodes = [boot]
        for i in range(1, 4):
            config = node_config(
                tmp_path, f"n{i}", (boot.addrs()[0],), network_params=params, cheat=i == 3
            )
            nodes.append(await start_node(nursery, config))
        cheater = nodes[3].peer_id
        watcher_config = node_config(
            tmp_path, "watcher", (boot.addrs()[0],), network_params=params, role="client"
        )
        watcher = await start_node(nursery, watcher_config)
        ctx = Client.open([boot.addrs()[0]], data_dir=tmp_path / "client", network_params=params)
        client = await ctx.__aenter__()
        try:
            with trio.fail_after(4 * EPOCH_S):
                assert await client.wait_for_nodes("echo", 4, timeout=4 * EPOCH_S) >= 4
            await wait_until(watcher.is_synced, 2 * EPOCH_S)
            watcher.stop()  # down while the disputed task runs and its proof is gossiped
            await wait_until(lambda: not (tmp_path / "watcher" / "runtime.json").exists(), 10)

            disputed = None
            for i in range(8):  # the cheater is in the first three ranks of most tasks
                # (a task whose verdict was not confident fails, and still gossips its proof)
                with trio.fail_after(60), contextlib.suppress(TaskError):
                    await client.submit("echo", b"disputed %d" % i, redundancy=3, timeout=40)
                held = client.disputes.held(0, 2**62)
                if held:
                    disputed = held[0]
                    break
            assert disputed is not None, "no task of the cheater's was disputed"
            offer_id, epoch = disputed.offer_id, disputed.epoch
            assert cheater in {r.signer for r in disputed.receipts}
            timing = DisputeTiming(EPOCH_S, params.dispute_lag, grace_s=params.proof_grace_s)
            count = timing.count(epoch, disputed.deadline_ms)

            # back an epoch later (no view of the offer's epoch), within the replay window
            await wait_until(lambda: client.clock.epoch(EPOCH_S) > epoch, 2 * EPOCH_S)
            again = await start_node(nursery, watcher_config)
            assert again.keeper.cached_view(epoch) is None
            try:
                await wait_until(lambda: again.disputes.get(offer_id) is not None, 3 * EPOCH_S)
            except trio.TooSlowError:
                book = again.disputes
                raise AssertionError(f"not held: {book.refused} {book.pending_counts}") from None
            assert again.clock.epoch(EPOCH_S) <= timing.close(epoch, disputed.deadline_ms)
            assert again.disputes.refused.get("unranked", 0) == 0

            # the view that counts it holds the dispute's receipts, as the others' views do
            await trio.sleep(max(0.0, count * EPOCH_S - client.clock.now() + 0.5))
            mine = again.views.view(count).evidence
            assert offer_id in mine.record_ids
            theirs = boot.views.view(count).evidence
            counted = set(theirs.receipt_ids)
            assert {r.record_id for r in disputed.receipts} <= counted
            assert set(mine.receipt_ids) == counted
            assert again.views.view(count).reputation.get(cheater).disputes_lost == (
                boot.views.view(count).reputation.get(cheater).disputes_lost
            )
            again.stop()
        finally:
            await ctx.__aexit__(None, None, None)
            for node in nodes:
                node.stop()
