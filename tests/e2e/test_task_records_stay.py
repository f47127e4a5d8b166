"""On a network whose views come from digests, per-task records stay with their parties
(issue 14, item 1): after a run of tasks on a 6-node devnet, each node holds the records of
the tasks it took part in and nothing of the others, and a node that served none of them
holds none of their records (its status' ``records`` per type says so)."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
import trio

from repp2p.cli.devnet import EPOCH_S, Devnet
from repp2p.client import Client
from repp2p.config import BOOTSTRAP_DIR
from repp2p.network_params import NetworkParams
from repp2p.node.light import is_party
from repp2p.records import FEED_TYPES, Claim, Feedback, Receipt, TaskOffer
from repp2p.testing.network import dev_params, node_config, start_node

pytestmark = pytest.mark.slow

TASKS = 60


async def test_a_node_that_served_no_task_holds_none_of_their_records(tmp_path):
    params = dev_params().replace(reputation_source="digests")
    async with trio.open_nursery() as nursery:
        boot = await start_node(nursery, node_config(tmp_path, "n0", network_params=params))
        nodes = [boot]
        for i in range(1, 5):
            config = node_config(tmp_path, f"n{i}", (boot.addrs()[0],), network_params=params)
            nodes.append(await start_node(nursery, config))
        # the sixth node serves another engine: it takes part in none of the echo tasks
        idle = await start_node(
            nursery,
            node_config(
                tmp_path, "idle", (boot.addrs()[0],), network_params=params, engines=("sentiment",)
            ),
        )
        nodes.append(idle)
        async with Client.open(
            [boot.addrs()[0]], data_dir=tmp_path / "client", network_params=params
        ) as client:
            # generous: on a saturated machine (the full suite on 2 cores) a node's first
            # enclave-signed heartbeats can miss the liveness window for a few epochs
            with trio.fail_after(125):
                assert await client.wait_for_nodes("echo", 5, timeout=120) >= 5
            with trio.fail_after(300):
                for i in range(TASKS):
                    result = await client.submit("echo", b"task %d" % i)
                    assert result.output == b"task %d" % i
            offers = client.store.query(type=TaskOffer.TYPE, signer=client.peer_id)
            task_ids = {o.record.task_id for o in offers}
            assert len(task_ids) == TASKS
            # the client keeps its own tasks: offer, claim, receipt and feedback of each
            for record_type in (Claim.TYPE, Receipt.TYPE, Feedback.TYPE):
                held = {r.record.task_id for r in client.store.query(type=record_type)}
                assert held == task_ids, record_type
        served: set[bytes] = set()
        for node in nodes:
            claimed = {
                c.record.task_id for c in node.store.query(type=Claim.TYPE, signer=node.peer_id)
            }
            served |= claimed
            # every per-task record a node holds is of a task it claimed (an offer may
            # also be of a task it was asked to serve and declined: it was sent to it) ...
            for record_type in FEED_TYPES - {TaskOffer.TYPE}:
                for record in node.store.query(type=record_type):
                    assert record.record.task_id in claimed, (node.peer_id, record_type)
                    assert is_party(node.store, node.peer_id, record.record.task_id)
            # ... and it holds each claimed task's offer (the audit evidence)
            offers_held = {r.record.task_id for r in node.store.query(type=TaskOffer.TYPE)}
            assert claimed <= offers_held <= task_ids
        assert served == task_ids  # every task was served, by the nodes that hold it
        records = idle.parts.status.status()["records"]
        assert all(records[t] == 0 for t in FEED_TYPES), records
        assert records["NodeAd"] >= 5  # it holds what matching needs
        for node in nodes:
            node.stop()


def _digest_network_file(folder: Path) -> Path:
    """The dev network's file with ``reputation_source = "digests"`` (and its policy)."""
    folder.mkdir(parents=True)
    text = (BOOTSTRAP_DIR / "dev.toml").read_text()
    marker = '# reputation_source = "digests"'
    assert marker in text
    (folder / "dev.toml").write_text(text.replace(marker, 'reputation_source = "digests"'))
    shutil.copy(BOOTSTRAP_DIR / "policy-dev.toml", folder / "policy-dev.toml")
    return folder / "dev.toml"


async def test_failover_without_the_feed(tmp_path):
    # The claimed node is SIGKILLed mid-task; the next rank, which sees no claim (nothing
    # carries them on a digest-view network), takes the task on the owner's release, which
    # travels in the request: it holds it before it has run anything.
    network_file = _digest_network_file(tmp_path / "network")
    params = NetworkParams.load("dev", network_file)
    assert params.reputation_source == "digests"
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
            [devnet.info[0]["addrs"][0]], data_dir=tmp_path / "client", network_params=params
        ) as client:
            assert await client.wait_for_nodes("echo", 4, timeout=6 * EPOCH_S) >= 4
            killed: list[str] = []

            async def kill_first_claimant() -> None:
                # the client sees no claim before the reply: ask the nodes who claimed
                with trio.fail_after(30):
                    while True:
                        for info, status in zip(devnet.info, await devnet.statuses(), strict=True):
                            if status and status["records"].get(Claim.TYPE):
                                os.kill(pids[info["peer_id"]], signal.SIGKILL)
                                killed.append(info["peer_id"])
                                return
                        await trio.sleep(0.05)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(kill_first_claimant)
                with trio.fail_after(60):
                    result = await client.submit("echo", b"must not be lost", timeout=45)
            assert result.output == b"must not be lost"
            (victim,) = killed
            assert result.proof.node != victim and result.proof.outcome == "ok"
            dead = [p for p in result.proofs if p.node == victim]
            assert dead and dead[0].outcome == "timeout"
            statuses = dict(
                zip((i["peer_id"] for i in devnet.info), await devnet.statuses(), strict=True)
            )
            served = statuses[result.proof.node]
            # the release came with the request (the client's hand-over of its feedback
            # comes after the result and may add one more)
            assert served["records"][Claim.TYPE] == 1 and served["records"]["Feedback"] >= 1
            # the others saw none of the task's records (at most its offer, had the client
            # asked one that declined)
            for peer, status in statuses.items():
                if peer not in (victim, result.proof.node) and status:
                    held = {t: status["records"][t] for t in FEED_TYPES - {TaskOffer.TYPE}}
                    assert not any(held.values()), held
    finally:
        with trio.CancelScope(shield=True):
            await devnet.stop()
