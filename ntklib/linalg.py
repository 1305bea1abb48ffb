r"""Kernel linear algebra, the one home for it: regularized solves and eigendecompositions of PSD kernels.

Everything that inverts or diagonalizes a kernel matrix :math:`K` (n, n) goes through here:

* :func:`psd_solve`: :math:`K^{-1}\,\text{rhs}` by Cholesky, falling back to the pseudo-inverse of
  the eigendecomposition (eigenvalues below :math:`n\,\varepsilon\,\lambda_{max}` dropped) with an
  :class:`IllConditionedKernelWarning` when :math:`K` is numerically singular or badly conditioned.
  For a kernel that is an inner product of features (every NNGP and NTK) dropping the null space is
  exact: :math:`Kv = 0` implies :math:`K_{*X}v = 0`, so the pseudo-inverse gives the minimum-norm
  interpolant, which is also the :math:`t\to\infty` limit of gradient flow.
* :func:`regularizer` and :func:`add_diagonal_regularizer`: neural-tangents' ``diag_reg``, relative
  to :math:`\mathrm{tr}(K)/n` by default, absolute with ``diag_reg_absolute_scale=True``.
* :class:`KernelEigen`: :math:`K = V\,\mathrm{diag}(\lambda)\,V^\top` once, and the functions of
  :math:`K` that gradient flow and gradient descent need at many times (:meth:`KernelEigen.flow_gain`,
  :meth:`KernelEigen.descent_gain`, :meth:`KernelEigen.apply`).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from .validation import as_kernel_matrix, as_tensor, check_nonneg

__all__ = ["IllConditionedKernelWarning", "regularizer", "add_diagonal_regularizer", "psd_solve", "KernelEigen"]


class IllConditionedKernelWarning(UserWarning):
    """A kernel matrix was numerically singular or badly conditioned; a pseudo-inverse was used."""


def regularizer(k: torch.Tensor, diag_reg: float, diag_reg_absolute_scale: bool = False) -> float:
    r"""The ridge :math:`\lambda`: ``diag_reg`` times :math:`\mathrm{tr}(K)/n` (relative), or ``diag_reg`` itself."""
    diag_reg = check_nonneg("diag_reg", diag_reg)
    if diag_reg == 0.0:
        return 0.0
    return diag_reg if diag_reg_absolute_scale else diag_reg * float(torch.diagonal(k).mean())


def add_diagonal_regularizer(k: torch.Tensor, diag_reg: float = 0.0,
                             diag_reg_absolute_scale: bool = False) -> torch.Tensor:
    r""":math:`K + \lambda I` with :math:`\lambda` from :func:`regularizer`."""
    reg = regularizer(k, diag_reg, diag_reg_absolute_scale)
    if reg == 0.0:
        return k
    return k + reg * torch.eye(k.shape[0], dtype=k.dtype, device=k.device)


def _pinv_tolerance(evals: torch.Tensor) -> float:
    n = evals.shape[0]
    return float(n * torch.finfo(evals.dtype).eps * max(float(evals.abs().max()), 1e-300))


def _warn_singular(name: str, evals: torch.Tensor, tol: float, dropped: int, stacklevel: int = 4) -> None:
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


def _pseudo_reciprocal(evals: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """1/lambda where ``keep``, else 0 (no division by the dropped eigenvalues)."""
    return torch.where(keep, 1.0 / torch.where(keep, evals, torch.ones_like(evals)), torch.zeros_like(evals))


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
    k = as_kernel_matrix(name, k, square=True)
    rhs = as_tensor("rhs", rhs, like=k)
    if rhs.ndim != 2 or rhs.shape[0] != k.shape[0]:
        raise ValueError(f"rhs must have shape ({k.shape[0]}, m), one row per row of {name}; got {tuple(rhs.shape)}.")
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
    _warn_singular(name, evals, tol, int((~keep).sum()), stacklevel=3)
    return evecs @ (_pseudo_reciprocal(evals, keep)[:, None] * (evecs.T @ rhs))


def _relative_expm1(z: torch.Tensor) -> torch.Tensor:
    """(1 - exp(-z)) / z, equal to 1 at z = 0, for z >= 0 (no cancellation, no 0/0)."""
    safe = torch.where(z > 0, z, torch.ones_like(z))
    return torch.where(z > 0, -torch.expm1(-safe) / safe, torch.ones_like(z))


def _relative_power(a: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """(1 - (1 - a)^k) / a, equal to k at a = 0, for a >= 0 and integer k >= 0."""
    small = (a > 0) & (a < 1)
    a_small = torch.where(small, a, torch.full_like(a, 0.5))
    v_small = -torch.expm1(k * torch.log1p(-a_small)) / a_small
    a_big = torch.where(a >= 1, a, torch.full_like(a, 2.0))
    v_big = (1 - (1 - a_big) ** k) / a_big
    return torch.where(a == 0, k * torch.ones_like(a), torch.where(small, v_small, v_big))


@dataclass(frozen=True)
class KernelEigen:
    r"""Eigendecomposition :math:`K = V\,\mathrm{diag}(\lambda)\,V^\top` of a PSD kernel, eigenvalues ascending.

    ``eigenvalues`` are clamped at 0 (negative ones are rounding; :meth:`of` warns when one is not),
    ``name`` is what warnings call the matrix. Build it with :meth:`of`.
    """
    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor
    name: str = "k_train_train"

    @classmethod
    def of(cls, k: torch.Tensor, *, name: str = "k_train_train") -> "KernelEigen":
        """Decompose ``k`` (symmetric (n, n)) with ``torch.linalg.eigh``."""
        evals, evecs = torch.linalg.eigh(k)  # ascending, (n,), (n, n)
        lmax = float(evals.abs().max()) if evals.numel() else 0.0
        if evals.numel() and float(evals.min()) < -1e-6 * max(lmax, 1e-300):
            warnings.warn(f"{name} is not positive semi-definite (smallest eigenvalue {float(evals.min()):.3g}, "
                          f"largest {lmax:.3g}); negative eigenvalues are treated as 0.", stacklevel=3)
        return cls(eigenvalues=evals.clamp_min(0.0), eigenvectors=evecs, name=name)

    def flow_gain(self, t: torch.Tensor, norm: float = 1.0, shift: float = 0.0) -> torch.Tensor:
        r"""(T, n): :math:`g_i(t) = (1 - e^{-\lambda_i t/N})/\lambda_i`, for times ``t`` (any shape, flattened).

        With ``shift`` :math:`s \ge 0` the rates are :math:`\lambda_i + s` (a ridge or a weight decay).
        The gain of gradient flow, :math:`\int_0^{t/N} e^{-\lambda_i s}\,ds`: it tends to :math:`t/N` as
        :math:`\lambda_i \to 0` (no 0/0) and to :math:`1/\lambda_i` as :math:`t\to\infty`, where eigenvalues
        below :math:`n\,\varepsilon\,\lambda_{max}` get 0 (the pseudo-inverse, with an
        :class:`IllConditionedKernelWarning`; also when the condition number exceeds ``1e-3/eps``).
        """
        lam = self.eigenvalues + shift
        tf = t.reshape(-1, 1)  # (T, 1)
        finite = torch.isfinite(tf)
        tf0 = torch.where(finite, tf, torch.zeros_like(tf))
        gain = (tf0 / norm) * _relative_expm1(lam * tf0 / norm)  # (T, n)
        if not bool(finite.all()):
            tol = _pinv_tolerance(lam)
            keep = lam > tol
            lmin = float(lam.min()) if lam.numel() else 0.0
            if bool((~keep).any()) or float(lam.max()) > (1e-3 / torch.finfo(lam.dtype).eps) * lmin:
                _warn_singular(self.name + (" + shift * I" if shift else ""), lam, tol, int((~keep).sum()))
            gain = torch.where(finite, gain, _pseudo_reciprocal(lam, keep).expand_as(gain))
        return gain

    def descent_gain(self, steps: torch.Tensor, learning_rate: float, norm: float = 1.0,
                     shift: float = 0.0) -> torch.Tensor:
        r"""(T, n): :math:`\frac{\eta}{N}\,\frac{1 - (1 - \eta\lambda_i/N)^k}{\eta\lambda_i/N}` for ``steps`` k
        (integers >= 0): ``k`` steps of :math:`f \leftarrow f - \frac{\eta}{N}K(f - y)`, equal to
        :math:`k\eta/N` at :math:`\lambda_i = 0`; rates :math:`\lambda_i + s` with ``shift`` s."""
        a = learning_rate * (self.eigenvalues + shift) / norm  # (n,)
        return (learning_rate / norm) * _relative_power(a[None, :], steps.reshape(-1, 1))

    def apply(self, diag: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
        r""":math:`V\,\mathrm{diag}(d_t)\,V^\top\,\text{rhs}` for each row :math:`d_t` of ``diag`` (T, n); rhs (n, m) -> (T, n, m)."""
        return self.eigenvectors @ (diag[:, :, None] * (self.eigenvectors.T @ rhs))
