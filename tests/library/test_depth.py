"""ntklib.depth, deep limit (Seed 001): correlation maps, rates, normalized kernels, regression map.

Truths used: scipy quadrature of the Gaussian integral, the seed's arcsin formula written out here,
mpmath at 60 digits, ntklib's general layer recursion (a second implementation of the closed form),
finite wide networks (Monte Carlo), and closed forms for the limits (1/4, det of 3/4 I + 1/4 11^T).
"""
import math

import mpmath
import numpy as np
import pytest
import torch
from scipy import integrate, stats

import ntklib as nk
from ntklib import depth as dp


def seed_h(z):
    """The seed's formula h(z) = z arcsin(z)/pi + sqrt(1 - z^2)/pi + z/2, written independently."""
    return z * np.arcsin(z) / np.pi + np.sqrt(1 - z * z) / np.pi + z / 2


def relu_corr_by_quadrature(rho):
    """E[relu(u) relu(v)] / E[relu(u)^2] for unit-variance (u, v) with correlation rho, by scipy quad.

    v | u ~ N(rho u, 1 - rho^2), so E[relu(v) | u] = m Phi(m/s) + s phi(m/s) with m = rho u, s = sqrt(1 - rho^2).
    """
    s = math.sqrt(1 - rho * rho)

    def integrand(u):
        m = rho * u
        inner = m * stats.norm.cdf(m / s) + s * stats.norm.pdf(m / s) if s > 0 else max(m, 0.0)
        return u * inner * stats.norm.pdf(u)

    val, _ = integrate.quad(integrand, 0, np.inf, epsabs=1e-14, epsrel=1e-13)
    return val / 0.5


def test_relu_correlation_map_matches_seed_formula_and_quadrature():
    rhos = np.array([-1.0, -0.7, -0.2, 0.0, 0.3, 0.8, 0.99, 1.0])
    ours = dp.relu_correlation_map(torch.tensor(rhos)).numpy()
    np.testing.assert_allclose(ours, seed_h(rhos), rtol=0, atol=1e-15)  # the seed's formula is right
    quad = np.array([relu_corr_by_quadrature(r) for r in rhos[1:-1]])
    np.testing.assert_allclose(ours[1:-1], quad, rtol=1e-9, atol=1e-12)
    assert ours[0] == pytest.approx(0.0, abs=1e-15) and ours[-1] == 1.0  # relu(u) relu(-u) = 0


def test_relu_map_derivative_matches_finite_differences_of_seed_formula():
    rhos = np.array([-0.9, -0.3, 0.0, 0.4, 0.9])
    e = 1e-6
    fd = (seed_h(rhos + e) - seed_h(rhos - e)) / (2 * e)
    np.testing.assert_allclose(dp.relu_correlation_map_derivative(torch.tensor(rhos)).numpy(), fd, atol=1e-8)


def test_general_correlation_map_quadrature_matches_erf_closed_form():
    rho = torch.linspace(-0.95, 0.95, 9, dtype=torch.float64)
    closed = dp.correlation_map(rho, nk.Erf(), W_std=1.3, b_std=0.2, q=0.8)
    quad = dp.correlation_map(rho, nk.Elementwise(torch.special.erf, deg=80), W_std=1.3, b_std=0.2, q=0.8)
    torch.testing.assert_close(quad, closed, rtol=0, atol=1e-10)
    # and bias-free ReLU does not depend on q: the dual at any q equals the closed-form map
    torch.testing.assert_close(dp.correlation_map(rho, nk.ABRelu(0.0, 1.0), W_std=0.7),
                               torch.tensor(seed_h(rho.numpy())), rtol=0, atol=1e-14)


@pytest.mark.parametrize("theta", [1e-9, 1e-6, 1e-3, 0.1, 1.0, 2.5, math.pi])
def test_relu_angle_map_matches_mpmath_to_full_precision(theta):
    mpmath.mp.dps = 60
    t = mpmath.mpf(theta)
    z = mpmath.cos(t)
    hz = z * mpmath.asin(z) / mpmath.pi + mpmath.sqrt(1 - z * z) / mpmath.pi + z / 2
    ref = float(mpmath.acos(hz))
    got = float(dp.relu_angle_map(torch.tensor(theta, dtype=torch.float64)))
    assert got == pytest.approx(ref, rel=1e-13)


@pytest.mark.parametrize("rho1", [-1.0, -0.5, 0.0, 0.6, 0.999])
def test_relu_correlation_iterates_increase_to_one(rho1):
    it = dp.relu_correlation_iterates(rho1, 3000)
    rho = it["rho"]
    assert torch.isfinite(rho).all()
    assert bool((rho[1:] > rho[:-1]).all()), "rho^(l) must increase strictly"
    assert float(it["one_minus_rho"][-1]) < 1e-4 and float(rho[-1]) < 1.0
    torch.testing.assert_close(it["one_minus_rho"], 1 - rho, rtol=1e-6, atol=1e-15)


def test_relu_one_minus_rho_decays_like_nine_pi_squared_over_two_L_squared():
    """Leading constant 9 pi^2 / 2 and the (3/2) ln L correction: after it the relative error is 2C/L, C fixed."""
    it = dp.relu_correlation_iterates(torch.tensor([-0.9, 0.0, 0.9]), 5000)
    Ls = torch.tensor([500.0, 5000.0], dtype=torch.float64)
    om = it["one_minus_rho"][Ls.long() - 1]  # (2, 3)
    lead = om * Ls[:, None] ** 2 / (9 * math.pi ** 2 / 2)
    assert bool(((lead[1] - 1).abs() < 0.015).all())  # 1 - (3 ln L + 2C) / L
    err = Ls[:, None] * (om / dp.relu_one_minus_rho_asymptotic(Ls)[:, None] - 1)  # -> 2C at both depths
    assert bool(((err[1] - err[0]).abs() < 0.1 * err[1].abs()).all()), err


def test_stable_iterates_match_mpmath_while_naive_recursion_drifts():
    mpmath.mp.dps = 60
    L = 4000
    r = mpmath.mpf("0.3")
    ref = {}
    for l in range(1, L + 1):
        if l > 1:
            r = r * mpmath.asin(r) / mpmath.pi + mpmath.sqrt(1 - r * r) / mpmath.pi + r / 2
        if l in (100, 1000, 4000):
            ref[l] = float(1 - r)
    st = dp.relu_correlation_iterates(0.3, L)["one_minus_rho"]
    nv32 = dp.relu_correlation_iterates(0.3, L, stable=False, dtype=torch.float32)["one_minus_rho"]
    for l, v in ref.items():
        assert float(st[l - 1]) == pytest.approx(v, rel=1e-12)
    assert abs(float(nv32[999]) / ref[1000] - 1) > 1e-2  # float32 naive recursion has lost 1 - rho


@pytest.mark.parametrize("slope", [1.0, 1.7])
def test_normalized_relu_kernels_closed_form_matches_ntklib_recursion(slope):
    x = dp.sphere_inputs(7, 4, seed=3) * torch.linspace(0.5, 2.0, 7, dtype=torch.float64)[:, None]
    act = nk.ABRelu(0.0, slope)  # slope * relu: same correlations, rescaled diagonals
    closed = dp.normalized_kernels(x, None, [1, 2, 7, 40], activation=act, W_std=1.1)
    rec = dp.normalized_kernels(x, None, [1, 2, 7, 40], activation=act, W_std=1.1, stable=False)
    for key in ("nngp", "ntk", "diag_nngp", "diag_ntk"):
        torch.testing.assert_close(closed[key], rec[key], rtol=1e-12, atol=1e-13)
    assert torch.equal(closed["ntk"].diagonal(dim1=1, dim2=2), torch.ones(4, 7, dtype=torch.float64))


def test_seed_normalization_is_the_reciprocal_of_ntk_diagonal_growth():
    """W_std = 1, unit-norm inputs: Theta^(L)(x, x) = L / (n0 2^(L-1)), so one multiplies by n0 2^(L-1) / L."""
    n0 = 5
    x = dp.sphere_inputs(3, n0, radius=1.0)
    for L in (1, 3, 10):
        layers = []
        for _ in range(L - 1):
            layers += [nk.Dense(8, W_std=1.0, b_std=None), nk.Relu()]
        layers.append(nk.Dense(1, W_std=1.0, b_std=None))
        diag = nk.serial(*layers).kernel(x).ntk.diagonal()
        torch.testing.assert_close(diag, torch.full((3,), L / (n0 * 2 ** (L - 1)), dtype=torch.float64))


def test_normalized_ntk_offdiagonal_tends_to_one_quarter_not_one():
    x = dp.sphere_inputs(5, 3, seed=0)
    Ls = [500, 5000]
    ks = dp.normalized_kernels(x, None, Ls)
    off = ~torch.eye(5, dtype=torch.bool)
    for i, L in enumerate(Ls):
        gap = (ks["ntk"][i][off] - 0.25).abs().max()
        assert float(gap) < 2 * math.log(L) / L
        assert float((1 - ks["nngp"][i][off]).max()) < 60 / L ** 2  # while the NNGP -> all ones
    # Theta-bar is not monotone in L: it starts at rho^(1) and falls below it for rho^(1) > 1/4
    it = dp.relu_correlation_iterates(0.9, 50)
    assert float(it["ntk"][49]) < float(it["ntk"][0])


def test_normalized_ntk_matches_wide_finite_networks():
    """Monte Carlo of width-400 networks (structured empirical NTK) vs the closed form at depth 4."""
    x = dp.sphere_inputs(3, 4, seed=2)
    L = 4
    arch = dp.plain_network(400, L - 1, W_std=math.sqrt(2.0), readout_std=math.sqrt(2.0))
    s = dp.ntk_samples(arch, x, n_seeds=12)  # (S, 3, 3)
    dg = s.diagonal(dim1=1, dim2=2)
    ratio = s / torch.sqrt(dg[:, :, None] * dg[:, None, :])  # (S, 3, 3)
    mean, se = ratio.mean(0), ratio.std(0) / math.sqrt(s.shape[0])
    closed = dp.normalized_kernels(x, None, L)["ntk"][0]
    off = ~torch.eye(3, dtype=torch.bool)
    # tolerance: 4 standard errors plus the O(depth / width) finite-width bias (about 1%)
    assert bool(((mean - closed).abs()[off] <= 4 * se[off] + 0.01).all()), (mean, closed, se)


def test_deep_limit_sweep_det_vanishes_for_nngp_while_regression_map_stays_bounded():
    x = dp.sphere_inputs(30, 3, seed=1)
    y = torch.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2] / 3
    n = 20
    depths = [10, 100, 1000, 3000]
    r = dp.deep_limit_sweep(x[:n], y[:n], x[n:], y[n:], depths, kernel="nngp")
    assert bool((r["logdet"][1:] < r["logdet"][:-1]).all()) and float(r["logdet"][-1]) < -150
    assert bool((r["map_norm"] < 3.0).all())
    assert float(r["map_norm"][-1]) == pytest.approx(1.0, abs=0.01)  # -> the mean predictor (1/n) 1^T
    assert float(r["test_mse"][-1]) == pytest.approx(float(r["const_mse"]), rel=0.05)
    rt = dp.deep_limit_sweep(x[:n], y[:n], x[n:], y[n:], [3000], kernel="ntk")
    limit_logdet = (n - 1) * math.log(0.75) + math.log(0.75 + n / 4)  # det(3/4 I + 1/4 11^T)
    assert float(rt["logdet"][0]) == pytest.approx(limit_logdet, abs=0.05)
    assert float(rt["map_sum"][0]) == pytest.approx(n / (n + 3), abs=0.01)


def test_fixed_points_and_slopes_match_closed_forms():
    relu = dp.fixed_points(nk.Relu())
    assert [p["rho"] for p in relu] == [1.0] and relu[0]["stability"] == "marginal"
    # ReLU with W_std = 1, b_std = 0.1: q* = 2 b^2, chi_1 = W^2 / 2 = 0.5 at rho = 1
    assert dp.variance_fixed_point(nk.Relu(), W_std=1.0, b_std=0.1) == pytest.approx(0.02, rel=1e-10)
    fp = dp.fixed_points(nk.Relu(), W_std=1.0, b_std=0.1)
    assert fp[-1]["rho"] == 1.0 and fp[-1]["slope"] == pytest.approx(0.5, abs=1e-9)
    # odd erf, no bias, chaotic at W_std = 2: rho = 0 is fixed; the slope at 0 is W^2 q E[phi'(u)]^2 / q*
    erf = dp.fixed_points(nk.Erf(), W_std=2.0)
    zero = [p for p in erf if abs(p["rho"]) < 1e-9]
    assert zero and zero[0]["stability"] == "stable"
    assert erf[-1]["stability"] == "unstable"


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="rho"):
        dp.relu_correlation_map(1.5)
    with pytest.raises(ValueError, match="depth"):
        dp.relu_correlation_iterates(0.2, 0)
    with pytest.raises(ValueError, match="rho1|theta1"):
        dp.relu_correlation_iterates(depth=3)
    with pytest.raises(ValueError, match="kernel"):
        dp.deep_limit_sweep(torch.ones(2, 2), torch.ones(2), torch.ones(1, 2), torch.ones(1), [1], kernel="gp")
    with pytest.raises(TypeError, match="activation"):
        dp.correlation_map(0.5, nk.Relu)


def test_angle_step_torch_path_equals_numpy_path():
    """The iterates run in numpy on the CPU and in torch elsewhere (e.g. CUDA): both must agree."""
    from ntklib.depth import _relu_angle_step

    theta = torch.tensor([1e-7, 1e-3, 0.3, 0.7, 2.0, math.pi], dtype=torch.float64)
    a = _relu_angle_step(theta, torch)
    b = torch.from_numpy(_relu_angle_step(theta.numpy(), np))
    # numpy and torch evaluate arccos, sin and cos with their own (SIMD) routines, each within a few
    # units in the last place, and those depend on the CPU's instruction set: 1e-14 (45 eps), not bits
    torch.testing.assert_close(a, b, rtol=1e-14, atol=0)
    small = theta[:3]
    torch.testing.assert_close(_relu_angle_step(small, torch, small=True), a[:3], rtol=1e-14, atol=0)
