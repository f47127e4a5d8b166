"""``repp2p walkthrough``: a short, real tour of the foundation (keys, records, store).

Every line it prints is the result of a real operation: keys are made, records signed,
stored, replayed, forged and read back. The live local network demo replaces this as the
main ``make demo`` once the network layer lands.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from repp2p.errors import RecordError
from repp2p.identity import Identity
from repp2p.network_params import NetworkParams
from repp2p.records import EngineOffer, Heartbeat, NodeAd, decode, encode
from repp2p.store import SqliteRecordStore


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("walkthrough", help="tour keys, signed records and the store")
    p.add_argument("--dir", help="folder for keys and the database (default: a temp folder)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.dir:
        return _tour(Path(args.dir))
    with tempfile.TemporaryDirectory(prefix="repp2p-") as tmp:
        return _tour(Path(tmp))


def _tour(folder: Path) -> int:
    now = int(time.time())
    key_path = folder / "node.key"
    node = Identity.load(key_path) if key_path.exists() else Identity.generate()
    if not key_path.exists():
        node.save(key_path)
    print(f"1. identity  {node.peer_id}  (key file {key_path}, mode 0600)")

    ad = NodeAd(
        addrs=("/ip4/127.0.0.1/tcp/4001",),
        engines=(EngineOffer("echo", bytes(32)),),
        tee_kind="simulated",
        price=1000,
        capacity=4,
        throughput=600,
        seq=now,
        expires=now + 3600,
    )
    data = encode(ad, node)
    signed = decode(data, now=now)
    print(f"2. signed    NodeAd of {len(data)} bytes, id {signed.record_id.hex()[:16]}...,")
    print(f"             signer {signed.signer} (= the libp2p peer ID)")

    with SqliteRecordStore(folder / "records.db") as store:
        print(
            f"3. stored    {store.put(signed, now=now).value}; again: "
            f"{store.put(signed, now=now).value}"
        )
        epoch = now // NetworkParams.load("dev").epoch_s  # the dev network's epochs
        beats = [
            decode(
                encode(
                    Heartbeat(epoch=epoch, load=i, tasks_done=i, seq=i + 1, expires=now + 600), node
                )
            )
            for i in range(3)
        ]
        outcomes = [o.value for o in store.put_many(beats, now=now)]
        print(f"4. heartbeat seq 1..3 for epoch {epoch}: {', '.join(outcomes)}")
        print(f"   replaying seq 1: {store.put(beats[0], now=now).value}")
        twin = decode(
            encode(Heartbeat(epoch=epoch, load=99, tasks_done=2, seq=3, expires=now + 600), node)
        )
        print(
            f"   a different record with seq 3: {store.put(twin, now=now).value} "
            f"(evidence kept: {len(store.equivocations())} pair)"
        )

        forged = bytearray(data)
        forged[-1] ^= 0x01
        try:
            decode(bytes(forged), now=now)
        except RecordError as exc:
            print(f"5. forged    one flipped bit -> rejected ({exc.reason.value})")
        held = store.query(signer=node.peer_id)
        types = sorted({s.type for s in held})
        print(f"6. read back {len(held)} current records of {node.peer_id[:16]}...: {types}")
    print("   (a live local network: repp2p demo, or make demo)")
    return 0
