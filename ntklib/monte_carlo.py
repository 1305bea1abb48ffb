r"""Monte Carlo estimates of the infinite-width kernels from finite networks.

For ``n_samples`` networks ``arch.module(in_dim, seed=seed + s)``:

.. math::
    \hat\Sigma(x, x') = \frac{1}{S}\sum_{s=1}^{S} \frac1k \sum_{a=1}^k f^{(s)}_a(x) f^{(s)}_a(x'),
    \qquad
    \hat\Theta(x, x') = \frac{1}{S}\sum_{s=1}^{S} \frac1k\sum_{a=1}^k \hat\Theta^{(s)}_{aa}(x, x'),

with standard errors :math:`\mathrm{sd}_s/\sqrt S` entrywise. As the widths grow,
:math:`\hat\Sigma \to` ``arch.kernel(...).nngp`` and :math:`\hat\Theta \to` ``.ntk``; the
finite-width bias of the NTK mean is :math:`O(1/n)` and its seed-to-seed spread
:math:`O(1/\sqrt n)`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .validation import as_inputs, check_choice, check_positive_int
from ._progress import progress_bar
from .empirical import empirical_nngp, empirical_ntk

__all__ = ["MonteCarloKernel", "monte_carlo_kernel"]


@dataclass(frozen=True)
class MonteCarloKernel:
    """Means and standard errors over seeds; ``nngp_samples``/``ntk_samples`` kept if asked."""
    nngp: torch.Tensor
    ntk: torch.Tensor | None
    nngp_sem: torch.Tensor
    ntk_sem: torch.Tensor | None
    n_samples: int
    nngp_samples: torch.Tensor | None = None
    ntk_samples: torch.Tensor | None = None


def monte_carlo_kernel(arch, x1, x2=None, *, n_samples: int = 64, seed: int = 0,
                       get=("nngp", "ntk"), dtype: torch.dtype = torch.float64,
                       device=None, implementation: str = "auto", keep_samples: bool = False,
                       progress: bool | None = None) -> MonteCarloKernel:
    """Average the empirical NNGP and NTK of ``n_samples`` finite networks built from ``arch``.

    Args:
      arch: an ntklib layer (e.g. ``serial(Dense(512), Relu(), Dense(1))``): the widths of its
        Dense layers are the finite widths.
      x1, x2: (n1, d), (n2, d) inputs; ``x2=None`` means x1.
      n_samples: number of independent initializations (seeds ``seed .. seed + n_samples - 1``).
      get: which kernels to estimate.
      dtype, device: of the finite networks (float64 by default, so rounding is far below the
        Monte Carlo error); the inputs are moved there.
      keep_samples: also return the per-seed kernels, shape (n_samples, n1, n2).
      progress: show a progress bar (default: in notebooks and terminals, not in CI/nbgrader).
    """
    n_samples = check_positive_int("n_samples", n_samples)
    get = (get,) if isinstance(get, str) else tuple(get)
    for g in get:
        check_choice("get", g, ("nngp", "ntk"))
    x1, x2 = as_inputs(x1, x2, dtype=dtype, spatial=True)  # (n, d) or channel-first (n, C, L) / (n, C, H, W)
    if device is not None:
        x1 = x1.to(device)
        x2 = None if x2 is None else x2.to(device)
    device = x1.device
    in_dim = x1.shape[1] if x1.ndim == 2 else tuple(x1.shape[1:])
    nngps, ntks = [], []
    for s in progress_bar(range(n_samples), total=n_samples, desc="Monte Carlo", progress=progress):
        net = arch.module(in_dim, seed=seed + s, dtype=dtype, device=device)
        if "nngp" in get:
            nngps.append(empirical_nngp(net, x1, x2))
        if "ntk" in get:
            ntks.append(empirical_ntk(net, x1, x2, mode="trace", implementation=implementation))

    def stats(samples):
        if not samples:
            return None, None, None
        st = torch.stack(samples)  # (S, n1, n2)
        sem = st.std(0, unbiased=True) / n_samples ** 0.5 if n_samples > 1 else torch.full_like(st[0], float("inf"))
        return st.mean(0), sem, st

    nngp, nngp_sem, nngp_all = stats(nngps)
    ntk, ntk_sem, ntk_all = stats(ntks)
    return MonteCarloKernel(nngp=nngp, ntk=ntk, nngp_sem=nngp_sem, ntk_sem=ntk_sem, n_samples=n_samples,
                            nngp_samples=nngp_all if keep_samples else None,
                            ntk_samples=ntk_all if keep_samples else None)
