"""Signed offers, claims and feedback for the task-rule tests (deterministic keys).

Times: :data:`NOW_MS` is a fixed clock reading, 3.25 s into an epoch of :data:`EPOCH_S`
seconds; every offset the tests use is a multiple of 250 ms, so the float seconds of the old
code and the integer milliseconds of the new one agree exactly.
"""

from __future__ import annotations

import functools

from repp2p.identity import Identity
from repp2p.matching import MatchingParams
from repp2p.records import (
    Claim,
    Feedback,
    SignedRecord,
    TaskOffer,
    decode,
    encode,
    sign,
    task_id_for,
)
from repp2p.testing.factories import NOW, digest, identity

__all__ = ["NOW", "digest", "identity"]  # re-exported for the tests

EPOCH_S = 10
#: 1_700_000_000 is 0 mod 10: the clock stands 3.25 s into epoch NOW // EPOCH_S
NOW_MS = NOW * 1000 + 3250
CURRENT_EPOCH = NOW_MS // 1000 // EPOCH_S
PARAMS = MatchingParams()  # claim_timeout_ms 2000, failover_depth 8
T = PARAMS.claim_timeout_ms

CLIENT = identity("client")
OTHER_CLIENT = identity("other-client")
NODES: tuple[Identity, ...] = tuple(identity(f"node-{i}") for i in range(12))
RANKING: tuple[str, ...] = tuple(n.peer_id for n in NODES)
STRANGER = identity("stranger")
RESULT_KEY = digest("result-key")
#: far enough for any deadline the tests use, within the TaskOffer lifetime cap
DEFAULT_EXPIRES = NOW + 7200


@functools.cache
def offer_data(
    *,
    deadline_ms: int = NOW_MS + 60_000,
    expires: int = DEFAULT_EXPIRES,
    epoch: int = CURRENT_EPOCH,
    k: int = 1,
    bound: bool = True,
    signer: Identity = CLIENT,
    bind_to: Identity | None = None,
) -> bytes:
    """A client-signed TaskOffer envelope; its task id is bound to ``bind_to`` (by default
    the signer), or to nothing when not ``bound``."""
    owner = bind_to or signer
    task_id = task_id_for(owner.public_key, RESULT_KEY) if bound else digest("squatted")
    return encode(
        TaskOffer(
            task_id=task_id,
            engine_id="echo",
            epoch=epoch,
            tee_kinds=(),
            min_reputation=0,
            max_price=2**63,
            redundancy=k,
            deadline_ms=deadline_ms,
            input_digest=digest("input"),
            input_size=5,
            result_key=RESULT_KEY,
            seq=1,
            expires=expires,
        ),
        signer,
    )


@functools.cache
def offer(**kwargs) -> SignedRecord:
    """:func:`offer_data`, decoded."""
    return decode(offer_data(**kwargs))


@functools.cache
def claim(of: SignedRecord, node: Identity, rank: int) -> SignedRecord:
    return sign(
        Claim(
            task_id=of.record.task_id,
            offer_id=of.record_id,
            rank=rank,
            epoch=of.record.epoch,
            view_digest=digest("view"),
            seq=1,
            expires=of.record.expires,
        ),
        node,
    )


@functools.cache
def feedback(
    of: SignedRecord,
    node: str,
    outcome: str = "timeout",
    *,
    signer: Identity = CLIENT,
    task_id: bytes | None = None,
    expires: int | None = None,
) -> SignedRecord:
    return sign(
        Feedback(
            task_id=of.record.task_id if task_id is None else task_id,
            node=node,
            outcome=outcome,
            latency_ms=10,
            rating=0,
            seq=1,
            expires=of.record.expires if expires is None else expires,
        ),
        signer,
    )
