"""One target under atheris (libFuzzer): ``python -m fuzz.atheris_main TARGET [libFuzzer flags]``.

Every module of ``repp2p`` and ``engines`` (and cbor2) is imported under
``atheris.instrument_imports``, so our parsers carry coverage feedback while the libraries
under them (trio, libp2p, numpy) stay uninstrumented and start fast. Inputs the
target rejects with its documented errors are fine; any other exception is a crash that
libFuzzer reports and saves.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import atheris

_INSTRUMENTED = ("repp2p", "engines", "cbor2", "fuzz")


def _import_instrumented() -> None:
    with atheris.instrument_imports(include=list(_INSTRUMENTED)):
        for package in ("repp2p", "engines"):
            root = importlib.import_module(package)
            for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
                if ".cli" in info.name or info.name.endswith("__main__"):
                    continue  # command-line entry points: nothing a target reaches
                importlib.import_module(info.name)
        importlib.import_module("fuzz.targets")


def main() -> None:
    _import_instrumented()
    from fuzz.targets import targets

    name = sys.argv[1]
    target = targets()[name]
    for data in target.seeds():  # warm up: import everything the target touches
        try:
            target.run(data)
        except target.expected:
            pass

    def one_input(data: bytes) -> None:
        try:
            target.run(data)
        except target.expected:
            pass

    atheris.Setup([sys.argv[0], *sys.argv[2:]], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
