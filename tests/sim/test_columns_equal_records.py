"""The ``records = "columns"`` switch skips only encoding and signatures.

A small run's evidence is re-expressed as real signed records (offers, claims, receipts,
feedback, heartbeats, node ads, attestation verdicts), collected with
``repp2p.reputation.collect`` like a live node, and must give the same reputation, the same
offences and the same ledger settlement as the simulator's compact columns.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib

import nacl.signing
import numpy as np

from repp2p.ledger import LedgerState, settle
from repp2p.records import (
    Claim,
    EngineOffer,
    Feedback,
    Heartbeat,
    NodeAd,
    Receipt,
    TaskOffer,
    peer_id_from_public_key,
    receipt_message,
    sign,
)
from repp2p.reputation import OUTCOME_CODES, AttestedNode, PenaltyBook, collect, compute
from repp2p.sim import Scenario, Simulation

FAR = 4_000_000_000
M = hashlib.sha256(b"engine").digest()
OUTCOME = {v: k for k, v in OUTCOME_CODES.items()}


@functools.cache
def _key(name: str) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(hashlib.sha256(b"sim-eq/" + name.encode()).digest())


@functools.cache
def _enclave(name: str) -> nacl.signing.SigningKey:
    """The node's enclave result key (its attestation binds it; receipts are signed by it)."""
    return nacl.signing.SigningKey(hashlib.sha256(b"sim-eq-enclave/" + name.encode()).digest())


@functools.cache
def _peer(name: str) -> str:
    return peer_id_from_public_key(bytes(_key(name).verify_key))


def _d(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def _records(sim: Simulation, boundary: int):
    c = len(sim.client_names)
    records, attested = [], {}
    for i, name in enumerate(sim.node_names):
        ad = NodeAd(
            addrs=("/ip4/127.0.0.1/tcp/4001",),
            engines=(EngineOffer("echo", M),),
            tee_kind="nitro",
            price=0,
            capacity=int(sim.capacity[i]),
            throughput=0,
            seq=1,
            expires=FAR,
        )
        records.append(sign(ad, _key(name)))
        if sim.attested[i]:
            attested[_peer(name)] = AttestedNode(
                _peer(name),
                "nitro",
                frozenset({M}),
                True,
                attested_at=boundary * sim.sc.epoch_s,
                result_key=bytes(_enclave(name).verify_key),
            )
    hn, he, hl = sim.heartbeats.columns()
    for n, e, load in zip(hn, he, hl, strict=True):
        hb = Heartbeat(epoch=int(e), load=int(load), tasks_done=0, seq=1, expires=FAR)
        records.append(sign(hb, _key(sim.node_names[n])))
    oc, oe, od = sim.offers.columns()
    offers = []
    for o, (cl, e, dl) in enumerate(zip(oc, oe, od, strict=True)):
        rec = TaskOffer(
            task_id=_d(f"task{o}"),
            engine_id="echo",
            epoch=int(e),
            tee_kinds=(),
            min_reputation=0,
            max_price=2**64 - 1,
            redundancy=sim.sc.redundancy,
            deadline_ms=int(dl),
            input_digest=_d(f"in{o}"),
            input_size=1,
            result_key=_d("rk"),
            seq=1,
            expires=FAR,
        )
        offers.append(sign(rec, _key(sim.client_names[cl])))
    records += offers
    for n, o in zip(*sim.claims.columns(), strict=True):
        off = offers[o].record
        claim = Claim(
            task_id=off.task_id,
            offer_id=offers[o].record_id,
            rank=0,
            epoch=off.epoch,
            view_digest=b"\0" * 32,
            seq=1,
            expires=FAR,
        )
        records.append(sign(claim, _key(sim.node_names[n])))
    for n, o, out in zip(*sim.receipts.columns(), strict=True):
        off = offers[o].record
        rec = Receipt(
            task_id=off.task_id,
            offer_id=offers[o].record_id,
            engine_id="echo",
            measurement=M,
            input_digest=off.input_digest,
            output_digest=_d(f"out{out}"),
            started_ms=0,
            finished_ms=1,
            result_key=bytes(_enclave(sim.node_names[n]).verify_key),
            enclave_sig=b"\1" * 64,
            seq=1,
            expires=FAR,
        )
        sig = _enclave(sim.node_names[n]).sign(receipt_message(rec)).signature
        rec = dataclasses.replace(rec, enclave_sig=sig)
        records.append(sign(rec, _key(sim.node_names[n])))
    for cl, n, o, outc, lat, rating in zip(*sim.feedback.columns(), strict=True):
        fb = Feedback(
            task_id=offers[o].record.task_id,
            node=_peer(sim.node_names[n]),
            outcome=OUTCOME[int(outc)],
            latency_ms=int(lat),
            rating=int(rating),
            seq=1,
            expires=FAR,
        )
        records.append(sign(fb, _key(sim.client_names[cl])))
    del c
    return records, attested


def test_columns_and_signed_records_give_the_same_reputation_and_ledger():
    sc = Scenario.from_dict(
        {
            "nodes": 12,
            "epochs": 4,
            "tasks_per_epoch": 40,
            "redundancy": 3,
            "clients": {"count": 6, "malicious_share": 0.2},
            "network": {"loss": 0.05},
            "adversary": [{"behaviour": "wrong_result", "share": 0.25, "collude": True}],
        }
    )
    sim = Simulation(sc)
    sim.run()
    boundary = sim.epoch  # the closing boundary's view holds every epoch
    view = sim.view
    records, attested = _records(sim, boundary)
    now = boundary * sc.epoch_s
    ev = collect(records, attested, now=now)
    table = compute(ev, now=now, epoch_s=sc.epoch_s, params=sim.rp)
    names = sim.client_names + sim.node_names
    sim_table = view.reputation
    for i, name in enumerate(names):
        j = table.index(_peer(name))
        assert table.permille[j] == sim_table.permille[i], name
        assert np.isclose(table.client_trust[j], sim_table.client_trust[i], rtol=1e-9, atol=0)
        assert table.is_offender[j] == sim_table.is_offender[i]
    assert sorted(_peer(o.peer_id) for o in sim_table.offences) == sorted(
        o.peer_id for o in table.offences
    )
    # the ledger: the same settlement of the last epoch, by peer
    book = PenaltyBook().step(table, sim.rp)
    sim_book = PenaltyBook().step(sim_table, sim.rp)
    a = settle(LedgerState(), ev, table, book, epoch=boundary - 1, params=sim.lp)
    b = settle(LedgerState(), view.evidence, sim_table, sim_book, epoch=boundary - 1, params=sim.lp)
    assert a.emission == b.emission and a.burned == b.burned
    assert dict(a.payouts) == {_peer(p): amount for p, amount in b.payouts}
    assert dict(a.work) == {_peer(p): w for p, w in b.work}
    assert a.payouts  # somebody was paid
