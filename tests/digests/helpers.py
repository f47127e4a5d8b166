"""Shared builders for the digest tests: a small world of signed tasks, and forged digest
parts (any leaves, any order, any rows) for the cheating cases."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import random
from collections.abc import Sequence

import nacl.signing
from hypothesis import strategies as st

from repp2p.digests.build import DigestPart, build_feedback, build_work
from repp2p.digests.leaves import Leaf, WorkLeaf
from repp2p.digests.merkle import MerkleTree
from repp2p.identity import Identity
from repp2p.records import (
    EMPTY_MERKLE_ROOT,
    FeedbackDigest,
    FeedbackRow,
    Refusal,
    SignedRecord,
    WorkDigest,
    WorkRow,
    refusal_message,
    sign,
    sign_sealed_input,
)
from repp2p.testing import factories
from repp2p.testing.factories import TaskRecords, far_future, task_records

EPOCH = 7
NOW = factories.NOW
CLIENTS = [factories.identity(f"client-{i}") for i in range(4)]
NODES = [factories.identity(f"node-{i}") for i in range(3)]


def world(tasks: int = 24, *, seed: int = 1, epoch: int = EPOCH) -> list[TaskRecords]:
    """``tasks`` tasks between random clients and nodes with mixed outcomes."""
    rng = random.Random(seed)
    out = []
    for i in range(tasks):
        client, node = rng.choice(CLIENTS), rng.choice(NODES)
        delivered = rng.random() < 0.8
        outcome = rng.choice(["ok", "ok", "ok", "wrong", "bad_proof"]) if delivered else "timeout"
        if rng.random() < 0.1:
            outcome = None  # the client gave no feedback
        out.append(
            task_records(
                client,
                node,
                epoch,
                f"w{seed}-{i}",
                delivered=delivered,
                outcome=outcome,
                latency_ms=rng.randrange(5, 5000),
            )
        )
    return out


def flat(tasks: Sequence[TaskRecords]) -> list[SignedRecord]:
    return [r for t in tasks for r in t.all()]


def work_part(node: Identity, tasks: Sequence[TaskRecords], **kw) -> DigestPart:
    (part,) = build_work(node.peer_id, flat(tasks), EPOCH, expires=far_future(), **kw)
    return part


def feedback_part(client: Identity, tasks: Sequence[TaskRecords], **kw) -> DigestPart:
    (part,) = build_feedback(client.peer_id, flat(tasks), EPOCH, expires=far_future(), **kw)
    return part


def signed(part: DigestPart, who: Identity) -> SignedRecord:
    return sign(part.digest, who)


def rows_of(leaves: Sequence[Leaf]) -> tuple:
    counts: dict[str, list[int]] = {}
    latency: dict[str, int] = {}
    for leaf in leaves:
        c = counts.setdefault(leaf.peer, [0] * len(leaf.OUTCOMES))
        c[leaf.OUTCOMES.index(leaf.outcome)] += 1
        latency[leaf.peer] = latency.get(leaf.peer, 0) + getattr(leaf, "latency_ms", 0)
    if leaves and isinstance(leaves[0], WorkLeaf):
        return tuple(
            WorkRow(
                client=p,
                claims=sum(c),
                receipts=c[0],
                timeouts=c[1],
                failures=c[2],
                refused=c[3],
            )
            for p, c in sorted(counts.items())
        )
    return tuple(
        FeedbackRow(
            node=p, ok=c[0], wrong=c[1], timeout=c[2], bad_proof=c[3], latency_sum_ms=latency[p]
        )
        for p, c in sorted(counts.items())
    )


def forge(
    kind: type[WorkDigest] | type[FeedbackDigest],
    leaves: Sequence[Leaf | bytes],
    evidence: Sequence[tuple[SignedRecord, ...]],
    *,
    rows: tuple | None = None,
    epoch: int = EPOCH,
) -> DigestPart:
    """A part over exactly these leaves, in this order (raw bytes allowed), with ``rows``
    (by default the rows the leaves add up to): what a cheating publisher could sign."""
    encoded = [x if isinstance(x, bytes) else x.encode() for x in leaves]
    counter = itertools.count()
    # Any order, duplicates too: the tree is keyed by position, not by the leaves' keys.
    tree = MerkleTree(encoded, lambda _: next(counter).to_bytes(4, "big"))
    if rows is None:
        rows = rows_of([x for x in leaves if not isinstance(x, bytes)])
    digest = kind(
        epoch=epoch,
        part=0,
        parts=1,
        rows=rows,
        leaf_count=len(encoded),
        merkle_root=tree.root if encoded else EMPTY_MERKLE_ROOT,
        seq=0,
        expires=far_future(),
    )
    typed = tuple(x for x in leaves if not isinstance(x, bytes))
    return DigestPart(digest, typed, tree, tuple(evidence))  # type: ignore[arg-type]


#: Arbitrary CBOR-able values, maps keyed mostly by the names our encodings use.
cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.binary(max_size=64) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(
            st.sampled_from(
                [
                    "kind",
                    "digest",
                    "opening",
                    "records",
                    "brackets",
                    "a",
                    "b",
                    "first",
                    "second",
                    "index",
                    "leaf",
                    "path",
                    "left",
                    "right",
                ]
            )
            | st.text(max_size=4),
            inner,
            max_size=6,
        )
    ),
    max_leaves=20,
)


def refusal_of(
    task: TaskRecords,
    client: Identity,
    node: Identity,
    *,
    enclave: nacl.signing.SigningKey | None = None,
) -> SignedRecord:
    """The node's signed Refusal of ``task``'s input (sealed bytes b"junk"), its enclave
    signature by the node's factory enclave key (or ``enclave``: a forgery)."""
    o = task.offer.record
    enc_key = factories.digest("enclave-x25519")
    unsigned = Refusal(
        task_id=o.task_id,  # type: ignore[attr-defined]
        offer_id=task.offer.record_id,
        client=client.peer_id,
        enc_key=enc_key,
        sealed_digest=hashlib.sha256(b"junk").digest(),
        client_sig=sign_sealed_input(
            client,
            task_id=o.task_id,  # type: ignore[attr-defined]
            node=node.peer_id,
            enc_key=enc_key,
            sealed=b"junk",
        ),
        code="bad_seal",
        result_key=bytes(factories.enclave_key(node.peer_id).verify_key),
        enclave_sig=b"\0" * 64,
        seq=1,
        expires=o.expires,  # type: ignore[attr-defined]  # as the enclave signs it
    )
    key = enclave or factories.enclave_key(node.peer_id)
    body = dataclasses.replace(unsigned, enclave_sig=key.sign(refusal_message(unsigned)).signature)
    return sign(body, node)


def refused_task(client: Identity, node: Identity, epoch: int, label: str, **kw) -> tuple:
    """A task the node claimed and its enclave refused: offer and claim, no receipt, no
    feedback; returns ``(task, refusal)``."""
    task = task_records(client, node, epoch, label, delivered=False, outcome=None, **kw)
    return task, refusal_of(task, client, node)
