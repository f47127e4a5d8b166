"""Verification entry points: evidence under a policy, and a node's whole attestation.

``verify_node`` is what the node calls on every ``Attestation`` record it receives:
evidence valid (backend) AND bound to this peer, its keys and this epoch/nonce (binding)
AND acceptable (policy). A GPU report rides along only bound into the CPU report data.
Everything is recomputed locally from the bytes; nothing a sender says about its own
evidence is trusted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from repp2p.attestation.abc import TEEBackendAPI
from repp2p.attestation.binding import check_report_data, expected_gpu_nonce, expected_report_data
from repp2p.attestation.cache import VerificationCache, cache_key
from repp2p.attestation.claims import Claims
from repp2p.attestation.policy import Policy, check_claims
from repp2p.errors import AttestationError, AttestationReason

#: Kinds that are a node's CPU attestation (the GPU kind only rides along).
CPU_KINDS = frozenset({"simulated", "nitro", "sev-snp", "dcap"})
GPU_KIND = "nvidia"


def default_backends() -> Mapping[str, TEEBackendAPI]:
    """One backend per kind with the pinned production roots."""
    from repp2p.attestation.dcap import DcapBackend
    from repp2p.attestation.nitro import NitroBackend
    from repp2p.attestation.nvidia import NvidiaBackend
    from repp2p.attestation.sevsnp import SevSnpBackend
    from repp2p.attestation.simulated import SimulatedBackend

    backends: list[TEEBackendAPI] = [
        SimulatedBackend(),
        NitroBackend(),
        SevSnpBackend(),
        DcapBackend(),
        NvidiaBackend(),
    ]
    return MappingProxyType({b.kind: b for b in backends})


_DEFAULT: Mapping[str, TEEBackendAPI] | None = None


def _backends(backends: Mapping[str, TEEBackendAPI] | None) -> Mapping[str, TEEBackendAPI]:
    global _DEFAULT
    if backends is not None:
        return backends
    if _DEFAULT is None:
        _DEFAULT = default_backends()
    return _DEFAULT


def _backend(table: Mapping[str, TEEBackendAPI], kind: str) -> TEEBackendAPI:
    """The verifier for ``kind``; a caller's table without it is a typed refusal, not a crash."""
    try:
        return table[kind]
    except KeyError:
        raise AttestationError(
            AttestationReason.KIND_NOT_ALLOWED, f"no verifier for kind {kind!r} on this peer"
        ) from None


def _precheck_kind(kind: str, policy: Policy) -> None:
    """Refuse kinds the policy does not accept before spending any cryptography."""
    if kind == "simulated" and not policy.is_kind_accepted(kind):
        raise AttestationError(
            AttestationReason.SIMULATED_NOT_ALLOWED, "policy does not accept the simulated TEE"
        )
    if not policy.is_kind_accepted(kind):
        raise AttestationError(AttestationReason.KIND_NOT_ALLOWED, f"kind {kind!r} not accepted")


def verify_evidence(
    kind: str,
    evidence: bytes,
    collateral: bytes,
    policy: Policy,
    now: int,
    *,
    engines: Iterable[str] = (),
    backends: Mapping[str, TEEBackendAPI] | None = None,
) -> Claims:
    """Verify evidence of ``kind`` and apply ``policy`` (no binding check).

    Args:
        kind: TEE kind; selects the backend.
        evidence: evidence bytes.
        collateral: collateral bytes (may be empty where the format allows).
        policy: acceptance policy.
        now: unix seconds.
        engines: engine ids whose measurement pins apply.
        backends: kind -> backend; default: :func:`default_backends`.

    Returns:
        The verified, accepted claims.

    Raises:
        AttestationError: with the reason.
    """
    table = _backends(backends)
    if kind not in table:
        raise AttestationError(AttestationReason.KIND_NOT_ALLOWED, f"unknown TEE kind {kind!r}")
    _precheck_kind(kind, policy)
    claims = table[kind].verify(bytes(evidence), bytes(collateral), now)
    check_claims(claims, policy, now, engines)
    return claims


@dataclasses.dataclass(frozen=True)
class VerifiedNode:
    """A node whose attestation verified.

    Attributes:
        peer_id: the node's peer ID.
        claims: claims of its CPU TEE evidence.
        gpu_claims: claims of its GPU evidence, when it sent any.
        valid_from: unix second from which the verification holds.
        valid_until: unix second until which it holds (earliest certificate/collateral end).
    """

    peer_id: str
    claims: Claims
    gpu_claims: Claims | None
    valid_from: int
    valid_until: int

    @property
    def simulated(self) -> bool:
        return self.claims.simulated


def verify_node(
    peer_id: str,
    tee_kind: str,
    evidence: bytes,
    collateral: bytes,
    gpu_evidence: bytes,
    enc_key: bytes,
    result_key: bytes,
    epoch: int,
    nonce: bytes,
    policy: Policy,
    now: int,
    *,
    engines: Iterable[str] = (),
    current_epoch: int | None = None,
    epoch_s: int | None = None,
    backends: Mapping[str, TEEBackendAPI] | None = None,
    cache: VerificationCache[VerifiedNode] | None = None,
) -> VerifiedNode:
    """Verify a node's attestation: evidence valid AND binding correct AND policy satisfied.

    Args:
        peer_id: the libp2p peer ID that signed the ``Attestation`` record.
        tee_kind, evidence, collateral, gpu_evidence, enc_key, result_key, epoch, nonce:
            the fields of the ``Attestation`` record, as received.
        policy: the network's policy.
        now: unix seconds.
        engines: engine ids the node offers (their measurement pins apply).
        current_epoch: the epoch now; when given, ``epoch`` may not be ahead of it and may
            lag it by at most ``policy.attestation_max_age_epochs(epoch_s)`` (the record's
            lifetime: a peer that joined late or synced accepts it until then; whether its
            enclave is still alive is :func:`repp2p.attestation.liveness.check_liveness`'s
            question), or, without ``epoch_s``, by ``policy.max_epoch_lag`` (evidence just
            produced: a node checking its own).
        epoch_s: the network's epoch length (see ``current_epoch``).
        backends: kind -> backend; default: :func:`default_backends`.
        cache: a :class:`VerificationCache`; re-verification of identical inputs inside
            their validity window then costs a hash and the policy's time checks.

    Returns:
        A :class:`VerifiedNode`.

    Raises:
        AttestationError: with the reason (REPORT_DATA_MISMATCH for a binding failure,
            STALE_EVIDENCE for an old epoch, ...).
    """
    engines = tuple(engines)
    _precheck_kind(tee_kind, policy)
    if tee_kind not in CPU_KINDS:
        raise AttestationError(
            AttestationReason.KIND_NOT_ALLOWED, f"{tee_kind!r} cannot be a node's CPU TEE"
        )
    if current_epoch is not None:
        most = (
            policy.max_epoch_lag if epoch_s is None else policy.attestation_max_age_epochs(epoch_s)
        )
        if not 0 <= current_epoch - epoch <= most:
            raise AttestationError(
                AttestationReason.STALE_EVIDENCE,
                f"epoch {epoch} vs current epoch {current_epoch} (at most {most} behind)",
            )
    key = None
    if cache is not None:
        key = cache_key(
            peer_id, tee_kind, evidence, collateral, gpu_evidence, enc_key, result_key,
            epoch, nonce, policy.fingerprint, engines,
        )  # fmt: skip
        hit = cache.get(key, now)
        if hit is not None:
            check_claims(hit.claims, policy, now, engines)
            if hit.gpu_claims is not None:
                check_claims(hit.gpu_claims, policy, now, ())
            return hit
    table = _backends(backends)
    expected = expected_report_data(peer_id, enc_key, result_key, epoch, nonce, gpu_evidence)
    claims = _backend(table, tee_kind).verify(bytes(evidence), bytes(collateral), now)
    check_report_data(claims.report_data, expected)
    check_claims(claims, policy, now, engines)
    gpu_claims = None
    window = (claims.valid_from, claims.valid_until)
    if gpu_evidence:
        if not policy.is_kind_accepted(GPU_KIND):
            raise AttestationError(AttestationReason.KIND_NOT_ALLOWED, "GPU evidence (nvidia)")
        gpu_claims = _backend(table, GPU_KIND).verify(bytes(gpu_evidence), b"", now)
        check_report_data(
            gpu_claims.report_data, expected_gpu_nonce(peer_id, enc_key, result_key, epoch, nonce)
        )
        check_claims(gpu_claims, policy, now, ())
        window = (max(window[0], gpu_claims.valid_from), min(window[1], gpu_claims.valid_until))
    result = VerifiedNode(peer_id, claims, gpu_claims, window[0], window[1])
    if cache is not None and key is not None:
        cache.put(key, result, window[0], window[1])
    return result
