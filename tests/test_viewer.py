"""ViewKeeper: what a peer's per-epoch view is built from."""

from __future__ import annotations

import dataclasses

from repp2p.attestation import load_policy
from repp2p.config import BOOTSTRAP_DIR
from repp2p.records import Heartbeat, sign
from repp2p.store import SqliteRecordStore
from repp2p.testing import factories
from repp2p.viewer import ViewKeeper, beacon, before_epoch

FAR = factories.FAR_FUTURE


def _keeper(store):
    return ViewKeeper(store, load_policy(BOOTSTRAP_DIR / "policy-dev.toml"), epoch_s=10)


def test_equivocation_kept_as_evidence_becomes_an_offence_in_the_view():
    store = SqliteRecordStore(":memory:")
    liar = factories.identity("liar")
    a = sign(Heartbeat(epoch=5, load=0, tasks_done=0, seq=1, expires=FAR), liar)
    b = sign(Heartbeat(epoch=5, load=1, tasks_done=0, seq=1, expires=FAR), liar)
    store.put_many([a, b], now=1)
    assert store.count() == 1  # one current record; the other half is evidence
    (offence,) = _keeper(store).view(7).reputation.offences
    assert offence.kind == "equivocation" and offence.peer_id == liar.peer_id
    assert set(offence.record_ids) == {a.record_id, b.record_id}


def test_views_use_records_of_earlier_epochs_only():
    node = factories.identity("n")
    beats = [
        sign(Heartbeat(epoch=e, load=0, tasks_done=0, seq=1, expires=FAR), node) for e in (5, 6, 7)
    ]
    ad = sign(factories.sample_records()[0], node)
    offers = [
        sign(dataclasses.replace(factories.sample_records()[3], epoch=e), node) for e in (5, 6)
    ]
    kept = before_epoch([*beats, *offers, ad], 7)
    assert [s.record.epoch for s in kept if s.type == "Heartbeat"] == [5, 6]
    assert [s.record.epoch for s in kept if s.type == "TaskOffer"] == [5]  # two epochs late
    assert ad in kept  # ads (and attestations) always count


def test_beacon_is_a_pure_function_of_the_epoch():
    assert beacon(7) == beacon(7) != beacon(8)
    assert len(beacon(7)) == 32
