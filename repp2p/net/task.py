"""``/repp2p/task/1``: a client hands a sealed input to the node it matched, gets the result.

One CBOR frame each way per request (framing as in :mod:`repp2p.net.framing`). A stream
carries requests in turn: after reading a response the client may send its next request on
the same stream (so a busy client pays stream set-up and protocol negotiation once per
node, not once per task) or close it; the node answers requests in order and closes a
stream on which no request arrives for :data:`IDLE_TIMEOUT_S`, or after a malformed one
(frames are scanned before they are decoded: :func:`decode_frame`). One peer has at most
:data:`MAX_STREAMS_PER_PEER` task streams open (a further one is reset) and
:data:`MAX_REQUESTS_PER_PEER` requests in progress; a further request is read once one
ends::

    client -> {"offer": bytes, "sealed": bytes, "input_sig": bytes, "releases"?: [bytes, ...],
               "dispute"?: [bytes, ...], "verdict"?: bytes}
        offer: the client-signed TaskOffer envelope; sealed: the input sealed to the node's
        attested X25519 key (repp2p.tee.seal_input); input_sig: the offer signer's 64-byte
        signature over the sealed input's commitment (repp2p.records.sign_sealed_input;
        a node claims nothing without it, and checks it before any costlier rule: offers
        are public); releases: up to 16 of the owner's
        timeout/bad_proof Feedback envelopes on better-ranked claimants that failed;
        dispute: a replica request for a disputed task, 1..80 Receipt envelopes that
        disagree (repp2p.tasks.check_dispute decides; docs/core.md "Disputes and
        escalation"); verdict: k = 1 only, the offer owner's signed ``wrong`` Feedback on
        the node that ran it, which makes agreeing receipts (or one) a replica request
        (repp2p.tasks.check_credibility, check_verdict; docs/core.md "Live escalation at
        k = 1")
    node   -> {"ok": true, "claim": bytes, "receipt": bytes, "output": bytes}
        claim: the node-signed Claim envelope; receipt: the node-signed Receipt envelope
        carrying the enclave signature (both also spread through the node's feed,
        /repp2p/feed/1, and gossiped only with ``[feed] gossip_task_records = true``);
        output: the output encrypted to the offer's result key
    node   -> {"ok": false, "error": text, "detail": text}
    node   -> {"ok": false, "error": "input_refused", "detail": text, "refusal": bytes}
        refusal: the node-signed Refusal envelope carrying the enclave signature: the
        client's own input made the task fail (repp2p.records.refusal)

    client -> {"records": [bytes, ...]}
        hand-over, after a task: up to 16 of the client's Feedback envelopes on tasks this
        node served (on itself and on the tasks' other nodes; one task's or several's: a
        client sends the feedback of tasks that finished while a hand-over was in flight in
        its next one), so they enter the node's feed (repp2p.net.feed) and spread; the node
        keeps only the task owner's feedback on tasks it claimed, on nodes that may have
        run them (repp2p.node.serving.TaskServer.take_records); the rest is ignored
    node   -> {"ok": true, "stored": uint}

Errors: ``bad_request``, ``bad_offer``, ``replayed``, ``wrong_epoch``, ``not_assigned``
(this node has no claiming rank for the offer in its view), ``not_my_turn`` (failover: a
better rank claimed in time), ``no_capacity``, ``bad_dispute`` (a replica request's receipts
do not show a real disagreement), ``bad_verdict`` (a k = 1 replica request's verdict does not
check out), ``low_credibility`` (its client's credibility is below the bar),
``execution_failed``, ``input_refused``.
The client checks everything it receives against its own view and the node's attestation;
a node's word is never trusted.
"""

from __future__ import annotations

from typing import Any

import cbor2

from repp2p.errors import ProtocolError
from repp2p.net import framing

PROTOCOL = "/repp2p/task/1"
#: requests: an offer (<= 4 KiB) and a sealed input (engines cap inputs at 1 MiB).
MAX_REQUEST = 2 * 1024 * 1024
#: responses: claim + receipt records and an encrypted output (engines cap outputs at 1 MiB).
MAX_RESPONSE = 2 * 1024 * 1024
#: the node closes a task stream after this long without the start of a request...
IDLE_TIMEOUT_S = 60.0
#: ...and once a request has begun, it must be complete within this
REQUEST_TIMEOUT_S = 10.0
#: clients stop reusing a stream idle this long, well before the node closes it.
CLIENT_IDLE_S = 20.0
#: task requests one peer may have in progress at once (from a request's first byte to its
#: response written: read, waiting for a failover turn, running); a further request waits,
#: unread, for one of them to end, at most IDLE_TIMEOUT_S (then its stream is closed). An
#: honest client sends one request per stream and a node runs ``capacity`` tasks at once.
MAX_REQUESTS_PER_PEER = 16
#: task streams one peer may have open at a node at once (each costs the node a handler
#: for up to IDLE_TIMEOUT_S even if it never carries a byte); a further one is reset at
#: once. An honest client keeps at most 8 idle streams per node, plus one per request in
#: flight.
MAX_STREAMS_PER_PEER = 64

#: CBOR data items (each map key and value, list element, the frame itself) a request may
#: hold: an honest one holds at most 1 + 2 x 7 + 16 releases + 80 receipts + 80 claims = 191
MAX_REQUEST_ITEMS = 256
#: ... and a response (at most 1 + 2 x 5 = 11)
MAX_RESPONSE_ITEMS = 16
#: containers (maps, lists) nested in a frame: a request's map holds lists of byte strings
MAX_NESTING = 2

ERRORS = frozenset(
    {
        "bad_request",
        "bad_offer",
        "replayed",
        "wrong_epoch",
        "not_assigned",
        "not_my_turn",
        "no_capacity",
        "bad_dispute",
        "bad_verdict",
        "low_credibility",
        "execution_failed",
        "input_refused",
    }
)
#: the error whose response carries the node's signed ``Refusal`` envelope
INPUT_REFUSED = "input_refused"
#: size of the client's signature over its sealed input's commitment
INPUT_SIG_SIZE = 64


def decode_frame(payload: bytes, *, max_items: int) -> Any:
    """A task frame's payload decoded, or ProtocolError.

    Its CBOR is scanned before it is decoded (:func:`check_items`): a frame of 2 MiB
    holding two million one-byte items (empty maps, say) made ``cbor2`` build ~150 MB of
    Python objects (0.1-0.4 s of the event loop), for a message that costs its sender
    nothing, once per stream it opens. A frame with more than ``max_items`` items,
    containers nested deeper than :data:`MAX_NESTING`, tags, indefinite lengths or
    trailing bytes is refused unread: the task protocol's frames hold none of these.
    """
    check_items(payload, max_items)
    try:
        return cbor2.loads(payload, allow_duplicate_keys=False, max_depth=MAX_NESTING + 1)
    except Exception as exc:
        raise ProtocolError(f"frame is not CBOR: {exc}") from None


def check_items(data: bytes, max_items: int) -> None:
    """ProtocolError unless ``data`` is exactly one CBOR item of at most ``max_items``
    items, no container nested deeper than :data:`MAX_NESTING`, with definite lengths only
    and no tags (:func:`repp2p.net.framing.check_items`)."""
    framing.check_items(data, max_items, MAX_NESTING)


def parse_request(obj: Any) -> tuple[bytes, bytes]:
    """``(offer, sealed)`` of a request frame, or ProtocolError."""
    if (
        type(obj) is not dict
        or obj.keys() - {"input_sig"} != {"offer", "sealed"}
        or type(obj["offer"]) is not bytes
        or type(obj["sealed"]) is not bytes
    ):
        raise ProtocolError("bad task request")
    input_signature(obj)
    return obj["offer"], obj["sealed"]


def input_signature(obj: dict[str, Any]) -> bytes | None:
    """The client's ``input_sig`` of a request frame, None when absent, or ProtocolError."""
    sig = obj.get("input_sig")
    if sig is not None and (type(sig) is not bytes or len(sig) != INPUT_SIG_SIZE):
        raise ProtocolError("bad input_sig")
    return sig


#: records one hand-over carries at most
MAX_HANDOVER = 16
#: the owner's releases (timeout/bad_proof Feedback on better ranks) a request carries at most
MAX_RELEASES = 16


def parse_handover(obj: Any) -> list[bytes] | None:
    """The records of a hand-over request, None for another kind of request."""
    if type(obj) is not dict or obj.keys() != {"records"}:
        return None
    records = obj["records"]
    if (
        type(records) is not list
        or not 1 <= len(records) <= MAX_HANDOVER
        or any(type(r) is not bytes for r in records)
    ):
        raise ProtocolError("bad hand-over")
    return records


def parse_response(obj: Any, *, handover: bool = False) -> dict[str, Any]:
    """A validated response frame to a task request (or, with ``handover``, to a
    hand-over): the shape only; the client verifies the content."""
    if type(obj) is not dict or type(obj.get("ok")) is not bool:
        raise ProtocolError("bad task response")
    if obj["ok"] and handover:
        if obj.keys() != {"ok", "stored"} or type(obj["stored"]) is not int:
            raise ProtocolError("bad hand-over response")
    elif obj["ok"]:
        if obj.keys() != {"ok", "claim", "receipt", "output"} or not all(
            type(obj[k]) is bytes for k in ("claim", "receipt", "output")
        ):
            raise ProtocolError("bad task response")
    elif (
        obj.keys() - ({"refusal"} if obj.get("error") == INPUT_REFUSED else set())
        != {"ok", "error", "detail"}
        or type(obj["error"]) is not str  # a list or a map is no code (and unhashable)
        or obj["error"] not in ERRORS
        or type(obj["detail"]) is not str
        or type(obj.get("refusal", b"")) is not bytes
    ):
        raise ProtocolError("bad task error response")
    return obj


def error(code: str, detail: str = "") -> dict[str, Any]:
    assert code in ERRORS
    return {"ok": False, "error": code, "detail": detail[:200]}
