"""The SEV-SNP certificate table (GHCB extended guest request; configfs-tsm ``auxblob``).

Layout: an array of 24-byte entries ``GUID (16 bytes, RFC 4122 byte order) || offset (u32
LE) || length (u32 LE)``, ended by an all-zero entry; each offset counts from the start of
the table and points at one DER certificate. The host (hypervisor) fills the table, so in
the guest it is hostile input: entries are bounds-checked, GUIDs may not repeat, the
terminator must be there. Which certificates it holds is the host's choice; the GUIDs
below are the ones AMD's ABI defines.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Mapping

from repp2p.tee.errors import TeeInterfaceError, TeeInterfaceReason

GUID_VCEK = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd")
GUID_VLEK = uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1")
GUID_ASK = uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782")
GUID_ARK = uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae")
ENTRY = struct.Struct("<16sII")
#: more than this many entries is not a certificate table (AMD defines four GUIDs)
MAX_ENTRIES = 64
#: a certificate larger than this is not one of AMD's (they are about 1.5 KiB)
MAX_CERT = 16 * 1024


def _bad(detail: str) -> TeeInterfaceError:
    return TeeInterfaceError(TeeInterfaceReason.MALFORMED, f"SNP certificate table: {detail}")


def parse_cert_table(data: bytes) -> dict[uuid.UUID, bytes]:
    """GUID -> certificate bytes of a certificate table (empty input: empty table).

    Raises:
        TeeInterfaceError: MALFORMED (no terminator, out-of-bounds or duplicate entries).
    """
    table: dict[uuid.UUID, bytes] = {}
    if not data:
        return table
    for index in range(MAX_ENTRIES + 1):
        start = index * ENTRY.size
        if start + ENTRY.size > len(data):
            raise _bad("no terminating all-zero entry")
        raw_guid, offset, length = ENTRY.unpack_from(data, start)
        if raw_guid == bytes(16) and offset == 0 and length == 0:
            break
        if index == MAX_ENTRIES:
            raise _bad(f"more than {MAX_ENTRIES} entries")
        guid = uuid.UUID(bytes=raw_guid)
        if guid in table:
            raise _bad(f"GUID {guid} appears twice")
        if not 0 < length <= MAX_CERT:
            raise _bad(f"entry {guid} has length {length}")
        if offset < ENTRY.size or offset + length > len(data):
            raise _bad(f"entry {guid} points outside the table")
        table[guid] = bytes(data[offset : offset + length])
    return table


def build_cert_table(certs: Mapping[uuid.UUID, bytes]) -> bytes:
    """Encode a certificate table (what a host puts in the extended report's buffer)."""
    header_size = (len(certs) + 1) * ENTRY.size
    header, body = b"", b""
    for guid, der in certs.items():
        header += ENTRY.pack(guid.bytes, header_size + len(body), len(der))
        body += der
    return header + ENTRY.pack(bytes(16), 0, 0) + body


def vcek_collateral(table: Mapping[uuid.UUID, bytes]) -> bytes:
    """The collateral for :class:`repp2p.attestation.SevSnpBackend`: VCEK || ASK || ARK (DER).

    Empty when the table holds no VCEK (the operator then configures the chain by file).
    A VLEK-only table is refused: the verifier accepts VCEK-signed reports only.

    Raises:
        TeeInterfaceError: NOT_IMPLEMENTED for a VLEK-only table.
    """
    if GUID_VCEK not in table:
        if GUID_VLEK in table:
            raise TeeInterfaceError(
                TeeInterfaceReason.NOT_IMPLEMENTED,
                "the host provides a VLEK, not a VCEK: VLEK-signed reports are not verified "
                "by this release",
            )
        return b""
    return b"".join(table[g] for g in (GUID_VCEK, GUID_ASK, GUID_ARK) if g in table)
