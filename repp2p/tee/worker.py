"""The enclave process (``python -m repp2p.tee.worker``).

Its evidence comes from a platform (:mod:`repp2p.tee.platforms`): the SIMULATED TEE, or
``sev-snp`` / ``dcap`` when the process runs inside an SEV-SNP or TDX confidential VM
(then the VM is the TEE: its memory is encrypted from the host, and configfs-tsm reports
bind our keys), or ``nitro`` inside an AWS Nitro Enclave, where it is started as
``python -m repp2p.tee.worker --vsock PORT`` and the node connects over vsock
(:mod:`repp2p.tee.vsock`).

SIMULATED: this is an ordinary OS process. It keeps the enclave keys and every plaintext
out of the *node process* (separate address space; nothing written to disk or logs), but
root on the host, a debugger, or anyone reading this process's memory sees everything.
See docs/engines.md for what it does not protect against.

Rules of this file: the node (our parent) is untrusted -- every request is validated;
replies never carry plaintext, and error details never quote it; the process writes
nothing to disk, disables core dumps, and exits when the pipe closes. stdout/stdin are
moved to private descriptors at start so that engine code that prints cannot corrupt
the protocol, and stdout is pointed at stderr (the node discards it by default).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import time

import nacl.public
import nacl.signing
import nacl.utils

from engines.abc import EngineAPI, run_checked
from engines.errors import EngineError
from engines.registry import load_engines
from repp2p.attestation.liveness import liveness_message
from repp2p.errors import RecordError
from repp2p.records import (
    REFUSAL_CODES,
    Receipt,
    Refusal,
    TaskOffer,
    decode,
    receipt_message,
    refusal_message,
    sealed_input_signed,
)
from repp2p.tee.errors import EnclaveError, EnclaveReason, InputRefused
from repp2p.tee.measurement import enclave_measurement, runtime_measurement
from repp2p.tee.platforms import Platform, PlatformFactory, default_platform
from repp2p.tee.sealing import seal_output, task_digest, unseal_input
from repp2p.tee.wire import WireClosed, read_frame, write_frame


def _bad(detail: str) -> EnclaveError:
    return EnclaveError(EnclaveReason.BAD_REQUEST, detail)


def _get(request: dict, name: str, kind: type, size: int | None = None) -> object:
    value = request.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _bad(f"{name} must be {kind.__name__}")
    if size is not None and len(value) != size:  # type: ignore[arg-type]
        raise _bad(f"{name} must be {size} bytes")
    if kind is int and not 0 <= value < 2**64:  # type: ignore[operator]
        raise _bad(f"{name} must be a u64")
    return value


@dataclasses.dataclass
class EnclaveState:
    """Everything secret lives here, in the enclave process only."""

    enc_key: nacl.public.PrivateKey
    result_key: nacl.signing.SigningKey
    platform: Platform
    engines: dict[str, EngineAPI]
    measurement: bytes
    cheat: bool

    @classmethod
    def create(
        cls, request: dict, platform_factory: PlatformFactory = default_platform
    ) -> EnclaveState:
        seed = request.get("seed")
        if seed is None:
            seed = nacl.utils.random(32)
        elif not isinstance(seed, bytes) or len(seed) != 32:
            raise _bad("seed must be 32 bytes")
        names = request.get("engines")
        if names is not None and not (
            isinstance(names, list) and all(isinstance(n, str) for n in names)
        ):
            raise _bad("engines must be a list of names")
        spec = request.get("platform") or {}
        if not isinstance(spec, dict):
            raise _bad("platform must be a map")
        engines = load_engines(names)
        if request.get("preload", True):
            for engine in engines.values():
                engine.prepare()
        per_engine = {name: engine.measurement for name, engine in engines.items()}
        measurement = enclave_measurement(per_engine)

        def derive(label: bytes) -> bytes:
            return hashlib.sha256(b"repp2p simulated enclave " + label + b"\0" + seed).digest()

        # The simulated platform derives its signing key from the same seed as before
        # (reproducible dev evidence); a hardware platform reports its own measurement.
        platform = platform_factory(spec, seed, measurement)
        return cls(
            enc_key=nacl.public.PrivateKey(derive(b"x25519")),
            result_key=nacl.signing.SigningKey(derive(b"ed25519")),
            platform=platform,
            engines=engines,
            measurement=platform.measurement,
            cheat=bool(request.get("cheat", False)),
        )

    def describe(self) -> dict:
        return {
            "pid": os.getpid(),
            "kind": self.platform.kind,
            "enc_key": bytes(self.enc_key.public_key),
            "result_key": bytes(self.result_key.verify_key),
            "measurement": self.measurement,
            "runtime": runtime_measurement(),
            "engines": {name: e.measurement for name, e in self.engines.items()},
        }

    def attest(self, request: dict) -> dict:
        peer_id = _get(request, "peer_id", str)
        epoch = _get(request, "epoch", int)
        nonce = _get(request, "nonce", bytes, 32)
        now = _get(request, "now", int)
        evidence, collateral, gpu_evidence = self.platform.attest(
            peer_id,  # type: ignore[arg-type]
            bytes(self.enc_key.public_key),
            bytes(self.result_key.verify_key),
            epoch,  # type: ignore[arg-type]
            nonce,  # type: ignore[arg-type]
            now,  # type: ignore[arg-type]
        )
        return {"evidence": evidence, "collateral": collateral, "gpu_evidence": gpu_evidence}

    def sign_liveness(self, request: dict) -> dict:
        """The enclave's word that it is alive in ``epoch`` for ``peer_id``: the result key
        (the one its evidence binds) signs :func:`liveness_message`, for the heartbeat's
        ``enclave_sig``. The message names the node and the epoch (and its beacon), so the
        signature proves nothing about another node or another epoch."""
        peer_id = _get(request, "peer_id", str)
        epoch = _get(request, "epoch", int)
        try:
            message = liveness_message(peer_id, epoch)  # type: ignore[arg-type]
        except Exception as exc:  # AttestationError: a malformed peer ID
            raise _bad(f"liveness: {type(exc).__name__}") from None
        return {"enclave_sig": self.result_key.sign(message).signature}

    def execute(self, request: dict) -> dict:
        task_id = _get(request, "task_id", bytes, 32)
        offer_id = _get(request, "offer_id", bytes, 32)
        engine_id = _get(request, "engine_id", str)
        input_digest = _get(request, "input_digest", bytes, 32)
        client_key = _get(request, "client_key", bytes, 32)
        sealed = _get(request, "sealed", bytes)
        started_ms = _get(request, "started_ms", int)
        expires = _get(request, "expires", int)
        seq = _get(request, "seq", int)
        input_size = request.get("input_size")
        engine = self.engines.get(engine_id)  # type: ignore[arg-type]
        if engine is None:
            raise EnclaveError(EnclaveReason.UNKNOWN_ENGINE, f"{engine_id!r} not served here")
        commitment = self._commitment(request) if "input_sig" in request else None
        began = time.monotonic()
        try:
            salt, plaintext = unseal_input(sealed, self.enc_key, client_key, task_id)  # type: ignore[arg-type]
            if task_digest(salt, plaintext) != input_digest or (
                input_size is not None and input_size != len(plaintext)
            ):
                raise EnclaveError(
                    EnclaveReason.DIGEST_MISMATCH, "input does not match the offer's digest/size"
                )
            output = run_checked(engine, plaintext)
        except (EnclaveError, EngineError) as exc:
            code = exc.reason.value
            if commitment is None or code not in REFUSAL_CODES:
                raise
            raise InputRefused(self._refusal(commitment, code, seq, expires), exc.detail) from None
        if self.cheat:
            output = _corrupt(engine, plaintext, output)
        encrypted = seal_output(output, self.enc_key, client_key, task_id)  # type: ignore[arg-type]
        elapsed_ms = int((time.monotonic() - began) * 1000)
        receipt = Receipt(
            task_id=task_id,  # type: ignore[arg-type]
            offer_id=offer_id,  # type: ignore[arg-type]
            engine_id=engine.name,
            measurement=engine.measurement,
            input_digest=input_digest,  # type: ignore[arg-type]
            output_digest=task_digest(salt, output),
            started_ms=started_ms,  # type: ignore[arg-type]
            finished_ms=started_ms + elapsed_ms,  # type: ignore[operator]
            result_key=bytes(self.result_key.verify_key),
            enclave_sig=b"\0" * 64,
            seq=seq,  # type: ignore[arg-type]
            expires=expires,  # type: ignore[arg-type]
        )
        signature = self.result_key.sign(receipt_message(receipt)).signature
        receipt = dataclasses.replace(receipt, enclave_sig=signature)
        fields = {f.name: getattr(receipt, f.name) for f in dataclasses.fields(receipt)}
        return {"encrypted": encrypted, "receipt": fields}

    def _commitment(self, request: dict) -> dict:
        """The client's signed commitment to the sealed bytes we were given, checked.

        The node (untrusted) passes the client's signed offer, its own peer ID and the
        client's signature; everything a refusal states is taken from the offer and from
        our own hash of the sealed bytes, never from the node's other fields. A mismatch
        or a signature that does not verify is the node's doing (or an enclave restart
        the client did not see yet): a plain BAD_REQUEST, never a refusal.
        """
        offer_data = _get(request, "offer", bytes)
        node = _get(request, "node", str)
        signature = _get(request, "input_sig", bytes, 64)
        try:
            offer = decode(offer_data)  # type: ignore[arg-type]
        except RecordError as exc:
            raise _bad(f"offer: {exc.reason.value}") from None
        o = offer.record
        if (
            not isinstance(o, TaskOffer)
            or offer.record_id != request.get("offer_id")
            or o.task_id != request.get("task_id")
            or o.input_digest != request.get("input_digest")
            or o.result_key != request.get("client_key")
            or o.engine_id != request.get("engine_id")
            or request.get("input_size") not in (None, o.input_size)
        ):
            raise _bad("the task does not match the client's signed offer")
        enc_key = bytes(self.enc_key.public_key)
        sealed_digest = hashlib.sha256(request["sealed"]).digest()
        if not sealed_input_signed(
            offer.signer_key,
            signature,  # type: ignore[arg-type]
            task_id=o.task_id,
            node=node,  # type: ignore[arg-type]
            enc_key=enc_key,
            sealed_digest=sealed_digest,
        ):
            raise _bad("the client's input signature does not verify")
        return {
            "task_id": o.task_id,
            "offer_id": offer.record_id,
            "client": offer.signer,
            "enc_key": enc_key,
            "sealed_digest": sealed_digest,
            "client_sig": signature,
        }

    def _refusal(self, commitment: dict, code: str, seq: object, expires: object) -> Refusal:
        """A :class:`Refusal` of the committed input for ``code``, signed by our result key."""
        unsigned = Refusal(
            **commitment,
            code=code,
            result_key=bytes(self.result_key.verify_key),
            enclave_sig=b"\0" * 64,
            seq=seq,  # type: ignore[arg-type]
            expires=expires,  # type: ignore[arg-type]
        )
        signature = self.result_key.sign(refusal_message(unsigned)).signature
        return dataclasses.replace(unsigned, enclave_sig=signature)


def _corrupt(engine: EngineAPI, data: bytes, honest: bytes) -> bytes:
    """TEST/DEMO ONLY (cheat mode): a wrong but well-formed output.

    The engine's output for one of its own examples, or the honest output with one bit
    flipped when that happens to be equal. Deterministic, so colluding cheaters agree.
    """
    for example in engine.EXAMPLES:
        if example != data:
            try:
                wrong = run_checked(engine, example)
            except EngineError:
                continue
            if wrong != honest:
                return wrong
    return honest[:-1] + bytes([honest[-1] ^ 1]) if honest else b"\0"


def _reply_error(exc: Exception) -> dict:
    if isinstance(exc, InputRefused):
        r = exc.refusal
        fields = {f.name: getattr(r, f.name) for f in dataclasses.fields(r)}
        return {
            "ok": False,
            "error": "refused",
            "reason": r.code,
            "detail": exc.detail,
            "refusal": fields,
        }
    if isinstance(exc, EngineError):
        return {"ok": False, "error": "engine", "reason": exc.reason.value, "detail": exc.detail}
    if isinstance(exc, EnclaveError):
        return {"ok": False, "error": "enclave", "reason": exc.reason.value, "detail": exc.detail}
    # anything else: the type only -- a message may quote plaintext
    return {"ok": False, "error": "enclave", "reason": "internal", "detail": type(exc).__name__}


def serve(
    read_fd: int, write_fd: int, *, platform_factory: PlatformFactory = default_platform
) -> None:
    """The request loop: ``start`` first, then ``attest`` / ``execute`` / ``sign_liveness``
    until ``close``.

    ``platform_factory`` builds the TEE platform named in the start request; tests running
    the loop in-process pass one backed by a fake kernel.
    """
    state: EnclaveState | None = None
    while True:
        try:
            request = read_frame(read_fd)
        except WireClosed:
            return
        op = request.get("op")
        try:
            if op == "close":
                write_frame(write_fd, {"ok": True})
                return
            if op == "start":
                if state is not None:
                    raise _bad("already started")
                state = EnclaveState.create(request, platform_factory)
                reply = state.describe()
            elif state is None:
                raise _bad("not started")
            elif op == "attest":
                reply = state.attest(request)
            elif op == "execute":
                reply = state.execute(request)
            elif op == "sign_liveness":
                reply = state.sign_liveness(request)
            else:
                raise _bad(f"unknown op {op!r}")
            reply["ok"] = True
        except Exception as exc:
            reply = _reply_error(exc)
        write_frame(write_fd, reply)


def main() -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file with plaintext
    except (ImportError, ValueError, OSError):
        pass
    if len(sys.argv) > 1:
        # Inside a Nitro Enclave: the node on the parent connects over vsock.
        from repp2p.tee.vsock import serve_vsock

        port = sys.argv[2] if len(sys.argv) == 3 and sys.argv[1] == "--vsock" else ""
        if not port.isdigit() or not 0 < int(port) < 2**32:
            sys.exit("usage: python -m repp2p.tee.worker [--vsock PORT]")
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        serve_vsock(int(port), serve)
        return
    read_fd, write_fd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)  # engine prints go to stderr, never into the protocol
    sys.stdout = sys.stderr
    serve(read_fd, write_fd)


if __name__ == "__main__":
    main()
