"""ntklib.linalg: the gains of gradient flow and descent against direct formulas, limits and literal sums."""
import math
import warnings

import pytest
import scipy.integrate
import torch

from ntklib.linalg import (IllConditionedKernelWarning, KernelEigen, add_diagonal_regularizer, psd_solve,
                           regularizer)

DT = torch.float64
EPS = torch.finfo(DT).eps


def _psd(n=6, rank=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, rank or n, generator=g, dtype=DT)
    return a @ a.T


def test_flow_gain_matches_the_integral_and_its_limits():
    """g(t) = (1 - exp(-lambda t/N))/lambda = int_0^{t/N} exp(-lambda s) ds; t/N at lambda = 0; 1/lambda at t = inf."""
    k = _psd(5, rank=3)  # two exactly-or-nearly zero eigenvalues
    eig = KernelEigen.of(k)
    t = torch.tensor([0.0, 0.3, 2.0, 40.0], dtype=DT)
    norm = 5.0
    g = eig.flow_gain(t, norm)  # (4, 5)
    lam = eig.eigenvalues
    for i, ti in enumerate(t.tolist()):
        for j, lj in enumerate(lam.tolist()):
            integral, _ = scipy.integrate.quad(lambda s: math.exp(-lj * s), 0.0, ti / norm, epsabs=1e-14, epsrel=1e-12)
            assert abs(float(g[i, j]) - integral) <= 1e-10 * max(1.0, abs(integral)), (ti, lj)
    assert float(g[0].abs().max()) == 0.0  # t = 0 exactly
    with pytest.warns(IllConditionedKernelWarning, match="condition number"):
        g_inf = eig.flow_gain(torch.tensor([math.inf], dtype=DT), norm)[0]
    keep = lam > 5 * EPS * float(lam.max())
    torch.testing.assert_close(g_inf[keep], 1 / lam[keep], rtol=1e-12, atol=0)
    assert float(g_inf[~keep].abs().max()) == 0.0  # the pseudo-inverse drops the null space


def test_flow_gain_with_shift_equals_gain_of_shifted_matrix():
    k = _psd(6, seed=1)
    t = torch.tensor([0.5, 3.0], dtype=DT)
    a = KernelEigen.of(k).flow_gain(t, 2.0, shift=0.7)
    b = KernelEigen.of(k + 0.7 * torch.eye(6, dtype=DT)).flow_gain(t, 2.0)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_descent_gain_equals_literal_geometric_sum():
    """k steps of f <- f - (eta/N) K (f - y): gain (eta/N) sum_{j<k} (1 - eta lambda/N)^j, also above the stability edge."""
    k = _psd(4, seed=2)
    eig = KernelEigen.of(k)
    lam = eig.eigenvalues
    norm = 4.0
    for eta in (0.5 * 2 * norm / float(lam.max()), 1.3 * 2 * norm / float(lam.max())):
        steps = torch.tensor([0, 1, 5, 17], dtype=DT)
        got = eig.descent_gain(steps, eta, norm)
        for i, kk in enumerate(steps.tolist()):
            want = sum((eta / norm) * (1 - eta * lam / norm) ** j for j in range(int(kk))) if kk else torch.zeros_like(lam)
            torch.testing.assert_close(got[i], want, rtol=1e-10, atol=1e-12)


def test_kernel_eigen_clamps_rounding_and_warns_on_an_indefinite_matrix():
    k = _psd(5, rank=2, seed=3)
    eig = KernelEigen.of(k)
    assert float(eig.eigenvalues.min()) >= 0.0
    torch.testing.assert_close(eig.eigenvectors @ torch.diag(eig.eigenvalues) @ eig.eigenvectors.T, k,
                               rtol=0, atol=1e-12 * float(k.abs().max()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        KernelEigen.of(k)  # rounding-level negatives: silent
    with pytest.warns(UserWarning, match="not positive semi-definite"):
        KernelEigen.of(torch.diag(torch.tensor([1.0, -0.5], dtype=DT)))


def test_regularizer_is_relative_to_the_mean_diagonal_unless_absolute():
    k = _psd(4, seed=4)
    assert regularizer(k, 0.1) == pytest.approx(0.1 * float(torch.diagonal(k).mean()), rel=1e-15)
    assert regularizer(k, 0.1, diag_reg_absolute_scale=True) == 0.1
    torch.testing.assert_close(add_diagonal_regularizer(k, 0.1, True), k + 0.1 * torch.eye(4, dtype=DT), rtol=0, atol=0)
    with pytest.raises(ValueError, match="diag_reg"):
        regularizer(k, -1.0)


def test_psd_solve_agrees_with_lstsq_on_a_well_conditioned_matrix():
    k = _psd(6, seed=5) + torch.eye(6, dtype=DT)
    rhs = torch.randn(6, 2, generator=torch.Generator().manual_seed(6), dtype=DT)
    torch.testing.assert_close(psd_solve(k, rhs), torch.linalg.lstsq(k, rhs).solution, rtol=1e-10, atol=1e-12)
