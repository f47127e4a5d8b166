"""A digest network phases a cheating node out, end to end.

Real py-libp2p hosts on loopback, real enclave processes (simulated TEE: no real security),
the real client, views from digests (the shipped default). One node's enclave always
returns wrong results (``cheat``, the dev-only demo switch) and is attested like any node.
Redundancy (k = 2) catches it: its receipt disagrees with an honest one, the client
escalates to replicas that outvote it and publishes the dispute proof (docs/digests.md,
"Dispute proofs"); every peer's digest view counts the lost dispute, its ``permille``
falls below ``phase_out_permille`` and the penalty book phases it out (docs/core.md,
"Penalties"). The test's network shortens the phase-out (one epoch below the threshold
suffices) so it happens within the test; the rules are the shipped ones.
"""

from __future__ import annotations

import dataclasses

import pytest
import trio

from repp2p.client import Client
from repp2p.digests.disputes import DisputeTiming
from repp2p.testing.network import dev_params, node_config, start_node

from .conftest import wait_until

pytestmark = pytest.mark.slow

EPOCH_S = 5
#: a task's deadline: short, so its dispute counts early (DisputeTiming: the epoch after
#: the deadline's is the last to take the proof)
TASK_TIMEOUT_S = 20


def _params():
    dev = dev_params(EPOCH_S)
    reputation = dataclasses.replace(
        dev.reputation,
        # phased out at the first view below the threshold (the phase-out itself, 24
        # epochs by default, outlasts the test)
        phase_out_epochs=1,
    )
    return dev.replace(reputation_source="digests", reputation=reputation)


async def test_a_digest_network_phases_a_cheater_out(tmp_path):
    params = _params()
    async with trio.open_nursery() as nursery:
        boot = await start_node(nursery, node_config(tmp_path, "n0", network_params=params))
        nodes = [boot]
        for i in range(1, 5):
            config = node_config(
                tmp_path, f"n{i}", (boot.addrs()[0],), network_params=params, cheat=i == 4
            )
            nodes.append(await start_node(nursery, config))
        cheater = nodes[4].peer_id
        honest = {n.peer_id for n in nodes[:4]}
        ctx = Client.open([boot.addrs()[0]], data_dir=tmp_path / "client", network_params=params)
        client = await ctx.__aenter__()
        peers = (client, *nodes)
        try:
            with trio.fail_after(4 * EPOCH_S + 5):
                assert await client.wait_for_nodes("echo", 5, timeout=4 * EPOCH_S) >= 5

            # k = 2 until the cheater is one of the two: its output disagrees, replicas
            # outvote it, the client publishes the dispute proof.
            disputed = None
            for i in range(12):
                data = b"phase-out %02d" % i
                with trio.fail_after(60):
                    result = await client.submit("echo", data, redundancy=2, timeout=TASK_TIMEOUT_S)
                assert result.output == data  # the honest output, every time
                by_node = {p.node: p for p in result.proofs}
                assert all(p.outcome == "ok" for n, p in by_node.items() if n in honest)
                if cheater not in by_node:
                    assert not result.escalated
                    continue
                assert by_node[cheater].outcome == "wrong" and result.upheld
                assert result.escalated and set(result.escalated) <= honest
                disputed = result
                break
            assert disputed is not None, "the cheater served none of 12 tasks at k = 2"
            offer = client.store.get(bytes.fromhex(disputed.offer_id))
            o = offer.record
            ids = {bytes.fromhex(p.receipt_id) for p in disputed.proofs}

            def proved(peer) -> bool:
                held = peer.disputes.get(offer.record_id)
                return held is not None and {r.record_id for r in held.receipts} == ids

            await wait_until(lambda: all(proved(p) for p in peers), 10 * EPOCH_S)

            # Every peer's view of the count epoch counts the lost dispute, and the cheater
            # is below the phase-out threshold there: phased out, ineligible.
            count = DisputeTiming(EPOCH_S, params.dispute_lag, grace_s=params.proof_grace_s).count(
                o.epoch, o.deadline_ms
            )
            await wait_until(lambda: client.clock.epoch(EPOCH_S) >= count, 10 * EPOCH_S)
            threshold = params.reputation.phase_out_permille
            for peer in peers:
                # the view before counts nothing against it: the dispute is what phases it out
                before = peer.views.view(count - 1)
                assert before.reputation.get(cheater).disputes_lost == 0
                assert before.reputation.get(cheater).permille >= threshold
                assert not before.penalties.is_penalised(cheater, count - 1)
            for peer in peers:
                view = peer.views.view(count)
                table = view.reputation
                c = table.get(cheater)
                assert c.disputes_lost > 0, peer
                assert c.permille < threshold, (peer, c.permille)
                assert view.penalties.is_penalised(cheater, count)
                for h in honest:
                    assert table.get(h).disputes_lost == 0
                    assert table.get(h).permille >= threshold, (h, table.get(h).permille)
                    assert not view.penalties.is_penalised(h, count)
                assert not view.base_eligible[view.peers.index(cheater)]

            # From then on tasks go to honest nodes only (no disagreement, no replica).
            for i in range(4):
                data = b"after %02d" % i
                with trio.fail_after(60):
                    result = await client.submit("echo", data, redundancy=2, timeout=TASK_TIMEOUT_S)
                assert result.output == data
                assert {p.node for p in result.proofs} <= honest
                assert not result.escalated
                epoch = client.store.get(bytes.fromhex(result.offer_id)).record.epoch
                for peer in peers:
                    view = peer.views.view(epoch)
                    assert view.penalties.is_penalised(cheater, epoch)
                    assert not any(view.penalties.is_penalised(h, epoch) for h in honest)
        finally:
            await ctx.__aexit__(None, None, None)
            for node in nodes:
                node.stop()
