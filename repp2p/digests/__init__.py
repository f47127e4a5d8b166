"""Per-epoch digests: what travels globally in place of every task's records
(docs/digests.md).

A node publishes a signed :class:`~repp2p.records.WorkDigest` per epoch, a client a
:class:`~repp2p.records.FeedbackDigest`; each commits to one Merkle leaf per task. This
package is the pure core around them:

* :mod:`~repp2p.digests.merkle`: RFC 6962 hashing over sorted leaves, inclusion and
  non-inclusion proofs;
* :mod:`~repp2p.digests.leaves`: the leaf encodings and where each leaf must sit;
* :mod:`~repp2p.digests.build`: a party's digests from the records it holds, and the answers
  to audits;
* :mod:`~repp2p.digests.reconcile`: double entry, the (client, node) counts both sides
  support; :mod:`~repp2p.digests.counts`: those as count rows for reputation;
* :mod:`~repp2p.digests.audit`: which leaves are challenged, by whom, and the verdict on an
  answer;
* :mod:`~repp2p.digests.proofs`: offence proofs any peer verifies from signed data alone;
  :mod:`~repp2p.digests.unserved`: the charge an auditor keeps when nobody answered;
* :mod:`~repp2p.digests.params`: when digests are sealed, accepted and audited.

Pure: no I/O, no clock, no randomness.
"""

from repp2p.digests.audit import (
    AuditOutcome,
    AuditResponse,
    AuditVerdict,
    audit_seed,
    auditors,
    challenge_indices,
    detection_probability,
    verify_audit,
)
from repp2p.digests.build import (
    DigestPart,
    absence_brackets,
    build_feedback,
    build_work,
    feedback_digests,
    find_task,
    leaf_proof,
    work_digests,
)
from repp2p.digests.check import Fault
from repp2p.digests.counts import CountRow, count_rows
from repp2p.digests.leaves import FeedbackLeaf, Layout, WorkLeaf, decode_leaf
from repp2p.digests.merkle import EMPTY_ROOT, Bracket, MerkleTree, Opening
from repp2p.digests.proofs import (
    ConflictProof,
    InconsistencyProof,
    MisorderProof,
    Offence,
    OffenceKind,
    OmissionProof,
    conflict_proof,
    decode_proof,
    verify_bytes,
    verify_conflict,
    verify_inconsistency,
    verify_misorder,
    verify_omission,
    verify_proof,
)
from repp2p.digests.reconcile import PairRow, Reconciliation, count_pair, reconcile

__all__ = [
    "EMPTY_ROOT",
    "AuditOutcome",
    "AuditResponse",
    "AuditVerdict",
    "Bracket",
    "ConflictProof",
    "CountRow",
    "DigestPart",
    "Fault",
    "FeedbackLeaf",
    "InconsistencyProof",
    "Layout",
    "MerkleTree",
    "MisorderProof",
    "Offence",
    "OffenceKind",
    "OmissionProof",
    "Opening",
    "PairRow",
    "Reconciliation",
    "WorkLeaf",
    "absence_brackets",
    "audit_seed",
    "auditors",
    "build_feedback",
    "build_work",
    "challenge_indices",
    "conflict_proof",
    "count_pair",
    "count_rows",
    "decode_leaf",
    "decode_proof",
    "detection_probability",
    "feedback_digests",
    "find_task",
    "leaf_proof",
    "reconcile",
    "verify_audit",
    "verify_bytes",
    "verify_conflict",
    "verify_inconsistency",
    "verify_misorder",
    "verify_omission",
    "verify_proof",
    "work_digests",
]
