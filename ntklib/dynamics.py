r"""Training dynamics in the kernel regime, in closed form (MSE) or integrated (cross-entropy).

Training real or linearized networks with records of their weights and kernels is
:mod:`ntklib.training` (``train_network``, ``linearize``; also importable from here).

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

import math
import warnings
from dataclasses import dataclass

import torch

from ._progress import progress_bar
from .linalg import KernelEigen
from .validation import (as_kernel_matrix, as_outputs, as_symmetric_kernel, as_targets, as_times, check_choice,
                         check_nonneg)

__all__ = ["LOSSES", "loss_normalization", "Prediction", "gradient_flow_mse", "discrete_gradient_descent_mse",
           "cross_entropy_flow", "LinearizedModule", "linearize", "TrainingHistory", "train_network"]

#: The most RK4 steps :func:`cross_entropy_flow` takes for one call (a few seconds for small kernels).
MAX_RK4_STEPS = 200_000

#: The two MSE normalizations: ``"mean"`` divides the squared error by N = ``y.numel()``, ``"sum"`` does not.
LOSSES = ("mean", "sum")


def loss_normalization(loss: str, n_targets: int) -> float:
    r""":math:`N` of the loss :math:`\frac{1}{2N}\sum(f - y)^2`: ``n_targets`` for ``loss="mean"``, 1 for ``"sum"``."""
    check_choice("loss", loss, LOSSES)
    return float(n_targets) if loss == "mean" else 1.0


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
        self.k = k = as_symmetric_kernel("k_train_train", k_train_train)  # (n, n)
        n = k.shape[0]
        self.y, self.was_1d = as_targets("y_train", y_train, n, k)  # (n, k)
        self.f0 = as_outputs("fx_train_0", fx_train_0, tuple(self.y.shape), k)  # (n, k)
        self.kt = None if k_test_train is None else as_kernel_matrix("k_test_train", k_test_train, like=k,
                                                                    shape=(None, n))  # (n_test, n)
        self.ft0 = None
        if self.kt is not None:
            self.ft0 = as_outputs("fx_test_0", fx_test_0, (self.kt.shape[0], self.y.shape[1]), k)  # (n_test, k)

    def assemble(self, t: torch.Tensor, gain: torch.Tensor, eig: KernelEigen) -> Prediction:
        """f_t = f0 + K_{.X} V diag(gain_i(t)) V^T (y - f0) for train (K V = V diag(lambda)) and test."""
        evals, evecs = eig.eigenvalues, eig.eigenvectors
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
    norm = loss_normalization(loss, p.y.numel())
    shift = norm * check_nonneg("weight_decay", weight_decay)
    tt = as_times("t", t, p.k)
    eig = KernelEigen.of(p.k, name="k_train_train")
    gain = eig.flow_gain(tt, norm, shift=shift)  # (T, n): (1 - e^{-(lambda + shift) t/N}) / (lambda + shift)
    return p.assemble(tt, gain, eig)


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
    norm = loss_normalization(loss, p.y.numel())
    shift = norm * check_nonneg("weight_decay", weight_decay)
    eta = check_nonneg("learning_rate", learning_rate)
    if eta == 0:
        raise ValueError("learning_rate must be > 0; got 0.")
    kk = as_times("steps", steps, p.k, integer=True)
    eig = KernelEigen.of(p.k, name="k_train_train")
    rate_max = float(eig.eigenvalues.max()) + shift
    if eta * rate_max / norm >= 2.0:
        warnings.warn(f"learning_rate={eta:g} is at or above the stability limit 2N/lambda_max = "
                      f"{2 * norm / rate_max:.4g}: gradient descent oscillates or diverges in the top "
                      "eigen-direction(s).", stacklevel=2)
    gain = eig.descent_gain(kk, eta, norm, shift=shift)  # (T, n)
    return p.assemble(eta * kk, gain, eig)


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
    rate x steps. At most :data:`MAX_RK4_STEPS` steps per call (a clear error beyond).

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
    tt = as_times("t", t, p.k)
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
    if total > MAX_RK4_STEPS:
        raise ValueError(f"t up to {float(flat.max()):.4g} needs {total:.3g} RK4 steps of dt = {dt:.4g}; "
                         f"cross_entropy_flow takes at most {MAX_RK4_STEPS}. Use a smaller t (the outputs only grow "
                         "like log t on separable labels) or a larger dt (RK4 is stable here up to about 5 n / lambda_max).")
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




_TRAINING = ("LinearizedModule", "TrainingHistory", "linearize", "train_network")


def __getattr__(name: str):
    """ntklib.training's names (training real and linearized networks) are importable from here too."""
    if name in _TRAINING:
        from . import training

        return getattr(training, name)
    raise AttributeError(f"module 'ntklib.dynamics' has no attribute {name!r}")
