"""configfs-tsm provider, SNP certificate table and SEV-SNP guest evidence, on the fake kernel.

The fake kernel answers with reports signed by a test ARK -> ASK -> VCEK chain: the real
verifier accepts them under that chain's roots only, and refuses them under AMD's.
"""

from __future__ import annotations

import errno
import uuid
from pathlib import Path

import pytest

from repp2p.attestation import Policy, SevSnpBackend, expected_report_data, verify_node
from repp2p.errors import AttestationError, AttestationReason
from repp2p.tee.configfs_tsm import REPORT_DIR, ConfigfsTsm, TsmFiles
from repp2p.tee.errors import TeeInterfaceError, TeeInterfaceReason
from repp2p.tee.snp_certs import (
    GUID_ARK,
    GUID_ASK,
    GUID_VCEK,
    GUID_VLEK,
    build_cert_table,
    parse_cert_table,
    vcek_collateral,
)
from repp2p.tee.snp_guest import SnpGuest

from .fake_snp import MEASUREMENT, FakeSnpKernel, TestAmdChain

NOW = 1_800_000_000
PEER = "12D3KooWGzh8ZLf2y3bU4mbqCqx6sYfYJtmyE4pN7vUjEGbN3oXz"
ENC, RES, NONCE = bytes(range(32)), bytes(range(32, 64)), b"\x42" * 32
POLICY = Policy(profile="production", accepted_kinds=frozenset({"sev-snp"}))


@pytest.fixture(scope="module")
def chain() -> TestAmdChain:
    return TestAmdChain.generate()


@pytest.fixture
def kernel(tmp_path: Path, chain: TestAmdChain) -> FakeSnpKernel:
    return FakeSnpKernel(tmp_path, chain)


def guest(kernel: FakeSnpKernel, **kw) -> SnpGuest:  # type: ignore[no-untyped-def]
    return SnpGuest(ConfigfsTsm(kernel.root, files=kernel), **kw)


def reason(call) -> TeeInterfaceReason:  # type: ignore[no-untyped-def]
    with pytest.raises(TeeInterfaceError) as err:
        call()
    return err.value.reason


def test_report_roundtrip_and_entry_removed(kernel: FakeSnpKernel) -> None:
    tsm = ConfigfsTsm(kernel.root, files=kernel)
    result = tsm.report(b"\x07" * 64, provider="sev_guest")
    assert result.provider == "sev_guest" and result.generation == 1
    assert result.outblob[0x50:0x90] == b"\x07" * 64
    assert parse_cert_table(result.auxblob)[GUID_VCEK] == kernel.chain.der(kernel.chain.vcek)
    assert list((kernel.root / REPORT_DIR).iterdir()) == []


def test_fake_evidence_verifies_under_test_roots_only(kernel: FakeSnpKernel) -> None:
    data = expected_report_data(PEER, ENC, RES, 5, NONCE)
    evidence, collateral = guest(kernel).evidence(data)
    claims = kernel.chain.backend().verify(evidence, collateral, NOW)
    assert claims.report_data == data and claims.measurement == MEASUREMENT
    assert claims.tcb_map == kernel.chain.tcb and not claims.debug
    node = verify_node(
        PEER, "sev-snp", evidence, collateral, b"", ENC, RES, 5, NONCE, POLICY, NOW,
        backends={"sev-snp": kernel.chain.backend()},
    )  # fmt: skip
    assert node.claims.platform_id == kernel.chain.chip_id
    with pytest.raises(AttestationError) as err:
        SevSnpBackend().verify(evidence, collateral, NOW)  # the pinned AMD roots
    assert err.value.reason is AttestationReason.UNTRUSTED_ROOT
    with pytest.raises(AttestationError) as err:  # default backends: production roots
        verify_node(PEER, "sev-snp", evidence, collateral, b"", ENC, RES, 5, NONCE, POLICY, NOW)
    assert err.value.reason is AttestationReason.UNTRUSTED_ROOT
    with pytest.raises(AttestationError) as err:  # bound to another epoch
        verify_node(
            PEER, "sev-snp", evidence, collateral, b"", ENC, RES, 6, NONCE, POLICY, NOW,
            backends={"sev-snp": kernel.chain.backend()},
        )  # fmt: skip
    assert err.value.reason is AttestationReason.REPORT_DATA_MISMATCH


def test_a_writer_under_us_is_retried_then_refused(kernel: FakeSnpKernel) -> None:
    tsm = ConfigfsTsm(kernel.root, files=kernel, retries=3)
    kernel.interlopers = 1
    assert reason(lambda: tsm.report(b"\1" * 64)) is TeeInterfaceReason.CONCURRENT_WRITER
    assert kernel.reports_served == 3
    assert list((kernel.root / REPORT_DIR).iterdir()) == []


def test_a_writer_once_is_survived(kernel: FakeSnpKernel) -> None:
    tsm = ConfigfsTsm(kernel.root, files=kernel, retries=3)
    original = kernel.write
    calls = []

    def write(path: Path, data: bytes) -> None:
        calls.append(path.name)
        kernel.interlopers = 1 if len(calls) == 1 else 0
        original(path, data)

    kernel.write = write  # type: ignore[method-assign]
    result = tsm.report(b"\2" * 64)
    assert result.outblob[0x50:0x90] == b"\2" * 64 and calls == ["inblob", "inblob"]


def test_busy_kernel_is_retried_then_refused(kernel: FakeSnpKernel) -> None:
    def busy(path: Path, data: bytes) -> None:
        raise OSError(errno.EBUSY, "busy")

    kernel.write = busy  # type: ignore[method-assign]
    tsm = ConfigfsTsm(kernel.root, files=kernel)
    assert reason(lambda: tsm.report(b"\3" * 64)) is TeeInterfaceReason.CONCURRENT_WRITER


def test_an_inblob_write_the_kernel_drops_silently_is_not_taken(kernel: FakeSnpKernel) -> None:
    """configfs applies a binary attribute at release and ignores a refusal then (tsm.c's
    EBUSY): the write "succeeds", the old inblob stays, generation does not move. The
    report that follows is about the old data, and must not be returned as ours."""
    tsm = ConfigfsTsm(kernel.root, files=kernel, retries=2)
    original = kernel.write
    dropped = []

    def write(path: Path, data: bytes) -> None:
        if path.name == "inblob" and not dropped:
            original(path, b"\x09" * 64)  # someone else's data is what the entry holds
            gen = path.parent / "generation"
            gen.write_bytes(b"%d\n" % (int(gen.read_bytes()) - 1))  # ... and ours was dropped
            dropped.append(path)
            return
        original(path, data)

    kernel.write = write  # type: ignore[method-assign]
    result = tsm.report(b"\x05" * 64)
    assert dropped and result.outblob[0x50:0x90] == b"\x05" * 64 and kernel.reports_served == 2


def test_missing_interface_and_permissions(tmp_path: Path) -> None:
    tsm = ConfigfsTsm(tmp_path)
    with pytest.raises(TeeInterfaceError) as err:
        tsm.report(b"\0" * 64)
    assert err.value.reason is TeeInterfaceReason.MISSING
    assert "repp2p tee probe" in err.value.detail and "6.7" in err.value.detail

    class Denied(TsmFiles):
        def mkdir(self, path: Path) -> None:
            raise PermissionError(errno.EACCES, "denied")

    (tmp_path / REPORT_DIR).mkdir(parents=True)
    denied = ConfigfsTsm(tmp_path, files=Denied())
    assert reason(lambda: denied.report(b"\0" * 64)) is TeeInterfaceReason.PERMISSION
    with pytest.raises(ValueError):
        denied.report(b"short")


def test_wrong_provider_is_refused_before_writing(kernel: FakeSnpKernel) -> None:
    kernel.provider = "tdx_guest"
    assert reason(lambda: guest(kernel).evidence(b"\0" * 64)) is TeeInterfaceReason.WRONG_PROVIDER
    assert kernel.reports_served == 0


@pytest.mark.parametrize(
    "mangle",
    [
        lambda r: r[:-1],  # truncated
        lambda r: r + b"\0",  # too long
        lambda r: b"",  # empty
        lambda r: r[:0x50] + b"\xaa" * 64 + r[0x90:],  # another report data
    ],
    ids=["short", "long", "empty", "other-data"],
)
def test_hostile_outblob_is_a_typed_error(kernel: FakeSnpKernel, mangle) -> None:  # type: ignore[no-untyped-def]
    kernel.mangle = mangle
    assert reason(lambda: guest(kernel).evidence(b"\5" * 64)) is TeeInterfaceReason.MALFORMED


def test_garbage_generation_and_oversized_blobs(kernel: FakeSnpKernel) -> None:
    original = kernel.mkdir

    def mkdir(path: Path) -> None:
        original(path)
        (path / "generation").write_bytes(b"\xff not a number")

    kernel.mkdir = mkdir  # type: ignore[method-assign]
    assert reason(lambda: guest(kernel).evidence(b"\6" * 64)) is TeeInterfaceReason.MALFORMED
    kernel.mkdir = original  # type: ignore[method-assign]
    kernel.mangle = lambda r: r * 40  # beyond the kernel's 32 KiB outblob maximum (EFBIG)
    assert reason(lambda: guest(kernel).evidence(b"\6" * 64)) is TeeInterfaceReason.MALFORMED


def test_empty_cert_table_needs_a_collateral_file(kernel: FakeSnpKernel, tmp_path: Path) -> None:
    kernel.cert_table = b""
    with pytest.raises(TeeInterfaceError) as err:
        guest(kernel).evidence(b"\7" * 64)
    assert err.value.reason is TeeInterfaceReason.MISSING and "KDS" in err.value.detail
    chain_file = tmp_path / "vcek-chain.der"
    chain_file.write_bytes(kernel.chain.collateral())
    evidence, collateral = guest(kernel, collateral_file=chain_file).evidence(b"\7" * 64)
    assert kernel.chain.backend().verify(evidence, collateral, NOW).report_data == b"\7" * 64
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"-----BEGIN CERTIFICATE-----\nnope\n")
    bad = guest(kernel, collateral_file=junk)
    assert reason(lambda: bad.evidence(b"\7" * 64)) is TeeInterfaceReason.MALFORMED
    gone = guest(kernel, collateral_file=tmp_path / "absent")
    assert reason(lambda: gone.evidence(b"\7" * 64)) is TeeInterfaceReason.MISSING


def test_measurement_comes_from_a_startup_report(kernel: FakeSnpKernel) -> None:
    assert guest(kernel).measurement() == MEASUREMENT


# -- the certificate table ----------------------------------------------------------------


def test_cert_table_roundtrip_and_collateral_order() -> None:
    certs = {GUID_ARK: b"ark", GUID_VCEK: b"vcek", GUID_ASK: b"ask"}
    table = parse_cert_table(build_cert_table(certs))
    assert table == certs and vcek_collateral(table) == b"vcekaskark"
    assert parse_cert_table(b"") == {} and vcek_collateral({}) == b""
    with pytest.raises(TeeInterfaceError) as err:
        vcek_collateral({GUID_VLEK: b"vlek"})
    assert err.value.reason is TeeInterfaceReason.NOT_IMPLEMENTED


def _entry(guid: uuid.UUID, offset: int, length: int) -> bytes:
    return guid.bytes + offset.to_bytes(4, "little") + length.to_bytes(4, "little")


@pytest.mark.parametrize(
    "table",
    [
        _entry(GUID_VCEK, 48, 4) + b"cert",  # no terminator
        _entry(GUID_VCEK, 48, 400) + bytes(24),  # past the end
        _entry(GUID_VCEK, 0, 4) + bytes(24),  # inside the header
        _entry(GUID_VCEK, 72, 1) + _entry(GUID_VCEK, 72, 1) + bytes(24) + b"x",  # duplicate
        _entry(GUID_VCEK, 48, 0) + bytes(24),  # empty certificate
        b"".join(_entry(uuid.uuid4(), 24, 1) for _ in range(70)),  # endless
        b"\x01" * 10,  # not even one entry
    ],
    ids=["no-end", "past-end", "in-header", "duplicate", "empty-cert", "endless", "short"],
)
def test_hostile_cert_tables(table: bytes) -> None:
    assert reason(lambda: parse_cert_table(table)) is TeeInterfaceReason.MALFORMED


def test_a_guest_above_vmpl0_reports_at_its_floor(kernel: FakeSnpKernel) -> None:
    kernel.privlevel_floor = 2  # e.g. a guest OS under an SVSM
    evidence, collateral = guest(kernel).evidence(b"\x08" * 64)
    claims = kernel.chain.backend().verify(evidence, collateral, NOW)
    assert dict(claims.details)["vmpl"] == "2"


@pytest.mark.parametrize("floor", [b"7\n", b"x\n", b"-1"], ids=["too-high", "text", "negative"])
def test_garbage_privlevel_floor(kernel: FakeSnpKernel, floor: bytes) -> None:
    original = kernel.mkdir

    def mkdir(path: Path) -> None:
        original(path)
        (path / "privlevel_floor").write_bytes(floor)

    kernel.mkdir = mkdir  # type: ignore[method-assign]
    assert reason(lambda: guest(kernel).evidence(b"\x09" * 64)) is TeeInterfaceReason.MALFORMED


@pytest.mark.parametrize(
    ("name", "error", "expected"),
    [
        ("outblob", OSError(errno.EIO, "firmware said no"), TeeInterfaceReason.IO_ERROR),
        ("outblob", OSError(errno.ENXIO, "no provider"), TeeInterfaceReason.IO_ERROR),
        ("auxblob", OSError(errno.EIO, "broken"), TeeInterfaceReason.IO_ERROR),
        # a kernel without auxiliary data: no table, so the chain must come from a file
        ("auxblob", FileNotFoundError(errno.ENOENT, "absent"), TeeInterfaceReason.MISSING),
        ("auxblob", OSError(errno.EOPNOTSUPP, "none"), TeeInterfaceReason.MISSING),
        ("provider", PermissionError(errno.EACCES, "denied"), TeeInterfaceReason.PERMISSION),
    ],
    ids=["outblob-eio", "outblob-enxio", "auxblob-eio", "auxblob-absent", "auxblob-none", "eacces"],
)
def test_kernel_errors_are_typed(
    kernel: FakeSnpKernel, name: str, error: OSError, expected
) -> None:  # type: ignore[no-untyped-def]
    original = kernel.read

    def read(path: Path, limit: int) -> bytes:
        if path.name == name:
            raise error
        return original(path, limit)

    kernel.read = read  # type: ignore[method-assign]
    assert reason(lambda: guest(kernel).evidence(b"\x0a" * 64)) is expected
    assert list((kernel.root / REPORT_DIR).iterdir()) == []  # the entry is removed anyway
