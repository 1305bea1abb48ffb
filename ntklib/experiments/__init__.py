r"""Claim-measuring experiments: the sweeps behind the course's depth notebooks and ``benchmarks/depth_claims.py``.

Each function here measures one published claim about deep networks and returns a dict of
tensors for plotting; ``docs/depth.md`` quotes the figures, next to the claims. They are built on
the library (:mod:`ntklib.deep_limit`, :mod:`ntklib.shortcut`, :mod:`ntklib.monte_carlo`,
:mod:`ntklib.training`, :mod:`ntklib.regression`) and the library never imports them.

* :mod:`ntklib.experiments.deep_limit` -- infinitely deep fully connected networks (notebook 04):
  the Gram matrix and the regression map against depth, what depth does to a fit, and the
  seed-to-seed spread of the empirical NTK of deep narrow networks.
* :mod:`ntklib.experiments.depth_induced` -- shortcut networks read out every :math:`\hbar` layers
  (notebook 05): concentration of NTK(d) at fixed width, normality of the output, the spectral
  bounds, training invariance and kernel regression with NTK(d).
"""
from . import deep_limit, depth_induced

__all__ = ["deep_limit", "depth_induced"]
