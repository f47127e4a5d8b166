"""Digests and audits on a live network: after real tasks, nodes publish work digests and
the client a feedback digest once the epoch is sealed, and the peers drawn as auditors
check the sampled leaves over ``/repp2p/audit/1``: an honest network passes."""

from __future__ import annotations

import pytest
import trio

from repp2p.client import Client
from repp2p.digests.params import DigestParams
from repp2p.node.metrics import totals
from repp2p.records import FeedbackDigest, WorkDigest
from repp2p.testing.network import dev_params, local_network

from .conftest import wait_until

pytestmark = pytest.mark.slow

EPOCH_S = 2


# on "digests" each peer holds only its own tasks' records (repp2p.node.light): digests
# and audit answers are built from them alone
@pytest.mark.parametrize("views", ["records", "digests"])
async def test_an_honest_network_publishes_digests_and_passes_its_audits(tmp_path, views):
    params = dev_params(EPOCH_S).replace(reputation_source=views)
    async with (
        local_network(tmp_path, 3, network_params=params) as nodes,
        Client.open(
            [nodes[0].addrs()[0]], data_dir=tmp_path / "client", network_params=params
        ) as client,
    ):
        with trio.fail_after(30):
            assert await client.wait_for_nodes("echo", 2, timeout=25) >= 2
            results = [await client.submit("echo", b"audit me %d" % i) for i in range(4)]
        served = {r.proof.node for r in results}
        epochs = {
            s.record.epoch for s in client.store.query(type="TaskOffer", signer=client.peer_id)
        }

        def feedback_digests():
            return [
                s
                for s in nodes[0].store.query(type=FeedbackDigest.TYPE, signer=client.peer_id)
                if s.record.epoch in epochs
            ]

        horizon = (DigestParams().seal_lag_epochs + 2) * EPOCH_S
        await wait_until(lambda: len(feedback_digests()) == len(epochs), horizon + 20)
        assert sum(s.record.leaf_count for s in feedback_digests()) == 4

        def work_leaves() -> int:
            return sum(
                s.record.leaf_count
                for peer in served
                for s in nodes[0].store.query(type=WorkDigest.TYPE, signer=peer)
                if s.record.epoch in epochs
            )

        # Every task's node claimed it (k = 1, no failover on an idle network).
        await wait_until(lambda: work_leaves() >= 4, 2 * EPOCH_S + 10)

        def audits() -> dict[str, float]:
            out: dict[str, float] = {}
            for node in nodes:
                for outcome, n in totals(node.metrics.audits, "outcome").items():
                    out[outcome] = out.get(outcome, 0) + n
            return out

        # The audits of the last task epoch start audit_delay_epochs after its seal.
        last = (DigestParams().audit_epoch(max(epochs)) + 1) * EPOCH_S
        await wait_until(lambda: audits().get("pass", 0) >= 4, last - client.clock.now() + 30)
        assert audits().get("offence", 0) == 0
        assert audits().get("unserved", 0) == 0
        assert all(n.auditor.evidence.recent() == [] for n in nodes)
