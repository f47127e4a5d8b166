"""The node <-> enclave-process pipe over vsock, for AWS Nitro Enclaves.

A Nitro Enclave has no network and no disk; its only channel is vsock (``AF_VSOCK``) to
its parent instance. So for ``tee_kind = "nitro"`` the enclave process runs *inside* the
enclave image, listening on a vsock port (``python -m repp2p.tee.worker --vsock PORT``),
and the node on the parent connects to it (``tee_enclave = "vsock:CID:PORT"``; the CID
is the one ``nitro-cli run-enclave`` assigns). The frames on the connection are exactly
the pipe protocol of :mod:`repp2p.tee.wire`: nothing on it is plaintext.

:class:`SocketProcess` gives a connected stream socket the ``stdin``/``stdout``/``poll``/
``kill``/``wait`` surface :meth:`repp2p.tee.Enclave.connect` drives, so the runtime is the
same over a pipe, vsock or (tests, and hosts without ``AF_VSOCK``) a socket pair.
"""

from __future__ import annotations

import os
import re
import select
import socket
from collections.abc import Callable

from repp2p.tee.errors import EnclaveError, EnclaveReason

#: ``vsock:CID:PORT`` (CID 0..2**32-1; CID 3 and up are guests, 16+ are Nitro Enclaves)
ADDRESS = re.compile(r"vsock:(\d{1,10}):(\d{1,10})")
VMADDR_CID_ANY = 0xFFFFFFFF
PROBE_HINT = "run `repp2p tee probe` for what this machine offers"


def parse_address(text: str) -> tuple[int, int]:
    """``(cid, port)`` of a ``vsock:CID:PORT`` address.

    Raises:
        ValueError: anything else.
    """
    match = ADDRESS.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not vsock:CID:PORT")
    cid, port = int(match[1]), int(match[2])
    if cid >= 2**32 or port >= 2**32:
        raise ValueError(f"{text!r}: CID and port are 32-bit")
    return cid, port


def vsock_family() -> int | None:
    """``socket.AF_VSOCK`` where this Python and OS have it, else None."""
    return getattr(socket, "AF_VSOCK", None)


class SocketProcess:
    """A connected stream socket standing in for the enclave subprocess.

    ``poll()`` is None while the peer has not closed the connection; ``kill()`` shuts it
    down. Closing the streams closes the socket.
    """

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(True)
        self._sock = sock
        self.stdin = os.fdopen(os.dup(sock.fileno()), "wb", buffering=0)
        self.stdout = os.fdopen(os.dup(sock.fileno()), "rb", buffering=0)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                readable = select.select([self._sock], [], [], 0)[0]
                if readable and not self._sock.recv(1, socket.MSG_PEEK):
                    self.returncode = 1  # the enclave closed the connection
            except (OSError, ValueError):
                self.returncode = 1
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            self.returncode = -9
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()

    def wait(self, timeout: float | None = None) -> int:
        """The connection ends here (the enclave process itself lives on in the enclave)."""
        if self.returncode is None:
            self.returncode = 0
        self.kill()
        return self.returncode


def connect(address: str, timeout_s: float = 10.0) -> SocketProcess:
    """Connect to an enclave process listening at ``vsock:CID:PORT``.

    Raises:
        EnclaveError: BAD_REQUEST for a malformed address, TEE_UNAVAILABLE without
            ``AF_VSOCK``, START_FAILED when nothing answers there.
    """
    try:
        cid, port = parse_address(address)
    except ValueError as exc:
        raise EnclaveError(EnclaveReason.BAD_REQUEST, str(exc)) from None
    family = vsock_family()
    if family is None:
        raise EnclaveError(
            EnclaveReason.TEE_UNAVAILABLE,
            f"this system has no AF_VSOCK, so it cannot reach a Nitro Enclave; {PROBE_HINT}",
        )
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout_s)
        sock.connect((cid, port))
    except OSError as exc:
        sock.close()
        raise EnclaveError(
            EnclaveReason.START_FAILED,
            f"no enclave process answers at {address}: {exc.strerror or exc} (is the enclave "
            "running? `nitro-cli describe-enclaves` shows its CID)",
        ) from None
    return SocketProcess(sock)


def serve_connection(conn: socket.socket, serve: Callable[[int, int], None]) -> None:
    """Run the enclave request loop on one accepted connection, then close it."""
    try:
        serve(conn.fileno(), conn.fileno())
    except OSError:
        pass  # the node went away mid-reply
    finally:
        conn.close()


def serve_vsock(
    port: int, serve: Callable[[int, int], None], *, connections: int | None = None
) -> None:
    """Inside the enclave: accept node connections on vsock ``port``, one at a time.

    Each connection is a fresh enclave session (its ``start`` makes new keys), so a node
    that restarts gets a new attestation. ``connections`` bounds how many are served
    (None: for ever).

    Raises:
        OSError: no ``AF_VSOCK`` (EAFNOSUPPORT) or the port is taken.
    """
    family = vsock_family()
    if family is None:
        raise OSError(97, "AF_VSOCK is not available here")
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.bind((VMADDR_CID_ANY, port))
        listener.listen(1)
        served = 0
        while connections is None or served < connections:
            conn, _ = listener.accept()
            serve_connection(conn, serve)
            served += 1
