"""Unserved charges: what checks out from the charge alone, and hostile bytes."""

from __future__ import annotations

import dataclasses

import pytest

from repp2p.digests import audit_seed, auditors, challenge_indices
from repp2p.digests.params import DigestParams, audit_entropy
from repp2p.digests.unserved import NO_ANSWER, UnservedCharge, verify_unserved
from repp2p.errors import ProofError, ProofReason
from repp2p.records import sign
from repp2p.testing import factories

from .helpers import CLIENTS, EPOCH, NODES, NOW, signed, work_part, world

PARAMS = DigestParams()
ENTROPY = audit_entropy([b"\x01" * 32, b"\x02" * 32])
CANDIDATES = [n.peer_id for n in NODES]


def _charge(**changes) -> tuple[UnservedCharge, object]:
    digest = signed(work_part(NODES[0], world(80, seed=5)), NODES[0])
    seed = audit_seed(EPOCH, PARAMS.grace_epochs, ENTROPY)
    (auditor,) = auditors(seed, digest.record_id, CANDIDATES, exclude={NODES[0].peer_id})
    index = challenge_indices(seed, digest.record_id, digest.record.leaf_count, 8)[0]
    charge = UnservedCharge(digest.data, index, ENTROPY, auditor, NO_ANSWER)
    return dataclasses.replace(charge, **changes), digest


def _reason(data, candidates=CANDIDATES) -> ProofReason:
    with pytest.raises(ProofError) as info:
        verify_unserved(data, NOW, PARAMS, candidates)
    return info.value.reason


def test_a_charge_names_the_publisher_the_leaf_and_the_drawn_auditor():
    charge, digest = _charge()
    found = verify_unserved(charge.encode(), NOW, PARAMS, CANDIDATES)
    assert (found.offender, found.digest_id, found.index) == (
        NODES[0].peer_id,
        digest.record_id,
        charge.index,
    )
    assert UnservedCharge.decode(charge.encode()) == charge


def test_a_leaf_not_drawn_or_an_auditor_not_drawn_is_refused():
    charge, digest = _charge()
    seed = audit_seed(EPOCH, PARAMS.grace_epochs, ENTROPY)
    drawn = challenge_indices(seed, digest.record_id, digest.record.leaf_count, 8)
    other = next(i for i in range(digest.record.leaf_count) if i not in drawn)
    assert _reason(dataclasses.replace(charge, index=other).encode()) is ProofReason.BAD_INDEX
    stranger = dataclasses.replace(charge, auditor=CLIENTS[0].peer_id).encode()
    assert _reason(stranger) is ProofReason.WRONG_SIGNER
    verify_unserved(stranger, NOW, PARAMS)  # without candidates the auditor is not checked
    moved = dataclasses.replace(charge, entropy=bytes(32)).encode()
    assert _reason(moved) in (ProofReason.BAD_INDEX, ProofReason.WRONG_SIGNER)


def test_a_charge_on_something_that_is_not_a_live_digest_is_refused():
    charge, _ = _charge()
    offer = factories.task_records(CLIENTS[0], NODES[0], EPOCH, "x").offer
    assert _reason(dataclasses.replace(charge, digest=offer.data).encode()) is (
        ProofReason.WRONG_TYPE
    )
    old = sign(factories.empty_work_digest(EPOCH, expires=NOW - 1), NODES[0])
    assert _reason(dataclasses.replace(charge, digest=old.data).encode()) is ProofReason.EXPIRED


def test_hostile_bytes_raise_only_proof_errors():
    data = _charge()[0].encode()
    for i in range(0, len(data), 7):
        for flip in (0x01, 0x80):
            mutant = data[:i] + bytes([data[i] ^ flip]) + data[i + 1 :]
            try:
                verify_unserved(mutant, NOW, PARAMS, CANDIDATES)
            except ProofError:
                pass
    for junk in (b"", b"\xa0", b"\xff" * 9, None, 5, b"x" * 100_000, data + b"\x00"):
        with pytest.raises(ProofError):
            verify_unserved(junk, NOW, PARAMS, CANDIDATES)
