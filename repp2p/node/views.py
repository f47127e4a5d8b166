"""The view service: one view per epoch, built at the epoch's start, and what it says.

Every peer builds the view of each epoch once, early in the epoch (heartbeats and
attestations are scheduled clear of that moment); reputation from it feeds the GossipSub
application score and the operator status.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from repp2p import heap
from repp2p.clock import ClockAPI
from repp2p.errors import StoreError
from repp2p.matching import View
from repp2p.network_params import NetworkParams
from repp2p.node.abc import ViewServiceAPI
from repp2p.node.metrics import NodeMetrics
from repp2p.records import SignedRecord
from repp2p.reputation import AttestedNode, ReputationParams
from repp2p.viewer import ViewKeeper

log = logging.getLogger("repp2p.node")


class ViewService(ViewServiceAPI):
    """Views from a :class:`~repp2p.viewer.ViewKeeper`, on the peer's clock.

    Args:
        keeper: builds and caches views from the store.
        clock: the peer's clock.
        metrics: the view-build histogram.
        tick_s: how often :meth:`run` checks for a new epoch.
    """

    def __init__(
        self, keeper: ViewKeeper, clock: ClockAPI, metrics: NodeMetrics, *, tick_s: float
    ) -> None:
        self._keeper = keeper
        self._clock = clock
        self._metrics = metrics
        self._tick_s = tick_s
        # peer id -> reputation-derived gossip score in [-1, 1] (GossipSub P6 hook).
        self._peer_scores: dict[str, float] = {}

    @property
    def keeper(self) -> ViewKeeper:
        """The view keeper (its store, policy and caches)."""
        return self._keeper

    @property
    def params(self) -> NetworkParams:
        return self._keeper.params

    @property
    def epoch_s(self) -> int:
        return self._keeper.epoch_s

    @property
    def reputation_params(self) -> ReputationParams:
        return self._keeper.reputation_params

    def current_epoch(self) -> int:
        return self._clock.epoch(self.epoch_s)

    def view(self, epoch: int) -> View:
        return self._keeper.view(epoch)

    def enclave_keys(self, peer_id: str) -> tuple[bytes, bytes] | None:
        return self._keeper.enclave_keys(peer_id)

    def verdict_of(self, peer_id: str) -> AttestedNode | None:
        return self._keeper.verdict_of(peer_id)

    def verdicts(self, records: Iterable[SignedRecord], now: int) -> dict[str, AttestedNode]:
        return self._keeper.verdicts(records, now)

    def reputation_of(self, peer_id: str) -> int | None:
        view = self._keeper.cached_view(self.current_epoch())
        if view is None:
            return None
        try:
            return view.reputation.get(peer_id).permille
        except KeyError:
            return None

    def app_score(self, peer_id: str) -> float:
        """GossipSub application score of a peer: its reputation mapped to [-1, 1]."""
        return self._peer_scores.get(peer_id, 0.0)

    async def run(self) -> None:
        """Build each epoch's view once; keeps the gossip scores current."""
        built = None
        while True:
            epoch = self.current_epoch()
            if epoch != built:
                started = time.perf_counter()
                try:
                    view = self._keeper.view(epoch)
                except (StoreError, OSError):  # a damaged store: say so, keep the node up
                    log.exception("building the view of epoch %d failed; retrying", epoch)
                    await self._clock.sleep(self._tick_s)
                    continue
                self._metrics.view_build.observe(time.perf_counter() - started)
                heap.settle()
                table = view.reputation
                self._peer_scores = {
                    table.peers[i]: (int(table.permille[i]) - 500) / 500
                    for i in range(len(table.peers))
                    if table.is_node[i]
                }
                built = epoch
            await self._clock.sleep(self._tick_s)
