"""A task owner replays its replica request past the replica window (docs/core.md,
"Disputes and escalation"): real node parts, task servers and enclaves on virtual time
(repp2p.testing.tasknet).

An owner can sign the sealed input for any node, so its genuine dispute (receipts of
attested enclaves that disagree) can go to every node of the escalation ranking. A node
past the window (the ``dispute_max_replicas`` nodes after those that ran the task) must
refuse it before it verifies a signature of the carried receipts; the node in the window
still runs it.
"""

from __future__ import annotations

import dataclasses
import itertools

import nacl.signing
import trio

from repp2p import tasks
from repp2p.identity import Identity
from repp2p.matching import beacon, rank
from repp2p.network_params import NetworkParams
from repp2p.records import (
    Attestation,
    Heartbeat,
    NodeAd,
    SignedRecord,
    TaskOffer,
    decode,
    sign,
    sign_sealed_input,
    task_id_for,
)
from repp2p.tee import TaskSecret, seal_input
from repp2p.testing import factories, tasknet
from repp2p.testing.tasknet import TaskNet, TaskNode

INPUT = b"the disputed input"


def _one_replica(epoch_s: int, real=tasknet.dev_params) -> NetworkParams:
    """The dev network with one replica a dispute: four nodes leave one past the window."""
    params = real(epoch_s)
    return params.replace(matching=dataclasses.replace(params.matching, dispute_max_replicas=1))


async def _same_views(net: TaskNet) -> int:
    """Hand every node what the client holds of the others (the bus delivers a record only
    to peers that joined before it was published: a node added later lacks earlier nodes'
    ads), then wait for the next epoch, whose views then list every node alike."""
    held = [
        s for t in (NodeAd, Attestation, Heartbeat) for s in net.client.store.query(type=t.TYPE)
    ]
    for node in net.nodes:
        node.pipeline.accept_decoded_many(held, source="sync")
    epoch = int(net.clock.now()) // net.epoch_s + 1
    await net.clock.sleep_until(epoch * net.epoch_s + 1)
    return epoch


def _offer(net: TaskNet, owner: Identity, n: int) -> tuple[SignedRecord, TaskSecret]:
    """A k = 2 offer of ``owner`` (its ``n``-th: another task id, another ranking)."""
    secret = TaskSecret.from_seed(n.to_bytes(32, "big"))
    now = int(net.clock.now())
    offer = TaskOffer(
        task_id=task_id_for(owner.public_key, secret.public_key),
        engine_id="echo",
        epoch=now // net.epoch_s,
        tee_kinds=(),
        min_reputation=0,
        max_price=2**63,
        redundancy=2,
        deadline_ms=(now + 60) * 1000,
        input_digest=secret.digest(INPUT),
        input_size=len(INPUT),
        result_key=secret.public_key,
        seq=1,
        expires=now + 3600,
    )
    return sign(offer, owner), secret


def _request(
    offer: SignedRecord, secret: TaskSecret, owner: Identity, node: TaskNode
) -> dict[str, bytes]:
    """What the owner sends ``node``: the input sealed to its enclave, and signed for it."""
    enc_key, _ = node.enclave.keys
    task_id = offer.record.task_id  # type: ignore[attr-defined]
    sealed, _ = seal_input(INPUT, enc_key, task_id=task_id, secret=secret)
    sig = sign_sealed_input(
        owner, task_id=task_id, node=node.peer_id, enc_key=enc_key, sealed=sealed
    )
    return {"offer": offer.data, "sealed": sealed, "input_sig": sig}


async def test_a_replica_request_replayed_past_the_window_verifies_no_receipt(
    autojump_clock, monkeypatch
):
    monkeypatch.setattr(tasknet, "dev_params", _one_replica)
    async with TaskNet.open(nodes=4, behaviours={0: "cheat"}) as net:
        owner = factories.identity("replaying-owner")
        cheat = net.nodes[0].peer_id
        with trio.fail_after(3 * net.epoch_s):
            epoch = await _same_views(net)
        views = [node.views.view(epoch) for node in net.nodes]
        view = views[0]
        assert view.matching_params.dispute_max_replicas == 1
        for n in itertools.count():  # a task whose first round is the cheat and an honest node
            offer, secret = _offer(net, owner, n)
            o: TaskOffer = offer.record  # type: ignore[assignment]
            first = rank(o, view, beacon(o.epoch))[:2]
            if cheat in first:
                break
        escalation = tasks.escalation_ranking(o, view, beacon(o.epoch))
        for other in views:  # every node ranks it alike
            assert rank(o, other, beacon(o.epoch))[:2] == first
            assert tasks.escalation_ranking(o, other, beacon(o.epoch)) == escalation
        receipts = []
        with trio.fail_after(30):
            for peer in first:
                reply = await net.node(peer).server.serve(
                    _request(offer, secret, owner, net.node(peer))
                )
                assert reply["ok"], reply
                receipts.append(decode(reply["receipt"]))
        assert len({r.record.output_digest for r in receipts}) == 2  # type: ignore[attr-defined]
        dispute = [r.data for r in receipts]
        window, past = [p for p in escalation if p not in first]  # one replica, one past

        # Count the signatures verified under the carried receipts' keys (their envelope
        # signers' and their enclaves').
        keys = {r.signer_key for r in receipts} | {r.record.result_key for r in receipts}  # type: ignore[attr-defined]
        verified: list[bytes] = []
        verify = nacl.signing.VerifyKey.verify

        def counted(self, *args, **kwargs):
            if bytes(self) in keys:
                verified.append(bytes(self))
            return verify(self, *args, **kwargs)

        monkeypatch.setattr(nacl.signing.VerifyKey, "verify", counted)
        with trio.fail_after(30):
            node = net.node(past)
            reply = await node.server.serve(
                {**_request(offer, secret, owner, node), "dispute": dispute}
            )
        assert reply["ok"] is False and reply["error"] == "not_assigned", reply
        assert verified == []  # refused on the receipts' named signers alone

        # The node in the window runs the same request, after verifying every receipt.
        with trio.fail_after(30):
            node = net.node(window)
            reply = await node.server.serve(
                {**_request(offer, secret, owner, node), "dispute": dispute}
            )
        assert reply["ok"], reply
        assert len(verified) == 2 * len(receipts)
        assert decode(reply["claim"]).record.rank == escalation.index(window)  # type: ignore[attr-defined]
