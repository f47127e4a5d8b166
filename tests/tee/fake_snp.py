"""A faithful fake of an SEV-SNP guest's configfs-tsm, for tests only.

* :class:`TestAmdChain`: ARK -> ASK -> VCEK generated here with ``cryptography``, shaped
  like AMD's (RSA-PSS/SHA-384 ARK and ASK named ``ARK-Milan`` / ``SEV-Milan``, a P-384 VCEK
  carrying the hwID and TCB extensions). Trusted only by a ``SevSnpBackend`` built with
  :meth:`TestAmdChain.backend`; never by the pinned production roots.
* :func:`make_report`: an ATTESTATION_REPORT (0x4A0 bytes, the AMD ABI layout) signed by
  the VCEK, signature R and S little-endian in 72-byte fields.
* :class:`ThreadProcess` and :func:`fake_cvm_factory`: the enclave request loop in this
  process (real pipes, the production wire protocol), its ``sev-snp`` platform reading the
  fake kernel: an enclave "inside the fake CVM".
* :class:`FakeSnpKernel`: a :class:`TsmFiles` whose file operations really run on a temp
  tree and which does what the kernel does at each step: ``mkdir`` under ``report/``
  populates the entry's attributes, a write to ``inblob`` bumps ``generation``, a read of
  ``outblob``/``auxblob`` answers with a report about the current ``inblob`` and the
  certificate table (GUID-keyed, as the ABI defines).
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import os
import struct
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from repp2p.attestation import SevSnpBackend
from repp2p.attestation.certs import load_certificate
from repp2p.tee.configfs_tsm import REPORT_DIR, ConfigfsTsm, TsmFiles
from repp2p.tee.platforms import Platform, SevSnpPlatform, default_platform
from repp2p.tee.snp_certs import GUID_ARK, GUID_ASK, GUID_VCEK, build_cert_table
from repp2p.tee.snp_guest import SnpGuest
from repp2p.tee.worker import serve

_OID = "1.3.6.1.4.1.3704.1."
CHIP_ID = bytes(range(64))
#: Milan TCB_VERSION: bootloader, tee, reserved x4, snp, microcode
TCB = {"bootloader": 3, "tee": 0, "snp": 14, "microcode": 209}
MEASUREMENT = bytes.fromhex("5a" * 48)
NOT_BEFORE = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
NOT_AFTER = datetime.datetime(2035, 1, 1, tzinfo=datetime.UTC)
PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)


def _der_int(value: int) -> bytes:
    body = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big")
    return bytes([0x02, len(body)]) + body


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Engineering"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Micro Devices (NOT AMD)"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _ca(subject: str, issuer: str, key, signer, serial: int) -> x509.Certificate:  # type: ignore[no-untyped-def]
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(signer, hashes.SHA384(), rsa_padding=PSS)
    )


@dataclasses.dataclass
class TestAmdChain:
    """A test ARK -> ASK -> VCEK chain for one chip at one TCB (product ``Milan``)."""

    ark: x509.Certificate
    ask: x509.Certificate
    vcek: x509.Certificate
    vcek_key: ec.EllipticCurvePrivateKey
    chip_id: bytes
    tcb: dict[str, int]

    __test__ = False  # not a pytest class

    @classmethod
    def generate(cls, chip_id: bytes = CHIP_ID, tcb: dict[str, int] | None = None) -> TestAmdChain:
        tcb = dict(TCB if tcb is None else tcb)
        ark_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ask_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        vcek_key = ec.generate_private_key(ec.SECP384R1())
        ark = _ca("ARK-Milan", "ARK-Milan", ark_key, ark_key, 1)
        ask = _ca("SEV-Milan", "ARK-Milan", ask_key, ark_key, 2)
        tcb_oids = {"bootloader": "3.1", "tee": "3.2", "snp": "3.3", "microcode": "3.8"}
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name("SEV-VCEK"))
            .issuer_name(_name("SEV-Milan"))
            .public_key(vcek_key.public_key())
            .serial_number(3)
            .not_valid_before(NOT_BEFORE)
            .not_valid_after(NOT_AFTER)
            .add_extension(
                x509.UnrecognizedExtension(x509.ObjectIdentifier(_OID + "2"), b"\x16\x08Milan-B0"),
                critical=False,
            )
            .add_extension(
                x509.UnrecognizedExtension(x509.ObjectIdentifier(_OID + "4"), chip_id),
                critical=False,
            )
        )
        for name, suffix in tcb_oids.items():
            builder = builder.add_extension(
                x509.UnrecognizedExtension(
                    x509.ObjectIdentifier(_OID + suffix), _der_int(tcb[name])
                ),
                critical=False,
            )
        vcek = builder.sign(ask_key, hashes.SHA384(), rsa_padding=PSS)
        return cls(ark, ask, vcek, vcek_key, chip_id, tcb)

    def der(self, cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.DER)

    def collateral(self) -> bytes:
        return b"".join(self.der(c) for c in (self.vcek, self.ask, self.ark))

    def cert_table(self) -> bytes:
        return build_cert_table(
            {
                GUID_VCEK: self.der(self.vcek),
                GUID_ASK: self.der(self.ask),
                GUID_ARK: self.der(self.ark),
            }
        )

    def backend(self) -> SevSnpBackend:
        """A verifier trusting this test ARK only (never the production roots)."""
        ark = load_certificate(self.der(self.ark))
        ask = load_certificate(self.der(self.ask))
        return SevSnpBackend(arks={"Milan": ark}, asks={"Milan": ask})


def tcb_bytes(tcb: dict[str, int]) -> bytes:
    """Milan TCB_VERSION layout (see repp2p.attestation.sevsnp.decode_tcb)."""
    return bytes([tcb["bootloader"], tcb["tee"], 0, 0, 0, 0, tcb["snp"], tcb["microcode"]])


def make_report(
    chain: TestAmdChain,
    report_data: bytes,
    *,
    measurement: bytes = MEASUREMENT,
    guest_policy: int = 0x30000,
    version: int = 3,
    vmpl: int = 0,
) -> bytes:
    """An ATTESTATION_REPORT in the AMD ABI layout, signed by ``chain``'s VCEK."""
    report = bytearray(0x4A0)
    tcb = tcb_bytes(chain.tcb)
    struct.pack_into("<IIQ", report, 0, version, 1, guest_policy)
    struct.pack_into("<II", report, 0x30, vmpl, 1)  # VMPL, signature algo 1 (ECDSA P-384)
    report[0x38:0x40] = tcb  # current TCB
    struct.pack_into("<I", report, 0x48, 0)  # key info: signed by the VCEK
    report[0x50:0x90] = report_data.ljust(64, b"\0")
    report[0x90:0xC0] = measurement
    report[0x180:0x188] = tcb  # reported TCB
    report[0x1A0:0x1E0] = chain.chip_id
    report[0x1E0:0x1E8] = tcb  # committed TCB
    report[0x1F0:0x1F8] = tcb  # launch TCB
    signature = chain.vcek_key.sign(bytes(report[:0x2A0]), ec.ECDSA(hashes.SHA384()))
    r, s = decode_dss_signature(signature)
    report[0x2A0:0x2E8] = r.to_bytes(72, "little")
    report[0x2E8:0x330] = s.to_bytes(72, "little")
    return bytes(report)


def _put(path: Path, data: bytes) -> None:
    path.write_bytes(data)


class FakeSnpKernel(TsmFiles):
    """configfs-tsm of an SEV-SNP guest, on a temp tree (see the module docstring).

    Knobs for hostile-kernel tests:
        provider: what new entries report (``sev_guest``).
        privlevel_floor: the guest's lowest privilege level (VMPL); reports for a level
            below it fail with EINVAL, as the kernel's.
        cert_table: auxblob contents (default: the chain's table; ``b""`` for none).
        interlopers: how many more times another writer writes ``inblob`` between our
            write and our read (each bumps ``generation``).
        mangle: applied to each report before it is served.
    """

    def __init__(self, root: Path, chain: TestAmdChain, *, measurement: bytes = MEASUREMENT):
        self.root = Path(root)
        self.chain = chain
        self.measurement = measurement
        self.provider = "sev_guest"
        self.privlevel_floor = 0
        self.cert_table: bytes | None = None
        self.interlopers = 0
        self.mangle: Callable[[bytes], bytes] = lambda report: report
        self.reports_served = 0
        self.report_dir = self.root / REPORT_DIR
        self.report_dir.mkdir(parents=True, exist_ok=True)

    #: the attributes a new entry has beyond ``provider`` and ``generation``: the
    #: sev_guest provider shows privlevel, privlevel_floor and auxblob
    #: (``sev_report_attr_visible`` / ``sev_report_bin_attr_visible`` in sev-guest.c)
    attributes: tuple[str, ...] = ("inblob", "outblob", "auxblob", "privlevel", "privlevel_floor")

    def outblob(self, inblob: bytes, level: int) -> bytes:
        """What the guest driver returns for ``inblob`` at privilege level ``level``."""
        return make_report(self.chain, inblob, measurement=self.measurement, vmpl=level)

    def _is_entry(self, path: Path) -> bool:
        return path.parent == self.report_dir

    def mkdir(self, path: Path) -> None:
        super().mkdir(path)
        if self._is_entry(path):  # what configfs does: the entry comes with its attributes
            for name in self.attributes:
                _put(path / name, b"")
            if "privlevel_floor" in self.attributes:
                _put(path / "privlevel_floor", f"{self.privlevel_floor}\n".encode())
            _put(path / "provider", f"{self.provider}\n".encode())
            _put(path / "generation", b"0\n")

    def rmdir(self, path: Path) -> None:
        if self._is_entry(path):  # configfs removes the attributes with the entry
            for child in path.iterdir():
                child.unlink()
        super().rmdir(path)

    def _bump(self, entry: Path) -> None:
        gen = int((entry / "generation").read_text())
        _put(entry / "generation", f"{gen + 1}\n".encode())

    def write(self, path: Path, data: bytes) -> None:
        if path.name == "inblob" and self._is_entry(path.parent):
            if len(data) > 64:  # TSM_INBLOB_MAX: configfs refuses the write itself
                raise OSError(errno.EFBIG, "inblob is at most 64 bytes")
            _put(path, b"")  # the kernel replaces the blob
            super().write(path, data)
            self._bump(path.parent)
            for _ in range(self.interlopers):
                _put(path, b"\xee" * 64)  # another process writes the same entry
                self._bump(path.parent)
            return
        if path.name == "privlevel" and self._is_entry(path.parent):
            level = int(data.decode())
            if not self.privlevel_floor <= level <= 3:
                raise OSError(errno.EINVAL, "privlevel out of range")
            _put(path, b"")
            super().write(path, data)
            self._bump(path.parent)  # every write to the entry moves generation
            return
        super().write(path, data)

    def read(self, path: Path, limit: int) -> bytes:
        entry = path.parent
        if self._is_entry(entry) and path.name == "outblob":
            privlevel = entry / "privlevel"
            level = int(privlevel.read_bytes() or b"0") if privlevel.exists() else 0
            if level < self.privlevel_floor:
                raise OSError(errno.EINVAL, "report below the privilege floor")
            inblob = (entry / "inblob").read_bytes()
            if len(inblob) != 64:
                # tsm.c: no inblob yet is EINVAL; both guest drivers' report_new refuse
                # any inblob_len but 64 (SNP_REPORT_USER_DATA_SIZE, TDX_REPORTDATA_LEN)
                raise OSError(errno.EINVAL, f"inblob of {len(inblob)} bytes")
            _put(path, self.mangle(self.outblob(inblob, level)))
            self.reports_served += 1
        elif self._is_entry(entry) and path.name == "auxblob" and "auxblob" in self.attributes:
            table = self.chain.cert_table() if self.cert_table is None else self.cert_table
            _put(path, table)
        return super().read(path, limit)


def fake_cvm_factory(kernel: FakeSnpKernel) -> Callable[[dict, bytes, bytes], Platform]:
    """A worker platform factory: ``sev-snp`` on ``kernel``, anything else as usual."""

    def factory(spec: dict, seed: bytes, simulated_measurement: bytes) -> Platform:
        if spec.get("kind") == "sev-snp":
            return SevSnpPlatform(SnpGuest(ConfigfsTsm(kernel.root, files=kernel)))
        return default_platform(spec, seed, simulated_measurement)

    return factory


class ThreadProcess:
    """An in-process stand-in for the enclave subprocess: ``serve`` in a thread on pipes.

    Same surface as the ``subprocess.Popen`` the runtime drives (``stdin``, ``stdout``,
    ``poll``, ``kill``, ``wait``), so :meth:`repp2p.tee.Enclave.connect` works unchanged.
    """

    def __init__(self, factory: Callable[[dict, bytes, bytes], Platform]) -> None:
        worker_reads, node_writes = os.pipe()
        node_reads, worker_writes = os.pipe()
        self.stdin = os.fdopen(node_writes, "wb", buffering=0)
        self.stdout = os.fdopen(node_reads, "rb", buffering=0)
        self.returncode: int | None = None
        self._thread = threading.Thread(
            target=self._run, args=(worker_reads, worker_writes, factory), daemon=True
        )
        self._thread.start()

    def _run(self, read_fd: int, write_fd: int, factory) -> None:  # type: ignore[no-untyped-def]
        try:
            serve(read_fd, write_fd, platform_factory=factory)
        except OSError:
            pass  # the node side closed the pipe mid-reply (a kill)
        finally:
            os.close(read_fd)
            os.close(write_fd)
            self.returncode = 0

    def poll(self) -> int | None:
        return None if self._thread.is_alive() else self.returncode

    def kill(self) -> None:
        try:
            self.stdin.close()  # EOF: the loop returns
        except OSError:
            pass

    def wait(self, timeout: float | None = None) -> int | None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise subprocess.TimeoutExpired("enclave thread", timeout or 0)
        return self.returncode
