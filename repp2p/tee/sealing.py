"""The sealing scheme between a client and an enclave, both halves.

Keys: per task the client makes a :class:`TaskSecret`: an X25519 key pair (its public half
is ``TaskOffer.result_key``) and a 32-byte random ``salt``. The enclave holds an X25519 key
``enc_key`` and an Ed25519 key ``result_key``, both bound into its attestation.

Digests: ``digest(x) = SHA-256("repp2p/task-digest/v1\\0" || salt || x)``. The offer's
``input_digest`` and the receipt's digests use it. The salt is secret (it travels only
inside the sealed input), so the public digests in gossiped ``TaskOffer`` and ``Receipt``
records cannot be brute-forced back to a short input or output; one salt per task makes
the digests of redundant runs comparable.

Input: ``sealed = Box(client_sk, enclave_enc_pk).encrypt(CBOR{format, task_id, salt, input})``
(NaCl crypto_box: X25519 + XSalsa20-Poly1305, random 24-byte nonce prepended). A box, not
an anonymous sealed box, so the enclave knows the input was made by the holder of the
offer's ``result_key``: the node cannot substitute an input of its own under the client's
offer.

Output: ``encrypted = Box(enclave_enc_sk, client_pk).encrypt(CBOR{format, task_id, output})``;
only the client (and the enclave) can open it, and opening proves it came from the attested
``enc_key``.

Receipt: the enclave signs :func:`repp2p.records.receipt_message` with ``result_key``;
``input_digest`` and ``output_digest`` are ``digest(input)`` and ``digest(output)``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac

import cbor2
import nacl.exceptions
import nacl.public
import nacl.signing
import nacl.utils

from repp2p.records import Receipt, receipt_message
from repp2p.tee.errors import EnclaveError, EnclaveReason, ResultError, ResultReason

DIGEST_DOMAIN = b"repp2p/task-digest/v1\0"
INPUT_FORMAT = "repp2p-sealed-input/1"
OUTPUT_FORMAT = "repp2p-sealed-output/1"
SALT_SIZE = 32
#: bytes a sealed input or encrypted output adds to its payload (nonce, MAC, CBOR framing)
SEAL_OVERHEAD = 24 + 16 + 128


def task_digest(salt: bytes, data: bytes) -> bytes:
    """The salted digest of a task's input or output (see the module docstring)."""
    return hashlib.sha256(DIGEST_DOMAIN + bytes(salt) + bytes(data)).digest()


@dataclasses.dataclass(frozen=True)
class TaskSecret:
    """What a client keeps for one task: its X25519 key and the digest salt.

    Attributes:
        private_key: the client's X25519 private key for this task.
        salt: 32 random bytes, sealed to each node that runs the task.
    """

    private_key: nacl.public.PrivateKey = dataclasses.field(repr=False)
    salt: bytes = dataclasses.field(repr=False)

    def __post_init__(self) -> None:
        if len(self.salt) != SALT_SIZE:
            raise ValueError("salt is 32 bytes")

    @classmethod
    def generate(cls) -> TaskSecret:
        """A fresh secret (randomness from the OS via libsodium)."""
        return cls(nacl.public.PrivateKey.generate(), nacl.utils.random(SALT_SIZE))

    @classmethod
    def from_seed(cls, seed: bytes) -> TaskSecret:
        """A deterministic secret from 32 bytes (tests, simulations)."""
        if len(seed) != 32:
            raise ValueError("seed is 32 bytes")
        key = hashlib.sha256(b"repp2p task secret key\0" + seed).digest()
        salt = hashlib.sha256(b"repp2p task secret salt\0" + seed).digest()
        return cls(nacl.public.PrivateKey(key), salt)

    @property
    def public_key(self) -> bytes:
        """The 32-byte X25519 public key: put it in ``TaskOffer.result_key``."""
        return bytes(self.private_key.public_key)

    def digest(self, data: bytes) -> bytes:
        """``task_digest(salt, data)``: the offer's ``input_digest`` for ``data``."""
        return task_digest(self.salt, data)

    def to_bytes(self) -> bytes:
        """64 bytes (key || salt), to persist a pending task. Keep it secret."""
        return bytes(self.private_key) + self.salt

    @classmethod
    def from_bytes(cls, data: bytes) -> TaskSecret:
        if len(data) != 64:
            raise ValueError("a task secret is 64 bytes")
        return cls(nacl.public.PrivateKey(data[:32]), data[32:])


def _dumps(obj: object) -> bytes:
    return cbor2.dumps(obj, canonical=True)


def _box(private: nacl.public.PrivateKey, public: bytes) -> nacl.public.Box:
    return _shared_box(bytes(private), bytes(public))


@functools.lru_cache(maxsize=64)
def _shared_box(private: bytes, public: bytes) -> nacl.public.Box:
    """The box of a key pair, kept for the pair's next use: a task seals and opens with the
    same two keys (the client its input and output, the enclave likewise), and each box
    costs an X25519 exchange. Bounded: the last 64 pairs (a few tasks' worth). The keys of
    those pairs stay in this process's memory a little longer than their tasks, which
    changes nothing for anyone who can read that memory: it holds the tasks themselves."""
    return nacl.public.Box(nacl.public.PrivateKey(private), nacl.public.PublicKey(public))


# -- client half ---------------------------------------------------------------------------


def seal_input(
    plaintext: bytes,
    enclave_enc_key: bytes,
    *,
    task_id: bytes,
    secret: TaskSecret | None = None,
) -> tuple[bytes, TaskSecret]:
    """Seal a task input to an enclave's attested X25519 key.

    Args:
        plaintext: the input for the engine.
        enclave_enc_key: the ``enc_key`` of the node's *verified* attestation.
        task_id: the offer's task id (bound inside the seal).
        secret: the task's secret; ``None`` makes a fresh one. Pass the same secret for
            every node of a redundant task (its public key is the offer's ``result_key``
            and its digest of ``plaintext`` the offer's ``input_digest``).

    Returns:
        ``(sealed, secret)``.
    """
    if len(enclave_enc_key) != 32 or len(task_id) != 32:
        raise ValueError("enclave_enc_key and task_id are 32 bytes")
    secret = secret or TaskSecret.generate()
    payload = _dumps(
        {
            "format": INPUT_FORMAT,
            "task_id": bytes(task_id),
            "salt": secret.salt,
            "input": bytes(plaintext),
        }
    )
    return bytes(_box(secret.private_key, enclave_enc_key).encrypt(payload)), secret


def open_output(
    encrypted: bytes, secret: TaskSecret, enclave_enc_key: bytes, *, task_id: bytes
) -> bytes:
    """Decrypt an enclave's output (does not check the receipt: see :func:`open_result`).

    Raises:
        ResultError: UNDECRYPTABLE, MALFORMED or WRONG_TASK.
    """
    try:
        payload = _box(secret.private_key, enclave_enc_key).decrypt(bytes(encrypted))
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        raise ResultError(
            ResultReason.UNDECRYPTABLE, "output does not open with this task's key"
        ) from None
    try:
        obj = cbor2.loads(payload)
    except Exception:
        raise ResultError(ResultReason.MALFORMED, "output envelope is not CBOR") from None
    if (
        not isinstance(obj, dict)
        or set(obj) != {"format", "task_id", "output"}
        or obj["format"] != OUTPUT_FORMAT
        or not isinstance(obj["output"], bytes)
        or not isinstance(obj["task_id"], bytes)
    ):
        raise ResultError(ResultReason.MALFORMED, "not a repp2p output envelope")
    if not hmac.compare_digest(obj["task_id"], bytes(task_id)):
        raise ResultError(ResultReason.WRONG_TASK, "output is for another task")
    return obj["output"]


def verify_receipt(
    receipt: Receipt,
    *,
    expected_result_key: bytes,
    input_digest: bytes,
    output_digest: bytes,
    task_id: bytes | None = None,
    offer_id: bytes | None = None,
    engine_id: str | None = None,
    measurement: bytes | None = None,
) -> None:
    """Check a receipt: signed by the attested enclave and bound to this input and output.

    Args:
        receipt: the ``Receipt`` record (already decoded; the node's own record signature
            is checked by ``records.decode``).
        expected_result_key: the ``result_key`` of the node's *verified* attestation.
        input_digest: the offer's ``input_digest``.
        output_digest: ``secret.digest(output)`` of the output the client decrypted.
        task_id, offer_id, engine_id, measurement: when given, must match too
            (``measurement``: the engine measurement the node advertised).

    Raises:
        ResultError: WRONG_KEY, BAD_SIGNATURE, INPUT_DIGEST_MISMATCH,
            OUTPUT_DIGEST_MISMATCH, WRONG_TASK, WRONG_ENGINE or BAD_TIMING.
    """
    if not hmac.compare_digest(receipt.result_key, bytes(expected_result_key)):
        raise ResultError(ResultReason.WRONG_KEY, "receipt not signed by the attested key")
    try:
        nacl.signing.VerifyKey(receipt.result_key).verify(
            receipt_message(receipt), receipt.enclave_sig
        )
    except (nacl.exceptions.BadSignatureError, ValueError):
        raise ResultError(ResultReason.BAD_SIGNATURE, "enclave signature") from None
    if task_id is not None and receipt.task_id != task_id:
        raise ResultError(ResultReason.WRONG_TASK, "receipt is for another task")
    if offer_id is not None and receipt.offer_id != offer_id:
        raise ResultError(ResultReason.WRONG_TASK, "receipt is for another offer")
    if engine_id is not None and receipt.engine_id != engine_id:
        raise ResultError(ResultReason.WRONG_ENGINE, f"receipt engine {receipt.engine_id!r}")
    if measurement is not None and receipt.measurement != measurement:
        raise ResultError(ResultReason.WRONG_ENGINE, "receipt engine measurement differs")
    if not hmac.compare_digest(receipt.input_digest, bytes(input_digest)):
        raise ResultError(ResultReason.INPUT_DIGEST_MISMATCH, "receipt commits to another input")
    if not hmac.compare_digest(receipt.output_digest, bytes(output_digest)):
        raise ResultError(ResultReason.OUTPUT_DIGEST_MISMATCH, "receipt commits to another output")
    if receipt.finished_ms < receipt.started_ms:
        raise ResultError(ResultReason.BAD_TIMING, "finished before it started")


def open_result(
    encrypted: bytes,
    receipt: Receipt,
    secret: TaskSecret,
    *,
    enclave_enc_key: bytes,
    enclave_result_key: bytes,
    task_id: bytes,
    input_digest: bytes,
    offer_id: bytes | None = None,
    engine_id: str | None = None,
    measurement: bytes | None = None,
) -> bytes:
    """Decrypt a node's output and verify its receipt; the client's one call.

    Args:
        encrypted: the encrypted output the node sent.
        receipt: the receipt the node sent.
        secret: the task's :class:`TaskSecret`.
        enclave_enc_key, enclave_result_key: the keys of the node's *verified* attestation.
        task_id, input_digest: from the client's own offer.
        offer_id, engine_id, measurement: optional further bindings (see
            :func:`verify_receipt`).

    Returns:
        The verified plaintext output.

    Raises:
        ResultError: with the reason (each is a ``bad_proof``).
    """
    output = open_output(encrypted, secret, enclave_enc_key, task_id=task_id)
    verify_receipt(
        receipt,
        expected_result_key=enclave_result_key,
        input_digest=input_digest,
        output_digest=secret.digest(output),
        task_id=task_id,
        offer_id=offer_id,
        engine_id=engine_id,
        measurement=measurement,
    )
    return output


# -- enclave half (runs in the enclave process) ----------------------------------------------


def unseal_input(
    sealed: bytes, enclave_key: nacl.public.PrivateKey, client_key: bytes, task_id: bytes
) -> tuple[bytes, bytes]:
    """Open a sealed input inside the enclave.

    Returns:
        ``(salt, plaintext)``.

    Raises:
        EnclaveError: BAD_SEAL or WRONG_TASK.
    """
    try:
        payload = _box(enclave_key, client_key).decrypt(bytes(sealed))
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        raise EnclaveError(
            EnclaveReason.BAD_SEAL, "sealed input does not open with the offer's client key"
        ) from None
    try:
        obj = cbor2.loads(payload)
    except Exception:
        raise EnclaveError(EnclaveReason.BAD_SEAL, "sealed input is not CBOR") from None
    if (
        not isinstance(obj, dict)
        or set(obj) != {"format", "task_id", "salt", "input"}
        or obj["format"] != INPUT_FORMAT
        or not all(isinstance(obj[k], bytes) for k in ("task_id", "salt", "input"))
        or len(obj["salt"]) != SALT_SIZE
    ):
        raise EnclaveError(EnclaveReason.BAD_SEAL, "not a repp2p sealed input")
    if not hmac.compare_digest(obj["task_id"], bytes(task_id)):
        raise EnclaveError(EnclaveReason.WRONG_TASK, "sealed input is for another task")
    return obj["salt"], obj["input"]


def seal_output(
    output: bytes, enclave_key: nacl.public.PrivateKey, client_key: bytes, task_id: bytes
) -> bytes:
    """Encrypt an engine output to the client's key, inside the enclave."""
    payload = _dumps({"format": OUTPUT_FORMAT, "task_id": bytes(task_id), "output": output})
    return bytes(_box(enclave_key, client_key).encrypt(payload))
