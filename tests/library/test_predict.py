"""ntklib.predict: the neural-tangents-compatible ensemble against Monte Carlo over real finite networks."""
import math

import numpy as np
import pytest
import scipy.linalg
import torch

import ntklib as nk
from ntklib import data
from ntklib.dynamics import gradient_flow_mse
from ntklib.predict import Gaussian, gradient_descent_mse, gradient_descent_mse_ensemble
from ntklib.regression import gp_posterior

from _util import close as _close

DT = torch.float64
W_STD, B_STD = 1.5, 0.1


def _task(n=6, m=3, d=3):
    x = data.sphere_points(n, d, radius=math.sqrt(d), seed=0, device="cpu")
    xt = data.sphere_points(m, d, radius=math.sqrt(d), seed=1, device="cpu")
    return x, torch.sin(2 * x[:, :1]), xt  # y (n, 1)


def _arch(width):
    return nk.serial(nk.Dense(width, W_STD, B_STD), nk.Relu(), nk.Dense(1, W_STD, B_STD))


@pytest.fixture(scope="module")
def ensemble_samples():
    """Per-seed predictions of 400 real width-512 ReLU networks trained by gradient flow on MSE.

    For each initialization the trained function is the closed form with that network's own
    empirical kernel and initial outputs, computed here with numpy (no ntklib dynamics):
    ``get="ntk"`` uses the full empirical NTK (all layers trained), ``get="nngp"`` the read-out
    layer's tangent kernel W_std^2 h.h'/n + b_std^2 (only the read-out trained).
    """
    torch.set_num_threads(1)
    x, y, xt = _task()
    n, d = x.shape
    width, S, lr = 512, 400, 0.5
    ts = np.array([0.0, 3.0, 30.0, np.inf])
    arch = _arch(width)
    xa = torch.cat([x, xt])
    f0s, ntks, reads = [], [], []
    for s in range(S):
        net = arch.module(d, seed=s, dtype=DT, device="cpu")
        with torch.no_grad():
            f0s.append(net(xa)[:, 0].numpy())
            h = net[:-1](xa)  # (n + m, width) hidden features
        last = net[-1]
        reads.append((last.weight_scale ** 2 * h @ h.T + last.bias_scale ** 2).numpy())
        ntks.append(nk.empirical_ntk(net, xa).numpy())
    F0 = np.stack(f0s)  # (S, n + m)
    N = y.numel()

    def per_seed(A):  # A (S, n+m, n+m) -> (S, T, m)
        lam, V = np.linalg.eigh(A[:, :n, :n])  # (S, n), (S, n, n)
        c = np.einsum("sij,si->sj", V, y.numpy()[None, :, 0] - F0[:, :n])  # V^T (y - f0)
        with np.errstate(over="ignore", invalid="ignore"):
            gain = np.where(np.isinf(ts)[None, :, None], 1 / lam[:, None, :],
                            -np.expm1(-lam[:, None, :] * lr * np.nan_to_num(ts, posinf=0)[None, :, None] / N)
                            / lam[:, None, :])  # (S, T, n)
        alpha = np.einsum("sij,stj->sti", V, gain * c[:, None, :])  # (S, T, n)
        return F0[:, None, n:] + np.einsum("sij,stj->sti", A[:, n:, :n], alpha)

    return dict(x=x, y=y, xt=xt, lr=lr, ts=ts, S=S, width=width,
                samples={"ntk": per_seed(np.stack(ntks)), "nngp": per_seed(np.stack(reads))})


@pytest.mark.parametrize("get", ["ntk", "nngp"])
def test_ensemble_mean_and_covariance_match_monte_carlo_over_trained_networks(ensemble_samples, get):
    e = ensemble_samples
    predict = gradient_descent_mse_ensemble(_arch(1), e["x"], e["y"], learning_rate=e["lr"])
    samples, S = e["samples"][get], e["S"]  # (S, T, m)
    finite = e["ts"][:3]
    mean_f, cov_f = predict(finite, e["xt"], get=get, compute_cov=True)
    mean_i, cov_i = predict(None, e["xt"], get=get, compute_cov=True)
    mean = np.concatenate([mean_f.numpy()[..., 0], mean_i.numpy()[None, :, 0]])  # (T, m)
    cov = np.concatenate([cov_f.numpy(), cov_i.numpy()[None]])  # (T, m, m)
    mc_mean = samples.mean(0)
    dev = samples - mc_mean
    mc_cov = np.einsum("sti,stj->tij", dev, dev) / (S - 1)
    var = np.diagonal(cov, axis1=1, axis2=2)  # (T, m)
    # Gaussian standard errors: mean sqrt(var/S); covariance sqrt((S_ii S_jj + S_ij^2)/S). Allowance for
    # the O(1/width) finite-width bias of the moments: 4/width in units of sqrt(S_ii S_jj).
    se_mean = np.sqrt(var / S)
    scale = np.sqrt(var[:, :, None] * var[:, None, :])
    se_cov = np.sqrt((scale ** 2 + cov ** 2) / S)
    bias = 4.0 / e["width"] * scale
    assert np.all(np.abs(mc_mean - mean) <= 4 * se_mean + 4.0 / e["width"] * np.sqrt(var)), \
        np.abs(mc_mean - mean) / se_mean
    assert np.all(np.abs(mc_cov - cov) <= 4 * se_cov + bias), np.abs(mc_cov - cov) / se_cov
    # training shrinks the spread at the test points relative to initialization
    assert np.all(var[-1] < var[0])


def test_gradient_descent_mse_matches_matrix_exponential_and_dynamics_module():
    x, y, xt = _task(n=7, m=4)
    arch = _arch(1)
    k, kt = arch.kernel(x).ntk, arch.kernel(xt, x).ntk
    g = torch.Generator().manual_seed(2)
    f0, ft0 = torch.randn(7, 1, generator=g, dtype=DT), torch.randn(4, 1, generator=g, dtype=DT)
    lr, ts = 0.7, [0.0, 2.0, 25.0]
    for diag_reg in (0.0, 0.1):
        fn = gradient_descent_mse(k, y, learning_rate=lr, diag_reg=diag_reg)
        tr, te = fn(ts, f0, ft0, kt)
        reg = diag_reg * float(torch.diagonal(k).mean())
        kr = (k + reg * torch.eye(7, dtype=DT)).numpy()
        for i, t in enumerate(ts):
            E = scipy.linalg.expm(-kr * lr * t / 7)
            _close(tr[i], y.numpy() + E @ (f0 - y).numpy(), rtol=1e-9, atol=1e-10)
            want = ft0.numpy() + kt.numpy() @ np.linalg.solve(kr, (np.eye(7) - E) @ (y - f0).numpy())
            _close(te[i], want, rtol=1e-8, atol=1e-9)
        # the test formula is gradient flow with weight decay reg / N in ntklib.dynamics
        dyn = gradient_flow_mse(k, y, [lr * t for t in ts], fx_train_0=f0, k_test_train=kt, fx_test_0=ft0,
                                weight_decay=reg / 7)
        _close(te, dyn.test, rtol=1e-9, atol=1e-10)
        tr_inf, te_inf = fn(None, f0, ft0, kt)
        _close(tr_inf, y, rtol=0, atol=0)
        _close(te_inf, ft0.numpy() + kt.numpy() @ np.linalg.solve(kr, (y - f0).numpy()), rtol=1e-9, atol=1e-10)


def test_ensemble_infinite_time_nngp_is_the_gp_posterior():
    x, y, xt = _task()
    arch = _arch(1)
    predict = gradient_descent_mse_ensemble(arch, x, y, diag_reg=0.01)
    got = predict(None, xt, get="nngp", compute_cov=True)
    k = arch.kernel(torch.cat([x, xt])).nngp
    post = gp_posterior(k[:6, :6], k[6:, :6], k[6:, 6:], y, diag_reg=0.01)
    _close(got.mean, post.mean, rtol=1e-9, atol=1e-11)
    _close(got.covariance, post.covariance, rtol=1e-8, atol=1e-11)


def test_ensemble_limits_and_training_set_consistency():
    x, y, xt = _task()
    predict = gradient_descent_mse_ensemble(_arch(1), x, y, learning_rate=1.0)
    for get in ("ntk", "nngp"):
        inf = predict(None, xt, get=get, compute_cov=True)
        late = predict(1e9, xt, get=get, compute_cov=True)
        _close(late.mean, inf.mean, rtol=1e-6, atol=1e-8)
        _close(late.covariance, inf.covariance, rtol=1e-6, atol=1e-8)
        # x_test=None is the training set: the same as passing x_train
        on_train = predict([0.5, 4.0], None, get=get, compute_cov=True)
        explicit = predict([0.5, 4.0], x, get=get, compute_cov=True)
        _close(on_train.mean, explicit.mean, rtol=1e-8, atol=1e-9)
        _close(on_train.covariance, explicit.covariance, rtol=1e-7, atol=1e-8)
        at_inf = predict(None, None, get=get, compute_cov=True)
        _close(at_inf.mean, y, rtol=0, atol=0)
        assert float(at_inf.covariance.abs().max()) == 0.0
    # t = 0: the prior, N(0, NNGP)
    zero = predict(0.0, xt, get="ntk", compute_cov=True)
    _close(zero.mean, torch.zeros(3, 1, dtype=DT), rtol=0, atol=1e-14)
    _close(zero.covariance, _arch(1).kernel(xt).nngp, rtol=1e-12, atol=1e-13)


def test_ensemble_output_shapes_and_get_options():
    x, y, xt = _task()
    predict = gradient_descent_mse_ensemble(_arch(1), x, y[:, 0])  # 1-D targets
    both = predict(torch.tensor([1.0, 2.0, 3.0, 4.0]), xt, compute_cov=True)
    assert both._fields == ("nngp", "ntk")
    assert isinstance(both.ntk, Gaussian)
    assert both.ntk.mean.shape == (4, 3) and both.ntk.covariance.shape == (4, 3, 3)
    assert predict(2.0, xt, get="ntk").shape == (3,)
    kernel_fn = lambda x1, x2, get: _arch(1).kernel(x1, x2, get=get)  # noqa: E731  a plain kernel function
    other = gradient_descent_mse_ensemble(kernel_fn, x, y[:, 0])
    _close(other(2.0, xt, get="ntk"), predict(2.0, xt, get="ntk"), rtol=0, atol=0)
    with pytest.raises(ValueError, match="get"):
        predict(1.0, xt, get="ntkgp")
    with pytest.raises(ValueError, match="x_test"):
        predict(1.0, xt[:, :2])
    with pytest.raises(ValueError, match="t must be"):
        predict(-1.0, xt)
