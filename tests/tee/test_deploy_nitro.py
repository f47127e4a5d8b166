"""The Nitro enclave recipe (deploy/nitro) agrees with the code it packages.

The recipe itself needs nitro-cli and Nitro hardware (not tested here: see its README);
what can be checked here is that its pieces agree: the port, the entry point, and that
the requirements cover every third-party module the enclave process imports.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NITRO = ROOT / "deploy" / "nitro"


def test_port_and_entry_point_agree() -> None:
    dockerfile = (NITRO / "Dockerfile").read_text()
    cmd = re.search(r'^CMD \["python", "-m", "repp2p\.tee\.worker", "--vsock", "(\d+)"\]$',
                    dockerfile, re.M)  # fmt: skip
    assert cmd is not None
    port = cmd[1]
    assert f"EXPOSE {port}" in dockerfile
    readme = (NITRO / "README.md").read_text()
    assert f'tee_enclave = "vsock:16:{port}"' in readme and f"--vsock {port}" in readme
    assert subprocess.run(["bash", "-n", str(NITRO / "build.sh")], check=False).returncode == 0


def test_requirements_cover_what_the_enclave_process_imports() -> None:
    code = (
        "import json, sys, repp2p.tee.worker\n"
        "from engines.registry import load_engines\n"
        "load_engines(['echo', 'sentiment'])\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    imported = set(json.loads(out.stdout.strip().splitlines()[-1]))
    pinned = {
        line.split("==")[0].strip().lower()
        for line in (NITRO / "requirements-enclave.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    module_of = {"pynacl": "nacl", "vadersentiment": "vaderSentiment"}
    provided = {module_of.get(name, name) for name in pinned}
    third_party = {"nacl", "cryptography", "cbor2", "numpy", "vaderSentiment", "libp2p", "trio",
                   "multiaddr", "prometheus_client", "requests"}  # fmt: skip
    needed = imported & third_party
    assert needed <= provided, f"the enclave imports {sorted(needed - provided)} unpinned"
    assert not needed & {"libp2p", "trio"}  # the networking stack stays on the parent
