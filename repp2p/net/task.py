"""``/repp2p/task/1``: a client hands a sealed input to the node it matched, gets the result.

One stream per attempt, one CBOR frame each way (framing as in :mod:`repp2p.net.framing`)::

    client -> {"offer": bytes, "sealed": bytes, "releases"?: [bytes, ...]}
        offer: the client-signed TaskOffer envelope; sealed: the input sealed to the node's
        attested X25519 key (repp2p.tee.seal_input); releases: up to 16 of the owner's
        timeout/bad_proof Feedback envelopes on better-ranked claimants that failed
    node   -> {"ok": true, "claim": bytes, "receipt": bytes, "output": bytes}
        claim: the node-signed Claim envelope (also gossiped); receipt: the node-signed
        Receipt envelope carrying the enclave signature (also gossiped); output: the
        output encrypted to the offer's result key
    node   -> {"ok": false, "error": text, "detail": text}

Errors: ``bad_request``, ``bad_offer``, ``replayed``, ``wrong_epoch``, ``not_assigned``
(this node has no claiming rank for the offer in its view), ``not_my_turn`` (failover: a
better rank claimed in time), ``no_capacity``, ``execution_failed``.
The client checks everything it receives against its own view and the node's attestation;
a node's word is never trusted.
"""

from __future__ import annotations

from typing import Any

from repp2p.errors import ProtocolError

PROTOCOL = "/repp2p/task/1"
#: requests: an offer (<= 4 KiB) and a sealed input (engines cap inputs at 1 MiB).
MAX_REQUEST = 2 * 1024 * 1024
#: responses: claim + receipt records and an encrypted output (engines cap outputs at 1 MiB).
MAX_RESPONSE = 2 * 1024 * 1024

ERRORS = frozenset(
    {
        "bad_request",
        "bad_offer",
        "replayed",
        "wrong_epoch",
        "not_assigned",
        "not_my_turn",
        "no_capacity",
        "execution_failed",
    }
)


def parse_request(obj: Any) -> tuple[bytes, bytes]:
    """``(offer, sealed)`` of a request frame, or ProtocolError."""
    if (
        type(obj) is not dict
        or obj.keys() != {"offer", "sealed"}
        or type(obj["offer"]) is not bytes
        or type(obj["sealed"]) is not bytes
    ):
        raise ProtocolError("bad task request")
    return obj["offer"], obj["sealed"]


def parse_response(obj: Any) -> dict[str, Any]:
    """A validated response frame (the shape only; the client verifies the content)."""
    if type(obj) is not dict or type(obj.get("ok")) is not bool:
        raise ProtocolError("bad task response")
    if obj["ok"]:
        if obj.keys() != {"ok", "claim", "receipt", "output"} or not all(
            type(obj[k]) is bytes for k in ("claim", "receipt", "output")
        ):
            raise ProtocolError("bad task response")
    elif (
        obj.keys() != {"ok", "error", "detail"}
        or obj["error"] not in ERRORS
        or type(obj["detail"]) is not str
    ):
        raise ProtocolError("bad task error response")
    return obj


def error(code: str, detail: str = "") -> dict[str, Any]:
    assert code in ERRORS
    return {"ok": False, "error": code, "detail": detail[:200]}
