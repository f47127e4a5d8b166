"""What an enclave's attestation measures: its runtime code and the engines it serves.

On real TEE hardware the measurement is computed by the platform over the enclave image.
The simulated enclave reports this software-computed value instead (anyone can make it
report any value: see docs/engines.md)::

    runtime     = measure("repp2p-tee-runtime", repp2p.__version__, files)
                  files: every *.py of repp2p/tee, repp2p/records and engines/ (top level),
                  named by their path under the install root, e.g. "repp2p/tee/worker.py"
    enclave     = SHA-256( "repp2p/enclave-measurement/v1\\0" || runtime
                           || u32(count) || for each engine, sorted by id:
                                  lp(engine id) || engine measurement )

with ``measure`` and ``lp`` as defined in :mod:`engines.manifest`. A policy pins the enclave
value per engine; a node's ``NodeAd`` lists the per-engine measurements that ``Receipt``
records carry, from which a verifier recomputes the enclave value with
:func:`enclave_measurement`.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from pathlib import Path

import repp2p
from engines.manifest import file_sha256, measure

ENCLAVE_DOMAIN = b"repp2p/enclave-measurement/v1\0"
RUNTIME_ID = "repp2p-tee-runtime"
_ROOT = Path(repp2p.__file__).resolve().parent.parent
RUNTIME_DIRS = ("repp2p/tee", "repp2p/records", "engines")


def runtime_files() -> tuple[tuple[str, Path], ...]:
    """``(name, path)`` of every runtime file, sorted by name."""
    found = []
    for folder in RUNTIME_DIRS:
        for path in sorted((_ROOT / folder).glob("*.py")):
            found.append((path.relative_to(_ROOT).as_posix(), path))
    return tuple(sorted(found))


@functools.cache
def runtime_measurement() -> bytes:
    """The measurement of the enclave runtime code as installed (computed once)."""
    digests = [(name, file_sha256(path)) for name, path in runtime_files()]
    return measure(RUNTIME_ID, repp2p.__version__, digests)


def enclave_measurement(
    engine_measurements: Mapping[str, bytes], runtime: bytes | None = None
) -> bytes:
    """The measurement an enclave serving these engines attests (32 bytes).

    Args:
        engine_measurements: engine id -> engine measurement (as in ``NodeAd.engines``).
        runtime: the runtime measurement; default: this installation's.
    """
    runtime = runtime_measurement() if runtime is None else runtime
    hasher = hashlib.sha256(ENCLAVE_DOMAIN + runtime)
    hasher.update(len(engine_measurements).to_bytes(4, "big"))
    for engine_id in sorted(engine_measurements):
        name = engine_id.encode("utf-8")
        hasher.update(len(name).to_bytes(4, "big") + name + engine_measurements[engine_id])
    return hasher.digest()
