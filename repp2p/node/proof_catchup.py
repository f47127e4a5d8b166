"""Reliable proof delivery within the replay window: judge again, and pull each epoch.

GossipSub hands each proof of the ``proofs`` topic over once. Two things make sure a peer
still holds every proof of the replay window (until its offer's dispute closes, at most
``dispute_lag - 1`` epochs, for a dispute; the audit horizon for an offence) before its
views read them, so that every peer's digest views count the same disputes and offences:

* **Judged again.** A dispute proof our view could not judge yet is pending in the
  :class:`~repp2p.node.disputes.DisputeBook`; each time the view of a new epoch is built
  we judge the pending proofs at once (a new view brings rankings and verdicts; after a
  restart, the first one lets the keeper rank offers of the epochs it was down for on
  rebuilt views), and in between when their backoff is due.
* **Pulled.** Once synced, and then once per epoch (at our phase of it, after that
  epoch's view is built), we pull the proofs of the window from one connected peer (a
  different one each time) over ``/repp2p/proofs/1`` (:mod:`repp2p.net.proof_sync`),
  telling it what we hold. So a peer that was offline or restarted, or whose neighbours
  IGNOREd a proof, gets it within an epoch. A pulled proof goes through the gossip
  validator. Where the proof grace is shorter than an epoch
  (``NetworkParams.proof_grace_s``: a dispute whose deadline is more than ``grace``
  before a boundary counts in the view built at it), we pull once more late in the last
  ``grace`` seconds of each epoch (``0.4 - 0.25 * phase`` of it before the boundary:
  between 36% and 19% at our phase of 15-85%): more than 60% of the grace after the
  deadline of any dispute the next view counts (an honest proof is out by the deadline:
  no node hands over a receipt of a task it finished after it), with time left for
  retries before that view is built.

The loop does I/O and reads the clock; the books and the protocol's checks stay pure.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from repp2p.clock import ClockAPI
from repp2p.net.params import SyncParams
from repp2p.net.proof_sync import ProofPullResult, pull
from repp2p.node.disputes import DisputeBook
from repp2p.node.offences import ProofRouter

log = logging.getLogger("repp2p.proof_catchup")


class ProofCatchUp:
    """The node's loop of pending retries and per-epoch pulls (module docstring).

    Args:
        router: the ``proofs`` topic's validator (its ``judge_pulled`` judges pulled
            proofs, its ``have`` lists what we hold).
        disputes: the dispute book whose pending proofs are judged again.
        peers: the base58 IDs of the peers we may pull from (connected peers).
        open_stream: ``await open_stream(peer)``, a new ``/repp2p/proofs/1`` stream.
        params: the ``[sync]`` limits the pull keeps to.
        clock: the node's clock.
        epoch_s: the network's epoch length.
        tick_s: how often the loop looks (the node's ``timers.tick_s``).
        is_synced: whether the first record sync is done (before it, our views cannot
            judge what we would pull).
        view_ready: ``view_ready(epoch)``: whether the view of that epoch is built.
        phase: how far into each epoch (a fraction, 0..1) its pull is due: the node's own
            phase (:func:`repp2p.node.schedules.phase_of`), so peers do not all pull at
            the epoch's start, when they build their views. The first pull after start
            is due at once.
        grace_s: ``NetworkParams.proof_grace_s``; when shorter than an epoch, the second
            pull of each epoch (module docstring). None: one pull per epoch.
    """

    #: pulls tried per epoch at most while they fail (each from the next peer)
    PULLS_PER_EPOCH = 3

    def __init__(
        self,
        *,
        router: ProofRouter,
        disputes: DisputeBook,
        peers: Callable[[], list[str]],
        open_stream: Callable[[str], Awaitable[Any]],
        params: SyncParams,
        clock: ClockAPI,
        epoch_s: int,
        tick_s: float,
        is_synced: Callable[[], bool],
        view_ready: Callable[[int], bool],
        phase: float = 0.0,
        grace_s: float | None = None,
    ) -> None:
        self._router = router
        self._disputes = disputes
        self._peers = peers
        self._open_stream = open_stream
        self._params = params
        self._clock = clock
        self._epoch_s = epoch_s
        self._tick_s = tick_s
        self._is_synced = is_synced
        self._view_ready = view_ready
        self._phase = phase
        self._grace_s = grace_s
        self._turn = 0
        #: every pull so far: ``(peer, result or None when it failed)`` (last 64; tests,
        #: logs)
        self.pulls: list[tuple[str, ProofPullResult | None]] = []

    async def pull_once(self) -> ProofPullResult | None:
        """Pull from the next connected peer in turn; its result, or None (no peer, or
        the pull failed: logged). :meth:`run` counts the pull done only when its result
        is ``complete``; otherwise the next try asks the next peer."""
        peers = sorted(self._peers())
        if not peers:
            return None
        peer = peers[self._turn % len(peers)]
        self._turn += 1
        result: ProofPullResult | None = None
        try:
            with trio.fail_after(self._params.request_timeout_s * 4):
                stream = await self._open_stream(peer)
            result = await pull(
                stream, self._router.have(), self._router.judge_pulled, self._params
            )
        except Exception as exc:  # a peer without the protocol, a reset, a liar cut off
            log.info("proof pull from %s failed: %r", peer, exc)
        else:
            if result.accepted:
                log.info("pulled %d proof(s) from %s", result.accepted, peer)
            if not result.complete:
                log.info("proof pull from %s stopped after %d pages", peer, result.pages)
        self.pulls = [*self.pulls[-63:], (peer, result)]
        return result

    def pull_times(self, epoch: int) -> list[float]:
        """When the pulls of ``epoch`` are due (unix seconds): at our phase of it, and,
        with a grace shorter than an epoch, inside the last ``grace_s`` before its end."""
        times = [(epoch + self._phase) * self._epoch_s]
        grace = self._grace_s
        if grace is not None and grace < self._epoch_s:
            times.append((epoch + 1) * self._epoch_s - grace * (0.4 - 0.25 * self._phase))
        return times

    async def run(self) -> None:
        """Retry pending proofs and pull at each due time of each epoch; until cancelled."""
        retried = None
        # (epoch, slot) -> pulls tried (a failed one goes to the next peer; -1: done)
        tries: dict[tuple[int, int], int] = {}
        while True:
            epoch = self._clock.epoch(self._epoch_s)
            ready = self._view_ready(epoch)
            self._disputes.retry_pending(force=ready and retried != epoch)
            if ready:
                retried = epoch
                tries = {k: v for k, v in tries.items() if k[0] == epoch}
                now = self._clock.now()
                for slot, at in enumerate(self.pull_times(epoch)):
                    tried = tries.get((epoch, slot), 0)
                    due = not self.pulls or now >= at
                    # (no try is spent while no peer is connected: it is tried when one is)
                    ready_to_pull = self._is_synced() and bool(self._peers())
                    if due and 0 <= tried < self.PULLS_PER_EPOCH and ready_to_pull:
                        result = await self.pull_once()
                        # a pull cut at max_pages is not done: a server paging without end
                        # would otherwise spend the slot and keep us from the next peer
                        done = result is not None and result.complete
                        tries[(epoch, slot)] = -1 if done else tried + 1
                        break  # one pull per look
            await self._clock.sleep(self._tick_s)


__all__ = ["ProofCatchUp"]
