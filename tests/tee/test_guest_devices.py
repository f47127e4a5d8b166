"""The /dev/sev-guest and /dev/tdx_guest ioctl paths, against fake drivers behind the seam.

The fakes follow the ioctl argument's pointers exactly as the kernel does (offsets from
the UAPI headers, written out independently of the production structures). One test runs
the real ``fcntl.ioctl`` on a plain file, which the kernel answers with ENOTTY.
"""

from __future__ import annotations

import ctypes
import errno
import struct
from pathlib import Path

import pytest

from repp2p.tee import Enclave, EnclaveReason
from repp2p.tee.enclave import check_platform
from repp2p.tee.errors import EnclaveError, TeeInterfaceError, TeeInterfaceReason
from repp2p.tee.guest_devices import (
    SNP_GET_EXT_REPORT,
    SNP_GET_REPORT,
    TDX_CMD_GET_REPORT0,
    SevGuestDevice,
    SnpExtReportReq,
    SnpGuestRequestIoctl,
    SnpReportReq,
    TdxGuestDevice,
    TdxReportReq,
)
from repp2p.tee.platforms import CvmPlatform, SevSnpPlatform, snp_guest, tdx_guest
from repp2p.tee.qgs import QgsClient, decode_get_quote, encode_get_quote
from repp2p.tee.snp_certs import GUID_VLEK, build_cert_table
from repp2p.tee.snp_guest import SnpGuest
from repp2p.tee.tdx_guest import TdxGuest

from . import fake_devices
from .fake_devices import MRTD, FakeQgs, FakeSevGuest, FakeTdxGuest
from .fake_snp import MEASUREMENT, TestAmdChain, ThreadProcess
from .fake_tdx import TestIntelChain

NOW = 1_800_000_000


@pytest.fixture(scope="module")
def chain() -> TestAmdChain:
    return TestAmdChain.generate()


def reason(call) -> TeeInterfaceReason:  # type: ignore[no-untyped-def]
    with pytest.raises(TeeInterfaceError) as err:
        call()
    return err.value.reason


def test_structures_match_the_uapi_headers() -> None:
    assert ctypes.sizeof(SnpReportReq) == 96
    assert ctypes.sizeof(SnpExtReportReq) == 112
    assert SnpExtReportReq.certs_address.offset == 96 and SnpExtReportReq.certs_len.offset == 104
    assert ctypes.sizeof(SnpGuestRequestIoctl) == 32
    assert SnpGuestRequestIoctl.req_data.offset == 8
    assert ctypes.sizeof(TdxReportReq) == 1088
    assert (SNP_GET_REPORT, SNP_GET_EXT_REPORT, TDX_CMD_GET_REPORT0) == (
        fake_devices.SNP_GET_REPORT,
        fake_devices.SNP_GET_EXT_REPORT,
        fake_devices.TDX_CMD_GET_REPORT0,
    )


def test_extended_report_verifies(tmp_path: Path, chain: TestAmdChain) -> None:
    io = FakeSevGuest(tmp_path, chain)
    device = SevGuestDevice(tmp_path, io=io)
    evidence, collateral = device.evidence(b"\x31" * 64)
    assert io.calls == [SNP_GET_EXT_REPORT] and not io.open_fds
    assert collateral == chain.collateral()
    claims = chain.backend().verify(evidence, collateral, NOW)
    assert claims.report_data == b"\x31" * 64 and claims.measurement == MEASUREMENT
    assert device.measurement() == MEASUREMENT
    plain = device.report(b"\x32" * 64)  # SNP_GET_REPORT: the report alone
    assert io.calls[-1] == SNP_GET_REPORT
    assert chain.backend().verify(plain, chain.collateral(), NOW).report_data == b"\x32" * 64


def test_a_host_table_larger_than_the_driver_carries_falls_back_to_the_file(
    tmp_path: Path, chain: TestAmdChain
) -> None:
    """The driver takes at most SEV_FW_BLOB_MAX_SIZE (16 KiB) of certificates: a host that
    wants more gets the report alone, and the VCEK chain comes from the operator's file."""
    io = FakeSevGuest(tmp_path, chain)
    io.host_wants = 8 * 4096
    data = b"\x33" * 64
    assert reason(lambda: SevGuestDevice(tmp_path, io=io).evidence(data)) is (
        TeeInterfaceReason.MISSING
    )
    assert io.calls == [SNP_GET_EXT_REPORT, SNP_GET_REPORT]
    vcek = tmp_path / "vcek.der"
    vcek.write_bytes(chain.collateral())
    evidence, collateral = SevGuestDevice(tmp_path, io=io, collateral_file=vcek).evidence(data)
    assert collateral == chain.collateral()
    assert chain.backend().verify(evidence, collateral, NOW).report_data == data


def test_the_fake_driver_refuses_what_the_kernel_refuses(
    tmp_path: Path, chain: TestAmdChain
) -> None:
    """Pins the fake to sev-guest.c: buffers above 16 KiB or not page-aligned are EINVAL."""
    io = FakeSevGuest(tmp_path, chain)
    for certs_len in (0x4000 + 4096, 4096 + 1):
        certs = ctypes.create_string_buffer(certs_len)
        req = SnpExtReportReq(SnpReportReq(), ctypes.addressof(certs), certs_len)
        resp = ctypes.create_string_buffer(4000)
        arg = SnpGuestRequestIoctl(1, ctypes.addressof(req), ctypes.addressof(resp))
        fd = io.open(io.node)
        with pytest.raises(OSError) as err:
            io.ioctl(fd, SNP_GET_EXT_REPORT, arg)
        io.close(fd)
        assert err.value.errno == errno.EINVAL


class _LyingHost(FakeSevGuest):
    """A host that refuses a 16 KiB buffer, then asks for one page."""

    def ioctl(self, fd: int, request: int, arg: ctypes.Structure) -> None:
        if request != SNP_GET_EXT_REPORT:
            return super().ioctl(fd, request, arg)
        base = ctypes.addressof(arg)
        req_addr = struct.unpack_from("<Q", ctypes.string_at(base + 8, 8))[0]
        ctypes.memmove(req_addr + 104, struct.pack("<I", 4096), 4)
        ctypes.memmove(base + 24, struct.pack("<Q", 1 << 32), 8)
        raise OSError(errno.EIO, "certificate buffer too small")


def test_a_host_contradicting_itself_is_malformed(tmp_path: Path, chain: TestAmdChain) -> None:
    device = SevGuestDevice(tmp_path, io=_LyingHost(tmp_path, chain))
    assert reason(lambda: device.evidence(b"\x34" * 64)) is TeeInterfaceReason.MALFORMED


def test_a_vmpl_above_zero_is_requested(tmp_path: Path, chain: TestAmdChain) -> None:
    io = FakeSevGuest(tmp_path, chain)
    evidence, collateral = SevGuestDevice(tmp_path, io=io, vmpl=2).evidence(b"\x01" * 64)
    assert dict(chain.backend().verify(evidence, collateral, NOW).details)["vmpl"] == "2"
    with pytest.raises(ValueError):
        SevGuestDevice(tmp_path, vmpl=4)


def test_sev_guest_failures_are_typed(tmp_path: Path, chain: TestAmdChain) -> None:
    io = FakeSevGuest(tmp_path, chain)
    device = SevGuestDevice(tmp_path, io=io)
    data = b"\x02" * 64
    io.host_wants = 1 << 30  # a host asking for a gigabyte: report alone, no file
    assert reason(lambda: device.evidence(data)) is TeeInterfaceReason.MISSING
    io.host_wants = 0
    io.status = 0x16  # firmware: invalid parameters
    assert reason(lambda: device.evidence(data)) is TeeInterfaceReason.IO_ERROR
    io.status, io.report_size = 0, 0x400
    assert reason(lambda: device.evidence(data)) is TeeInterfaceReason.MALFORMED
    io.report_size = 0x4A0
    io.cert_table = b""  # host gives no certificates and no file is configured
    assert reason(lambda: device.evidence(data)) is TeeInterfaceReason.MISSING
    vcek = tmp_path / "vcek.der"
    vcek.write_bytes(chain.collateral())
    assert SevGuestDevice(tmp_path, io=io, collateral_file=vcek).evidence(data)[1] == (
        chain.collateral()
    )
    io.cert_table = build_cert_table({GUID_VLEK: b"x"})
    assert reason(lambda: device.evidence(data)) is TeeInterfaceReason.NOT_IMPLEMENTED
    io.cert_table = b"\x07" * 30  # a garbage table from the host
    assert reason(lambda: device.evidence(data)) is TeeInterfaceReason.MALFORMED
    io.cert_table = None
    for code, expected in (
        (errno.EACCES, TeeInterfaceReason.PERMISSION),
        (errno.EIO, TeeInterfaceReason.IO_ERROR),
        (errno.ENOTTY, TeeInterfaceReason.IO_ERROR),
    ):
        io.fail = code
        assert reason(lambda: device.evidence(data)) is expected
        assert reason(lambda: device.report(data)) is expected
    assert not io.open_fds  # every descriptor closed, also on failure
    assert reason(lambda: SevGuestDevice(tmp_path / "none").evidence(data)) is (
        TeeInterfaceReason.MISSING
    )


def test_the_real_ioctl_on_a_plain_file_is_a_typed_error(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/sev-guest").write_bytes(b"")  # not a device: the kernel says ENOTTY
    (tmp_path / "dev/tdx_guest").write_bytes(b"")
    assert reason(lambda: SevGuestDevice(tmp_path).evidence(b"\0" * 64)) is (
        TeeInterfaceReason.IO_ERROR
    )
    assert reason(lambda: TdxGuestDevice(tmp_path).tdreport(b"\0" * 64)) is (
        TeeInterfaceReason.IO_ERROR
    )


def test_tdx_guest_quotes_through_the_host_quote_service(tmp_path: Path) -> None:
    intel = TestIntelChain.generate()
    io, qgs = FakeTdxGuest(tmp_path), FakeQgs(intel, MRTD)
    collateral = tmp_path / "tdx-collateral.json"
    collateral.write_bytes(intel.collateral())
    device = TdxGuestDevice(
        tmp_path, io=io, collateral_file=collateral, qgs=QgsClient(connect=qgs.connect)
    )
    report = device.tdreport(b"\x44" * 64)
    assert len(report) == 1024 and report[128:192] == b"\x44" * 64
    quote, sent = device.evidence(b"\x45" * 64)
    assert qgs.requests[-1][:3] == (1, 0, 0)  # version 1.0, GET_QUOTE_REQ
    claims = intel.backend().verify(quote, sent, NOW)
    assert claims.report_data == b"\x45" * 64 and claims.measurement == MRTD
    assert device.measurement() == MRTD
    qgs.error = 0x11001
    assert reason(lambda: device.evidence(b"\x46" * 64)) is TeeInterfaceReason.IO_ERROR
    qgs.error = 0
    for garbage in (b"", b"\x01" * 30, struct.pack("<HHIIIII", 1, 0, 1, 28, 0, 0, 4) + b"quot"):
        qgs.garbage = garbage
        assert reason(lambda: device.evidence(b"\x46" * 64)) is TeeInterfaceReason.MALFORMED
    qgs.garbage = None
    io.echo = False
    assert reason(lambda: device.tdreport(b"\x44" * 64)) is TeeInterfaceReason.MALFORMED
    io.echo = True
    io.fail = errno.EIO
    assert reason(lambda: device.tdreport(b"\x44" * 64)) is TeeInterfaceReason.IO_ERROR
    io.fail = None
    no_collateral = TdxGuestDevice(tmp_path, io=io, qgs=QgsClient(connect=qgs.connect))
    assert reason(lambda: no_collateral.evidence(b"\x01" * 64)) is TeeInterfaceReason.MISSING
    assert reason(lambda: TdxGuestDevice(tmp_path / "none").measurement()) is (
        TeeInterfaceReason.MISSING
    )


def test_a_td_without_a_quote_service_says_so(tmp_path: Path) -> None:
    def refused():  # type: ignore[no-untyped-def]
        raise TeeInterfaceError(TeeInterfaceReason.MISSING, "no TDX quote service at vsock 2:4050")

    FakeTdxGuest(tmp_path)
    collateral = tmp_path / "c.json"
    collateral.write_text("{}")
    device = TdxGuestDevice(
        tmp_path, io=FakeTdxGuest(tmp_path), collateral_file=collateral,
        qgs=QgsClient(connect=refused),
    )  # fmt: skip
    with pytest.raises(TeeInterfaceError) as err:
        device.evidence(b"\x01" * 64)
    assert err.value.reason is TeeInterfaceReason.MALFORMED  # the garbage collateral first
    collateral.write_bytes(TestIntelChain.generate().collateral())
    assert reason(lambda: device.evidence(b"\x01" * 64)) is TeeInterfaceReason.MISSING


def test_qgs_messages() -> None:
    framed = encode_get_quote(b"\x07" * 1024)
    assert int.from_bytes(framed[:4], "big") == len(framed) - 4 == 24 + 1024
    assert struct.unpack_from("<HHIIIII", framed, 4) == (1, 0, 0, 1048, 0, 1024, 0)
    good = struct.pack("<HHIIIII", 1, 0, 1, 24 + 3 + 5, 0, 3, 5) + b"idsquote"
    assert decode_get_quote(good) == b"quote"


def test_sev_snp_falls_back_to_the_device_without_configfs_tsm(
    tmp_path: Path, chain: TestAmdChain
) -> None:
    FakeSevGuest(tmp_path, chain)  # creates dev/sev-guest
    assert isinstance(snp_guest(None, str(tmp_path)), SevGuestDevice)
    check_platform("sev-snp", str(tmp_path))  # no configfs-tsm, but the device: accepted
    with pytest.raises(EnclaveError):
        check_platform("dcap", str(tmp_path))  # no /dev/tdx_guest here
    FakeTdxGuest(tmp_path)
    check_platform("dcap", str(tmp_path))
    assert isinstance(tdx_guest(None, str(tmp_path)), TdxGuestDevice)
    (tmp_path / "sys/kernel/config/tsm/report").mkdir(parents=True)
    assert isinstance(snp_guest(None, str(tmp_path)), SnpGuest)  # configfs-tsm preferred
    assert isinstance(tdx_guest(None, str(tmp_path)), TdxGuest)
    assert isinstance(snp_guest(None, str(tmp_path / "empty")), SnpGuest)  # names configfs


def test_an_enclave_on_the_device_fallback_is_attested(tmp_path: Path, chain: TestAmdChain) -> None:
    io = FakeSevGuest(tmp_path, chain)

    def factory(spec: dict, seed: bytes, measurement: bytes) -> CvmPlatform:
        return SevSnpPlatform(SevGuestDevice(tmp_path, io=io))

    request = {
        "op": "start", "engines": ["echo"], "seed": b"\x07" * 32, "cheat": False,
        "preload": True, "platform": {"kind": "sev-snp", "collateral_file": None},
    }  # fmt: skip
    with Enclave.connect(ThreadProcess(factory), request, 60) as enclave:
        assert enclave.kind == "sev-snp" and enclave.measurement == MEASUREMENT
        evidence, collateral = enclave.attest_with_collateral("peer", 1, b"\0" * 32, NOW)
        assert chain.backend().verify(evidence, collateral, NOW).measurement == MEASUREMENT
        io.fail = errno.EACCES
        with pytest.raises(EnclaveError) as err:
            enclave.attest("peer", 1, b"\0" * 32, NOW)
        assert err.value.reason is EnclaveReason.TEE_UNAVAILABLE
