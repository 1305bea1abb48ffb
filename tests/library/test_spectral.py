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
