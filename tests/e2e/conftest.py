"""Shared helpers for end-to-end task tests (real hosts on 127.0.0.1, real enclaves)."""

from __future__ import annotations

import shutil
from pathlib import Path

import trio

from repp2p.config import BOOTSTRAP_DIR
from repp2p.network_params import NetworkParams


async def wait_until(predicate, timeout: float, interval: float = 0.1) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(interval)


def records_network_file(folder: Path) -> Path:
    """A copy of the dev network's file (and its policy) in ``folder`` whose views read every
    task's records (``reputation_source = "records"``; the shipped file's default is
    digests), for a devnet's ``network_file``."""
    folder.mkdir(parents=True)
    text = (BOOTSTRAP_DIR / "dev.toml").read_text()
    marker = '# reputation_source = "digests"'
    assert marker in text
    (folder / "dev.toml").write_text(text.replace(marker, 'reputation_source = "records"'))
    shutil.copy(BOOTSTRAP_DIR / "policy-dev.toml", folder / "policy-dev.toml")
    assert NetworkParams.load("dev", folder / "dev.toml").reputation_source == "records"
    return folder / "dev.toml"
