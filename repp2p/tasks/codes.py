"""The closed set of ``/repp2p/task/1`` error codes (wire values of ``{"error": ...}``).

Rules of this file: one enum, no logic. The values are the wire strings of
:data:`repp2p.net.task.ERRORS` (a test holds them equal); the task rules speak in members of
:class:`ErrorCode`, the I/O layer writes ``code.value``.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    """Why a node did not serve a request. ``str(code)`` is the wire value."""

    #: malformed frame (the I/O layer's own verdict: no rule here produces it)
    BAD_REQUEST = "bad_request"
    #: the offer fails a validity rule (decode, type, binding, deadline, expiry margin)
    BAD_OFFER = "bad_offer"
    #: this node already took this task
    REPLAYED = "replayed"
    #: the offer names an epoch outside the accepted window
    WRONG_EPOCH = "wrong_epoch"
    #: this node has no claiming rank for the offer in its view
    NOT_ASSIGNED = "not_assigned"
    #: failover: enough better ranks claimed in time
    NOT_MY_TURN = "not_my_turn"
    #: every task slot of the node is busy
    NO_CAPACITY = "no_capacity"
    #: a replica request's disagreeing receipts do not check out (docs/core.md, "Disputes
    #: and escalation"): a client cannot force extra work without a real disagreement
    BAD_DISPUTE = "bad_dispute"
    #: a k = 1 replica request's verdict (the client's signed ``wrong`` Feedback) does not
    #: check out: not the offer owner's, another task's or node's, not ``wrong``, a k >= 2
    #: offer (docs/core.md, "Live escalation at k = 1")
    BAD_VERDICT = "bad_verdict"
    #: a k = 1 replica request from a client whose credibility on the offer's view is below
    #: ``dispute_min_credibility_permille``: a proven slanderer cannot make nodes re-run work
    LOW_CREDIBILITY = "low_credibility"
    #: the node claimed, then the enclave or engine failed (I/O layer's verdict)
    EXECUTION_FAILED = "execution_failed"
    #: the node claimed, then its enclave signed a refusal of the client's own input
    INPUT_REFUSED = "input_refused"


#: the codes node admission (:mod:`repp2p.tasks.admission`, :mod:`repp2p.tasks.escalation`)
#: can decide
REJECT_CODES = frozenset(
    {
        ErrorCode.BAD_OFFER,
        ErrorCode.REPLAYED,
        ErrorCode.WRONG_EPOCH,
        ErrorCode.NOT_ASSIGNED,
        ErrorCode.NOT_MY_TURN,
        ErrorCode.NO_CAPACITY,
        ErrorCode.BAD_DISPUTE,
        ErrorCode.BAD_VERDICT,
        ErrorCode.LOW_CREDIBILITY,
    }
)
