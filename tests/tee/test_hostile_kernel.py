"""What a hostile host or kernel hands the new evidence paths never escapes as anything but
a typed :class:`TeeInterfaceError` (property tests over arbitrary bytes)."""

from __future__ import annotations

import ctypes
import struct
import tempfile
from pathlib import Path

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repp2p.tee.errors import TeeInterfaceError
from repp2p.tee.gpu import gpu_evidence
from repp2p.tee.guest_devices import DeviceIO, SevGuestDevice
from repp2p.tee.nsm import NsmDevice, document_pcr0
from repp2p.tee.qgs import decode_get_quote
from repp2p.tee.tdx_guest import td_report_body
from repp2p.tee.vsock import parse_address

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def typed_or_value(call) -> None:  # type: ignore[no-untyped-def]
    try:
        call()
    except TeeInterfaceError:
        pass


@SETTINGS
@given(st.binary(max_size=2048))
def test_td_report_body_of_anything(data: bytes) -> None:
    typed_or_value(lambda: td_report_body(data))


@SETTINGS
@given(st.binary(max_size=1024))
def test_document_pcr0_of_anything(data: bytes) -> None:
    typed_or_value(lambda: document_pcr0(data))


@SETTINGS
@given(st.one_of(st.text(max_size=40), st.from_regex(r"vsock:\d{1,12}:\d{1,12}", fullmatch=True)))
def test_parse_address_of_anything(text: str) -> None:
    try:
        cid, port = parse_address(text)
    except ValueError:
        return
    assert 0 <= cid < 2**32 and 0 <= port < 2**32


class AnswerWith(DeviceIO):
    """A device that writes ``response`` wherever the request points (a hostile driver)."""

    def __init__(self, response: bytes, length: int | None = None) -> None:
        self.response, self.length = response, length

    def open(self, path: Path) -> int:
        return 3

    def close(self, fd: int) -> None:
        pass

    def ioctl(self, fd: int, request: int, arg: ctypes.Structure) -> None:
        base = ctypes.addressof(arg)
        if ctypes.sizeof(arg) == 32 and (request >> 8) & 0xFF == 0x0A:  # nsm_raw
            _, _, resp, resp_len = struct.unpack("<QQQQ", ctypes.string_at(base, 32))
            body = self.response[:resp_len]
            ctypes.memmove(resp, body, len(body))
            length = len(body) if self.length is None else self.length
            ctypes.memmove(base + 24, struct.pack("<Q", length), 8)
        else:  # snp_guest_request_ioctl: resp_data at offset 16, 4000 bytes
            resp = struct.unpack("<Q", ctypes.string_at(base + 16, 8))[0]
            body = self.response[:4000]
            ctypes.memmove(resp, body, len(body))


@SETTINGS
@given(st.binary(max_size=4000))
def test_sev_guest_response_of_anything(response: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "dev").mkdir()
        (Path(tmp) / "dev/sev-guest").write_bytes(b"")
        device = SevGuestDevice(tmp, io=AnswerWith(response))
        typed_or_value(lambda: device.evidence(b"\x01" * 64))


@SETTINGS
@given(
    st.one_of(
        st.binary(max_size=600),
        st.builds(lambda d: cbor2.dumps({"Attestation": d}), st.dictionaries(
            st.text(max_size=10), st.one_of(st.binary(max_size=64), st.integers()), max_size=3)),
    ),
    st.one_of(st.none(), st.integers(min_value=0, max_value=2**64 - 1)),
)  # fmt: skip
def test_nsm_response_of_anything(response: bytes, length: int | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "dev").mkdir()
        (Path(tmp) / "dev/nsm").write_bytes(b"")
        device = NsmDevice(tmp, io=AnswerWith(response, length))
        typed_or_value(lambda: device.evidence(b"\x01" * 64))


class GarbageGpu:
    def __init__(self, report: bytes, chain: bytes) -> None:
        self.report, self.chain = report, chain

    def check_available(self) -> None:
        pass

    def evidence(self, nonce: bytes) -> tuple[bytes, bytes]:
        return self.report, self.chain


@SETTINGS
@given(st.binary(max_size=200), st.binary(max_size=50))
def test_gpu_evidence_of_anything(report: bytes, chain: bytes) -> None:
    typed_or_value(lambda: gpu_evidence(GarbageGpu(report, chain), b"\x02" * 32))


@SETTINGS
@given(
    st.one_of(
        st.binary(max_size=200),
        st.builds(
            lambda fields, tail: struct.pack("<HHIIIII", *fields) + tail,
            st.tuples(*[st.integers(0, 2**16 - 1)] * 2, *[st.integers(0, 2**32 - 1)] * 5),
            st.binary(max_size=64),
        ),
    )
)
def test_qgs_response_of_anything(message: bytes) -> None:
    typed_or_value(lambda: decode_get_quote(message))
