"""Hostile clients and nodes on the task path (docs/protocol.md, "/repp2p/task/1"): a
replay of public records with junk bytes, hand-overs of feedback views never count, an
answer whose "receipt" is another record, and (an honest client's bug) more releases than
a request may carry. Real node parts, task server and client on virtual time
(repp2p.testing.tasknet)."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from repp2p import tasks
from repp2p.client import TaskError
from repp2p.matching import beacon, rank
from repp2p.records import Claim, Feedback, TaskOffer, encode, task_id_for
from repp2p.tee import EnclaveError, EnclaveReason
from repp2p.testing import factories, tasknet
from repp2p.testing.tasknet import TaskNet

#: what a replaying peer sends instead of the owner's sealed input and signature
JUNK = {"sealed": b"\0" * 4096, "input_sig": b"\0" * 64}


def _fresh_offer(net: TaskNet, owner_name: str = "offer-owner") -> tuple[bytes, TaskOffer]:
    """An offer a client signed and sent nowhere yet: anyone may have seen it (offers are
    public records), nobody else can sign its input."""
    owner = factories.identity(owner_name)
    now = net.clock.now()
    result_key = hashlib.sha256(owner_name.encode()).digest()
    offer = TaskOffer(
        task_id=task_id_for(owner.public_key, result_key),
        engine_id="echo",
        epoch=int(now) // net.epoch_s,
        tee_kinds=(),
        min_reputation=0,
        max_price=2**63,
        redundancy=1,
        deadline_ms=int((now + 60) * 1000),
        input_digest=hashlib.sha256(b"input").digest(),
        input_size=5,
        result_key=result_key,
        seq=1,
        expires=int(now) + 3600,
    )
    return encode(offer, owner), offer


async def test_a_replayed_offer_with_junk_bytes_is_refused_before_the_failover_wait(
    autojump_clock,
):
    """The input signature was checked last: a replay of a public offer with junk bytes
    made a failover rank store and spread the offer, then hold the request (up to 2 MiB)
    through its failover wait, before ``bad_request``. Now it is refused at once."""
    async with TaskNet.open(nodes=3) as net:
        data, o = _fresh_offer(net)
        node = net.nodes[0]
        ranking = rank(o, node.views.view(o.epoch), beacon(o.epoch))
        behind = [n for n in net.nodes if ranking.index(n.peer_id) >= 1]
        node = behind[-1]  # a failover rank: its turn opens seconds after it sees the offer
        asked = net.clock.now()
        reply = await node.server.serve({"offer": data, **JUNK})
        assert reply["ok"] is False and reply["error"] == "bad_request"
        assert "input_sig" in reply["detail"]
        assert net.clock.now() - asked < 0.5  # no failover wait (2 s a rank)
        offer_id = hashlib.sha256(data).digest()
        assert node.store.get(offer_id) is None  # neither stored nor spread


async def test_a_replayed_dispute_with_junk_bytes_is_refused_before_its_receipts(
    autojump_clock, monkeypatch
):
    """A dispute request carries up to 80 receipts (two signatures each to verify), all
    public records; the input signature, checked last, let anyone make a node verify them
    for a replay with junk bytes. Now the receipts are not looked at."""
    checked = []
    check_dispute = tasks.check_dispute

    def counted(*args, **kwargs):
        checked.append(args)
        return check_dispute(*args, **kwargs)

    monkeypatch.setattr(tasks, "check_dispute", counted)
    async with TaskNet.open(nodes=3) as net:
        data, o = _fresh_offer(net, "disputing-owner")
        node = net.nodes[0]
        assert node.peer_id in tasks.escalation_ranking(
            o, node.views.view(o.epoch), beacon(o.epoch)
        )
        request = {"offer": data, **JUNK, "dispute": [b"receipt-1", b"receipt-2"]}
        reply = await node.server.serve(request)
        assert reply["ok"] is False and reply["error"] == "bad_request"
        assert "input_sig" in reply["detail"]
        assert checked == []


async def test_a_hand_over_keeps_only_the_owners_feedback_on_nodes_that_may_have_run_it(
    autojump_clock,
):
    """A node stored any valid Feedback handed over on a task it claimed: anyone's under
    throwaway keys (views drop feedback not signed by the task's owner) and the owner's on
    any number of made-up nodes, 16 a message: disk for free, without end. It keeps the
    owner's feedback on nodes that may have run the task, and only that."""
    async with TaskNet.open(nodes=3) as net:
        result = await net.client.submit("echo", b"hand over", timeout=60)
        served = net.node(result.proof.node)
        task_id = bytes.fromhex(result.task_id)
        (offer,) = [
            s
            for s in net.client.store.query(type=TaskOffer.TYPE, slot=task_id)
            if s.signer == net.client.peer_id
        ]
        ranking = rank(
            offer.record, served.views.view(offer.record.epoch), beacon(offer.record.epoch)
        )
        unclaimed = next(p for p in ranking if p != served.peer_id)

        def feedback(signer, node: str, outcome: str = "ok") -> bytes:
            fb = Feedback(
                task_id=task_id,
                node=node,
                outcome=outcome,
                latency_ms=10,
                rating=100 if outcome == "ok" else 0,
                seq=2,
                expires=offer.record.expires,
            )
            return encode(fb, signer)

        stranger = factories.identity("throwaway")
        made_up = factories.identity("made-up-node").peer_id
        junk = [
            feedback(stranger, served.peer_id, "wrong"),  # not the owner's
            feedback(net.client.identity, made_up, "wrong"),  # a node nobody ranked
        ]
        assert await served.server.serve({"records": junk}) == {"ok": True, "stored": 0}
        for data in junk:
            assert served.store.get(hashlib.sha256(data).digest()) is None
        honest = [
            feedback(net.client.identity, served.peer_id),  # on itself
            feedback(net.client.identity, unclaimed, "timeout"),  # on another rank
        ]
        assert await served.server.serve({"records": honest}) == {"ok": True, "stored": 2}
        # a node that never claimed the task keeps nothing on it, whoever signed it
        other = net.node(unclaimed)
        assert not other.store.query(type=Claim.TYPE, signer=unclaimed, slot=task_id)
        reply = await other.server.serve({"records": [feedback(net.client.identity, unclaimed)]})
        assert reply == {"ok": True, "stored": 0}


async def test_an_answer_whose_receipt_is_another_record_is_a_bad_proof(autojump_clock):
    """A node answering with another record it signed (its claim, say) as the receipt
    made the client read a receipt's fields off it: an AttributeError that ended the
    whole task. It is a bad proof now: the node is released and the next rank serves."""
    async with TaskNet.open(nodes=3) as net:
        cheated: list[str] = []
        for node in net.nodes:
            execute = node.server._execute

            async def swapped(*args, _execute=execute, _peer=node.peer_id, **kwargs):
                reply = await _execute(*args, **kwargs)
                if reply["ok"] and not cheated:
                    cheated.append(_peer)
                    reply = {**reply, "receipt": reply["claim"]}
                return reply

            node.server._execute = swapped  # type: ignore[method-assign]
        result = await net.client.submit("echo", b"swapped", timeout=90)
        assert result.output == b"swapped"
        (cheater,) = cheated
        first, served = result.proofs[0], result.proof
        assert (first.node, first.outcome) == (cheater, "bad_proof")
        assert served.node != cheater and served.outcome == "ok"


async def test_a_client_sends_at_most_16_releases_however_many_ranks_failed(
    autojump_clock, monkeypatch
):
    """A request carrying more than 16 releases is malformed (``bad_request``), yet the
    client sent every release so far: on a network whose ``failover_depth`` is above 16
    (the bound is 239), the ranks after the 16th failure were asked with malformed
    requests. It sends the latest 16 (a node reads the others from its store)."""
    depth = 20
    params = tasknet.dev_params(60)
    params = params.replace(
        matching=dataclasses.replace(params.matching, failover_depth=depth, claim_timeout_ms=500)
    )
    monkeypatch.setattr(tasknet, "dev_params", lambda epoch_s: params)
    sent: list[int] = []
    async with TaskNet.open(nodes=depth + 1) as net:
        for node in net.nodes:

            async def fails(**task):  # claimed, then the enclave failed: a release each
                raise EnclaveError(EnclaveReason.INTERNAL, "down")

            node.enclave.execute = fails  # type: ignore[method-assign]
        request = net.client.streams.request

        async def counted(peer, frame):
            sent.append(len(frame.get("releases", ())))
            return await request(peer, frame)

        net.client.streams.request = counted  # type: ignore[method-assign]
        with pytest.raises(TaskError, match="no_result"):
            await net.client.submit("echo", b"x", timeout=120)
    assert sent == [min(r, 16) for r in range(depth + 1)]
