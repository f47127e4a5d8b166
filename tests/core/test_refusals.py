"""Refusals in views: a task the node's enclave refused for the client's own input counts
against the client (its credibility), never against the node, and only a refusal that
checks out (client-signed input, the node's attested enclave key) counts at all."""

from __future__ import annotations

import dataclasses
import hashlib

import nacl.signing

from repp2p.records import Refusal, refusal_message, sign, sign_sealed_input
from repp2p.reputation import collect, compute
from tests.core import factories as f
from tests.core.conftest import EPOCHS

NOW = EPOCHS * f.EPOCH_S
ENC_KEY = f.digest("enclave-x25519")


def enclave_key(node: str) -> nacl.signing.SigningKey:
    """The node's attested enclave key: the one its receipts are signed with, too."""
    return f.enclave_key(node)


def refusal(
    node: str, off, *, client: str | None = None, code="bad_seal", signer=None, expires=f.FAR
):
    """The node's record of its enclave's refusal of ``off``'s input (sealed bytes b"junk"),
    expiring at ``expires`` (an honest enclave signs the offer's: :data:`f.FAR`)."""
    o = off.record
    client_sig = sign_sealed_input(
        f.key(client or _name_of(off)),
        task_id=o.task_id,
        node=f.peer(node),
        enc_key=ENC_KEY,
        sealed=b"junk",
    )
    enclave = signer or enclave_key(node)
    unsigned = Refusal(
        task_id=o.task_id,
        offer_id=off.record_id,
        client=off.signer,
        enc_key=ENC_KEY,
        sealed_digest=hashlib.sha256(b"junk").digest(),
        client_sig=client_sig,
        code=code,
        result_key=bytes(enclave_key(node).verify_key),
        enclave_sig=b"\0" * 64,
        seq=1,
        expires=expires,
    )
    signed = dataclasses.replace(
        unsigned, enclave_sig=enclave.sign(refusal_message(unsigned)).signature
    )
    return sign(signed, f.key(node))


_NAMES: dict[str, str] = {}


def _name_of(off) -> str:
    return _NAMES[off.signer]


def scenario(hostile: str):
    """Nodes "victim" and "other" serve clients c0 and "bad" honestly for EPOCHS epochs
    (so "bad" earns trust); then, unless ``hostile == "none"``, "bad" sends the victim 20
    undecryptable inputs and gives timeout feedback on each; the victim's enclave refuses
    them (``refused``), or its refusals are not there (``blamed``) or signed by the node's
    own key in place of its attested enclave key (``forged``)."""
    s = f.Scenario()
    for name in ("victim", "other"):
        s.add_node(name)
        s.verdicts[f.peer(name)] = dataclasses.replace(
            s.verdicts[f.peer(name)], result_key=bytes(enclave_key(name).verify_key)
        )
        s.heartbeats(name, range(EPOCHS + 1))
    for client in ("c0", "bad"):
        _NAMES[f.peer(client)] = client
    for e in range(EPOCHS):
        for client in ("c0", "bad"):
            s.task(client, "victim", e, "ok")
            s.task(client, "other", e, "ok")
    if hostile == "none":
        return s
    for i in range(20):
        off = s.task("bad", "victim", EPOCHS - 1 - i % 10, "timeout", deliver=False)
        if hostile != "blamed":
            forged = f.key("victim") if hostile == "forged" else None
            s.records.append(refusal("victim", off, signer=forged))
    return s


def table(s):
    ev = collect(s.records, s.attested, now=NOW)
    return ev, compute(ev, now=NOW, epoch_s=f.EPOCH_S)


def test_refused_inputs_do_not_lower_the_node():
    _, none = table(scenario("none"))
    _, refused = table(scenario("refused"))
    _, blamed = table(scenario("blamed"))
    victim, other = f.peer("victim"), f.peer("other")
    # Without refusals the hostile client's timeouts hurt the node...
    assert blamed.get(victim).success < none.get(victim).success
    assert blamed.get(victim).throughput < none.get(victim).throughput
    assert blamed.get(victim).permille < none.get(victim).permille
    assert blamed.get(victim).success < blamed.get(other).success
    # ...with them the victim stands exactly where the node with the same honest history
    # and no attack stands (both lose the same: the hostile client's praise weighs less).
    for component in ("success", "throughput", "quality", "latency"):
        got = getattr(refused.get(victim), component)
        assert abs(got - getattr(refused.get(other), component)) < 1e-12, component
    assert refused.get(victim).permille == refused.get(other).permille
    assert refused.get(victim).permille > blamed.get(victim).permille


def test_refused_inputs_cost_the_client_its_credibility():
    ev, refused = table(scenario("refused"))
    _, blamed = table(scenario("blamed"))
    bad, c0 = ev.index(f.peer("bad")), ev.index(f.peer("c0"))
    assert len(ev.refusals) == 20
    assert refused.client_credibility[bad] < 0.5
    assert blamed.client_credibility[bad] == 1.0
    assert refused.client_credibility[c0] == 1.0


def test_a_refusal_not_signed_by_the_attested_enclave_counts_for_nothing():
    ev, forged = table(scenario("forged"))
    _, blamed = table(scenario("blamed"))
    assert ev.refusals == ()
    victim = f.peer("victim")
    assert forged.get(victim).success == blamed.get(victim).success
    assert forged.get(victim).permille == blamed.get(victim).permille


def test_a_refusal_that_expires_before_its_offer_counts_for_nothing():
    # Both signatures genuine, but the enclave was given an earlier expiry than the
    # offer's: it would leave the views before the task's other records.
    s = scenario("none")
    off = s.task("bad", "victim", EPOCHS - 2, "timeout", deliver=False)
    s.records.append(refusal("victim", off, expires=off.record.expires - 1))
    ev, _ = table(s)
    assert ev.refusals == ()
    s.records[-1] = refusal("victim", off)  # the offer's own expiry: it counts
    ev, _ = table(s)
    assert len(ev.refusals) == 1


def test_a_refusal_of_a_node_whose_key_is_unknown_or_of_another_client_counts_for_nothing():
    s = scenario("refused")
    # The victim's verdict without a result key (not verified by this peer's policy, say).
    s.verdicts[f.peer("victim")] = dataclasses.replace(s.verdicts[f.peer("victim")], result_key=b"")
    ev, _ = table(s)
    assert ev.refusals == ()
    # A refusal that pins an honest client's offer on a commitment signed by someone else.
    s = scenario("none")
    off = s.task("c0", "victim", EPOCHS - 2, "timeout", deliver=False)
    s.records.append(refusal("victim", off, client="bad"))
    ev, _ = table(s)
    assert ev.refusals == ()


def test_views_without_refusals_are_unchanged():
    # No refusal anywhere: the same bits as before refusals existed (the simulator's
    # reference traces rest on it): nothing refused, nothing excused.
    s = scenario("blamed")
    ev, t = table(s)
    assert ev.refusals == ()
    again = compute(dataclasses.replace(ev, refusals=()), now=NOW, epoch_s=f.EPOCH_S)
    assert t.score.tobytes() == again.score.tobytes()


def test_the_ledger_pays_a_refusing_node_like_one_never_attacked():
    # The ledger pays work x quality (permille): the refused tasks are no undelivered
    # work of the node, so its pay equals that of the node with the same honest history.
    from repp2p.ledger import LedgerState, settle
    from repp2p.reputation import PenaltyBook

    def pay(hostile: str) -> dict[str, int]:
        ev, t = table(scenario(hostile))
        s = settle(LedgerState(), ev, t, PenaltyBook(), epoch=EPOCHS - 2)
        return dict(s.payouts)

    victim, other = f.peer("victim"), f.peer("other")
    refused, blamed = pay("refused"), pay("blamed")
    assert refused[victim] == refused[other] > 0
    assert blamed[victim] < blamed[other]
