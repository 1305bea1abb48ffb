r"""Training real (or linearized) finite networks by full-batch gradient descent, with records.

:func:`train_network` runs gradient descent on the MSE loss and records the outputs, the losses,
how far the weights moved and how much the empirical NTK changed. Its kernel-regime limit is the
closed form of :mod:`ntklib.dynamics` (same normalizations: loss :math:`\frac{1}{2N}\sum(f - y)^2`
with ``loss="mean"``, :math:`N` = ``y_train.numel()``, or :math:`\frac12\sum` with ``loss="sum"``;
time :math:`t = \eta\times` steps; weight decay :math:`\frac\lambda2\|\theta - \theta_c\|^2`).
:func:`linearize` gives the first-order Taylor expansion of a network as a module (Lee et al. 2019,
arXiv:1902.06720, Sec. 2). Derived in notebook 03_lazy_training and ``docs/dynamics.md``.
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, jvp, vjp
from torch.func import linearize as linearize_fn

from ._progress import progress_bar
from .dynamics import loss_normalization
from .empirical import empirical_ntk
from .validation import as_inputs, as_targets, check_choice, check_nonneg

__all__ = ["LinearizedModule", "linearize", "TrainingHistory", "train_network"]


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta0 = {name: p.detach() for name, p in self.base.named_parameters()}
        delta = {name: p - theta0[name] for name, p in zip(self.names, self.params)}
        out0, tangent = jvp(lambda q: functional_call(self.base, q, (x,)), (theta0,), (delta,))
        return out0 + tangent


def linearize(model: nn.Module) -> LinearizedModule:
    """The linearized network of ``model`` around its current parameters (:class:`LinearizedModule`)."""
    return LinearizedModule(model)


@dataclass
class TrainingHistory:
    r"""What :func:`train_network` recorded.

    Per recorded step (length R): ``steps``, ``t`` (= learning_rate x steps), ``train_loss`` and
    ``test_loss`` (:math:`\frac{1}{2N}\sum(f - y)^2`, N as the run's ``loss``: the number of target
    entries for ``"mean"``, 1 for ``"sum"``; without the weight-decay term), ``fx_train``
    (R, n_train[, k]), ``fx_test``, ``fx_probe``, ``weight_change`` :math:`\|\theta_t-\theta_0\|_2` and
    ``weight_change_rel`` :math:`\|\theta_t-\theta_0\|_2/\|\theta_0\|_2`. At the kernel checkpoints
    (length C): ``ntk_steps``, ``ntks`` (C, m, m) the empirical NTK (mode "trace") of the *unscaled*
    network on ``ntk_inputs``, and ``ntk_change_rel`` :math:`\|\Theta_t-\Theta_0\|_F/\|\Theta_0\|_F`.
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
    loss: str = "mean"


def _step_list(name: str, steps_spec, total: int, default_count: int) -> list[int]:
    """Sorted distinct steps in [0, total]: ``steps_spec``, or about ``default_count`` evenly spaced ones."""
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


def _resolve_model(model, x_train, seed: int, dtype: torch.dtype, device) -> nn.Module:
    """The network to train: ``model`` itself, or ``model.module(d, seed=...)`` for an ntklib architecture."""
    from .layers import Layer

    if isinstance(model, Layer):
        xt, _ = as_inputs(x_train, None, dtype=dtype, names=("x_train", "x2"))
        if device is not None:
            xt = xt.to(device)
        return model.module(xt.shape[1], seed=seed, dtype=dtype, device=xt.device)
    if isinstance(model, nn.Module):
        return model
    raise TypeError(f"model must be an ntklib architecture or a torch.nn.Module; got {type(model).__name__}.")


class _Objective:
    r"""The scaled model :math:`f_\alpha`, its loss and gradient at any parameters (a dict).

    :math:`f_\alpha(x) = \alpha f(x;\theta)` (or :math:`\alpha(f(x;\theta) - f(x;\theta_0))` with
    ``center``), where :math:`f` is the network or, with ``linearize``, its Taylor expansion at
    :math:`\theta_0`. Gradient of :math:`\frac{1}{2N\alpha^2}\|f_\alpha - y\|^2 + \frac\lambda2\|\theta-\theta_c\|^2`.
    """

    def __init__(self, net: nn.Module, x: dict, y_train: torch.Tensor, *, norm: float, alpha: float, center: bool,
                 linearize: bool, weight_decay: float, weight_decay_center: str, long_run: bool):
        self.names = [name for name, p in net.named_parameters() if p.requires_grad]
        if not self.names:
            raise ValueError("model has no trainable parameters (all have requires_grad=False).")
        self.theta0 = {name: p.detach().clone() for name, p in net.named_parameters() if p.requires_grad}
        self.buffers = {name: b for name, b in net.named_buffers()}
        self.base = copy.deepcopy(net)  # parameters are loaded into it for kernels and the final model
        self.x, self.y, self.kout = x, y_train, y_train.shape[1]
        self.norm, self.alpha, self.center, self.linearize = norm, alpha, center, linearize
        self.lam, self.long_run = weight_decay, long_run
        self.theta_c = (self.theta0 if weight_decay_center == "init"
                        else {k: torch.zeros_like(v) for k, v in self.theta0.items()})
        with torch.no_grad():
            self.f_init = {key: self.raw(self.theta0, xk) for key, xk in x.items() if xk is not None}
        self._tangents = {}
        if linearize:  # the linearized model's gradient J0^T r, from one cached pullback at theta0
            _, self._pullback = vjp(lambda q: self.raw(q, x["train"]), self.theta0)

    def raw(self, params: dict, x: torch.Tensor) -> torch.Tensor:
        """f(x; params), (m, kout)."""
        out = functional_call(self.base, (params, self.buffers), (x,))
        if out.numel() != x.shape[0] * self.kout:
            raise ValueError(f"the model's output has shape {tuple(out.shape)} but y_train needs {self.kout} "
                             f"output(s) per input ({tuple(self.y.shape)}).")
        return out.reshape(x.shape[0], self.kout)

    def _tangent(self, key: str):
        """delta -> J(x; theta0) delta by torch.func.jvp; for long runs traced once with torch.func.linearize
        (several times cheaper per call, the same numbers)."""
        if key not in self._tangents:
            f = lambda q: self.raw(q, self.x[key])  # noqa: E731
            self._tangents[key] = lambda delta: jvp(f, (self.theta0,), (delta,))[1]
            if self.long_run:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        _, self._tangents[key] = linearize_fn(f, self.theta0)
                except Exception:  # a model that cannot be traced keeps the plain jvp
                    pass
        return self._tangents[key]

    def scaled(self, params: dict, key: str) -> torch.Tensor:
        """f_alpha on the inputs named ``key`` ("train", "test" or "probe"), (m, kout)."""
        if self.linearize:
            out = self.f_init[key] + self._tangent(key)({k: params[k] - self.theta0[k] for k in self.names})
        else:
            out = self.raw(params, self.x[key])
        if self.center:
            out = out - self.f_init[key]
        return self.alpha * out

    def gradient(self, params: dict) -> dict:
        """dL/dtheta = J^T (f_alpha - y) / (N alpha) + lambda (theta - theta_c)."""
        scale = self.norm * self.alpha
        if self.linearize:
            with torch.no_grad():
                r = self.scaled(params, "train") - self.y  # (n, kout)
            (g,) = self._pullback(r / scale)
        else:
            leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
            out = self.raw(leaves, self.x["train"])  # (n, kout)
            with torch.no_grad():
                r = self.alpha * (out - self.f_init["train"] if self.center else out) - self.y
            gs = torch.autograd.grad(out, [leaves[k] for k in self.names], grad_outputs=r / scale)
            g = dict(zip(self.names, gs))
        if self.lam:
            g = {k: g[k] + self.lam * (params[k] - self.theta_c[k]) for k in self.names}
        return g

    def load(self, module: nn.Module, params: dict) -> None:
        with torch.no_grad():
            for name, p in module.named_parameters():
                if name in params:
                    p.copy_(params[name])


class _Recorder:
    """Outputs, losses and weight change at the recorded steps; empirical NTKs at the kernel checkpoints."""

    def __init__(self, objective: _Objective, y_test, x_ntk, loss: str):
        self.obj, self.y_test, self.x_ntk = objective, y_test, x_ntk
        self.norm = objective.norm
        self.norm_test = None if y_test is None else loss_normalization(loss, y_test.numel())
        self.rows = {k: [] for k in ("steps", "train_loss", "test_loss", "fx_train", "fx_test", "fx_probe", "dw")}
        self.ntks, self.ntk_steps, self._ntk0 = [], [], None

    def record(self, step: int, params: dict) -> None:
        obj, rows = self.obj, self.rows
        with torch.no_grad():
            f_tr = obj.scaled(params, "train")
            rows["steps"].append(step)
            rows["fx_train"].append(f_tr)
            rows["train_loss"].append(((f_tr - obj.y) ** 2).sum() / (2 * self.norm))
            if obj.x["test"] is not None:
                f_te = obj.scaled(params, "test")
                rows["fx_test"].append(f_te)
                if self.y_test is not None:
                    rows["test_loss"].append(((f_te - self.y_test) ** 2).sum() / (2 * self.norm_test))
            if obj.x["probe"] is not None:
                rows["fx_probe"].append(obj.scaled(params, "probe"))
            rows["dw"].append(torch.sqrt(sum(((params[k] - obj.theta0[k]) ** 2).sum() for k in obj.names)))

    def kernel(self, step: int, params: dict) -> None:
        if self.obj.linearize:  # constant: the network's NTK at theta0
            if self._ntk0 is None:
                self.obj.load(self.obj.base, self.obj.theta0)
                self._ntk0 = empirical_ntk(self.obj.base, self.x_ntk, mode="trace").detach()
            ntk = self._ntk0
        else:
            self.obj.load(self.obj.base, params)
            ntk = empirical_ntk(self.obj.base, self.x_ntk, mode="trace").detach()
        self.ntks.append(ntk)
        self.ntk_steps.append(step)

    def stacked(self, key: str, was_1d: bool):
        if not self.rows[key]:
            return None
        s = torch.stack(self.rows[key])
        return s[..., 0] if (was_1d and s.ndim == 3) else s


_DIVERGING = 1e6  # a recorded training loss this many times the initial one is reported as diverging


def _check_not_diverging(loss: torch.Tensor, loss0: float, step: int, eta: float, warned: list) -> None:
    """Raise when the training loss is no longer finite; warn (once) when it has grown a millionfold."""
    hint = (f"learning_rate={eta:g} is probably above the stability limit 2N/lambda_max of the empirical NTK "
            "(ntklib.spectral.max_learning_rate); lower it.")
    if not bool(torch.isfinite(loss)):
        raise FloatingPointError(f"training diverged: the training loss is {float(loss)} at step {step} "
                                 f"(it was {loss0:.4g} at step 0). {hint}")
    if not warned and loss0 > 0 and float(loss) > _DIVERGING * loss0:
        warned.append(step)
        warnings.warn(f"training is diverging: the training loss grew from {loss0:.4g} to {float(loss):.4g} by "
                      f"step {step}. {hint}", RuntimeWarning, stacklevel=3)


def train_network(model, x_train, y_train, *, learning_rate: float, steps: int, x_test=None, y_test=None,
                  x_probe=None, record_steps=None, ntk_steps=None, ntk_inputs=None, linearize: bool = False,
                  output_scale: float = 1.0, center: bool = False, weight_decay: float = 0.0,
                  weight_decay_center: str = "init", loss: str = "mean", seed: int = 0,
                  dtype: torch.dtype = torch.float64, device=None, progress: bool | None = None) -> TrainingHistory:
    r"""Full-batch gradient descent on MSE for a finite network (or its linearization), with records.

    The model trained is :math:`f_\alpha(x;\theta) = \alpha\,f(x;\theta)` or, with ``center=True``,
    :math:`\alpha\,(f(x;\theta) - f(x;\theta_0))` (Chizat, Oyallon & Bach 2019, arXiv:1812.07956),
    on the loss

    .. math::
        \mathcal L(\theta) = \frac{1}{2N\alpha^2}\sum_{i,a}\big(f_{\alpha,a}(x_i;\theta) - y_{ia}\big)^2
        + \frac{\lambda}{2}\|\theta - \theta_c\|^2,

    :math:`N` = ``y_train.numel()`` (``loss="mean"``) or 1 (``loss="sum"``), :math:`\theta_c = \theta_0`
    (``weight_decay_center="init"``) or 0 (``"zero"``), with :math:`\theta \leftarrow \theta - \eta\nabla\mathcal L`
    for ``steps`` steps. The :math:`1/\alpha^2` makes the function-space dynamics at initialization
    independent of :math:`\alpha` (:math:`\dot f_\alpha = -\frac1N\Theta(f_\alpha - y)`, the tangent kernel
    of :math:`f_\alpha` being :math:`\alpha^2\Theta`), while the weights move :math:`O(1/\alpha)`: large
    :math:`\alpha` is the lazy regime, small :math:`\alpha` the rich one. With :math:`\alpha = 1`,
    ``center=False`` this is plain GD on :math:`\frac{1}{2N}\sum(f-y)^2`, whose kernel-regime limit is
    :func:`ntklib.dynamics.discrete_gradient_descent_mse` with the network's :math:`\Theta_0`, :math:`f_0`
    and the same ``loss``. The standard parameterization is chosen in the architecture
    (``Dense(..., parameterization="standard")``); its NTK grows with the width, so the learning
    rate must shrink like 1/width. A run whose loss stops being finite raises ``FloatingPointError``.

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
      loss: ``"mean"`` (:math:`\frac{1}{2N}\sum`, as neural-tangents) or ``"sum"`` (:math:`\frac12\sum`).
      seed, dtype, device: used only when ``model`` is an architecture.
      progress: progress bar (default: on in notebooks/terminals, off in CI and under nbgrader).
    """
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

    net = _resolve_model(model, x_train, seed, dtype, device)
    try:
        p0 = next(net.parameters()).detach()
    except StopIteration:
        raise ValueError("model has no parameters to train.") from None

    def inputs(name, x, in_dim=None):
        if x is None:
            return None
        return as_inputs(x, None, dtype=p0.dtype, names=(name, "x2"), in_dim=in_dim)[0].to(p0.device)

    x = {"train": inputs("x_train", x_train)}
    d = x["train"].shape[1]
    x.update(test=inputs("x_test", x_test, d), probe=inputs("x_probe", x_probe, d))
    x_ntk = x["train"] if ntk_inputs is None else inputs("ntk_inputs", ntk_inputs, d)
    y_tr, was_1d = as_targets("y_train", y_train, x["train"].shape[0], p0)  # (n, k)
    y_te = None
    if y_test is not None:
        if x["test"] is None:
            raise ValueError("y_test was given without x_test.")
        y_te, _ = as_targets("y_test", y_test, x["test"].shape[0], p0)
        if y_te.shape[1] != y_tr.shape[1]:
            raise ValueError(f"y_test must have {y_tr.shape[1]} columns like y_train; got shape {tuple(y_te.shape)}.")
    norm = loss_normalization(loss, y_tr.numel())
    rec = set(_step_list("record_steps", record_steps, steps, 101))
    ntk_rec = set(_step_list("ntk_steps", [0, steps] if ntk_steps is None else ntk_steps, steps, 2))

    obj = _Objective(net, x, y_tr, norm=norm, alpha=alpha, center=center, linearize=linearize, weight_decay=lam,
                     weight_decay_center=weight_decay_center, long_run=steps >= 300)
    recorder = _Recorder(obj, y_te, x_ntk, loss)
    params = {k: v.clone() for k, v in obj.theta0.items()}
    loss0, warned = None, []
    for step in progress_bar(range(steps + 1), total=steps + 1, desc="training", progress=progress):
        if step in rec:
            recorder.record(step, params)
            loss0 = float(recorder.rows["train_loss"][0]) if loss0 is None else loss0
            _check_not_diverging(recorder.rows["train_loss"][-1], loss0, step, eta, warned)
        if step in ntk_rec:
            recorder.kernel(step, params)
        if step == steps:
            break
        g = obj.gradient(params)
        with torch.no_grad():
            params = {k: params[k] - eta * g[k] for k in obj.names}
    return _history(obj, recorder, net, params, eta, alpha, loss, was_1d)


def _history(obj: _Objective, recorder: _Recorder, net: nn.Module, params: dict, eta: float, alpha: float,
             loss: str, was_1d: bool) -> TrainingHistory:
    """The records, the trained model at theta0 and a copy at the final parameters."""
    ntks = torch.stack(recorder.ntks)  # (C, m, m)
    ntk_change = torch.linalg.matrix_norm(ntks - ntks[0]) / torch.linalg.matrix_norm(ntks[0])  # (C,)
    obj.load(obj.base, params)
    model_out = LinearizedModule(net) if obj.linearize else net
    final = copy.deepcopy(model_out)
    if obj.linearize:
        with torch.no_grad():
            for name, p in zip(final.names, final.params):
                if name in params:
                    p.copy_(params[name])
    else:
        obj.load(final, params)
    theta0_norm = float(torch.sqrt(sum((v ** 2).sum() for v in obj.theta0.values())))
    dw = torch.stack(recorder.rows["dw"])
    device, dtype = dw.device, dw.dtype
    steps_t = torch.tensor(recorder.rows["steps"], device=device)
    return TrainingHistory(
        steps=steps_t, t=eta * steps_t.to(dtype), train_loss=torch.stack(recorder.rows["train_loss"]),
        test_loss=recorder.stacked("test_loss", was_1d), fx_train=recorder.stacked("fx_train", was_1d),
        fx_test=recorder.stacked("fx_test", was_1d), fx_probe=recorder.stacked("fx_probe", was_1d),
        weight_change=dw, weight_change_rel=dw / theta0_norm,
        ntk_steps=torch.tensor(recorder.ntk_steps, device=device), ntks=ntks, ntk_change_rel=ntk_change,
        params=params, model=model_out, final_model=final, learning_rate=eta, output_scale=alpha, loss=loss)
