"""Audit sampling (deterministic, uniform, the detection formula) and audit verdicts."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
from collections import Counter
from fractions import Fraction

import cbor2
import pytest
from hypothesis import given, settings

from repp2p.digests import (
    AuditOutcome,
    Fault,
    OffenceKind,
    audit_seed,
    auditors,
    challenge_indices,
    detection_probability,
    leaf_proof,
    verify_audit,
    verify_proof,
)
from repp2p.digests.audit import MAX_SAMPLES, SEED_DOMAIN
from repp2p.digests.leaves import WorkLeaf, work_leaf
from repp2p.errors import ProofReason
from repp2p.matching.beacon import beacon
from repp2p.records import FeedbackDigest, WorkDigest, WorkRow, sign
from repp2p.testing import factories
from repp2p.testing.factories import task_records

from .helpers import CLIENTS, EPOCH, NODES, NOW, cbor_values, feedback_part, forge, work_part, world

SEED = audit_seed(EPOCH, 2)


def _ids(count: int) -> list[bytes]:
    return [hashlib.sha256(b"digest-%d" % i).digest() for i in range(count)]


# -- sampling --------------------------------------------------------------------------


def test_seed_is_the_beacon_of_the_grace_epoch_plus_entropy():
    assert hashlib.sha256(SEED_DOMAIN + beacon(EPOCH + 2)).digest() == SEED
    assert audit_seed(EPOCH, 2, b"later digests") != SEED != audit_seed(EPOCH, 3)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 8, 9, 100, 10**6])
@pytest.mark.parametrize("s", [0, 1, 4, 8, 16, MAX_SAMPLES])
def test_challenges_are_distinct_in_range_and_deterministic(n, s):
    for digest_id in _ids(5):
        picked = challenge_indices(SEED, digest_id, n, s)
        assert picked == challenge_indices(SEED, digest_id, n, s)
        assert len(picked) == min(s, n) == len(set(picked))
        assert all(0 <= i < n for i in picked)
    if n >= 2 and s >= 1:
        draws = {challenge_indices(SEED, d, n, s) for d in _ids(20)}
        assert len(draws) > 1  # the digest id matters
        other_seed = audit_seed(EPOCH, 3)
        if s < n:  # so does the seed (unless every leaf is drawn anyway)
            assert [challenge_indices(SEED, d, n, s) for d in _ids(20)] != [
                challenge_indices(other_seed, d, n, s) for d in _ids(20)
            ]


def test_bad_sample_counts_are_refused():
    with pytest.raises(ValueError):
        challenge_indices(SEED, b"x", 10, MAX_SAMPLES + 1)
    with pytest.raises(ValueError):
        challenge_indices(SEED, b"x", -1, 4)


def test_every_index_and_every_subset_is_about_equally_likely():
    # Fixed inputs, so this is a deterministic check of the shuffle, not a flaky test; the
    # bounds are 6 standard deviations.
    n, s, trials = 10, 3, 3000
    hits = Counter(i for d in _ids(trials) for i in challenge_indices(SEED, d, n, s))
    expected = trials * s / n
    sd = math.sqrt(trials * (s / n) * (1 - s / n))
    assert all(abs(hits[i] - expected) < 6 * sd for i in range(n)), hits
    subsets = Counter(frozenset(challenge_indices(SEED, d, 5, 2)) for d in _ids(5000))
    assert len(subsets) == 10
    sd = math.sqrt(5000 * 0.1 * 0.9)
    assert all(abs(c - 500) < 6 * sd for c in subsets.values()), subsets


def test_detection_probability_equals_exhaustive_counting():
    for n in range(0, 9):
        for b in range(0, n + 1):
            bad = set(range(b))
            for s in range(0, n + 2):
                m = min(s, n)
                subsets = list(itertools.combinations(range(n), m))
                hit = sum(1 for sub in subsets if bad & set(sub))
                assert detection_probability(n, b, s) == Fraction(hit, len(subsets))


def test_the_sampler_detects_as_often_as_the_formula_says():
    n, s, trials = 40, 4, 4000
    bad = {3, 17, 31}
    caught = sum(bool(bad & set(challenge_indices(SEED, d, n, s))) for d in _ids(trials))
    p = float(detection_probability(n, len(bad), s))
    assert abs(caught / trials - p) < 6 * math.sqrt(p * (1 - p) / trials)


def test_detection_table_of_the_docs():
    # docs/digests.md: n = 10,000 leaves; sampling without replacement is within 0.1% of
    # 1 - (1 - f)^s at that size.
    table = {
        (4, 0.01): 0.039,
        (8, 0.01): 0.077,
        (16, 0.01): 0.149,
        (4, 0.05): 0.185,
        (8, 0.05): 0.337,
        (16, 0.05): 0.560,
        (4, 0.10): 0.344,
        (8, 0.10): 0.570,
        (16, 0.10): 0.815,
    }
    for (s, f), p in table.items():
        exact = detection_probability(10_000, round(10_000 * f), s)
        assert abs(float(exact) - p) < 0.0015, (s, f, float(exact))
        assert abs(float(exact) - (1 - (1 - f) ** s)) < 0.001
    assert detection_probability(100, 1, 8) == Fraction(8, 100)  # one bad leaf: s / n
    with pytest.raises(ValueError):
        detection_probability(3, 4, 1)


def test_auditors_by_rendezvous():
    peers = [factories.identity(f"auditor-{i}").peer_id for i in range(5)]
    digest_id = _ids(1)[0]
    chosen = auditors(SEED, digest_id, peers, count=2)
    assert len(chosen) == 2 and set(chosen) <= set(peers)
    assert auditors(SEED, digest_id, list(reversed(peers)) + peers, count=2) == chosen
    assert auditors(SEED, digest_id, peers, count=2, exclude={chosen[0]})[0] == chosen[1]
    assert auditors(SEED, digest_id, peers, count=9) == auditors(SEED, digest_id, peers, count=5)
    # Adding a candidate only ever moves the choice to the newcomer.
    newcomer = factories.identity("auditor-new").peer_id
    assert auditors(SEED, digest_id, [*peers, newcomer])[0] in (chosen[0], newcomer)
    firsts = Counter(auditors(SEED, d, peers)[0] for d in _ids(2000))
    assert all(abs(firsts[p] - 400) < 6 * math.sqrt(2000 * 0.2 * 0.8) for p in peers), firsts


# -- verdicts ---------------------------------------------------------------------------


def _offence(verdict, fault, kind=OffenceKind.INCONSISTENCY):
    assert verdict.outcome is AuditOutcome.OFFENCE, verdict
    assert fault in verdict.faults
    offence = verify_proof(verdict.proof, NOW)
    assert offence.kind is kind and fault in offence.faults
    return offence


def _honest():
    tasks = world(30, seed=21)
    node = NODES[0]
    part = work_part(node, tasks)
    return node, part, sign(part.digest, node)


def test_a_response_for_another_leaf_or_digest_is_unserved():
    _, part, signed = _honest()
    good = leaf_proof(part, signed.record_id, 2)
    verdict = verify_audit(signed, 3, good.encode())
    assert (verdict.outcome, verdict.reason) == (AuditOutcome.UNSERVED, ProofReason.BAD_INDEX)
    other = dataclasses.replace(good, digest_id=bytes(32))
    verdict = verify_audit(signed, 2, other.encode())
    assert verdict.reason is ProofReason.WRONG_DIGEST
    no_next = dataclasses.replace(good, successor=None)
    assert verify_audit(signed, 2, no_next.encode()).reason is ProofReason.NOT_ADJACENT
    last = signed.record.leaf_count - 1
    extra = dataclasses.replace(leaf_proof(part, signed.record_id, last), successor=good.opening)
    assert verify_audit(signed, last, extra.encode()).reason is ProofReason.NOT_ADJACENT
    withheld = dataclasses.replace(good, records=good.records[:1])
    verdict = verify_audit(signed, 2, withheld.encode())
    assert (verdict.outcome, verdict.reason) == (AuditOutcome.UNSERVED, ProofReason.MISSING_RECORD)
    with pytest.raises(ValueError):
        verify_audit(signed, signed.record.leaf_count, good.encode())


def test_no_corruption_of_an_honest_response_frames_its_publisher():
    _, part, signed = _honest()
    data = leaf_proof(part, signed.record_id, 4).encode()
    outcomes = Counter()
    for i in range(len(data)):
        for flip in (0x01, 0x80, 0xFF):
            mutant = data[:i] + bytes([data[i] ^ flip]) + data[i + 1 :]
            verdict = verify_audit(signed, 4, mutant)
            outcomes[verdict.outcome] += 1
            assert verdict.outcome is not AuditOutcome.OFFENCE, (i, flip, verdict)
    for junk in (b"", b"\xa0", b"\xff" * 10, data[:-1], data + b"\x00", b"x" * 30_000, 7, None):
        assert verify_audit(signed, 4, junk).outcome is AuditOutcome.UNSERVED
    assert outcomes[AuditOutcome.PASS] <= 2 * len(data) // 100  # almost every flip is caught


def test_a_fabricated_leaf_cannot_be_served():
    node, client = NODES[0], CLIENTS[0]
    real = [task_records(client, node, EPOCH, f"real{i}") for i in range(3)]
    fake = WorkLeaf(
        task_id=factories.digest("never happened"),
        client=client.peer_id,
        outcome="done",
        offer_id=factories.digest("no offer"),
        claim_id=factories.digest("no claim"),
        receipt_id=factories.digest("no receipt"),
    )
    leaves = [work_leaf(t.offer, t.claim, t.receipt, "done") for t in real] + [fake]
    evidence = [(t.offer, t.claim, t.receipt) for t in real] + [()]
    order = sorted(range(4), key=lambda i: leaves[i].key())
    part = forge(WorkDigest, [leaves[i] for i in order], [evidence[i] for i in order])
    signed = sign(part.digest, node)
    at = order.index(3)
    verdict = verify_audit(signed, at, leaf_proof(part, signed.record_id, at).encode())
    assert (verdict.outcome, verdict.reason) == (AuditOutcome.UNSERVED, ProofReason.MISSING_RECORD)
    for i in range(4):
        if i != at:
            response = leaf_proof(part, signed.record_id, i).encode()
            assert verify_audit(signed, i, response).outcome is AuditOutcome.PASS


def test_a_leaf_backed_by_someone_elses_records_is_an_offence():
    node, c0, c1 = NODES[0], CLIENTS[0], CLIENTS[1]
    t = task_records(c0, node, EPOCH, "mine")
    stolen = task_records(c1, NODES[1], EPOCH, "theirs")
    # The leaf claims c1's task as this node's, naming the other node's claim.
    leaf = work_leaf(stolen.offer, stolen.claim, None, "timeout")
    honest = work_leaf(t.offer, t.claim, t.receipt, "done")
    items = sorted(
        [(honest, (t.offer, t.claim, t.receipt)), (leaf, (stolen.offer, stolen.claim))],
        key=lambda x: x[0].key(),
    )
    part = forge(WorkDigest, [x[0] for x in items], [x[1] for x in items])
    signed = sign(part.digest, node)
    at = [x[0] for x in items].index(leaf)
    verdict = verify_audit(signed, at, leaf_proof(part, signed.record_id, at).encode())
    _offence(verdict, Fault.WRONG_RECORD)


def test_an_overstated_row_is_caught_where_its_leaves_are_missing():
    node, client = NODES[0], CLIENTS[0]
    done = [task_records(client, node, EPOCH, f"d{i}") for i in range(2)]
    late = task_records(client, node, EPOCH, "late", delivered=False, outcome="timeout")
    leaves = [work_leaf(t.offer, t.claim, t.receipt, "done") for t in done]
    leaves.append(work_leaf(late.offer, late.claim, None, "timeout"))
    evidence = [(t.offer, t.claim, t.receipt) for t in done] + [(late.offer, late.claim)]
    order = sorted(range(3), key=lambda i: leaves[i].key())
    # The row says 3 receipts, 0 timeouts: the timeout leaf sits where a done must be.
    row = WorkRow(client=client.peer_id, claims=3, receipts=3, timeouts=0, failures=0)
    part = forge(WorkDigest, [leaves[i] for i in order], [evidence[i] for i in order], rows=(row,))
    signed = sign(part.digest, node)
    verdicts = [
        verify_audit(signed, i, leaf_proof(part, signed.record_id, i).encode()) for i in range(3)
    ]
    caught = [v for v in verdicts if v.outcome is AuditOutcome.OFFENCE]
    assert caught  # the timeout leaf itself, or the leaf before it (through its successor)
    for v in caught:
        _offence(v, Fault.MISPLACED)


def test_a_duplicated_leaf_is_caught_through_its_successor():
    node, client = NODES[0], CLIENTS[0]
    tasks = sorted(
        (task_records(client, node, EPOCH, f"dup{i}") for i in range(3)),
        key=lambda t: t.offer.record.task_id,
    )
    leaves = [work_leaf(t.offer, t.claim, t.receipt, "done") for t in tasks]
    evidence = [(t.offer, t.claim, t.receipt) for t in tasks]
    part = forge(WorkDigest, [*leaves, leaves[2]], [*evidence, evidence[2]])  # 4 receipts
    signed = sign(part.digest, node)
    verdict = verify_audit(signed, 2, leaf_proof(part, signed.record_id, 2).encode())
    _offence(verdict, Fault.MISORDERED, OffenceKind.MISORDER)
    for i in (0, 1, 3):
        response = leaf_proof(part, signed.record_id, i).encode()
        assert verify_audit(signed, i, response).outcome is AuditOutcome.PASS


def test_a_receipt_without_a_valid_enclave_signature_is_an_offence():
    node, client = NODES[0], CLIENTS[0]
    t = task_records(client, node, EPOCH, "forged")
    receipt = sign(dataclasses.replace(t.receipt.record, enclave_sig=b"\x01" * 64), node)
    leaf = work_leaf(t.offer, t.claim, receipt, "done")
    part = forge(WorkDigest, [leaf], [(t.offer, t.claim, receipt)])
    signed = sign(part.digest, node)
    verdict = verify_audit(signed, 0, leaf_proof(part, signed.record_id, 0).encode())
    _offence(verdict, Fault.BAD_RECEIPT)


def test_a_feedback_leaf_that_misstates_its_feedback_is_an_offence():
    client, node = CLIENTS[0], NODES[0]
    t = task_records(client, node, EPOCH, "fb", outcome="wrong")
    part = feedback_part(client, [t])
    # The client reports the wrong verdict as ok in its digest.
    lied = dataclasses.replace(part.leaves[0], outcome="ok")
    forged = forge(FeedbackDigest, [lied], [(t.offer, t.feedback)])
    signed = sign(forged.digest, client)
    verdict = verify_audit(signed, 0, leaf_proof(forged, signed.record_id, 0).encode())
    _offence(verdict, Fault.WRONG_RECORD)


def test_bytes_that_are_not_a_leaf_are_an_offence():
    node = NODES[0]
    row = WorkRow(client=CLIENTS[0].peer_id, claims=2, receipts=0, timeouts=2, failures=0)
    part = forge(WorkDigest, [b"\xa0", b"\xa1\x61a\x01"], [(), ()], rows=(row,))
    signed = sign(part.digest, node)
    verdict = verify_audit(signed, 0, leaf_proof(part, signed.record_id, 0).encode())
    _offence(verdict, Fault.BAD_LEAF)


@settings(max_examples=200, deadline=None)
@given(cbor_values)
def test_hostile_responses_are_unserved_never_a_crash(obj):
    _, part, signed = _HONEST
    if isinstance(obj, dict) and obj:
        # Half-right shapes get further into the checks.
        good = cbor2.loads(leaf_proof(part, signed.record_id, 1).encode())
        obj = {**good, **{k: v for k, v in obj.items() if k in good}}
    try:
        data = cbor2.dumps(obj, canonical=True)
    except Exception:
        return
    verdict = verify_audit(signed, 1, data)
    assert verdict.outcome in (AuditOutcome.UNSERVED, AuditOutcome.PASS)
    if verdict.outcome is AuditOutcome.PASS:
        assert data == leaf_proof(part, signed.record_id, 1).encode()


_HONEST = _honest()
