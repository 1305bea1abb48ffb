"""The course notebooks' common first step: one setup call, one smoke flag.

Every notebook's first code cell runs ``SMOKE = setup()``:

* computations default to float64 (Gram matrices and their Cholesky factors are badly
  conditioned, and the notebooks compare closed forms with simulations to ~1e-10);
* torch uses one thread (the notebooks' tensors are small: one thread is as fast as two and
  never waits for a busy second core on a 2-core laptop or a Binder pod);
* torch's global generator is seeded, so a notebook gives the same figures on every run;
* the returned flag is True when the notebook runs unattended (CI, nbgrader, or ``NTK_SMOKE=1``):
  the slow demos then run at smaller sizes. Exercises and their tests are the same either way.
"""
from __future__ import annotations

import os

import torch

__all__ = ["SMOKE_VARIABLES", "smoke_mode", "setup"]

#: Environment variables that switch the notebooks to smoke sizes (and ntklib's progress bars off):
#: ``CI`` (continuous integration), ``NBGRADER_EXECUTION`` (set by nbgrader while it validates or
#: grades) and ``NTK_SMOKE`` (set it yourself for a quick run).
SMOKE_VARIABLES = ("CI", "NBGRADER_EXECUTION", "NTK_SMOKE")


def smoke_mode() -> bool:
    """True when any of :data:`SMOKE_VARIABLES` is set to a non-empty value."""
    return any(os.environ.get(name) for name in SMOKE_VARIABLES)


def setup(*, dtype: torch.dtype = torch.float64, threads: int = 1, seed: int = 0) -> bool:
    """Set torch's default ``dtype``, its number of ``threads`` and its global ``seed``; return :func:`smoke_mode`."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype such as torch.float64; got {dtype!r}.")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer; got {threads!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an integer; got {seed!r}.")
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    return smoke_mode()
