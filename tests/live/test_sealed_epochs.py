"""Once an epoch is sealed (its digests are due), no party signs a per-task record of a
task of that epoch, and no node hands over a receipt of a task it finished after the
offer's deadline: real task server and client on virtual time (repp2p.testing.tasknet)."""

from __future__ import annotations

import pytest
import trio

from repp2p.client import TaskError
from repp2p.records import Claim, Feedback, Receipt
from repp2p.testing.tasknet import TaskNet


async def test_a_node_claims_no_task_of_a_sealed_epoch(autojump_clock):
    async with TaskNet.open(nodes=3) as net:
        for node in net.nodes:
            node.server._sealed = lambda epoch: True
        with pytest.raises(TaskError):
            await net.client.submit("echo", b"too late", timeout=60)
        assert all(n.store.count(Claim.TYPE) == 0 for n in net.nodes)
        assert all(n.store.count(Receipt.TYPE) == 0 for n in net.nodes)


async def test_a_task_finishing_after_the_seal_gets_no_receipt(autojump_clock):
    async with TaskNet.open(nodes=3) as net:
        tripped: list[str] = []
        failed: list[bytes] = []

        def sealed_once_the_result_is_ready(peer: str):
            checks: list[int] = []

            def sealed(epoch: int) -> bool:
                # Open at the claim; for the first node whose result is ready, sealed then.
                checks.append(epoch)
                if len(checks) == 2 and not tripped:
                    tripped.append(peer)
                    return True
                return False

            return sealed

        for node in net.nodes:
            node.server._sealed = sealed_once_the_result_is_ready(node.peer_id)
            node.server._on_failed = lambda epoch, task_id: failed.append(task_id)
        result = await net.client.submit("echo", b"straddles the seal", timeout=90)
        (late,) = tripped
        # The node whose epoch was sealed while it ran claimed, and signed no receipt; the
        # client released it and the next rank served.
        assert net.node(late).store.query(type=Claim.TYPE, signer=late)
        assert not net.node(late).store.query(type=Receipt.TYPE, signer=late)
        assert result.proofs[0].node == late and result.proofs[0].outcome != "ok"
        assert result.proof.node != late and result.output == b"straddles the seal"
        assert failed == []  # after the seal the digest must not change: not a failed leaf


async def test_a_task_finishing_after_its_deadline_gets_no_receipt(autojump_clock):
    """A node that finishes a task after the offer's deadline (here each one sleeps past
    it) publishes no receipt and counts the task failed: its client stopped waiting, and a
    receipt or a replica's dispute proof this late could reach peers after the dispute
    closed (docs/digests.md, "When a proof counts")."""
    async with TaskNet.open(nodes=3) as net:
        failed: list[bytes] = []
        for node in net.nodes:
            node.server._task_delay_s = 61.0  # past the task's 60-s deadline
            node.server._on_failed = lambda epoch, task_id: failed.append(task_id)
        with pytest.raises(TaskError):
            await net.client.submit("echo", b"too slow", timeout=60)
        await trio.sleep(120)  # every claimant has finished by now
        claimants = [n for n in net.nodes if n.store.query(type=Claim.TYPE, signer=n.peer_id)]
        assert claimants
        assert all(n.store.count(Receipt.TYPE) == 0 for n in net.nodes)
        assert len(failed) == len(claimants) and len(set(failed)) == 1


async def test_a_client_signs_no_feedback_on_a_task_of_a_sealed_epoch(autojump_clock):
    async with TaskNet.open(nodes=3) as net:
        net.client.sealed = lambda epoch: True
        result = await net.client.submit("echo", b"no verdict", timeout=60)
        assert result.output == b"no verdict"
        assert net.client.store.query(type=Feedback.TYPE, signer=net.client.peer_id) == []
