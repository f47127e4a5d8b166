"""On a network whose views come from digests, per-task records stay with their parties
(issue 14, item 1): after a run of tasks on a 6-node devnet, each node holds the records of
the tasks it took part in and nothing of the others, and a node that served none of them
holds none of their records (its status' ``records`` per type says so)."""

from __future__ import annotations

import pytest
import trio

from repp2p.client import Client
from repp2p.node.light import is_party
from repp2p.records import FEED_TYPES, Claim, Feedback, Receipt, TaskOffer
from repp2p.testing.network import dev_params, node_config, start_node

pytestmark = pytest.mark.slow

TASKS = 60


async def test_a_node_that_served_no_task_holds_none_of_their_records(tmp_path):
    params = dev_params().replace(reputation_source="digests")
    async with trio.open_nursery() as nursery:
        boot = await start_node(nursery, node_config(tmp_path, "n0", network_params=params))
        nodes = [boot]
        for i in range(1, 5):
            config = node_config(tmp_path, f"n{i}", (boot.addrs()[0],), network_params=params)
            nodes.append(await start_node(nursery, config))
        # the sixth node serves another engine: it takes part in none of the echo tasks
        idle = await start_node(
            nursery,
            node_config(
                tmp_path, "idle", (boot.addrs()[0],), network_params=params, engines=("sentiment",)
            ),
        )
        nodes.append(idle)
        async with Client.open(
            [boot.addrs()[0]], data_dir=tmp_path / "client", network_params=params
        ) as client:
            with trio.fail_after(60):
                assert await client.wait_for_nodes("echo", 5, timeout=55) >= 5
            with trio.fail_after(300):
                for i in range(TASKS):
                    result = await client.submit("echo", b"task %d" % i)
                    assert result.output == b"task %d" % i
            offers = client.store.query(type=TaskOffer.TYPE, signer=client.peer_id)
            task_ids = {o.record.task_id for o in offers}
            assert len(task_ids) == TASKS
            # the client keeps its own tasks: offer, claim, receipt and feedback of each
            for record_type in (Claim.TYPE, Receipt.TYPE, Feedback.TYPE):
                held = {r.record.task_id for r in client.store.query(type=record_type)}
                assert held == task_ids, record_type
        served: set[bytes] = set()
        for node in nodes:
            claimed = {
                c.record.task_id for c in node.store.query(type=Claim.TYPE, signer=node.peer_id)
            }
            served |= claimed
            # every per-task record a node holds is of a task it claimed (an offer may
            # also be of a task it was asked to serve and declined: it was sent to it) ...
            for record_type in FEED_TYPES - {TaskOffer.TYPE}:
                for record in node.store.query(type=record_type):
                    assert record.record.task_id in claimed, (node.peer_id, record_type)
                    assert is_party(node.store, node.peer_id, record.record.task_id)
            # ... and it holds each claimed task's offer (the audit evidence)
            offers_held = {r.record.task_id for r in node.store.query(type=TaskOffer.TYPE)}
            assert claimed <= offers_held <= task_ids
        assert served == task_ids  # every task was served, by the nodes that hold it
        records = idle.parts.status.status()["records"]
        assert all(records[t] == 0 for t in FEED_TYPES), records
        assert records["NodeAd"] >= 5  # it holds what matching needs
        for node in nodes:
            node.stop()
