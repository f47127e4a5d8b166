"""A node's Claim and Receipt expire with the offer they answer: an honest node copies the
offer's ``expires`` into both (repp2p.node.serving), and a client takes an answer whose
claim or receipt expires earlier as a bad proof (``expires_early``): a node choosing an
earlier expiry would have its records leave every store, and a dispute over them, before
the task's other records do. Real node parts, task server and client on virtual time
(repp2p.testing.tasknet)."""

from __future__ import annotations

import dataclasses

import pytest

from repp2p.records import Claim, Feedback, Receipt, TaskOffer
from repp2p.testing.tasknet import TaskNet


def _offer_of(net: TaskNet, task_id: str):
    (offer,) = [
        o for o in net.client.store.query(type=TaskOffer.TYPE) if o.record.task_id.hex() == task_id
    ]
    return offer


async def test_an_honest_run_copies_the_offers_expiry_and_passes(autojump_clock):
    async with TaskNet.open(nodes=3) as net:
        result = await net.client.submit("echo", b"honest", timeout=60)
        assert result.output == b"honest"
        assert [p.outcome for p in result.proofs] == ["ok"]
        offer = _offer_of(net, result.task_id)
        answer = [
            r
            for t in (Claim.TYPE, Receipt.TYPE)
            for r in net.client.store.query(type=t)
            if r.record.task_id == offer.record.task_id
        ]
        assert {r.type for r in answer} == {Claim.TYPE, Receipt.TYPE}
        assert {r.record.expires for r in answer} == {offer.record.expires}


def _shorten_first_answer(net: TaskNet, what: str) -> list[str]:
    """Make the first node of ``net`` to answer a task sign its ``what`` (``claim`` or
    ``receipt``) one second before the offer expires; the peer IDs of those that did."""
    cheated: list[str] = []
    for node in net.nodes:
        if what == "receipt":
            execute = node.enclave.execute

            async def short_receipt(*, _execute=execute, _peer=node.peer_id, **task):
                if not cheated:
                    cheated.append(_peer)
                    task = {**task, "expires": task["expires"] - 1}
                return await _execute(**task)

            node.enclave.execute = short_receipt  # type: ignore[method-assign]
        else:
            publish_soon = node.publisher.publish_soon

            def short_claim(record, *, _publish=publish_soon, _peer=node.peer_id):
                if isinstance(record, Claim) and not cheated:
                    cheated.append(_peer)
                    record = dataclasses.replace(record, expires=record.expires - 1)
                return _publish(record)

            node.publisher.publish_soon = short_claim  # type: ignore[method-assign]
    return cheated


@pytest.mark.parametrize("what", ["claim", "receipt"])
async def test_an_answer_expiring_before_its_offer_is_a_bad_proof(autojump_clock, what):
    async with TaskNet.open(nodes=3) as net:
        cheated = _shorten_first_answer(net, what)
        result = await net.client.submit("echo", b"short", timeout=90)
        assert result.output == b"short"  # the next rank served
        (cheater,) = cheated
        first, served = result.proofs[0], result.proof
        assert (first.node, first.rank, first.outcome) == (cheater, 0, "bad_proof")
        assert served.node != cheater and served.outcome == "ok"
        # the client released the cheater with bad_proof feedback
        task_id = bytes.fromhex(result.task_id)
        feedback = {
            (f.record.node, f.record.outcome)
            for f in net.client.store.query(type=Feedback.TYPE)
            if f.record.task_id == task_id
        }
        assert (cheater, "bad_proof") in feedback
