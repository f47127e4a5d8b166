"""Tasks end to end: offer -> claim -> sealed input -> enclave -> receipt -> feedback.

Real py-libp2p hosts on loopback, real enclave processes (simulated TEE), the real client.
"""

from __future__ import annotations

import dataclasses

import pytest
import trio

from engines import get_engine, unavailable_engines
from repp2p.client import Client
from repp2p.matching import beacon
from repp2p.net.framing import FrameReader, write_cbor
from repp2p.net.task import MAX_RESPONSE, parse_response
from repp2p.records import MAX_LIFETIME_S, Feedback, Receipt, decode
from repp2p.testing.network import EPOCH_S, dev_params, local_network, node_config, start_node
from repp2p.timers import Timers

from .conftest import wait_until

pytestmark = pytest.mark.slow


async def _client(nodes, tmp_path, count, params=None):
    ctx = Client.open(
        [nodes[0].addrs()[0]], data_dir=tmp_path / "client", network_params=params or dev_params()
    )
    client = await ctx.__aenter__()
    with trio.fail_after(7 * EPOCH_S):
        assert await client.wait_for_nodes("echo", count, timeout=6 * EPOCH_S) >= count
    return ctx, client


def _engines():
    wanted = ["echo", "sentiment", "embed-minilm"]
    missing = unavailable_engines()
    return [e for e in wanted if e not in missing]


async def test_every_engine_end_to_end(tmp_path):
    engines = tuple(_engines())
    async with local_network(tmp_path, 3, engines=engines) as nodes:
        ctx, client = await _client(nodes, tmp_path, 3)
        try:
            inputs = {
                "echo": b"hello, enclave",
                "sentiment": b"What a wonderful, reliable network!",
                "embed-minilm": b"peer to peer compute",
            }
            for engine in engines:
                with trio.fail_after(60):
                    result = await client.submit(engine, inputs[engine], redundancy=2)
                expected = get_engine(engine).run(inputs[engine])
                assert result.output == expected  # bit-identical to a local run
                assert result.agreed == 2 and result.proof.outcome == "ok"
                assert result.proof.simulated and "SIMULATED TEE" in result.summary()
                # The receipt is signed by the node and held by the task's parties (views
                # come from digests: per-task records stay with them).
                receipt_id = bytes.fromhex(result.proof.receipt_id)
                server = next(n for n in nodes if n.peer_id == result.proof.node)
                for held in (server.store.get(receipt_id), client.store.get(receipt_id)):
                    assert isinstance(held.record, Receipt) and held.signer == server.peer_id
                # ... and by nobody else: no feed, no gossip of per-task records
                assert [
                    n.peer_id for n in nodes if n is not server and n.store.has(receipt_id)
                ] == []
        finally:
            await ctx.__aexit__(None, None, None)


async def test_wrong_result_is_caught_by_redundancy_and_penalised(tmp_path):
    # The count-quorum conviction (2 of 3 outvote the third: a hard penalty) is the rule
    # before issue 15, now opt-in (``wrong_result_hard``): by default a 2-to-1 split of equal
    # standing is not a confident verdict and needs escalation to more replicas, which the
    # simulator runs and the live node does not yet. This test keeps the opt-in rule working
    # end to end.
    # On a records network: the conviction is derived from the public receipts, which the
    # feeds carry to every peer (a digest network's dispute proofs: test_escalation.py).
    base = dev_params().replace(reputation_source="records")
    params = base.replace(reputation=dataclasses.replace(base.reputation, wrong_result_hard=True))
    async with trio.open_nursery() as nursery:
        boot = await start_node(nursery, node_config(tmp_path, "n0", network_params=params))
        nodes = [boot]
        for i in range(1, 4):
            nodes.append(
                await start_node(
                    nursery,
                    node_config(
                        tmp_path,
                        f"n{i}",
                        (boot.addrs()[0],),
                        cheat=(i == 3),
                        network_params=params,
                    ),
                )
            )
        cheater = nodes[3].peer_id
        ctx, client = await _client(nodes, tmp_path, 4, params)
        try:
            caught = 0
            for i in range(12):
                with trio.fail_after(60):
                    result = await client.submit("echo", b"task %d" % i, redundancy=3)
                assert result.output == b"task %d" % i  # the majority is honest
                for proof in result.proofs:
                    if proof.node == cheater:
                        assert proof.outcome == "wrong"
                        caught += 1
                    else:
                        assert proof.outcome == "ok"
                if caught:
                    break
            assert caught, "the cheater was never among the three chosen nodes"
            wrong = [s for s in client.store.query(type=Feedback.TYPE) if s.record.node == cheater]
            assert wrong and all(s.record.outcome == "wrong" for s in wrong)
            # The client handed the evidence to the task's nodes (not only to the cheater,
            # which could bury it); feeds carry it to every node, the uninvolved one too.
            await wait_until(lambda: all(n.store.has(wrong[0].record_id) for n in nodes), 20)
            # Two epochs on (task records enter views task_record_lag epochs late), every
            # peer's view holds the proof: the cheater is an offender, and ranks nowhere.
            lag = client.views.params.task_record_lag
            epoch = int(client.clock.now()) // EPOCH_S + lag
            await trio.sleep((epoch * EPOCH_S) - client.clock.now() + 0.6)
            view = client.views.view(epoch)
            assert view.reputation.get(cheater).is_offender
            assert view.penalties.is_penalised(cheater, epoch)
            offer_probe = dataclasses.replace(
                client.store.query(type="TaskOffer")[0].record, epoch=epoch
            )
            from repp2p.matching import rank

            assert cheater not in rank(offer_probe, view, beacon(epoch), limit=16)
        finally:
            await ctx.__aexit__(None, None, None)
            for node in nodes:
                node.stop()


async def test_bad_receipt_is_rejected_and_the_next_rank_completes(tmp_path):
    async with local_network(tmp_path, 3) as nodes:
        ctx, client = await _client(nodes, tmp_path, 3)
        try:
            # One node turns malicious: it tampers with the encrypted output it returns.
            liar = nodes[1]
            honest_serve = liar.server.serve

            async def tampering_serve(request):
                response = await honest_serve(request)
                if response.get("ok"):
                    out = bytearray(response["output"])
                    out[-1] ^= 1
                    response["output"] = bytes(out)
                return response

            liar.server.serve = tampering_serve
            seen_liar = False
            # The liar ranks first for about a third of the task ids: 30 tries leave a
            # (2/3)^30 ~ 5e-6 chance of never meeting it (10 tries: 1.7%, a flaky test).
            for i in range(30):
                with trio.fail_after(60):
                    result = await client.submit("echo", b"payload %d" % i)
                assert result.output == b"payload %d" % i
                for proof in result.proofs:
                    if proof.node == liar.peer_id:
                        assert proof.outcome == "bad_proof"
                        seen_liar = True
                if seen_liar:
                    break
            assert seen_liar, "the tampering node was never ranked first"
            released = [
                s.record
                for s in client.store.query(type=Feedback.TYPE)
                if s.record.node == liar.peer_id
            ]
            assert released and all(f.outcome == "bad_proof" for f in released)
        finally:
            await ctx.__aexit__(None, None, None)


async def test_replayed_and_expired_offers_are_ignored(tmp_path):
    async with local_network(tmp_path, 3) as nodes:
        ctx, client = await _client(nodes, tmp_path, 3)
        try:
            sent = {}
            # Capture the exact request the client sends to the first node.
            from repp2p import client as client_module

            original_try = client_module._Attempt._try

            async def capturing_try(self, attempt):
                sent.setdefault("offer", self.offer.data)
                sent.setdefault("peer", attempt.peer)
                return await original_try(self, attempt)

            client_module._Attempt._try = capturing_try
            try:
                with trio.fail_after(60):
                    result = await client.submit("echo", b"only once")
            finally:
                client_module._Attempt._try = original_try
            assert result.output == b"only once"
            node = next(n for n in nodes if n.peer_id == result.proof.node)

            async def ask(offer_data):

                with trio.fail_after(20):
                    stream = await client.open_stream(node.peer_id)
                    await write_cbor(stream, {"offer": offer_data, "sealed": b"x" * 64})
                    return parse_response(await FrameReader(stream, MAX_RESPONSE).read_cbor())

            done_before = node.server.done
            replay = await ask(sent["offer"])
            assert replay == {"ok": False, "error": "replayed", "detail": replay["detail"]}
            # An offer that expired is refused before anything else.
            offer = decode(sent["offer"]).record
            stale = client.identity
            from repp2p.records import encode

            expired = encode(dataclasses.replace(offer, task_id=b"\x09" * 32, expires=10), stale)
            answer = await ask(expired)
            assert answer["ok"] is False and answer["error"] == "bad_offer"
            assert "expired" in answer["detail"]
            # So is one that claims to live longer than any task record may.
            too_far = encode(
                dataclasses.replace(
                    offer,
                    task_id=b"\x0a" * 32,
                    expires=int(node.clock.now()) + MAX_LIFETIME_S[offer.TYPE] + 3600,
                ),
                stale,
            )
            answer = await ask(too_far)
            assert answer["ok"] is False and answer["error"] == "bad_offer"
            assert "expires_too_far" in answer["detail"]
            # Task-id squatting: another client reuses the gossiped task id in its own offer.
            from repp2p.testing import factories

            mallory = factories.identity("mallory")
            squat = encode(dataclasses.replace(offer, seq=2), mallory)  # the victim's task id
            answer = await ask(squat)
            assert answer["ok"] is False and answer["error"] == "bad_offer"
            assert "task id not bound" in answer["detail"]
            assert node.server.done == done_before  # none of these requests ran anything
        finally:
            await ctx.__aexit__(None, None, None)


async def test_task_streams_are_reused_and_a_closed_one_is_replaced(tmp_path):
    # Nodes close task streams idle for 2 s (Timers.task_idle_s); tasks 0.3 s apart reuse
    # theirs.
    timers = Timers(task_idle_s=2.0)
    async with local_network(tmp_path, 2, timers=timers) as nodes:
        ctx, client = await _client(nodes, tmp_path, 2)
        try:
            for i in range(4):
                with trio.fail_after(60):
                    result = await client.submit("echo", b"reuse %d" % i)
                assert result.output == b"reuse %d" % i
                await trio.sleep(0.3)  # let the background feedback hand-over finish
            # One stream per node talked to, whatever the number of tasks and hand-overs
            # (a hand-over still running when the next task starts would need a second).
            idle = client.streams.idle_counts()
            assert client.streams.opened == len(idle) >= 1
            assert all(count == 1 for count in idle.values())
            # A node closes a stream idle for task_idle_s (TaskStreams' retry of such a
            # stream is tested in tests/net/test_task_streams.py).
            with trio.fail_after(10):
                stream = await client.open_stream(nodes[0].peer_id)
                assert await FrameReader(stream, MAX_RESPONSE).read_cbor() is None
        finally:
            await ctx.__aexit__(None, None, None)


async def test_a_node_takes_handed_over_feedback_only_on_its_own_tasks(tmp_path):
    from repp2p.testing import factories

    async with local_network(tmp_path, 2) as nodes:
        ctx, client = await _client(nodes, tmp_path, 2)
        try:
            with trio.fail_after(60):
                result = await client.submit("echo", b"mine")
            node = next(n for n in nodes if n.peer_id == result.proof.node)
            task_id = bytes.fromhex(result.task_id)
            # The task's records outlive every reputation window they count in.
            offer = client.store.get(bytes.fromhex(result.offer_id)).record
            window = client.views.reputation_params.window_epochs
            lag = client.views.params.task_record_lag
            assert offer.expires >= (offer.epoch + lag + window + 1) * EPOCH_S
            # What the client handed over after the task is held by the node that served it.
            ours = [
                s for s in client.store.query(type=Feedback.TYPE) if s.record.task_id == task_id
            ]
            await wait_until(lambda: all(node.store.has(s.record_id) for s in ours), 10)
            stranger = factories.identity("stranger")

            def feedback(task: bytes) -> bytes:
                from repp2p.records import encode

                record = Feedback(
                    task_id=task,
                    node=node.peer_id,
                    outcome="wrong",
                    latency_ms=1,
                    rating=0,
                    seq=1,
                    expires=factories.far_future(node.clock.now()),
                )
                return encode(record, stranger)

            unrelated, junk = feedback(b"\x07" * 32), b"\xa1junk"
            before = node.store.count()
            assert node.server.take_records([unrelated, junk]) == 0
            assert node.store.count() == before  # not a free storage service
            from repp2p.errors import ProtocolError

            with pytest.raises(ProtocolError, match="bad hand-over"):  # -> bad_request
                await node.server.serve({"records": "not a list"})
        finally:
            await ctx.__aexit__(None, None, None)
