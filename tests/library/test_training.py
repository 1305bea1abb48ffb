"""ntklib.training: finite and linearized networks trained by gradient descent, against the closed forms.

Independent truths: the closed forms of ntklib.dynamics (exact for the linearized network), kernel ridge
regression (weight decay), width scans with measured log-log slopes, and invariants of the two loss
normalizations.
"""
import math
import warnings

import numpy as np
import pytest
import torch

import ntklib as nk
from ntklib import data
from ntklib.dynamics import discrete_gradient_descent_mse
from ntklib.training import LinearizedModule, train_network

from _util import close as _close

DT = torch.float64


def _slope(widths, values):
    """Least-squares slope of log(value) on log(width) over all seeds, and its standard error."""
    lx = np.log(np.repeat(np.asarray(widths, float), values.shape[1]))
    ly = np.log(values.reshape(-1))
    slope, icpt = np.polyfit(lx, ly, 1)
    resid = ly - (slope * lx + icpt)
    se = math.sqrt(resid.var(ddof=2) / ((lx - lx.mean()) ** 2).sum())
    return slope, se


# ---------------------------------------------------------------------------------------------
# real and linearized networks
# ---------------------------------------------------------------------------------------------
def _sphere_task(n=8, n_test=4, d=3):
    x = data.sphere_points(n, d, radius=math.sqrt(d), seed=0, device="cpu")
    xt = data.sphere_points(n_test, d, radius=math.sqrt(d), seed=1, device="cpu")
    return x, torch.sin(2 * x[:, 0]), xt


def test_linearized_network_trained_by_gd_equals_discrete_closed_form_with_its_ntk():
    x, y, xt = _sphere_task()
    arch = nk.serial(nk.Dense(64, 1.5, 0.1), nk.Relu(), nk.Dense(64, 1.5, 0.1), nk.Relu(), nk.Dense(1, 1.5, 0.1))
    net = arch.module(3, seed=3, dtype=DT, device="cpu")
    k0, kt0 = nk.empirical_ntk(net, x), nk.empirical_ntk(net, xt, x)
    with torch.no_grad():
        f0, ft0 = net(x)[:, 0], net(xt)[:, 0]
    eta = 0.5 * nk.spectral.max_learning_rate(k0)
    steps = [0, 7, 40, 150]
    hist = train_network(net, x, y, learning_rate=eta, steps=150, x_test=xt, record_steps=steps, linearize=True)
    pred = discrete_gradient_descent_mse(k0, y, steps, eta, fx_train_0=f0, k_test_train=kt0, fx_test_0=ft0)
    _close(hist.fx_train, pred.train, rtol=1e-9, atol=1e-10)
    _close(hist.fx_test, pred.test, rtol=1e-9, atol=1e-10)
    assert float(hist.ntk_change_rel.abs().max()) == 0.0
    # the returned linearized module at the final parameters reproduces the last record
    with torch.no_grad():
        _close(hist.final_model(xt)[:, 0], hist.fx_test[-1], rtol=1e-10, atol=1e-12)
    assert isinstance(hist.final_model, LinearizedModule)


def test_weight_decay_on_linearized_network_converges_to_ridge_regression():
    x, y, xt = _sphere_task(n=6, n_test=3)
    n = 6
    arch = nk.serial(nk.Dense(48, 1.5, 0.1), nk.Relu(), nk.Dense(1, 1.5, 0.1))
    net = arch.module(3, seed=0, dtype=DT, device="cpu")
    K, Kt = nk.empirical_ntk(net, x).numpy(), nk.empirical_ntk(net, xt, x).numpy()
    with torch.no_grad():
        f0, ft0 = net(x)[:, 0].numpy(), net(xt)[:, 0].numpy()
    lmax = np.linalg.eigvalsh(K)[-1]
    lam = 0.2 * lmax / n  # N * lambda = 0.2 lambda_max: every mode contracts by <= 1 - 0.2/1.2 per step
    eta = n / (lmax + n * lam)
    h = train_network(net, x, y, learning_rate=eta, steps=200, x_test=xt, record_steps=[200], linearize=True,
                      weight_decay=lam)
    # derived: f_inf = f0 + Theta (Theta + N lambda I)^-1 (y - f0)
    A = K + n * lam * np.eye(n)
    want_train = f0 + K @ np.linalg.solve(A, y.numpy() - f0)
    want_test = ft0 + Kt @ np.linalg.solve(A, y.numpy() - f0)
    _close(h.fx_train[-1], want_train, rtol=1e-7, atol=1e-8)
    _close(h.fx_test[-1], want_test, rtol=1e-7, atol=1e-8)
    # decay towards zero instead: ridge around g0 = f0 - J theta0, not around f0 (the seed's claim needs this)
    hz = train_network(net, x, y, learning_rate=eta, steps=200, x_test=xt, record_steps=[200], linearize=True,
                       weight_decay=lam, weight_decay_center="zero")
    theta0 = {name: p.detach() for name, p in net.named_parameters()}

    def j_theta0(inp):
        return torch.func.jvp(lambda q: torch.func.functional_call(net, q, (inp,)), (theta0,), (theta0,))[1][:, 0]

    g0, gt0 = f0 - j_theta0(x).numpy(), ft0 - j_theta0(xt).numpy()
    want_z = gt0 + Kt @ np.linalg.solve(A, y.numpy() - g0)
    _close(hz.fx_test[-1], want_z, rtol=1e-6, atol=1e-7)
    assert np.abs(want_z - want_test).max() > 0.05, "the two centres of decay should give different limits here"


@pytest.fixture(scope="module")
def width_scan():
    """ReLU, one hidden layer: GD on 8 points of the sphere in R^3, widths 128..2048, 4 seeds each.

    The networks are trained centred, f(x; theta) - f(x; theta_0) (``center=True``): the same
    parameters and gradients, but the residual starts at -y for every seed instead of f_0 - y, which
    removes most of the seed-to-seed noise of the measured slopes (closed forms with f_0 = 0).
    """
    torch.set_num_threads(1)
    x, y, xt = _sphere_task()
    W, b = 1.5, 0.1
    inf = nk.serial(nk.Dense(1, W, b), nk.Relu(), nk.Dense(1, W, b))
    K, Kt = inf.kernel(x).ntk, inf.kernel(xt, x).ntk
    eta = 0.3 * nk.spectral.max_learning_rate(K)
    steps = 150
    rec = [0, 50, 100, 150]
    widths, seeds = [128, 256, 512, 1024, 2048], range(4)
    out = {key: np.zeros((len(widths), len(seeds))) for key in
           ("gap_analytic", "gap_linear", "ntk_change", "dw_rel", "dw")}
    for i, w in enumerate(widths):
        arch = nk.serial(nk.Dense(w, W, b), nk.Relu(), nk.Dense(1, W, b))
        for j, s in enumerate(seeds):
            h = train_network(arch, x, y, learning_rate=eta, steps=steps, x_test=xt, record_steps=rec, seed=s,
                              device="cpu", center=True)
            f0, ft0 = h.fx_train[0], h.fx_test[0]  # zero
            pa = discrete_gradient_descent_mse(K, y, rec, eta, fx_train_0=f0, k_test_train=Kt, fx_test_0=ft0)
            pe = discrete_gradient_descent_mse(h.ntks[0], y, rec, eta, fx_train_0=f0,
                                               k_test_train=nk.empirical_ntk(h.model, xt, x), fx_test_0=ft0)
            rms = lambda p: float(torch.cat([(p.train - h.fx_train).flatten(),  # noqa: E731
                                             (p.test - h.fx_test).flatten()]).pow(2).mean().sqrt())
            out["gap_analytic"][i, j], out["gap_linear"][i, j] = rms(pa), rms(pe)
            out["ntk_change"][i, j] = float(h.ntk_change_rel[-1])
            out["dw_rel"][i, j], out["dw"][i, j] = float(h.weight_change_rel[-1]), float(h.weight_change[-1])
            assert float(h.train_loss[-1]) < 0.03 * float(h.train_loss[0])
    return widths, out


def test_gap_to_closed_form_shrinks_with_width(width_scan):
    # RMS difference over train/test points and 3 times between a GD-trained ReLU network and
    # (a) the closed form with the analytic NTK: dominated by the O(n^-1/2) seed-to-seed
    #     fluctuation of the initial kernel -> slope -1/2 (measured -0.53 +- 0.07 with 6 seeds);
    # (b) the closed form with the network's own initial NTK (its linearization): only the kernel's
    #     motion during training remains, between O(n^-1/2) (Lee et al. 2019) and O(1/n).
    widths, out = width_scan
    s_a, se_a = _slope(widths, out["gap_analytic"])
    s_l, se_l = _slope(widths, out["gap_linear"])
    assert -0.85 < s_a < -0.3, (s_a, se_a)
    assert -1.2 < s_l < -0.35, (s_l, se_l)
    assert out["gap_analytic"][-1].mean() < 0.03 and out["gap_linear"][-1].mean() < 0.02


def test_relative_ntk_change_falls_with_width(width_scan):
    # ||Theta_T - Theta_0||_F / ||Theta_0||_F. Lee et al. (2019) bound it by O(n^-1/2); for smooth
    # activations it is O(1/n) (Dyer & Gur-Ari 2019; see the Erf test); for ReLU the units whose
    # activation pattern flips (a fraction ~n^-1/2, with random signs) give about n^-3/4.
    # Measured here -0.80 +- 0.05 (6 seeds): we assert the slope lies between -1 and -1/2.
    widths, out = width_scan
    s, se = _slope(widths, out["ntk_change"])
    assert -1.05 < s < -0.5, (s, se)


def test_weight_movement_relative_falls_like_inverse_sqrt_width_absolute_stays_order_one(width_scan):
    # one hidden layer: ||theta_0|| ~ sqrt(P) ~ sqrt(n) while ||theta_T - theta_0|| = O(1)
    widths, out = width_scan
    s_rel, _ = _slope(widths, out["dw_rel"])
    s_abs, _ = _slope(widths, out["dw"])
    assert -0.6 < s_rel < -0.4, s_rel
    assert abs(s_abs) < 0.1, s_abs


def test_relative_ntk_change_of_smooth_network_falls_like_inverse_width():
    # Erf: the kernel moves O(1/n) (measured -0.94 +- 0.05 with 6 seeds, widths 128..2048), clearly
    # faster than the O(n^-1/2) bound.
    x, y, _ = _sphere_task()
    W, b = 1.5, 0.1
    eta = 0.3 * nk.spectral.max_learning_rate(nk.serial(nk.Dense(1, W, b), nk.Erf(), nk.Dense(1, W, b)).kernel(x).ntk)
    widths, seeds = [128, 512, 2048], range(3)
    vals = np.zeros((3, 3))
    for i, w in enumerate(widths):
        arch = nk.serial(nk.Dense(w, W, b), nk.Erf(), nk.Dense(1, W, b))
        for j in seeds:
            h = train_network(arch, x, y, learning_rate=eta, steps=150, record_steps=[150], seed=j, device="cpu")
            vals[i, j] = float(h.ntk_change_rel[-1])
    s, se = _slope(widths, vals)
    assert -1.15 < s < -0.8, (s, se)


def test_output_scale_makes_training_lazy():
    # Chizat-Bach: f_alpha = alpha (f - f0), loss / alpha^2. The function-space dynamics start the same
    # for every alpha, the weights move ~ 1/alpha and the kernel moves less and less.
    x, y, _ = _sphere_task(n=6)
    arch = nk.serial(nk.Dense(32, 1.5, 0.1), nk.Relu(), nk.Dense(1, 1.5, 0.1))
    net = arch.module(3, seed=0, dtype=DT, device="cpu")
    eta = 0.3 * nk.spectral.max_learning_rate(nk.empirical_ntk(net, x))
    alphas = [1.0, 4.0, 16.0, 64.0]
    dws, dks, fits = [], [], []
    for a in alphas:
        h = train_network(net, x, y, learning_rate=eta, steps=100, record_steps=[0, 100], output_scale=a, center=True)
        dws.append(float(h.weight_change[-1]))
        dks.append(float(h.ntk_change_rel[-1]))
        fits.append(h.fx_train[-1])
    slope = np.polyfit(np.log(alphas[1:]), np.log(dws[1:]), 1)[0]
    assert -1.1 < slope < -0.9, slope
    assert dks[0] > 5 * dks[-1], dks
    lazy = discrete_gradient_descent_mse(nk.empirical_ntk(net, x), y, 100, eta)  # f_alpha(0) = 0 when centred
    assert float((fits[-1] - lazy.train).abs().max()) < 0.1 * float((fits[0] - lazy.train).abs().max()) + 1e-3


def test_train_network_accepts_any_module_and_rejects_bad_inputs():
    x, y, xt = _sphere_task(n=5, n_test=2)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).to(DT)
    y2 = torch.stack([y, -y], 1)
    h = train_network(net, x, y2, learning_rate=0.1, steps=20, x_test=xt, y_test=y2[:2] * 0, x_probe=xt,
                      record_steps=[0, 20])
    assert h.fx_train.shape == (2, 5, 2) and h.fx_probe.shape == (2, 2, 2) and h.test_loss.shape == (2,)
    assert float(h.train_loss[1]) < float(h.train_loss[0])
    before = [p.detach().clone() for p in net.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters())), "the module must not be modified"
    with pytest.raises(ValueError, match="output"):
        train_network(net, x, y, learning_rate=0.1, steps=2)
    with pytest.raises(ValueError, match="learning_rate"):
        train_network(net, x, y2, learning_rate=0.0, steps=2)
    with pytest.raises(ValueError, match="record_steps"):
        train_network(net, x, y2, learning_rate=0.1, steps=2, record_steps=[5])
    with pytest.raises(ValueError, match="weight_decay_center"):
        train_network(net, x, y2, learning_rate=0.1, steps=2, weight_decay_center="origin")


# ---------------------------------------------------------------------------------------------
# the two loss normalizations, divergence
# ---------------------------------------------------------------------------------------------
def test_sum_loss_at_learning_rate_eta_equals_mean_loss_at_n_eta():
    """(1/2)sum with eta is (1/2N)sum with N eta: the same parameter updates, so the same trajectory."""
    x, y, xt = _sphere_task()
    arch = nk.serial(nk.Dense(64, 1.5, 0.1), nk.Relu(), nk.Dense(1, 1.5, 0.1))
    n = y.numel()
    a = train_network(arch, x, y, learning_rate=0.05, steps=40, x_test=xt, record_steps=[0, 20, 40], loss="sum",
                      device="cpu")
    b = train_network(arch, x, y, learning_rate=0.05 * n, steps=40, x_test=xt, record_steps=[0, 20, 40],
                      loss="mean", device="cpu")
    _close(a.fx_train, b.fx_train, rtol=1e-10, atol=1e-12)
    _close(a.fx_test, b.fx_test, rtol=1e-10, atol=1e-12)
    _close(a.train_loss, n * b.train_loss, rtol=1e-10, atol=1e-14)  # (1/2)sum = N (1/2N)sum
    assert a.loss == "sum" and b.loss == "mean"


@pytest.mark.parametrize("loss", ["mean", "sum"])
def test_linearized_training_matches_closed_form_with_the_same_loss(loss):
    x, y, xt = _sphere_task()
    net = nk.serial(nk.Dense(32, 1.5, 0.1), nk.Relu(), nk.Dense(1, 1.5, 0.1)).module(3, seed=1, dtype=DT, device="cpu")
    k0, kt0 = nk.empirical_ntk(net, x), nk.empirical_ntk(net, xt, x)
    with torch.no_grad():
        f0, ft0 = net(x)[:, 0], net(xt)[:, 0]
    n_norm = y.numel() if loss == "mean" else 1
    eta = 0.5 * nk.spectral.max_learning_rate(k0, y_train_size=n_norm)
    steps = [0, 9, 30]
    hist = train_network(net, x, y, learning_rate=eta, steps=30, x_test=xt, record_steps=steps, linearize=True,
                         loss=loss)
    pred = discrete_gradient_descent_mse(k0, y, steps, eta, fx_train_0=f0, k_test_train=kt0, fx_test_0=ft0, loss=loss)
    _close(hist.fx_train, pred.train, rtol=1e-9, atol=1e-10)
    _close(hist.fx_test, pred.test, rtol=1e-9, atol=1e-10)
    with pytest.raises(ValueError, match="loss"):
        train_network(net, x, y, learning_rate=eta, steps=1, loss="mse")


def test_diverging_training_raises_and_says_why():
    """Far above the stability limit 2N/lambda_max the loss overflows: an error naming the learning rate."""
    x, y, _ = _sphere_task()
    arch = nk.serial(nk.Dense(16, 1.5, 0.1), nk.Relu(), nk.Dense(1, 1.5, 0.1))
    k0 = nk.empirical_ntk(arch.module(3, seed=0, dtype=DT, device="cpu"), x)
    eta = 50 * nk.spectral.max_learning_rate(k0)
    with pytest.raises(FloatingPointError, match="learning_rate"), pytest.warns(RuntimeWarning, match="diverging"):
        train_network(arch, x, y, learning_rate=eta, steps=400, linearize=True, record_steps=list(range(0, 401, 50)))
    # just above the limit the top mode grows slowly: a warning once it has grown a millionfold, not an error
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        h = train_network(arch, x, y, learning_rate=1.05 * nk.spectral.max_learning_rate(k0), steps=300,
                          linearize=True, record_steps=list(range(0, 301, 10)))
    assert bool(torch.isfinite(h.train_loss).all())
    assert sum("diverging" in str(w.message) for w in caught) == 1
