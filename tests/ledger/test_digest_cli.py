"""``repp2p ledger`` on a digest network: it settles from the digests and the digest views a
peer holds there (no per-task records of others' tasks), and on an honest history pays
what the records path pays from the per-task records."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pytest

from repp2p.attestation import load_policy
from repp2p.cli import ledger as ledger_cli
from repp2p.digest_ledger import (
    LEDGER_TYPES,
    HeldProofs,
    HeldRecords,
    digest_report,
    max_digest_age,
)
from repp2p.digests import build_feedback, build_work, conflict_proof
from repp2p.digests.disputes import dispute_proof
from repp2p.explorer import Explorer
from repp2p.network_params import BOOTSTRAP_DIR, NetworkParams
from repp2p.records import Feedback, receipt_message, sign
from repp2p.store import SqliteRecordStore
from repp2p.testing import factories
from repp2p.viewer import ViewKeeper
from tests.explorer.test_snapshot import FixedClock

EPOCH_S = 10
BASE = factories.NOW // EPOCH_S  # the first epoch with tasks
EPOCHS = 6
NOW = (BASE + EPOCHS + 12) * EPOCH_S
FAR = factories.far_future(NOW)
NODES = [factories.identity(f"ledger-node-{i}") for i in range(3)]
CLIENTS = [factories.identity(f"ledger-client-{i}") for i in range(3)]
DIGESTS = NetworkParams.load("dev").replace(reputation_source="digests")


def _node_records(node) -> list:
    """An ad, a simulated attestation that verifies under the dev policy, and enclave-signed
    heartbeats of every epoch up to the latest report (the node stays live)."""
    ad = dataclasses.replace(factories.sample_records(now=NOW)[0], expires=FAR)
    epoch = BASE - 2
    attestation = factories.simulated_attestation(
        node, ad, epoch, at=epoch * EPOCH_S + 1, expires=FAR
    )
    beats = [
        factories.live_heartbeat(node, e, seq=e, expires=FAR)
        for e in range(BASE - 4, BASE + EPOCHS + 14)
    ]
    return [sign(ad, node), sign(attestation, node), *beats]


def _history(per_node, nodes=NODES, more=None) -> tuple[list, list]:
    """``(task records, signed digests)`` of an honest history: in each epoch ``e`` node
    ``n`` serves ``per_node(e, n)`` tasks of the clients in turn, all delivered and
    accepted; every party publishes its digests (of ``more(e)`` records too, if given)."""
    tasks, digests = [], []
    for e in range(BASE, BASE + EPOCHS):
        epoch_records = list(more(e)) if more else []
        for n, node in enumerate(nodes):
            for i in range(per_node(e - BASE, n)):
                client = CLIENTS[(i + n + e) % len(CLIENTS)]
                label = f"{e}/{n}/{i}"
                epoch_records += factories.task_records(client, node, e, label, expires=FAR).all()
        tasks += epoch_records
        for who, build in [(n, build_work) for n in nodes] + [(c, build_feedback) for c in CLIENTS]:
            for part in build(who.peer_id, epoch_records, e, expires=FAR):
                digests.append(sign(part.digest, who))
    return tasks, digests


def _data_dir(folder: Path, records: list) -> Path:
    folder.mkdir()
    store = SqliteRecordStore(folder / "records.db")
    outcomes = store.put_many(records, now=NOW)
    assert all(o.value == "new" for o in outcomes), outcomes
    store.close()
    return folder


def _network_file(folder: Path, source: str, extra: str = "") -> Path:
    """The dev network's file with ``reputation_source``, next to its policy."""
    folder.mkdir(exist_ok=True)
    (folder / "policy-dev.toml").write_bytes((BOOTSTRAP_DIR / "policy-dev.toml").read_bytes())
    path = folder / f"{source}.toml"
    path.write_text(
        f'epoch_s = {EPOCH_S}\npolicy = "policy-dev.toml"\nreputation_source = "{source}"\n' + extra
    )
    return path


def _report(data_dir: Path, network: Path, epoch: int):
    args = argparse.Namespace(
        data_dir=data_dir,
        epoch=epoch,
        network="dev",
        network_file=network,
        policy=None,
        epoch_s=None,
        grace_epochs=None,
    )
    report, epoch_s = ledger_cli.compute_report(args)
    assert epoch_s == EPOCH_S
    return report


def _both(tmp_path, per_node, ledger_toml: str = ""):
    """``(records report, digests report)``: the records path on
    a store holding every task record, the digest path on one holding only node records
    and digests (what a digest network's peer holds), both final through the same epoch."""
    tasks, digests = _history(per_node)
    nodes = [r for n in NODES for r in _node_records(n)]
    by_records_dir = _data_dir(tmp_path / "records", nodes + tasks)
    by_digests_dir = _data_dir(tmp_path / "digests", nodes + digests)
    extra = f"[ledger]\n{ledger_toml}" if ledger_toml else ""
    records_net = _network_file(tmp_path / "net", "records", extra)
    digests_net = _network_file(tmp_path / "net", "digests", extra)
    lp = NetworkParams.load("dev", digests_net).ledger
    lag = lp.settle_lag(DIGESTS.digest_lag)
    assert lag == DIGESTS.digest_lag == 6 > 1 + lp.grace_epochs  # the rows come later
    last = BASE + EPOCHS - 1
    by_records = _report(by_records_dir, records_net, last + 1 + lp.grace_epochs)
    by_digests = _report(by_digests_dir, digests_net, last + lag)
    assert by_records.final.epoch == by_digests.final.epoch == BASE + EPOCHS - 1
    return by_records, by_digests


def _work(report) -> list:
    return [(s.epoch, s.work) for s in report.settlements if s.final]


def test_on_an_honest_history_the_digest_report_pays_what_the_records_report_pays(tmp_path):
    # every node serves as many tasks as the others each epoch: the same quality on both
    # paths, so the same work gives the same payouts to the micro-REP
    by_records, by_digests = _both(tmp_path, lambda e, n: 2 + e % 3)
    assert _work(by_digests) == _work(by_records)
    assert all(len(w) == len(NODES) for _e, w in _work(by_records))  # everybody worked
    final = [s for s in by_digests.settlements if s.final]
    assert [s.digest for s in final] == [
        s.digest for s in by_records.settlements if s.epoch <= by_records.final.epoch
    ]
    assert by_digests.final.balances == by_records.final.balances
    assert by_digests.final.digest == by_records.final.digest
    assert set(by_digests.final.balances) == {n.peer_id for n in NODES}
    assert by_digests.final.supply > 0


def test_uneven_work_is_paid_alike_when_payouts_weigh_work_alone(tmp_path):
    # node 0 serves three times what node 2 does; with quality_exponent = 0 a payout is
    # the node's share of the backed work, which both paths count the same
    by_records, by_digests = _both(
        tmp_path, lambda e, n: (3 - n) * (1 + e % 2), "quality_exponent = 0\n"
    )
    assert _work(by_digests) == _work(by_records)
    assert by_digests.final.balances == by_records.final.balances
    balances = by_digests.final.balances
    # three times the work, three times the REP (up to each epoch's floor)
    assert abs(balances[NODES[0].peer_id] - 3 * balances[NODES[2].peer_id]) <= 3 * EPOCHS


def test_a_digest_peer_without_the_task_records_is_paid_by_the_digest_path_only(tmp_path):
    # The digest store holds no per-task record: replaying records (the records path) on
    # it pays nobody, which is what the tool did on digest networks before
    _by_records, by_digests = _both(tmp_path, lambda e, n: 2)
    records_net = tmp_path / "net" / "records.toml"
    blind = _report(tmp_path / "digests", records_net, by_digests.current_epoch)
    assert blind.final.supply == 0 and by_digests.final.supply > 0


def test_the_json_report_on_a_digest_network(tmp_path, capsys):
    _by_records, by_digests = _both(tmp_path, lambda e, n: 1 + n)
    parser = argparse.ArgumentParser(prog="repp2p")
    ledger_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "ledger",
            "--data-dir",
            str(tmp_path / "digests"),
            "--epoch",
            str(by_digests.current_epoch),
            "--network",
            "dev",
            "--network-file",
            str(tmp_path / "net" / "digests.toml"),
            "--json",
        ]
    )
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["final_through_epoch"] == BASE + EPOCHS - 1
    paid = {p: b["final"] for p, b in out["balances"].items()}
    assert paid == dict(by_digests.final.balances)
    # node 2 served three times node 0's tasks, at the same quality
    assert paid[NODES[2].peer_id] > paid[NODES[1].peer_id] > paid[NODES[0].peer_id] > 0
    # the epochs whose rows are not folded yet are provisional, settled on the current view
    pending = [s for s in out["settlements"] if not s["final"]]
    assert [s["epoch"] for s in pending] == list(range(BASE + EPOCHS, by_digests.current_epoch))


@pytest.mark.parametrize("grace", [0, 9])
def test_an_epoch_is_final_at_the_later_of_its_grace_and_the_digest_lag(tmp_path, grace):
    _tasks, digests = _history(lambda e, n: 1)
    nodes = [r for n in NODES for r in _node_records(n)]
    data = _data_dir(tmp_path / "digests", nodes + digests)
    net = _network_file(tmp_path / "net", "digests", f"[ledger]\ngrace_epochs = {grace}\n")
    lag = max(1 + grace, DIGESTS.digest_lag)
    last = BASE + EPOCHS - 1
    assert _report(data, net, last + lag).final.epoch == last
    assert _report(data, net, last + lag - 1).final.epoch == last - 1


def test_the_explorer_shows_the_digest_ledger_of_a_digest_network(tmp_path):
    _by_records, by_digests = _both(tmp_path, lambda e, n: 1 + n)
    epoch = by_digests.current_epoch
    store = SqliteRecordStore(tmp_path / "digests" / "records.db")
    params = NetworkParams.load("dev", tmp_path / "net" / "digests.toml")
    assert params.reputation_source == "digests"
    keeper = ViewKeeper(store, load_policy(BOOTSTRAP_DIR / "policy-dev.toml"), params)
    explorer = Explorer(keeper, FixedClock(epoch * EPOCH_S + 3), peer_id=NODES[0].peer_id)
    explorer.refresh()
    snap = explorer.snapshot()
    assert (snap["rep_status"], snap["rep_epoch"]) == ("ready", epoch)
    assert snap["rep"]["final_through_epoch"] == BASE + EPOCHS - 1
    rows = {row["peer_id"]: row["rep"] for row in snap["nodes"]}
    assert set(rows) == {n.peer_id for n in NODES}
    # the view's verdicts (judged at its boundary) and the CLI's (judged at --epoch) agree
    # here, so the explorer shows what `repp2p ledger` prints
    assert {p: r["final"] for p, r in rows.items()} == {
        n.peer_id: by_digests.final.balance(n.peer_id) for n in NODES
    }
    assert snap["rep"]["final_supply"] == by_digests.final.supply > 0
    assert rows[NODES[2].peer_id]["final"] > rows[NODES[0].peer_id]["final"] > 0
    store.close()


def test_held_records_answer_the_digest_views_reads_as_the_store_does(tmp_path):
    _tasks, digests = _history(lambda e, n: 2)
    nodes = [r for n in NODES for r in _node_records(n)]
    store = SqliteRecordStore(tmp_path / "records.db")
    store.put_many(nodes + digests, now=NOW)
    # an equivocating heartbeat: its evidence is copied too
    twin = factories.live_heartbeat(NODES[1], BASE + 2, seq=BASE + 2, load=3, expires=FAR)
    store.put(twin, now=NOW)
    held = HeldRecords(store)
    for t in LEDGER_TYPES:
        assert held.query(type=t) == store.query(type=t)
        for e in (BASE, BASE + 3, BASE + 40):
            assert held.query(type=t, epoch=e) == store.query(type=t, epoch=e)
    signer = NODES[2].peer_id
    assert held.query(type="Heartbeat", signer=signer, limit=2) == store.query(
        type="Heartbeat", signer=signer, limit=2
    )
    assert held.query() == store.query()
    assert held.equivocations() == store.equivocations() != []
    store.close()


def test_the_cli_counts_the_offence_proofs_its_node_keeps(tmp_path):
    # node 0 signed two different work digests of one epoch: the conflict proof the node
    # keeps in its data folder makes it an offender in the digest view of E + horizon + 1,
    # and the settlement on that view burns its balance (offence_slash_pct, 100%)
    _both(tmp_path, lambda e, n: 2)
    cheat, epoch = NODES[0], BASE + 1
    tasks = [factories.task_records(c, cheat, epoch, f"x{i}") for i, c in enumerate(CLIENTS)]
    records = [r for t in tasks for r in t.all()]
    (full,) = build_work(cheat.peer_id, records, epoch, expires=FAR)
    (fewer,) = build_work(cheat.peer_id, records[:4], epoch, expires=FAR)
    proof = conflict_proof(sign(full.digest, cheat), sign(fewer.digest, cheat)).encode()
    horizon = DIGESTS.digests.audit_horizon_epochs
    charged_at = epoch + horizon + 1  # the first view that counts it
    data, net = tmp_path / "digests", tmp_path / "net" / "digests.toml"
    before = _report(data, net, charged_at + 2)
    assert before.final.balance(cheat.peer_id) > 0
    (data / "offences").mkdir()
    (data / "offences" / "proof.cbor").write_bytes(proof)
    (data / "offences" / "junk.cbor").write_bytes(b"not a proof")  # skipped, and kept
    after = _report(data, net, charged_at + 2)
    slashes = [x for s in after.settlements for x in s.slashes]
    assert [(p, why) for p, why, _a in slashes] == [(cheat.peer_id, "offence")]
    assert slashes[0][2] == before.final.balance(cheat.peer_id)
    (settled,) = [s for s in after.settlements if s.slashes]
    assert settled.epoch + DIGESTS.digest_lag == charged_at  # slashed on that view
    assert after.final.balance(cheat.peer_id) == 0
    for honest in NODES[1:]:
        assert after.final.balance(honest.peer_id) == before.final.balance(honest.peer_id)
    assert (data / "offences" / "junk.cbor").exists()
    # without the node's books (the explorer passes its own), nothing is counted
    params = NetworkParams.load("dev", net)
    store = SqliteRecordStore(data / "records.db")
    policy = load_policy(BOOTSTRAP_DIR / "policy-dev.toml")
    now = (charged_at + 2) * EPOCH_S
    assert digest_report(store, policy, params, now=now).final.digest == before.final.digest
    proofs = HeldProofs.load(data, now)
    held = digest_report(store, policy, params, now=now, proofs=proofs)
    assert held.final.digest == after.final.digest
    store.close()


def test_a_digest_older_than_any_peer_may_hold_does_not_stretch_the_replay(tmp_path):
    # a store (a hostile file, say) holding a digest of epoch 3: the replay starts no
    # earlier than a digest signed by the rules can still be held (at 1-day epochs: its
    # seal, then the 30-day lifetime cap less a day; node.digests.digest_expires), not a
    # view per epoch since epoch 3
    params = DIGESTS.replace(epoch_s=86_400)  # 30 days of lifetime are 30 epochs here
    store = SqliteRecordStore(tmp_path / "records.db")
    store.put(sign(factories.empty_work_digest(3, expires=FAR), NODES[0]), now=NOW)
    policy = load_policy(BOOTSTRAP_DIR / "policy-dev.toml")
    report = digest_report(store, policy, params, now=NOW)
    current = NOW // params.epoch_s
    first = current - max_digest_age(params)
    assert first > 3 and max_digest_age(params) == params.digests.seal_lag_epochs + 29
    assert [s.epoch for s in report.settlements] == list(range(first, current))
    assert report.pending.supply == 0  # nobody worked
    store.close()


def _run(offer, node, output: str) -> tuple:
    """``node``'s claim and enclave-signed receipt (saying ``output``) for ``offer``."""
    task = factories.task_records(CLIENTS[0], node, offer.record.epoch, "unused", expires=FAR)
    o = offer.record
    claim = sign(
        dataclasses.replace(task.claim.record, task_id=o.task_id, offer_id=offer.record_id), node
    )
    key = factories.enclave_key(node.peer_id)
    unsigned = dataclasses.replace(
        task.receipt.record,
        task_id=o.task_id,
        offer_id=offer.record_id,
        input_digest=o.input_digest,
        output_digest=factories.digest(output),
        enclave_sig=bytes(64),
    )
    signed = dataclasses.replace(
        unsigned, enclave_sig=key.sign(receipt_message(unsigned)).signature
    )
    return claim, sign(signed, node)


def test_the_cli_slashes_a_lost_dispute_whose_proof_its_node_keeps(tmp_path):
    # a cheater answers one task of epoch E wrong against three honest replicas; the
    # client's dispute proof (kept by the node in disputes/) lets every digest view judge
    # the dispute: the cheater's receipt lost it, and the settlement of E slashes it
    bad = factories.identity("ledger-cheater")
    nodes = [*NODES, bad]
    epoch = BASE + 3
    offer = factories.task_records(CLIENTS[0], bad, epoch, "disputed", claimed=False).offer
    runs = [_run(offer, n, "right") for n in NODES] + [_run(offer, bad, "wrong")]
    verdicts = [
        sign(
            Feedback(
                task_id=offer.record.task_id,
                node=c.signer,
                outcome="wrong" if c.signer == bad.peer_id else "ok",
                latency_ms=120,
                rating=0 if c.signer == bad.peer_id else 90,
                seq=1,
                expires=FAR,
            ),
            CLIENTS[0],
        )
        for c, _r in runs
    ]
    disputed = [offer, *(r for run in runs for r in run), *verdicts]
    _tasks, digests = _history(lambda e, n: 2, nodes, lambda e: disputed if e == epoch else [])
    held = [r for n in nodes for r in _node_records(n)]
    data = _data_dir(tmp_path / "digests", held + digests)
    net = _network_file(tmp_path / "net", "digests")
    current = epoch + DIGESTS.digest_lag + 2
    before = _report(data, net, current)
    assert all(not s.slashes for s in before.settlements)
    assert before.final.balance(bad.peer_id) > 0  # it earned for its other tasks
    (data / "disputes").mkdir()
    proof = dispute_proof(offer, runs).encode()
    (data / "disputes" / f"{offer.record_id.hex()}.cbor").write_bytes(proof)
    after = _report(data, net, current)
    slashed = [(s.epoch, p, why) for s in after.settlements for p, why, _a in s.slashes]
    assert slashed == [(epoch, bad.peer_id, "dispute")]
    assert after.final.balance(bad.peer_id) < before.final.balance(bad.peer_id)
    # the lost receipt is no work (the client's wrong verdict already said so), and the
    # honest replicas keep what they had
    for honest in NODES:
        assert after.final.balance(honest.peer_id) >= before.final.balance(honest.peer_id)
