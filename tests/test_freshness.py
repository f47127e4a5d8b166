"""Attestation freshness (docs/attestation.md, "Freshness"): hardware evidence once per
``reattest_period_s``, liveness every epoch from the enclave's signature on the heartbeat.

A view of epoch E counts a node as currently attested when its attestation verifies, its
binding epoch is at most ``Policy.attestation_max_age_epochs`` behind E, and one of its
heartbeats of the last ``liveness_lag`` epochs carries an enclave signature valid under the
attestation's result key.
"""

from __future__ import annotations

import dataclasses

import pytest

from repp2p.attestation import (
    Policy,
    SimulatedEnclave,
    check_liveness,
    liveness_message,
    load_policy,
    verify_node,
)
from repp2p.config import BOOTSTRAP_DIR
from repp2p.errors import AttestationError, AttestationReason
from repp2p.matching import beacon
from repp2p.network_params import NetworkParams
from repp2p.node.enclave import EnclaveSupervisor
from repp2p.records import Attestation, Heartbeat, decode, encode, sign
from repp2p.store import SqliteRecordStore
from repp2p.tee.measurement import enclave_measurement, runtime_measurement
from repp2p.testing import factories
from repp2p.viewer import ViewKeeper

DEV = NetworkParams.load("dev")  # 10-s epochs
POLICY = load_policy(BOOTSTRAP_DIR / "policy-dev.toml")  # reattest 3600 s, max_epoch_lag 2
EPOCH = factories.NOW // DEV.epoch_s
NOW = EPOCH * DEV.epoch_s
FAR = factories.far_future(NOW)
NODE, OTHER = factories.identity("fresh-node"), factories.identity("other-node")
LIFETIME = POLICY.attestation_max_age_epochs(DEV.epoch_s)


def _attestation(identity, epoch: int, enclave_key=None) -> list:
    """``identity``'s ad and a simulated attestation of ``epoch`` binding ``enclave_key``."""
    key = factories.enclave_key(identity.peer_id) if enclave_key is None else enclave_key
    ad = dataclasses.replace(factories.sample_records(now=NOW)[0], expires=FAR)
    wanted = {e.engine_id: e.measurement for e in ad.engines}
    enclave = SimulatedEnclave(
        seed=factories.digest("seed/" + identity.peer_id),
        measurement=enclave_measurement(wanted, runtime_measurement()),
    )
    enc_key, result_key = factories.digest("enc/" + identity.peer_id), bytes(key.verify_key)
    at = epoch * DEV.epoch_s + 1
    evidence = enclave.attest(identity.peer_id, enc_key, result_key, epoch, beacon(epoch), at)
    att = Attestation(
        tee_kind="simulated", evidence=evidence, collateral=b"", gpu_evidence=b"",
        enc_key=enc_key, result_key=result_key, epoch=epoch, nonce=beacon(epoch), seq=epoch,
        expires=FAR,
    )  # fmt: skip
    return [sign(ad, identity), sign(att, identity)]


def _verdict(records: list, epoch: int = EPOCH, keeper: ViewKeeper | None = None):
    keeper = keeper or ViewKeeper(SqliteRecordStore(":memory:"), POLICY, DEV)
    return keeper.verdicts(records, epoch * DEV.epoch_s)[NODE.peer_id], keeper


def test_the_lifetime_is_the_reattestation_period_plus_the_epoch_lag():
    assert LIFETIME == 3600 // 10 + 2
    assert Policy(reattest_period_s=61, max_epoch_lag=1).attestation_max_age_epochs(60) == 3


def test_a_fresh_attestation_with_an_enclave_signed_heartbeat_is_current():
    records = [*_attestation(NODE, EPOCH - 1), factories.live_heartbeat(NODE, EPOCH - 1)]
    verdict, keeper = _verdict(records)
    assert verdict.verified and not verdict.failed and verdict.measurements
    assert verdict.attested_at >= (EPOCH - 1) * DEV.epoch_s
    assert keeper.not_live_reason(NODE.peer_id) is None


def test_an_old_attestation_counts_for_its_lifetime_while_the_enclave_signs():
    """A late joiner verifying an attestation published an hour ago accepts it (no
    STALE_EVIDENCE), because the enclave it binds signed a recent heartbeat."""
    old = EPOCH - LIFETIME
    records = [*_attestation(NODE, old), factories.live_heartbeat(NODE, EPOCH - 1)]
    verdict, _ = _verdict(records)
    assert verdict.verified
    # reputation's freshness follows the enclave's latest liveness, not the evidence's age
    assert verdict.attested_at == (EPOCH - 1) * DEV.epoch_s
    # one epoch past the lifetime: stale, unverified, no offence
    verdict, _ = _verdict(records, EPOCH + 1)
    assert not verdict.verified and not verdict.failed


def test_an_attestation_without_an_enclave_signed_heartbeat_is_not_current():
    unsigned = sign(Heartbeat(epoch=EPOCH - 1, load=0, tasks_done=0, seq=1, expires=FAR), NODE)
    for beats in ([], [unsigned]):
        verdict, keeper = _verdict([*_attestation(NODE, EPOCH - 10), *beats])
        assert not verdict.verified and not verdict.failed
        assert verdict.result_key == b"" and not verdict.measurements
        assert "not_live" in keeper.not_live_reason(NODE.peer_id)
        # the evidence holds: its keys still check the node's earlier receipts
        assert keeper.enclave_keys(NODE.peer_id) is not None


def test_liveness_must_be_within_the_epoch_lag():
    lag = max(POLICY.max_epoch_lag, DEV.heartbeat_lag)
    records = _attestation(NODE, EPOCH - 20)
    verdict, _ = _verdict([*records, factories.live_heartbeat(NODE, EPOCH - lag)])
    assert verdict.verified
    verdict, keeper = _verdict([*records, factories.live_heartbeat(NODE, EPOCH - lag - 1)])
    assert not verdict.verified
    assert "not_live" in keeper.not_live_reason(NODE.peer_id)


def test_a_forged_enclave_signature_is_a_typed_rejection_and_not_liveness():
    """The node's host (it holds the libp2p key, not the enclave key) cannot keep a dead
    enclave's node current: random bytes, or its own key's signature, do not verify."""
    message = liveness_message(NODE.peer_id, EPOCH - 1)
    host_key = factories.enclave_key("the host, not the enclave")
    for sig in (b"\x07" * 64, host_key.sign(message).signature):
        with pytest.raises(AttestationError) as info:
            check_liveness(
                NODE.peer_id, EPOCH - 1, sig, bytes(factories.enclave_key(NODE.peer_id).verify_key)
            )
        assert info.value.reason is AttestationReason.BAD_ENCLAVE_SIGNATURE
        forged = factories.live_heartbeat(NODE, EPOCH - 1, host_key)
        verdict, keeper = _verdict([*_attestation(NODE, EPOCH - 5), forged])
        assert not verdict.verified and not verdict.failed
        assert "bad_enclave_signature" in keeper.not_live_reason(NODE.peer_id)


def test_a_heartbeat_signed_by_another_nodes_enclave_is_rejected():
    """OTHER's live enclave signing for NODE (or NODE copying OTHER's signature) gives NODE
    nothing: the signature is checked under NODE's attested key and names NODE's peer ID."""
    theirs = factories.live_heartbeat(OTHER, EPOCH - 1)  # OTHER's own, valid for OTHER
    copied = factories.live_heartbeat(NODE, EPOCH - 1, factories.enclave_key(OTHER.peer_id))
    copied_sig = dataclasses.replace(
        factories.live_heartbeat(NODE, EPOCH - 1).record, enclave_sig=theirs.record.enclave_sig
    )
    for beat in (copied, sign(copied_sig, NODE)):
        verdict, keeper = _verdict([*_attestation(NODE, EPOCH - 5), *_attestation(OTHER, EPOCH - 5),
                                    theirs, beat])  # fmt: skip
        assert not verdict.verified
        assert keeper.verdict_of(OTHER.peer_id).verified  # OTHER's own heartbeat counts
    with pytest.raises(AttestationError) as info:
        check_liveness(
            NODE.peer_id,
            EPOCH - 1,
            theirs.record.enclave_sig,
            bytes(factories.enclave_key(OTHER.peer_id).verify_key),
        )
    assert info.value.reason is AttestationReason.BAD_ENCLAVE_SIGNATURE


def test_a_signature_for_one_epoch_does_not_prove_another():
    beat = factories.live_heartbeat(NODE, EPOCH - 9)
    moved = sign(dataclasses.replace(beat.record, epoch=EPOCH - 1), NODE)
    verdict, keeper = _verdict([*_attestation(NODE, EPOCH - 10), moved])
    assert not verdict.verified
    assert "bad_enclave_signature" in keeper.not_live_reason(NODE.peer_id)


def test_a_replayed_attestation_of_a_dead_enclave_gives_no_liveness():
    """Anyone may re-gossip an old attestation and the heartbeats its enclave signed while it
    lived; once the enclave is dead no heartbeat of a recent epoch can carry its signature."""
    dead = factories.enclave_key("enclave that died")
    replayed = [
        *_attestation(NODE, EPOCH - 30, dead),
        *(factories.live_heartbeat(NODE, e, dead) for e in range(EPOCH - 30, EPOCH - 5)),
    ]
    verdict, keeper = _verdict(replayed)
    assert not verdict.verified and not verdict.failed
    assert "not_live" in keeper.not_live_reason(NODE.peer_id)


def test_a_restarted_enclave_is_not_current_until_it_re_attests():
    """The replacement enclave has a new key: its heartbeats do not verify under the old
    attestation's key; its new attestation makes the node current again."""
    new = factories.enclave_key("replacement enclave")
    beat = factories.live_heartbeat(NODE, EPOCH - 1, new)
    verdict, _ = _verdict([*_attestation(NODE, EPOCH - 8), beat])
    assert not verdict.verified
    verdict, _ = _verdict([*_attestation(NODE, EPOCH - 1, new), beat])
    assert verdict.verified and verdict.result_key == bytes(new.verify_key)


def test_verify_node_applies_the_lifetime_with_epoch_s_and_the_lag_without():
    signed = _attestation(NODE, EPOCH - 3)[1]
    rec = signed.record
    args = (
        NODE.peer_id, rec.tee_kind, rec.evidence, rec.collateral, rec.gpu_evidence,
        rec.enc_key, rec.result_key, rec.epoch, rec.nonce, POLICY, NOW,
    )  # fmt: skip
    assert verify_node(*args, current_epoch=EPOCH, epoch_s=DEV.epoch_s).peer_id == NODE.peer_id
    with pytest.raises(AttestationError) as info:
        verify_node(*args, current_epoch=EPOCH)  # just-produced evidence: max_epoch_lag = 2
    assert info.value.reason is AttestationReason.STALE_EVIDENCE
    with pytest.raises(AttestationError) as info:  # never ahead of the current epoch
        verify_node(*args, current_epoch=EPOCH - 4, epoch_s=DEV.epoch_s)
    assert info.value.reason is AttestationReason.STALE_EVIDENCE


def test_a_heartbeat_without_enclave_sig_encodes_as_before():
    """``enclave_sig`` is optional: left out when empty (older heartbeats decode, byte for
    byte), and anything but 64 bytes is refused at decoding."""
    plain = Heartbeat(epoch=5, load=1, tasks_done=2, seq=3, expires=FAR)
    wire = encode(plain, NODE)
    assert b"enclave_sig" not in wire
    assert decode(wire, now=NOW).record == plain
    live = factories.live_heartbeat(NODE, 5)
    assert decode(encode(live.record, NODE), now=NOW).record.enclave_sig == live.record.enclave_sig
    with pytest.raises(Exception) as info:
        Heartbeat(epoch=5, load=1, tasks_done=2, seq=3, expires=FAR, enclave_sig=b"\1" * 63)
    assert "64" in str(info.value)


class _Stub:
    """The part of an :class:`repp2p.tee.Enclave` ``attestation_due`` reads."""

    def __init__(self) -> None:
        self.is_alive = True


def test_a_node_re_attests_every_reattest_period_not_every_epoch():
    supervisor = EnclaveSupervisor(_Stub(), ("echo",), cheat=False)  # type: ignore[arg-type]
    policy, epoch_s, phase = POLICY, DEV.epoch_s, 0.5
    start = EPOCH * epoch_s
    assert supervisor.attestation_due(start + 6, policy, epoch_s, phase)  # never attested
    supervisor.attested_epoch, supervisor.attestation_expires = EPOCH, start + 3700
    mid = [start + k * epoch_s + 6 for k in range(1, 360)]
    assert not any(supervisor.attestation_due(t, policy, epoch_s, phase) for t in mid)
    due = start + 360 * epoch_s + 6  # reattest_period_s later, at the node's phase
    assert supervisor.attestation_due(due, policy, epoch_s, phase)
    assert not supervisor.attestation_due(due - 3, policy, epoch_s, phase)  # before its phase
    supervisor._enclave.is_alive = False  # the enclave died: re-attest now (new keys)
    assert supervisor.attestation_due(start + 12, policy, epoch_s, phase)


class _Publisher:
    def next_seq(self) -> int:
        return 1


class _Load:
    active, done = 0, 0


class _Clock:
    def now(self) -> float:
        return NOW + 3.0


async def test_the_heartbeat_builder_adds_the_enclave_signature_and_survives_a_dead_enclave():
    from repp2p.node.schedules import OwnRecordSchedule
    from repp2p.tee import EnclaveError, EnclaveReason

    enclave = factories.enclave_key(NODE.peer_id)
    asked: list[int] = []

    async def sign_liveness(epoch: int) -> bytes:
        asked.append(epoch)
        return enclave.sign(liveness_message(NODE.peer_id, epoch)).signature

    def schedule(sign) -> OwnRecordSchedule:
        return OwnRecordSchedule(
            _Publisher(), _Load(), lambda: None, _Clock(),  # type: ignore[arg-type]
            epoch_s=DEV.epoch_s, heartbeat_interval_s=5, republish_interval_s=300, phase=0.5,
            sign_liveness=sign,
        )  # fmt: skip

    beat = await schedule(sign_liveness).signed_heartbeat()
    assert asked == [EPOCH] and beat.epoch == EPOCH
    check_liveness(NODE.peer_id, beat.epoch, beat.enclave_sig, bytes(enclave.verify_key))

    async def dead(epoch: int) -> bytes:
        raise EnclaveError(EnclaveReason.CRASHED, "enclave process died")

    unsigned = await schedule(dead).signed_heartbeat()  # still reports load, proves nothing
    assert unsigned.epoch == EPOCH and unsigned.enclave_sig == b""
