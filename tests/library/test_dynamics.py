"""ntklib.dynamics: closed-form kernel dynamics against independent truths, and real networks against them.

Independent truths used here: scipy's matrix exponential, explicit Euler integration, literal
iteration of the GD map, a random-features linear model trained in parameter space, scipy's
``solve_ivp``, and finite networks trained by gradient descent (width scans with measured log-log
slopes).
"""
import math

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
import torch

import ntklib as nk
from ntklib.dynamics import (cross_entropy_flow, discrete_gradient_descent_mse,
                             gradient_flow_mse)
from ntklib.regression import IllConditionedKernelWarning, kernel_regression

from _util import close as _close

DT = torch.float64


def _problem(n=7, n_test=4, d=3, k=None, seed=0, act=None):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=DT)
    xt = torch.randn(n_test, d, generator=g, dtype=DT)
    y = torch.randn(n, generator=g, dtype=DT) if k is None else torch.randn(n, k, generator=g, dtype=DT)
    arch = nk.serial(nk.Dense(1, 1.5, 0.1), act or nk.Relu(), nk.Dense(1, 1.5, 0.1))
    return arch.kernel(x).ntk, arch.kernel(xt, x).ntk, y, g


# ---------------------------------------------------------------------------------------------
# closed forms
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss", ["mean", "sum"])
def test_gradient_flow_matches_scipy_matrix_exponential(loss):
    k, kt, y, g = _problem(k=2)
    f0 = 0.3 * torch.randn(7, 2, generator=g, dtype=DT)
    ft0 = 0.3 * torch.randn(4, 2, generator=g, dtype=DT)
    n_norm = y.numel() if loss == "mean" else 1
    ts = [0.0, 0.7, 3.0, 20.0]
    pred = gradient_flow_mse(k, y, ts, fx_train_0=f0, k_test_train=kt, fx_test_0=ft0, loss=loss)
    assert pred.train.shape == (4, 7, 2) and pred.test.shape == (4, 4, 2)
    K, Kt = k.numpy(), kt.numpy()
    for i, t in enumerate(ts):
        E = scipy.linalg.expm(-K * t / n_norm)
        want_train = y.numpy() + E @ (f0 - y).numpy()
        want_test = ft0.numpy() + Kt @ np.linalg.solve(K, (np.eye(7) - E) @ (y - f0).numpy())
        _close(pred.train[i], want_train, rtol=1e-9, atol=1e-10)
        _close(pred.test[i], want_test, rtol=1e-8, atol=1e-9)


def test_gradient_flow_matches_explicit_euler_integration_to_first_order():
    k, kt, y, _ = _problem()
    n = 7
    t_end = 5.0
    exact = gradient_flow_mse(k, y, t_end, k_test_train=kt)

    def euler(dt):
        f, ft = torch.zeros(n, dtype=DT), torch.zeros(4, dtype=DT)
        for _ in range(int(round(t_end / dt))):
            r = (f - y) / n
            f, ft = f - dt * (k @ r), ft - dt * (kt @ r)
        return f, ft

    errs = []
    for dt in (0.02, 0.01):
        f, ft = euler(dt)
        errs.append(max(float((f - exact.train).abs().max()), float((ft - exact.test).abs().max())))
    assert errs[1] < 5e-3, errs
    assert 1.8 < errs[0] / errs[1] < 2.2, f"Euler error should halve with the step (first order); got {errs}"


def test_time_zero_gives_initial_outputs_and_infinite_time_gives_kernel_regression():
    k, kt, y, g = _problem()
    f0, ft0 = torch.randn(7, generator=g, dtype=DT), torch.randn(4, generator=g, dtype=DT)
    pred = gradient_flow_mse(k, y, [0.0, math.inf], fx_train_0=f0, k_test_train=kt, fx_test_0=ft0)
    _close(pred.train[0], f0, rtol=0, atol=0)
    _close(pred.test[0], ft0, rtol=0, atol=0)
    _close(pred.train[1], y, rtol=1e-8, atol=1e-9)
    want = ft0.numpy() + kt.numpy() @ np.linalg.solve(k.numpy(), (y - f0).numpy())
    _close(pred.test[1], want, rtol=1e-8, atol=1e-9)
    # and the discrete GD closed form at k = 0
    gd = discrete_gradient_descent_mse(k, y, 0, 0.5, fx_train_0=f0, k_test_train=kt, fx_test_0=ft0)
    _close(gd.train, f0, rtol=0, atol=0)


def test_discrete_closed_form_matches_literal_gd_iteration():
    k, kt, y, g = _problem(k=3)
    f0, ft0 = torch.randn(7, 3, generator=g, dtype=DT), torch.randn(4, 3, generator=g, dtype=DT)
    n_norm = y.numel()
    eta = 0.9 * nk.spectral.max_learning_rate(k, y.numel())  # close to the stability edge: oscillating modes
    steps = [0, 1, 2, 5, 17, 60]
    pred = discrete_gradient_descent_mse(k, y, steps, eta, fx_train_0=f0, k_test_train=kt, fx_test_0=ft0)
    f, ft = f0.clone(), ft0.clone()
    for s in range(61):
        if s in steps:
            i = steps.index(s)
            _close(pred.train[i], f, rtol=1e-9, atol=1e-10)
            _close(pred.test[i], ft, rtol=1e-9, atol=1e-10)
        r = (f - y) / n_norm
        f, ft = f - eta * (k @ r), ft - eta * (kt @ r)
    _close(pred.t, eta * torch.tensor(steps, dtype=DT), rtol=1e-15, atol=0)


def test_discrete_gd_approaches_gradient_flow_as_the_step_shrinks():
    k, kt, y, _ = _problem()
    t = 4.0
    flow = gradient_flow_mse(k, y, t, k_test_train=kt)
    errs = []
    for eta in (0.1, 0.05):
        gd = discrete_gradient_descent_mse(k, y, int(round(t / eta)), eta, k_test_train=kt)
        errs.append(float((gd.test - flow.test).abs().max()))
    assert 1.8 < errs[0] / errs[1] < 2.2, errs


def test_weight_decay_closed_forms_match_random_features_model_trained_in_parameter_space():
    # f(theta) = f0 + Phi (theta - theta0): Theta = Phi Phi^T exactly; GD with the penalty
    # (lambda/2)||theta - theta0||^2 literally, against the closed form with N * lambda added.
    g = torch.Generator().manual_seed(5)
    n, n_test, P = 6, 3, 40
    phi, phit = torch.randn(n, P, generator=g, dtype=DT), torch.randn(n_test, P, generator=g, dtype=DT)
    y, f0, ft0 = (torch.randn(n, generator=g, dtype=DT) for _ in range(3))
    ft0 = ft0[:n_test]
    lam, eta = 0.05, 0.2
    k, kt = phi @ phi.T, phit @ phi.T
    u = torch.zeros(P, dtype=DT)
    steps = [0, 10, 300]
    pred = discrete_gradient_descent_mse(k, y, steps, eta, fx_train_0=f0, k_test_train=kt, fx_test_0=ft0,
                                         weight_decay=lam)
    for s in range(301):
        if s in steps:
            i = steps.index(s)
            _close(pred.train[i], f0 + phi @ u, rtol=1e-9, atol=1e-10)
            _close(pred.test[i], ft0 + phit @ u, rtol=1e-9, atol=1e-10)
        u = u - eta * (phi.T @ (f0 + phi @ u - y) / n + lam * u)
    # infinite time: kernel ridge regression on the residual with ridge N * lambda
    inf = gradient_flow_mse(k, y, math.inf, fx_train_0=f0, k_test_train=kt, fx_test_0=ft0, weight_decay=lam)
    want = kernel_regression(k, kt, y, diag_reg=n * lam, diag_reg_absolute_scale=True, fx_train_0=f0, fx_test_0=ft0)
    _close(inf.test, want, rtol=1e-9, atol=1e-10)


def test_seed_002_example_2_two_points():
    # Theta = [[1, rho], [rho, 1]], f0 = 0, y = (1, -1), loss 1/2 sum: f_1(t) = 1 - exp(-(1 - rho) t)
    for rho in (0.0, 0.9):
        k = torch.tensor([[1.0, rho], [rho, 1.0]], dtype=DT)
        ts = torch.tensor([0.0, 0.5, 2.0, 10.0], dtype=DT)
        pred = gradient_flow_mse(k, torch.tensor([1.0, -1.0], dtype=DT), ts, loss="sum")
        want = 1 - torch.exp(-(1 - rho) * ts)
        _close(pred.train[:, 0], want, rtol=1e-12, atol=1e-14)
        _close(pred.train[:, 1], -want, rtol=1e-12, atol=1e-14)


def test_singular_kernel_at_infinite_time_warns_and_stays_finite():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 2, generator=g, dtype=DT)
    k = x @ x.T  # rank 2
    y = torch.randn(8, generator=g, dtype=DT)
    pred = gradient_flow_mse(k, y, [1.0, 1e6])  # finite times: no inverse needed, no warning
    assert bool(torch.isfinite(pred.train).all())
    with pytest.warns(IllConditionedKernelWarning, match="condition number"):
        inf = gradient_flow_mse(k, y, math.inf)
    assert bool(torch.isfinite(inf.train).all())
    # the limit is the least-squares fit in the kernel's feature space, and t = 1e6 is already there
    w = torch.linalg.lstsq(x, y[:, None], driver="gelsd").solution[:, 0]
    _close(inf.train, x @ w, rtol=1e-7, atol=1e-8)
    _close(pred.train[1], x @ w, rtol=1e-6, atol=1e-7)


def test_learning_rate_above_the_stability_edge_warns():
    k, _, y, _ = _problem()
    eta = 1.05 * nk.spectral.max_learning_rate(k)
    with pytest.warns(UserWarning, match="stability"):
        pred = discrete_gradient_descent_mse(k, y, [0, 200], eta)
    assert float((pred.train[1] - y).abs().max()) > 10 * float((pred.train[0] - y).abs().max())


def test_closed_forms_reject_bad_inputs():
    k, kt, y, _ = _problem()
    with pytest.raises(ValueError, match="t must be >= 0"):
        gradient_flow_mse(k, y, -1.0)
    with pytest.raises(ValueError, match="steps"):
        discrete_gradient_descent_mse(k, y, 1.5, 0.1)
    with pytest.raises(ValueError, match="loss"):
        gradient_flow_mse(k, y, 1.0, loss="l2")
    with pytest.raises(ValueError, match="fx_train_0"):
        gradient_flow_mse(k, y, 1.0, fx_train_0=torch.zeros(3, dtype=DT))
    with pytest.raises(ValueError, match="k_test_train"):
        gradient_flow_mse(k, y, 1.0, k_test_train=kt[:, :3])


# ---------------------------------------------------------------------------------------------
# cross-entropy
# ---------------------------------------------------------------------------------------------
def test_sigmoid_cross_entropy_flow_matches_scipy_solve_ivp():
    k, kt, _, g = _problem(act=nk.Erf())
    y = (torch.rand(7, generator=g, dtype=DT) > 0.5).to(DT)
    f0, ft0 = 0.5 * torch.randn(7, generator=g, dtype=DT), 0.5 * torch.randn(4, generator=g, dtype=DT)
    ts = [0.0, 3.0, 40.0, 15.0]  # unsorted on purpose
    pred = cross_entropy_flow(k, y, ts, fx_train_0=f0, k_test_train=kt, fx_test_0=ft0, dt=0.02)
    coarse = cross_entropy_flow(k, y, ts, fx_train_0=f0, k_test_train=kt, fx_test_0=ft0)  # default dt
    K, Kt, Y, n = k.numpy(), kt.numpy(), y.numpy(), 7

    def rhs(_, z):
        g_ = (1 / (1 + np.exp(-z[:n])) - Y) / n
        return np.concatenate([-K @ g_, -Kt @ g_])

    sol = scipy.integrate.solve_ivp(rhs, (0, 40.0), np.concatenate([f0.numpy(), ft0.numpy()]), t_eval=sorted(ts),
                                    method="DOP853", rtol=1e-11, atol=1e-12)
    for i, t in enumerate(ts):
        j = sorted(ts).index(t)
        _close(pred.train[i], sol.y[:n, j], rtol=1e-9, atol=1e-9)
        _close(pred.test[i], sol.y[n:, j], rtol=1e-9, atol=1e-9)
        _close(coarse.test[i], sol.y[n:, j], rtol=1e-5, atol=1e-5)  # the default step: about 1e-6 here


def test_softmax_cross_entropy_flow_matches_literal_small_step_iteration():
    k, kt, _, g = _problem()
    labels = torch.randint(0, 3, (7,), generator=g)
    y = torch.nn.functional.one_hot(labels, 3).to(DT)  # (7, 3)
    t_end, n = 6.0, 7
    pred = cross_entropy_flow(k, y, t_end, k_test_train=kt)
    errs = []
    for eta in (0.02, 0.01):  # f <- f - eta/n Theta (softmax(f) - y): the GD of a linearized model
        f, ft = torch.zeros(7, 3, dtype=DT), torch.zeros(4, 3, dtype=DT)
        for _ in range(int(round(t_end / eta))):
            r = (torch.softmax(f, -1) - y) / n
            f, ft = f - eta * (k @ r), ft - eta * (kt @ r)
        errs.append(float((ft - pred.test).abs().max()))
    assert errs[1] < 1e-3 and 1.7 < errs[0] / errs[1] < 2.3, errs


def test_logistic_outputs_grow_like_log_time_on_separable_labels():
    # no minimizer: the margins y_i f_i grow without bound, about log t (seed 002 problem 5 omits this)
    k, _, _, g = _problem(n=5)
    y = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0], dtype=DT)
    # The loss, dominated by exp(-smallest margin), decays like 1/t (as for logistic regression on
    # separable data, Soudry et al. 2018), so the smallest margin grows by about 1 per e-fold of t.
    ts = [1e1, 1e2, 1e3]
    pred = cross_entropy_flow(k, y, ts, dt=1.0)
    margin = ((2 * y - 1) * pred.train).min(1).values  # (3,)
    gains = (margin[1:] - margin[:-1]) / math.log(10)  # d margin / d log t
    assert bool((gains > 0.8).all()) and bool((gains < 1.2).all()), (margin, gains)
