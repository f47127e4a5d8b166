"""The REP ledger: credits as a pure function of the record log.

Public API::

    LedgerParams(...)                                             # frozen, validated
    work_units(evidence, epoch, *, client_trust=None, lost=None) -> array  # backed receipts
    dispute_losses(evidence, table, epoch) -> array               # lost disputes per peer
    slashes_for(state, penalties, losses, params) -> [(peer, reason, amount)]
    settle(state, evidence, table, penalties, *, epoch, params) -> Settlement
    LedgerState().apply(settlement) -> LedgerState                # the balance fold
    replay(records, attested, *, now, epoch_s, params) -> LedgerReport   # node / CLI path
    replay_views(view_of, reconciliation_of, *, first_epoch, current_epoch, digest_lag)
        -> LedgerReport                                           # digest networks
    digest_work_units(reconciliation, evidence, *, client_trust=None, lost=None) -> array

No I/O, no clock, no floats in balances: every peer holding the same records settles the
same integer micro-REP amounts. docs/ledger.md has the rules.
"""

from repp2p.ledger.digest_work import digest_work_units
from repp2p.ledger.params import MICRO, LedgerParams
from repp2p.ledger.replay import DigestView, LedgerReport, replay, replay_views
from repp2p.ledger.settle import (
    LedgerState,
    Settlement,
    dispute_losses,
    settle,
    slashes_for,
    work_units,
)

__all__ = [
    "MICRO",
    "DigestView",
    "LedgerParams",
    "LedgerReport",
    "LedgerState",
    "Settlement",
    "digest_work_units",
    "dispute_losses",
    "replay",
    "replay_views",
    "settle",
    "slashes_for",
    "work_units",
]
