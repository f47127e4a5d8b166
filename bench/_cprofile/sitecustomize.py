"""CPU profiles of a bench devnet's processes (bench/tasks.py ``--cprofile``).

Not a module to import: bench/tasks.py puts this folder first on ``PYTHONPATH`` for the
processes it starts when ``REPP2P_CPROFILE_DIR`` is set, so every Python process of the
devnet (nodes, enclave processes) loads it at start-up. SIGUSR1 starts a
``cProfile.Profile(time.process_time)`` on the main thread (CPU time, not wall: waiting
costs nothing), SIGUSR2 stops it and writes ``DIR/<pid>.prof``. Deterministic profiling
inflates many small Python calls; read the figures as proportions.
"""

import os

if os.environ.get("REPP2P_CPROFILE_DIR"):
    import cProfile
    import signal
    import time

    _profile = cProfile.Profile(time.process_time)

    def _start(signum, frame):
        _profile.enable()

    def _stop(signum, frame):
        _profile.disable()
        _profile.dump_stats(os.path.join(os.environ["REPP2P_CPROFILE_DIR"], f"{os.getpid()}.prof"))

    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
