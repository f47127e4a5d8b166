"""From accepted records to compact, canonical evidence columns.

:func:`collect` turns an accepted record set (``SignedRecord`` or anything with ``record``,
``signer`` and ``record_id``) and the caller's attestation verdicts into an
:class:`Evidence`: numpy columns indexed by peer, offer, claim, receipt, feedback and
heartbeat, every table sorted by a canonical key. Reputation and matching read only this.

Invariants of an :class:`Evidence` (``collect`` guarantees them; :meth:`Evidence.from_columns`
sorts compact inputs built elsewhere, e.g. by the simulator or a benchmark):

* ``peers`` is sorted and unique; every other table refers to peers by index;
* one current record per ``(signer, type, slot)``, chosen by the replacement rules, so the
  set is the same whatever order records arrived in; same-``seq`` conflicts are kept as
  equivocation :class:`Offence` evidence;
* rows are sorted by their key columns, so float sums over them are order-independent.

Ownership (a feedback's signer signed the ``TaskOffer``) is resolved here; whether the node
claimed the task is checked vectorised in :mod:`repp2p.reputation.scores`, so evidence
built by other means is held to the same rule.

Attestation verification belongs to :mod:`repp2p.attestation`; this package only reads the
caller's verdicts (:class:`AttestedNode`) so the core stays decoupled.

Which claims and receipts count (docs/core.md, "Evidence: who ran a task"):

* a ``Receipt`` counts only when its signer has a verified verdict, it names the offer's
  input and engine, its ``result_key`` is the node's attested result key *for the offer's
  epoch* (:meth:`AttestedNode.result_key_for`) and its enclave signature verifies under it;
* with ``assignments`` (the caller's rankings, see :func:`collect`), a ``Claim`` counts only
  when the deterministic matching gave its signer a rank for that offer on the view of the
  offer's epoch: a claiming rank, or a rank in the offer's escalation ranking (dispute
  replicas). The rank number the claim states is not compared: a node ranks on its own
  view, which can differ from ours by a place or two, and any node of the set could state
  its own rank anyway. A receipt without a counted claim is left out too.

Anything else is ignored, not punished: a node missing from our ranking may be one an
honest peer on a slightly different view ranked.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import nacl.exceptions
import nacl.signing
import numpy as np

from repp2p.records import (
    Claim,
    Feedback,
    Heartbeat,
    NodeAd,
    Receipt,
    Refusal,
    TaskOffer,
    check_refusal,
    evidence_group,
    precedence,
    receipt_message,
)

#: Feedback outcome codes, in the order used by every numpy column.
OUTCOME_CODES = {"ok": 0, "wrong": 1, "timeout": 2, "bad_proof": 3}
#: Deadlines and epochs are kept as int64; larger values are clamped here (far enough).
_MAX_MS = 2**62


class AcceptedRecord(Protocol):
    """What the core needs of an accepted record (``SignedRecord`` satisfies it)."""

    @property
    def record(self) -> Any: ...

    @property
    def signer(self) -> str: ...

    @property
    def record_id(self) -> bytes: ...


@dataclasses.dataclass(frozen=True, slots=True)
class AttestedNode:
    """The caller's verdict on one node's attestation, as of the view's epoch boundary.

    Computed by whoever runs :mod:`repp2p.attestation` (node, simulator) from the node's
    ``Attestation`` record and the local policy; the core never verifies evidence itself.

    Attributes:
        peer_id: the node.
        tee_kind: the TEE kind the verified evidence establishes.
        measurements: code measurements the verified evidence establishes; an engine
            offered in the ``NodeAd`` counts only if its measurement is in this set.
        verified: the latest attestation verified and is accepted by policy.
        tcb_degraded: verified, but the TCB status is below up-to-date (still accepted).
        attested_at: unix seconds of the verified evidence (freshness).
        failed: some attestation by this node failed verification (as far as the caller
            knows); a node that ever failed is not pre-trusted and scores 0 on attestation.
        result_key: the enclave result key the verified attestation binds (empty when
            unknown): a node's ``Refusal`` counts only when signed by it, and its
            ``Receipt`` only when signed by it or by one of ``earlier_result_keys``.
        earlier_result_keys: ``(key, until_epoch)`` of result keys that earlier verified
            attestations of this node bound, as far as the caller saw them: the enclave
            restarted with fresh keys at ``until_epoch``. Such a key signs receipts of
            offers of epochs ``<= until_epoch`` only (its enclave is gone afterwards).
    """

    peer_id: str
    tee_kind: str
    measurements: frozenset[bytes]
    verified: bool
    tcb_degraded: bool = False
    attested_at: int = 0
    failed: bool = False
    result_key: bytes = b""
    earlier_result_keys: tuple[tuple[bytes, int], ...] = ()

    def result_key_for(self, key: bytes, epoch: int) -> bool:
        """Whether ``key`` is this node's attested result key for offers of ``epoch``.

        The current key counts for any epoch (an offer of an earlier epoch may be served
        after a restart, with the new enclave's key; a key cannot have signed anything
        before it existed); an earlier key up to the epoch it was replaced in. Never for an
        unverified node or an empty key.
        """
        if not self.verified or not key:
            return False
        if key == self.result_key:
            return True
        return any(k == key and epoch <= until for k, until in self.earlier_result_keys)

    @property
    def is_trusted(self) -> bool:
        """Verified and never failed: a member of the pre-trusted set."""
        return self.verified and not self.failed


@dataclasses.dataclass(frozen=True, slots=True)
class Offence:
    """Hard-penalty evidence against a peer.

    Attributes:
        kind: ``"equivocation"`` (two signed records, same signer, type, slot and ``seq``,
            different content) or ``"wrong_result"`` (a receipt outvoted by a quorum).
        peer_id: the offender.
        record_ids: the record IDs that prove it (sorted; kept so anyone can re-check).
        epoch: the epoch the offending record names, when it names one, else None.
    """

    kind: str
    peer_id: str
    record_ids: tuple[bytes, ...]
    epoch: int | None = None


_I64 = np.int64


def _col(values: Any, dtype: Any = _I64) -> np.ndarray:
    arr = np.asarray(values, dtype=dtype)
    arr.setflags(write=False)
    return arr


def _node_columns(n: int) -> dict[str, Any]:
    """Per-peer node columns for ``n`` peers, all "not a node" (the defaults)."""
    return {
        "is_node": np.zeros(n, bool),
        "capacity": np.zeros(n, _I64),
        "throughput": np.zeros(n, _I64),
        "price": np.zeros(n, np.uint64),
        "verified": np.zeros(n, bool),
        "failed": np.zeros(n, bool),
        "tcb_degraded": np.zeros(n, bool),
        "attested_at": np.zeros(n, _I64),
        "consistent": np.zeros(n, bool),
        "equivocated": np.zeros(n, bool),
    }


@dataclasses.dataclass(frozen=True, eq=False)
class Evidence:
    """Compact, canonical evidence columns (see the module docstring for invariants).

    Per peer (length P, index = position in ``peers``): ``is_node``, ``capacity`` (tasks at
    once), ``throughput`` (advertised tasks/epoch), ``price`` (micro-REP, uint64),
    ``verified``, ``failed``, ``tcb_degraded``, ``attested_at`` (unix s),
    ``consistent`` (the attested kind and measurements cover the ad), ``equivocated``.

    Offers (O): ``offer_client`` (peer), ``offer_epoch``, ``offer_deadline_ms``.
    Claims (C, sorted by offer, node): ``claim_node``, ``claim_offer``.
    Receipts (R, sorted by offer, node; only those with a counted claim and their attested
    enclave's signature, see the module docstring): ``receipt_node``, ``receipt_offer``,
    ``receipt_output`` (output digest interned per offer), ``receipt_ids`` (record IDs, may
    be empty for compact inputs).
    Feedback (F, sorted by client, node, offer): ``fb_client``, ``fb_node``, ``fb_offer``,
    ``fb_outcome`` (:data:`OUTCOME_CODES`), ``fb_latency_ms``, ``fb_rating`` (0-100).
    Heartbeats (H, sorted by node, epoch): ``hb_node``, ``hb_epoch``, ``hb_load``.
    Refusals: ``refusals``, sorted ``(offer, node)`` pairs of the tasks a node's enclave
    refused for the client's own input, each checked (:func:`repp2p.records.check_refusal`)
    against the offer and the node's attested result key for the offer's epoch.
    """

    peers: tuple[str, ...]
    is_node: np.ndarray
    capacity: np.ndarray
    throughput: np.ndarray
    price: np.ndarray
    verified: np.ndarray
    failed: np.ndarray
    tcb_degraded: np.ndarray
    attested_at: np.ndarray
    consistent: np.ndarray
    equivocated: np.ndarray
    offer_client: np.ndarray
    offer_epoch: np.ndarray
    offer_deadline_ms: np.ndarray
    claim_node: np.ndarray
    claim_offer: np.ndarray
    receipt_node: np.ndarray
    receipt_offer: np.ndarray
    receipt_output: np.ndarray
    fb_client: np.ndarray
    fb_node: np.ndarray
    fb_offer: np.ndarray
    fb_outcome: np.ndarray
    fb_latency_ms: np.ndarray
    fb_rating: np.ndarray
    hb_node: np.ndarray
    hb_epoch: np.ndarray
    hb_load: np.ndarray
    receipt_ids: tuple[bytes, ...] = ()
    offences: tuple[Offence, ...] = ()
    #: Sorted IDs of the current records and of the equivocation evidence (view digest).
    record_ids: tuple[bytes, ...] = ()
    #: Per node: current ``NodeAd`` and verdict (matching reads engines and kinds from them).
    ads: Mapping[str, NodeAd] = dataclasses.field(default_factory=dict)
    verdicts: Mapping[str, AttestedNode] = dataclasses.field(default_factory=dict)
    #: Not a numpy column, so views without refusals keep their columns digest.
    refusals: tuple[tuple[int, int], ...] = ()

    @property
    def n_peers(self) -> int:
        return len(self.peers)

    def index(self, peer_id: str) -> int:
        """Index of ``peer_id`` in ``peers`` (raises KeyError when absent)."""
        i = bisect.bisect_left(self.peers, peer_id)
        if i >= len(self.peers) or self.peers[i] != peer_id:
            raise KeyError(peer_id)
        return i

    @classmethod
    def from_columns(cls, peers: Iterable[str], **columns: Any) -> Evidence:
        """Build from compact columns (plain sequences or arrays), sorting every table.

        ``peers`` must be sorted and unique. Missing per-peer columns default to "not a
        node"; missing tables default to empty. Row tables are sorted into canonical order,
        so callers may pass rows in any order.
        """
        peers = tuple(peers)
        if list(peers) != sorted(set(peers)):
            raise ValueError("peers must be sorted and unique")
        n = len(peers)
        defaults = _node_columns(n)
        out: dict[str, Any] = {}
        for name, default in defaults.items():
            value = columns.pop(name, default)
            out[name] = _col(value, default.dtype)
            if len(out[name]) != n:
                raise ValueError(f"{name} must have one entry per peer")
        tables = {
            "offer": (("offer_client", "offer_epoch", "offer_deadline_ms"), ()),
            "claim": (("claim_node", "claim_offer"), ("claim_offer", "claim_node")),
            "receipt": (
                ("receipt_node", "receipt_offer", "receipt_output"),
                ("receipt_offer", "receipt_node"),
            ),
            "fb": (
                (
                    "fb_client",
                    "fb_node",
                    "fb_offer",
                    "fb_outcome",
                    "fb_latency_ms",
                    "fb_rating",
                ),
                ("fb_client", "fb_node", "fb_offer"),
            ),
            "hb": (("hb_node", "hb_epoch", "hb_load"), ("hb_node", "hb_epoch")),
        }
        receipt_ids = tuple(columns.pop("receipt_ids", ()))
        for names, key in tables.values():
            arrays = [np.asarray(columns.pop(name, ()), dtype=_I64) for name in names]
            if len({len(a) for a in arrays}) > 1:
                raise ValueError(f"columns {names} differ in length")
            if key and len(arrays[0]):
                order = np.lexsort([arrays[names.index(k)] for k in reversed(key)])
                if names[0] == "receipt_node" and receipt_ids:
                    receipt_ids = tuple(receipt_ids[i] for i in order)
                arrays = [a[order] for a in arrays]
            for name, arr in zip(names, arrays, strict=True):
                out[name] = _col(arr)
        names = ("offences", "ads", "verdicts", "record_ids")
        extra = {k: columns.pop(k) for k in names if k in columns}
        if "refusals" in columns:
            extra["refusals"] = tuple(
                sorted({(int(o), int(i)) for o, i in columns.pop("refusals")})
            )
        if columns:
            raise TypeError(f"unknown columns {sorted(columns)}")
        return cls(peers=peers, receipt_ids=receipt_ids, **out, **extra)


def _current(
    records: Iterable[AcceptedRecord], now: int
) -> tuple[dict[tuple[str, str, bytes], AcceptedRecord], list[Offence]]:
    """Current record per slot by the replacement rules (a ``wrong`` Feedback is final:
    it stays current over any other verdict of its slot), plus equivocation evidence.

    Conflicts are found among the versions of the current record's group (its ``seq`` and
    finality: :func:`repp2p.records.evidence_group`), over every version seen, not only
    against the record current on arrival, so the evidence is the same whatever the
    arrival order; versions a record of another group outranked are no evidence (a peer
    that saw that record first never compares them).
    """
    versions: dict[tuple[str, str, bytes], dict[int, dict[bytes, AcceptedRecord]]] = {}
    for item in records:
        rec = item.record
        if rec.expires <= now:
            continue
        key = (item.signer, rec.TYPE, rec.slot())
        versions.setdefault(key, {}).setdefault(rec.seq, {})[item.record_id] = item
    current: dict[tuple[str, str, bytes], AcceptedRecord] = {}
    offences = []
    for key in sorted(versions):
        by_seq = versions[key]
        # The store's order (repp2p.records.replacement.precedence): a final record (a
        # `wrong` Feedback) first, then the higher seq, then the smaller record ID.
        current[key] = min(
            (item for group in by_seq.values() for item in group.values()), key=precedence
        )
        # Equivocation within the current record's group only (its seq and finality), as
        # the store keeps evidence: versions a record of another group outranked are
        # compared only by a peer that saw them first (repp2p.records.evidence_group).
        best = evidence_group(current[key].record)
        group = {
            rid: item
            for rid, item in by_seq[best[1]].items()
            if evidence_group(item.record) == best
        }
        if len(group) > 1:
            rec = group[min(group)].record
            epoch = rec.epoch_of() if hasattr(rec, "epoch_of") else None
            offences.append(Offence("equivocation", key[0], tuple(sorted(group)), epoch))
    return current, offences


#: The caller's rankings: for a ``TaskOffer`` (signed), ``peer -> ranks`` the deterministic
#: matching gave that peer for it (claiming rank, escalation rank), or None when the caller
#: cannot rank it (then no claim on it counts). See :func:`collect`.
AssignedRanks = Callable[[AcceptedRecord], Mapping[str, frozenset[int]] | None]

#: Enclave signatures already checked: ``(receipt record ID, key) -> verified``. A record ID
#: is the digest of the signed record, so the verdict never changes; bounded, cleared whole.
_SIG_CACHE: dict[tuple[bytes, bytes], bool] = {}
_SIG_CACHE_MAX = 1 << 18


def _enclave_signed(item: AcceptedRecord, offer: TaskOffer, verdict: AttestedNode | None) -> bool:
    """Whether a receipt is the work of the signer's attested enclave for this offer."""
    rc: Receipt = item.record
    if verdict is None or not verdict.result_key_for(rc.result_key, offer.epoch):
        return False
    if rc.input_digest != offer.input_digest or rc.engine_id != offer.engine_id:
        return False
    key = (item.record_id, rc.result_key)
    ok = _SIG_CACHE.get(key)
    if ok is None:
        try:
            nacl.signing.VerifyKey(rc.result_key).verify(receipt_message(rc), rc.enclave_sig)
            ok = True
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
            ok = False
        if len(_SIG_CACHE) >= _SIG_CACHE_MAX:
            _SIG_CACHE.clear()
        _SIG_CACHE[key] = ok
    return ok


def collect(
    records: Iterable[AcceptedRecord],
    attested: Mapping[str, AttestedNode],
    *,
    now: int,
    assignments: AssignedRanks | None = None,
) -> Evidence:
    """Canonical evidence from an accepted record set and the caller's attestation verdicts.

    Args:
        records: accepted records in any order (``SignedRecord`` or equivalent); stale and
            duplicate versions are fine, expired ones (``expires <= now``) are ignored.
        attested: ``peer_id -> AttestedNode`` for the nodes whose attestation the caller
            checked; a node absent from it is unverified.
        now: unix seconds of the view (the epoch boundary).
        assignments: the caller's rankings of each offer
            (:class:`repp2p.matching.Assignments`: the view of the offer's epoch and its
            beacon); a claim counts only when they give its signer a rank. None: claims are
            not checked against rankings (compact or synthetic evidence, tests of other
            rules); every peer that must agree passes them.

    Returns:
        The :class:`Evidence`; equal inputs give equal columns whatever the arrival order.
    """
    current, offences = _current(records, now)
    by_type: dict[str, list[AcceptedRecord]] = {}
    for (_signer, type_tag, _slot), item in current.items():
        by_type.setdefault(type_tag, []).append(item)

    peer_set = {signer for signer, _t, _s in current}
    peer_set.update(item.record.node for item in by_type.get(Feedback.TYPE, ()))
    peers = tuple(sorted(peer_set))
    index = {p: i for i, p in enumerate(peers)}
    n = len(peers)

    cols: dict[str, Any] = _node_columns(n)
    ads: dict[str, NodeAd] = {}
    for item in by_type.get(NodeAd.TYPE, ()):
        ad: NodeAd = item.record
        i = index[item.signer]
        ads[item.signer] = ad
        cols["is_node"][i] = True
        cols["capacity"][i] = ad.capacity
        cols["throughput"][i] = ad.throughput
        cols["price"][i] = ad.price
        verdict = attested.get(item.signer)
        if verdict is not None:
            cols["verified"][i] = verdict.verified
            cols["failed"][i] = verdict.failed
            cols["tcb_degraded"][i] = verdict.tcb_degraded
            cols["attested_at"][i] = verdict.attested_at
            cols["consistent"][i] = verdict.tee_kind == ad.tee_kind and all(
                e.measurement in verdict.measurements for e in ad.engines
            )
    for off in offences:
        cols["equivocated"][index[off.peer_id]] = True
    verdicts = {p: v for p, v in attested.items() if p in ads}

    offers = sorted(by_type.get(TaskOffer.TYPE, ()), key=lambda it: it.record_id)
    offer_by_id = {it.record_id: o for o, it in enumerate(offers)}
    offer_by_owner = {(it.signer, it.record.task_id): o for o, it in enumerate(offers)}
    cols["offer_client"] = [index[it.signer] for it in offers]
    cols["offer_epoch"] = [min(it.record.epoch, _MAX_MS) for it in offers]
    cols["offer_deadline_ms"] = [min(it.record.deadline_ms, _MAX_MS) for it in offers]

    claim_node, claim_offer = [], []
    ranks: dict[int, Mapping[str, frozenset[int]] | None] = {}
    for item in by_type.get(Claim.TYPE, ()):
        claim: Claim = item.record
        o = offer_by_id.get(claim.offer_id)
        if o is None or offers[o].record.task_id != claim.task_id:
            continue
        if claim.expires < offers[o].record.expires:
            # an honest node copies its offer's expiry (repp2p.tasks.expiry_fault): one
            # that expires earlier leaves every store, and a dispute over it, before the
            # task's other records do; it shows no work
            continue
        if assignments is not None:
            if o not in ranks:
                ranks[o] = assignments(offers[o])
            given = ranks[o]
            if given is None or item.signer not in given:
                continue  # the matching never gave this node the offer (nor a replica rank)
        claim_node.append(index[item.signer])
        claim_offer.append(o)
    cols["claim_node"], cols["claim_offer"] = claim_node, claim_offer
    claimed = set(zip(claim_offer, claim_node, strict=True))

    r_node, r_offer, r_out, r_ids = [], [], [], []
    outputs: dict[tuple[int, bytes], int] = {}
    receipts = sorted(by_type.get(Receipt.TYPE, ()), key=lambda it: it.record_id)
    for item in receipts:
        receipt: Receipt = item.record
        o = offer_by_id.get(receipt.offer_id)
        if o is None or offers[o].record.task_id != receipt.task_id:
            continue
        if receipt.expires < offers[o].record.expires:
            continue  # as a claim expiring before its offer: no work shown
        if (o, index[item.signer]) not in claimed:
            continue  # no counted claim: nobody asked this node (scores hold it to it too)
        if not _enclave_signed(item, offers[o].record, attested.get(item.signer)):
            continue  # not its attested enclave's receipt for this offer: no work shown
        r_node.append(index[item.signer])
        r_offer.append(o)
        r_out.append(outputs.setdefault((o, receipt.output_digest), len(outputs)))
        r_ids.append(item.record_id)
    cols.update(receipt_node=r_node, receipt_offer=r_offer, receipt_output=r_out)

    fb = {k: [] for k in ("fb_client", "fb_node", "fb_offer", "fb_outcome")}
    fb.update(fb_latency_ms=[], fb_rating=[])
    for item in by_type.get(Feedback.TYPE, ()):
        f: Feedback = item.record
        o = offer_by_owner.get((item.signer, f.task_id))
        if o is None:
            continue  # the signer does not own a task with this id: not its feedback to give
        fb["fb_client"].append(index[item.signer])
        fb["fb_node"].append(index[f.node])
        fb["fb_offer"].append(o)
        fb["fb_outcome"].append(OUTCOME_CODES[f.outcome])
        fb["fb_latency_ms"].append(f.latency_ms)
        fb["fb_rating"].append(f.rating)
    cols.update(fb)

    refusals = _refusals(by_type.get(Refusal.TYPE, ()), offers, offer_by_id, attested, index)

    hbs = by_type.get(Heartbeat.TYPE, ())
    cols["hb_node"] = [index[it.signer] for it in hbs]
    cols["hb_epoch"] = [min(it.record.epoch, _MAX_MS) for it in hbs]
    cols["hb_load"] = [it.record.load for it in hbs]

    ids = {it.record_id for it in current.values()}
    ids.update(i for off in offences for i in off.record_ids)
    return Evidence.from_columns(
        peers,
        receipt_ids=r_ids,
        record_ids=tuple(sorted(ids)),
        offences=tuple(offences),
        ads=ads,
        verdicts=verdicts,
        refusals=refusals,
        **cols,
    )


def _refusals(
    items: Iterable[AcceptedRecord],
    offers: list[AcceptedRecord],
    offer_by_id: Mapping[bytes, int],
    attested: Mapping[str, AttestedNode],
    index: Mapping[str, int],
) -> list[tuple[int, int]]:
    """``(offer, node)`` of each refusal that proves a task failed by its client's input.

    It must name an offer we hold, carry the offer signer's signature over the sealed
    input it names for this node, and be signed by the node's attested result key for the
    offer's epoch (:meth:`AttestedNode.result_key_for`); anything else is dropped (a node
    cannot excuse itself with a refusal its enclave did not sign).
    """
    out = []
    for item in items:
        refusal: Refusal = item.record
        o = offer_by_id.get(refusal.offer_id)
        verdict = attested.get(item.signer)
        if o is None or verdict is None or not verdict.verified or not verdict.result_key:
            continue
        offer = offers[o]
        if not hasattr(offer, "signer_key"):
            continue  # not a signed record: nothing to check the client's signature with
        # the key valid for the offer's epoch, as for receipts (an earlier enclave's too)
        key = refusal.result_key
        if not verdict.result_key_for(key, offer.record.epoch):
            key = verdict.result_key
        why = check_refusal(
            refusal,
            node=item.signer,
            offer=offer,  # type: ignore[arg-type]
            result_key=key,
        )
        if why is None:
            out.append((o, index[item.signer]))
    return out
