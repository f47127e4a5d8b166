"""Failover with real processes: the claimed node is SIGKILLed mid-task, the next rank
completes the task; a restarted node keeps its records, reputation, ledger and identity."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import trio

from repp2p.cli.devnet import EPOCH_S, Devnet
from repp2p.client import Client
from repp2p.ledger import replay
from repp2p.network_params import NetworkParams
from repp2p.records import Claim, Feedback
from repp2p.reputation import collect, compute
from repp2p.store import SqliteRecordStore
from repp2p.testing.network import dev_params, node_config, start_node

from .conftest import records_network_file, wait_until

pytestmark = pytest.mark.slow


async def test_sigkill_of_the_claimed_node_mid_task_fails_over(tmp_path):
    # On a records network, where the claim reaches the client by the feeds while the node
    # still runs the task (a digest network's failover, where nothing carries claims:
    # test_task_records_stay.py::test_failover_without_the_feed).
    network_file = records_network_file(tmp_path / "network")
    extra = {"task_delay_s": 3.0, "network_file": str(network_file)}
    devnet = Devnet(tmp_path / "net", 3, ["echo"], extra=extra)
    try:
        with trio.fail_after(90):
            await devnet.start()
        pids = {
            info["peer_id"]: json.loads(
                (tmp_path / "net" / info["name"] / "runtime.json").read_text()
            )["pid"]
            for info in devnet.info
        }
        async with Client.open(
            [devnet.info[0]["addrs"][0]],
            data_dir=tmp_path / "client",
            network_params=NetworkParams.load("dev", network_file),
        ) as client:  # the devnet's network parameters
            assert await client.wait_for_nodes("echo", 4, timeout=6 * EPOCH_S) >= 4
            killed: list[str] = []

            async def kill_first_claimant() -> None:
                def claimant() -> str | None:
                    for signed in client.store.query(type=Claim.TYPE):
                        return signed.signer
                    return None

                await wait_until(lambda: claimant() is not None, 30, 0.02)
                victim = claimant()
                os.kill(pids[victim], signal.SIGKILL)  # mid-task: it claimed, then sleeps
                killed.append(victim)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(kill_first_claimant)
                with trio.fail_after(60):
                    result = await client.submit("echo", b"must not be lost", timeout=45)
            assert result.output == b"must not be lost"
            (victim,) = killed
            assert result.proof.node != victim and result.proof.outcome == "ok"
            dead = [p for p in result.proofs if p.node == victim]
            assert dead and dead[0].outcome == "timeout"
            # The release is public: the owner's timeout feedback on the dead claimant.
            releases = [
                s.record for s in client.store.query(type=Feedback.TYPE) if s.record.node == victim
            ]
            assert [f.outcome for f in releases] == ["timeout"]
    finally:
        with trio.CancelScope(shield=True):
            await devnet.stop()


async def test_restarted_node_keeps_records_and_reputation(tmp_path):
    # On a records network: the reputation and ledger checked below are computed from every
    # task's records (a digest network's restart: test_digest_restart.py).
    params = dev_params().replace(reputation_source="records")  # 5-s epochs
    async with trio.open_nursery() as nursery:
        boot = await start_node(nursery, node_config(tmp_path, "boot", network_params=params))
        config = node_config(tmp_path, "worker", (boot.addrs()[0],), network_params=params)
        worker = await start_node(nursery, config)
        async with Client.open(
            [boot.addrs()[0]], data_dir=tmp_path / "c", network_params=params
        ) as client:
            assert await client.wait_for_nodes("echo", 2, timeout=15) >= 2
            for i in range(4):
                with trio.fail_after(30):
                    await client.submit("echo", b"job %d" % i, redundancy=2)
            # Every record of the 4 tasks x 2 nodes: the other node's claims and receipts
            # reach the worker by its feed, a moment after the client's feedback hand-over.
            await wait_until(
                lambda: all(worker.store.count(t) >= 8 for t in ("Feedback", "Claim", "Receipt")),
                15,
            )
        now = int(worker.clock.now())
        held = worker.store.query()
        verdicts = worker.keeper.verdicts(held, now)
        table = compute(collect(held, verdicts, now=now), now=now, epoch_s=5)
        ledger = replay(held, verdicts, now=now + 5, epoch_s=5)
        peer_id = worker.peer_id
        worker.stop()
        await wait_until(lambda: not (tmp_path / "worker" / "runtime.json").exists(), 10)

        # What the node persisted is exactly what it held, so its reputation inputs survive:
        # the pure computation over the reopened store gives the same table, bit for bit.
        with SqliteRecordStore(tmp_path / "worker" / "records.db") as reopened:
            kept = reopened.query()
        assert [s.record_id for s in kept] == [s.record_id for s in held]
        again_table = compute(collect(kept, verdicts, now=now), now=now, epoch_s=5)
        assert np.array_equal(again_table.permille, table.permille)
        assert again_table.get(peer_id).feedback_mass == table.get(peer_id).feedback_mass > 0
        # ...and so does its REP ledger (balances are a pure function of the records).
        again_ledger = replay(kept, verdicts, now=now + 5, epoch_s=5)
        assert again_ledger.pending.digest == ledger.pending.digest
        assert again_ledger.pending.balances == ledger.pending.balances
        assert ledger.pending.emitted > 0  # the epochs with tasks were settled

        again = await start_node(nursery, config)
        assert again.peer_id == peer_id  # same identity from the data dir
        task_ids = {
            s.record_id for s in kept if s.type in ("TaskOffer", "Claim", "Receipt", "Feedback")
        }
        assert task_ids and task_ids <= {s.record_id for s in again.store.query()}
        again.stop()
        boot.stop()
