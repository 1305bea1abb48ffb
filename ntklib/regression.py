r"""Kernel ridge regression and Gaussian-process posteriors for any kernel matrices.

With training inputs :math:`X` (n points), targets :math:`Y` (n, k), test inputs :math:`X_*`
and kernel matrices ``k_train_train`` :math:`= K` (n, n), ``k_test_train`` :math:`= K_{*X}`
(n_test, n) and ``k_test_test`` :math:`= K_{**}` (n_test, n_test):

.. math::
    \mu(X_*) = f_0(X_*) + K_{*X}\,(K + \lambda I)^{-1}\,\big(Y - f_0(X)\big),
    \qquad
    \Sigma(X_*) = K_{**} - K_{*X}\,(K + \lambda I)^{-1} K_{X*}.

:math:`\mu` is the kernel ridge regression predictor (``kernel_regression``; with
:math:`f_0 = 0` unless initial outputs are given) and, with :math:`\lambda` the observation
noise variance, :math:`(\mu, \Sigma)` is the posterior of the Gaussian process
:math:`f \sim \mathcal{GP}(0, K)` given :math:`Y = f(X) + \varepsilon`,
:math:`\varepsilon \sim \mathcal N(0, \lambda I)` (``gp_posterior``; Rasmussen & Williams 2006,
eq. 2.19; derived in notebook 00_preliminaries).

The regularizer follows neural-tangents: ``diag_reg`` is *relative* by default,
:math:`\lambda = \text{diag\_reg}\cdot\mathrm{tr}(K)/n`, and absolute with
``diag_reg_absolute_scale=True``.

Solves go through :func:`ntklib.linalg.psd_solve` (Cholesky; for a numerically singular or badly
conditioned matrix the pseudo-inverse, with an :class:`~ntklib.linalg.IllConditionedKernelWarning`
that reports the condition number). For a kernel that is an inner product of features (every NNGP
and NTK) dropping the null space is exact, so the result is the minimum-norm interpolant, which is
also the :math:`t \to \infty` limit of gradient flow. ``psd_solve``, ``add_diagonal_regularizer``
and the warning are also importable from here.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .linalg import IllConditionedKernelWarning, add_diagonal_regularizer, psd_solve
from .validation import as_kernel_matrix, as_outputs, as_symmetric_kernel, as_targets, as_tensor

__all__ = ["IllConditionedKernelWarning", "GPPosterior", "psd_solve", "add_diagonal_regularizer",
           "kernel_regression", "gp_posterior"]


@dataclass(frozen=True)
class GPPosterior:
    """Posterior mean (n_test, k) or (n_test,), and covariance (n_test, n_test) or variances (n_test,)."""
    mean: torch.Tensor
    covariance: torch.Tensor

    def __iter__(self):  # mean, cov = gp_posterior(...)
        return iter((self.mean, self.covariance))


# ---------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------
def kernel_regression(k_train_train, k_test_train, y_train, *, diag_reg: float = 0.0,
                      diag_reg_absolute_scale: bool = False, fx_train_0=0.0, fx_test_0=0.0) -> torch.Tensor:
    r"""Kernel ridge regression :math:`f_0(X_*) + K_{*X}(K + \lambda I)^{-1}(Y - f_0(X))`.

    Args:
      k_train_train: :math:`K` (n, n), symmetric positive semi-definite.
      k_test_train: :math:`K_{*X}` (n_test, n).
      y_train: targets (n,) or (n, k).
      diag_reg: :math:`\text{diag\_reg}\cdot\mathrm{tr}(K)/n` is added to the diagonal (or
        ``diag_reg`` itself with ``diag_reg_absolute_scale=True``). With ``diag_reg=0`` this is the
        (minimum-norm) interpolant.
      fx_train_0, fx_test_0: outputs at initialization :math:`f_0(X)` and :math:`f_0(X_*)` (scalars,
        (n,) / (n_test,) or with k columns); 0 by default. With the NTK these give the
        :math:`t\to\infty` limit of gradient flow from :math:`f_0` (:mod:`ntklib.dynamics`).

    Returns:
      (n_test, k), or (n_test,) when ``y_train`` is 1-D; on the kernels' device and dtype.
    """
    k = as_symmetric_kernel("k_train_train", k_train_train)
    n = k.shape[0]
    kt = as_kernel_matrix("k_test_train", k_test_train, like=k, shape=(None, n))
    y, was_1d = as_targets("y_train", y_train, n, k)
    f0 = as_outputs("fx_train_0", fx_train_0, tuple(y.shape), k)
    ft0 = as_outputs("fx_test_0", fx_test_0, (kt.shape[0], y.shape[1]), k)
    k = add_diagonal_regularizer(k, diag_reg, diag_reg_absolute_scale)
    alpha = psd_solve(k, y - f0, name="k_train_train")  # (n, k)
    out = ft0 + kt @ alpha  # (n_test, k)
    return out[:, 0] if was_1d else out


def gp_posterior(k_train_train, k_test_train, k_test_test, y_train, *, diag_reg: float = 0.0,
                 diag_reg_absolute_scale: bool = False) -> GPPosterior:
    r"""Posterior of :math:`f\sim\mathcal{GP}(0, k)` given :math:`Y = f(X) + \mathcal N(0, \lambda I)`.

    .. math::
        \mu = K_{*X}(K + \lambda I)^{-1} Y, \qquad \Sigma = K_{**} - K_{*X}(K+\lambda I)^{-1}K_{X*}.

    Args:
      k_train_train: :math:`K` (n, n).
      k_test_train: :math:`K_{*X}` (n_test, n).
      k_test_test: :math:`K_{**}` (n_test, n_test), or its diagonal (n_test,) to get only the
        posterior variances.
      y_train: (n,) or (n, k); every output column has the same covariance.
      diag_reg: the noise variance :math:`\lambda`, relative to :math:`\mathrm{tr}(K)/n` unless
        ``diag_reg_absolute_scale=True`` (then it is :math:`\sigma^2_{noise}` itself).

    Returns:
      :class:`GPPosterior` ``(mean, covariance)``; the covariance is (n_test, n_test) or (n_test,).
      Rounding can make tiny variances slightly negative; they are clipped at 0 on the diagonal.
    """
    k = as_symmetric_kernel("k_train_train", k_train_train)
    n = k.shape[0]
    kt = as_kernel_matrix("k_test_train", k_test_train, like=k, shape=(None, n))
    m = kt.shape[0]
    ktt = as_tensor("k_test_test", k_test_test, like=k)
    if ktt.shape not in ((m, m), (m,)):
        raise ValueError(f"k_test_test must have shape ({m}, {m}) or ({m},) (its diagonal); got {tuple(ktt.shape)}.")
    y, was_1d = as_targets("y_train", y_train, n, k)
    k = add_diagonal_regularizer(k, diag_reg, diag_reg_absolute_scale)
    sol = psd_solve(k, torch.cat([y, kt.T], dim=1), name="k_train_train")  # (n, k + n_test)
    alpha, v = sol[:, :y.shape[1]], sol[:, y.shape[1]:]  # (n, k), (n, n_test)
    mean = kt @ alpha  # (n_test, k)
    if ktt.ndim == 1:
        cov = (ktt - (kt * v.T).sum(1)).clamp_min(0.0)  # (n_test,)
    else:
        cov = ktt - kt @ v  # (n_test, n_test)
        cov = 0.5 * (cov + cov.T)
        cov.diagonal().clamp_(min=0.0)
    return GPPosterior(mean=mean[:, 0] if was_1d else mean, covariance=cov)
