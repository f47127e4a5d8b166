"""Logging set-up: text or JSON lines, and py-libp2p's own chatter tamed.

``import libp2p`` resets the ``libp2p`` logger and its DHT logs hundreds of warnings per
run, so this must run *after* libp2p is imported (the node and CLI call it at start-up).
"""

from __future__ import annotations

import json
import logging
import sys
import time


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg (+ exc when there is one)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(fmt: str = "text", level: str = "INFO", libp2p_level: str = "ERROR") -> None:
    """Configure the root logger once for a process (idempotent)."""
    import libp2p  # noqa: F401  (its import resets its logger: import first, then configure)

    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    noisy = ("libp2p", "multiaddr", "async_service", "trio-websocket")
    for name in noisy:
        logging.getLogger(name).setLevel(libp2p_level)
    # py-libp2p modules set levels and handlers on their own loggers; make them inherit.
    for name, lib in list(logging.root.manager.loggerDict.items()):
        if isinstance(lib, logging.Logger) and name.split(".")[0] in noisy and "." in name:
            lib.handlers[:] = []
            lib.propagate = True
            lib.setLevel(logging.NOTSET)
