"""A node whose disk fills stays up, says it is degraded, and resumes when space returns.

The disk fills for real as far as SQLite can tell: ``PRAGMA max_page_count`` at the
database's current size makes every write fail with SQLITE_FULL ("database or disk is
full"), the error a full file system gives; raising it again is freeing space.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time

import trio

from repp2p.records import encode
from repp2p.testing import factories
from repp2p.testing.network import local_network
from repp2p.timers import Timers


async def _get(address: str, path: str) -> tuple[int, str]:
    host, _, port = address.rpartition(":")
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            await stream.send_all(f"GET {path} HTTP/1.0\r\n\r\n".encode())
            reply = b""
            while chunk := await stream.receive_some(65536):
                reply += chunk
    head, _, body = reply.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


def _heartbeat(epoch: int) -> bytes:
    """A valid heartbeat from one of many signers (each a new row in the store)."""
    record = factories.sample_records(now=time.time())[2]
    return encode(dataclasses.replace(record, epoch=epoch), factories.identity(f"hb-{epoch}"))


async def test_full_disk_degrades_the_node_and_it_recovers(tmp_path):
    timers = Timers(store_recover_s=1.0)
    async with local_network(tmp_path, 1, status_listen="127.0.0.1:0", timers=timers) as [node]:
        address = node.status_address
        assert address is not None
        assert await _get(address, "/health") == (200, "ok\n")

        db = node.store._db
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full
        records = [_heartbeat(epoch) for epoch in range(1, 400)]
        # One transaction of rows that need new pages: it fails whole, nothing half-stored.
        assert not any(node.parts.pipeline.accept_many(records, source="gossip"))
        fault = node.parts.pipeline.store_fault
        assert fault is not None and "database or disk is full" in fault.error, fault

        code, body = await _get(address, "/health")
        assert code == 503 and body.startswith("degraded: record store cannot write")
        code, body = await _get(address, "/status")
        assert code == 200 and '"ok": false' in body
        code, body = await _get(address, "/metrics")
        assert 'repp2p_degraded{reason="store"} 1.0' in body

        db.execute("PRAGMA max_page_count = 1073741823")  # space is back
        assert all(node.parts.pipeline.accept_many(records, source="gossip"))
        await trio.sleep(1.2)  # store_recover_s without a failed write
        assert node.parts.pipeline.store_fault is None
        assert await _get(address, "/health") == (200, "ok\n")
        assert all(node.store.has(hashlib.sha256(d).digest()) for d in records)  # none lost
