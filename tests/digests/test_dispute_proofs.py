"""Dispute proofs (docs/digests.md, "Dispute proofs"): the wire form, the checks a peer
holds a proof to before it keeps it, merging, and hostile input: every bad proof is refused
with a typed reason, and what was held before stays held (memory and disk)."""

from __future__ import annotations

import dataclasses

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repp2p.digests.disputes import (
    MAX_DISPUTE_RECEIPTS,
    MAX_DISPUTE_SIZE,
    DisputeTiming,
    check_dispute_proof,
    decode_dispute,
    dispute_proof,
    merge,
)
from repp2p.errors import ProofError, ProofReason
from repp2p.net.verdict import Verdict
from repp2p.node.disputes import DisputeBook, reread_dispute
from repp2p.records import sign
from repp2p.testing import factories
from tests.digests.dispute_fixtures import attested, client_feedback
from tests.digests.dispute_fixtures import replica_run as _run

EPOCH_S = 60
NOW = factories.NOW
EPOCH = NOW // EPOCH_S
CLIENT = factories.identity("dp-client")
NODES = [factories.identity(f"dp-node-{i}") for i in range(5)]
OUTSIDER = factories.identity("dp-outsider")


def _offer(label="t", epoch=EPOCH, deadline_ms=None):
    return factories.task_records(
        CLIENT, NODES[0], epoch, label, claimed=False, deadline_ms=deadline_ms
    ).offer


def _proof(offer=None, outputs=("right", "right", "bad"), nodes=NODES, **kw):
    offer = offer or _offer()
    runs = [_run(offer, n, out, **kw) for n, out in zip(nodes, outputs, strict=False)]
    return dispute_proof(offer, runs)


def _verdict(node, *, key=None, earlier=()):
    return attested(node, now=NOW, key=key, earlier=earlier)


VERDICTS = {n.peer_id: _verdict(n) for n in [*NODES, OUTSIDER]}


def _ranks(offer):
    return {n.peer_id: frozenset({i}) for i, n in enumerate(NODES)}


def _check(proof, *, now=NOW, verdicts=VERDICTS, ranks=_ranks):
    return check_dispute_proof(
        decode_dispute(proof.encode()),
        now=now,
        epochs=(EPOCH - 16, EPOCH),
        verdict_of=lambda peer, _epoch: verdicts.get(peer),
        ranks_of=ranks,
    )


def _reason(proof, **kw) -> ProofReason:
    with pytest.raises(ProofError) as info:
        _check(proof, **kw)
    return info.value.reason


def _book(tmp_path, now=NOW, max_age_epochs=16):
    clock = now if callable(now) else (lambda: now)
    return DisputeBook(
        folder=tmp_path / "disputes",
        epoch_s=EPOCH_S,
        max_age_epochs=max_age_epochs,
        keep_epochs=200,
        now=clock,
        verdict_of=lambda peer, _epoch: VERDICTS.get(peer),
        ranks_of=_ranks,
    )


def test_an_honest_proof_checks_and_round_trips():
    proof = _proof()
    assert decode_dispute(proof.encode()) == proof
    checked = _check(proof)
    assert [r.signer for r in checked.receipts] == sorted(n.peer_id for n in NODES[:3])
    assert checked.proof() == proof
    assert checked.epoch == EPOCH


def test_forged_unsigned_unranked_and_wrong_epoch_receipts_are_refused():
    offer = _offer()
    good = [_run(offer, n, out) for n, out in zip(NODES, ("right", "bad"), strict=False)]
    # forged: the node's record signature does not verify
    c, r = _run(offer, NODES[2], "right")
    forged = r.data[:-1] + bytes([r.data[-1] ^ 1])
    proof = dispute_proof(offer, [*good, (c, r)])
    at = proof.receipts.index(r.data)
    bad = dataclasses.replace(
        proof, receipts=(*proof.receipts[:at], forged, *proof.receipts[at + 1 :])
    )
    assert _reason(bad) is ProofReason.BAD_RECORD
    # unsigned by its enclave (a junk enclave signature)
    junk = dispute_proof(offer, [*good, _run(offer, NODES[2], "right", enclave_sig=bytes(64))])
    assert _reason(junk) is ProofReason.NOT_ENCLAVE_SIGNED
    # signed by an enclave key that is not the node's attested one
    other = factories.enclave_key("somebody else")
    assert _reason(dispute_proof(offer, [*good, _run(offer, NODES[2], "x", key=other)])) is (
        ProofReason.UNATTESTED
    )
    # unranked: a node the matching gave no rank for the offer
    outsider = dispute_proof(offer, [*good, _run(offer, OUTSIDER, "right")])
    assert _reason(outsider) is ProofReason.UNRANKED
    assert _reason(_proof(offer), ranks=lambda o: None) is ProofReason.UNRANKED
    # wrong epoch: a key its node replaced before the offer's epoch
    old = factories.enclave_key("dp-node-2 old enclave")
    verdicts = dict(VERDICTS)
    verdicts[NODES[2].peer_id] = _verdict(NODES[2], earlier=((bytes(old.verify_key), EPOCH - 1),))
    stale = dispute_proof(offer, [*good, _run(offer, NODES[2], "right", key=old)])
    assert _reason(stale, verdicts=verdicts) is ProofReason.WRONG_EPOCH
    # ... and a claim of another epoch than the offer's
    late = dispute_proof(offer, [*good, _run(offer, NODES[2], "right", claim_epoch=EPOCH + 1)])
    assert _reason(late) is ProofReason.WRONG_EPOCH


def test_malformed_oversized_agreeing_and_replayed_proofs_are_refused():
    offer = _offer()
    assert _reason(_proof(offer, outputs=("same", "same", "same"))) is ProofReason.NO_OFFENCE
    assert _reason(_proof(offer, outputs=("one",))) is ProofReason.MALFORMED
    for data in (b"", b"\xff", cbor2.dumps({"kind": "dispute"}), cbor2.dumps([1, 2])):
        with pytest.raises(ProofError) as info:
            decode_dispute(data)
        assert info.value.reason is ProofReason.MALFORMED
    with pytest.raises(ProofError) as info:
        decode_dispute(bytes(MAX_DISPUTE_SIZE + 1))
    assert info.value.reason is ProofReason.OVERSIZE
    many = dataclasses.replace(
        _proof(offer), receipts=(b"x",) * (MAX_DISPUTE_RECEIPTS + 1), claims=()
    )
    with pytest.raises(ProofError) as info:
        decode_dispute(many.encode())
    assert info.value.reason is ProofReason.OVERSIZE
    # not canonical: the same map with an integer spelled long
    wire = _proof(offer).to_wire()
    long_form = cbor2.dumps({**wire, "kind": "dispute"}, canonical=True).replace(
        b"\x88", b"\x98\x08", 1
    )
    with pytest.raises(ProofError) as info:
        decode_dispute(long_form)
    assert info.value.reason in (ProofReason.MALFORMED, ProofReason.NON_CANONICAL)
    # replayed: a task out of every view (too old), or not yet possible (too new)
    assert _reason(_proof(_offer("old", EPOCH - 17))) is ProofReason.TOO_OLD
    assert _reason(_proof(_offer("new", EPOCH + 1))) is ProofReason.TOO_NEW
    # a receipt of another task, and two receipts of one node
    other = _offer("other")
    c, r = _run(other, NODES[2], "right")
    mixed = dataclasses.replace(
        _proof(offer, outputs=("right", "bad")),
        claims=(*_proof(offer, outputs=("right", "bad")).claims, c.data),
        receipts=(*_proof(offer, outputs=("right", "bad")).receipts, r.data),
    )
    assert _reason(mixed) is ProofReason.WRONG_TASK
    twice = _proof(offer)
    dup = dataclasses.replace(
        twice,
        claims=(*twice.claims, twice.claims[-1]),
        receipts=(*twice.receipts, twice.receipts[-1]),
    )
    assert _reason(dup) is ProofReason.DUPLICATE


def test_a_claim_or_receipt_expiring_before_its_offer_is_refused(tmp_path):
    """An honest node's claim and receipt expire with the offer (it copies the offer's
    ``expires``); one that expires earlier would leave every view while the dispute over
    it still counts: ``expires_early``, REJECT (a rule of the bytes alone)."""
    offer = _offer("short-lived")
    expires = offer.record.expires
    good = [_run(offer, n, out) for n, out in zip(NODES, ("right", "bad"), strict=False)]
    honest, short = (
        _run(offer, NODES[2], "right"),
        _run(offer, NODES[2], "right", expires=expires - 1),
    )
    for claim, receipt in ((honest[0], short[1]), (short[0], honest[1]), short):
        proof = dispute_proof(offer, [*good, (claim, receipt)])
        with pytest.raises(ProofError) as info:
            _check(proof)
        assert info.value.reason is ProofReason.EXPIRES_EARLY
        assert "before its offer" in str(info.value)
    # expiring with the offer, or later, is no fault
    assert len(_check(dispute_proof(offer, [*good, honest])).receipts) == 3
    longer = _run(offer, NODES[2], "right", expires=expires + 1)
    assert len(_check(dispute_proof(offer, [*good, longer])).receipts) == 3
    book = _book(tmp_path)
    assert book.judge(dispute_proof(offer, [*good, short]).encode()) is Verdict.REJECT
    assert book.refused["expires_early"] == 1 and book.get(offer.record_id) is None


def test_the_book_keeps_nothing_a_refused_proof_carried(tmp_path):
    book = _book(tmp_path)
    offer = _offer()
    first = _proof(offer, outputs=("right", "bad"))
    assert book.judge(first.encode()) is Verdict.ACCEPT
    held = book.get(offer.record_id)
    files = sorted(p.read_bytes() for p in (tmp_path / "disputes").iterdir())
    # replays and hostile proofs: refused, typed, and nothing held changes
    hostile = [
        (first.encode(), Verdict.IGNORE, "known"),
        (_proof(offer, outputs=("same", "same")).encode(), Verdict.REJECT, "no_offence"),
        (
            dispute_proof(
                offer, [_run(offer, OUTSIDER, "right"), _run(offer, NODES[1], "b")]
            ).encode(),
            Verdict.IGNORE,
            "unranked",
        ),
        (
            dispute_proof(
                offer,
                [_run(offer, NODES[2], "r", enclave_sig=bytes(64)), _run(offer, NODES[1], "b")],
            ).encode(),
            Verdict.REJECT,
            "not_enclave_signed",
        ),
        (bytes(MAX_DISPUTE_SIZE + 1), Verdict.REJECT, "oversize"),
        (b"\xa1", Verdict.REJECT, "malformed"),
        (_proof(_offer("old", EPOCH - 17)).encode(), Verdict.IGNORE, "too_old"),
    ]
    for data, verdict, reason in hostile:
        before = dict(book.refused)
        assert book.judge(data) is verdict, reason
        assert book.refused[reason] == before.get(reason, 0) + 1
        assert book.get(offer.record_id) == held
        assert sorted(p.read_bytes() for p in (tmp_path / "disputes").iterdir()) == files
    # a later proof with more receipts (the replicas') adds them
    more = _proof(offer, outputs=("right", "bad", "right", "right"))
    assert book.judge(more.encode()) is Verdict.ACCEPT
    assert len(book.get(offer.record_id).receipts) == 4
    # a restarted peer holds the same
    again = _book(tmp_path)
    assert again.get(offer.record_id) == book.get(offer.record_id)
    assert [r.record_id for r in again.records(EPOCH, EPOCH)] == [
        r.record_id for r in book.records(EPOCH, EPOCH)
    ]
    assert book.prune(EPOCH + 201) == 1 and not list((tmp_path / "disputes").iterdir())


def _ms(epoch: int, into_s: int = 0) -> int:
    return (epoch * EPOCH_S + into_s) * 1000


def test_a_dispute_closes_the_epoch_after_its_deadline_at_most_before_the_seal():
    """close = min(max(D, E) + 1, E + dispute_lag - 1), count = close + 1 (D: the
    deadline's epoch)."""
    t = DisputeTiming(EPOCH_S, 5)
    e = 100
    cases = [
        (_ms(e, 30), e + 1),  # a 30-s deadline in E: counts at E + 2 (task_record_lag)
        (_ms(e + 1) - 1, e + 1),  # the last ms of E
        (_ms(e + 1), e + 2),  # the first ms of E + 1
        (_ms(e + 2, 59), e + 3),
        (_ms(e + 3, 1), e + 4),  # a deadline in E + 3: the cap already
        (_ms(e + 4, 1), e + 4),  # past the seal: the cap, E + dispute_lag - 1
        (_ms(e + 10_000), e + 4),
        (2**64 - 1, e + 4),  # hostile u64
        (_ms(e - 3), e + 1),  # before the offer's epoch: as if in it
        (0, e + 1),
    ]
    for deadline_ms, close in cases:
        assert t.close(e, deadline_ms) == close, deadline_ms
        assert t.count(e, deadline_ms) == close + 1
        assert e + 2 <= t.count(e, deadline_ms) <= e + t.dispute_lag
    assert t.min_lag == 2 and t.offer_epochs(50, 59) == (45, 57)
    # a network with no seal lag (dispute_lag 1): taken in E only, counted from E + 1
    assert DisputeTiming(EPOCH_S, 1).close(e, _ms(e + 3)) == e
    assert DisputeTiming(EPOCH_S, 1).count(e, _ms(e, 1)) == e + 1 == e + DisputeTiming(1, 1).min_lag


@settings(max_examples=300, deadline=None)
@given(
    epoch_s=st.integers(1, 86_400),
    epoch=st.integers(0, 2**40),
    deadline_ms=st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 2**50)),
    lag=st.integers(1, 65),
)
def test_a_grace_of_one_epoch_is_the_rule_before_the_grace(epoch_s, epoch, deadline_ms, lag):
    """No grace (None) and a grace of one epoch both give ``min(max(D, E) + 1, E +
    dispute_lag - 1)`` (at least ``E``), the rule before ``proof_grace_s``."""
    d = deadline_ms // 1000 // epoch_s
    before = max(epoch, min(max(d, epoch) + 1, epoch + lag - 1))
    assert DisputeTiming(epoch_s, lag).close(epoch, deadline_ms) == before
    assert DisputeTiming(epoch_s, lag, grace_s=epoch_s).close(epoch, deadline_ms) == before
    assert DisputeTiming(epoch_s, lag).min_lag == DisputeTiming(epoch_s, lag, None, epoch_s).min_lag


def test_a_short_grace_counts_a_dispute_at_the_first_boundary_a_grace_after_its_deadline():
    """600-s epochs and a 60-s grace (``NetworkParams.proof_grace_s``): a dispute whose
    deadline is more than 60 s before the end of its epoch counts at the next boundary
    (``E + 1``), one epoch sooner than with the one-epoch grace; never 60 s or less
    after its deadline, never later than ``E + dispute_lag``."""
    t = DisputeTiming(600, 5, grace_s=60)
    e = 100

    def ms(epoch: int, into_s: float = 0) -> int:
        return int((epoch * 600 + into_s) * 1000)

    cases = [
        (ms(e, 30), e),  # a 30-s deadline early in E: counts at E + 1
        (ms(e, 539.999), e),  # 60.001 s before the boundary
        (ms(e, 540), e + 1),  # exactly 60 s before: the boundary is not after the grace
        (ms(e + 1) - 1, e + 1),
        (ms(e + 1, 539), e + 1),
        (ms(e + 1, 541), e + 2),
        (ms(e + 3, 1), e + 3),
        (ms(e + 3, 599), e + 4),  # the cap, E + dispute_lag - 1
        (ms(e + 10_000), e + 4),
        (2**64 - 1, e + 4),  # hostile u64
        (ms(e - 3), e),  # before the offer's epoch: as if at its start
        (0, e),
    ]
    for deadline_ms, close in cases:
        assert t.close(e, deadline_ms) == close, deadline_ms
        count = t.count(e, deadline_ms)
        assert count == close + 1 and e + 1 <= count <= e + t.dispute_lag
        # the view of ``count`` is built at least the grace after the deadline, or capped
        deadline_s = max(min(deadline_ms, ms(e + 10_000)) / 1000, e * 600)
        assert count * 600 > deadline_s + 60 or count == e + t.dispute_lag
    assert t.min_lag == 1 and t.offer_epochs(50, 59) == (45, 58)
    # one epoch or more of grace: the rule before (at least two epochs after the offer)
    assert DisputeTiming(600, 5, grace_s=600).min_lag == 2
    assert DisputeTiming(600, 5, grace_s=1200).count(e, ms(e, 30)) == e + 3


def test_a_proof_or_merge_after_the_dispute_closes_is_refused(tmp_path):
    """A proof of an offer with a deadline in its own epoch E is taken (and merged) until
    the end of E + 1, then refused too_old (IGNORE, nothing held changes), no longer
    served, and counted from E + 2; one with a far deadline is still taken then."""
    now = [float(NOW)]
    book = _book(tmp_path, now=lambda: now[0], max_age_epochs=4)
    deadline = NOW * 1000 + 30_000
    assert deadline // 1000 // EPOCH_S == EPOCH
    offer = _offer("short", deadline_ms=deadline)
    assert book.judge(_proof(offer, outputs=("right", "bad")).encode()) is Verdict.ACCEPT
    now[0] = NOW + EPOCH_S  # E + 1: the close, merges still taken
    more = _proof(offer, outputs=("right", "bad", "right"))
    assert book.judge(more.encode()) is Verdict.ACCEPT
    assert len(book.get(offer.record_id).receipts) == 3
    assert len(book.served()) == 1 and len(book.have()) == 1
    held = book.get(offer.record_id)
    files = sorted(p.read_bytes() for p in (tmp_path / "disputes").iterdir())
    now[0] = NOW + 2 * EPOCH_S  # E + 2: closed
    late = _proof(offer, outputs=("right", "bad", "right", "right"))
    assert book.judge(late.encode()) is Verdict.IGNORE
    assert book.refused["too_old"] == 1
    assert book.get(offer.record_id) == held
    assert sorted(p.read_bytes() for p in (tmp_path / "disputes").iterdir()) == files
    with pytest.raises(ProofError) as info:
        book.add(late.encode())
    assert info.value.reason is ProofReason.TOO_OLD
    assert book.served() == [] and book.have() == []
    # views count it from E + 2, for the window's views
    ids = [r.record_id for r in held.records()]
    assert [r.record_id for r in book.counted(EPOCH + 2, EPOCH + 11, book.timing)] == ids
    assert book.counted(EPOCH - 8, EPOCH + 1, book.timing) == []
    # a far deadline (past the seal) keeps the dispute open until E + 4
    far = _offer("far")
    assert book.judge(_proof(far, outputs=("right", "bad")).encode()) is Verdict.ACCEPT
    assert book.timing.count(EPOCH, far.record.deadline_ms) == EPOCH + 5
    now[0] = NOW + 5 * EPOCH_S
    assert book.judge(_proof(far, outputs=("right", "bad", "x")).encode()) is Verdict.IGNORE


@settings(max_examples=30, deadline=None)
@given(order=st.permutations(range(4)))
def test_merging_in_any_order_gives_the_same_dispute(order):
    offer = _offer("merge")
    runs = [_run(offer, n, out) for n, out in zip(NODES, ("a", "b", "a", "b"), strict=False)]
    pieces = [dispute_proof(offer, [runs[i], runs[(i + 1) % 4]]) for i in range(4)]
    held = None
    for i in order:
        got = merge(held, _check(pieces[i]))
        held = got or held
    assert held.proof() == dispute_proof(offer, runs)


def test_a_bit_flip_anywhere_never_yields_another_dispute():
    proof = _proof()
    data = proof.encode()
    reference = _check(proof)
    for i in range(0, len(data), 7):
        flipped = data[:i] + bytes([data[i] ^ 0x40]) + data[i + 1 :]
        try:
            got = _check(decode_dispute(flipped))
        except ProofError:
            continue
        assert got == reference  # only a flip that changes nothing that is signed


def test_replica_claims_are_the_answers_beyond_each_offers_redundancy():
    from repp2p.digests.disputes import replica_claims

    # (offer epoch, nodes that answered, redundancy): k = 1 with two replicas, k = 3 with
    # one, k = 3 with none, and an offer of another epoch
    got = replica_claims([(7, 3, 1), (7, 4, 3), (7, 3, 3), (8, 2, 1), (9, 1, 2)])
    assert got == {7: 3, 8: 1}
    assert replica_claims([]) == {}


# -- contested proofs: a k = 1 task the client judged wrong (the verdict travels) ---------


def _wrong(offer, node, *, signer=CLIENT, outcome="wrong", task_id=None):
    """``signer``'s verdict on ``node`` for ``offer``'s task (or ``task_id``)."""
    fb = client_feedback(signer, offer, node, outcome, factories.far_future())
    if task_id is None:
        return fb
    return sign(dataclasses.replace(fb.record, task_id=task_id), signer)


def _contested(offer=None, outputs=("same", "same", "same"), verdict=None):
    offer = offer or _offer("k1")
    runs = [_run(offer, n, out) for n, out in zip(NODES, outputs, strict=False)]
    return dispute_proof(offer, runs, verdict or _wrong(offer, NODES[0]))


def test_a_contested_proof_of_agreeing_receipts_checks_and_round_trips():
    proof = _contested()
    assert decode_dispute(proof.encode()) == proof
    checked = _check(proof)
    assert checked.verdict is not None and checked.verdict.data == proof.verdict
    assert checked.proof() == proof
    # views collect the offer, claims, receipts and the verdict (the client's wrong on
    # that node, whatever its own digest says)
    assert checked.records()[-1].record_id == checked.verdict.record_id
    assert len(checked.records()) == 1 + 2 * 3 + 1
    # a plain proof's bytes carry no verdict key (as before contested proofs existed)
    assert "verdict" not in cbor2.loads(_proof().encode())
    # receipts that disagree may carry the verdict too (the client's own publication)
    assert _check(_contested(outputs=("bad", "right", "right"))).verdict is not None


def test_a_forged_or_mismatched_verdict_is_refused():
    offer = _offer("k1-hostile")
    runs = [_run(offer, n, "same") for n in NODES[:3]]
    k2 = factories.task_records(CLIENT, NODES[0], EPOCH, "k2", claimed=False).offer
    k2 = sign(dataclasses.replace(k2.record, redundancy=2), CLIENT)
    k2_runs = [_run(k2, n, "same") for n in NODES[:3]]
    flipped = _wrong(offer, NODES[0]).data
    flipped = flipped[:-1] + bytes([flipped[-1] ^ 1])
    cases = {
        # signed by somebody other than the offer's owner
        "forged": (
            dispute_proof(offer, runs, _wrong(offer, NODES[0], signer=OUTSIDER)),
            "bad_verdict",
        ),
        # an ok verdict disputes nothing
        "ok": (dispute_proof(offer, runs, _wrong(offer, NODES[0], outcome="ok")), "bad_verdict"),
        # on a node whose receipt the proof does not carry
        "elsewhere": (dispute_proof(offer, runs, _wrong(offer, NODES[4])), "bad_verdict"),
        # on another task
        "other_task": (
            dispute_proof(offer, runs, _wrong(offer, NODES[0], task_id=factories.digest("x"))),
            "bad_verdict",
        ),
        # a k >= 2 task: there the receipts themselves must disagree
        "k2": (dispute_proof(k2, k2_runs, _wrong(k2, NODES[0])), "bad_verdict"),
        # a bit flipped: the record signature fails
        "flipped": (dispute_proof(offer, runs, flipped), "bad_record"),
        # a receipt where the verdict goes
        "not_feedback": (dispute_proof(offer, runs, runs[1][1]), "wrong_type"),
        # one receipt, even with a verdict: nobody but the node ran it
        "alone": (dispute_proof(offer, runs[:1], _wrong(offer, NODES[0])), "malformed"),
    }
    for name, (proof, reason) in cases.items():
        assert _reason(proof).value == reason, name
    # hostile shapes: a verdict that is not bytes, too large, or an unknown key
    wire = _contested(offer).to_wire()
    for bad, reason in (
        ({**wire, "verdict": 5}, ProofReason.MALFORMED),
        # null: once read as a plain proof, a second encoding of one (found reviewing the
        # dispute-proof fuzz target)
        ({**wire, "verdict": None}, ProofReason.MALFORMED),
        ({**wire, "verdict": b"\xa0" * 4096}, ProofReason.OVERSIZE),
        ({**wire, "extra": b""}, ProofReason.MALFORMED),
    ):
        with pytest.raises(ProofError) as info:
            decode_dispute(cbor2.dumps(bad, canonical=True))
        assert info.value.reason is reason


def test_merging_keeps_the_verdict_in_any_order(tmp_path):
    offer = _offer("k1-merge")
    runs = [_run(offer, n, "same") for n in NODES[:4]]
    verdict = _wrong(offer, NODES[0])
    # the first replica's proof, the second's, and a plain proof of the same receipts
    # (not one a peer could keep alone: it needs the verdict; merged, the verdict stays)
    first = _check(dispute_proof(offer, runs[:2], verdict))
    second = _check(dispute_proof(offer, [runs[0], runs[1], runs[2]], verdict))
    for a, b in ((first, second), (second, first)):
        held = merge(merge(None, a), b) or a
        assert held.verdict is not None and held.verdict.record_id == verdict.record_id
    assert merge(second, first) is None  # adds nothing
    # a disagreeing proof without the verdict, merged either way, keeps it
    offer2 = _offer("k1-merge2")
    runs2 = [_run(offer2, n, out) for n, out in zip(NODES, ("bad", "right", "right"), strict=False)]
    v2 = _wrong(offer2, NODES[0])
    plain, contested = (
        _check(dispute_proof(offer2, runs2)),
        _check(dispute_proof(offer2, runs2, v2)),
    )
    assert merge(plain, contested).verdict.record_id == v2.record_id
    assert merge(contested, plain) is None
    # the book keeps it, on disk too
    book = _book(tmp_path)
    assert book.judge(dispute_proof(offer, runs[:2], verdict).encode()) is Verdict.ACCEPT
    assert book.judge(dispute_proof(offer, runs[:3], verdict).encode()) is Verdict.ACCEPT
    assert book.judge(
        _contested(offer, verdict=_wrong(offer, NODES[0], outcome="ok")).encode()
    ) is (Verdict.REJECT)
    assert book.refused["bad_verdict"] == 1
    again = _book(tmp_path)
    assert again.get(offer.record_id).verdict.record_id == verdict.record_id
    assert len(again.get(offer.record_id).receipts) == 3


def test_another_version_of_a_held_verdict_is_known_and_not_forwarded(tmp_path):
    """Re-signed versions of the verdict (a higher seq, a ground record ID) add nothing:
    the first verdict held stays and the proof is KNOWN (IGNOREd, not forwarded), so a
    client cannot flood every peer with new proofs of one offer. Only a verdict on a node
    of a smaller peer ID replaces it (at most once per carried node), so peers agree on
    what views read of it (client, node, task) in any order of arrival."""
    book = _book(tmp_path)
    offer = _offer("k1-flood")
    runs = [_run(offer, n, "same") for n in NODES[:3]]
    on = sorted((n for n in NODES[:3]), key=lambda n: n.peer_id)
    first = _wrong(offer, on[1])
    assert book.judge(dispute_proof(offer, runs, first).encode()) is Verdict.ACCEPT
    for seq in range(2, 8):
        again = sign(dataclasses.replace(first.record, seq=seq), CLIENT)
        assert book.judge(dispute_proof(offer, runs, again).encode()) is Verdict.IGNORE
    for latency in range(40):  # same seq, another record ID (smaller or not)
        ground = sign(dataclasses.replace(first.record, latency_ms=latency + 1), CLIENT)
        assert book.judge(dispute_proof(offer, runs, ground).encode()) is Verdict.IGNORE
    assert book.refused["known"] == 6 + 40
    assert book.get(offer.record_id).verdict.record_id == first.record_id
    # a verdict on the other nodes: the larger peer ID adds nothing, the smaller replaces
    assert book.judge(dispute_proof(offer, runs, _wrong(offer, on[2])).encode()) is (Verdict.IGNORE)
    assert book.judge(dispute_proof(offer, runs, _wrong(offer, on[0])).encode()) is (Verdict.ACCEPT)
    assert book.get(offer.record_id).verdict.record.node == on[0].peer_id
    # merged in either order, the same node
    a, b = (
        _check(dispute_proof(offer, runs, first)),
        _check(dispute_proof(offer, runs, _wrong(offer, on[0]))),
    )
    for x, y in ((a, b), (b, a)):
        held = merge(merge(None, x), y) or x
        assert held.verdict.record.node == on[0].peer_id


def test_a_held_contested_proof_outlives_its_verdict_on_a_restart(tmp_path):
    """Re-reading a held proof does not check liveness again: a verdict that expired since
    no longer fails the whole dispute on a restarted peer (its views drop the expired
    verdict at their own time, as every other peer's do)."""
    offer = _offer("k1-expiring")
    runs = [_run(offer, n, "same") for n in NODES[:3]]
    v = sign(dataclasses.replace(_wrong(offer, NODES[0]).record, expires=NOW + 30), CLIENT)
    book = _book(tmp_path)
    assert book.judge(dispute_proof(offer, runs, v).encode()) is Verdict.ACCEPT
    again = _book(tmp_path, now=NOW + 31)
    held = again.get(offer.record_id)
    assert held is not None and held.verdict.record_id == v.record_id
    assert len(held.receipts) == 3
    assert reread_dispute(dispute_proof(offer, runs, v).encode(), NOW + 31).verdict is not None
    # a forged one is still refused on reading back
    forged = dispute_proof(offer, runs, v).encode()
    forged = forged[:-1] + bytes([forged[-1] ^ 1])
    with pytest.raises(ProofError):
        reread_dispute(forged, NOW)


def test_a_contested_proof_must_live_until_the_last_view_that_counts_it(tmp_path):
    """With the reputation window, a peer refuses (``bad_verdict``, REJECT) a contested
    proof whose offer or verdict expires before the end of the last view that can count it
    (the replica's admission rule): the client must not choose when its refutation ends."""
    timing = DisputeTiming(EPOCH_S, 17, window_epochs=168)
    last = timing.contested_expiry(EPOCH)
    assert last == (EPOCH + 17 + 168) * EPOCH_S

    def check(proof):
        return check_dispute_proof(
            decode_dispute(proof.encode()),
            now=NOW,
            epochs=(EPOCH - 16, EPOCH),
            verdict_of=lambda peer, _epoch: VERDICTS.get(peer),
            ranks_of=_ranks,
            timing=timing,
        )

    offer = factories.task_records(
        CLIENT, NODES[0], EPOCH, "k1-life", claimed=False, expires=last
    ).offer
    runs = [_run(offer, n, "same") for n in NODES[:3]]
    fb = client_feedback(CLIENT, offer, NODES[0], "wrong", last)
    assert check(dispute_proof(offer, runs, fb)).verdict is not None
    short_fb = client_feedback(CLIENT, offer, NODES[0], "wrong", last - 1)
    with pytest.raises(ProofError) as err:
        check(dispute_proof(offer, runs, short_fb))
    assert err.value.reason is ProofReason.BAD_VERDICT and "verdict expires" in str(err.value)
    short = factories.task_records(
        CLIENT, NODES[0], EPOCH, "k1-short", claimed=False, expires=last - 1
    ).offer
    s_runs = [_run(short, n, "same") for n in NODES[:3]]
    with pytest.raises(ProofError) as err:
        check(dispute_proof(short, s_runs, client_feedback(CLIENT, short, NODES[0], "wrong", last)))
    assert err.value.reason is ProofReason.BAD_VERDICT and "offer expires" in str(err.value)
    # a plain proof (receipts that disagree, no verdict) is not held to it
    plain = [_run(short, n, out) for n, out in zip(NODES, ("bad", "right", "right"), strict=False)]
    assert check(dispute_proof(short, plain)).verdict is None
    # the book of a node (window given) rejects it
    book = DisputeBook(
        folder=tmp_path / "d",
        epoch_s=EPOCH_S,
        max_age_epochs=16,
        keep_epochs=200,
        now=lambda: NOW,
        verdict_of=lambda peer, _epoch: VERDICTS.get(peer),
        ranks_of=_ranks,
        window_epochs=168,
    )
    assert book.judge(dispute_proof(offer, runs, short_fb).encode()) is Verdict.REJECT
    assert book.judge(dispute_proof(offer, runs, fb).encode()) is Verdict.ACCEPT
