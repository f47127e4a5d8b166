"""The enclave runtime: an enclave process per node, driven over a pipe.

The process runs on one *platform* (:mod:`repp2p.tee.platforms`): ``simulated`` (below),
``sev-snp`` or ``dcap`` (TDX), where node and enclave process run inside an SEV-SNP or TDX
confidential VM (the VM is the TEE) and evidence comes from configfs-tsm. Everything else
here is the same for all of them.

SIMULATED TEE -- NOT REAL SECURITY. The enclave is a separate OS process
(:mod:`repp2p.tee.worker`) that holds the X25519 and Ed25519 keys bound into its
attestation and is the only place a plaintext input or output exists. That keeps secrets
out of the node process, its logs and its store, and lets every protocol path run without
TEE hardware. It does not protect against anyone controlling the host (see
docs/engines.md), and its evidence is accepted only by a dev-profile policy.

Calls are synchronous and serialised by a lock (one request at a time per enclave); each
has a timeout after which the enclave process is killed. A trio node calls the ``*_async``
variants: ``execute_async`` reads and writes the pipe on the trio loop (no thread hand-off
per task), the attestation calls run the same call in a worker thread.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from engines.errors import EngineError, EngineReason
from repp2p.attestation.claims import SIMULATED_LABEL
from repp2p.errors import ReppError
from repp2p.records import Receipt, Refusal
from repp2p.tee import vsock
from repp2p.tee.abc import EnclaveAPI
from repp2p.tee.configfs_tsm import ConfigfsTsm
from repp2p.tee.errors import EnclaveError, EnclaveReason, InputRefused, TeeInterfaceError
from repp2p.tee.guest_devices import SevGuestDevice, TdxGuestDevice
from repp2p.tee.platforms import RUNNABLE_KINDS, canonical_kind, enclave_error
from repp2p.tee.wire import (
    WireClosed,
    WireMalformed,
    WireTimeout,
    decode_body,
    encode_frame,
    frame_size,
)

KIND = "simulated"
#: seconds to wait for the enclave to load its engines (embed-minilm reads ~90 MB)
DEFAULT_START_TIMEOUT_S = 120.0
#: seconds a graceful close may take before the process is killed
CLOSE_TIMEOUT_S = 2.0
_ENGINE_REASONS = frozenset(r.value for r in EngineReason)


def _reap(process: subprocess.Popen) -> None:
    """Kill and wait for an enclave process (finaliser: the handle was dropped unclosed)."""
    if process.poll() is None:
        process.kill()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass


class Enclave(EnclaveAPI):
    """A SIMULATED enclave running in its own process. Build with :meth:`start`.

    Attributes:
        kind: ``"simulated"``.
        label: :data:`repp2p.attestation.SIMULATED_LABEL`, for anything shown to a person.
        pid: the enclave process id (never the node's).
        enc_key, result_key: the public halves of the enclave keys.
        measurement: what the evidence reports (:func:`repp2p.tee.enclave_measurement`).
        runtime_measurement: the runtime part of it.
        engine_measurements: engine id -> measurement, for ``NodeAd.engines``.
        cheat: TEST/DEMO ONLY: the enclave returns wrong results with valid receipts.
    """

    kind = KIND
    label = SIMULATED_LABEL

    def __init__(self, process: subprocess.Popen, info: dict, cheat: bool) -> None:
        """Private: use :meth:`start`."""
        self._process = process
        self._lock = threading.Lock()
        self._async_lock: Any = None  # a trio.Lock, made by the first async call
        self._closed = False
        self._finalizer = weakref.finalize(self, _reap, process)
        self.pid: int = info["pid"]
        self.kind = info.get("kind", KIND)
        self.label = SIMULATED_LABEL if self.kind == KIND else ""
        self.enc_key: bytes = info["enc_key"]
        self.result_key: bytes = info["result_key"]
        self.measurement: bytes = info["measurement"]
        self.runtime_measurement: bytes = info["runtime"]
        self.engine_measurements: Mapping[str, bytes] = MappingProxyType(dict(info["engines"]))
        self.cheat = cheat

    @classmethod
    def start(
        cls,
        engines: Iterable[str] | None = None,
        *,
        seed: bytes | None = None,
        cheat: bool = False,
        preload: bool = True,
        expected_measurement: bytes | None = None,
        timeout_s: float = DEFAULT_START_TIMEOUT_S,
        stderr: int | None = subprocess.DEVNULL,
        tee_kind: str = KIND,
        collateral_file: str | None = None,
        tsm_root: str = "/",
        enclave_address: str | None = None,
        gpu: str | None = None,
    ) -> Enclave:
        """Start an enclave process serving ``engines``.

        Args:
            engines: engine ids to serve; ``None`` serves every engine that can run here.
            seed: 32 bytes from which the enclave derives its keys (tests, reproducible
                devnets). ``None`` (production use) lets the enclave draw them itself, so
                the node process never sees any key material.
            cheat: TEST/DEMO ONLY. The enclave corrupts every output (a wrong but
                well-formed result, correctly signed), modelling a broken TEE that only
                redundant execution can catch.
            preload: load every engine's model before returning (first task not slow).
            expected_measurement: when given, refuse to start unless the enclave measures
                exactly this (e.g. a value pinned in the node's config).
            timeout_s: how long loading may take.
            stderr: where the enclave's stderr goes; DEVNULL by default because engine
                errors could quote input. Pass ``None`` to inherit it while debugging.
            tee_kind: the platform: ``simulated``, ``sev-snp`` (inside an SEV-SNP VM) or
                ``dcap`` / ``tdx`` (inside a TDX VM); hardware evidence through configfs-tsm.
            collateral_file: sev-snp: the VCEK chain file used when the host's
                certificate table is empty; dcap: the DCAP collateral JSON (required).
            tsm_root: where to look for configfs-tsm before starting (``/``; tests).
            enclave_address: nitro: ``vsock:CID:PORT`` of the enclave process running in
                the Nitro Enclave (no process is started here; the node connects).
            gpu: ``"nvidia"``: each attestation also carries the evidence of the
                confidential-computing GPU (hardware kinds only; :mod:`repp2p.tee.gpu`).

        Returns:
            A running :class:`Enclave` (close it, or use it as a context manager).

        Raises:
            EnclaveError: START_FAILED, TIMEOUT, MEASUREMENT_MISMATCH, or TEE_UNAVAILABLE
                (naming the missing interface and ``repp2p tee probe``).
            EngineError: NOT_FOUND or UNAVAILABLE for a named engine.
        """
        if seed is not None and len(seed) != 32:
            raise ValueError("seed is 32 bytes")
        tee_kind = canonical_kind(tee_kind)
        check_platform(tee_kind, tsm_root)
        if tee_kind == "nitro":
            if not enclave_address:
                raise EnclaveError(
                    EnclaveReason.TEE_UNAVAILABLE,
                    "tee_kind 'nitro' needs tee_enclave = 'vsock:CID:PORT', the enclave "
                    "process running in the Nitro Enclave (docs/operators.md)",
                )
            process = cls._connect_enclave(enclave_address)
        else:
            process = cls._spawn(stderr)
        request = {
            "op": "start",
            "engines": None if engines is None else list(engines),
            "seed": seed,
            "cheat": bool(cheat),
            "preload": bool(preload),
            "platform": {"kind": tee_kind, "collateral_file": collateral_file, "gpu": gpu},
        }
        return cls.connect(process, request, timeout_s, cheat, expected_measurement)

    @staticmethod
    def _spawn(stderr: int | None) -> subprocess.Popen:
        """Launch ``python -m repp2p.tee.worker`` (one seam: tests may run it in-process)."""
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "repp2p.tee.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
                close_fds=True,
            )
        except OSError as exc:
            raise EnclaveError(EnclaveReason.START_FAILED, str(exc)) from None

    @staticmethod
    def _connect_enclave(address: str) -> Any:
        """Connect to an enclave process in a Nitro Enclave (a seam: tests use a socket pair)."""
        return vsock.connect(address)

    @classmethod
    def connect(
        cls,
        process: subprocess.Popen,
        request: dict,
        timeout_s: float = DEFAULT_START_TIMEOUT_S,
        cheat: bool = False,
        expected_measurement: bytes | None = None,
    ) -> Enclave:
        """Send the ``start`` request to a launched enclave process and wrap it.

        :meth:`start` launches the process; tests pass an in-process stand-in with the
        same ``stdin``/``stdout``/``poll``/``kill``/``wait`` surface. Both descriptors are
        made non-blocking here, once, for the enclave's life (:func:`_exchange`).
        """
        try:
            _set_nonblocking(process)
            info = _roundtrip(process, request, timeout_s)
        except EnclaveError as exc:
            _reap(process)
            if exc.reason is EnclaveReason.CRASHED:
                raise EnclaveError(
                    EnclaveReason.START_FAILED,
                    f"enclave process exited with status {process.returncode} "
                    "(start it with stderr=None to see why)",
                ) from None
            raise
        except BaseException:
            _reap(process)
            raise
        enclave = cls(process, info, cheat)
        if expected_measurement is not None and enclave.measurement != expected_measurement:
            enclave.close()
            raise EnclaveError(
                EnclaveReason.MEASUREMENT_MISMATCH,
                f"enclave measures {enclave.measurement.hex()}, "
                f"expected {expected_measurement.hex()}",
            )
        return enclave

    # -- calls -----------------------------------------------------------------------------

    def _call(self, request: dict, timeout_s: float) -> dict:
        """One request and its reply, from any thread (one at a time: the lock).

        Raises:
            EnclaveError: CLOSED, CRASHED or TIMEOUT (which kill the enclave process, see
                :meth:`_exchanging`), or what the reply carries (:func:`_interpret`).
            EngineError: the engine's error, carried by the reply.
        """
        with self._lock:
            with self._exchanging(timeout_s):
                reply = _exchange(self._process, request, timeout_s)
            return self._accept(reply)

    @contextlib.contextmanager
    def _exchanging(self, timeout_s: float) -> Iterator[None]:
        """Around one request/reply exchange on the pipe (the core :meth:`_call` and
        :meth:`_call_async` share; the caller holds ``self._lock``): a closed enclave
        refuses (CLOSED); the wire's failures become TIMEOUT or CRASHED (:func:`_wire_errors`);
        and any exchange that does not finish, whatever stopped it (its timeout, a dead
        process, a cancelled trio call), leaves the pipe out of step with the next call,
        so the enclave process is killed (a node replaces a dead enclave).
        """
        if self._closed:
            raise EnclaveError(EnclaveReason.CLOSED, "enclave is closed")
        try:
            with _wire_errors(timeout_s):
                yield
        except BaseException:
            self._kill()
            raise

    def _accept(self, reply: dict) -> dict:
        """``reply``'s fields (:func:`_interpret`); a reply saying the enclave timed out or
        broke (TIMEOUT, CRASHED) kills its process, as a failed exchange does."""
        try:
            return _interpret(reply)
        except EnclaveError as exc:
            if exc.reason in (EnclaveReason.TIMEOUT, EnclaveReason.CRASHED):
                self._kill()
            raise

    def attest(self, peer_id: str, epoch: int, nonce: bytes, now: int) -> bytes:
        """Evidence binding the enclave keys to a node (``Attestation.evidence``).

        The collateral (sev-snp: the VCEK chain) is dropped: use
        :meth:`attest_with_collateral` where the record carries it.

        Args:
            peer_id: the node's libp2p peer ID.
            epoch: the epoch the attestation is for.
            nonce: 32 bytes of freshness (e.g. from the epoch beacon).
            now: unix seconds (the evidence's signing time).

        Returns:
            Evidence that ``verify_node(peer_id, "simulated", evidence, b"", b"", enc_key,
            result_key, epoch, nonce, policy, now)`` accepts under a dev policy.

        Raises:
            EnclaveError: BAD_REQUEST, CLOSED, CRASHED or TIMEOUT.
        """
        return self.attest_with_collateral(peer_id, epoch, nonce, now)[0]

    def attest_with_collateral(
        self, peer_id: str, epoch: int, nonce: bytes, now: int
    ) -> tuple[bytes, bytes]:
        """``(evidence, collateral)`` for the ``Attestation`` record (see :meth:`attest`).

        For an enclave with a GPU use :meth:`attest_evidence`: its CPU evidence commits to
        the GPU evidence, so it does not verify without it.

        Raises:
            EnclaveError: BAD_REQUEST, CLOSED, CRASHED, TIMEOUT, TEE_UNAVAILABLE or
                TEE_FAILED.
        """
        return self.attest_evidence(peer_id, epoch, nonce, now)[:2]

    def attest_evidence(
        self, peer_id: str, epoch: int, nonce: bytes, now: int
    ) -> tuple[bytes, bytes, bytes]:
        """``(evidence, collateral, gpu_evidence)``: the ``Attestation`` record's fields
        (``gpu_evidence`` empty without a GPU).

        Raises:
            EnclaveError: as :meth:`attest_with_collateral`.
        """
        request = {"op": "attest", "peer_id": peer_id, "epoch": epoch, "nonce": nonce, "now": now}
        reply = self._call(request, 10.0)
        evidence, collateral = reply.get("evidence"), reply.get("collateral", b"")
        gpu = reply.get("gpu_evidence", b"")
        if not all(isinstance(x, bytes) for x in (evidence, collateral, gpu)):
            raise EnclaveError(EnclaveReason.CRASHED, "malformed attest reply")
        return evidence, collateral, gpu

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
        offer: bytes | None = None,
        node: str | None = None,
        input_sig: bytes | None = None,
    ) -> tuple[bytes, Receipt]:
        """Run a task inside the enclave.

        The enclave opens ``sealed_input`` with its X25519 key and ``client_result_key``,
        checks the sealed task id, the salted digest against ``input_digest`` (and the
        size against ``input_size``), runs the engine, encrypts the output to
        ``client_result_key`` and signs the receipt with its result key.

        Args:
            task_id, offer_id: the task and the offer record's id.
            engine_id: the engine to run (must be served by this enclave).
            input_digest: the offer's ``input_digest``.
            sealed_input: what the client sent (:func:`repp2p.tee.seal_input`).
            client_result_key: the offer's ``result_key`` (client X25519 key).
            started_ms: unix ms when the node started the task (``Receipt.started_ms``);
                ``finished_ms`` is that plus the time measured inside the enclave.
            expires: ``Receipt.expires`` (unix seconds).
            input_size: the offer's ``input_size``, checked when given.
            seq: ``Receipt.seq``.
            timeout_s: after this the enclave process is killed (TIMEOUT).
            offer, node, input_sig: the client's signed offer (its envelope), our peer ID
                and the client's signature over the sealed input
                (:func:`repp2p.records.sign_sealed_input`). With them, an input that fails
                by the client's doing raises :class:`InputRefused` carrying an
                enclave-signed :class:`repp2p.records.Refusal`, which any peer can check.

        Returns:
            ``(encrypted_output, receipt)``: the output for the client only, and the
            receipt (enclave-signed) for the node to wrap in its own record signature.

        Raises:
            EngineError: the engine refused the input (BAD_INPUT, INPUT_TOO_LARGE, ...).
            EnclaveError: BAD_SEAL, WRONG_TASK, DIGEST_MISMATCH, UNKNOWN_ENGINE,
                BAD_REQUEST, CLOSED, CRASHED or TIMEOUT.
            InputRefused: (an EnclaveError) with ``input_sig``: the input failed by the
                client's doing; ``.refusal`` is the signed record.
        """
        request = _execute_request(
            task_id=task_id,
            offer_id=offer_id,
            engine_id=engine_id,
            input_digest=input_digest,
            sealed_input=sealed_input,
            client_result_key=client_result_key,
            started_ms=started_ms,
            expires=expires,
            input_size=input_size,
            seq=seq,
            offer=offer,
            node=node,
            input_sig=input_sig,
        )
        return _execute_reply(self._call(request, timeout_s))

    async def _call_async(self, request: dict, timeout_s: float) -> dict:
        """:meth:`_call` on the trio loop: the pipe is written and read as the loop finds
        it ready, with no worker thread (a thread hand-off per task cost the node more CPU
        than the enclave's own work on a small task). One request at a time, as
        :meth:`_call`; while a synchronous call holds the pipe (an attestation from a
        worker thread) this one runs in a worker thread too. Same errors as :meth:`_call`
        (the same :meth:`_exchanging` and :meth:`_accept`): a call timed out, failed or
        cancelled half-way kills the enclave process.
        """
        import trio

        if self._async_lock is None:
            self._async_lock = trio.Lock()
        async with self._async_lock:
            if not self._lock.acquire(blocking=False):
                return await trio.to_thread.run_sync(
                    self._call, request, timeout_s, abandon_on_cancel=True
                )
            try:
                with self._exchanging(timeout_s):
                    with trio.move_on_after(timeout_s) as deadline:
                        reply = await _exchange_async(self._process, request)
                    if deadline.cancelled_caught:
                        raise WireTimeout  # as the synchronous read reports its deadline
                return self._accept(reply)
            finally:
                self._lock.release()

    def _kill(self) -> None:
        self._closed = True
        self._finalizer()

    async def attest_async(self, peer_id: str, epoch: int, nonce: bytes, now: int) -> bytes:
        """:meth:`attest` from trio, in a worker thread."""
        import trio

        return await trio.to_thread.run_sync(
            self.attest, peer_id, epoch, nonce, now, abandon_on_cancel=True
        )

    async def attest_with_collateral_async(
        self, peer_id: str, epoch: int, nonce: bytes, now: int
    ) -> tuple[bytes, bytes]:
        """:meth:`attest_with_collateral` from trio, in a worker thread."""
        import trio

        return await trio.to_thread.run_sync(
            self.attest_with_collateral, peer_id, epoch, nonce, now, abandon_on_cancel=True
        )

    async def attest_evidence_async(
        self, peer_id: str, epoch: int, nonce: bytes, now: int
    ) -> tuple[bytes, bytes, bytes]:
        """:meth:`attest_evidence` from trio, in a worker thread."""
        import trio

        return await trio.to_thread.run_sync(
            self.attest_evidence, peer_id, epoch, nonce, now, abandon_on_cancel=True
        )

    def sign_liveness(self, peer_id: str, epoch: int) -> bytes:
        """The enclave's liveness signature for ``epoch`` (a heartbeat's ``enclave_sig``):
        Ed25519 by its result key over
        :func:`repp2p.attestation.liveness.liveness_message`.

        Raises:
            EnclaveError: BAD_REQUEST, CLOSED, CRASHED or TIMEOUT (a dead enclave cannot
                sign: that is the point).
        """
        reply = self._call({"op": "sign_liveness", "peer_id": peer_id, "epoch": epoch}, 10.0)
        sig = reply.get("enclave_sig")
        if not isinstance(sig, bytes) or len(sig) != 64:
            raise EnclaveError(EnclaveReason.CRASHED, "malformed sign_liveness reply")
        return sig

    async def sign_liveness_async(self, peer_id: str, epoch: int) -> bytes:
        """:meth:`sign_liveness` from trio, in a worker thread."""
        import trio

        return await trio.to_thread.run_sync(
            self.sign_liveness, peer_id, epoch, abandon_on_cancel=True
        )

    async def execute_async(self, **kwargs: Any) -> tuple[bytes, Receipt]:
        """:meth:`execute` from trio, on the loop (same keyword arguments; see
        :meth:`_call_async`): a node shutting down cancels it, which kills the enclave
        process as :meth:`close` would."""
        timeout_s = kwargs.pop("timeout_s", 30.0)
        request = _execute_request(**kwargs)
        return _execute_reply(await self._call_async(request, timeout_s))

    # -- lifetime ----------------------------------------------------------------------------

    @property
    def is_alive(self) -> bool:
        return not self._closed and self._process.poll() is None

    def terminate(self) -> None:
        """Kill the enclave process now, without waiting for a running call (shutdown).

        A call in progress fails with CRASHED. Idempotent; :meth:`close` after it is a no-op.
        """
        self._closed = True
        self._finalizer()

    def close(self) -> None:
        """Ask the enclave to exit, kill it if it does not, and reap it. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                _roundtrip(self._process, {"op": "close"}, CLOSE_TIMEOUT_S)
                self._process.wait(timeout=CLOSE_TIMEOUT_S)
            except (EnclaveError, subprocess.TimeoutExpired):
                pass
            self._finalizer()

    def __enter__(self) -> Enclave:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "alive" if self.is_alive else "closed"
        warning = " (NOT REAL SECURITY)" if self.kind == KIND else ""
        return f"<Enclave {self.kind}{warning} pid={self.pid} {state}>"


def check_platform(tee_kind: str, tsm_root: str = "/") -> None:
    """Refuse, before any process starts, a TEE kind this machine cannot run.

    Raises:
        EnclaveError: TEE_UNAVAILABLE naming the missing interface and pointing at
            ``repp2p tee probe``.
    """
    tee_kind = canonical_kind(tee_kind)
    if tee_kind not in RUNNABLE_KINDS:
        raise EnclaveError(
            EnclaveReason.TEE_UNAVAILABLE,
            f"no enclave runtime for tee_kind {tee_kind!r} in this release (runnable: "
            f"{', '.join(sorted(RUNNABLE_KINDS))}); run `repp2p tee probe` for what this "
            "machine offers",
        )
    # nitro: the node is on the parent instance (its Nitro Enclaves driver makes
    # /dev/nitro_enclaves) and reaches the enclave over vsock
    is_parent = (Path(tsm_root) / "dev/nitro_enclaves").exists()
    if tee_kind == "nitro" and (vsock.vsock_family() is None or not is_parent):
        raise EnclaveError(
            EnclaveReason.TEE_UNAVAILABLE,
            "tee_kind 'nitro' cannot run on this machine: no /dev/nitro_enclaves and vsock "
            "(an EC2 instance with enclave support enabled and the Nitro Enclaves CLI "
            "installed has both); run `repp2p tee probe` for what this machine offers",
        )
    if tee_kind in ("sev-snp", "dcap"):  # confidential VMs: reports through configfs-tsm
        device = SevGuestDevice(tsm_root) if tee_kind == "sev-snp" else TdxGuestDevice(tsm_root)
        if device.path.exists():
            return  # kernels before 6.7: the guest device's ioctl
        try:
            ConfigfsTsm(tsm_root).check_available()
        except TeeInterfaceError as exc:
            error = enclave_error(exc)
            raise EnclaveError(
                error.reason, f"tee_kind {tee_kind!r} cannot run on this machine: {exc.detail}"
            ) from None


def missing_tee_setting(config: Any) -> str:
    """What a full node's ``tee_kind`` needs that its config lacks ("" when nothing).

    ``config`` is a :class:`repp2p.config.NodeConfig`: TDX (``dcap``) needs
    ``tee_collateral``, ``nitro`` needs ``tee_enclave``.
    """
    if config.tee_kind == "dcap" and not config.tee_collateral:
        return (
            "tee_kind 'dcap' (TDX) needs tee_collateral: the DCAP collateral JSON peers verify "
            "its quotes with (docs/operators.md says how to fetch it)"
        )
    if config.tee_kind == "nitro" and not config.tee_enclave:
        return (
            "tee_kind 'nitro' needs tee_enclave = 'vsock:CID:PORT': the enclave process in "
            "the Nitro Enclave (deploy/nitro/README.md)"
        )
    return ""


def _roundtrip(process: subprocess.Popen, request: dict, timeout_s: float) -> dict:
    """Send one request, read its reply (start and close, outside :meth:`Enclave._call`);
    kill-worthy failures become TIMEOUT/CRASHED."""
    with _wire_errors(timeout_s):
        reply = _exchange(process, request, timeout_s)
    return _interpret(reply)


def _set_nonblocking(process: Any) -> None:
    """Make the descriptors to the enclave non-blocking, once: the trio path
    (:func:`_exchange_async`) needs them so, and flipping them per call cost ~10 fcntl
    calls per task. The synchronous path (:func:`_exchange`) waits with ``select``.
    Only this process's ends change (over a socket, both are dups of one description)."""
    assert process.stdin is not None and process.stdout is not None
    for stream in (process.stdin, process.stdout):
        os.set_blocking(stream.fileno(), False)


def _exchange(process: Any, request: dict, timeout_s: float) -> dict:
    """Write ``request`` to the enclave and read its reply frame, waiting at most
    ``timeout_s`` in all (the descriptors are non-blocking: :func:`_set_nonblocking`).

    Raises:
        WireTimeout, WireClosed, WireMalformed, OSError: see :func:`_wire_errors`.
    """
    assert process.stdin is not None and process.stdout is not None
    deadline = time.monotonic() + timeout_s
    write_fd, read_fd = process.stdin.fileno(), process.stdout.fileno()
    data = memoryview(encode_frame(request))
    while data:
        try:
            data = data[os.write(write_fd, data) :]
        except BlockingIOError:  # the pipe is full: the enclave reads on
            _select(write_fd, deadline, readable=False)
    size = frame_size(_read_exact(read_fd, 4, deadline))
    return decode_body(_read_exact(read_fd, size, deadline))


def _read_exact(fd: int, size: int, deadline: float) -> bytes:
    """``size`` bytes from the non-blocking ``fd`` by ``deadline`` (WireTimeout), or
    WireClosed at EOF."""
    chunks = []
    remaining = size
    while remaining:
        try:
            chunk = os.read(fd, min(remaining, 1 << 20))
        except BlockingIOError:
            _select(fd, deadline, readable=True)
            continue
        if not chunk:
            raise WireClosed
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _select(fd: int, deadline: float, *, readable: bool) -> None:
    """Wait until ``fd`` is ready, or raise WireTimeout at ``deadline``."""
    wait = deadline - time.monotonic()
    if wait > 0:
        fds = [fd]
        ready = select.select(fds, [], [], wait) if readable else select.select([], fds, [], wait)
        if ready[0] or ready[1]:
            return
    raise WireTimeout


@contextlib.contextmanager
def _wire_errors(timeout_s: float) -> Iterator[None]:
    """The wire's failures as the enclave errors callers see: no reply in time is TIMEOUT,
    a closed or broken pipe or a malformed frame is CRASHED."""
    try:
        yield
    except WireTimeout:
        raise EnclaveError(EnclaveReason.TIMEOUT, f"no reply in {timeout_s} s") from None
    except (WireClosed, WireMalformed, OSError) as exc:  # BrokenPipeError is an OSError
        raise EnclaveError(EnclaveReason.CRASHED, type(exc).__name__) from None


def _interpret(reply: dict) -> dict:
    """A reply's fields, or the error it carries raised."""
    if reply.get("ok") is True:
        return reply
    reason, detail = reply.get("reason"), str(reply.get("detail", ""))
    if reply.get("error") == "refused":
        raise _refused(reply, detail)
    if reply.get("error") == "engine" and reason in _ENGINE_REASONS:
        raise EngineError(EngineReason(reason), detail)
    try:
        enclave_reason = EnclaveReason(reason)
    except ValueError:
        enclave_reason = EnclaveReason.INTERNAL
    raise EnclaveError(enclave_reason, detail)


def _refused(reply: dict, detail: str) -> EnclaveError:
    """The :class:`InputRefused` of a ``refused`` reply; a malformed one is CRASHED (the
    enclave broke the protocol)."""
    fields = reply.get("refusal")
    try:
        return InputRefused(Refusal(**fields), detail)  # type: ignore[arg-type]
    except (TypeError, ReppError):
        return EnclaveError(EnclaveReason.CRASHED, "malformed refusal reply")


def _execute_request(
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
    offer: bytes | None = None,
    node: str | None = None,
    input_sig: bytes | None = None,
) -> dict:
    """The ``execute`` request frame (:meth:`Enclave.execute` documents the fields)."""
    request = {
        "op": "execute",
        "task_id": task_id,
        "offer_id": offer_id,
        "engine_id": engine_id,
        "input_digest": input_digest,
        "client_key": client_result_key,
        "sealed": sealed_input,
        "started_ms": started_ms,
        "expires": expires,
        "input_size": input_size,
        "seq": seq,
    }
    if input_sig is not None:
        request.update(offer=offer, node=node, input_sig=input_sig)
    return request


def _execute_reply(reply: dict) -> tuple[bytes, Receipt]:
    return reply["encrypted"], Receipt(**reply["receipt"])


async def _exchange_async(process: Any, request: dict) -> dict:
    """Write ``request`` to the enclave and read its reply, waiting on the trio loop for
    the descriptors to be ready (non-blocking since :meth:`Enclave.connect`)."""
    write_fd, read_fd = process.stdin.fileno(), process.stdout.fileno()
    data = memoryview(encode_frame(request))
    while data:
        try:
            written = os.write(write_fd, data)
        except BlockingIOError:
            await _wait(write_fd, readable=False)
            continue
        data = data[written:]
    size = frame_size(await _read_exact_async(read_fd, 4))
    return decode_body(await _read_exact_async(read_fd, size))


async def _read_exact_async(fd: int, size: int) -> bytes:
    chunks = []
    remaining = size
    while remaining:
        try:
            chunk = os.read(fd, min(remaining, 1 << 20))
        except BlockingIOError:
            await _wait(fd, readable=True)
            continue
        if not chunk:
            raise WireClosed
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


async def _wait(fd: int, *, readable: bool) -> None:
    import trio

    if readable:
        await trio.lowlevel.wait_readable(fd)
    else:
        await trio.lowlevel.wait_writable(fd)
