r"""The deep limit of the NTK: correlation maps, their fixed points, stable recursions, normalized kernels.

Derived in notebook 04 (deep limit); the measured figures and the claims they test are in
``docs/depth.md`` (part A). Claim-measuring sweeps built on this module live in
:mod:`ntklib.experiments.deep_limit`.

**The network.** A fully connected network with :math:`L` Dense layers (:math:`L-1` hidden layers
with activation :math:`\phi` and a linear readout, all with ``W_std`` :math:`=\sigma_w` and ``b_std``
:math:`=\sigma_b`, ntklib's NTK parameterization). For bias-free ReLU, with
:math:`\rho^{(1)} = \cos\theta^{(1)} = x\cdot x'/(|x||x'|)`, the pre-activation correlation of layer
:math:`l` obeys :math:`\rho^{(l+1)} = h(\rho^{(l)})` with

.. math::
    h(\rho) = \frac{\sqrt{1-\rho^2} + (\pi - \arccos\rho)\,\rho}{\pi}
            = \frac{\rho\arcsin\rho}{\pi} + \frac{\sqrt{1-\rho^2}}{\pi} + \frac{\rho}{2},
    \qquad \dot h(\rho) = 1 - \frac{\arccos\rho}{\pi},

the normalized arc-cosine kernel (the arcsin form is the one the paper writes; both agree).
The normalized kernels (our normalization: divide by the diagonal, so that it is exactly 1 for
any inputs) are

.. math::
    \bar\Sigma^{(L)}(x,x') = \frac{\Sigma^{(L)}(x,x')}{\sqrt{\Sigma^{(L)}(x,x)\Sigma^{(L)}(x',x')}} = \rho^{(L)}, \qquad
    \bar\Theta^{(L)} = \frac{\Theta^{(L)}(x,x')}{\sqrt{\Theta^{(L)}(x,x)\Theta^{(L)}(x',x')}}
    = \frac1L\sum_{l=1}^{L} \rho^{(l)} \prod_{m=l}^{L-1} \dot h(\rho^{(m)}),

independent of :math:`\sigma_w`. In ntklib's conventions :math:`\Theta^{(L)}(x,x) = 2L(\sigma_w^2/2)^L |x|^2/d`;
with :math:`\sigma_w = 1` and unit inputs this is :math:`L/(n_0 2^{L-1})`, so normalizing means
*multiplying* by :math:`n_0 2^{L-1}/L` (the paper's summary says to divide by it).

**Derived and measured** (docs/depth.md, part A):

* the rate: :math:`\theta^{(l+1)} = \theta - \theta^2/(3\pi) - \theta^3/(18\pi^2) + O(\theta^4)`, hence
  :math:`1-\rho^{(L)} \simeq \frac{9\pi^2/2}{(L + \frac32\ln L + C)^2}`, polynomial
  (:data:`RELU_RATE_CONSTANT`), because :math:`\dot h(1) = 1`;
* the claim that the normalized NTK tends to the all-ones matrix holds for the normalized NNGP
  (:math:`\bar\Sigma^{(L)} \to 11^\top`) but not for the NTK of bias-free ReLU: its off-diagonal tends
  to :math:`1/4` (:data:`RELU_NTK_OFFDIAG_LIMIT`), not monotonically, so
  :math:`\bar\Theta^{(L)} \to \frac34 I + \frac14 11^\top` on distinct points; with a bias in the
  ordered phase (:math:`\chi_1 < 1`) the normalized NTK does tend to all-ones;
* any activation: :func:`correlation_map`, its slope (:math:`\chi_1` at :math:`\rho = 1`),
  :func:`variance_fixed_point`, :func:`fixed_points` and the order/chaos phase (:func:`chi_1`);
* :func:`regression_map` :math:`\kappa(x, X)\kappa(X, X)^{-1}`, which stays bounded while
  :math:`\det\kappa(X, X) \to 0`.
"""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
import torch

from .validation import as_inputs, check_nonneg, check_positive_int
from ._progress import progress_bar
from .activations import ABRelu, Activation, Relu
from .kernel import Kernel
from .layers import Dense
from .regression import kernel_regression

__all__ = [
    "RELU_RATE_CONSTANT", "RELU_NTK_OFFDIAG_LIMIT", "relu_correlation_map", "relu_correlation_map_derivative",
    "relu_angle_map", "relu_correlation_iterates", "relu_one_minus_rho_asymptotic", "pairwise_angles",
    "correlation_map", "correlation_map_slope", "variance_fixed_point", "fixed_points", "chi_1",
    "normalized_kernels", "regression_map",
]

RELU_RATE_CONSTANT = 9 * math.pi ** 2 / 2
r""":math:`\lim_L L^2 (1-\rho^{(L)}) = 9\pi^2/2 \approx 44.41` for ReLU (any :math:`\rho^{(1)} \in [-1, 1)`)."""

RELU_NTK_OFFDIAG_LIMIT = 0.25
r""":math:`\lim_L \bar\Theta^{(L)}(x, x') = 1/4` for bias-free ReLU and any :math:`x \ne x'` (including :math:`x' = -x`)."""


# ----------------------------------------------------------------------------------------------
# Bias-free ReLU: the correlation map, on correlations and on angles
# ----------------------------------------------------------------------------------------------
def _as_float_tensor(name, value, dtype=torch.float64):
    if isinstance(value, torch.Tensor):
        t = value if value.is_floating_point() else value.to(dtype)
    else:
        try:
            t = torch.as_tensor(np.asarray(value, dtype=np.float64), dtype=dtype)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a number, array or tensor of real numbers; got {value!r}.") from None
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite.")
    return t


def _check_rho(rho: torch.Tensor, name: str = "rho", tol: float = 1e-12) -> torch.Tensor:
    if bool((rho.abs() > 1 + tol).any()):
        raise ValueError(f"{name} must be a correlation in [-1, 1]; got values up to {float(rho.abs().max()):.6g}.")
    return rho.clamp(-1.0, 1.0)


def relu_correlation_map(rho) -> torch.Tensor:
    r"""ReLU correlation map :math:`h(\rho) = \big(\sqrt{1-\rho^2} + (\pi-\arccos\rho)\rho\big)/\pi` (elementwise).

    Equal to the paper's arcsin form :math:`\rho\arcsin\rho/\pi + \sqrt{1-\rho^2}/\pi + \rho/2` (tests check both
    against quadrature). Loses relative precision in :math:`1-h` near :math:`\rho = 1`: for deep
    iterates use :func:`relu_angle_map` (what :func:`relu_correlation_iterates` does).
    """
    rho = _check_rho(_as_float_tensor("rho", rho))
    return (torch.sqrt(torch.clamp(1 - rho * rho, min=0.0)) + (math.pi - torch.arccos(rho)) * rho) / math.pi


def relu_correlation_map_derivative(rho) -> torch.Tensor:
    r""":math:`\dot h(\rho) = 1 - \arccos(\rho)/\pi` (:math:`= \sigma_w^2\,\mathbb E[\phi'(u)\phi'(v)]` at :math:`\sigma_w^2 = 2`)."""
    rho = _check_rho(_as_float_tensor("rho", rho))
    return 1 - torch.arccos(rho) / math.pi


# sin(t) - t cos(t) = t^3 sum_{k>=1} c_k (t^2)^(k-1), c_k = (-1)^(k+1) 2k / (2k+1)!; 8 terms are exact
# to double precision for t < 1/2 (the next term is below 1e-17 of the first).
_SXC_COEFFS = [(-1) ** (k + 1) * 2 * k / math.factorial(2 * k + 1) for k in range(1, 9)]


def _sin_minus_x_cos(theta, xp=torch):
    r""":math:`\sin\theta - \theta\cos\theta` without cancellation: its Taylor series (Horner) for
    :math:`\theta < 1/2`, the direct formula above (where at most one digit cancels).
    ``xp`` is ``torch`` or ``numpy`` (the same code on tensors on any device, or on CPU arrays)."""
    small = theta < 0.5
    t = xp.where(small, theta, xp.zeros_like(theta))
    series = _sxc_series(t, xp)
    return xp.where(small, series, xp.sin(theta) - theta * xp.cos(theta))


def _sxc_series(t, xp=torch):
    t2 = t * t
    poly = xp.full_like(t, _SXC_COEFFS[-1])
    for c in reversed(_SXC_COEFFS[:-1]):
        poly = poly * t2 + c
    return t * t2 * poly


def _relu_angle_step(theta, xp=torch, small: bool = False):
    """One stable step theta -> theta'; ``small=True`` skips the large-angle branch (all theta < 1/2)."""
    g = _sxc_series(theta, xp) if small else _sin_minus_x_cos(theta, xp)
    u = 2 * xp.sin(theta / 2) ** 2 - g / math.pi  # 1 - cos(theta')
    return 2 * xp.arcsin(xp.sqrt(xp.clip(u / 2, 0.0, 1.0)))


def relu_angle_map(theta) -> torch.Tensor:
    r"""The ReLU correlation map on angles, :math:`\theta \mapsto \theta' = \arccos h(\cos\theta)`, computed stably.

    .. math::
        1 - \cos\theta' = 2\sin^2\tfrac{\theta}{2} - \frac{\sin\theta - \theta\cos\theta}{\pi},
        \qquad \theta' = 2\arcsin\sqrt{(1-\cos\theta')/2},

    with a series for :math:`\sin\theta - \theta\cos\theta` at small :math:`\theta`: relative
    precision of :math:`\theta'` and :math:`1-\cos\theta'` stays near machine epsilon for all
    :math:`\theta \in [0, \pi]`, even :math:`\theta \sim 10^{-8}` (tested against mpmath).
    """
    theta = _as_float_tensor("theta", theta)
    if bool(((theta < 0) | (theta > math.pi * (1 + 1e-12))).any()):
        raise ValueError("theta must be an angle in [0, pi].")
    return _relu_angle_step(theta.clamp(0.0, math.pi))


def pairwise_angles(x1, x2=None) -> torch.Tensor:
    r"""Angles :math:`\theta(x, x') = 2\,\mathrm{atan2}(|\hat x - \hat x'|, |\hat x + \hat x'|)` (n1, n2), stable near 0 and :math:`\pi`.

    Exactly 0 on the diagonal when ``x2`` is None. Zero-norm rows raise an error.
    """
    x1, x2 = as_inputs(x1, x2, dtype=torch.float64 if not isinstance(x1, torch.Tensor) else None)
    norms1 = x1.norm(dim=1, keepdim=True)
    if bool((norms1 == 0).any()):
        raise ValueError("x1 has a zero row: the angle to a zero vector is undefined.")
    u1 = x1 / norms1
    if x2 is None:
        u2 = u1
    else:
        norms2 = x2.norm(dim=1, keepdim=True)
        if bool((norms2 == 0).any()):
            raise ValueError("x2 has a zero row: the angle to a zero vector is undefined.")
        u2 = x2 / norms2
    diff = torch.cdist(u1[None], u2[None], compute_mode="donot_use_mm_for_euclid_dist")[0]  # (n1, n2)
    summ = torch.cdist(u1[None], -u2[None], compute_mode="donot_use_mm_for_euclid_dist")[0]  # (n1, n2)
    theta = 2 * torch.atan2(diff, summ)
    if x2 is None:
        theta.diagonal().zero_()
    return theta


def relu_correlation_iterates(rho1=None, depth: int = 10, *, theta1=None, stable: bool = True,
                              dtype: torch.dtype = torch.float64, keep: Sequence[int] | None = None,
                              progress: bool | None = None) -> dict:
    r"""ReLU iterates :math:`\rho^{(l)}`, :math:`l = 1..\text{depth}`, and the normalized NTK, for any shape of start.

    Args:
      rho1: starting correlations :math:`\rho^{(1)}` (any shape), or give ``theta1`` (angles, more precise near 1).
      depth: number of layers :math:`L` (Dense layers; :math:`\rho^{(1)}` is the input's cosine).
      stable: carry angles with :func:`relu_angle_map` (default). ``False`` iterates the arcsin
        formula on :math:`\rho` directly in ``dtype`` (the naive recursion; loses :math:`1-\rho`).
      dtype: float64 (default) or float32, for the naive comparison.
      keep: the depths to return (default: all of 1..depth); the others are not stored, so a large
        start (e.g. the angles of an (n, n) Gram matrix) costs memory for the kept depths only.

    Returns a dict of tensors of shape (depth, *shape) (or (len(keep), *shape)): ``rho`` (:math:`\rho^{(l)}`),
    ``one_minus_rho`` (:math:`1-\rho^{(l)}`, computed as :math:`2\sin^2(\theta/2)` when stable),
    ``theta``, ``rho_dot`` (:math:`\dot h(\rho^{(l)})`) and ``ntk`` (:math:`\bar\Theta^{(l)}`, from
    :math:`\bar\Theta^{(l)} = \frac1l[\rho^{(l)} + (l-1)\,\dot h(\rho^{(l-1)})\,\bar\Theta^{(l-1)}]`),
    and ``depth`` (1..depth, or the sorted ``keep``).
    """
    depth = check_positive_int("depth", depth)
    if keep is None:
        kept = list(range(1, depth + 1))
    else:
        kept = sorted({check_positive_int("keep", int(L)) for L in keep})
        if not kept or kept[-1] > depth:
            raise ValueError(f"keep must be a non-empty list of depths in 1..depth={depth}; got {keep!r}.")
    wanted = set(kept)
    if (rho1 is None) == (theta1 is None):
        raise ValueError("give exactly one of rho1 (correlations) or theta1 (angles).")
    if theta1 is not None:
        theta = _as_float_tensor("theta1", theta1, dtype).to(dtype)
        if bool(((theta < 0) | (theta > math.pi * (1 + 1e-12))).any()):
            raise ValueError("theta1 must be angles in [0, pi].")
        theta = theta.clamp(0.0, math.pi)
        rho = torch.cos(theta)
    else:
        rho = _check_rho(_as_float_tensor("rho1", rho1, dtype).to(dtype), "rho1")
        theta = torch.arccos(rho)
    device = theta.device
    if stable:  # the angle recursion always runs in float64; results are cast to dtype at the end
        theta, rho = theta.double(), rho.double()
    # the recursion is sequential and elementwise: on the CPU run it in numpy (less per-step overhead)
    xp = np if device.type == "cpu" else torch
    if xp is np:
        theta, rho = np.asarray(theta.numpy()), np.asarray(rho.numpy())
    ntk = rho
    thetas, rhos, ntks = ([theta], [rho], [rho]) if 1 in wanted else ([], [], [])
    small = False
    for l in progress_bar(range(2, depth + 1), total=depth - 1, desc="depth", progress=progress):
        theta_prev = theta
        if stable:
            small = small or bool((theta < 0.5).all())  # h(rho) >= rho: angles only decrease
            theta = _relu_angle_step(theta, xp, small=small)
            rho = xp.cos(theta)
        else:
            r = rho
            rho = r * xp.arcsin(r) / math.pi + xp.sqrt(xp.clip(1 - r * r, 0.0, 1.0)) / math.pi + r / 2
            rho = xp.clip(rho, -1.0, 1.0)
            theta = xp.arccos(rho)
        # Theta-bar^(l) = [rho^(l) + (l-1) hdot(rho^(l-1)) Theta-bar^(l-1)] / l, hdot = 1 - theta/pi
        ntk = (rho + (l - 1) * (1 - theta_prev / math.pi) * ntk) / l
        if l in wanted:
            thetas.append(theta)
            rhos.append(rho)
            ntks.append(ntk)
    stack = (lambda ts: torch.from_numpy(np.stack(ts)).to(device)) if xp is np else torch.stack
    theta_all, rho_all = stack(thetas).to(dtype), stack(rhos).to(dtype)  # (depth, *shape)
    om = 2 * torch.sin(theta_all / 2) ** 2 if stable else 1 - rho_all
    dot = 1 - theta_all / math.pi
    return {"depth": torch.tensor(kept), "rho": rho_all, "one_minus_rho": om,
            "theta": theta_all, "rho_dot": dot, "ntk": stack(ntks).to(dtype)}


def relu_one_minus_rho_asymptotic(depth, shift: float = 0.0) -> torch.Tensor:
    r"""Two-term asymptotic :math:`1-\rho^{(L)} \approx \frac{9\pi^2/2}{(L + \frac32\ln L + C)^2}`.

    From :math:`1/\theta^{(l+1)} = 1/\theta^{(l)} + \frac{1}{3\pi} + \frac{\theta^{(l)}}{6\pi^2} + O(\theta^2)`
    and :math:`\theta^{(l)} \approx 3\pi/l`. ``shift`` is :math:`C` (depends on :math:`\rho^{(1)}`; 0 gives
    the universal leading behaviour).
    """
    L = _as_float_tensor("depth", depth)
    if bool((L < 1).any()):
        raise ValueError("depth must be >= 1.")
    return RELU_RATE_CONSTANT / (L + 1.5 * torch.log(L) + shift) ** 2


# ----------------------------------------------------------------------------------------------
# Any activation: correlation map, variance fixed point, fixed points
# ----------------------------------------------------------------------------------------------
def _check_activation(activation):
    activation = Relu() if activation is None else activation
    if isinstance(activation, type):
        raise TypeError(f"activation is the class {activation.__name__}; call it: {activation.__name__}().")
    if not isinstance(activation, Activation):
        raise TypeError(f"activation must be an ntklib activation (Relu(), Erf(), Elementwise(fn)); got {activation!r}.")
    return activation


def _is_bias_free_relu(activation, b_std) -> bool:
    return (isinstance(activation, ABRelu) and activation.a == 0.0 and activation.b > 0
            and (b_std is None or b_std == 0))


def _map_arguments(activation, W_std, b_std, rho, q):
    """Validated arguments of the correlation maps; ``q`` is None for bias-free ReLU (closed form)."""
    activation = _check_activation(activation)
    W_std = check_nonneg("W_std", W_std)
    b_std = check_nonneg("b_std", b_std, allow_none=True)
    rho = _check_rho(_as_float_tensor("rho", rho))
    if _is_bias_free_relu(activation, b_std):
        return activation, W_std, b_std, rho, None, None, None
    if q is None:
        q = variance_fixed_point(activation, W_std=W_std, b_std=b_std)
        if not math.isfinite(q) or q <= 0:
            raise ValueError(f"the variance map has no finite positive fixed point (q* = {q}); pass q explicitly.")
    q = check_nonneg("q", q)
    b2 = 0.0 if b_std is None else b_std ** 2
    return activation, W_std, b_std, rho, q, b2, torch.full_like(rho, q)


def correlation_map(rho, activation: Activation | None = None, *, W_std: float = math.sqrt(2.0),
                    b_std: float | None = None, q: float | None = None) -> torch.Tensor:
    r"""One layer's correlation map at pre-activation variance :math:`q` (both inputs), any activation.

    .. math::
        h_q(\rho) = \frac{\sigma_w^2\,\mathbb E[\phi(u)\phi(v)] + \sigma_b^2}{\sigma_w^2\,\mathbb E[\phi(u)^2] + \sigma_b^2},
        \qquad (u, v) \sim \mathcal N\Big(0, q\begin{pmatrix}1 & \rho\\ \rho & 1\end{pmatrix}\Big),

    with the activation's dual (closed form or Gauss--Hermite quadrature). ``q=None`` uses the
    variance fixed point :func:`variance_fixed_point` (bias-free ReLU: any :math:`q`, the map does
    not depend on it).
    """
    activation, W_std, b_std, rho, q, b2, qt = _map_arguments(activation, W_std, b_std, rho, q)
    if q is None:
        return relu_correlation_map(rho)
    cross, _ = activation.dual(rho * q, qt, qt, need_dot=False)
    diag, _ = activation.dual(qt, qt, qt, need_dot=False)
    return (W_std ** 2 * cross + b2) / (W_std ** 2 * diag + b2)


def variance_fixed_point(activation: Activation | None = None, *, W_std: float = math.sqrt(2.0),
                         b_std: float | None = None, q0: float = 1.0, tol: float = 1e-13,
                         max_iter: int = 100000) -> float:
    r"""Fixed point :math:`q^*` of the variance map :math:`q \mapsto \sigma_w^2\,\mathbb E_{u\sim\mathcal N(0,q)}[\phi(u)^2] + \sigma_b^2`.

    Iterated from ``q0``. Returns ``inf`` when it diverges, 0.0 when it decays to 0, and for
    bias-free ReLU at :math:`\sigma_w^2 = 2` (every :math:`q` is fixed) returns ``q0`` (with the
    maps not depending on :math:`q`).
    """
    activation = _check_activation(activation)
    W_std = check_nonneg("W_std", W_std)
    b_std = check_nonneg("b_std", b_std, allow_none=True)
    b2 = 0.0 if b_std is None else b_std ** 2
    if _is_bias_free_relu(activation, b_std):
        slope = W_std ** 2 * activation.b ** 2 / 2
        if abs(slope - 1) < 1e-15:
            return float(q0)
        return math.inf if slope > 1 else 0.0
    q = torch.tensor([float(q0)], dtype=torch.float64)
    for _ in range(max_iter):
        e, _ = activation.dual(q, q, q, need_dot=False)
        q_new = W_std ** 2 * e + b2
        if not bool(torch.isfinite(q_new).all()) or float(q_new) > 1e300:
            return math.inf
        if abs(float(q_new - q)) <= tol * max(1.0, float(q)):
            return float(q_new)
        q = q_new
    warnings.warn(f"variance_fixed_point did not converge in {max_iter} iterations (last q = {float(q):.6g}); "
                  "near a critical point the convergence is only polynomial.", RuntimeWarning, stacklevel=2)
    return float(q)


def correlation_map_slope(rho, activation: Activation | None = None, *, W_std: float = math.sqrt(2.0),
                          b_std: float | None = None, q: float | None = None) -> torch.Tensor:
    r"""Slope :math:`h_q'(\rho) = \sigma_w^2\, q\, \mathbb E[\phi'(u)\phi'(v)] / (\sigma_w^2\mathbb E[\phi(u)^2] + \sigma_b^2)` (Price's theorem).

    At :math:`\rho = 1` and the variance fixed point this is :math:`\chi_1 = \sigma_w^2\mathbb E[\phi'(u)^2]`
    (ordered phase < 1, chaotic > 1; bias-free ReLU: exactly 1 for every :math:`\sigma_w`, which is why its
    rate is polynomial). Same arguments as :func:`correlation_map`.
    """
    activation, W_std, b_std, rho, q, b2, qt = _map_arguments(activation, W_std, b_std, rho, q)
    if q is None:
        return relu_correlation_map_derivative(rho)
    _, dot = activation.dual(rho * q, qt, qt, need_dot=True)
    diag, _ = activation.dual(qt, qt, qt, need_dot=False)
    return W_std ** 2 * q * dot / (W_std ** 2 * diag + b2)


def fixed_points(activation: Activation | None = None, *, W_std: float = math.sqrt(2.0),
                 b_std: float | None = None, q: float | None = None, n_grid: int = 2001) -> list[dict]:
    r"""Fixed points :math:`\rho^* = h_q(\rho^*)` in :math:`[-1, 1]` of :func:`correlation_map`, with their slopes.

    Roots of :math:`h_q(\rho) - \rho` found by sign changes on ``n_grid`` points and
    :func:`scipy.optimize.brentq`, plus :math:`\rho = 1` (always fixed at the variance fixed point).
    Each entry: ``rho``, ``slope`` (:func:`correlation_map_slope`) and ``stability``: ``"stable"``
    (slope < 1), ``"marginal"`` (slope = 1 to 1e-9: bias-free ReLU's :math:`\rho^* = 1`, approached only
    polynomially) or ``"unstable"``.
    """
    from scipy.optimize import brentq

    activation = _check_activation(activation)
    n_grid = check_positive_int("n_grid", n_grid)
    if q is None and not _is_bias_free_relu(activation, b_std):
        q = variance_fixed_point(activation, W_std=W_std, b_std=b_std)
        if not math.isfinite(q) or q <= 0:
            raise ValueError(f"the variance map has no finite positive fixed point (q* = {q}); pass q explicitly.")
    kw = dict(W_std=W_std, b_std=b_std, q=q)

    def h(r):
        return float(correlation_map(torch.tensor([r], dtype=torch.float64), activation, **kw)[0])

    grid = np.linspace(-1.0, 1.0, max(n_grid, 2))
    vals = correlation_map(torch.tensor(grid), activation, **kw).numpy() - grid
    roots = []
    for i in range(n_grid - 1):
        a, b = grid[i], grid[i + 1]
        if abs(vals[i]) < 1e-14:
            roots.append(a)
        elif vals[i] * vals[i + 1] < 0:
            roots.append(brentq(lambda r: h(r) - r, a, b, xtol=1e-14))
    roots = [r for r in roots if abs(r - 1.0) > 1e-9]
    roots.append(1.0)
    out = []
    for r in roots:
        slope = float(correlation_map_slope(torch.tensor([r], dtype=torch.float64), activation, **kw)[0])
        stability = "marginal" if abs(slope - 1) < 1e-9 else ("stable" if slope < 1 else "unstable")
        out.append({"rho": float(r), "slope": slope, "stability": stability})
    return out


def chi_1(activation: Activation | None = None, W_std=math.sqrt(2.0), b_std=None, *, q=None, q0: float = 1.0,
          tol: float = 1e-12, max_iter: int = 20000) -> torch.Tensor:
    r"""Order-to-chaos parameter :math:`\chi_1 = \sigma_w^2\,\mathbb E_{u\sim\mathcal N(0, q^*)}[\phi'(u)^2]`, on a grid.

    :math:`\chi_1` is the slope at :math:`\rho = 1` of the correlation map at the variance fixed point
    :math:`q^*` (Price's theorem; :func:`correlation_map_slope`), so it decides the fate of two
    nearby inputs (Poole et al. 2016, arXiv:1606.05340; Schoenholz et al. 2017, arXiv:1611.01232):

    * :math:`\chi_1 < 1`, **ordered**: :math:`\rho = 1` is stable, :math:`1-\rho^{(l)}` shrinks
      geometrically, like :math:`\chi_1^{\,l}`;
    * :math:`\chi_1 > 1`, **chaotic**: :math:`\rho = 1` is unstable, correlations go to a fixed point
      :math:`\rho^* < 1`;
    * :math:`\chi_1 = 1`, the **edge of chaos**.

    ``W_std`` and ``b_std`` are numbers or tensors that broadcast (e.g. a meshgrid, for a phase
    diagram); the result has their broadcast shape, float64. :math:`q^*` comes from iterating the
    variance map :math:`q \mapsto \sigma_w^2\mathbb E[\phi(\sqrt q z)^2] + \sigma_b^2` from ``q0``, on the
    whole grid at once, until the change is below ``tol``:math:`\,(1 + q)` everywhere (a
    ``RuntimeWarning`` says how many points did not converge in ``max_iter`` steps: near the
    critical line the approach is only polynomial), unless ``q`` is given.

    ReLU-type activations (``ABRelu(a, b)``): :math:`\mathbb E[\phi'(u)^2] = (a^2+b^2)/2` for every
    :math:`q`, so :math:`\chi_1 = \sigma_w^2(a^2+b^2)/2` whatever :math:`\sigma_b` -- the phase diagram
    is degenerate (for ReLU, :math:`\sigma_w^2/2`); where :math:`q^*` is infinite (ReLU with
    :math:`\sigma_w \ge \sqrt2` and a bias) the value is still this slope of the map at :math:`\rho = 1`.
    """
    activation = _check_activation(activation)
    W = _as_float_tensor("W_std", W_std)
    b = _as_float_tensor("b_std", 0.0 if b_std is None else b_std)
    if bool((W < 0).any()) or bool((b < 0).any()):
        raise ValueError("W_std and b_std must be >= 0.")
    W, b = torch.broadcast_tensors(W, b)
    W2, b2 = W * W, b * b  # (grid)
    if isinstance(activation, ABRelu):
        return W2 * (activation.a ** 2 + activation.b ** 2) / 2
    max_iter = check_positive_int("max_iter", max_iter)
    if q is None:
        q = torch.full_like(W2, check_nonneg("q0", q0))
        for _ in range(max_iter):
            q_new = W2 * activation.dual(q, q, q, need_dot=False)[0] + b2
            done = (q_new - q).abs() <= tol * (1 + q_new)
            q = q_new
            if bool(done.all()) or not bool(torch.isfinite(q).all()):
                break
        else:
            warnings.warn(f"chi_1: the variance map did not converge in {max_iter} iterations at "
                          f"{int((~done).sum())} of {done.numel()} points (near the critical line the "
                          "approach is polynomial); their value uses the last iterate.", RuntimeWarning,
                          stacklevel=2)
    else:
        q = torch.broadcast_to(_as_float_tensor("q", q), W2.shape)
    _, dot = activation.dual(q, q, q, need_dot=True)  # E[phi'(u)^2], u ~ N(0, q)
    return W2 * dot


# ----------------------------------------------------------------------------------------------
# Normalized kernels and the regression map
# ----------------------------------------------------------------------------------------------
def normalized_kernels(x1, x2=None, depths: int | Sequence[int] = 10, *, activation: Activation | None = None,
                       W_std: float = math.sqrt(2.0), b_std: float | None = None, stable: bool = True,
                       progress: bool | None = None) -> dict:
    r"""Normalized NNGP and NTK of a depth-:math:`L` fully connected network, for several :math:`L`.

    The network: :math:`L` Dense layers (all ``W_std``, ``b_std``; :math:`L-1` hidden layers with
    ``activation`` and a linear readout). Normalization (ours, makes the diagonal exactly 1):

    .. math::
        \bar K(x, x') = K(x, x')/\sqrt{K(x, x)\,K(x', x')}, \qquad K \in \{\Sigma^{(L)}, \Theta^{(L)}\}.

    Bias-free ReLU (default) uses the closed-form angle recursion (:func:`relu_correlation_iterates`,
    stable at thousands of layers); anything else runs ntklib's layer recursion (``Dense``/activation
    ``kernel_fn``) and normalizes.

    Returns a dict: ``depths`` (D,), ``nngp`` and ``ntk`` (D, n1, n2), ``diag_nngp`` and ``diag_ntk``
    (D, n1): the unnormalized diagonals :math:`\Sigma^{(L)}(x, x)`, :math:`\Theta^{(L)}(x, x)`.
    """
    activation = _check_activation(activation)
    W_std = check_nonneg("W_std", W_std)
    b_std = check_nonneg("b_std", b_std, allow_none=True)
    depths_list = [depths] if isinstance(depths, (int, np.integer)) else list(depths)
    if not depths_list:
        raise ValueError("depths must be a positive integer or a non-empty list of them.")
    depths_list = [check_positive_int("depths", int(L)) for L in depths_list]
    x1, x2 = as_inputs(x1, x2, dtype=torch.float64)
    Lmax = max(depths_list)
    wanted = set(depths_list)
    q1 = (x1 * x1).sum(1) / x1.shape[1]  # (n1,)
    if _is_bias_free_relu(activation, b_std) and stable:
        theta1 = pairwise_angles(x1, x2)  # (n1, n2)
        it = relu_correlation_iterates(theta1=theta1, depth=Lmax, keep=depths_list, progress=progress)
        position = {int(L): i for i, L in enumerate(it["depth"])}
        idx = torch.tensor([position[L] for L in depths_list])
        a = W_std ** 2 * activation.b ** 2 / 2
        Ls = torch.tensor(depths_list, dtype=torch.float64)
        # Sigma^(L)(x,x) = W^2 a^(L-1) q0 and Theta^(L)(x,x) = L W^2 a^(L-1) q0, a = W^2 b^2 / 2
        diag_nngp = (W_std ** 2 * a ** (Ls - 1))[:, None] * q1[None]  # (D, n1)
        diag_ntk = (Ls * W_std ** 2 * a ** (Ls - 1))[:, None] * q1[None]  # (D, n1)
        return {"depths": torch.tensor(depths_list), "nngp": it["rho"][idx], "ntk": it["ntk"][idx],
                "diag_nngp": diag_nngp, "diag_ntk": diag_ntk}
    # general path: ntklib's recursion, carrying the two diagonals alongside the cross kernel
    k = Kernel.from_inputs(x1, x2)
    kd1 = Kernel.from_inputs(x1, diagonal=True)
    kd2 = kd1 if x2 is None else Kernel.from_inputs(x2, diagonal=True)
    out = {}
    dense = Dense(1, W_std=W_std, b_std=b_std)
    for L in progress_bar(range(1, Lmax + 1), total=Lmax, desc="depth", progress=progress):
        pre, pd1 = dense.kernel_fn(k), dense.kernel_fn(kd1)
        pd2 = pd1 if x2 is None else dense.kernel_fn(kd2)
        for t in (pre.nngp, pre.ntk, pd1.ntk, pd2.ntk):
            if not bool(torch.isfinite(t).all()):
                raise FloatingPointError(f"the kernel overflowed at depth {L}: W_std={W_std} is off the critical "
                                         "value; use fewer layers or W_std nearer criticality.")
        if L in wanted:
            dn1, dn2, dt1, dt2 = pd1.nngp, pd2.nngp, pd1.ntk, pd2.ntk  # (n1,), (n2,)
            out[L] = (pre.nngp / torch.sqrt(dn1[:, None] * dn2[None]), pre.ntk / torch.sqrt(dt1[:, None] * dt2[None]),
                      dn1, dt1)
        k, kd1 = activation.kernel_fn(pre), activation.kernel_fn(pd1)
        kd2 = kd1 if x2 is None else activation.kernel_fn(pd2)
    return {"depths": torch.tensor(depths_list), "nngp": torch.stack([out[L][0] for L in depths_list]),
            "ntk": torch.stack([out[L][1] for L in depths_list]),
            "diag_nngp": torch.stack([out[L][2] for L in depths_list]),
            "diag_ntk": torch.stack([out[L][3] for L in depths_list])}


def regression_map(k_train_train, k_test_train, *, diag_reg: float = 0.0) -> torch.Tensor:
    r"""The kernel-regression map :math:`R = \kappa(x, X)\,\big(\kappa(X, X) + \lambda I\big)^{-1}`, (n_test, n).

    The kernel-regression predictor is :math:`\mu(x) = R\,y` for any targets :math:`y`, so :math:`R` is
    :func:`ntklib.regression.kernel_regression` applied to the identity matrix as targets (the
    same solver: Cholesky, or the pseudo-inverse with an ``IllConditionedKernelWarning`` for a
    numerically singular Gram matrix). ``diag_reg`` is relative to the mean diagonal, as there.

    Two numbers summarize it: :math:`\max_x\sum_i|R_{xi}|` (its :math:`\infty`-norm, the largest factor
    by which it can amplify targets) and the row sums :math:`R\,1` (1 when the predictor reproduces
    constants). For the normalized NNGP of a deep bias-free ReLU network
    :math:`\det\kappa(X, X) \to 0` while :math:`R \to \frac1n 1^\top` (the mean predictor); for the
    normalized NTK :math:`R \to 1^\top/(n+3)` (docs/depth.md, part A).
    """
    k = torch.as_tensor(k_train_train)
    eye = torch.eye(k.shape[0], dtype=k.dtype if k.is_floating_point() else torch.float64, device=k.device)
    return kernel_regression(k_train_train, k_test_train, eye, diag_reg=diag_reg)  # (n_test, n)
