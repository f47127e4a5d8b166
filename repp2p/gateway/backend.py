"""What the gateway runs tasks on: :class:`TaskBackendAPI`, and :class:`ClientBackend`, the
implementation over a live :class:`repp2p.client.Client`.

The gateway's routes depend on this interface only, so the HTTP layer is the same whatever
joins the network for it; the client does all the verifying (claims against its own view,
receipts against each node's attestation, agreement between redundant nodes).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from repp2p.gateway.shapes import ModelInfo

if TYPE_CHECKING:
    from repp2p.client import Client, TaskResult


class TaskBackendAPI(abc.ABC):
    """Runs verified tasks and says which engines the network serves."""

    @abc.abstractmethod
    def models(self) -> tuple[int, list[ModelInfo]]:
        """``(created, models)``: the engines with at least one eligible node in the current
        view, sorted by id, and the unix time of that view's epoch boundary."""

    @abc.abstractmethod
    async def submit(
        self,
        engine: str,
        data: bytes,
        *,
        redundancy: int,
        timeout: float,
        tee_kinds: Sequence[str] = (),
        max_price: int = 2**63,
        min_reputation: int = 0,
    ) -> TaskResult:
        """Run one task and return its verified result.

        Raises:
            repp2p.client.TaskError: no eligible node, no valid result, no majority.
        """


class ClientBackend(TaskBackendAPI):
    """A :class:`TaskBackendAPI` over an open :class:`repp2p.client.Client`."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def models(self) -> tuple[int, list[ModelInfo]]:
        views = self.client.views
        view = views.view(views.current_epoch())
        engines = sorted({e.engine_id for ad in view.evidence.ads.values() for e in ad.engines})
        out = []
        for engine in engines:
            eligible = np.flatnonzero(view.base_eligible & view.engine_mask(engine))
            if len(eligible):
                kinds = tuple(sorted({view.tee_kind[i] for i in eligible}))
                out.append(ModelInfo(engine, len(eligible), kinds))
        return view.now, out

    async def submit(
        self,
        engine: str,
        data: bytes,
        *,
        redundancy: int,
        timeout: float,
        tee_kinds: Sequence[str] = (),
        max_price: int = 2**63,
        min_reputation: int = 0,
    ) -> TaskResult:
        return await self.client.submit(
            engine,
            data,
            redundancy=redundancy,
            timeout=timeout,
            tee_kinds=tee_kinds,
            max_price=max_price,
            min_reputation=min_reputation,
        )
