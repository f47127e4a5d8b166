"""A client's bad inputs count against the client, not the node (issue 16, finding 2).

Real py-libp2p hosts on loopback, real enclave processes (simulated TEE), the real client.
A hostile client sends inputs that cannot open (junk in place of the sealed bytes, signed
as its own) and then, as the attack goes, publishes ``timeout`` feedback on the node that
took each task. The node's enclave signs a refusal of each input. On a records network the
refusals spread through the feeds, and the views built from them leave the node's standing
where it was and lower the client's credibility; on a digest network they stay with the
parties and the node's work digest counts them (``refused`` leaves), with the same effect
in every peer's view. Before refusals, each such task was an undelivered
claim and a timeout against the node (measured: throughput 0.990 -> 0.707 for 100 tasks).
"""

from __future__ import annotations

import dataclasses

import pytest
import trio

from repp2p import client as client_module
from repp2p.client import Client, TaskError
from repp2p.records import Feedback, Refusal
from repp2p.reputation import compute
from repp2p.testing.network import EPOCH_S, dev_params, local_network

from .conftest import wait_until

pytestmark = pytest.mark.slow

BAD_TASKS = 3


@pytest.mark.parametrize("source", ["records", "digests"])
async def test_bad_inputs_cost_the_client_not_the_node(tmp_path, monkeypatch, source):
    params = dev_params().replace(reputation_source=source)
    async with local_network(tmp_path, 2, network_params=params) as nodes:
        ctx = Client.open(
            [nodes[0].addrs()[0]], data_dir=tmp_path / "client", network_params=params
        )
        client = await ctx.__aenter__()
        try:
            with trio.fail_after(7 * EPOCH_S):
                assert await client.wait_for_nodes("echo", 2, timeout=6 * EPOCH_S) >= 2
            for i in range(2):  # some honest history first
                with trio.fail_after(60):
                    await client.submit("echo", b"fine %d" % i)

            # The attack: junk where the sealed input goes (signed by the client, as every
            # request must be), then timeout feedback on whichever node took the task.
            def junk_seal(data, enc_key, *, task_id, secret):
                return b"\x00" * 96, secret

            monkeypatch.setattr(client_module, "seal_input", junk_seal)
            refused: list[tuple[bytes, str]] = []  # (task id, the node that refused it)
            for i in range(BAD_TASKS):
                before = {s.record_id for s in client.store.query(type="TaskOffer")}
                with trio.fail_after(60), pytest.raises(TaskError) as failed:
                    await client.submit("echo", b"bad %d" % i, timeout=8)
                # The client checked the refusal and stopped: its input is at fault.
                assert failed.value.reason == "input_refused"
                offers = client.store.query(type="TaskOffer", signer=client.peer_id)
                (offer,) = [o for o in offers if o.record_id not in before]
                task_id = offer.record.task_id
                # Each node holds its own refusal at once (and the other's once the feeds
                # bring it). Rank 0 claimed and refused; the client stopped there.
                held = {
                    r.record_id: r
                    for n in nodes
                    for r in n.store.query(type=Refusal.TYPE, signer=n.peer_id, slot=task_id)
                }
                assert len(held) == 1, "one node claimed the task and refused the input"
                for signed in held.values():
                    assert signed.record.code == "bad_seal"
                    assert signed.record.client == client.peer_id
                    refused.append((task_id, signed.signer))
                    blame = client.publisher.publish_soon(
                        Feedback(
                            task_id=task_id,
                            node=signed.signer,
                            outcome="timeout",
                            latency_ms=8000,
                            rating=0,
                            seq=1,
                            expires=offer.record.expires,
                        )
                    )
                    with trio.fail_after(10):
                        request = {"records": [blame.data]}
                        reply = await client.streams.request(signed.signer, request)
                    assert reply == {"ok": True, "stored": 1}
            monkeypatch.undo()
            if source == "digests":
                await _counted_from_digests(client, nodes, refused)
                return

            # The refusals spread through the feeds to every peer, the client too.
            def everywhere() -> bool:
                peers = [n.store for n in nodes] + [client.store]
                return all(len(s.query(type=Refusal.TYPE)) == len(refused) for s in peers)

            await wait_until(everywhere, 30)
            # Task records enter views task_record_lag epochs late, and a claim counts for
            # throughput once its task's deadline has passed.
            params = client.views.params
            offers = client.store.query(type="TaskOffer")
            bad_deadline_s = (
                max(o.record.deadline_ms for o in offers if o.record.task_id in dict(refused))
                // 1000
            )
            last = max(o.record.epoch for o in offers)
            epoch = max(last + params.task_record_lag, bad_deadline_s // EPOCH_S + 1)
            await trio.sleep(max(0.0, epoch * EPOCH_S - client.clock.now() + 0.6))
            for keeper in [client.views] + [n.views for n in nodes]:
                view = keeper.view(epoch)
                ev = view.evidence
                assert len(ev.refusals) == len(refused), "every peer checks every refusal"
                # The same evidence as if refusals did not exist: the old accounting.
                blamed = compute(
                    dataclasses.replace(ev, refusals=()),
                    now=epoch * EPOCH_S,
                    epoch_s=EPOCH_S,
                    params=params.reputation,
                )
                actual = view.reputation
                for peer in {p for _, p in refused}:
                    i = ev.index(peer)
                    # Under the old accounting each refused task was the node's failure
                    # (an undelivered claim, a timeout); now none of them is.
                    assert blamed.components[2, i] < actual.components[2, i]  # throughput
                    assert blamed.permille[i] <= actual.permille[i]
                bad = ev.index(client.peer_id)
                assert actual.client_credibility[bad] < 1.0
                assert blamed.client_credibility[bad] == 1.0
        finally:
            await ctx.__aexit__(None, None, None)


async def _counted_from_digests(client, nodes, refused) -> None:
    """On a digest network the refusals stay with the task's parties; the node's work
    digest counts each as ``refused`` (its leaf names the Refusal) and every peer's view
    folds it: out of the node's throughput, against the client's credibility, and the
    client's timeout verdicts on those tasks count for nothing (double entry)."""
    assert len(client.store.query(type=Refusal.TYPE)) == len(refused)  # handed back
    params = client.views.params
    offers = client.store.query(type="TaskOffer", signer=client.peer_id)
    last = max(o.record.epoch for o in offers)
    # views count the digests of `last` from the view of `last + digest_lag`: the parties
    # publish them once `last` is sealed, at their phase of the epoch
    epoch = last + params.digest_lag
    with trio.fail_after((epoch + 1) * EPOCH_S - client.clock.now() + 5):
        await trio.sleep(max(0.0, epoch * EPOCH_S - client.clock.now() + 0.6))
    prior = params.reputation.prior_throughput
    for keeper in [client.views] + [n.views for n in nodes]:
        table = keeper.view(epoch).reputation
        for peer in {p for _, p in refused}:
            # every claim the node did not refuse was delivered: its throughput is at or
            # above the prior; counted as undelivered claims (the old accounting) the
            # refused tasks would pull it well below (3 of about 4 claims)
            assert table.components[2, table.index(peer)] >= prior
        assert table.client_credibility[table.index(client.peer_id)] < 1.0
