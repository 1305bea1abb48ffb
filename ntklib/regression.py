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

Solves use a Cholesky factorization (``torch.linalg.cholesky_ex``). When the matrix is
numerically singular or badly conditioned (Cholesky fails, or its condition-number estimate
exceeds ``1e-3 / eps`` of the dtype), :func:`psd_solve` falls back to an eigendecomposition and
applies the pseudo-inverse (eigenvalues below ``n * eps * lambda_max`` are dropped), and says so
with an :class:`IllConditionedKernelWarning` that reports the condition number. For a kernel
that is an inner product of features (every NNGP and NTK), dropping the null space is exact:
:math:`K v = 0` implies :math:`K_{*X} v = 0`, so the pseudo-inverse gives the minimum-norm
interpolant, which is also the :math:`t \to \infty` limit of gradient flow.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .validation import check_nonneg

__all__ = ["IllConditionedKernelWarning", "GPPosterior", "psd_solve", "add_diagonal_regularizer",
           "kernel_regression", "gp_posterior"]


class IllConditionedKernelWarning(UserWarning):
    """A kernel matrix was numerically singular or badly conditioned; a pseudo-inverse was used."""


@dataclass(frozen=True)
class GPPosterior:
    """Posterior mean (n_test, k) or (n_test,), and covariance (n_test, n_test) or variances (n_test,)."""
    mean: torch.Tensor
    covariance: torch.Tensor

    def __iter__(self):  # mean, cov = gp_posterior(...)
        return iter((self.mean, self.covariance))


# ---------------------------------------------------------------------------------------------
# validation helpers (shared with dynamics.py and predict.py)
# ---------------------------------------------------------------------------------------------
def _as_tensor(name: str, x: Any, *, like: torch.Tensor | None = None) -> torch.Tensor:
    """A real floating tensor; numpy/lists become float64 (on ``like``'s device when given)."""
    if isinstance(x, torch.Tensor):
        t = x
    elif isinstance(x, (np.ndarray, list, tuple, float, int, np.number)):
        arr = np.asarray(x)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise TypeError(f"{name} must hold real numbers; got an array of dtype {arr.dtype}.")
        t = torch.as_tensor(arr, dtype=torch.float64)
        if like is not None:
            t = t.to(like.device)
    else:
        raise TypeError(f"{name} must be a torch.Tensor or a numpy array; got {type(x).__name__}.")
    if t.is_complex():
        raise TypeError(f"{name} must be real; got complex dtype {t.dtype}.")
    if not t.is_floating_point():
        t = t.to(torch.float64)
    if like is not None:
        if t.device != like.device:
            raise ValueError(f"{name} is on {t.device} but the kernel is on {like.device}; move one of them.")
        t = t.to(like.dtype)
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        raise ValueError(f"{name} must be finite; it has {int(bad.sum())} NaN or infinite entries.")
    return t


def _as_kernel_matrix(name: str, k: Any, *, square: bool = False, like: torch.Tensor | None = None,
                      shape: tuple | None = None) -> torch.Tensor:
    if hasattr(k, "ntk") and hasattr(k, "nngp") and not isinstance(k, torch.Tensor):
        raise TypeError(f"{name} must be a kernel matrix (a tensor), not a Kernel record; "
                        f"pass {name}.ntk or {name}.nngp.")
    t = _as_tensor(name, k, like=like)
    if t.ndim != 2:
        raise ValueError(f"{name} must be a 2-D kernel matrix; got shape {tuple(t.shape)}.")
    if square and t.shape[0] != t.shape[1]:
        raise ValueError(f"{name} must be square (n, n); got shape {tuple(t.shape)}.")
    if shape is not None:
        for axis, want in enumerate(shape):
            if want is not None and t.shape[axis] != want:
                raise ValueError(f"{name} must have shape {tuple('?' if s is None else s for s in shape)}; "
                                 f"got {tuple(t.shape)}.")
    return t


def _symmetrize(name: str, k: torch.Tensor) -> torch.Tensor:
    """(k + k^T)/2, after checking that k is symmetric up to rounding."""
    scale = float(k.abs().max()) if k.numel() else 0.0
    asym = float((k - k.T).abs().max()) if k.numel() else 0.0
    tol = 1e3 * torch.finfo(k.dtype).eps * max(scale, 1e-300) * max(1, k.shape[0]) ** 0.5
    if asym > max(tol, 1e-6 * scale):
        raise ValueError(f"{name} must be a symmetric kernel matrix; max |K - K^T| = {asym:.3g} "
                         f"(max |K| = {scale:.3g}).")
    return 0.5 * (k + k.T)


def _as_targets(name: str, y: Any, n: int, like: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """y as (n, k) and whether it was 1-D."""
    t = _as_tensor(name, y, like=like)
    if t.ndim == 1:
        t, was_1d = t[:, None], True
    elif t.ndim == 2:
        was_1d = False
    else:
        raise ValueError(f"{name} must have shape (n,) or (n, k); got {tuple(t.shape)}.")
    if t.shape[0] != n:
        raise ValueError(f"{name} must have {n} rows (one per training point of the kernel); "
                         f"got shape {tuple(t.shape)}.")
    return t, was_1d


def _as_outputs(name: str, f: Any, shape: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
    """Initial outputs broadcast to ``shape`` (n, k): a scalar, (n,), (n, 1) or (n, k)."""
    t = _as_tensor(name, f, like=like)
    if t.ndim == 1 and t.shape[0] == shape[0]:
        t = t[:, None]
    try:
        return torch.broadcast_to(t, shape)
    except RuntimeError:
        raise ValueError(f"{name} must broadcast to the outputs' shape {shape}; got shape {tuple(t.shape)}.") \
            from None


def add_diagonal_regularizer(k: torch.Tensor, diag_reg: float = 0.0,
                             diag_reg_absolute_scale: bool = False) -> torch.Tensor:
    r""":math:`K + \lambda I` with :math:`\lambda = \text{diag\_reg}\cdot\mathrm{tr}(K)/n` (relative,
    neural-tangents' default) or :math:`\lambda = \text{diag\_reg}` (``diag_reg_absolute_scale=True``)."""
    reg = _regularizer(k, diag_reg, diag_reg_absolute_scale)
    if reg == 0.0:
        return k
    return k + reg * torch.eye(k.shape[0], dtype=k.dtype, device=k.device)


def _regularizer(k: torch.Tensor, diag_reg: float, absolute: bool) -> float:
    diag_reg = check_nonneg("diag_reg", diag_reg)
    if diag_reg == 0.0:
        return 0.0
    return diag_reg if absolute else diag_reg * float(torch.diagonal(k).mean())


def _pinv_tolerance(evals: torch.Tensor) -> float:
    n = evals.shape[0]
    return float(n * torch.finfo(evals.dtype).eps * max(float(evals.abs().max()), 1e-300))


def _warn_singular(name: str, evals: torch.Tensor, tol: float, dropped: int, stacklevel: int = 3) -> None:
    lmax, lmin = float(evals.max()), float(evals.min())
    cond = lmax / lmin if lmin > 0 else float("inf")
    msg = (f"{name} is numerically singular or badly conditioned: condition number {cond:.3g} "
           f"(eigenvalues from {lmin:.3g} to {lmax:.3g}, dtype {evals.dtype}). ")
    if dropped:
        msg += (f"Used the pseudo-inverse, dropping {dropped} eigenvalue(s) below {tol:.3g} (the minimum-norm "
                "solution). ")
    msg += ("Duplicate or nearly collinear inputs cause this; add a regularizer (e.g. diag_reg=1e-6) or use "
            "float64 if you want a well-posed solve.")
    warnings.warn(msg, IllConditionedKernelWarning, stacklevel=stacklevel)


def psd_solve(k: torch.Tensor, rhs: torch.Tensor, *, name: str = "k_train_train",
              cond_threshold: float | None = None) -> torch.Tensor:
    r""":math:`K^{-1}\,\text{rhs}` for a symmetric positive semi-definite ``k`` (n, n), ``rhs`` (n, m).

    Cholesky solve when the factorization succeeds and the condition-number estimate
    :math:`(\max_i L_{ii}/\min_i L_{ii})^2` is below ``cond_threshold`` (default ``1e-3/eps``:
    about 4.5e12 in float64, 8.4e3 in float32). Otherwise the eigendecomposition
    :math:`K = V\,\mathrm{diag}(\lambda)\,V^\top` gives the pseudo-inverse
    :math:`V\,\mathrm{diag}(1/\lambda_i\ \text{if}\ \lambda_i > n\,\varepsilon\,\lambda_{max}\ \text{else}\ 0)\,V^\top`,
    and an :class:`IllConditionedKernelWarning` reports the condition number. Never NaN.
    """
    eps = torch.finfo(k.dtype).eps
    threshold = 1e-3 / eps if cond_threshold is None else float(cond_threshold)
    L, info = torch.linalg.cholesky_ex(k)
    if int(info) == 0:
        d = torch.diagonal(L)  # (n,)
        dmin = float(d.min())
        if dmin > 0 and (float(d.max()) / dmin) ** 2 <= threshold:
            return torch.cholesky_solve(rhs, L)
    evals, evecs = torch.linalg.eigh(k)  # (n,), (n, n)
    tol = _pinv_tolerance(evals)
    keep = evals > tol
    _warn_singular(name, evals, tol, int((~keep).sum()))
    inv = torch.where(keep, 1.0 / torch.where(keep, evals, torch.ones_like(evals)), torch.zeros_like(evals))
    return evecs @ (inv[:, None] * (evecs.T @ rhs))


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
    k = _as_kernel_matrix("k_train_train", k_train_train, square=True)
    n = k.shape[0]
    kt = _as_kernel_matrix("k_test_train", k_test_train, like=k, shape=(None, n))
    y, was_1d = _as_targets("y_train", y_train, n, k)
    f0 = _as_outputs("fx_train_0", fx_train_0, tuple(y.shape), k)
    ft0 = _as_outputs("fx_test_0", fx_test_0, (kt.shape[0], y.shape[1]), k)
    k = add_diagonal_regularizer(_symmetrize("k_train_train", k), diag_reg, diag_reg_absolute_scale)
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
    k = _as_kernel_matrix("k_train_train", k_train_train, square=True)
    n = k.shape[0]
    kt = _as_kernel_matrix("k_test_train", k_test_train, like=k, shape=(None, n))
    m = kt.shape[0]
    ktt = _as_tensor("k_test_test", k_test_test, like=k)
    if ktt.shape not in ((m, m), (m,)):
        raise ValueError(f"k_test_test must have shape ({m}, {m}) or ({m},) (its diagonal); got {tuple(ktt.shape)}.")
    y, was_1d = _as_targets("y_train", y_train, n, k)
    k = add_diagonal_regularizer(_symmetrize("k_train_train", k), diag_reg, diag_reg_absolute_scale)
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
