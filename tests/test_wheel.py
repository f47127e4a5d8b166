"""The built wheel works anywhere: installed in a fresh venv outside the checkout, its
``repp2p`` command runs a 2-node devnet and a submit there.

The wheel is built from a copy of the package's sources with ``python -m build
--no-isolation`` (the build backend comes from the dev extra, so no index is needed). The
fresh venv gets the wheel itself (``--no-deps``) and reaches the third-party dependencies of
the running environment through a ``.pth`` file: what is tested is the wheel's own content
(package data: network files, policies, engine manifests; entry points), not the index.
Every command runs with the venv's interpreter in a folder outside the checkout and without
``PYTHONPATH``, and the test checks that ``repp2p`` is imported from the venv.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import site
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "repp2p", "engines", "bootstrap")
STEP_TIMEOUT_S = 120


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = STEP_TIMEOUT_S):
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if importlib.util.find_spec("build") is None:
        pytest.skip("the 'build' package is missing (pip install -e '.[dev]')")
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            # symlinks=True: repp2p/bootstrap is a link in the checkout; the build follows it.
            shutil.copytree(
                path,
                src / name,
                symlinks=True,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            )
        else:
            shutil.copy2(path, src / name)
    out = tmp_path_factory.mktemp("dist")
    cmd = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)]
    _run(cmd, src, dict(os.environ))
    wheels = list(out.glob("repp2p-*.whl"))
    assert len(wheels) == 1 and list(out.glob("repp2p-*.tar.gz")), sorted(out.iterdir())
    return wheels[0]


def test_the_wheel_holds_the_files_read_at_run_time(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in sorted((ROOT / "bootstrap").glob("*.toml")):
        assert f"repp2p/bootstrap/{shipped.name}" in names
    for page in sorted((ROOT / "repp2p").glob("*/*.html")):  # the explorer's page
        assert page.relative_to(ROOT).as_posix() in names
    for manifest in sorted((ROOT / "engines").glob("*/manifest.toml")):
        assert f"engines/{manifest.parent.name}/manifest.toml" in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "repp2p = repp2p.cli:main" in text and "[repp2p.engines]" in text


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
    _run([*pip, "--no-deps", "--no-index", str(wheel)], folder, env)
    # The dependencies: the running environment's, after the venv's own site-packages (so
    # the wheel's repp2p wins over any editable install there; .pth lines only add paths).
    purelib = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        folder,
        env,
    ).stdout.strip()
    (Path(purelib) / "_deps_of_the_test_env.pth").write_text(
        "\n".join(site.getsitepackages()) + "\n"
    )
    return folder, env


def test_the_installed_command_runs_outside_the_checkout(venv, tmp_path):
    folder, env = venv
    python = str(folder / "bin" / "python")
    where = _run([python, "-c", "import repp2p; print(repp2p.__file__)"], tmp_path, env)
    assert where.stdout.strip().startswith(str(folder)), where.stdout
    command = str(folder / "bin" / "repp2p")
    for argv in ([], ["devnet"], ["demo"], ["submit"], ["gateway"]):
        assert "usage: repp2p" in _run([command, *argv, "--help"], tmp_path, env).stdout
    # The network file and its policy come from the wheel.
    code = "from repp2p.network_params import NetworkParams as P; print(P.load('dev').epoch_s)"
    assert _run([python, "-c", code], tmp_path, env).stdout.strip() == "10"


def test_a_devnet_and_a_submit_from_the_installed_wheel(venv, tmp_path):
    folder, env = venv
    command = str(folder / "bin" / "repp2p")
    devnet = subprocess.Popen(
        [command, "devnet", "--nodes", "2", "--json", "--duration", "240"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        for line in devnet.stdout:  # the devnet exits (closing stdout) if it cannot start
            lines.append(json.loads(line))
            if lines[-1].get("ready"):
                break
        assert lines and lines[-1].get("ready"), devnet.stderr.read() if devnet.poll() else lines
        boot = next(info for info in lines if info.get("role") == "bootstrap")
        submit = [command, "submit", "--engine", "echo", "--input", "hello from a wheel"]
        submit += ["--bootstrap", boot["addrs"][0], "--json", "--data-dir", str(tmp_path / "c")]
        # Nodes enter views an epoch or two after they start: submit waits for them (two
        # epochs) and may find none the first time.
        for attempt in range(3):
            done = subprocess.run(
                submit, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
            )
            if done.returncode == 0 or "no eligible node" not in done.stderr or attempt == 2:
                break
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["output"] == "hello from a wheel"
        assert result["proof"]["simulated"] and result["proof"]["outcome"] == "ok"
        assert result["proof"]["node"] in {info.get("peer_id") for info in lines}
        if importlib.util.find_spec("hypercorn") and importlib.util.find_spec("starlette"):
            _gateway_task(command, boot["addrs"][0], tmp_path, env)
    finally:
        devnet.terminate()
        try:
            devnet.wait(timeout=60)
        except subprocess.TimeoutExpired:
            devnet.kill()
            devnet.wait()


def _gateway_task(command: str, bootstrap: str, cwd: Path, env: dict[str, str]) -> None:
    """``repp2p gateway`` from the wheel serves a task over HTTP."""
    cmd = [command, "gateway", "--listen", "127.0.0.1:0", "--bootstrap", bootstrap]
    cmd += ["--ready-json", "--data-dir", str(cwd / "gateway")]
    gateway = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = gateway.stdout.readline()
        assert line, gateway.stderr.read() if gateway.poll() is not None else "no ready line"
        url = json.loads(line)["urls"][0]
        # Ready means an engine is served; /v1/models says which.
        with urllib.request.urlopen(f"{url}/v1/models", timeout=30) as response:
            models = json.loads(response.read())["data"]
        assert "echo" in {m["id"] for m in models}, models
        with urllib.request.urlopen(f"{url}/explorer", timeout=30) as response:
            assert b"<html" in response.read().lower()  # the page, from the wheel's data
        request = urllib.request.Request(
            f"{url}/v1/tasks",
            data=json.dumps({"engine": "echo", "input": "via the gateway"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.loads(response.read())
            header = json.loads(response.headers["x-repp2p-verification"])
        assert body["output"] == "via the gateway"
        assert header[0]["receipt_id"] == body["repp2p_verification"][0]["receipt_id"]
    finally:
        gateway.terminate()
        try:
            gateway.wait(timeout=60)
        except subprocess.TimeoutExpired:
            gateway.kill()
            gateway.wait()
