"""The ``echo`` engine: output = input. For tests and benchmarks."""

from engines.echo.engine import EchoEngine

__all__ = ["EchoEngine"]
