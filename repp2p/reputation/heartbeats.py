"""Heartbeat periods: which epochs a node heartbeats in, and which epochs that shows it up.

With ``ReputationParams.heartbeat_period_epochs = H`` (default 1) a node heartbeats once
every ``H`` epochs, in the epochs ``e`` with ``(e - slot) % H == 0`` where ``slot`` is fixed
by its peer ID (:func:`heartbeat_slot`), so a network's heartbeats spread evenly: about
``nodes / H`` per epoch instead of ``nodes`` (issue 14: at 10,000 nodes one heartbeat per
node and epoch is a fifth of every peer's gossip). A node also heartbeats when it starts,
whatever its slot.

Uptime reads a heartbeat of epoch ``h`` as "up in ``h .. h + H - 1``" (the epochs until
the next one is due), and each epoch counts at most once however many heartbeats cover
it (:func:`covered_weights`): a node gains nothing by heartbeating more often than its
schedule, and a node on schedule is up in every epoch. With ``H = 1`` this is the rule
before periods existed (a heartbeat covers its own epoch), bit for bit.

Eligibility (``matching.heartbeat_max_age_epochs``) needs no rule of its own: the network
parameters require a maximum age of at least ``heartbeat_lag + H - 1``, the age of a
scheduled node's last heartbeat just before its next one counts.

Pure: no I/O, no clock (epochs are passed in).
"""

from __future__ import annotations

import hashlib

import numpy as np

#: Domain of the slot hash (the node's heartbeat epochs).
SLOT_DOMAIN = b"repp2p/1/heartbeat-slot\0"


def heartbeat_slot(peer_id: str, period_epochs: int) -> int:
    """A node's slot in ``[0, period_epochs)``: it heartbeats in the epochs ``e`` with
    ``(e - slot) % period_epochs == 0``. Every peer computes it from the peer ID alone.

    Raises:
        ValueError: ``period_epochs`` below 1.
    """
    if period_epochs < 1:
        raise ValueError(f"period_epochs must be >= 1, got {period_epochs}")
    digest = hashlib.sha256(SLOT_DOMAIN + peer_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % period_epochs


def is_heartbeat_epoch(epoch: int, slot: int, period_epochs: int) -> bool:
    """Whether a node of ``slot`` heartbeats in ``epoch`` (every epoch when the period is
    1)."""
    return (epoch - slot) % period_epochs == 0


def covered_weights(
    hb_node: np.ndarray,
    hb_epoch: np.ndarray,
    *,
    n_peers: int,
    epoch: int,
    window: int,
    period_epochs: int,
    decay: np.ndarray,
) -> np.ndarray:
    """Per peer, the fixed-point decayed count of the epochs of ``[epoch - window, epoch -
    1]`` its heartbeats cover (an epoch of age ``a = epoch - 1 - e`` weighs ``decay[a]``).

    Heartbeat ``i`` (rows sorted by ``(node, epoch)``) covers ``hb_epoch[i] ..
    hb_epoch[i] + period_epochs - 1``, cut short where the node's next heartbeat begins, so
    the covered ranges of one node never overlap and an epoch counts once.

    Returns:
        int64 sums of ``decay`` entries (exact: the caller scales them).
    """
    node = np.asarray(hb_node, np.int64)
    start = np.asarray(hb_epoch, np.int64)
    end = start + (period_epochs - 1)
    if len(node) > 1:
        same = node[1:] == node[:-1]
        end[:-1] = np.where(same, np.minimum(end[:-1], start[1:] - 1), end[:-1])
    # ages: the newest covered epoch has the smallest age
    lo = np.maximum((epoch - 1) - end, 0)
    hi = np.minimum((epoch - 1) - start, window - 1)
    cum = np.concatenate(([0], np.cumsum(np.asarray(decay[:window], np.int64))))
    # sum of decay[lo..hi] = cum[hi + 1] - cum[lo], zero where the range is empty
    ok = lo <= hi
    weight = np.where(ok, cum[np.clip(hi + 1, 0, window)] - cum[np.clip(lo, 0, window)], 0)
    out = np.zeros(n_peers, np.int64)
    np.add.at(out, node, weight)
    return out


__all__ = ["SLOT_DOMAIN", "covered_weights", "heartbeat_slot", "is_heartbeat_epoch"]
