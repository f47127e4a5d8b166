"""Offence proofs on gossip (docs/digests.md, "Offence proofs and unserved charges on
gossip"): every peer verifies a gossiped proof from its bytes, keeps one per offence, and
its digest views count it as they count an equivocation (offender, hard penalty, the
ledger's offence slash). Hostile proofs are refused with a typed reason and change nothing
held; unserved charges never reach a view."""

from __future__ import annotations

import hashlib

import numpy as np

from repp2p.digests import ConflictProof, build_work, conflict_proof
from repp2p.digests.disputes import dispute_proof
from repp2p.digests.unserved import UnservedCharge
from repp2p.ledger import LedgerParams, LedgerState, slashes_for
from repp2p.net.verdict import Verdict
from repp2p.node.offences import OffenceBook, ProofRouter
from repp2p.records import sign
from repp2p.reputation import Evidence, PenaltyBook, ReputationParams
from repp2p.reputation.pairs import PairState, compute_pairs, widen
from repp2p.testing import factories
from repp2p.testing.factories import far_future, task_records

EPOCH_S = 60
NOW = factories.NOW
EPOCH = NOW // EPOCH_S - 2
NODE = factories.identity("og-node")
OTHER = factories.identity("og-other")
CLIENTS = [factories.identity(f"og-client-{i}") for i in range(3)]


def _conflict(node=NODE, epoch=EPOCH, label="c"):
    tasks = [task_records(c, node, epoch, f"{label}{i}") for i, c in enumerate(CLIENTS)]
    records = [r for t in tasks for r in t.all()]
    (full,) = build_work(node.peer_id, records, epoch, expires=far_future())
    (fewer,) = build_work(node.peer_id, records[:4], epoch, expires=far_future())
    return conflict_proof(sign(full.digest, node), sign(fewer.digest, node)).encode()


def _book(tmp_path, now=NOW):
    return OffenceBook(
        folder=tmp_path / "offences",
        epoch_s=EPOCH_S,
        horizon_epochs=16,
        keep_epochs=200,
        now=lambda: now,
    )


def _files(tmp_path):
    folder = tmp_path / "offences"
    return sorted(p.read_bytes() for p in folder.iterdir()) if folder.exists() else []


def test_a_gossiped_offence_proof_is_verified_kept_once_and_survives_a_restart(tmp_path):
    book = _book(tmp_path)
    # two proofs of one offence: the book keeps the smaller evidence ID (its SHA-256)
    proof, again = sorted(
        (_conflict(), _conflict(label="again")), key=lambda d: hashlib.sha256(d).digest()
    )
    assert book.judge(proof) is Verdict.ACCEPT
    (offence,) = book.offences(EPOCH)
    assert (offence.kind, offence.peer_id, offence.epoch) == (
        "digest_conflict",
        NODE.peer_id,
        EPOCH,
    )
    assert book.offences(EPOCH - 1) == []  # counted only by views after its epoch's horizon
    files = _files(tmp_path)
    hostile = [
        (proof, Verdict.IGNORE, "known"),
        (again, Verdict.IGNORE, "known"),  # the same offence, a proof of a larger ID
        (b"\xa1", Verdict.REJECT, "malformed"),
        (_conflict(epoch=EPOCH - 17, label="old"), Verdict.IGNORE, "too_old"),
        (_conflict(epoch=EPOCH + 3, label="new"), Verdict.IGNORE, "too_new"),
    ]
    # a "conflict" of one digest with itself proves nothing
    tasks = [task_records(CLIENTS[0], OTHER, EPOCH, "same")]
    (part,) = build_work(OTHER.peer_id, tasks[0].all(), EPOCH, expires=far_future())
    same = sign(part.digest, OTHER)
    hostile.append((ConflictProof(same.data, same.data).encode(), Verdict.REJECT, "no_offence"))
    for data, verdict, reason in hostile:
        before = book.refused.get(reason, 0)
        assert book.judge(data) is verdict, reason
        assert book.refused[reason] == before + 1
        assert len(book) == 1 and _files(tmp_path) == files
    again = _book(tmp_path)
    assert again.offences(EPOCH) == book.offences(EPOCH)
    assert book.prune(EPOCH + 201) == 1 and _files(tmp_path) == []


def test_the_router_sends_each_kind_to_its_book(tmp_path):
    seen = []

    class Disputes:
        def judge(self, data):
            seen.append(data)
            return Verdict.ACCEPT

    router = ProofRouter(Disputes(), _book(tmp_path))
    offer = task_records(CLIENTS[0], NODE, EPOCH, "r").offer
    dispute = dispute_proof(offer, []).encode()
    assert router.judge(dispute) is Verdict.ACCEPT and seen == [dispute]
    assert router.judge(_conflict()) is Verdict.ACCEPT
    assert len(router.offences) == 1
    assert router.judge(b"\xa0") is Verdict.REJECT  # a map without a kind
    charge = UnservedCharge(b"x", 0, bytes(32), NODE.peer_id, "no_answer").encode()
    assert router.judge(charge) is Verdict.IGNORE  # a light peer cannot re-check
    got = []
    with_recheck = ProofRouter(
        Disputes(), _book(tmp_path), lambda d: got.append(d) or Verdict.ACCEPT
    )
    assert with_recheck.judge(charge) is Verdict.ACCEPT and got == [charge]


def test_a_verified_offence_is_an_offence_in_a_digest_view_and_the_ledger_slashes_it(tmp_path):
    book = _book(tmp_path)
    book.judge(_conflict())
    nodes = [NODE.peer_id, OTHER.peer_id]
    peers = sorted(nodes)
    ev = Evidence.from_columns(
        peers,
        is_node=[True, True],
        verified=[True, True],
        consistent=[True, True],
        attested_at=[NOW, NOW],
    )
    win = PairState().window(0, 0)
    view_epoch = EPOCH + 17
    clean = compute_pairs(widen(ev, win.peers), win, now=view_epoch * EPOCH_S, epoch_s=EPOCH_S)
    charged = compute_pairs(
        widen(
            Evidence.from_columns(
                peers,
                is_node=[True, True],
                verified=[True, True],
                consistent=[True, True],
                attested_at=[NOW, NOW],
                offences=tuple(book.offences(view_epoch - 17)),
            ),
            win.peers,
        ),
        win,
        now=view_epoch * EPOCH_S,
        epoch_s=EPOCH_S,
    )
    i, j = peers.index(NODE.peer_id), peers.index(OTHER.peer_id)
    assert not clean.is_offender.any() and clean.permille[i] > 0
    assert charged.is_offender[i] and charged.permille[i] == 0
    assert not charged.is_offender[j] and charged.permille[j] == clean.permille[j]
    assert charged.offences == tuple(book.offences(EPOCH))
    # the penalty book hard-penalises it, and the ledger slashes the offence
    rp = ReputationParams()
    pen = PenaltyBook().step(charged, rp)
    assert pen.is_penalised(NODE.peer_id, view_epoch)
    assert not pen.is_penalised(OTHER.peer_id, view_epoch)
    state = LedgerState(balances={p: 1_000_000 for p in peers}, emitted=2_000_000)
    slashes = slashes_for(state, pen, {}, LedgerParams())
    assert [(p, why) for p, why, _a in slashes] == [(NODE.peer_id, "offence")]
    assert slashes[0][2] == 1_000_000 * LedgerParams().offence_slash_pct // 100
    assert np.array_equal(charged.is_node, clean.is_node)
