"""Four per-RPC costs of py-libp2p 0.8.1's pubsub, cut: gossip control traffic pays them
on every RPC, and they saturated our nodes (measurements: docs/design-notes.md, "Gossip
costs").

* Every RPC carries the sender's signed peer record, and py-libp2p verifies its Ed25519
  signature on every RPC: we skip re-verifying envelope bytes already accepted from that
  peer (:func:`consume_signed_record_once`; a changed record is verified as before).
* The sender's own signed peer record is rebuilt for every RPC sent: we reuse it for a few
  seconds (:func:`envelope_cached`).
* Every RPC sent carries our signed peer record (about 180 bytes on the wire), though the
  far side stores it in its peerstore from the first: we send it once per stream, again
  when it changes and every :data:`RECORD_RESEND_S` seconds (:func:`write_record_once`).
  ``senderRecord`` is a py-libp2p field outside the gossipsub spec (go- and js-libp2p do
  not know it and skip it; py-libp2p accepts an RPC without it), and messages keep
  ``from``/``seqno``/``signature``/``key`` under StrictSign: only bytes go.
* Each received RPC took three or more stream reads (the length prefix byte by byte): we
  read ahead into a buffer (:func:`read_rpc_buffered`).

``libp2p.pubsub.pubsub`` and ``libp2p.pubsub.gossipsub`` each bound the first two
functions at import, so each binding is patched (and counted) separately.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

import libp2p.peer.peerstore as _peerstore
import libp2p.pubsub.gossipsub as _gossipsub
import libp2p.pubsub.pubsub as _pubsub
import libp2p.pubsub.utils as _pubsub_utils
from libp2p.exceptions import ParseError
from libp2p.io.exceptions import IncompleteReadError, MessageTooLarge
from libp2p.pubsub.pb import rpc_pb2

from repp2p.net.libp2p_compat.guard import Expect
from repp2p.net.libp2p_compat.hooks import count
from repp2p.net.libp2p_compat.patch import Patch

# py-libp2p's own implementations (from their defining modules, never a patched binding).
_verify_signed_record = _pubsub_utils.maybe_consume_signed_record
_envelope_for_rpc = _peerstore.env_to_send_in_RPC
_write_msg = _pubsub.Pubsub.write_msg

_accepted_records: dict[tuple[bytes, bytes, bytes], None] = {}
_ACCEPTED_RECORDS_KEPT = 4096


def consume_signed_record_once(rpc: Any, host: Any, peer_id: Any) -> bool:
    """py-libp2p's sender-record check, skipped for bytes already accepted from that peer.

    Args:
        rpc: the received pubsub RPC.
        host: our host (its peerstore stores the record).
        peer_id: the peer the RPC came from.

    Returns:
        Whether the RPC may be processed (py-libp2p's contract).
    """
    if not rpc.HasField("senderRecord"):
        return True
    key = (host.get_id().to_bytes(), peer_id.to_bytes(), rpc.senderRecord)
    if key in _accepted_records:
        return True
    ok = _verify_signed_record(rpc, host, peer_id)
    if ok:
        if len(_accepted_records) >= _ACCEPTED_RECORDS_KEPT:
            _accepted_records.pop(next(iter(_accepted_records)))
        _accepted_records[key] = None
    return ok


_envelopes: weakref.WeakKeyDictionary[Any, tuple[float, tuple[bytes, bool]]] = (
    weakref.WeakKeyDictionary()
)
#: our own signed peer record is rebuilt at most this often (seconds)
ENVELOPE_TTL_S = 5.0


def envelope_cached(host: Any) -> tuple[bytes, bool]:
    """py-libp2p's own signed peer record for an outgoing RPC, rebuilt every few seconds.

    py-libp2p recomputes the host's addresses (multiaddr parsing, base58) and re-serialises
    the envelope for every RPC it sends, a large share of a gossip hop's CPU
    (measurements: docs/design-notes.md, "Gossip costs"). Listen addresses change rarely,
    and a record a few seconds stale only delays a peer learning a new address.

    Args:
        host: our host.

    Returns:
        py-libp2p's ``(envelope bytes, newly created)``.
    """
    now = time.monotonic()
    cached = _envelopes.get(host)
    if cached is None or now - cached[0] > ENVELOPE_TTL_S:
        cached = (now, _envelope_for_rpc(host))
        _envelopes[host] = cached
    return cached[1]


#: our signed peer record goes out again on a stream after this long (seconds): receivers
#: keep it 7200 s in their peerstore, so it never lapses on a long-lived stream
RECORD_RESEND_S = 600.0
_records_sent: weakref.WeakKeyDictionary[Any, tuple[bytes, float]] = weakref.WeakKeyDictionary()
#: RPCs written with and without our signed peer record (what the fix saved, for tests)
record_counts = {"sent": 0, "omitted": 0}


async def write_record_once(self: Any, stream: Any, rpc_msg: Any) -> bool:
    """py-libp2p's ``Pubsub.write_msg``, with our signed peer record left out of an RPC
    when this stream already carried the same record within :data:`RECORD_RESEND_S`.

    The RPC object may be written to several streams (a publish loop builds it once), so
    it is copied, never changed.

    Args:
        self: the Pubsub service.
        stream: the stream to one peer.
        rpc_msg: the RPC py-libp2p built (with its ``senderRecord``).

    Returns:
        py-libp2p's result: whether the write succeeded.
    """
    # what the RPCs sent carry (for /metrics: repp2p_libp2p_hook_calls, docs/libp2p-fixes.md)
    count(_rpc_kind(rpc_msg))
    if rpc_msg.HasField("senderRecord"):
        now = time.monotonic()
        record = rpc_msg.senderRecord
        last = _records_sent.get(stream)
        if last is not None and last[0] == record and now - last[1] < RECORD_RESEND_S:
            stripped = rpc_pb2.RPC()
            stripped.CopyFrom(rpc_msg)
            stripped.ClearField("senderRecord")
            rpc_msg = stripped
            record_counts["omitted"] += 1
        else:
            _records_sent[stream] = (record, now)
            record_counts["sent"] += 1
    return await _write_msg(self, stream, rpc_msg)


def _rpc_kind(rpc_msg: Any) -> str:
    """``pubsub.sent.messages`` (carries messages), ``pubsub.sent.subscriptions``,
    ``pubsub.sent.ihave_only`` (gossip only), or ``pubsub.sent.control`` (the rest:
    GRAFT, PRUNE, IWANT, IDONTWANT, with or without IHAVE)."""
    if len(rpc_msg.publish):
        return "pubsub.sent.messages"
    if len(rpc_msg.subscriptions):
        return "pubsub.sent.subscriptions"
    control = rpc_msg.control if rpc_msg.HasField("control") else None
    if (
        control is not None
        and len(control.ihave)
        and not (len(control.graft) or len(control.prune) or len(control.iwant))
    ):
        return "pubsub.sent.ihave_only"
    return "pubsub.sent.control"


_read_buffers: weakref.WeakKeyDictionary[Any, bytearray] = weakref.WeakKeyDictionary()
#: bytes asked of the stream per read beyond the RPC in hand (what yamux has buffered)
_READ_AHEAD = 64 * 1024


async def read_rpc_buffered(stream: Any, max_length: int) -> bytes:
    """One varint-prefixed RPC from a pubsub stream, read ahead into a per-stream buffer.

    py-libp2p reads the length prefix one byte per ``stream.read(1)`` and then the body,
    each read a pass through yamux's locks and window accounting: three or more reads per
    RPC where one usually does. The pubsub read loop is the stream's only reader, so bytes
    read ahead are never lost to another reader.

    Args:
        stream: the pubsub stream.
        max_length: the largest RPC accepted (bytes).

    Returns:
        The RPC's bytes, without the length prefix.

    Raises:
        ParseError: the length prefix is longer than 10 bytes.
        MessageTooLarge: the prefix announces more than ``max_length``.
        IncompleteReadError: the stream ended inside an RPC (py-libp2p's contract).
    """
    buf = _read_buffers.get(stream)
    if buf is None:
        buf = _read_buffers[stream] = bytearray()
    length = used = 0
    while True:
        for i in range(min(len(buf), 10)):
            length |= (buf[i] & 0x7F) << (7 * i)
            if not buf[i] & 0x80:
                used = i + 1
                break
        if used:
            break
        if len(buf) >= 10:
            raise ParseError("Varint decoding error: integer exceeds maximum size of 64 bits")
        length = 0
        chunk = await stream.read(_READ_AHEAD)
        if not chunk:
            raise IncompleteReadError(
                "Stream ended while reading varint length prefix",
                expected_bytes=1,
                received_bytes=0,
            )
        buf += chunk
    if length > max_length:
        raise MessageTooLarge(f"Message length {length} exceeds maximum allowed {max_length}")
    end = used + length
    while len(buf) < end:
        chunk = await stream.read(max(_READ_AHEAD, end - len(buf)))
        if not chunk:
            raise IncompleteReadError(
                "Stream ended while reading a message",
                expected_bytes=length,
                received_bytes=len(buf) - used,
            )
        buf += chunk
    data = bytes(buf[used:end])
    del buf[:end]
    return data


_RECORD_CHECK = Expect(_pubsub_utils, "maybe_consume_signed_record", "msg, host, peer_id")
_ENVELOPE = Expect(_peerstore, "env_to_send_in_RPC", "host")

PATCHES: tuple[Patch, ...] = (
    Patch(
        "pubsub.maybe_consume_signed_record",
        Expect(_pubsub, "maybe_consume_signed_record", "msg, host, peer_id"),
        consume_signed_record_once,
        requires=(_RECORD_CHECK,),
    ),
    Patch(
        "gossipsub.maybe_consume_signed_record",
        Expect(_gossipsub, "maybe_consume_signed_record", "msg, host, peer_id"),
        consume_signed_record_once,
        requires=(_RECORD_CHECK,),
    ),
    Patch(
        "pubsub.env_to_send_in_RPC",
        Expect(_pubsub, "env_to_send_in_RPC", "host"),
        envelope_cached,
        requires=(_ENVELOPE,),
    ),
    Patch(
        "gossipsub.env_to_send_in_RPC",
        Expect(_gossipsub, "env_to_send_in_RPC", "host"),
        envelope_cached,
        requires=(_ENVELOPE,),
    ),
    Patch(
        "pubsub.write_msg",
        Expect(_pubsub.Pubsub, "write_msg", "self, stream, rpc_msg"),
        write_record_once,
    ),
    Patch(
        "pubsub.read_varint_prefixed_bytes_limited",
        Expect(_pubsub, "read_varint_prefixed_bytes_limited", "reader, max_length"),
        read_rpc_buffered,
    ),
)
