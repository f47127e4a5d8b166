"""Node and client identities: one Ed25519 key that is both record signer and libp2p identity.

The key file holds the libp2p protobuf serialisation of the private key in the form
py-libp2p writes and reads (``libp2p.identity_utils.save_identity``: the 32-byte seed); the
64-byte form go-libp2p writes (seed || public key) is accepted on load too.

Files are created 0600 and a file that group or others may read is refused:
a leaked key lets anyone sign records as this node.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path
from typing import Any

import nacl.signing

from repp2p.errors import KeyFileError
from repp2p.records.peerid import peer_id_from_public_key

# protobuf PrivateKey{Type: Ed25519 (1), Data: 32-byte seed (py-libp2p) or seed||pub (go)}
_PY_PREFIX = b"\x08\x01\x12\x20"
_GO_PREFIX = b"\x08\x01\x12\x40"
_MAX_KEY_FILE_SIZE = len(_GO_PREFIX) + 64


@dataclasses.dataclass(frozen=True)
class Identity:
    """An Ed25519 identity.

    Attributes:
        signing_key: the private key (pass the Identity itself to ``records.encode``).
    """

    signing_key: nacl.signing.SigningKey = dataclasses.field(repr=False)

    @classmethod
    def generate(cls) -> Identity:
        """A fresh random identity (randomness from the OS, via libsodium)."""
        return cls(nacl.signing.SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """A deterministic identity from a 32-byte seed (tests, simulations)."""
        if len(seed) != 32:
            raise KeyFileError("an Ed25519 seed is 32 bytes")
        return cls(nacl.signing.SigningKey(seed))

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return bytes(self.signing_key.verify_key)

    @property
    def peer_id(self) -> str:
        """The libp2p peer ID string, equal to the signer of every record this key signs."""
        return peer_id_from_public_key(self.public_key)

    def to_bytes(self) -> bytes:
        """The libp2p protobuf serialisation of the private key (the key file content)."""
        return _PY_PREFIX + bytes(self.signing_key)

    @classmethod
    def from_bytes(cls, data: bytes) -> Identity:
        """Parse a libp2p protobuf Ed25519 private key.

        Raises:
            KeyFileError: not an Ed25519 private key, or its public half does not match.
        """
        if len(data) == 36 and data.startswith(_PY_PREFIX):
            return cls(nacl.signing.SigningKey(data[4:]))
        if len(data) != 68 or not data.startswith(_GO_PREFIX):
            raise KeyFileError("not a libp2p protobuf Ed25519 private key")
        identity = cls(nacl.signing.SigningKey(data[4:36]))
        if identity.public_key != data[36:]:
            raise KeyFileError("key file is corrupt: public key does not match private key")
        return identity

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        """Write the key file with mode 0600.

        Raises:
            KeyFileError: the file exists (and ``overwrite`` is false) or cannot be written.
        """
        path = Path(path)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            raise KeyFileError(f"{path} exists; refusing to overwrite a key") from None
        except OSError as exc:
            raise KeyFileError(f"cannot create {path}: {exc.strerror}") from None
        try:
            os.fchmod(fd, 0o600)  # O_CREAT's mode is masked by umask and ignored on overwrite
            data = self.to_bytes()
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            os.fsync(fd)
        finally:
            os.close(fd)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Identity:
        """Read a key file, refusing one that group or others can access.

        Raises:
            KeyFileError: missing, unreadable, too permissive, or not an Ed25519 key.
        """
        path = Path(path)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise KeyFileError(f"cannot open key file {path}: {exc.strerror}") from None
        try:
            mode = os.fstat(fd).st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise KeyFileError(
                    f"key file {path} is accessible by others (mode {stat.S_IMODE(mode):04o}); "
                    f"run 'chmod 600 {path}' if it has not leaked, or make a new key"
                )
            data = os.read(fd, _MAX_KEY_FILE_SIZE + 1)
        finally:
            os.close(fd)
        return cls.from_bytes(data)

    def to_libp2p_keypair(self) -> Any:
        """The same key as a py-libp2p ``KeyPair`` (imports libp2p; not for the core)."""
        from libp2p.crypto.ed25519 import create_new_key_pair

        return create_new_key_pair(bytes(self.signing_key))
