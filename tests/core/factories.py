"""Signed test records for the core tests: deterministic keys, one helper per record type.

Keys are ``nacl.signing.SigningKey(sha256(name))`` so every test run (and every machine) signs
the same bytes. ``Scenario`` accumulates records of a small network and hands out the
accepted record set and the attestation verdicts the way a node would.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib

import nacl.signing

from repp2p.records import (
    Claim,
    EngineOffer,
    Feedback,
    Heartbeat,
    NodeAd,
    Receipt,
    SignedRecord,
    TaskOffer,
    peer_id_from_public_key,
    receipt_message,
    sign,
)
from repp2p.reputation import AttestedNode

#: ``expires`` of every record: a day after the test clock's origin, so no record expires in
#: the epochs these tests look at (600-s epochs: before epoch 144), and a store given them at
#: ``now=0`` accepts them (a day is the smallest lifetime cap, ``MAX_LIFETIME_S``).
FAR = 86_400
EPOCH_S = 600
ENGINE = "echo"


def digest(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


@functools.cache
def key(name: str) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(hashlib.sha256(b"repp2p-core-test/" + name.encode()).digest())


@functools.cache
def peer(name: str) -> str:
    return peer_id_from_public_key(bytes(key(name).verify_key))


MEASUREMENT = digest("echo-measurement")


@functools.cache
def enclave_key(name: str) -> nacl.signing.SigningKey:
    """The node's (simulated) enclave result key: the key its attestation binds."""
    return nacl.signing.SigningKey(hashlib.sha256(b"repp2p-core-enclave/" + name.encode()).digest())


def result_key(name: str) -> bytes:
    return bytes(enclave_key(name).verify_key)


def node_ad(name: str, *, price=1000, capacity=4, throughput=100, tee="nitro", seq=1, engines=None):
    engines = engines if engines is not None else (EngineOffer(ENGINE, MEASUREMENT),)
    ad = NodeAd(
        addrs=("/ip4/127.0.0.1/tcp/4001",),
        engines=tuple(engines),
        tee_kind=tee,
        price=price,
        capacity=capacity,
        throughput=throughput,
        seq=seq,
        expires=FAR,
    )
    return sign(ad, key(name))


def verdict(name: str, *, tee="nitro", verified=True, attested_at=FAR, **kw) -> AttestedNode:
    return AttestedNode(
        peer_id=peer(name),
        tee_kind=tee,
        measurements=frozenset({MEASUREMENT}),
        verified=verified,
        attested_at=attested_at,
        **{"result_key": result_key(name), **kw},
    )


def heartbeat(name: str, epoch: int, *, load=0, done=0, seq=1) -> SignedRecord:
    return sign(Heartbeat(epoch=epoch, load=load, tasks_done=done, seq=seq, expires=FAR), key(name))


def offer(
    client: str, task: str, epoch: int, *, k=1, min_rep=0, max_price=10**9, tee_kinds=(), seq=1
) -> SignedRecord:
    rec = TaskOffer(
        task_id=digest(task),
        engine_id=ENGINE,
        epoch=epoch,
        tee_kinds=tuple(sorted(tee_kinds)),
        min_reputation=min_rep,
        max_price=max_price,
        redundancy=k,
        deadline_ms=(epoch * EPOCH_S + 300) * 1000,
        input_digest=digest("in/" + task),
        input_size=10,
        result_key=digest("rk/" + client),
        seq=seq,
        expires=FAR,
    )
    return sign(rec, key(client))


def claim(
    node: str, off: SignedRecord, *, rank=0, view_digest=b"\0" * 32, seq=1, expires=FAR
) -> SignedRecord:
    rec = Claim(
        task_id=off.record.task_id,
        offer_id=off.record_id,
        rank=rank,
        epoch=off.record.epoch,
        view_digest=view_digest,
        seq=seq,
        expires=expires,
    )
    return sign(rec, key(node))


def receipt(
    node: str,
    off: SignedRecord,
    *,
    output="right",
    enclave: str | None = None,
    junk_sig=False,
    expires=FAR,
) -> SignedRecord:
    """``node``'s receipt, its enclave signature by ``enclave``'s key (default the node's own);
    ``junk_sig``: 64 bytes no enclave signed."""
    start = off.record.epoch * EPOCH_S * 1000
    rec = Receipt(
        task_id=off.record.task_id,
        offer_id=off.record_id,
        engine_id=ENGINE,
        measurement=MEASUREMENT,
        input_digest=off.record.input_digest,
        output_digest=digest(output),
        started_ms=start + 10,
        finished_ms=start + 500,
        result_key=result_key(enclave or node),
        enclave_sig=b"\1" * 64,
        seq=1,
        expires=expires,
    )
    if not junk_sig:
        sig = enclave_key(enclave or node).sign(receipt_message(rec)).signature
        rec = dataclasses.replace(rec, enclave_sig=sig)
    return sign(rec, key(node))


def feedback(
    client: str, off: SignedRecord, node: str, outcome="ok", *, latency=1000, rating=90, seq=1
) -> SignedRecord:
    rec = Feedback(
        task_id=off.record.task_id,
        node=peer(node),
        outcome=outcome,
        latency_ms=latency,
        rating=rating,
        seq=seq,
        expires=FAR,
    )
    return sign(rec, key(client))


@dataclasses.dataclass
class Scenario:
    """A small network's accepted records and verdicts, built up by the helpers."""

    records: list[SignedRecord] = dataclasses.field(default_factory=list)
    verdicts: dict[str, AttestedNode] = dataclasses.field(default_factory=dict)
    _task: int = 0

    def add_node(self, name: str, *, attested=True, **ad_kw) -> str:
        self.records.append(node_ad(name, **ad_kw))
        if attested:
            tee = ad_kw.get("tee", "nitro")
            self.verdicts[peer(name)] = verdict(name, tee=tee)
        return peer(name)

    def heartbeats(self, name: str, epochs, *, load=0) -> None:
        self.records.extend(heartbeat(name, e, load=load) for e in epochs)

    def task(
        self, client: str, node: str, epoch: int, outcome="ok", *, deliver=True, output="right"
    ) -> SignedRecord:
        """Client offers a task, node claims it (and delivers), client gives feedback."""
        self._task += 1
        off = offer(client, f"{client}/{self._task}", epoch)
        self.records += [off, claim(node, off)]
        if deliver:
            self.records.append(receipt(node, off, output=output))
        if outcome is not None:
            self.records.append(feedback(client, off, node, outcome))
        return off

    @property
    def attested(self) -> dict[str, AttestedNode]:
        return dict(self.verdicts)
