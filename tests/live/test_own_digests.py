"""A peer's own digests: built from its store, identical after a restart, signed once."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import trio
import trio.testing

from repp2p.digests import AuditOutcome, verify_audit
from repp2p.digests.audit import AuditResponse
from repp2p.digests.params import DigestParams
from repp2p.node.digests import ClaimedOffers, FailedTasks, OwnDigests
from repp2p.records import FeedbackDigest, Outcome, WorkDigest, sign
from repp2p.store import SqliteRecordStore
from repp2p.testing import factories
from repp2p.testing.network import dev_params
from tests.digests.helpers import refusal_of

from .own_digests_harness import Clock, Gossip, own_digests

NETWORK = dev_params(epoch_s=60)
EPOCH = factories.NOW // 60 - 10
NODE, CLIENT = factories.identity("digest-node"), factories.identity("digest-client")
OTHER = factories.identity("digest-other-node")


def _peer(identity, role, store, clock, failed=None) -> tuple[OwnDigests, Gossip]:
    return own_digests(
        identity, role, store, clock, network=NETWORK, params=DigestParams(), failed=failed
    )


def _tasks():
    out = [factories.task_records(CLIENT, NODE, EPOCH, f"t{i}") for i in range(6)]
    out.append(
        factories.task_records(CLIENT, NODE, EPOCH, "late", delivered=False, outcome="timeout")
    )
    out.append(
        factories.task_records(CLIENT, NODE, EPOCH, "broke", delivered=False, outcome="timeout")
    )
    out.append(factories.task_records(CLIENT, NODE, EPOCH + 1, "next-epoch"))
    return out


def _put(store, tasks) -> None:
    store.put_many([r for t in tasks for r in t.all()], now=factories.NOW)


@pytest.mark.parametrize("role", ["full", "client"])
async def test_a_restart_mid_epoch_publishes_the_digest_a_never_restarted_peer_would(
    tmp_path: Path, role: str
) -> None:
    identity = NODE if role == "full" else CLIENT
    tasks = _tasks()
    broke = tasks[7].offer.record.task_id
    mid_epoch = Clock((EPOCH + 0.5) * 60)

    # Before the restart: half the epoch's tasks, and one execution failure.
    store = SqliteRecordStore(tmp_path / "records.db")
    failed = FailedTasks(tmp_path / "failed-tasks.txt")
    _put(store, tasks[:4])
    failed.add(EPOCH, broke)
    own, _ = _peer(identity, role, store, mid_epoch, failed)
    assert not own.sealed(EPOCH)
    with pytest.raises(ValueError):
        await own.publish_epoch(EPOCH)
    store.close()

    # The restart: everything from disk, the rest of the epoch, then the seal.
    sealed = Clock((EPOCH + DigestParams().seal_lag_epochs) * 60 + 5)
    store = SqliteRecordStore(tmp_path / "records.db")
    _put(store, tasks[4:])
    own, gossip = _peer(identity, role, store, sealed, FailedTasks(tmp_path / "failed-tasks.txt"))
    assert own.sealed(EPOCH) and EPOCH in own.due() and EPOCH + 1 not in own.due()
    published = await own.publish_epoch(EPOCH)

    # A peer that never restarted, holding the same records.
    steady_store = SqliteRecordStore(":memory:")
    _put(steady_store, tasks)
    steady_failed = FailedTasks(None)
    steady_failed.add(EPOCH, broke)
    steady, _ = _peer(identity, role, steady_store, sealed, steady_failed)
    expected = await steady.publish_epoch(EPOCH)

    assert [s.data for s in published] == [s.data for s in expected]
    digest = published[0].record
    assert isinstance(digest, WorkDigest if role == "full" else FeedbackDigest)
    assert digest.leaf_count == 8  # the next epoch's task is not in it
    if role == "full":
        (row,) = digest.rows
        assert (row.receipts, row.timeouts, row.failures) == (6, 1, 1)
    assert [topic for topic, _ in gossip.sent] == ["/repp2p/1/digests"]

    # Idempotent: publishing again re-gossips the same digest, signs nothing new.
    again = await own.publish_epoch(EPOCH)
    assert [s.record_id for s in again] == [s.record_id for s in published]
    assert store.count(type(digest).TYPE) == 1
    assert [data for _, data in gossip.sent] == [published[0].data] * 2
    store.close()


async def test_a_node_without_tasks_publishes_an_empty_digest_and_a_client_nothing(tmp_path):
    clock = Clock((EPOCH + 5) * 60)
    store = SqliteRecordStore(":memory:")
    node, _ = _peer(NODE, "full", store, clock)
    client, _ = _peer(CLIENT, "client", SqliteRecordStore(":memory:"), clock)
    node._started_epoch = EPOCH  # running since before the epoch
    _put_busy_digest(store, EPOCH)  # the epoch is not quiet: another node served tasks
    (empty,) = await node.publish_epoch(EPOCH)
    assert empty.record.leaf_count == 0 and empty.record.rows == ()
    assert await client.publish_epoch(EPOCH) == []
    # Before the node started it knows nothing: no statement about those epochs.
    assert await node.publish_epoch(EPOCH - 1) == []


def _busy_digest(epoch: int, signer=OTHER, *, rows: bool = True):
    """``signer``'s work digest of ``epoch``: with the rows of factories' sample digest
    (another node served tasks then), or empty."""
    sample = factories.sample_digests()[0]
    digest = sample if rows else factories.empty_work_digest()
    return sign(dataclasses.replace(digest, epoch=epoch), signer)


def _put_busy_digest(store, epoch: int, **kw) -> None:
    store.put(_busy_digest(epoch, **kw), now=factories.NOW)


async def test_an_idle_node_publishes_nothing_for_a_quiet_epoch_until_it_is_not():
    """A quiet epoch (no digest with rows covering it or the epoch before) gets no empty
    digest; it stays due, and one goes out once a digest with rows of it is held."""
    clock = Clock((EPOCH + 5) * 60)
    store = SqliteRecordStore(":memory:")
    node, gossip = _peer(NODE, "full", store, clock)
    node._started_epoch = EPOCH - 5
    idle = factories.identity("digest-idle-node")
    _put_busy_digest(store, EPOCH - 3, signer=idle, rows=False)  # still quiet
    assert await node.publish_due() == 0 and gossip.sent == []
    assert node.due() == list(range(EPOCH - 5, EPOCH + 2))  # all quiet, all still due
    assert store.count(WorkDigest.TYPE) == 1
    # A digest with rows of EPOCH - 3 makes EPOCH - 3 (auditors) and EPOCH - 2 (the
    # entropy of EPOCH - 3's draw) not quiet; the rest stay quiet.
    _put_busy_digest(store, EPOCH - 3)
    assert await node.publish_due() == 2
    mine = store.query(type=WorkDigest.TYPE, signer=NODE.peer_id)
    assert sorted(d.record.epoch for d in mine) == [EPOCH - 3, EPOCH - 2]
    assert all(d.record.rows == () for d in mine)
    assert EPOCH - 3 not in node.due() and EPOCH - 4 in node.due()
    # a feedback digest with rows counts too: a client rated nodes in EPOCH
    feedback = factories.sample_digests()[1]
    store.put(sign(dataclasses.replace(feedback, epoch=EPOCH), CLIENT), now=factories.NOW)
    assert await node.publish_due() == 2  # EPOCH and EPOCH + 1
    # a node that served tasks publishes whatever its neighbours did
    busy_store = SqliteRecordStore(":memory:")
    _put(busy_store, _tasks())
    busy, _ = _peer(NODE, "full", busy_store, clock)
    assert [len(d.record.rows) for d in await busy.publish_epoch(EPOCH)] == [1]


async def test_the_rule_reads_only_the_store_so_a_restart_decides_the_same(tmp_path):
    clock = Clock((EPOCH + 5) * 60)
    store = SqliteRecordStore(tmp_path / "records.db")
    _put_busy_digest(store, EPOCH)
    node, _ = _peer(NODE, "full", store, clock)
    node._started_epoch = EPOCH - 2
    assert node.quiet(EPOCH - 2, EPOCH - 2) and not node.quiet(EPOCH, EPOCH)
    (first,) = await node.publish_epoch(EPOCH)
    store.close()
    again_store = SqliteRecordStore(tmp_path / "records.db")
    again, gossip = _peer(NODE, "full", again_store, clock)
    again._started_epoch = EPOCH - 2
    assert await again.publish_epoch(EPOCH - 2) == []  # still quiet
    (same,) = await again.publish_epoch(EPOCH)
    assert same.record_id == first.record_id and gossip.sent == [("/repp2p/1/digests", first.data)]


async def test_without_the_rule_an_idle_node_publishes_every_epoch():
    clock = Clock((EPOCH + 5) * 60)
    node, _ = own_digests(
        NODE,
        "full",
        SqliteRecordStore(":memory:"),
        clock,
        network=NETWORK,
        params=DigestParams(),
        skip_quiet=False,
    )
    node._started_epoch = EPOCH
    (empty,) = await node.publish_epoch(EPOCH)
    assert empty.record.rows == ()


async def test_a_digest_with_rows_arriving_wakes_the_publisher(nursery):
    """``on_record`` (the pipeline's listener) wakes ``run`` at once for a due quiet epoch,
    rather than at the node's next phase; empty digests and duplicates do not."""

    class Stopped(Clock):
        """Time stands still: ``run`` waits for its phase forever unless woken."""

        async def sleep_until(self, when: float) -> None:
            await trio.sleep_forever()

    clock = Stopped((EPOCH + 5) * 60 + 1)
    store = SqliteRecordStore(":memory:")
    node, gossip = _peer(NODE, "full", store, clock)
    node._started_epoch = EPOCH - 1
    nursery.start_soon(node.run)
    await trio.testing.wait_all_tasks_blocked()
    assert gossip.sent == []  # quiet: nothing published, run() sleeps
    empty = _busy_digest(EPOCH, factories.identity("digest-idle-node"), rows=False)
    store.put(empty, now=factories.NOW)
    node.on_record(empty, Outcome.NEW)
    busy = _busy_digest(EPOCH)
    node.on_record(busy, Outcome.DUPLICATE)
    await trio.testing.wait_all_tasks_blocked()
    assert gossip.sent == []
    store.put(busy, now=factories.NOW)
    node.on_record(busy, Outcome.NEW)
    with trio.fail_after(10):
        while len(gossip.sent) < 2:  # EPOCH and EPOCH + 1
            await trio.sleep(0.01)
    mine = store.query(type=WorkDigest.TYPE, signer=NODE.peer_id)
    assert sorted(d.record.epoch for d in mine) == [EPOCH, EPOCH + 1]


async def test_audit_answers_are_rebuilt_from_the_store(tmp_path):
    tasks = _tasks()
    store = SqliteRecordStore(tmp_path / "records.db")
    _put(store, tasks)
    clock = Clock((EPOCH + 5) * 60)
    own, _ = _peer(NODE, "full", store, clock)
    (signed,) = await own.publish_epoch(EPOCH)
    fresh, _ = _peer(NODE, "full", store, clock)  # nothing cached: rebuilds
    for i in range(signed.record.leaf_count):
        answer = fresh.answer(signed.record_id, i)
        assert verify_audit(signed, i, answer).outcome is AuditOutcome.PASS
    assert fresh.answer(signed.record_id, signed.record.leaf_count) is None
    assert fresh.answer(bytes(32), 0) is None
    assert fresh.answer(tasks[0].offer.record_id, 0) is None  # not a digest of ours
    late = Clock((EPOCH + DigestParams().audit_horizon_epochs + 1) * 60)
    past, _ = _peer(NODE, "full", store, late)
    assert past.answer(signed.record_id, 0) is None  # past the audit horizon


async def test_each_sealed_epoch_goes_out_once_per_run(tmp_path):
    store = SqliteRecordStore(":memory:")
    _put(store, _tasks())
    clock = Clock((EPOCH + 6) * 60)
    own, gossip = _peer(NODE, "full", store, clock)
    own._started_epoch = EPOCH - 1
    _put_busy_digest(store, EPOCH + 2)  # another node served tasks in EPOCH + 2
    # Sealed at EPOCH + 6 and since the start: EPOCH and EPOCH + 1 (tasks), EPOCH + 2
    # (an empty part: not quiet); EPOCH - 1 is quiet (nothing published, still due); the
    # epochs before the start had no claims: nothing.
    assert await own.publish_due() == 3
    assert await own.publish_due() == 0
    assert own.due() == [EPOCH - 1]
    sent = len(gossip.sent)
    clock.at += 60  # the next epoch: the newly sealed one goes out (EPOCH + 2 had tasks)
    assert await own.publish_due() == 1
    assert len(gossip.sent) == sent + 1
    assert own.due() == [EPOCH - 1]
    clock.at += 60  # EPOCH + 4 is quiet: nothing
    assert await own.publish_due() == 0 and len(gossip.sent) == sent + 1
    assert own.due() == [EPOCH - 1, EPOCH + 4]


async def test_a_client_re_signing_its_offer_after_the_claim_changes_nothing(tmp_path):
    tasks = _tasks()
    clock = Clock((EPOCH + 5) * 60)
    steady_store = SqliteRecordStore(":memory:")
    _put(steady_store, tasks)
    steady, _ = _peer(NODE, "full", steady_store, clock)
    (expected,) = await steady.publish_epoch(EPOCH)

    # The node kept the offers as it claimed them; then the client replaced one (seq 2).
    store = SqliteRecordStore(":memory:")
    _put(store, tasks)
    claimed = ClaimedOffers(tmp_path / "claimed-offers")
    for t in tasks:
        claimed.add(t.offer)
    newer = sign(dataclasses.replace(tasks[0].offer.record, seq=2, max_price=1), CLIENT)
    store.put(newer, now=factories.NOW)
    assert store.get(tasks[0].offer.record_id) is None  # the store kept only the newer
    own, _ = _peer(NODE, "full", store, clock)
    own.claimed = ClaimedOffers(tmp_path / "claimed-offers")  # as after a restart
    (published,) = await own.publish_epoch(EPOCH)
    assert published.data == expected.data
    for i in range(published.record.leaf_count):
        assert verify_audit(published, i, own.answer(published.record_id, i)).outcome is (
            AuditOutcome.PASS
        )
    own.claimed.forget_before(EPOCH + 1)
    assert not list((tmp_path / "claimed-offers").glob(f"{EPOCH}.bin"))


def test_claimed_offers_are_on_disk_as_added_across_epochs_and_pruning(tmp_path):
    """Each claimed offer is written through as it is added (the file of the epoch stays
    open between adds): a peer reading the folder meanwhile, as after a crash, finds every
    offer, whichever epochs the adds alternate between; pruning removes the epoch's file
    even while it is the open one, and a later add starts it again."""
    folder = tmp_path / "claimed-offers"
    offers = {
        e: [factories.task_records(CLIENT, NODE, e, f"c{e}-{i}").offer for i in range(3)]
        for e in (EPOCH, EPOCH + 1)
    }
    claimed = ClaimedOffers(folder)
    order = [(EPOCH, 0), (EPOCH + 1, 0), (EPOCH, 1), (EPOCH, 1), (EPOCH + 1, 1), (EPOCH, 2)]
    for n, (e, i) in enumerate(order, start=1):
        claimed.add(offers[e][i])
        reader = ClaimedOffers(folder)  # a restarted peer, the first still running
        for epoch, held in offers.items():
            wanted = {o.record_id for j, o in enumerate(held) if (epoch, j) in order[:n]}
            assert set(reader.of(epoch)) == wanted
    assert len((folder / f"{EPOCH}.bin").read_bytes()) == sum(
        4 + len(o.data) for o in offers[EPOCH]
    )  # the repeated add wrote nothing
    claimed.forget_before(EPOCH + 2)  # the open file (EPOCH) goes too
    assert not list(folder.glob("*.bin"))
    claimed.add(offers[EPOCH + 1][2])
    assert set(ClaimedOffers(folder).of(EPOCH + 1)) == {offers[EPOCH + 1][2].record_id}
    claimed.close()
    claimed.close()


async def test_a_split_digest_cut_short_by_a_crash_is_completed_not_re_split():
    clients = [factories.identity(f"split-client-{i}") for i in range(3)]
    tasks = [factories.task_records(c, NODE, EPOCH, f"s{i}") for i, c in enumerate(clients)]
    store = SqliteRecordStore(":memory:")
    _put(store, tasks)
    clock = Clock((EPOCH + 5) * 60)
    own, _ = _peer(NODE, "full", store, clock)
    own._max_rows = 1  # one client per part
    parts = own.build(EPOCH)
    assert len(parts) >= 3
    await own._publish(parts[0].digest)  # ... and the process died here
    again, _ = _peer(NODE, "full", store, clock)
    again._max_rows = 1
    published = await again.publish_epoch(EPOCH)
    assert [s.record for s in published] == [p.digest for p in parts]
    assert store.count(WorkDigest.TYPE) == len(parts)
    assert store.equivocations() == []


async def test_a_refused_task_is_counted_from_the_store_and_its_audit_carries_the_refusal(
    tmp_path,
):
    tasks = _tasks()
    refused = factories.task_records(CLIENT, NODE, EPOCH, "junk", delivered=False, outcome=None)
    refusal = refusal_of(refused, CLIENT, NODE)
    store = SqliteRecordStore(tmp_path / "records.db")
    _put(store, [*tasks, refused])
    store.put_many([refusal], now=factories.NOW)
    clock = Clock((EPOCH + 5) * 60)
    own, _ = _peer(NODE, "full", store, clock)
    (signed,) = await own.publish_epoch(EPOCH)
    (row,) = signed.record.rows
    assert (row.claims, row.receipts, row.timeouts, row.failures, row.refused) == (9, 6, 2, 0, 1)
    fresh, _ = _peer(NODE, "full", store, clock)  # nothing cached: rebuilt from the store
    last = signed.record.leaf_count - 1  # the refused block comes last in the row
    answer = fresh.answer(signed.record_id, last)
    assert verify_audit(signed, last, answer).outcome is AuditOutcome.PASS
    assert refusal.data in AuditResponse.decode(answer).records
