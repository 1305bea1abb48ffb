r"""Convolutional layers (``ntklib.conv``): closed forms written out by hand, invariants, finite networks.

Agreement with neural-tangents on 21 stored architectures is in ``test_neural_tangents_reference.py``.
Here the truths are independent of ntklib's kernel code: numpy sums over filter windows written out
loop by loop, identities between architectures (a 1x1 circular convolution of length-1 signals is a
Dense layer; a readout straight on the inputs is a Dense layer on flattened or averaged inputs; the
two parameterizations differ by n/W^2 when all fan-ins equal n), invariants (symmetry, positive
semi-definiteness, diagonal mode, tiles), and Monte Carlo over seeds of the finite networks
``arch.module(...)`` built with torch's ``conv1d``/``conv2d``, with tolerances from the standard error.

Monte Carlo bias. With one hidden convolution the mean over initializations is exactly the analytic
kernel at any width: the hidden pre-activations are exactly Gaussian (fixed inputs, Gaussian
weights), the readout averages independent channels, and the readout weights are independent of
them (the argument of ``test_monte_carlo.py``'s module docstring, position by position). With two
nonlinear hidden convolutions the second sees the empirical covariance of the first: an O(1/n)
Jensen bias, allowed as 3 max|K| / n as in ``test_monte_carlo.py``.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ntklib as nk
import ntklib.batching
from ntklib.kernel import swap_inputs
from ntklib.testing import assert_within_standard_errors

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

EPS = torch.finfo(torch.float64).eps


def _x(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _np(t):
    return t.detach().cpu().numpy()


def _relu_dual(c, v1, v2):
    """Arc-cosine kernel and its derivative kernel (Cho & Saul 2009), numpy, broadcast."""
    norm = np.sqrt(v1 * v2)
    t = np.arccos(np.clip(c / norm, -1.0, 1.0))
    return norm / (2 * np.pi) * (np.sin(t) + (np.pi - t) * np.cos(t)), (np.pi - t) / (2 * np.pi)


def _conv_cov_by_loops(x1, x2, size, W, b, padding):
    """Sigma after one 1-D Conv, by explicit loops: the input covariance of channels at positions (p, q)
    (zeros outside the signal for SAME, wrapped for CIRCULAR), averaged over the filter offsets f
    applied to both positions, times W^2, plus b^2. Returns (n1, n2, L', L')."""
    n1, C, L = x1.shape
    n2 = x2.shape[0]
    lo = (size - 1) // 2 if padding != "VALID" else 0
    out_len = L if padding != "VALID" else L - size + 1

    def at(x, i, p):  # the channel vector of input i at padded position p
        p = p - lo
        if padding == "CIRCULAR":
            return x[i, :, p % L]
        return x[i, :, p] if 0 <= p < L else np.zeros(C)

    K = np.zeros((n1, n2, out_len, out_len))
    for i in range(n1):
        for j in range(n2):
            for p in range(out_len):
                for q in range(out_len):
                    s = sum(at(x1, i, p + f) @ at(x2, j, q + f) / C for f in range(size))
                    K[i, j, p, q] = W * W * s / size + b * b
    return K


@pytest.mark.parametrize("padding", ["VALID", "SAME", "CIRCULAR"])
@pytest.mark.parametrize("readout", ["flatten", "gap"])
def test_one_conv_layer_kernels_match_window_sums_written_out(padding, readout):
    r"""Conv(3) -> ReLU -> Flatten|GAP -> Dense, by hand. Flatten: Sigma = W2^2 mean_p relu(S_pp) + b2^2;
    GAP: mean over all pairs (p, q). NTK: Sigma + W2^2 mean(Theta_1 * relu'), Theta_1 = Sigma_1 (Theta^(0) = 0)."""
    W1, b1, W2, b2 = 1.3, 0.2, 1.1, 0.3
    x1, x2 = _x((3, 2, 7), 1), _x((4, 2, 7), 2)
    ro = nk.Flatten() if readout == "flatten" else nk.GlobalAvgPool()
    arch = nk.serial(nk.Conv(16, 3, padding=padding.lower(), W_std=W1, b_std=b1), nk.Relu(), ro, nk.Dense(1, W2, b2))
    k = arch.kernel(x1, x2)

    a, c = _np(x1), _np(x2)
    S12 = _conv_cov_by_loops(a, c, 3, W1, b1, padding)  # (n1, n2, L', L')
    v1 = np.einsum("iipp->ip", _conv_cov_by_loops(a, a, 3, W1, b1, padding))  # (n1, L') per-position variances
    v2 = np.einsum("iipp->ip", _conv_cov_by_loops(c, c, 3, W1, b1, padding))
    relu, dot = _relu_dual(S12, v1[:, None, :, None], v2[None, :, None, :])
    if readout == "flatten":
        mean = lambda t: np.einsum("ijpp->ijp", t).mean(-1)
    else:
        mean = lambda t: t.mean((-2, -1))
    nngp = W2 ** 2 * mean(relu) + b2 ** 2
    ntk = nngp + W2 ** 2 * mean(S12 * dot)
    np.testing.assert_allclose(_np(k.nngp), nngp, rtol=1e-12, atol=1e-12 * np.abs(nngp).max())
    np.testing.assert_allclose(_np(k.ntk), ntk, rtol=1e-12, atol=1e-12 * np.abs(ntk).max())


# ------------------------------------------------------------------------------------------------
# identities between architectures
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_1x1_circular_conv_on_length_one_signals_equals_dense(parameterization):
    """On (n, C, 1) inputs a 1x1 convolution is a Dense layer on the C channels (the same fan-in C),
    and Flatten of one position is the identity."""
    p = parameterization
    x1, x2 = _x((5, 3, 1), 3), _x((4, 3, 1), 4)
    conv = nk.serial(nk.Conv(8, 1, padding="circular", W_std=1.4, b_std=0.2, parameterization=p), nk.Erf(),
                     nk.Conv(8, 1, padding="CIRCULAR", W_std=1.2, b_std=None, parameterization=p), nk.Relu(),
                     nk.Flatten(), nk.Dense(1, 1.1, 0.1, p))
    dense = nk.serial(nk.Dense(8, 1.4, 0.2, p), nk.Erf(), nk.Dense(8, 1.2, None, p), nk.Relu(), nk.Dense(1, 1.1, 0.1, p))
    for a, b in ((x1, None), (x1, x2)):
        kc, kd = conv.kernel(a, b), dense.kernel(a[:, :, 0], None if b is None else b[:, :, 0])
        for f in ("nngp", "ntk"):
            torch.testing.assert_close(getattr(kc, f), getattr(kd, f), rtol=16 * EPS, atol=0)


@pytest.mark.parametrize("readout", ["flatten", "gap"])
def test_readout_straight_on_inputs_equals_dense_on_flattened_or_averaged_inputs(readout):
    """Flatten's kernel is x.x'/(C P) (the mean of the per-position kernels); GAP's is the kernel of the
    channel means, (mean_p x_p).(mean_q x'_q)/C: the same as Dense layers on those vectors."""
    x1, x2 = _x((5, 3, 4, 3), 5), _x((2, 3, 4, 3), 6)
    head = [nk.Dense(8, 1.4, 0.1), nk.Gelu(), nk.Dense(1, 1.2, 0.2, "standard")]
    arch = nk.serial(nk.Flatten() if readout == "flatten" else nk.GlobalAvgPool(), *head)
    to_vec = (lambda x: x.flatten(1)) if readout == "flatten" else (lambda x: x.mean((2, 3)))
    k, kd = arch.kernel(x1, x2), nk.serial(*head).kernel(to_vec(x1), to_vec(x2))
    width = 3 * 4 * 3 if readout == "flatten" else 3  # the fan-in of the standard-parameterization readout
    assert k.width == 1 and kd.width == 1
    for f in ("nngp", "ntk"):
        torch.testing.assert_close(getattr(k, f), getattr(kd, f), rtol=1e-13, atol=1e-13 * float(getattr(kd, f).abs().max()))
    k0 = nk.serial(nk.Flatten() if readout == "flatten" else nk.GlobalAvgPool()).kernel(x1)
    assert k0.width == width


def test_standard_parameterization_is_ntk_parameterization_times_fan_in_over_w2_for_equal_fan_ins():
    r"""As for Dense layers (test_kernels.py): per layer the standard parameterization contributes
    n_in A Sigma + 1 where the NTK one contributes W^2 A Sigma + b^2, with the same backward factor. With
    every fan-in n (C_in |F| for a Conv, C P for the Dense after Flatten) and b = W/sqrt(n): ratio n/W^2."""
    n, W = 12, 1.3
    b = W / math.sqrt(n)

    def make(p):  # fan-ins: 6 x 2, 4 x 3, then Flatten of 4 channels x 3 positions = 12
        return nk.serial(nk.Conv(4, 2, W_std=W, b_std=b, parameterization=p), nk.Relu(),
                         nk.Conv(4, 3, stride=2, padding="SAME", W_std=W, b_std=b, parameterization=p), nk.Erf(),
                         nk.Flatten(), nk.Dense(1, W, b, p))
    x1, x2 = _x((4, 6, 7), 7), _x((3, 6, 7), 8)
    ks, kn = make("standard").kernel(x1, x2), make("ntk").kernel(x1, x2)
    torch.testing.assert_close(ks.nngp, kn.nngp, rtol=1e-14, atol=0)
    torch.testing.assert_close(ks.ntk, n / W ** 2 * kn.ntk, rtol=1e-12, atol=0)


# ------------------------------------------------------------------------------------------------
# invariants
# ------------------------------------------------------------------------------------------------
ARCHS = {
    "gap_2d": lambda: nk.serial(nk.Conv(8, (3, 3), padding="SAME", W_std=1.5, b_std=0.1), nk.Relu(),
                                nk.Conv(8, (2, 3), stride=(1, 2), padding="circular", W_std=1.3, b_std=0.2), nk.Gelu(),
                                nk.GlobalAvgPool(), nk.Dense(1, 1.2, 0.1)),
    "flatten_1d": lambda: nk.serial(nk.Conv(8, 3, W_std=1.5, b_std=0.1), nk.Erf(), nk.Conv(8, 2, stride=2),
                                    nk.Relu(), nk.Flatten(), nk.Dense(4, 1.1, 0.2, "standard"), nk.Relu(), nk.Dense(1)),
    "pool_then_flatten_2d": lambda: nk.serial(nk.Conv(8, (3, 3), padding="SAME", W_std=1.5, b_std=0.1), nk.Relu(),
                                              nk.AvgPool((2, 2), padding="SAME"), nk.Conv(8, (2, 2)), nk.LeakyRelu(0.1),
                                              nk.Flatten(), nk.Dense(1)),
    "overlapping_pool_1d": lambda: nk.serial(nk.Conv(8, 3, padding="SAME", W_std=1.4), nk.Sin(),
                                             nk.AvgPool(3, stride=1, padding="CIRCULAR"), nk.Conv(8, 2), nk.Abs(),
                                             nk.GlobalAvgPool(), nk.Dense(1)),
    "ends_on_conv_2d": lambda: nk.serial(nk.Conv(8, (3, 3), padding="SAME", W_std=1.5, b_std=0.1), nk.Relu(),
                                         nk.Conv(8, (2, 2), W_std=1.2)),
    "tanh_quadrature_1d": lambda: nk.serial(nk.Conv(8, 3, W_std=1.5, b_std=0.1), nk.Tanh(deg=16),
                                            nk.AvgPool(2), nk.GlobalAvgPool(), nk.Dense(1)),
}
SHAPES = {"1d": (3, 9), "2d": (2, 6, 5)}


def _arch_inputs(name, n1=7, n2=4):
    shape = SHAPES[name[-2:]]
    x1, x2 = _x((n1,) + shape, 9), _x((n2,) + shape, 10)
    x1[5] = x1[1]  # a repeated input
    x2[1] = -x1[2]  # an opposite one
    return x1, x2


def _as_matrix(t, k):
    """The kernel as a matrix over (input, position) pairs: (n1 P, n2 P) for full spatial, else (n1, n2)."""
    if not k.full_spatial:
        return t if t.ndim == 2 else None
    n1, n2, P = t.shape[0], t.shape[1], math.prod(k.spatial)
    return t.reshape(n1, n2, P, P).permute(0, 2, 1, 3).reshape(n1 * P, n2 * P)


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_conv_kernel_is_exactly_symmetric_and_positive_semidefinite(name):
    arch = ARCHS[name]()
    x1, _ = _arch_inputs(name)
    k = arch.kernel(x1)
    for f in ("nngp", "ntk"):
        m = getattr(k, f)
        assert torch.equal(m, swap_inputs(m, len(k.spatial), k.diagonal_spatial)), f"{f} not exactly symmetric"
        ev = torch.linalg.eigvalsh(_as_matrix(m, k))
        assert ev.min() >= -1e-12 * ev.max(), f"{f}: eigenvalue {ev.min():.3e} (max {ev.max():.3e})"
    assert torch.equal(nk.kernel.batch_diagonal(k.nngp), k.var1)


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_conv_diagonal_mode_equals_batch_diagonal_of_full_kernel(name):
    arch = ARCHS[name]()
    x1, _ = _arch_inputs(name)
    full, diag = arch.kernel(x1), arch.kernel(x1, diagonal=True)
    for f in ("nngp", "ntk"):
        want = nk.kernel.batch_diagonal(getattr(full, f))
        torch.testing.assert_close(getattr(diag, f), want, rtol=16 * EPS, atol=16 * EPS * float(want.abs().max()))


@pytest.mark.parametrize("tiles", ["batch_size=1", "batch_size=3", "one pair per tile", "strips"])
@pytest.mark.parametrize("name", sorted(ARCHS))
def test_conv_tiles_equal_the_untiled_kernel(name, tiles, monkeypatch):
    """Tiles sharing the variances (ntklib.batching) against one kernel_fn pass over all pairs: to rounding,
    exactly symmetric with the batch diagonal exactly var1 for x2=None."""
    arch = ARCHS[name]()
    x1, x2 = _arch_inputs(name)
    plan = nk.batching.spatial_plan(arch.layers)
    kwargs = {}
    if tiles.startswith("batch_size"):
        kwargs["batch_size"] = int(tiles.split("=")[1])
    else:
        pair = math.prod(x1.shape[2:]) ** (1 if plan[0] else 2)
        budget = 1 if tiles == "one pair per tile" else 3 * pair  # strips: 3 pairs per tile
        monkeypatch.setattr(ntklib.batching, "tile_entries", lambda device: budget)
    for a, b in ((x1, None), (x1, x2)):
        whole = arch.kernel_fn(nk.Kernel.from_inputs(a, b, diagonal_spatial=plan[0]))
        tiled = arch.kernel(a, b, **kwargs)
        for f in ("nngp", "ntk"):
            t, w = getattr(tiled, f), getattr(whole, f)
            assert t.shape == w.shape
            assert float((t - w).abs().max()) <= 64 * EPS * float(w.abs().max()), f
            if b is None:
                assert torch.equal(t, swap_inputs(t, len(tiled.spatial), tiled.diagonal_spatial))
        torch.testing.assert_close(tiled.var1, whole.var1, rtol=16 * EPS, atol=16 * EPS * float(whole.var1.abs().max()))
        if b is None:
            assert torch.equal(nk.kernel.batch_diagonal(tiled.nngp), tiled.var1)


def test_flatten_readout_tracks_only_the_spatial_diagonal_and_pooling_every_pair():
    """The plan of ntklib.batching: after the last pooling layer a Flatten readout needs only (n1, n2, P)."""
    arch = ARCHS["pool_then_flatten_2d"]()
    assert nk.batching.spatial_plan(arch.layers) == [False, False, False, True, True, True, False, False]
    assert all(nk.batching.spatial_plan(ARCHS["flatten_1d"]().layers)[:5])
    assert not any(nk.batching.spatial_plan(ARCHS["gap_2d"]().layers)[:5])
    # and the kernel of a Flatten network never builds the (P, P) blocks: it works on (n, n, P) alone
    x1, _ = _arch_inputs("flatten_1d")
    k0 = nk.Kernel.from_inputs(x1, diagonal_spatial=True)
    assert k0.nngp.shape == (7, 7, 9)
    k = ARCHS["flatten_1d"]().kernel_fn(k0)
    torch.testing.assert_close(k.ntk, ARCHS["flatten_1d"]().kernel(x1).ntk, rtol=1e-14, atol=0)


def test_network_ending_on_conv_gives_every_pair_of_positions_in_ntklib_layout():
    """(n1, n2, H, W, H', W'): positions of x first; the entry ((p), (q)) of k(x, x') is entry ((q), (p)) of k(x', x)."""
    arch = ARCHS["ends_on_conv_2d"]()
    x1, x2 = _arch_inputs("ends_on_conv_2d")
    k12, k21 = arch.kernel(x1, x2), arch.kernel(x2, x1)
    assert k12.nngp.shape == (7, 4, 5, 4, 5, 4) and k12.var1.shape == (7, 5, 4, 5, 4)
    torch.testing.assert_close(k21.ntk, swap_inputs(k12.ntk, 2, False), rtol=1e-14, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conv_kernel_stays_on_the_input_device_in_the_requested_dtype(dtype):
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    arch = ARCHS["gap_2d"]()
    x1, x2 = _arch_inputs("gap_2d")
    ref = arch.kernel(x1, x2)
    for dev in devices:
        k = arch.kernel(x1.to(dev), x2.to(dev), dtype=dtype)
        assert k.ntk.device.type == dev and k.ntk.dtype == dtype
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        torch.testing.assert_close(k.ntk.cpu().double(), ref.ntk, rtol=tol, atol=tol * float(ref.ntk.abs().max()))


# ------------------------------------------------------------------------------------------------
# finite networks: Monte Carlo over seeds
# ------------------------------------------------------------------------------------------------
def _monte_carlo(arch, x1, x2, n_samples, seed, keep=False):
    """Means and standard errors over seeds of the empirical NNGP (f f'^T / k) and NTK (trace mode)."""
    nngps, ntks = [], []
    for s in range(n_samples):
        net = arch.module(tuple(x1.shape[1:]), seed=seed + s, dtype=torch.float64, device="cpu")
        with torch.no_grad():
            f1, f2 = net(x1), net(x2)  # (n, k)
        nngps.append(f1 @ f2.T / f1.shape[1])
        ntks.append(nk.empirical_ntk(net, x1, x2, mode="trace", implementation="jacobian"))
    out = []
    for st in (torch.stack(nngps), torch.stack(ntks)):
        out += [st.mean(0), st.std(0) / n_samples ** 0.5]
    return out + ([torch.stack(ntks)] if keep else [])


MC_ARCHS = {
    "1d_flatten_ntk": (lambda n: nk.serial(nk.Conv(n, 3, padding="SAME", W_std=1.5, b_std=0.2), nk.Relu(),
                                           nk.Flatten(), nk.Dense(2, 1.2, 0.1)), (2, 6)),
    "1d_gap_standard": (lambda n: nk.serial(nk.Conv(n, 3, stride=2, W_std=1.4, b_std=0.1, parameterization="standard"),
                                            nk.Erf(), nk.GlobalAvgPool(), nk.Dense(1, 1.1, 0.2, "standard")), (2, 7)),
    "2d_gap_pool": (lambda n: nk.serial(nk.Conv(n, (3, 2), padding="circular", W_std=1.5, b_std=0.1), nk.Gelu(),
                                        nk.AvgPool((2, 2), stride=1), nk.GlobalAvgPool(), nk.Dense(1, 1.3)), (2, 4, 4)),
    "2d_flatten_standard": (lambda n: nk.serial(nk.Conv(n, (2, 2), W_std=1.3, b_std=0.2, parameterization="standard"),
                                                nk.Relu(), nk.Flatten(), nk.Dense(1, 1.0, 0.1, "standard")), (1, 4, 3)),
}


@pytest.mark.parametrize("name", sorted(MC_ARCHS))
def test_one_hidden_conv_layer_monte_carlo_matches_analytic_within_5_sem(name):
    """Unbiased at any width (module docstring): no allowance; 128 channels, 48 seeds."""
    make, shape = MC_ARCHS[name]
    arch = make(128)
    x1, x2 = _x((4,) + shape, 11), _x((3,) + shape, 12)
    nngp, nngp_sem, ntk, ntk_sem = _monte_carlo(arch, x1, x2, 48, seed=1000)
    k = arch.kernel(x1, x2)
    assert_within_standard_errors(k.nngp, nngp, nngp_sem, f"{name} nngp")
    assert_within_standard_errors(k.ntk, ntk, ntk_sem, f"{name} ntk")
    assert float((ntk_sem / k.ntk.abs().max()).max()) < 0.05  # the test has power


def test_two_hidden_conv_layers_monte_carlo_matches_analytic_with_1_over_width_bias():
    width = 128
    arch = nk.serial(nk.Conv(width, 3, padding="SAME", W_std=1.4, b_std=0.2), nk.Relu(),
                     nk.Conv(width, 2, W_std=1.4, b_std=0.2), nk.Relu(), nk.GlobalAvgPool(), nk.Dense(1, 1.2, 0.1))
    x1, x2 = _x((4, 2, 6), 13), _x((3, 2, 6), 14)
    nngp, nngp_sem, ntk, ntk_sem = _monte_carlo(arch, x1, x2, 32, seed=2000)
    k = arch.kernel(x1, x2)
    for what, mean, sem, exact in (("nngp", nngp, nngp_sem, k.nngp), ("ntk", ntk, ntk_sem, k.ntk)):
        bias = 3 * float(exact.abs().max()) / width
        assert ((mean - exact).abs() <= 5 * sem + bias).all(), f"{what}: off by {float((mean - exact).abs().max()):.3e}"


def test_empirical_ntk_error_of_conv_networks_falls_like_inverse_square_root_of_width():
    """One network's NTK fluctuates around the analytic one by O(n^{-1/2}): the RMS error over 12 seeds
    at 6 widths (64 to 2048 channels) has a log-log slope near -1/2 (fit in [-0.65, -0.35])."""
    shape = (2, 7)
    arch_ntk = lambda n: nk.serial(nk.Conv(n, 3, padding="SAME", W_std=1.5, b_std=0.2), nk.Relu(),
                                   nk.GlobalAvgPool(), nk.Dense(1, 1.2, 0.1))
    x1 = _x((4,) + shape, 15)
    widths = [64, 128, 256, 512, 1024, 2048]
    errs = []
    for n in widths:
        arch = arch_ntk(n)
        exact = arch.kernel(x1).ntk
        sq = [float(((nk.empirical_ntk(arch.module(shape, seed=3000 + s, dtype=torch.float64, device="cpu"), x1)
                      - exact) ** 2).mean()) for s in range(12)]
        errs.append(math.sqrt(sum(sq) / len(sq)) / float(exact.abs().max()))
    slope = np.polyfit(np.log(widths), np.log(errs), 1)[0]
    assert -0.65 <= slope <= -0.35, f"slope {slope:.3f}, relative RMS errors {errs}"


# ------------------------------------------------------------------------------------------------
# the finite modules
# ------------------------------------------------------------------------------------------------
def test_conv_module_shapes_seeds_and_parameter_scales():
    arch = ARCHS["pool_then_flatten_2d"]()
    net = arch.module((2, 6, 5), seed=3, dtype=torch.float64, device="cpu")
    x = _x((4, 2, 6, 5), 16)
    assert net(x).shape == (4, 1)
    same = arch.module((2, 6, 5), seed=3, dtype=torch.float64, device="cpu")
    for p, q in zip(net.parameters(), same.parameters()):
        assert torch.equal(p, q)  # the same seed draws the same numbers
    other = arch.module((2, 6, 5), seed=4, dtype=torch.float64, device="cpu")
    assert not torch.equal(next(net.parameters()), next(other.parameters()))
    # standard parameterization: weights of variance W^2 / (C_in |F|); NTK parameterization: N(0, 1)
    std = nk.serial(nk.Conv(2000, (3, 3), W_std=1.5, parameterization="standard")).module((4, 5, 5), seed=0)
    ntk = nk.serial(nk.Conv(2000, (3, 3), W_std=1.5)).module((4, 5, 5), seed=0)
    assert abs(float(std[0].weight.detach().double().var()) / (1.5 ** 2 / 36) - 1) < 0.02
    assert abs(float(ntk[0].weight.detach().double().var()) - 1) < 0.02


# ------------------------------------------------------------------------------------------------
# bad input: every error names the argument
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make, match", [
    (lambda: nk.Conv(4, 3, stride=0), r"stride must be a positive integer; got 0"),
    (lambda: nk.Conv(4, (3, 3), stride=(1, 0)), r"stride must be a positive integer; got 0"),
    (lambda: nk.Conv(4, (3, 3), stride=(1, 1, 1)), r"stride must have 2 entries"),
    (lambda: nk.Conv(4, (3, 3, 3)), r"kernel_size must have 1 or 2 entries"),
    (lambda: nk.Conv(4, 0), r"kernel_size must be a positive integer; got 0"),
    (lambda: nk.Conv(0, 3), r"out_channels must be a positive integer; got 0"),
    (lambda: nk.Conv(4, 3, padding="full"), r"padding must be one of \['CIRCULAR', 'SAME', 'VALID'\]; got 'FULL'"),
    (lambda: nk.Conv(4, 3, W_std=-1), r"W_std must be a finite number >= 0"),
    (lambda: nk.Conv(4, 3, parameterization="mup"), r"parameterization must be one of"),
    (lambda: nk.AvgPool(0), r"window must be a positive integer; got 0"),
    (lambda: nk.AvgPool((2, 2), stride=(0, 1)), r"stride must be a positive integer; got 0"),
])
def test_conv_and_pool_reject_bad_hyperparameters_naming_them(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("arch, x, match", [
    (nk.serial(nk.Conv(4, 3), nk.Flatten(), nk.Dense(1)), _x((5, 8), 0),
     r"Conv\(4, kernel_size=3.*is 1-D: it needs channel-first inputs of shape \(n, C, L\); got a vector"),
    (nk.serial(nk.Conv(4, 3), nk.Flatten()), _x((5, 2, 8, 8), 0), r"is 1-D: .*\(n, C, L\); got a 2-D spatial shape"),
    (nk.serial(nk.Conv(4, (3, 3)), nk.Flatten()), _x((5, 2, 8), 0), r"is 2-D: .*\(n, C, H, W\)"),
    (nk.serial(nk.Conv(4, 5), nk.Flatten()), _x((5, 2, 4), 0),
     r"kernel_size \(5,\) of Conv.*does not fit in its input of spatial shape \(4,\) with padding='VALID'"),
    (nk.serial(nk.Conv(4, 3), nk.Relu(), nk.Conv(4, 3), nk.Flatten()), _x((5, 2, 4), 0), r"kernel_size \(3,\).*\(2,\)"),
    (nk.serial(nk.AvgPool(5), nk.Flatten()), _x((5, 2, 4), 0), r"window \(5,\) of AvgPool.*does not fit"),
    (nk.serial(nk.Dense(4), nk.Flatten()), _x((5, 8), 0), r"Flatten\(\) needs a spatial input, channel-first"),
    (nk.serial(nk.GlobalAvgPool()), _x((5, 8), 0), r"GlobalAvgPool\(\) needs a spatial input"),
    (nk.serial(nk.Conv(4, 3), nk.Relu(), nk.Dense(1)), _x((5, 2, 8), 0),
     r"Dense\(1.*needs a vector input \(n, d\); .*spatial shape \(6,\).*Flatten\(\) or GlobalAvgPool\(\)"),
])
def test_conv_kernel_rejects_inputs_of_the_wrong_layout_naming_the_layer(arch, x, match):
    with pytest.raises(ValueError, match=match):
        arch.kernel(x)


def test_conv_kernel_rejects_mismatched_input_pairs():
    arch = ARCHS["flatten_1d"]()
    with pytest.raises(ValueError, match=r"x1 and x2 must have the same shape after the batch axis"):
        arch.kernel(_x((3, 3, 9), 0), _x((3, 4, 9), 1))
    with pytest.raises(ValueError, match=r"x2 must be 3-D like x1"):
        arch.kernel(_x((3, 3, 9), 0), _x((3, 27), 1))
    with pytest.raises(ValueError, match=r"x1 must be 2-D with shape \(n, d\) \(or channel-first"):
        arch.kernel(_x((3, 3, 9, 2, 2), 0))


def test_conv_module_rejects_channel_last_inputs_and_bad_in_dim():
    arch = nk.serial(nk.Conv(4, (3, 3)), nk.Relu(), nk.GlobalAvgPool(), nk.Dense(1))
    net = arch.module((3, 8, 6), seed=0, dtype=torch.float64, device="cpu")
    with pytest.raises(ValueError, match=r"x must have shape \(n, 3, 8, 6\); got \(2, 8, 6, 3\)\. It looks "
                                         r"channel-last.*x\.permute\(0, 3, 1, 2\)"):
        net(_x((2, 8, 6, 3), 0))
    with pytest.raises(ValueError, match=r"in_dim must be a positive integer d, or the channel-first shape"):
        arch.module((3, 0, 6))
    with pytest.raises(ValueError, match=r"Conv\(4.*is 2-D: it needs inputs of shape \(n, C, H, W\)"):
        arch.module((3, 8))
    with pytest.raises(ValueError, match=r"Conv\(4.*needs inputs of shape \(n, C, H, W\); here its input is a vector"):
        arch.module(8)
    with pytest.raises(ValueError, match=r"Dense\(1.*needs a vector input"):
        nk.serial(nk.Conv(4, 3), nk.Dense(1)).module((2, 5))
    with pytest.raises(ValueError, match=r"kernel_size \(3,\) of Conv.*does not fit.*\(2,\)"):
        nk.serial(nk.Conv(4, 3), nk.Flatten()).module((2, 2))
