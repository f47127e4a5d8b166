"""`make demo` (the main job) runs end to end: a small local network, tasks verified, the
rigged node caught, and the simulated TEE labelled as such.

A regression test: a changed ``Client.open`` signature once broke the demo while every
other test passed.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_the_demo_runs_a_small_network_end_to_end(tmp_path):
    cmd = [sys.executable, "-m", "repp2p", "demo", "--nodes", "4", "--tasks", "12"]
    cmd += ["--dir", str(tmp_path / "demo")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "SIMULATED TEE (development only, NOT real security)" in out
    assert "12/12 verified, 0 failed" in out, out[-3000:]
    assert "cheater node-4: caught in epoch" in out, out[-3000:]
