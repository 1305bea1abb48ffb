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
import warnings

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


@pytest.mark.filterwarnings("ignore::ntklib.activations.QuadratureAccuracyWarning")  # low degrees on purpose
@pytest.mark.parametrize("name", ["erf", "gelu", "sin"])
def test_quadrature_error_shrinks_quickly_with_degree(name):
    """err(deg) falls at least 10x per doubling until it reaches rounding (faster than any power)."""
    closed, fn = SMOOTH[name]
    x = _unit_inputs(seed=2)
    errs = [max(_err(closed(), nk.Elementwise(fn, deg=deg), x)) for deg in (8, 16, 32, 64)]
    for coarse, fine in zip(errs, errs[1:]):
        assert fine < max(coarse / 10, 1e-14), errs
    assert errs[-1] < 1e-10, errs


@pytest.mark.filterwarnings("ignore::ntklib.activations.QuadratureAccuracyWarning")  # the kink: on purpose
def test_relu_quadrature_approaches_arccos_slowly():
    """The kink: NNGP error ~ 1/deg, NTK error ~ deg^-0.6 (measured: NTK 0.038 / 0.018 / 0.008 at deg
    16 / 64 / 256). Loose bound at deg 64 and a decreasing trend."""
    x = _unit_inputs(seed=3)
    errs = {deg: _err(nk.Relu(), nk.Elementwise(torch.relu, deg=deg), x) for deg in (16, 64, 256)}
    assert errs[64][0] < 5e-3 and errs[64][1] < 3e-2, errs
    assert errs[256][0] < 0.4 * errs[16][0] and errs[256][1] < 0.4 * errs[16][1], errs


def test_tanh_and_sigmoid_with_given_derivative_match_autograd_derivative():
    x = _unit_inputs(seed=4)
    for given, fn in ((nk.Tanh(deg=32, tol=1e-3), torch.tanh), (nk.Sigmoid(deg=32, tol=1e-3), torch.sigmoid)):
        a, b = _arch(given).kernel(x), _arch(nk.Elementwise(fn, deg=32, tol=1e-3)).kernel(x)
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


# ------------------------------------------------------------------------------------------------
# Extreme scales: the closed forms against their formulas evaluated in 50-digit mpmath
# ------------------------------------------------------------------------------------------------
import mpmath  # noqa: E402

EPS = torch.finfo(torch.float64).eps


def _mp_dual(name, p, c, v1, v2):
    """(E[phi(u) phi(v)], E[phi'(u) phi'(v)]) from the textbook formulas of the module docstring, at 50 digits."""
    c, v1, v2 = mpmath.mpf(c), mpmath.mpf(v1), mpmath.mpf(v2)
    pi = mpmath.pi
    if name == "abrelu":
        a, b = (mpmath.mpf(t) for t in p)
        s = mpmath.sqrt(v1 * v2)
        theta = pi / 2 if s == 0 else mpmath.acos(max(-1, min(1, c / s)))
        k = (a - b) ** 2 / (2 * pi)
        dot = (a * a + b * b) / 2 - k * theta
        return k * mpmath.sqrt(max(0, v1 * v2 - c * c)) + dot * c, dot
    if name == "erf":
        a, b, sh = (mpmath.mpf(t) for t in p)
        P = (1 + 2 * b * b * v1) * (1 + 2 * b * b * v2)
        z = 2 * b * b * c
        return 2 * a * a / pi * mpmath.asin(z / mpmath.sqrt(P)) + sh * sh, 4 * a * a * b * b / pi / mpmath.sqrt(P - z * z)
    if name == "sin":
        a, b, sh = (mpmath.mpf(t) for t in p)
        m = (v1 + v2) / 2
        em, ep = mpmath.exp(-b * b * (m - c)), mpmath.exp(-b * b * (m + c)) * mpmath.cos(2 * sh)
        return a * a / 2 * (em - ep), a * a * b * b / 2 * (em + ep)
    # gelu (Tsuchida et al.)
    prod, prod1 = v1 * v2, (1 + v1) * (1 + v2)
    d2 = prod1 - c * c
    d = mpmath.sqrt(d2)
    ang = mpmath.atan2(c, d)
    nngp = c / 4 + (c * ang + (c * c + prod * d2) / (prod1 * d)) / (2 * pi)
    dot = mpmath.mpf(1) / 4 + ang / (2 * pi) + c / (2 * pi * d) * (1 / d2 + (1 - prod) / prod1 + 1)
    return nngp, dot


DUALS = {
    "relu": (lambda: nk.Relu(), "abrelu", (0.0, 1.0)),
    "leaky": (lambda: nk.LeakyRelu(0.2), "abrelu", (0.2, 1.0)),
    "abs": (lambda: nk.Abs(), "abrelu", (-1.0, 1.0)),
    "erf": (lambda: nk.Erf(1.3, 0.7, 0.2), "erf", (1.3, 0.7, 0.2)),
    "sin": (lambda: nk.Sin(1.2, 0.8, 0.3), "sin", (1.2, 0.8, 0.3)),
    "sin_odd": (lambda: nk.Sin(), "sin", (1.0, 1.0, 0.0)),  # sin(x): E[sin u sin v] = e^{-m} sinh(c), small at small c
    "gelu": (lambda: nk.Gelu(), "gelu", ()),
}


@pytest.mark.parametrize("v", [1e-300, 1e-160, 1e-20, 3e-16, 1.0, 2.5e14, 1e16, 1e150, 1e300])
@pytest.mark.parametrize("name", sorted(DUALS))
def test_closed_form_duals_match_mpmath_from_tiny_to_huge_variances(name, v):
    """Relative error of a few roundings at every scale, backward-stably: the reference is the mpmath value at the
    given float inputs, and the tolerance adds how much that value moves when c moves by 8 roundings (the kernels
    of Gelu and Erf near the diagonal at large variance are that sensitive to c, whatever computes them).
    Found: Gelu returned 1e153 at variance 1e16 (nngp) and overflowed from 1e154; Erf's NTK diagonal was 1e-2 off at
    2.5e14; Sin lost eps/variance relatively (11% at 3e-16); the ReLU family halved (Abs: 0) below 1e-162 and overflowed
    above 1e154 (v1 v2). Exactly at c == v1 == v2 (and c == -v) the answer is exact: no slack there."""
    make, kind, params = DUALS[name]
    act = make()
    mpmath.mp.dps = 50 + int(2 * abs(math.log10(v)))  # the textbook forms cancel ~v^2 against ~v: enough digits
    v2 = 1.7 * v
    s = math.sqrt(v) * math.sqrt(v2)  # sqrt(v v2) without forming v v2 (it over- or underflows at the extremes)
    for c, a, b in ((v, v, v), (-v, v, v), (0.3 * s, v, v2), (-0.7 * s, v, v2), ((1 - 1e-9) * s, v, v2)):
        t = lambda q: torch.tensor([q], dtype=torch.float64)
        nngp, dot = (float(r) for r in act.dual(t(c), t(a), t(b), need_dot=True))
        want = [float(r) for r in _mp_dual(kind, params, c, a, b)]
        exact = abs(c) == a == b
        # how far the truth moves when c moves by 8 roundings (towards 0, to stay inside |c| <= sqrt(v1 v2))
        moved = [float(r) for r in _mp_dual(kind, params, c * (1 - 8 * EPS), a, b)]
        da, db = _mp_dual(kind, params, a, a, a), _mp_dual(kind, params, b, b, b)
        scales = [float(mpmath.sqrt(abs(da[i] * db[i]))) for i in (0, 1)]  # Cauchy-Schwarz: the entry's natural size
        for got, ref, mv, scale, what in ((nngp, want[0], moved[0], scales[0], "nngp"),
                                          (dot, want[1], moved[1], scales[1], "dot")):
            slack = 0.0 if exact else abs(mv - ref)
            assert math.isfinite(got), (name, v, c, what)
            assert abs(got - ref) <= 64 * EPS * max(abs(ref), 1e-300) + 16 * EPS * scale + slack, \
                (name, v, c, a, b, what, got, ref, slack)


# ------------------------------------------------------------------------------------------------
# Quadrature: its error is estimated, and every degree works
# ------------------------------------------------------------------------------------------------
def test_quadrature_warns_when_its_estimated_error_is_large_and_not_otherwise():
    """Erf by quadrature at pre-activation variance ~900 gave an NTK of 1.0 where the closed form gives 30.6, silently:
    now a QuadratureAccuracyWarning gives the estimated error and the variance. At unit variance (erf, deg 64:
    error 1e-11) nothing is said."""
    x = _unit_inputs(seed=6)
    quad = nk.serial(nk.Dense(8, 1.0, 0.0), nk.Elementwise(torch.special.erf), nk.Dense(1))
    closed = nk.serial(nk.Dense(8, 1.0, 0.0), nk.Erf(), nk.Dense(1))
    with pytest.warns(nk.activations.QuadratureAccuracyWarning, match=r"error is about .* at pre-activation variance 9\d\d"):
        wrong = quad.kernel(30 * x)
    assert abs(float(wrong.ntk[0, 0]) / float(closed.kernel(30 * x).ntk[0, 0]) - 1) > 0.5  # it really is wrong
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quad.kernel(x)
    # the estimate tracks the true error of the diagonal expectations (tanh: 7e-5 at variance 2, deg 64)
    err, var = nk.Tanh().quadrature_error(torch.tensor([2.0], dtype=torch.float64))
    assert 3e-5 < err < 2e-4 and var == 2.0


@pytest.mark.parametrize("deg", [370, 371, 400])
def test_quadrature_degrees_beyond_numpys_rule_are_finite_and_accurate(deg):
    """numpy's hermegauss gives non-finite weights from degree 371 on, which ntklib reported as an 'overflow' of the
    kernel; beyond 370 the rule now comes from scipy (asymptotic nodes) and matches the closed form."""
    x = _unit_inputs(n=3, seed=7)
    err = _err(nk.Erf(), nk.Elementwise(torch.special.erf, deg=deg), x)
    assert max(err) < 1e-12, err


# ------------------------------------------------------------------------------------------------
# phi' has one definition: Activation.derivative
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("act", [nk.Relu(), nk.LeakyRelu(0.1), nk.ABRelu(-0.3, 1.2), nk.Abs(), nk.Identity(), nk.Erf(0.7, 1.3, 0.2),
                                 nk.Sin(1.2, 0.8, 0.3), nk.Gelu(), nk.Tanh(), nk.Sigmoid(), nk.Elementwise(torch.tanh)],
                         ids=repr)
def test_derivative_closed_forms_match_autograd_of_fn_including_the_kinks(act):
    """Activation.derivative (closed form where there is one) against torch autograd of Activation.fn, on a grid that
    contains 0: at the kink of the ReLU family both give torch's subgradient (the left slope a)."""
    z = torch.cat([torch.linspace(-4, 4, 81, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])
    zr = z.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(act.fn(zr).sum(), zr)
    torch.testing.assert_close(act.derivative(z), auto, rtol=4 * EPS, atol=4 * EPS)


def test_finite_networks_and_lipschitz_constant_use_the_activations_derivative():
    """The structured empirical NTK (ActivationModule.derivative) and lipschitz_constant read phi' from the activation:
    an Elementwise with a deliberately wrong fn_prime (twice the true one) changes both, as it must."""
    from ntklib.shortcut import lipschitz_constant
    doubled = nk.Elementwise(torch.tanh, fn_prime=lambda t: 2 * (1 - torch.tanh(t) ** 2), deg=16)
    net = nk.serial(nk.Dense(16, 1.0), doubled, nk.Dense(1)).module(3, seed=0, dtype=torch.float64, device="cpu")
    act = [m for m in net if isinstance(m, nk.ActivationModule)][0]
    z = torch.linspace(-2, 2, 9, dtype=torch.float64)
    torch.testing.assert_close(act.derivative(z), 2 * (1 - torch.tanh(z) ** 2), rtol=0, atol=0)
    assert lipschitz_constant(doubled) == pytest.approx(2.0, rel=1e-12)
    # Gelu: max of Phi(x) + x phi(x), at x = sqrt(2): Phi(sqrt 2) + sqrt(2) phi(sqrt 2) = 1.12890...
    peak = 0.5 * (1 + math.erf(1.0)) + math.sqrt(2) * math.exp(-1) / math.sqrt(2 * math.pi)
    assert lipschitz_constant(nk.Gelu()) == pytest.approx(peak, rel=1e-7)  # the grid's spacing 2e-4 at a smooth max
    with pytest.raises(ValueError, match=r"grid must be a positive integer; got 0"):
        lipschitz_constant(nk.Gelu(), grid=0)
