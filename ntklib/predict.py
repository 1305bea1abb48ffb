r"""neural-tangents-compatible predictions: ``gradient_descent_mse`` and ``gradient_descent_mse_ensemble``.

Same signatures, normalizations and formulas as ``neural_tangents.predict`` (so results can be
cross-checked with it): the loss is :math:`\frac{1}{2N}\sum_{i,a}(f_a(x_i) - y_{ia})^2` with
:math:`N` = ``y_train.numel()``, times ``t`` are in steps (the flow runs for
:math:`\eta t`), ``t=None`` means :math:`t = \infty`, and ``diag_reg`` is relative,
:math:`K + \text{diag\_reg}\cdot\frac{\mathrm{tr}K}{n} I`, unless ``diag_reg_absolute_scale=True``.
Kernels are per output (:math:`\Theta\otimes I`, neural-tangents' ``trace_axes=(-1,)``).

**The ensemble** (Lee et al. 2019, arXiv:1902.06720, Sec. 2; derived in notebook
03_lazy_training and ``docs/dynamics.md``). At infinite width an initialization gives
:math:`f_0 \sim \mathcal{GP}(0, \mathcal K)` (the NNGP) while the NTK :math:`\Theta` is deterministic,
and the trained function is linear in :math:`f_0`:

.. math::
    f_t(x_*) = f_0(x_*) + A_t\,(Y - f_0(X)), \qquad
    A_t = \Theta_{*X}\,\Theta^{-1}\big(I - e^{-\eta\Theta t/N}\big).

Hence it is Gaussian over initializations, with

.. math::
    \mu_t = A_t Y, \qquad
    \Sigma_t = \mathcal K_{**} - A_t\mathcal K_{X*} - \mathcal K_{*X}A_t^\top + A_t\mathcal K_{XX}A_t^\top .

``get="nngp"`` is the same computation with :math:`\mathcal K` in place of :math:`\Theta` (training
only the read-out layer, whose tangent kernel is the NNGP); then the covariance simplifies to
:math:`\mathcal K_{**} - \mathcal K_{*X}\mathcal K^{-1}(I - e^{-2\eta\mathcal K t/N})\mathcal K_{X*}`.
With ``diag_reg`` the regularized kernel replaces :math:`\Theta` (resp. :math:`\mathcal K`) in
:math:`A_t`; the :math:`\mathcal K_{XX}` in the middle of the NTK covariance is not regularized
(as in neural-tangents).
"""
from __future__ import annotations

from collections import namedtuple
from typing import Any, Callable

import torch

from .linalg import KernelEigen, add_diagonal_regularizer, psd_solve, regularizer
from .validation import as_inputs, as_kernel_matrix, as_outputs, as_symmetric_kernel, as_targets, as_times, check_choice

__all__ = ["Gaussian", "gradient_descent_mse", "gradient_descent_mse_ensemble"]

Gaussian = namedtuple("Gaussian", ["mean", "covariance"])
Gaussian.__doc__ = "Mean and covariance of the ensemble's outputs (neural-tangents' ``Gaussian``)."
_Both = namedtuple("Gaussians", ["nngp", "ntk"])

_GETS = ("nngp", "ntk")


class _Regularized:
    """A kernel's eigendecomposition with its ridge: the eigenvalues of K + reg I are ``eigenvalues``."""

    def __init__(self, k: torch.Tensor, diag_reg: float, absolute: bool, name: str):
        self.reg = regularizer(k, diag_reg, absolute)
        self.eig = KernelEigen.of(k, name=name)
        self.eigenvalues = self.eig.eigenvalues + self.reg  # (n,)

    def gain(self, t: torch.Tensor, norm: float) -> torch.Tensor:
        """(T, n): (1 - exp(-lambda t / N)) / lambda for the regularized eigenvalues (ntklib.linalg)."""
        return self.eig.flow_gain(t, norm, shift=self.reg)

    def apply(self, diag: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
        return self.eig.apply(diag, rhs)


def gradient_descent_mse(k_train_train, y_train, learning_rate: float = 1.0, diag_reg: float = 0.0,
                         diag_reg_absolute_scale: bool = False) -> Callable:
    r"""neural-tangents' ``predict.gradient_descent_mse``: closed-form gradient flow on MSE.

    Returns ``predict_fn(t=None, fx_train_0=0., fx_test_0=None, k_test_train=None)`` giving
    ``fx_train_t``, or ``(fx_train_t, fx_test_t)`` when ``fx_test_0`` is given, with leading
    dimensions ``t.shape``:

    .. math::
        f_t(X) = Y + e^{-\eta K_r t/N}(f_0(X) - Y), \qquad
        f_t(X_*) = f_0(X_*) + K_{*X} K_r^{-1}(I - e^{-\eta K_r t/N})(Y - f_0(X)),

    :math:`K_r = K + \text{diag\_reg}\cdot I` (relative or absolute, see the module docstring),
    :math:`N` = ``y_train.numel()``. ``t=None`` gives :math:`Y` and kernel ridge regression.
    Without ``diag_reg`` this equals :func:`ntklib.dynamics.gradient_flow_mse` at time
    :math:`\eta t`; with it, the test formula is the weight-decay flow there with
    ``weight_decay = diag_reg_abs / N`` but the train formula differs (neural-tangents keeps the
    regularized kernel in front).
    """
    k = as_symmetric_kernel("k_train_train", k_train_train)
    y, was_1d = as_targets("y_train", y_train, k.shape[0], k)
    norm = float(y.numel())
    eta = float(learning_rate)
    if not eta > 0:
        raise ValueError(f"learning_rate must be > 0; got {learning_rate!r}.")
    cache = {}

    def eig():
        if "e" not in cache:
            cache["e"] = _Regularized(k, diag_reg, diag_reg_absolute_scale, "k_train_train")
        return cache["e"]

    def predict_fn(t=None, fx_train_0=0.0, fx_test_0=None, k_test_train=None):
        if fx_train_0 is None and fx_test_0 is None:
            raise ValueError("fx_train_0 and fx_test_0 are both None: nothing to predict.")
        if fx_test_0 is not None and k_test_train is None:
            raise ValueError("test predictions (fx_test_0 given) need k_test_train.")
        f0 = None if fx_train_0 is None else as_outputs("fx_train_0", fx_train_0, tuple(y.shape), k)
        kt = ft0 = None
        if fx_test_0 is not None:
            kt = as_kernel_matrix("k_test_train", k_test_train, like=k, shape=(None, k.shape[0]))
            ft0 = as_outputs("fx_test_0", fx_test_0, (kt.shape[0], y.shape[1]), k)
        rhs = y - (0.0 if f0 is None else f0)  # (n, k)
        if t is None:
            out_tr = None if f0 is None else y.clone()
            out_te = None
            if kt is not None:
                kr = add_diagonal_regularizer(k, diag_reg, diag_reg_absolute_scale)
                out_te = ft0 + kt @ psd_solve(kr, rhs, name="k_train_train")
            shape = ()
        else:
            tt = as_times("t", t, k) * eta
            shape = tuple(tt.shape)
            e = eig()
            gain = e.gain(tt, norm)  # (T, n)
            out_tr = None
            if f0 is not None:
                decay = 1.0 - e.eigenvalues * gain  # exp(-lambda t / N)
                out_tr = y - e.apply(decay, rhs)  # (T, n, k)
                out_tr = out_tr.reshape(shape + tuple(y.shape))
            out_te = None
            if kt is not None:
                out_te = ft0 + kt @ e.apply(gain, rhs)  # (T, n_test, k)
                out_te = out_te.reshape(shape + out_te.shape[-2:])
        if was_1d:
            out_tr = None if out_tr is None else out_tr[..., 0]
            out_te = None if out_te is None else out_te[..., 0]
        if out_te is None:
            return out_tr
        if out_tr is None:
            return out_te
        return out_tr, out_te

    return predict_fn


def _kernel_fn_of(arch) -> Callable:
    from .layers import Layer

    if isinstance(arch, Layer):
        return lambda x1, x2, get: arch.kernel(x1, x2, get=get)
    if callable(arch):
        return arch
    raise TypeError("arch must be an ntklib architecture (e.g. serial(Dense(...), Relu(), Dense(1))) or a "
                    f"kernel function kernel_fn(x1, x2, get) -> object with .nngp/.ntk; got {type(arch).__name__}.")


def gradient_descent_mse_ensemble(arch, x_train, y_train, learning_rate: float = 1.0, diag_reg: float = 0.0,
                                  diag_reg_absolute_scale: bool = False) -> Callable:
    r"""Mean and covariance over initializations of infinitely wide networks trained by GD on MSE.

    neural-tangents' ``predict.gradient_descent_mse_ensemble`` (see the module docstring for the
    formulas). ``arch`` is an ntklib architecture (its analytic ``.kernel``) or any
    ``kernel_fn(x1, x2, get)`` returning an object with ``.nngp`` / ``.ntk``.

    Returns ``predict_fn(t=None, x_test=None, get=None, compute_cov=False)``:

    * ``t``: steps (scalar or 1-D); the flow runs for ``learning_rate * t``; ``None`` is infinity.
    * ``x_test``: (n_test, d); ``None`` gives the (unregularized) training-set predictions.
    * ``get``: ``"ntk"`` (all layers trained), ``"nngp"`` (only the read-out trained), or a tuple;
      ``None`` means both (returned as a namedtuple with fields ``nngp``, ``ntk``).
    * ``compute_cov``: return ``Gaussian(mean, covariance)`` instead of the mean.

    The mean has shape ``t.shape + (n_test,) + y_train.shape[1:]``, the covariance
    ``t.shape + (n_test, n_test)`` (the same for every output).
    """
    kernel_fn = _kernel_fn_of(arch)
    x_train, _ = as_inputs(x_train, None, names=("x_train", "x2"))
    k_probe = kernel_fn(x_train, None, "nngp")
    like = k_probe.nngp
    y, was_1d = as_targets("y_train", y_train, x_train.shape[0], like)
    norm = float(y.numel())
    eta = float(learning_rate)
    if not eta > 0:
        raise ValueError(f"learning_rate must be > 0; got {learning_rate!r}.")
    cache: dict[str, Any] = {"nngp": as_symmetric_kernel("nngp(x_train, x_train)", like)}

    def k_dd(g: str) -> torch.Tensor:
        if g not in cache:
            cache[g] = as_symmetric_kernel(f"{g}(x_train, x_train)", getattr(kernel_fn(x_train, None, g), g))
        return cache[g]

    def eig(g: str) -> _Regularized:
        key = "eig_" + g
        if key not in cache:
            cache[key] = _Regularized(k_dd(g), diag_reg, diag_reg_absolute_scale, f"{g}(x_train, x_train)")
        return cache[key]

    def regularized(g: str) -> torch.Tensor:
        return add_diagonal_regularizer(k_dd(g), diag_reg, diag_reg_absolute_scale)

    def one(g: str, t, x_test, compute_cov):
        kdd_nngp = k_dd("nngp")
        if x_test is not None:
            need = (g, "nngp") if (compute_cov and g == "ntk") else (g,)
            ktd = kernel_fn(x_test, x_train, need)
            ktd_g = getattr(ktd, g)  # (m, n)
            ktd_nngp = ktd.nngp if compute_cov else None
            ktt = kernel_fn(x_test, None, "nngp").nngp if compute_cov else None  # (m, m)
        if t is None:
            if x_test is None:
                mean = y.clone()
                cov = torch.zeros_like(kdd_nngp) if compute_cov else None
                return _finish(mean, cov, (), was_1d)
            kr = regularized(g)
            name = f"{g}(x_train, x_train)"
            sol = psd_solve(kr, torch.cat([y] + ([ktd_nngp.T] if compute_cov else []), dim=1), name=name)
            mean = ktd_g @ sol[:, :y.shape[1]]  # (m, k)
            cov = None
            if compute_cov:
                inv_kn = sol[:, y.shape[1]:]  # K_r^{-1} K_{X*}   (n, m)
                if g == "nngp":
                    cov = ktt - ktd_g @ inv_kn
                else:
                    term_1 = psd_solve(kr, ktd_g.T, name=name)  # Theta_r^{-1} Theta_{X*}   (n, m)
                    term_2 = ktd_g @ inv_kn  # Theta_{*X} Theta_r^{-1} K_{X*}   (m, m)
                    cov = term_1.T @ kdd_nngp @ term_1 - term_2 - term_2.T + ktt
            return _finish(mean, cov, (), was_1d)

        tt = as_times("t", t, like) * eta
        shape = tuple(tt.shape)
        e = eig(g)
        gain = e.gain(tt, norm)  # (T, n)
        if x_test is None:
            decay = 1.0 - e.eigenvalues * gain  # exp(-lambda t/N)   (T, n)
            mean = e.apply(1.0 - decay, y)  # (T, n, k)
            cov = None
            if compute_cov:
                if g == "nngp":
                    cov = e.apply(e.eigenvalues * decay ** 2, torch.eye(y.shape[0], dtype=y.dtype, device=y.device))
                else:
                    ex = e.apply(decay, torch.eye(y.shape[0], dtype=y.dtype, device=y.device))  # (T, n, n)
                    cov = ex @ kdd_nngp @ ex.transpose(-1, -2)
            return _finish(mean, cov, shape, was_1d)
        mean = ktd_g @ e.apply(gain, y)  # (T, m, k)
        cov = None
        if compute_cov:
            if g == "nngp":
                gain2 = e.gain(2.0 * tt, norm)
                cov = ktt - ktd_g @ e.apply(gain2, ktd_g.T)
            else:
                term_1 = e.apply(gain, ktd_g.T)  # M_t Theta_{X*}   (T, n, m)
                term_2 = ktd_g @ e.apply(gain, ktd_nngp.T)  # Theta_{*X} M_t K_{X*}   (T, m, m)
                cov = term_1.transpose(-1, -2) @ kdd_nngp @ term_1 - term_2 - term_2.transpose(-1, -2) + ktt
        return _finish(mean, cov, shape, was_1d)

    def predict_fn(t=None, x_test=None, get=None, compute_cov: bool = False):
        gets = _GETS if get is None else ((get,) if isinstance(get, str) else tuple(get))
        for g in gets:
            check_choice("get", g, _GETS)
        xt = None
        if x_test is not None:
            xt, _ = as_inputs(x_test, None, names=("x_test", "x2"), dtype=x_train.dtype)
            if xt.shape[1] != x_train.shape[1]:
                raise ValueError(f"x_test must have {x_train.shape[1]} columns like x_train; got {tuple(xt.shape)}.")
            xt = xt.to(x_train.device)
        out = {g: one(g, t, xt, compute_cov) for g in gets}
        if isinstance(get, str):
            return out[get]
        if set(gets) == set(_GETS) and len(gets) == 2:
            return _Both(nngp=out["nngp"], ntk=out["ntk"])
        return namedtuple("Gaussians", gets)(**out)

    return predict_fn


def _finish(mean, cov, shape, was_1d):
    mean = mean.reshape(shape + mean.shape[-2:])
    if was_1d:
        mean = mean[..., 0]
    if cov is None:
        return mean
    cov = cov.reshape(shape + cov.shape[-2:])
    cov = 0.5 * (cov + cov.transpose(-1, -2))
    return Gaussian(mean, cov)
