"""ntklib.deep_limit: correlation maps, rates, fixed points and chi_1, normalized kernels, the regression map.

Truths used: scipy quadrature of the Gaussian integral, the paper's arcsin formula written out here,
mpmath at 60 digits, ntklib's general layer recursion (a second implementation of the closed form),
finite wide networks (Monte Carlo), closed forms (1/4, chi_1 of ReLU and erf) and least squares
written out here (the regression map). The sweeps built on this module are tested in
tests/library/test_experiments_deep_limit.py.
"""
import math

import mpmath
import numpy as np
import pytest
import torch
from scipy import integrate, stats

import ntklib as nk
from ntklib import deep_limit as dp
from ntklib.data import sphere_points


def sphere(n, d, seed=0):
    """n points on the sphere of radius sqrt(d) in R^d (input variance |x|^2/d = 1)."""
    return sphere_points(n, d, radius=math.sqrt(d), seed=seed)


def seed_h(z):
    """The paper's formula h(z) = z arcsin(z)/pi + sqrt(1 - z^2)/pi + z/2, written independently."""
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
    np.testing.assert_allclose(ours, seed_h(rhos), rtol=0, atol=1e-15)  # the paper's formula is right
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
    x = sphere(7, 4, seed=3) * torch.linspace(0.5, 2.0, 7, dtype=torch.float64)[:, None]
    act = nk.ABRelu(0.0, slope)  # slope * relu: same correlations, rescaled diagonals
    closed = dp.normalized_kernels(x, None, [1, 2, 7, 40], activation=act, W_std=1.1)
    rec = dp.normalized_kernels(x, None, [1, 2, 7, 40], activation=act, W_std=1.1, stable=False)
    for key in ("nngp", "ntk", "diag_nngp", "diag_ntk"):
        torch.testing.assert_close(closed[key], rec[key], rtol=1e-12, atol=1e-13)
    assert torch.equal(closed["ntk"].diagonal(dim1=1, dim2=2), torch.ones(4, 7, dtype=torch.float64))


def test_seed_normalization_is_the_reciprocal_of_ntk_diagonal_growth():
    """W_std = 1, unit-norm inputs: Theta^(L)(x, x) = L / (n0 2^(L-1)), so one multiplies by n0 2^(L-1) / L."""
    n0 = 5
    x = sphere_points(3, n0, radius=1.0)
    for L in (1, 3, 10):
        layers = []
        for _ in range(L - 1):
            layers += [nk.Dense(8, W_std=1.0, b_std=None), nk.Relu()]
        layers.append(nk.Dense(1, W_std=1.0, b_std=None))
        diag = nk.serial(*layers).kernel(x).ntk.diagonal()
        torch.testing.assert_close(diag, torch.full((3,), L / (n0 * 2 ** (L - 1)), dtype=torch.float64))


def test_normalized_ntk_offdiagonal_tends_to_one_quarter_not_one():
    x = sphere(5, 3, seed=0)
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
    x = sphere(3, 4, seed=2)
    L = 4
    arch = nk.serial(*[nk.Dense(400, W_std=math.sqrt(2.0), b_std=None), nk.Relu()] * (L - 1),
                     nk.Dense(1, W_std=math.sqrt(2.0), b_std=None))
    s = nk.monte_carlo_kernel(arch, x, n_samples=12, get="ntk", keep_samples=True).ntk_samples  # (S, 3, 3)
    dg = s.diagonal(dim1=1, dim2=2)
    ratio = s / torch.sqrt(dg[:, :, None] * dg[:, None, :])  # (S, 3, 3)
    mean, se = ratio.mean(0), ratio.std(0) / math.sqrt(s.shape[0])
    closed = dp.normalized_kernels(x, None, L)["ntk"][0]
    off = ~torch.eye(3, dtype=torch.bool)
    # tolerance: 4 standard errors plus the O(depth / width) finite-width bias (about 1%)
    assert bool(((mean - closed).abs()[off] <= 4 * se[off] + 0.01).all()), (mean, closed, se)


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


def test_chi_1_matches_closed_forms_and_monte_carlo_and_the_slope_of_the_map():
    """chi_1 = W^2 E[phi'(u)^2] at q*: ReLU's W^2/2 for any bias; erf without bias below criticality has q* = 0,
    chi_1 = W^2 phi'(0)^2 = 4 W^2 / pi; elsewhere it is the slope of the correlation map at rho = 1, and Monte Carlo."""
    W = torch.tensor([0.5, 1.0, 1.4, 2.0], dtype=torch.float64)
    torch.testing.assert_close(dp.chi_1(nk.Relu(), W, 0.3), W ** 2 / 2, rtol=1e-15, atol=0)
    torch.testing.assert_close(dp.chi_1(nk.Erf(), 0.8, 0.0), torch.tensor(4 * 0.64 / math.pi, dtype=torch.float64),
                               rtol=1e-10, atol=0)
    grid_W, grid_b = torch.meshgrid(torch.tensor([0.7, 1.5, 2.5], dtype=torch.float64),
                                    torch.tensor([0.05, 0.3, 1.0], dtype=torch.float64), indexing="ij")
    chi = dp.chi_1(nk.Erf(), grid_W, grid_b)  # (3, 3)
    assert chi.shape == (3, 3)
    for i in range(3):
        for j in range(3):
            w, b = float(grid_W[i, j]), float(grid_b[i, j])
            slope = dp.correlation_map_slope(torch.tensor([1.0], dtype=torch.float64), nk.Erf(), W_std=w, b_std=b)
            assert float(chi[i, j]) == pytest.approx(float(slope[0]), rel=1e-9)
    # Monte Carlo of W^2 E[erf'(u)^2], u ~ N(0, q*), with q* from the scalar fixed-point iteration
    q = dp.variance_fixed_point(nk.Erf(), W_std=2.5, b_std=0.3)
    u = math.sqrt(q) * torch.randn(400_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    samples = 2.5 ** 2 * (2 / math.sqrt(math.pi) * torch.exp(-u * u)) ** 2
    se = float(samples.std() / math.sqrt(samples.numel()))
    assert abs(float(chi[2, 1]) - float(samples.mean())) < 5 * se
    # the phases: erf at (W, b) = (2.5, 0.05) is chaotic, (0.7, 1.0) ordered
    assert float(chi[2, 0]) > 1 > float(chi[0, 2])


def test_regression_map_is_least_squares_and_reproduces_the_kernel_predictor():
    """R = k(x, X) k(X, X)^{-1}: R y equals kernel regression, R k(X, X) = k(x, X), and the limit of a constant kernel."""
    g = torch.Generator().manual_seed(4)
    x = sphere(12, 3, seed=5)
    k = nk.serial(nk.Dense(1, 1.3, 0.2), nk.Relu(), nk.Dense(1, 1.3, 0.2)).kernel(x).ntk  # (12, 12)
    ktt, kst = k[:8, :8], k[8:, :8]
    R = dp.regression_map(ktt, kst)  # (4, 8)
    assert R.shape == (4, 8)
    torch.testing.assert_close(R @ ktt, kst, rtol=1e-9, atol=1e-11)  # reproduces k(x, X) exactly on the span
    y = torch.randn(8, generator=g, dtype=torch.float64)
    torch.testing.assert_close(R @ y, torch.linalg.solve(ktt, kst.T).T @ y, rtol=1e-9, atol=1e-11)
    # a ridge: R = k(x, X)(K + lam I)^{-1}, lam = diag_reg * mean diagonal
    lam = 0.1 * float(ktt.diagonal().mean())
    torch.testing.assert_close(dp.regression_map(ktt, kst, diag_reg=0.1),
                               torch.linalg.solve(ktt + lam * torch.eye(8, dtype=torch.float64), kst.T).T,
                               rtol=1e-9, atol=1e-11)
    # (1 - c) 11^T + c I with small c (the deep NNGP's leading order): the map tends to the mean predictor 1^T / n
    c = 1e-6
    kk = (1 - c) * torch.ones(9, 9, dtype=torch.float64) + c * torch.eye(9, dtype=torch.float64)
    R = dp.regression_map(kk[:8, :8], kk[8:, :8])
    torch.testing.assert_close(R, torch.full((1, 8), 1 / 8, dtype=torch.float64), rtol=0, atol=1e-6)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="rho"):
        dp.relu_correlation_map(1.5)
    with pytest.raises(ValueError, match="depth"):
        dp.relu_correlation_iterates(0.2, 0)
    with pytest.raises(ValueError, match="rho1|theta1"):
        dp.relu_correlation_iterates(depth=3)
    with pytest.raises(ValueError, match="W_std"):
        dp.chi_1(nk.Erf(), -1.0, 0.1)
    with pytest.raises(TypeError, match="activation"):
        dp.correlation_map(0.5, nk.Relu)


def test_iterates_numpy_path_matches_angle_map_torch_path():
    """On the CPU the iterates run in numpy, relu_angle_map in torch (also on CUDA): both must agree."""
    theta = torch.tensor([1e-7, 1e-3, 0.3, 0.7, 2.0, math.pi], dtype=torch.float64)
    a = dp.relu_angle_map(theta)  # torch, general branch
    b = dp.relu_correlation_iterates(theta1=theta, depth=2)["theta"][1]  # numpy, general branch
    # numpy and torch evaluate arccos, sin and cos with their own (SIMD) routines, each within a few
    # units in the last place, and those depend on the CPU's instruction set: 1e-14 (45 eps), not bits
    torch.testing.assert_close(b, a, rtol=1e-14, atol=0)
    # angles all below 1/2: from the second step on the iterates use the series-only branch
    small = theta[:3]
    two = dp.relu_correlation_iterates(theta1=small, depth=3)["theta"][2]
    torch.testing.assert_close(two, dp.relu_angle_map(dp.relu_angle_map(small)), rtol=1e-14, atol=0)


def test_iterates_kept_at_chosen_depths_equal_the_full_run():
    """keep= stores only the chosen depths; they are the same numbers as the full run's rows (same operations)."""
    full = dp.relu_correlation_iterates(torch.tensor([-0.3, 0.2, 0.9]), 50)
    part = dp.relu_correlation_iterates(torch.tensor([-0.3, 0.2, 0.9]), 50, keep=[50, 1, 7, 7])
    assert part["depth"].tolist() == [1, 7, 50]
    for key in ("rho", "one_minus_rho", "theta", "rho_dot", "ntk"):
        assert torch.equal(part[key], full[key][[0, 6, 49]]), key  # the same recursion: exactly the same numbers
    with pytest.raises(ValueError, match="keep"):
        dp.relu_correlation_iterates(0.3, 5, keep=[6])
