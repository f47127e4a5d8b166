from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from repp2p.attestation import expected_gpu_nonce, expected_report_data
from repp2p.errors import AttestationError, AttestationReason

from .conftest import ENC_KEY, NONCE, PEER_ID, RESULT_KEY


def test_report_data_is_64_bytes_and_deterministic() -> None:
    a = expected_report_data(PEER_ID, ENC_KEY, RESULT_KEY, 7, NONCE)
    assert len(a) == 64
    assert a == expected_report_data(PEER_ID, ENC_KEY, RESULT_KEY, 7, NONCE)


def test_every_field_changes_the_report_data() -> None:
    base = expected_report_data(PEER_ID, ENC_KEY, RESULT_KEY, 7, NONCE)
    variants = [
        expected_report_data(PEER_ID[:-1] + "Y", ENC_KEY, RESULT_KEY, 7, NONCE),
        expected_report_data(PEER_ID, RESULT_KEY, ENC_KEY, 7, NONCE),  # keys swapped
        expected_report_data(PEER_ID, ENC_KEY, bytes(32), 7, NONCE),
        expected_report_data(PEER_ID, ENC_KEY, RESULT_KEY, 8, NONCE),
        expected_report_data(PEER_ID, ENC_KEY, RESULT_KEY, 7, bytes(32)),
        expected_report_data(PEER_ID, ENC_KEY, RESULT_KEY, 7, NONCE, b"gpu"),
    ]
    assert len({base, *variants}) == 1 + len(variants)


def test_gpu_nonce_differs_from_report_data_prefix() -> None:
    nonce = expected_gpu_nonce(PEER_ID, ENC_KEY, RESULT_KEY, 7, NONCE)
    assert len(nonce) == 32
    assert nonce != expected_report_data(PEER_ID, ENC_KEY, RESULT_KEY, 7, NONCE)[:32]


@pytest.mark.parametrize(
    "args",
    [
        ("", ENC_KEY, RESULT_KEY, 1, NONCE),
        ("é" * 10, ENC_KEY, RESULT_KEY, 1, NONCE),
        (PEER_ID, ENC_KEY[:31], RESULT_KEY, 1, NONCE),
        (PEER_ID, ENC_KEY, RESULT_KEY + b"x", 1, NONCE),
        (PEER_ID, ENC_KEY, RESULT_KEY, -1, NONCE),
        (PEER_ID, ENC_KEY, RESULT_KEY, 2**64, NONCE),
        (PEER_ID, ENC_KEY, RESULT_KEY, 1, NONCE[:16]),
        (PEER_ID, "k" * 32, RESULT_KEY, 1, NONCE),
    ],
)
def test_bad_binding_inputs_are_malformed(args: tuple) -> None:
    with pytest.raises(AttestationError) as err:
        expected_report_data(*args)
    assert err.value.reason is AttestationReason.MALFORMED


@given(
    st.text(
        alphabet="123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz",
        min_size=1,
        max_size=60,
    ),
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=32, max_size=32),
    st.integers(0, 2**64 - 1),
    st.binary(min_size=32, max_size=32),
)
def test_binding_is_injective_on_peer_and_epoch(peer, enc, res, epoch, nonce) -> None:  # type: ignore[no-untyped-def]
    a = expected_report_data(peer, enc, res, epoch, nonce)
    assert a != expected_report_data(peer + "1", enc, res, epoch, nonce)
    assert a != expected_report_data(peer, enc, res, (epoch + 1) % 2**64, nonce)
