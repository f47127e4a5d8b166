"""The ledger tools on a live digest network (issue 14, item 5): after a run of tasks on a
small devnet whose views come from digests, ``repp2p ledger`` on a node's data folder and
the explorer of another node settle from the digests they hold, each epoch final at
``max(1 + grace_epochs, digest_lag)``, and credit each node exactly the tasks it served.

Real py-libp2p hosts on loopback, real enclave processes (simulated TEE: no real security),
the real client.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import trio

from repp2p.cli import ledger as ledger_cli
from repp2p.client import Client
from repp2p.config import BOOTSTRAP_DIR
from repp2p.explorer import Explorer
from repp2p.network_params import NetworkParams
from repp2p.records import Feedback, FeedbackDigest, TaskOffer, WorkDigest
from repp2p.testing.network import dev_params, node_config, start_node

from .conftest import wait_until

pytestmark = pytest.mark.slow

TASKS = 16


def _network_file(folder: Path, params: NetworkParams) -> Path:
    """The dev network's file as these nodes run it (digest views, their epoch length)."""
    folder.mkdir(parents=True)
    text = (BOOTSTRAP_DIR / "dev.toml").read_text()
    for old, new in (
        ('# reputation_source = "digests"', 'reputation_source = "digests"'),
        ("epoch_s = 10", f"epoch_s = {params.epoch_s}"),
    ):
        assert old in text
        text = text.replace(old, new)
    (folder / "dev.toml").write_text(text)
    shutil.copy(BOOTSTRAP_DIR / "policy-dev.toml", folder / "policy-dev.toml")
    assert NetworkParams.load("dev", folder / "dev.toml") == params
    return folder / "dev.toml"


async def test_the_ledger_and_the_explorer_credit_the_serving_nodes_from_digests(tmp_path, capsys):
    params = dev_params().replace(reputation_source="digests")
    network_file = _network_file(tmp_path / "network", params)
    epoch_s = params.epoch_s
    lag = params.ledger.settle_lag(params.digest_lag)
    assert lag == params.digest_lag > 1 + params.ledger.grace_epochs
    async with trio.open_nursery() as nursery:
        boot = await start_node(nursery, node_config(tmp_path, "n0", network_params=params))
        nodes = [boot]
        for i in (1, 2):
            config = node_config(tmp_path, f"n{i}", (boot.addrs()[0],), network_params=params)
            nodes.append(await start_node(nursery, config))
        async with Client.open(
            [boot.addrs()[0]], data_dir=tmp_path / "client", network_params=params
        ) as client:
            with trio.fail_after(60):
                assert await client.wait_for_nodes("echo", 3, timeout=55) >= 3
            with trio.fail_after(120):
                for i in range(TASKS):
                    result = await client.submit("echo", b"ledger %d" % i)
                    assert result.output == b"ledger %d" % i
            # what each node served, by its offer's epoch, from the client's own records:
            # its ok verdicts (k = 1: one receipt per task)
            offer_epoch = {
                o.record.task_id: o.record.epoch
                for o in client.store.query(type=TaskOffer.TYPE, signer=client.peer_id)
            }
            served: Counter[tuple[int, str]] = Counter(
                (offer_epoch[f.record.task_id], f.record.node)
                for f in client.store.query(type=Feedback.TYPE, signer=client.peer_id)
                if f.record.outcome == "ok"
            )
            assert sum(served.values()) == TASKS
            last = max(e for e, _n in served)

            # every task epoch is final once `lag` epochs have passed; the digests of its
            # parties (the client's feedback, the serving nodes' work) reach both peers
            # read below by then (waited for: a loaded machine may gossip them late)
            def holds_every_digest(node) -> bool:
                held = {
                    (d.signer, e)
                    for t in (WorkDigest.TYPE, FeedbackDigest.TYPE)
                    for d in node.store.query(type=t)
                    for e in range(d.record.epoch, d.record.last_epoch + 1)
                }
                return all({(n, e), (client.peer_id, e)} <= held for e, n in served)

            await wait_until(lambda: all(holds_every_digest(n) for n in nodes[:2]), 90)
            with trio.fail_after(lag * epoch_s + 30):
                await trio.sleep(max(0.0, (last + lag) * epoch_s - client.clock.now() + 1.0))
            current = int(client.clock.now()) // epoch_s
            # the explorer of a node that holds none of the others' task records
            explorer = Explorer(nodes[1].keeper, nodes[1].clock, peer_id=nodes[1].peer_id)
            with trio.fail_after(60):
                await explorer.refresh_async()
            snap = explorer.snapshot()
        # `repp2p ledger --json` on the bootstrap node's data folder, as of the same epoch
        parser = argparse.ArgumentParser(prog="repp2p")
        ledger_cli.add_parser(parser.add_subparsers(dest="command"))
        args = parser.parse_args(
            [
                "ledger",
                "--data-dir",
                str(boot.config.data_dir),
                "--epoch",
                str(current),
                "--network",
                "dev",
                "--network-file",
                str(network_file),
                "--json",
            ]
        )
        assert args.func(args) == 0
        out = json.loads(capsys.readouterr().out)
        for node in nodes:
            node.stop()

    assert out["final_through_epoch"] == current - lag >= last
    final = {s["epoch"]: s for s in out["settlements"] if s["final"]}
    for epoch in range(min(e for e, _n in served), last + 1):
        expected = {n: c for (e, n), c in served.items() if e == epoch}
        # each node's work is the tasks it served in the epoch, no more, no less, and
        # whoever worked is paid
        assert final[epoch]["work"] == expected, epoch
        assert set(final[epoch]["payouts"]) == set(expected), epoch
    balances = {p: b["final"] for p, b in out["balances"].items()}
    servers = {n for _e, n in served}
    assert servers and all(balances[n] > 0 for n in servers)
    assert set(balances) <= {n.peer_id for n in nodes}  # clients earn nothing
    # the explorer of another node settles the same epochs from its own copies
    assert snap["rep_status"] == "ready"
    assert snap["rep"]["final_through_epoch"] >= last
    rows = {row["peer_id"]: row["rep"] for row in snap["nodes"]}
    assert all(rows[n]["final"] > 0 for n in servers)
