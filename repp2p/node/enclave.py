"""The enclave supervisor: starts the node's enclave, replaces it when it dies, and keeps
its attestation fresh.

Each attestation binds the enclave's keys to this peer ID and the epoch (the epoch beacon is
the nonce); peers verify it under their own policy. Re-attestation (new hardware evidence)
happens at the node's phase of the epoch (:func:`repp2p.node.schedules.phase_of`), so the
attestation peers hold at a boundary is stable, every ``reattest_period_s``, before the
record expires, and when the enclave was replaced. Between re-attestations the enclave
proves it is alive each epoch by signing the node's heartbeat (:meth:`sign_liveness`,
docs/attestation.md "Freshness"). The simulated backend runs in a separate process:
development only, no real security.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from repp2p.attestation import SIMULATED_LABEL, Policy
from repp2p.clock import ClockAPI
from repp2p.matching import beacon
from repp2p.node.abc import EnclaveSupervisorAPI, RecordPublisherAPI
from repp2p.node.publisher import capped_lifetime
from repp2p.records import MAX_LIFETIME_S, Attestation, Receipt
from repp2p.tee import Enclave

log = logging.getLogger("repp2p.node")


class EnclaveSupervisor(EnclaveSupervisorAPI):
    """One enclave process and its attestation schedule.

    Build it with :meth:`start` (the enclave process starts in a worker thread).

    Args:
        enclave: the running enclave.
        engines: engine ids it serves (a replacement serves the same).
        cheat: demo only (dev network): the enclave returns wrong results.
    """

    def __init__(
        self,
        enclave: Enclave,
        engines: tuple[str, ...],
        *,
        cheat: bool,
        tee_kind: str = "simulated",
        collateral_file: str | None = None,
        enclave_address: str | None = None,
        gpu: str | None = None,
    ) -> None:
        self._enclave = enclave
        self._gpu = gpu
        self._tee_kind = tee_kind
        self._collateral_file = collateral_file
        self._enclave_address = enclave_address
        self._engines = engines
        self._cheat = cheat
        self.attested_epoch: int | None = None
        self.attestation_expires = 0.0

    @classmethod
    async def start(
        cls,
        engines: tuple[str, ...],
        *,
        cheat: bool = False,
        tee_kind: str = "simulated",
        collateral_file: str | None = None,
        enclave_address: str | None = None,
        gpu: str | None = None,
    ) -> EnclaveSupervisor:
        """Start an enclave serving ``engines`` on the ``tee_kind`` platform (nitro: connect
        to the enclave process at ``enclave_address``)."""
        enclave = await trio.to_thread.run_sync(
            lambda: Enclave.start(
                list(engines),
                cheat=cheat,
                tee_kind=tee_kind,
                collateral_file=collateral_file,
                enclave_address=enclave_address,
                gpu=gpu,
            )
        )
        if cheat:
            log.warning("CHEAT MODE (demo): this node's enclave returns wrong results")
        return cls(
            enclave, engines, cheat=cheat, tee_kind=tee_kind, collateral_file=collateral_file,
            enclave_address=enclave_address, gpu=gpu,
        )  # fmt: skip

    @property
    def kind(self) -> str:
        return self._enclave.kind

    @property
    def engine_measurements(self) -> dict[str, bytes]:
        return dict(self._enclave.engine_measurements)

    @property
    def enc_key(self) -> bytes | None:
        return self._enclave.enc_key

    @property
    def is_alive(self) -> bool:
        """False once the enclave process has died (the next attestation replaces it)."""
        return self._enclave.is_alive

    async def sign_liveness(self, peer_id: str, epoch: int) -> bytes:
        """The enclave's signature saying it is alive in ``epoch`` (a heartbeat's
        ``enclave_sig``); raises :class:`repp2p.tee.EnclaveError` when the enclave is dead
        (a dead enclave's node stops counting as attested until it re-attests)."""
        return await self._enclave.sign_liveness_async(peer_id, epoch)

    async def execute(self, **task: Any) -> tuple[bytes, Receipt]:
        return await self._enclave.execute_async(**task)

    def describe(self) -> dict[str, Any]:
        e = self._enclave
        return {
            "kind": e.kind,
            "label": SIMULATED_LABEL if e.kind == "simulated" else "",
            "pid": e.pid,
            "measurement": e.measurement.hex(),
        }

    async def restart_if_dead(self) -> None:
        """Replace a dead enclave process (new keys, so a new attestation must follow)."""
        if self._enclave.is_alive:
            return
        log.warning("enclave process died; starting a new one (new keys, new attestation)")
        engines, cheat, kind = list(self._engines), self._cheat, self._tee_kind
        self._enclave = await trio.to_thread.run_sync(
            lambda: Enclave.start(
                engines,
                cheat=cheat,
                tee_kind=kind,
                collateral_file=self._collateral_file,
                enclave_address=self._enclave_address,
                gpu=self._gpu,
            )
        )

    async def attest(
        self,
        publisher: RecordPublisherAPI,
        peer_id: str,
        policy: Policy,
        clock: ClockAPI,
        epoch_s: int,
    ) -> None:
        """Publish a fresh Attestation binding the enclave keys to ``peer_id`` and the epoch."""
        await self.restart_if_dead()
        now = int(clock.now())
        epoch = now // epoch_s
        nonce = beacon(epoch)
        # [tee hook] hardware evidence comes with its collateral (sev-snp: the VCEK chain)
        # and, with a confidential GPU, the GPU evidence the CPU report commits to
        evidence, collateral, gpu_evidence = await self._enclave.attest_evidence_async(
            peer_id, epoch, nonce, now
        )
        lifetime = capped_lifetime(
            Attestation.TYPE, policy.reattest_period_s + (policy.max_epoch_lag + 1) * epoch_s
        )
        await publisher.publish(
            Attestation(
                tee_kind=self._enclave.kind,
                evidence=evidence,
                collateral=collateral,
                gpu_evidence=gpu_evidence,
                enc_key=self._enclave.enc_key,
                result_key=self._enclave.result_key,
                epoch=epoch,
                nonce=nonce,
                seq=publisher.next_seq(),
                expires=now + lifetime,
            )
        )
        self.attested_epoch = epoch
        self.attestation_expires = now + lifetime

    def attestation_due(self, now: float, policy: Policy, epoch_s: int, phase: float) -> bool:
        """Whether to re-attest at ``now`` (see the module docstring)."""
        epoch = int(now) // epoch_s
        # Mid-epoch (at this node's phase), so the attestation peers snapshot at the
        # boundary is stable.
        mid_epoch = now - epoch * epoch_s >= epoch_s * phase
        # Every reattest_period_s (peers count an attestation for that long plus
        # max_epoch_lag epochs, Policy.attestation_max_age_epochs; in between the enclave
        # signs each heartbeat): the evidence is the largest gossiped record.
        period = self.attested_epoch is None or policy.is_due_for_reattestation(
            self.attested_epoch * epoch_s, int(now)
        )
        # ...and before our attestation expires (its lifetime is capped at a day).
        margin = min(epoch_s, MAX_LIFETIME_S[Attestation.TYPE] // 2)
        expiring = now >= self.attestation_expires - margin
        return (mid_epoch and period) or expiring or not self._enclave.is_alive

    async def run_attestations(
        self,
        publisher: RecordPublisherAPI,
        peer_id: str,
        policy: Policy,
        clock: ClockAPI,
        epoch_s: int,
        *,
        phase: float,
        tick_s: float,
    ) -> None:
        """Re-attest whenever :meth:`attestation_due`; failures are logged and retried."""
        while True:
            await clock.sleep(tick_s)
            if self.attestation_due(clock.now(), policy, epoch_s, phase):
                try:
                    await self.attest(publisher, peer_id, policy, clock, epoch_s)
                except Exception:
                    log.exception("re-attestation failed; retrying")

    def close(self, *, wait: bool) -> None:
        """Stop the enclave; ``wait=False`` does not wait for running tasks."""
        if wait:
            self._enclave.close()
        else:
            self._enclave.terminate()
