"""``repp2p ledger``: REP balances recomputed from a node's record store.

Reads ``DIR/records.db`` (and ``DIR/node.toml``, when present, for the network and the
attestation policy), takes the network's parameters (epoch length, ledger and reputation
parameters) from its file like every peer, verifies attestations under the policy like the
node's view does, and replays :func:`repp2p.ledger.replay` over the per-task records, or,
on a digest network (``reputation_source = "digests"``), settles from the digests held and
the digest views rebuilt from them (:func:`repp2p.digest_ledger.digest_report`). Final
balances (grace period over) and pending ones (provisional epochs included) are printed
separately.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from repp2p.errors import ConfigError
from repp2p.ledger import MICRO, LedgerReport, replay
from repp2p.network_params import BOOTSTRAP_DIR, NetworkParams

if TYPE_CHECKING:
    from repp2p.attestation import Policy


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("ledger", help="print REP balances computed from a record store")
    p.add_argument("--data-dir", required=True, type=Path, help="node data folder (records.db)")
    p.add_argument(
        "--epoch", type=int, default=None, help="as of the start of this epoch (default: now)"
    )
    p.add_argument("--network", default=None, help="network name (default: node.toml's, else dev)")
    p.add_argument("--network-file", type=Path, default=None, help="the network's file")
    p.add_argument("--policy", default=None, help="attestation policy TOML (default: node.toml)")
    p.add_argument(
        "--epoch-s",
        type=int,
        default=None,
        help="override the network's epoch length (inspect a store under other assumptions)",
    )
    p.add_argument(
        "--grace-epochs", type=int, default=None, help="override the network's grace_epochs"
    )
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=_ledger)


def _settings(args: argparse.Namespace) -> tuple[NetworkParams, Policy]:
    """The network's parameters (with the command line's overrides) and the policy."""
    import dataclasses

    from repp2p.attestation import load_policy
    from repp2p.config import load_node_config

    cfg_path = args.data_dir / "node.toml"
    cfg = load_node_config(cfg_path) if cfg_path.exists() else None
    if args.network is None and args.network_file is None and cfg is not None:
        params = cfg.network_params
        folder = cfg.network_folder
    else:
        name = args.network or (cfg.network if cfg else "dev")
        params = NetworkParams.load(name, args.network_file)
        folder = args.network_file.parent if args.network_file else BOOTSTRAP_DIR
    if args.epoch_s is not None:
        params = params.replace(epoch_s=args.epoch_s)
    if args.grace_epochs is not None:
        ledger = dataclasses.replace(params.ledger, grace_epochs=args.grace_epochs)
        params = params.replace(ledger=ledger)
    if args.policy:
        policy_path = Path(args.policy)
    elif cfg is not None and cfg.network == params.name:
        policy_path = cfg.policy_path()
    else:
        policy_path = folder / params.policy_file
    return params, load_policy(policy_path)


def compute_report(args: argparse.Namespace) -> tuple[LedgerReport, int]:
    """Open the store, verify attestations, replay the ledger (exposed for tests): from
    per-task records, or from digests on a digest network."""
    from repp2p.store import SqliteRecordStore
    from repp2p.viewer import ViewKeeper

    db = args.data_dir / "records.db"
    if not db.exists():
        raise ConfigError(f"no record store at {db}")
    params, policy = _settings(args)
    now = args.epoch * params.epoch_s if args.epoch is not None else int(time.time())
    store = SqliteRecordStore(db)
    if params.reputation_source == "digests":
        # a peer of a digest network holds only its own tasks' records: settle from the
        # digests and the digest views every peer rebuilds alike
        from repp2p.digest_ledger import HeldProofs, digest_report

        try:
            # the dispute and offence proofs the node keeps count as in its views
            proofs = HeldProofs.load(args.data_dir, now)
            return digest_report(store, policy, params, now=now, proofs=proofs), params.epoch_s
        finally:
            store.close()
    try:
        records = store.query()
        keeper = ViewKeeper(store, policy, params)
        attested = keeper.verdicts(records, now)
    finally:
        store.close()
    report = replay(
        records,
        attested,
        now=now,
        epoch_s=params.epoch_s,
        params=params.ledger,
        reputation_params=params.reputation,
        # claims count at the ranks the matching gave, on views rebuilt from these records
        assignments=keeper.assignments(now // params.epoch_s + 1, records, attested),
    )
    return report, params.epoch_s


def _ledger(args: argparse.Namespace) -> int:
    report, _epoch_s = compute_report(args)
    peers = sorted(set(report.final.balances) | set(report.pending.balances))
    if args.json:
        out = {
            "current_epoch": report.current_epoch,
            "final_through_epoch": report.final.epoch,
            "pending_through_epoch": report.pending.epoch,
            "unit": "micro-REP",
            "balances": {
                p: {"final": report.final.balance(p), "pending": report.pending.balance(p)}
                for p in peers
            },
            "final_supply": report.final.supply,
            "pending_supply": report.pending.supply,
            "settlements": [
                {
                    "epoch": s.epoch,
                    "final": s.final,
                    "emission": s.emission,
                    "burned": s.burned,
                    "payouts": dict(s.payouts),
                    "work": dict(s.work),
                    "slashes": [list(x) for x in s.slashes],
                    "digest": s.digest.hex(),
                }
                for s in report.settlements
            ],
        }
        print(json.dumps(out, indent=None, sort_keys=True))
        return 0
    print(
        f"epoch {report.current_epoch}: final through epoch {report.final.epoch}, "
        f"pending through {report.pending.epoch}"
    )
    print(f"{'peer':<56} {'final REP':>16} {'pending REP':>16}")
    for p in sorted(peers, key=lambda p: -report.pending.balance(p)):
        final, pending = report.final.balance(p), report.pending.balance(p)
        print(f"{p:<56} {final / MICRO:>16.6f} {pending / MICRO:>16.6f}")
    print(
        f"{'supply':<56} {report.final.supply / MICRO:>16.6f} "
        f"{report.pending.supply / MICRO:>16.6f}"
    )
    return 0
