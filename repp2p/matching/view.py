"""``View``: the accepted record set as of an epoch boundary, ready for ranking.

Every peer that holds the same records (or folded digests), attestation verdicts, penalty
book and parameters builds the same view, with the same ``digest`` (:func:`view_digest`:
canonical CBOR of the parameters, the sorted record IDs' hash and the folded epochs'
digest-ID hashes, so another implementation can reproduce it), the same reputation table
and the same rankings. A ``Claim`` carries the digest of the
view it matched on, so disagreement between peers is visible.

Building a view does the per-epoch work once (reputation, eligibility, weights, peer words);
ranking a task then costs one vectorised pass (:mod:`repp2p.matching.rank`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import cbor2
import numpy as np

from repp2p.matching.beacon import beacon as epoch_beacon
from repp2p.matching.hashing import mix_array, peer_words, pool_coin, task_words
from repp2p.matching.params import MatchingParams
from repp2p.matching.rank import rank_fast, rank_reference
from repp2p.records import TaskOffer
from repp2p.reputation import (
    AcceptedRecord,
    AssignedRanks,
    AttestedNode,
    Evidence,
    PenaltyBook,
    ReputationParams,
    ReputationTable,
    collect,
    compute,
)

if TYPE_CHECKING:
    # Only for annotations: repp2p.network_params imports this package's params module.
    from repp2p.network_params import NetworkParams

#: Domain prefix of :func:`view_digest` (version 2: canonical CBOR of the view's sources).
VIEW_DOMAIN = b"repp2p/2/view\0"


@dataclasses.dataclass(frozen=True, eq=False)
class ClaimedDemand:
    """The recent demand as the nodes' work digests report it, before the view decides
    whose report counts (:meth:`count`).

    Attributes:
        claims: per recent epoch, per peer of the view's evidence (``evidence.peers``
            order), the claims its work digest rows of that epoch report of clients other
            than itself (:meth:`repp2p.reputation.pairs.PairState.node_claims`).
        replicas: per recent epoch (same order), the escalation replicas of its disputed
            offers, left out as the records path's :func:`recent_demand` leaves them out.
    """

    claims: tuple[np.ndarray, ...]
    replicas: tuple[int, ...]

    def count(self, node_ix: np.ndarray, counted: np.ndarray) -> int:
        """Claims per epoch the tier must cover: the most, over the recent epochs, of the
        claims of the nodes ``counted`` (a mask over ``node_ix``, the node positions in
        the evidence) less that epoch's replicas.

        Only the claims of attested nodes count (verified, not failed, consistent with
        their ad; the view decides which): a work digest is any key's to sign, and one
        digest of a key that is no node, with one row of the format's maximum, would
        otherwise set the demand of every view to 2**24 claims, widening the tier to
        every established node (quality first no more). A penalised node's or an
        offender's claims still count: the clients it served are demand the rest of the
        network must now cover (left out, the tier shrank as cheaters were caught).
        """
        best = 0
        for claims, replicas in zip(self.claims, self.replicas, strict=True):
            total = int(claims[node_ix][counted].sum()) if len(node_ix) else 0
            best = max(best, total - replicas)
        return best


def _verdicts_cbor(verdicts: Mapping[str, AttestedNode]) -> list:
    """The verdicts as the view digest encodes them (docs/records.md, "View digest")."""
    return [
        [
            peer,
            v.tee_kind,
            sorted(v.measurements),
            v.verified,
            v.tcb_degraded,
            v.failed,
            v.attested_at,
        ]
        for peer, v in sorted(verdicts.items())
    ]


def view_digest(
    *,
    epoch: int,
    params: NetworkParams,
    records: bytes,
    digests: Sequence[tuple[int, bytes]],
    verdicts: Mapping[str, AttestedNode],
    penalties: PenaltyBook,
    engine_pins: Mapping[str, frozenset[bytes]] | None,
) -> bytes:
    """The 32-byte digest of a view: SHA-256 of ``VIEW_DOMAIN`` followed by the canonical
    CBOR (RFC 8949 core deterministic encoding, ``cbor2.dumps(..., canonical=True)``) of
    the map below, so any implementation can reproduce it (docs/records.md, "View digest").

    ``{"v": 1, "epoch": epoch, "params": params.to_dict(), "records": records,
    "digests": [[epoch, ids_hash], ...], "verdicts": [[peer, tee_kind, [measurement...],
    verified, tcb_degraded, failed, attested_at], ...], "penalties":
    SHA-256(penalties.to_bytes()), "engine_pins": null | [[engine_id, [measurement...]],
    ...]}``, every list sorted.

    Args:
        records: SHA-256 of the concatenated sorted IDs of the records the view counts
            (or, for compact evidence without IDs, the columns digest).
        digests: per folded epoch of digest count rows, ``(epoch, ids_hash)`` with
            ``ids_hash`` the SHA-256 of the canonical CBOR array of its sorted digest IDs
            (:func:`repp2p.reputation.pairs.digest_ids_hash`); empty for record views.
    """
    body = {
        "v": 1,
        "epoch": epoch,
        "params": params.to_dict(),
        "records": records,
        "digests": [[e, h] for e, h in sorted(digests)],
        "verdicts": _verdicts_cbor(verdicts),
        "penalties": hashlib.sha256(penalties.to_bytes()).digest(),
        "engine_pins": None
        if engine_pins is None
        else [[e, sorted(engine_pins[e])] for e in sorted(engine_pins)],
    }
    return hashlib.sha256(VIEW_DOMAIN + cbor2.dumps(body, canonical=True)).digest()


_WORDS: list[tuple[tuple[str, ...], np.ndarray]] = []


def _peer_words(peers: tuple[str, ...]) -> np.ndarray:
    """:func:`peer_words`, remembered for the last node set: it rarely changes between
    epochs, and hashing 10,000 peer IDs costs tens of milliseconds per view (a pure
    function's cache: the words are the same whoever computes them)."""
    if _WORDS and _WORDS[0][0] == peers:
        return _WORDS[0][1]
    words = peer_words(peers)
    words.setflags(write=False)
    _WORDS[:] = [(peers, words)]
    return words


def _columns_digest(ev: Evidence) -> bytes:
    """Digest of compact evidence built without record IDs (simulator inputs)."""
    h = hashlib.sha256(b"repp2p/1/columns\0")
    for p in ev.peers:
        h.update(p.encode("ascii") + b"\0")
    for f in dataclasses.fields(ev):
        value = getattr(ev, f.name)
        if isinstance(value, np.ndarray):
            h.update(f.name.encode() + np.ascontiguousarray(value).astype(">i8").tobytes())
    return h.digest()


@dataclasses.dataclass(frozen=True, eq=False)
class View:
    """An epoch's matching view. Build with :meth:`build` or :meth:`from_evidence`.

    Attributes:
        epoch: the epoch whose tasks this view ranks (records as of its start).
        now: unix seconds of the epoch boundary (``epoch * epoch_s``).
        params: the network's parameters (epoch length, matching, reputation).
        digest: 32 bytes identifying the view (:func:`view_digest`: parameters, records,
            folded digests, verdicts, penalties, engine pins).
        evidence, reputation, penalties: what the view was built from and computed.
        peers: node peer IDs, sorted; the index space of the arrays below.
        words: uint64 rendezvous peer words.
        price: uint64 micro-REP; permille: reputation; weight: float64 rendezvous weight.
        is_newcomer: in the exploration pool; base_eligible: eligible for some task
            (verified, consistent, online with free capacity, not penalised, no offence).
        quality: quality permille (lower confidence bound of success, int64).
        tier: the serving tier (quality first, up to the recent demand plus headroom).
        demand: the recent demand the tier covers (claims per epoch).
    """

    epoch: int
    now: int
    params: NetworkParams
    digest: bytes
    evidence: Evidence
    reputation: ReputationTable
    penalties: PenaltyBook
    engine_pins: Mapping[str, frozenset[bytes]] | None
    peers: tuple[str, ...]
    words: np.ndarray
    price: np.ndarray
    permille: np.ndarray
    weight: np.ndarray
    inv_weight: np.ndarray
    is_newcomer: np.ndarray
    base_eligible: np.ndarray
    tee_kind: tuple[str, ...]
    quality: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    tier: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, bool))
    demand: int = 0
    _masks: dict = dataclasses.field(default_factory=dict, repr=False)

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        records: Iterable[AcceptedRecord],
        attested: Mapping[str, AttestedNode],
        *,
        epoch: int,
        params: NetworkParams,
        penalties: PenaltyBook | None = None,
        engine_pins: Mapping[str, frozenset[bytes]] | None = None,
        assignments: AssignedRanks | None = None,
    ) -> View:
        """Build the view of ``epoch`` from accepted records and attestation verdicts.

        Args:
            records: the accepted record set (any order; stale versions and expired records
                are ignored, equivocations kept as evidence).
            attested: ``peer_id -> AttestedNode`` computed by the caller under its policy.
            epoch: the epoch being matched; the view is as of its start.
            params: the network's :class:`~repp2p.network_params.NetworkParams` (epoch
                length, reputation and matching parameters; its digest enters the view's).
            penalties: the previous epoch's book; it is stepped to ``epoch`` with this
                view's reputation unless it is already there. None: a fresh book.
            engine_pins: optional ``engine_id -> accepted measurements``; an engine absent
                from it accepts any measurement the node's attestation establishes.
            assignments: each offer's assigned ranks (:class:`repp2p.matching.Assignments`
                over the views of the offers' epochs); a claim counts only at one of them.
                None: claims are not checked against rankings.
        """
        now = epoch * params.epoch_s
        evidence = collect(records, attested, now=now, assignments=assignments)
        return cls.from_evidence(
            evidence, epoch=epoch, params=params, penalties=penalties, engine_pins=engine_pins
        )

    @classmethod
    def from_evidence(
        cls,
        evidence: Evidence,
        *,
        epoch: int,
        params: NetworkParams,
        penalties: PenaltyBook | None = None,
        engine_pins: Mapping[str, frozenset[bytes]] | None = None,
        table: ReputationTable | None = None,
        digests: Sequence[tuple[int, bytes]] = (),
        demand: int | ClaimedDemand | None = None,
    ) -> View:
        """Build a view from canonical :class:`Evidence` (the simulator's entry point).

        ``table``, ``digests`` and ``demand`` are for views from digest count rows
        (:class:`repp2p.viewer.ViewKeeper` with ``reputation_source = "digests"``): the
        reputation computed from the folded rows (default: :func:`compute` on
        ``evidence``), the ``(epoch, ids_hash)`` of the folded epochs (they enter the
        digest) and the recent demand (default: from the evidence's offers and claims;
        a :class:`ClaimedDemand` counts attested nodes' claims only).
        """
        rp, mp, epoch_s = params.reputation, params.matching, params.epoch_s
        now = epoch * epoch_s
        if table is None:
            table = compute(evidence, now=now, epoch_s=epoch_s, params=rp)
        book = penalties or PenaltyBook()
        if book.epoch < epoch:
            book = book.step(table, rp)
        ev = evidence
        ix = np.flatnonzero(ev.is_node)
        peers = tuple(ev.peers[i] for i in ix.tolist())
        penalised = book.penalised(epoch)
        not_penalised = (
            np.array([p not in penalised for p in peers], dtype=bool)
            if penalised
            else np.ones(len(peers), bool)
        )

        # latest heartbeat at or before the epoch: rows are sorted by (node, epoch)
        n = ev.n_peers
        hb_ok = ev.hb_epoch <= epoch
        hb_node, hb_epoch, hb_load = ev.hb_node[hb_ok], ev.hb_epoch[hb_ok], ev.hb_load[hb_ok]
        last_epoch = np.full(n, -(2**62), np.int64)
        last_load = np.zeros(n, np.int64)
        if len(hb_node):
            ends = np.flatnonzero(np.concatenate((hb_node[1:] != hb_node[:-1], [True])))
            last_epoch[hb_node[ends]] = hb_epoch[ends]
            last_load[hb_node[ends]] = hb_load[ends]
        online = last_epoch[ix] >= epoch - mp.heartbeat_max_age_epochs
        free = ev.capacity[ix] - last_load[ix] > 0

        ads = ev.ads
        tee_kind = tuple(ad.tee_kind if ad is not None else "" for ad in map(ads.get, peers))
        base = (
            ev.verified[ix]
            & ~ev.failed[ix]
            & ev.consistent[ix]
            & ~table.is_offender[ix]
            & online
            & free
            & not_penalised
        )
        permille = table.permille[ix]
        capacity = np.minimum(ev.capacity[ix], mp.capacity_cap)
        # Integer arithmetic (< 2**53), then an exact conversion: no float pow.
        weight_int = permille.astype(np.int64) ** mp.reputation_exponent * capacity
        weight = np.where(base, weight_int, 0).astype(np.float64)
        with np.errstate(divide="ignore"):
            inv_weight = 1.0 / weight
        digest_src = ev.record_ids and hashlib.sha256(b"".join(ev.record_ids)).digest()
        digest = view_digest(
            epoch=epoch,
            params=params,
            records=digest_src or _columns_digest(ev),
            digests=digests,
            verdicts=ev.verdicts,
            penalties=book,
            engine_pins=engine_pins,
        )
        words = _peer_words(peers)
        q = table.quality
        quality = (
            np.floor(q[ix] * 1000.0 + 0.5).astype(np.int64)
            if q is not None
            else permille.astype(np.int64)
        )
        if demand is None:
            demand = recent_demand(ev, epoch)
        elif isinstance(demand, ClaimedDemand):
            demand = demand.count(ix, ev.verified[ix] & ~ev.failed[ix] & ev.consistent[ix])
        established = base & ~table.is_newcomer[ix]
        if mp.quality_first:
            epoch_cap = np.where(ev.throughput[ix] > 0, ev.throughput[ix], capacity)
            tier = serving_tier(
                established, quality, epoch_cap, words, epoch, demand, mp.tier_headroom_permille
            )
        else:
            tier = established
        arrays = (words, permille, weight, inv_weight, base, quality, tier)
        for arr in arrays:
            arr.setflags(write=False)
        return cls(
            epoch=epoch,
            now=now,
            params=params,
            digest=digest,
            evidence=ev,
            reputation=table,
            penalties=book,
            engine_pins=dict(engine_pins) if engine_pins is not None else None,
            peers=peers,
            words=words,
            price=ev.price[ix],
            permille=permille,
            weight=weight,
            inv_weight=inv_weight,
            is_newcomer=table.is_newcomer[ix],
            base_eligible=base,
            tee_kind=tee_kind,
            quality=quality,
            tier=tier,
            demand=demand,
        )

    # -- parameters ------------------------------------------------------------------------
    @property
    def epoch_s(self) -> int:
        """Epoch length in seconds (``params.epoch_s``)."""
        return self.params.epoch_s

    @property
    def matching_params(self) -> MatchingParams:
        """The network's matching parameters (``params.matching``)."""
        return self.params.matching

    @property
    def reputation_params(self) -> ReputationParams:
        """The network's reputation parameters (``params.reputation``)."""
        return self.params.reputation

    # -- eligibility -----------------------------------------------------------------------
    def engine_mask(self, engine_id: str) -> np.ndarray:
        """Nodes serving ``engine_id`` with a measurement their attestation establishes (and
        the engine's pins accept, when pinned)."""
        key = ("engine", engine_id)
        mask = self._masks.get(key)
        if mask is None:
            pins = None if self.engine_pins is None else self.engine_pins.get(engine_id)
            out = []
            for p in self.peers:
                ad, verdict = self.evidence.ads.get(p), self.evidence.verdicts.get(p)
                ok = ad is not None and verdict is not None
                ok = ok and any(
                    e.engine_id == engine_id
                    and e.measurement in verdict.measurements
                    and (pins is None or e.measurement in pins)
                    for e in ad.engines
                )
                out.append(ok)
            mask = np.array(out, dtype=bool)
            self._masks[key] = mask
        return mask

    def kind_mask(self, tee_kinds: tuple[str, ...]) -> np.ndarray:
        """Nodes whose TEE kind is in ``tee_kinds`` (empty: any kind)."""
        key = ("kinds", tee_kinds)
        mask = self._masks.get(key)
        if mask is None:
            kinds = set(tee_kinds)
            mask = np.array([not kinds or k in kinds for k in self.tee_kind], dtype=bool)
            self._masks[key] = mask
        return mask

    def eligible(self, task: TaskOffer) -> np.ndarray:
        """Boolean mask over ``peers`` of the nodes eligible for ``task``."""
        key = ("task", task.engine_id, task.tee_kinds)
        static = self._masks.get(key)
        if static is None:
            static = self.base_eligible & self.engine_mask(task.engine_id)
            static &= self.kind_mask(task.tee_kinds)
            self._masks[key] = static
        mask = static & (self.permille >= task.min_reputation)
        if task.max_price < 2**64 - 1:
            mask &= self.price <= np.uint64(task.max_price)
        return mask

    # -- ranking ---------------------------------------------------------------------------
    def pools(self, mask: np.ndarray, explore: bool) -> tuple[np.ndarray, ...]:
        """The pools a task ranks through, in order, within ``mask`` (its eligible nodes).

        Not exploring: the serving tier, then the other established nodes (overflow), then
        newcomers. Exploring (the task's coin): newcomers first, then the same order.
        """
        est = mask & ~self.is_newcomer
        tier = est & self.tier
        main = (tier, est & ~tier, mask & self.is_newcomer)
        return (main[2], main[0], main[1]) if explore else main

    def rank_limit(self, task: TaskOffer) -> int:
        """How many ranks may ever claim ``task``: ``redundancy + failover_depth``."""
        return task.redundancy + self.matching_params.failover_depth

    def rank_indices(
        self, task: TaskOffer, beacon: bytes, *, limit: int | None = None, reference=False
    ) -> list[int]:
        """Ranked node indices (see :func:`rank`); ``reference`` uses the scalar definition."""
        limit = self.rank_limit(task) if limit is None else limit
        a0, a1, a2 = task_words(task.task_id, beacon)
        mask = self.eligible(task)
        explore = pool_coin(a2) < self.matching_params.exploration_permille
        out: list[int] = []
        for pool in self.pools(mask, explore):
            if len(out) >= limit:
                break
            if reference:
                got = rank_reference(a0, a1, self.words, self.weight, pool, limit - len(out))
            else:
                got = rank_fast(
                    a0, a1, self.words, self.weight, pool, limit - len(out), self.inv_weight
                ).tolist()
            out += got
        return out

    def rank(self, task: TaskOffer, beacon: bytes, *, limit: int | None = None) -> list[str]:
        """See :func:`rank`."""
        return [self.peers[i] for i in self.rank_indices(task, beacon, limit=limit)]


def recent_demand(ev: Evidence, epoch: int) -> int:
    """Claims per epoch the tier must cover: the most of the three epochs before ``epoch``.

    An epoch's demand is its offers times the median number of claims of its claimed
    offers (the lower median): redundancy counts, but the few offers a dispute escalated
    to extra replicas do not inflate it (a burst of disputes must not widen the tier to
    the very nodes being disputed). The most of three epochs, so an epoch whose records are
    still arriving does not shrink the tier.
    """
    best = 0
    for back in (1, 2, 3):
        e = epoch - back
        offers = np.flatnonzero(ev.offer_epoch == e)
        if not len(offers):
            continue
        counts = np.bincount(ev.claim_offer, minlength=len(ev.offer_epoch))[offers]
        claimed = np.sort(counts[counts > 0])
        if len(claimed):
            best = max(best, len(offers) * int(claimed[(len(claimed) - 1) // 2]))
    return best


def serving_tier(
    candidates: np.ndarray,
    quality: np.ndarray,
    epoch_capacity: np.ndarray,
    words: np.ndarray,
    epoch: int,
    demand: int,
    headroom_permille: int,
) -> np.ndarray:
    """The best-quality candidates whose epoch capacity first covers the demand.

    Candidates are ordered by quality permille (higher first), ties by a per-epoch hash of
    the peer word (so equal newcomers do not queue by peer ID); the tier is the shortest
    prefix whose summed capacity reaches ``demand * (1000 + headroom_permille) / 1000``
    (integers). No demand yet: every candidate.
    """
    tier = np.zeros(len(candidates), bool)
    idx = np.flatnonzero(candidates)
    if demand <= 0 or len(idx) == 0:
        return candidates.copy()
    salt = np.uint64(int.from_bytes(epoch_beacon(epoch)[:8], "big"))
    tie = mix_array(words[idx] ^ salt)
    order = np.lexsort((idx, tie, -quality[idx]))
    cap = np.maximum(epoch_capacity[idx][order], 0).astype(np.int64)
    before = np.cumsum(cap) - cap
    need = demand * (1000 + headroom_permille)
    tier[idx[order][before * 1000 < need]] = True
    return tier


def rank(task: TaskOffer, view: View, beacon: bytes, *, limit: int | None = None) -> list[str]:
    """Rank the nodes of ``view`` for ``task``: the first ``task.redundancy`` take it.

    Eligible nodes (attestation verified and consistent with the ad, engine served with an
    allowed measurement, TEE kind in ``task.tee_kinds`` (empty: any), price <= max_price,
    permille >= min_reputation, not penalised, online with free capacity) are ordered by
    weighted rendezvous hashing, smallest ``-ln(u) / w`` first, pool by pool: the serving
    tier (best quality, up to the recent demand), the other established nodes, newcomers.
    With probability ``exploration_permille`` (a coin from the task hash) newcomers come
    first instead.

    Args:
        task: the ``TaskOffer``.
        view: the view of ``task.epoch``.
        beacon: the epoch's 32-byte beacon.
        limit: ranks to return; default ``redundancy + failover_depth`` (the only ranks
            that may claim).

    Returns:
        Peer IDs, best first. Identical on every peer holding the same view.
    """
    return view.rank(task, beacon, limit=limit)
