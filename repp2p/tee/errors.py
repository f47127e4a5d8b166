"""Errors of the enclave runtime and of result verification (one hierarchy, ``ReppError``).

Two sides, two classes, as in h11: :class:`EnclaveError` is raised to the *node* (its
enclave refused a request or failed); :class:`ResultError` is raised to the *client* (what a
node sent back does not verify). A ``ResultError`` is proof of a bad result and maps to the
``bad_proof`` feedback outcome. An engine refusing an input stays an
:class:`engines.EngineError` (the client's fault, e.g. ``BAD_INPUT``) on both sides.

Detail texts never quote plaintext: they may be logged by the node.
"""

from __future__ import annotations

import enum
from typing import Any

from repp2p.errors import ReasonedError


class EnclaveReason(enum.Enum):
    """Why the enclave refused or failed a request. Values are stable metric names."""

    #: the sealed input does not open with the enclave key and the offer's client key
    BAD_SEAL = "bad_seal"
    #: the sealed input names another task
    WRONG_TASK = "wrong_task"
    #: the opened input does not hash to the offer's input digest, or has another size
    DIGEST_MISMATCH = "digest_mismatch"
    #: the enclave does not serve this engine
    UNKNOWN_ENGINE = "unknown_engine"
    #: the request from the node is malformed (types, sizes)
    BAD_REQUEST = "bad_request"
    #: the enclave measured other engines than the node expected
    MEASUREMENT_MISMATCH = "measurement_mismatch"
    #: no answer in time; the enclave process was killed
    TIMEOUT = "timeout"
    #: the enclave process could not be started
    START_FAILED = "start_failed"
    #: the enclave process died or broke the pipe protocol
    CRASHED = "crashed"
    #: the enclave was closed
    CLOSED = "closed"
    #: an unexpected failure inside the enclave (detail: exception type only)
    INTERNAL = "internal"
    #: the client's input is unusable by its own doing; the enclave signed a ``Refusal``
    INPUT_REFUSED = "input_refused"
    #: the hardware TEE interface this backend needs is missing here (see ``repp2p tee probe``)
    TEE_UNAVAILABLE = "tee_unavailable"
    #: the hardware TEE interface is there but failed or answered garbage
    TEE_FAILED = "tee_failed"


class EnclaveError(ReasonedError):
    """The node's enclave refused a request or failed.

    Attributes:
        reason: the :class:`EnclaveReason`.
        detail: human-readable detail; never parsed, never plaintext.
    """


class InputRefused(EnclaveError):
    """The enclave refused the client's input for a client-caused reason and signed a
    :class:`repp2p.records.Refusal` saying so (reason ``INPUT_REFUSED``).

    Attributes:
        refusal: the enclave-signed record (the node wraps it in its record signature).
    """

    def __init__(self, refusal: Any, detail: str = "") -> None:
        super().__init__(EnclaveReason.INPUT_REFUSED, detail or refusal.code)
        self.refusal = refusal


class TeeInterfaceReason(enum.Enum):
    """Why a kernel TEE interface (configfs-tsm, /dev/sev-guest, ...) gave no evidence."""

    #: the interface does not exist on this machine
    MISSING = "missing"
    #: it exists but this process may not use it
    PERMISSION = "permission"
    #: configfs-tsm answers with another provider than the backend needs
    WRONG_PROVIDER = "wrong_provider"
    #: another writer changed the report entry while we used it (generation moved)
    CONCURRENT_WRITER = "concurrent_writer"
    #: what the kernel returned is not what the ABI says (size, layout, echo of our data)
    MALFORMED = "malformed"
    #: a read, write, mkdir or ioctl failed
    IO_ERROR = "io_error"
    #: this path is designed but not implemented in this release
    NOT_IMPLEMENTED = "not_implemented"


class TeeInterfaceError(ReasonedError):
    """A kernel TEE interface could not produce evidence (inside the enclave runtime).

    The enclave process turns it into an :class:`EnclaveError` (``TEE_UNAVAILABLE`` for
    MISSING/PERMISSION/WRONG_PROVIDER/NOT_IMPLEMENTED, ``TEE_FAILED`` otherwise).

    Attributes:
        reason: the :class:`TeeInterfaceReason`.
        detail: what failed and, where the operator can act, what to do.
    """


#: reasons that mean "this machine cannot do it", as opposed to "it failed this time"
UNAVAILABLE_REASONS = frozenset(
    {
        TeeInterfaceReason.MISSING,
        TeeInterfaceReason.PERMISSION,
        TeeInterfaceReason.WRONG_PROVIDER,
        TeeInterfaceReason.NOT_IMPLEMENTED,
    }
)


class ResultReason(enum.Enum):
    """Why a client rejects a node's result. Each one is a ``bad_proof`` outcome."""

    #: the encrypted output does not open with the client key and the attested enclave key
    UNDECRYPTABLE = "undecryptable"
    #: the output opened but is not a well-formed output envelope
    MALFORMED = "malformed"
    #: the output or the receipt is for another task or offer
    WRONG_TASK = "wrong_task"
    #: the receipt's result key is not the attested enclave result key
    WRONG_KEY = "wrong_key"
    #: the receipt's enclave signature does not verify
    BAD_SIGNATURE = "bad_signature"
    #: the receipt commits to another input
    INPUT_DIGEST_MISMATCH = "input_digest_mismatch"
    #: the receipt commits to another output than the one delivered
    OUTPUT_DIGEST_MISMATCH = "output_digest_mismatch"
    #: the receipt names another engine or measurement than the node advertised
    WRONG_ENGINE = "wrong_engine"
    #: finished before it started
    BAD_TIMING = "bad_timing"
    #: the claim or the receipt expires before the offer (an honest node copies the
    #: offer's ``expires``: :func:`repp2p.tasks.expiry_fault`)
    EXPIRES_EARLY = "expires_early"


class ResultError(ReasonedError):
    """A node's result (encrypted output + receipt) failed verification.

    Attributes:
        reason: the :class:`ResultReason`.
        detail: human-readable detail; never parsed.
    """
