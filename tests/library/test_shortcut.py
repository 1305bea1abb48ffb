"""ntklib.shortcut: the shortcut network's two views, its kernel, the constraint (measurements: test_experiments_depth_induced.py).

Truths used: ntklib's plain serial kernels (the shortcut kernel must be their readout average),
Monte Carlo over finite networks with standard-error tolerances, the Jacobian empirical NTK
(a second implementation of the structured one), closed-form Lipschitz constants, the
contraction property itself, and the exact Gaussian scale-mixture structure of f given the
hidden layers. Statistical tests use fixed seeds; tolerances are stated next to each assert.
"""
import math

import numpy as np
import pytest
import torch
from scipy import stats

import ntklib as nk
from ntklib.data import sphere_points
from ntklib.shortcut import Shortcut, lipschitz_constant, readout_ntk_blocks, shortcut_module


def _x(n=4, d=3, seed=0):
    return sphere_points(n, d, radius=math.sqrt(d), seed=seed)


def test_single_top_readout_equals_plain_serial_kernel():
    x = _x()
    sc = Shortcut(64, K=1, hbar=3, readout_input=False, b_std=0.2, W_std=1.3, readout_std=0.7)
    plain = nk.serial(*([nk.Dense(64, 1.3, 0.2), nk.Relu()] * 3), nk.Dense(1, 0.7, None))
    a, b = sc.kernel(x), plain.kernel(x)
    torch.testing.assert_close(a.ntk, b.ntk, rtol=1e-14, atol=0)
    torch.testing.assert_close(a.nngp, b.nngp, rtol=1e-14, atol=0)


@pytest.mark.parametrize("readout_input", [True, False])
def test_shortcut_kernel_is_the_average_of_plain_kernels_at_readout_depths(readout_input):
    x1, x2 = _x(4, 3, 1), _x(3, 3, 2)
    act = nk.Erf()
    sc = Shortcut(32, K=3, hbar=2, activation=act, W_std=1.2, b_std=0.1, readout_std=0.9, readout_input=readout_input)
    kappas = range(0 if readout_input else 1, 4)
    parts = []
    for kappa in kappas:
        layers = [nk.Dense(32, 1.2, 0.1), act] * (2 * kappa)
        parts.append(nk.serial(*layers, nk.Dense(1, 0.9, None)).kernel(x1, x2))
    M = len(parts)
    k = sc.kernel(x1, x2)
    torch.testing.assert_close(k.nngp, sum(p.nngp for p in parts) / M, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(k.ntk, sum(p.ntk for p in parts) / M, rtol=1e-13, atol=1e-15)
    kd = sc.kernel(x1, diagonal=True)
    torch.testing.assert_close(kd.ntk, sc.kernel(x1).ntk.diagonal(), rtol=1e-14, atol=0)


def test_analytic_nngp_matches_monte_carlo_of_finite_shortcut_networks():
    x = _x(4, 3, 3)
    arch = Shortcut(128, K=2, hbar=2, b_std=0.3, inject_std=0.8, W_std=1.0)
    mc = nk.monte_carlo_kernel(arch, x, n_samples=300, get="nngp", seed=10)
    exact = arch.kernel(x, get="nngp").nngp
    z = (mc.nngp - exact) / mc.nngp_sem
    assert float(z.abs().max()) < 4.0, z  # 4 standard errors; the O(1/width) bias is ~1% of one s.e. here


def test_analytic_ntk_matches_monte_carlo_of_finite_shortcut_networks():
    x = _x(3, 3, 4)
    arch = Shortcut(256, K=2, hbar=2, activation=nk.Erf(), b_std=0.3, inject_std=0.7, W_std=1.0)
    s = nk.monte_carlo_kernel(arch, x, n_samples=24, seed=20, get="ntk", keep_samples=True).ntk_samples  # (S, 3, 3)
    mean, se = s.mean(0), s.std(0) / math.sqrt(s.shape[0])
    exact = arch.kernel(x).ntk
    # 4 standard errors plus 2% for the O(depth / width) bias of the finite-width mean
    assert bool(((mean - exact).abs() <= 4 * se + 0.02 * exact.abs()).all()), (mean, exact, se)


@pytest.mark.parametrize("kwargs", [
    dict(K=3, hbar=2, b_std=0.3, inject_std=0.5, stable_eps=0.9, out_dim=2),
    dict(K=2, hbar=1, readout_input=False, activation=nk.Tanh()),
    dict(K=2, hbar=2, activation=nk.Gelu(), W_std=1.0),
])
def test_structured_ntk_matches_jacobian_empirical_ntk(kwargs):
    x1, x2 = _x(5, 3, 5), _x(2, 3, 6)
    net = Shortcut(12, **kwargs).module(3, seed=3, dtype=torch.float64)
    sc = shortcut_module(net)
    torch.testing.assert_close(sc.structured_ntk(x1), nk.empirical_ntk(net, x1, implementation="jacobian"),
                               rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(sc.structured_ntk(x1, x2), nk.empirical_ntk(net, x1, x2, implementation="jacobian"),
                               rtol=1e-12, atol=1e-13)


def test_readout_blocks_sum_to_the_ntk_and_cross_terms_vanish_with_width():
    x = _x(3, 4, 5)
    ratios = {}
    for n in (16, 256):
        r = []
        for s in range(4):
            net = Shortcut(n, K=3, hbar=1, b_std=0.2).module(4, seed=s, dtype=torch.float64)
            B = readout_ntk_blocks(net, x)  # (3, 3, M, M)
            if n == 16 and s == 0:
                torch.testing.assert_close(B.sum((-1, -2)), nk.empirical_ntk(net, x), rtol=1e-12, atol=1e-13)
            eye = torch.eye(B.shape[-1], dtype=torch.bool)
            r.append(float(B[..., ~eye].sum(-1).norm() / B[..., eye].sum(-1).norm()))
        ratios[n] = np.mean(r)
    # cross terms ~ 1/sqrt(width): a factor 4 expected from 16 to 256; we ask for 2
    assert ratios[256] < 0.5 * ratios[16], ratios


def test_stable_pertinent_constraint_bounds_spectral_norms_and_contracts_each_layer():
    eps = 0.8
    arch = Shortcut(20, K=4, hbar=2, W_std=math.sqrt(2.0), b_std=0.5, stable_eps=eps)
    sc = shortcut_module(arch.module(3, seed=1, dtype=torch.float64))
    for l, dense in enumerate(sc.hidden, start=1):
        if l >= 2:
            norm = float(torch.linalg.matrix_norm(dense.weight.detach(), ord=2)) * dense.weight_scale
            assert norm <= eps / arch.lipschitz * (1 + 1e-12)
            assert sc.rescale[l - 1] < 1.0  # sqrt(2) * ||W|| / sqrt(n) ~ 2.6 > eps: always active here
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, generator=g, dtype=torch.float64)
    with torch.no_grad():
        hs = sc.hidden_states(x)
    for l in range(2, len(hs)):
        assert float((hs[l][0] - hs[l][1]).norm()) <= eps * float((hs[l - 1][0] - hs[l - 1][1]).norm()) + 1e-14
    # the analytic kernel uses the Bai-Yin limit ||W||/sqrt(n) -> 2 of the rescaling; at n = 400 the
    # realized factors are within a few percent of it
    big = shortcut_module(Shortcut(400, K=2, hbar=1, stable_eps=eps).module(3, seed=2, dtype=torch.float64))
    limit = Shortcut(400, K=2, hbar=1, stable_eps=eps).effective_W_std(2) / math.sqrt(2.0)
    assert big.rescale[1] == pytest.approx(limit, rel=0.05)


def test_lipschitz_constants_match_closed_forms():
    assert lipschitz_constant(nk.Relu()) == 1.0
    assert lipschitz_constant(nk.LeakyRelu(0.1)) == 1.0
    assert lipschitz_constant(nk.Erf(a=2.0, b=0.5)) == pytest.approx(2 / math.sqrt(math.pi))
    assert lipschitz_constant(nk.Tanh()) == pytest.approx(1.0, abs=1e-9)
    assert lipschitz_constant(nk.Sigmoid()) == pytest.approx(0.25, abs=1e-9)
    gelu_max = stats.norm.cdf(math.sqrt(2)) + math.sqrt(2) * stats.norm.pdf(math.sqrt(2))  # phi'' = 0 at sqrt(2)
    assert lipschitz_constant(nk.Gelu()) == pytest.approx(gelu_max, rel=1e-8)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="stable_eps"):
        Shortcut(10, 2, stable_eps=1.5)
    with pytest.raises(ValueError, match="K"):
        Shortcut(10, 0)
    with pytest.raises(TypeError, match="activation"):
        Shortcut(10, 2, activation=torch.relu)
    with pytest.raises(TypeError, match="shortcut"):
        readout_ntk_blocks(nk.Dense(3).module(2, seed=0), torch.ones(1, 2))


def test_readout_blocks_leave_the_network_intact():
    """readout_ntk_blocks runs torch.func on a view of the network: afterwards the network still has its own
    parameters (not functorch's temporary tensors) and gives the same outputs and empirical NTK."""
    x = _x(3, 4, 5)
    net = Shortcut(16, K=3, hbar=1, b_std=0.2).module(4, seed=0, dtype=torch.float64)
    with torch.no_grad():
        before = net(x).clone()
    ntk_before = nk.empirical_ntk(net, x, implementation="jacobian")
    readout_ntk_blocks(net, x)
    assert all(type(p) is torch.nn.Parameter for p in net.parameters())
    with torch.no_grad():
        torch.testing.assert_close(net(x), before, rtol=0, atol=0)  # the same computation twice
    torch.testing.assert_close(nk.empirical_ntk(net, x, implementation="structured"), ntk_before,
                               rtol=1e-12, atol=1e-13)


def test_readout_kernels_are_plain_serial_kernels_and_their_running_means_are_ntk_d_of_fewer_readouts():
    x1, x2 = _x(4, 3, 1), _x(3, 3, 2) * 1.3  # unequal norms
    kw = dict(W_std=1.2, b_std=0.1, readout_std=0.9, inject_std=0.5, stable_eps=0.8)
    rk = Shortcut(32, K=3, hbar=2, activation=nk.Erf(), **kw).readout_kernels(x1, x2)
    assert rk["depths"].tolist() == [0, 2, 4, 6]
    for j, l in enumerate(rk["depths"].tolist()):
        if l > 0:  # NTK(d) of the network with K = l / hbar readouts: an independent evaluation of each kernel
            sub = Shortcut(32, K=l // 2, hbar=2, activation=nk.Erf(), **kw).kernel(x1, x2)
            torch.testing.assert_close(rk["ntk_mean"][j], sub.ntk, rtol=1e-13, atol=1e-15)
            torch.testing.assert_close(rk["nngp_mean"][j], sub.nngp, rtol=1e-13, atol=1e-15)
    # without injection or constraint, readout l is the plain network of depth l; readout 0 is sigma_J^2 x.x'/d
    rk = Shortcut(32, K=3, hbar=2, W_std=1.3, b_std=0.2, readout_std=0.7).readout_kernels(x1, x2, keep=[0, 4])
    plain = nk.serial(*([nk.Dense(32, 1.3, 0.2), nk.Relu()] * 4), nk.Dense(1, 0.7, None)).kernel(x1, x2)
    torch.testing.assert_close(rk["ntk"][1], plain.ntk, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(rk["nngp"][0], 0.49 * x1 @ x2.T / 3, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(rk["ntk"][0], 0.49 * x1 @ x2.T / 3, rtol=1e-13, atol=1e-15)
    with pytest.raises(ValueError, match="keep"):
        Shortcut(8, K=2, hbar=2).readout_kernels(x1, keep=[3])


@pytest.mark.parametrize("kwargs", [
    dict(K=3, hbar=2, b_std=0.3, inject_std=0.5, stable_eps=0.9, out_dim=2),
    dict(K=2, hbar=1, readout_input=False, activation=nk.Tanh()),
    dict(K=2, hbar=2, activation=nk.Gelu(), W_std=1.0),
])
def test_ensemble_members_are_finite_networks_with_the_same_outputs_ntk_and_readout_blocks(kwargs):
    """Every batched quantity against network s rebuilt as a module (a second implementation: autograd Jacobians)."""
    x1, x2 = _x(5, 3, 5), _x(2, 3, 6)
    ens = Shortcut(12, **kwargs).ensemble(3, 3, seed=1)
    f, ntk, ntk12 = ens(x1), ens.ntk(x1), ens.ntk(x1, x2)  # (S, 5, k), (S, 5, 5), (S, 5, 2)
    blocks, diag = ens.readout_ntk_blocks(x1, x2), ens.readout_ntk_blocks(x1, x2, diagonal=True)
    cond = ens.conditional_nngp(x1, x2)  # (S, 5, 2)
    for s in range(3):
        net = ens.member(s)
        with torch.no_grad():
            torch.testing.assert_close(f[s], net(x1), rtol=1e-12, atol=1e-14)
            hs = shortcut_module(net).hidden_states(torch.cat([x1, x2]))
        torch.testing.assert_close(ntk[s], nk.empirical_ntk(net, x1, implementation="jacobian"), rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(ntk12[s], nk.empirical_ntk(net, x1, x2, implementation="jacobian"),
                                   rtol=1e-12, atol=1e-13)
        B = readout_ntk_blocks(net, x1, x2)  # (5, 2, M, M)
        torch.testing.assert_close(blocks[s], B, rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(diag[s], torch.diagonal(B, dim1=-2, dim2=-1), rtol=1e-12, atol=1e-13)
        by_hand = sum(hs[l][:5] @ hs[l][5:].T / hs[l].shape[1] for l in ens.spec.readout_layers)
        torch.testing.assert_close(cond[s], ens.spec.readout_std ** 2 * by_hand / ens.spec.n_readouts,
                                   rtol=1e-12, atol=1e-14)


def test_ensemble_rescaling_follows_the_constraint_and_its_kernels_match_infinite_width():
    eps = 0.8
    ens = Shortcut(20, K=3, hbar=1, b_std=0.5, stable_eps=eps).ensemble(3, 50, seed=2)
    for l in range(2, 4):  # the effective matrices are eps-contractions, rescaled only when needed (always here)
        norms = torch.linalg.matrix_norm(ens.weight[l - 1], ord=2) * math.sqrt(2.0) / math.sqrt(20)  # (S,)
        assert bool((ens.rescale[:, l - 1] < 1).all())
        torch.testing.assert_close(ens.rescale[:, l - 1] * norms, torch.full_like(norms, eps), rtol=1e-12, atol=0)
    assert bool((ens.rescale[:, 0] == 1).all())  # the first layer is not part of the recurrence
    # distribution: the mean over 400 width-128 networks against the analytic kernels, within standard errors
    x = _x(3, 3, 3)
    arch = Shortcut(128, K=2, hbar=2, b_std=0.3, inject_std=0.8, W_std=1.0)
    big = arch.ensemble(3, 400, seed=10)
    exact = arch.kernel(x)
    for emp, ref, bias in ((big.conditional_nngp(x), exact.nngp, 0.0), (big.ntk(x), exact.ntk, 0.02)):
        z = (emp.mean(0) - ref).abs() / (emp.std(0) / math.sqrt(emp.shape[0]))
        # 4 standard errors, plus 2% for the O(depth / width) bias of the finite-width NTK mean
        assert bool(((emp.mean(0) - ref).abs() <= 4 * emp.std(0) / 20 + bias * ref.abs()).all()), z


def test_ensemble_bad_arguments_name_the_argument():
    arch = Shortcut(8, K=2)
    with pytest.raises(ValueError, match="n_nets"):
        arch.ensemble(3, 0)
    with pytest.raises(TypeError, match="spec"):
        nk.shortcut_ensemble.ShortcutEnsemble(nk.Dense(3), 3, 2)
    ens = arch.ensemble(3, 2)
    with pytest.raises(ValueError, match="s must be"):
        ens.member(2)
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        ens.ntk(torch.ones(2, 4))
