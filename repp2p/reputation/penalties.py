"""Penalties: phase-out of persistently bad nodes and hard penalties for proven misbehaviour.

A :class:`PenaltyBook` is a frozen fold over epoch boundaries: ``book.step(table)`` takes the
:class:`~repp2p.reputation.scores.ReputationTable` of the next epoch and returns the next
book. Every peer that steps through the same tables holds the same book (its ``digest``
goes into the view digest). A node keeps its book across restarts (:meth:`to_bytes`); a
peer that joins late starts empty and re-derives hard penalties from the evidence records
it holds; the simulator steps it once per virtual epoch.

Rules (``ReputationParams`` names):

* a node whose ``permille`` stays below ``phase_out_permille`` for ``phase_out_epochs``
  consecutive steps is phased out: ineligible for ``phase_out_penalty_epochs`` epochs,
  multiplied by ``phase_out_growth`` on every repeat, capped at ``phase_out_max_epochs``;
  epochs spent penalised do not count towards the next phase-out;
* an offender (equivocation or a proven wrong result in the table's offences) is hard
  penalised for ``hard_penalty_epochs`` from the epoch it is first seen, and the
  :class:`~repp2p.reputation.evidence.Offence` records are kept in its entry; only a
  node's (a peer the table holds as a node, or one with an entry already): an offence
  of a key that is no node gets no entry (the table marks it an offender while it lists
  the offence), so keys that prove offences of their own cannot grow the book.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from types import MappingProxyType

import cbor2
import numpy as np

from repp2p.errors import StoreError
from repp2p.reputation.evidence import Offence
from repp2p.reputation.params import ReputationParams
from repp2p.reputation.scores import ReputationTable


@dataclasses.dataclass(frozen=True, slots=True)
class PenaltyEntry:
    """One peer's penalty state.

    Attributes:
        below_epochs: consecutive steps below the phase-out threshold (outside penalties).
        strikes: phase-outs so far (drives the growing length).
        until_epoch: the peer is ineligible while ``epoch < until_epoch``.
        hard: the current penalty is a hard one (offence).
        evidence: offences proven against the peer, oldest first.
    """

    below_epochs: int = 0
    strikes: int = 0
    until_epoch: int = 0
    hard: bool = False
    evidence: tuple[Offence, ...] = ()


_EMPTY: Mapping[str, PenaltyEntry] = MappingProxyType({})


@dataclasses.dataclass(frozen=True)
class PenaltyBook:
    """Penalty state of every peer as of epoch ``epoch`` (-1: nothing stepped yet)."""

    epoch: int = -1
    entries: Mapping[str, PenaltyEntry] = dataclasses.field(default_factory=lambda: _EMPTY)

    def entry(self, peer_id: str) -> PenaltyEntry:
        return self.entries.get(peer_id, PenaltyEntry())

    def is_penalised(self, peer_id: str, epoch: int) -> bool:
        """True when ``peer_id`` is ineligible at ``epoch``."""
        e = self.entries.get(peer_id)
        return e is not None and epoch < e.until_epoch

    def penalised(self, epoch: int) -> frozenset[str]:
        """Every peer ineligible at ``epoch``."""
        return frozenset(p for p, e in self.entries.items() if epoch < e.until_epoch)

    @property
    def digest(self) -> bytes:
        """SHA-256 of a canonical encoding of the book (goes into the view digest)."""
        h = hashlib.sha256(b"repp2p/1/penalties\0")
        h.update(self.epoch.to_bytes(8, "big", signed=True))
        for peer in sorted(self.entries):
            e = self.entries[peer]
            h.update(peer.encode("ascii") + b"\0")
            h.update(
                b"".join(x.to_bytes(8, "big") for x in (e.below_epochs, e.strikes, e.until_epoch))
            )
            h.update(b"\1" if e.hard else b"\0")
            for off in e.evidence:
                h.update(off.kind.encode() + b"\0" + b"".join(off.record_ids))
        return h.digest()

    def to_bytes(self) -> bytes:
        """Canonical CBOR of the book, for a node to keep it across restarts."""
        entries = {
            peer: [
                e.below_epochs,
                e.strikes,
                e.until_epoch,
                e.hard,
                [[o.kind, o.peer_id, list(o.record_ids), o.epoch] for o in e.evidence],
            ]
            for peer, e in self.entries.items()
        }
        return cbor2.dumps({"v": 1, "epoch": self.epoch, "entries": entries}, canonical=True)

    @classmethod
    def from_bytes(cls, data: bytes) -> PenaltyBook:
        """The book :meth:`to_bytes` wrote.

        Raises:
            StoreError: the bytes are not such a book (a damaged or foreign file).
        """
        try:
            obj = cbor2.loads(data, allow_duplicate_keys=False, max_depth=8)
            if type(obj) is not dict or obj.keys() != {"v", "epoch", "entries"} or obj["v"] != 1:
                raise ValueError("not a version-1 penalty book")
            epoch = _int(obj["epoch"], low=-1)
            if type(obj["entries"]) is not dict:
                raise ValueError("entries is not a map")
            entries = {}
            for peer, fields in sorted(obj["entries"].items()):
                if type(peer) is not str or type(fields) is not list or len(fields) != 5:
                    raise ValueError("bad entry")
                below, strikes, until, hard, evidence = fields
                if type(hard) is not bool or type(evidence) is not list:
                    raise ValueError("bad entry")
                offences = []
                for off in evidence:
                    if type(off) is not list or len(off) != 4:
                        raise ValueError("bad offence")
                    kind, offender, ids, off_epoch = off
                    if (
                        type(kind) is not str
                        or type(offender) is not str
                        or type(ids) is not list
                        or not all(type(i) is bytes and len(i) == 32 for i in ids)
                    ):
                        raise ValueError("bad offence")
                    if off_epoch is not None:
                        off_epoch = _int(off_epoch)
                    offences.append(Offence(kind, offender, tuple(ids), off_epoch))
                entries[peer] = PenaltyEntry(
                    below_epochs=_int(below),
                    strikes=_int(strikes),
                    until_epoch=_int(until),
                    hard=hard,
                    evidence=tuple(offences),
                )
        except (ValueError, TypeError, cbor2.CBORDecodeError, RecursionError) as exc:
            raise StoreError(f"penalty book unreadable: {exc}") from None
        return cls(epoch, MappingProxyType(entries))

    def step(self, table: ReputationTable, params: ReputationParams | None = None) -> PenaltyBook:
        """The book after the epoch boundary of ``table.epoch``.

        Raises:
            ValueError: ``table.epoch`` is not after the book's epoch.
        """
        p = params or ReputationParams()
        epoch = table.epoch
        if epoch <= self.epoch:
            raise ValueError(f"step to epoch {epoch} from {self.epoch}: epochs must increase")
        entries = dict(self.entries)
        new_offences: dict[str, list[Offence]] = {}
        nodes: frozenset[str] | None = None
        for off in table.offences:
            if off in self.entry(off.peer_id).evidence:
                continue
            if off.peer_id not in entries:
                if nodes is None:
                    nodes = frozenset(table.peers[i] for i in np.flatnonzero(table.is_node))
                if off.peer_id not in nodes:
                    # a key that is no node (a client's, a throwaway one): the table marks
                    # it an offender while it lists the offence; a book entry would be kept
                    # for good, and any key can prove an offence of its own (two digests
                    # of one epoch), so the book, every view digest's input, would grow
                    # without bound. Booked if it is a node while the offence is listed.
                    continue
            new_offences.setdefault(off.peer_id, []).append(off)
        below = table.is_node & (table.permille < p.phase_out_permille)
        # Only peers with state or news need a visit: the rest stay default.
        visit = set(entries) | set(new_offences)
        visit.update(table.peers[i] for i in np.flatnonzero(below))
        below_set = {table.peers[i] for i in np.flatnonzero(below)}
        for peer in sorted(visit):
            e = entries.get(peer, PenaltyEntry())
            if peer in new_offences:
                e = dataclasses.replace(
                    e,
                    until_epoch=max(e.until_epoch, epoch + p.hard_penalty_epochs),
                    hard=True,
                    evidence=e.evidence + tuple(new_offences[peer]),
                    below_epochs=0,
                )
            elif epoch < e.until_epoch:
                e = dataclasses.replace(e, below_epochs=0)
            elif peer in below_set:
                count = e.below_epochs + 1
                if count >= p.phase_out_epochs:
                    length = min(
                        p.phase_out_max_epochs,
                        p.phase_out_penalty_epochs * p.phase_out_growth**e.strikes,
                    )
                    e = dataclasses.replace(
                        e,
                        below_epochs=0,
                        strikes=e.strikes + 1,
                        until_epoch=epoch + length,
                        hard=False,
                    )
                else:
                    e = dataclasses.replace(e, below_epochs=count)
            else:
                e = dataclasses.replace(e, below_epochs=0)
            if e == PenaltyEntry():
                entries.pop(peer, None)
            else:
                entries[peer] = e
        return PenaltyBook(epoch, MappingProxyType(dict(sorted(entries.items()))))


def _int(value: object, *, low: int = 0) -> int:
    if type(value) is not int or not low <= value < 2**63:
        raise ValueError(f"{value!r} is not an integer in range")
    return value
