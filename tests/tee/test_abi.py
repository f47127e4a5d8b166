"""The kernel, device and library interfaces the TEE backends speak, pinned byte for byte.

Every number here is written out from the interface's own definition, independently of
the production code, so a drifting constant or layout fails here rather than on a
machine we do not have:

* ``include/uapi/asm-generic/ioctl.h``: ``_IOC(dir, type, nr, size) = dir << 30 |
  size << 16 | type << 8 | nr`` with ``_IOC_READ | _IOC_WRITE = 3`` (``_IOWR``);
* ``include/uapi/linux/sev-guest.h``, ``include/uapi/linux/tdx-guest.h``,
  ``include/uapi/linux/nsm.h`` (x86-64 natural alignment), ``include/linux/psp-sev.h``
  (``SEV_FW_BLOB_MAX_SIZE``), ``include/linux/tsm.h`` (``TSM_INBLOB_MAX``,
  ``TSM_OUTBLOB_MAX``, ``TSM_PRIVLEVEL_MAX``);
* ``Documentation/ABI/testing/configfs-tsm`` and ``drivers/virt/coco/tsm.c`` (which
  attributes an entry has per provider, ``generation`` counting writes);
* AWS ``aws-nitro-enclaves-nsm-api`` (``Request::Attestation`` as serde CBOR);
* Intel DCAP ``qgs_msg_lib`` (``qgs_msg_header_t``, ``GET_QUOTE_REQ``) and
  ``tdx_attest.c`` (4-byte big-endian framing on vsock);
* nvidia-ml-py's ``pynvml.py`` (the confidential-compute structures).
"""

from __future__ import annotations

import ctypes
import errno
from pathlib import Path

import cbor2
import pytest

from repp2p.tee import configfs_tsm, guest_devices, nsm, qgs
from repp2p.tee.configfs_tsm import REPORT_DIR

from . import fake_devices, fake_gpu, fake_nitro
from .fake_snp import FakeSnpKernel, TestAmdChain
from .fake_tdx import FakeTdxKernel, TestIntelChain


def _iowr(kind: int, nr: int, size: int) -> int:
    """``_IOWR`` from asm-generic/ioctl.h, field by field."""
    ioc_nrshift, ioc_typeshift, ioc_sizeshift, ioc_dirshift = 0, 8, 16, 30
    assert size < 1 << 14  # _IOC_SIZEBITS
    return (
        (3 << ioc_dirshift)
        | (kind << ioc_typeshift)
        | (nr << ioc_nrshift)
        | (size << ioc_sizeshift)
    )


def test_ioctl_numbers_are_what_the_headers_yield() -> None:
    # struct snp_guest_request_ioctl: u8, (7 pad), u64, u64, u64 -> 32 bytes
    assert _iowr(ord("S"), 0x0, 32) == 0xC0205300 == guest_devices.SNP_GET_REPORT
    assert _iowr(ord("S"), 0x2, 32) == 0xC0205302 == guest_devices.SNP_GET_EXT_REPORT
    # struct tdx_report_req: 64 + 1024 bytes
    assert _iowr(ord("T"), 1, 1088) == 0xC4405401 == guest_devices.TDX_CMD_GET_REPORT0
    # struct nsm_raw: two {u64 addr, u64 len}
    assert _iowr(0x0A, 0, 32) == 0xC0200A00 == nsm.NSM_IOCTL_RAW
    # and the fakes dispatch on the same numbers
    assert (fake_devices.SNP_GET_REPORT, fake_devices.SNP_GET_EXT_REPORT) == (
        0xC0205300,
        0xC0205302,
    )
    assert (fake_devices.TDX_CMD_GET_REPORT0, fake_nitro.NSM_IOCTL_RAW) == (0xC4405401, 0xC0200A00)


def _layout(struct: type[ctypes.Structure]) -> list[tuple[str, int, int]]:
    return [(name, getattr(struct, name).offset, getattr(struct, name).size) for name, *_ in
            struct._fields_]  # fmt: skip


def test_structure_layouts_are_the_uapi_ones() -> None:
    assert _layout(guest_devices.SnpReportReq) == [("user_data", 0, 64), ("vmpl", 64, 4),
                                                    ("rsvd", 68, 28)]  # fmt: skip
    assert ctypes.sizeof(guest_devices.SnpReportReq) == 96
    assert _layout(guest_devices.SnpExtReportReq) == [("data", 0, 96), ("certs_address", 96, 8),
                                                       ("certs_len", 104, 4)]  # fmt: skip
    assert ctypes.sizeof(guest_devices.SnpExtReportReq) == 112  # padded to 8
    assert ctypes.sizeof(guest_devices.SnpReportResp) == 4000
    assert _layout(guest_devices.SnpGuestRequestIoctl) == [
        ("msg_version", 0, 1), ("req_data", 8, 8), ("resp_data", 16, 8), ("exitinfo2", 24, 8),
    ]  # fmt: skip
    arg = guest_devices.SnpGuestRequestIoctl(exitinfo2=(1 << 32) | 0x16)
    assert (arg.fw_error, arg.vmm_error) == (0x16, 1)  # the union's halves, little-endian
    assert _layout(guest_devices.TdxReportReq) == [("reportdata", 0, 64), ("tdreport", 64, 1024)]
    assert _layout(nsm.NsmRaw) == [("request", 0, 16), ("response", 16, 16)]
    assert _layout(nsm.NsmIovec) == [("addr", 0, 8), ("len", 8, 8)]


def test_sizes_and_limits_are_the_kernels() -> None:
    assert guest_devices.SEV_FW_BLOB_MAX_SIZE == 0x4000 == fake_devices.SEV_FW_BLOB_MAX_SIZE
    assert guest_devices.SNP_GUEST_VMM_ERR_INVALID_LEN == 1
    assert guest_devices.SNP_GUEST_VMM_ERR_BUSY == 2
    assert (configfs_tsm.INBLOB_SIZE, configfs_tsm.OUTBLOB_MAX) == (64, 32 * 1024)
    assert configfs_tsm.MAX_PRIVLEVEL == 3
    assert (nsm.NSM_REQUEST_MAX_SIZE, nsm.NSM_RESPONSE_MAX_SIZE) == (0x1000, 0x3000)
    # TDREPORT (tdx-guest.c's TDREPORT_* offsets): REPORTDATA at 128, MRTD at 512 + 16
    assert (
        slice(128, 192),
        slice(528, 576),
    ) == (guest_devices.TDREPORT_REPORTDATA, guest_devices.TDREPORT_MRTD)


def test_the_nsm_attestation_request_is_serde_cbor_of_the_rust_enum(tmp_path: Path) -> None:
    """``Request::Attestation { user_data, nonce, public_key }`` (Option<ByteBuf> fields,
    declared in that order) as serde_cbor writes it: an externally tagged map."""

    class Capture(fake_nitro.FakeNsm):
        def ioctl(self, fd: int, request: int, arg: ctypes.Structure) -> None:
            raw = bytes(arg)  # type: ignore[call-overload]
            addr, size = int.from_bytes(raw[0:8], "little"), int.from_bytes(raw[8:16], "little")
            self.sent = ctypes.string_at(addr, size)
            super().ioctl(fd, request, arg)

    device_io = Capture(tmp_path, fake_nitro.TestNitroChain())
    nsm.NsmDevice(tmp_path, io=device_io).attestation(b"\x42" * 64)
    expected = (
        bytes([0xA1, 0x6B]) + b"Attestation"
        + bytes([0xA3, 0x69]) + b"user_data" + bytes([0x58, 0x40]) + b"\x42" * 64
        + bytes([0x65]) + b"nonce" + bytes([0xF6])
        + bytes([0x6A]) + b"public_key" + bytes([0xF6])
    )  # fmt: skip
    assert device_io.sent == expected
    assert cbor2.loads(expected) == {
        "Attestation": {"user_data": b"\x42" * 64, "nonce": None, "public_key": None}
    }


def test_the_fake_nsm_truncates_like_the_driver(tmp_path: Path) -> None:
    """drivers/misc/nsm.c copies min(response.len, device length) and reports that."""
    device_io = fake_nitro.FakeNsm(tmp_path, fake_nitro.TestNitroChain())
    request = cbor2.dumps({"Attestation": {"user_data": None, "nonce": None, "public_key": None}})
    req = ctypes.create_string_buffer(request, len(request))
    resp = ctypes.create_string_buffer(16)
    raw = nsm.NsmRaw(nsm.NsmIovec(ctypes.addressof(req), len(request)),
                     nsm.NsmIovec(ctypes.addressof(resp), 16))  # fmt: skip
    device_io.ioctl(77, nsm.NSM_IOCTL_RAW, raw)
    assert raw.response.len == 16
    with pytest.raises(OSError) as err:
        device_io.ioctl(77, nsm.NSM_IOCTL_RAW + 1, raw)
    assert err.value.errno == errno.EINVAL


def test_the_qgs_get_quote_request_bytes() -> None:
    """qgs_msg_get_quote_req_t: header {u16 major 1, u16 minor 0, u32 type 0, u32 size,
    u32 error_code 0}, u32 report_size, u32 id_list_size, then the TDREPORT; framed by a
    4-byte big-endian length as tdx_attest.c sends it on vsock."""
    framed = qgs.encode_get_quote(b"\xab" * 1024)
    assert framed[:4] == bytes.fromhex("00000418")
    assert framed[4:28] == bytes.fromhex("010000000000000018040000000000000004000000000000")
    assert framed[28:] == b"\xab" * 1024
    assert (qgs.QGS_VSOCK_PORT, qgs.VMADDR_CID_HOST) == (4050, 2)


def test_the_nvml_structures_are_pynvmls() -> None:
    """Sizes from nvidia-ml-py: a 32-byte nonce in, an 8 KiB report and a 5 KiB chain out."""
    report = fake_gpu.ConfComputeGpuAttestationReport
    assert _layout(report)[:5] == [
        ("isCecAttestationReportPresent", 0, 4), ("attestationReportSize", 4, 4),
        ("cecAttestationReportSize", 8, 4), ("nonce", 12, 0x20), ("attestationReport", 44, 0x2000),
    ]  # fmt: skip
    cert = fake_gpu.ConfComputeGpuCertificate
    assert _layout(cert) == [
        ("certChainSize", 0, 4), ("attestationCertChainSize", 4, 4),
        ("certChain", 8, 0x1000), ("attestationCertChain", 0x1008, 0x1400),
    ]  # fmt: skip
    nvml = fake_gpu.FakeNvml(fake_gpu.FakeGpu(fake_gpu.TestGpuChain()))
    with pytest.raises(TypeError):  # what pynvml's setattr does with a 31-byte nonce
        nvml.nvmlDeviceGetConfComputeGpuAttestationReport(100, b"\x01" * 31)


@pytest.fixture(scope="module")
def amd() -> TestAmdChain:
    return TestAmdChain.generate()


def _entry(kernel: FakeSnpKernel) -> Path:
    entry = kernel.root / REPORT_DIR / "abi"
    kernel.mkdir(entry)
    return entry


def test_configfs_entries_have_each_providers_attributes(tmp_path: Path, amd: TestAmdChain) -> None:
    """sev_report_attr_visible / tdx_report_attr_visible: which files a new entry has."""
    snp = _entry(FakeSnpKernel(tmp_path / "snp", amd))
    assert sorted(p.name for p in snp.iterdir()) == [
        "auxblob", "generation", "inblob", "outblob", "privlevel", "privlevel_floor", "provider",
    ]  # fmt: skip
    tdx = _entry(FakeTdxKernel(tmp_path / "tdx", TestIntelChain.generate()))
    assert sorted(p.name for p in tdx.iterdir()) == ["generation", "inblob", "outblob", "provider"]


def test_configfs_inblob_rules(tmp_path: Path, amd: TestAmdChain) -> None:
    """tsm.c: the generation counts writes; a report needs an inblob, and the guest
    drivers take exactly 64 bytes; configfs refuses a write beyond TSM_INBLOB_MAX."""
    kernel = FakeSnpKernel(tmp_path, amd)
    entry = _entry(kernel)
    with pytest.raises(OSError) as err:
        kernel.read(entry / "outblob", 32768)
    assert err.value.errno == errno.EINVAL  # no inblob yet
    kernel.write(entry / "inblob", b"\x01" * 32)
    with pytest.raises(OSError) as err:
        kernel.read(entry / "outblob", 32768)
    assert err.value.errno == errno.EINVAL  # 32 bytes: report_new refuses
    with pytest.raises(OSError) as err:
        kernel.write(entry / "inblob", b"\x01" * 65)
    assert err.value.errno == errno.EFBIG
    kernel.write(entry / "inblob", b"\x01" * 64)
    assert kernel.read(entry / "generation", 64) == b"2\n"
    assert len(kernel.read(entry / "outblob", 32768)) == 0x4A0


def test_report_offsets_are_the_vendor_layouts() -> None:
    """Where the 64 bytes of report data and the measurement sit in each report."""
    from repp2p.tee import snp_guest, tdx_guest

    # SEV-SNP ATTESTATION_REPORT (SNP firmware ABI, Table 22 "ATTESTATION_REPORT"):
    # ... VMPL 0x30, SIGNATURE_ALGO 0x34, CURRENT_TCB 0x38, PLATFORM_INFO 0x40, flags 0x48,
    # REPORT_DATA 0x50 (64), MEASUREMENT 0x90 (48), ..., SIGNATURE 0x2A0 (512): 0x4A0 bytes
    assert (slice(0x50, 0x90), slice(0x90, 0xC0)) == (snp_guest.REPORT_DATA, snp_guest.MEASUREMENT)
    assert snp_guest.REPORT_SIZE == 0x2A0 + 512 == 0x4A0
    # TDX TD report body (Intel TDX DCAP quote layout): TEE_TCB_SVN 16, MRSEAM 48,
    # MRSIGNERSEAM 48, SEAMATTRIBUTES 8, TDATTRIBUTES 8, XFAM 8, MRTD 48, MRCONFIGID 48,
    # MROWNER 48, MROWNERCONFIG 48, RTMR0..3 4 x 48, REPORTDATA 64 (TDX 1.5 appends
    # TEE_TCB_SVN2 16 and MRSERVICETD 48)
    mrtd = 16 + 48 + 48 + 8 + 8 + 8
    report_data = mrtd + 48 * 4 + 48 * 4
    assert (
        slice(mrtd, mrtd + 48),
        slice(report_data, report_data + 64),
    ) == (tdx_guest.MRTD, tdx_guest.REPORT_DATA)
    assert tdx_guest.HEADER_SIZE == 2 + 2 + 4 + 2 + 2 + 16 + 20 == 48
    assert tdx_guest.TEE_TDX == 0x81
