"""TEE attestation: verify evidence offline, bind it to a node, apply a policy.

Pure core: no I/O, no clock, no global randomness -- ``now`` (unix seconds) is always an
argument. Backends (one per TEE kind, all :class:`TEEBackendAPI`) turn evidence into
:class:`Claims` or raise :class:`~repp2p.errors.AttestationError` with a reason;
:func:`verify_node` adds the binding to the node's peer ID, enclave keys and epoch/nonce and
the network's :class:`Policy`. The simulated TEE (:class:`SimulatedEnclave`) is for
development only and is never accepted by a production policy.
"""

from repp2p.attestation.abc import TEEBackendAPI
from repp2p.attestation.binding import (
    expected_gpu_nonce,
    expected_report_data,
    gpu_evidence_digest,
)
from repp2p.attestation.cache import VerificationCache
from repp2p.attestation.claims import SIMULATED_LABEL, Claims, TcbStatus
from repp2p.attestation.dcap import DcapBackend
from repp2p.attestation.liveness import check_liveness, liveness_message
from repp2p.attestation.nitro import NitroBackend
from repp2p.attestation.nvidia import NvidiaBackend, encode_gpu_evidence
from repp2p.attestation.policy import (
    KNOWN_KINDS,
    Policy,
    check_claims,
    load_policy,
    parse_policy,
    policy_from_mapping,
)
from repp2p.attestation.sevsnp import SevSnpBackend
from repp2p.attestation.simulated import SimulatedBackend, SimulatedEnclave
from repp2p.attestation.verify import (
    VerifiedNode,
    default_backends,
    verify_evidence,
    verify_node,
)

__all__ = [
    "KNOWN_KINDS",
    "SIMULATED_LABEL",
    "Claims",
    "DcapBackend",
    "NitroBackend",
    "NvidiaBackend",
    "Policy",
    "SevSnpBackend",
    "SimulatedBackend",
    "SimulatedEnclave",
    "TEEBackendAPI",
    "TcbStatus",
    "VerificationCache",
    "VerifiedNode",
    "check_claims",
    "check_liveness",
    "default_backends",
    "encode_gpu_evidence",
    "expected_gpu_nonce",
    "expected_report_data",
    "gpu_evidence_digest",
    "liveness_message",
    "load_policy",
    "parse_policy",
    "policy_from_mapping",
    "verify_evidence",
    "verify_node",
]
