"""ntklib.regression: kernel ridge regression and GP posteriors against independent implementations."""
import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF
from sklearn.linear_model import Ridge

import ntklib as nk
from ntklib.regression import IllConditionedKernelWarning, gp_posterior, kernel_regression, psd_solve

from _util import close as _close

DT = torch.float64


def _data(n=20, d=5, n_test=7, k=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=DT)
    xt = torch.randn(n_test, d, generator=g, dtype=DT)
    y = torch.randn(n, generator=g, dtype=DT) if k is None else torch.randn(n, k, generator=g, dtype=DT)
    return x, xt, y


@pytest.mark.parametrize("k", [None, 3])
def test_linear_kernel_ridge_regression_matches_sklearn_ridge(k):
    x, xt, y = _data(k=k)
    alpha = 0.7
    ridge = Ridge(alpha=alpha, fit_intercept=False, solver="cholesky").fit(x.numpy(), y.numpy())
    want = ridge.predict(xt.numpy())
    got = kernel_regression(x @ x.T, xt @ x.T, y, diag_reg=alpha, diag_reg_absolute_scale=True)
    assert got.shape == tuple(want.shape)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-10)


def test_linear_kernel_interpolant_equals_minimum_norm_least_squares():
    # n < d: X X^T is invertible and the kernel interpolant is x_test . (minimum-norm solution of X w = y)
    x, xt, y = _data(n=6, d=10)
    w = torch.linalg.lstsq(x, y[:, None], driver="gelsd").solution[:, 0]  # (d,)
    got = kernel_regression(x @ x.T, xt @ x.T, y)
    _close(got, xt @ w, rtol=1e-9, atol=1e-10)


def test_relative_diag_reg_is_mean_diagonal_times_diag_reg():
    x, xt, y = _data(n=15, d=4)
    arch = nk.serial(nk.Dense(1, 1.5, 0.1), nk.Relu(), nk.Dense(1, 1.5, 0.1))
    k, kt = arch.kernel(x).ntk, arch.kernel(xt, x).ntk
    reg = 0.3 * torch.diagonal(k).mean()
    want = kt @ torch.linalg.solve(k + reg * torch.eye(15, dtype=DT), y)
    _close(kernel_regression(k, kt, y, diag_reg=0.3), want, rtol=1e-10, atol=1e-12)
    _close(kernel_regression(k, kt, y, diag_reg=float(reg), diag_reg_absolute_scale=True),
                               want, rtol=1e-10, atol=1e-12)


def test_initial_outputs_shift_the_regression_to_the_residual():
    x, xt, y = _data(n=10, d=3)
    arch = nk.serial(nk.Dense(1, 1.0, 0.2), nk.Erf(), nk.Dense(1, 1.0, 0.2))
    k, kt = arch.kernel(x).ntk, arch.kernel(xt, x).ntk
    f0, ft0 = torch.linspace(-1, 1, 10, dtype=DT), torch.linspace(0, 2, 7, dtype=DT)
    want = ft0 + kt @ torch.linalg.solve(k, y - f0)
    _close(kernel_regression(k, kt, y, fx_train_0=f0, fx_test_0=ft0), want, rtol=1e-8,
                               atol=1e-9)


def test_gp_posterior_matches_sklearn_gaussian_process_regressor():
    x, xt, y = _data(n=25, d=2, n_test=9)
    kern = RBF(length_scale=1.3)
    noise = 0.05
    gp = GaussianProcessRegressor(kernel=kern, alpha=noise, optimizer=None, normalize_y=False).fit(x.numpy(), y.numpy())
    mean_sk, cov_sk = gp.predict(xt.numpy(), return_cov=True)
    k = torch.as_tensor(kern(x.numpy()))
    kt = torch.as_tensor(kern(xt.numpy(), x.numpy()))
    ktt = torch.as_tensor(kern(xt.numpy()))
    post = gp_posterior(k, kt, ktt, y, diag_reg=noise, diag_reg_absolute_scale=True)
    np.testing.assert_allclose(post.mean.numpy(), mean_sk, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(post.covariance.numpy(), cov_sk, rtol=1e-7, atol=1e-10)
    # the diagonal-only call gives the same variances
    mean, var = gp_posterior(k, kt, torch.diagonal(ktt), y, diag_reg=noise, diag_reg_absolute_scale=True)
    np.testing.assert_allclose(var.numpy(), np.diag(cov_sk), rtol=1e-7, atol=1e-10)


def test_gp_posterior_covariance_matches_empirical_conditional_of_joint_samples():
    # Condition a sampled joint Gaussian on the training block: the residual of the best linear
    # predictor has covariance K** - K*X K^-1 KX*; estimate it from samples (tolerance from the
    # standard error of a sample variance, sd * sqrt(2/S)).
    x, xt, _ = _data(n=6, d=3, n_test=3)
    arch = nk.serial(nk.Dense(1, 1.5, 0.1), nk.Relu(), nk.Dense(1, 1.5, 0.1))
    xa = torch.cat([x, xt])
    kall = arch.kernel(xa).nngp
    S = 40000
    g = torch.Generator().manual_seed(3)
    L = torch.linalg.cholesky(kall + 1e-12 * torch.eye(9, dtype=DT))
    f = (L @ torch.randn(9, S, generator=g, dtype=DT)).T  # (S, 9)
    ftr, fte = f[:, :6], f[:, 6:]
    post = gp_posterior(kall[:6, :6], kall[6:, :6], kall[6:, 6:], torch.zeros(6, dtype=DT))
    resid = fte - ftr @ torch.linalg.solve(kall[:6, :6], kall[:6, 6:])  # (S, 3)
    emp = resid.T @ resid / S
    sd = torch.sqrt(torch.diagonal(post.covariance))
    tol = 5 * (sd[:, None] * sd[None, :]) * math.sqrt(2 / S)
    assert bool(((emp - post.covariance).abs() <= tol).all()), (emp, post.covariance)


def test_singular_linear_kernel_warns_and_gives_least_squares_fit():
    # n > d: X X^T has rank d; the pseudo-inverse solution is x_test . lstsq(X, y)
    x, xt, y = _data(n=12, d=3)
    with pytest.warns(IllConditionedKernelWarning, match="condition number"):
        got = kernel_regression(x @ x.T, xt @ x.T, y)
    assert bool(torch.isfinite(got).all())
    w = torch.linalg.lstsq(x, y[:, None], driver="gelsd").solution[:, 0]
    _close(got, xt @ w, rtol=1e-7, atol=1e-8)


def test_duplicate_inputs_warn_instead_of_returning_nan():
    x, xt, y = _data(n=6, d=3)
    x = torch.cat([x, x[:2]])  # two repeated points: the NTK Gram matrix is exactly singular
    y = torch.cat([y, y[:2]])
    arch = nk.serial(nk.Dense(1, 1.5, 0.1), nk.Relu(), nk.Dense(1, 1.5, 0.1))
    k, kt, ktt = arch.kernel(x).ntk, arch.kernel(xt, x).ntk, arch.kernel(xt).ntk
    with pytest.warns(IllConditionedKernelWarning):
        mean = kernel_regression(k, kt, y)
    with pytest.warns(IllConditionedKernelWarning):
        post = gp_posterior(k, kt, ktt, y)
    assert bool(torch.isfinite(mean).all()) and bool(torch.isfinite(post.covariance).all())
    # consistent labels on the duplicates: the fit equals the fit on the 6 distinct points
    want = kernel_regression(k[:6, :6], kt[:, :6], y[:6])
    _close(mean, want, rtol=1e-6, atol=1e-7)


def test_well_conditioned_solve_does_not_warn_and_matches_solve():
    x, xt, y = _data(n=30, d=8)
    k = x @ x.T + torch.eye(30, dtype=DT)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = psd_solve(k, y[:, None])
    _close(got[:, 0], torch.linalg.solve(k, y), rtol=1e-10, atol=1e-12)


def test_float32_kernels_stay_float32_and_numpy_becomes_float64():
    x, xt, y = _data()
    k, kt = (x @ x.T + torch.eye(20, dtype=DT)), xt @ x.T
    assert kernel_regression(k.float(), kt.float(), y.float()).dtype == torch.float32
    assert kernel_regression(k.numpy(), kt.numpy(), y.numpy()).dtype == torch.float64


def test_bad_inputs_get_clear_errors():
    x, xt, y = _data()
    k, kt = x @ x.T, xt @ x.T
    with pytest.raises(ValueError, match="k_test_train"):
        kernel_regression(k, kt[:, :5], y)
    with pytest.raises(ValueError, match="y_train"):
        kernel_regression(k, kt, y[:4])
    with pytest.raises(ValueError, match="symmetric"):
        kernel_regression(k + torch.triu(torch.ones_like(k)), kt, y)
    with pytest.raises(ValueError, match="diag_reg"):
        kernel_regression(k, kt, y, diag_reg=-1.0)
    with pytest.raises(TypeError, match="Kernel record"):
        arch = nk.serial(nk.Dense(1), nk.Relu(), nk.Dense(1))
        kernel_regression(arch.kernel(x), kt, y)
    with pytest.raises(ValueError, match="finite"):
        kernel_regression(k, kt, y * float("nan"))
    with pytest.raises(ValueError, match="k_test_test"):
        gp_posterior(k, kt, torch.zeros(3, 3, dtype=DT), y)
