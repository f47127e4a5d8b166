"""Deterministic identities and ready-made valid records for tests and examples.

Records carry an ``expires`` that must lie within their type's lifetime cap of the ``now``
they are checked at (``repp2p.records.MAX_LIFETIME_S``), so expiries here are relative to a
``now``: the fixed :data:`NOW` for tests that pass the clock by hand, ``time.time()`` for
tests whose nodes run on the real clock.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib

import nacl.signing

from repp2p.attestation.liveness import liveness_message
from repp2p.identity import Identity
from repp2p.records import (
    EMPTY_MERKLE_ROOT,
    MAX_LIFETIME_S,
    Attestation,
    Claim,
    EngineOffer,
    Feedback,
    FeedbackDigest,
    FeedbackRow,
    Heartbeat,
    NodeAd,
    Receipt,
    Record,
    Refusal,
    SignedRecord,
    TaskOffer,
    WorkDigest,
    WorkRow,
    part_of,
    receipt_message,
    sign,
    task_id_for,
)

#: A fixed clock for tests that pass ``now`` by hand (unix seconds, 2023-11-14 22:13:20 UTC).
NOW = 1_700_000_000


def far_future(now: float = NOW) -> int:
    """An ``expires`` that no test outlives and that every record type accepts at ``now``
    (and later): one day ahead, the smallest lifetime cap.

    Args:
        now: unix seconds the records will be checked at (at the earliest).
    """
    return int(now) + min(MAX_LIFETIME_S.values())


def identity(name: str) -> Identity:
    """A stable identity derived from a name ("alice", "bob", "node-17"...)."""
    return Identity.from_seed(hashlib.sha256(b"repp2p-test-identity/" + name.encode()).digest())


def digest(label: str) -> bytes:
    """A stable 32-byte digest for a label."""
    return hashlib.sha256(label.encode()).digest()


def sample_records(
    seq: int = 1,
    *,
    now: float = NOW,
    expires: int | None = None,
    client: Identity | None = None,
) -> list[Record]:
    """One valid record of every registered type, valid at ``now`` until ``expires``.

    Args:
        seq: every record's ``seq``.
        now: unix seconds; the offer's deadline is an hour later.
        expires: every record's ``expires``; by default :func:`far_future` of ``now``.
        client: who will sign the TaskOffer: its task id (and every task record's) is
            bound to that key (:func:`repp2p.records.task_id_for`), as peers require;
            by default ``identity("client")``.
    """
    node = identity("node")
    client = client or identity("client")
    task = task_id_for(client.public_key, digest("client-key"))
    if expires is None:
        expires = far_future(now)
    return [
        NodeAd(
            addrs=("/ip4/127.0.0.1/tcp/4001", "/ip4/127.0.0.1/udp/4001/quic-v1"),
            engines=(EngineOffer("echo", digest("echo")), EngineOffer("sentiment", digest("s"))),
            tee_kind="simulated",
            price=1_000,
            capacity=4,
            throughput=600,
            seq=seq,
            expires=expires,
        ),
        Attestation(
            tee_kind="simulated",
            evidence=b"evidence" * 8,
            collateral=b"",
            gpu_evidence=b"",
            enc_key=digest("enc"),
            result_key=digest("res"),
            epoch=7,
            nonce=digest("nonce"),
            seq=seq,
            expires=expires,
        ),
        Heartbeat(epoch=7, load=1, tasks_done=42, seq=seq, expires=expires),
        TaskOffer(
            task_id=task,
            engine_id="echo",
            epoch=7,
            tee_kinds=("nitro", "simulated"),
            min_reputation=300,
            max_price=5_000,
            redundancy=2,
            deadline_ms=(int(now) + 3600) * 1000,
            input_digest=digest("input"),
            input_size=11,
            result_key=digest("client-key"),
            seq=seq,
            expires=expires,
        ),
        Claim(
            task_id=task,
            offer_id=digest("offer"),
            rank=0,
            epoch=7,
            view_digest=digest("view"),
            seq=seq,
            expires=expires,
        ),
        Receipt(
            task_id=task,
            offer_id=digest("offer"),
            engine_id="echo",
            measurement=digest("echo"),
            input_digest=digest("input"),
            output_digest=digest("output"),
            started_ms=1_000,
            finished_ms=1_012,
            result_key=digest("res"),
            enclave_sig=bytes(64),
            seq=seq,
            expires=expires,
        ),
        Feedback(
            task_id=task,
            node=node.peer_id,
            outcome="ok",
            latency_ms=12,
            rating=90,
            seq=seq,
            expires=expires,
        ),
    ]


def sample_refusal(*, now: float = NOW, expires: int | None = None) -> Record:
    """A well-formed ``Refusal`` (its signatures are placeholders: it decodes, but
    :func:`repp2p.records.check_refusal` refuses it)."""
    client = identity("client")
    return Refusal(
        task_id=task_id_for(client.public_key, digest("client-key")),
        offer_id=digest("offer"),
        client=client.peer_id,
        enc_key=digest("enc"),
        sealed_digest=digest("sealed"),
        client_sig=bytes(64),
        code="bad_seal",
        result_key=digest("res"),
        enclave_sig=bytes(64),
        seq=1,
        expires=far_future(now) if expires is None else expires,
    )


def sample_digests(*, expires: int | None = None) -> list[Record]:
    """One valid ``WorkDigest`` and one ``FeedbackDigest`` (single part, two rows each, a
    made-up root), valid at :data:`NOW` until ``expires`` (by default :func:`far_future`).

    Kept apart from :func:`sample_records`, whose list of types other tests enumerate.
    """
    if expires is None:
        expires = far_future()
    a, b = sorted((identity("client-a").peer_id, identity("client-b").peer_id))
    n1, n2 = sorted((identity("node-1").peer_id, identity("node-2").peer_id))
    return [
        WorkDigest(
            epoch=7,
            part=0,
            parts=1,
            rows=(
                WorkRow(client=a, claims=3, receipts=2, timeouts=1, failures=0),
                WorkRow(client=b, claims=1, receipts=0, timeouts=0, failures=1),
            ),
            leaf_count=4,
            merkle_root=digest("work-root"),
            seq=0,
            expires=expires,
        ),
        FeedbackDigest(
            epoch=7,
            part=0,
            parts=1,
            rows=(
                FeedbackRow(node=n1, ok=2, wrong=0, timeout=1, bad_proof=0, latency_sum_ms=900),
                FeedbackRow(node=n2, ok=0, wrong=1, timeout=0, bad_proof=0, latency_sum_ms=40),
            ),
            leaf_count=4,
            merkle_root=digest("feedback-root"),
            seq=0,
            expires=expires,
        ),
    ]


def empty_work_digest(epoch: int = 7, *, expires: int | None = None) -> WorkDigest:
    """A node's digest of an epoch in which it claimed nothing."""
    return WorkDigest(
        epoch=epoch,
        part=0,
        parts=1,
        rows=(),
        leaf_count=0,
        merkle_root=EMPTY_MERKLE_ROOT,
        seq=0,
        expires=far_future() if expires is None else expires,
    )


@functools.cache
def enclave_key(node: str) -> nacl.signing.SigningKey:
    """A node's stable enclave result key (signs receipts as a real enclave would)."""
    return nacl.signing.SigningKey(digest("enclave/" + node))


def live_heartbeat(
    node: Identity,
    epoch: int,
    enclave: nacl.signing.SigningKey | None = None,
    *,
    load: int = 0,
    done: int = 0,
    seq: int = 1,
    expires: int | None = None,
) -> SignedRecord:
    """``node``'s heartbeat of ``epoch`` with its enclave's liveness signature (by
    ``enclave``, default :func:`enclave_key` of the node), as a running node publishes it."""
    key = enclave_key(node.peer_id) if enclave is None else enclave
    sig = key.sign(liveness_message(node.peer_id, epoch)).signature
    record = Heartbeat(
        epoch=epoch,
        load=load,
        tasks_done=done,
        seq=seq,
        expires=far_future() if expires is None else expires,
        enclave_sig=sig,
    )
    return sign(record, node)


def simulated_attestation(
    node: Identity,
    ad: NodeAd,
    epoch: int,
    *,
    at: int | None = None,
    result_key: bytes | None = None,
    seq: int = 1,
    expires: int | None = None,
) -> Attestation:
    """A SIMULATED-TEE ``Attestation`` of ``node`` bound to ``epoch`` that verifies under
    the dev policy and establishes ``ad``'s engines (its measurement is this runtime's
    enclave measurement of them). Development only: no real security.

    Args:
        node: the attested node.
        ad: its ad (the engines the enclave measurement covers).
        epoch: the binding epoch (the evidence's nonce is its beacon).
        at: unix seconds the evidence is signed at (default: :data:`NOW`).
        result_key: the enclave's result key (default: :func:`enclave_key`'s, which signs
            the receipts of :func:`task_records` and :func:`live_heartbeat`).
        seq, expires: the record's (default expiry :func:`far_future`).
    """
    from repp2p.attestation import SimulatedEnclave
    from repp2p.matching import beacon
    from repp2p.tee.measurement import enclave_measurement, runtime_measurement

    wanted = {e.engine_id: e.measurement for e in ad.engines}
    enclave = SimulatedEnclave(
        seed=digest("seed/" + node.peer_id),
        measurement=enclave_measurement(wanted, runtime_measurement()),
    )
    enc_key = digest("enc/" + node.peer_id)
    if result_key is None:
        result_key = bytes(enclave_key(node.peer_id).verify_key)
    at = NOW if at is None else at
    return Attestation(
        tee_kind="simulated",
        evidence=enclave.attest(node.peer_id, enc_key, result_key, epoch, beacon(epoch), at),
        collateral=b"",
        gpu_evidence=b"",
        enc_key=enc_key,
        result_key=result_key,
        epoch=epoch,
        nonce=beacon(epoch),
        seq=seq,
        expires=far_future() if expires is None else expires,
    )


@dataclasses.dataclass(frozen=True)
class TaskRecords:
    """The signed per-task records of one task between one client and one node."""

    offer: SignedRecord
    claim: SignedRecord | None
    receipt: SignedRecord | None
    feedback: SignedRecord | None

    def all(self) -> list[SignedRecord]:
        """Every record that exists."""
        return [r for r in (self.offer, self.claim, self.receipt, self.feedback) if r]


def task_records(
    client: Identity,
    node: Identity,
    epoch: int,
    label: str,
    *,
    claimed: bool = True,
    delivered: bool = True,
    outcome: str | None = "ok",
    latency_ms: int = 120,
    output: str = "right",
    expires: int | None = None,
    deadline_ms: int | None = None,
) -> TaskRecords:
    """Signed records of one task: the client's offer (a bound task id), the node's claim
    and receipt (with a valid enclave signature by :func:`enclave_key`), the client's
    feedback.

    Args:
        client, node: the parties.
        epoch: the offer's epoch.
        label: makes the task unique (its result key derives from it).
        claimed: the node claimed the task.
        delivered: the node signed a receipt (needs ``claimed``).
        outcome: the client's feedback outcome, or None for no feedback.
        latency_ms: the feedback's latency.
        output: what the receipt says the output hashed to.
        expires: every record's ``expires`` (default :func:`far_future`).
        deadline_ms: the offer's deadline (default an hour after :data:`NOW`).
    """
    expires = far_future() if expires is None else expires
    deadline_ms = (NOW + 3600) * 1000 if deadline_ms is None else deadline_ms
    result_key = digest(f"result-key/{client.peer_id}/{label}")
    offer = sign(
        TaskOffer(
            task_id=task_id_for(client.public_key, result_key),
            engine_id="echo",
            epoch=epoch,
            tee_kinds=(),
            min_reputation=0,
            max_price=5_000,
            redundancy=1,
            deadline_ms=deadline_ms,
            input_digest=digest("input/" + label),
            input_size=11,
            result_key=result_key,
            seq=1,
            expires=expires,
        ),
        client,
    )
    task_id = offer.record.task_id  # type: ignore[attr-defined]
    claim = receipt = None
    if claimed:
        claim = sign(
            Claim(
                task_id=task_id,
                offer_id=offer.record_id,
                rank=0,
                epoch=epoch,
                view_digest=digest("view"),
                seq=1,
                expires=expires,
            ),
            node,
        )
    if claimed and delivered:
        key = enclave_key(node.peer_id)
        unsigned = Receipt(
            task_id=task_id,
            offer_id=offer.record_id,
            engine_id="echo",
            measurement=digest("echo"),
            input_digest=digest("input/" + label),
            output_digest=digest(output),
            started_ms=1_000,
            finished_ms=1_012,
            result_key=bytes(key.verify_key),
            enclave_sig=bytes(64),
            seq=1,
            expires=expires,
        )
        enclave_sig = key.sign(receipt_message(unsigned)).signature
        receipt = sign(dataclasses.replace(unsigned, enclave_sig=enclave_sig), node)
    feedback = None
    if outcome is not None:
        feedback = sign(
            Feedback(
                task_id=task_id,
                node=node.peer_id,
                outcome=outcome,
                latency_ms=latency_ms,
                rating=90 if outcome == "ok" else 0,
                seq=1,
                expires=expires,
            ),
            client,
        )
    return TaskRecords(offer, claim, receipt, feedback)


def digest_part_peers(names: list[str], parts: int, part: int) -> list[Identity]:
    """Identities among ``names`` whose rows belong in ``part`` of ``parts``."""
    return [i for i in map(identity, names) if part_of(i.peer_id, parts) == part]
