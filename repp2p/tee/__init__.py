"""The enclave runtime: keys bound into attestation, sealed inputs, measured engines.

Node side::

    enclave = Enclave.start(["echo", "sentiment"])        # SIMULATED: a separate process
    enc_key, result_key = enclave.public_keys()           # -> the Attestation record
    evidence = enclave.attest(peer_id, epoch, nonce, now)
    encrypted, receipt = enclave.execute(task_id=..., ...)  # or execute_offer(offer, ...)
    enclave.close()

Client side::

    secret = TaskSecret.generate()                 # offer.result_key = secret.public_key
    input_digest = secret.digest(plaintext)        # offer.input_digest
    sealed, _ = seal_input(plaintext, enc_key, task_id=task_id, secret=secret)
    output = open_result(encrypted, receipt, secret, enclave_enc_key=..., ...)

The simulated backend is NOT REAL SECURITY: see docs/engines.md.
"""

from repp2p.tee.abc import EnclaveAPI
from repp2p.tee.enclave import KIND, Enclave
from repp2p.tee.errors import (
    EnclaveError,
    EnclaveReason,
    InputRefused,
    ResultError,
    ResultReason,
)
from repp2p.tee.measurement import enclave_measurement, runtime_measurement
from repp2p.tee.sealing import (
    SEAL_OVERHEAD,
    TaskSecret,
    open_output,
    open_result,
    seal_input,
    task_digest,
    verify_receipt,
)

__all__ = [
    "KIND",
    "SEAL_OVERHEAD",
    "Enclave",
    "EnclaveAPI",
    "EnclaveError",
    "EnclaveReason",
    "InputRefused",
    "ResultError",
    "ResultReason",
    "TaskSecret",
    "enclave_measurement",
    "open_output",
    "open_result",
    "runtime_measurement",
    "seal_input",
    "task_digest",
    "verify_receipt",
]
