"""``echo``: returns its input. The smallest engine that passes the conformance suite."""

from __future__ import annotations

from pathlib import Path

from engines.abc import EngineAPI


class EchoEngine(EngineAPI):
    """Output = input, bit for bit. Accepts any bytes up to the manifest's limit."""

    MANIFEST_PATH = Path(__file__).with_name("manifest.toml")
    EXAMPLES = (b"", b"hello", bytes(range(256)))

    def run(self, data: bytes) -> bytes:
        return bytes(data)
