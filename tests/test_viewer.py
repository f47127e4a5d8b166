"""ViewKeeper: what a peer's per-epoch view is built from."""

from __future__ import annotations

import dataclasses

from repp2p.attestation import load_policy
from repp2p.config import BOOTSTRAP_DIR
from repp2p.digest_ledger import HeldProofs
from repp2p.matching import beacon
from repp2p.records import FEED_TYPES, Heartbeat, NodeAd, sign
from repp2p.reputation import AttestedNode, PenaltyBook
from repp2p.reputation.pairs import COLUMNS
from repp2p.reputation.penalties import PenaltyEntry
from repp2p.store import SqliteRecordStore
from repp2p.testing import factories
from repp2p.testing.network import dev_params
from repp2p.viewer import ViewKeeper, before_epoch

NOW = 1  # the views here are of epochs a few 10-s epochs after the unix epoch
FAR = factories.far_future(NOW)
DEV = dev_params(10).replace(reputation_source="records")  # 10-s epochs, views of records


def _keeper(store, params=DEV, **kw):
    return ViewKeeper(store, load_policy(BOOTSTRAP_DIR / "policy-dev.toml"), params, **kw)


def test_equivocation_kept_as_evidence_becomes_an_offence_in_the_view():
    store = SqliteRecordStore(":memory:")
    liar = factories.identity("liar")
    a = sign(Heartbeat(epoch=5, load=0, tasks_done=0, seq=1, expires=FAR), liar)
    b = sign(Heartbeat(epoch=5, load=1, tasks_done=0, seq=1, expires=FAR), liar)
    store.put_many([a, b], now=NOW)
    assert store.count() == 1  # one current record; the other half is evidence
    (offence,) = _keeper(store).view(7).reputation.offences
    assert offence.kind == "equivocation" and offence.peer_id == liar.peer_id
    assert set(offence.record_ids) == {a.record_id, b.record_id}


def test_views_use_records_of_earlier_epochs_only():
    node = factories.identity("n")
    beats = [
        sign(Heartbeat(epoch=e, load=0, tasks_done=0, seq=1, expires=FAR), node) for e in (5, 6, 7)
    ]
    ad = sign(factories.sample_records(now=NOW)[0], node)
    offers = [
        sign(dataclasses.replace(factories.sample_records(now=NOW, client=node)[3], epoch=e), node)
        for e in (5, 6)
    ]
    kept = before_epoch([*beats, *offers, ad], 7, DEV)
    assert [s.record.epoch for s in kept if s.type == "Heartbeat"] == [5, 6]
    assert [s.record.epoch for s in kept if s.type == "TaskOffer"] == [5]  # two epochs late
    assert ad in kept  # ads (and attestations) always count
    # The lags are the network's: another network's file may set them.
    slow = DEV.replace(task_record_lag=1, heartbeat_lag=2)
    kept = before_epoch([*beats, *offers, ad], 7, slow)
    assert [s.record.epoch for s in kept if s.type == "Heartbeat"] == [5]
    assert [s.record.epoch for s in kept if s.type == "TaskOffer"] == [5, 6]


def test_the_keeper_builds_views_with_the_networks_params():
    store = SqliteRecordStore(":memory:")
    keeper = _keeper(store)
    assert keeper.epoch_s == 10 and keeper.view(4).params is DEV
    other = _keeper(
        store, DEV.replace(matching=dataclasses.replace(DEV.matching, failover_depth=4))
    )
    # Same records, other parameters: the view digests differ, so claims would show it.
    assert other.view(4).digest != keeper.view(4).digest


def test_beacon_is_a_pure_function_of_the_epoch():
    assert beacon(7) == beacon(7) != beacon(8)
    assert len(beacon(7)) == 32


def test_the_penalty_book_survives_a_restart(tmp_path):
    store = SqliteRecordStore(tmp_path / "records.db")
    liar = factories.identity("liar")
    a = sign(Heartbeat(epoch=5, load=0, tasks_done=0, seq=1, expires=FAR), liar)
    b = sign(Heartbeat(epoch=5, load=1, tasks_done=0, seq=1, expires=FAR), liar)
    ad = sign(factories.sample_records(now=NOW)[0], liar)  # a node: the book keeps nodes
    store.put_many([a, b, ad], now=NOW)
    policy = load_policy(BOOTSTRAP_DIR / "policy-dev.toml")
    path = tmp_path / "penalties.cbor"
    first = ViewKeeper(store, policy, DEV, book_path=path)
    book = first.view(7).penalties
    assert book.is_penalised(liar.peer_id, 8) and path.exists()
    # A phase-out that no record could re-derive (the low scores that caused it are gone).
    kept = PenaltyBook(7, {**book.entries, "12D3KooWphased": PenaltyEntry(until_epoch=50)})
    path.write_bytes(kept.to_bytes())
    again = ViewKeeper(store, policy, DEV, book_path=path)
    restarted = again.view(9).penalties
    assert restarted.epoch == 9
    assert restarted.is_penalised("12D3KooWphased", 9)  # carried over from the file
    assert restarted.is_penalised(liar.peer_id, 9)
    # Without the file, the phase-out is forgotten (what the file is for).
    fresh = ViewKeeper(store, policy, DEV).view(9).penalties
    assert not fresh.is_penalised("12D3KooWphased", 9)


def test_a_damaged_penalty_book_is_ignored_not_fatal(tmp_path):
    path = tmp_path / "penalties.cbor"
    path.write_bytes(b"\xa1\x01garbage")
    store = SqliteRecordStore(":memory:")
    keeper = _keeper(store, book_path=path)
    assert keeper.view(3).penalties.epoch == 3  # built from an empty book
    assert PenaltyBook.from_bytes(path.read_bytes()).epoch == 3  # and replaced
    assert path.with_suffix(".damaged").read_bytes() == b"\xa1\x01garbage"  # nothing lost


def test_a_squatting_offer_cannot_move_or_hide_a_tasks_records():
    client, mallory, node = (factories.identity(n) for n in ("client", "mallory", "n"))
    records = factories.sample_records(now=NOW, client=client)
    offer = sign(dataclasses.replace(records[3], epoch=5), client)
    receipt = sign(records[5], node)  # the node's receipt for that task
    # Mallory signs an offer under the victim's task id, with an epoch no view ever reaches.
    squat = sign(dataclasses.replace(records[3], epoch=2**64 - 1, seq=2), mallory)
    for order in ([offer, squat, receipt], [squat, offer, receipt], [receipt, squat, offer]):
        kept = before_epoch(order, 7, DEV)
        assert receipt in kept and offer in kept
        assert squat not in kept
    # Without the real offer, the receipt waits: the squatter's epoch never counts.
    assert receipt not in before_epoch([squat, receipt], 7, DEV)


# -- views from digest count rows (reputation_source = "digests") -------------------------

DIGESTS = DEV.replace(reputation_source="digests")
D_NODES = [factories.identity(f"dnode-{i}") for i in range(3)]
D_CLIENTS = [factories.identity(f"dclient-{i}") for i in range(4)]


def _digests_of(epoch: int, *, wrong_node: int = 0) -> list:
    """Signed work and feedback digests of one epoch of tasks (``wrong_node`` returns
    wrong results on every other task)."""
    from repp2p.digests import build_feedback, build_work

    tasks = []
    for i in range(24):
        client, n = D_CLIENTS[i % 4], i % 3
        outcome = "wrong" if n == wrong_node and i % 2 else "ok"
        tasks.append(
            factories.task_records(client, D_NODES[n], epoch, f"d{epoch}-{i}", outcome=outcome)
        )
    records = [r for t in tasks for r in t.all()]
    out = []
    for node in D_NODES:
        out += [sign(p.digest, node) for p in build_work(node.peer_id, records, epoch, expires=FAR)]
    for client in D_CLIENTS:
        parts = build_feedback(client.peer_id, records, epoch, expires=FAR)
        out += [sign(p.digest, client) for p in parts]
    return out


def _block_claims(keeper, epoch: int) -> int:
    """The claims the folded work rows of ``epoch`` report (every one a ranked node's)."""
    return int(keeper.pairs.block(epoch).counts[COLUMNS.index("claims")].sum())


class _NoTaskReads(SqliteRecordStore):
    """A store that fails any read of per-task records (or of everything at once)."""

    def query(self, *, type=None, **kw):
        assert type is not None, "a digest view read the whole store"
        assert type not in FEED_TYPES, f"a digest view read {type} records"
        return super().query(type=type, **kw)


def _verified_keeper(store, params=DIGESTS):
    """A keeper whose verdicts call every ad's node verified (attestation is not what
    these tests are about; the simulated evidence of the factories does not verify)."""
    keeper = _keeper(store, params)

    def verdicts(records, now):
        ads = {r.signer: r.record for r in records if isinstance(r.record, NodeAd)}
        return {
            peer: AttestedNode(
                peer_id=peer,
                tee_kind=ad.tee_kind,
                measurements=frozenset(e.measurement for e in ad.engines),
                verified=True,
                attested_at=now,
            )
            for peer, ad in ads.items()
        }

    keeper.verdicts = verdicts  # type: ignore[method-assign]
    return keeper


def _digest_store(epochs, store=None):
    store = store or _NoTaskReads(":memory:")
    ad = factories.sample_records(now=NOW)[0]
    for node in D_NODES:
        store.put(sign(ad, node), now=NOW)
        for e in range(0, 40):
            store.put(
                sign(Heartbeat(epoch=e, load=0, tasks_done=0, seq=1, expires=FAR), node), now=NOW
            )
    for e in epochs:
        store.put_many(_digests_of(e), now=NOW)
    return store


def test_a_digest_view_counts_folded_rows_and_reads_no_task_record():
    store = _digest_store(range(10, 20))
    # task records in the store are not read (the store fails the test if they are)
    extra = factories.task_records(D_CLIENTS[0], D_NODES[0], 12, "extra", expires=FAR)
    store.put_many(extra.all(), now=NOW)
    keeper = _verified_keeper(store)
    view = keeper.view(26)  # counts digest epochs <= 26 - digest_lag = 20
    assert DIGESTS.digest_lag == DIGESTS.digests.seal_lag_epochs + 2 == 6
    assert keeper.digest_window(26)[1] == 20
    assert keeper.pairs.epochs[-1] == 20 and keeper.pairs.folded(10)
    table = view.reputation
    wrong, good = table.get(D_NODES[0].peer_id), table.get(D_NODES[1].peer_id)
    assert good.feedback_mass > 0 and wrong.quality < good.quality
    assert wrong.permille < good.permille
    assert set(view.peers) == {n.peer_id for n in D_NODES}
    assert view.demand == max(_block_claims(keeper, e) for e in (18, 19, 20)) > 0


def test_digest_views_fold_each_epoch_once_and_agree_after_a_restart():
    store = _digest_store(range(10, 20))
    keeper = _verified_keeper(store)
    first = keeper.view(25)  # counts epochs <= 19
    assert keeper.pairs.folded(19) and not keeper.pairs.folded(20)
    # a peer restarted later folds the same epochs from its store: the same view
    assert _verified_keeper(store).view(25).digest == first.digest
    # digests of an epoch arriving after it was folded do not change it
    store.put_many(_digests_of(19, wrong_node=1), now=NOW)  # new digests, other IDs
    before = keeper.pairs.block(19).ids_hash
    keeper.view(26)
    assert keeper.pairs.block(19).ids_hash == before
    # but a peer that folds epoch 19 now holds other digests: its view digest differs
    assert _verified_keeper(store).view(25).digest != first.digest


def test_the_view_digest_names_the_folded_epochs_and_the_source():
    store = _digest_store(range(10, 20), SqliteRecordStore(":memory:"))
    by_digests = _verified_keeper(store).view(25)
    by_records = _verified_keeper(store, DEV).view(25)
    assert by_digests.digest != by_records.digest  # another source, other params
    fewer = _verified_keeper(_digest_store(range(10, 19))).view(25)
    assert fewer.digest != by_digests.digest


def test_the_view_digest_follows_the_documented_encoding():
    """docs/records.md, "View digest", re-implemented from the text with cbor2 alone."""
    import hashlib

    import cbor2

    store = _digest_store(range(10, 20), SqliteRecordStore(":memory:"))
    view = _verified_keeper(store).view(24)
    ev = view.evidence
    body = {
        "v": 1,
        "epoch": 24,
        "params": dataclasses.asdict(DIGESTS),
        "records": hashlib.sha256(b"".join(sorted(ev.record_ids))).digest(),
        "digests": [
            [e, hashlib.sha256(cbor2.dumps(sorted({d.record_id for d in _digests_of(e)}))).digest()]
            if 10 <= e < 20
            else [e, hashlib.sha256(b"\x80").digest()]
            for e in range(24 - DIGESTS.digest_lag - DIGESTS.reputation.window_epochs + 1, 19)
            if e >= 0
        ],
        "verdicts": [
            [
                p,
                v.tee_kind,
                sorted(v.measurements),
                v.verified,
                v.tcb_degraded,
                v.failed,
                v.attested_at,
            ]
            for p, v in sorted(ev.verdicts.items())
        ],
        "penalties": hashlib.sha256(view.penalties.to_bytes()).digest(),
        "engine_pins": None,
    }
    encoded = cbor2.dumps(body, canonical=True)
    assert view.digest == hashlib.sha256(b"repp2p/2/view\0" + encoded).digest()


def test_a_digest_view_turns_equivocations_of_node_records_and_digests_into_offences():
    store = _digest_store(range(10, 20), SqliteRecordStore(":memory:"))
    liar, forger = D_NODES[1], D_CLIENTS[2]
    a = sign(Heartbeat(epoch=15, load=0, tasks_done=0, seq=1, expires=FAR), liar)
    b = sign(Heartbeat(epoch=15, load=1, tasks_done=0, seq=1, expires=FAR), liar)
    # two different digests for one (epoch, part): an equivocation of a digest
    one = sign(factories.empty_work_digest(3, expires=FAR), forger)
    two = sign(
        dataclasses.replace(
            factories.empty_work_digest(3, expires=FAR), leaf_count=0, expires=FAR - 1
        ),
        forger,
    )
    store.put_many([a, b, one, two], now=NOW)
    view = _verified_keeper(store).view(25)
    offenders = {o.peer_id: o for o in view.reputation.offences}
    assert offenders[liar.peer_id].record_ids == tuple(sorted((a.record_id, b.record_id)))
    assert set(offenders[forger.peer_id].record_ids) == {one.record_id, two.record_id}
    assert view.reputation.get(liar.peer_id).is_offender
    assert liar.peer_id not in [
        view.peers[i] for i in range(len(view.peers)) if view.base_eligible[i]
    ]


def test_older_views_find_their_epochs_still_folded():
    short = DIGESTS.replace(reputation=dataclasses.replace(DIGESTS.reputation, window_epochs=5))
    store = _digest_store(range(8, 22), SqliteRecordStore(":memory:"))
    keeper = _verified_keeper(store, short)
    built = {e: keeper.view(e).digest for e in range(22, 31)}  # a node, epoch after epoch
    # view 30 counts 20..24; the views of the held epochs before it (built, or rebuilt
    # by a restarted peer) need the held_epochs before 20
    assert keeper.pairs.epochs[0] == 20 - keeper.held_epochs == 14
    keeper.pairs.fold = None  # type: ignore[assignment]  # any new fold would fail now
    del keeper._views[24]
    assert keeper.view(24).digest == built[24]  # its digest epochs 14..18, all still folded


# -- dispute proofs in digest views: when they count, and the demand they leave ------------


class _HeldDisputes:
    """What a keeper reads of a ``DisputeBook``: ``counted(lo, hi, timing)``, the records
    of the proofs whose count epoch is in ``lo .. hi`` (``HeldProofs``' rule), and
    ``prune``. Records the windows asked for."""

    def __init__(self, disputes):
        self.held = HeldProofs(disputes, [])  # (offer epoch, the proof's records)
        self.asked = []

    def counted(self, lo, hi, timing):
        self.asked.append((lo, hi))
        return self.held.counted(lo, hi, timing)

    def prune(self, current_epoch):
        return 0


def _dispute(epoch: int, label: str, deadline_ms: int | None = None) -> tuple[int, list]:
    """The records a dispute proof of one task of ``epoch`` carries: the offer (redundancy
    1) and a claim and a receipt of each of the three digest nodes (the first rank and two
    replicas), one of them with another output."""
    records = []
    for i, node in enumerate(D_NODES):
        t = factories.task_records(
            D_CLIENTS[0],
            node,
            epoch,
            label,
            outcome=None,
            output="wrong" if i == 0 else "right",
            deadline_ms=deadline_ms,
        )
        records += [t.offer] if i == 0 else []
        records += [t.claim, t.receipt]
    return epoch, records


def _first_view_with(keeper: ViewKeeper, offer_id: bytes, epochs: range) -> int | None:
    """The first of ``epochs`` whose digest view counts the dispute of ``offer_id``."""
    return next((v for v in epochs if offer_id in keeper.view(v).evidence.record_ids), None)


def test_with_long_epochs_an_early_deadline_dispute_counts_at_the_next_boundary_in_both():
    """600-s epochs, the default 120-s proof grace: a dispute whose deadline is more than
    the grace before its epoch's end counts from the view of E + 1 (the next boundary),
    one whose deadline is later from E + 2, in the keeper and the simulator alike."""

    from repp2p.sim.digest_views import DigestViews

    params = DIGESTS.replace(epoch_s=600)
    assert params.proof_grace_s == 120
    e = 14
    store = _digest_store(range(0, 20))
    sim = DigestViews(params)
    for into_s, first in ((30, e + 1), (479, e + 1), (480, e + 2), (590, e + 2)):
        deadline_ms = (e * 600 + into_s) * 1000
        counts, _keeper, _offer = _counts_in_both(
            store, params, sim, e, f"long-{into_s}", deadline_ms, range(e, e + 6)
        )
        assert counts == (first, first, first)


def _counts_in_both(store, params, sim, e, label, deadline_ms, views):
    """``((first keeper view counting it, the simulator's count, the keeper's rule's),
    keeper, offer ID)`` of a dispute of a task of epoch ``e`` with this deadline."""
    import numpy as np

    keeper = _verified_keeper(store, params)
    _epoch, records = _dispute(e, label, deadline_ms)
    offer_id = records[0].record_id
    keeper.disputes = _HeldDisputes([(e, records)])
    first = _first_view_with(keeper, offer_id, views)
    simulated = int(sim.dispute_counts(np.array([e]), np.array([deadline_ms]))[0])
    return (first, simulated, keeper.dispute_timing.count(e, deadline_ms)), keeper, offer_id


def test_a_far_deadline_dispute_counts_from_dispute_lag_in_the_keeper_and_the_simulator():
    """A proof of an offer of epoch E whose deadline is past the seal counts in the digest
    views from E + dispute_lag (seal_lag_epochs + 1: the last receipt of E is signed
    before the seal, and peers take proofs of E for one more epoch), before the epoch's
    rows (digest_lag); the simulator reads the same window."""
    from repp2p.sim.digest_views import DigestViews

    lag = DIGESTS.dispute_lag
    assert lag == DIGESTS.digests.seal_lag_epochs + 1 == 5 < DIGESTS.digest_lag
    e = 14
    store = _digest_store(range(0, 20))
    keeper = _verified_keeper(store)
    epoch, records = _dispute(e, "late")  # deadline: an hour after factories.NOW
    offer_id = records[0].record_id
    assert keeper.dispute_timing.count(e, records[0].record.deadline_ms) == e + lag
    keeper.disputes = _HeldDisputes([(epoch, records)])
    before = keeper.view(e + lag - 1)
    assert keeper.disputes.asked[-1] == keeper.dispute_window(e + lag - 1)
    assert offer_id not in before.evidence.record_ids
    asked = len(keeper.disputes.asked)
    at = keeper.view(e + lag)
    # (the windows asked after it are those of the view of E, rebuilt to rank the offer)
    window = (e + lag - DIGESTS.reputation.window_epochs + 1, e + lag)
    assert keeper.disputes.asked[asked] == window
    assert offer_id in at.evidence.record_ids
    # the rows of E are not in that view yet: the proof counts first
    assert keeper.digest_window(e + lag)[1] < e
    # the simulator's digest views read the keeper's windows and count epochs
    sim = DigestViews(DIGESTS)
    for v in (e + lag - 1, e + lag, 40, 400):
        assert sim.dispute_window(v) == keeper.dispute_window(v)
        assert sim.digest_window(v) == keeper.digest_window(v)


def test_a_short_deadline_dispute_counts_two_epochs_after_its_offer_in_both():
    """A deadline in the offer's own epoch E closes the dispute at the end of E + 1: it
    counts from the view of E + 2 (task_record_lag), in the keeper and the simulator
    alike; a deadline in E + 2 counts from E + 4; the last view that counts either is
    window_epochs after the first."""

    from repp2p.sim.digest_views import DigestViews

    es = DIGESTS.epoch_s
    e = 14
    store = _digest_store(range(0, 20))
    sim = DigestViews(DIGESTS)
    for deadline_epoch, first in ((e, e + 2), (e + 2, e + 4)):
        deadline_ms = (deadline_epoch * es + es // 2) * 1000
        counts, keeper, offer_id = _counts_in_both(
            store, DIGESTS, sim, e, f"short-{deadline_epoch}", deadline_ms, range(e, e + 8)
        )
        assert counts == (first, first, first)
        w = DIGESTS.reputation.window_epochs
        assert offer_id in keeper.view(first + w - 1).evidence.record_ids
        assert offer_id not in keeper.view(first + w).evidence.record_ids


def test_digest_demand_leaves_out_the_replicas_of_disputed_offers():
    """An epoch's demand is its work digests' claims less the answers of its disputed
    offers beyond each offer's redundancy (here two replicas per disputed offer)."""
    store = _digest_store(range(10, 21))
    keeper = _verified_keeper(store)
    keeper.disputes = _HeldDisputes([_dispute(e, f"busy-{e}") for e in (18, 19, 20)])
    view = keeper.view(26)  # digest window up to 20, disputes up to 21
    claims = [_block_claims(keeper, e) for e in (18, 19, 20)]
    assert claims == [24, 24, 24]
    assert view.demand == 24 - 2
    # without the disputes, the demand is every claim
    assert _verified_keeper(store).view(26).demand == 24
