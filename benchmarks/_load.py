"""Keep the other cores busy while a benchmark runs, the way a student's laptop is never idle.

``machine_load(state)`` is a context manager that starts the load in child processes, waits for them
to be running, and stops them on exit (also on errors):

* ``"idle"``: nothing;
* ``"spin"``: a pure-Python busy loop per loaded core (a browser tab, another kernel spinning);
* ``"numeric"``: a numerical job per loaded core: float64 matrix products on one BLAS thread, which
  compete for the memory bandwidth and caches as well as for the core (another notebook training).

``cores`` is how many cores to load: by default all but one (1 of 2 on the course's machines).
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

STATES = ("idle", "spin", "numeric")

_SPIN = "while True:\n    pass\n"
_NUMERIC = (
    "import numpy as np\n"
    "rng = np.random.default_rng(0)\n"
    "a = rng.standard_normal((600, 600)); b = rng.standard_normal((600, 600))\n"
    "print('ready', flush=True)\n"
    "while True:\n"
    "    a = (a @ b) * (1.0 / 600 ** 0.5)\n"
)


@contextlib.contextmanager
def machine_load(state: str, cores: int | None = None):
    if state not in STATES:
        raise ValueError(f"state must be one of {STATES}; got {state!r}.")
    if state == "idle":
        yield []
        return
    n = max(1, (os.cpu_count() or 2) - 1) if cores is None else cores
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    code = _SPIN if state == "spin" else _NUMERIC
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True) for _ in range(n)]
    try:
        if state == "numeric":
            for p in procs:
                p.stdout.readline()  # numpy imported and running
        time.sleep(1.0)  # let the scheduler see them as busy
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
