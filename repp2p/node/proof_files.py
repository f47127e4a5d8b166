"""The folder a proof book keeps its proofs in: one file per proof, written atomically.

:class:`repp2p.node.disputes.DisputeBook` and :class:`repp2p.node.offences.OffenceBook`
both keep each proof they hold as ``<folder>/<key hex>.cbor`` so that a restarted peer
judges the same disputes and counts the same offences. What is on disk is hostile input
too (a damaged disk, an edited file): at start each file is checked again by the book's own
rule, and a file that fails it is dropped (logged), never trusted and never fatal.

Rules of this file: a write goes to ``<name>.tmp`` first and is renamed over the proof, so
a crash leaves either the old proof or the new one; a failing disk is logged and the proof
stays in memory (a restart then loses only that proof, which sync brings back:
:mod:`repp2p.net.proof_sync`). A read takes regular files only (not a link, a FIFO, a
device: a FIFO blocked the start for ever, a link to ``/dev/zero`` read without end) and
never more than :data:`MAX_FILE_SIZE` bytes.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from repp2p.digests.disputes import MAX_DISPUTE_SIZE
from repp2p.digests.proofs import MAX_PROOF_SIZE
from repp2p.errors import ProofError, ProofReason

log = logging.getLogger("repp2p.proofs")

T = TypeVar("T")

#: the largest file read back: the largest proof either book keeps (a bigger file holds
#: none, and is dropped unread)
MAX_FILE_SIZE = max(MAX_DISPUTE_SIZE, MAX_PROOF_SIZE)


class ProofFolder:
    """Proof files of one book.

    Args:
        folder: where the files live (None: the book holds its proofs in memory only, and
            every method does nothing).
        what: what the files hold, for the logs (``"dispute proof"``).
    """

    def __init__(self, folder: Path | None, what: str) -> None:
        self.folder = folder
        self.what = what

    def _path(self, key: bytes) -> Path:
        assert self.folder is not None
        return self.folder / f"{key.hex()}.cbor"

    def load(self, check: Callable[[bytes], T], *, drop: bool = True) -> list[T]:
        """Every kept proof that still passes ``check(data)``, in file-name order.

        An entry that is no regular file, is larger than :data:`MAX_FILE_SIZE`, cannot be
        read, or whose bytes ``check`` refuses with a :class:`~repp2p.errors.ProofError`,
        is skipped (logged) and, with ``drop`` (the books), deleted (a directory is left
        alone): it holds nothing a view may count. A reader that must not change a node's
        folder (an offline tool) passes ``drop=False``. Never raises for what it finds.
        """
        if self.folder is None or not self.folder.is_dir():
            return []
        kept: list[T] = []
        for path in sorted(self.folder.glob("*.cbor")):
            try:
                kept.append(check(_read(path)))
            except (OSError, ProofError) as exc:
                log.info("%s %s skipped: %s", self.what, path.name, exc)
                if drop:
                    self._unlink(path)
        return kept

    def _unlink(self, path: Path) -> None:
        try:
            if not path.is_dir() or path.is_symlink():
                path.unlink(missing_ok=True)
        except OSError as exc:  # a read-only folder: the entry is skipped at every start
            log.warning("could not drop %s %s: %s", self.what, path.name, exc)

    def save(self, key: bytes, data: bytes) -> None:
        """Keep ``data`` as the proof of ``key`` (replacing what was kept under it)."""
        if self.folder is None:
            return
        path = self._path(key)
        tmp = path.with_suffix(".tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            tmp.replace(path)
        except OSError as exc:  # memory still holds it; a restart loses only this one
            log.warning("could not keep %s %s: %s", self.what, path.name, exc)

    def drop(self, key: bytes) -> None:
        """Forget the proof of ``key`` (no error when there is none)."""
        if self.folder is None:
            return
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not drop %s %s: %s", self.what, key.hex(), exc)


def _read(path: Path) -> bytes:
    """The bytes of one regular file of at most :data:`MAX_FILE_SIZE` bytes, read without
    following a link, never blocking on a FIFO, never past the cap.

    Raises:
        ProofError: MALFORMED (not a regular file), OVERSIZE (larger than the cap).
        OSError: the file cannot be opened or read.
    """
    if not stat.S_ISREG(path.lstat().st_mode):
        raise ProofError(ProofReason.MALFORMED, "not a regular file")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    with open(os.open(path, flags), "rb") as f:
        # the entry may have been replaced since lstat: check what was opened
        opened = os.fstat(f.fileno())
        if not stat.S_ISREG(opened.st_mode):
            raise ProofError(ProofReason.MALFORMED, "not a regular file")
        if opened.st_size > MAX_FILE_SIZE:
            raise ProofError(ProofReason.OVERSIZE, f"{opened.st_size} bytes")
        data = f.read(MAX_FILE_SIZE + 1)  # and no more, should it grow meanwhile
    if len(data) > MAX_FILE_SIZE:
        raise ProofError(ProofReason.OVERSIZE, f"more than {MAX_FILE_SIZE} bytes")
    return data


__all__ = ["MAX_FILE_SIZE", "ProofFolder"]
