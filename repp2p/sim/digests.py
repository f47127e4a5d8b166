"""Per-epoch digests, audit sampling and per-peer costs in the simulator (issue 14).

With the scenario's ``[digests]`` table enabled, every simulated epoch ``E`` is followed
through the digest flow of docs/digests.md, from the per-task columns the simulation
produced for ``E``:

* **Digests, exact** (from the simulated tasks): every node online in ``E`` publishes its
  WorkDigest of ``E`` (one row per client whose tasks it claimed; an empty part when it
  claimed nothing), every client that gave feedback on tasks of ``E`` its FeedbackDigest
  (one row per node), or, with ``[digest_params] feedback_max_epochs = k > 1``, a batch
  at the end of each of its windows of ``k`` epochs (one row per (epoch, node), the live
  client's rule). Rows, counts, leaves and parts (``ceil(rows / 256)``) are counted from
  the columns.
* **Digest sizes, exact** (the real encoder): an envelope's size is a sum of fixed parts
  and CBOR integer widths; the fixed parts are measured once by encoding real signed
  digests with :func:`repp2p.records.encode` (:func:`digest_sizes`), and
  ``tests/sim/test_digest_costs.py`` checks the sum against real encodings byte for byte.
* **Audits**: every non-empty digest part gets ``min(samples, leaves)`` challenges, with
  ``samples = DigestParams.samples_for(span)`` (``audit_samples`` per epoch a batch covers,
  the live auditor's rule), from each of ``auditors_per_digest`` auditors, drawn
  uniformly among the online nodes other than the publisher that are attested and no
  offender at the audit boundary (the live rule: only attested nodes audit, an
  unattested sybil publishes digests but never audits; the core's rendezvous draw,
  :func:`repp2p.digests.auditors`, is uniform; hashing 10,000 candidates per digest is
  what the simulator does not do).
  A node of an adversary group with ``digest_fault = f`` misreports ``ceil(f * n)`` of the
  ``n`` leaves of each of its work digests; its challenged leaves are the real core's
  :func:`~repp2p.digests.challenge_indices` under :func:`~repp2p.digests.audit_seed`, so
  detection is the core's, and :func:`~repp2p.digests.detection_probability` gives the
  expected rate beside the observed one. A caught node is an offender (the core's hard
  penalty, as for an equivocation) from the audit boundary ``E + seal_lag + audit_delay``.
* **Heartbeats**: the nodes the simulation says heartbeat in ``E`` (every online node, or
  with ``[reputation_params] heartbeat_period_epochs = H > 1`` those whose slot is due
  and those that just came online: the live schedule, ``repp2p.node.schedules``); the
  other online nodes still publish digests, audit and relay.
* **Bytes and CPU per peer, a calibrated model**: GossipSub as this project configures it
  (each message reaches each subscriber once and is forwarded to ``mesh_degree - 1`` mesh
  peers, so each subscriber receives about ``mesh_degree - 1`` copies; a publisher floods
  its own message to ``flood_peers``; IHAVE advertises each message ID in
  ``gossip_window`` heartbeats to ``ihave_peers`` peers), with the per-message overhead of
  py-libp2p's framing; per-task records travel only between a task's client and node;
  audit answers by tree depth. CPU times per verification are constants measured on the
  real code by ``bench/verify_cost.py`` (bench/RESULTS.md), not timed here: a run stays a
  function of the scenario and the seed.

The figures of epoch ``E`` are what ``E``'s tasks cost wherever in the pipeline the cost
falls (digests go out at ``E + seal_lag``, audits at ``E + seal_lag + audit_delay``); in a
steady state that is the cost of every epoch. Not modelled: IWANT repairs, retransmissions,
ads (rare), sync of missed digests, offence proofs (rare), task payloads
unless ``payload_bytes`` is set.

Pure: no I/O, no clock; randomness comes from the generator the simulation passes in.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
from collections import deque
from collections.abc import Mapping
from typing import Any

import cbor2
import nacl.signing
import numpy as np

from repp2p.digests import audit_seed, challenge_indices, detection_probability
from repp2p.digests.params import DigestParams
from repp2p.params_check import check_bool, check_float, check_int, check_keys
from repp2p.records import (
    DIGEST_MAX_ROWS,
    EMPTY_MERKLE_ROOT,
    FeedbackDigest,
    FeedbackRow,
    WorkDigest,
    WorkRow,
    encode,
    peer_id_from_public_key,
)

#: Epoch numbers and expiries of a live network today are 5-byte CBOR integers (an epoch
#: of 60 s since 1970 is about 29.5 million; unix seconds about 1.8 billion).
LIVE_EPOCH = 29_500_000
LIVE_EXPIRES = 1_800_000_000


@dataclasses.dataclass(frozen=True)
class CostModel:
    """The scenario's ``[digests]`` table: whether the digest flow is followed, how gossip
    is modelled, and the measured unit costs (defaults: ``bench/verify_cost.py`` on dev-2c,
    2026-12-03; bench/RESULTS.md).

    Attributes:
        enabled: follow digests, audits and per-peer costs (off by default: runs without
            the table are unchanged).
        clients_follow_gossip: clients subscribe to the digest and heartbeat topics (light
            clients hold digests, issue 14 item 7); false: they only publish their own.
        mesh_degree: GossipSub D; each subscriber receives and forwards about D - 1
            copies of each message.
        flood_peers: peers a publisher sends its own message to (flood publishing: its
            connections, the connection manager's target of 12).
        ihave_peers: peers sent IHAVE per heartbeat (max(D_lazy = 3, a quarter of the
            non-mesh peers)).
        gossip_window: heartbeats a message ID stays in IHAVE gossip (py-libp2p: 3).
        heartbeats_per_epoch: heartbeat records a node publishes in an epoch it heartbeats
            in: ``epoch_s / heartbeat_interval_s`` of its config (the live default,
            ``heartbeat_interval_s = epoch_s / 2``, sends 2: the second replaces the
            first, and travels as far), 1..64.
        attest_every_epochs: epochs between a node's fresh Attestation records; 0 (the
            default): as a live node does, once per ``reattest_period_s`` of the network's
            reputation parameters (``ceil(reattest_period_s / epoch_s)``: 60 at 3600 s and
            60-s epochs), liveness in between coming from enclave-signed heartbeats
            (docs/attestation.md, "Freshness"); 1 models re-attesting every epoch; 0..10^6.
        attestation_bytes: one Attestation record (default: an AWS Nitro attestation
            document of 4,654 bytes with the record's keys and signature; an SEV-SNP report
            with its VCEK is about 2,800, a TDX quote with its collateral about 21,000).
        attestation_us: verifying one Attestation (bench/attestation.py, Nitro, cold).
        gossip_overhead_bytes: bytes a GossipSub hop adds to one record (pubsub message
            fields, the RPC with the sender's signed peer record, length prefix, Yamux and
            Noise framing).
        ihave_id_bytes: bytes per message ID in an IHAVE.
        payload_bytes: task input plus output bytes per execution (0: records only).
        offer_bytes, claim_bytes, receipt_bytes, feedback_bytes, heartbeat_bytes: record
            envelope sizes.
        audit_request_bytes: one challenge frame.
        audit_answer_work_bytes, audit_answer_feedback_bytes, audit_answer_level_bytes: an
            audit answer is about ``audit_answer_<kind>_bytes + audit_answer_level_bytes *
            ceil(log2 leaves)`` (a work leaf comes with three records, a feedback leaf
            with two).
        digest_us, digest_row_us: decoding and verifying a gossiped digest part (CPU
            microseconds, plus per row).
        audit_us: judging one challenged leaf (``verify_audit``).
        record_us: decoding and verifying one per-task record or heartbeat.
        fold_row_us: ``reconcile`` per (client, node) pair row.
        gossip_target_bytes_s: the per-peer gossip target (issue 14: 1 MB/s).
        verify_target_share: the target share of one core spent verifying digests (10%).
    """

    enabled: bool = False
    clients_follow_gossip: bool = True
    mesh_degree: int = 4
    flood_peers: int = 12
    ihave_peers: int = 3
    gossip_window: int = 3
    heartbeats_per_epoch: int = 1
    attest_every_epochs: int = 0
    attestation_bytes: int = 4900
    attestation_us: float = 2006.0
    gossip_overhead_bytes: int = 393
    ihave_id_bytes: int = 34
    payload_bytes: int = 0
    offer_bytes: int = 395
    claim_bytes: int = 293
    receipt_bytes: int = 545
    feedback_bytes: int = 286
    heartbeat_bytes: int = 268
    audit_request_bytes: int = 64
    audit_answer_work_bytes: int = 1773
    audit_answer_feedback_bytes: int = 1155
    audit_answer_level_bytes: float = 79.7
    digest_us: float = 95.9
    digest_row_us: float = 10.25
    audit_us: float = 495.4
    record_us: float = 92.1
    fold_row_us: float = 9.11
    gossip_target_bytes_s: float = 1_000_000.0
    verify_target_share: float = 0.10

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CostModel:
        """Build and validate a ``[digests]`` table (raises ConfigError)."""
        where = "scenario [digests]"
        check_keys(where, d, [f.name for f in dataclasses.fields(cls)])
        out: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in d:
                continue
            v = d[f.name]
            if isinstance(f.default, bool):
                out[f.name] = check_bool(where, f.name, v)
            elif isinstance(f.default, int):
                at_least_one = ("mesh_degree", "gossip_window", "heartbeats_per_epoch")
                hi = 64 if f.name in (*at_least_one, "ihave_peers") else 10**9
                hi = 10**6 if f.name == "attest_every_epochs" else hi
                lo = 1 if f.name in at_least_one else 0
                out[f.name] = check_int(where, f.name, v, lo, hi)
            else:
                hi = 1.0 if f.name == "verify_target_share" else 1e12
                out[f.name] = check_float(where, f.name, v, 0.0, hi)
        return cls(**out)


# -- digest sizes: the real encoder's fixed parts plus CBOR integer widths ----------------


def uint_len(v: np.ndarray) -> np.ndarray:
    """Bytes of each non-negative integer as a CBOR unsigned integer (head included)."""
    v = np.asarray(v, np.int64)
    return np.where(
        v < 24, 1, np.where(v < 256, 2, np.where(v < 65536, 3, np.where(v < 2**32, 5, 9)))
    ).astype(np.int64)


def _head(n: int) -> int:
    """Bytes of a CBOR head carrying the length ``n`` (arrays, byte strings)."""
    return int(uint_len(np.array([n]))[0])


@dataclasses.dataclass(frozen=True)
class DigestSizes:
    """Fixed parts of an encoded digest (bytes), measured on the real encoder.

    ``envelope = env + head(body) + body``; ``body = fixed + widths(epoch, part, parts,
    leaf_count, expires) + head(rows) + sum(row)``; ``row = row_fixed + widths(counts)``.
    A batch (``span`` > 1, work or feedback) adds ``span_extra`` to its body and
    ``offset_extra`` to each row of a later epoch (offsets below 24).
    """

    env: int
    fixed: int
    row_fixed: int
    span_extra: int = 0
    offset_extra: int = 0


def _peer(i: int) -> tuple[nacl.signing.SigningKey, str]:
    key = nacl.signing.SigningKey(hashlib.sha256(b"repp2p/sim/size-calibration/%d" % i).digest())
    return key, peer_id_from_public_key(bytes(key.verify_key))


def _body_len(data: bytes) -> int:
    return len(cbor2.loads(data)["body"])


@functools.lru_cache(maxsize=2)
def digest_sizes(kind: str) -> DigestSizes:
    """The fixed parts of a ``"work"`` or ``"feedback"`` digest, from real encodings of an
    empty part and a one-row part (counts below 24)."""
    key, _me = _peer(0)
    _k, other = _peer(1)
    empty = _digest(kind, [], 0)
    data0 = encode(empty, key)
    body0 = _body_len(data0)
    env = len(data0) - body0 - _head(body0)
    widths0 = 5 + 1 + 1 + 1 + 5  # epoch, part, parts, leaf_count, expires
    fixed = body0 - widths0 - _head(0)
    row_counts = (1, 1, 0, 0) if kind == "work" else (1, 0, 0, 0, 120)
    one = _digest(kind, [(other, row_counts)], 1)
    body1 = _body_len(encode(one, key))
    row_fixed = body1 - body0 - int(uint_len(np.array(row_counts)).sum())
    span_extra = _body_len(encode(_digest(kind, [(other, row_counts)], 1, span=2), key)) - body1
    later = _digest(kind, [(other, row_counts)], 1, span=2, offset=1)
    offset_extra = _body_len(encode(later, key)) - body1 - span_extra
    return DigestSizes(env, fixed, row_fixed, span_extra, offset_extra)


def _digest(
    kind: str,
    rows: list[tuple[str, tuple[int, ...]]],
    leaves: int,
    span: int = 1,
    offset: int = 0,
):
    root = EMPTY_MERKLE_ROOT if leaves == 0 else hashlib.sha256(b"root").digest()
    if kind == "work":
        wrows = tuple(WorkRow(p, c[0], c[1], c[2], c[3], offset) for p, c in rows)
        return WorkDigest(
            epoch=LIVE_EPOCH,
            part=0,
            parts=1,
            rows=wrows,
            leaf_count=leaves,
            merkle_root=root,
            seq=0,
            expires=LIVE_EXPIRES,
            span=span,
        )
    frows = tuple(FeedbackRow(p, c[0], c[1], c[2], c[3], c[4], offset) for p, c in rows)
    return FeedbackDigest(
        epoch=LIVE_EPOCH,
        part=0,
        parts=1,
        rows=frows,
        leaf_count=leaves,
        merkle_root=root,
        seq=0,
        expires=LIVE_EXPIRES,
        span=span,
    )


def envelope_sizes(
    kind: str,
    row_bytes: np.ndarray,
    rows: np.ndarray,
    leaves: np.ndarray,
    part: np.ndarray,
    parts: np.ndarray,
    span: int = 1,
) -> np.ndarray:
    """Encoded size of digest parts (arrays, one entry per part): ``row_bytes`` is the sum
    of each part's row sizes (:func:`row_bytes`, with ``offset_extra`` for a batch's rows
    of later epochs); ``span`` > 1 (a batch) adds the ``span`` field."""
    s = digest_sizes(kind)
    widths = 5 + uint_len(part) + uint_len(parts) + uint_len(leaves) + 5
    body = s.fixed + widths + uint_len(rows) + np.asarray(row_bytes, np.int64)
    if span > 1:
        body = body + s.span_extra
    return s.env + uint_len(body) + body


def row_bytes(kind: str, counts: np.ndarray) -> np.ndarray:
    """Encoded size of each row; ``counts`` is rows x fields (work: claims, receipts,
    timeouts, failures; feedback: ok, wrong, timeout, bad_proof, latency_sum_ms)."""
    counts = np.asarray(counts, np.int64).reshape(len(counts), -1)
    return digest_sizes(kind).row_fixed + uint_len(counts).sum(axis=1)


# -- one epoch -----------------------------------------------------------------------------


def _stats(values: np.ndarray) -> dict[str, float]:
    if not len(values):
        return {"mean": 0.0, "p50": 0.0, "p99": 0.0, "max": 0.0}
    v = np.asarray(values, np.float64)
    p50, p99 = np.percentile(v, [50, 99])
    return {"mean": float(v.mean()), "p50": float(p50), "p99": float(p99), "max": float(v.max())}


@dataclasses.dataclass
class EpochCosts:
    """What one epoch's tasks cost each peer (arrays over all peers: clients, then nodes)
    and the epoch's digest and audit counts."""

    sent: dict[str, np.ndarray]  # bytes by channel: gossip, tasks, audits
    recv: dict[str, np.ndarray]
    records: np.ndarray  # records (digests included) verified
    cpu: dict[str, np.ndarray]  # CPU microseconds: digests, audits, records, fold
    counts: dict[str, float]


class DigestFlow:
    """Follows each epoch's digests, audits and costs for one simulation.

    Args:
        model: the ``[digests]`` table.
        params: the network's digest schedule (``[digest_params]``).
        clients: number of clients (peer indices ``0 .. clients - 1``; node ``i`` is peer
            ``clients + i``).
        epoch_s: seconds per epoch.
        seed: the run's seed (digest IDs and audit entropy derive from it).
        rng: the simulation's digest stream (auditor draws, faulty leaf positions).
    """

    def __init__(
        self,
        model: CostModel,
        params: DigestParams,
        clients: int,
        epoch_s: int,
        seed: int,
        rng: np.random.Generator,
        *,
        reattest_period_s: int = 3600,
    ) -> None:
        self.m, self.p, self.c, self.epoch_s, self.rng = model, params, clients, epoch_s, rng
        #: epochs between a node's Attestations (CostModel.attest_every_epochs, 0: derived)
        self.attest_every = model.attest_every_epochs or -(-reattest_period_s // epoch_s)
        self.seed = seed
        self.epochs: list[dict[str, Any]] = []  # per-epoch summaries
        self.faulty = 0
        self.caught = 0
        self.expected = 0.0
        self.first_caught: dict[int, int] = {}  # node -> epoch of its first caught digest
        self.first_faulty: dict[int, int] = {}
        # a client's FeedbackDigest covers up to feedback_max_epochs epochs (a batch): the
        # feedback columns of the last that many epochs, each with its epoch
        self.batch = params.feedback_max_epochs
        self._feedback: deque[tuple[np.ndarray, ...]] = deque(maxlen=self.batch)
        # a node's WorkDigest likewise covers up to work_max_epochs epochs
        self.work_batch = params.work_max_epochs
        self._work: deque[tuple[np.ndarray, ...]] = deque(maxlen=self.work_batch)

    # -- digests of one epoch --------------------------------------------------------------
    def epoch(
        self,
        e: int,
        n_nodes: int,
        online_nodes: np.ndarray,
        offer_client: np.ndarray,
        offer_base: int,
        claims: tuple[np.ndarray, np.ndarray],
        receipts: tuple[np.ndarray, np.ndarray],
        feedback: tuple[np.ndarray, ...],
        digest_fault: np.ndarray,
        heartbeats: np.ndarray | None = None,
        auditors: np.ndarray | None = None,
    ) -> tuple[EpochCosts, np.ndarray]:
        """Costs of epoch ``e``'s tasks, and the nodes caught misreporting in it.

        Args:
            n_nodes: node identities so far.
            online_nodes: node indices online in ``e`` (they publish a work digest even
                when they claimed nothing, audit, and form the gossip mesh).
            offer_client: the client of each offer of ``e`` (offer id - ``offer_base``).
            claims: (node, offer id) per claim of a task of ``e`` (replicas included).
            receipts: (node, offer id) per receipt.
            feedback: (client, node, offer id, outcome 0 ok / 1 wrong / 2 timeout,
                latency ms) per feedback row.
            digest_fault: per node, the share of its work leaves it misreports.
            heartbeats: node indices that heartbeat in ``e`` (default: every online node;
                with ``heartbeat_period_epochs = H > 1`` about one in ``H`` of them).
            auditors: the online node indices that may audit ``e``'s digests (the live
                rule: attested, no offender at the audit boundary); default every online
                node.
        """
        c = self.c
        peers = c + n_nodes
        cn, co = claims
        rn, ro = receipts
        fc, fn, _fo, fout, flat = feedback
        # work rows: (node, client) pairs with claims / receipts
        wkey = cn * c + offer_client[co - offer_base]
        wpairs, wclaims = np.unique(wkey, return_counts=True)
        rpairs, rcount = np.unique(rn * c + offer_client[ro - offer_base], return_counts=True)
        wrec = np.zeros(len(wpairs), np.int64)
        wrec[np.searchsorted(wpairs, rpairs)] = rcount
        w_counts = np.stack((wclaims, wrec, wclaims - wrec, np.zeros_like(wrec)), axis=1)
        # the pair rows folded per epoch: this epoch's pairs, whichever digest carries them
        fold_pairs = len(np.union1d(wpairs % c * n_nodes + wpairs // c, fc * n_nodes + fn))
        # work batches of kw epochs: the same rule for nodes (window shift: node index %
        # kw); a node whose window ends at e publishes one digest of the window's rows (an
        # empty one when it claimed nothing), each row keeping its epoch as an offset
        kw = self.work_batch
        self._work.append((wpairs, w_counts, np.full(len(wpairs), e, np.int64)))
        w_publishers = online_nodes
        w_later = None
        if kw > 1:
            wpairs = np.concatenate([x[0] for x in self._work])
            w_counts = np.concatenate([x[1] for x in self._work])
            we = np.concatenate([x[2] for x in self._work])
            turn = (e - wpairs // c) % kw == kw - 1
            wpairs, w_counts, we = wpairs[turn], w_counts[turn], we[turn]
            w_later = (we != e - kw + 1) * digest_sizes("work").offset_extra
            w_publishers = online_nodes[(e - online_nodes) % kw == kw - 1]
        # feedback rows: (client, node, epoch) with ok / wrong / timeout counts, latency
        # sums. With batches of k epochs (the live rule, repp2p.node.digests): each client's
        # epochs fall in aligned windows of k, shifted per client (here: client index % k);
        # at the seal of a window's last epoch the client publishes one digest of the
        # window's rows, each row keeping its epoch (its offset in the window). The early
        # flush of a batch that fills max_rows rows is not modelled (no client of the
        # 10,000-node scenario comes near it).
        k = self.batch
        self._feedback.append((fc, fn, fout, flat, np.full(len(fc), e, np.int64)))
        offset = np.zeros(len(fc), np.int64)
        if k > 1:
            fc, fn, fout, flat, fe = (np.concatenate(x) for x in zip(*self._feedback, strict=True))
            turn = (e - fc) % k == k - 1  # e is the last epoch of the client's window
            fc, fn, fout, flat, fe = fc[turn], fn[turn], fout[turn], flat[turn], fe[turn]
            offset = fe - (e - k + 1)
        fpairs, finv = np.unique((fc * n_nodes + fn) * k + offset, return_inverse=True)
        f_counts = np.zeros((len(fpairs), 5), np.int64)
        for code in (0, 1, 2):
            np.add.at(f_counts[:, code], finv[fout == code], 1)
        np.add.at(f_counts[:, 4], finv, flat)
        f_later = (fpairs % k > 0) * digest_sizes("feedback").offset_extra
        fpairs = fpairs // k  # (client, node) of each row, one row per epoch
        parts = np.concatenate(
            (
                self._parts(
                    "work",
                    wpairs // c + c,
                    w_counts,
                    w_counts[:, 0],
                    w_publishers + c,
                    extra_row_bytes=w_later,
                    span=kw,
                ),
                self._parts(
                    "feedback",
                    fpairs // n_nodes,
                    f_counts,
                    f_counts[:, :4].sum(1),
                    extra_row_bytes=f_later,
                    span=k,
                ),
            ),
            axis=1,
        )
        pub, is_work, drows, dleaves, dbytes = parts
        is_work = is_work.astype(bool)
        costs = EpochCosts(
            sent={k: np.zeros(peers) for k in ("gossip", "tasks", "audits")},
            recv={k: np.zeros(peers) for k in ("gossip", "tasks", "audits")},
            records=np.zeros(peers),
            cpu={k: np.zeros(peers) for k in ("digests", "audits", "records", "fold")},
            counts={},
        )
        pairs = fold_pairs
        beats = online_nodes if heartbeats is None else heartbeats
        self._gossip(costs, online_nodes + c, beats + c, pub, is_work, drows, dbytes, pairs)
        self._tasks(
            costs,
            offer_client[co - offer_base],
            cn + c,
            offer_client[ro - offer_base],
            rn + c,
            fc,
            fn + c,
        )
        # a batch is audited with audit_samples per epoch it covers (DigestParams.samples_for);
        # the first batches of a run cover the epochs since its start
        w_samples = self.p.samples_for(len(self._work))
        f_samples = self.p.samples_for(len(self._feedback))
        samples = np.where(is_work, w_samples, f_samples)
        pool = online_nodes if auditors is None else auditors
        challenges = self._audits(costs, pool + c, pub, is_work, dleaves, samples)
        caught_nodes = self._faults(e, pub, is_work, dleaves, digest_fault, c, w_samples)
        costs.counts.update(
            {
                "work_digests": int(is_work.sum()),
                "feedback_digests": int((~is_work).sum()),
                "digest_bytes": float(dbytes.sum()),
                "work_rows": float(drows[is_work].sum()),
                "feedback_rows": float(drows[~is_work].sum()),
                "work_leaves": float(dleaves[is_work].sum()),
                "feedback_leaves": float(dleaves[~is_work].sum()),
                "heartbeats": len(beats) * self.m.heartbeats_per_epoch,  # records gossiped
                "pairs": pairs,
                "audit_challenges": challenges,
            }
        )
        return costs, caught_nodes

    def _parts(
        self,
        kind: str,
        pub: np.ndarray,
        counts: np.ndarray,
        leaves_col: np.ndarray,
        publishers: np.ndarray | None = None,
        extra_row_bytes: np.ndarray | None = None,
        span: int = 1,
    ) -> np.ndarray:
        """The digest parts of one kind from its rows: a 5 x parts array of publisher,
        is-work, rows, leaves and encoded bytes.

        ``pub`` is each row's publisher (a global peer index); ``publishers`` adds those
        that publish an empty part. A party with more than 256 rows splits them over
        ``ceil(rows / 256)`` parts, rows and leaves spread evenly (the real split hashes
        peer IDs; a part's size then differs by a few rows).
        """
        rb = row_bytes(kind, counts)
        if extra_row_bytes is not None:
            rb = rb + extra_row_bytes
        owners = np.unique(pub) if publishers is None else np.union1d(pub, publishers)
        idx = np.searchsorted(owners, pub)
        nrows = np.bincount(idx, minlength=len(owners))
        bytes_ = np.bincount(idx, weights=rb, minlength=len(owners)).astype(np.int64)
        leaves = np.bincount(idx, weights=leaves_col, minlength=len(owners)).astype(np.int64)
        k = np.maximum(1, -(-nrows // DIGEST_MAX_ROWS))
        j = np.arange(int(k.sum())) - np.repeat(np.cumsum(k) - k, k)
        kk = np.repeat(k, k)
        r, lv, b = (np.repeat(x, k) for x in (nrows, leaves, bytes_))
        rj = r // kk + (j < r % kk)
        lj = lv // kk + (j < lv % kk)
        bj = b * rj // np.maximum(r, 1)
        size = envelope_sizes(kind, bj, rj, lj, j, kk, span)
        work = np.full(len(rj), int(kind == "work"))
        return np.stack((np.repeat(owners, k), work, rj, lj, size)).astype(np.int64)

    def _gossip(
        self,
        costs: EpochCosts,
        nodes: np.ndarray,
        beats: np.ndarray,
        pub: np.ndarray,
        is_work: np.ndarray,
        drows: np.ndarray,
        dbytes: np.ndarray,
        pairs: int,
    ) -> None:
        """Digests, heartbeats and attestations on GossipSub.

        Every subscriber (the online ``nodes``, and clients) receives each message about
        ``mesh_degree - 1`` times and forwards it as often; a publisher floods its own to
        ``flood_peers``; IHAVE advertises each message ID. ``beats``: the nodes that
        heartbeat this epoch. Each subscriber verifies each message once (duplicates are
        dropped by message ID before validation) and folds every pair row."""
        m, c = self.m, self.c
        peers = len(costs.records)
        ov = m.gossip_overhead_bytes
        # each heartbeating node sends heartbeats_per_epoch records (same slot, newer seq)
        hb = np.bincount(beats, minlength=peers) * m.heartbeats_per_epoch
        n_hb = len(beats) * m.heartbeats_per_epoch
        own_d = np.bincount(pub, weights=dbytes + ov, minlength=peers)
        # each online node re-attests once every attest_every_epochs epochs (its share of
        # an epoch's attestations: a steady state, whatever epoch it falls in)
        att_share = np.zeros(peers)
        att_share[nodes] = 1.0 / self.attest_every
        n_att = len(nodes) / self.attest_every
        own = own_d + hb * (m.heartbeat_bytes + ov) + att_share * (m.attestation_bytes + ov)
        sub = np.zeros(peers, bool)
        sub[nodes] = True
        if m.clients_follow_gossip:
            sub[:c] = True
        copies = max(m.mesh_degree - 1, 0)
        messages = len(dbytes) + n_hb + n_att
        ihave = m.ihave_peers * m.gossip_window * messages * m.ihave_id_bytes
        work_b = float(dbytes[is_work].sum() + is_work.sum() * ov)
        fb_b = float(dbytes[~is_work].sum() + (~is_work).sum() * ov)
        hb_b = float(n_hb * (m.heartbeat_bytes + ov))
        att_b = float(n_att * (m.attestation_bytes + ov))
        relay = copies * (work_b + fb_b + hb_b + att_b - own)
        costs.recv["gossip"] = np.where(sub, relay + ihave, 0.0)
        costs.sent["gossip"] = np.where(sub, relay + ihave, 0.0) + m.flood_peers * own
        # what one subscriber receives, by kind (bytes per epoch; its own messages aside)
        costs.counts.update(
            {
                "gossip_work_digests": copies * work_b,
                "gossip_feedback_digests": copies * fb_b,
                "gossip_heartbeats": copies * hb_b,
                "gossip_attestations": copies * att_b,
                "gossip_ihave": float(ihave),
                "messages": messages,
            }
        )
        d_us = m.digest_us * len(dbytes) + m.digest_row_us * float(drows.sum())
        own_us = np.bincount(pub, weights=m.digest_us + m.digest_row_us * drows, minlength=peers)
        costs.cpu["digests"] = np.where(sub, d_us - own_us, 0.0)
        costs.cpu["records"] = np.where(
            sub, (n_hb - hb) * m.record_us + (n_att - att_share) * m.attestation_us, 0.0
        )
        own_msgs = np.bincount(pub, minlength=peers) + hb + att_share
        costs.records += np.where(sub, messages - own_msgs, 0)
        costs.cpu["fold"] = np.where(sub, pairs * m.fold_row_us, 0.0)

    def _tasks(
        self,
        costs: EpochCosts,
        claim_client: np.ndarray,
        claim_node: np.ndarray,
        rcpt_client: np.ndarray,
        rcpt_node: np.ndarray,
        fb_client: np.ndarray,
        fb_node: np.ndarray,
    ) -> None:
        """Per-task records between a task's parties only: the request with the offer (and
        half the payload) to each node that claims, its claim and receipt (and the
        output) back, the client's feedback to the node. Each side verifies what it
        receives."""
        m = self.m
        req = m.offer_bytes + m.payload_bytes // 2
        res = m.receipt_bytes + m.payload_bytes - m.payload_bytes // 2
        for frm, to, size in (
            (claim_client, claim_node, req),
            (claim_node, claim_client, m.claim_bytes),
            (rcpt_node, rcpt_client, res),
            (fb_client, fb_node, m.feedback_bytes),
        ):
            np.add.at(costs.sent["tasks"], frm, size)
            np.add.at(costs.recv["tasks"], to, size)
            verified = np.bincount(to, minlength=len(costs.records))
            costs.records += verified
            costs.cpu["records"] += verified * m.record_us

    def _audits(
        self,
        costs: EpochCosts,
        nodes: np.ndarray,
        pub: np.ndarray,
        is_work: np.ndarray,
        dleaves: np.ndarray,
        samples: np.ndarray,
    ) -> int:
        """Each non-empty digest part: ``min(samples, leaves)`` challenges (``samples``:
        per part, ``DigestParams.samples_for`` its span) from each of
        ``auditors_per_digest`` auditors drawn uniformly among ``nodes`` (the online nodes
        that may audit) other than the publisher. Returns the challenges sent."""
        m = self.m
        s, a = samples, self.p.auditors_per_digest
        audited = np.flatnonzero(np.minimum(dleaves, s) > 0)
        n_on = len(nodes)
        if n_on < 2 or not len(audited):
            return 0
        k = np.minimum(dleaves[audited], s[audited])
        base = np.where(is_work[audited], m.audit_answer_work_bytes, m.audit_answer_feedback_bytes)
        answer = base + m.audit_answer_level_bytes * np.ceil(np.log2(dleaves[audited]))
        recs = np.where(is_work[audited], 3, 2)  # offer, claim, receipt; offer, feedback
        pos = np.full(len(costs.records), -1, np.int64)
        pos[nodes] = np.arange(n_on)
        mine = pos[pub[audited]]
        publisher = pub[audited]
        taken = np.zeros((0, len(audited)), np.int64)
        for _ in range(min(a, n_on - 1)):
            # uniform over the online nodes that are not the publisher (nor drawn yet)
            excluded = np.vstack((taken, mine[None, :]))
            free = n_on - (excluded >= 0).sum(axis=0)
            draw = self.rng.integers(0, free)
            for row in np.sort(excluded, axis=0):
                draw = draw + ((row >= 0) & (draw >= row))
            taken = np.vstack((taken, draw[None, :]))
            auditor = nodes[draw]
            np.add.at(costs.sent["audits"], auditor, k * m.audit_request_bytes)
            np.add.at(costs.recv["audits"], publisher, k * m.audit_request_bytes)
            np.add.at(costs.recv["audits"], auditor, k * answer)
            np.add.at(costs.sent["audits"], publisher, k * answer)
            np.add.at(costs.cpu["audits"], auditor, k * m.audit_us)
            np.add.at(costs.records, auditor, k * recs)
        return int(k.sum()) * min(a, n_on - 1)

    def _faults(
        self,
        e: int,
        pub: np.ndarray,
        is_work: np.ndarray,
        leaves: np.ndarray,
        digest_fault: np.ndarray,
        c: int,
        s: int,
    ) -> np.ndarray:
        """Draw the misreported leaves of cheating nodes' work digests and audit them with
        the real core's challenge draw (``s`` samples per work digest); returns the nodes
        caught."""
        nodes = pub - c
        cheat = np.flatnonzero(is_work & (leaves > 0))
        cheat = cheat[digest_fault[nodes[cheat]] > 0]
        caught = []
        if not len(cheat):
            return np.zeros(0, np.int64)
        # The entropy stands for the IDs of the digests of e + 1 (docs/digests.md): bytes
        # the publisher cannot steer; simulated publishers do not grind their digests.
        entropy = hashlib.sha256(b"repp2p/sim/audit-entropy\0" + self.seed.to_bytes(8, "big"))
        seed = audit_seed(e, self.p.grace_epochs, entropy.digest())
        for i in cheat:
            node, n = int(nodes[i]), int(leaves[i])
            b = max(1, math.ceil(float(digest_fault[node]) * n))
            bad = set(self.rng.choice(n, size=min(b, n), replace=False).tolist())
            did = hashlib.sha256(
                b"repp2p/sim/digest\0"
                + self.seed.to_bytes(8, "big")
                + node.to_bytes(8, "big")
                + e.to_bytes(8, "big")
                + int(i).to_bytes(8, "big")
            ).digest()
            hit = bad.intersection(challenge_indices(seed, did, n, s))
            self.faulty += 1
            self.expected += float(detection_probability(n, len(bad), s))
            self.first_faulty.setdefault(node, e)
            if hit:
                self.caught += 1
                caught.append(node)
                self.first_caught.setdefault(node, e)
        return np.unique(np.array(caught, np.int64))

    # -- summaries -------------------------------------------------------------------------
    def record(self, e: int, costs: EpochCosts, online_nodes: np.ndarray) -> dict[str, Any]:
        """Per-epoch figures (``metrics.csv`` columns) and the per-peer distribution kept
        for the summary."""
        c, secs = self.c, float(self.epoch_s)
        nodes = online_nodes + c
        gossip = np.maximum(costs.sent["gossip"], costs.recv["gossip"]) / secs
        sent = sum(costs.sent.values()) / secs
        recv = sum(costs.recv.values()) / secs
        dshare = (costs.cpu["digests"] + costs.cpu["audits"]) / (secs * 1e6)
        share = sum(costs.cpu.values()) / (secs * 1e6)
        per = {
            "gossip_bytes_s": gossip,
            "sent_bytes_s": sent,
            "recv_bytes_s": recv,
            "records_verified": costs.records,
            "digest_verify_share": dshare,
            "verify_share": share,
        }
        stats = {
            "node": {k: _stats(v[nodes]) for k, v in per.items()},
            "client": {k: _stats(v[:c]) for k, v in per.items()},
        }
        self.epochs.append({"epoch": e, "counts": costs.counts, "stats": stats})
        cnt = costs.counts
        row = {
            "work_digests": cnt["work_digests"],
            "feedback_digests": cnt["feedback_digests"],
            "digest_bytes_mean": cnt["digest_bytes"]
            / max(cnt["work_digests"] + cnt["feedback_digests"], 1),
            "audit_challenges": cnt["audit_challenges"],
        }
        for who in ("node", "client"):
            st = stats[who]
            row[f"{who}_gossip_bytes_s_mean"] = st["gossip_bytes_s"]["mean"]
            row[f"{who}_gossip_bytes_s_p99"] = st["gossip_bytes_s"]["p99"]
            row[f"{who}_sent_bytes_s_p99"] = st["sent_bytes_s"]["p99"]
            row[f"{who}_recv_bytes_s_p99"] = st["recv_bytes_s"]["p99"]
            row[f"{who}_records_verified_mean"] = st["records_verified"]["mean"]
            row[f"{who}_digest_verify_share_p99"] = st["digest_verify_share"]["p99"]
            row[f"{who}_verify_share_p99"] = st["verify_share"]["p99"]
        return row

    def summary(self, cheaters: int) -> dict[str, Any]:
        """The ``digests`` section of ``summary.json``."""
        m = self.m
        ep = self.epochs[max(self.batch, self.work_batch) - 1 :] or self.epochs
        n = max(len(ep), 1)

        def mean_of(who: str, key: str) -> dict[str, float]:
            return {
                s: sum(x["stats"][who][key][s] for x in ep) / n
                for s in ("mean", "p50", "p99", "max")
            }

        keys = (
            "gossip_bytes_s",
            "sent_bytes_s",
            "recv_bytes_s",
            "records_verified",
            "digest_verify_share",
            "verify_share",
        )
        per_peer = {who: {k: mean_of(who, k) for k in keys} for who in ("node", "client")}
        counts = {k: sum(x["counts"][k] for x in ep) / n for k in (ep[0]["counts"] if ep else {})}
        wd, fd = counts.get("work_digests", 0), counts.get("feedback_digests", 0)
        gossip = per_peer["node"]["gossip_bytes_s"]["p99"]
        share = per_peer["node"]["digest_verify_share"]["p99"]
        delays = [self.first_caught[k] - self.first_faulty[k] for k in self.first_caught]
        return {
            "per_epoch": counts,
            "rows_per_work_digest": counts.get("work_rows", 0) / max(wd, 1),
            "rows_per_feedback_digest": counts.get("feedback_rows", 0) / max(fd, 1),
            "digest_bytes_mean": counts.get("digest_bytes", 0) / max(wd + fd, 1),
            "per_peer": per_peer,
            # what one subscriber receives, by kind (its own messages aside), bytes/s
            "gossip_recv_by_kind_bytes_s": {
                k.removeprefix("gossip_"): counts.get(k, 0.0) / self.epoch_s
                for k in (
                    "gossip_work_digests",
                    "gossip_feedback_digests",
                    "gossip_heartbeats",
                    "gossip_attestations",
                    "gossip_ihave",
                )
            },
            "gossip_bytes_s": gossip,
            "digest_verify_share": share,
            "targets": {
                "gossip_bytes_s": m.gossip_target_bytes_s,
                "gossip_met": gossip <= m.gossip_target_bytes_s,
                "digest_verify_share": m.verify_target_share,
                "verify_met": share <= m.verify_target_share,
            },
            "audits": {
                "samples": self.p.audit_samples,
                # per digest: audit_samples per epoch a batch covers (at most 64)
                "samples_per_work_digest": self.p.samples_for(self.work_batch),
                "samples_per_feedback_digest": self.p.samples_for(self.batch),
                "auditors_per_digest": self.p.auditors_per_digest,
                "faulty_digests": self.faulty,
                "caught_digests": self.caught,
                "observed_detection": self.caught / self.faulty if self.faulty else None,
                "expected_detection": self.expected / self.faulty if self.faulty else None,
                "cheaters": cheaters,
                "cheaters_caught": len(self.first_caught),
                "mean_epochs_to_catch": float(np.mean(delays)) if delays else None,
                "max_epochs_to_catch": int(max(delays)) if delays else None,
            },
            "model": dataclasses.asdict(m),
        }


__all__ = [
    "LIVE_EPOCH",
    "LIVE_EXPIRES",
    "CostModel",
    "DigestFlow",
    "DigestSizes",
    "EpochCosts",
    "digest_sizes",
    "envelope_sizes",
    "row_bytes",
    "uint_len",
]
