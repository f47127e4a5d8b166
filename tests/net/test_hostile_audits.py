"""Hostile publishers and hostile charges against the audit path (docs/protocol.md, "Stream
protocol /repp2p/audit/1"; docs/digests.md, "Audits"), on real py-libp2p hosts on
127.0.0.1: a publisher that drips its answers gets the grace period and no more; an
unserved charge over a record that is no digest is REJECTed on gossip, not raised; an
evidence folder that cannot be written stops no audit."""

from __future__ import annotations

import contextlib
import time

import multiaddr
import trio
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr

from repp2p.digests import AuditOutcome, leaf_proof
from repp2p.digests.params import DigestParams
from repp2p.digests.unserved import NO_ANSWER, UnservedCharge
from repp2p.net import audit as audit_protocol
from repp2p.net.framing import FrameReader, close_quietly, write_cbor
from repp2p.net.host import build_host
from repp2p.net.topics import PROOFS_FAMILY, TOPICS
from repp2p.node.audits import EvidenceLog, plan
from repp2p.node.metrics import totals
from repp2p.records import NodeAd, encode, sign
from repp2p.store import SqliteRecordStore
from repp2p.testing import factories
from repp2p.testing.network import dev_params, gossiping_peer, node_config, start_node
from tests.digests import test_offence_gossip as og
from tests.net import test_audits as ta

DIGEST_VIEWS = dev_params().replace(reputation_source="digests")


@contextlib.asynccontextmanager
async def _publisher(handler):
    """The audited node's host serving ``handler`` on ``/repp2p/audit/1`` (None: none, a
    silent publisher) and an auditor host connected to it; yields ``open_stream(peer)``."""
    publisher, auditor = build_host(ta.NODE), build_host(ta.AUDITOR)
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    async with publisher.run(listen_addrs=listen), auditor.run(listen_addrs=listen):
        if handler is not None:
            publisher.set_stream_handler(audit_protocol.PROTOCOL, handler)
        addr = f"{publisher.get_addrs()[0]}/p2p/{ta.NODE.peer_id}"
        with trio.fail_after(10):
            await auditor.connect(info_from_p2p_addr(multiaddr.Multiaddr(addr)))

        async def open_stream(peer: str):
            return await auditor.new_stream(ID.from_base58(peer), [audit_protocol.PROTOCOL])

        yield open_stream


def _dripping(part, delay: float):
    """A publisher's audit handler that answers every challenge truly, each ``delay`` s
    after it came."""

    async def handle(stream) -> None:
        reader = FrameReader(stream, audit_protocol.MAX_REQUEST)
        try:
            while (request := await reader.read_cbor()) is not None:
                digest_id, index = audit_protocol.parse_request(request)
                await trio.sleep(delay)
                await write_cbor(stream, {"response": leaf_proof(part, digest_id, index).encode()})
        except Exception:  # the auditor gave up and closed: fine
            pass
        finally:
            await close_quietly(stream)

    return handle


async def test_a_publisher_that_drips_its_answers_gets_the_grace_period_and_no_more():
    """docs/protocol.md: an auditor tries ``attempts`` times, each try up to
    ``request_timeout_s``, ``retry_s`` apart: that is the grace period a publisher has to
    answer. A publisher that answers each leaf just inside the per-answer timeout must not
    stretch a check to ``attempts x leaves x request_timeout_s`` (64 leaves at the
    defaults: 32 minutes, one of the auditor's ``concurrency`` slots held all along). What
    it answered in time is judged; the rest is unserved."""
    part = ta._part(ta._tasks())
    signed = sign(part.digest, ta.NODE)
    leaves = tuple(range(signed.record.leaf_count))
    p = ta.FAST
    grace = p.attempts * p.request_timeout_s + (p.attempts - 1) * p.retry_s
    async with _publisher(_dripping(part, 0.9 * p.request_timeout_s)) as open_stream:
        auditor = ta._auditor(open_stream)
        started = time.monotonic()
        with trio.fail_after(len(leaves) * p.attempts * p.request_timeout_s + 10):
            results = await auditor.check(ta.Challenge(signed, leaves, bytes(32)))
        took = time.monotonic() - started
    assert took < grace + 1.0, f"a check of a dripping publisher took {took:.1f} s"
    outcomes = [r.outcome for r in results]
    assert set(outcomes) <= {AuditOutcome.PASS, AuditOutcome.UNSERVED}
    assert outcomes.count(AuditOutcome.UNSERVED) >= len(leaves) - p.attempts
    for result in results:
        if result.outcome is AuditOutcome.UNSERVED:
            assert result.verdict.detail == NO_ANSWER


async def test_a_charge_over_a_record_that_is_no_digest_is_rejected_and_gossip_goes_on(tmp_path):
    """An unserved charge is checked by every full node that receives it on ``proofs``.
    One whose ``digest`` is a validly signed record of another type (here the sender's own
    ad) is REJECTed (``wrong_type``, as ``verify_unserved`` says) and costs its forwarder:
    the validator must not raise, or py-libp2p's pubsub service, which runs it, stops with
    the error, and the node with it."""
    mallory = factories.identity("charge-mallory")
    ad = next(r for r in factories.sample_records() if isinstance(r, NodeAd))
    charge = UnservedCharge(
        encode(ad, mallory), 0, bytes(32), factories.identity("x").peer_id, NO_ANSWER
    ).encode()
    topic = TOPICS[PROOFS_FAMILY]
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            full = await start_node(
                nursery, node_config(tmp_path, "full", network_params=DIGEST_VIEWS)
            )
            assert full.parts.auditor is not None and full.parts.offences is not None
            async with gossiping_peer(mallory, full, topic) as pubsub:
                await pubsub.publish(topic, charge)
                # then an offence proof: judged (and refused, its epoch is long past) only
                # if the node's pubsub still runs
                await pubsub.publish(topic, og._conflict())
                while not full.parts.offences.refused:
                    await trio.sleep(0.05)
                score = full.parts.router.scorer.score(pubsub.host.get_id(), [topic])
                assert score < 0, f"a charge over an ad left its forwarder at {score:+.0f}"
            assert full.parts.pubsub.manager.is_running
            full.stop()


async def test_an_evidence_folder_that_cannot_be_written_stops_no_audit_nor_re_check(tmp_path):
    """The evidence of an audit or a re-check goes to memory and to ``audits/``; a disk
    that fails the write (full, read-only, a file where the folder should be) is logged,
    as the proof books' own writes are. Before, the OSError left ``Auditor.run`` (a node
    task) on the first re-check of a gossiped charge against a silent publisher."""
    part = ta._part(ta._tasks())
    signed = sign(part.digest, ta.NODE)
    store = SqliteRecordStore(":memory:")
    mine = sign(
        factories.empty_work_digest(ta.EPOCH, expires=factories.far_future(ta.NOW)), ta.AUDITOR
    )
    store.put_many([signed, mine], now=ta.NOW)
    (challenge,) = plan(store, ta.AUDITOR.peer_id, ta.EPOCH, DigestParams(), ta.ATTESTED)
    blocked = tmp_path / "audits"
    blocked.write_bytes(b"a file where the evidence folder should be")
    async with _publisher(None) as open_stream:  # silent: charged
        with trio.fail_after(60):
            auditor = ta._auditor(open_stream, store)
            auditor.evidence = EvidenceLog(blocked)
            results = await auditor.check(challenge)
            assert {r.outcome for r in results} == {AuditOutcome.UNSERVED}
            charges = auditor.evidence.recent(AuditOutcome.UNSERVED)
            assert charges == [r.evidence for r in results]
            # another full node re-checks a gossiped charge, its own disk failing too
            other = ta._auditor(open_stream, store)
            other.evidence = EvidenceLog(blocked)
            other.attested(ta.EPOCH)  # its own draw, at the audit boundary
            assert other.on_charge(charges[0]).name == "ACCEPT"
            async with trio.open_nursery() as nursery:
                nursery.start_soon(other.run)
                while not totals(other._metrics.audits, "outcome"):
                    await trio.sleep(0.05)
                nursery.cancel_scope.cancel()
    assert totals(other._metrics.audits, "outcome") == {"recheck_unserved": 1.0}
    assert other.evidence.recent(AuditOutcome.UNSERVED) == [charges[0]]
    assert blocked.is_file()
