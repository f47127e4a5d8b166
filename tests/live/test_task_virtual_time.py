"""The task protocol's timing rules on trio's virtual time (MockClock, autojump).

Real node parts, task server and client (repp2p.testing.tasknet): only libp2p is replaced by
memory streams and an in-memory record bus, so failover after a 30 s attempt budget and epoch
boundaries take milliseconds of wall time and never depend on machine load.
"""

from __future__ import annotations

import time

import trio

from repp2p.records import TaskOffer, encode, task_id_for
from repp2p.tasks import EPOCH_LAG
from repp2p.tee import TaskSecret
from repp2p.testing.tasknet import TaskNet
from repp2p.timers import Timers


async def test_an_honest_task_completes_with_no_wall_clock_wait(autojump_clock):
    started = time.monotonic()
    async with TaskNet.open(nodes=3) as net:
        result = await net.client.submit("echo", b"hello", timeout=60)
        assert result.output == b"hello"
        assert result.proof.rank == 0 and result.proof.simulated
        # The client set-up waited for views over several virtual epochs.
        assert net.clock.now() - 1_800_000_000 >= 60
    assert time.monotonic() - started < 30  # virtual minutes, real seconds


async def test_a_stalled_node_is_released_and_the_next_rank_serves(autojump_clock):
    # Every node would stall if it were the first to run a task: so rank 0 of the first task.
    behaviours = dict.fromkeys(range(3), "stall-first")
    async with TaskNet.open(nodes=3, behaviours=behaviours) as net:
        sent = net.clock.now()
        result = await net.client.submit("echo", b"fail over", timeout=90)
        took = net.clock.now() - sent
        assert result.output == b"fail over"
        first, served = result.proofs[0], result.proof
        assert net.node(first.node).enclave.stalled and first.outcome == "timeout"
        assert first.rank == 0 and served.rank == 1 and served.outcome == "ok"
        # Rank 0 had its turn (opens at 0) plus the attempt budget, then rank 1 ran.
        budget = net.timers.attempt_budget_s
        assert budget <= took < budget + 5
        # Rank 1 claimed although rank 0 had claimed first: the client's timeout feedback
        # (a release) travelled with the request.
        claims = net.nodes[0].store.query(type="Claim")
        assert {c.signer for c in claims} == {first.node, served.node}
        # The next task runs at once on its rank 0 (only the first runner stalled).
        sent = net.clock.now()
        again = await net.client.submit("echo", b"next", timeout=90)
        assert again.proof.rank == 0 and net.clock.now() - sent < 1


async def test_the_attempt_budget_comes_from_the_timers(autojump_clock):
    behaviours = dict.fromkeys(range(3), "stall-first")
    async with TaskNet.open(
        nodes=3, behaviours=behaviours, timers=Timers(attempt_budget_s=5.0)
    ) as net:
        sent = net.clock.now()
        result = await net.client.submit("echo", b"quick", timeout=90)
        assert result.proof.rank == 1
        assert 5.0 <= net.clock.now() - sent < 10.0


def _offer(net: TaskNet, epoch: int, now: float) -> tuple[dict, TaskOffer]:
    secret = TaskSecret.generate()
    record = TaskOffer(
        task_id=task_id_for(net.client.identity.public_key, secret.public_key),
        engine_id="echo",
        epoch=epoch,
        tee_kinds=(),
        min_reputation=0,
        max_price=2**63,
        redundancy=3,
        deadline_ms=int((now + 10 * net.epoch_s) * 1000),
        input_digest=secret.digest(b"x"),
        input_size=1,
        result_key=secret.public_key,
        seq=1,
        expires=int(now) + 20 * net.epoch_s,
    )
    return {"offer": encode(record, net.client.identity), "sealed": b"s" * 64}, record


async def test_offers_are_served_within_the_epoch_window_only(autojump_clock):
    async with TaskNet.open(nodes=3, epoch_s=10) as net:
        epoch = int(net.clock.now()) // 10
        request, _ = _offer(net, epoch, net.clock.now())
        assert net.client.views.view(epoch) is not None
        # EPOCH_LAG + 1 epochs on, a node refuses the offer (its deadline is still ahead).
        await net.clock.sleep_until((epoch + EPOCH_LAG + 1) * 10 + 0.5)
        reply = await net.nodes[0].server.serve(request)
        assert reply["ok"] is False and reply["error"] == "wrong_epoch"
        # EPOCH_LAG epochs on it is still considered (the sealed input is junk, so a node
        # that takes it fails in its enclave: what matters is that the epoch passed).
        late = int(net.clock.now()) // 10 - EPOCH_LAG
        late_request, _ = _offer(net, late, net.clock.now())
        replies = [await n.server.serve(late_request) for n in net.nodes]
        assert "wrong_epoch" not in {r.get("error") for r in replies}
        # An offer for a future epoch is refused too.
        future, _ = _offer(net, epoch + 10, net.clock.now())
        reply = await net.nodes[0].server.serve(future)
        assert reply["error"] == "wrong_epoch"


async def test_heartbeats_go_out_once_per_epoch_at_the_node_phase(autojump_clock):
    async with TaskNet.open(nodes=2, epoch_s=10) as net:
        node = net.nodes[0]
        start = int(net.clock.now()) // 10
        await net.clock.sleep_until((start + 5) * 10)
        beats = node.store.query(type="Heartbeat", signer=node.peer_id)
        per_epoch: dict[int, list[float]] = {}
        for signed in beats:
            arrived = node.pipeline.arrived_at(signed.record_id)
            assert arrived is not None
            per_epoch.setdefault(signed.record.epoch, []).append(arrived)
        for epoch in range(start + 1, start + 5):
            (arrived,) = per_epoch[epoch]  # exactly one in each epoch
            # at the same phase of every epoch, inside the window [0.15, 0.85)
            assert 1.5 <= arrived - epoch * 10 < 8.5
        offsets = {round(per_epoch[e][0] - e * 10, 3) for e in range(start + 1, start + 5)}
        assert len(offsets) == 1


async def test_a_stalled_node_cannot_take_a_short_tasks_whole_deadline(autojump_clock):
    # The fault: with the default 30 s timeout (no more than the attempt budget), a node that
    # took the request and stalled kept the client waiting to the deadline, and on 10-s
    # epochs the next rank refused the then two-epoch-old offer (wrong_epoch).
    behaviours = dict.fromkeys(range(3), "stall-first")
    async with TaskNet.open(nodes=3, behaviours=behaviours, epoch_s=10) as net:
        sent = net.clock.now()
        result = await net.client.submit("echo", b"in time", timeout=30)
        took = net.clock.now() - sent
        assert result.output == b"in time" and result.proof.rank == 1
        assert result.proofs[0].outcome == "timeout"
        assert 15 <= took < 30  # rank 0 had half the deadline, rank 1 the rest
        assert int(sent) // 10 != int(net.clock.now()) // 10  # an epoch boundary passed


async def test_a_closing_client_skips_the_hand_over_and_keeps_the_result(autojump_clock):
    """A task that ends while its client is closing (the background nursery takes no new
    work) still returns or raises what it really ended with: the hand-over is skipped, not
    turned into "Nursery is closed to new arrivals" from a ``finally``."""
    async with TaskNet.open(nodes=2) as net:
        async with trio.open_nursery() as closed:
            pass
        net.client._background = closed
        result = await net.client.submit("echo", b"late", timeout=60)
        assert result.output == b"late"


async def test_nodes_hidden_by_a_partition_cost_one_dial_timeout_then_are_skipped(
    autojump_clock,
):
    """A partition leaves the client one node of four: the first task gives each hidden
    node it meets one dial timeout (not an attempt budget) and completes on the reachable
    one; the next task skips the hidden nodes at once."""
    async with TaskNet.open(nodes=4, epoch_s=60) as net:
        client = net.client
        reachable = net.nodes[0].peer_id
        hidden = [n.peer_id for n in net.nodes[1:]]
        net.cut(*hidden)
        dial_s = client.timers.dial_timeout_s
        turn_s = client.views.view(int(net.clock.now()) // 60).matching_params.claim_timeout_ms
        turn_s /= 1000

        started = net.clock.now()
        first = await client.submit("echo", b"one", timeout=30)
        took = net.clock.now() - started
        assert first.output == b"one" and first.proof.node == reachable
        # each better rank: one dial timeout; then the reachable node's failover turn
        assert took <= first.proof.rank * dial_s + first.proof.rank * turn_s + 1.0
        met = [p for p in hidden if client.is_unreachable(p)]
        assert len(met) == first.proof.rank  # the hidden ranks it met are remembered

        for i in range(3):
            started = net.clock.now()
            result = await client.submit("echo", b"more %d" % i, timeout=30)
            took = net.clock.now() - started
            assert result.proof.node == reachable
            # hidden ranks it met before: skipped, no dial timeout; others: one each
            assert took <= result.proof.rank * turn_s + dial_s * (3 - len(met)) + 1.0
            met = [p for p in hidden if client.is_unreachable(p)]


async def test_concurrent_tasks_share_feedback_hand_overs_and_all_of_it_is_delivered(
    autojump_clock,
):
    """While a hand-over to a node is in flight, the feedback of tasks finishing meanwhile
    waits for the next request to that node (repp2p.client.HandOvers): concurrent tasks
    need fewer hand-over requests than tasks, and every task's feedback is delivered."""
    tasks = 24
    async with TaskNet.open(nodes=2, capacity=tasks) as net:
        results = []

        async def one(i: int) -> None:
            results.append(await net.client.submit("echo", b"task %d" % i, timeout=60))

        async with trio.open_nursery() as nursery:
            for i in range(tasks):
                nursery.start_soon(one, i)
        assert len({r.task_id for r in results}) == tasks
        with trio.fail_after(60):
            while net.client.hand_overs.busy():
                await trio.sleep(0.1)
        # k = 1: one feedback per task, handed to the node that served it
        assert net.client.hand_overs.delivered == tasks
        assert net.client.hand_overs.requests < tasks


async def test_a_busy_client_hands_over_many_tasks_feedback_in_one_request(autojump_clock):
    """A node's feedback waits ``handover_delay_s`` before its hand-over: tasks that finish
    one after another within the delay share one request (a node answers one hand-over
    per delay, not one per task); with no delay each task's feedback goes at once."""
    for delay, tasks in ((5.0, 6), (0.0, 3)):
        async with TaskNet.open(nodes=1, timers=Timers(handover_delay_s=delay)) as net:
            hand_overs = net.client.hand_overs
            for i in range(tasks):
                await net.client.submit("echo", b"in turn %d" % i, timeout=60)
                if delay == 0.0:  # sent at once: wait for it before the next task
                    with trio.fail_after(10):
                        while hand_overs.busy():
                            await trio.sleep(0.01)
            with trio.fail_after(60):
                while hand_overs.busy():
                    await trio.sleep(0.1)
            assert hand_overs.delivered == tasks
            assert hand_overs.requests == (1 if delay else tasks)


async def test_flush_hands_over_waiting_feedback_at_once(autojump_clock):
    """A closing client does not sit out the hand-over delay: :meth:`HandOvers.flush` sends
    what waits at once, and later feedback too."""
    async with TaskNet.open(nodes=1, timers=Timers(handover_delay_s=60.0)) as net:
        hand_overs = net.client.hand_overs
        await net.client.submit("echo", b"before the flush", timeout=60)
        await trio.sleep(1)
        assert hand_overs.busy() and hand_overs.delivered == 0  # still waiting its delay
        flushed = net.clock.now()
        hand_overs.flush()
        await net.client.submit("echo", b"after the flush", timeout=60)
        with trio.fail_after(60):
            while hand_overs.busy() or hand_overs.delivered < 2:
                await trio.sleep(0.01)
        assert net.clock.now() - flushed < 5
        assert hand_overs.delivered == 2
