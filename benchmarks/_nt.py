"""Import neural-tangents (the reference library) when it is installed, else return None.

neural-tangents 0.6.5 imports its TensorFlow-interop subpackage ``neural_tangents.experimental``
at import time, and that pulls in TensorFlow (about 0.5 GB), which nothing here uses: ``stax``,
``empirical_ntk_fn`` and the kernel code need only jax. When TensorFlow is missing we register
an empty ``neural_tangents.experimental`` module before importing, so the rest loads unchanged.
With TensorFlow installed the real subpackage is used. See benchmarks/README.md for the venv.
"""
from __future__ import annotations

import importlib.util
import sys
import types


def import_neural_tangents(x64: bool = True):
    """Return ``(nt, stax, jax, jnp)`` or None when neural-tangents/jax are not importable."""
    if importlib.util.find_spec("neural_tangents") is None or importlib.util.find_spec("jax") is None:
        return None
    if importlib.util.find_spec("tensorflow") is None and "neural_tangents.experimental" not in sys.modules:
        sys.modules["neural_tangents.experimental"] = types.ModuleType("neural_tangents.experimental")
    try:
        import jax
        if x64:
            jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        import neural_tangents as nt
        from neural_tangents import stax
    except Exception as err:  # an incompatible jax, for instance
        print(f"[neural-tangents not usable here: {type(err).__name__}: {err}]")
        return None
    return nt, stax, jax, jnp


def versions() -> dict:
    """Versions of the reference stack (empty when it is not importable)."""
    mods = import_neural_tangents()
    if mods is None:
        return {}
    nt, _, jax, _ = mods
    import jaxlib
    import numpy
    import scipy
    return {"neural_tangents": nt.__version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "numpy": numpy.__version__, "scipy": scipy.__version__, "python": sys.version.split()[0]}
