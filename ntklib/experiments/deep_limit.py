r"""Measurements of the deep limit of fully connected networks (notebook 04; docs/depth.md, part A).

The mathematics is in :mod:`ntklib.deep_limit`; this module measures claims with it:

* :func:`deep_limit_sweep` -- the claim that :math:`\det\kappa(X, X) \to 0` with depth while the
  regression map :math:`\kappa(x, X)\kappa(X, X)^{-1}` stays bounded, and which predictor the deep
  limit reaches;
* :func:`regression_vs_depth` -- what depth does to a fit: the test error against depth for the NNGP
  and the NTK from one pass of the recursion;
* :func:`plain_fluctuation_vs_depth`, :func:`ntk_spread_vs_width_and_depth` -- the claim that the NTK is deterministic only when the
  width dominates the depth: the seed-to-seed spread of the empirical NTK of a narrow plain
  network grows with depth/width (Hanin & Nica 2020);
* :func:`plain_network`, :func:`relative_fluctuation` -- the comparison network and the spread
  measure, shared with :mod:`ntklib.experiments.depth_induced`.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from ..validation import as_inputs, check_positive_int
from .._progress import progress_bar
from ..activations import Activation, Relu
from ..data import sphere_points
from ..deep_limit import normalized_kernels, regression_map
from ..layers import Dense, Layer, serial
from ..linalg import add_diagonal_regularizer
from ..monte_carlo import monte_carlo_kernel
from ..spectral import condition_number

__all__ = ["plain_network", "relative_fluctuation", "plain_fluctuation_vs_depth", "ntk_spread_vs_width_and_depth",
           "deep_limit_sweep", "regression_vs_depth"]


def _column(values) -> torch.Tensor:
    """A list of results as a tensor: int64 for integers (K, depths), float64 otherwise (never the default dtype)."""
    ints = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values)
    return torch.tensor(values, dtype=torch.int64 if ints else torch.float64)



def plain_network(width: int, depth: int, activation: Activation | None = None, *, W_std: float = math.sqrt(2.0),
                  b_std: float | None = None, readout_std: float = 1.0) -> Layer:
    r"""Plain MLP with ``depth`` hidden layers: ``serial((Dense(width, W_std, b_std), activation) * depth, Dense(1, readout_std, None))``.

    The same as ``Shortcut(width, K=1, hbar=depth, readout_input=False)`` (one readout at the top):
    the comparison network for NTK(d). In :mod:`ntklib.deep_limit`'s counting it has
    :math:`L = \text{depth} + 1` Dense layers.
    """
    activation = Relu() if activation is None else activation
    if not isinstance(activation, Activation):
        raise TypeError(f"activation must be an ntklib activation (Relu(), Erf(), ...); got {activation!r}.")
    depth = check_positive_int("depth", depth)
    layers = []
    for _ in range(depth):
        layers += [Dense(width, W_std=W_std, b_std=b_std), activation]
    layers.append(Dense(1, W_std=readout_std, b_std=None))
    return serial(*layers)


def relative_fluctuation(samples: torch.Tensor, *, n_boot: int = 200, seed: int = 0) -> dict:
    r"""Seed-to-seed fluctuation of a kernel: :math:`F = \|\mathrm{sd}_s K_s\|_F / \|\mathrm{mean}_s K_s\|_F`.

    ``samples`` (S, n1, n2), e.g. ``monte_carlo_kernel(..., keep_samples=True).ntk_samples``.
    Returns ``rel`` (F), ``rel_se`` (bootstrap standard error over seeds, ``n_boot`` resamples),
    ``mean`` (n1, n2), ``sd`` (n1, n2) and, for square samples, ``mean_diag`` (the mean diagonal of the
    seed average) and ``offdiag_corr`` (the mean normalized off-diagonal
    :math:`\bar K_{ij} = K_{ij}/\sqrt{K_{ii}K_{jj}}` of the seed average: 1 means a constant kernel, one that
    has forgotten its inputs).
    """
    if not isinstance(samples, torch.Tensor) or samples.ndim != 3 or samples.shape[0] < 2:
        raise ValueError(f"samples must be a tensor of shape (n_seeds >= 2, n1, n2); got "
                         f"{tuple(getattr(samples, 'shape', ()))}.")

    def F(s):
        return float(s.std(0).norm() / s.mean(0).norm())

    g = torch.Generator().manual_seed(seed)
    S = samples.shape[0]
    boots = [F(samples[torch.randint(0, S, (S,), generator=g)]) for _ in range(n_boot)]
    mean = samples.mean(0)  # (n1, n2)
    out = {"rel": F(samples), "rel_se": float(np.std(boots, ddof=1)), "mean": mean, "sd": samples.std(0)}
    if mean.shape[0] == mean.shape[1]:
        dg = mean.diagonal()
        corr = mean / torch.sqrt(dg[:, None] * dg[None])  # (n, n)
        n = mean.shape[0]
        out["mean_diag"] = float(dg.mean())
        out["offdiag_corr"] = (float((corr.sum() - corr.diagonal().sum()) / (n * (n - 1))) if n > 1
                               else float("nan"))
    return out


def plain_fluctuation_vs_depth(depths: Sequence[int], *, width: int = 20, n_seeds: int = 64, x=None, d: int = 5,
                               n_points: int = 8, seed: int = 0, activation: Activation | None = None,
                               W_std: float = math.sqrt(2.0), b_std: float | None = None,
                               progress: bool | None = None) -> dict:
    r"""Relative NTK fluctuation of a plain narrow MLP (:func:`plain_network`) against its number of hidden layers.

    For each depth: ``n_seeds`` initializations (:func:`ntklib.monte_carlo_kernel`), inputs ``x``
    (default ``n_points`` on the sphere of radius :math:`\sqrt d` in :math:`\mathbb R^d`), and
    :func:`relative_fluctuation`. Returns (len(depths),) tensors ``depth``, ``rel``, ``rel_se``,
    ``mean_diag``, ``offdiag_corr``.

    The infinite-width NTK is deterministic only when the width dominates the depth; at width 20
    the spread grows with depth (0.43 at depth 1 to about 5 at depth 32; Hanin & Nica 2020: it is a
    function of depth/width, log-normal when that ratio is not small).
    """
    x = _points(x, d, n_points)
    rows = {"depth": [], "rel": [], "rel_se": [], "mean_diag": [], "offdiag_corr": []}
    for L in progress_bar(list(depths), desc="depth", progress=progress):
        arch = plain_network(width, L, activation, W_std=W_std, b_std=b_std)
        s = monte_carlo_kernel(arch, x, n_samples=n_seeds, seed=seed, get="ntk", keep_samples=True,
                               progress=False).ntk_samples  # (S, n, n)
        r = relative_fluctuation(s)
        rows["depth"].append(L)
        for key in ("rel", "rel_se", "mean_diag", "offdiag_corr"):
            rows[key].append(r[key])
    return {k: _column(v) for k, v in rows.items()}


def _points(x, d, n_points, seed=12345):
    if x is not None:
        x, _ = as_inputs(x, None, dtype=torch.float64)
        return x
    return sphere_points(n_points, d, radius=math.sqrt(d), seed=seed)


def deep_limit_sweep(x_train, y_train, x_test, y_test, depths: Sequence[int], *, kernel: str = "ntk",
                     activation: Activation | None = None, W_std: float = math.sqrt(2.0),
                     b_std: float | None = None, diag_reg: float = 0.0, labels_test=None,
                     progress: bool | None = None) -> dict:
    r"""What depth does to the Gram matrix and to kernel regression, for one kernel.

    Measures the claim that :math:`\det\kappa(X, X) \to 0` as the depth grows while the regression
    map :math:`\kappa(x, X)\kappa(X, X)^{-1}` stays bounded. For each :math:`L` in ``depths``, with
    :math:`\kappa` the normalized kernel of :func:`ntklib.deep_limit.normalized_kernels`
    (``kernel="ntk"`` or ``"nngp"``; on the sphere the normalization is one scalar and does not change
    the predictor):

    * ``logdet``: :math:`\ln\det\kappa(X, X)`; ``cond``: the condition number of the (regularized)
      Gram matrix;
    * ``map_norm``: :math:`\max_x \sum_i |R_{xi}|` over the test points for the regression map
      :math:`R` (:func:`ntklib.deep_limit.regression_map`), and ``map_sum``: its mean row sum;
    * ``test_mse`` :math:`\frac1{n_t k}\sum (\mu(x) - y)^2` (mean over test points and the k output
      columns) and ``const_mse``, the error of predicting the training mean (the degenerate limit);
      with ``labels_test``, ``accuracy``: the fraction of test points whose largest output is the label;
    * ``offdiag_mean``: the mean off-diagonal entry of :math:`\kappa(X, X)`.

    ``diag_reg`` adds :math:`\text{diag\_reg}\cdot\mathrm{tr}\,\kappa/n` to the diagonal (as in
    :func:`ntklib.regression.kernel_regression`); 0 (default) is the interpolant. A singular Gram
    matrix (e.g. depth 1, a linear kernel of rank d) gets the pseudo-inverse and a warning.
    Only the columns :math:`\kappa(\cdot, X)` are computed: :math:`(n + n_t) \times n` entries per depth.

    Returns a dict of (D,) tensors plus ``depths``. Bias-free ReLU: NNGP det -> 0 polynomially with
    the map staying bounded and tending to the mean predictor; NTK det stays bounded away from 0
    (off-diagonal -> 1/4) and its map tends to :math:`1^\top/(n+3)`.
    """
    if kernel not in ("ntk", "nngp"):
        raise ValueError(f"kernel must be 'ntk' or 'nngp'; got {kernel!r}.")
    return regression_vs_depth(x_train, y_train, x_test, y_test, depths, kernels=(kernel,), activation=activation,
                               W_std=W_std, b_std=b_std, diag_reg=diag_reg, labels_test=labels_test,
                               progress=progress)[kernel]


def regression_vs_depth(x_train, y_train, x_test, y_test, depths: Sequence[int], *,
                        kernels: Sequence[str] = ("nngp", "ntk"), activation: Activation | None = None,
                        W_std: float = math.sqrt(2.0), b_std: float | None = None, diag_reg: float = 0.0,
                        labels_test=None, progress: bool | None = None) -> dict:
    r""":func:`deep_limit_sweep` for several kernels from one pass of the recursion: ``{kernel: results}``.

    What depth does to a fit: on real data the test error is lowest at a moderate depth, then rises
    to that of the constant predictor as the kernel forgets its inputs (docs/depth.md, A.4;
    notebook 04 on scikit-learn's digits).
    """
    kernels = (kernels,) if isinstance(kernels, str) else tuple(kernels)
    for k in kernels:
        if k not in ("ntk", "nngp"):
            raise ValueError(f"kernels must be 'ntk' and/or 'nngp'; got {k!r}.")
    x_train, x_test = as_inputs(x_train, x_test, dtype=torch.float64, names=("x_train", "x_test"))
    y_train = torch.as_tensor(y_train, dtype=torch.float64, device=x_train.device)
    y_test = torch.as_tensor(y_test, dtype=torch.float64, device=x_train.device)
    if y_train.shape[0] != x_train.shape[0] or y_test.shape[0] != x_test.shape[0]:
        raise ValueError("y_train and y_test must have one row per input row.")
    labels = None if labels_test is None else torch.as_tensor(labels_test, device=x_train.device)
    if labels is not None and (labels.shape != (x_test.shape[0],) or y_train.ndim != 2):
        raise ValueError("labels_test must have one label per test row, with y_train of shape (n, classes).")
    x_all = torch.cat([x_train, x_test])  # (n + n_t, d)
    n = x_train.shape[0]
    ks = normalized_kernels(x_all, x_train, depths, activation=activation, W_std=W_std, b_std=b_std,
                            progress=progress)  # (D, n + n_t, n) each
    const_mse = torch.tensor(float(((y_train.mean(0) - y_test) ** 2).mean()), dtype=torch.float64)
    out = {}
    for kernel in kernels:
        keys = ["logdet", "cond", "map_norm", "map_sum", "test_mse", "offdiag_mean"]
        res = {key: [] for key in keys + (["accuracy"] if labels is not None else [])}
        for i in range(len(ks["depths"])):
            K = ks[kernel][i]  # (n + n_t, n)
            ktt, kst = K[:n], K[n:]
            reg_map = regression_map(ktt, kst, diag_reg=diag_reg)  # (n_t, n)
            mean = reg_map @ y_train  # (n_t,) or (n_t, k)
            sign, logdet = torch.linalg.slogdet(ktt)
            res["logdet"].append(float(logdet) if float(sign) > 0 else -math.inf)
            res["cond"].append(condition_number(add_diagonal_regularizer(0.5 * (ktt + ktt.T), diag_reg)))
            res["map_norm"].append(float(reg_map.abs().sum(1).max()))
            res["map_sum"].append(float(reg_map.sum(1).mean()))
            res["test_mse"].append(float(((mean - y_test) ** 2).mean()))
            off = ktt - torch.diag(ktt.diagonal())
            res["offdiag_mean"].append(float(off.sum() / (n * (n - 1))) if n > 1 else float("nan"))
            if labels is not None:
                res["accuracy"].append(float((mean.argmax(1) == labels).double().mean()))
        out[kernel] = {key: torch.tensor(v, dtype=torch.float64) for key, v in res.items()}
        out[kernel]["depths"] = ks["depths"]
        out[kernel]["const_mse"] = const_mse
    return out


def ntk_spread_vs_width_and_depth(widths: Sequence[int], depths: Sequence[int], *, n_seeds: int = 16, x=None,
                                  d: int = 3, n_points: int = 4, seed: int = 0, activation: Activation | None = None,
                                  W_std: float = math.sqrt(2.0), b_std: float | None = None,
                                  progress: bool | None = None) -> dict:
    r"""Seed-to-seed spread of the empirical NTK of plain networks on a grid of widths and depths.

    For each width :math:`n` and number of hidden layers :math:`\ell`: :func:`plain_network` (readout
    ``W_std``), ``n_seeds`` initializations, :func:`relative_fluctuation` of their NTKs on ``x``
    (default ``n_points`` on the sphere of radius :math:`\sqrt d`). Returns ``width`` (W,), ``depth``
    (D,), ``rel`` and ``rel_se`` (W, D), and ``ratio`` (W, D) :math:`= \ell/n`.

    The infinite-width NTK describes a network when :math:`\ell/n` is small: the spread is a
    function of :math:`\beta = \sum_l 1/n_l = \ell/n` (Hanin & Nica 2020, arXiv:1909.05989), growing
    like :math:`\sqrt\beta` for small :math:`\beta` and faster (heavy, log-normal tails) beyond.
    """
    x = _points(x, d, n_points)
    widths, depths = [check_positive_int("widths", w) for w in widths], [check_positive_int("depths", L) for L in depths]
    rel = torch.zeros(len(widths), len(depths), dtype=torch.float64)
    se = torch.zeros_like(rel)
    for i, w in enumerate(progress_bar(widths, desc="width", progress=progress)):
        for j, L in enumerate(depths):
            arch = plain_network(w, L, activation, W_std=W_std, b_std=b_std, readout_std=W_std)
            s = monte_carlo_kernel(arch, x, n_samples=n_seeds, seed=seed, get="ntk", keep_samples=True,
                                   progress=False).ntk_samples  # (S, n, n)
            r = relative_fluctuation(s)
            rel[i, j], se[i, j] = r["rel"], r["rel_se"]
    w_t, d_t = torch.tensor(widths), torch.tensor(depths)
    return {"width": w_t, "depth": d_t, "rel": rel, "rel_se": se,
            "ratio": d_t[None, :].double() / w_t[:, None].double()}
