"""The enclave runtime interface the node depends on (one implementation per TEE backend).

:class:`repp2p.tee.Enclave` runs on the simulated platform or on a hardware TEE: inside
an SEV-SNP or TDX confidential VM (``sev-snp``, ``dcap``) or a Nitro Enclave (``nitro``)
(:mod:`repp2p.tee.platforms`), optionally with an NVIDIA confidential GPU's evidence.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping

from repp2p.records import Receipt, TaskOffer


class EnclaveAPI(abc.ABC):
    """An enclave holding the keys bound into its attestation, running measured engines.

    Attributes:
        kind: the TEE kind of its evidence (``Attestation.tee_kind``).
        enc_key: X25519 public key for sealed inputs (``Attestation.enc_key``).
        result_key: Ed25519 public key signing receipts (``Attestation.result_key``).
        measurement: the measurement its evidence reports.
        engine_measurements: engine id -> engine measurement (``NodeAd.engines``).
    """

    kind: str
    enc_key: bytes
    result_key: bytes
    measurement: bytes
    engine_measurements: Mapping[str, bytes]

    def public_keys(self) -> tuple[bytes, bytes]:
        """``(enc_key, result_key)``."""
        return self.enc_key, self.result_key

    @abc.abstractmethod
    def attest(self, peer_id: str, epoch: int, nonce: bytes, now: int) -> bytes:
        """TEE evidence binding this enclave's keys to ``peer_id``, ``epoch`` and ``nonce``."""

    def attest_with_collateral(
        self, peer_id: str, epoch: int, nonce: bytes, now: int
    ) -> tuple[bytes, bytes]:
        """``(evidence, collateral)``; the default has no collateral (simulated, Nitro)."""
        return self.attest(peer_id, epoch, nonce, now), b""

    def attest_evidence(
        self, peer_id: str, epoch: int, nonce: bytes, now: int
    ) -> tuple[bytes, bytes, bytes]:
        """``(evidence, collateral, gpu_evidence)``; the default has no GPU evidence."""
        return (*self.attest_with_collateral(peer_id, epoch, nonce, now), b"")

    @abc.abstractmethod
    def execute(
        self,
        *,
        task_id: bytes,
        offer_id: bytes,
        engine_id: str,
        input_digest: bytes,
        sealed_input: bytes,
        client_result_key: bytes,
        started_ms: int,
        expires: int,
        input_size: int | None = None,
        seq: int = 0,
        timeout_s: float = 30.0,
    ) -> tuple[bytes, Receipt]:
        """Open a sealed input, run the engine, return ``(encrypted_output, receipt)``."""

    def execute_offer(
        self,
        offer: TaskOffer,
        offer_id: bytes,
        sealed_input: bytes,
        *,
        started_ms: int,
        expires: int | None = None,
        timeout_s: float = 30.0,
    ) -> tuple[bytes, Receipt]:
        """:meth:`execute` with the fields of a ``TaskOffer`` (``offer_id`` = its record id).

        ``expires`` defaults to the offer's ``expires``.
        """
        return self.execute(
            task_id=offer.task_id,
            offer_id=offer_id,
            engine_id=offer.engine_id,
            input_digest=offer.input_digest,
            sealed_input=sealed_input,
            client_result_key=offer.result_key,
            started_ms=started_ms,
            expires=offer.expires if expires is None else expires,
            input_size=offer.input_size,
            timeout_s=timeout_s,
        )

    @abc.abstractmethod
    def close(self) -> None:
        """Destroy the enclave and its keys. Idempotent."""
