"""What every fake-TEE devnet test checks once its node runs: a client gets a verified
result from it, and its peers verified its attestation and its image's engines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from repp2p.client import Client
from repp2p.testing.network import EPOCH_S, dev_params


async def serves_verified_task(
    tmp_path: Path,
    policy: Path,
    boot: Any,
    node: Any,
    kind: str,
    payload: bytes,
    measurement: bytes,
) -> Any:
    """Submit ``payload`` to echo on ``node`` (``tee_kinds=(kind,)``) through a client that
    trusts ``policy``, check the result and its proof, wait for ``boot``'s verdict on
    ``node`` and check it; return that verdict for the caller's own checks."""
    ctx = Client.open(
        [boot.addrs()[0]],
        data_dir=tmp_path / "client",
        network_params=dev_params(),
        policy=str(policy),
    )
    client = await ctx.__aenter__()
    try:
        with trio.fail_after(3 * EPOCH_S):
            assert await client.wait_for_nodes("echo", 2, timeout=3 * EPOCH_S) >= 2
        with trio.fail_after(60):
            result = await client.submit("echo", payload, tee_kinds=(kind,))
        assert result.output == payload
        proof = result.proof
        assert proof.node == node.peer_id and proof.tee_kind == kind
        assert not proof.simulated and "SIMULATED" not in result.summary()
        # Its peers verified its attestation (test roots) and the pinned image's engines.
        # The first verdict may come before the node's first enclave-signed heartbeat
        # reached ``boot`` (verified evidence, enclave not yet live): wait for a current one.
        with trio.fail_after(3 * EPOCH_S):
            while not _current(boot.keeper.verdict_of(node.peer_id)):
                await trio.sleep(0.1)
        verdict = boot.keeper.verdict_of(node.peer_id)
        assert verdict is not None and verdict.verified, boot.keeper.not_live_reason(node.peer_id)
        assert verdict.tee_kind == kind
        assert verdict.measurements == frozenset(node.enclave.engine_measurements.values())
        status = node.enclave.describe()
        assert status["kind"] == kind and status["measurement"] == measurement.hex()
        return verdict
    finally:
        await ctx.__aexit__(None, None, None)


def _current(verdict: Any) -> bool:
    return verdict is not None and verdict.verified
