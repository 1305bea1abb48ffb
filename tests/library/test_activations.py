r"""Dual activations: Gauss--Hermite quadrature (``Elementwise``) against the closed forms, and the
closed forms against an independent numpy quadrature and against identities.

Tolerances. For :math:`(u, v)` with unit-order variances the integrands of erf, sin and gelu are
entire functions of slow growth, and tensor Gauss--Hermite of degree ``deg`` per axis is exact for
polynomials of degree < 2 deg: the error falls faster than any power of deg (measured at the
inputs below: erf 2e-4 / 3e-6 / 1e-11 at deg 16 / 32 / 64, gelu 3e-5 / 1e-9 / 2e-16, sin 1e-5 /
1e-16). At deg 64 we therefore ask for 1e-10. ReLU has a kink: its quadrature error only falls like
deg^-1 (NNGP) and ~deg^-0.6 (NTK), so the comparison is loose and checks the trend instead.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ntklib as nk


def _unit_inputs(n=6, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)  # (n, d)
    return x / x.norm(dim=1, keepdim=True) * math.sqrt(d)  # |x|^2/d = 1


def _arch(act, W_std=1.0, b_std=0.2):
    return nk.serial(nk.Dense(8, W_std, b_std), act, nk.Dense(1, 1.0, 0.0))


def _err(closed, quad, x):
    a, b = _arch(closed).kernel(x), _arch(quad).kernel(x)
    return (a.nngp - b.nngp).abs().max().item(), (a.ntk - b.ntk).abs().max().item()


def _gelu(t):
    return torch.nn.functional.gelu(t)


SMOOTH = {
    "erf": (lambda: nk.Erf(), torch.special.erf),
    "erf_abc": (lambda: nk.Erf(0.7, 1.3, 0.2), lambda t: 0.7 * torch.special.erf(1.3 * t) + 0.2),
    "sin": (lambda: nk.Sin(), torch.sin),
    "sin_abc": (lambda: nk.Sin(1.2, 0.8, 0.3), lambda t: 1.2 * torch.sin(0.8 * t + 0.3)),
    "gelu": (lambda: nk.Gelu(), _gelu),
}


@pytest.mark.parametrize("name", sorted(SMOOTH))
def test_quadrature_matches_closed_form_for_smooth_activations(name):
    """deg 64 reaches 1e-10 at unit scale; erf(1.3 x) (a wider integrand in z) needs deg 96 (2.5e-11)."""
    closed, fn = SMOOTH[name]
    x = _unit_inputs(seed=1)
    deg = 96 if name == "erf_abc" else 64
    nngp_err, ntk_err = _err(closed(), nk.Elementwise(fn, deg=deg), x)
    assert nngp_err < 1e-10 and ntk_err < 1e-10, (nngp_err, ntk_err)


@pytest.mark.parametrize("name", ["erf", "gelu", "sin"])
def test_quadrature_error_shrinks_quickly_with_degree(name):
    """err(deg) falls at least 10x per doubling until it reaches rounding (faster than any power)."""
    closed, fn = SMOOTH[name]
    x = _unit_inputs(seed=2)
    errs = [max(_err(closed(), nk.Elementwise(fn, deg=deg), x)) for deg in (8, 16, 32, 64)]
    for coarse, fine in zip(errs, errs[1:]):
        assert fine < max(coarse / 10, 1e-14), errs
    assert errs[-1] < 1e-10, errs


def test_relu_quadrature_approaches_arccos_slowly():
    """The kink: NNGP error ~ 1/deg, NTK error ~ deg^-0.6 (measured: NTK 0.038 / 0.018 / 0.008 at deg
    16 / 64 / 256). Loose bound at deg 64 and a decreasing trend."""
    x = _unit_inputs(seed=3)
    errs = {deg: _err(nk.Relu(), nk.Elementwise(torch.relu, deg=deg), x) for deg in (16, 64, 256)}
    assert errs[64][0] < 5e-3 and errs[64][1] < 3e-2, errs
    assert errs[256][0] < 0.4 * errs[16][0] and errs[256][1] < 0.4 * errs[16][1], errs


def test_tanh_and_sigmoid_with_given_derivative_match_autograd_derivative():
    x = _unit_inputs(seed=4)
    for given, fn in ((nk.Tanh(deg=32), torch.tanh), (nk.Sigmoid(deg=32), torch.sigmoid)):
        a, b = _arch(given).kernel(x), _arch(nk.Elementwise(fn, deg=32)).kernel(x)
        torch.testing.assert_close(a.nngp, b.nngp, rtol=1e-13, atol=1e-14)
        torch.testing.assert_close(a.ntk, b.ntk, rtol=1e-13, atol=1e-14)


# ------------------------------------------------------------------------------------------------
# Closed forms against an independent quadrature written here in numpy, at raw (c, v1, v2)
# ------------------------------------------------------------------------------------------------

def _np_gauss_expectation(f, g, c, v1, v2, deg=160):
    """E[f(u) g(v)] for (u, v) ~ N(0, [[v1, c], [c, v2]]), tensor Gauss-Hermite in numpy (Cholesky form)."""
    z, w = np.polynomial.hermite_e.hermegauss(deg)
    w = w / w.sum()
    rho = c / math.sqrt(v1 * v2)
    u = math.sqrt(v1) * z[:, None]  # (deg, 1)
    v = math.sqrt(v2) * (rho * z[:, None] + math.sqrt(max(1 - rho * rho, 0.0)) * z[None, :])  # (deg, deg)
    return float((w[:, None] * w[None, :] * f(u) * g(v)).sum())


def _np_erf(t):
    from scipy.special import erf
    return erf(t)


def _np_gelu(t):
    from scipy.special import ndtr
    return t * ndtr(t)


def _np_gelu_prime(t):
    from scipy.special import ndtr
    return ndtr(t) + t * np.exp(-t * t / 2) / math.sqrt(2 * math.pi)


CASES = [(0.3, 1.0, 1.0), (-0.6, 0.8, 1.3), (0.95, 1.1, 0.9), (0.0, 0.5, 2.0), (1.9, 2.0, 2.5)]


@pytest.mark.parametrize("c, v1, v2", CASES)
def test_gelu_and_erf_closed_forms_match_independent_numpy_quadrature(c, v1, v2):
    t = lambda a: torch.tensor([a], dtype=torch.float64)
    for act, f, fp in ((nk.Gelu(), _np_gelu, _np_gelu_prime),
                       (nk.Erf(), _np_erf, lambda s: 2 / math.sqrt(math.pi) * np.exp(-s * s))):
        nngp, dot = act.dual(t(c), t(v1), t(v2), need_dot=True)
        assert abs(nngp.item() - _np_gauss_expectation(f, f, c, v1, v2)) < 1e-10
        assert abs(dot.item() - _np_gauss_expectation(fp, fp, c, v1, v2)) < 1e-10


@pytest.mark.parametrize("a, b", [(0.0, 1.0), (0.2, 1.0), (-1.0, 1.0), (0.5, -2.0)])
@pytest.mark.parametrize("c, v1, v2", CASES)
def test_abrelu_dual_matches_relu_identity(a, b, c, v1, v2):
    r"""phi = a min(x,0) + b max(x,0) = a x + (b-a) relu(x). With E[u relu(v)] = c/2:
    E[phi(u) phi(v)] = ab c + (b-a)^2 K_relu,  E[phi' phi'] = ab + (b-a)^2 (pi - theta)/(2 pi)."""
    theta = math.acos(max(-1.0, min(1.0, c / math.sqrt(v1 * v2))))
    k_relu = math.sqrt(v1 * v2) / (2 * math.pi) * (math.sin(theta) + (math.pi - theta) * math.cos(theta))
    want_nngp = a * b * c + (b - a) ** 2 * k_relu
    want_dot = a * b + (b - a) ** 2 * (math.pi - theta) / (2 * math.pi)
    t = lambda s: torch.tensor([s], dtype=torch.float64)
    nngp, dot = nk.ABRelu(a, b).dual(t(c), t(v1), t(v2), need_dot=True)
    assert abs(nngp.item() - want_nngp) < 1e-12 and abs(dot.item() - want_dot) < 1e-12


def test_leaky_relu_and_abs_are_abrelu():
    x = _unit_inputs(seed=5)
    for named, ab in ((nk.LeakyRelu(0.1), nk.ABRelu(0.1, 1.0)), (nk.Abs(), nk.ABRelu(-1.0, 1.0))):
        ka, kb = _arch(named).kernel(x), _arch(ab).kernel(x)
        assert torch.equal(ka.nngp, kb.nngp) and torch.equal(ka.ntk, kb.ntk)
    # |x| maps a zero-mean Gaussian to E|u|^2 = v on the diagonal
    k = nk.serial(nk.Dense(4, 1.3), nk.Abs()).kernel(x)
    torch.testing.assert_close(k.nngp.diagonal(), 1.3 ** 2 * torch.ones(6, dtype=torch.float64), rtol=1e-15, atol=0)


def test_sin_dual_matches_trig_identity_expectations():
    r"""E[sin(bu+c) sin(bv+c)] = (E cos(b(u-v)) - E cos(b(u+v)+2c))/2, and E cos(w) = exp(-Var(w)/2)
    for w ~ N(mean, Var) times cos(mean): checked at raw (c, v1, v2) with a=1.3, b=0.7, c=0.4."""
    a, b, s = 1.3, 0.7, 0.4
    act = nk.Sin(a, b, s)
    for c, v1, v2 in CASES:
        t = lambda q: torch.tensor([q], dtype=torch.float64)
        nngp, dot = act.dual(t(c), t(v1), t(v2), need_dot=True)
        e_minus = math.exp(-b * b * (v1 + v2 - 2 * c) / 2)
        e_plus = math.exp(-b * b * (v1 + v2 + 2 * c) / 2) * math.cos(2 * s)
        assert abs(nngp.item() - a * a * (e_minus - e_plus) / 2) < 1e-14
        # phi' = a b cos(bu + c): cos cos = (cos(b(u-v)) + cos(b(u+v)+2c))/2
        assert abs(dot.item() - a * a * b * b * (e_minus + e_plus) / 2) < 1e-14
