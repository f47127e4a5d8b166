"""`repp2p devnet` and `repp2p status` as a user runs them: real processes on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import trio

from repp2p.cli.node import render_status
from repp2p.net.status_http import fetch

pytestmark = pytest.mark.slow


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _node_pids(folder) -> list[int]:
    pids = []
    for runtime in folder.glob("*/runtime.json"):
        pids.append(json.loads(runtime.read_text())["pid"])
    return pids


def test_devnet_json_ready_lines_status_and_clean_stop(tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "repp2p",
            "devnet",
            "--nodes",
            "3",
            "--json",
            "--duration",
            "60",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "devnet exited before it was ready"
            lines.append(json.loads(line))
            if lines[-1] == {"ready": True}:
                break
        nodes = lines[:-1]
        assert len(nodes) == 4 and nodes[0]["role"] == "bootstrap"
        for node in nodes:
            assert node["peer_id"].startswith("12D3KooW")
            assert all(a.endswith("/p2p/" + node["peer_id"]) for a in node["addrs"])
        pids = _node_pids(tmp_path)
        assert len(pids) == 4 and all(_alive(p) for p in pids)

        # `repp2p status` against a running node; wait for it to be synced and connected.
        host, _, port = nodes[1]["status"].rpartition(":")
        status = {}
        for _ in range(100):
            status = json.loads(trio.run(fetch, host, int(port), "/status"))
            if status["synced"] and status["peers"] >= 3:
                break
            time.sleep(0.2)
        assert status["peer_id"] == nodes[1]["peer_id"] and status["peers"] >= 3
        shown = subprocess.run(
            [sys.executable, "-m", "repp2p", "status", "--data-dir", str(tmp_path / "node-1")],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert shown.returncode == 0, shown.stderr
        assert nodes[1]["peer_id"] in shown.stdout and "SIMULATED TEE" in shown.stdout
        metrics = trio.run(fetch, host, int(port), "/metrics").decode()
        assert "repp2p_peers" in metrics and "repp2p_records_accepted_total" in metrics

        proc.send_signal(signal.SIGINT)  # what Ctrl-C does
        assert proc.wait(timeout=30) == 0
        assert json.loads(proc.stdout.readline()) == {"stopped": True}
        for pid in pids:
            for _ in range(50):
                if not _alive(pid):
                    break
                time.sleep(0.1)
            assert not _alive(pid), f"node process {pid} left running"
        assert _node_pids(tmp_path) == []  # every node removed its runtime.json on exit
    finally:
        if proc.poll() is None:
            proc.kill()


def test_status_without_a_running_node_is_a_clear_error(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "repp2p", "status", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 1
    assert "no running node" in out.stderr and "Traceback" not in out.stderr


def test_render_status_labels_the_simulated_tee():
    status = {
        "peer_id": "12D3KooWX",
        "network": "dev",
        "tee_kind": "simulated",
        "simulated_tee": True,
        "addrs": ["/ip4/127.0.0.1/tcp/1/p2p/12D3KooWX"],
        "peers": 2,
        "routing_table": 2,
        "records": {"NodeAd": 3, "Heartbeat": 0},
        "records_total": 3,
        "rejected": {"bad_signature": 2.0},
        "equivocations": 0,
        "synced": True,
        "uptime_s": 4.0,
    }
    text = render_status(status)
    assert "SIMULATED TEE" in text and "NodeAd 3" in text and "bad_signature 2" in text
    assert "DEGRADED" not in text


def test_render_status_shows_why_a_node_is_degraded():
    status = {
        "peer_id": "12D3KooWX",
        "network": "dev",
        "tee_kind": "simulated",
        "addrs": [],
        "peers": 0,
        "routing_table": 0,
        "records": {},
        "records_total": 0,
        "rejected": {},
        "equivocations": 0,
        "synced": True,
        "uptime_s": 4.0,
        "health": {"ok": False, "problems": ["record store cannot write (disk full)"]},
    }
    assert "DEGRADED  record store cannot write (disk full)" in render_status(status)
