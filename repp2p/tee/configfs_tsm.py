"""Evidence through Linux configfs-tsm (``/sys/kernel/config/tsm/report``, Linux >= 6.7).

The kernel ABI (Documentation/ABI/testing/configfs-tsm): ``mkdir report/<name>`` creates
an entry holding the attributes ``inblob`` (write: up to 64 bytes of report data),
``outblob`` (read: the report, generated on read for the current inblob), ``auxblob``
(read: for SEV-SNP the certificate table), ``provider`` (read: ``sev_guest`` or
``tdx_guest``), ``privlevel`` / ``privlevel_floor`` (the privilege level the report is
for, never below the floor: a guest under an SVSM runs above VMPL 0) and ``generation``
(read: incremented by every write to the entry). Two
writers sharing an entry could each read the other's report, so we read ``generation``
before writing and after reading: it must have moved by exactly our one write, else we
retry (a bounded number of times) and then refuse. We also use a fresh, random entry name
per report, and remove the entry afterwards.

All file operations go through :class:`TsmFiles`, plain ``os`` calls; a test fake
subclasses it to add what the kernel does at each step (populate an entry on mkdir,
answer a read of ``outblob``) while the real file protocol still runs on disk.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import secrets
from pathlib import Path

from repp2p.tee.errors import TeeInterfaceError, TeeInterfaceReason

REPORT_DIR = "sys/kernel/config/tsm/report"
INBLOB_SIZE = 64
#: TSM_REPORT_OUTBLOB_MAX in the kernel: outblob and auxblob are at most 32 KiB
OUTBLOB_MAX = 32 * 1024
_ATTR_MAX = 64  # provider/generation are short text
#: TSM_REPORT_PRIVLEVEL_MAX: four privilege levels (SEV-SNP VMPL 0..3)
MAX_PRIVLEVEL = 3
DEFAULT_RETRIES = 3
PROBE_HINT = "run `repp2p tee probe` for what this machine offers"


class TsmFiles:
    """The file operations of the configfs-tsm protocol, as plain ``os`` calls.

    Each call does exactly one thing to one path, so a fake kernel can hook the moments
    the real kernel acts on (see the module docstring). Errors are ``OSError``.
    """

    def mkdir(self, path: Path) -> None:
        os.mkdir(path, 0o700)

    def rmdir(self, path: Path) -> None:
        os.rmdir(path)

    def write(self, path: Path, data: bytes) -> None:
        # One write(2) of the whole blob: configfs binary attributes take the buffer
        # as written when the file is released, and no O_CREAT: the kernel made the file.
        # Current configfs ignores what the attribute's store returns at release (older
        # kernels returned it from close(2), reaching us as this call's OSError), so a
        # refused inblob write (EBUSY) may show only as a generation that did not move,
        # which ConfigfsTsm's before/after check treats as another writer (retry).
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            written = os.write(fd, data)
        finally:
            os.close(fd)
        if written != len(data):
            raise OSError(errno.EIO, f"short write to {path.name}: {written} of {len(data)}")

    def read(self, path: Path, limit: int) -> bytes:
        """At most ``limit`` bytes; more is an ``OSError`` (EFBIG), never a truncation."""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks, total = [], 0
            while True:
                chunk = os.read(fd, min(65536, limit + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
                if total > limit:
                    raise OSError(errno.EFBIG, f"{path.name} is larger than {limit} bytes")
        finally:
            os.close(fd)
        return b"".join(chunks)


@dataclasses.dataclass(frozen=True)
class TsmReport:
    """One report read through configfs-tsm.

    Attributes:
        provider: the ``provider`` attribute (``sev_guest``, ``tdx_guest``).
        outblob: the report (SEV-SNP: the 0x4A0-byte ATTESTATION_REPORT).
        auxblob: auxiliary data (SEV-SNP: the certificate table; may be empty).
        generation: ``generation`` after our read.
    """

    provider: str
    outblob: bytes
    auxblob: bytes
    generation: int


def _io_error(what: str, exc: OSError) -> TeeInterfaceError:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return TeeInterfaceError(
            TeeInterfaceReason.PERMISSION,
            f"configfs-tsm: {what}: permission denied (run the enclave process as root or "
            f"give it write access to the report directory); {PROBE_HINT}",
        )
    if exc.errno == errno.EFBIG:  # more than the ABI's maximum: not what a kernel sends
        return TeeInterfaceError(
            TeeInterfaceReason.MALFORMED, f"configfs-tsm: {what}: {exc.strerror or exc}"
        )
    return TeeInterfaceError(
        TeeInterfaceReason.IO_ERROR, f"configfs-tsm: {what}: {exc.strerror or exc}"
    )


class ConfigfsTsm:
    """Reports through configfs-tsm under ``root`` (``/`` on a real machine).

    Args:
        root: filesystem root (tests: a temp dir holding a fake tree).
        files: the file operations (default: plain ``os`` calls).
        retries: attempts when another writer moves ``generation`` under us.
    """

    def __init__(
        self,
        root: str | Path = "/",
        *,
        files: TsmFiles | None = None,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        if retries < 1:
            raise ValueError("retries >= 1")
        self.report_dir = Path(root) / REPORT_DIR
        self.files = files or TsmFiles()
        self.retries = retries

    def check_available(self) -> None:
        """Raise MISSING unless the report directory exists (cheap; creates nothing)."""
        if not self.report_dir.is_dir():
            raise TeeInterfaceError(
                TeeInterfaceReason.MISSING,
                f"configfs-tsm ({self.report_dir}) is missing: needs Linux >= 6.7 with "
                f"CONFIG_TSM_REPORTS inside a confidential VM, configfs mounted; {PROBE_HINT}",
            )

    def _generation(self, entry: Path) -> int:
        try:
            raw = self.files.read(entry / "generation", _ATTR_MAX)
        except OSError as exc:
            raise _io_error("read generation", exc) from None
        text = raw.decode("ascii", "replace").strip()
        if not text.isdigit() or len(text) > 20:
            raise TeeInterfaceError(
                TeeInterfaceReason.MALFORMED, f"configfs-tsm: generation {text[:24]!r}"
            )
        return int(text)

    def _privlevel_floor(self, entry: Path) -> int:
        """``privlevel_floor``, 0 when the attribute is absent (older kernels, TDX)."""
        try:
            raw = self.files.read(entry / "privlevel_floor", _ATTR_MAX)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise _io_error("read privlevel_floor", exc) from None
        text = raw.decode("ascii", "replace").strip()
        if not text:
            return 0
        if not text.isdigit() or int(text) > MAX_PRIVLEVEL:
            raise TeeInterfaceError(
                TeeInterfaceReason.MALFORMED, f"configfs-tsm: privlevel_floor {text[:24]!r}"
            )
        return int(text)

    def _provider(self, entry: Path) -> str:
        try:
            raw = self.files.read(entry / "provider", _ATTR_MAX)
        except OSError as exc:
            raise _io_error("read provider", exc) from None
        text = raw.decode("ascii", "replace").strip()
        if not text or not all(c.isalnum() or c in "_-." for c in text):
            raise TeeInterfaceError(
                TeeInterfaceReason.MALFORMED, f"configfs-tsm: provider {text[:24]!r}"
            )
        return text

    def report(self, report_data: bytes, *, provider: str | None = None) -> TsmReport:
        """Create an entry, write ``report_data``, read the report, remove the entry.

        Args:
            report_data: exactly 64 bytes (what the report must commit to).
            provider: when given, refuse (WRONG_PROVIDER) an entry of another provider
                before writing anything to it.

        Raises:
            TeeInterfaceError: MISSING, PERMISSION, WRONG_PROVIDER, CONCURRENT_WRITER,
                MALFORMED or IO_ERROR.
        """
        if len(report_data) != INBLOB_SIZE:
            raise ValueError(f"report data is {INBLOB_SIZE} bytes")
        self.check_available()
        entry = self.report_dir / f"repp2p-{secrets.token_hex(8)}"
        try:
            self.files.mkdir(entry)
        except OSError as exc:
            raise _io_error(f"create entry {entry.name}", exc) from None
        try:
            found = self._provider(entry)
            if provider is not None and found != provider:
                raise TeeInterfaceError(
                    TeeInterfaceReason.WRONG_PROVIDER,
                    f"configfs-tsm provider is {found!r}, this backend needs {provider!r}; "
                    f"{PROBE_HINT}",
                )
            floor = self._privlevel_floor(entry)
            if floor:
                # The report must be for our own level; the default (0) is below it.
                try:
                    self.files.write(entry / "privlevel", str(floor).encode())
                except OSError as exc:
                    raise _io_error("write privlevel", exc) from None
            for _attempt in range(self.retries):
                result = self._attempt(entry, bytes(report_data), found)
                if result is not None:
                    return result
            raise TeeInterfaceError(
                TeeInterfaceReason.CONCURRENT_WRITER,
                f"configfs-tsm entry {entry.name} was written by someone else "
                f"{self.retries} times in a row; refusing its report",
            )
        finally:
            try:
                self.files.rmdir(entry)
            except OSError:
                pass  # a leftover entry holds no secret (report data is public)

    def _attempt(self, entry: Path, data: bytes, provider: str) -> TsmReport | None:
        """One write/read round; None when ``generation`` shows another writer."""
        before = self._generation(entry)
        try:
            self.files.write(entry / "inblob", data)
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                # tsm.c refuses writes until a pending report is read (surfaces here
                # only for attributes stored at write time; see TsmFiles.write)
                return None
            raise _io_error("write inblob", exc) from None
        try:
            outblob = self.files.read(entry / "outblob", OUTBLOB_MAX)
        except OSError as exc:
            raise _io_error("read outblob", exc) from None
        try:
            auxblob = self.files.read(entry / "auxblob", OUTBLOB_MAX)
        except FileNotFoundError:
            auxblob = b""  # kernels and providers without auxiliary data
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.EOPNOTSUPP, errno.ENODATA):
                raise _io_error("read auxblob", exc) from None
            auxblob = b""
        after = self._generation(entry)
        if after != before + 1:
            return None
        if not outblob:
            raise TeeInterfaceError(TeeInterfaceReason.MALFORMED, "configfs-tsm: empty outblob")
        return TsmReport(provider, outblob, auxblob, after)
