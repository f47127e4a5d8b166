"""repp2p.net.libp2p_compat: patches applied only by install(), refused on another
py-libp2p, and still called by py-libp2p (canaries on real hosts on 127.0.0.1).

A canary fails when py-libp2p stops calling one of our hooks (a renamed private method, a
function bound under another name): the fix would be gone without any other test noticing,
since the unit tests (test_gossip_costs.py) call the hooks directly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
import types
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import multiaddr
import pytest
import trio
from libp2p.exceptions import ValidationError
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.score import PeerScorer
from libp2p.tools.anyio_service import background_trio_service

import repp2p.net.libp2p_compat.guard as guard
from repp2p.errors import ReppError, UnsupportedLibp2pError
from repp2p.identity import Identity
from repp2p.net.gossip import build_pubsub, install_validators
from repp2p.net.host import build_host
from repp2p.net.libp2p_compat import (
    HOOKS,
    SUPPORTED_VERSIONS,
    ServerOnlyKadDHT,
    close_in_background,
    hook_calls,
    install,
    is_outbound,
    opened_at,
    prune_client_peers,
    routing_table_peers,
)
from repp2p.net.libp2p_compat.guard import Expect
from repp2p.net.libp2p_compat.ignore import check_penalty_follows_validation
from repp2p.net.libp2p_compat.patch import Patch
from repp2p.net.libp2p_compat.score import check_sign_convention
from repp2p.net.params import GossipParams
from repp2p.net.topics import TOPICS
from repp2p.net.verdict import Verdict
from repp2p.testing.waits import until

LOCAL = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")
TOPIC = TOPICS["heartbeats"]
ROOT = Path(__file__).resolve().parents[2]

KAD_HOOK = "KadDHT.add_peer"
#: called by py-libp2p only for a message that fails validation (its own canary below)
PENALTY_HOOK = "PeerScorer.on_invalid_message"
GOSSIP_HOOKS = tuple(hook for hook in HOOKS if hook not in (KAD_HOOK, PENALTY_HOOK))


def _info(host: Any) -> PeerInfo:
    return info_from_p2p_addr(
        multiaddr.Multiaddr(f"{host.get_addrs()[0]}/p2p/{host.get_id().to_base58()}")
    )


# --- importing patches nothing; install() patches, once ------------------------------

_IMPORT_CHECK = r"""
import importlib, json, pkgutil
import libp2p.peer.peerstore as store
import libp2p.pubsub.gossipsub as gs
import libp2p.pubsub.pubsub as ps
import libp2p.pubsub.utils as utils
import libp2p.utils.varint as varint
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.stream_muxer.yamux.yamux import YamuxStream

def bindings():
    return [ps.maybe_consume_signed_record, gs.maybe_consume_signed_record,
            ps.env_to_send_in_RPC, gs.env_to_send_in_RPC,
            ps.read_varint_prefixed_bytes_limited,
            YamuxStream._auto_tune_and_send_window_update]

originals = [utils.maybe_consume_signed_record, utils.maybe_consume_signed_record,
             store.env_to_send_in_RPC, store.env_to_send_in_RPC,
             varint.read_varint_prefixed_bytes_limited,
             YamuxStream.__dict__["_auto_tune_and_send_window_update"]]
out = {"untouched_before": all(a is b for a, b in zip(bindings(), originals))}
import repp2p, repp2p.net
modules = ["repp2p.node", "repp2p.client", "repp2p.node.serving", "repp2p.cli",
           "repp2p.testing.network"]
modules += [f"repp2p.net.{m.name}" for m in pkgutil.iter_modules(repp2p.net.__path__)]
for name in modules:
    importlib.import_module(name)
out["modules"] = len(modules)
out["untouched_after_import"] = all(a is b for a, b in zip(bindings(), originals))

from repp2p.errors import UnsupportedLibp2pError
from repp2p.net.libp2p_compat import install, installed
out["installed_after_import"] = installed()
# A changed override target: install() refuses and patches nothing.
real = GossipSub._consider_peer_replacement
GossipSub._consider_peer_replacement = lambda self: None
try:
    install()
    out["refused"] = False
except UnsupportedLibp2pError as exc:
    out["refused"] = "_consider_peer_replacement" in str(exc)
out["untouched_after_refusal"] = all(a is b for a, b in zip(bindings(), originals))
GossipSub._consider_peer_replacement = real
install()
patched = bindings()
out["all_patched"] = not any(a is b for a, b in zip(patched, originals))
install()
out["idempotent"] = all(a is b for a, b in zip(bindings(), patched))
print(json.dumps(out))
"""


def test_importing_repp2p_leaves_libp2p_untouched_until_install():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop(guard.ALLOW_ANY_VERSION_ENV, None)
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_CHECK],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["untouched_before"] and out["modules"] > 10
    assert out["untouched_after_import"], "importing repp2p patched py-libp2p"
    assert not out["installed_after_import"]
    assert out["refused"] and out["untouched_after_refusal"]
    assert out["all_patched"] and out["idempotent"]


# --- the version guard and the shape checks ------------------------------------------


def test_install_refuses_another_py_libp2p_version(monkeypatch):
    monkeypatch.delenv(guard.ALLOW_ANY_VERSION_ENV, raising=False)
    monkeypatch.setattr(guard, "installed_version", lambda: "0.9.0")
    with pytest.raises(UnsupportedLibp2pError) as refused:
        install()  # refused even in a process already patched
    assert isinstance(refused.value, ReppError)
    assert refused.value.installed == "0.9.0"
    assert refused.value.supported == SUPPORTED_VERSIONS
    assert "0.9.0" in str(refused.value) and "0.8.1" in str(refused.value)
    # The documented escape hatch lets it through.
    monkeypatch.setenv(guard.ALLOW_ANY_VERSION_ENV, "1")
    assert guard.check_version() == "0.9.0"


def test_the_supported_version_is_the_installed_one():
    assert guard.check_version() in SUPPORTED_VERSIONS


def test_a_patch_checks_the_shape_of_what_it_replaces():
    def original(msg, host, peer_id):
        return "original"

    def replacement(rpc, host, peer_id):
        return "ours"

    owner = types.SimpleNamespace(f=original)
    patch = Patch("test.f", Expect(owner, "f", "msg, host, peer_id"), replacement)
    patch.check()
    patch.apply()
    patch.apply()  # idempotent: wrapped once
    assert patch.applied() and owner.f(1, 2, 3) == "ours"
    assert owner.f.__wrapped__ is replacement
    patch.check()  # already ours: nothing to compare

    changed = types.SimpleNamespace(f=lambda msg, host: None)
    with pytest.raises(UnsupportedLibp2pError, match=r"f\(msg, host\) is not"):
        Patch("test.f", Expect(changed, "f", "msg, host, peer_id"), replacement).check()
    with pytest.raises(UnsupportedLibp2pError, match="missing"):
        Expect(types.SimpleNamespace(), "f", "msg").check()
    keyword_only = types.SimpleNamespace(f=lambda self, *, bytes_read=0: None)
    Expect(keyword_only, "f", "self, *, bytes_read").check()
    with pytest.raises(UnsupportedLibp2pError):
        Expect(keyword_only, "f", "self, bytes_read").check()


def test_a_flipped_score_sign_is_refused(monkeypatch):
    check_sign_convention()
    monkeypatch.setattr(PeerScorer, "topic_score", lambda self, peer, topic: 1.0)
    with pytest.raises(UnsupportedLibp2pError, match="sign"):
        check_sign_convention()


def test_a_connection_without_an_open_time_fails_loudly():
    with pytest.raises(UnsupportedLibp2pError):
        opened_at(types.SimpleNamespace())


def test_every_hook_has_a_canary():
    assert set(GOSSIP_HOOKS) | {KAD_HOOK, PENALTY_HOOK} == set(HOOKS)
    assert len(GOSSIP_HOOKS) == len(HOOKS) - 2


def test_a_penalty_behind_an_await_is_refused(monkeypatch):
    """The IGNORE excuse needs push_msg to penalise right after validate_msg raises, with
    no checkpoint in between (another message's validation could run there)."""
    check_penalty_follows_validation()

    async def push_msg(self, msg_forwarder, msg):
        try:
            await self.validate_msg(msg_forwarder, msg)
        except ValidationError:
            await trio.sleep(0)
            self.router.scorer.on_invalid_message(msg_forwarder, "topic")

    monkeypatch.setattr(Pubsub, "push_msg", push_msg)
    with pytest.raises(UnsupportedLibp2pError, match="awaits"):
        check_penalty_follows_validation()

    async def no_penalty(self, msg_forwarder, msg):
        await self.validate_msg(msg_forwarder, msg)

    monkeypatch.setattr(Pubsub, "push_msg", no_penalty)
    with pytest.raises(UnsupportedLibp2pError, match="no longer penalises"):
        check_penalty_follows_validation()


# --- canaries: real hosts, py-libp2p calls every hook ---------------------------------


@dataclass(frozen=True)
class GossipRun:
    """What one run of a small gossip network showed."""

    calls: dict[str, int]  # calls per hook during the run
    published: list[bytes]  # data the hub published
    cached_ids: frozenset[bytes]  # the hub's message-cache keys at the end


async def _gossip_network(timeout: float = 25.0) -> GossipRun:
    """A hub and four leaves on one topic, the hub publishing every 0.2 s, until every
    gossip hook was called (or ``timeout``).

    The hub (D=3, D_hi=3) grafts three leaves; the fourth grafts the hub (each leaf meshes
    its only peer), so the hub's mesh overflows D_hi and is pruned (pruning selection), and
    holds three peers (peer replacement, opportunistic grafting). Its published messages
    fill its message cache (IHAVE gossip count) and go out by flood publishing.
    """
    before = hook_calls()
    hub = build_host(Identity.generate())
    leaves = [build_host(Identity.generate()) for _ in range(4)]
    published: list[bytes] = []
    async with contextlib.AsyncExitStack() as stack:
        for host in [hub, *leaves]:
            await stack.enter_async_context(host.run([LOCAL]))
        hub_params = GossipParams(
            degree=3, degree_low=2, degree_high=3, eclipse_protection=False, prune_backoff_s=1
        )
        leaf_params = GossipParams(
            degree=1, degree_low=1, degree_high=2, eclipse_protection=False, prune_backoff_s=1
        )
        services = [build_pubsub(hub, hub_params)]
        services += [build_pubsub(leaf, leaf_params) for leaf in leaves]
        for pubsub, router in services:
            await stack.enter_async_context(background_trio_service(pubsub))
            await stack.enter_async_context(background_trio_service(router))
        with trio.fail_after(10):
            for pubsub, _ in services:
                await pubsub.wait_until_ready()
                await pubsub.subscribe(TOPIC)
            for leaf in leaves:
                await hub.connect(_info(leaf))
        hub_pubsub, hub_router = services[0]

        def moved() -> set[str]:
            now = hook_calls()
            return {h for h in GOSSIP_HOOKS if now.get(h, 0) > before.get(h, 0)}

        async with trio.open_nursery() as nursery:

            async def publish() -> None:
                while True:
                    data = f"canary-{len(published)}".encode()
                    await hub_pubsub.publish(TOPIC, data)
                    published.append(data)
                    await trio.sleep(0.2)

            nursery.start_soon(publish)
            with trio.move_on_after(timeout):  # each hook's own test reports what is missing
                while moved() != set(GOSSIP_HOOKS):
                    await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
        now = hook_calls()
        calls = {h: now.get(h, 0) - before.get(h, 0) for h in GOSSIP_HOOKS}
        return GossipRun(calls, published, frozenset(hub_router.mcache.msgs))


@pytest.fixture(scope="module")
def gossip_run() -> GossipRun:
    """One gossip network run shared by the canaries (each checks its own hook)."""
    return trio.run(_gossip_network)


@pytest.mark.parametrize("hook", GOSSIP_HOOKS)
def test_canary_py_libp2p_calls_the_gossip_hook(gossip_run, hook):
    assert gossip_run.calls[hook] > 0, f"py-libp2p no longer calls {hook}: the fix is gone"


def test_canary_the_message_cache_holds_content_ids(gossip_run):
    """The cache py-libp2p reads IHAVE IDs from is ours, keyed by the content ID."""
    recent = {hashlib.sha256(data).digest() for data in gossip_run.published[-3:]}
    assert recent and recent <= gossip_run.cached_ids


@contextlib.asynccontextmanager
async def _server_and_client(server_dht: type[KadDHT]) -> AsyncIterator[tuple[Any, ...]]:
    """A DHT server and a DHT client, connected, with identify done on the server side."""
    server_host, client_host = build_host(Identity.generate()), build_host(Identity.generate())
    async with server_host.run([LOCAL]), client_host.run([LOCAL]):
        server = server_dht(server_host, DHTMode.SERVER)
        client = KadDHT(client_host, DHTMode.CLIENT)
        async with background_trio_service(server), background_trio_service(client):
            with trio.fail_after(10):
                await client_host.connect(_info(server_host))
            peerstore, client_id = server_host.get_peerstore(), client_host.get_id()

            def identified() -> bool:
                try:
                    return bool(peerstore.get_protocols(client_id))
                except Exception:  # not in the peerstore yet
                    return False

            await until(identified, 10, "identify of the client")
            yield server_host, server, client_host, client


async def test_canary_kad_dht_add_peer_keeps_clients_out():
    """py-libp2p adds every peer that queries us, check skipped: our override must run."""
    async with _server_and_client(ServerOnlyKadDHT) as (server_host, server, client_host, client):
        before = hook_calls().get(KAD_HOOK, 0)
        assert await client.add_peer(server_host.get_id())
        with trio.fail_after(10):
            await client.refresh_routing_table()  # FIND_NODE queries to the server
        await until(lambda: hook_calls().get(KAD_HOOK, 0) > before, 10, f"a call of {KAD_HOOK}")
        assert client_host.get_id() not in routing_table_peers(server)


async def test_client_peers_are_pruned_from_the_routing_table():
    async with _server_and_client(KadDHT) as (server_host, server, client_host, _):
        client_id = client_host.get_id()
        # As py-libp2p does for a peer that opens a Kademlia stream: added, check skipped.
        assert await server.add_peer(client_id, skip_server_mode_check=True)
        assert client_id in routing_table_peers(server)
        assert prune_client_peers(server_host, server) == 1
        assert client_id not in routing_table_peers(server)
        assert prune_client_peers(server_host, server) == 0


async def test_swarm_helpers_on_real_connections():
    a, b = build_host(Identity.generate()), build_host(Identity.generate())
    async with a.run([LOCAL]), b.run([LOCAL]):
        started = time.time()
        with trio.fail_after(10):
            await a.connect(_info(b))
        await until(lambda: a.get_id() in b.get_connected_peers(), 10, "b sees the connection")
        [dialled] = a.get_network().get_connections(b.get_id())
        [accepted] = b.get_network().get_connections(a.get_id())
        assert started - 1.0 <= opened_at(dialled) <= time.time()
        assert is_outbound(dialled) and not is_outbound(accepted)
        close_in_background(a, dialled)
        await until(lambda: b.get_id() not in a.get_connected_peers(), 10, "a closed it")
        await until(lambda: a.get_id() not in b.get_connected_peers(), 10, "b saw it close")


# --- P4: an invalid record costs its forwarder score (py-libp2p's sign convention) ----


async def test_a_peer_sending_invalid_records_loses_score_and_is_gated():
    """py-libp2p subtracts the P4 weight: a spec-style negative weight rewarded junk (+10
    per invalid record, every one reaching the validator). The victim's scorer must rank
    the sender below zero, and below the publish threshold its records stop reaching the
    validator at all."""
    victim, attacker = build_host(Identity.generate()), build_host(Identity.generate())
    async with victim.run([LOCAL]), attacker.run([LOCAL]):
        params = GossipParams(eclipse_protection=False)
        (v_pubsub, v_router), (a_pubsub, a_router) = (
            build_pubsub(victim, params),
            build_pubsub(attacker, params),
        )
        validated: list[bytes] = []

        def reject(data: bytes, topic: str, forwarder: str) -> Verdict:
            validated.append(data)
            return Verdict.REJECT

        install_validators(v_pubsub, reject)
        install_validators(a_pubsub, lambda data, topic, fwd: Verdict.ACCEPT)  # the attacker's
        async with (
            background_trio_service(v_pubsub),
            background_trio_service(v_router),
            background_trio_service(a_pubsub),
            background_trio_service(a_router),
        ):
            with trio.fail_after(10):
                for pubsub in (v_pubsub, a_pubsub):
                    await pubsub.wait_until_ready()
                    await pubsub.subscribe(TOPIC)
                await attacker.connect(_info(victim))
            await until(
                lambda: victim.get_id() in a_pubsub.peer_topics.get(TOPIC, ()),
                10,
                "the attacker knows the victim's subscription",
            )
            with trio.fail_after(10):
                for i in range(20):
                    await a_pubsub.publish(TOPIC, f"junk-{i}".encode())
            scorer, me = v_router.scorer, attacker.get_id()

            def score() -> float:
                return scorer.score(me, [TOPIC])

            await until(
                lambda: score() < 0 or len(validated) == 20, 10, "the junk reached the victim"
            )
            await trio.sleep(0.5)  # the rest of the junk arrives (and is gated)
            assert score() < 0, f"20 invalid records left the sender at {score():+.0f}"
            assert score() < scorer.params.publish_threshold
            assert 0 < len(validated) < 20, f"{len(validated)} of 20 reached the validator"


# --- IGNORE: py-libp2p still penalises through the scorer hook we excuse --------------


async def test_canary_py_libp2p_calls_the_scorer_hook_we_excuse():
    """push_msg must still call the router scorer's on_invalid_message (our wrapper) for
    every failed validation: for IGNORE the wrapper skips the penalty, for REJECT it
    applies it. Were py-libp2p to stop calling it, IGNORE would be untested and REJECT
    would cost nothing."""
    victim, sender = build_host(Identity.generate()), build_host(Identity.generate())
    async with victim.run([LOCAL]), sender.run([LOCAL]):
        params = GossipParams(eclipse_protection=False)
        (v_pubsub, v_router), (s_pubsub, s_router) = (
            build_pubsub(victim, params),
            build_pubsub(sender, params),
        )

        def judge(data: bytes, topic: str, forwarder: str) -> Verdict:
            return Verdict.IGNORE if data.startswith(b"ignore") else Verdict.REJECT

        install_validators(v_pubsub, judge)
        install_validators(s_pubsub, lambda data, topic, fwd: Verdict.ACCEPT)
        async with (
            background_trio_service(v_pubsub),
            background_trio_service(v_router),
            background_trio_service(s_pubsub),
            background_trio_service(s_router),
        ):
            with trio.fail_after(10):
                for pubsub in (v_pubsub, s_pubsub):
                    await pubsub.wait_until_ready()
                    await pubsub.subscribe(TOPIC)
                await sender.connect(_info(victim))
            await until(
                lambda: victim.get_id() in s_pubsub.peer_topics.get(TOPIC, ()),
                10,
                "the sender knows the victim's subscription",
            )
            before = hook_calls().get(PENALTY_HOOK, 0)
            with trio.fail_after(10):
                for i in range(3):
                    await s_pubsub.publish(TOPIC, f"ignore-{i}".encode())
                await s_pubsub.publish(TOPIC, b"reject")
            await until(
                lambda: hook_calls().get(PENALTY_HOOK, 0) - before >= 4,
                10,
                f"py-libp2p calls {PENALTY_HOOK} for each failed validation",
            )
            me = sender.get_id()
            assert v_pubsub.ignored == 3 and v_pubsub.excused == 3
            # The REJECT only (decayed x0.99 per heartbeat since).
            assert 0.9 < v_router.scorer.invalid_messages[me][TOPIC] <= 1.0
            assert -10.0 <= v_router.scorer.score(me, [TOPIC]) < -9.0


def test_the_provider_store_keeps_a_bounded_number_of_keys(monkeypatch):
    """py-libp2p caps providers per key and ADD_PROVIDER messages per peer, not the keys:
    many peers announcing random keys grew every node's store without bound."""
    from libp2p.peer.id import ID

    from repp2p.net.libp2p_compat.kad_dht import BoundedProviderStore

    monkeypatch.setattr(BoundedProviderStore, "max_keys", 50)
    host = build_host(Identity.from_seed(b"\x01" * 32))
    store = BoundedProviderStore(host=host, peer_routing=None, persist_path=None)
    stranger = PeerInfo(ID.from_base58(Identity.from_seed(b"\x02" * 32).peer_id), [])
    for i in range(200):
        store.add_provider(b"key-%d" % i, stranger)
    assert len(store.providers) == 50
    # a key already held still takes providers; our own keys always go in
    store.add_provider(b"key-0", PeerInfo(host.get_id(), []))
    assert len(store.providers[b"key-0"]) == 2
    store.providing_keys.add(b"engine-key")
    store.add_provider(b"engine-key", PeerInfo(host.get_id(), []))
    assert b"engine-key" in store.providers


def test_nodes_use_the_bounded_provider_store():
    from repp2p.net.libp2p_compat.kad_dht import BoundedProviderStore, ServerOnlyKadDHT

    dht = ServerOnlyKadDHT(build_host(Identity.from_seed(b"\x03" * 32)), DHTMode.SERVER)
    assert isinstance(dht.provider_store, BoundedProviderStore)


@pytest.mark.trio
async def test_canary_our_peer_record_goes_once_per_stream_and_messages_still_flow():
    """Real hosts: the publisher's signed peer record reaches the subscriber (it is in its
    peerstore) but rides only the first RPC of the stream; every message is delivered,
    with the strict-signing fields intact (py-libp2p validates them on receipt)."""
    import repp2p.net.libp2p_compat.pubsub as compat_pubsub

    install()
    before = dict(compat_pubsub.record_counts)
    hub, leaf = build_host(Identity.generate()), build_host(Identity.generate())
    params = GossipParams(degree=1, degree_low=1, degree_high=2, eclipse_protection=False)
    async with contextlib.AsyncExitStack() as stack:
        for host in (hub, leaf):
            await stack.enter_async_context(host.run([LOCAL]))
        services = [build_pubsub(hub, params), build_pubsub(leaf, params)]
        for pubsub, router in services:
            await stack.enter_async_context(background_trio_service(pubsub))
            await stack.enter_async_context(background_trio_service(router))
        (hub_pubsub, _), (leaf_pubsub, _) = services
        with trio.fail_after(20):
            await hub_pubsub.wait_until_ready()
            await leaf_pubsub.wait_until_ready()
            await hub_pubsub.subscribe(TOPIC)
            sub = await leaf_pubsub.subscribe(TOPIC)
            await leaf.connect(_info(hub))
            while leaf.get_id() not in hub_pubsub.peer_topics.get(TOPIC, set()):
                await trio.sleep(0.05)
            sent = [f"record-once-{i}".encode() for i in range(20)]
            for data in sent:
                await hub_pubsub.publish(TOPIC, data)
            got = []
            while len(got) < len(sent):
                msg = await sub.get()
                assert msg.signature and msg.key and msg.seqno  # StrictSign fields kept
                got.append(msg.data)
        assert got == sent
        assert leaf.get_peerstore().get_peer_record(hub.get_id()) is not None
    omitted = compat_pubsub.record_counts["omitted"] - before["omitted"]
    with_record = compat_pubsub.record_counts["sent"] - before["sent"]
    assert omitted >= len(sent) - 1  # at most the first message's RPC carried it
    # At least the hub's first RPC carried it (the leaf's peerstore has it, above). Whether
    # an RPC from the leaf carrying a record passes through the hook during the test
    # depends on timing (counted 2 on an idle machine, 1 under CI load), so it is not
    # asserted.
    assert with_record >= 1
