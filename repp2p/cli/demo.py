"""``repp2p demo``: the marketplace doing its job on a local network, in under two minutes.

A devnet of node processes (one of them deliberately returning wrong results) and an
in-process client submitting tasks over the engines with redundancy. It shows progress,
latency percentiles, the reputation table, REP balances, and the cheating node being
caught by redundancy: its lost disputes (judged from the task records on a records
network, from the dispute proof on a digest network, the default) drop its reputation to
the bottom, and a phase-out follows after ``phase_out_epochs`` views (at once on a records
network with ``wrong_result_hard = true``).
Every node runs the SIMULATED TEE: development only, no real security.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import trio

from repp2p.cli.devnet import EPOCH_S
from repp2p.errors import ReppError

INPUTS = {
    "echo": [b"hello %d" % i for i in range(16)],
    "sentiment": [
        b"I love how fast and reliable this network is!",
        b"This was a terrible, slow and frustrating experience.",
        b"The result arrived. It is a result.",
        b"Absolutely wonderful work, thank you so much!",
    ],
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("demo", help="local network + client: tasks, reputation, REP")
    p.add_argument("--nodes", type=int, default=8, help="nodes besides the bootstrap (>= 4)")
    p.add_argument("--tasks", type=int, default=105, help="tasks to submit")
    p.add_argument("--redundancy", type=int, default=3, help="nodes per task (k)")
    p.add_argument("--concurrency", type=int, default=3, help="tasks in flight at once")
    p.add_argument("--dir", help="keep data dirs here (default: a temporary folder)")
    p.set_defaults(func=run)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run(args: argparse.Namespace) -> int:
    if args.nodes < 4 or args.redundancy < 1 or args.tasks < 1:
        raise ReppError("need --nodes >= 4, --redundancy >= 1 and --tasks >= 1")
    from repp2p.logs import setup_logging

    setup_logging("text", os.environ.get("REPP2P_DEMO_LOG", "ERROR"), "CRITICAL")
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="repp2p-demo-"))
    try:
        trio.run(_main, args, folder)
    finally:
        if not args.dir:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


async def _main(args: argparse.Namespace, folder: Path) -> None:
    from repp2p.cli.devnet import Devnet
    from repp2p.client import Client, TaskError

    cheat_name = f"node-{args.nodes}"
    devnet = Devnet(
        folder / "net",
        args.nodes,
        ["echo", "sentiment"],
        per_node={cheat_name: {"cheat": True}},
    )
    t0 = time.monotonic()
    print(
        f"repp2p demo — SIMULATED TEE (development only, NOT real security)\n"
        f"starting a bootstrap and {args.nodes} node processes; {cheat_name} is rigged "
        "to return wrong results...",
        flush=True,
    )
    try:
        await devnet.start()
        names = {info["peer_id"]: info["name"] for info in devnet.info}
        cheater = next(p for p, n in names.items() if n == cheat_name)
        print(f"network up in {time.monotonic() - t0:.1f} s; joining as a client...", flush=True)
        async with Client.open([devnet.info[0]["addrs"][0]], data_dir=folder / "client") as client:
            eligible = await client.wait_for_nodes("echo", len(devnet.info), 3 * EPOCH_S)
            print(
                f"{eligible} attested nodes eligible after {time.monotonic() - t0:.1f} s\n",
                flush=True,
            )
            stats = _Stats(cheater)
            queue = list(range(args.tasks))

            async def worker() -> None:
                while queue:
                    i = queue.pop(0)
                    engine = "sentiment" if i % 3 == 2 else "echo"
                    data = INPUTS[engine][i % len(INPUTS[engine])]
                    started = time.monotonic()
                    try:
                        with trio.fail_after(40):
                            result = await client.submit(engine, data, redundancy=args.redundancy)
                    except (TaskError, trio.TooSlowError) as exc:
                        stats.failed += 1
                        print(f"  task {i} failed: {exc}", flush=True)
                        continue
                    stats.record(result, time.monotonic() - started, client)
                    if stats.done % 20 == 0:
                        print(stats.progress(args.tasks), flush=True)

            async with trio.open_nursery() as nursery:
                for _ in range(args.concurrency):
                    nursery.start_soon(worker)
            # Let the last tasks settle into the view (_view_lag boundaries), so the proof
            # against the cheater is in it.
            lag = _view_lag(client.views.params)
            epoch = int(client.clock.now()) // EPOCH_S + lag
            await trio.sleep(max(0.0, epoch * EPOCH_S - client.clock.now()) + 1.0)
            print(stats.progress(args.tasks))
            _report(client, names, cheater, stats, epoch, args.redundancy)
        print(f"\ndemo finished in {time.monotonic() - t0:.1f} s")
    finally:
        with trio.CancelScope(shield=True):
            print("stopping every node process...", flush=True)
            await devnet.stop()


def _view_lag(params) -> int:
    """Epochs before a task's outcome counts in views: its records' ``task_record_lag`` on
    a records network; on a digest network its digests' (and dispute proof's)
    ``digest_lag``."""
    if params.reputation_source == "digests":
        return params.digest_lag
    return params.task_record_lag


class _Stats:
    def __init__(self, cheater: str) -> None:
        self.cheater = cheater
        self.done = 0
        self.failed = 0
        self.latencies: list[float] = []
        self.cheater_tasks_by_epoch: dict[int, int] = {}
        self.caught_at: float | None = None
        self.caught_epoch: int | None = None

    def record(self, result, elapsed: float, client) -> None:
        self.done += 1
        self.latencies.append(elapsed * 1000)
        epoch = int(client.clock.now()) // EPOCH_S
        for proof in result.proofs:
            if proof.node == self.cheater:
                self.cheater_tasks_by_epoch[epoch] = self.cheater_tasks_by_epoch.get(epoch, 0) + 1
                if proof.outcome == "wrong" and self.caught_at is None:
                    self.caught_at = time.monotonic()
                    self.caught_epoch = epoch
                    print(
                        f"  >> wrong result from the cheater outvoted {result.agreed}-to-1 "
                        f"(epoch {epoch}); feedback 'wrong' published",
                        flush=True,
                    )

    def progress(self, total: int) -> str:
        return (
            f"  {self.done:>4}/{total} verified, {self.failed} failed | latency p50 "
            f"{_pct(self.latencies, 0.5):.0f} ms p95 {_pct(self.latencies, 0.95):.0f} ms "
            f"p99 {_pct(self.latencies, 0.99):.0f} ms"
        )


def _report(
    client, names: dict[str, str], cheater: str, stats: _Stats, epoch: int, args_k: int
) -> None:
    from repp2p.ledger import MICRO, replay

    params = client.views.params
    view = client.views.view(epoch)
    table = view.reputation
    now = int(client.clock.now())
    if params.reputation_source == "digests":
        # the client holds only its own tasks' records there: settle from the digests
        # (provisional until each epoch's digests are out and folded: docs/ledger.md)
        from repp2p.digest_ledger import HeldProofs, digest_report

        keeper = client.views.keeper
        ledger = digest_report(
            client.store,
            keeper.policy,
            params,
            now=now,
            verdicts=dict(view.evidence.verdicts),
            proofs=HeldProofs.of(keeper),
        )
    else:
        records = client.store.query()
        attested = client.views.verdicts(records, now)
        ledger = replay(
            records,
            attested,
            now=now,
            epoch_s=params.epoch_s,
            params=params.ledger,
            reputation_params=params.reputation,
        )
    print(
        f"\nreputation in the client's view of epoch {epoch} (any peer computes the same "
        f"from the same {params.reputation_source}):"
    )
    print(
        f"  {'node':<10} {'peer id':<16} {'rep':>5} {'uptime':>6} {'success':>7} "
        f"{'offender':>8} {'penalised':>9} {'REP (pending)':>14}"
    )
    for peer in sorted(names, key=lambda p: names[p]):
        try:
            rep = table.get(peer)
        except KeyError:
            continue
        rep_text = f"{ledger.pending.balance(peer) / MICRO:,.3f}"
        print(
            f"  {names[peer]:<10} {peer[:14] + '..':<16} {rep.permille:>5} "
            f"{rep.uptime:>6.2f} {rep.success:>7.2f} {'YES' if rep.is_offender else '-':>8} "
            f"{'YES' if view.penalties.is_penalised(peer, epoch) else '-':>9} {rep_text:>14}"
        )
    print(
        f"  REP emitted {ledger.pending.emitted / MICRO:,.3f}, slashed "
        f"{ledger.pending.slashed / MICRO:,.3f}, burned {ledger.pending.burned / MICRO:,.3f}"
    )
    print(
        f"\nlatency over {len(stats.latencies)} verified tasks (k={args_k}): "
        f"p50 {_pct(stats.latencies, 0.5):.0f} ms, p95 {_pct(stats.latencies, 0.95):.0f} ms, "
        f"p99 {_pct(stats.latencies, 0.99):.0f} ms"
    )
    entry = view.penalties.entry(cheater)
    if stats.caught_epoch is None:
        print(f"\nthe cheater ({names[cheater]}) was never chosen among the redundant nodes")
        return
    later = sum(
        n
        for e, n in stats.cheater_tasks_by_epoch.items()
        if e > stats.caught_epoch + _view_lag(params)
    )
    if view.penalties.is_penalised(cheater, epoch):
        until = "forever" if entry.until_epoch >= 2**40 else f"epoch {entry.until_epoch}"
        outcome = f"phased out: yes (penalised until {until})"
    else:
        # a digest network counts a proven wrong result as lost disputes, not as an
        # offence: the node ranks last, and is phased out only once it has stayed below
        # phase_out_permille for phase_out_epochs views (docs/core.md)
        rp = params.reputation
        try:
            rep = view.reputation.get(cheater)
            now_at = f"reputation {rep.permille}, success {rep.success:.2f}; "
        except KeyError:  # not in this view's table (no ad or heartbeat counted yet)
            now_at = ""
        outcome = (
            f"phased out: not yet ({now_at}phased out after {rp.phase_out_epochs} views "
            f"below {rp.phase_out_permille})"
        )
    print(
        f"\ncheater {names[cheater]}: caught in epoch {stats.caught_epoch}; {outcome}; "
        f"tasks given to it once the proof counted in views: {later}"
    )
    if entry.evidence:
        print(
            f"  evidence kept: {entry.evidence[0].kind} with "
            f"{len(entry.evidence[0].record_ids)} records"
        )
