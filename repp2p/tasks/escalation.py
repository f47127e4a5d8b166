"""Dispute escalation: a task whose receipts disagree is run again by further ranks.

Rules of this file (h11 style):

* No I/O at all: no clock, no network, no randomness. Times are integer unix milliseconds
  passed in; the node's view and the attested enclave keys are arguments.
* A task is **disputed** when its verified answers carry two or more different outputs
  (:func:`is_disputed`). The client then asks further nodes, one at a time, to run the task
  as **replicas**: the next nodes of :func:`escalation_ranking` (the task's ranking built
  **without the exploration coin**, so replicas come from the serving tier first), skipping
  every node that already answered, until the standing-weighted verdict
  (:func:`repp2p.reputation.disputes.dispute_verdicts`, docs/core.md "Disputes") is
  confident or ``MatchingParams.dispute_max_replicas`` replicas were asked
  (:class:`EscalationPlan`).
* A replica request carries the disagreeing receipts (``"dispute"``, docs/protocol.md).
  The node admits it only on evidence it checks itself (:func:`check_dispute`, then
  :func:`replica_rank`, then :func:`take_replica`), so a client cannot force extra work
  on a node without a real disagreement between attested enclaves:

      step                                   rules (the first that fails decides)
      1 check_offer / check_fresh (admission) the offer, replay, epoch window
     1b may_be_replica(escalation, me)        this node is in the escalation ranking at all
                                              (``not_assigned``): cheap, so the many nodes
                                              that can never be the replica do not verify
                                              up to 2 x MAX_DISPUTE_RECEIPTS signatures
     1c in_replica_window(escalation, me,     step 3 on the signers the carried receipts
                          envelopes, ...)     *name*, read without verifying them (a window
                                              widened by the carried releases, which are
                                              not verified yet either): ``replayed``,
                                              ``not_assigned``, or ``bad_dispute`` for bytes
                                              that are no envelope; so a node outside the
                                              window of a genuine request (an owner that
                                              replays it to further ranks) verifies nothing
      2 check_dispute(envelopes, offer, ...)  2..MAX_DISPUTE_RECEIPTS receipts, each a live
                                              Receipt for this offer and input, distinct
                                              signers, each signer one that may have run it
                                              (in the offer's ranking or the escalation
                                              ranking), enclave signature by the signer's
                                              attested result key, >= 2 distinct outputs
                                              -> ``bad_dispute``
     2c check_verdict_claims(envelopes,       when the request carries ``claims``: one live
                              offer, receipts) Claim per carried receipt, of its node, for
                                              this task (``bad_dispute``): the replica
                                              publishes the dispute proof with them
      3 replica_rank(escalation, me, ran,     this node did not run it (``replayed``) and is
                     max_replicas, released)  among the first ``max_replicas`` nodes of the
                                              escalation ranking that neither ran it nor
                                              were released by the owner (``not_assigned``)
      4 take_replica(active, capacity,        a free slot (``no_capacity``), no concurrent
                     already_taken)           duplicate (``replayed``)

  A replica does not wait for a failover turn: the dispute itself is its turn. Its Claim
  carries its rank in the escalation ranking.
* **k = 1** (docs/core.md, "Live escalation at k = 1"): a k = 1 task has one receipt, so
  the client backs its request with its **verdict**, its own signed ``wrong`` Feedback on
  the node (``"verdict"``, docs/protocol.md), and the node runs, instead of step 2:

      2v check_credibility(credibility,        the offer owner's ``client_credibility`` on
                           min_permille)       the offer's view (:func:`client_credibility`)
                                               * 1000 >= dispute_min_credibility_permille
                                               (``low_credibility``)
         check_dispute(..., contested=True)    as step 2, but 1..MAX_DISPUTE_RECEIPTS
                                               receipts that may agree (``bad_dispute``)
         check_verdict(data, offer, receipts)  a k = 1 offer; the verdict is a live Feedback
                                               signed by the offer's owner, on this task,
                                               outcome ``wrong``, on the signer of a carried
                                               receipt (``bad_verdict``)
         check_verdict_lifetime(offer,          the offer and the verdict expire no earlier
                                verdict, ...)   than the end of the last view that can
                                               count the proof, ``(epoch + dispute_lag +
                                               window_epochs) * epoch_s``
                                               (:func:`contested_expiry`; ``bad_verdict``)
         check_verdict_claims(envelopes,       one live Claim per carried receipt, of its
                              offer, receipts) node, for this task (``bad_dispute``): the
                                               replica publishes the dispute proof with them

  Steps 3 and 4 are the same. The credibility is the view's (every peer computes the same
  view of an epoch), so every node of the escalation ranking decides alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

import cbor2
import nacl.exceptions
import nacl.signing
import numpy as np

from repp2p.errors import ClaimError, ClaimReason, RecordError
from repp2p.matching import View, rank_fast, task_words
from repp2p.records import (
    MAX_ENVELOPE_SIZE,
    Claim,
    Feedback,
    Receipt,
    SignedRecord,
    TaskOffer,
    decode,
    peer_id_from_public_key,
    receipt_message,
)
from repp2p.reputation.disputes import dispute_verdicts
from repp2p.tasks.admission import Admit, Reject
from repp2p.tasks.codes import ErrorCode

#: receipts one replica request may carry: the first round's (at most ``redundancy``, <= 16)
#: plus every replica's so far (at most ``dispute_max_replicas``, <= 64). A smaller cap would
#: make the client drop receipts, and the node would then count their signers as nodes that
#: did not run the task, ahead of the replica asked: a refused replica.
MAX_DISPUTE_RECEIPTS = 16 + 64
#: ranks are a byte in a Claim (``Claim.rank``): no escalation ranking is longer
MAX_ESCALATION_RANKS = 256


# -- the ranking replicas come from -----------------------------------------------------------


def escalation_limit(o: TaskOffer, view: View) -> int:
    """How many nodes :func:`escalation_ranking` lists: the ranks that may claim
    (``redundancy + failover_depth``) plus ``dispute_max_replicas``, at most 256."""
    mp = view.matching_params
    return min(MAX_ESCALATION_RANKS, o.redundancy + mp.failover_depth + mp.dispute_max_replicas)


def escalation_ranking(o: TaskOffer, view: View, beacon: bytes) -> list[str]:
    """The task's ranking on ``view`` **without the exploration coin**: eligible nodes by
    weighted rendezvous, pool by pool (the serving tier, the other established nodes, then
    newcomers; docs/core.md "Matching"), :func:`escalation_limit` nodes.

    The same rule as :func:`repp2p.matching.rank` except that the newcomer pool never goes
    first: a verdict is reached by established nodes, not by identities without a record.
    """
    limit = escalation_limit(o, view)
    a0, a1, _a2 = task_words(o.task_id, beacon)
    out: list[int] = []
    for pool in view.pools(view.eligible(o), False):
        if len(out) >= limit:
            break
        out += rank_fast(
            a0, a1, view.words, view.weight, pool, limit - len(out), view.inv_weight
        ).tolist()
    return [view.peers[i] for i in out]


# -- the client: is it disputed, whom next, is it decided ------------------------------------


@dataclasses.dataclass(frozen=True)
class Vote:
    """One verified answer to a task: ``peer`` returned ``output`` (or its digest)."""

    peer: str
    output: bytes


def is_disputed(votes: Iterable[Vote]) -> bool:
    """True when the votes carry two or more different outputs."""
    return len({v.output for v in votes}) >= 2


def standing_verdict(
    votes: Sequence[Vote],
    standing: Mapping[str, float],
    *,
    quorum: int,
    confidence: float,
    min_support: float,
) -> bytes | None:
    """The output a confident standing-weighted verdict upholds, or None (undecided).

    The rule of :func:`repp2p.reputation.disputes.dispute_verdicts` (what every view runs on
    the task's receipts), on ``votes`` with each voter's ``standing`` (0 when unknown).
    Rows are ordered by peer ID, as the evidence orders a task's receipts. One vote per peer
    (a later duplicate is ignored).
    """
    by_peer: dict[str, bytes] = {}
    for v in votes:
        by_peer.setdefault(v.peer, v.output)
    if len(by_peer) < 2:
        return None
    peers = sorted(by_peer)
    outputs = sorted(set(by_peer.values()))
    ids = {out: i for i, out in enumerate(outputs)}
    out_col = np.array([ids[by_peer[p]] for p in peers], np.int64)
    st = np.array([float(standing.get(p, 0.0)) for p in peers], np.float64)
    upheld, _lost, decided = dispute_verdicts(
        np.zeros(len(peers), np.int64),
        out_col,
        st,
        np.ones(len(peers), bool),
        1,
        quorum=quorum,
        confidence=confidence,
        min_support=min_support,
    )
    if not decided[0]:
        return None
    return outputs[int(out_col[upheld][0])]


class EscalationPlan:
    """Which replica to ask next for a disputed task, and when to stop (client side).

    Replicas are asked one at a time, in the order of the escalation ranking, skipping the
    nodes that already answered or were asked; the plan stops at a confident verdict or
    after ``max_replicas`` replicas were asked (an unanswered one counts: it was asked).

    Args:
        ranking: :func:`escalation_ranking` of the offer on the client's view.
        votes: the verified answers so far (disagreeing: :func:`is_disputed`).
        standing: ``peer -> standing`` from the client's view (docs/core.md "Standing").
        max_replicas: ``MatchingParams.dispute_max_replicas``.
        quorum, confidence, min_support: ``ReputationParams.wrong_quorum``,
            ``dispute_confidence``, ``dispute_min_support``.
        tried: further peers not to ask (they answered without a verified result).
        contested: the client judged the one answer of a k = 1 task ``wrong``: the task is
            disputed though its votes agree (one output), and replicas are asked until a
            confident verdict, as for disagreeing receipts.
    """

    def __init__(
        self,
        ranking: Sequence[str],
        votes: Iterable[Vote],
        standing: Mapping[str, float],
        *,
        max_replicas: int,
        quorum: int,
        confidence: float,
        min_support: float,
        tried: Collection[str] = (),
        contested: bool = False,
    ) -> None:
        self.contested = contested
        self.ranking = tuple(ranking)
        self.votes: list[Vote] = list(votes)
        self.standing = dict(standing)
        self.max_replicas = max_replicas
        self.quorum, self.confidence, self.min_support = quorum, confidence, min_support
        self._asked: list[str] = []
        self._skip = {v.peer for v in self.votes} | set(tried)
        self._in_flight: str | None = None

    @property
    def asked(self) -> tuple[str, ...]:
        """Replicas asked so far, in order."""
        return tuple(self._asked)

    def verdict(self) -> bytes | None:
        """The output a confident verdict upholds on the votes so far, or None."""
        return standing_verdict(
            self.votes,
            self.standing,
            quorum=self.quorum,
            confidence=self.confidence,
            min_support=self.min_support,
        )

    def next_replica(self) -> tuple[int, str] | None:
        """``(rank in the escalation ranking, peer)`` to ask next, or None: decided, out of
        replicas, out of ranks, or a replica still in flight."""
        if self._in_flight is not None or len(self._asked) >= self.max_replicas:
            return None
        if not (self.contested or is_disputed(self.votes)) or self.verdict() is not None:
            return None
        for r, peer in enumerate(self.ranking):
            if peer not in self._skip:
                self._skip.add(peer)
                self._asked.append(peer)
                self._in_flight = peer
                return r, peer
        return None

    def on_replica(self, peer: str, output: bytes | None) -> None:
        """The replica ``peer`` answered with a verified ``output``, or None (declined,
        failed, bad proof, unreachable)."""
        if peer != self._in_flight:
            raise ValueError(f"{peer} is not the replica in flight")
        self._in_flight = None
        if output is not None:
            self.votes.append(Vote(peer, output))


# -- the node: may this replica request make me work? ----------------------------------------


def check_dispute(
    envelopes: Sequence[bytes],
    offer: SignedRecord,
    *,
    now_ms: int,
    may_have_run: Collection[str],
    result_key_of: Callable[[str], bytes | None],
    contested: bool = False,
) -> list[SignedRecord] | Reject:
    """Step 2: the disagreeing receipts a replica request carries.

    Rules, in order (each ``bad_dispute``): 2 (1 when ``contested``) to
    :data:`MAX_DISPUTE_RECEIPTS` envelopes;
    each decodes, is live at ``now_ms // 1000`` and is a Receipt; for this offer (task id,
    offer id, input digest, engine); expiring no earlier than the offer
    (:func:`expiry_fault`); signers distinct; each signer in ``may_have_run``; the
    receipt's enclave key is the signer's attested result key (``result_key_of``) and its
    enclave signature verifies; at least two distinct output digests (not when
    ``contested``: a k = 1 request backed by the client's verdict, :func:`check_verdict`).

    Args:
        envelopes: the request's ``dispute`` list.
        offer: the offer (step 1).
        now_ms: the clock now (unix ms).
        may_have_run: peers that may hold a receipt of this task: this node's ranking of
            the offer and its :func:`escalation_ranking`.
        result_key_of: a peer's attested enclave result key (None: not attested).
        contested: the request carries the client's verdict (k = 1).

    Returns:
        The receipts (signed records), or the :class:`Reject`.
    """
    o: TaskOffer = offer.record  # type: ignore[assignment]
    least = 1 if contested else 2
    if not least <= len(envelopes) <= MAX_DISPUTE_RECEIPTS:
        return _bad(f"a dispute carries {least}..{MAX_DISPUTE_RECEIPTS} receipts")
    found: list[SignedRecord] = []
    signers: set[str] = set()
    for data in envelopes:
        try:
            signed = decode(data, now=now_ms // 1000)
        except RecordError as exc:
            return _bad(f"receipt: {exc}")
        rc = signed.record
        if not isinstance(rc, Receipt):
            return _bad(f"a {signed.type} is not a receipt")
        if (
            rc.task_id != o.task_id
            or rc.offer_id != offer.record_id
            or rc.input_digest != o.input_digest
            or rc.engine_id != o.engine_id
        ):
            return _bad("receipt is for another task")
        if (fault := expiry_fault(signed, offer)) is not None:
            return _bad(fault)
        if signed.signer in signers:
            return _bad("two receipts from one node")
        signers.add(signed.signer)
        if signed.signer not in may_have_run:
            return _bad(f"{signed.signer} has no rank for this task")
        key = result_key_of(signed.signer)
        if key is None or key != rc.result_key:
            return _bad(f"receipt of {signed.signer} not signed by its attested enclave")
        try:
            nacl.signing.VerifyKey(rc.result_key).verify(receipt_message(rc), rc.enclave_sig)
        except (nacl.exceptions.BadSignatureError, ValueError):
            return _bad(f"enclave signature of {signed.signer}'s receipt")
        found.append(signed)
    if not contested and len({s.record.output_digest for s in found}) < 2:  # type: ignore[attr-defined]
        return _bad("the receipts agree: nothing is disputed")
    return found


# -- k = 1: the client's verdict backs the request -------------------------------------------

#: bytes a replica request's ``verdict`` may take: a Feedback envelope is about 250 bytes
MAX_VERDICT_SIZE = 1024


def client_credibility(reputation: object, peer: str) -> float:
    """``peer``'s ``client_credibility`` in a view's reputation table
    (:class:`repp2p.reputation.ReputationTable`): 1.0 for a peer the table does not list,
    or a table without the column (no verdict of it was ever refuted, which is what 1.0
    means: ``(1 + upheld) / (1 + upheld + slander_penalty * refuted + ...)``)."""
    cred = getattr(reputation, "client_credibility", None)
    if cred is None:
        return 1.0
    try:
        i = reputation.index(peer)  # type: ignore[attr-defined]
    except KeyError:
        return 1.0
    return float(cred[i])


def check_credibility(credibility: float, min_permille: int) -> Reject | None:
    """Step 2v, first: ``low_credibility`` unless ``credibility * 1000 >= min_permille``
    (``MatchingParams.dispute_min_credibility_permille``; the simulator's rule, float for
    float); None when the client may dispute."""
    if credibility * 1000.0 >= min_permille:
        return None
    return Reject(
        ErrorCode.LOW_CREDIBILITY,
        f"client credibility {credibility * 1000.0:.1f} permille < {min_permille}",
    )


def check_verdict(
    data: bytes, offer: SignedRecord, receipts: Sequence[SignedRecord], *, now_ms: int
) -> SignedRecord | Reject:
    """Step 2v, last: the client's verdict on a k = 1 task (after :func:`check_dispute`
    with ``contested=True`` returned ``receipts``).

    Rules, in order (each ``bad_verdict``): the offer's redundancy is 1 (at k >= 2 the
    receipts themselves must disagree); at most :data:`MAX_VERDICT_SIZE` bytes; decodes and
    is live at ``now_ms // 1000``; is a Feedback; signed by the offer's owner; on this task;
    outcome ``wrong``; on the signer of one of ``receipts``.

    Returns:
        The verdict (a signed Feedback), or the :class:`Reject`.
    """
    if len(data) > MAX_VERDICT_SIZE:
        return _bad_verdict(f"a verdict is at most {MAX_VERDICT_SIZE} bytes")
    try:
        signed = decode(data, now=now_ms // 1000)
    except RecordError as exc:
        return _bad_verdict(f"verdict: {exc}")
    fault = verdict_fault(signed, offer, {r.signer for r in receipts})
    return signed if fault is None else _bad_verdict(fault)


def verdict_fault(
    verdict: SignedRecord, offer: SignedRecord, signers: Collection[str]
) -> str | None:
    """Why a decoded verdict does not back a k = 1 dispute of ``offer``, or None when it
    does: the offer's redundancy is 1 (at k >= 2 the receipts themselves must disagree); the
    verdict is a Feedback, signed by the offer's owner, on this task, outcome ``wrong``, on
    one of ``signers`` (the carried receipts' nodes). The rules :func:`check_verdict` and a
    contested dispute proof (:func:`repp2p.digests.disputes.check_dispute_proof`) share.
    """
    o: TaskOffer = offer.record  # type: ignore[assignment]
    if o.redundancy != 1:
        return "a verdict backs only a k = 1 task: at k >= 2 receipts disagree"
    fb = verdict.record
    if not isinstance(fb, Feedback):
        return f"a {verdict.type} is not a verdict"
    if verdict.signer != offer.signer:
        return "the verdict is not the offer owner's"
    if fb.task_id != o.task_id:
        return "the verdict is on another task"
    if fb.outcome != "wrong":
        return f"a {fb.outcome!r} verdict disputes nothing"
    if fb.node not in signers:
        return "the verdict is on a node with no carried receipt"
    return None


def contested_expiry(epoch: int, *, epoch_s: int, window_epochs: int, dispute_lag: int) -> int:
    """The earliest expiry (unix seconds) a contested k = 1 task's offer and verdict may
    have: the end of the last view that can count its dispute proof, ``(epoch +
    dispute_lag + window_epochs) * epoch_s`` (the proof counts from its count epoch, at
    most ``epoch + dispute_lag``, for ``window_epochs`` views). Views drop expired
    records, so a shorter lifetime would let the client end its own refutation."""
    return (epoch + dispute_lag + window_epochs) * epoch_s


def lifetime_fault(offer: SignedRecord, verdict: SignedRecord, not_before: int) -> str | None:
    """Why a contested task's ``offer`` or ``verdict`` expires too early (before
    ``not_before``: :func:`contested_expiry`), or None. The rule a replica applies to the
    request (:func:`check_verdict_lifetime`) and a peer to a contested dispute proof."""
    for what, rec in (("offer", offer), ("verdict", verdict)):
        expires = rec.record.expires  # type: ignore[attr-defined]
        if expires < not_before:
            return (
                f"the {what} expires at {expires}, before {not_before}:"
                " the end of the last view that can count the dispute"
            )
    return None


def check_verdict_lifetime(
    offer: SignedRecord,
    verdict: SignedRecord,
    *,
    epoch_s: int,
    window_epochs: int,
    dispute_lag: int,
) -> Reject | None:
    """Step 2v, after :func:`check_verdict`: ``bad_verdict`` unless the offer and the
    verdict live until :func:`contested_expiry` of the offer's epoch (the replica would
    otherwise publish a proof that leaves the views when its client chose); None when
    they do."""
    o: TaskOffer = offer.record  # type: ignore[assignment]
    last = contested_expiry(
        o.epoch, epoch_s=epoch_s, window_epochs=window_epochs, dispute_lag=dispute_lag
    )
    fault = lifetime_fault(offer, verdict, last)
    return None if fault is None else _bad_verdict(fault)


def check_verdict_claims(
    envelopes: Sequence[bytes],
    offer: SignedRecord,
    receipts: Sequence[SignedRecord],
    *,
    now_ms: int,
) -> list[SignedRecord] | Reject:
    """The claims a replica request carries, one per carried receipt, so that the replica
    can publish the dispute proof once it has its own receipt (on a digest network nobody
    else would see the first nodes' claims): step 2v at k = 1, after :func:`check_verdict`
    (required; docs/core.md, "Live escalation at k = 1"); after step 2 at k >= 2 when the
    request carries them (docs/core.md, "Disputes and escalation").

    Rules, in order (each ``bad_dispute``): as many envelopes as ``receipts``, at most
    :data:`MAX_DISPUTE_RECEIPTS`; each decodes, is live at ``now_ms // 1000`` and is a
    Claim; for this offer (task id, offer id, epoch); expiring no earlier than the offer
    (:func:`expiry_fault`); its signer is the signer of the receipt at the same position.

    Returns:
        The claims (signed records, in the receipts' order), or the :class:`Reject`.
    """
    o: TaskOffer = offer.record  # type: ignore[assignment]
    if len(envelopes) != len(receipts) or len(envelopes) > MAX_DISPUTE_RECEIPTS:
        return _bad("a dispute's claims are one claim per receipt")
    found: list[SignedRecord] = []
    for data, receipt in zip(envelopes, receipts, strict=True):
        try:
            signed = decode(data, now=now_ms // 1000)
        except RecordError as exc:
            return _bad(f"claim: {exc}")
        c = signed.record
        if not isinstance(c, Claim):
            return _bad(f"a {signed.type} is not a claim")
        if c.task_id != o.task_id or c.offer_id != offer.record_id or c.epoch != o.epoch:
            return _bad("claim is for another task")
        if (fault := expiry_fault(signed, offer)) is not None:
            return _bad(fault)
        if signed.signer != receipt.signer:
            return _bad("the claims must be the carried receipts' nodes', in their order")
        found.append(signed)
    return found


def may_be_replica(escalation: Sequence[str], me: str) -> Reject | None:
    """Step 1b: ``not_assigned`` unless this node is in ``escalation`` (the escalation
    ranking) at all; None when it is.

    :func:`replica_rank` decides the same and more, but only after :func:`check_dispute`
    verified every carried receipt (two signatures each); this check costs nothing, so a
    node that can never be the task's replica refuses before that work.
    """
    if me not in escalation:
        return Reject(ErrorCode.NOT_ASSIGNED, "no replica rank for this node in its view")
    return None


def named_signers(envelopes: Sequence[bytes]) -> list[str] | Reject:
    """The peer IDs ``envelopes`` name as their signers, read without verifying anything
    (a CBOR parse each, no signature); ``bad_dispute`` when one cannot be an envelope
    (:func:`repp2p.records.decode` refuses it too, after verifying the ones before it).

    A name is only a claim until :func:`check_dispute` verifies its receipt: use them for
    checks that any request whose receipts do verify passes as well."""
    found = []
    for data in envelopes:
        try:  # parsed as decode parses it: no deeper, no duplicate keys, nothing indefinite
            env = None
            if len(data) <= MAX_ENVELOPE_SIZE:
                env = cbor2.loads(
                    data, allow_duplicate_keys=False, allow_indefinite=False, max_depth=8
                )
        except Exception:  # cbor2 raises a zoo of types on hostile input
            env = None
        signer = env.get("signer") if type(env) is dict else None
        if type(signer) is not bytes or len(signer) != 32:
            return _bad("a carried receipt is no envelope")
        found.append(peer_id_from_public_key(signer))
    return found


def in_replica_window(
    escalation: Sequence[str],
    me: str,
    envelopes: Sequence[bytes],
    max_replicas: int,
    *,
    released: Collection[str] = (),
    unverified_releases: int = 0,
) -> Reject | None:
    """Step 1c: :func:`replica_rank` on the signers the carried receipts name
    (:func:`named_signers`), before :func:`check_dispute` verifies a signature; None when
    this node may be in the window.

    ``released``: the claimants whose release this node holds (verified when stored);
    ``unverified_releases``: how many releases the request carries, not verified yet. Each
    releases at most one node, and skipping a node moves this one at most one place up,
    so the window is widened by that many places. Any request that passes
    :func:`check_dispute` and :func:`replica_rank` passes this too (its receipts' signers
    are the names read here), so it refuses nothing the later steps would admit; what it
    refuses costs no signature. A sender that forges receipts under other ranked nodes'
    keys can still move the window, but only within the escalation ranking (step 1b), and
    its request fails :func:`check_dispute`.
    """
    named = named_signers(envelopes)
    if isinstance(named, Reject):
        return named
    rank = replica_rank(escalation, me, named, max_replicas + unverified_releases, released)
    return rank if isinstance(rank, Reject) else None


def replica_rank(
    escalation: Sequence[str],
    me: str,
    ran: Collection[str],
    max_replicas: int,
    released: Collection[str] = (),
) -> int | Reject:
    """Step 3: this node's rank as a replica, or the :class:`Reject`.

    ``replayed`` when a carried receipt is this node's own; ``not_assigned`` unless this node
    is among the first ``max_replicas`` nodes of ``escalation`` (the escalation ranking)
    that are not in ``ran`` (the carried receipts' signers) nor in ``released`` (nodes the
    offer's owner released with ``timeout``/``bad_proof`` feedback: they failed the task in
    its first round, and the client skips them as it skips the nodes that answered). Returns
    its index in ``escalation`` (the rank its Claim carries).

    Skipping the released ones adds no work: every node of ``escalation`` still runs the
    task at most once, and only those can be made to run it.
    """
    if me in ran:
        return Reject(ErrorCode.REPLAYED, "this node already ran this task")
    skip = {*ran, *released}
    candidates = [p for p in escalation if p not in skip][:max_replicas]
    if me not in candidates:
        return Reject(ErrorCode.NOT_ASSIGNED, "no replica rank for this node in its view")
    return list(escalation).index(me)


def take_replica(rank: int, *, active: int, capacity: int, already_taken: bool) -> Admit | Reject:
    """Step 4: a free task slot (``no_capacity``), then no concurrent duplicate request
    took the task meanwhile (``replayed``)."""
    if active >= capacity:
        return Reject(ErrorCode.NO_CAPACITY, "all task slots busy")
    if already_taken:
        return Reject(ErrorCode.REPLAYED, "this node already took this task")
    return Admit(rank)


def expiry_fault(record: SignedRecord, offer: SignedRecord) -> str | None:
    """Why a node's Claim or Receipt of ``offer`` expires too early, or None: it expires
    before the offer does. An honest node copies the offer's ``expires`` into both
    (:class:`repp2p.node.serving.TaskServer`); one that picks an earlier expiry makes its
    records leave every store (and the views, which drop expired records) while the task's
    other records, and a dispute over it, still count. The rule the client applies to an
    answer (``bad_proof``), a replica to a request's receipts and claims
    (:func:`check_dispute`, :func:`check_verdict_claims`: ``bad_dispute``) and every peer
    to a dispute proof (:func:`repp2p.digests.disputes.check_dispute_proof`:
    ``expires_early``)."""
    expires = record.record.expires
    offer_expires = offer.record.expires
    if expires < offer_expires:
        return (
            f"the {record.type} of {record.signer} expires at {expires}, before its offer"
            f" ({offer_expires}): an honest node copies the offer's expiry"
        )
    return None


def check_replica_claim(claim: SignedRecord, offer: SignedRecord, *, peer: str) -> None:
    """The client's check of a replica's Claim: a Claim by ``peer`` on this offer and task,
    for the offer's epoch.

    A replica's rank (its place in the node's escalation ranking) is not a claiming rank of
    :func:`repp2p.matching.verify_claim`, so this replaces it for replicas; the client chose
    the replica from its own ranking, so a rank that differs only means the views differ.

    Raises:
        ClaimError: ``not_a_claim`` (not a Claim, or not signed by ``peer``),
            ``wrong_offer`` (another offer or task), ``wrong_epoch``.
    """
    c = claim.record
    o: TaskOffer = offer.record  # type: ignore[assignment]
    if not isinstance(c, Claim) or claim.signer != peer:
        raise ClaimError(ClaimReason.NOT_A_CLAIM, f"not a claim of {peer}")
    if c.offer_id != offer.record_id or c.task_id != o.task_id:
        raise ClaimError(ClaimReason.WRONG_OFFER, "claim for another offer")
    if c.epoch != o.epoch:
        raise ClaimError(ClaimReason.WRONG_EPOCH, f"claim epoch {c.epoch}, offer {o.epoch}")


def _bad(detail: str) -> Reject:
    return Reject(ErrorCode.BAD_DISPUTE, detail)


def _bad_verdict(detail: str) -> Reject:
    return Reject(ErrorCode.BAD_VERDICT, detail)
