r"""Measurements behind notebook 06 (spectral bounds): learning curves on the sphere, training time against the spectrum.

Built on :mod:`ntklib.spectral` (the predictions) and the library's kernels, regression and training
(the measurements); the library never imports this module. Every function returns a dict of tensors
(float64, int64 for counts) for plotting and shows a progress bar (``progress=``). ``docs/spectral.md``
quotes the figures; ``python -m ntklib.experiments.spectral_bounds`` prints them again.

* :func:`sphere_learning_curve` -- kernel regression on the sphere against the number of samples n
  (several seeds, standard errors), next to :func:`ntklib.spectral.learning_curve` computed from the
  kernel's Funk--Hecke eigenvalues and the target's power per degree.
* :func:`fit_steps` -- gradient-descent steps until a real network has fitted its targets to a
  tolerance, next to the kernel-regime prediction :func:`ntklib.spectral.steps_to_fit` (analytic
  kernel and the network's own kernel at initialization).
* :func:`training_steps_vs_dim`, :func:`training_steps_vs_K` -- the spectral bounds of the
  depth-induced-NTK paper (arXiv:2511.05585: :math:`\lambda_{\min} \ge \Omega(d)`,
  :math:`\sigma_{\max} \le K(2K+1)/6`) against what decides training time: the condition number.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .._progress import progress_bar
from ..data import sphere_points
from ..empirical import empirical_ntk
from ..layers import Layer
from ..regression import kernel_regression
from ..shortcut import Shortcut
from ..spectral import (eigendecomposition, kernel_of_cosine, learning_curve, sphere_spectrum, steps_to_fit,
                        zonal_harmonic)
from ..training import train_network
from ..validation import check_nonneg, check_positive_int

__all__ = ["SphereTarget", "sphere_target", "sphere_learning_curve", "fit_steps", "training_steps_vs_dim", "training_steps_vs_K",
           "report"]


def _column(values) -> torch.Tensor:
    ints = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values)
    return torch.tensor(values, dtype=torch.int64 if ints else torch.float64)


@dataclass(frozen=True)
class SphereTarget:
    r"""A target on the sphere with power :math:`a_j^2` in degree :math:`\ell_j`: :math:`f^*(x) = \sum_j a_j Z_{\ell_j}(x; z_j)`.

    :math:`Z_\ell(\cdot; z)` is the unit-norm zonal harmonic about the axis :math:`z_j` (a row of ``axes``,
    :func:`ntklib.spectral.zonal_harmonic`). Call it on (n, d) inputs to get (n,) values;
    :meth:`components` gives the (n, J) terms :math:`Z_{\ell_j}(x; z_j)`; ``power`` (max degree + 1,) is the
    power per degree, as :func:`ntklib.spectral.learning_curve` wants it.
    """
    degrees: tuple
    amplitudes: tuple
    axes: torch.Tensor

    @property
    def power(self) -> torch.Tensor:
        p = torch.zeros(max(self.degrees) + 1, dtype=torch.float64)
        for ell, a in zip(self.degrees, self.amplitudes):
            p[ell] = a * a
        return p

    def components(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([zonal_harmonic(x, self.axes[j], ell) for j, ell in enumerate(self.degrees)], 1)  # (n, J)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.components(x) @ torch.tensor(self.amplitudes, dtype=torch.float64)  # (n,)


def sphere_target(degrees: Sequence[int], amplitudes: Sequence[float], dim: int, *, seed: int = 0) -> SphereTarget:
    """:class:`SphereTarget` with random axes (fixed by ``seed``) in R^``dim``."""
    degrees = tuple(int(v) for v in degrees)
    amplitudes = tuple(float(a) for a in amplitudes)
    if len(degrees) != len(amplitudes) or not degrees or min(degrees) < 0 or len(set(degrees)) != len(degrees):
        raise ValueError(f"degrees must be distinct integers >= 0, one per amplitude; got {degrees} and {amplitudes}.")
    axes = torch.randn(len(degrees), check_positive_int("dim", dim), generator=torch.Generator().manual_seed(int(seed)),
                       dtype=torch.float64)  # (J, dim)
    return SphereTarget(degrees=degrees, amplitudes=amplitudes, axes=axes)


def sphere_learning_curve(arch: Layer, dim: int, sizes: Sequence[int], degrees: Sequence[int],
                          amplitudes: Sequence[float], *, noise_vars: Sequence[float] = (0.0,), ridge: float = 0.0,
                          n_seeds: int = 8, n_test: int = 2000, max_degree: int = 200, get: str = "ntk",
                          seed: int = 0, progress: bool | None = None) -> dict:
    r"""Test error of kernel regression on the sphere against n, measured and predicted.

    Inputs uniform on the sphere of radius :math:`\sqrt{\text{dim}}` (so that ntklib's input kernel
    :math:`x\cdot x'/d` is the cosine), targets :func:`sphere_target` plus Gaussian label noise of each
    variance in ``noise_vars``; for each seed, n_max = max(sizes) training points and ``n_test``
    noiseless test points are drawn once and the smaller training sets are their first n points
    (seeds are independent, so the standard errors over seeds are valid per n). The predictor is
    :func:`ntklib.regression.kernel_regression` with the absolute ridge ``ridge`` (0: the interpolant,
    the NTK trained to convergence); the test MSE is the mean of :math:`(\hat f - f^*)^2` over the test points.

    The prediction is :func:`ntklib.spectral.learning_curve` with the Funk--Hecke eigenvalues up to
    ``max_degree`` (:func:`ntklib.spectral.sphere_spectrum`), their multiplicities and the trace left
    above them.

    Returns ``n`` (S,), ``noise_var`` (V,), ``test_mse`` and ``test_mse_se`` (V, S) (mean and standard
    error over seeds), ``test_mse_seeds`` (V, n_seeds, S), ``theory_mse`` (V, S), ``kappa`` (S,),
    ``learnability_measured`` and its ``_se`` (S, J) for each target degree (the coefficient of
    :math:`\hat f` on the target's component of that degree over its amplitude, noiseless labels, test-set
    estimate), ``learnability_theory`` (S, J), ``degrees`` (J,), ``power`` and ``spectrum`` (the
    :class:`ntklib.spectral.SphereSpectrum`).
    """
    dim = check_positive_int("dim", dim)
    sizes = sorted(check_positive_int("sizes", int(n)) for n in sizes)
    n_seeds, n_test = check_positive_int("n_seeds", n_seeds), check_positive_int("n_test", n_test)
    noise_vars = [check_nonneg("noise_vars", v) for v in noise_vars]
    ridge = check_nonneg("ridge", ridge)
    f_star = sphere_target(degrees, amplitudes, dim, seed=seed)
    power = f_star.power
    spec = sphere_spectrum(kernel_of_cosine(arch, dim, radius=math.sqrt(dim), get=get), dim, max_degree)
    p_full = torch.zeros_like(spec.eigenvalues)
    p_full[: power.shape[0]] = power
    theory = [learning_curve(spec.eigenvalues, p_full, sizes, multiplicities=spec.multiplicities, ridge=ridge,
                             noise_var=v, tail_trace=spec.tail_trace) for v in noise_vars]
    degs = list(f_star.degrees)
    amps = torch.tensor(f_star.amplitudes, dtype=torch.float64)
    n_max, radius = sizes[-1], math.sqrt(dim)
    mse = torch.zeros(len(noise_vars), n_seeds, len(sizes), dtype=torch.float64)
    learn = torch.zeros(n_seeds, len(sizes), len(degs), dtype=torch.float64)
    for s in progress_bar(range(n_seeds), total=n_seeds, desc="seeds", progress=progress):
        x_tr = sphere_points(n_max, dim, radius=radius, seed=seed + 1000 + s, device="cpu")  # (n_max, dim)
        x_te = sphere_points(n_test, dim, radius=radius, seed=seed + 5000 + s, device="cpu")  # (n_test, dim)
        k_tr = getattr(arch.kernel(x_tr, get=get), get)  # (n_max, n_max)
        k_te = getattr(arch.kernel(x_te, x_tr, get=get), get)  # (n_test, n_max)
        y_te = f_star(x_te)  # (n_test,)
        comps = f_star.components(x_te)  # (n_test, J)
        eps = torch.randn(n_max, generator=torch.Generator().manual_seed(seed + 9000 + s), dtype=torch.float64)
        clean = f_star(x_tr)  # (n_max,)
        for v_i, v in enumerate(noise_vars):
            y_tr = clean + math.sqrt(v) * eps
            for j, n in enumerate(sizes):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # near-singular Gram matrices at small ridge: the pseudo-inverse
                    pred = kernel_regression(k_tr[:n, :n], k_te[:, :n], y_tr[:n], diag_reg=ridge,
                                             diag_reg_absolute_scale=True)  # (n_test,)
                mse[v_i, s, j] = ((pred - y_te) ** 2).mean()
                if v_i == 0:
                    coef = torch.linalg.lstsq(comps, pred[:, None]).solution[:, 0]  # (J,) on the target's components
                    learn[s, j] = coef / amps
    se = lambda a, axis: a.std(axis, unbiased=True) / math.sqrt(a.shape[axis]) if a.shape[axis] > 1 \
        else torch.full_like(a.mean(axis), float("nan"))  # noqa: E731
    return {"n": _column(sizes), "noise_var": torch.tensor(noise_vars, dtype=torch.float64),
            "test_mse": mse.mean(1), "test_mse_se": se(mse, 1), "test_mse_seeds": mse,
            "theory_mse": torch.stack([t.test_mse for t in theory]), "kappa": theory[0].kappa,
            "learnability_measured": learn.mean(0), "learnability_measured_se": se(learn, 0),
            "learnability_theory": theory[0].learnability[:, degs], "degrees": _column(degs), "power": power,
            "spectrum": spec}


def fit_steps(arch: Layer, x, y, *, tolerance: float = 0.1, max_steps: int = 300, learning_rate_factor: float = 1.0,
              learning_rate: float | None = None, skip_beyond: float | None = 3.0, seed: int = 0) -> dict:
    r"""Steps of gradient descent until a real network fits ``y`` to ``tolerance``, and the kernel-regime predictions.

    Loss :math:`\frac12\sum_i(f(x_i) - y_i)^2` (``loss="sum"``), the network centred
    (:math:`f - f_0`, so the initial residual is :math:`-y` for every seed), step
    :math:`\eta` = ``learning_rate_factor`` :math:`/\hat\lambda_{\max}` with :math:`\hat\lambda_{\max}` the largest
    eigenvalue of the network's own NTK at initialization (or ``learning_rate`` itself). Measured:
    the first step k with :math:`\|f_k(X) - y\| \le` ``tolerance`` :math:`\|y\|`, or ``inf`` if there is none
    among the steps run (divergence included): ``max_steps``, or only :math:`3\,k_{own} + 10` when the
    linearized prediction :math:`k_{own}` is finite and smaller (the run stops early; ``steps_run``). Predicted by
    :func:`ntklib.spectral.steps_to_fit` with the analytic kernel (``predicted_steps``, at
    :math:`\eta` = ``learning_rate_factor`` :math:`/\lambda_{\max}` of that kernel, or ``learning_rate``) and with the
    network's own :math:`\hat\Theta_0` (``predicted_steps_own``, the linearized network). With
    ``skip_beyond``, a network predicted to need more than ``skip_beyond`` x ``max_steps`` steps is not
    trained at all (``measured_steps``, ``final_residual`` and ``ntk_change`` are then NaN: not measured).
    Returns floats: those three, ``lambda_min``, ``lambda_max``, ``condition_number`` (analytic),
    ``lambda_min_own``, ``lambda_max_own``, ``learning_rate``, ``steps_run``, ``final_residual`` (relative) and
    ``ntk_change`` (relative Frobenius change of the empirical NTK over the run).
    """
    x = torch.as_tensor(x, dtype=torch.float64)
    y = torch.as_tensor(y, dtype=torch.float64).reshape(-1)
    eps = check_nonneg("tolerance", tolerance)
    max_steps = check_positive_int("max_steps", max_steps)
    s_inf = eigendecomposition(arch.kernel(x, get="ntk").ntk)
    net = arch.module(x.shape[1], seed=seed, dtype=torch.float64)
    s_own = eigendecomposition(empirical_ntk(net, x))
    eta_inf = float(learning_rate) if learning_rate is not None else learning_rate_factor / float(s_inf.eigenvalues[0])
    eta = float(learning_rate) if learning_rate is not None else learning_rate_factor / float(s_own.eigenvalues[0])
    out = {"lambda_min": float(s_inf.eigenvalues[-1]), "lambda_max": float(s_inf.eigenvalues[0]),
           "condition_number": s_inf.condition_number, "lambda_min_own": float(s_own.eigenvalues[-1]),
           "lambda_max_own": float(s_own.eigenvalues[0]), "learning_rate": eta,
           "predicted_steps": float(steps_to_fit(s_inf.eigenvalues, s_inf.eigenvectors.T @ y, eta_inf, eps)),
           "predicted_steps_own": float(steps_to_fit(s_own.eigenvalues, s_own.eigenvectors.T @ y, eta, eps))}
    measured, final, change = math.inf, math.nan, math.nan
    if skip_beyond is not None and out["predicted_steps_own"] > skip_beyond * max_steps:
        out.update(steps_run=0.0, measured_steps=math.nan, final_residual=math.nan, ntk_change=math.nan)
        return out
    k_own = out["predicted_steps_own"]
    steps_run = min(max_steps, int(3 * k_own) + 10) if math.isfinite(k_own) else max_steps
    out["steps_run"] = float(steps_run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # divergence above the stability limit is a result here, not a mistake
        try:
            hist = train_network(net, x, y, learning_rate=eta, steps=steps_run, loss="sum", center=True,
                                 record_steps=list(range(steps_run + 1)), progress=False)
            r = (hist.fx_train - y).norm(dim=1) / y.norm()  # (max_steps + 1,)
            hit = (r <= eps).nonzero()
            measured = float(hist.steps[hit[0, 0]]) if hit.numel() else math.inf
            final, change = float(r[-1]), float(hist.ntk_change_rel[-1])
        except FloatingPointError:
            final = math.inf
    out.update(measured_steps=measured, final_residual=final, ntk_change=change)
    return out


def _random_labels(n: int, seed: int) -> torch.Tensor:
    return torch.sign(torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))


def training_steps_vs_dim(dims: Sequence[int], *, n_points: int = 16, K: int = 4, hbar: int = 2, width: int = 64,
                          input_scale: str = "normalized", tolerance: float = 0.1, max_steps: int = 300,
                          skip_beyond: float | None = 3.0, seed: int = 0, progress: bool | None = None,
                          **shortcut_kwargs) -> dict:
    r"""Training time against the input dimension d, for the claim :math:`\lambda_{\min}(\mathrm{NTK(d)}) \ge \Omega(d)`.

    ``n_points`` Gaussian inputs :math:`x \sim \mathcal N(0, I_d)` (:math:`|x|^2 \approx d`) with random
    :math:`\pm1` labels (memorization: the residual has weight on every eigen-direction, the case the
    :math:`\lambda_{\min}` bounds are about), a ``Shortcut(width, K, hbar, **shortcut_kwargs)`` network.
    ``input_scale="normalized"`` feeds x (ntklib's input kernel :math:`x\cdot x'/d`);
    ``"raw"`` feeds :math:`\sqrt d\,x`, i.e. the input kernel :math:`x\cdot x'`, which multiplies the whole
    NTK of a bias-free network by d (it is positively homogeneous in x). :func:`fit_steps` for each d
    (``max_steps``, ``skip_beyond`` as there).

    Returns (len(dims),) tensors ``d`` and every key of :func:`fit_steps`, plus ``lambda_min_limit``
    (0-d): the :math:`d\to\infty` value of :math:`\lambda_{\min}` with normalized inputs,
    :math:`\Theta(x,x) - \Theta(x,x')` for orthogonal inputs of norm :math:`\sqrt d` (times d when raw).
    """
    if input_scale not in ("normalized", "raw"):
        raise ValueError(f"input_scale must be 'normalized' or 'raw'; got {input_scale!r}.")
    arch = Shortcut(width, K, hbar, **shortcut_kwargs)
    y = _random_labels(n_points, seed + 1)
    rows: dict = {"d": []}
    for d in progress_bar(list(dims), desc="d", progress=progress):
        x = torch.randn(n_points, int(d), generator=torch.Generator().manual_seed(seed + int(d)), dtype=torch.float64)
        if input_scale == "raw":
            x = math.sqrt(d) * x
        r = fit_steps(arch, x, y, tolerance=tolerance, max_steps=max_steps, skip_beyond=skip_beyond, seed=seed)
        rows["d"].append(int(d))
        for key, v in r.items():
            rows.setdefault(key, []).append(v)
    ortho = arch.kernel(torch.tensor([[math.sqrt(2.0), 0.0], [0.0, math.sqrt(2.0)]], dtype=torch.float64), get="ntk").ntk
    out = {k: _column(v) for k, v in rows.items()}
    out["lambda_min_limit"] = ortho[0, 0] - ortho[0, 1]
    return out


def training_steps_vs_K(Ks: Sequence[int], *, d: int = 10, n_points: int = 16, hbar: int = 2, width: int = 64,
                        tolerance: float = 0.1, max_steps: int = 300, learning_rate: float | None = None,
                        skip_beyond: float | None = 3.0, seed: int = 0, progress: bool | None = None,
                        **shortcut_kwargs) -> dict:
    r"""Training time against the number of shortcuts K, for the claim :math:`\sigma_{\max}(\mathrm{NTK(d)}) \le K(2K+1)/6`.

    ``n_points`` Gaussian inputs in :math:`\mathbb R^d` with random :math:`\pm1` labels, a
    ``Shortcut(width, K, hbar, **shortcut_kwargs)`` network for each K, :func:`fit_steps` at
    :math:`\eta = 1/\hat\lambda_{\max}` (each network its own largest stable step, halved) or, with
    ``learning_rate``, one fixed step for every K (then the networks whose
    :math:`\hat\lambda_{\max}` exceeds :math:`2/\eta` leave the kernel regime or diverge; pass ``skip_beyond=None``
    to train them although their linearization diverges).
    Returns (len(Ks),) tensors ``K``, ``claimed_bound`` and every key of :func:`fit_steps`.
    """
    x = torch.randn(n_points, int(d), generator=torch.Generator().manual_seed(seed + int(d)), dtype=torch.float64)
    y = _random_labels(n_points, seed + 1)
    rows: dict = {"K": []}
    for K in progress_bar(list(Ks), desc="K", progress=progress):
        arch = Shortcut(width, int(K), hbar, **shortcut_kwargs)
        r = fit_steps(arch, x, y, tolerance=tolerance, max_steps=max_steps, learning_rate=learning_rate,
                      skip_beyond=skip_beyond, seed=seed)
        rows["K"].append(int(K))
        for key, v in r.items():
            rows.setdefault(key, []).append(v)
    out = {k: _column(v) for k, v in rows.items()}
    out["claimed_bound"] = out["K"].double() * (2 * out["K"].double() + 1) / 6
    return out


def report(quick: bool = False) -> None:  # pragma: no cover - prints the tables of docs/spectral.md
    """Print the tables quoted in docs/spectral.md (``quick``: fewer seeds and sizes)."""
    import ntklib as nk

    torch.set_default_dtype(torch.float64)
    relu = lambda b: nk.serial(nk.Dense(1, math.sqrt(2.0), b), nk.Relu(), nk.Dense(1, math.sqrt(2.0), b))  # noqa: E731
    sizes = [4, 8, 16, 32, 64, 128, 256] if quick else [4, 8, 16, 32, 64, 128, 256, 512]
    for dim, degs in ((5, [1, 2, 3, 4]), (3, [1, 2, 3, 4, 5, 6, 7, 8])):
        amps = [1 / math.sqrt(v) for v in degs]
        r = sphere_learning_curve(relu(0.1), dim, sizes, degs, amps, noise_vars=(0.0, 0.25),
                                  n_seeds=4 if quick else 8, progress=False)
        print(f"\nlearning curve on S^{dim - 1}, ReLU NTK (b_std 0.1), target degrees {degs}, power 1/l")
        print("   n | noiseless: measured +- se, theory | noise 0.25: measured +- se, theory")
        for j, n in enumerate(r["n"].tolist()):
            print(f"{n:4d} | {r['test_mse'][0, j]:.4f} +- {r['test_mse_se'][0, j]:.4f}  {r['theory_mse'][0, j]:.4f} | "
                  f"{r['test_mse'][1, j]:.4f} +- {r['test_mse_se'][1, j]:.4f}  {r['theory_mse'][1, j]:.4f}")
    for scale in ("normalized", "raw"):
        r = training_steps_vs_dim([2, 5, 20, 100] if quick else [2, 5, 10, 20, 50, 100, 200], input_scale=scale)
        print(f"\nsteps to fit random labels to 10%, Shortcut(64, K=4, hbar=2), {scale} inputs")
        for j, d in enumerate(r["d"].tolist()):
            print(f"d={d:4d} lmin {r['lambda_min'][j]:.3g} lmax {r['lambda_max'][j]:.3g} cond "
                  f"{r['condition_number'][j]:.3g} predicted {r['predicted_steps'][j]:.0f} own "
                  f"{r['predicted_steps_own'][j]:.0f} measured {r['measured_steps'][j]:.0f}")
    r = training_steps_vs_K([1, 2, 4, 8])
    print("\nsteps to fit random labels to 10%, Shortcut(64, K, hbar=2), d = 10")
    for j, K in enumerate(r["K"].tolist()):
        print(f"K={K:3d} smax {r['lambda_max'][j]:.3g} bound {r['claimed_bound'][j]:.3g} lmin {r['lambda_min'][j]:.3g} "
              f"cond {r['condition_number'][j]:.3g} predicted {r['predicted_steps'][j]:.0f} measured "
              f"{r['measured_steps'][j]:.0f}")


if __name__ == "__main__":  # pragma: no cover
    import sys

    report(quick="--quick" in sys.argv)
