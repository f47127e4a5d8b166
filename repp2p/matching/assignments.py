"""Who the matching gave a task to: the ranks the evidence accepts claims at.

:func:`assigned_ranks` is, for one offer, every rank a node may rightly hold a ``Claim``
at: its place in the offer's ranking (:func:`repp2p.matching.rank`, the ranks that may
claim) and its place in the offer's *escalation ranking* (the ranking without the
exploration coin that dispute replicas come from, :mod:`repp2p.tasks.escalation`), both on
the view of the offer's epoch and that epoch's beacon. Any peer holding that view computes
the same sets.

:class:`Assignments` caches them per offer, so each offer is ranked once however many
views read it; :func:`repp2p.reputation.collect` takes its :meth:`Assignments.ranks` as
``assignments`` and counts a claim only when its signer has a rank here (any of them: a
node ranks on its own view, and views can differ by a place or two).

Pure: the caller hands in the views (``view_of``); nothing here reads a store or a clock.
A keeper keeps its ranks across restarts with :meth:`Assignments.to_bytes` and
:meth:`Assignments.from_bytes` (the caller reads and writes the file).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import cbor2

from repp2p.errors import StoreError
from repp2p.matching.beacon import beacon
from repp2p.matching.hashing import task_words
from repp2p.matching.rank import rank_fast
from repp2p.matching.view import View
from repp2p.records import TaskOffer
from repp2p.reputation import AcceptedRecord

#: ``Claim.rank`` is a byte: no ranking is longer
MAX_RANKS = 256
#: The most offers :meth:`Assignments.from_bytes` reads (a file is input too)
MAX_SAVED_OFFERS = 1_000_000


def escalation_order(o: TaskOffer, view: View, beacon_: bytes) -> list[str]:
    """The offer's escalation ranking: its ranking on ``view`` without the exploration coin
    (serving tier, other established nodes, newcomers), ``redundancy + failover_depth +
    dispute_max_replicas`` nodes at most (256). The rule of
    :func:`repp2p.tasks.escalation.escalation_ranking` (a test holds them equal)."""
    mp = view.matching_params
    limit = min(MAX_RANKS, o.redundancy + mp.failover_depth + mp.dispute_max_replicas)
    a0, a1, _a2 = task_words(o.task_id, beacon_)
    out: list[int] = []
    for pool in view.pools(view.eligible(o), False):
        if len(out) >= limit:
            break
        out += rank_fast(
            a0, a1, view.words, view.weight, pool, limit - len(out), view.inv_weight
        ).tolist()
    return [view.peers[i] for i in out]


def assigned_ranks(o: TaskOffer, view: View) -> dict[str, frozenset[int]]:
    """``peer -> ranks`` at which ``peer`` may hold a claim on ``o``, on ``view`` (the view
    of ``o.epoch``): its claiming rank and its escalation rank, when it has them."""
    b = beacon(o.epoch)
    ranks: dict[str, set[int]] = {}
    for r, p in enumerate(view.rank(o, b)):
        ranks.setdefault(p, set()).add(r)
    for r, p in enumerate(escalation_order(o, view, b)):
        ranks.setdefault(p, set()).add(r)
    return {p: frozenset(rs) for p, rs in ranks.items()}


class Assignments:
    """Per-offer :func:`assigned_ranks`, each offer ranked once on its epoch's view.

    A view keeper keeps one of these across views: the view of epoch ``E`` reads the
    offers of epochs up to ``E - task_record_lag``, and every offer is ranked when it first
    appears, on the view of its own epoch, then read from here.
    """

    def __init__(self) -> None:
        self._cache: dict[bytes, tuple[int, Mapping[str, frozenset[int]]]] = {}
        #: whether the cache changed since it was last saved (the keeper clears it
        #: once :meth:`to_bytes` is written)
        self.changed = False

    def __len__(self) -> int:
        return len(self._cache)

    def ranks(
        self, offer: AcceptedRecord, view_of: Callable[[int], View | None]
    ) -> Mapping[str, frozenset[int]] | None:
        """The assigned ranks of ``offer`` (a signed ``TaskOffer``).

        ``view_of(epoch)`` returns the view of that epoch, or None when there is none (then
        None: no claim on the offer counts; not cached, a later call may have the view).
        """
        cached = self._cache.get(offer.record_id)
        if cached is not None:
            return cached[1]
        o = offer.record
        if not isinstance(o, TaskOffer):
            return None
        view = view_of(o.epoch)
        if view is None or view.epoch != o.epoch:
            return None
        got = assigned_ranks(o, view)
        self._cache[offer.record_id] = (o.epoch, got)
        self.changed = True
        return got

    def for_views(self, view_of: Callable[[int], View | None]):
        """``offer -> ranks`` for :func:`repp2p.reputation.collect`'s ``assignments``."""
        return lambda offer: self.ranks(offer, view_of)

    def keep(self, offer_ids: set[bytes]) -> None:
        """Drop every offer not in ``offer_ids`` (the offers still held)."""
        kept = {k: v for k, v in self._cache.items() if k in offer_ids}
        self.changed |= len(kept) != len(self._cache)
        self._cache = kept

    def forget_before(self, epoch: int) -> None:
        """Drop the offers of epochs before ``epoch`` (out of every view's window)."""
        kept = {k: v for k, v in self._cache.items() if v[0] >= epoch}
        self.changed |= len(kept) != len(self._cache)
        self._cache = kept

    def to_bytes(self) -> bytes:
        """Canonical CBOR of every offer's ranks, to keep them across restarts: ``{"v": 1,
        "offers": [[offer record ID, epoch, [[peer, [rank, ...]], ...]], ...]}``, offers by
        ID, peers by ID, ranks ascending (the caller clears :attr:`changed` once they are
        saved)."""
        offers = [
            [oid, epoch, [[peer, sorted(ranks)] for peer, ranks in sorted(got.items())]]
            for oid, (epoch, got) in sorted(self._cache.items())
        ]
        return cbor2.dumps({"v": 1, "offers": offers}, canonical=True)

    @classmethod
    def from_bytes(cls, data: bytes) -> Assignments:
        """The ranks :meth:`to_bytes` wrote.

        Raises:
            StoreError: the bytes are not such a file (damaged or foreign), or hold more
                than :data:`MAX_SAVED_OFFERS` offers or a rank outside ``0..255``.
        """
        out = cls()
        try:
            obj = cbor2.loads(data, allow_duplicate_keys=False, max_depth=8)
            if type(obj) is not dict or obj.keys() != {"v", "offers"} or obj["v"] != 1:
                raise ValueError("not a version-1 file of offer ranks")
            offers = obj["offers"]
            if type(offers) is not list or len(offers) > MAX_SAVED_OFFERS:
                raise ValueError(f"offers is not a list of at most {MAX_SAVED_OFFERS}")
            for entry in offers:
                if type(entry) is not list or len(entry) != 3:
                    raise ValueError("bad offer entry")
                oid, epoch, ranked = entry
                if type(oid) is not bytes or len(oid) != 32 or oid in out._cache:
                    raise ValueError("bad or repeated offer ID")
                if type(epoch) is not int or not 0 <= epoch < 2**64:
                    raise ValueError("bad epoch")
                if type(ranked) is not list or len(ranked) > 2 * MAX_RANKS:
                    raise ValueError("bad ranks")
                got: dict[str, frozenset[int]] = {}
                for item in ranked:
                    if type(item) is not list or len(item) != 2:
                        raise ValueError("bad ranks")
                    peer, ranks = item
                    if (
                        type(peer) is not str
                        or peer in got
                        or type(ranks) is not list
                        or not ranks
                        or len(ranks) > 2
                        or any(type(r) is not int or not 0 <= r < MAX_RANKS for r in ranks)
                    ):
                        raise ValueError("bad ranks")
                    got[peer] = frozenset(ranks)
                out._cache[oid] = (epoch, got)
        except (ValueError, TypeError, cbor2.CBORError) as exc:
            raise StoreError(f"offer ranks: {exc}") from None
        return out
