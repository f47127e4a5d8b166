"""Real py-libp2p hosts on 127.0.0.1: discovery, gossip, rejection, sync, light clients."""

from __future__ import annotations

import hashlib
import time

import multiaddr
import pytest
import trio
from libp2p import new_host
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport

from repp2p.client import LightClient
from repp2p.errors import NodeNotRunning
from repp2p.net.topics import TOPICS, topic_for
from repp2p.records import (
    FEED_TYPES,
    MAX_LIFETIME_S,
    Heartbeat,
    NodeAd,
    TaskOffer,
    decode,
    encode,
)
from repp2p.testing import factories
from repp2p.testing.network import (
    dev_params,
    gossiping_peer,
    local_network,
    node_config,
    start_node,
)

pytestmark = pytest.mark.slow
LOCAL = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")


async def wait_until(predicate, timeout: float, interval: float = 0.05) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(interval)


def holds(node, record_id: bytes) -> bool:
    return node.store.get(record_id) is not None


async def test_discovery_through_one_bootstrap(tmp_path):
    async with local_network(tmp_path, 5) as nodes:
        everyone = {n.peer_id for n in nodes}

        def all_found():
            return all(
                {p.to_base58() for p in n.host.get_connected_peers()} >= everyone - {n.peer_id}
                for n in nodes
            )

        await wait_until(all_found, 20)
        # Nodes other than the bootstrap were given only the bootstrap's address.
        assert all(n.config.bootstrap == (nodes[0].addrs()[0],) for n in nodes[1:])


@pytest.mark.parametrize("source", ["records", "digests"])
async def test_every_family_reaches_every_node(tmp_path, source):
    # On a digest network (the default) per-task records stay with their task's parties
    # (tests/e2e/test_task_records_stay.py): every node record family reaches every node.
    params = dev_params().replace(reputation_source=source)
    async with local_network(tmp_path, 5, network_params=params) as nodes:
        await wait_until(lambda: all(n.is_synced() for n in nodes), 20)
        await wait_until(lambda: all(len(n.host.get_connected_peers()) >= 3 for n in nodes), 20)
        await trio.sleep(1.5)  # a gossipsub heartbeat to build meshes
        published = []
        with trio.fail_after(10):
            # The TaskOffer (index 3) is signed by nodes[4]: its task id is bound to that key.
            samples = factories.sample_records(
                seq=10**15, now=time.time(), client=nodes[4].identity
            )
            for i, record in enumerate(samples):
                if record.TYPE == "Attestation":
                    continue  # its evidence is made up: peers refuse it (below)
                if source == "digests" and record.TYPE in FEED_TYPES:
                    continue
                author = nodes[1 + i % 4]
                published.append(await author.publish(record))
        per_task = {"TaskOffer", "Claim", "Receipt", "Feedback"} if source == "records" else set()
        assert {s.type for s in published} == {"NodeAd", "Heartbeat", *per_task}
        await wait_until(lambda: all(holds(n, s.record_id) for n in nodes for s in published), 20)
        # Attestations: every node's own (simulated TEE, verifiable) reaches every node.
        await wait_until(
            lambda: all(
                n.store.query(type="Attestation", signer=m.peer_id) for n in nodes for m in nodes
            ),
            20,
        )


async def test_forged_and_malformed_records_are_dropped_not_forwarded(tmp_path):
    async with local_network(tmp_path, 3) as nodes:
        gate, far = nodes[1], nodes[2]
        await wait_until(lambda: all(n.is_synced() for n in nodes), 20)
        mallory = factories.identity("mallory")
        topic = TOPICS["heartbeats"]
        async with gossiping_peer(mallory, gate, topic) as pubsub:

            def heartbeat(epoch: int, expires: int) -> bytes:
                return encode(
                    Heartbeat(epoch=epoch, load=0, tasks_done=0, seq=1, expires=expires),
                    mallory,
                )

            now = int(time.time())
            good = heartbeat(1, factories.far_future(now))
            forged = bytearray(heartbeat(2, factories.far_future(now)))
            forged[-1] ^= 1
            expired = heartbeat(3, 10)
            too_far = heartbeat(4, now + MAX_LIFETIME_S[Heartbeat.TYPE] + 3600)
            wrong_topic = encode(
                factories.sample_records(now=time.time())[3], mallory
            )  # a TaskOffer
            with trio.fail_after(10):
                for data in (bytes(forged), b"\xa1\x00", expired, too_far, wrong_topic):
                    await pubsub.publish(topic, data)
                await pubsub.publish(topic, good)  # the marker that must get through

            marker = hashlib.sha256(good).digest()
            await wait_until(lambda: holds(far, marker), 15)
            rejected = gate.status()["rejected"]
            assert rejected.get("bad_signature") == 1
            assert rejected.get("malformed") == 1
            assert rejected.get("expired") == 1
            assert rejected.get("expires_too_far") == 1
            assert rejected.get("wrong_topic") == 1
            # Nothing bad was stored at the gate, and nothing bad travelled beyond it.
            assert gate.store.count("Heartbeat") == far.store.count("Heartbeat")
            assert far.status()["rejected"] == {}
            assert gate.store.count("TaskOffer") == 0


async def test_plaintext_dialer_is_refused(tmp_path):
    async with local_network(tmp_path, 1) as (node,):
        identity = factories.identity("plain")
        keypair = identity.to_libp2p_keypair()
        plain = new_host(
            key_pair=keypair,
            sec_opt={PLAINTEXT_PROTOCOL_ID: InsecureTransport(keypair)},
        )
        async with plain.run(listen_addrs=[LOCAL]):
            with trio.fail_after(15), pytest.raises(Exception):  # noqa: B017 (any dial failure)
                await plain.connect(info_from_p2p_addr(multiaddr.Multiaddr(node.addrs()[0])))
            assert node.host.get_id() not in plain.get_connected_peers()
            assert plain.get_id() not in node.host.get_connected_peers()


async def test_light_client_finds_providers_and_stays_out_of_routing_tables(tmp_path):
    async with local_network(tmp_path, 4) as nodes:
        await wait_until(lambda: all(n.is_synced() for n in nodes), 20)
        await trio.sleep(2)  # provider records and ads are put after the first sync
        async with LightClient.open([nodes[0].addrs()[0]]) as client:
            with trio.fail_after(20):
                while True:
                    providers = await client.find_providers("echo")
                    if set(providers) >= {n.peer_id for n in nodes}:
                        break
                    await trio.sleep(0.5)
            assert len(providers) == len(set(providers))  # no duplicates
            assert await client.find_providers("no-such-engine") == []
            with trio.fail_after(20):
                ad = await client.get_ad(nodes[2].peer_id)
            assert ad is not None and ad.signer == nodes[2].peer_id
            assert ad.record.engines[0].engine_id == "echo"

            def in_a_table():
                return any(
                    client.peer_id in {p.to_base58() for p in n.dht.routing_table.get_peer_ids()}
                    for n in nodes
                )

            # Refused on arrival once identified; one not yet identified is pruned promptly.
            await wait_until(lambda: not in_a_table(), 5)
            assert all(n.dht.get_routing_table_size() >= len(nodes) - 1 for n in nodes)


@pytest.mark.parametrize("source", ["records", "digests"])
async def test_restarted_node_keeps_identity_and_catches_up_by_sync(tmp_path, source):
    params = dev_params().replace(reputation_source=source)
    async with trio.open_nursery() as nursery:
        boot = await start_node(nursery, node_config(tmp_path, "boot", network_params=params))
        config = node_config(tmp_path, "late", (boot.addrs()[0],), network_params=params)
        late = await start_node(nursery, config)
        await wait_until(lambda: late.is_synced(), 20)
        first_id, held_before = late.peer_id, late.store.count()
        late.stop()
        await wait_until(lambda: not (tmp_path / "late" / "runtime.json").exists(), 10)
        with pytest.raises(NodeNotRunning):
            late.store  # noqa: B018 - the parts are gone with run()

        # While it is down, a one-shot record appears: only sync can bring it back. On a
        # digest network a task offer stays with its parties (the late node is none): there
        # the record is another peer's ad, which boot holds and sync serves to anyone.
        if source == "records":
            with trio.fail_after(10):
                offer = await boot.publish(
                    factories.sample_records(now=time.time(), client=boot.identity)[3]
                )
            assert isinstance(offer.record, TaskOffer) and topic_for("TaskOffer").endswith("tasks")
        else:
            ad = factories.sample_records(now=time.time())[0]
            offer = decode(encode(ad, factories.identity("absent")))
            assert isinstance(offer.record, NodeAd) and boot.accept(offer.data)

        again = await start_node(nursery, config)
        assert again.peer_id == first_id
        assert again.store.count() >= held_before  # records survived the restart
        await wait_until(lambda: again.is_synced(), 20)
        await wait_until(lambda: holds(again, offer.record_id), 10)
        boot.stop()
        again.stop()


async def test_quic_transport_option(tmp_path):
    quic = {"listen": ("/ip4/127.0.0.1/udp/0/quic-v1",), "enable_quic": True}
    async with trio.open_nursery() as nursery:
        boot = await start_node(nursery, node_config(tmp_path, "qboot", **quic))
        assert "/quic-v1" in boot.addrs()[0]
        other = await start_node(
            nursery, node_config(tmp_path, "qnode", (boot.addrs()[0],), **quic)
        )
        await wait_until(lambda: other.is_synced() and holds_ad(other, boot), 20)
        boot.stop()
        other.stop()


def holds_ad(node, author) -> bool:
    return bool(node.store.query(type="NodeAd", signer=author.peer_id))
