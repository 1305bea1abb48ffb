r"""Property-based tests of the analytic kernels (hypothesis): random architectures on adversarial inputs.

Architectures: 1-3 hidden Dense layers (``W_std`` in [0.5, 2], with or without a bias, NTK or standard
parameterization) with any activation (the ReLU family, Erf, Gelu, Sin, Identity, tanh by quadrature)
and a Dense readout. Inputs: 1-6 rows of dimension 1 to 1000, each row scaled by :math:`10^k` with
:math:`k \in [-150, 150]` (or all rows by one such factor), with repeated, negated and zero rows.

Properties:

1. **One answer per question.** ``k(x)``, ``k(x, x.clone())``, ``batch_size`` tiles, row strips (a tiny
   tile budget) and the diagonal mode agree entry by entry to 1e-12 of the entry's natural size
   :math:`\sqrt{K(x,x)K(x',x')}` (Cauchy--Schwarz), and the result is finite -- or every path raises
   the same clear error (an overflow that names the layer, or inputs too large for float64).
2. **Exact at the extremes.** For closed-form activations, the NNGP and NTK match the layer recursion
   written out here in mpmath (60 digits plus what the scale needs) to 1e-12 of the same size.

CI runs a few dozen derandomized examples (about 20 s in all); ``benchmarks/fuzz_kernels.py`` runs the
same properties on thousands of random examples.
"""
from __future__ import annotations

import math
from unittest import mock

import mpmath
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ntklib as nk
import ntklib.batching

EPS = torch.finfo(torch.float64).eps
PATHS_TOL, REFERENCE_TOL = 1e-12, 1e-12
CI = dict(deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------------------------------------
# strategies
# ------------------------------------------------------------------------------------------------
def activations(quadrature: bool = True):
    """A strategy for (activation, its description for the mpmath reference or None)."""
    coef = st.floats(-1.5, 1.5).filter(lambda t: abs(t) > 0.05)
    closed = [
        st.just((nk.Relu(), ("abrelu", 0.0, 1.0))),
        st.just((nk.Abs(), ("abrelu", -1.0, 1.0))),
        st.floats(-0.5, 0.5).map(lambda a: (nk.LeakyRelu(a), ("abrelu", a, 1.0))),
        st.tuples(coef, coef).map(lambda ab: (nk.ABRelu(*ab), ("abrelu", *ab))),
        st.tuples(coef, coef, st.floats(-0.5, 0.5)).map(lambda p: (nk.Erf(*p), ("erf", *p))),
        st.just((nk.Gelu(), ("gelu",))),
        st.tuples(coef, coef, st.floats(-1.0, 1.0)).map(lambda p: (nk.Sin(*p), ("sin", *p))),
        st.just((nk.Identity(), ("identity",))),
    ]
    if quadrature:  # a cheap rule: the paths are compared, not the rule's accuracy
        closed.append(st.just((nk.Tanh(deg=12, tol=1.0), None)))
    return st.one_of(closed)


@st.composite
def architectures(draw, quadrature: bool = True, parameterizations=("ntk", "standard")):
    """(arch, spec): spec lists ("dense", W_std, b_std) and the activations' descriptions (None for quadrature)."""
    layers, spec = [], []
    parameterization = draw(st.sampled_from(parameterizations))
    for _ in range(draw(st.integers(1, 3))):
        W, b = draw(st.floats(0.5, 2.0)), draw(st.one_of(st.none(), st.just(0.0), st.floats(0.01, 1.0)))
        layers.append(nk.Dense(draw(st.integers(1, 64)), W, b, parameterization))
        act, desc = draw(activations(quadrature))
        layers.append(act)
        spec += [("dense", W, b), desc]
    W, b = draw(st.floats(0.5, 2.0)), draw(st.one_of(st.none(), st.floats(0.0, 1.0)))
    layers.append(nk.Dense(1, W, b, parameterization))
    spec.append(("dense", W, b))
    return nk.serial(*layers), spec


@st.composite
def adversarial_inputs(draw, max_rows: int = 6, dims=(1, 2, 3, 7, 50, 1000)):
    """(n, d) float64 inputs: Gaussian directions, each row (or all rows) scaled by 10^k, k in [-150, 150],
    with a repeated, a negated and a zero row when drawn."""
    n, d = draw(st.integers(1, max_rows)), draw(st.sampled_from(dims))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    x = rng.standard_normal((n, d))
    if draw(st.booleans()):
        exps = np.array(draw(st.lists(st.integers(-150, 150), min_size=n, max_size=n)), dtype=np.float64)
    else:
        exps = np.full(n, float(draw(st.integers(-150, 150))))
    x = x * 10.0 ** exps[:, None]
    if n >= 2 and draw(st.booleans()):
        x[draw(st.integers(1, n - 1))] = x[0]  # repeated
    if n >= 3 and draw(st.booleans()):
        x[draw(st.integers(1, n - 1))] = -x[1]  # negated
    if draw(st.booleans()):
        x[draw(st.integers(0, n - 1))] = 0.0  # zero
    return torch.as_tensor(x)


# ------------------------------------------------------------------------------------------------
# checks (also run by benchmarks/fuzz_kernels.py)
# ------------------------------------------------------------------------------------------------
def natural_size(k_diag: torch.Tensor) -> torch.Tensor:
    """sqrt(K(x, x) K(x', x')) (n, n): what |K(x, x')| is bounded by (the kernels are positive semi-definite)."""
    r = torch.sqrt(k_diag)
    return r[:, None] * r[None, :]  # (n, n), without forming k_diag[i] k_diag[j] (it underflows below 1e-154)


def is_clear_error(err: Exception) -> bool:
    """The errors a kernel may raise on these inputs: an overflow naming its layer, or inputs too large for float64."""
    msg = str(err)
    return ((isinstance(err, FloatingPointError) and "overflowed" in msg and "layer" in msg)
            or (isinstance(err, ValueError) and "is too large for" in msg))


def all_paths(arch, x: torch.Tensor) -> dict:
    """k(x) by every path (or the exception each raised)."""
    def run(f):
        try:
            return f()
        except (FloatingPointError, ValueError) as err:
            return err

    out = {"x2=None": run(lambda: arch.kernel(x)), "x2=x.clone()": run(lambda: arch.kernel(x, x.clone())),
           "batch_size=2": run(lambda: arch.kernel(x, batch_size=2)), "diagonal": run(lambda: arch.kernel(x, diagonal=True))}
    with mock.patch.object(ntklib.batching, "tile_entries", lambda device: 4):
        out["strips"] = run(lambda: arch.kernel(x))
    return out


def check_paths_agree(arch, x: torch.Tensor) -> None:
    paths = all_paths(arch, x)
    errors = {label: r for label, r in paths.items() if isinstance(r, Exception)}
    if errors:
        assert len(errors) == len(paths), f"only some paths raised: {errors}"
        for label, err in errors.items():
            assert is_clear_error(err), f"{label}: unclear error {type(err).__name__}: {err}"
        return
    ref = paths.pop("x2=None")
    diag = paths.pop("diagonal")
    for f in ("nngp", "ntk"):
        r = getattr(ref, f)
        assert torch.isfinite(r).all(), f"{f} not finite"
        size = natural_size(r.diagonal().abs())
        for label, k in paths.items():
            err = (getattr(k, f) - r).abs()
            bad = err > PATHS_TOL * size + 1e-300
            assert not bool(bad.any()), (f"{f}: {label} differs from x2=None by {float((err / size.clamp_min(1e-300)).max()):.2e}"
                                         " of the natural size")
        assert bool((getattr(diag, f) - r.diagonal()).abs().le(PATHS_TOL * r.diagonal().abs() + 1e-300).all()), \
            f"{f}: diagonal mode differs from the diagonal of k(x)"


def mp_kernel(spec, x: np.ndarray, dps: int, wiggle: float = 0.0):
    r"""NNGP and NTK (n, n) by the layer recursion in mpmath, NTK parameterization: Dense
    :math:`\Sigma \mapsto W^2\Sigma + b^2`, :math:`\Theta \mapsto \Sigma' + W^2\Theta`, and the activations' textbook
    dual formulas (module docstring of ntklib.activations), at ``dps`` digits. ``wiggle``: every off-diagonal
    covariance entering an activation is multiplied by 1 + wiggle (one rounding's worth, to measure the
    conditioning: how much the exact answer moves when the float64 intermediates round)."""
    mpmath.mp.dps = dps
    rows = [[mpmath.mpf(float(t)) for t in r] for r in x]
    n, d = len(rows), len(rows[0])
    S = [[sum(a * b for a, b in zip(rows[i], rows[j])) / d for j in range(n)] for i in range(n)]
    T = [[mpmath.mpf(0)] * n for _ in range(n)]
    for item in spec:
        if item[0] == "dense":
            _, W, b = item
            w2, b2 = mpmath.mpf(W) ** 2, (mpmath.mpf(0) if b is None else mpmath.mpf(b) ** 2)
            S = [[w2 * S[i][j] + b2 for j in range(n)] for i in range(n)]
            T = [[S[i][j] + w2 * T[i][j] for j in range(n)] for i in range(n)]
            continue
        D = [S[i][i] for i in range(n)]
        C = [[S[i][j] if i == j else S[i][j] * (1 + mpmath.mpf(wiggle)) for j in range(n)] for i in range(n)]
        for i in range(n):
            for j in range(n):  # stay inside |c| <= sqrt(v1 v2)
                C[i][j] = max(-mpmath.sqrt(D[i] * D[j]), min(mpmath.sqrt(D[i] * D[j]), C[i][j]))
        pairs = [[_mp_dual(item, C[i][j], D[i], D[j]) for j in range(n)] for i in range(n)]
        S = [[pairs[i][j][0] for j in range(n)] for i in range(n)]
        T = [[T[i][j] * pairs[i][j][1] for j in range(n)] for i in range(n)]
    return S, T


def _mp_dual(item, c, v1, v2):
    pi = mpmath.pi
    kind = item[0]
    if kind == "identity":
        return c, mpmath.mpf(1)
    if kind == "abrelu":
        a, b = mpmath.mpf(item[1]), mpmath.mpf(item[2])
        s = mpmath.sqrt(v1 * v2)
        theta = pi / 2 if s == 0 else mpmath.acos(max(-1, min(1, c / s)))
        k = (a - b) ** 2 / (2 * pi)
        dot = (a * a + b * b) / 2 - k * theta
        return k * s * mpmath.sin(theta) + dot * c, dot
    if kind == "erf":
        a, b, sh = (mpmath.mpf(t) for t in item[1:])
        P = (1 + 2 * b * b * v1) * (1 + 2 * b * b * v2)
        z = 2 * b * b * c
        return 2 * a * a / pi * mpmath.asin(z / mpmath.sqrt(P)) + sh * sh, 4 * a * a * b * b / pi / mpmath.sqrt(P - z * z)
    if kind == "sin":
        a, b, sh = (mpmath.mpf(t) for t in item[1:])
        m = (v1 + v2) / 2
        em, ep = mpmath.exp(-b * b * (m - c)), mpmath.exp(-b * b * (m + c)) * mpmath.cos(2 * sh)
        return a * a / 2 * (em - ep), a * a * b * b / 2 * (em + ep)
    prod, prod1 = v1 * v2, (1 + v1) * (1 + v2)  # gelu
    d2 = prod1 - c * c
    dd = mpmath.sqrt(d2)
    ang = mpmath.atan2(c, dd)
    nngp = c / 4 + (c * ang + (c * c + prod * d2) / (prod1 * dd)) / (2 * pi)
    return nngp, mpmath.mpf(1) / 4 + ang / (2 * pi) + c / (2 * pi * dd) * (1 / d2 + (1 - prod) / prod1 + 1)


def check_matches_mpmath(arch, spec, x: torch.Tensor) -> None:
    """The kernel equals the mpmath recursion to REFERENCE_TOL of the natural size, plus twice how much the exact
    answer moves when the covariances entering each activation move by 4 roundings (backward stability: a kernel
    whose intermediate representations are nearly parallel is that sensitive to float64 rounding whatever computes
    it); or a clear error is raised where the reference itself is beyond float64."""
    scale = float(x.abs().max()) if bool((x != 0).any()) else 1.0
    dps = 60 + int(4 * abs(math.log10(scale)))  # the textbook forms cancel powers of the variances
    S, T = mp_kernel(spec, x.numpy(), dps)
    moved = [mp_kernel(spec, x.numpy(), dps, wiggle=w) for w in (4 * EPS, -4 * EPS)]
    try:
        k = arch.kernel(x)
    except (FloatingPointError, ValueError) as err:
        assert is_clear_error(err), f"unclear error {type(err).__name__}: {err}"
        assert any(abs(T[i][i]) > 1e300 or abs(S[i][i]) > 1e300 for i in range(len(S))), f"raised for a representable kernel: {err}"
        return
    as_tensor = lambda m: torch.tensor([[float(t) for t in r] for r in m], dtype=torch.float64)  # noqa: E731
    for idx, (f, ref) in enumerate((("nngp", S), ("ntk", T))):
        got, want = getattr(k, f), as_tensor(ref)
        slack = torch.stack([(as_tensor(m[idx]) - want).abs() for m in moved]).amax(0)
        size = natural_size(want.diagonal().abs())
        err = (got - want).abs()
        assert bool((err <= REFERENCE_TOL * size + 2 * slack + 1e-300).all()), \
            f"{f}: off the mpmath recursion by {float((err / size.clamp_min(1e-300)).max()):.2e} of the natural size"


# ------------------------------------------------------------------------------------------------
# the tests (small example counts for CI; benchmarks/fuzz_kernels.py runs many more)
# ------------------------------------------------------------------------------------------------
@settings(max_examples=60, **CI)
@given(arch=architectures(), x=adversarial_inputs())
def test_every_path_gives_the_same_finite_kernel_or_the_same_clear_error(arch, x):
    check_paths_agree(arch[0], x)


@settings(max_examples=30, **CI)
@given(arch=architectures(quadrature=False, parameterizations=("ntk",)), x=adversarial_inputs(max_rows=3, dims=(2, 3, 7)))
def test_closed_form_kernels_match_a_high_precision_recursion_at_any_scale(arch, x):
    check_matches_mpmath(*arch, x)


@pytest.mark.parametrize("scale", [1e-150, 1e150])
def test_mpmath_reference_at_the_extremes_for_each_closed_form(scale):
    """The same reference on fixed architectures, one per closed form, at the two extreme scales (no search needed)."""
    x = torch.as_tensor(np.random.default_rng(0).standard_normal((3, 5))) * scale
    x[2] = -x[0]
    for act, desc in ((nk.Relu(), ("abrelu", 0.0, 1.0)), (nk.Abs(), ("abrelu", -1.0, 1.0)),
                      (nk.Erf(1.2, 0.8, 0.1), ("erf", 1.2, 0.8, 0.1)), (nk.Gelu(), ("gelu",)),
                      (nk.Sin(1.1, 0.9, 0.2), ("sin", 1.1, 0.9, 0.2))):
        spec = [("dense", 1.3, None), desc, ("dense", 0.9, 0.2)]
        check_matches_mpmath(nk.serial(nk.Dense(8, 1.3, None), act, nk.Dense(1, 0.9, 0.2)), spec, x)
