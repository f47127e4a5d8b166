"""Dispute escalation rules (repp2p.tasks.escalation): when a task is disputed, whom the
client asks next and when it stops, and what a node checks before it runs a replica."""

from __future__ import annotations

import dataclasses
import hashlib

import cbor2
import nacl.signing
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from repp2p.errors import ClaimError
from repp2p.matching import View, rank
from repp2p.network_params import NetworkParams
from repp2p.records import Receipt, SignedRecord, receipt_message, sign
from repp2p.tasks import (
    MAX_DISPUTE_RECEIPTS,
    Admit,
    ErrorCode,
    EscalationPlan,
    Reject,
    Vote,
    check_dispute,
    check_replica_claim,
    escalation_limit,
    escalation_ranking,
    in_replica_window,
    is_disputed,
    may_be_replica,
    named_signers,
    replica_rank,
    standing_verdict,
    take_replica,
)
from tests.core import factories as f
from tests.core.conftest import EPOCHS, base_scenario
from tests.tasks import helpers as h

RULE = {"quorum": 2, "confidence": 0.67, "min_support": 1.5}
A, B, C, D, E, G = "node-a", "node-b", "node-c", "node-d", "node-e", "node-g"


# -- is it disputed, is it decided -----------------------------------------------------------


def test_is_disputed_needs_two_outputs():
    assert not is_disputed([])
    assert not is_disputed([Vote(A, b"x"), Vote(B, b"x")])
    assert is_disputed([Vote(A, b"x"), Vote(B, b"y")])


def test_two_to_one_of_equal_standing_is_not_confident():
    votes = [Vote(A, b"right"), Vote(B, b"right"), Vote(C, b"wrong")]
    assert standing_verdict(votes, dict.fromkeys((A, B, C), 0.8), **RULE) is None


def test_three_to_one_of_equal_standing_is_confident():
    votes = [Vote(A, b"right"), Vote(B, b"right"), Vote(C, b"wrong"), Vote(D, b"right")]
    assert standing_verdict(votes, dict.fromkeys((A, B, C, D), 0.8), **RULE) == b"right"


def test_a_high_standing_cheater_needs_more_replicas_to_outvote():
    st = {C: 0.95, A: 0.6, B: 0.6, D: 0.6, E: 0.6}
    votes = [Vote(A, b"right"), Vote(B, b"right"), Vote(C, b"wrong")]
    assert standing_verdict(votes, st, **RULE) is None  # 1.2 / 2.15
    votes.append(Vote(D, b"right"))
    assert standing_verdict(votes, st, **RULE) is None  # 1.8 / 2.75 = 0.65
    votes.append(Vote(E, b"right"))
    assert standing_verdict(votes, st, **RULE) == b"right"  # 2.4 / 3.35


def test_one_voter_never_decides_alone_and_unknown_peers_weigh_nothing():
    # quorum: one node of any standing cannot carry a verdict
    assert standing_verdict([Vote(A, b"x"), Vote(B, b"y")], {A: 1.0, B: 0.0}, **RULE) is None
    # peers absent from the standings weigh 0: they cannot outvote anybody
    votes = [Vote(A, b"x"), Vote(B, b"x"), Vote(C, b"y"), Vote(D, b"y"), Vote(E, b"y")]
    assert standing_verdict(votes, {A: 0.9, B: 0.9}, **RULE) == b"x"


def test_a_peer_votes_once():
    votes = [Vote(A, b"x"), Vote(A, b"y"), Vote(B, b"x"), Vote(C, b"x")]
    assert standing_verdict(votes, dict.fromkeys((A, B, C), 0.9), **RULE) == b"x"


# -- the client's plan -----------------------------------------------------------------------


def plan(votes, standing=None, ranking=(A, B, C, D, E, G), max_replicas=6, **kw):
    st = standing if standing is not None else dict.fromkeys(ranking, 0.8)
    return EscalationPlan(ranking, votes, st, max_replicas=max_replicas, **RULE, **kw)


SPLIT = [Vote(A, b"right"), Vote(C, b"wrong"), Vote(B, b"right")]


def test_plan_asks_the_next_ranks_that_did_not_answer_until_confident():
    p = plan(SPLIT)
    assert p.verdict() is None
    assert p.next_replica() == (3, D)
    assert p.next_replica() is None  # one replica at a time
    p.on_replica(D, b"right")
    assert p.verdict() == b"right"
    assert p.next_replica() is None  # decided
    assert p.asked == (D,)


def test_plan_moves_on_when_a_replica_gives_no_answer_and_counts_it():
    p = plan(SPLIT, max_replicas=2, tried=(D,))
    assert p.next_replica() == (4, E)
    p.on_replica(E, None)
    assert p.next_replica() == (5, G)
    p.on_replica(G, b"wrong")  # a second wrong voter: still undecided
    assert p.verdict() is None
    assert p.next_replica() is None  # max_replicas asked
    assert p.asked == (E, G)


def test_plan_stops_when_the_ranking_is_exhausted():
    p = plan(SPLIT, ranking=(A, B, C, D))
    assert p.next_replica() == (3, D)
    p.on_replica(D, b"third")
    assert p.next_replica() is None


def test_plan_asks_nobody_for_an_undisputed_task_or_with_no_replicas():
    assert plan([Vote(A, b"x"), Vote(B, b"x")]).next_replica() is None
    assert plan(SPLIT, max_replicas=0).next_replica() is None


def test_plan_refuses_an_answer_from_a_peer_not_asked():
    p = plan(SPLIT)
    with pytest.raises(ValueError):
        p.on_replica(D, b"right")


# -- the escalation ranking ------------------------------------------------------------------

PARAMS = NetworkParams("test", epoch_s=f.EPOCH_S)
BEACON = hashlib.sha256(b"beacon").digest()


@pytest.fixture(scope="module")
def view_with_newcomers() -> View:
    s = base_scenario()
    for i in range(6):
        s.add_node(f"new-{i}")
        s.heartbeats(f"new-{i}", range(EPOCHS - 2, EPOCHS))
    return View.build(s.records, s.attested, epoch=EPOCHS, params=PARAMS)


def test_escalation_ranking_never_puts_newcomers_first(view_with_newcomers):
    v = view_with_newcomers
    new = {f.peer(f"new-{i}") for i in range(6)}
    explored = 0
    for i in range(400):
        o = f.offer("client-x", f"esc-{i}", EPOCHS, k=3).record
        esc = escalation_ranking(o, v, BEACON)
        assert len(esc) == min(escalation_limit(o, v), 14)  # 8 established + 6 newcomers
        assert not new & set(esc[:8]) and set(esc[8:]) <= new
        normal = rank(o, v, BEACON)
        if normal[0] in new:
            explored += 1  # the coin put newcomers first; escalation ignores it
        else:
            assert esc[: len(normal)] == normal  # same ranking as without the coin
    assert explored > 0


def test_escalation_limit_adds_the_replicas_to_the_claiming_ranks(view_with_newcomers):
    o = f.offer("client-x", "lim", EPOCHS, k=3).record
    mp = view_with_newcomers.matching_params
    assert escalation_limit(o, view_with_newcomers) == 3 + mp.failover_depth + (
        mp.dispute_max_replicas
    )


# -- the node's checks -----------------------------------------------------------------------

NODES = h.NODES[:6]


def enclave(node) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(hashlib.sha256(b"enclave/" + node.peer_id.encode()).digest())


def receipt(
    of: SignedRecord, node, output: str, *, key=None, task_id=None, sig=None, expires=None
) -> SignedRecord:
    k = key or enclave(node)
    unsigned = Receipt(
        task_id=task_id or of.record.task_id,
        offer_id=of.record_id,
        engine_id=of.record.engine_id,
        measurement=h.digest("echo"),
        input_digest=of.record.input_digest,
        output_digest=h.digest(output),
        started_ms=h.NOW_MS,
        finished_ms=h.NOW_MS + 10,
        result_key=bytes(k.verify_key),
        enclave_sig=bytes(64),
        seq=1,
        expires=of.record.expires if expires is None else expires,
    )
    signature = sig if sig is not None else k.sign(receipt_message(unsigned)).signature
    return sign(dataclasses.replace(unsigned, enclave_sig=signature), node)


def result_key_of(peer: str) -> bytes | None:
    for n in NODES:
        if n.peer_id == peer:
            return bytes(enclave(n).verify_key)
    return None


def check(envelopes, of=None):
    return check_dispute(
        envelopes,
        of or h.offer(k=3),
        now_ms=h.NOW_MS,
        may_have_run={n.peer_id for n in NODES},
        result_key_of=result_key_of,
    )


def split(of=None):
    of = of or h.offer(k=3)
    return [
        receipt(of, NODES[0], "right").data,
        receipt(of, NODES[1], "right").data,
        receipt(of, NODES[2], "wrong").data,
    ]


#: a receipt of each of NODES on one offer (the window rules read their signers only)
RECEIPTS = [receipt(h.offer(k=3), n, "right").data for n in NODES]


def bad(result, words: str) -> None:
    assert isinstance(result, Reject) and result.code is ErrorCode.BAD_DISPUTE, result
    assert words in result.detail, result.detail


def test_disagreeing_attested_receipts_admit_a_dispute():
    got = check(split())
    assert not isinstance(got, Reject)
    assert [s.signer for s in got] == [n.peer_id for n in NODES[:3]]


def test_a_dispute_needs_two_to_max_receipts():
    bad(check(split()[:1]), "2..")
    bad(check([]), "2..")
    bad(check(split() * (MAX_DISPUTE_RECEIPTS // 3 + 1)), "2..")


def test_agreeing_receipts_dispute_nothing():
    of = h.offer(k=3)
    bad(check([receipt(of, n, "same").data for n in NODES[:3]]), "agree")


def test_garbage_and_other_records_are_refused():
    bad(check([b"\x00garbage", split()[0]]), "receipt:")
    bad(check([h.offer_data(k=3), split()[0]]), "not a receipt")


def test_receipts_of_another_task_are_refused():
    other = h.offer(k=3, deadline_ms=h.NOW_MS + 50_000)
    bad(check([split()[0], receipt(other, NODES[2], "wrong").data]), "another task")
    wrong_task = receipt(h.offer(k=3), NODES[2], "wrong", task_id=h.digest("other"))
    bad(check([split()[0], wrong_task.data]), "another task")


def test_two_receipts_of_one_node_are_refused():
    of = h.offer(k=3)
    twice = [receipt(of, NODES[0], "right").data, receipt(of, NODES[0], "wrong").data]
    bad(check(twice), "two receipts")


def test_a_receipt_from_a_node_without_a_rank_is_refused():
    # A client cannot mint disagreement with identities outside the task's rankings.
    of = h.offer(k=3)
    bad(check([split()[0], receipt(of, h.STRANGER, "wrong").data]), "no rank")


def test_a_receipt_not_signed_by_the_attested_enclave_is_refused():
    of = h.offer(k=3)
    forged_key = nacl.signing.SigningKey(h.digest("not the enclave"))
    bad(check([split()[0], receipt(of, NODES[2], "wrong", key=forged_key).data]), "attested")
    bad(check([split()[0], receipt(of, NODES[2], "wrong", sig=b"\1" * 64).data]), "signature")


def test_a_receipt_from_an_unattested_node_is_refused():
    of = h.offer(k=3)
    got = check_dispute(
        split(of),
        of,
        now_ms=h.NOW_MS,
        may_have_run={n.peer_id for n in NODES},
        result_key_of=lambda peer: None,
    )
    bad(got, "attested")


def test_a_receipt_expiring_before_its_offer_is_refused():
    """An honest node's receipt expires with the offer it answers; one that expires
    earlier would leave the views before the dispute over it does."""
    of = h.offer(k=3)
    two = split(of)[:2]
    short = receipt(of, NODES[2], "wrong", expires=of.record.expires - 1)
    bad(check([*two, short.data], of), "before its offer")
    for expires in (of.record.expires, of.record.expires + 1):  # as long or longer: fine
        got = check([*two, receipt(of, NODES[2], "wrong", expires=expires).data], of)
        assert not isinstance(got, Reject), got


def test_an_expired_receipt_is_refused():
    of = h.offer(k=3)
    envs = split(of)
    later = (of.record.expires + 1) * 1000
    got = check_dispute(
        envs, of, now_ms=later, may_have_run={n.peer_id for n in NODES}, result_key_of=result_key_of
    )
    bad(got, "receipt:")


def test_replica_rank():
    esc = [n.peer_id for n in NODES]
    ran = {esc[0], esc[1], esc[2]}
    assert replica_rank(esc, esc[3], ran, 2) == 3
    assert replica_rank(esc, esc[4], ran, 2) == 4
    # beyond the first max_replicas nodes that did not run it
    got = replica_rank(esc, esc[5], ran, 2)
    assert isinstance(got, Reject) and got.code is ErrorCode.NOT_ASSIGNED
    got = replica_rank(esc, h.STRANGER.peer_id, ran, 6)
    assert isinstance(got, Reject) and got.code is ErrorCode.NOT_ASSIGNED
    # a node whose receipt is carried already ran it
    got = replica_rank(esc, esc[1], ran, 6)
    assert isinstance(got, Reject) and got.code is ErrorCode.REPLAYED
    # a node that did not answer in the first round (ranked, no receipt) may be a replica
    assert replica_rank(esc, esc[0], {esc[1], esc[2]}, 1) == 0


def test_take_replica():
    assert take_replica(4, active=0, capacity=1, already_taken=False) == Admit(4)
    assert take_replica(4, active=1, capacity=1, already_taken=False).code is (
        ErrorCode.NO_CAPACITY
    )
    assert take_replica(4, active=0, capacity=1, already_taken=True).code is ErrorCode.REPLAYED


def test_check_replica_claim():
    of = h.offer(k=3)
    node = NODES[3]
    check_replica_claim(h.claim(of, node, 9), of, peer=node.peer_id)
    for claim, peer, reason in (
        (h.claim(of, node, 9), NODES[4].peer_id, "not_a_claim"),
        (receipt(of, node, "x"), node.peer_id, "not_a_claim"),
        (h.claim(h.offer(k=3, deadline_ms=h.NOW_MS + 5_000), node, 9), node.peer_id, "wrong_offer"),
    ):
        with pytest.raises(ClaimError) as err:
            check_replica_claim(claim, of, peer=peer)
        assert err.value.reason.value == reason


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(st.binary(max_size=300), st.sampled_from(split())),
        max_size=MAX_DISPUTE_RECEIPTS + 2,
    )
)
def test_any_bytes_are_a_typed_answer_never_a_crash(envelopes):
    got = check(envelopes)
    if isinstance(got, Reject):
        assert got.code is ErrorCode.BAD_DISPUTE
    else:  # only real, disagreeing receipts get through
        assert len({s.record.output_digest for s in got}) >= 2


def test_every_replica_an_honest_plan_asks_is_in_the_nodes_window_after_a_failover():
    # First round of k=3 on the escalation ranking [A, B, C, D, ...]: B timed out (the
    # client released it) and D took its place by failover. The plan skips B as it skips
    # those that answered; the node's window must skip it too, or the last replica the plan
    # asks is refused (not_assigned) whenever an earlier one gave no receipt.
    ranking = (A, B, C, D, E, G, "node-h", "node-i")
    votes = [Vote(A, b"right"), Vote(C, b"wrong"), Vote(D, b"right")]
    st = dict.fromkeys(ranking, 0.8)
    st[C] = 0.99  # undecided until a fourth agreeing voter
    p = EscalationPlan(ranking, votes, st, max_replicas=3, **RULE, tried=(B,))
    ran = {A, C, D}
    asked = []
    while (step := p.next_replica()) is not None:
        r, peer = step
        asked.append(peer)
        assert replica_rank(ranking, peer, ran, 3, released={B}) == r
        p.on_replica(peer, None)  # each declines or fails: no receipt moves the window
    assert asked == [E, G, "node-h"]
    # without the owner's release of B, the node's window is [B, E, G]: the third is refused
    got = replica_rank(ranking, "node-h", ran, 3)
    assert isinstance(got, Reject) and got.code is ErrorCode.NOT_ASSIGNED


def test_released_nodes_are_skipped_but_never_admitted_twice():
    esc = [n.peer_id for n in NODES]
    # a released node is out of the window (it failed the task: the client will not ask it)
    got = replica_rank(esc, esc[1], {esc[0]}, 6, released={esc[1]})
    assert isinstance(got, Reject) and got.code is ErrorCode.NOT_ASSIGNED
    # releases only skip: the window is still max_replicas long, within the ranking
    assert replica_rank(esc, esc[3], {esc[0]}, 2, released={esc[1]}) == 3
    got = replica_rank(esc, esc[4], {esc[0]}, 2, released={esc[1]})
    assert isinstance(got, Reject) and got.code is ErrorCode.NOT_ASSIGNED


def test_the_largest_honest_dispute_fits_in_one_request():
    # The first round's receipts (redundancy <= 16) plus one per replica
    # (dispute_max_replicas <= 64): the client never has to drop one, since a dropped
    # receipt's signer would count, at the node, as a node that did not run the task.
    from repp2p.errors import ConfigError, RecordError
    from repp2p.matching import MatchingParams

    MatchingParams(dispute_max_replicas=64)
    with pytest.raises(ConfigError):
        MatchingParams(dispute_max_replicas=65)
    dataclasses.replace(h.offer(k=3).record, redundancy=16)
    with pytest.raises(RecordError):
        dataclasses.replace(h.offer(k=3).record, redundancy=17)
    assert MAX_DISPUTE_RECEIPTS >= 16 + 64
    of = h.offer(k=16)
    nodes = [h.identity(f"dispute-{i}") for i in range(16 + 64)]
    envs = [receipt(of, n, "right" if i % 3 else "wrong").data for i, n in enumerate(nodes)]
    keys = {n.peer_id: bytes(enclave(n).verify_key) for n in nodes}
    got = check_dispute(envs, of, now_ms=h.NOW_MS, may_have_run=set(keys), result_key_of=keys.get)
    assert not isinstance(got, Reject) and len(got) == 16 + 64


def test_a_node_outside_the_escalation_ranking_refuses_before_the_receipts():
    esc = [n.peer_id for n in NODES]
    assert may_be_replica(esc, esc[5]) is None
    got = may_be_replica(esc, h.STRANGER.peer_id)
    assert isinstance(got, Reject) and got.code is ErrorCode.NOT_ASSIGNED
    # the same answer replica_rank gives after the receipts, whatever they are
    late = replica_rank(esc, h.STRANGER.peer_id, {esc[0], esc[1]}, 64)
    assert isinstance(late, Reject) and late.code is got.code


def _unsigned(envelope: bytes) -> bytes:
    """``envelope`` with its signature zeroed: it names the same signer, proves nothing."""
    env = cbor2.loads(envelope)
    return cbor2.dumps({**env, "sig": bytes(64)}, canonical=True)


def test_the_replica_window_is_checked_on_the_named_signers_before_any_signature():
    # An owner can sign the input for any node, so it can replay a genuine request to every
    # node of the escalation ranking: one past the window must refuse before it verifies
    # the carried receipts (two signatures each), on the signers they name.
    of = h.offer(k=3)
    esc = [n.peer_id for n in NODES]
    named = [_unsigned(e) for e in split(of)]  # ran: esc[0..2], no valid signature
    bad(check(named, of), "receipt:")  # check_dispute refuses them: nothing was verified
    assert named_signers(named) == esc[:3]
    assert in_replica_window(esc, esc[3], named, 2) is None
    assert in_replica_window(esc, esc[4], named, 2) is None
    got = in_replica_window(esc, esc[5], named, 2)
    assert isinstance(got, Reject) and got.code is ErrorCode.NOT_ASSIGNED
    got = in_replica_window(esc, esc[1], named, 2)
    assert isinstance(got, Reject) and got.code is ErrorCode.REPLAYED
    # releases held skip as in replica_rank; releases carried (not verified yet) widen
    # the window by one place each, since each may skip one node
    assert in_replica_window(esc, esc[5], named, 2, released={esc[3]}) is None
    got = in_replica_window(esc, esc[3], named, 2, released={esc[3]})
    assert isinstance(got, Reject) and got.code is ErrorCode.NOT_ASSIGNED
    assert in_replica_window(esc, esc[5], named, 2, unverified_releases=1) is None
    # bytes that are no envelope: bad_dispute, as check_dispute would say after the rest
    for junk in (b"receipt-1", b"\xa0", cbor2.dumps({"signer": b"short"}), b"\0" * 70_000):
        bad(in_replica_window(esc, esc[3], [named[0], junk], 2), "no envelope")


@settings(max_examples=200, deadline=None)
@given(
    st.sets(st.integers(0, 5), min_size=1, max_size=4),
    st.sets(st.integers(0, 5), max_size=2),
    st.sets(st.integers(0, 5), max_size=2),
    st.integers(0, 5),
    st.integers(1, 4),
)
def test_the_early_window_check_refuses_nothing_the_full_rules_admit(
    ran, held, carried, me, max_replicas
):
    # Its one promise: whatever check_dispute and replica_rank admit (the receipts' signers
    # are then the names it read, the carried releases at most len(carried) nodes) it
    # lets through, and its refusals are the ones replica_rank would give.
    esc = [n.peer_id for n in NODES]
    envelopes = [RECEIPTS[i] for i in sorted(ran)]
    released = {esc[i] for i in held | carried}
    full = replica_rank(esc, esc[me], {esc[i] for i in ran}, max_replicas, released=released)
    early = in_replica_window(
        esc,
        esc[me],
        envelopes,
        max_replicas,
        released={esc[i] for i in held},
        unverified_releases=len(carried),
    )
    if not isinstance(full, Reject):
        assert early is None
    elif early is not None:
        assert early.code is full.code


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(["right", "wrong", "failed", "skipped"]), min_size=2, max_size=8),
    st.lists(st.sampled_from(["right", "wrong", None]), min_size=16, max_size=16),
    st.integers(1, 6),
)
def test_the_node_admits_every_replica_an_honest_plan_asks(first, replies, max_replicas):
    # The client's plan and the node's window must agree whatever happened in the first
    # round: answers (their receipts are carried), failures (released by the owner, handed
    # over), skipped ranks (no keys: neither answered nor released), and whatever each
    # replica does (a receipt, or none: declined, failed, unreachable).
    ranking = tuple(f"node-{i:02d}" for i in range(len(first) + 16))
    rounds = list(zip(ranking[: len(first)], first, strict=True))
    votes = [Vote(peer, o.encode()) for peer, o in rounds if o in ("right", "wrong")]
    assume(is_disputed(votes))
    failed = {peer for peer, o in rounds if o == "failed"}
    ran = {v.peer for v in votes}
    p = EscalationPlan(
        ranking,
        votes,
        dict.fromkeys(ranking, 0.8),
        max_replicas=max_replicas,
        **RULE,
        tried=failed,
    )
    replies_left = list(replies)
    while (step := p.next_replica()) is not None:
        r, peer = step
        assert replica_rank(ranking, peer, ran, max_replicas, released=failed) == r
        out = replies_left.pop(0)
        if out is not None:
            ran.add(peer)
        p.on_replica(peer, out.encode() if out is not None else None)
    assert len(p.asked) <= max_replicas
