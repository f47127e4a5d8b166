"""Attestation freshness on real hosts (docs/attestation.md, "Freshness"): nodes stay
attested over several epochs on one Attestation each, kept current by their enclaves'
heartbeat signatures; a node whose enclave process dies gives no more liveness under its
old attestation and comes back by re-attesting a new enclave.

Real py-libp2p hosts on 127.0.0.1, real enclave processes (SIMULATED TEE: development only).
"""

from __future__ import annotations

import os
import signal

import pytest
import trio

from repp2p.errors import AttestationError
from repp2p.records import Attestation, Heartbeat
from repp2p.testing.network import EPOCH_S, local_network

from .conftest import wait_until

pytestmark = pytest.mark.slow


def _attestation(node, peer: str):
    held = node.store.query(type=Attestation.TYPE, signer=peer, limit=1)
    return held[0] if held else None


def _current(node, peer: str, epoch: int) -> bool:
    """Whether ``node``'s view of ``epoch`` counts ``peer`` as currently attested."""
    node.views.view(epoch)
    verdict = node.views.verdict_of(peer)
    return verdict is not None and verdict.verified


async def test_nodes_stay_attested_on_one_attestation_and_a_dead_enclave_stops_counting(
    tmp_path,
):
    async with local_network(tmp_path, 3) as nodes:
        observer, peers = nodes[0], [n.peer_id for n in nodes[1:]]
        clock = observer.clock

        def epoch() -> int:
            return int(clock.now()) // EPOCH_S

        await wait_until(lambda: all(_attestation(observer, p) for p in peers), 30)
        first = {p: _attestation(observer, p).record_id for p in peers}
        start = epoch()
        # several epochs: every view counts every node, and no node sent a second
        # Attestation (it used to re-attest every max_epoch_lag epochs)
        seen = 0
        with trio.fail_after(12 * EPOCH_S):
            while epoch() < start + 5:
                if epoch() >= start + 2:  # views after the first heartbeats settled
                    assert all(_current(observer, p, epoch()) for p in peers), epoch()
                    seen += 1
                await trio.sleep(EPOCH_S / 2)
        assert seen >= 4
        assert {p: _attestation(observer, p).record_id for p in peers} == first

        # kill node 2's enclave process: its old attestation's key signs nothing more
        victim = nodes[2]
        peer = victim.peer_id
        old_key = _attestation(observer, peer).record.result_key
        os.kill(victim.enclave.describe()["pid"], signal.SIGKILL)
        killed = epoch()
        # it re-attests a new enclave (new keys), and is current again under them
        await wait_until(
            lambda: _attestation(observer, peer).record.result_key != old_key, 6 * EPOCH_S
        )
        await wait_until(lambda: _current(observer, peer, epoch()), 6 * EPOCH_S)
        keeper = observer.views.keeper

        def later() -> list:
            beats = observer.store.query(type=Heartbeat.TYPE, signer=peer)
            return [b for b in beats if b.record.epoch > killed and b.record.enclave_sig]

        # no heartbeat signed after the kill verifies under the old key...
        await wait_until(lambda: later(), 4 * EPOCH_S)
        with pytest.raises(AttestationError):
            keeper.live_epoch(peer, old_key, later(), epoch())
        # ...so, replayed, the old attestation gives no liveness once the bound has passed
        bound = killed + keeper.liveness_lag + 1
        await wait_until(lambda: epoch() >= bound, 6 * EPOCH_S)
        beats = observer.store.query(type=Heartbeat.TYPE, signer=peer)
        with pytest.raises(AttestationError):
            keeper.live_epoch(peer, old_key, beats, epoch())
        # the others were never disturbed
        assert all(_attestation(observer, p).record_id == first[p] for p in peers[:1])
