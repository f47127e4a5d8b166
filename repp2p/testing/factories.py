"""Deterministic identities and ready-made valid records for tests and examples.

Records carry an ``expires`` that must lie within their type's lifetime cap of the ``now``
they are checked at (``repp2p.records.MAX_LIFETIME_S``), so expiries here are relative to a
``now``: the fixed :data:`NOW` for tests that pass the clock by hand, ``time.time()`` for
tests whose nodes run on the real clock.
"""

from __future__ import annotations

import hashlib

from repp2p.identity import Identity
from repp2p.records import (
    MAX_LIFETIME_S,
    Attestation,
    Claim,
    EngineOffer,
    Feedback,
    Heartbeat,
    NodeAd,
    Receipt,
    Record,
    TaskOffer,
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
