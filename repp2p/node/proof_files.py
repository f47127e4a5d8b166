"""The folder a proof book keeps its proofs in: one file per proof, written atomically.

:class:`repp2p.node.disputes.DisputeBook` and :class:`repp2p.node.offences.OffenceBook`
both keep each proof they hold as ``<folder>/<key hex>.cbor`` so that a restarted peer
judges the same disputes and counts the same offences. What is on disk is hostile input
too (a damaged disk, an edited file): at start each file is checked again by the book's own
rule, and a file that fails it is dropped (logged), never trusted and never fatal.

Rules of this file: a write goes to ``<name>.tmp`` first and is renamed over the proof, so
a crash leaves either the old proof or the new one; a failing disk is logged and the proof
stays in memory (a restart then loses only that proof, which sync brings back:
:mod:`repp2p.net.proof_sync`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from repp2p.errors import ProofError

log = logging.getLogger("repp2p.proofs")

T = TypeVar("T")


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

        A file that cannot be read, or whose bytes ``check`` refuses with a
        :class:`~repp2p.errors.ProofError`, is skipped (logged) and, with ``drop`` (the
        books), deleted: it holds nothing a view may count. A reader that must not change
        a node's folder (an offline tool) passes ``drop=False``.
        """
        if self.folder is None or not self.folder.is_dir():
            return []
        kept: list[T] = []
        for path in sorted(self.folder.glob("*.cbor")):
            try:
                kept.append(check(path.read_bytes()))
            except (OSError, ProofError) as exc:
                log.info("%s %s skipped: %s", self.what, path.name, exc)
                if drop:
                    path.unlink(missing_ok=True)
        return kept

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


__all__ = ["ProofFolder"]
