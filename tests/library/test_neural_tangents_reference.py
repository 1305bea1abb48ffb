r"""ntklib against neural-tangents, the field's reference library (an independent implementation).

``tests/library/data/nt_reference.npz`` holds kernels computed by neural-tangents 0.6.5 (jax 0.4.23,
float64) for 35 architectures -- Dense in both parameterizations with and without bias
(``b_std=None``), Relu, LeakyRelu, ABRelu, |x|, Erf(a, b, c), Gelu, Identity, Sin(a, b, c), tanh
by Gauss--Hermite quadrature, depths 0 to 5 and 50, output widths 1 and 3 -- on inputs with a
repeated, a negated and a zero row. ``benchmarks/make_nt_reference.py`` made it and says exactly how.
No jax is needed here: each architecture is rebuilt in ntklib from its stored JSON spec.
Convolutional networks (``data/nt_conv_reference.npz``, ``benchmarks/make_nt_conv_reference.py``)
are checked in the second half of this file; their tolerances are explained there.

Tolerances (relative, entrywise, with an absolute floor of the same size times the largest entry):

* closed forms (everything but tanh): 1e-12; the observed worst case is about 2e-15;
* tanh by quadrature: 1e-11. Both libraries evaluate the *same* Gauss--Hermite rule (degree
  ``deg`` per axis, the same change of variables), so they agree to rounding (observed 3e-15);
  the looser bound allows for the two libraries' different node/weight routines (scipy's
  ``roots_hermite`` vs numpy's ``hermegauss``). It says nothing about the quadrature error
  itself, which ``tests/library/test_activations.py`` bounds against closed forms. The rule is not
  symmetric under swapping x and x' (its error differs), so neural-tangents' ``kernel_fn(x1, None)``
  is not exactly symmetric (here by up to 5e-4 relative). ntklib symmetrizes each quadrature
  layer when ``x2=None``; that path is compared with the symmetrized NT matrix to 1e-7 (observed
  3e-9: symmetrizing layer by layer or once at the end differs only at higher order), and
  ntklib's unsymmetrized path (``x2=x1`` given explicitly) with NT's matrix itself to 1e-11;
* empirical NTK of the same finite network (weights stored in the file): 1e-12.

Two documented differences, both at points where the math leaves a choice or neural-tangents fails:

* zero-norm input and no bias before a quadrature layer (``tanh_d2_ntk_nobias_out1``):
  neural-tangents' ``ElementwiseNumerical`` computes ``q22 - nngp**2 / q11`` with ``q11 = 0``
  and returns NaN for that row and column. The exact answer is 0: the zero input's
  representation is 0 at every layer (tanh(0) = 0, no bias), so its covariance with anything
  and every parameter gradient vanish. ntklib returns exactly 0 there.
* a ReLU evaluated exactly at its kink (``relu_d2_std_b0_out1``: zero input, standard
  parameterization, biases initialized to b_std * N(0, 1) = 0 but trainable): the empirical NTK
  needs relu'(0), where ReLU has no derivative. jax differentiates ``max(x, 0)`` to 1/2 at the
  tie, torch's ``relu`` to 0; both are subgradients. Only the zero row differs, and it matches
  once ntklib's network uses relu'(0) = 1/2 (checked below).

Not visible with these 5-dimensional inputs, but with d = 784 (``benchmarks/bench_analytic.py``):
neural-tangents' ReLU NTK *diagonal* is off by ~1e-8 relative, because it evaluates the arc-cosine
at cos = 1 - O(1e-16) (x.x from a matmul against |x|^2 from a sum); ntklib's diagonal is exact.
The finding that made ntklib change: ``ABRelu``'s torch function differentiated to a + b at 0
(not a subgradient); it is now the left slope a, like torch's relu and leaky_relu (last test).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import ntklib as nk

DATA = Path(__file__).parent / "data" / "nt_reference.npz"
REF = np.load(DATA)
SPECS = json.loads(str(REF["specs"]))
NAMES = [s["name"] for s in SPECS]
EMPIRICAL = [s["name"] for s in SPECS if s["empirical"]]
BY_NAME = {s["name"]: s for s in SPECS}
X1 = torch.as_tensor(REF["x1"], dtype=torch.float64)  # (7, 5); rows 4 = 0, 5 = -1, 6 = zero
X2 = torch.as_tensor(REF["x2"], dtype=torch.float64)  # (4, 5)
ZERO_ROW = 6

RTOL_CLOSED, RTOL_QUAD, RTOL_QUAD_SYMMETRIZED, RTOL_EMPIRICAL = 1e-12, 1e-11, 1e-7, 1e-12
NT_NAN_AT_ZERO_ROW = {"tanh_d2_ntk_nobias_out1"}  # neural-tangents divides 0 by 0 (module docstring)
RELU_KINK_AT_ZERO_ROW = {"relu_d2_std_b0_out1"}  # relu'(0): 1/2 in jax, 0 in torch (module docstring)


def build_layer(spec: dict) -> nk.Layer:
    """The ntklib layer for one stored layer spec (the twin of make_nt_reference.nt_layer)."""
    kind = spec["layer"]
    if kind == "Dense":
        return nk.Dense(spec["width"], W_std=spec["W_std"], b_std=spec["b_std"],
                        parameterization=spec["parameterization"])
    if kind == "Tanh":  # neural-tangents: ElementwiseNumerical(jnp.tanh, deg, df=closed form or jax.grad)
        if spec["derivative"] == "closed":
            return nk.Tanh(deg=spec["deg"])
        return nk.Elementwise(torch.tanh, deg=spec["deg"], name="tanh")  # derivative by autograd
    if kind in ("Relu", "Gelu", "Identity"):
        return getattr(nk, kind)()
    if kind == "LeakyRelu":
        return nk.LeakyRelu(spec["alpha"])
    if kind == "ABRelu":
        return nk.ABRelu(spec["a"], spec["b"])
    if kind in ("Erf", "Sin"):
        return getattr(nk, kind)(spec["a"], spec["b"], spec["c"])
    raise ValueError(f"unknown layer in the reference file: {kind}")


def build_arch(name: str) -> nk.Serial:
    return nk.serial(*[build_layer(s) for s in BY_NAME[name]["layers"]])


def is_quadrature(name: str) -> bool:
    return any(s["layer"] == "Tanh" for s in BY_NAME[name]["layers"])


def rtol_for(name: str) -> float:
    return RTOL_QUAD if is_quadrature(name) else RTOL_CLOSED


def assert_matches_nt(ours: torch.Tensor, ref: np.ndarray, rtol: float, what: str) -> None:
    ours = ours.detach().cpu().numpy()
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape}, neural-tangents {ref.shape}"
    scale = np.abs(ref).max()
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=rtol * scale,
                               err_msg=f"{what}: ntklib differs from neural-tangents")


def nt_analytic(name: str, which: str):
    """neural-tangents' (nngp, ntk) for x2=None ('11', or '11sym' symmetrized) or x2 ('12')."""
    if which == "11sym":  # symmetrized, for ntklib's symmetric quadrature path
        nngp, ntk = REF[f"{name}/nngp_11"], REF[f"{name}/ntk_11"]
        return 0.5 * (nngp + nngp.T), 0.5 * (ntk + ntk.T)
    return REF[f"{name}/nngp_{which}"], REF[f"{name}/ntk_{which}"]


# ---------------------------------------------------------------------------------------------
# analytic kernels
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_analytic_nngp_and_ntk_match_neural_tangents(name):
    arch, rtol = build_arch(name), rtol_for(name)
    cases = [("11", arch.kernel(X1), rtol), ("12", arch.kernel(X1, X2), rtol)]
    if is_quadrature(name):  # ntklib's x2=None path symmetrizes; its x2=x1 path is NT's rule as is
        cases = [("11", arch.kernel(X1, X1.clone()), rtol), ("11sym", arch.kernel(X1), RTOL_QUAD_SYMMETRIZED),
                 cases[1]]
    for which, k, rtol in cases:
        nngp, ntk = nt_analytic(name, which)
        if name in NT_NAN_AT_ZERO_ROW:
            rows = [i for i in range(X1.shape[0]) if i != ZERO_ROW]
            cols = rows if which.startswith("11") else list(range(X2.shape[0]))
            assert np.isnan(nngp[ZERO_ROW]).all() and np.isfinite(nngp[rows][:, cols]).all()
            nngp, ntk = nngp[rows][:, cols], ntk[rows][:, cols]
            k = k.replace(nngp=k.nngp[rows][:, cols], ntk=k.ntk[rows][:, cols])
        what = {"11": "(x1, None)", "11sym": "(x1, None) symmetrized", "12": "(x1, x2)"}[which]
        assert_matches_nt(k.nngp, nngp, rtol, f"{name} nngp {what}")
        assert_matches_nt(k.ntk, ntk, rtol, f"{name} ntk {what}")


@pytest.mark.parametrize("name", NAMES)
def test_analytic_diagonal_and_tiled_kernels_match_neural_tangents(name):
    """ntklib's diagonal mode and its tiled (batch_size) path against the diagonal / full NT kernels."""
    arch, rtol = build_arch(name), rtol_for(name)
    keep = [i for i in range(X1.shape[0]) if not (name in NT_NAN_AT_ZERO_ROW and i == ZERO_ROW)]
    nngp, ntk = nt_analytic(name, "11")
    kd = arch.kernel(X1, diagonal=True)
    assert_matches_nt(kd.nngp[keep], np.diagonal(nngp)[keep], rtol, f"{name} diagonal nngp")
    assert_matches_nt(kd.ntk[keep], np.diagonal(ntk)[keep], rtol, f"{name} diagonal ntk")
    kt = arch.kernel(X1, X2, batch_size=3)
    nngp12, ntk12 = nt_analytic(name, "12")
    assert_matches_nt(kt.nngp[keep], nngp12[keep], rtol, f"{name} tiled nngp")
    assert_matches_nt(kt.ntk[keep], ntk12[keep], rtol, f"{name} tiled ntk")


@pytest.mark.parametrize("name", sorted(NT_NAN_AT_ZERO_ROW))
def test_zero_norm_input_without_bias_gives_exact_zero_kernel_where_nt_gives_nan(name):
    """The zero input's representation is 0 at every layer (tanh(0) = 0, no bias): its kernel row is exactly 0."""
    k = build_arch(name).kernel(X1)
    assert np.isnan(REF[f"{name}/nngp_11"][ZERO_ROW]).all(), "neural-tangents no longer returns NaN here"
    assert torch.all(k.nngp[ZERO_ROW] == 0) and torch.all(k.nngp[:, ZERO_ROW] == 0)
    assert torch.all(k.ntk[ZERO_ROW] == 0) and torch.all(k.ntk[:, ZERO_ROW] == 0)


def test_standard_parameterization_bias_adds_one_to_the_ntk_even_when_b_std_is_zero():
    """NT's convention: a trainable bias (b_std=0.0, not None) adds dz/db = 1 to the standard-param NTK."""
    with_bias, without = REF["dense_std_b0_out1/ntk_11"], REF["dense_std_nobias_out1/ntk_11"]
    np.testing.assert_allclose(with_bias - without, 1.0, rtol=0, atol=1e-12)
    k_b = build_arch("dense_std_b0_out1").kernel(X1)
    k_none = build_arch("dense_std_nobias_out1").kernel(X1)
    torch.testing.assert_close(k_b.ntk - k_none.ntk, torch.ones_like(k_b.ntk), rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# empirical NTK of the same finite network
# ---------------------------------------------------------------------------------------------
def network_with_nt_weights(name: str) -> nk.SerialModule:
    """ntklib's finite network for ``name`` with the parameters stored in the file (NT layout (in, out))."""
    net = build_arch(name).module(X1.shape[1], seed=0, dtype=torch.float64, device="cpu")
    j = 0
    with torch.no_grad():
        for m in net:
            if isinstance(m, nk.DenseModule):
                m.weight.copy_(torch.as_tensor(REF[f"{name}/W{j}"]).T)  # (out, in)
                if m.bias is not None:
                    m.bias.copy_(torch.as_tensor(REF[f"{name}/b{j}"]))  # (out,)
                else:
                    assert f"{name}/b{j}" not in REF.files
                j += 1
    return net


@pytest.mark.parametrize("name", EMPIRICAL)
def test_finite_network_forward_matches_neural_tangents_apply_fn(name):
    """Same parameters, same outputs: the parameterizations' forward conventions agree."""
    net = network_with_nt_weights(name)
    with torch.no_grad():
        assert_matches_nt(net(X1), REF[f"{name}/f_1"], 1e-12, f"{name} f(x1)")


@pytest.mark.parametrize("implementation", ["structured", "jacobian", "ntvp"])
@pytest.mark.parametrize("name", EMPIRICAL)
def test_empirical_ntk_matches_neural_tangents_empirical_ntk_fn(name, implementation):
    net = network_with_nt_weights(name)
    keep = [i for i in range(X1.shape[0]) if not (name in RELU_KINK_AT_ZERO_ROW and i == ZERO_ROW)]
    for which, x2 in (("11", None), ("12", X2)):
        ref = REF[f"{name}/emp_ntk_{which}"]  # (7, n2, k, k), neural-tangents' trace_axes=()
        cols = keep if which == "11" else list(range(ref.shape[1]))
        ref = ref[keep][:, cols]
        what = f"{name} empirical ntk ({implementation}, x2={'None' if x2 is None else 'x2'})"
        full = nk.empirical_ntk(net, X1, x2, mode="full", implementation=implementation)[keep][:, cols]
        assert_matches_nt(full, ref, RTOL_EMPIRICAL, what + " full")
        if len(net) > 20 and implementation != "structured":
            continue  # the depth-50 network: the other modes are checked on the 25 shallower ones (time)
        diag = nk.empirical_ntk(net, X1, x2, mode="diagonal", implementation=implementation)[keep][:, cols]
        assert_matches_nt(diag, np.diagonal(ref, axis1=-2, axis2=-1), RTOL_EMPIRICAL, what + " diagonal")
        trace = nk.empirical_ntk(net, X1, x2, mode="trace", implementation=implementation)[keep][:, cols]
        # neural-tangents' trace_axes=(-1,) is the trace divided by k, i.e. the mean over outputs
        mean = np.trace(ref, axis1=-2, axis2=-1) / ref.shape[-1]
        assert_matches_nt(trace, mean, RTOL_EMPIRICAL, what + " trace")


@pytest.mark.parametrize("chunk_size", [1, 3])
@pytest.mark.parametrize("name", [n for n in EMPIRICAL if len(BY_NAME[n]["layers"]) < 20])
def test_empirical_ntk_in_small_blocks_matches_neural_tangents(name, chunk_size):
    """Small chunks force every blocking path (inputs, parameter groups, split tensors, mirrored blocks)."""
    net = network_with_nt_weights(name)
    keep = [i for i in range(X1.shape[0]) if not (name in RELU_KINK_AT_ZERO_ROW and i == ZERO_ROW)]
    for implementation in ("jacobian", "structured", "ntvp"):
        for which, x2 in (("11", None), ("12", X2)):
            ref = REF[f"{name}/emp_ntk_{which}"]
            cols = keep if which == "11" else list(range(ref.shape[1]))
            full = nk.empirical_ntk(net, X1, x2, mode="full", implementation=implementation, chunk_size=chunk_size)
            assert_matches_nt(full[keep][:, cols], ref[keep][:, cols], RTOL_EMPIRICAL,
                              f"{name} {implementation} chunk_size={chunk_size} x2={'None' if x2 is None else 'x2'}")
            if x2 is None and implementation == "jacobian":
                assert torch.equal(full, full.transpose(0, 1).transpose(2, 3)), "not exactly symmetric"


@pytest.mark.parametrize("name", sorted(RELU_KINK_AT_ZERO_ROW))
def test_empirical_ntk_at_relu_kink_matches_nt_once_relu_derivative_at_zero_is_one_half(name):
    """The zero row differs only by the subgradient chosen at relu's kink: jax's 1/2 vs torch's 0."""
    net = network_with_nt_weights(name)
    ref = REF[f"{name}/emp_ntk_12"]
    ours = nk.empirical_ntk(net, X1, X2, mode="full", implementation="jacobian").detach().numpy()
    assert np.abs(ours[ZERO_ROW] - ref[ZERO_ROW]).max() > 1e-3, "the zero row no longer hits relu's kink"
    for m in net:
        if isinstance(m, nk.ActivationModule):
            m.fn = lambda z: 0.5 * (z + torch.abs(z))  # relu, with d/dz at 0 = (1 + sign(0)) / 2 = 1/2
    ours = nk.empirical_ntk(net, X1, X2, mode="full", implementation="jacobian")
    assert_matches_nt(ours, ref, RTOL_EMPIRICAL, f"{name} empirical ntk with relu'(0) = 1/2")


@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.3])
def test_leaky_relu_autograd_derivative_matches_torch_leaky_relu_including_at_zero(alpha):
    """ntklib's (a, b)-ReLU network uses torch's subgradient at 0 (the left slope a), never a + b."""
    z = torch.tensor([-1.5, 0.0, 0.0, 2.0], dtype=torch.float64, requires_grad=True)
    (ours,) = torch.autograd.grad(nk.LeakyRelu(alpha).fn(z).sum(), z)
    z2 = z.detach().clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(torch.nn.functional.leaky_relu(z2, alpha).sum(), z2)
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    (g,) = torch.autograd.grad(nk.ABRelu(-0.5, 1.3).fn(z).sum(), z)
    assert -0.5 <= float(g[1]) <= 1.3, f"derivative at the kink {float(g[1])} is not a subgradient"


# ---------------------------------------------------------------------------------------------
# the tiled path of Layer.kernel (large kernels of entrywise architectures, ntklib.batching)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n in NAMES if build_arch(n).entrywise])
def test_row_strip_path_matches_neural_tangents(name, monkeypatch):
    """Strips of one or two rows (forced by a tiny tile size) reproduce neural-tangents like the untiled path."""
    import ntklib.batching
    monkeypatch.setattr(ntklib.batching, "tile_entries", lambda device: 8)
    arch, rtol = build_arch(name), rtol_for(name)
    cases = [("11", arch.kernel(X1), rtol), ("12", arch.kernel(X1, X2), rtol)]
    if is_quadrature(name):  # x2=None: both orders of the quadrature rule averaged, as the untiled path does
        cases[0] = ("11sym", cases[0][1], RTOL_QUAD_SYMMETRIZED)
    for which, k, rtol in cases:
        nngp, ntk = nt_analytic(name, which)
        if name in NT_NAN_AT_ZERO_ROW:
            rows = [i for i in range(X1.shape[0]) if i != ZERO_ROW]
            cols = rows if which.startswith("11") else list(range(X2.shape[0]))
            nngp, ntk = nngp[rows][:, cols], ntk[rows][:, cols]
            k = k.replace(nngp=k.nngp[rows][:, cols], ntk=k.ntk[rows][:, cols])
        assert_matches_nt(k.nngp, nngp, rtol, f"{name} row strips nngp {which}")
        assert_matches_nt(k.ntk, ntk, rtol, f"{name} row strips ntk {which}")
        if which.startswith("11"):
            assert torch.equal(k.ntk, k.ntk.T) and torch.equal(k.nngp, k.nngp.T)


# =============================================================================================
# convolutional kernels: tests/library/data/nt_conv_reference.npz (benchmarks/make_nt_conv_reference.py)
# =============================================================================================
# 21 architectures, 1-D inputs (5, 3, 9) and 2-D inputs (4, 2, 6, 5): Conv with VALID, SAME and
# CIRCULAR padding, strides, AvgPool (VALID/SAME/CIRCULAR, overlapping), GlobalAvgPool vs Flatten,
# both parameterizations, with and without bias, every activation (ReLU, Erf, Gelu, leaky and a-b
# ReLU, |x|, Sin, Identity, tanh by quadrature), conv trunks with dense heads, networks ending on a
# Conv (every pair of positions) and readouts straight on the inputs.
#
# Tolerance 1e-12 (relative to the largest entry), except at pairs of equal inputs: the batch
# diagonal of k(x1, None), the repeated rows of x1 and x2[1] = x1[2] (1-D). There neural-tangents
# evaluates the ReLU-family derivative kernel (pi - theta)/(2 pi) at cos = 1 - O(1e-16), where
# theta ~ 1e-8, so its NTK is off by ~1e-9 (observed up to 3e-9; not its NNGP, which is flat in
# theta there). ntklib's entries there are exact (diagonal reset, equal inputs snapped to cos = 1),
# so these entries are compared to 1e-7, and ntklib's batch diagonal of the NNGP is compared with
# neural-tangents' own k(x, x) (``cov1``, computed from each input alone, exact) to 1e-12.
CONV_REF = np.load(Path(__file__).parent / "data" / "nt_conv_reference.npz")
CONV_SPECS = {s["name"]: s for s in json.loads(str(CONV_REF["specs"]))}
CONV_NAMES = list(CONV_SPECS)
CONV_EMPIRICAL = [n for n, s in CONV_SPECS.items() if s["empirical"]]
CONV_X = {d: (torch.as_tensor(CONV_REF[f"x1_{d}d"]), torch.as_tensor(CONV_REF[f"x2_{d}d"])) for d in (1, 2)}
RTOL_EQUAL_INPUTS = 1e-7


def build_conv_layer(spec: dict) -> nk.Layer:
    kind = spec["layer"]
    if kind == "Conv":
        return nk.Conv(spec["out_channels"], tuple(spec["kernel_size"]), tuple(spec["stride"]), spec["padding"],
                       W_std=spec["W_std"], b_std=spec["b_std"], parameterization=spec["parameterization"])
    if kind == "AvgPool":
        return nk.AvgPool(tuple(spec["window"]), tuple(spec["stride"]), spec["padding"])
    if kind in ("GlobalAvgPool", "Flatten"):
        return getattr(nk, kind)()
    return build_layer(spec)


def build_conv_arch(name: str) -> nk.Serial:
    return nk.serial(*[build_conv_layer(s) for s in CONV_SPECS[name]["layers"]])


def conv_inputs(name: str):
    return CONV_X[CONV_SPECS[name]["dim"]]


def equal_input_pairs(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """(n1, n2) mask of pairs with b[j] == a[i] (cos = 1 at every position)."""
    return np.array([[torch.equal(u, v) for v in b] for u in a])


def assert_conv_matches_nt(ours: torch.Tensor, ref: np.ndarray, equal: np.ndarray, rtol: float, what: str) -> None:
    """1e-12-type tolerance everywhere but at pairs of equal inputs (module comment above)."""
    ours = ours.detach().cpu().numpy()
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape}, neural-tangents {ref.shape}"
    scale = np.abs(ref).max()
    err = np.abs(ours - ref).reshape(ref.shape[:2] + (-1,)).max(-1) / scale  # (n1, n2) worst over positions
    assert err[~equal].max(initial=0.0) <= rtol, f"{what}: ntklib differs from neural-tangents by {err.max():.1e}"
    assert err[equal].max(initial=0.0) <= RTOL_EQUAL_INPUTS, f"{what}: at equal inputs by {err[equal].max():.1e}"


@pytest.mark.parametrize("name", CONV_NAMES)
def test_conv_analytic_nngp_and_ntk_match_neural_tangents(name):
    arch, rtol = build_conv_arch(name), RTOL_QUAD if "tanh" in name else RTOL_CLOSED
    x1, x2 = conv_inputs(name)
    cases = [("11", arch.kernel(x1), x1), ("12", arch.kernel(x1, x2), x2)]
    if "tanh" in name:  # as for dense networks: x2=x1 given is neural-tangents' rule as is, x2=None symmetrized
        k = arch.kernel(x1)
        sym = lambda t: 0.5 * (t + np.swapaxes(t, 0, 1))
        for f in ("nngp", "ntk"):
            assert_matches_nt(getattr(k, f), sym(CONV_REF[f"{name}/{f}_11"]), RTOL_QUAD_SYMMETRIZED, f"{name} {f} sym")
        cases[0] = ("11", arch.kernel(x1, x1.clone()), x1)
    for which, k, xb in cases:
        equal = equal_input_pairs(x1, xb)
        for f in ("nngp", "ntk"):
            assert_conv_matches_nt(getattr(k, f), CONV_REF[f"{name}/{f}_{which}"], equal, rtol, f"{name} {f} {which}")
    assert_matches_nt(arch.kernel(x1).var1, CONV_REF[f"{name}/cov1"], rtol, f"{name} batch diagonal (cov1)")


@pytest.mark.parametrize("name", CONV_NAMES)
def test_conv_diagonal_mode_and_tiles_match_neural_tangents(name, monkeypatch):
    """The batch-diagonal mode, (2, 2) tiles and one-pair tiles (a tiny tile budget) against neural-tangents."""
    import ntklib.batching
    arch, rtol = build_conv_arch(name), RTOL_QUAD if "tanh" in name else RTOL_CLOSED
    x1, x2 = conv_inputs(name)
    assert_matches_nt(arch.kernel(x1, diagonal=True).nngp, CONV_REF[f"{name}/cov1"], rtol, f"{name} diagonal mode")
    equal = equal_input_pairs(x1, x2)
    for label, k in (("batch_size=2", arch.kernel(x1, x2, batch_size=2)),):
        for f in ("nngp", "ntk"):
            assert_conv_matches_nt(getattr(k, f), CONV_REF[f"{name}/{f}_12"], equal, rtol, f"{name} {f} {label}")
    monkeypatch.setattr(ntklib.batching, "tile_entries", lambda device: 1)
    for which, k, xb in (("11", arch.kernel(x1), x1), ("12", arch.kernel(x1, x2), x2)):
        if which == "11" and "tanh" in name:
            continue  # symmetrized: checked against the untiled path in test_fast_paths
        for f in ("nngp", "ntk"):
            assert_conv_matches_nt(getattr(k, f), CONV_REF[f"{name}/{f}_{which}"], equal_input_pairs(x1, xb), rtol,
                                   f"{name} {f} {which} one-pair tiles")


def conv_network_with_stored_weights(name: str) -> nk.SerialModule:
    """ntklib's finite network for ``name`` with the parameters stored in the file (ntklib's layout)."""
    x1, _ = conv_inputs(name)
    net = build_conv_arch(name).module(tuple(x1.shape[1:]), seed=0, dtype=torch.float64, device="cpu")
    j = 0
    with torch.no_grad():
        for m in net:
            if isinstance(m, (nk.ConvModule, nk.DenseModule)):
                m.weight.copy_(torch.as_tensor(CONV_REF[f"{name}/p{j}/W"]))
                if m.bias is not None:
                    m.bias.copy_(torch.as_tensor(CONV_REF[f"{name}/p{j}/b"]))
                j += 1
    return net


@pytest.mark.parametrize("name", CONV_EMPIRICAL)
def test_conv_network_forward_matches_neural_tangents_apply_fn(name):
    """Same parameters, same outputs: padding, strides, parameterizations and Flatten's order agree."""
    net = conv_network_with_stored_weights(name)
    with torch.no_grad():
        assert_matches_nt(net(conv_inputs(name)[0]), CONV_REF[f"{name}/f_1"], 1e-12, f"{name} f(x1)")


@pytest.mark.parametrize("implementation", ["jacobian", "ntvp"])
@pytest.mark.parametrize("name", CONV_EMPIRICAL)
def test_conv_empirical_ntk_matches_neural_tangents_empirical_ntk_fn(name, implementation):
    net = conv_network_with_stored_weights(name)
    x1, x2 = conv_inputs(name)
    for which, xb in (("11", None), ("12", x2)):
        got = nk.empirical_ntk(net, x1, xb, mode="full", implementation=implementation)
        assert_matches_nt(got, CONV_REF[f"{name}/emp_ntk_{which}"], RTOL_EMPIRICAL, f"{name} empirical ntk {which}")
