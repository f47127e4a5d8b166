"""Who audits a digest, and what seeds the draw (docs/digests.md, "Audits"): only the
attested nodes of the view of the audit epoch. A work digest is any key's to sign, so
before, 50 throwaway keys each publishing one empty work digest held nearly every audit
slot (the digests of their friends were audited by them, i.e. never), and each digest of
``E + 1`` such a key published was one more try at the seed of ``E``'s draw."""

from __future__ import annotations

import dataclasses

import pytest

from repp2p.attestation import SimulatedEnclave, load_policy
from repp2p.clock import ClockAPI
from repp2p.config import BOOTSTRAP_DIR
from repp2p.digests import audit_seed, auditors, challenge_indices
from repp2p.digests.params import audit_entropy
from repp2p.digests.unserved import NO_ANSWER, UnservedCharge
from repp2p.matching import beacon
from repp2p.net.params import AuditParams
from repp2p.net.verdict import Verdict
from repp2p.network_params import NetworkParams
from repp2p.node.audits import (
    Auditor,
    EvidenceLog,
    attested_nodes,
    audit_candidates,
    draw_entropy,
    plan,
)
from repp2p.node.metrics import NodeMetrics
from repp2p.records import Attestation, FeedbackDigest, NodeAd, WorkDigest, sign
from repp2p.store import SqliteRecordStore
from repp2p.testing import factories
from repp2p.viewer import ViewKeeper

PARAMS = NetworkParams.load("dev").replace(reputation_source="records")
DP = PARAMS.digests
A = factories.NOW // PARAMS.epoch_s  # the audit epoch
E = A - DP.grace_epochs  # the audited epoch: A = audit_epoch(E)
NOW = A * PARAMS.epoch_s
FAR = factories.far_future(NOW)
NODES = [factories.identity(f"audit-node-{i}") for i in range(6)]
THROWAWAY = [factories.identity(f"throwaway-{i}") for i in range(50)]
#: a key with an ad and heartbeats but no attestation: a node, not an attested one
UNATTESTED = factories.identity("audit-unattested")


def _ad() -> NodeAd:
    return dataclasses.replace(factories.sample_records(now=NOW)[0], expires=FAR)


def _node(identity, ad: NodeAd | None = None, *, measurement: bytes | None = None) -> list:
    """Ad, a simulated attestation of ``A - 1`` and enclave-signed heartbeats: an attested,
    live node (``measurement``: its enclave runs other code than the runtime's)."""
    ad = ad or _ad()
    att = factories.simulated_attestation(
        identity, ad, A - 1, at=(A - 1) * PARAMS.epoch_s + 1, expires=FAR
    )
    if measurement is not None:
        seed = factories.digest("other/" + identity.peer_id)
        enclave = SimulatedEnclave(seed=seed, measurement=measurement)
        at = (A - 1) * PARAMS.epoch_s + 1
        evidence = enclave.attest(
            identity.peer_id, att.enc_key, att.result_key, A - 1, beacon(A - 1), at
        )
        att = dataclasses.replace(att, evidence=evidence)
    beats = [factories.live_heartbeat(identity, e, expires=FAR) for e in range(A - 8, A)]
    return [sign(ad, identity), sign(att, identity), *beats]


def _work(identity, epoch: int, *, leaves: bool = True):
    """A work digest of ``identity`` for ``epoch``: four leaves (a made-up root) or empty."""
    if not leaves:
        return sign(factories.empty_work_digest(epoch, expires=FAR), identity)
    (work, _) = factories.sample_digests(expires=FAR)
    return sign(dataclasses.replace(work, epoch=epoch), identity)


def _store(*, filed_before: frozenset[str] = frozenset()) -> SqliteRecordStore:
    """The honest nodes (attested, each with a digest of four leaves of ``E`` and an empty
    one of ``E + 1``), an unattested node with a digest of ``E``, and 50 throwaway keys
    with one empty work digest of ``E`` each. A node in ``filed_before`` files its digest
    under ``E - 1`` instead (as a batch of two epochs ending there)."""
    store = SqliteRecordStore(":memory:")
    for node in NODES:
        mine = _work(node, E - 1 if node.peer_id in filed_before else E)
        store.put_many([*_node(node), mine, _work(node, E + 1, leaves=False)], now=NOW)
    unattested = [r for r in _node(UNATTESTED) if not isinstance(r.record, Attestation)]
    store.put_many([*unattested, _work(UNATTESTED, E)], now=NOW)
    store.put_many([_work(key, E, leaves=False) for key in THROWAWAY], now=NOW)
    return store


def _keeper(store) -> ViewKeeper:
    return ViewKeeper(store, load_policy(BOOTSTRAP_DIR / "policy-dev.toml"), PARAMS)


def _assignments(store, nodes) -> dict[bytes, list[str]]:
    """``digest id -> the keys it falls to``, over every key of the store."""
    out: dict[bytes, list[str]] = {}
    for key in [n.peer_id for n in (*NODES, UNATTESTED, *THROWAWAY)]:
        for challenge in plan(store, key, E, DP, nodes):
            out.setdefault(challenge.digest.record_id, []).append(key)
    return out


HONEST = frozenset(n.peer_id for n in NODES)


@pytest.mark.parametrize("source", ["records", "digests"])
def test_the_attested_nodes_are_the_views_attested_nodes_and_no_other_key(source):
    store = _store()
    params = PARAMS.replace(reputation_source=source)
    keeper = ViewKeeper(store, load_policy(BOOTSTRAP_DIR / "policy-dev.toml"), params)
    assert attested_nodes(keeper.view(A)) == HONEST


def test_an_enclave_of_other_code_an_offender_and_an_engineless_ad_are_no_auditors():
    store = _store()
    other = factories.identity("audit-other-code")
    # a genuine (here: simulated) TEE that runs other code, advertising no engine: its
    # evidence verifies and no engine of its ad contradicts it, but it vouches for nothing
    engineless = dataclasses.replace(_ad(), engines=())
    store.put_many(_node(other, engineless, measurement=bytes(32)), now=NOW)
    # an attested node running the runtime with no engine: establishes nothing either
    bare = factories.identity("audit-no-engine")
    store.put_many(_node(bare, engineless), now=NOW)
    # an attested node that equivocated (two heartbeats of one epoch): an offender
    liar = factories.identity("audit-liar")
    store.put_many(_node(liar), now=NOW)
    store.put(factories.live_heartbeat(liar, A - 2, load=1, expires=FAR), now=NOW)
    view = _keeper(store).view(A)
    ev = view.evidence
    assert ev.verified[ev.index(other.peer_id)] and ev.verified[ev.index(liar.peer_id)]
    assert view.reputation.get(liar.peer_id).is_offender
    assert attested_nodes(view) == HONEST


def test_throwaway_keys_never_audit_and_every_honest_digest_keeps_its_auditor():
    store = _store()
    nodes = attested_nodes(_keeper(store).view(A))
    signers = {d.signer for d in store.query(type=WorkDigest.TYPE, epoch=E)}
    honest = [d for d in store.query(type=WorkDigest.TYPE, epoch=E) if d.signer in HONEST]

    # the attack is real: drawn among every signer, the throwaway keys take most slots
    seed = audit_seed(E, DP.grace_epochs, audit_entropy([]))
    taken = [auditors(seed, d.record_id, signers, exclude={d.signer})[0] in HONEST for d in honest]
    assert taken.count(False) > len(honest) // 2

    assert audit_candidates(store, E, nodes) == sorted(HONEST)
    assigned = _assignments(store, nodes)
    # every digest with leaves (the unattested node's too) is audited, by attested nodes
    with_leaves = [d for d in store.query(type=WorkDigest.TYPE, epoch=E) if d.record.leaf_count]
    assert len(with_leaves) == len(honest) + 1
    assert set(assigned) == {d.record_id for d in with_leaves}
    for digest in with_leaves:
        chosen = assigned[digest.record_id]
        assert len(chosen) == DP.auditors_per_digest
        assert set(chosen) <= HONEST - {digest.signer}


def test_no_view_no_audit_and_a_view_without_attested_nodes_draws_nobody():
    store = _store()
    assert _assignments(store, frozenset()) == {}
    # a throwaway key told it is attested by nobody is drawn by nobody either
    assert plan(store, THROWAWAY[0].peer_id, E, DP, HONEST) == []


def test_keys_that_are_no_attested_node_cannot_steer_the_draws_entropy():
    store = _store()
    nodes = attested_nodes(_keeper(store).view(A))
    before = draw_entropy(store, E, nodes)
    drawn = _assignments(store, nodes)
    challenges = {
        c.digest.record_id: c.indices for n in NODES for c in plan(store, n.peer_id, E, DP, nodes)
    }
    # candidate digests of E + 1 from throwaway keys, the unattested node and a client:
    # each would have been one more try at a seed that spares a colluder's leaves
    grind = [_work(key, E + 1, leaves=False) for key in THROWAWAY[:20]]
    grind.append(_work(UNATTESTED, E + 1, leaves=False))
    (_, feedback) = factories.sample_digests(expires=FAR)
    grind.append(sign(dataclasses.replace(feedback, epoch=E + 1), factories.identity("a-client")))
    for signed in grind:
        store.put(signed, now=NOW)
        assert draw_entropy(store, E, nodes) == before
    assert _assignments(store, nodes) == drawn
    assert {
        c.digest.record_id: c.indices for n in NODES for c in plan(store, n.peer_id, E, DP, nodes)
    } == challenges
    # an attested node's digest of E + 1 is entropy, as before
    late = factories.identity("audit-late-node")
    store.put_many([*_node(late), _work(late, E + 1, leaves=False)], now=NOW)
    nodes = attested_nodes(_keeper(store).view(A))
    assert late.peer_id in nodes
    assert draw_entropy(store, E, nodes) != before


class _Clock(ClockAPI):
    def now(self) -> float:
        return float(NOW)

    async def sleep_until(self, when: float) -> None:  # pragma: no cover - not used
        raise AssertionError


def _auditor(store, views) -> Auditor:
    async def never(peer):  # pragma: no cover - no question is asked here
        raise AssertionError

    return Auditor(
        peer_id=NODES[0].peer_id,
        store=store,
        clock=_Clock(),
        epoch_s=PARAMS.epoch_s,
        params=DP,
        audit=AuditParams(),
        open_stream=never,
        nodes=views,
        metrics=NodeMetrics(),
        evidence=EvidenceLog(None),
    )


async def test_a_charge_by_a_throwaway_key_is_rejected_on_gossip():
    """An unserved charge's accuser must have been drawn, among the attested nodes: one
    naming a throwaway key that was drawn among all signers is REJECTed; without a view of
    the audit epoch the charge is IGNOREd (neither forwarded nor re-checked)."""
    store = _store()
    nodes = attested_nodes(_keeper(store).view(A))
    signers = {d.signer for d in store.query(type=WorkDigest.TYPE, epoch=E)}
    entropy = draw_entropy(store, E, nodes)
    seed = audit_seed(E, DP.grace_epochs, entropy)
    honest = [d for d in store.query(type=WorkDigest.TYPE, epoch=E) if d.signer in HONEST]
    # a digest whose auditor, drawn among every signer, was a throwaway key
    drawn = {d.record_id: auditors(seed, d.record_id, signers, exclude={d.signer}) for d in honest}
    digest = next(d for d in honest if drawn[d.record_id][0] not in HONEST)
    thief = drawn[digest.record_id][0]
    (right,) = auditors(seed, digest.record_id, sorted(nodes), exclude={digest.signer})
    index = challenge_indices(seed, digest.record_id, digest.record.leaf_count, DP.audit_samples)[0]

    def charge(accuser: str) -> bytes:
        return UnservedCharge(digest.data, index, entropy, accuser, NO_ANSWER).encode()

    held = _auditor(store, lambda epoch: nodes if epoch == A else None)
    assert held.attested(E) == nodes  # its own draw of E's audits, at A's start
    assert held.on_charge(charge(thief)) is Verdict.REJECT
    assert held.on_charge(charge(right)) is Verdict.ACCEPT
    unheld = _auditor(store, lambda epoch: None)
    assert unheld.on_charge(charge(right)) is Verdict.IGNORE
    assert unheld.on_charge(b"\xa1\x64kind\x68unserved") is Verdict.REJECT
    assert await unheld.audit_epoch(E) == []


async def test_a_charge_under_an_entropy_of_the_accusers_choosing_is_not_forwarded():
    """A charge names the entropy it was drawn under, and the accuser must be drawn under
    it: an attested node that tries entropies until it is drawn for a leaf of another
    node's digest could charge any digest at will, each charge costing its publisher an
    answer to every peer that re-checks it. Only a charge drawn under the entropy this
    peer holds travels on (IGNORE otherwise: its own store may be the one that differs)."""
    store = _store()
    nodes = attested_nodes(_keeper(store).view(A))
    candidates = audit_candidates(store, E, nodes)
    held = draw_entropy(store, E, nodes)
    accuser = candidates[-1]
    digest = next(
        d
        for d in store.query(type=WorkDigest.TYPE, epoch=E)
        if d.signer != accuser and d.record.leaf_count
    )
    for i in range(10_000):  # the accuser grinds an entropy that draws it
        entropy = i.to_bytes(32, "big")
        seed = audit_seed(E, DP.grace_epochs, entropy)
        if accuser in auditors(seed, digest.record_id, candidates, exclude={digest.signer}):
            break
    else:  # pragma: no cover - about one in len(candidates) - 1 entropies draws it
        raise AssertionError("no entropy drew the accuser")
    assert entropy != held
    index = challenge_indices(seed, digest.record_id, digest.record.leaf_count, DP.audit_samples)[0]
    charge = UnservedCharge(digest.data, index, entropy, accuser, NO_ANSWER).encode()
    auditor = _auditor(store, lambda epoch: nodes if epoch == A else None)
    assert auditor.attested(E) == nodes  # its own draw of E's audits, at A's start
    assert auditor.on_charge(charge) is Verdict.IGNORE
    # the same accusation under the entropy every peer holds, by whoever that draws
    seed = audit_seed(E, DP.grace_epochs, held)
    drawn = auditors(seed, digest.record_id, candidates, exclude={digest.signer})[0]
    index = challenge_indices(seed, digest.record_id, digest.record.leaf_count, DP.audit_samples)[0]
    honest = UnservedCharge(digest.data, index, held, drawn, NO_ANSWER).encode()
    assert auditor.on_charge(honest) is Verdict.ACCEPT


async def test_a_charge_never_builds_the_view_of_its_audit_epoch_on_gossip():
    """``on_charge`` runs inside pubsub's validator: looking up the audit epoch's attested
    nodes there could build that epoch's view (the node's ``nodes`` builds the current
    one when the view service has not yet), holding up all gossip for a view build at the
    moment a hostile sender picks. Before the auditor's own draw has looked them up, a
    charge is IGNOREd and no view is built; after, the same charge is ACCEPTed."""
    store = _store()
    nodes = attested_nodes(_keeper(store).view(A))
    entropy = draw_entropy(store, E, nodes)
    seed = audit_seed(E, DP.grace_epochs, entropy)
    digest = next(d for d in store.query(type=WorkDigest.TYPE, epoch=E) if d.signer in HONEST)
    (accuser,) = auditors(seed, digest.record_id, sorted(nodes), exclude={digest.signer})
    index = challenge_indices(seed, digest.record_id, digest.record.leaf_count, DP.audit_samples)[0]
    charge = UnservedCharge(digest.data, index, entropy, accuser, NO_ANSWER).encode()
    keeper = _keeper(store)  # holds no view yet: as at A's start, before the view service
    built: list[int] = []

    def nodes_of(epoch: int) -> frozenset[str]:
        # what the node wires (repp2p.node.app): the current epoch's view, built if need be
        if keeper.cached_view(epoch) is None:
            built.append(epoch)
        return attested_nodes(keeper.view(epoch))

    auditor = _auditor(store, nodes_of)
    assert auditor.on_charge(charge) is Verdict.IGNORE
    assert built == [] and keeper.cached_view(A) is None
    # nothing was remembered either: the same charge once the draw has run is new
    assert auditor.attested(E) == nodes  # the auditor's own draw may build it
    assert built == [A]
    assert auditor.on_charge(charge) is Verdict.ACCEPT
    assert auditor.on_charge(charge) is Verdict.IGNORE  # seen
    assert built == [A]


def test_the_feedback_digests_of_the_epoch_are_audited_by_attested_nodes_too():
    store = _store()
    (_, feedback) = factories.sample_digests(expires=FAR)
    client = factories.identity("audited-client")
    fd = sign(dataclasses.replace(feedback, epoch=E), client)
    store.put(fd, now=NOW)
    assert [d.record_id for d in store.query(type=FeedbackDigest.TYPE, epoch=E)] == [fd.record_id]
    nodes = attested_nodes(_keeper(store).view(A))
    assigned = _assignments(store, nodes)
    assert len(assigned[fd.record_id]) == DP.auditors_per_digest
    assert set(assigned[fd.record_id]) <= HONEST


def test_the_simulator_draws_its_auditors_among_the_attested_nodes_only():
    """repp2p.sim mirrors the rule: an online node that is no attested node (an
    unattested sybil) publishes its digest and is audited, but never audits."""
    import numpy as np

    from repp2p.sim.digests import CostModel, DigestFlow

    model = CostModel(enabled=True, clients_follow_gossip=False)
    a = np.array
    for seed in range(20):
        flow = DigestFlow(model, DP, 1, 60, 1, np.random.default_rng(seed))
        costs, _ = flow.epoch(
            3,
            3,
            a([0, 1, 2]),  # three nodes online; node 2 is not attested
            a([0] * 6),  # six offers of client 0
            100,
            (a([0, 0, 1, 1, 2, 2]), a(range(100, 106))),
            (a([0, 0, 1, 1, 2, 2]), a(range(100, 106))),
            (a([0] * 6), a([0, 0, 1, 1, 2, 2]), a(range(100, 106)), a([0] * 6), a([100] * 6)),
            np.zeros(3),
            auditors=a([0, 1]),
        )
        audits = costs.cpu["audits"] / model.audit_us
        assert audits[1 + 2] == 0  # the unattested node judges nothing ...
        assert costs.counts["audit_challenges"] == 2 * 3 + 6  # ... and every digest is judged
        assert audits.sum() == 2 * 3 + 6


def test_batching_nodes_keep_their_seats_whatever_the_epoch_their_batch_is_filed_under():
    """Where work batches span ``M`` epochs, a node files its batch under its last epoch:
    the candidates of ``E`` are the attested nodes with a work digest filed under any of
    the ``M`` epochs up to ``E``, not only under ``E`` (about one in ``M`` of them)."""
    nodes = attested_nodes(_keeper(_store()).view(A))
    everyone = audit_candidates(_store(), E, nodes)
    late = NODES[0].peer_id
    store = _store(filed_before=frozenset({late}))
    assert late in everyone and late not in audit_candidates(store, E, nodes)
    assert audit_candidates(store, E, nodes, span=2) == everyone
