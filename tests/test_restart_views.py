"""A digest-view peer restarted since an offer's epoch ranks the offer on a rebuilt view of
that epoch (docs/core.md, "Views of epochs a peer was down for"): it judges the offer's
dispute proofs and counts them as a peer that ran through built its views, with real
attestation verdicts (simulated evidence, enclave-signed heartbeats) and digest rows."""

from __future__ import annotations

from repp2p.digests import build_feedback, build_work
from repp2p.net.verdict import Verdict
from repp2p.node.disputes import DisputeBook
from repp2p.records import Heartbeat, sign
from repp2p.store import SqliteRecordStore
from repp2p.testing import factories
from repp2p.viewer import ViewKeeper
from tests.digests.dispute_fixtures import replica_run
from tests.test_freshness import DEV, EPOCH, FAR, POLICY, _attestation

DIGESTS = DEV.replace(reputation_source="digests")
NODES = [factories.identity(f"rs-node-{i}") for i in range(3)]
CLIENTS = [factories.identity(f"rs-client-{i}") for i in range(3)]
V = EPOCH  # the epoch the restarted peer builds its first view of
OFFER_EPOCH = V - 2


def _digests_of(epoch: int) -> list:
    """Signed work and feedback digests of one epoch of 12 tasks."""
    tasks = [
        factories.task_records(CLIENTS[i % 3], NODES[i % 3], epoch, f"rs{epoch}-{i}", expires=FAR)
        for i in range(12)
    ]
    records = [r for t in tasks for r in t.all()]
    out = []
    for node in NODES:
        out += [sign(p.digest, node) for p in build_work(node.peer_id, records, epoch, expires=FAR)]
    for client in CLIENTS:
        parts = build_feedback(client.peer_id, records, epoch, expires=FAR)
        out += [sign(p.digest, client) for p in parts]
    return out


def _store() -> SqliteRecordStore:
    """Attested nodes (one attestation each, renewed by none of them) heartbeating with
    their enclaves' signatures, and digest rows of the epochs before ``V``."""
    store = SqliteRecordStore(":memory:")
    now = V * DEV.epoch_s
    for node in NODES:
        store.put_many(_attestation(node, V - 20), now=now)
        beats = [factories.live_heartbeat(node, e, expires=FAR) for e in range(V - 20, V + 8)]
        store.put_many(beats, now=now)
    for e in range(V - 30, V - 1):
        store.put_many(_digests_of(e), now=now)
    return store


def _offer(label: str = "disputed"):
    return factories.task_records(
        CLIENTS[0], NODES[0], OFFER_EPOCH, label, claimed=False, expires=FAR
    ).offer


def _proof(offer) -> bytes:
    from repp2p.digests.disputes import dispute_proof

    runs = [
        replica_run(offer, n, out, expires=FAR)
        for n, out in zip(NODES, ("bad", "right", "right"), strict=True)
    ]
    return dispute_proof(offer, runs).encode()


def _book(keeper: ViewKeeper, folder, now: list[float]) -> DisputeBook:
    """A node's dispute book on ``keeper`` (as repp2p.node.app wires it)."""
    book = DisputeBook(
        folder=folder,
        epoch_s=DIGESTS.epoch_s,
        max_age_epochs=DIGESTS.dispute_lag - 1,
        keep_epochs=DIGESTS.dispute_lag + DIGESTS.reputation.window_epochs,
        now=lambda: now[0],
        verdict_of=keeper.verdict_at,
        ranks_of=keeper.offer_ranks,
    )
    keeper.disputes = book
    return book


def test_a_restarted_keeper_ranks_an_offer_of_an_epoch_it_was_down_for_as_the_others_did(
    tmp_path,
):
    store = _store()
    running = ViewKeeper(store, POLICY, DIGESTS)
    ran = {e: running.view(e) for e in range(V - 4, V + 1)}
    path = tmp_path / "penalties.cbor"
    restarted = ViewKeeper(store, POLICY, DIGESTS, book_path=path)
    current = restarted.view(V)
    assert current.digest == ran[V].digest
    assert all(current.evidence.verdicts[n.peer_id].verified for n in NODES)
    saved = path.read_bytes()
    verdicts = {n.peer_id: restarted.verdict_of(n.peer_id) for n in NODES}
    keys = {n.peer_id: restarted.enclave_keys(n.peer_id) for n in NODES}

    offer = _offer()
    ranks = restarted.offer_ranks(offer)
    assert ranks is not None and set(ranks) == {n.peer_id for n in NODES}
    assert ranks == running.offer_ranks(offer)
    # the rebuilt view is the one the running keeper built: the same view digest
    assert restarted.cached_view(OFFER_EPOCH) is None  # not one of its views
    assert restarted._rebuilt[OFFER_EPOCH].digest == ran[OFFER_EPOCH].digest
    # judged at that epoch's start, as then (not today's verdicts, which it leaves alone)
    rebuilt_verdicts = restarted._rebuilt[OFFER_EPOCH].evidence.verdicts
    assert rebuilt_verdicts == ran[OFFER_EPOCH].evidence.verdicts != current.evidence.verdicts
    assert {n.peer_id: restarted.verdict_of(n.peer_id) for n in NODES} == verdicts
    assert {n.peer_id: restarted.enclave_keys(n.peer_id) for n in NODES} == keys
    assert path.read_bytes() == saved  # the penalty book kept is not replaced
    # and the next view is the running keeper's
    assert restarted.view(V + 1).digest == running.view(V + 1).digest
    # an epoch older than the views a keeper holds is not rebuilt
    old = factories.task_records(CLIENTS[0], NODES[0], V - 10, "old", claimed=False).offer
    assert restarted.offer_ranks(old) is None


def test_a_restarted_keeper_judges_a_pending_proof_and_counts_it_as_a_running_one(tmp_path):
    store = _store()
    now = [V * DIGESTS.epoch_s + 1.0]
    running = ViewKeeper(store, POLICY, DIGESTS)
    running_book = _book(running, tmp_path / "running", now)
    for e in range(V - 4, V + 1):
        running.view(e)
    offer = _offer()
    proof = _proof(offer)
    assert running_book.judge(proof) is Verdict.ACCEPT

    # restarted at V: before its first view, no view ranks the offer (pending); the first
    # view makes the rebuild possible and the retry holds it
    restarted = ViewKeeper(store, POLICY, DIGESTS)
    book = _book(restarted, tmp_path / "restarted", now)
    restarted.refresh_keys(int(now[0]))  # the nodes' keys are known: only ranks are missing
    assert book.judge(proof) is Verdict.IGNORE
    assert book.refused == {"unranked": 1} and book.pending == 1
    restarted.view(V)
    assert book.retry_pending(force=True) == 1 and book.get(offer.record_id) is not None

    # the views that count the dispute (from OFFER_EPOCH + dispute_lag) judge it alike,
    # and so does a keeper restarted later with the proof only on disk (no rank cached)
    count = running.dispute_timing.count(OFFER_EPOCH, offer.record.deadline_ms)
    assert count == OFFER_EPOCH + DIGESTS.dispute_lag
    now[0] = count * DIGESTS.epoch_s + 1.0
    later = ViewKeeper(store, POLICY, DIGESTS)
    later_book = _book(later, tmp_path / "restarted", now)  # reads what `book` kept
    assert len(later_book) == 1
    views = [k.view(count) for k in (running, restarted, later)]
    assert views[0].digest == views[1].digest == views[2].digest
    # each node's claim held to a rank, so its receipt counts
    ev = views[2].evidence
    assert offer.record_id in ev.record_ids
    assert len(ev.claim_node) == len(ev.receipt_node) == len(NODES)
    # a peer restarted after the offer's epoch left the views it holds is not given the
    # rank: it leaves the receipts out while the dispute stays in the window (documented)
    too_late = ViewKeeper(store, POLICY, DIGESTS)
    last = OFFER_EPOCH + too_late.held_epochs + 1
    assert last > count  # a view that counts the dispute
    _book(too_late, tmp_path / "restarted", now)
    late_ev = too_late.view(last).evidence
    assert offer.record_id in late_ev.record_ids and len(late_ev.receipt_node) == 0
    assert len(running.view(last).evidence.receipt_node) == len(NODES)


def test_a_node_that_renewed_its_attestation_since_keeps_its_rank_and_a_later_one_gets_none():
    """The store keeps a node's current attestation only: one renewed after the offer's
    epoch stands for the one the view of that epoch judged when the node's enclave signed
    heartbeats before it with the key attested now; a node attested only after the
    offer's epoch gets no verdict in the rebuilt view, as in the view then."""
    store = _store()
    running = ViewKeeper(store, POLICY, DIGESTS)
    for e in range(V - 4, V):
        running.view(e)
    renewed, new = NODES[1], factories.identity("rs-node-new")
    now = V * DEV.epoch_s
    store.put_many(_attestation(renewed, V - 1)[1:], now=now)  # same enclave, new evidence
    store.put_many(_attestation(new, V - 1), now=now)
    beats = [factories.live_heartbeat(new, e, expires=FAR) for e in range(V - 1, V + 8)]
    store.put_many(beats, now=now)
    current = running.view(V)
    assert current.evidence.verdicts[new.peer_id].verified  # attested and live by now
    restarted = ViewKeeper(store, POLICY, DIGESTS)
    assert restarted.view(V).digest == current.digest
    offer = _offer("renewed")
    ranks = restarted.offer_ranks(offer)
    assert ranks == running.offer_ranks(offer) and new.peer_id not in ranks
    assert set(ranks) == {n.peer_id for n in NODES}
    rebuilt = restarted._rebuilt[OFFER_EPOCH].evidence.verdicts
    assert rebuilt[renewed.peer_id] == restarted.verdict_of(renewed.peer_id)  # judged now
    assert rebuilt[renewed.peer_id].verified and new.peer_id not in rebuilt
    ran = running.cached_view(OFFER_EPOCH).evidence.verdicts
    assert rebuilt[NODES[0].peer_id] == ran[NODES[0].peer_id]  # the others: as then


def test_ranks_taken_before_the_store_synced_are_taken_again_at_the_next_view():
    # Restarted and not synced yet: the heartbeats of the epochs it was down for are
    # missing, so a rebuilt view of the offer's epoch has nobody live and ranks nobody.
    # Those ranks must not stick: once the store has synced, the next view ranks again.
    store = SqliteRecordStore(":memory:")
    now = V * DEV.epoch_s
    down = range(V - 4, V - 1)
    for node in NODES:
        store.put_many(_attestation(node, V - 20), now=now)
        epochs = [e for e in range(V - 20, V + 8) if e not in down]
        store.put_many(
            [factories.live_heartbeat(n, e, expires=FAR) for n in [node] for e in epochs], now=now
        )
    for e in range(V - 30, V - 1):
        store.put_many(_digests_of(e), now=now)
    keeper = ViewKeeper(store, POLICY, DIGESTS)
    keeper.view(V)
    offer = _offer()
    assert keeper.offer_ranks(offer) is None  # nobody live there yet: not ranked, not cached
    beats = [factories.live_heartbeat(n, e, expires=FAR) for n in NODES for e in down]
    store.put_many(beats, now=now)
    keeper.view(V + 1)
    synced = ViewKeeper(store, POLICY, DIGESTS)
    synced.view(V + 1)
    expected = synced.offer_ranks(offer)
    assert expected and keeper.offer_ranks(offer) == expected


def test_a_rebuilt_view_does_not_depend_on_which_epochs_were_rebuilt_first():
    # An equivocating node puts a penalty in the book; the book a rebuilt view steps from
    # must not depend on the order in which proofs made the keeper rebuild epochs.
    store = _store()
    liar = NODES[2]
    store.put_many(
        [
            sign(Heartbeat(epoch=V - 10, load=load, tasks_done=0, seq=1, expires=FAR), liar)
            for load in (0, 1)
        ],
        now=V * DEV.epoch_s,
    )

    def rebuilt(order: list[int]) -> dict[int, bytes]:
        keeper = ViewKeeper(store, POLICY, DIGESTS)
        keeper.view(V)
        for e in order:
            keeper.offer_ranks(
                factories.task_records(
                    CLIENTS[0], NODES[0], e, f"o{e}", claimed=False, expires=FAR
                ).offer
            )
        return {e: keeper._rebuilt[e].digest for e in order}

    forward, backward = rebuilt([V - 3, V - 2]), rebuilt([V - 2, V - 3])
    assert forward == backward


def test_ranks_kept_on_disk_count_an_old_offers_receipts_after_a_restart(tmp_path):
    """A node keeps its offers' ranks across restarts (``ranks_path``): restarted after
    the offer's epoch left the views it rebuilds, it counts the dispute's receipts as the
    running peers do (the same scores), where a keeper without the file leaves them out;
    a damaged file is set aside and the ranks start empty."""
    store = _store()
    now = [V * DIGESTS.epoch_s + 1.0]
    path = tmp_path / "offer-ranks.cbor"
    running = ViewKeeper(store, POLICY, DIGESTS, ranks_path=path)
    running_book = _book(running, tmp_path / "running", now)
    for e in range(V - 4, V + 1):
        running.view(e)
    offer = _offer()
    assert running_book.judge(_proof(offer)) is Verdict.ACCEPT
    count = running.dispute_timing.count(OFFER_EPOCH, offer.record.deadline_ms)
    last = OFFER_EPOCH + running.held_epochs + 1
    assert last > count  # a view that counts the dispute, past the epochs rebuilt
    for e in range(V + 1, last + 1):
        running.view(e)
    assert path.exists()
    now[0] = last * DIGESTS.epoch_s + 1.0

    def restarted(ranks_path):
        keeper = ViewKeeper(store, POLICY, DIGESTS, ranks_path=ranks_path)
        _book(keeper, tmp_path / "running", now)  # reads the proof the node kept
        return keeper.view(last)

    kept, without, ran = restarted(path), restarted(None), running.view(last)
    # (the view digest names the proofs counted, not what they were judged)
    assert kept.digest == ran.digest == without.digest
    assert len(kept.evidence.receipt_node) == len(ran.evidence.receipt_node) == len(NODES)
    assert len(without.evidence.receipt_node) == 0
    for name in ("quality", "standing", "disputes_lost", "score"):
        assert (getattr(kept.reputation, name) == getattr(ran.reputation, name)).all()
    # a damaged file: set aside, no ranks (the receipts are left out), nothing raised
    path.write_bytes(path.read_bytes()[:-5])
    assert len(restarted(path).evidence.receipt_node) == 0
    assert not path.exists() and path.with_suffix(".damaged").exists()


def test_ranks_that_could_not_be_saved_are_saved_after_a_later_view(tmp_path):
    store = _store()
    folder = tmp_path / "not-yet"
    keeper = ViewKeeper(store, POLICY, DIGESTS, ranks_path=folder / "offer-ranks.cbor")
    keeper.view(V)
    assert keeper.offer_ranks(_offer())
    keeper.view(V + 1)  # the folder is missing: logged, nothing raised, not saved
    assert keeper._assignments.changed and not folder.exists()
    folder.mkdir()
    keeper.view(V + 2)
    assert not keeper._assignments.changed
    saved = (folder / "offer-ranks.cbor").read_bytes()
    assert saved == keeper._assignments.to_bytes()
