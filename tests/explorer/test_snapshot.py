"""The explorer's snapshot: what a peer's view says about each node, as plain data."""

from __future__ import annotations

import dataclasses
import json
import statistics
import threading

import pytest
import trio

from repp2p.attestation import SIMULATED_LABEL, load_policy
from repp2p.clock import ClockAPI
from repp2p.config import BOOTSTRAP_DIR
from repp2p.explorer import SNAPSHOT_VERSION, Explorer, ExplorerPending, page_html
from repp2p.explorer import snapshot as snapshot_module
from repp2p.explorer.snapshot import REASON_PENDING
from repp2p.network_params import NetworkParams
from repp2p.records import Attestation, sign
from repp2p.store import SqliteRecordStore
from repp2p.testing import factories
from repp2p.viewer import ViewKeeper

# 10-s epochs; views of records: the fixtures are task records (a digest network's
# explorer: tests/e2e/test_digest_ledger.py)
DEV = NetworkParams.load("dev").replace(reputation_source="records")
EPOCH = factories.NOW // DEV.epoch_s
NOW = EPOCH * DEV.epoch_s + 4  # 40% into the epoch
FAR = factories.far_future(NOW)
GOOD, BROKEN, CLIENT = (factories.identity(n) for n in ("good", "node", "client"))


class FixedClock(ClockAPI):
    def __init__(self, now: float) -> None:
        self.at = now

    def now(self) -> float:
        return self.at

    async def sleep_until(self, when: float) -> None:  # pragma: no cover - never waits
        raise AssertionError("the explorer never waits")


def _attested(identity, now: int) -> list:
    """An ad, a simulated attestation that verifies, and heartbeats of ``identity``."""
    ad = dataclasses.replace(factories.sample_records(now=now)[0], expires=FAR)
    epoch = now // DEV.epoch_s
    # the result key signs the factories' receipts; the measurement establishes the ad's
    # engines, so the node is eligible and ranked first for the tasks it claims
    attestation = factories.simulated_attestation(identity, ad, epoch, at=now, expires=FAR)
    # signed by its enclave: the views count the node only while it is live
    beats = [
        factories.live_heartbeat(identity, e, seq=e, expires=FAR) for e in range(EPOCH - 6, EPOCH)
    ]
    return [*(sign(r, identity) for r in (ad, attestation)), *beats]


def _network(tmp_path) -> tuple[SqliteRecordStore, list[int]]:
    """A store with a verified node, a node whose evidence is garbage, tasks, a digest."""
    store = SqliteRecordStore(tmp_path / "records.db")
    records = _attested(GOOD, EPOCH * DEV.epoch_s - 5)
    broken_ad, broken_att = factories.sample_records(now=NOW)[:2]  # evidence b"evidence"*8
    broken_att = dataclasses.replace(broken_att, epoch=EPOCH)  # current, so judged on its merits
    records += [sign(broken_ad, BROKEN), sign(broken_att, BROKEN)]
    latencies = [80, 120, 300]
    for n, latency in enumerate(latencies):
        task = factories.task_records(CLIENT, GOOD, EPOCH - 3, f"t{n}", latency_ms=latency)
        records += task.all()
    records.append(sign(factories.empty_work_digest(epoch=EPOCH - 5, expires=FAR), GOOD))
    outcomes = store.put_many(records, now=NOW)
    assert all(o.value in ("new", "replaced") for o in outcomes), outcomes
    return store, latencies


def _explorer(store, *, refreshed: bool = True, clock=None, **kw) -> Explorer:
    """An explorer over ``store``; ``refreshed``: with the current view built and the
    ledger replayed (what its background task does once per epoch)."""
    policy = load_policy(BOOTSTRAP_DIR / "policy-dev.toml")
    keeper = ViewKeeper(store, policy, DEV)
    clock = clock or FixedClock(NOW)
    explorer = Explorer(keeper, clock, peer_id=GOOD.peer_id, role="full", **kw)
    if refreshed:
        explorer.refresh()
    return explorer


def test_the_snapshot_shows_each_node_as_this_peers_view_judges_it(tmp_path):
    store, latencies = _network(tmp_path)
    explorer = _explorer(store)
    snap = explorer.snapshot()
    assert json.loads(json.dumps(snap)) == snap  # plain data only
    assert snap["version"] == SNAPSHOT_VERSION
    assert (snap["epoch"], snap["epoch_s"], snap["epoch_progress"]) == (EPOCH, 10, 0.4)
    view = explorer.current_view()
    assert snap["view"]["epoch"] == EPOCH and snap["view"]["digest"] == view.digest.hex()
    rows = {row["peer_id"]: row for row in snap["nodes"]}
    assert [r["peer_id"] for r in snap["nodes"]] == sorted(rows) == sorted(view.peers)
    assert set(rows) == {GOOD.peer_id, BROKEN.peer_id}

    good = rows[GOOD.peer_id]
    assert good["self"] and not rows[BROKEN.peer_id]["self"]
    assert good["attestation"]["verdict"] == "verified"
    assert good["attestation"]["reason"] is None
    # The simulated TEE is never shown without its label.
    assert good["tee_kind"] == "simulated" and good["simulated"]
    assert good["label"] == SIMULATED_LABEL == snap["simulated_label"]
    assert good["permille"] == view.reputation.get(GOOD.peer_id).permille
    assert set(good["components"]) == {"uptime", "success", "throughput", "latency", "attestation"}
    assert good["engines"] == ["echo", "sentiment"] and good["capacity"] == 4

    broken = rows[BROKEN.peer_id]
    assert broken["attestation"]["verdict"] == "failed"
    assert broken["attestation"]["reason"].startswith("malformed")
    assert not broken["eligible"] and not broken["tier"]
    assert broken["penalty"]["penalised"] is False

    (tasks,) = snap["tasks"]
    assert tasks["epoch"] == EPOCH - 3
    assert (tasks["offers"], tasks["claims"], tasks["receipts"]) == (3, 3, 3)
    assert tasks["feedback"] == {"ok": 3}
    assert tasks["latency_ms_p50"] == statistics.median(latencies)
    assert snap["digests"] == {"WorkDigest": {str(EPOCH - 5): 1}, "FeedbackDigest": {}}
    assert snap["records"]["Attestation"] == 2 and snap["records"]["TaskOffer"] == 3


def test_rep_balances_come_from_the_ledger_replay(tmp_path):
    store, _ = _network(tmp_path)
    snap = _explorer(store).snapshot()
    rep = snap["rep"]
    assert rep["unit"] == "micro-REP"
    total = sum(row["rep"]["pending"] for row in snap["nodes"])
    # every payout of the pending ledger went to a node in the table (no clients earn)
    assert 0 <= total <= rep["pending_supply"]
    assert all(isinstance(row["rep"]["final"], int) for row in snap["nodes"])
    rows = {row["peer_id"]: row["rep"] for row in snap["nodes"]}
    assert rows[GOOD.peer_id]["pending"] > 0  # it served the tasks
    assert rows[BROKEN.peer_id] == {"final": 0, "pending": 0}
    assert (snap["rep_status"], snap["rep_epoch"]) == ("ready", EPOCH)
    off = _explorer(store, ledger=False).snapshot()
    assert off["rep"] is None and all(row["rep"] is None for row in off["nodes"])
    assert (off["rep_status"], off["rep_epoch"]) == ("off", None)


def test_an_empty_store_gives_an_empty_network(tmp_path):
    snap = _explorer(SqliteRecordStore(tmp_path / "records.db")).snapshot()
    assert snap["nodes"] == [] and snap["tasks"] == []
    assert snap["view"]["nodes"] == 0 and snap["view"]["eligible"] == 0
    assert snap["digests"] == {"WorkDigest": {}, "FeedbackDigest": {}}


def test_the_snapshot_follows_the_clock_into_the_next_epoch(tmp_path):
    store, _ = _network(tmp_path)
    explorer = _explorer(store)
    first = explorer.snapshot()
    explorer._clock.at = NOW + DEV.epoch_s  # type: ignore[attr-defined]
    stale = explorer.snapshot()  # the new view is not built yet: the last one is shown
    assert stale["epoch"] == first["epoch"] + 1 and stale["view"] == first["view"]
    assert stale["rep_epoch"] == first["rep_epoch"] == EPOCH
    explorer.refresh()  # what the background task does once the epoch has moved on
    second = explorer.snapshot()
    assert second["epoch"] == first["epoch"] + 1 == second["view"]["epoch"]
    assert second["rep_epoch"] == EPOCH + 1
    assert second["view"]["digest"] != first["view"]["digest"]


def test_routes_serve_the_page_and_the_json(tmp_path):
    store, _ = _network(tmp_path)
    explorer = _explorer(store)
    routes = dict(explorer.routes("/net"))
    assert set(routes) == {"/net", "/net.json"}
    ctype, page = routes["/net"]()
    assert ctype.startswith("text/html") and page == page_html()
    ctype, body = routes["/net.json"]()
    assert ctype == "application/json"
    assert json.loads(body)["view"] == explorer.snapshot()["view"]


def test_the_page_is_one_file_with_no_external_assets():
    page = page_html().decode()
    assert page.startswith("<!doctype html>")
    # the page fetches its own path + ".json" and loads nothing else
    assert 'location.pathname.replace(/\\/+$/, "") + ".json"' in page
    for external in ("<script src", "<link", "http://", "https://", "@import", "url("):
        assert external not in page, external
    assert "innerHTML" not in page  # every value from the network is set as text


def test_the_json_is_reused_for_a_second_and_digests_recounted_when_they_change(tmp_path):
    store, _ = _network(tmp_path)
    explorer = _explorer(store)
    first = explorer.snapshot_json()
    store.put_many([sign(factories.empty_work_digest(epoch=EPOCH - 4, expires=FAR), GOOD)], now=NOW)
    assert explorer.snapshot_json() is first  # within max_age_s: the same answer
    explorer._clock.at = NOW + 1.5  # type: ignore[attr-defined]
    later = json.loads(explorer.snapshot_json())
    assert later["digests"]["WorkDigest"] == {str(EPOCH - 5): 1, str(EPOCH - 4): 1}
    assert later["now"] == NOW + 1.5


def test_a_simulated_node_that_claims_a_real_tee_in_its_ad_is_still_labelled(tmp_path):
    # Its ad says nitro; its attestation is simulated and verifies (the dev policy allows
    # it). The row must show what the evidence established, and the simulated label.
    store = SqliteRecordStore(tmp_path / "records.db")
    ad, attestation, *beats = _attested(GOOD, EPOCH * DEV.epoch_s - 5)
    liar = dataclasses.replace(ad.record, tee_kind="nitro")
    outcomes = store.put_many([sign(liar, GOOD), attestation, *beats], now=NOW)
    assert all(o.value == "new" for o in outcomes), outcomes
    (row,) = _explorer(store).snapshot()["nodes"]
    assert row["attestation"]["verdict"] == "verified"
    assert (row["tee_kind"], row["tee_kind_verified"], row["tee_kind_claimed"]) == (
        "simulated",
        True,
        "nitro",
    )
    assert row["simulated"] and row["label"] == SIMULATED_LABEL
    assert not row["eligible"]  # its ad is not consistent with its evidence


def test_a_broken_nodes_kind_is_its_unverified_claim(tmp_path):
    store, _ = _network(tmp_path)
    rows = {row["peer_id"]: row for row in _explorer(store).snapshot()["nodes"]}
    broken = rows[BROKEN.peer_id]
    assert broken["tee_kind_verified"] is False and broken["tee_kind"] == broken["tee_kind_claimed"]
    assert rows[GOOD.peer_id]["tee_kind_verified"] is True


def test_the_pages_content_security_policy_admits_exactly_its_own_script_and_style():
    import base64
    import hashlib
    import re

    page = page_html().decode()
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    rules = dict(rule.strip().split(" ", 1) for rule in policy.split(";"))
    (script,) = re.findall(r"<script>(.*?)</script>", page, re.S)
    (style,) = re.findall(r"<style>(.*?)</style>", page, re.S)

    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    assert rules["default-src"] == "'none'" and rules["connect-src"] == "'self'"
    assert rules["script-src"] == digest(script)  # nothing else runs, inline or not
    assert rules["style-src"] == digest(style)


def test_a_failed_nodes_reason_is_found_once_per_view(tmp_path, monkeypatch):
    store, _ = _network(tmp_path)
    explorer = _explorer(store, refreshed=False)
    asked = []
    query = store.query

    def counting(*args, **kwargs):
        if kwargs.get("type") == Attestation.TYPE:
            asked.append(kwargs.get("signer"))
        return query(*args, **kwargs)

    monkeypatch.setattr(store, "query", counting)
    explorer.refresh()  # the background task finds the reasons of the view's failed nodes
    first = explorer.snapshot()
    for _ in range(3):  # the page asks every 2 s: same view, no new store queries
        explorer.refresh()
        again = explorer.snapshot()
    assert asked == [BROKEN.peer_id]
    assert first["nodes"] == again["nodes"]
    rows = {r["peer_id"]: r["attestation"] for r in again["nodes"]}
    assert rows[BROKEN.peer_id]["reason"].startswith("malformed")


def _count_replays(monkeypatch) -> list[int]:
    """Count the ledger replays the explorer runs (and note the thread of each)."""
    calls: list[int] = []
    real = snapshot_module.replay

    def counting(*args, **kwargs):
        calls.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(snapshot_module, "replay", counting)
    return calls


def test_a_snapshot_request_never_builds_a_view_nor_replays_the_ledger(tmp_path, monkeypatch):
    store, _ = _network(tmp_path)
    replays = _count_replays(monkeypatch)
    explorer = _explorer(store, refreshed=False)
    built = []
    view = explorer._keeper.view
    monkeypatch.setattr(explorer._keeper, "view", lambda e: built.append(e) or view(e))
    routes = dict(explorer.routes())
    # Before anything was built: a clear, retryable refusal (the servers answer 503).
    with pytest.raises(ExplorerPending):
        routes["/explorer.json"]()
    assert (replays, built) == ([], [])
    # The view service built the view; the ledger is not replayed yet: REP is pending.
    view(EPOCH)
    snap = json.loads(routes["/explorer.json"]()[1])
    assert (snap["rep_status"], snap["rep_epoch"], snap["rep"]) == ("pending", None, None)
    assert snap["view"]["epoch"] == EPOCH and all(row["rep"] is None for row in snap["nodes"])
    # nor verifies a failed node's evidence again for its reason: the refresher does
    rows = {r["peer_id"]: r["attestation"] for r in snap["nodes"]}
    assert rows[BROKEN.peer_id]["reason"] == REASON_PENDING
    explorer.refresh()
    assert len(replays) == 1
    rows = {r["peer_id"]: r["attestation"] for r in explorer.snapshot()["nodes"]}
    assert rows[BROKEN.peer_id]["reason"].startswith("malformed")
    for step in range(1, 20):  # the page asks every 2 s, across the next epoch boundary
        explorer._clock.at = NOW + step  # type: ignore[attr-defined]
        snap = json.loads(routes["/explorer.json"]()[1])
        explorer.snapshot()
    assert len(replays) == 1 and built == []  # no request built a view
    assert snap["epoch"] == EPOCH + 2 and snap["view"]["epoch"] == EPOCH
    assert (snap["rep_status"], snap["rep_epoch"]) == ("ready", EPOCH)


class TickingClock(FixedClock):
    """A clock the test moves; each of the refresher's sleeps is a real short one."""

    async def sleep_until(self, when: float) -> None:
        await trio.sleep(0.01)


async def test_the_background_task_replays_the_ledger_once_per_epoch_off_the_loop(
    tmp_path, monkeypatch, nursery
):
    store, _ = _network(tmp_path)
    replays = _count_replays(monkeypatch)
    clock = TickingClock(NOW)
    explorer = _explorer(store, refreshed=False, clock=clock)
    explorer._keeper.view(EPOCH)  # the view service's build
    explorer.snapshot()  # someone opened the page
    nursery.start_soon(explorer.run, 1.0, 3 * DEV.epoch_s)
    with trio.fail_after(30):
        while explorer.rep_epoch != EPOCH:
            await trio.sleep(0.01)
    first = explorer.snapshot()
    assert (first["rep_status"], first["rep_epoch"]) == ("ready", EPOCH)
    assert first["view"]["epoch"] == EPOCH
    for _ in range(20):  # more ticks within the epoch: no second replay
        await trio.sleep(0.01)
    assert len(replays) == 1
    assert replays[0] != threading.get_ident()  # the replay ran in a worker thread
    clock.at = NOW + DEV.epoch_s  # an epoch passes
    with trio.fail_after(30):
        while explorer.rep_epoch != EPOCH + 1:
            await trio.sleep(0.01)
    second = explorer.snapshot()
    assert (second["rep_epoch"], second["view"]["epoch"]) == (EPOCH + 1, EPOCH + 1)
    assert len(replays) == 2
    assert second["rep"]["pending_through_epoch"] > first["rep"]["pending_through_epoch"]


async def test_nobody_watching_means_no_replay(tmp_path, monkeypatch, nursery):
    """An unwatched peer (no snapshot asked for within ``watch_s``) never replays the
    ledger, epoch after epoch; the first request starts the replays again, and they stop
    once the page has been closed for ``watch_s``."""
    store, _ = _network(tmp_path)
    replays = _count_replays(monkeypatch)
    clock = TickingClock(NOW)
    explorer = _explorer(store, refreshed=False, clock=clock)
    watch_s = 2 * DEV.epoch_s
    nursery.start_soon(explorer.run, 1.0, watch_s)
    for epoch in range(EPOCH, EPOCH + 4):  # four epochs with nobody watching
        clock.at = epoch * DEV.epoch_s + 4
        explorer._keeper.view(epoch)  # the view service builds each epoch's view
        for _ in range(10):
            await trio.sleep(0.01)
    assert replays == [] and explorer.rep_epoch is None and not explorer.watched(watch_s)
    last = EPOCH + 3
    snap = explorer.snapshot()  # a page opens: shows what it has, REP pending
    assert (snap["rep_status"], snap["rep_epoch"]) == ("pending", None)
    with trio.fail_after(30):
        while explorer.rep_epoch != last:
            await trio.sleep(0.01)
    assert len(replays) == 1
    assert explorer.snapshot()["rep_status"] == "ready"
    # the page is closed: one epoch later it is still "watched", then no longer
    clock.at = (last + 1) * DEV.epoch_s + 4
    explorer._keeper.view(last + 1)
    with trio.fail_after(30):
        while explorer.rep_epoch != last + 1:
            await trio.sleep(0.01)
    clock.at = (last + 3) * DEV.epoch_s + 4  # past watch_s since the last request
    explorer._keeper.view(last + 3)
    for _ in range(20):
        await trio.sleep(0.01)
    assert not explorer.watched(watch_s)
    assert len(replays) == 2 and explorer.rep_epoch == last + 1
