"""ntklib.spectral: eigendecompositions, per-mode convergence and spectral bias on the circle and sphere."""
import math

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
import scipy.special
import torch

import ntklib as nk
from ntklib import data, spectral

DT = torch.float64


def _close(actual, expected, rtol, atol):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=rtol, atol=atol)


def _relu(b_std=0.5, depth=1):
    layers = []
    for _ in range(depth):
        layers += [nk.Dense(1, math.sqrt(2), b_std), nk.Relu()]
    return nk.serial(*layers, nk.Dense(1, 1.0, b_std))


def _kernel(n=9, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=DT)
    return _relu().kernel(x).ntk, torch.randn(n, generator=g, dtype=DT)


def test_eigendecomposition_is_sorted_orthonormal_and_reconstructs_the_matrix():
    k, _ = _kernel()
    s = spectral.eigendecomposition(k)
    assert bool((s.eigenvalues[:-1] >= s.eigenvalues[1:]).all())
    _close(s.eigenvectors.T @ s.eigenvectors, torch.eye(9, dtype=DT), rtol=0, atol=1e-12)
    _close(s.eigenvectors @ torch.diag(s.eigenvalues) @ s.eigenvectors.T, k, rtol=1e-12, atol=1e-12)
    _close(s.eigenvalues, np.sort(np.linalg.eigvalsh(k.numpy()))[::-1], rtol=1e-12, atol=1e-12)
    _close(spectral.condition_number(k), np.linalg.cond(k.numpy()), rtol=1e-8, atol=0)
    _close(s.condition_number, np.linalg.cond(k.numpy()), rtol=1e-8, atol=0)
    assert spectral.condition_number(torch.ones(3, 3, dtype=DT)) == math.inf


def test_max_learning_rate_separates_convergent_from_divergent_gd():
    k, y = _kernel()
    eta_max = spectral.max_learning_rate(k)
    for factor, converges in ((0.98, True), (1.02, False)):
        f = torch.zeros(9, dtype=DT)
        for _ in range(3000):  # literal GD on 1/(2n) sum (f - y)^2 in the kernel regime
            f = f - factor * eta_max * (k @ (f - y)) / 9
        err = float((f - y).abs().max())
        assert (err < 1e-3) == converges, (factor, err)


def test_mode_convergence_matches_projection_of_literal_gd_iterates():
    k, y = _kernel()
    s = spectral.eigendecomposition(k)
    eta = 0.8 * spectral.max_learning_rate(k)
    steps = [0, 3, 20, 100]
    decay = spectral.mode_convergence(k, steps=steps, learning_rate=eta)  # (4, 9)
    f = torch.zeros(9, dtype=DT)
    c0 = s.eigenvectors.T @ (f - y)
    for step in range(101):
        if step in steps:
            c = s.eigenvectors.T @ (f - y)  # residual in the eigenbasis
            _close(c, decay[steps.index(step)] * c0, rtol=1e-8, atol=1e-12)
        f = f - eta * (k @ (f - y)) / 9
    # flow: coordinates of the residual from scipy's matrix exponential, and their squares sum to ||r||^2
    t = [0.5, 4.0]
    modes = spectral.residual_modes(k, y, t, fx_train_0=0.3)
    for i, ti in enumerate(t):
        r = scipy.linalg.expm(-k.numpy() * ti / 9) @ (0.3 - y.numpy())
        _close(s.eigenvectors.numpy() @ modes[i].numpy(), r, rtol=1e-9, atol=1e-11)
        _close((modes[i] ** 2).sum(), (r ** 2).sum(), rtol=1e-9, atol=0)
    # the fastest mode is the top eigenvalue's
    flow = spectral.mode_convergence(k, t=[5.0])[0]
    assert bool((flow[:-1] <= flow[1:]).all())


def test_project_targets_reconstructs_targets_and_power_sums_to_one():
    k, y = _kernel()
    p = spectral.project_targets(k, y)
    s = spectral.eigendecomposition(k)
    _close(s.eigenvectors @ p.coefficients, y, rtol=1e-12, atol=1e-12)
    _close(p.cumulative_power[-1], 1.0, rtol=1e-12, atol=0)
    # a target equal to the top eigenvector has all its power in mode 0
    top = spectral.project_targets(k, 2 * s.eigenvectors[:, 0])
    _close(top.power[0], 1.0, rtol=1e-12, atol=0)


@pytest.mark.parametrize("b_std,depth", [(0.5, 1), (None, 1), (0.1, 2)])
def test_fourier_modes_are_eigenvectors_of_relu_ntk_on_equispaced_circle(b_std, depth):
    n = 32
    x, _ = data.circle_points(n, device="cpu")
    k = _relu(b_std, depth).kernel(x).ntk
    lam = spectral.circulant_eigenvalues(k)  # (n/2 + 1,) from the FFT of the first row
    basis, freqs = spectral.fourier_basis(n)
    _close(basis.T @ basis, torch.eye(n, dtype=DT), rtol=0, atol=1e-12)
    kv = k @ basis
    # (1e-8 relative: the analytic kernel's own rounding near cos = 1 is about 1e-10 relative)
    _close(kv, basis * lam[freqs][None, :], rtol=0, atol=1e-8 * float(lam.abs().max()))
    # the multiset of eigh eigenvalues equals the FFT eigenvalues with their multiplicities
    _close(np.sort(lam[freqs].numpy()), np.sort(np.linalg.eigvalsh(k.numpy())), rtol=0,
           atol=1e-8 * float(lam.abs().max()))


def test_spectral_bias_on_the_circle_relu_ntk():
    x, _ = data.circle_points(256, device="cpu")
    lam = spectral.circulant_eigenvalues(_relu(0.5).kernel(x).ntk)
    # with a bias the eigenvalue decreases with the frequency: low frequencies are learned first ...
    assert bool((lam[1:41] < lam[:40]).all())
    # ... and decays like l^-d with d = 2 (Bietti & Mairal 2019)
    ell = np.arange(8, 41)
    slope = np.polyfit(np.log(ell), np.log(lam[ell].numpy()), 1)[0]
    assert -2.3 < slope < -1.7, slope
    # without biases (one hidden layer) the odd frequencies >= 3 are missing entirely
    lam0 = spectral.circulant_eigenvalues(_relu(None).kernel(x).ntk)
    assert float(lam0[3::2][:20].abs().max()) < 1e-12 * float(lam0[0])
    assert float(lam0[2::2][:20].min()) > 1e-4 * float(lam0[0])


def test_circle_gram_eigenvalues_converge_to_funk_hecke_integral():
    arch = _relu(0.5)
    mu = spectral.dot_product_kernel_eigenvalues(spectral.kernel_of_cosine(arch, 2), 2, 10, n_quad=4000)
    errs = []
    for n in (32, 128):
        x, _ = data.circle_points(n, device="cpu")
        lam = spectral.circulant_eigenvalues(arch.kernel(x).ntk)[:11] / n
        errs.append(float((lam - mu).abs().max()))
    assert errs[1] < 1e-4 * float(mu[0]) and errs[1] < errs[0] / 4, errs


def test_sphere_funk_hecke_eigenvalues_match_legendre_integrals_and_sampled_operator():
    arch = _relu(0.5)
    kappa = spectral.kernel_of_cosine(arch, 3)
    mu = spectral.dot_product_kernel_eigenvalues(kappa, 3, 4, n_quad=2000)
    # independent: (1/2) int_0^pi kappa(cos a) P_l(cos a) sin a da by Simpson's rule in the angle
    a = np.linspace(0, np.pi, 4001)
    ka = kappa(torch.as_tensor(np.cos(a))).numpy()
    for ell in range(5):
        val = scipy.integrate.simpson(ka * scipy.special.eval_legendre(ell, np.cos(a)) * np.sin(a), x=a)
        _close(mu[ell], 0.5 * val, rtol=1e-6, atol=1e-10)
    # the integral operator acts on the zonal harmonic P_l(z) as mu_l: (1/m) K P_l(z) ~ mu_l P_l(z) for
    # m uniform points (Monte Carlo over the sphere; tolerance 5 standard errors per point)
    m = 3000
    x = data.sphere_points(m, 3, seed=2, device="cpu")
    k = arch.kernel(x[:20], x).ntk  # (20, m)
    for ell in (1, 2, 3):
        p = torch.as_tensor(scipy.special.eval_legendre(ell, x[:, 2].numpy()))
        terms = k * p[None, :]  # (20, m)
        est, se = terms.mean(1), terms.std(1) / math.sqrt(m)
        want = mu[ell] * p[:20]
        assert bool(((est - want).abs() <= 5 * se + 1e-12).all()), ((est - want) / se)
    assert bool((mu[1:] < mu[:-1]).all())


def test_spectral_bias_in_training_low_frequency_learned_first():
    # target cos(phi) + cos(6 phi) on the circle: under GD each Fourier component of the residual
    # decays as (1 - eta lambda_l / N)^k with its own eigenvalue, so frequency 1 goes first
    n = 64
    x, phi = data.circle_points(n, device="cpu")
    k = _relu(0.5).kernel(x).ntk
    y = torch.cos(phi) + torch.cos(6 * phi)
    lam = spectral.circulant_eigenvalues(k)
    eta = 0.5 * spectral.max_learning_rate(k)
    f = torch.zeros(n, dtype=DT)
    for _ in range(200):
        f = f - eta * (k @ (f - y)) / n
    r = f - y
    c1 = float(r @ torch.cos(phi)) / float(torch.cos(phi) @ torch.cos(phi))
    c6 = float(r @ torch.cos(6 * phi)) / float(torch.cos(6 * phi) @ torch.cos(6 * phi))
    _close(-c1, (1 - eta * lam[1] / n) ** 200, rtol=1e-8, atol=1e-14)
    _close(-c6, (1 - eta * lam[6] / n) ** 200, rtol=1e-8, atol=1e-14)
    assert abs(c1) < 1e-3 < abs(c6)


def test_spectral_helpers_reject_bad_inputs():
    k, _ = _kernel()
    with pytest.raises(ValueError, match="square"):
        spectral.eigendecomposition(k[:, :3])
    with pytest.raises(ValueError, match="circulant"):
        spectral.circulant_eigenvalues(k)
    with pytest.raises(ValueError, match="either t"):
        spectral.mode_convergence(k)
    with pytest.raises(ValueError, match="dim"):
        spectral.kernel_of_cosine(_relu(), 1)


# ---------------------------------------------------------------------------------------------
# spherical harmonics: Legendre polynomials of dimension d, multiplicities, zonal harmonics
# ---------------------------------------------------------------------------------------------
def test_legendre_polynomials_match_scipy_chebyshev_legendre_and_gegenbauer():
    u = np.linspace(-1, 1, 41)
    for d in (2, 3, 4, 7):
        p = spectral.legendre_polynomials(15, d, torch.as_tensor(u)).numpy()  # (16, 41)
        for ell in range(16):
            if d == 2:
                ref = scipy.special.eval_chebyt(ell, u)
            else:
                a = (d - 2) / 2
                ref = scipy.special.eval_gegenbauer(ell, a, u) / scipy.special.eval_gegenbauer(ell, a, 1.0)
            _close(p[ell], ref, rtol=0, atol=1e-12)


def test_sphere_multiplicity_closed_forms_and_rank_of_addition_theorem_matrix():
    assert [spectral.sphere_multiplicity(2, ell) for ell in range(5)] == [1, 2, 2, 2, 2]
    assert [spectral.sphere_multiplicity(3, ell) for ell in range(5)] == [1, 3, 5, 7, 9]
    assert [spectral.sphere_multiplicity(4, ell) for ell in range(5)] == [(ell + 1) ** 2 for ell in range(5)]
    assert spectral.sphere_multiplicity(5, [0, 1, 2, 3]).tolist() == [1, 5, 14, 30]
    # addition theorem: [P_{l,d}(x_i . x_j)] = (1/N) Y Y^T has rank N(d, l) for enough random points
    for d, ell in ((3, 4), (4, 3), (5, 2), (6, 2)):
        x = data.sphere_points(90, d, seed=d, device="cpu")
        g = spectral.legendre_polynomials(ell, d, (x @ x.T).clamp(-1, 1))[ell]  # (90, 90)
        ev = torch.linalg.eigvalsh(g)
        rank = int((ev > 1e-9 * float(ev.max())).sum())
        assert rank == spectral.sphere_multiplicity(d, ell), (d, ell, rank)


def test_zonal_harmonics_have_unit_norm_and_are_orthogonal_across_degrees_monte_carlo():
    m = 40000
    for d in (3, 5):
        x = data.sphere_points(m, d, radius=2.0, seed=11, device="cpu")  # any radius: rows are normalized
        axis = torch.arange(1.0, d + 1, dtype=DT)
        z = torch.stack([spectral.zonal_harmonic(x, axis, ell) for ell in range(4)], 1)  # (m, 4)
        gram = z.T @ z / m
        se = (z[:, :, None] * z[:, None, :]).std(0) / math.sqrt(m)
        assert bool(((gram - torch.eye(4, dtype=DT)).abs() <= 5 * se + 1e-12).all()), (gram, se)
    # in d = 3 it is sqrt(2l + 1) P_l(cos)
    x = data.sphere_points(7, 3, seed=1, device="cpu")
    _close(spectral.zonal_harmonic(x, torch.tensor([0.0, 0.0, 1.0]), 3),
           math.sqrt(7) * scipy.special.eval_legendre(3, x[:, 2].numpy()), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Funk--Hecke eigenvalues: closed forms and the quadrature in the angle
# ---------------------------------------------------------------------------------------------
def test_funk_hecke_eigenvalues_match_closed_forms():
    # step kernel on the circle: kappa(cos phi) = (pi - phi)/(2 pi): mu_0 = 1/4, mu_l = (1 - (-1)^l)/(2 pi^2 l^2)
    step = lambda u: (math.pi - torch.arccos(u.clamp(-1, 1))) / (2 * math.pi)  # noqa: E731
    mu = spectral.dot_product_kernel_eigenvalues(step, 2, 12)
    ell = np.arange(1, 13)
    _close(mu[0], 0.25, rtol=1e-12, atol=0)
    _close(mu[1:], (1 - (-1.0) ** ell) / (2 * math.pi ** 2 * ell ** 2), rtol=0, atol=1e-13)
    # u^2 on S^{d-1}: u^2 = (1 + (d - 1) P_{2,d}(u)) / d, so mu_0 = 1/d and N(d, 2) mu_2 = (d - 1)/d, others 0
    for d in (3, 5, 9):
        mu = spectral.dot_product_kernel_eigenvalues(lambda u: u ** 2, d, 5)
        want = np.zeros(6)
        want[0], want[2] = 1 / d, (d - 1) / d / spectral.sphere_multiplicity(d, 2)
        _close(mu, want, rtol=0, atol=1e-13)  # a weighted sum of ~500 terms: a few hundred eps


def test_funk_hecke_quadrature_in_the_angle_converges_fast_for_relu_ntk():
    for d in (2, 3, 6):
        kappa = spectral.kernel_of_cosine(_relu(0.5), d, radius=math.sqrt(d))
        coarse = spectral.dot_product_kernel_eigenvalues(kappa, d, 100, n_quad=600)
        fine = spectral.dot_product_kernel_eigenvalues(kappa, d, 100, n_quad=2400)
        assert float((coarse - fine).abs().max()) < 1e-12 * float(fine[0]), d
        spec = spectral.sphere_spectrum(kappa, d, 100)
        _close(spec.eigenvalues, fine, rtol=0, atol=1e-12 * float(fine[0]))
        # the trace left above degree L shrinks like 1/L (N(d, l) mu_l ~ l^-2 for the ReLU NTK)
        longer = spectral.sphere_spectrum(kappa, d, 400)
        assert 0 < longer.tail_trace < spec.tail_trace / 2.5, (d, spec.tail_trace, longer.tail_trace)


# ---------------------------------------------------------------------------------------------
# steps to fit
# ---------------------------------------------------------------------------------------------
def _literal_gd_steps(k, r0, eta, tol, norm, limit=100000):
    r = r0.clone()
    target = tol * float(r0.norm())
    for step in range(limit + 1):
        if float(r.norm()) <= target:
            return step
        r = r - eta * (k @ r) / norm
        if not bool(torch.isfinite(r).all()) or float(r.norm()) > 1e12:
            return math.inf
    return math.inf


def test_steps_to_fit_matches_literal_gradient_descent():
    k, y = _kernel(n=7, d=3)
    s = spectral.eigendecomposition(k)
    lmax = float(s.eigenvalues[0])
    # integer step counts: at these settings the residual crosses the tolerance with a relative margin of at
    # least 1e-3 on either side of the returned step, far above float64 rounding of either computation
    for norm, factor, tol in ((1.0, 1.0, 1e-2), (7.0, 1.6, 1e-3), (7.0, 0.3, 0.2), (1.0, 1.99, 1e-4)):
        eta = factor * norm / lmax
        c0 = s.eigenvectors.T @ (-y)
        got = spectral.steps_to_fit(s.eigenvalues, c0, eta, tol, normalization=norm)
        assert got == _literal_gd_steps(k, -y, eta, tol, norm), (norm, factor, tol, got)
    # a residual with no weight on the two smallest eigenvalues: they do not count
    c0 = torch.zeros(7, dtype=DT)
    c0[:3] = torch.tensor([1.0, -2.0, 0.5])
    r0 = s.eigenvectors @ c0
    eta = 1.0 / lmax
    got = spectral.steps_to_fit(s.eigenvalues, c0, eta, 1e-3)
    assert got == _literal_gd_steps(k, r0, eta, 1e-3, 1.0)
    assert got < spectral.steps_to_fit(s.eigenvalues, s.eigenvectors.T @ y, eta, 1e-3)
    # above the stability limit with weight on the top mode: never; a zero eigenvalue with weight: never
    assert spectral.steps_to_fit(s.eigenvalues, c0, 2.05 / lmax, 1e-3) == math.inf
    assert _literal_gd_steps(k, r0, 2.05 / lmax, 1e-3, 1.0) == math.inf
    assert spectral.steps_to_fit(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.1]), 1.0, 1e-3) == math.inf
    assert spectral.steps_to_fit(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.1]), 1.0, 0.2) == 1
    assert spectral.steps_to_fit(s.eigenvalues, c0, eta, 1.0) == 0
    # two outputs: the squared norms add
    c2 = torch.stack([c0, 0.5 * c0], 1)
    assert spectral.steps_to_fit(s.eigenvalues, c2, eta, 1e-3) == got


# ---------------------------------------------------------------------------------------------
# learning curves (eigenlearning / Bordelon-Canatar-Pehlevan)
# ---------------------------------------------------------------------------------------------
def test_effective_regularization_solves_its_equation_and_the_flat_spectrum_closed_form():
    lam = torch.tensor([1.0, 0.3, 0.05, 1e-3, 1e-6], dtype=DT)
    mult = torch.tensor([1.0, 4.0, 10.0, 40.0, 500.0], dtype=DT)
    ns = [1, 3, 10, 30, 100, 400]
    for ridge in (0.0, 1e-3, 0.5):
        kap = spectral.effective_regularization(lam, ns, multiplicities=mult, ridge=ridge)
        assert bool((kap[1:] < kap[:-1]).all()) and bool((kap > 0).all())
        for n, kv in zip(ns, kap.tolist()):
            lhs = float((mult * lam / (lam + kv)).sum()) + ridge / kv
            _close(lhs, n, rtol=1e-11, atol=0)
            assert kv >= ridge / n * (1 - 1e-12)
    # M equal eigenvalues: n kappa^2 + (n lam - M lam - delta) kappa - delta lam = 0
    M, lv = 50, 0.2
    for n, delta in ((10, 0.0), (10, 0.3), (80, 0.3), (80, 0.0)):
        b = n * lv - M * lv - delta
        want = (-b + math.sqrt(b * b + 4 * n * delta * lv)) / (2 * n) if delta > 0 else max(lv * (M - n) / n, 0.0)
        got = float(spectral.effective_regularization([lv], n, multiplicities=[M], ridge=delta)[0])
        _close(got, want, rtol=1e-11, atol=1e-300)
    # the tail trace acts like a ridge for the listed modes
    _close(spectral.effective_regularization(lam, 30, multiplicities=mult, tail_trace=0.2),
           spectral.effective_regularization(lam, 30, multiplicities=mult, ridge=0.2), rtol=1e-12, atol=0)


def test_learning_curve_isotropic_ridgeless_equals_exact_projection_error_and_monte_carlo():
    # M isotropic Gaussian features, n < M samples, min-norm interpolation: the estimate is the projection of
    # the target on the span of the n feature rows, so E||w - v||^2 = (1 - n/M) ||v||^2 exactly
    M, n, v2 = 40, 15, 2.0
    lc = spectral.learning_curve([0.3], [v2], [n], multiplicities=[M])
    _close(lc.test_mse[0], (1 - n / M) * v2, rtol=1e-12, atol=0)
    g = torch.Generator().manual_seed(3)
    v = torch.randn(M, generator=g, dtype=DT)
    v = v * math.sqrt(v2) / v.norm()
    errs = []
    for _ in range(300):
        phi = torch.randn(n, M, generator=g, dtype=DT)  # (n, M) features, eigenvalues 1 (scale irrelevant)
        w = phi.T @ torch.linalg.solve(phi @ phi.T, phi @ v)  # (M,) min-norm interpolant
        errs.append(float(((w - v) ** 2).sum()))
    errs = torch.tensor(errs)
    assert abs(float(errs.mean()) - (1 - n / M) * v2) < 4 * float(errs.std()) / math.sqrt(300)


def test_learning_curve_matches_gaussian_feature_kernel_regression_monte_carlo():
    # two-level spectrum, label noise and a ridge: theory vs kernel ridge regression with Gaussian features
    lam = torch.tensor([1.0, 0.02], dtype=DT)
    mult = torch.tensor([10, 200])
    power = torch.tensor([1.0, 0.5], dtype=DT)
    noise, ridge = 0.1, 0.05
    g = torch.Generator().manual_seed(5)
    sq = torch.cat([torch.full((10,), 1.0), torch.full((200,), math.sqrt(0.02))]).to(DT)  # sqrt(lambda_i)
    v = torch.cat([torch.randn(10, generator=g, dtype=DT), torch.randn(200, generator=g, dtype=DT)])
    v[:10] *= math.sqrt(1.0) / v[:10].norm()
    v[10:] *= math.sqrt(0.5) / v[10:].norm()
    for n in (8, 40, 120):
        errs = []
        for _ in range(200):
            g_feat = torch.randn(n, 210, generator=g, dtype=DT)  # (n, M) phi_i(x_j), E phi^2 = 1
            k = (g_feat * sq ** 2) @ g_feat.T  # (n, n) Gram matrix
            y = g_feat @ v + math.sqrt(noise) * torch.randn(n, generator=g, dtype=DT)
            w = sq ** 2 * (g_feat.T @ torch.linalg.solve(k + ridge * torch.eye(n, dtype=DT), y))  # (M,) coefficients
            errs.append(float(((w - v) ** 2).sum()))
        errs = torch.tensor(errs)
        want = float(spectral.learning_curve(lam, power, [n], multiplicities=mult, ridge=ridge,
                                             noise_var=noise).test_mse[0])
        se = float(errs.std()) / math.sqrt(len(errs))
        assert abs(float(errs.mean()) - want) < 4 * se + 0.05 * want, (n, float(errs.mean()), se, want)


def test_learning_curve_limits_and_parts():
    lam, mult, power = torch.tensor([1.0, 0.1], dtype=DT), torch.tensor([3, 30]), torch.tensor([1.0, 2.0], dtype=DT)
    lc = spectral.learning_curve(lam, power, [1, 10, 1000, 10 ** 6], multiplicities=mult, ridge=0.01, noise_var=0.3)
    _close(lc.test_mse, lc.bias + lc.variance, rtol=1e-14, atol=0)
    _close(lc.variance, (lc.overfitting - 1) * 0.3, rtol=1e-14, atol=0)
    # many samples: kappa -> ridge / n, the learnabilities -> 1, the error -> 0
    assert float(lc.test_mse[-1]) < 1e-4 and float(lc.learnability[-1].min()) > 0.999
    # no samples' worth of learning: at n = 1 with a big ridge nothing is learned
    big = spectral.learning_curve(lam, power, [1], multiplicities=mult, ridge=1e6)
    _close(big.test_mse[0], 3.0, rtol=1e-5, atol=0)
    # ridgeless with as many modes as samples: infinite overfitting factor, and with more samples than
    # modes the noiseless target is learned exactly
    assert math.isinf(float(spectral.learning_curve(lam, power, [33], multiplicities=mult).overfitting[0]))
    _close(spectral.learning_curve(lam, power, [40], multiplicities=mult).test_mse[0], 0.0, rtol=0, atol=1e-15)
    # the tail's power is never learned
    tail = spectral.learning_curve(lam, power, [10 ** 6], multiplicities=mult, ridge=0.01, tail_trace=1e-9,
                                   tail_power=0.7)
    _close(tail.test_mse[0], 0.7, rtol=1e-3, atol=0)


def test_new_spectral_helpers_reject_bad_inputs():
    with pytest.raises(ValueError, match="dim"):
        spectral.legendre_polynomials(3, 1, torch.zeros(2))
    with pytest.raises(ValueError, match="degree"):
        spectral.sphere_multiplicity(3, -1)
    with pytest.raises(ValueError, match="axis"):
        spectral.zonal_harmonic(torch.ones(4, 3), torch.ones(2), 1)
    with pytest.raises(ValueError, match="eigenvalues"):
        spectral.effective_regularization([1.0, -0.1], 3)
    with pytest.raises(ValueError, match="multiplicities"):
        spectral.learning_curve([1.0, 0.1], [1.0, 1.0], 3, multiplicities=[1.0])
    with pytest.raises(ValueError, match="target_power"):
        spectral.learning_curve([1.0, 0.1], [1.0], 3)
    with pytest.raises(ValueError, match="n must"):
        spectral.learning_curve([1.0], [1.0], [0])
    with pytest.raises(ValueError, match="coefficients"):
        spectral.steps_to_fit([1.0, 0.5], [1.0], 0.1, 0.1)
    with pytest.raises(ValueError, match="learning_rate"):
        spectral.steps_to_fit([1.0], [1.0], 0.0, 0.1)


def test_band_norms_equal_the_norm_of_the_projection_on_each_eigenspace():
    # on equispaced points of the circle the cos and sin of one frequency span a degenerate eigenspace; any
    # orthonormal basis of it gives the same band norm: the norm of the orthogonal projection on the eigenspace
    n = 16
    basis, freqs = spectral.fourier_basis(n)
    r = torch.randn(3, n, generator=torch.Generator().manual_seed(2), dtype=DT)  # (3, n) three residuals
    bands = [(freqs == ell).nonzero()[:, 0].tolist() for ell in range(n // 2 + 1)]
    got = spectral.band_norms(r @ basis, bands)  # (3, 9)
    for j, b in enumerate(bands):
        proj = basis[:, b] @ basis[:, b].T  # (n, n) projector on the eigenspace
        _close(got[:, j], (r @ proj).norm(dim=1), rtol=1e-12, atol=1e-14)
        rot = torch.linalg.qr(basis[:, b] @ torch.randn(len(b), len(b), generator=torch.Generator().manual_seed(j),
                                                        dtype=DT)).Q  # another orthonormal basis of it
        _close(spectral.band_norms(r @ rot, [range(len(b))])[:, 0], got[:, j], rtol=1e-12, atol=1e-14)
    _close((got ** 2).sum(1), (r ** 2).sum(1), rtol=1e-12, atol=0)
