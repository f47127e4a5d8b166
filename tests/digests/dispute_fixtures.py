"""Shared builders for the dispute-proof tests (tests/core/test_pairs_disputes.py,
tests/core/test_pairs_proof.py, tests/digests/test_dispute_proofs.py): a replica's claim
and enclave-signed receipt on an offer, a client's verdict on it, a task run by several
replicas, background traffic, the attestation verdict a view holds of a node, and the
check a digest-view peer holds proofs to on arrival."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterable, Sequence

import nacl.signing

from repp2p.digests import build_feedback, build_work, count_rows, reconcile
from repp2p.digests.disputes import CheckedDispute, DisputeProof, check_dispute_proof
from repp2p.identity import Identity
from repp2p.records import Claim, Feedback, Receipt, SignedRecord, receipt_message, sign
from repp2p.reputation import AttestedNode
from repp2p.testing import factories

#: ``(node, output)``: one replica of a task and the output it returns
Run = tuple[Identity, str]


def replica_run(
    offer: SignedRecord,
    node: Identity,
    output: str,
    *,
    expires: int | None = None,
    key: nacl.signing.SigningKey | None = None,
    enclave_sig: bytes | None = None,
    claim_epoch: int | None = None,
) -> tuple[SignedRecord, SignedRecord]:
    """``node``'s claim and receipt on ``offer`` returning ``output``; the receipt is signed
    by ``key`` (default: the node's enclave key) unless ``enclave_sig`` is given (forgeries),
    the claim is for ``claim_epoch`` (default: the offer's epoch); both expire at
    ``expires`` (default: far in the future)."""
    o = offer.record
    expires = factories.far_future() if expires is None else expires
    claim = sign(
        Claim(
            task_id=o.task_id,
            offer_id=offer.record_id,
            rank=0,
            epoch=o.epoch if claim_epoch is None else claim_epoch,
            view_digest=factories.digest("view"),
            seq=1,
            expires=expires,
        ),
        node,
    )
    key = key or factories.enclave_key(node.peer_id)
    unsigned = Receipt(
        task_id=o.task_id,
        offer_id=offer.record_id,
        engine_id=o.engine_id,
        measurement=factories.digest("echo"),
        input_digest=o.input_digest,
        output_digest=factories.digest(output),
        started_ms=1_000,
        finished_ms=1_012,
        result_key=bytes(key.verify_key),
        enclave_sig=bytes(64),
        seq=1,
        expires=expires,
    )
    sig = enclave_sig if enclave_sig is not None else key.sign(receipt_message(unsigned)).signature
    return claim, sign(dataclasses.replace(unsigned, enclave_sig=sig), node)


def client_feedback(
    client: Identity, offer: SignedRecord, node: Identity, outcome: str, expires: int
) -> SignedRecord:
    """``client``'s feedback on ``node`` for ``offer``'s task (rating 90 for ``ok``, else 0)."""
    return sign(
        Feedback(
            task_id=offer.record.task_id,
            node=node.peer_id,
            outcome=outcome,
            latency_ms=120,
            rating=90 if outcome == "ok" else 0,
            seq=1,
            expires=expires,
        ),
        client,
    )


def disputed_task(
    client: Identity,
    epoch: int,
    label: str,
    runs: Sequence[Run],
    verdict_of: Callable[[Identity, str], str],
    expires: int,
) -> tuple[list[SignedRecord], SignedRecord, list[tuple[SignedRecord, SignedRecord]]]:
    """A task of ``client`` run by every ``(node, output)`` of ``runs``, the client's
    verdict on each node given by ``verdict_of(node, output)``. Returns ``(records, offer,
    [(claim, receipt)])``: the offer, claims, receipts and feedback, and what a dispute
    proof carries."""
    first = factories.task_records(client, runs[0][0], epoch, label, outcome=None, expires=expires)
    offer = first.offer
    records, pairs = [offer], []
    for node, out in runs:
        claim, receipt = replica_run(offer, node, out, expires=expires)
        pairs.append((claim, receipt))
        feedback = client_feedback(client, offer, node, verdict_of(node, out), expires)
        records += [claim, receipt, feedback]
    return records, offer, pairs


def attested(
    node: Identity,
    *,
    now: int,
    tee_kind: str = "simulated",
    measurements: Iterable[bytes] = (),
    key: bytes | None = None,
    earlier: tuple[tuple[bytes, int], ...] = (),
) -> AttestedNode:
    """The verdict a view holds of ``node``: verified at ``now`` with its enclave's result
    key (``key``, default the one :func:`replica_run` signs with)."""
    return AttestedNode(
        peer_id=node.peer_id,
        tee_kind=tee_kind,
        measurements=frozenset(measurements),
        verified=True,
        attested_at=now,
        result_key=key or bytes(factories.enclave_key(node.peer_id).verify_key),
        earlier_result_keys=earlier,
    )


def traffic(
    rng: random.Random,
    clients: Sequence[Identity],
    nodes: Sequence[Identity],
    epoch: int,
    count: int,
    expires: int,
) -> list[SignedRecord]:
    """``count`` plain tasks of ``epoch`` (labelled ``h{epoch}-{i}``), node ``i`` of them
    run by ``nodes[i % len(nodes)]`` for a client ``rng`` picks: every record of each."""
    records: list[SignedRecord] = []
    for i in range(count):
        node = nodes[i % len(nodes)]
        records += factories.task_records(
            rng.choice(clients), node, epoch, f"h{epoch}-{i}", expires=expires
        ).all()
    return records


def epoch_rows(
    parties: Iterable[Identity], tasks: list[SignedRecord], epoch: int, expires: int
) -> tuple[int, list, list[bytes]]:
    """``(epoch, count rows, digest record ids)``: every party's signed work and feedback
    digests of ``tasks`` in ``epoch``, reconciled, as a view folds them."""
    digests = [
        sign(p.digest, who)
        for who in parties
        for build in (build_work, build_feedback)
        for p in build(who.peer_id, tasks, epoch, expires=expires)
    ]
    return epoch, count_rows(reconcile(digests, epoch)), [d.record_id for d in digests]


def checked_proofs(
    proofs: Iterable[DisputeProof],
    verdicts: dict[str, AttestedNode],
    nodes: Sequence[Identity],
    *,
    epochs: tuple[int, int],
    now: int,
) -> list[CheckedDispute]:
    """``proofs`` as a digest-view peer holds them once checked on arrival: every one of
    ``nodes`` attested as ``verdicts`` says and ranked first."""
    return [
        check_dispute_proof(
            p,
            now=now,
            epochs=epochs,
            verdict_of=lambda peer, _epoch: verdicts.get(peer),
            ranks_of=lambda offer: {n.peer_id: frozenset({0}) for n in nodes},
        )
        for p in proofs
    ]
