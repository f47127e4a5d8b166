"""Reputation: a pure function of accepted records and ``now`` (docs/core.md).

Public API::

    collect(records, attested, *, now, assignments=None) -> Evidence  # canonical columns
    compute(evidence, *, now, epoch_s, params=None) -> ReputationTable
    ReputationTable.get(peer_id) -> NodeReputation           # score, permille, components
    PenaltyBook().step(table, params) -> PenaltyBook         # phase-out and hard penalties
    ReputationParams(...)                                    # frozen, validated on build
    AttestedNode(...)                                        # the caller's attestation verdict

No I/O, no clock, no global randomness: the live node and the simulator call the same code.
"""

from repp2p.reputation.evidence import (
    OUTCOME_CODES,
    AcceptedRecord,
    AssignedRanks,
    AttestedNode,
    Evidence,
    Offence,
    collect,
)
from repp2p.reputation.params import ReputationParams
from repp2p.reputation.penalties import PenaltyBook, PenaltyEntry
from repp2p.reputation.scores import (
    COMPONENTS,
    NodeReputation,
    ReputationTable,
    compute,
    eigentrust,
)

__all__ = [
    "COMPONENTS",
    "OUTCOME_CODES",
    "AcceptedRecord",
    "AssignedRanks",
    "AttestedNode",
    "Evidence",
    "NodeReputation",
    "Offence",
    "PenaltyBook",
    "PenaltyEntry",
    "ReputationParams",
    "ReputationTable",
    "collect",
    "compute",
    "eigentrust",
]
