"""Test tooling shipped with the package: record factories and hypothesis strategies.

Importing :mod:`repp2p.testing.strategies` needs ``hypothesis`` (the ``dev`` extra).
"""
