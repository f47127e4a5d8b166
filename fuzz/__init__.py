"""The fuzzing campaign: targets for every hostile-input parser, two engines, one runner.

``make fuzz`` runs it (coverage-guided with atheris when installed, else the built-in
mutator); ``python -m fuzz.run --help`` for the options; docs/security.md for what it covers.
"""
