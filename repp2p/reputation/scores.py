"""The reputation computation: evidence + ``now`` -> a score in [0, 1] per node.

Pure and vectorised (numpy), about 1 s for 10,000 nodes and 1,000,000 feedback records on
one core. Determinism: every evidence sum is taken in integer fixed point (decay weights
scaled by 2**16, outcome values by 10,000), so sums are exact whatever their order; the
EigenTrust iteration runs a fixed number of steps over edges in canonical order with
``np.bincount`` (a sequential loop); no library ``exp``/``log`` is used (decay comes from
:mod:`repp2p.reputation.detmath`). Matching reads only the integer ``permille`` of a score.

Components (docs/core.md has the formulas):

* uptime: decayed share of epochs, since the node was first seen in the window, that a
  heartbeat covers (its own epoch, or ``heartbeat_period_epochs`` from it);
* success: feedback outcomes, each client's feedback weighted by the client's EigenTrust;
* throughput: decayed share of claimed, past-deadline tasks delivered with a receipt;
* latency: reported latency against the task's deadline budget, trust-weighted;
* attestation: verified, never failed, kind and measurements consistent with the ad, TCB not
  degraded, re-attested on schedule.

Feedback counts only when the client signed the ``TaskOffer`` and the node signed a
``Claim`` for it, the client is not the node, and neither equivocated.

Issue 15 adds (docs/core.md, "Quality, disputes and refuted slander"): bad evidence weighs
``bad_weight`` and decays slower; ``quality``, the lower confidence bound of success, which
matching orders by (:mod:`repp2p.reputation.estimates`); standing-weighted verdicts on
tasks whose receipts disagree, re-judged over ``dispute_rounds`` rounds
(:mod:`repp2p.reputation.disputes`); refuted slander and client credibility. A receipt
outvoted by the count rule (:func:`receipt_votes`, which the ledger also uses) is a hard
offence only with ``wrong_result_hard``.
"""

from __future__ import annotations

import bisect
import dataclasses

import numpy as np

from repp2p.reputation.detmath import decay_table_fixed
from repp2p.reputation.disputes import dispute_verdicts
from repp2p.reputation.estimates import beta_lcb, beta_posterior
from repp2p.reputation.evidence import Evidence, Offence
from repp2p.reputation.heartbeats import covered_weights
from repp2p.reputation.params import ReputationParams

#: Fixed-point scale of decay weights (bits) and of one feedback's value.
DECAY_BITS = 16
UNIT = 10_000
_D = float(1 << DECAY_BITS)
_OK, _WRONG, _TIMEOUT, _BAD_PROOF = 0, 1, 2, 3
#: What one input refused by a node's enclave (a checked ``Refusal``) weighs against its
#: client's credibility, in refuted verdicts of weight 1 (``slander_penalty`` weighs
#: refuted slander). Lighter than slander: an honest client's bad input is a mistake
#: that costs only itself, and it is proven by the enclave, not outvoted.
REFUSAL_WEIGHT = 1.0
COMPONENTS = ("uptime", "success", "throughput", "latency", "attestation")


@dataclasses.dataclass(frozen=True, slots=True)
class NodeReputation:
    """One peer's reputation and the components it is made of (all floats in [0, 1]).

    Attributes:
        peer_id: the peer.
        score: weighted mean of the components; 0 for an offender.
        permille: ``floor(score * 1000 + 0.5)``, what matching and ``min_reputation`` use.
        uptime, success, throughput, latency, attestation: the components.
        feedback_mass: trusted feedback received, in feedback of average trust.
        client_trust: the peer's EigenTrust value as a client (sums to 1 over all peers).
        is_newcomer: less trusted feedback than ``newcomer_min_feedback``.
        is_offender: equivocated or proven wrong (hard penalty).
        quality: lower confidence bound of success (what matching orders by).
        standing: quality before disputes count (what weighs a receipt's vote).
        disputes_lost: decayed count of receipts outvoted by a confident verdict.
    """

    peer_id: str
    score: float
    permille: int
    uptime: float
    success: float
    throughput: float
    latency: float
    attestation: float
    feedback_mass: float
    client_trust: float
    is_newcomer: bool
    is_offender: bool
    quality: float = 0.0
    standing: float = 0.0
    disputes_lost: float = 0.0


@dataclasses.dataclass(frozen=True, eq=False)
class ReputationTable:
    """Scores of every peer of an :class:`Evidence`, as columns (index = peer index).

    ``score``, ``permille`` and the components are meaningful for nodes (``is_node``);
    clients have ``client_trust``. Use :meth:`get` for one peer.
    """

    peers: tuple[str, ...]
    epoch: int
    is_node: np.ndarray
    score: np.ndarray
    permille: np.ndarray
    components: np.ndarray  # shape (5, P): uptime, success, throughput, latency, attestation
    feedback_mass: np.ndarray
    client_trust: np.ndarray
    is_newcomer: np.ndarray
    is_offender: np.ndarray
    offences: tuple[Offence, ...]
    #: Per peer, added by issue 15 (None in tables built by hand: read as zeros).
    quality: np.ndarray | None = None
    standing: np.ndarray | None = None
    disputes_lost: np.ndarray | None = None
    #: Per receipt row of the evidence: upheld / outvoted by a confident verdict.
    receipt_upheld: np.ndarray | None = None
    receipt_lost: np.ndarray | None = None
    #: Per peer as a client: weight kept after refuted verdicts, (0, 1] (1: none refuted).
    client_credibility: np.ndarray | None = None

    def _opt(self, name: str, i: int) -> float:
        arr = getattr(self, name)
        return 0.0 if arr is None else float(arr[i])

    def index(self, peer_id: str) -> int:
        i = bisect.bisect_left(self.peers, peer_id)
        if i >= len(self.peers) or self.peers[i] != peer_id:
            raise KeyError(peer_id)
        return i

    def get(self, peer_id: str) -> NodeReputation:
        """The :class:`NodeReputation` of one peer (raises KeyError when unknown)."""
        i = self.index(peer_id)
        c = self.components[:, i]
        return NodeReputation(
            peer_id=peer_id,
            score=float(self.score[i]),
            permille=int(self.permille[i]),
            uptime=float(c[0]),
            success=float(c[1]),
            throughput=float(c[2]),
            latency=float(c[3]),
            attestation=float(c[4]),
            feedback_mass=float(self.feedback_mass[i]),
            client_trust=float(self.client_trust[i]),
            is_newcomer=bool(self.is_newcomer[i]),
            is_offender=bool(self.is_offender[i]),
            quality=self._opt("quality", i),
            standing=self._opt("standing", i),
            disputes_lost=self._opt("disputes_lost", i),
        )

    def scores(self) -> dict[str, float]:
        """``peer_id -> score`` for every node."""
        return {self.peers[i]: float(self.score[i]) for i in np.flatnonzero(self.is_node)}


def _member(sorted_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(found mask, position) of ``keys`` in the sorted array ``sorted_keys``."""
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), bool), np.zeros(len(keys), np.int64)
    pos = np.searchsorted(sorted_keys, keys)
    pos_c = np.minimum(pos, len(sorted_keys) - 1)
    return sorted_keys[pos_c] == keys, pos_c


def _refused(ev: Evidence, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(offer, offer * n + node)`` of the evidence's refusals, sorted by the key."""
    pairs = np.asarray(ev.refusals, dtype=np.int64).reshape(-1, 2)
    key = pairs[:, 0] * n + pairs[:, 1]
    order = np.argsort(key, kind="stable")
    return pairs[order, 0], key[order]


def _smoothed(num: np.ndarray, den: np.ndarray, prior: float, strength: float) -> np.ndarray:
    """Bayesian mean: ``(strength * prior + num) / (strength + den)``; prior when both are 0."""
    top = strength * prior + num
    bottom = strength + den
    safe = np.where(bottom > 0.0, bottom, 1.0)
    return np.where(bottom > 0.0, top / safe, prior)


def eigentrust(
    n: int,
    src: np.ndarray,
    dst: np.ndarray,
    weight: np.ndarray,
    pretrusted: np.ndarray,
    *,
    alpha: float,
    iterations: int,
    previous: bool = False,
    start: np.ndarray | None = None,
    vertex_order: np.ndarray | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """EigenTrust by power iteration over a sparse graph.

    ``t <- (1 - alpha) * (C^T t + dangling(t) * p) + alpha * p`` where ``C`` is the local
    trust matrix with rows normalised to 1, ``p`` is uniform over ``pretrusted`` and
    ``dangling(t)`` is the trust of vertices without outgoing edges (it returns to ``p``).
    A vertex without an incoming edge and outside ``p`` ends with trust exactly 0.

    Args:
        n: number of vertices.
        src, dst, weight: edges (canonical order; weights >= 0, integer-valued floats).
        pretrusted: boolean mask of the pre-trusted set (uniform teleport target).
        alpha: teleport probability.
        iterations: fixed number of steps (no data-dependent stopping rule).
        previous: also return the vector before the last step.
        start: the vector the steps start from (default ``p``: the exact path). The
            streaming path starts from a trust chain's vector (docs/core.md, "Streaming
            EigenTrust").
        vertex_order: the vertices in canonical order, when vertex indices are not
            (the dangling trust is summed in this order, so the bits do not depend on
            how vertices are numbered); vertices left out must have trust 0.

    Returns:
        float64 trust per vertex, summing to 1 from ``p`` (all zeros when nobody is
        pre-trusted); with ``previous``, also the vector before the last step (to
        attribute inflows exactly).
    """
    n_pre = int(np.count_nonzero(pretrusted))
    if n_pre == 0:
        return (np.zeros(n), np.zeros(n)) if previous else np.zeros(n)
    graph = _TrustGraph(n, src, dst, weight, pretrusted, vertex_order)
    return graph.run(start, iterations, alpha, previous=previous)


class _TrustGraph:
    """A trust graph ready for power steps (rows normalised once; several vectors may be
    stepped on it: the two live trust chains)."""

    def __init__(
        self,
        n: int,
        src: np.ndarray,
        dst: np.ndarray,
        weight: np.ndarray,
        pretrusted: np.ndarray,
        vertex_order: np.ndarray | None,
        *,
        positive: bool = False,
    ) -> None:
        """``positive``: the caller built the edges without their zero weights (every
        weight > 0), so they are not checked again."""
        self.n = n
        self.n_pre = int(np.count_nonzero(pretrusted))
        self.p = pretrusted.astype(np.float64) / float(max(self.n_pre, 1))
        if positive or (weight > 0.0).all():  # no zero weights: the same edges, no copies
            self.src, self.dst = src, dst
        else:
            keep = weight > 0.0
            self.src, self.dst, weight = src[keep], dst[keep], weight[keep]
        #: per vertex, the sum of its outgoing weights (in edge order)
        self.row = row = np.bincount(self.src, weights=weight, minlength=n)
        # weight / row[src], divided in the gathered buffer (the same quotients)
        # (no edge: bincount's sums come as integers)
        self.norm = norm = np.take(row, self.src).astype(np.float64, copy=False)
        np.divide(weight, norm, out=norm)
        dangling = row == 0.0
        if vertex_order is None:
            self.dangling_idx = np.flatnonzero(dangling)
        else:
            self.dangling_idx = vertex_order[dangling[vertex_order]]
        self.zeros = np.zeros(len(self.dangling_idx), np.int64)

    def run(
        self, start: np.ndarray | None, iterations: int, alpha: float, *, previous: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """``iterations`` steps from ``start`` (default ``p``); all zeros without ``p``."""
        n, p = self.n, self.p
        if self.n_pre == 0:
            return (np.zeros(n), np.zeros(n)) if previous else np.zeros(n)
        t = prev = p.copy() if start is None else np.asarray(start, np.float64)
        flow = np.empty(len(self.src)) if iterations else None
        for _ in range(iterations):
            prev = t
            # norm * t[src], in one buffer for every step (the same products)
            np.take(t, self.src, out=flow, mode="clip")  # (in range: clip does not buffer)
            np.multiply(self.norm, flow, out=flow)
            y = np.bincount(self.dst, weights=flow, minlength=n)
            lost = float(np.bincount(self.zeros, weights=t[self.dangling_idx], minlength=1)[0])
            t = (1.0 - alpha) * (y + lost * p) + alpha * p
        return (t, prev) if previous else t


def _ordered_sum(x: np.ndarray) -> float:
    """Sum in array order (a sequential loop: the same bits on every platform)."""
    return float(np.bincount(np.zeros(len(x), np.int64), weights=x, minlength=1)[0])


def warm_start(t: np.ndarray, order: np.ndarray | None = None) -> np.ndarray | None:
    """``t`` restricted to ``order`` (default: every vertex) and normalised to sum 1, the
    sum taken in that order; None when it holds no trust."""
    if order is None:
        total = _ordered_sum(t)
        x = t
    else:
        x = np.zeros(len(t))
        x[order] = t[order]
        total = _ordered_sum(x[order])
    return x / total if total > 0.0 else None


def chain_step(
    n: int,
    src: np.ndarray,
    dst: np.ndarray,
    weight: np.ndarray,
    workers: np.ndarray,
    order: np.ndarray,
    t: np.ndarray | None,
    p: ReputationParams,
) -> np.ndarray:
    """One epoch of a trust chain (docs/core.md, "Streaming EigenTrust") on the graph
    ``src, dst, weight`` whose vertices are ``order`` (canonical order) and pre-trusted
    set ``workers`` (:func:`chain_steps` for several chains on one graph)."""
    return chain_steps(n, src, dst, weight, workers, order, [t], p)[0]


def chain_steps(
    n: int,
    src: np.ndarray,
    dst: np.ndarray,
    weight: np.ndarray,
    workers: np.ndarray,
    order: np.ndarray,
    chains: list[np.ndarray | None],
    p: ReputationParams,
    *,
    positive: bool = False,
) -> list[np.ndarray]:
    """One epoch of each trust chain in ``chains`` on one graph (prepared once): for each,
    ``trust_chain_steps`` steps from its vector restricted to the vertices and normalised;
    from a chain's anchor (None), the same steps from ``workers``; when the vector holds no
    trust on the vertices, ``trust_iterations`` steps from ``workers`` (a chain whose past
    had no graph starts as the exact path does). ``positive``: every weight is > 0 (as
    :class:`_TrustGraph` takes it)."""
    graph = _TrustGraph(n, src, dst, weight, workers, order, positive=positive)
    out = []
    for t in chains:
        steps = p.trust_chain_steps
        start = None
        if t is not None:
            if len(t) < n:
                t = np.concatenate((t, np.zeros(n - len(t))))
            start = warm_start(t, order)
            if start is None:
                steps = p.trust_iterations
        out.append(graph.run(start, steps, p.trust_alpha))  # type: ignore[arg-type]
    return out  # type: ignore[return-value]


def chain_oldest(epoch: int, p: ReputationParams) -> int:
    """The oldest epoch the chains' graph of ``epoch`` counts: the oldest that the last
    view reading the newer live chain (the view of ``R * floor(epoch / R) + 2R - 1``)
    counts, so every epoch a chain reads is inside the window of every view reading it."""
    r = p.trust_chain_epochs
    return r * (epoch // r) + 2 * r - 1 - p.window_epochs


def chain_anchors(epoch: int, chain_epochs: int) -> tuple[int, int]:
    """``(used, next)``: the trust chains live at the view of ``epoch`` (docs/core.md,
    "Streaming EigenTrust"). A chain starts at every view epoch that is a multiple of
    ``chain_epochs`` (R) and is used by the views ``a + R .. a + 2R - 1``: the view of
    ``epoch`` reads the chain anchored at ``used`` and also advances the one anchored at
    ``next`` (used from ``next + R`` on)."""
    nxt = chain_epochs * (epoch // chain_epochs)
    return nxt - chain_epochs, nxt


def _records_chain(
    n: int,
    epoch: int,
    p: ReputationParams,
    decay: np.ndarray,
    fc: np.ndarray,
    fn: np.ndarray,
    f_epoch: np.ndarray,
    local_raw: np.ndarray,
    consistent: np.ndarray,
    claim_node: np.ndarray,
    claim_epoch: np.ndarray,
) -> np.ndarray | None:
    """The warm vector of the view of ``epoch`` on the records path: the trust chain
    :func:`chain_anchors` names, replayed from the evidence (docs/core.md, "Streaming
    EigenTrust"). The records path holds no state between views, so it replays the chain
    at every view: the same vector, at O(R) graph builds per view (the digest path
    advances its chains once per epoch instead).

    Args:
        fc, fn, f_epoch, local_raw, consistent: per valid feedback row (sorted by client,
            node): client, node, the offer's epoch, the undecayed local-trust value
            (fixed point) and whether the verdict agrees with the proof (a vouch).
        claim_node, claim_epoch: per claim: the node and the offer's epoch.

    Returns:
        The chain's vector normalised to sum 1 (:func:`warm_start`), or None when it
        holds no trust (the view then takes the exact path).
    """
    w, r = p.window_epochs, p.trust_chain_epochs
    used, _ = chain_anchors(epoch, r)
    pair = fc * n + fn
    starts = np.flatnonzero(np.concatenate(([True], pair[1:] != pair[:-1]))) if len(pair) else pair
    pc, pn = fc[starts], fn[starts]
    v_key = fn[consistent] * n + fc[consistent]
    v_keys, v_inv = np.unique(v_key, return_inverse=True)
    v_epoch = f_epoch[consistent]

    def weight_at(e_view: int, epochs: np.ndarray) -> np.ndarray:
        age = (e_view - 1) - epochs
        ok = ((age >= 0) & (age <= w - 1)) | (epochs == e_view)
        ok &= epochs >= chain_oldest(e_view, p)
        return np.where(ok, decay[np.clip(age, 0, w)], 0)

    t: np.ndarray | None = None
    for e_view in range(used, epoch + 1):
        # the chain's pre-trusted set: nodes with a claim counted (they did the work)
        workers = np.zeros(n, bool)
        workers[claim_node[weight_at(e_view, claim_epoch) > 0]] = True
        if not workers.any():  # no pre-trusted vertex: the zero vector (as eigentrust)
            t = np.zeros(n)
            continue
        d = weight_at(e_view, f_epoch)
        counted_rows = d > 0
        if len(pair):
            local_p = np.add.reduceat(d * local_raw, starts).astype(np.float64)
            counted = np.add.reduceat(counted_rows.astype(np.int64), starts) > 0
        else:
            local_p, counted = np.zeros(0), np.zeros(0, bool)
        v_w = np.bincount(
            v_inv,
            weights=(weight_at(e_view, v_epoch) * UNIT).astype(np.float64),
            minlength=len(v_keys),
        )
        src = np.concatenate((pc, v_keys // n))
        dst = np.concatenate((pn, v_keys % n))
        weight = np.concatenate((np.where(counted, np.maximum(local_p, 0.0), 0.0), v_w))
        # vertices: the peers of counted rows (others drop out with their trust)
        vertices = workers.copy()
        vertices[pc[counted]] = True
        vertices[pn[counted]] = True
        start = None if e_view == used else t
        t = chain_step(n, src, dst, weight, workers, np.flatnonzero(vertices), start, p)
    assert t is not None
    return warm_start(t)


def receipt_votes(
    ev: Evidence, r_valid: np.ndarray, n_offers: int, wrong_quorum: int
) -> tuple[np.ndarray, np.ndarray]:
    """How the valid receipts of each offer vote, and which are proven wrong.

    Returns ``(agreeing, wrong)`` per receipt row: ``agreeing`` counts the valid receipts
    of the same offer with the same output (0 for an invalid row); ``wrong`` marks a valid
    receipt outvoted by at least ``wrong_quorum`` others that are a strict majority of the
    offer's valid receipts. The one definition of "proven wrong" (reputation and ledger).
    """
    if not r_valid.any():
        return np.zeros(len(r_valid), np.int64), np.zeros(len(r_valid), bool)
    n_outputs = int(ev.receipt_output.max()) + 1
    out_count = np.bincount(ev.receipt_output[r_valid], minlength=n_outputs)
    per_offer = np.bincount(ev.receipt_offer[r_valid], minlength=n_offers)
    agreeing = np.where(r_valid, out_count[ev.receipt_output], 0)
    top = np.zeros(n_offers, np.int64)
    np.maximum.at(top, ev.receipt_offer, agreeing)
    has_majority = (top >= wrong_quorum) & (2 * top > per_offer)
    wrong = r_valid & has_majority[ev.receipt_offer] & (agreeing < top[ev.receipt_offer])
    return agreeing, wrong


def uptime_component(
    ev: Evidence, epoch: int, p: ReputationParams, decay: np.ndarray
) -> np.ndarray:
    """Uptime per peer: decayed share of the epochs in ``[epoch - w, epoch - 1]``, since the
    node was first seen, that a heartbeat covers (``decay``: the fixed-point decay table;
    a heartbeat covers ``heartbeat_period_epochs`` epochs from its own, each epoch once:
    :func:`repp2p.reputation.heartbeats.covered_weights`)."""
    n, w = ev.n_peers, p.window_epochs
    covered = covered_weights(
        ev.hb_node,
        ev.hb_epoch,
        n_peers=n,
        epoch=epoch,
        window=w,
        period_epochs=p.heartbeat_period_epochs,
        decay=decay,
    )
    hits = covered.astype(np.float64) / _D
    first = np.full(n, np.iinfo(np.int64).max)
    if len(ev.hb_node):
        starts = np.flatnonzero(np.concatenate(([True], ev.hb_node[1:] != ev.hb_node[:-1])))
        first[ev.hb_node[starts]] = ev.hb_epoch[starts]  # rows sorted by (node, epoch)
    cum = np.cumsum(decay[:w])
    span = (epoch - 1) - np.maximum(first, epoch - w)  # oldest age counted
    possible = np.where(span >= 0, cum[np.clip(span, 0, w - 1)], 0).astype(np.float64) / _D
    return _smoothed(hits, possible, p.prior_uptime, p.prior_strength_uptime)


def attestation_component(ev: Evidence, now: int, p: ReputationParams) -> np.ndarray:
    """Attestation per peer: verified, never failed, consistent with the ad, and fresh
    (full credit within ``reattest_period_s``, none after twice that); TCB-degraded
    evidence scaled by ``tcb_degraded_factor``."""
    age_s = (now - ev.attested_at).astype(np.float64)
    period = float(p.reattest_period_s)
    fresh = np.clip(1.0 - (age_s - period) / period, 0.0, 1.0)
    attestation = np.where(ev.verified & ~ev.failed & ev.consistent, fresh, 0.0)
    return np.where(ev.tcb_degraded, attestation * p.tcb_degraded_factor, attestation)


def combine(
    comps: np.ndarray, offender: np.ndarray, p: ReputationParams
) -> tuple[np.ndarray, np.ndarray]:
    """``(score, permille)`` from the five components (rows of ``comps``, in
    :data:`COMPONENTS` order): their weighted mean, 0 for an offender."""
    weights = np.asarray(p.weights, dtype=np.float64)
    score = (
        weights[0] * comps[0]
        + weights[1] * comps[1]
        + weights[2] * comps[2]
        + weights[3] * comps[3]
        + weights[4] * comps[4]
    ) / sum(p.weights)
    score = np.where(offender, 0.0, np.clip(score, 0.0, 1.0))
    permille = np.floor(score * 1000.0 + 0.5).astype(np.int64)
    return score, permille


def compute(
    evidence: Evidence,
    *,
    now: int,
    epoch_s: int,
    params: ReputationParams | None = None,
) -> ReputationTable:
    """Score every peer of ``evidence`` as of ``now``.

    Args:
        evidence: canonical evidence (:func:`repp2p.reputation.collect`).
        now: unix seconds; the current epoch is ``now // epoch_s`` and the window is the
            ``window_epochs`` epochs before it.
        epoch_s: epoch length in seconds (> 0).
        params: :class:`ReputationParams` (defaults when None).

    Returns:
        A :class:`ReputationTable`; equal evidence and arguments give identical bits.
    """
    if epoch_s <= 0:
        raise ValueError("epoch_s must be > 0")
    p = params or ReputationParams()
    ev = evidence
    n = ev.n_peers
    epoch = now // epoch_s
    w = p.window_epochs
    decay = decay_table_fixed(p.half_life_epochs, w + 1, DECAY_BITS)
    decay_bad = decay_table_fixed(p.bad_half_life_epochs, w + 1, DECAY_BITS)

    def age_weight(
        epochs: np.ndarray, *, allow_current: bool, table: np.ndarray = decay
    ) -> np.ndarray:
        """Fixed-point decay per row; 0 outside the window (or in the future)."""
        age = (epoch - 1) - epochs
        ok = (age >= 0) & (age <= w - 1)
        if allow_current:
            ok |= epochs == epoch
            age = np.maximum(age, 0)
        return np.where(ok, table[np.clip(age, 0, w)], 0)

    n_offers = len(ev.offer_client)
    # One sentinel offer at index n_offers (owner -1, far past) keeps indexing total.
    offer_client = np.append(ev.offer_client, -1)
    offer_epoch = np.append(ev.offer_epoch, -(2**40))
    offer_deadline = np.append(ev.offer_deadline_ms, 0)
    # --- claims, receipts, count-quorum outvoted results ----------------------------------
    claim_key = ev.claim_offer * n + ev.claim_node  # sorted: claims are sorted (offer, node)
    r_key = ev.receipt_offer * n + ev.receipt_node  # sorted likewise
    r_claimed, _ = _member(claim_key, r_key)
    r_valid = r_claimed & ev.verified[ev.receipt_node] & ~ev.failed[ev.receipt_node]
    r_wrong = np.zeros(len(r_key), bool)
    r_agree = np.zeros(len(r_key), np.int64)
    offences = list(ev.offences)
    if r_valid.any():
        r_agree, r_wrong = receipt_votes(ev, r_valid, n_offers, p.wrong_quorum)
        if p.wrong_result_hard:
            for r in np.flatnonzero(r_wrong):
                o = ev.receipt_offer[r]
                ids: tuple[bytes, ...] = ()
                if ev.receipt_ids:
                    same = np.flatnonzero((ev.receipt_offer == o) & r_valid)
                    ids = tuple(sorted(ev.receipt_ids[i] for i in same))
                offences.append(
                    Offence(
                        "wrong_result", ev.peers[ev.receipt_node[r]], ids, int(ev.offer_epoch[o])
                    )
                )
    proven_wrong = np.zeros(n, bool)
    if p.wrong_result_hard:
        proven_wrong[ev.receipt_node[r_wrong]] = True
    offender = ev.equivocated | proven_wrong
    # offers whose valid receipts disagree (any two outputs)
    if r_valid.any():
        per_offer = np.bincount(ev.receipt_offer[r_valid], minlength=n_offers + 1)
        contested = per_offer[ev.receipt_offer] > r_agree
    else:
        contested = np.zeros(len(r_key), bool)
    # a receipt agreed by a quorum with no disagreement (used before standing exists)
    r_confirmed = r_valid & (r_agree >= p.wrong_quorum) & ~contested

    # --- valid feedback -------------------------------------------------------------------
    fo = ev.fb_offer
    in_range = (fo >= 0) & (fo < n_offers)
    fo_c = np.where(in_range, fo, n_offers)
    owned = offer_client[fo_c] == ev.fb_client
    fb_key = fo_c * n + ev.fb_node
    claimed, _ = _member(claim_key, fb_key)
    fb_d = age_weight(offer_epoch[fo_c], allow_current=True)
    fb_db = age_weight(offer_epoch[fo_c], allow_current=True, table=decay_bad)
    # Tasks the node's enclave refused for the client's own input (a checked Refusal):
    # the client's bad verdicts on them are no evidence against the node.
    ref_offer, ref_key = _refused(ev, n)
    excused = _member(ref_key, fb_key)[0] & (ev.fb_outcome != _OK)
    valid = (
        owned
        & claimed
        & ~excused
        & (ev.fb_client != ev.fb_node)
        & ~ev.equivocated[ev.fb_client]
        & ~offender[ev.fb_node]
        & (fb_d > 0)
    )
    fc, fn, fd, fdb = ev.fb_client[valid], ev.fb_node[valid], fb_d[valid], fb_db[valid]
    outcome = ev.fb_outcome[valid]
    is_ok = outcome == _OK
    is_bad = (outcome == _WRONG) | (outcome == _BAD_PROOF)
    ok_value = (100 - p.rating_weight_pct) * 100 + p.rating_weight_pct * ev.fb_rating[valid]
    good = fd * np.where(is_ok, ok_value, 0)  # exact int64
    seen = fd * UNIT
    bad_value = np.where(
        is_bad,
        UNIT,
        np.where(outcome == _TIMEOUT, p.timeout_penalty_pct * 100, 0),
    )
    local = good - fd * bad_value  # the client's local trust in the node, per feedback

    # latency: ok feedback only, against the deadline budget of the task's epoch
    budget = offer_deadline[fo_c[valid]] - offer_epoch[fo_c[valid]] * (epoch_s * 1000)
    budget = np.maximum(budget, 1)
    lat = np.minimum(ev.fb_latency_ms[valid], budget)
    lat_fixed = UNIT - (lat * UNIT) // budget
    lat_num = np.where(is_ok, fd * lat_fixed, 0)
    lat_den = np.where(is_ok, seen, 0)

    # the receipt behind each feedback
    r_found, r_pos = _member(r_key, fo_c[valid] * n + fn)
    if len(r_key):
        r_found &= r_valid[r_pos]
    r_pos = np.where(r_found, r_pos, 0)
    node_trusted = ev.verified & ~ev.failed & ~offender

    # Success mass per feedback: good (ok) and bad split, bad evidence weighs ``bad_weight``
    # and decays with the slower ``bad_half_life_epochs``; timeouts count once, as before.
    succ_good = good
    succ_seen_ok = np.where(is_bad, 0, seen)  # ok and timeout rows: denominator as before
    succ_bad = np.where(is_bad, fdb * UNIT, 0)  # bad rows, exact int64 (scaled below)

    # --- aggregate per (client, node) pair: rows are sorted by client, node ----------------
    pair = fc * n + fn
    if len(pair):
        starts = np.flatnonzero(np.concatenate(([True], pair[1:] != pair[:-1])))
        pc, pn = fc[starts], fn[starts]

        def per_pair(x: np.ndarray) -> np.ndarray:
            return np.add.reduceat(x, starts).astype(np.float64)

        local_p = per_pair(local)
        latn_p, latd_p = per_pair(lat_num), per_pair(lat_den)
    else:
        pc = pn = np.zeros(0, np.int64)
        local_p = latn_p = latd_p = np.zeros(0)

        def per_pair(x: np.ndarray) -> np.ndarray:
            return np.zeros(0)

    # --- EigenTrust over clients and nodes ------------------------------------------------
    # A node vouches for a client whose verdict agrees with the proof; the proof here is the
    # count rule (a standing-weighted verdict needs the trust computed below).
    fb_wrong0 = r_found & (r_wrong[r_pos] if len(r_key) else r_found)
    consistent = r_found & ((is_ok & ~fb_wrong0) | ((outcome == _WRONG) & fb_wrong0))
    vouch = consistent & node_trusted[fn]
    v_key = fn[vouch] * n + fc[vouch]
    v_keys, v_inv = np.unique(v_key, return_inverse=True)
    v_w = np.bincount(v_inv, weights=(fd[vouch] * UNIT).astype(np.float64))
    src = np.concatenate((pc, v_keys // n))
    dst = np.concatenate((pn, v_keys % n))
    weight = np.concatenate((np.maximum(local_p, 0.0), v_w))
    pretrusted = ev.is_node & node_trusted
    warm = None
    if p.is_streaming_trust:
        warm = _records_chain(
            n,
            epoch,
            p,
            decay,
            fc,
            fn,
            offer_epoch[fo_c[valid]],
            np.where(is_ok, ok_value, 0) - bad_value,
            consistent,
            ev.claim_node,
            offer_epoch[ev.claim_offer],
        )
    trust, prev = eigentrust(
        n,
        src,
        dst,
        weight,
        pretrusted,
        alpha=p.trust_alpha,
        iterations=p.trust_view_steps if warm is not None else p.trust_iterations,
        previous=True,
        start=warm,
    )
    # No self-dealing through a 2-cycle: the trust a client received directly from node j
    # (j vouched for it) does not weigh its feedback on j. Computed with the same float
    # steps as the iteration, so a client trusted only by j has weight exactly 0 on j.
    pair_trust = trust[pc]
    if len(v_keys) and len(pc):
        row = np.bincount(src, weights=weight, minlength=n)
        found, pos = _member(v_keys, pn * n + pc)
        share = np.where(found, v_w[pos], 0.0) / np.where(row[pn] > 0.0, row[pn], 1.0)
        inflow = (1.0 - p.trust_alpha) * (share * prev[pn])
        pair_trust = np.where(found, np.maximum(pair_trust - inflow, 0.0), pair_trust)
    # A client's weight is its trust in units of the teleport share of one pre-trusted node
    # (alpha / |pre-trusted|): it depends on attested nodes only, so zero-trust identities
    # added by an attacker change nobody's weight (a per-vertex average would).
    n_pre = max(1, int(np.count_nonzero(pretrusted)))
    cw = np.minimum(p.trust_weight_cap, pair_trust * (n_pre / p.trust_alpha))
    one = _D * UNIT  # one fresh feedback of average trust

    def success_posterior(
        drop: np.ndarray, client_w: np.ndarray, lost_mass: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(good, bad, seen) masses per node in feedback of average trust; ``drop`` rows
        (refuted verdicts) carry no evidence; ``lost_mass`` adds lost disputes as bad."""
        keep = ~drop
        g_p = per_pair(np.where(keep, succ_good, 0))
        s_p = per_pair(np.where(keep, succ_seen_ok, 0))
        b_p = per_pair(np.where(keep, succ_bad, 0))
        g = np.bincount(pn, weights=client_w * g_p, minlength=n) / one
        s_ok = np.bincount(pn, weights=client_w * s_p, minlength=n) / one
        b = np.bincount(pn, weights=client_w * b_p, minlength=n) / one
        bad = (s_ok - g) + p.bad_weight * b + lost_mass
        return g, bad, s_ok + b

    def quality_of(g: np.ndarray, bad: np.ndarray) -> np.ndarray:
        a, b = beta_posterior(g, bad, p.prior_success, p.prior_strength_success)
        return beta_lcb(a, b, p.quality_z, p.prior_success)

    # Standing, round 0: quality with wrong verdicts on quorum-confirmed, undisputed
    # receipts set aside and no dispute counted. Each further round re-judges every dispute
    # with the quality the previous round's verdicts gave (a fixed number of rounds, so
    # every peer runs the same steps): identities that lost many verdicts stop weighing,
    # and a node outvoted by them in an early round is acquitted in a later one.
    trusted_node = ev.is_node & node_trusted
    pre_drop = is_bad & r_found & r_confirmed[r_pos] if len(r_key) else np.zeros(len(fc), bool)
    # Each refused input counts against its client's credibility like a refuted verdict of
    # weight REFUSAL_WEIGHT (decaying like bad evidence), whether or not it gave feedback.
    ref_claimed = _member(claim_key, ref_key)[0]
    ref_client = offer_client[ref_offer]
    refusal_w = np.where(
        ref_claimed, age_weight(offer_epoch[ref_offer], allow_current=True, table=decay_bad), 0
    )
    refused_c = (
        np.bincount(
            ref_client[ref_claimed], weights=refusal_w[ref_claimed].astype(np.float64), minlength=n
        )
        / _D
    )
    g0, bad0, _ = success_posterior(pre_drop, cw, np.zeros(n))
    standing = np.where(trusted_node, quality_of(g0, bad0), 0.0)
    lost_d = age_weight(offer_epoch[ev.receipt_offer], allow_current=True, table=decay_bad)
    fb_contested = r_found & (contested[r_pos] if len(r_key) else r_found)
    f_offer = fo_c[valid]
    cw0 = cw
    for _round in range(p.dispute_rounds):
        upheld, lost, _decided = dispute_verdicts(
            ev.receipt_offer,
            ev.receipt_output,
            standing[ev.receipt_node] if len(r_key) else np.zeros(0),
            r_valid,
            n_offers,
            quorum=p.wrong_quorum,
            confidence=p.dispute_confidence,
            min_support=p.dispute_min_support,
        )
        lost_w = np.where(lost, lost_d, 0).astype(np.float64)
        disputes_lost = np.bincount(ev.receipt_node, weights=lost_w, minlength=n) / _D
        # Verdicts on feedback: a wrong on an upheld receipt is refuted (slander), on an
        # outvoted one upheld. A client's weight shrinks with its refuted share.
        fb_upheld = r_found & (upheld[r_pos] if len(r_key) else r_found)
        fb_lost = r_found & (lost[r_pos] if len(r_key) else r_found)
        refuted = is_bad & fb_upheld
        # A client whose verdict on a task was refuted has shown its judgement of that
        # task's results false: none of its feedback on the task counts, its praise of
        # the replicas its slander called in included (colluders praise their friends
        # among them), and none of it backs the client
        discredited = np.zeros(n_offers + 1, bool)
        discredited[f_offer[refuted]] = True
        discredited = discredited[f_offer]
        # Only verdicts back a client: praise of an unchecked result proves nothing.
        supported = ((is_bad & fb_lost) | (is_ok & fb_upheld)) & ~discredited
        ref_w = np.where(refuted, fdb, 0).astype(np.float64)
        sup_w = np.where(supported, fd, 0).astype(np.float64)
        ref_c = np.bincount(fc, weights=ref_w, minlength=n) / _D
        sup_c = np.bincount(fc, weights=sup_w, minlength=n) / _D
        credibility = (1.0 + sup_c) / (
            1.0 + sup_c + p.slander_penalty * ref_c + REFUSAL_WEIGHT * refused_c
        )
        cw = cw0 * credibility[pc]
        # On a task whose receipts disagree, the client's "wrong" only echoes a vote that
        # colluders can stack: it counts only where the verdict outvoted the receipt.
        echo = is_bad & fb_contested & ~fb_lost
        drop = refuted | echo | discredited
        g1, bad1, seen1 = success_posterior(drop, cw, p.dispute_weight * disputes_lost)
        quality = np.where(trusted_node, quality_of(g1, bad1), 0.0)
        if _round + 1 < p.dispute_rounds:
            standing = quality

    # --- components -----------------------------------------------------------------------
    success = _smoothed(g1, g1 + bad1, p.prior_success, p.prior_strength_success)
    lat_n = np.bincount(pn, weights=cw * latn_p, minlength=n)
    lat_d = np.bincount(pn, weights=cw * latd_p, minlength=n)
    latency = _smoothed(lat_n / one, lat_d / one, p.prior_latency, p.prior_strength_latency)
    feedback_mass = seen1

    # throughput: claims of tasks whose deadline has passed, delivered = a receipt exists
    # ...a task refused for its client's input is neither delivered nor the node's failure
    due = offer_deadline[ev.claim_offer] <= now * 1000
    due &= ~_member(ref_key, claim_key)[0]
    c_d = age_weight(offer_epoch[ev.claim_offer], allow_current=True)
    c_d = np.where(due, c_d, 0).astype(np.float64)
    delivered, _ = _member(r_key, claim_key)
    thr_num = np.bincount(ev.claim_node, weights=c_d * delivered, minlength=n) / _D
    thr_den = np.bincount(ev.claim_node, weights=c_d, minlength=n) / _D
    throughput = _smoothed(thr_num, thr_den, p.prior_throughput, p.prior_strength_throughput)

    uptime = uptime_component(ev, epoch, p, decay)
    attestation = attestation_component(ev, now, p)
    comps = np.stack([uptime, success, throughput, latency, attestation])
    score, permille = combine(comps, offender, p)
    newcomer = feedback_mass < p.newcomer_min_feedback
    frozen = (score, permille, comps, feedback_mass, trust, newcomer, offender)
    for arr in (*frozen, quality, standing, disputes_lost, upheld, lost, credibility):
        arr.setflags(write=False)
    return ReputationTable(
        peers=ev.peers,
        epoch=int(epoch),
        is_node=ev.is_node,
        score=score,
        permille=permille,
        components=comps,
        feedback_mass=feedback_mass,
        client_trust=trust,
        is_newcomer=newcomer,
        is_offender=offender,
        offences=tuple(sorted(offences, key=lambda o: (o.peer_id, o.kind, o.record_ids))),
        quality=quality,
        standing=standing,
        disputes_lost=disputes_lost,
        receipt_upheld=upheld,
        receipt_lost=lost,
        client_credibility=credibility,
    )
