"""Reputation from per-epoch digest count rows, folded once per epoch (docs/core.md,
"Views from digests").

Per-task records stay with the parties; what every peer holds of a sealed epoch is its
digests, reconciled into one count row per (client, node) pair (double entry,
:mod:`repp2p.digests.reconcile`). :class:`PairState` folds each epoch's rows **once**
(:meth:`PairState.fold`, O(rows of that epoch)) into per-epoch column blocks; a view then
reads the blocks of the window (:meth:`PairState.window`) and :func:`compute_pairs` scores
every peer from them, vectorised, without touching a record or a digest again.

Determinism (every peer must get the same bits, whatever order it folded epochs in or
however long it has been running):

* per-pair sums over the window are sums of integers below 2**53 (fixed-point decay
  weights times counts), so they are exact whatever the order of the rows;
* pairs are kept in canonical order, by (client ID, node ID), maintained on insertion
  (:meth:`PairState.fold` merges the new pairs into the sorted order), so every float sum
  over pairs (EigenTrust, trust-weighted masses) runs in the same order on every peer,
  with no sort at view time.

A view's per-pair sums are taken block by block (:meth:`PairState.window_sums`: each
block's rows share one decay value, so a block adds ``d * counts`` at its pairs' canonical
positions), O(rows in the window) with no per-row temporaries; they are not carried from
one view to the next because the decay tables are rounded to integers per age (not
geometric in fixed point), so only a re-sum is exact. With streaming EigenTrust
(``trust_view_steps > 0``) the state also holds the two live trust chains
(:meth:`PairState.trust_chain`), advanced once per epoch on a graph that is a prefix of
the same pass, and replayed from the blocks after a restart.

What a count row supports (the digests carry no ratings, no deadlines and no per-task
outputs): ``ok`` counts as a full-value good verdict; ``wrong`` and ``bad_proof`` as bad
evidence (``bad_weight``, slower decay) as far as proofs back them (below); ``timeout``,
and the verdicts a client reported on a node that published nothing covering the pair
(``node_silent``: publishing is the node's duty), as timeouts; latency against one epoch;
throughput from the node's own work rows (receipts over claims, which audits check).
Tasks the node's row reports ``refused`` (its enclave refused the client's input; each
leaf names a signed Refusal the audits check) are treated as the records view treats
checked refusals: out of the node's throughput, and each counts against its client's
credibility with weight :data:`~repp2p.reputation.scores.REFUSAL_WEIGHT` (decaying like
bad evidence), which scales the client's verdicts.

Disputes over disagreeing receipts need the receipts, which digests do not carry: they
travel as dispute proofs (:mod:`repp2p.digests.disputes`). The caller puts the offers,
claims and receipts of the disputed tasks (and only those) in the evidence's task tables
(:func:`repp2p.reputation.collect` over the proofs' records, under the records path's
evidence rule), and :func:`compute_pairs` runs the dispute rounds of
:func:`repp2p.reputation.scores.compute` on them: ``disputes_lost``, ``standing``,
``receipt_upheld`` and ``receipt_lost`` then mean what they mean on a records view (the
ledger's dispute slash reads them). Without such tables nothing changes: the rounds are
skipped, ``standing`` is ``quality``. A node with no count row in the window yet (a new
network's first views, a newcomer's) has each upheld receipt count as one ``ok`` result,
so that colluders outvoting it at equal standing cannot sink it before its rows come
(docs/core.md, "Disputes without count rows").

A count row cannot show that a ``wrong`` was true, so ``wrong`` and ``bad_proof`` count
against a node only as far as the dispute proofs back them (docs/core.md, "Verdicts backed
by proof"): per pair, verdicts matched by the node's receipts that lost a confident verdict
on the client's tasks count in full, unproven ones at most as much again (scaled by the
pair's proven share), and unproven ones a proof contradicts (the node's receipt upheld)
are refuted slander, which lowers the client's credibility as in the records path. A
contested k = 1 proof's verdict is a ``wrong`` of its client on its node whatever the
client's digest says (per pair, the larger of the rows' ``wrong`` + ``bad_proof`` and the
proofs' verdicts). With no proof nothing counts. Verdicts are still not linked to single
receipts, so no echoed verdict is dropped.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import hashlib
import itertools
import operator
from collections.abc import Iterable, Sequence
from typing import Protocol

import cbor2
import numpy as np

from repp2p.reputation.detmath import decay_table_fixed
from repp2p.reputation.disputes import dispute_verdicts
from repp2p.reputation.estimates import beta_lcb, beta_posterior
from repp2p.reputation.evidence import OUTCOME_CODES, Evidence, Offence
from repp2p.reputation.params import ReputationParams
from repp2p.reputation.scores import (
    DECAY_BITS,
    REFUSAL_WEIGHT,
    UNIT,
    ReputationTable,
    _member,
    _smoothed,
    _TrustGraph,
    attestation_component,
    chain_anchors,
    chain_oldest,
    chain_steps,
    combine,
    receipt_votes,
    uptime_component,
    warm_start,
)

#: Columns of a fold block, in order.
COLUMNS = (
    "ok",
    "wrong",
    "timeout",
    "bad_proof",
    "latency_sum_ms",
    "silent",
    "claims",
    "receipts",
    "refused",
)
_OK, _WRONG, _TIMEOUT, _BAD, _LAT, _SILENT, _CLAIMS, _RECEIPTS, _REFUSED = range(len(COLUMNS))
#: Per-row columns the view's sums weigh (PairState._derived): the first _BY_D by d, the
#: rest by d_bad.
_N_SUMS, _BY_D = 10, 8
#: What :meth:`PairState.fold` reads of a row, in order (a silent node's column is
#: ``disputed_client`` where ``node_silent``).
_ROW_FIELDS = operator.attrgetter(
    "ok",
    "wrong",
    "timeout",
    "bad_proof",
    "latency_sum_ms",
    "disputed_client",
    "node_silent",
    "node_claims",
    "node_receipts",
    "node_refused",
)
_D = float(1 << DECAY_BITS)
_I64 = np.int64


class PairCount(Protocol):
    """What :meth:`PairState.fold` reads of a count row
    (:class:`repp2p.digests.CountRow` satisfies it)."""

    @property
    def client(self) -> str: ...
    @property
    def node(self) -> str: ...
    @property
    def ok(self) -> int: ...
    @property
    def wrong(self) -> int: ...
    @property
    def timeout(self) -> int: ...
    @property
    def bad_proof(self) -> int: ...
    @property
    def latency_sum_ms(self) -> int: ...
    @property
    def disputed_client(self) -> int: ...
    @property
    def node_silent(self) -> bool: ...
    @property
    def node_claims(self) -> int: ...
    @property
    def node_receipts(self) -> int: ...
    @property
    def node_refused(self) -> int: ...


def digest_ids_hash(digest_ids: Iterable[bytes]) -> bytes:
    """SHA-256 of the canonical CBOR array of an epoch's digest IDs, sorted and unique
    (what a view digest names an epoch's digests by; docs/records.md, "View digest")."""
    return hashlib.sha256(cbor2.dumps(sorted(set(digest_ids)), canonical=True)).digest()


@dataclasses.dataclass(frozen=True, eq=False)
class EpochBlock:
    """One folded epoch: its digest-ID hash and one row per pair it counts.

    Attributes:
        epoch: the epoch.
        ids_hash: :func:`digest_ids_hash` of the digests it was folded from.
        digests: how many digests that was.
        pair: per row, the pair's stable ID in its :class:`PairState`.
        counts: int64, shape ``(len(COLUMNS), rows)``, in :data:`COLUMNS` order.
    """

    epoch: int
    ids_hash: bytes
    digests: int
    pair: np.ndarray
    counts: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class PairWindow:
    """The folded rows of a window of epochs, ready for :func:`compute_pairs`.

    Attributes:
        epochs: ``(epoch, ids_hash)`` of every folded epoch in the window, ascending.
        peers: the peers the rows name, sorted.
        pair_client, pair_node: per canonical position, the pair's peers as indices into
            ``peers`` (positions with no row in the window are unused).
        blocks: the window's folded blocks, ascending.
        pos_map: pair stable ID -> canonical position, as of the window.
        lo, hi: the epochs asked for (inclusive).
        sids: per peer of ``peers``, its stable ID in ``state``.
        state: the :class:`PairState` the window was read from (its per-block sums and
            trust chains); None: :func:`compute_pairs` sums the rows.

    The rows themselves (:attr:`row_pos`, :attr:`row_epoch`, :attr:`counts`) are
    concatenated on first use only: a view from a state sums block by block.
    """

    epochs: tuple[tuple[int, bytes], ...]
    peers: tuple[str, ...]
    pair_client: np.ndarray
    pair_node: np.ndarray
    blocks: tuple[EpochBlock, ...] = ()
    pos_map: np.ndarray | None = None
    lo: int = 0
    hi: int = -1
    sids: np.ndarray | None = None
    state: PairState | None = None

    @functools.cached_property
    def _rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        blocks = self.blocks
        if not blocks or self.pos_map is None:
            return np.zeros(0, _I64), np.zeros(0, _I64), np.zeros((len(COLUMNS), 0), _I64)
        pair = np.concatenate([b.pair for b in blocks])
        row_epoch = np.concatenate([np.full(len(b.pair), b.epoch, _I64) for b in blocks])
        counts = np.concatenate([b.counts for b in blocks], axis=1)
        row_pos = self.pos_map[pair]
        for arr in (row_pos, row_epoch, counts):
            arr.setflags(write=False)
        return row_pos, row_epoch, counts

    @property
    def row_pos(self) -> np.ndarray:
        """Per row, the canonical position of its pair (order of (client, node))."""
        return self._rows[0]

    @property
    def row_epoch(self) -> np.ndarray:
        """Per row, its epoch."""
        return self._rows[1]

    @property
    def counts(self) -> np.ndarray:
        """Per row, the :data:`COLUMNS` (shape ``(len(COLUMNS), rows)``)."""
        return self._rows[2]

    @property
    def rows(self) -> int:
        return sum(len(b.pair) for b in self.blocks)


#: Buckets of :class:`_RowLayout` (by the client's place in the ID order).
_BUCKETS = 16


class _RowLayout:
    """The derived columns (:meth:`PairState._derived`) of the folded blocks, in epoch
    order, grouped in a few buckets by their client's place in the ID order, each bucket
    in one growing buffer (a block's rows appended at its end when folded, the oldest
    block's dropped from its head when pruned).

    Why: a view's per-pair sums scatter every row into an array over the window's pairs;
    row by row in block order every block sweeps the whole array, bucket by bucket one
    part of it at a time (and the per-row products take a few calls per bucket, not one
    per block). The sums are exact integers, so the order of the rows changes no bit.
    Which bucket a row lands in is only a matter of speed (the ranks of the time of its
    fold)."""

    def __init__(self, budget: int, cap: int, n_ranks: int) -> None:
        self.budget = budget
        self.cap = cap
        self.n_ranks = max(n_ranks, 1)
        self.epochs: list[int] = []  # the blocks held, ascending
        self.sizes: list[np.ndarray] = []  # per block held: its rows per bucket
        self.pair = [np.zeros(0, _I64) for _ in range(_BUCKETS)]
        self.cols = [np.zeros((_N_SUMS, 0)) for _ in range(_BUCKETS)]
        self.head = [0] * _BUCKETS
        self.end = [0] * _BUCKETS

    def append(self, b: EpochBlock, cols: np.ndarray, client_rank: np.ndarray) -> None:
        """Add block ``b`` (newer than every block held) with its derived columns."""
        bucket = np.minimum(client_rank * _BUCKETS // self.n_ranks, _BUCKETS - 1)
        by_bucket = np.argsort(bucket, kind="stable")
        sizes = np.bincount(bucket, minlength=_BUCKETS)
        cuts = np.concatenate(([0], np.cumsum(sizes))).tolist()
        for j in range(_BUCKETS):
            m = cuts[j + 1] - cuts[j]
            if not m:
                continue
            rows = by_bucket[cuts[j] : cuts[j + 1]]
            head, end = self.head[j], self.end[j]
            if end + m > len(self.pair[j]):  # full: move the rows held to the front
                cap = max(2 * (end - head + m), 1024)
                grown_pair, grown_cols = np.empty(cap, _I64), np.empty((_N_SUMS, cap))
                grown_pair[: end - head] = self.pair[j][head:end]
                grown_cols[:, : end - head] = self.cols[j][:, head:end]
                self.pair[j], self.cols[j] = grown_pair, grown_cols
                self.head[j], end = 0, end - head
            self.pair[j][end : end + m] = b.pair[rows]
            self.cols[j][:, end : end + m] = cols[:, rows]
            self.end[j] = end + m
        self.epochs.append(b.epoch)
        self.sizes.append(sizes)

    def drop_oldest(self) -> None:
        """Drop the rows of the oldest block held."""
        sizes = self.sizes.pop(0)
        self.epochs.pop(0)
        for j in range(_BUCKETS):
            self.head[j] += int(sizes[j])


class PairState:
    """Count rows of folded epochs, with pairs kept in canonical order.

    Fold each epoch once, in any order (:meth:`fold`); drop epochs that left the window
    with :meth:`prune`. Peers and pairs get stable IDs on first sight; the canonical
    position of each pair (sorted by client ID, then node ID) is kept up to date on
    insertion, so reading a window never sorts.

    Args:
        compact_slack: the registry is rebuilt after a prune when it holds more than
            twice the pairs still in some block plus this many (a bound on memory that
            does not rebuild at every prune).
    """

    def __init__(self, *, compact_slack: int = 4096) -> None:
        self.compact_slack = compact_slack
        self._reset()

    def _reset(self) -> None:
        self._names: list[str] = []  # peer stable ID -> peer ID
        self._sid: dict[str, int] = {}  # peer ID -> stable ID
        self._rank = np.zeros(0, _I64)  # peer stable ID -> rank in sorted peer IDs
        self._sorted: list[str] = []  # every registered peer ID, sorted
        self._pc = np.zeros(0, _I64)  # pair stable ID -> client's peer stable ID
        self._pn = np.zeros(0, _I64)  # pair stable ID -> node's peer stable ID
        self._order = np.zeros(0, _I64)  # pair stable IDs in canonical order
        self._order_pc = np.zeros(0, _I64)  # = _pc[_order], kept up to date on insertion
        self._order_pn = np.zeros(0, _I64)  # = _pn[_order]
        # = _canonical_keys(_order) while no peer has been added since (None: not held)
        self._order_keys: np.ndarray | None = np.zeros(0, _I64)
        self._pos = np.zeros(0, _I64)  # pair stable ID -> canonical position
        self._blocks: dict[int, EpochBlock] = {}
        # per peer stable ID, how many rows of the folded blocks name it (client or node):
        # the peers of a window of every block, without a pass over the blocks
        self._peer_rows = np.zeros(0, _I64)
        self._peers_of: tuple[np.ndarray, tuple[str, ...]] | None = None  # last window's
        self._by_rank: np.ndarray | None = None  # peer stable IDs sorted by ID (None: stale)
        self._cache: tuple[tuple[int, ...], PairWindow] | None = None
        self._union: tuple | None = None
        # streaming EigenTrust: (anchor, lag, params...) -> (view epoch, vector over sids)
        self._chains: dict[tuple, tuple[int, np.ndarray]] = {}
        self._graph_cache: tuple | None = None  # the chains' graph a view left behind
        # epoch -> (block, (budget, cap), derived)
        self._derived_cache: dict[int, tuple] = {}
        self._layout: _RowLayout | None = None  # the blocks' rows for the views' sums

    # -- folding ---------------------------------------------------------------------------

    @property
    def epochs(self) -> tuple[int, ...]:
        """The folded epochs, ascending."""
        return tuple(sorted(self._blocks))

    def folded(self, epoch: int) -> bool:
        """True when ``epoch`` has been folded."""
        return epoch in self._blocks

    def block(self, epoch: int) -> EpochBlock | None:
        """The folded block of ``epoch``, or None."""
        return self._blocks.get(epoch)

    def node_claims(
        self, epoch: int, win: PairWindow, peer_at: np.ndarray, size: int
    ) -> np.ndarray:
        """Per peer of an evidence of ``size`` peers, the claims the folded rows of
        ``epoch`` report of it as the node, its rows naming itself as the client left out
        (no client serves itself: such a row is claims invented for the demand). The
        window ``win`` (of this state) must include ``epoch``; ``peer_at`` is where its
        peers sit in the evidence (:meth:`widen`). Zeros when ``epoch`` is not folded.

        What the recent demand is made of (:class:`repp2p.matching.view.ClaimedDemand`:
        the view keeps the attested nodes' claims only).
        """
        out = np.zeros(size, _I64)
        block = self._blocks.get(epoch)
        if block is None or not len(block.pair) or win.sids is None:
            return out
        pc, pn = self._pc[block.pair], self._pn[block.pair]
        keep = pc != pn
        per_sid = np.zeros(len(self._names), _I64)
        np.add.at(per_sid, pn[keep], block.counts[_CLAIMS][keep])
        out[peer_at] = per_sid[win.sids]
        return out

    def fold(
        self, epoch: int, rows: Sequence[PairCount], digest_ids: Iterable[bytes]
    ) -> EpochBlock:
        """Fold one epoch's count rows (at most one row per pair) and remember the IDs of
        the digests they come from. Costs O(rows) plus a vectorised pass over the pair
        registry when new pairs appear.

        Raises:
            ValueError: ``epoch`` is already folded (an epoch is folded once), or two rows
                name the same pair.
        """
        if epoch in self._blocks:
            raise ValueError(f"epoch {epoch} is already folded")
        ids = list(digest_ids)
        clients = [r.client for r in rows]
        nodes = [r.node for r in rows]
        self._add_peers(set(clients).union(nodes))
        sid = self._sid.__getitem__
        keys = np.fromiter(map(sid, clients), dtype=_I64, count=len(rows)) << 32
        keys |= np.fromiter(map(sid, nodes), dtype=_I64, count=len(rows))
        if len(np.unique(keys)) != len(keys):
            raise ValueError(f"epoch {epoch}: two count rows for one pair")
        pair = self._pair_ids(keys)
        # the rows' fields streamed into one array (no per-row list: nothing for the
        # garbage collector to trace), then one column per field
        m = len(rows)
        fields = np.fromiter(
            itertools.chain.from_iterable(map(_ROW_FIELDS, rows)),
            dtype=_I64,
            count=m * 10,
        ).reshape(m, 10)
        counts = np.empty((len(COLUMNS), m), _I64)
        counts[:_SILENT] = fields[:, :_SILENT].T
        counts[_SILENT] = np.where(fields[:, 6] != 0, fields[:, 5], 0)
        counts[_CLAIMS:] = fields[:, 7:].T
        for arr in (pair, counts):
            arr.setflags(write=False)
        block = EpochBlock(epoch, digest_ids_hash(ids), len(set(ids)), pair, counts)
        self._blocks[epoch] = block
        self._count_peers(block, 1)
        layout = self._layout
        if layout is not None:
            if layout.epochs and epoch < layout.epochs[-1]:
                self._layout = None  # folded out of order: laid out again when next read
            else:
                cols = self._derived(block, layout.budget, layout.cap)[0]
                layout.append(block, cols, self._rank[self._pc[block.pair]])
        self._cache = None
        # a trust chain that already counted up to this epoch would not be what a replay
        # gives: forget it (it is replayed when next read)
        self._chains = {k: v for k, v in self._chains.items() if v[0] - k[1] < epoch}
        self._graph_cache = None
        return block

    def _count_peers(self, block: EpochBlock, sign: int) -> None:
        """Add (``sign`` 1) or take out (-1) ``block``'s rows in the per-peer row counts."""
        n = len(self._names)
        if len(self._peer_rows) < n:
            grown = np.zeros(n, _I64)
            grown[: len(self._peer_rows)] = self._peer_rows
            self._peer_rows = grown
        rows = np.bincount(self._pc[block.pair], minlength=n)
        rows += np.bincount(self._pn[block.pair], minlength=n)
        self._peer_rows += sign * rows

    def _add_peers(self, peers: set[str]) -> None:
        new = sorted(p for p in peers if p not in self._sid)
        if not new:
            return
        old_sorted = self._sorted
        # where each new peer goes in the old sorted order; an old peer's rank moves up by
        # the new peers inserted at or before it (no full sort: O(peers) vectorised)
        at = np.fromiter(
            (bisect.bisect_left(old_sorted, p) for p in new), dtype=_I64, count=len(new)
        )
        shift = np.searchsorted(at, self._rank, side="right") if len(self._rank) else at[:0]
        for p in new:
            self._sid[p] = len(self._names)
            self._names.append(p)
        self._rank = np.concatenate((self._rank + shift, at + np.arange(len(new), dtype=_I64)))
        self._order_keys = None  # the ranks (and their count) moved
        self._by_rank = None
        self._sorted = sorted(old_sorted + new)  # two sorted runs: a linear merge

    def _canonical_keys(self, pair_ids: np.ndarray) -> np.ndarray:
        n = len(self._names)
        return self._rank[self._pc[pair_ids]] * n + self._rank[self._pn[pair_ids]]

    def _pair_ids(self, keys: np.ndarray) -> np.ndarray:
        """Stable pair IDs of ``keys`` (client sid << 32 | node sid), registering new ones."""
        # looked up by canonical key among the pairs in canonical order (no second index)
        n = len(self._names)
        canon = self._rank[keys >> 32] * n + self._rank[keys & 0xFFFFFFFF]
        ordered = self._ordered_keys()
        pos = np.searchsorted(ordered, canon)
        found = np.zeros(len(keys), bool)
        inside = pos < len(ordered)
        found[inside] = ordered[pos[inside]] == canon[inside]
        out = np.empty(len(keys), _I64)
        out[found] = self._order[pos[found]]
        fresh = np.flatnonzero(~found)
        if len(fresh):
            start = len(self._pc)
            new_ids = np.arange(start, start + len(fresh), dtype=_I64)
            out[fresh] = new_ids
            new_keys = keys[fresh]
            self._pc = np.concatenate((self._pc, new_keys >> 32))
            self._pn = np.concatenate((self._pn, new_keys & 0xFFFFFFFF))
            self._insert_canonical(new_ids)
        return out

    def _ordered_keys(self) -> np.ndarray:
        """The canonical keys of the pairs in canonical order (sorted), kept until a peer
        is added (from the pairs' peers kept in that order)."""
        if self._order_keys is None:
            n = len(self._names)
            self._order_keys = self._rank[self._order_pc] * n + self._rank[self._order_pn]
        return self._order_keys

    def _insert_canonical(self, new_ids: np.ndarray) -> None:
        # the canonical keys of the pairs in order (_canonical_keys(_order), from the pairs'
        # peers kept in that order): still sorted, ranks only spread apart
        old = self._ordered_keys()
        new_keys = self._canonical_keys(new_ids)
        by_key = np.argsort(new_keys, kind="stable")
        new_ids, new_keys = new_ids[by_key], new_keys[by_key]
        at = np.searchsorted(old, new_keys)
        self._order_keys = np.insert(old, at, new_keys)
        self._order = np.insert(self._order, at, new_ids)
        # each canonical pair's client and node, moved as the order is (no gather)
        self._order_pc = np.insert(self._order_pc, at, self._pc[new_ids])
        self._order_pn = np.insert(self._order_pn, at, self._pn[new_ids])
        self._pos = np.empty(len(self._pc), _I64)
        self._pos[self._order] = np.arange(len(self._order), dtype=_I64)

    def prune(self, before: int) -> int:
        """Drop the blocks of epochs before ``before``; returns how many. When most of the
        registered pairs are no longer in any block, the registry is rebuilt from the
        blocks kept (an O(rows) pass, rare)."""
        gone = [e for e in self._blocks if e < before]
        layout = self._layout
        for e in sorted(gone):
            self._count_peers(self._blocks.pop(e), -1)
            if layout is not None and layout.epochs and layout.epochs[0] == e:
                layout.drop_oldest()
            else:
                layout = self._layout = None
            self._derived_cache.pop(e, None)
        if gone:
            self._cache = None
            self._graph_cache = None
            live = sum(len(b.pair) for b in self._blocks.values())
            if len(self._pc) > 2 * live + self.compact_slack:
                self._compact()
        return len(gone)

    def _compact(self) -> None:
        blocks = dict(self._blocks)
        used = np.zeros(len(self._pc), bool)
        for b in blocks.values():
            used[b.pair] = True
        keep = np.flatnonzero(used)
        new_id = np.full(len(self._pc), -1, _I64)
        new_id[keep] = np.arange(len(keep), dtype=_I64)
        peers_used = np.zeros(len(self._names), bool)
        peers_used[self._pc[keep]] = True
        peers_used[self._pn[keep]] = True
        old_names = self._names
        pc_names = [old_names[i] for i in self._pc[keep]]
        pn_names = [old_names[i] for i in self._pn[keep]]
        self._reset()
        self._add_peers({old_names[i] for i in np.flatnonzero(peers_used)})
        sid = self._sid
        keys = np.fromiter(
            ((sid[c] << 32) | sid[n] for c, n in zip(pc_names, pn_names, strict=True)),
            dtype=_I64,
            count=len(keep),
        )
        ids = self._pair_ids(keys)  # = arange(len(keep)) in order
        for e, b in blocks.items():
            pair = ids[new_id[b.pair]]
            pair.setflags(write=False)
            self._blocks[e] = dataclasses.replace(b, pair=pair)
            self._count_peers(self._blocks[e], 1)

    # -- reading ---------------------------------------------------------------------------

    def window(self, lo: int, hi: int) -> PairWindow:
        """The folded rows of epochs ``lo .. hi`` (inclusive). Cached until the next fold
        or prune; costs a vectorised pass over the window's pairs (not its rows, which
        are concatenated only when read)."""
        epochs = tuple(e for e in sorted(self._blocks) if lo <= e <= hi)
        if self._cache is not None and self._cache[0] == epochs:
            return self._cache[1]
        blocks = tuple(self._blocks[e] for e in epochs)
        # peers of the window, sorted, and each canonical pair's client and node among them
        if len(blocks) == len(self._blocks):  # every block: the peers with a row
            used = self._peer_rows[: len(self._names)] > 0
        else:
            used = np.zeros(len(self._names), bool)
            for b in blocks:
                used[self._pc[b.pair]] = True
                used[self._pn[b.pair]] = True
        by_rank = self._by_rank
        if by_rank is None or len(by_rank) != len(self._names):
            by_rank = self._by_rank = np.argsort(self._rank, kind="stable")
        sids = by_rank[used[by_rank]]  # sorted by ID
        last = self._peers_of
        if last is not None and np.array_equal(last[0], sids):
            peers = last[1]  # the same peers as the last window's (the same tuple)
        else:
            peers = tuple(operator.itemgetter(*sids.tolist())(self._names)) if len(sids) else ()
            if len(sids) == 1:
                peers = (self._names[int(sids[0])],)
            self._peers_of = (sids, peers)
        local = np.full(len(self._names), -1, _I64)
        local[sids] = np.arange(len(sids), dtype=_I64)
        pair_client = local[self._order_pc]
        pair_node = local[self._order_pn]
        for arr in (pair_client, pair_node, sids):
            arr.setflags(write=False)
        win = PairWindow(
            epochs=tuple((b.epoch, b.ids_hash) for b in blocks),
            peers=peers,
            pair_client=pair_client,
            pair_node=pair_node,
            blocks=blocks,
            pos_map=self._pos,
            lo=lo,
            hi=hi,
            sids=sids,
            state=self,
        )
        self._cache = (epochs, win)
        return win

    # -- per-pair sums -----------------------------------------------------------------------

    def _derived(self, b: EpochBlock, budget: int, cap: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """Per row of ``b``, the columns the view's sums need (``_N_SUMS`` of them: the
        first ``_BY_D`` weigh by ``d``, the rest by ``d_bad``), float64 (exact: small
        integers), from its counts capped at ``cap`` (:func:`row_cap`); which of them hold
        a value other than 0; whether any row has a silent node's verdicts. Kept with the
        block (they depend on its counts, the epoch length and the cap)."""
        hit = self._derived_cache.get(b.epoch)
        if hit is not None and hit[0] is b and hit[1] == (budget, cap):
            return hit[2]
        c = capped_counts(b.counts, cap)
        counted = c[_OK] + c[_WRONG] + c[_TIMEOUT] + c[_BAD]
        lat = np.minimum(c[_LAT], counted * budget)
        lat_fixed = counted * UNIT - (lat * UNIT) // budget
        bad_n = c[_WRONG] + c[_BAD]
        cols = np.stack(
            (
                c[_OK],
                bad_n,
                c[_TIMEOUT] + c[_SILENT],
                counted,
                lat_fixed,
                c[_CLAIMS],
                c[_RECEIPTS],
                c[_REFUSED],
                bad_n,
                c[_REFUSED],
            )
        ).astype(np.float64)
        cols.setflags(write=False)
        out = (cols, cols.any(axis=1), bool(c[_SILENT].any()))
        self._derived_cache[b.epoch] = (b, (budget, cap), out)
        return out

    def window_sums(
        self, win: PairWindow, epoch: int, epoch_s: int, p: ReputationParams
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The window's decayed per-pair sums :func:`compute_pairs` reads: ``(live,
        sums)``, ``live`` the canonical positions of the pairs with a counted row
        (ascending), ``sums`` per such pair (exact integers, as float64). Each block's
        rows weigh one decay value, so the per-row weights are a block's cached columns
        times its ``d`` (``d_bad``), written run by run into one buffer (the runs of the
        row layout, :class:`_RowLayout`, when the counted blocks are the newest folded
        ones; else one run per block), and one weighted ``bincount`` per column sums
        them: O(rows in the window), with the per-row columns computed once per block, not
        once per view. A column that is 0 in every counted row is not summed (its sums are
        0), and with no silent node's verdicts in the window the counted verdicts are the
        sum of the ok, bad and timeout sums. Equal to the per-row sums bit for bit (all
        are exact integer sums below 2**53, so the order of the additions does not
        matter).

        With streaming EigenTrust, also leaves the chains' graph of ``epoch``
        (:meth:`_chain_graph`) for :meth:`trust_chain`: its blocks are the newest of the
        window's, so their sums are taken apart from the older blocks' and the view's
        are the two added (exact)."""
        w = p.window_epochs
        decay = decay_table_fixed(p.half_life_epochs, w + 1, DECAY_BITS)
        decay_bad = decay_table_fixed(p.bad_half_life_epochs, w + 1, DECAY_BITS)
        budget = max(epoch_s * 1000, 1)
        cap = row_cap(p)
        n_pos = len(win.pair_client)
        # blocks counted (ages in [0, w)), newest first
        blocks = [b for b in reversed(win.blocks) if 0 <= (epoch - 1) - b.epoch <= w - 1]
        counted = [b.epoch for b in blocks]
        oldest = None
        current = self._cache is not None and self._cache[1] is win  # no fold since
        if p.is_streaming_trust and current and win.lo <= max(epoch - w, chain_oldest(epoch, p)):
            oldest = chain_oldest(epoch, p)  # the window holds the chains' graph
        derived = [self._derived(b, budget, cap) for b in blocks]
        nonzero = np.zeros(_N_SUMS, bool)
        for _, nz, _ in derived:
            nonzero |= nz
        silent = any(si for _, _, si in derived)
        d_of = [float(decay[(epoch - 1) - e]) for e in counted]
        db_of = [float(decay_bad[(epoch - 1) - e]) for e in counted]
        # the newest blocks (the chains' graph's, when it is taken here) come first
        first = len(blocks) if oldest is None else sum(1 for e in counted if e >= oldest)
        # the rows as runs ``(pair IDs, columns, from, to, d, d_bad)``: the newest blocks'
        # runs, then the older ones' (``split`` runs in); ``d`` per run or per row
        layout = self._laid_out(budget, cap) if current else None
        if (
            layout is not None
            and len(counted) <= len(layout.epochs)
            and layout.epochs[len(layout.epochs) - len(counted) :] == counted[::-1]
        ):
            runs, split = self._layout_runs(layout, len(counted), first, d_of[::-1], db_of[::-1])
        else:
            runs = [
                (b.pair, c, 0, len(b.pair), d, db)
                for b, (c, _, _), d, db in zip(blocks, derived, d_of, db_of, strict=True)
            ]
            split = first
        sizes = [r[3] - r[2] for r in runs]
        if runs:
            assert win.pos_map is not None
            pos = np.concatenate([win.pos_map[pair[a:b]] for pair, _, a, b, _, _ in runs])
        else:
            pos = np.zeros(0, _I64)
        # the pairs with a counted row (canonical order), and each row's pair among them:
        # the sums are taken over those pairs only
        present = np.zeros(n_pos, bool)
        present[pos] = True
        live = np.flatnonzero(present)
        n_live = len(live)
        dense = np.zeros(n_pos, _I64)
        dense[live] = np.arange(n_live, dtype=_I64)
        pos = dense[pos]
        buf = np.empty(len(pos))
        starts = np.concatenate(([0], np.cumsum(sizes, dtype=_I64))).tolist()

        def total(k: int, newer: bool | None = None) -> np.ndarray:
            """Column ``k`` summed per live pair over the rows of every counted block
            (``newer`` None), the newest ``first`` blocks (True) or the others (False)."""
            if not nonzero[k]:
                return np.zeros(n_live)
            lo, hi = (
                (0, len(runs)) if newer is None else (0, split) if newer else (split, len(runs))
            )
            i = a = starts[lo]
            for _, cols, r0, r1, d, db in runs[lo:hi]:
                np.multiply(cols[k, r0:r1], db if k >= _BY_D else d, out=buf[i : i + r1 - r0])
                i += r1 - r0
            return np.bincount(pos[a:i], weights=buf[a:i], minlength=n_live)

        tv = float(p.timeout_penalty_pct * 100)
        if oldest is None:
            ok, bad_n, timeouts, claims = (total(k) for k in (0, 1, 2, 5))
        else:
            # the chains' blocks (the newest, a prefix of the rows) and the older ones
            # summed apart, the view's sums their sums (exact integers: the same bits)
            n_ok, n_bad, n_to, n_claims = (total(k, True) for k in (0, 1, 2, 5))
            ok, bad_n, timeouts, claims = (
                x + total(k, False)
                for k, x in zip((0, 1, 2, 5), (n_ok, n_bad, n_to, n_claims), strict=True)
            )
            newer = np.zeros(n_live, bool)
            newer[pos[: starts[split]]] = True
            at = np.flatnonzero(newer)  # canonical order
            c_ok = n_ok[at]
            c_local = _local_trust(c_ok, n_bad[at], n_to[at], tv)
            key = (epoch, epoch - win.hi, *self._chain_tail(p))
            assert win.sids is not None
            pair_at = live[at]
            pcl, pnl = win.pair_client[pair_at], win.pair_node[pair_at]
            # the vertices among the window's peers (sorted by ID: no sort by rank)
            vertices = np.zeros(len(win.sids), bool)
            distinct = pcl != pnl  # (as _chain_edges keeps them)
            both = (pcl, pnl) if distinct.all() else (pcl[distinct], pnl[distinct])
            for side in both:
                vertices[side] = True
            graph = self._chain_edges(
                win.sids[pcl],
                win.sids[pnl],
                c_local,
                c_ok,
                n_claims[at] > 0.0,
                win.sids[np.flatnonzero(vertices)],
            )
            self._graph_cache = (key, graph)
        # counted = ok + wrong + timeout + bad_proof: with no silent node's verdicts, the
        # sum of three sums above (exact integers)
        n_counted = total(3) if silent else ok + bad_n + timeouts
        return live, {
            "good": ok,
            "seen_ok": ok + timeouts,
            "bad": total(8),
            "local": _local_trust(ok, bad_n, timeouts, tv),
            "lat_num": total(4),
            "lat_den": np.multiply(n_counted, UNIT, out=n_counted),
            "claims": claims,
            "receipts": total(6),
            "refused": total(7),
            "refused_bad": total(9),
        }

    def _laid_out(self, budget: int, cap: int) -> _RowLayout:
        """The row layout of every folded block, laid out now if it is not held (or was
        for another epoch length or cap)."""
        layout = self._layout
        if layout is None or layout.budget != budget or layout.cap != cap:
            layout = _RowLayout(budget, cap, len(self._names))
            for e in sorted(self._blocks):
                b = self._blocks[e]
                cols = self._derived(b, budget, cap)[0]
                layout.append(b, cols, self._rank[self._pc[b.pair]])
            self._layout = layout
        return layout

    @staticmethod
    def _layout_runs(
        layout: _RowLayout, counted: int, first: int, d_of: list[float], db_of: list[float]
    ) -> tuple[list[tuple], int]:
        """The runs of :meth:`window_sums` from ``layout``, whose newest ``counted``
        blocks are the counted ones (``d_of``, ``db_of``: theirs, ascending): per bucket,
        the rows of the newest ``first`` blocks, then per bucket the other counted ones';
        each row's ``d`` and ``d_bad`` from its block's."""
        n = len(layout.epochs)
        sizes = np.array(layout.sizes, _I64).reshape(n, _BUCKETS)
        offsets = np.concatenate((np.zeros((1, _BUCKETS), _I64), np.cumsum(sizes, axis=0)))
        # per block held: its weights (blocks not counted are not read)
        d = np.zeros(n)
        db = np.zeros(n)
        d[n - counted :], db[n - counted :] = d_of, db_of
        runs = []
        split = 0
        for region, (lo, hi) in enumerate(((n - first, n), (n - counted, n - first))):
            for j in range(_BUCKETS):
                head = layout.head[j]
                a, b = head + int(offsets[lo, j]), head + int(offsets[hi, j])
                if b > a:
                    per = sizes[lo:hi, j]
                    runs.append(
                        (
                            layout.pair[j],
                            layout.cols[j],
                            a,
                            b,
                            np.repeat(d[lo:hi], per),
                            np.repeat(db[lo:hi], per),
                        )
                    )
            if region == 0:
                split = len(runs)
        return runs, split

    # -- streaming EigenTrust ----------------------------------------------------------------

    @staticmethod
    def _chain_tail(p: ReputationParams) -> tuple:
        """What a chain's bits depend on besides the blocks, its anchor and the lag."""
        return (
            p.window_epochs,
            p.trust_chain_epochs,
            p.trust_chain_steps,
            p.trust_iterations,
            p.trust_alpha,
            p.half_life_epochs,
            p.timeout_penalty_pct,
        )

    def trust_chain(self, epoch: int, *, lag: int, params: ReputationParams) -> np.ndarray:
        """The warm vector of the view of ``epoch`` (docs/core.md, "Streaming
        EigenTrust"), per peer stable ID: the trust chain :func:`chain_anchors` names.

        Both live chains are advanced one epoch at a time from where they were left (per
        epoch: one pass over the counted blocks for the epoch's chain graph, and
        ``trust_chain_steps`` steps per chain); a chain not held, or held past ``epoch``, is
        replayed from its anchor. Either way the vector is a function of the folded blocks
        alone: a peer that restarted gets the same bits.

        Args:
            epoch: the view's epoch.
            lag: the view of ``epoch`` counts blocks up to ``epoch - lag`` (``digest_lag``).
            params: the reputation parameters (streaming ones).
        """
        p = params
        r = p.trust_chain_epochs
        tail = (lag, *self._chain_tail(p))
        decay = decay_table_fixed(p.half_life_epochs, p.window_epochs + 1, DECAY_BITS)
        used, nxt = chain_anchors(epoch, r)
        chains: dict[int, tuple[int, np.ndarray | None]] = {}
        for anchor in (used, nxt):
            hit = self._chains.get((anchor, *tail))
            chains[anchor] = hit if hit is not None and hit[0] <= epoch else (anchor - 1, None)
        for e_view in range(min(at for at, _ in chains.values()) + 1, epoch + 1):
            due = [a for a, (at, _) in chains.items() if at < e_view and e_view >= a]
            if not due:
                continue
            graph = self._chain_graph(e_view, lag, p, decay, tail)
            starts = [None if e_view == a else chains[a][1] for a in due]
            for a, t in zip(due, chain_steps(*graph, starts, p, positive=True), strict=True):
                chains[a] = (e_view, t)
        for anchor, (at, t) in chains.items():
            hit = self._chains.get((anchor, *tail))
            if t is not None and (hit is None or hit[0] < at):
                self._chains[(anchor, *tail)] = (at, t)
        for key in [k for k in self._chains if k[0] < used]:
            del self._chains[key]
        out = chains[used][1]
        assert out is not None
        if len(out) < len(self._names):
            out = np.concatenate((out, np.zeros(len(self._names) - len(out))))
        return out

    def _chain_graph(
        self, e_view: int, lag: int, p: ReputationParams, decay: np.ndarray, tail: tuple
    ) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The chains' graph of epoch ``e_view`` (over peer stable IDs): ``(n, src, dst,
        weight, workers, vertices in canonical order)``, from the blocks the view of
        ``e_view`` counts, less those before :func:`chain_oldest`. The view of
        ``e_view`` leaves it behind (:meth:`window_sums`); otherwise one pass over the
        blocks."""
        hit = self._graph_cache
        if hit is not None and hit[0] == (e_view, *tail):
            return hit[1]
        w = p.window_epochs
        hi = e_view - lag
        lo = max(e_view - w, chain_oldest(e_view, p))  # ages (e_view - 1) - e in [0, w)
        n_ids = len(self._pc)  # per pair stable ID
        local = np.zeros(n_ids, _I64)
        good = np.zeros(n_ids, _I64)
        seen = np.zeros(n_ids, bool)
        worked = np.zeros(n_ids, bool)
        timeout_value = p.timeout_penalty_pct * 100
        cap = row_cap(p)
        for e in range(lo, hi + 1):
            b = self._blocks.get(e)
            if b is None or not len(b.pair):
                continue
            d = int(decay[(e_view - 1) - e])
            c = capped_counts(b.counts, cap)
            at = b.pair
            bad_n = c[_WRONG] + c[_BAD]
            timeouts = c[_TIMEOUT] + c[_SILENT]
            # exact integers, as in compute_pairs (each pair once per block)
            local[at] += d * (c[_OK] * UNIT - bad_n * UNIT - timeouts * timeout_value)
            good[at] += d * c[_OK]
            seen[at] = True
            worked[at] |= d * c[_CLAIMS] > 0  # as the decayed sum of window_sums
        ids = self._order[np.flatnonzero(seen[self._order])]  # canonical order
        return self._chain_edges(self._pc[ids], self._pn[ids], local[ids], good[ids], worked[ids])

    def _chain_edges(
        self,
        pc: np.ndarray,
        pn: np.ndarray,
        local: np.ndarray,
        good: np.ndarray,
        worked: np.ndarray,
        order: np.ndarray | None = None,
    ) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The chains' graph (see :meth:`_chain_graph`) from the counted pairs in canonical
        order: their client and node (peer stable IDs) and their sums: ``local`` trust,
        ``good`` (decayed ok results) and ``worked`` (any decayed claims). ``order``: the
        vertices in canonical order, when the caller has them (the peers of the pairs,
        sorted by ID)."""
        valid = pc != pn
        if not valid.all():
            pc, pn, local, good, worked = (x[valid] for x in (pc, pn, local, good, worked))
        vouch = (good * UNIT).astype(np.float64)
        # the edges of positive weight (those the graph keeps, in the same order)
        src, dst, weight, _ = _edges(pc, pn, local.astype(np.float64, copy=False), vouch)
        n = len(self._names)
        # the chains' pre-trusted set: nodes whose own work rows are counted; vertices:
        # the peers of counted rows (others drop out with their trust)
        workers = np.zeros(n, bool)
        workers[pn[worked]] = True
        if order is None:
            vertices = workers.copy()
            vertices[pc] = True
            vertices[pn] = True
            order = np.flatnonzero(vertices)
            order = order[np.argsort(self._rank[order], kind="stable")]
        return n, src, dst, weight, workers, order

    def widen(self, ev: Evidence, win: PairWindow) -> tuple[Evidence, np.ndarray]:
        """:func:`widen` of ``ev`` to ``win.peers``, and where the window's peers sit in
        the result (``peer_at`` of :func:`compute_pairs`). The last union is reused while
        the node peers and the window's peers stay the same."""
        hit = self._union
        if hit is None or hit[0] != ev.peers or hit[1] != win.peers:
            current = self._cache is not None and self._cache[1] is win  # no fold since
            union = (
                self._window_union(ev.peers, win)
                if current and win.sids is not None
                else _union(ev.peers, win.peers)
            )
            hit = (ev.peers, win.peers, union)
            self._union = hit
        union, at_ev, at_win = hit[2]
        return widen(ev, win.peers, union=(union, at_ev)), at_win

    def _window_union(
        self, a: tuple[str, ...], win: PairWindow
    ) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
        """:func:`_union` of ``a`` and ``win.peers`` for the current window: a peer of
        ``a`` with a stable ID among ``win.sids`` is the window peer at that place, so
        only the others are looked up by bisection (no set of the window's peers)."""
        b = win.peers
        assert win.sids is not None
        local = np.full(len(self._names), -1, _I64)
        local[win.sids] = np.arange(len(win.sids), dtype=_I64)
        sid = self._sid
        s = np.fromiter((sid.get(p, -1) for p in a), dtype=_I64, count=len(a))
        in_b = np.flatnonzero(s >= 0)
        where = np.full(len(a), -1, _I64)
        where[in_b] = local[s[in_b]]  # each peer's place in ``b``, -1: not there
        extra_ix = np.flatnonzero(where < 0)
        extra = tuple(a[i] for i in extra_ix.tolist())  # sorted: ``a`` is
        union = tuple(sorted(b + extra)) if extra else b  # two sorted runs: a linear merge
        # as in _union: a peer of ``b`` moves up by the extras inserted at or before it
        ins = np.fromiter((bisect.bisect_left(b, p) for p in extra), dtype=_I64, count=len(extra))
        at_b = np.arange(len(b), dtype=_I64)
        if len(ins):
            at_b += np.searchsorted(ins, at_b, side="right")
        at_a = np.empty(len(a), _I64)
        found = np.flatnonzero(where >= 0)
        at_a[found] = at_b[where[found]]
        at_a[extra_ix] = ins + np.arange(len(ins), dtype=_I64)
        at_a.setflags(write=False)
        at_b.setflags(write=False)
        return union, at_a, at_b


#: The count columns :func:`capped_counts` caps (every one but the latency sum).
_CAPPED = [k for k in range(len(COLUMNS)) if k != _LAT]


@functools.lru_cache(maxsize=64)
def row_cap(p: ReputationParams) -> int:
    """The most one count row's field counts for, under ``p`` (docs/core.md, "Views from
    digests"): the largest power of two for which every per-pair sum of a window is an
    exact integer below 2**53 however large the rows. Uncapped, a row's fields may be
    2**24 each, and a pair's decayed latency sum could pass 2**53: the sum would then
    depend on the order of its additions, which differs between peers (rows are laid out
    by the ranks of their fold's time), and so would their views.

    The largest per-row value is the latency column (at most ``4 * cap * UNIT``: four
    verdict counts of ``cap``) weighed by ``d``, or twice ``cap`` bad verdicts weighed by
    ``d_bad``; a window holds one row per pair per epoch."""
    w = p.window_epochs
    sum_d = int(decay_table_fixed(p.half_life_epochs, w + 1, DECAY_BITS)[:w].sum())
    sum_db = int(decay_table_fixed(p.bad_half_life_epochs, w + 1, DECAY_BITS)[:w].sum())
    per_cap = max(4 * UNIT * sum_d, 2 * sum_db, 1)
    return 1 << max(((2**53 - 1) // per_cap).bit_length() - 1, 0)


def capped_counts(counts: np.ndarray, cap: int) -> np.ndarray:
    """``counts`` (shape ``(len(COLUMNS), rows)``) with every field but the latency sum
    at most ``cap`` (:func:`row_cap`); a row whose verdicts were capped keeps its mean
    latency (its latency sum scaled by the verdicts counted over the verdicts reported).
    ``counts`` itself when no field is over the cap (the usual case: no copy)."""
    if not len(counts[0]) or int(counts[_CAPPED].max()) <= cap:
        return counts
    c = counts.copy()
    c[_CAPPED] = np.minimum(counts[_CAPPED], cap)
    before = counts[_OK] + counts[_WRONG] + counts[_TIMEOUT] + counts[_BAD]
    after = c[_OK] + c[_WRONG] + c[_TIMEOUT] + c[_BAD]
    cut = after < before
    # in Python integers: a latency sum may be up to 2**26 * (2**32 - 1)
    c[_LAT, cut] = [
        lat * a // b
        for lat, a, b in zip(
            counts[_LAT, cut].tolist(), after[cut].tolist(), before[cut].tolist(), strict=True
        )
    ]
    c.setflags(write=False)
    return c


def _local_trust(ok: np.ndarray, bad: np.ndarray, timeouts: np.ndarray, tv: float) -> np.ndarray:
    """Per pair ``ok * UNIT - bad * UNIT - timeouts * tv`` (float sums), in two buffers:
    the same operations in the same order as the whole-array expression."""
    local = ok * UNIT
    tmp = bad * UNIT
    np.subtract(local, tmp, out=local)
    np.multiply(timeouts, tv, out=tmp)
    return np.subtract(local, tmp, out=local)


def _edges(
    pc: np.ndarray, pn: np.ndarray, local: np.ndarray, vouch: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The trust graph's edges of positive weight, in canonical order: client -> node
    where ``local`` > 0, then node -> client where ``vouch`` > 0 (``src, dst, weight``),
    and the mask of the pairs with a vouching edge. Written straight into their arrays
    (no concatenated copies)."""
    i_t = np.flatnonzero(local > 0.0)
    has_vouch = vouch > 0.0
    i_v = np.flatnonzero(has_vouch)
    k, m = len(i_t), len(i_t) + len(i_v)
    src, dst, weight = np.empty(m, _I64), np.empty(m, _I64), np.empty(m)
    for out, first, second in ((src, pc, pn), (dst, pn, pc), (weight, local, vouch)):
        np.take(first, i_t, out=out[:k], mode="clip")
        np.take(second, i_v, out=out[k:], mode="clip")
    return src, dst, weight, has_vouch


def _union(
    a: tuple[str, ...], b: tuple[str, ...]
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """The sorted union of two sorted peer tuples, and where each one's peers sit in it.

    Made for a small ``a`` (node peers) mostly inside a large ``b`` (the window's peers):
    the positions come from bisection and counts, with no dictionary of the union."""
    in_b = set(b)
    extra = tuple(p for p in a if p not in in_b)  # sorted: ``a`` is
    union = tuple(sorted(b + extra)) if extra else b  # two sorted runs: a linear merge
    # the k-th extra peer goes before b[ins[k]]: a peer of ``b`` moves up by the extras
    # inserted at or before it, the k-th extra lands at ins[k] + k
    ins = np.fromiter((bisect.bisect_left(b, p) for p in extra), dtype=_I64, count=len(extra))
    at_b = np.arange(len(b), dtype=_I64)
    if len(ins):
        at_b += np.searchsorted(ins, at_b, side="right")
    extra_at = ins + np.arange(len(ins), dtype=_I64)
    k = 0
    at_a = np.empty(len(a), _I64)
    for j, p in enumerate(a):
        if p in in_b:
            at_a[j] = at_b[bisect.bisect_left(b, p)]
        else:
            at_a[j] = extra_at[k]
            k += 1
    at_a.setflags(write=False)
    at_b.setflags(write=False)
    return union, at_a, at_b


def widen(
    ev: Evidence,
    peers: Iterable[str],
    *,
    union: tuple[tuple[str, ...], np.ndarray] | None = None,
) -> Evidence:
    """``ev`` (node records: ads, verdicts, heartbeats, offences, and the offers, claims,
    receipts and contested verdicts of disputed tasks) over the union of its peers and
    ``peers`` (the clients and nodes the digest rows name, sorted when a tuple); the added
    peers are not nodes. ``union``: the union and ``ev``'s positions in it, when the caller
    has them (:meth:`PairState.widen`). Its only feedback rows are the verdicts contested
    dispute proofs carry (other verdicts are in the count rows)."""
    if union is None:
        peers = peers if isinstance(peers, tuple) else tuple(sorted(set(peers)))
        full, at, _ = _union(ev.peers, peers)
    else:
        full, at = union
    if full == ev.peers:
        return ev
    changes: dict = {"peers": full}
    for f in dataclasses.fields(ev):
        value = getattr(ev, f.name)
        if (
            isinstance(value, np.ndarray)
            and len(value) == ev.n_peers
            and not f.name.startswith(("offer_", "claim_", "receipt_", "fb_", "hb_"))
        ):
            wide = np.zeros(len(full), value.dtype)
            wide[at] = value
            wide.setflags(write=False)
            changes[f.name] = wide
    # ``at`` is increasing, so heartbeat rows stay sorted by (node, epoch), claim and
    # receipt rows by (offer, node), and feedback rows (the contested proofs' verdicts)
    # by (client, node, offer)
    for name in ("hb_node", "offer_client", "claim_node", "receipt_node", "fb_client", "fb_node"):
        col = getattr(ev, name)
        if len(col):
            wide = at[col]
            wide.setflags(write=False)
            changes[name] = wide
    return dataclasses.replace(ev, **changes)


def _row_sums(
    win: PairWindow,
    epoch: int,
    epoch_s: int,
    p: ReputationParams,
    decay: np.ndarray,
    decay_bad: np.ndarray,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """:meth:`PairState.window_sums` from the window's rows (a window built by hand)."""
    w = p.window_epochs
    c = capped_counts(win.counts, row_cap(p))
    age = (epoch - 1) - win.row_epoch
    inside = (age >= 0) & (age <= w - 1)
    d = np.where(inside, decay[np.clip(age, 0, w)], 0)
    db = np.where(inside, decay_bad[np.clip(age, 0, w)], 0)
    timeouts = c[_TIMEOUT] + c[_SILENT]
    bad_n = c[_WRONG] + c[_BAD]
    counted = c[_OK] + c[_WRONG] + c[_TIMEOUT] + c[_BAD]
    budget = max(epoch_s * 1000, 1)
    lat = np.minimum(c[_LAT], counted * budget)
    lat_fixed = counted * UNIT - (lat * UNIT) // budget
    per_row = {
        "good": d * c[_OK],  # times UNIT below
        "seen_ok": d * (c[_OK] + timeouts),
        "bad": db * bad_n,
        "local": d * (c[_OK] * UNIT - bad_n * UNIT - timeouts * (p.timeout_penalty_pct * 100)),
        "lat_num": d * lat_fixed,
        "lat_den": d * counted * UNIT,
        "claims": d * c[_CLAIMS],
        "receipts": d * c[_RECEIPTS],
        "refused": d * c[_REFUSED],
        "refused_bad": db * c[_REFUSED],
        "rows": inside.astype(_I64),
    }
    n_pos = len(win.pair_client)
    sums = {k: np.bincount(win.row_pos, weights=v, minlength=n_pos) for k, v in per_row.items()}
    live = np.flatnonzero(sums.pop("rows") > 0)  # canonical order: (client, node)
    return live, {k: v[live] for k, v in sums.items()}


def compute_pairs(
    ev: Evidence,
    win: PairWindow,
    *,
    now: int,
    epoch_s: int,
    params: ReputationParams | None = None,
    peer_at: np.ndarray | None = None,
) -> ReputationTable:
    """Score every peer of ``ev`` from the count rows of ``win`` (see the module docstring).

    Args:
        ev: node evidence (ads, verdicts, heartbeats, equivocations) whose ``peers``
            include every peer of ``win`` (:func:`widen`), and the dispute evidence: the
            offer, claim and receipt tables hold the disputed tasks only (what dispute
            proofs carried, collected as :func:`repp2p.reputation.collect` collects a
            records view's: a receipt counts with its node's attested enclave signature
            for the offer's epoch and a ranked claim), judged as
            :func:`~repp2p.reputation.scores.compute` judges them. The claim table may be
            empty (compact inputs, e.g. the simulator's): every receipt then stands for
            its claim. Feedback rows: only the ``wrong`` verdicts contested k = 1
            proofs carry (:meth:`CheckedDispute.records
            <repp2p.digests.disputes.CheckedDispute.records>`), each a wrong of its
            client on its node (per pair, the larger of the count rows' wrongs and these).
        win: the window's folded rows (:meth:`PairState.window`).
        now: unix seconds of the view; its epoch ``now // epoch_s`` sets every row's age
            (rows of epochs outside the reputation window weigh nothing).
        epoch_s: epoch length in seconds (> 0).
        params: :class:`ReputationParams` (defaults when None).
        peer_at: where each of ``win.peers`` sits in ``ev.peers``, when the caller has it
            (:meth:`PairState.widen`); looked up otherwise.

    Returns:
        A :class:`ReputationTable` over ``ev.peers``; equal inputs give identical bits.
        ``receipt_upheld`` and ``receipt_lost`` are per receipt row of ``ev`` (the
        ledger's :func:`repp2p.ledger.dispute_losses` reads them with ``ev``).
    """
    if epoch_s <= 0:
        raise ValueError("epoch_s must be > 0")
    p = params or ReputationParams()
    n = ev.n_peers
    epoch = now // epoch_s
    w = p.window_epochs
    decay = decay_table_fixed(p.half_life_epochs, w + 1, DECAY_BITS)
    decay_bad = decay_table_fixed(p.bad_half_life_epochs, w + 1, DECAY_BITS)
    disputes = _DisputeRows(ev, p, epoch, decay, decay_bad)
    offender = ev.equivocated | disputes.proven_wrong
    # offences the caller proved beyond equivocation (verified offence proofs of digests,
    # repp2p.node.offences): the same hard penalty
    for off in ev.offences:
        i = bisect.bisect_left(ev.peers, off.peer_id)
        if i < n and ev.peers[i] == off.peer_id:
            offender[i] = True
    node_trusted = ev.verified & ~ev.failed & ~offender

    # --- per pair: the window's fixed-point decayed sums (exact integers, < 2**53) -----
    if win.state is not None:
        live, s = win.state.window_sums(win, epoch, epoch_s, p)
    else:
        live, s = _row_sums(win, epoch, epoch_s, p, decay, decay_bad)
    if peer_at is None and ev.peers == win.peers:
        peer_at = np.arange(n, dtype=_I64)
    elif peer_at is None:
        index = {q: i for i, q in enumerate(ev.peers)}
        peer_at = np.fromiter((index[q] for q in win.peers), dtype=_I64, count=len(win.peers))
    if len(peer_at) == n and np.array_equal(peer_at, np.arange(n)):
        pc, pn = win.pair_client[live], win.pair_node[live]  # the window's peers are ev's
    else:
        pc = peer_at[win.pair_client[live]] if len(live) else np.zeros(0, _I64)
        pn = peer_at[win.pair_node[live]] if len(live) else np.zeros(0, _I64)
    valid = pc != pn
    if offender.any():
        valid &= ~offender[pc] & ~offender[pn]
    if not valid.all():  # (where every pair is valid, the sums are kept as they are)
        s = {k: np.where(valid, v, 0.0) for k, v in s.items()}

    # --- EigenTrust over the pairs: client -> node local trust, node -> client vouching
    # for verdicts both sides' digests support (its ok results the client accepted) -----
    vouch = s["good"] * UNIT
    trusted_pn = node_trusted[pn]
    if not trusted_pn.all():
        vouch = np.where(trusted_pn, vouch, 0.0)
    # the edges of positive weight (those the graph keeps, in the same order)
    src, dst, weight, has_vouch = _edges(pc, pn, s["local"], vouch)
    pretrusted = ev.is_node & node_trusted
    warm = None
    if p.is_streaming_trust:
        if win.state is None or win.sids is None:
            raise ValueError("streaming EigenTrust needs a window read from a PairState")
        chain = win.state.trust_chain(epoch, lag=epoch - win.hi, params=p)
        warm = np.zeros(n)
        warm[peer_at] = chain[win.sids]
        warm = warm_start(warm)  # None: no trust yet, the exact path
    # (eigentrust's steps, on a graph whose row sums are read again below)
    graph = _TrustGraph(n, src, dst, weight, pretrusted, None, positive=True)
    trust, prev = graph.run(
        warm,
        p.trust_view_steps if warm is not None else p.trust_iterations,
        p.trust_alpha,
        previous=True,
    )
    # No self-dealing through a 2-cycle (as in scores.compute): the trust a client got
    # from node j's vouching does not weigh its verdicts on j.
    pair_trust = trust[pc]
    if has_vouch.any():
        # per pair: share = vouch / row sum of its node (1 where none), inflow = (1 - alpha)
        # * (share * prev), pair_trust = max(pair_trust - inflow, 0) where it vouches; in
        # two buffers (the same operations, in the same order, as whole-array expressions)
        share = np.take(np.where(graph.row > 0.0, graph.row, 1.0), pn)
        np.divide(vouch, share, out=share)
        inflow = np.take(prev, pn)
        np.multiply(share, inflow, out=inflow)
        np.multiply(1.0 - p.trust_alpha, inflow, out=inflow)
        np.subtract(pair_trust, inflow, out=inflow)
        np.maximum(inflow, 0.0, out=inflow)
        np.copyto(pair_trust, inflow, where=has_vouch)
    n_pre = max(1, int(np.count_nonzero(pretrusted)))
    cw0 = np.multiply(pair_trust, n_pre / p.trust_alpha, out=pair_trust)
    np.minimum(p.trust_weight_cap, cw0, out=cw0)
    # (no refused input in the window: the sums are +0.0, taken as such)
    refused_c = (
        np.bincount(pc, weights=s["refused_bad"], minlength=n) / _D
        if s["refused_bad"].any()
        else np.zeros(n)
    )
    g_raw = s["good"]
    trusted_node = ev.is_node & node_trusted

    def quality_of(g_: np.ndarray, bad_mass: np.ndarray) -> np.ndarray:
        a_, b_ = beta_posterior(g_, bad_mass, p.prior_success, p.prior_strength_success)
        return np.where(trusted_node, beta_lcb(a_, b_, p.quality_z, p.prior_success), 0.0)

    # A contested k = 1 proof's verdict is a wrong of its client on its node whatever the
    # client's own digest says (it may leave it out, or count a later ``ok``): per pair,
    # the larger of the digest's wrongs and the proofs' verdicts (the same tasks' wrongs
    # when both report them), on the pairs that count (``valid``, as the rows). No verdict
    # in any proof: ``s["bad"]`` as it is (every sum is +0.0 or more: the maximum with
    # +0.0 is itself, bit for bit).
    bad_v = (
        np.maximum(s["bad"], np.where(valid, disputes.verdict_mass(pc, pn, n), 0.0))
        if len(disputes.verdicts[0])
        else s["bad"]
    )

    def weigh(proven: np.ndarray, upheld_m: np.ndarray) -> tuple[np.ndarray, ...]:
        """Verdict weights given the per-pair proof masses (docs/core.md, "Verdicts backed
        by proof"): ``(cw, credibility, good, bad, seen)`` (per pair, per client, per node x3)."""
        bare = bad_v

        def masses() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            p_ = np.minimum(bare, proven)  # wrong verdicts a lost dispute backs
            share = np.divide(p_, bare, out=np.zeros_like(bare), where=bare > 0.0)
            # unproven verdicts: weak evidence, bounded by the pair's proven ones (at most p_)
            counted = p_ + (bare - p_) * share
            refuted = np.minimum(upheld_m, bare - p_)  # unproven wrongs a proof contradicts
            return p_, counted, refuted

        # With no proof (``zero``) and every ``bare >= 0``, the proven, counted and refuted
        # masses are all (signed) zeros, so their sums are +0.0 exactly (the counted ones'
        # with finite weights): taken as such, not summed.
        no_proof = proven is zero and upheld_m is zero and (not len(bare) or bare.min() >= 0.0)
        if no_proof:
            sup_c = ref_c = np.zeros(n)
        else:
            p_, counted, refuted = masses()
            sup_c = np.bincount(pc, weights=p_, minlength=n) / _D
            ref_c = np.bincount(pc, weights=refuted, minlength=n) / _D
        cred = (1.0 + sup_c) / (
            1.0 + sup_c + p.slander_penalty * ref_c + REFUSAL_WEIGHT * refused_c
        )
        # (a credibility of exactly 1 everywhere, e.g. no refusal and no proof: cw0 * 1.0
        # is cw0, bit for bit)
        cw_ = cw0 if (cred == 1.0).all() else cw0 * cred[pc]
        g_ = np.bincount(pn, weights=cw_ * g_raw, minlength=n) / _D
        s_ok_ = np.bincount(pn, weights=cw_ * s["seen_ok"], minlength=n) / _D
        if no_proof and np.isfinite(cw_).all():
            b_ = np.zeros(n)
        else:
            if no_proof:
                _, counted, _ = masses()
            b_ = np.bincount(pn, weights=cw_ * counted, minlength=n) / _D
        return cw_, cred, g_, (s_ok_ - g_) + p.bad_weight * b_, s_ok_ + b_

    # --- success, quality, latency ------------------------------------------------------
    # A client's wrong / bad_proof counts against a node only as far as a dispute proof
    # backs it: with no proof judged yet, none counts (slander cannot sink a node).
    zero = np.zeros(len(pc))
    cw, credibility, g, bad, seen = weigh(zero, zero)

    # Disputes (the rounds of scores.compute, on the receipts of disputed tasks that
    # travelled as proofs): standing starts as quality with no dispute counted; each round
    # re-judges every dispute with the quality the previous round's verdicts gave, and
    # re-weighs every pair's verdicts by the proofs that back or refute them.
    #
    # A node with no count row in the window (every node of a network's first
    # ``digest_lag`` views, a newcomer's first ones) has no good evidence to set against a
    # lost dispute, and with every standing at the same prior a colluding majority of a
    # task's receipts wins round 0: each outvoted honest node fell to the standing of a
    # cheater, round 1 then decided nothing (no output reached ``dispute_min_support``) and
    # round 2 repeated round 0. So for such a node each upheld receipt counts as the one
    # ``ok`` result its row will count (docs/core.md, "Disputes without count rows"): a
    # cheater outvoted in every dispute gains nothing, an honest node upheld in most has
    # a standing above the colluders' after round 0, and the rounds separate the two.
    # Rows, once a node has any, replace this evidence (they count those tasks).
    rowless = np.ones(n, bool)
    rowless[pn if valid.all() else pn[valid]] = False
    standing = quality = quality_of(g, bad)
    upheld, lost = disputes.none, disputes.none
    disputes_lost = np.zeros(n)
    for _round in range(p.dispute_rounds if disputes.any else 0):
        upheld, lost, disputes_lost, disputes_won = disputes.judge(standing, n)
        proven, upheld_m = disputes.pair_masses(upheld, lost, pc, pn, n)
        cw, credibility, g, bad, seen = weigh(proven, upheld_m)
        bad = bad + p.dispute_weight * disputes_lost
        g = g + np.where(rowless, disputes_won, 0.0)
        quality = quality_of(g, bad)
        if _round + 1 < p.dispute_rounds:
            standing = quality
    success = _smoothed(g, g + bad, p.prior_success, p.prior_strength_success)
    one = _D * UNIT
    lat_n = np.bincount(pn, weights=cw * s["lat_num"], minlength=n) / one
    lat_d = np.bincount(pn, weights=cw * s["lat_den"], minlength=n) / one
    latency = _smoothed(lat_n, lat_d, p.prior_latency, p.prior_strength_latency)

    # --- throughput: the node's own work rows (receipts over claims, refused ones aside:
    # a task refused for its client's input is neither delivered nor the node's failure)
    thr_num = np.bincount(pn, weights=s["receipts"], minlength=n) / _D
    thr_den = np.bincount(pn, weights=s["claims"] - s["refused"], minlength=n) / _D
    throughput = _smoothed(thr_num, thr_den, p.prior_throughput, p.prior_strength_throughput)

    uptime = uptime_component(ev, epoch, p, decay)
    attestation = attestation_component(ev, now, p)
    comps = np.stack([uptime, success, throughput, latency, attestation])
    score, permille = combine(comps, offender, p)
    newcomer = seen < p.newcomer_min_feedback
    frozen = (score, permille, comps, seen, trust, newcomer, offender, quality, credibility)
    for arr in (*frozen, standing, disputes_lost, upheld, lost):
        arr.setflags(write=False)
    return ReputationTable(
        peers=ev.peers,
        epoch=int(epoch),
        is_node=ev.is_node,
        score=score,
        permille=permille,
        components=comps,
        feedback_mass=seen,
        client_trust=trust,
        is_newcomer=newcomer,
        is_offender=offender,
        offences=tuple(
            sorted(
                (*ev.offences, *disputes.offences),
                key=lambda o: (o.peer_id, o.kind, o.record_ids),
            )
        ),
        quality=quality,
        standing=standing,
        disputes_lost=disputes_lost,
        receipt_upheld=upheld,
        receipt_lost=lost,
        client_credibility=credibility,
    )


class _DisputeRows:
    """The receipts of disputed tasks in a digest view's evidence (``ev``'s offer, claim
    and receipt tables: what dispute proofs carried, collected under the records path's
    evidence rule), judged exactly as :func:`~repp2p.reputation.scores.compute` judges a
    records view's receipts: a receipt votes when its node has a claim on the offer (when
    the evidence has no claim table at all, compact inputs whose receipts the caller
    already held to the evidence rule, every receipt stands for its claim) and is verified
    and never failed; the count rule (:func:`receipt_votes`) marks hard-wrong
    receipts with ``wrong_result_hard``; :func:`dispute_verdicts` gives the verdicts per
    round, and a lost receipt weighs the decayed (bad half-life) age of its offer, an
    upheld one (credited to nodes without count rows) the good half-life's."""

    def __init__(
        self,
        ev: Evidence,
        p: ReputationParams,
        epoch: int,
        decay: np.ndarray,
        decay_bad: np.ndarray,
    ):
        n, w = ev.n_peers, p.window_epochs
        self.ev, self.p = ev, p
        self.n_offers = len(ev.offer_client)
        self.none = np.zeros(len(ev.receipt_node), bool)
        #: ``(client, node, decayed weight)`` of each proof-carried verdict (none: empty)
        self.verdicts: tuple[np.ndarray, ...] = (np.zeros(0, _I64),) * 2 + (np.zeros(0),)
        self.proven_wrong = np.zeros(n, bool)
        self.offences: list[Offence] = []
        claim_key = ev.claim_offer * n + ev.claim_node  # sorted (offer, node)
        r_key = ev.receipt_offer * n + ev.receipt_node
        # compact dispute evidence without a claim table (the simulator's): the caller
        # applied the evidence rule to its receipts, each stands for its claim
        r_claimed = _member(claim_key, r_key)[0] if len(claim_key) else np.ones(len(r_key), bool)
        self.valid = r_claimed & ev.verified[ev.receipt_node] & ~ev.failed[ev.receipt_node]
        self.any = bool(self.valid.any())
        if not self.any:
            return
        _agree, r_wrong = receipt_votes(ev, self.valid, self.n_offers, p.wrong_quorum)
        if p.wrong_result_hard:
            self.proven_wrong[ev.receipt_node[r_wrong]] = True
            for r in np.flatnonzero(r_wrong):
                o = ev.receipt_offer[r]
                ids: tuple[bytes, ...] = ()
                if ev.receipt_ids:
                    same = np.flatnonzero((ev.receipt_offer == o) & self.valid)
                    ids = tuple(sorted(ev.receipt_ids[i] for i in same))
                node = ev.peers[ev.receipt_node[r]]
                self.offences.append(Offence("wrong_result", node, ids, int(ev.offer_epoch[o])))
        # age weight of each receipt's offer (scores.compute's ``age_weight`` with
        # ``allow_current``): 0 outside the window
        e = ev.offer_epoch[ev.receipt_offer]
        age = (epoch - 1) - e
        ok = ((age >= 0) & (age <= w - 1)) | (e == epoch)
        at = np.clip(np.maximum(age, 0), 0, w)
        self.lost_d = np.where(ok, decay_bad[at], 0)
        self.won_d = np.where(ok, decay[at], 0)  # an ok result's decay
        # the verdicts contested k = 1 proofs carry (their only feedback rows): a wrong of
        # the offer's client on a node, weighing the offer's decayed age as its receipts do
        fo = ev.fb_offer
        v = (ev.fb_outcome == OUTCOME_CODES["wrong"]) & (ev.fb_client != ev.fb_node)
        if len(fo):
            v &= ev.offer_client[fo] == ev.fb_client
            fe = ev.offer_epoch[fo]
            f_age = (epoch - 1) - fe
            f_ok = ((f_age >= 0) & (f_age <= w - 1)) | (fe == epoch)
            f_d = np.where(f_ok, decay_bad[np.clip(np.maximum(f_age, 0), 0, w)], 0)
            self.verdicts = (ev.fb_client[v], ev.fb_node[v], f_d[v])

    def judge(
        self, standing: np.ndarray, n: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(upheld, lost, disputes_lost, disputes_won)`` of one round under ``standing``:
        per receipt row, then per peer the decayed count of its receipts outvoted (bad
        half-life) / upheld (the half-life of good evidence) by a confident verdict."""
        ev, p = self.ev, self.p
        upheld, lost, _decided = dispute_verdicts(
            ev.receipt_offer,
            ev.receipt_output,
            standing[ev.receipt_node],
            self.valid,
            self.n_offers,
            quorum=p.wrong_quorum,
            confidence=p.dispute_confidence,
            min_support=p.dispute_min_support,
        )
        lost_w = np.where(lost, self.lost_d, 0).astype(np.float64)
        won_w = np.where(upheld, self.won_d, 0).astype(np.float64)
        return (
            upheld,
            lost,
            np.bincount(ev.receipt_node, weights=lost_w, minlength=n) / _D,
            np.bincount(ev.receipt_node, weights=won_w, minlength=n) / _D,
        )

    def verdict_mass(self, pc: np.ndarray, pn: np.ndarray, n: int) -> np.ndarray:
        """Per window pair ``(pc, pn)``: the decayed (bad half-life, fixed point, as the
        rows' ``bad`` sums) mass of the ``wrong`` verdicts contested dispute proofs carry
        of that client on that node (one per task: a proof per offer, a verdict per
        proof); zeros when no proof carries one. Verdicts of a pair with no row in the
        window weigh nothing."""
        fc, fn, fd = self.verdicts
        m = len(pc)
        if m == 0 or len(fc) == 0:
            return np.zeros(m)
        pair_key = pc * n + pn
        order = np.argsort(pair_key, kind="stable")
        found, at = _member(pair_key[order], fc * n + fn)
        w_v = np.where(found, fd, 0).astype(np.float64)
        return np.bincount(order[at], weights=w_v, minlength=m)

    def pair_masses(
        self, upheld: np.ndarray, lost: np.ndarray, pc: np.ndarray, pn: np.ndarray, n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per window pair ``(pc, pn)`` (canonical order): the decayed (bad half-life,
        fixed point, as the rows' ``bad`` sums) mass of the node's receipts that lost /
        were upheld in a confident verdict on a task of that client. Exact integer sums in
        receipt-row order; receipts of a pair with no row in the window weigh nothing."""
        ev = self.ev
        m = len(pc)
        if m == 0:
            return np.zeros(0), np.zeros(0)
        pair_key = pc * n + pn
        order = np.argsort(pair_key, kind="stable")
        r_key = ev.offer_client[ev.receipt_offer] * n + ev.receipt_node
        found, at = _member(pair_key[order], r_key)
        pos = order[at]
        w_lost = np.where(found & lost, self.lost_d, 0).astype(np.float64)
        w_up = np.where(found & upheld, self.lost_d, 0).astype(np.float64)
        return (
            np.bincount(pos, weights=w_lost, minlength=m),
            np.bincount(pos, weights=w_up, minlength=m),
        )


__all__ = [
    "COLUMNS",
    "EpochBlock",
    "PairCount",
    "PairState",
    "PairWindow",
    "compute_pairs",
    "digest_ids_hash",
    "widen",
]
