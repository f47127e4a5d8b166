"""The simulator's digest flow (issue 14): digest sizes from the real encoder, per-peer costs
in summary.json and metrics.csv, determinism, scaling with N, and audit detection."""

from __future__ import annotations

import importlib.util
import math
import statistics

import numpy as np
import pytest

from repp2p.digests import build_feedback, build_work, leaf_proof
from repp2p.errors import ConfigError
from repp2p.records import FeedbackDigest, FeedbackRow, WorkDigest, WorkRow, encode, sign
from repp2p.sim import Scenario, simulate, write_outputs
from repp2p.sim.digests import (
    LIVE_EPOCH,
    LIVE_EXPIRES,
    CostModel,
    envelope_sizes,
    row_bytes,
)
from repp2p.testing import factories


def _scenario(nodes: int = 20, *, epochs: int = 4, **extra) -> Scenario:
    d = {
        "name": "digests",
        "seed": 5,
        "epochs": epochs,
        "epoch_s": 60,
        "nodes": nodes,
        "tasks_per_epoch": 10 * nodes,
        "ticks_per_epoch": 5,
        "clients": {"count": 2 * nodes},
        "digests": {"enabled": True},
    }
    d.update(extra)
    return Scenario.from_dict(d)


@pytest.fixture(scope="module")
def base():
    """The default 20-node, 4-epoch run several tests read (simulated once)."""
    return simulate(_scenario())


@pytest.fixture(scope="module")
def base8():
    """The 8-epoch run the batching and heartbeat tests compare against."""
    return simulate(_scenario(epochs=8))


def _digest(kind: str, rows: tuple, leaves: int, span: int = 1):
    """A real WorkDigest or FeedbackDigest part of the live epoch and expiry."""
    cls = WorkDigest if kind == "work" else FeedbackDigest
    return cls(
        epoch=LIVE_EPOCH,
        part=0,
        parts=1,
        rows=rows,
        leaf_count=leaves,
        merkle_root=factories.digest("root") if leaves else factories.digest(""),
        seq=0,
        expires=LIVE_EXPIRES,
        span=span,
    )


def _model_size(kind: str, counts, later, rows: int, leaves: int, span: int = 1) -> int:
    """The cost model's size of one part: its rows' counts (rows x fields), each row's
    extra bytes (``offset_extra`` for a batch's later epochs), rows, leaves, span."""
    rb = int((row_bytes(kind, counts) + later).sum()) if rows else 0
    one = np.array([0]), np.array([1])
    size = envelope_sizes(kind, np.array([rb]), np.array([rows]), np.array([leaves]), *one, span)
    return int(size[0])


@pytest.mark.parametrize("kind", ["work", "feedback"])
def test_digest_sizes_equal_the_real_encoding(kind):
    rng = np.random.default_rng(3)
    key = factories.identity("publisher")
    peers = sorted(factories.identity(f"peer-{i}").peer_id for i in range(300))
    for rows in (0, 1, 5, 23, 24, 200, 256):
        chosen = sorted(rng.choice(len(peers), rows, replace=False))
        big = rng.integers(0, 2, (rows, 5)).astype(bool)
        counts = np.where(big, rng.integers(0, 20_000, (rows, 5)), rng.integers(0, 24, (rows, 5)))
        counts[:, 0] += 1  # no empty rows
        if kind == "work":
            c = counts[:, :3]
            rows_ = tuple(
                WorkRow(peers[i], int(r.sum()), int(r[0]), int(r[1]), int(r[2]))
                for i, r in zip(chosen, c, strict=True)
            )
            model_counts = np.column_stack((c.sum(1), c))
            leaves = int(c.sum())
        else:
            c = counts[:, :4]
            lat = rng.integers(0, 2**32, rows)
            rows_ = tuple(
                FeedbackRow(peers[i], *map(int, r), latency_sum_ms=int(t))
                for i, r, t in zip(chosen, c, lat, strict=True)
            )
            model_counts = np.column_stack((c, lat))
            leaves = int(c.sum())
        if not leaves:
            if kind == "feedback":
                continue  # a client with no feedback publishes nothing
            digest = factories.empty_work_digest(LIVE_EPOCH, expires=LIVE_EXPIRES)
        else:
            digest = _digest(kind, rows_, leaves)
        model = _model_size(kind, model_counts, 0, rows, leaves)
        assert model == len(encode(digest, key)), (kind, rows)


def test_cost_model_record_and_answer_sizes_match_the_real_code():
    m = CostModel()
    client, node = factories.identity("client"), factories.identity("node")
    tr = factories.task_records(client, node, LIVE_EPOCH, "one", expires=factories.far_future())
    for size, signed in (
        (m.offer_bytes, tr.offer),
        (m.claim_bytes, tr.claim),
        (m.receipt_bytes, tr.receipt),
        (m.feedback_bytes, tr.feedback),
    ):
        assert abs(size - len(signed.data)) <= 0.03 * len(signed.data), signed.type
    # audit answers: base + per level * ceil(log2 leaves), within 10% on real answers
    clients = [factories.identity(f"c{i}") for i in range(4)]
    records = []
    for i, c in enumerate(clients):
        for t in range(8):
            records += factories.task_records(c, node, 7, f"{i}/{t}").all()
    for part in build_work(
        node.peer_id, records, 7, expires=factories.far_future()
    ) + build_feedback(clients[0].peer_id, records, 7, expires=factories.far_future()):
        signer = node if isinstance(part.digest, WorkDigest) else clients[0]
        digest = sign(part.digest, signer)
        n = digest.record.leaf_count
        real = statistics.fmean(
            len(leaf_proof(part, digest.record_id, i).encode()) for i in range(n)
        )
        work = isinstance(part.digest, WorkDigest)
        base = m.audit_answer_work_bytes if work else m.audit_answer_feedback_bytes
        model = base + m.audit_answer_level_bytes * math.ceil(math.log2(n))
        assert abs(model - real) <= 0.10 * real, (digest.type, n, model, real)


def test_figures_are_in_summary_metrics_and_plots(tmp_path, base):
    result = base
    d = result.summary["digests"]
    for who in ("node", "client"):
        for key in (
            "gossip_bytes_s",
            "sent_bytes_s",
            "recv_bytes_s",
            "records_verified",
            "digest_verify_share",
            "verify_share",
        ):
            st = d["per_peer"][who][key]
            assert 0 < st["mean"] <= st["p99"] <= st["max"], (who, key)
    assert d["per_epoch"]["work_digests"] == 20  # every online node, empty or not
    assert 0 < d["per_epoch"]["feedback_digests"] <= 40
    assert d["targets"]["gossip_met"] and d["targets"]["verify_met"]
    out = write_outputs(result, tmp_path)
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    for col in (
        "work_digests",
        "node_gossip_bytes_s_p99",
        "node_digest_verify_share_p99",
        "node_records_verified_mean",
        "client_sent_bytes_s_p99",
        "audit_challenges",
    ):
        assert col in header
    table = (tmp_path / "summary.md").read_text()
    assert "per-peer gossip" in table and "digest verification" in table
    if importlib.util.find_spec("matplotlib") is not None:  # plots stay optional
        names = {p.rsplit("/", 1)[-1] for p in out["plots"]}
        assert {"gossip.png", "verify.png", "peer_bytes.png", "records_verified.png"} <= names


def test_following_digests_is_deterministic_and_does_not_change_the_run(base):
    a, b = base, simulate(_scenario())
    assert a.summary["digests"] == b.summary["digests"]
    assert repr(a.rows) == repr(b.rows)  # repr: NaN columns compare equal
    off = simulate(_scenario(digests={"enabled": False}))
    assert off.trace_hash == a.trace_hash
    assert "digests" not in off.summary and "work_digests" not in off.rows[0]
    other = simulate(_scenario(), seed=6)
    assert other.summary["digests"]["per_peer"] != a.summary["digests"]["per_peer"]


def test_bytes_are_conserved_between_the_parties():
    from repp2p.sim.simulation import Simulation

    sim = Simulation(_scenario(epochs=2))
    seen = []
    flow = sim.flow
    real_epoch = flow.epoch

    def spy(*args, **kwargs):
        costs, caught = real_epoch(*args, **kwargs)
        seen.append(costs)
        return costs, caught

    flow.epoch = spy
    sim.run()
    assert seen
    for costs in seen:
        for channel in ("tasks", "audits"):
            assert costs.sent[channel].sum() == pytest.approx(costs.recv[channel].sum())
            assert costs.sent[channel].sum() > 0


def test_per_peer_gossip_and_verification_grow_with_the_network(base):
    small, big = base.summary["digests"], simulate(_scenario(40)).summary["digests"]
    for key in ("gossip_bytes_s", "digest_verify_share"):
        ratio = big["per_peer"]["node"][key]["mean"] / small["per_peer"]["node"][key]["mean"]
        assert 1.6 < ratio < 2.4, (key, ratio)
    # the per-task part of a node's traffic follows its own tasks, not N
    assert big["per_epoch"]["work_digests"] == 2 * small["per_epoch"]["work_digests"]


def test_audits_catch_misreported_digests_at_the_cores_rate_and_offenders_lose_work():
    sc = _scenario(
        40,
        epochs=8,
        adversary=[
            {"behaviour": "wrong_result", "share": 0.25, "wrong_prob": 0.0, "digest_fault": 0.05}
        ],
    )
    result = simulate(sc)
    a = result.summary["digests"]["audits"]
    n = a["faulty_digests"]
    assert n >= 10
    p = a["expected_detection"]
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(a["observed_detection"] - p) <= 4 * sigma + 1e-9
    assert a["cheaters_caught"] >= 1
    # a caught node is an offender from its audit boundary: no more tasks after that
    rows = result.rows
    assert rows[-1]["tasks_wrong_result"] < rows[1]["tasks_wrong_result"]


def test_digest_fault_needs_the_digest_flow():
    with pytest.raises(ConfigError):
        Scenario.from_dict(
            {"adversary": [{"behaviour": "lazy", "share": 0.1, "digest_fault": 0.1}]}
        )
    with pytest.raises(ConfigError):
        Scenario.from_dict({"digests": {"enabled": True, "mesh_degree": 0}})
    with pytest.raises(ConfigError):
        Scenario.from_dict({"digests": {"bogus": 1}})
    with pytest.raises(ConfigError):
        Scenario.from_dict({"digest_params": {"audit_samples": 0}})


def test_feedback_batch_sizes_equal_the_real_encoding():
    from repp2p.sim.digests import digest_sizes

    key = factories.identity("publisher")
    peers = sorted(factories.identity(f"peer-{i}").peer_id for i in range(40))
    rng = np.random.default_rng(7)
    for span in (2, 4, 10, 16):
        rows = sorted(
            (int(rng.integers(0, span)), p) for p in peers if rng.random() < 0.5
        )  # (offset, node): the batch's row order
        counts = [tuple(int(x) for x in rng.integers(0, 30, 4)) for _ in rows]
        counts = [(c[0] + 1, *c[1:]) for c in counts]
        lat = [int(x) for x in rng.integers(0, 100_000, len(rows))]
        rows_ = tuple(
            FeedbackRow(p, *c, latency_sum_ms=t, offset=o)
            for (o, p), c, t in zip(rows, counts, lat, strict=True)
        )
        leaves = sum(sum(c) for c in counts)
        digest = _digest("feedback", rows_, leaves, span)
        model_counts = np.column_stack((np.array(counts), np.array(lat)))
        later = np.array([o > 0 for o, _ in rows]) * digest_sizes("feedback").offset_extra
        size = _model_size("feedback", model_counts, later, len(rows), leaves, span)
        assert size == len(encode(digest, key))


def test_batched_feedback_digests_cut_messages_not_leaves(base8):
    one = base8.summary["digests"]
    four = simulate(_scenario(epochs=8, digest_params={"feedback_max_epochs": 4}))
    batched = four.summary["digests"]
    assert batched["per_epoch"]["feedback_digests"] < 0.6 * one["per_epoch"]["feedback_digests"]
    assert batched["rows_per_feedback_digest"] > one["rows_per_feedback_digest"]
    assert batched["gossip_bytes_s"] < one["gossip_bytes_s"]
    # the same feedback, published later: each in exactly one digest (steady state)
    fb = batched["per_epoch"]["feedback_leaves"]
    assert fb == pytest.approx(one["per_epoch"]["feedback_leaves"], rel=0.15)


def test_one_epoch_by_hand_auditors_are_never_the_publisher():
    from repp2p.digests.params import DigestParams
    from repp2p.sim.digests import DigestFlow

    model = CostModel(enabled=True, clients_follow_gossip=False)
    m = model
    for seed in range(20):
        flow = DigestFlow(model, DigestParams(), 1, 60, 1, np.random.default_rng(seed))
        a = np.array
        costs, caught = flow.epoch(
            3,
            2,
            a([0, 1]),  # both nodes online
            a([0, 0, 0, 0]),  # four offers of client 0
            100,  # offer ids 100..103
            (a([0, 0, 1, 1]), a([100, 101, 102, 103])),
            (a([0, 0, 1, 1]), a([100, 101, 102, 103])),
            (
                a([0, 0, 0, 0]),
                a([0, 0, 1, 1]),
                a([100, 101, 102, 103]),
                a([0, 0, 0, 2]),
                a([100, 120, 90, 30_000]),
            ),
            np.zeros(2),
        )
        assert len(caught) == 0
        cnt = costs.counts
        assert (cnt["work_digests"], cnt["feedback_digests"]) == (2, 1)
        assert cnt["audit_challenges"] == 2 + 2 + 4  # min(8, leaves) per digest
        # each node audits the other's digest (never its own); the client's goes to one
        audits = costs.cpu["audits"]
        assert audits[0] == 0  # the client audits nothing
        assert sorted(np.round(audits[1:] / m.audit_us)) == [2, 6]
        assert costs.recv["audits"][0] == 4 * m.audit_request_bytes
        # a client that does not follow gossip only floods its own digest
        assert costs.recv["gossip"][0] == 0 and costs.sent["gossip"][0] > 0
        # records: digests and heartbeats but one's own, per-task records received, audits
        assert costs.records[0] == 4 + 4  # claims and receipts
        assert costs.records[1:].sum() == (3 + 4 + 6) * 2 + 4 * 2


def test_cli_prints_the_per_peer_figures_and_sweeps_tabulate_them(tmp_path, capsys):
    import argparse

    from repp2p.cli import sim as sim_cli

    path = tmp_path / "d.toml"
    path.write_text(
        "nodes = 10\nepochs = 2\ntasks_per_epoch = 50\n[clients]\ncount = 10\n"
        "[digests]\nenabled = true\n"
    )
    parser = argparse.ArgumentParser()
    sim_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["sim", "run", str(path), "--out", str(tmp_path / "o"), "--quiet"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "per-peer gossip (node p99)" in out and "bytes/s (target <= 1,000,000: met)" in out
    assert "digest verification (node p99)" in out and "of one core (target <= 10%: met)" in out
    argv = ["sim", "sweep", str(path), "--out", str(tmp_path / "s"), "--quiet", "--no-plots"]
    args = parser.parse_args([*argv, "--grid", "digests.mesh_degree=2,6"])
    assert args.func(args) == 0
    header, low, high = (tmp_path / "s" / "sweep.csv").read_text().splitlines()
    col = header.split(",").index("gossip_bytes_s")
    assert float(low.split(",")[col]) < float(high.split(",")[col])


def test_gossip_overhead_default_is_py_libp2ps_framing():
    """The per-message overhead and IHAVE entry size are what bench/verify_cost.py measures
    with py-libp2p's own protobufs (a py-libp2p upgrade that changes them fails here)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "verify_cost.py"
    spec = importlib.util.spec_from_file_location("verify_cost_bench", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    measured = bench.gossip_overhead()
    m = CostModel()
    assert measured["per_message"] == m.gossip_overhead_bytes
    assert measured["ihave_id"] == m.ihave_id_bytes


def test_work_batch_sizes_equal_the_real_encoding():
    from repp2p.sim.digests import digest_sizes

    key = factories.identity("work-publisher")
    peers = sorted(factories.identity(f"client-{i}").peer_id for i in range(40))
    rng = np.random.default_rng(11)
    for span in (1, 2, 4, 10, 16):
        rows = sorted((int(rng.integers(0, span)), p) for p in peers if rng.random() < 0.5)
        counts = []
        for _ in rows:
            rec, tmo, fail = (int(x) for x in rng.integers(0, 40, 3))
            counts.append((rec + tmo + fail + 1, rec + 1, tmo, fail))
        rows_ = tuple(WorkRow(p, *c, offset=o) for (o, p), c in zip(rows, counts, strict=True))
        leaves = sum(c[0] for c in counts)
        digest = _digest("work", rows_, leaves, span)
        later = np.array([o > 0 for o, _ in rows]) * digest_sizes("work").offset_extra
        size = _model_size("work", np.array(counts), later, len(rows), leaves, span)
        assert size == len(encode(digest, key))


def test_batched_work_digests_cut_messages_not_leaves(base8):
    one = base8.summary["digests"]
    four = simulate(_scenario(epochs=8, digest_params={"work_max_epochs": 4}))
    batched = four.summary["digests"]
    assert batched["per_epoch"]["work_digests"] < 0.4 * one["per_epoch"]["work_digests"]
    assert batched["rows_per_work_digest"] > one["rows_per_work_digest"]
    # fewer messages (envelopes, overheads, IHAVE ids): each peer moves less on average;
    # (a node floods its own batch in its window's last epoch, so the per-epoch p99 of
    # this 20-node network, its publishers, need not fall)
    node, node_one = batched["per_peer"]["node"], one["per_peer"]["node"]
    assert node["gossip_bytes_s"]["mean"] < 0.95 * node_one["gossip_bytes_s"]["mean"]
    by_kind, base = batched["gossip_recv_by_kind_bytes_s"], one["gossip_recv_by_kind_bytes_s"]
    assert by_kind["work_digests"] < base["work_digests"]
    # the same claims, published later: each in exactly one digest (steady state)
    assert batched["per_epoch"]["work_leaves"] == pytest.approx(
        one["per_epoch"]["work_leaves"], rel=0.15
    )
    # the folded pairs per epoch do not depend on which digest carries a row
    assert batched["per_epoch"]["pairs"] == pytest.approx(one["per_epoch"]["pairs"], rel=0.15)


def test_a_heartbeat_period_cuts_heartbeat_gossip_and_every_node_keeps_serving(base8):
    period = {"reputation_params": {"heartbeat_period_epochs": 4}}
    with pytest.raises(ConfigError, match="heartbeat_max_age_epochs"):
        _scenario(epochs=8, **period)  # the default maximum age (2) is below 1 + 4 - 1
    sc = _scenario(epochs=8, matching_params={"heartbeat_max_age_epochs": 4}, **period)
    result = simulate(sc)
    one, spread = base8.summary["digests"], result.summary["digests"]
    # every node heartbeats at start, then one in four per epoch (8 epochs: 20 + 7 x ~5)
    assert one["per_epoch"]["heartbeats"] == 20
    assert spread["per_epoch"]["heartbeats"] < 0.5 * one["per_epoch"]["heartbeats"]
    by_kind, base = spread["gossip_recv_by_kind_bytes_s"], one["gossip_recv_by_kind_bytes_s"]
    assert by_kind["heartbeats"] < 0.5 * base["heartbeats"]
    assert by_kind["ihave"] < base["ihave"]  # fewer message IDs advertised
    assert spread["gossip_bytes_s"] < one["gossip_bytes_s"]
    # every online node still publishes its work digest, and stays online and eligible
    assert spread["per_epoch"]["work_digests"] == 20
    assert result.summary["tasks"] == base8.summary["tasks"]
    assert result.summary["success_rate"] >= base8.summary["success_rate"] - 0.01
    assert result.summary["honest_penalised_ever"] == 0


def test_work_batches_are_audited_with_samples_per_epoch_and_keep_detection():
    cheat = [{"behaviour": "wrong_result", "share": 0.25, "wrong_prob": 0.0, "digest_fault": 0.05}]
    one = simulate(_scenario(40, epochs=8, adversary=cheat)).summary["digests"]
    sc = _scenario(40, epochs=8, adversary=cheat, digest_params={"work_max_epochs": 4})
    four = simulate(sc).summary["digests"]
    a = four["audits"]
    assert (a["samples"], a["samples_per_work_digest"]) == (8, 32)
    assert a["samples_per_feedback_digest"] == 8
    # a batch of ~4 x 10 leaves gets ~32 challenges where four digests got 8 each
    ratio = four["per_epoch"]["audit_challenges"] / one["per_epoch"]["audit_challenges"]
    assert 0.7 < ratio < 1.3, ratio
    # so a 5% misreport is caught per batch about as surely as per single-epoch digest
    assert a["expected_detection"] > 0.8
    n = a["faulty_digests"]
    p = a["expected_detection"]
    assert abs(a["observed_detection"] - p) <= 4 * math.sqrt(p * (1 - p) / n) + 1e-9


def test_each_heartbeat_record_a_node_sends_is_counted():
    one = simulate(_scenario(epochs=2)).summary["digests"]
    two = simulate(_scenario(epochs=2, digests={"enabled": True, "heartbeats_per_epoch": 2}))
    two = two.summary["digests"]
    assert two["per_epoch"]["heartbeats"] == 2 * one["per_epoch"]["heartbeats"] == 40
    hb, hb1 = two["gossip_recv_by_kind_bytes_s"], one["gossip_recv_by_kind_bytes_s"]
    assert hb["heartbeats"] == pytest.approx(2 * hb1["heartbeats"])
    assert hb["work_digests"] == hb1["work_digests"]
    with pytest.raises(ConfigError):
        Scenario.from_dict({"digests": {"enabled": True, "heartbeats_per_epoch": 0}})
