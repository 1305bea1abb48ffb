r"""Training dynamics in the kernel regime, and training real (or linearized) networks.

Normalizations (used everywhere in this module; derived in notebook 03_lazy_training and
``docs/dynamics.md``):

* **MSE loss** ``loss="mean"`` (default, as neural-tangents):
  :math:`\mathcal L(\theta) = \frac{1}{2N}\sum_{i,a}\big(f_a(x_i;\theta) - y_{ia}\big)^2` with
  :math:`N` = ``y_train.numel()`` (training points times outputs); ``loss="sum"``:
  :math:`\frac12\sum_{i,a}(\dots)^2`, i.e. :math:`N = 1`.
* **Time**: gradient flow :math:`\dot\theta = -\nabla_\theta\mathcal L`; ``k`` steps of gradient
  descent with learning rate :math:`\eta` correspond to :math:`t = \eta k`.
* **Weight decay** :math:`\lambda`: the penalty :math:`\frac{\lambda}{2}\|\theta-\theta_0\|^2` is
  added to :math:`\mathcal L` (decay *towards the initialization*).
* **Kernel**: :math:`\Theta` is the per-output NTK (``arch.kernel(...).ntk``, or
  ``empirical_ntk(..., mode="trace")``); with k outputs the dynamics use :math:`\Theta\otimes I`.

For the linearized network :math:`f^{lin}_\theta(x) = f_0(x) + J_0(x)(\theta-\theta_0)`,
:math:`J_0 = \partial f/\partial\theta|_{\theta_0}` and :math:`\Theta = J_0J_0^\top` constant, the
residual :math:`\theta_t - \theta_0 = J_0(X)^\top\alpha_t` stays in the row space of the Jacobian, and

.. math::
    \dot\alpha = -\tfrac1N\big[(\Theta + N\lambda I)\alpha - (Y - f_0(X))\big], \qquad
    f_t(x) = f_0(x) + \Theta(x, X)\,\alpha_t,

    \alpha_t = (\Theta + N\lambda I)^{-1}\big(I - e^{-(\Theta + N\lambda I)t/N}\big)\big(Y - f_0(X)\big)
    \quad\text{(gradient flow)},

    \alpha_k = (\Theta + N\lambda I)^{-1}\big(I - (I - \tfrac{\eta}{N}(\Theta + N\lambda I))^k\big)\big(Y - f_0(X)\big)
    \quad\text{(gradient descent, exact for the linearized network)}.

At :math:`t=0` this is :math:`f_0`; as :math:`t\to\infty` it is kernel ridge regression on the
residual :math:`Y - f_0(X)` with ridge :math:`N\lambda` (the interpolant when :math:`\lambda=0`),
Jacot et al. 2018 (arXiv:1806.07572), Lee et al. 2019 (arXiv:1902.06720, Sec. 2).
One eigendecomposition :math:`\Theta = V\,\mathrm{diag}(\lambda_i)\,V^\top` serves every time.

Weight decay towards zero, :math:`\frac{\lambda}{2}\|\theta\|^2`, does *not* give ridge regression
around :math:`f_0`: the linear model's value at :math:`\theta = 0` is
:math:`g_0 = f_0 - J_0\theta_0 \neq 0`, and :math:`f_\infty = g_0 + \Theta(x,X)(\Theta + N\lambda
I)^{-1}(Y - g_0(X))` (``train_network(..., weight_decay_center="zero")``; ``docs/dynamics.md``).

Cross-entropy (``cross_entropy_flow``): :math:`\mathcal L = \frac1n\sum_i \ell(f(x_i), y_i)` (mean
over the n training points), :math:`\dot f(x) = -\frac1n\Theta(x, X)\big(p(f(X)) - Y\big)` with
:math:`p` the sigmoid (binary, :math:`y\in\{0,1\}`) or the row softmax (one-hot :math:`Y`),
integrated by classical RK4 with a fixed step.
"""
from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, jvp, vjp
from torch.func import linearize as linearize_fn

from .validation import as_inputs, check_choice, check_nonneg
from ._progress import progress_bar
from .empirical import empirical_ntk
from .regression import (_as_kernel_matrix, _as_outputs, _as_targets, _pinv_tolerance, _symmetrize,
                         _warn_singular)

__all__ = ["Prediction", "gradient_flow_mse", "discrete_gradient_descent_mse", "cross_entropy_flow",
           "LinearizedModule", "linearize", "TrainingHistory", "train_network"]

_LOSSES = ("mean", "sum")


@dataclass(frozen=True)
class Prediction:
    """Function values at times ``t``: ``train`` has shape ``t.shape + y_train.shape``, ``test``
    ``t.shape + (n_test,) + y_train.shape[1:]`` (None without ``k_test_train``)."""
    t: torch.Tensor
    train: torch.Tensor
    test: torch.Tensor | None = None


# ---------------------------------------------------------------------------------------------
# shared parsing
# ---------------------------------------------------------------------------------------------
class _Problem:
    """Validated kernels, targets and initial outputs, in the kernel's dtype and device."""

    def __init__(self, k_train_train, y_train, fx_train_0, k_test_train, fx_test_0):
        k = _as_kernel_matrix("k_train_train", k_train_train, square=True)
        self.k = _symmetrize("k_train_train", k)  # (n, n)
        n = k.shape[0]
        self.y, self.was_1d = _as_targets("y_train", y_train, n, k)  # (n, k)
        self.f0 = _as_outputs("fx_train_0", fx_train_0, tuple(self.y.shape), k)  # (n, k)
        self.kt = None if k_test_train is None else _as_kernel_matrix("k_test_train", k_test_train, like=k,
                                                                     shape=(None, n))  # (n_test, n)
        self.ft0 = None
        if self.kt is not None:
            self.ft0 = _as_outputs("fx_test_0", fx_test_0, (self.kt.shape[0], self.y.shape[1]), k)  # (n_test, k)

    def eigh(self):
        evals, evecs = torch.linalg.eigh(self.k)  # ascending
        lmax = float(evals.abs().max()) if evals.numel() else 0.0
        if float(evals.min()) < -1e-6 * max(lmax, 1e-300):
            lmin = float(evals.min())
            warnings.warn(f"k_train_train is not positive semi-definite (smallest eigenvalue {lmin:.3g}, "
                          f"largest {lmax:.3g}); negative eigenvalues are treated as 0.", stacklevel=3)
        return evals.clamp_min(0.0), evecs

    def normalization(self, loss: str) -> float:
        check_choice("loss", loss, _LOSSES)
        return float(self.y.numel()) if loss == "mean" else 1.0

    def assemble(self, t: torch.Tensor, gain: torch.Tensor, evals: torch.Tensor, evecs: torch.Tensor) -> Prediction:
        """f_t = f0 + K_{.X} V diag(gain_i(t)) V^T (y - f0) for train (K V = V diag(lambda)) and test."""
        r = evecs.T @ (self.y - self.f0)  # (n, k)  residual in the eigenbasis
        coef = gain[..., :, None] * r  # (T, n, k)
        train = self.f0 + evecs @ (evals[:, None] * coef)  # (T, n, k)
        test = None
        if self.kt is not None:
            test = self.ft0 + (self.kt @ evecs) @ coef  # (T, n_test, k)
        shape = tuple(t.shape)
        train = train.reshape(shape + train.shape[-2:])
        test = None if test is None else test.reshape(shape + test.shape[-2:])
        if self.was_1d:
            train = train[..., 0]
            test = None if test is None else test[..., 0]
        return Prediction(t=t, train=train, test=test)


def _as_times(name: str, t: Any, like: torch.Tensor, *, integer: bool = False) -> torch.Tensor:
    if isinstance(t, torch.Tensor):
        tt = t.detach().to(device=like.device, dtype=like.dtype)
    else:
        try:
            tt = torch.as_tensor(np.asarray(t, dtype=np.float64), dtype=like.dtype, device=like.device)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a number or a 1-D sequence of numbers; got {t!r}.") from None
    if tt.ndim > 1:
        raise ValueError(f"{name} must be a scalar or 1-D; got shape {tuple(tt.shape)}.")
    if bool(torch.isnan(tt).any()) or bool((tt < 0).any()):
        raise ValueError(f"{name} must be >= 0 (and not NaN); got {t!r}.")
    if integer:
        if bool(torch.isinf(tt).any()) or bool((tt != tt.round()).any()):
            raise ValueError(f"{name} must be non-negative integers (numbers of steps); got {t!r}.")
    return tt


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


# ---------------------------------------------------------------------------------------------
# closed forms (MSE)
# ---------------------------------------------------------------------------------------------
def gradient_flow_mse(k_train_train, y_train, t, *, fx_train_0=0.0, k_test_train=None, fx_test_0=0.0,
                      weight_decay: float = 0.0, loss: str = "mean") -> Prediction:
    r"""Gradient flow on MSE in the kernel regime, in closed form, at many times at once.

    .. math::
        f_t(x) = f_0(x) + \Theta(x, X)\,V\,\mathrm{diag}\Big(\frac{1 - e^{-(\lambda_i + N\lambda)t/N}}
        {\lambda_i + N\lambda}\Big)V^\top\big(Y - f_0(X)\big),

    with :math:`\Theta(X, X) = V\mathrm{diag}(\lambda_i)V^\top` (one ``eigh`` for all times), the
    loss :math:`\frac{1}{2N}\sum(f - y)^2` (``loss="mean"``, :math:`N` = ``y_train.numel()``) or
    :math:`\frac12\sum` (``loss="sum"``, :math:`N=1`), the weight decay
    :math:`\frac{\lambda}{2}\|\theta-\theta_0\|^2` and time :math:`t` = learning rate x steps. On the
    training set the same formula holds with :math:`\Theta(X,X)V = V\mathrm{diag}(\lambda_i)`, so
    without weight decay :math:`f_t(X) = Y + V e^{-\mathrm{diag}(\lambda) t/N}V^\top(f_0(X) - Y)`.
    ``t = inf`` gives kernel (ridge) regression; a singular :math:`\Theta` then uses the
    pseudo-inverse with an :class:`~ntklib.regression.IllConditionedKernelWarning` (exact for an
    NTK, see :mod:`ntklib.regression`). Module docstring: derivation and references.

    Args:
      k_train_train: :math:`\Theta(X, X)` (n, n).
      y_train: (n,) or (n, k).
      t: a time >= 0 or a 1-D sequence/tensor of times (``math.inf`` allowed).
      fx_train_0: :math:`f_0(X)`, broadcastable to ``y_train`` (default 0).
      k_test_train: :math:`\Theta(X_*, X)` (n_test, n) for test predictions (optional).
      fx_test_0: :math:`f_0(X_*)`, broadcastable to (n_test, k) (default 0).
      weight_decay: :math:`\lambda \ge 0`.
      loss: ``"mean"`` or ``"sum"``.

    Returns:
      :class:`Prediction` with ``train`` of shape ``t.shape + y_train.shape`` and ``test`` of shape
      ``t.shape + (n_test,) + y_train.shape[1:]``.
    """
    p = _Problem(k_train_train, y_train, fx_train_0, k_test_train, fx_test_0)
    norm = p.normalization(loss)
    shift = norm * check_nonneg("weight_decay", weight_decay)
    tt = _as_times("t", t, p.k)
    evals, evecs = p.eigh()
    rate = evals + shift  # (n,)
    tf = tt.reshape(-1, 1)  # (T, 1)
    finite = torch.isfinite(tf)
    tf0 = torch.where(finite, tf, torch.zeros_like(tf))
    gain = (tf0 / norm) * _relative_expm1(rate * tf0 / norm)  # (T, n): (1 - e^{-rate t/N}) / rate
    if not bool(finite.all()):
        tol = _pinv_tolerance(rate)
        keep = rate > tol
        if bool((~keep).any()) or float(rate.max()) > (1e-3 / torch.finfo(rate.dtype).eps) * float(rate.min()):
            _warn_singular("k_train_train" + (" + N * weight_decay * I" if shift else ""), rate, tol,
                           int((~keep).sum()))
        inf_gain = torch.where(keep, 1.0 / torch.where(keep, rate, torch.ones_like(rate)), torch.zeros_like(rate))
        gain = torch.where(finite, gain, inf_gain.expand_as(gain))
    return p.assemble(tt, gain, evals, evecs)


def discrete_gradient_descent_mse(k_train_train, y_train, steps, learning_rate: float, *, fx_train_0=0.0,
                                  k_test_train=None, fx_test_0=0.0, weight_decay: float = 0.0,
                                  loss: str = "mean") -> Prediction:
    r"""``steps`` of full-batch gradient descent on MSE in the kernel regime, in closed form.

    Exact for a linearized network (and for any model whose tangent kernel is constant):

    .. math::
        f_k(x) = f_0(x) + \Theta(x, X)\,V\,\mathrm{diag}\Big(\frac{1 - (1 - \eta(\lambda_i + N\lambda)/N)^k}
        {\lambda_i + N\lambda}\Big)V^\top\big(Y - f_0(X)\big),

    i.e. :math:`k` iterations of :math:`f \leftarrow f - \frac{\eta}{N}\Theta(f - Y)` (plus the weight
    decay term). Same normalizations as :func:`gradient_flow_mse`; ``Prediction.t`` holds
    :math:`\eta k`. Gradient descent converges only for :math:`\eta < 2N/(\lambda_{max} + N\lambda)`
    (see :func:`ntklib.spectral.max_learning_rate`); beyond it the modes above the threshold grow,
    and a warning says so.

    Args:
      steps: a non-negative integer or a 1-D sequence of them.
      learning_rate: :math:`\eta > 0`.
      (others as in :func:`gradient_flow_mse`)
    """
    p = _Problem(k_train_train, y_train, fx_train_0, k_test_train, fx_test_0)
    norm = p.normalization(loss)
    shift = norm * check_nonneg("weight_decay", weight_decay)
    eta = check_nonneg("learning_rate", learning_rate)
    if eta == 0:
        raise ValueError("learning_rate must be > 0; got 0.")
    kk = _as_times("steps", steps, p.k, integer=True)
    evals, evecs = p.eigh()
    rate = evals + shift
    a = eta * rate / norm  # (n,)
    if float(a.max()) >= 2.0:
        warnings.warn(f"learning_rate={eta:g} is at or above the stability limit 2N/lambda_max = "
                      f"{2 * norm / float(rate.max()):.4g}: gradient descent oscillates or diverges in the top "
                      "eigen-direction(s).", stacklevel=2)
    gain = (eta / norm) * _relative_power(a[None, :], kk.reshape(-1, 1))  # (T, n)
    return p.assemble(eta * kk, gain, evals, evecs)


# ---------------------------------------------------------------------------------------------
# cross-entropy (logistic / softmax) dynamics, integrated numerically
# ---------------------------------------------------------------------------------------------
def cross_entropy_flow(k_train_train, y_train, t, *, fx_train_0=0.0, k_test_train=None, fx_test_0=0.0,
                       link: str | None = None, dt: float | None = None,
                       progress: bool | None = None) -> Prediction:
    r"""Gradient flow on the cross-entropy loss in the kernel regime, integrated with RK4.

    Loss :math:`\mathcal L = \frac1n\sum_{i=1}^n \ell(f(x_i), y_i)` (mean over the n training
    points) with

    * ``link="sigmoid"`` (binary; ``y_train`` (n,) or (n, 1) in [0, 1]):
      :math:`\ell = -y\log\sigma(f) - (1-y)\log(1-\sigma(f))`, :math:`\partial\ell/\partial f = \sigma(f) - y`;
    * ``link="softmax"`` (``y_train`` (n, k) rows of probabilities, e.g. one-hot):
      :math:`\ell = -\sum_a y_a \log\mathrm{softmax}(f)_a`, :math:`\partial\ell/\partial f = \mathrm{softmax}(f) - y`.

    With a constant kernel the function-space ODE is closed (seed 002, problem 5):

    .. math::
        \frac{d f(X)}{dt} = -\frac1n\Theta(X,X)\big(p(f(X)) - Y\big), \qquad
        \frac{d f(X_*)}{dt} = -\frac1n\Theta(X_*,X)\big(p(f(X)) - Y\big).

    It has no closed form and, for separable labels in {0, 1}, no fixed point: the outputs grow
    like :math:`\log t`. Classical fourth-order Runge--Kutta with the fixed step ``dt``; default
    ``dt = 0.5 n / lambda_max`` (the Jacobian of the right-hand side has norm at most
    :math:`\lambda_{max}/(2n)`, so each step is well inside RK4's stability region). Each requested
    time is hit exactly (the last step before it is shortened). Time unit as for MSE: learning
    rate x steps.

    Args:
      t: a time >= 0 or a 1-D sequence of them (any order; finite).
      link: ``"sigmoid"`` or ``"softmax"``; default sigmoid for one output column, softmax otherwise.
      dt: the RK4 step (> 0).
      progress: progress bar over the integration steps.
    """
    p = _Problem(k_train_train, y_train, fx_train_0, k_test_train, fx_test_0)
    kcols = p.y.shape[1]
    if link is None:
        link = "sigmoid" if kcols == 1 else "softmax"
    check_choice("link", link, ("sigmoid", "softmax"))
    if link == "softmax" and kcols < 2:
        raise ValueError("link='softmax' needs y_train of shape (n, k) with k >= 2 (one-hot rows); "
                         "for binary labels use link='sigmoid'.")
    if bool((p.y < 0).any()) or bool((p.y > 1).any()):
        raise ValueError("y_train must hold probabilities in [0, 1] (labels 0/1 or one-hot rows) for the "
                         "cross-entropy loss.")
    tt = _as_times("t", t, p.k)
    if bool(torch.isinf(tt).any()):
        raise ValueError("t must be finite for cross_entropy_flow (the outputs grow without bound).")
    n = p.k.shape[0]
    lmax = float(torch.linalg.eigvalsh(p.k).max())
    if dt is None:
        dt = 0.5 * n / max(lmax, 1e-300)
    dt = check_nonneg("dt", dt)
    if dt == 0:
        raise ValueError("dt must be > 0.")

    prob = torch.sigmoid if link == "sigmoid" else (lambda f: torch.softmax(f, dim=-1))
    kt = p.kt

    def rhs(f_train):  # -> (d f_train/dt, d f_test/dt)
        g = (prob(f_train) - p.y) / n  # (n, k)
        return -(p.k @ g), (None if kt is None else -(kt @ g))

    flat = tt.reshape(-1)
    order = torch.argsort(flat)
    f_tr, f_te = p.f0.clone(), (None if kt is None else p.ft0.clone())
    out_tr = torch.empty((flat.numel(),) + tuple(p.y.shape), dtype=p.k.dtype, device=p.k.device)
    out_te = None if kt is None else torch.empty((flat.numel(),) + tuple(p.ft0.shape), dtype=p.k.dtype,
                                                   device=p.k.device)
    total = int(math.ceil(float(flat.max()) / dt)) if flat.numel() else 0
    bar = progress_bar(range(total), total=total, desc="RK4", progress=progress)
    it = iter(bar)
    now = 0.0
    for idx in order.tolist():
        target = float(flat[idx])
        while now < target:
            h = min(dt, target - now)
            k1, q1 = rhs(f_tr)
            k2, q2 = rhs(f_tr + 0.5 * h * k1)
            k3, q3 = rhs(f_tr + 0.5 * h * k2)
            k4, q4 = rhs(f_tr + h * k3)
            if kt is not None:
                f_te = f_te + (h / 6) * (q1 + 2 * q2 + 2 * q3 + q4)
            f_tr = f_tr + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
            now = now + h if target - now > h else target
            next(it, None)
        out_tr[idx] = f_tr
        if kt is not None:
            out_te[idx] = f_te
    shape = tuple(tt.shape)
    train = out_tr.reshape(shape + tuple(p.y.shape))
    test = None if kt is None else out_te.reshape(shape + tuple(p.ft0.shape))
    if p.was_1d:
        train = train[..., 0]
        test = None if test is None else test[..., 0]
    return Prediction(t=tt, train=train, test=test)


# ---------------------------------------------------------------------------------------------
# linearized networks
# ---------------------------------------------------------------------------------------------
class LinearizedModule(nn.Module):
    r"""First-order Taylor expansion of ``model`` around its current parameters :math:`\theta_0`.

    :math:`f^{lin}_\theta(x) = f_{\theta_0}(x) + J_{\theta_0}(x)\,(\theta - \theta_0)`, evaluated with one
    forward-mode product ``torch.func.jvp`` (no Jacobian is stored). Its parameters start at
    :math:`\theta_0` (a copy; ``model`` is not changed) and are ``params.0, params.1, ...`` in the order
    of ``model.named_parameters()``. Its tangent kernel is the empirical NTK of ``model`` at
    :math:`\theta_0`, whatever the parameters (Lee et al. 2019, Sec. 2).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}.")
        self.base = copy.deepcopy(model)
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.names = [name for name, _ in model.named_parameters()]
        if not self.names:
            raise ValueError("model has no parameters to linearize around.")
        self.params = nn.ParameterList([nn.Parameter(p.detach().clone()) for _, p in model.named_parameters()])

    def theta0(self) -> dict[str, torch.Tensor]:
        return {name: p for name, p in self.base.named_parameters()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta0 = {name: p.detach() for name, p in self.base.named_parameters()}
        delta = {name: p - theta0[name] for name, p in zip(self.names, self.params)}
        out0, tangent = jvp(lambda q: functional_call(self.base, q, (x,)), (theta0,), (delta,))
        return out0 + tangent


def linearize(model: nn.Module) -> LinearizedModule:
    """The linearized network of ``model`` around its current parameters (:class:`LinearizedModule`)."""
    return LinearizedModule(model)


# ---------------------------------------------------------------------------------------------
# training real networks
# ---------------------------------------------------------------------------------------------
@dataclass
class TrainingHistory:
    r"""What :func:`train_network` recorded.

    Per recorded step (length R): ``steps``, ``t`` (= learning_rate x steps), ``train_loss`` and
    ``test_loss`` (:math:`\frac{1}{2N}\sum(f - y)^2` with N = number of target entries, without the
    weight-decay term), ``fx_train`` (R, n_train[, k]), ``fx_test``, ``fx_probe``,
    ``weight_change`` :math:`\|\theta_t-\theta_0\|_2` and ``weight_change_rel``
    :math:`\|\theta_t-\theta_0\|_2/\|\theta_0\|_2`. At the kernel checkpoints (length C):
    ``ntk_steps``, ``ntks`` (C, m, m) the empirical NTK (mode "trace") of the *unscaled* network
    on ``ntk_inputs``, and ``ntk_change_rel`` :math:`\|\Theta_t-\Theta_0\|_F/\|\Theta_0\|_F`.
    ``params`` are the final parameters (a dict), ``model`` the network that was trained (at
    :math:`\theta_0`; for ``linearize=True`` a :class:`LinearizedModule`) and ``final_model`` a copy
    at the final parameters.
    """
    steps: torch.Tensor
    t: torch.Tensor
    train_loss: torch.Tensor
    test_loss: torch.Tensor | None
    fx_train: torch.Tensor
    fx_test: torch.Tensor | None
    fx_probe: torch.Tensor | None
    weight_change: torch.Tensor
    weight_change_rel: torch.Tensor
    ntk_steps: torch.Tensor
    ntks: torch.Tensor
    ntk_change_rel: torch.Tensor
    params: dict = field(repr=False)
    model: nn.Module = field(repr=False)
    final_model: nn.Module = field(repr=False)
    learning_rate: float = 0.0
    output_scale: float = 1.0


def _as_step_list(name: str, steps_spec, total: int, default_count: int) -> list[int]:
    if steps_spec is None:
        grid = np.unique(np.round(np.linspace(0, total, min(total + 1, default_count))).astype(int))
        return grid.tolist()
    arr = np.asarray(steps_spec).reshape(-1)
    if arr.size == 0 or not np.issubdtype(arr.dtype, np.number) or np.any(arr != np.round(arr)):
        raise ValueError(f"{name} must be a sequence of integers in [0, steps]; got {steps_spec!r}.")
    arr = np.unique(arr.astype(int))
    if arr.min() < 0 or arr.max() > total:
        raise ValueError(f"{name} must lie in [0, steps={total}]; got values from {arr.min()} to {arr.max()}.")
    return arr.tolist()


def train_network(model, x_train, y_train, *, learning_rate: float, steps: int, x_test=None, y_test=None,
                  x_probe=None, record_steps=None, ntk_steps=None, ntk_inputs=None, linearize: bool = False,
                  output_scale: float = 1.0, center: bool = False, weight_decay: float = 0.0,
                  weight_decay_center: str = "init", seed: int = 0, dtype: torch.dtype = torch.float64,
                  device=None, progress: bool | None = None) -> TrainingHistory:
    r"""Full-batch gradient descent on MSE for a finite network (or its linearization), with records.

    The model trained is :math:`f_\alpha(x;\theta) = \alpha\,f(x;\theta)` or, with ``center=True``,
    :math:`\alpha\,(f(x;\theta) - f(x;\theta_0))` (Chizat, Oyallon & Bach 2019, arXiv:1812.07956),
    on the loss

    .. math::
        \mathcal L(\theta) = \frac{1}{2N\alpha^2}\sum_{i,a}\big(f_{\alpha,a}(x_i;\theta) - y_{ia}\big)^2
        + \frac{\lambda}{2}\|\theta - \theta_c\|^2,

    :math:`N` = ``y_train.numel()``, :math:`\theta_c = \theta_0` (``weight_decay_center="init"``) or 0
    (``"zero"``), with :math:`\theta \leftarrow \theta - \eta\nabla\mathcal L` for ``steps`` steps.
    The :math:`1/\alpha^2` makes the function-space dynamics at initialization independent of
    :math:`\alpha` (:math:`\dot f_\alpha = -\frac1N\Theta(f_\alpha - y)`, the tangent kernel of
    :math:`f_\alpha` being :math:`\alpha^2\Theta`), while the weights move :math:`O(1/\alpha)`: large
    :math:`\alpha` is the lazy regime, small :math:`\alpha` the rich one. With :math:`\alpha = 1`,
    ``center=False`` this is plain GD on :math:`\frac{1}{2N}\sum(f-y)^2`, whose kernel-regime limit is
    :func:`discrete_gradient_descent_mse` with the network's :math:`\Theta_0` and :math:`f_0`.
    The standard parameterization is chosen in the architecture
    (``Dense(..., parameterization="standard")``); its NTK grows with the width, so the learning
    rate must shrink like 1/width.

    Args:
      model: an ntklib architecture (built with ``arch.module(d, seed=seed, dtype=dtype)``) or any
        ``torch.nn.Module`` mapping (n, d) to (n, k) or (n,) (used as is, never modified).
      x_train, y_train: (n, d) inputs and (n,) or (n, k) targets.
      learning_rate, steps: :math:`\eta > 0` and the number of steps.
      x_test, y_test: optional test set (loss and outputs recorded); ``y_test`` may be None.
      x_probe: optional inputs (m, d) on which the function is recorded (e.g. a plotting grid).
      record_steps: steps at which to record (default: about 101 evenly spaced, always 0 and ``steps``).
      ntk_steps: steps at which the empirical NTK is computed (default ``[0, steps]``).
      ntk_inputs: inputs for the NTK (default ``x_train``).
      linearize: train the first-order Taylor expansion :math:`f_0 + J_0(\theta-\theta_0)` instead (forward
        products ``torch.func.jvp``, traced once by ``torch.func.linearize`` for runs of 300 steps or more;
        gradients :math:`J_0^\top r` from one cached ``torch.func.vjp`` at :math:`\theta_0`); its kernel is
        constant, so ``ntk_change_rel`` is 0.
      output_scale, center: :math:`\alpha > 0` and whether to subtract :math:`f(x;\theta_0)`.
      weight_decay, weight_decay_center: :math:`\lambda \ge 0` and :math:`\theta_c` (``"init"`` or ``"zero"``).
      seed, dtype, device: used only when ``model`` is an architecture.
      progress: progress bar (default: on in notebooks/terminals, off in CI and under nbgrader).
    """
    from .layers import Layer

    eta = check_nonneg("learning_rate", learning_rate)
    if eta == 0:
        raise ValueError("learning_rate must be > 0; got 0.")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0; got {steps!r}.")
    steps = int(steps)
    alpha = check_nonneg("output_scale", output_scale)
    if alpha == 0:
        raise ValueError("output_scale must be > 0; got 0.")
    lam = check_nonneg("weight_decay", weight_decay)
    check_choice("weight_decay_center", weight_decay_center, ("init", "zero"))

    if isinstance(model, Layer):
        xt, _ = as_inputs(x_train, None, dtype=dtype, names=("x_train", "x2"))
        if device is not None:
            xt = xt.to(device)
        net = model.module(xt.shape[1], seed=seed, dtype=dtype, device=xt.device)
    elif isinstance(model, nn.Module):
        net = model
    else:
        raise TypeError(f"model must be an ntklib architecture or a torch.nn.Module; got {type(model).__name__}.")
    try:
        p0 = next(net.parameters())
    except StopIteration:
        raise ValueError("model has no parameters to train.") from None
    mdev, mdtype = p0.device, p0.dtype

    def inputs(name, x):
        if x is None:
            return None
        t, _ = as_inputs(x, None, dtype=mdtype, names=(name, "x2"))
        return t.to(mdev)

    x_tr, x_te, x_pr = inputs("x_train", x_train), inputs("x_test", x_test), inputs("x_probe", x_probe)
    x_ntk = x_tr if ntk_inputs is None else inputs("ntk_inputs", ntk_inputs)
    y_tr, was_1d = _as_targets("y_train", y_train, x_tr.shape[0], p0.detach())  # (n, k)
    kout = y_tr.shape[1]
    y_te = None
    if y_test is not None:
        if x_te is None:
            raise ValueError("y_test was given without x_test.")
        y_te, _ = _as_targets("y_test", y_test, x_te.shape[0], p0.detach())
        if y_te.shape[1] != kout:
            raise ValueError(f"y_test must have {kout} columns like y_train; got shape {tuple(y_te.shape)}.")

    # parameters with requires_grad=False stay frozen and are not counted in the weight change
    names = [name for name, p in net.named_parameters() if p.requires_grad]
    if not names:
        raise ValueError("model has no trainable parameters (all have requires_grad=False).")
    theta0 = {name: p.detach().clone() for name, p in net.named_parameters() if p.requires_grad}
    buffers = {name: b for name, b in net.named_buffers()}
    center_params = theta0 if weight_decay_center == "init" else {k: torch.zeros_like(v) for k, v in theta0.items()}
    theta0_norm = float(torch.sqrt(sum((v ** 2).sum() for v in theta0.values())))
    base = copy.deepcopy(net)  # parameters are loaded into it for kernels and the final model

    def raw(params, x):  # f(x; params), (m, kout)
        out = functional_call(base, (params, buffers), (x,))
        if out.numel() != x.shape[0] * kout:
            raise ValueError(f"the model's output has shape {tuple(out.shape)} but y_train needs {kout} "
                             f"output(s) per input ({tuple(y_tr.shape)}).")
        return out.reshape(x.shape[0], kout)

    inputs_by_key = {"train": x_tr, "test": x_te, "probe": x_pr}
    with torch.no_grad():
        f_init = {key: raw(theta0, x) for key, x in inputs_by_key.items() if x is not None}
    tangents = {}

    def tangent_fn(key):
        """delta -> J(x; theta0) delta, by torch.func.jvp; for long runs (>= 300 steps) the jvp is traced
        once with torch.func.linearize, which is several times cheaper per call (same numbers)."""
        if key not in tangents:
            x = inputs_by_key[key]
            f = lambda q: raw(q, x)  # noqa: E731
            tangents[key] = lambda delta: jvp(f, (theta0,), (delta,))[1]
            if steps >= 300:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        _, tangents[key] = linearize_fn(f, theta0)
                except Exception:  # a model that cannot be traced keeps the plain jvp
                    pass
        return tangents[key]

    def fn(params, key):  # f or f_lin on the inputs named by key, (m, kout)
        if not linearize:
            return raw(params, inputs_by_key[key])
        delta = {k: params[k] - theta0[k] for k in names}
        return f_init[key] + tangent_fn(key)(delta)

    def scaled(params, key):  # f_alpha
        out = fn(params, key)
        if center:
            out = out - f_init[key]
        return alpha * out

    n_norm = float(y_tr.numel())
    if linearize:  # the linearized model's gradient J0^T r, from one cached pullback at theta0
        _, pullback = vjp(lambda q: raw(q, x_tr), theta0)

    def gradient(params):
        """dL/dtheta = J^T (f_alpha - y) / (N alpha) + lambda (theta - theta_c)."""
        if linearize:
            with torch.no_grad():
                r = scaled(params, "train") - y_tr  # (n, kout)
            (g,) = pullback(r / (n_norm * alpha))
        else:
            leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
            out = raw(leaves, x_tr)  # (n, kout)
            with torch.no_grad():
                r = alpha * (out - f_init["train"] if center else out) - y_tr
            gs = torch.autograd.grad(out, [leaves[k] for k in names], grad_outputs=r / (n_norm * alpha))
            g = dict(zip(names, gs))
        if lam:
            g = {k: g[k] + lam * (params[k] - center_params[k]) for k in names}
        return g

    rec = set(_as_step_list("record_steps", record_steps, steps, 101))
    ntk_rec = set(_as_step_list("ntk_steps", [0, steps] if ntk_steps is None else ntk_steps, steps, 2))

    def load(params):
        with torch.no_grad():
            for name, p in base.named_parameters():
                if name in params:
                    p.copy_(params[name])

    ntk_cache = {}

    def kernel_at(params):
        if linearize:  # constant: the network's NTK at theta0
            if "k" not in ntk_cache:
                load(theta0)
                ntk_cache["k"] = empirical_ntk(base, x_ntk, mode="trace")
            return ntk_cache["k"]
        load(params)
        return empirical_ntk(base, x_ntk, mode="trace")

    recs = {k: [] for k in ("steps", "train_loss", "test_loss", "fx_train", "fx_test", "fx_probe", "dw")}
    ntk_list, ntk_at = [], []
    params = {k: v.clone() for k, v in theta0.items()}

    def record(step, params):
        with torch.no_grad():
            f_tr = scaled(params, "train")
            recs["steps"].append(step)
            recs["fx_train"].append(f_tr)
            recs["train_loss"].append(((f_tr - y_tr) ** 2).sum() / (2 * n_norm))
            if x_te is not None:
                f_te = scaled(params, "test")
                recs["fx_test"].append(f_te)
                if y_te is not None:
                    recs["test_loss"].append(((f_te - y_te) ** 2).sum() / (2 * y_te.numel()))
            if x_pr is not None:
                recs["fx_probe"].append(scaled(params, "probe"))
            dw = torch.sqrt(sum(((params[k] - theta0[k]) ** 2).sum() for k in names))
            recs["dw"].append(dw)

    for step in progress_bar(range(steps + 1), total=steps + 1, desc="training", progress=progress):
        if step in rec:
            record(step, params)
        if step in ntk_rec:
            ntk_list.append(kernel_at(params).detach())
            ntk_at.append(step)
        if step == steps:
            break
        g = gradient(params)
        with torch.no_grad():
            params = {k: params[k] - eta * g[k] for k in names}

    ntks = torch.stack(ntk_list)  # (C, m, m)
    ntk0_norm = torch.linalg.matrix_norm(ntks[0])
    ntk_change = torch.linalg.matrix_norm(ntks - ntks[0]) / ntk0_norm  # (C,)

    def stack(key):
        if not recs[key]:
            return None
        s = torch.stack(recs[key])
        return s[..., 0] if (was_1d and s.ndim == 3) else s

    load(params)
    model_out = LinearizedModule(net) if linearize else net
    final = copy.deepcopy(model_out)
    with torch.no_grad():
        if linearize:
            full = dict(zip(final.names, final.params))
            for name, p in full.items():
                if name in params:
                    p.copy_(params[name])
        else:
            for name, p in final.named_parameters():
                if name in params:
                    p.copy_(params[name])
    dw = torch.stack(recs["dw"])
    steps_t = torch.tensor(recs["steps"], device=mdev)
    return TrainingHistory(
        steps=steps_t, t=eta * steps_t.to(mdtype), train_loss=torch.stack(recs["train_loss"]),
        test_loss=stack("test_loss"), fx_train=stack("fx_train"), fx_test=stack("fx_test"),
        fx_probe=stack("fx_probe"), weight_change=dw, weight_change_rel=dw / theta0_norm,
        ntk_steps=torch.tensor(ntk_at, device=mdev), ntks=ntks, ntk_change_rel=ntk_change,
        params=params, model=model_out, final_model=final, learning_rate=eta, output_scale=alpha)
