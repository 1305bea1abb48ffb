r"""Analytic kernels (``arch.kernel``) against closed forms written out by hand, and their properties.

Conventions under test (neural-tangents' ``stax``): input kernel :math:`x\cdot x'/d`,
NTK parameterization :math:`z = \frac{W_{std}}{\sqrt{n_{in}}} W h + b_{std} b`, so a Dense layer maps
:math:`\Sigma \mapsto W_{std}^2\Sigma + b_{std}^2` and :math:`\Theta \mapsto W_{std}^2\Sigma + b_{std}^2 + W_{std}^2\Theta`.

The "truth" in each test is computed here with numpy from the textbook formulas (arc-cosine,
arcsin, linear networks), never by calling ntklib's duals.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ntklib as nk

EPS = torch.finfo(torch.float64).eps  # 2.2e-16: tolerances below are multiples of float64 rounding

TOL = 1e-10  # float64 closed forms: every comparison below is a handful of flops from exact


def _inputs(n=7, d=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype)  # (n, d)


def _np(t):
    return t.detach().cpu().numpy()


def _input_gram(x1, x2=None):
    """Sigma^(0) = x.x'/d and the variances, in numpy; the exact diagonal when x2 is None."""
    a = _np(x1)
    b = a if x2 is None else _np(x2)
    d = a.shape[1]
    k12 = a @ b.T / d  # (n1, n2)
    v1 = (a * a).sum(1) / d  # (n1,)
    v2 = (b * b).sum(1) / d  # (n2,)
    return k12, v1, v2


def _arccos_relu(k12, v1, v2, exact_diag=False):
    """ReLU arc-cosine kernel (Cho & Saul 2009, degree 1) and its derivative kernel, by hand.

    E[relu(u) relu(v)] = sqrt(v1 v2)/(2 pi) (sin t + (pi - t) cos t), E[step(u) step(v)] = (pi - t)/(2 pi),
    t = arccos(k12 / sqrt(v1 v2)).
    """
    norm = np.sqrt(np.outer(v1, v2))  # (n1, n2)
    cos = np.clip(k12 / norm, -1.0, 1.0)
    if exact_diag:
        np.fill_diagonal(cos, 1.0)  # a point with itself: cos = 1 exactly (the math, not the rounding)
    t = np.arccos(cos)
    nngp = norm / (2 * np.pi) * (np.sin(t) + (np.pi - t) * np.cos(t))
    dot = (np.pi - t) / (2 * np.pi)
    return nngp, dot


# ------------------------------------------------------------------------------------------------
# 1. Closed forms
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("W_std, b_std", [(1.0, 0.0), (math.sqrt(2), 0.0), (1.5, 0.1), (0.7, 1.2)])
def test_relu_nngp_and_ntk_match_arccos_closed_form(W_std, b_std):
    """One hidden layer: Sigma1 = W^2 x.x'/d + b^2; NNGP = W2^2 arccos(Sigma1) + b2^2;
    NTK = Sigma2 + W2^2 * Theta1 * Sigma_dot, Theta1 = Sigma1 (written out by hand)."""
    x1, x2 = _inputs(7, 5, seed=1), _inputs(4, 5, seed=2)
    W2, b2 = 1.3, 0.2
    arch = nk.serial(nk.Dense(64, W_std, b_std), nk.Relu(), nk.Dense(1, W2, b2))
    k = arch.kernel(x1, x2)

    k12, v1, v2 = _input_gram(x1, x2)
    s1_12, s1_1, s1_2 = (W_std ** 2 * t + b_std ** 2 for t in (k12, v1, v2))  # first Dense
    relu, relu_dot = _arccos_relu(s1_12, s1_1, s1_2)
    nngp = W2 ** 2 * relu + b2 ** 2  # second Dense
    theta1 = s1_12  # Theta after the first Dense: its NNGP (Theta^(0) = 0)
    ntk = nngp + W2 ** 2 * theta1 * relu_dot  # Sigma + Sigma_prev * Sigma_dot (times W2^2)
    np.testing.assert_allclose(_np(k.nngp), nngp, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(_np(k.ntk), ntk, rtol=TOL, atol=TOL)


def test_relu_two_layer_ntk_matches_sigma_plus_sigma_prev_times_sigma_dot():
    """Two hidden ReLU layers, W_std=1, no bias: Theta2 = Sigma2 + Sigma_dot2 * (Sigma1 + Sigma_dot1 * Sigma0)
    with every Sigma the arc-cosine recursion (the recursion written out by hand, layer by layer)."""
    x = _inputs(6, 4, seed=3)
    arch = nk.serial(nk.Dense(32), nk.Relu(), nk.Dense(32), nk.Relu(), nk.Dense(1))
    k = arch.kernel(x)

    s0, v0, _ = _input_gram(x)
    a1, dot1 = _arccos_relu(s0, v0, v0, exact_diag=True)  # post-activation layer 1
    th1 = s0 + 0 * s0  # Theta after Dense 1 = Sigma0 (W=1, b=0)
    th1_post = th1 * dot1
    va1 = v0 / 2  # diagonal of the arc-cosine kernel: v/2
    s1 = a1  # Dense 2 (W=1, b=0)
    th2 = s1 + th1_post
    a2, dot2 = _arccos_relu(s1, va1, va1, exact_diag=True)
    th3 = a2 + th2 * dot2  # Dense 3 (readout)
    np.testing.assert_allclose(_np(k.nngp), a2, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(_np(k.ntk), th3, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("a, b, c", [(1.0, 1.0, 0.0), (0.7, 1.3, 0.2), (2.0, 1 / math.sqrt(2), -0.5)])
def test_erf_nngp_and_ntk_match_arcsin_closed_form(a, b, c):
    """phi = a erf(b u) + c: E[phi phi'] = 2a^2/pi arcsin(2b^2 S12 / sqrt((1+2b^2 S11)(1+2b^2 S22))) + c^2
    (Williams 1997) and E[phi' phi'] = 4a^2b^2/pi ((1+2b^2 S11)(1+2b^2 S22) - 4b^4 S12^2)^(-1/2)."""
    x1, x2 = _inputs(5, 3, seed=4), _inputs(6, 3, seed=5)
    W1, b1, W2, b2 = 1.4, 0.3, 0.9, 0.1
    arch = nk.serial(nk.Dense(16, W1, b1), nk.Erf(a, b, c), nk.Dense(1, W2, b2))
    k = arch.kernel(x1, x2)

    k12, v1, v2 = _input_gram(x1, x2)
    s12, s1, s2 = (W1 ** 2 * t + b1 ** 2 for t in (k12, v1, v2))
    P = np.outer(1 + 2 * b * b * s1, 1 + 2 * b * b * s2)  # (n1, n2)
    post = 2 * a * a / np.pi * np.arcsin(2 * b * b * s12 / np.sqrt(P)) + c * c
    dot = 4 * a * a * b * b / np.pi / np.sqrt(P - 4 * b ** 4 * s12 ** 2)
    nngp = W2 ** 2 * post + b2 ** 2
    ntk = nngp + W2 ** 2 * s12 * dot
    np.testing.assert_allclose(_np(k.nngp), nngp, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(_np(k.ntk), ntk, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("depth", [1, 2, 5])
@pytest.mark.parametrize("W_std", [1.0, 0.8, 1.3])
def test_deep_linear_network_kernels_are_linear_in_x_dot_x(depth, W_std):
    r"""Deep linear network: ``depth`` Dense layers (Identity between them), b_std = 0.

    Each Dense multiplies Sigma by W^2, so Sigma_L = W^{2L} x.x'/d; Theta_l = Sigma_l + W^2 Theta_{l-1}
    gives Theta_L = L W^{2L} x.x'/d.

    The seed lesson (002) claims Theta = L (x.x')^L. That is wrong: f(x) = W_L ... W_1 x is linear
    in x, so every gradient d f / d W_l is linear in x and Theta(x, x') = <grad f(x), grad f(x')> is
    bilinear in (x, x'), i.e. degree 1 in x -- it cannot be (x.x')^L for L >= 2. Each of the L layers
    contributes the same W^{2L} x.x'/d (a product of weight variances, not a power of the kernel).
    ``test_deep_linear_ntk_monte_carlo`` (test_monte_carlo.py) checks this against finite networks.
    """
    x1, x2 = _inputs(5, 4, seed=6), _inputs(3, 4, seed=7)
    layers = []
    for _ in range(depth - 1):
        layers += [nk.Dense(16, W_std, 0.0), nk.Identity()]
    arch = nk.serial(*layers, nk.Dense(1, W_std, 0.0))
    k = arch.kernel(x1, x2)
    lin = _np(x1) @ _np(x2).T / x1.shape[1]  # x.x'/d
    np.testing.assert_allclose(_np(k.nngp), W_std ** (2 * depth) * lin, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(_np(k.ntk), depth * W_std ** (2 * depth) * lin, rtol=TOL, atol=TOL)
    if depth >= 2:  # the seed's formula is a different function (it is even in x for even L)
        seed_formula = depth * (_np(x1) @ _np(x2).T) ** depth
        assert not np.allclose(_np(k.ntk), seed_formula, rtol=1e-2)


def test_deep_linear_ntk_is_bilinear_in_inputs():
    """Theta(a x, x') = a Theta(x, x') for a deep linear net (degree 1 in x), unlike L (x.x')^L."""
    x1, x2 = _inputs(4, 3, seed=8), _inputs(5, 3, seed=9)
    arch = nk.serial(nk.Dense(8, 1.2), nk.Identity(), nk.Dense(8, 1.2), nk.Identity(), nk.Dense(1, 1.2))
    k = arch.kernel(x1, x2).ntk
    k3 = arch.kernel(3.0 * x1, x2).ntk
    torch.testing.assert_close(k3, 3.0 * k, rtol=TOL, atol=TOL)


# ------------------------------------------------------------------------------------------------
# 3. Properties
# ------------------------------------------------------------------------------------------------

ARCHS = {
    "relu_deep": lambda: nk.serial(*[nk.Dense(8, 1.5, 0.1), nk.Relu()] * 3, nk.Dense(1, 1.5, 0.1)),
    "erf": lambda: nk.serial(nk.Dense(8, 1.2, 0.3), nk.Erf(), nk.Dense(8, 1.2, 0.3), nk.Erf(0.5, 2.0, 0.1), nk.Dense(1)),
    "gelu": lambda: nk.serial(nk.Dense(8, 1.3, 0.2), nk.Gelu(), nk.Dense(1, 0.9, 0.1)),
    "leaky_abs": lambda: nk.serial(nk.Dense(8, 1.1), nk.LeakyRelu(0.1), nk.Dense(8), nk.Abs(), nk.Dense(1)),
    "sin": lambda: nk.serial(nk.Dense(8, 1.0, 0.5), nk.Sin(1.0, 2.0, 0.3), nk.Dense(1)),
    "tanh_quadrature": lambda: nk.serial(nk.Dense(8, 1.5, 0.2), nk.Tanh(deg=128), nk.Dense(1, 1.0, 0.1)),
    "relu_quadrature": lambda: nk.serial(nk.Dense(8, 1.5, 0.2), nk.Elementwise(torch.relu, deg=12), nk.Dense(1)),
    "standard": lambda: nk.serial(nk.Dense(8, 1.5, 0.1, parameterization="standard"), nk.Relu(),
                                  nk.Dense(1, 1.2, None, parameterization="standard")),
}
# Architectures whose diagonal is computed only by correctly rounded operations (Dense; the ReLU family
# at theta = 0, where atan2(0, c) = 0 and the square root is of an exact 0): bit-identical by construction.
EXACT_DIAGONAL = {"relu_deep", "leaky_abs", "standard"}


@pytest.fixture(params=sorted(ARCHS))
def arch_name(request):
    return request.param


@pytest.fixture
def arch(arch_name):
    return ARCHS[arch_name]()


def test_kernel_is_symmetric_and_psd(arch):
    """x2=None: nngp and ntk are exactly symmetric and positive semi-definite (eigvalsh >= -1e-12 max)."""
    x = _inputs(12, 4, seed=10)
    k = arch.kernel(x)
    for name in ("nngp", "ntk"):
        m = getattr(k, name)
        assert torch.equal(m, m.T), f"{name} is not exactly symmetric (max asymmetry {(m - m.T).abs().max():.2e})"
        ev = torch.linalg.eigvalsh(m)
        assert ev.min() >= -1e-12 * ev.max(), f"{name} has eigenvalue {ev.min():.3e} (max {ev.max():.3e})"


def test_kernel_with_x2_equal_x1_matches_x2_none(arch, arch_name):
    """k(x, x) == k(x, None): exactly on the diagonal (equal rows are detected, cos = 1 exactly),
    to rounding off it (x1 @ x2.T is not symmetrized as x1 @ x1.T is)."""
    x = _inputs(9, 4, seed=11)
    a, b = arch.kernel(x, x), arch.kernel(x)
    # On the diagonal the (n1, n2) evaluation of a dual activation and its (n,) variance evaluation get
    # the same numbers. Exact by construction only where every operation is correctly rounded there
    # (Dense, and the ReLU family at theta = 0); transcendental functions (erf, gelu, sin, quadrature)
    # may take a vector routine for one and a scalar one for the other: a few units in the last place.
    exact = arch_name in EXACT_DIAGONAL
    diag_tol = dict(rtol=0, atol=0) if exact else dict(rtol=16 * EPS, atol=0)
    torch.testing.assert_close(a.nngp.diagonal(), b.nngp.diagonal(), **diag_tol)
    torch.testing.assert_close(a.var2, b.var1, **diag_tol)
    # Quadrature of a non-homogeneous phi is not swap-symmetric: k(x, None) averages the two orders,
    # k(x, x) takes one, so they differ by the quadrature error (tanh at deg 128: measured 1.4e-7).
    atol = 1e-6 if arch_name == "tanh_quadrature" else 1e-13
    torch.testing.assert_close(a.nngp, b.nngp, rtol=1e-12, atol=atol)
    torch.testing.assert_close(a.ntk, b.ntk, rtol=1e-12, atol=atol)
    if arch_name != "tanh_quadrature":
        torch.testing.assert_close(a.ntk.diagonal(), b.ntk.diagonal(), **diag_tol)


def test_diagonal_mode_equals_diagonal_of_full_kernel(arch):
    x = _inputs(9, 4, seed=12)
    full = arch.kernel(x)
    diag = arch.kernel(x, diagonal=True)
    assert diag.nngp.shape == (9,) and diag.ntk.shape == (9,)
    torch.testing.assert_close(diag.nngp, full.nngp.diagonal(), rtol=1e-13, atol=0)
    torch.testing.assert_close(diag.ntk, full.ntk.diagonal(), rtol=1e-13, atol=0)


def test_nngp_diagonal_is_exactly_var1(arch):
    x = _inputs(9, 4, seed=13)
    k = arch.kernel(x)
    assert torch.equal(k.nngp.diagonal(), k.var1)
    assert torch.equal(arch.kernel(x, diagonal=True).nngp, k.var1)


@pytest.mark.parametrize("batch_size", [1, 3, 4, 100])
@pytest.mark.parametrize("name", ["relu_deep", "gelu"])
def test_tiled_kernel_equals_untiled(batch_size, name):
    """batch_size tiles give the untiled kernel to rounding, exactly symmetric, the same var1/var2."""
    arch = ARCHS[name]()
    x1, x2 = _inputs(10, 4, seed=14), _inputs(7, 4, seed=15)
    for a, b in ((x1, None), (x1, x2)):
        ref = arch.kernel(a, b)
        tiled = arch.kernel(a, b, batch_size=batch_size)
        if b is None:
            assert torch.equal(tiled.nngp, tiled.nngp.T) and torch.equal(tiled.ntk, tiled.ntk.T)
            assert torch.equal(tiled.nngp.diagonal(), tiled.var1)
        torch.testing.assert_close(tiled.nngp, ref.nngp, rtol=1e-13, atol=1e-14)
        torch.testing.assert_close(tiled.ntk, ref.ntk, rtol=1e-13, atol=1e-14)
        # variances of a tile are computed on a shorter vector: elementwise kernels run vector or scalar
        # routines by position, so transcendental functions may differ in the last place
        torch.testing.assert_close(tiled.var1, ref.var1, rtol=8 * EPS, atol=0)
        torch.testing.assert_close(tiled.var2, ref.var2, rtol=8 * EPS, atol=0)
    dt = arch.kernel(x1, diagonal=True, batch_size=batch_size)
    dr = arch.kernel(x1, diagonal=True)
    torch.testing.assert_close(dt.ntk, dr.ntk, rtol=8 * EPS, atol=0)
    torch.testing.assert_close(arch.kernel(x1, batch_size=batch_size).nngp.diagonal(), dr.nngp, rtol=8 * EPS, atol=0)


def test_get_nngp_only_skips_ntk_and_keeps_nngp():
    arch = ARCHS["erf"]()
    x = _inputs(5, 4, seed=16)
    k = arch.kernel(x, get="nngp")
    assert k.ntk is None
    torch.testing.assert_close(k.nngp, arch.kernel(x).nngp, rtol=0, atol=0)


def _relu_diag_recursion(sq_norm_over_d, layers):
    """Closed-form diagonal for serial(Dense(W, b), Relu, ..., Dense(W, b)): on the diagonal
    theta = 0, so relu maps v -> v/2 and Sigma_dot = 1/2 exactly."""
    v, th = sq_norm_over_d, 0.0 * sq_norm_over_d
    for kind, W, b in layers:
        if kind == "dense":
            v = W * W * v + b * b
            th = v + W * W * th
        else:
            v, th = v / 2, th / 2
    return v, th


def test_relu_ntk_diagonal_is_exact():
    """The ReLU NTK diagonal equals the exact recursion v -> v/2, Theta -> Theta/2 (no sqrt rounding)."""
    W, b = 1.7, 0.4
    arch = nk.serial(nk.Dense(8, W, b), nk.Relu(), nk.Dense(8, W, b), nk.Relu(), nk.Dense(8, W, b), nk.Relu(),
                     nk.Dense(1, W, b))
    x = _inputs(10, 6, seed=17)
    spec = [("dense", W, b), ("relu", 0, 0)] * 3 + [("dense", W, b)]
    v, th = _relu_diag_recursion((x * x).sum(1) / x.shape[1], spec)
    k = arch.kernel(x)
    torch.testing.assert_close(k.nngp.diagonal(), v, rtol=1e-15, atol=0)
    torch.testing.assert_close(k.ntk.diagonal(), th, rtol=1e-15, atol=0)
    torch.testing.assert_close(arch.kernel(x, diagonal=True).ntk, th, rtol=1e-15, atol=0)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_relu_cos_plus_minus_one_gives_exact_limit_without_nan(sign):
    """x2 = +-x1 (cos theta = +-1): the arc-cosine kernel's limits.

    theta = 0: Sigma' = v/2, Sigma_dot = 1/2.  theta = pi: Sigma' = 0, Sigma_dot = 0.
    """
    x1 = _inputs(6, 5, seed=18)
    arch = nk.serial(nk.Dense(8, 1.3), nk.Relu(), nk.Dense(1, 1.1))
    k = arch.kernel(x1, sign * x1)
    assert torch.isfinite(k.nngp).all() and torch.isfinite(k.ntk).all()
    v1 = 1.3 ** 2 * (x1 * x1).sum(1) / 5  # pre-activation variance
    if sign > 0:
        nngp_d = 1.1 ** 2 * v1 / 2
        ntk_d = nngp_d + 1.1 ** 2 * v1 * 0.5
    else:
        nngp_d = torch.zeros_like(v1)
        ntk_d = torch.zeros_like(v1)
    # x1 @ (+-x1).T rounds differently from |x1|^2 (sqrt(1 - cos^2) would be ~1e-8, the ReLU
    # derivative kernel off by ~1e-9); equal/opposite rows are snapped to cos = +-1, so the limit is exact.
    torch.testing.assert_close(k.nngp.diagonal(), nngp_d, rtol=1e-15, atol=1e-15)
    torch.testing.assert_close(k.ntk.diagonal(), ntk_d, rtol=1e-15, atol=1e-15)
    # a tiny perturbation stays finite and continuous (no NaN from 1 - cos^2 < 0 by rounding)
    kp = arch.kernel(x1, sign * x1 * (1 + 1e-15))
    assert torch.isfinite(kp.ntk).all()
    torch.testing.assert_close(kp.ntk.diagonal(), ntk_d, rtol=1e-6, atol=1e-6 * float(v1.max()))


@pytest.mark.parametrize("act", [nk.Relu(), nk.Erf(), nk.Gelu(), nk.Sin(), nk.Identity(), nk.LeakyRelu(0.2),
                                 nk.Elementwise(torch.tanh, deg=16)])
def test_zero_norm_inputs_give_exact_zeros_without_bias(act):
    """x = 0 and no bias: every pre-activation is 0, so Sigma(0, .) = E[phi(0) phi(v)] and Theta(0, .) = 0."""
    x = _inputs(4, 3, seed=19)
    x[1] = 0.0
    arch = nk.serial(nk.Dense(8, 1.2, None), act, nk.Dense(1, 1.1, None))
    k = arch.kernel(x)
    assert torch.isfinite(k.nngp).all() and torch.isfinite(k.ntk).all()
    assert torch.all(k.ntk[1] == 0) and torch.all(k.ntk[:, 1] == 0)
    phi0 = float(act.fn(torch.zeros(1, dtype=torch.float64)))
    if phi0 == 0.0:
        assert torch.all(k.nngp[1] == 0) and torch.all(k.nngp[:, 1] == 0)
    # with a bias the zero row is finite, positive on the diagonal
    kb = nk.serial(nk.Dense(8, 1.2, 0.3), act, nk.Dense(1, 1.1, 0.2)).kernel(x)
    assert torch.isfinite(kb.nngp).all() and torch.isfinite(kb.ntk).all()
    assert kb.ntk[1, 1] > 0


def test_depth_1000_relu_at_criticality_is_finite_with_closed_form_diagonal():
    """W_std = sqrt(2), no bias: q = 2|x|^2/d is preserved layer to layer and Theta_diag = L q."""
    depth = 1000
    arch = nk.serial(*[nk.Dense(8, math.sqrt(2)), nk.Relu()] * (depth - 1), nk.Dense(1, math.sqrt(2)))
    x = _inputs(5, 4, seed=20)
    k = arch.kernel(x)
    assert torch.isfinite(k.nngp).all() and torch.isfinite(k.ntk).all()
    q = 2 * (x * x).sum(1) / 4  # (n,)
    torch.testing.assert_close(k.nngp.diagonal(), q, rtol=1e-10, atol=0)
    torch.testing.assert_close(k.ntk.diagonal(), depth * q, rtol=1e-10, atol=0)
    # off the diagonal the correlation has converged towards 1 but Cauchy-Schwarz still holds
    corr = k.nngp / torch.sqrt(q[:, None] * q[None, :])
    assert (corr <= 1 + 1e-12).all() and (corr > 0.99).all()


def test_large_depth_off_criticality_raises_overflow_error():
    """W_std = 3: the ReLU variance grows like (9/2)^depth and overflows float64 near depth 470."""
    arch = nk.serial(*[nk.Dense(8, 3.0), nk.Relu()] * 600, nk.Dense(1, 3.0))
    with pytest.raises(FloatingPointError, match="overflowed.*W_std"):
        arch.kernel(_inputs(3, 4, seed=21))


def test_standard_parameterization_is_ntk_parameterization_times_width():
    r"""Derivation: per layer l, NTK param contributes (W_l^2 Sigma_{l-1} + b_l^2) P_l and standard
    param (n_{l-1} Sigma_{l-1} + 1) P_l, with the same backward factor P_l = prod_{m>l} W_m^2 Sigma_dot_m.
    If every fan-in n_{l-1} = n (including d), W_l = W and b_l = W/sqrt(n), the ratio is n/W^2 for
    every layer: Theta_std = (n/W^2) Theta_ntk. The NNGP is the same in both parameterizations."""
    n, W = 6, 1.3
    b = W / math.sqrt(n)
    x1, x2 = _inputs(5, n, seed=22), _inputs(4, n, seed=23)

    def make(p):
        return nk.serial(nk.Dense(n, W, b, p), nk.Relu(), nk.Dense(n, W, b, p), nk.Erf(), nk.Dense(1, W, b, p))

    ks, kn = make("standard").kernel(x1, x2), make("ntk").kernel(x1, x2)
    torch.testing.assert_close(ks.nngp, kn.nngp, rtol=1e-14, atol=0)
    torch.testing.assert_close(ks.ntk, n / W ** 2 * kn.ntk, rtol=1e-12, atol=0)
    # without bias (b_std=None) the same holds with any b
    ks = nk.serial(nk.Dense(n, W, None, "standard"), nk.Relu(), nk.Dense(1, W, None, "standard")).kernel(x1, x2)
    kn = nk.serial(nk.Dense(n, W, None), nk.Relu(), nk.Dense(1, W, None)).kernel(x1, x2)
    torch.testing.assert_close(ks.ntk, n / W ** 2 * kn.ntk, rtol=1e-12, atol=0)


def test_standard_parameterization_one_hidden_layer_closed_form():
    r"""Standard param, z = W h + b with W ~ N(0, W^2/n_in): Theta = n * E[relu relu] + 1
    + W2^2 * Sigma_dot * (x.x' + 1): readout weights, readout bias, first-layer weights and bias."""
    x1, x2 = _inputs(5, 3, seed=24), _inputs(4, 3, seed=25)
    n, W1, b1, W2, b2 = 50, 1.4, 0.3, 0.8, 0.2
    arch = nk.serial(nk.Dense(n, W1, b1, "standard"), nk.Relu(), nk.Dense(1, W2, b2, "standard"))
    k = arch.kernel(x1, x2)
    k12, v1, v2 = _input_gram(x1, x2)
    s12, s1, s2 = (W1 ** 2 * t + b1 ** 2 for t in (k12, v1, v2))
    relu, dot = _arccos_relu(s12, s1, s2)
    ntk = n * relu + 1 + W2 ** 2 * dot * (_np(x1) @ _np(x2).T + 1)
    np.testing.assert_allclose(_np(k.ntk), ntk, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(_np(k.nngp), W2 ** 2 * relu + b2 ** 2, rtol=TOL, atol=TOL)


def _devices():
    devs = ["cpu"]
    if torch.cuda.is_available():
        devs.append("cuda")
    return devs


@pytest.mark.parametrize("device", _devices())
def test_kernel_stays_on_input_device_and_defaults_to_float64(device):
    x = _inputs(4, 3, seed=26, dtype=torch.float32).to(device)
    arch = ARCHS["erf"]()
    k = arch.kernel(x)
    assert k.nngp.device == x.device and k.ntk.device == x.device
    assert k.nngp.dtype == torch.float64 and k.ntk.dtype == torch.float64
    k32 = arch.kernel(x, dtype=torch.float32)
    assert k32.ntk.dtype == torch.float32 and k32.ntk.device == x.device
    assert ARCHS["tanh_quadrature"]().kernel(x).ntk.device == x.device
    # numpy inputs go through the same path (to the default device) in float64
    kn = arch.kernel(_np(x.cpu()).astype(np.float64))
    assert kn.ntk.dtype == torch.float64
    torch.testing.assert_close(kn.ntk.cpu(), k.ntk.cpu(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(4,), (2, 3)], ids=["vectors", "channel-first"])
def test_equal_or_opposite_rows_match_brute_force_comparison(shape):
    """The sort-based search for equal / opposite inputs (which get cos = +-1 exactly) against comparing
    every pair: duplicates, negations, zero inputs (equal wins) and -0.0 (equal to 0.0)."""
    from ntklib.kernel import equal_or_opposite_rows
    g = torch.Generator().manual_seed(27)
    x1 = torch.randn((6,) + shape, generator=g, dtype=torch.float64)
    x1[3] = x1[1]
    x1[4] = 0.0
    x2 = torch.randn((7,) + shape, generator=g, dtype=torch.float64)
    x2[0], x2[2], x2[3], x2[5] = x1[1], -x1[0], -0.0, -x1[1]
    i, j, sign = equal_or_opposite_rows(x1, x2)
    got = sorted(zip(i.tolist(), j.tolist(), sign.tolist()))
    want = []
    for a in range(6):
        for b in range(7):
            if torch.equal(x1[a], x2[b]):
                want.append((a, b, 1))
            elif torch.equal(x1[a], -x2[b]):
                want.append((a, b, -1))
    assert got == sorted(want) and len(want) == 6
