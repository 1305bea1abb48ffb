"""ntklib.experiments.depth_induced: shortcut networks at fixed narrow width, as K grows.

Truths used: the exact Gaussian scale-mixture structure of f given the hidden layers (f / s is
N(0, 1) by construction), direct simulation (numpy draws of ReLU layers and of independent readouts),
a second implementation (serial modules; each network's own analytic kernel), and measured trends
with their bootstrap standard errors (statistical tests use fixed seeds; tolerances are stated next
to each assert).
"""
import math

import numpy as np
import pytest
import torch
from scipy import stats

import ntklib as nk
from ntklib.data import sphere_points
from ntklib.experiments import deep_limit as xd
from ntklib.experiments import depth_induced as xi
from ntklib.shortcut import Shortcut


def _x(n=4, d=3, seed=0):
    return sphere_points(n, d, radius=math.sqrt(d), seed=seed)


def test_output_is_exactly_a_gaussian_scale_mixture():
    """f(x) / s(x) is N(0, 1) (s^2 = Var(f | hidden layers)), while f itself is far from Gaussian at width 4."""
    x = _x(1, 3, 7)
    arch = xd.plain_network(4, 3)
    f, s2 = xi.output_samples(arch, x, n_seeds=800, seed=0, with_variance=True)
    alive = s2[:, 0] > 0  # at width 4 some networks are dead (all ReLUs off): f = 0 exactly, an atom
    z = (f[alive] / s2[alive].sqrt())[:, 0].numpy()
    assert stats.kstest(z, "norm").pvalue > 1e-3  # a correct scale mixture fails this 1 time in 1000
    assert stats.shapiro(f[:, 0].numpy()).pvalue < 1e-6
    sc = Shortcut(6, K=3, hbar=1, inject_std=1.0, stable_eps=0.9)
    f, s2 = xi.output_samples(sc, x, n_seeds=500, seed=0, with_variance=True)
    assert stats.kstest((f / s2.sqrt())[:, 0].numpy(), "norm").pvalue > 1e-3


def test_ntk_d_fluctuation_falls_with_K_under_constraint_with_input_injection():
    """Relative seed-to-seed spread of NTK(d) at width 10: K = 16 below 0.6 x K = 1 (measured ratio ~0.4, s.e. ~0.03)."""
    r = xi.fluctuation_vs_K([1, 16], width=10, hbar=2, n_seeds=40, seed=0, stable_eps=0.9, inject_std=1.0)
    assert float(r["rel"][1]) < 0.6 * float(r["rel"][0]), r
    assert float(r["rel"][1]) + 3 * float(r["rel_se"][1]) < float(r["rel"][0]) - 3 * float(r["rel_se"][0])


def test_literal_shortcut_network_ntk_fluctuation_rises_with_K():
    """The network as the paper describes it (critical ReLU, no constraint, no injection): the spread grows (0.7 -> 2.6+)."""
    r = xi.fluctuation_vs_K([1, 8], width=10, hbar=2, n_seeds=40, seed=0)
    assert float(r["rel"][1]) > 2 * float(r["rel"][0]), r


def test_constraint_without_injection_forgets_the_input():
    """Constraint + bias, no injection: the seed-averaged NTK(d) tends to an x-independent constant as K grows."""
    x = _x(5, 3, 8)
    r = xi.fluctuation_vs_K([1, 32], width=10, hbar=1, n_seeds=12, x=x, stable_eps=0.9, b_std=0.5)
    inj = xi.fluctuation_vs_K([32], width=10, hbar=1, n_seeds=12, x=x, stable_eps=0.9, b_std=0.5, inject_std=1.0)
    # mean normalized off-diagonal (1 = constant kernel): measured 0.11 (K=1) -> 0.75 (K=32), with injection 0.27
    assert float(r["offdiag_corr"][1]) > 0.65 and float(r["offdiag_corr"][1]) > float(r["offdiag_corr"][0]) + 0.5
    assert float(inj["offdiag_corr"][0]) < 0.4


def test_training_reduces_loss_and_ntk_moves_less_at_larger_K_with_width_K_squared():
    r = xi.training_invariance([2, 4], steps=60, n_points=8, n_seeds=2,
                               variants={"stable_inject": {"stable_eps": 0.9, "inject_std": 1.0}})
    v = r["stable_inject"]
    assert bool((v["loss_ratio"] < 0.5).all())
    assert float(v["rel_change"][1]) < float(v["rel_change"][0])


def test_training_invariance_equals_plain_gradient_descent_on_the_half_sum_loss():
    """The sweep's training (train_network with loss="sum") is plain GD on 1/2 sum (f - y)^2 with step eta, written out."""
    K, width, steps, d = 2, 6, 15, 5
    r = xi.training_invariance([K], width=lambda K: width, steps=steps, n_points=6, n_seeds=1, seed=0, d=d,
                               variants={"v": {"stable_eps": 0.9, "inject_std": 1.0}})["v"]
    x = sphere_points(6, d, radius=math.sqrt(d), seed=777)  # the sweep's inputs for seed 0
    y = torch.sin(2 * x[:, 0])
    net = Shortcut(width, K, 1, stable_eps=0.9, inject_std=1.0).module(d, seed=0, dtype=torch.float64)
    t0 = nk.empirical_ntk(net, x, implementation="jacobian")
    eta = 1.0 / float(torch.linalg.eigvalsh(t0)[-1])
    params = [p for p in net.parameters() if p.requires_grad]
    losses = []
    for _ in range(steps + 1):
        loss = 0.5 * ((net(x)[:, 0] - y) ** 2).sum()
        losses.append(loss.item())
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= eta * g
    with torch.no_grad():  # undo the last step: losses[-1] is the loss after `steps` steps
        for p, g in zip(params, grads):
            p += eta * g
    t1 = nk.empirical_ntk(net, x, implementation="jacobian")
    torch.testing.assert_close(r["loss_ratio"][0], torch.tensor(losses[-1] / losses[0], dtype=torch.float64), rtol=1e-8, atol=0)
    torch.testing.assert_close(r["rel_change"][0], ((t1 - t0).norm() / t0.norm()).detach(), rtol=1e-8, atol=1e-14)


def test_relu_log_norm_step_variance_matches_simulated_relu_layers():
    """v(n) = Var log((1/n) sum relu(g_i)^2) from digamma/trigamma over Binomial(n, 1/2) live units, against direct
    draws of g (numpy, 200 000 per width; the s.e. of a variance is about v sqrt(2/S), plus the excess kurtosis)."""
    rng = np.random.default_rng(0)
    for n in (3, 10, 50):
        g = rng.standard_normal((200_000, n))
        z = (np.maximum(g, 0) ** 2).sum(1)
        lz = np.log(z[z > 0])
        se = lz.var() * math.sqrt((stats.kurtosis(lz) + 2) / lz.size)
        assert abs(xi.relu_log_norm_step_variance(n) - lz.var()) < 4 * se, (n, lz.var(), se)
    assert xi.relu_log_norm_step_variance(2000) == pytest.approx(5 / 2000, rel=0.01)  # delta method at large n


def test_log_norms_of_bias_free_relu_networks_are_a_random_walk():
    """Cov(log q_l, log q_l') of 3000 literal networks (width 12) against min(l, l') v(n), within 4 bootstrap s.e.;
    hidden_norms' first column is |x|^2/d and its other columns match the module rebuilt from the ensemble."""
    x = _x(1, 3, 7)
    arch = Shortcut(12, K=8, hbar=1)
    q = xi.hidden_norms(arch, x, n_seeds=3000, seed=0)[:, 0]  # (S, 9)
    torch.testing.assert_close(q[:, 0], torch.full((3000,), float(x.pow(2).sum() / 3), dtype=torch.float64))
    net = arch.ensemble(3, 3000, seed=0).member(5)
    with torch.no_grad():
        hs = nk.shortcut.shortcut_module(net).hidden_states(x)
    torch.testing.assert_close(q[5, 1:], torch.stack([h.pow(2).mean() for h in hs[1:]]), rtol=1e-12, atol=0)
    layers = [1, 2, 4, 8]
    lq = q[(q > 0).all(1)][:, layers].log().numpy()  # dead networks (prob. ~ 8 / 4096) have log q = -inf
    cov = np.cov(lq.T)
    rng = np.random.default_rng(1)
    boots = np.stack([np.cov(lq[rng.integers(0, len(lq), len(lq))].T) for _ in range(200)])
    theory = xi.relu_log_norm_covariance(layers, 12).numpy()
    assert np.all(np.abs(cov - theory) < 4 * boots.std(0)), (cov, theory)
    assert abs(cov[0, 3] / cov[3, 3] - 1 / 8) < 0.1 and abs(cov[0, 3] / cov[0, 0] - 1) < 0.2  # shared first step


def test_readout_clt_fluctuation_matches_simulated_readouts():
    """Against 40 000 simulated networks: gamma readouts (independent), and Gaussian moving-average readouts
    (correlation rho between neighbours only); the s.e. of a relative sd is about 1/sqrt(2 S) = 0.35%."""
    rng = np.random.default_rng(2)
    mu0, mu, sd = 2.5, 1.0, 0.6
    for K in (1, 3, 20):
        T = rng.gamma((mu / sd) ** 2, sd ** 2 / mu, size=(40_000, K))  # mean mu, sd sd
        ntk_d = (mu0 + T.sum(1)) / (K + 1)
        F = ntk_d.std() / ntk_d.mean()
        assert float(xi.readout_clt_fluctuation(K, mu0, mu, sd)) == pytest.approx(F, rel=0.02)
        c = 0.5  # moving average e_k + c e_{k+1}: neighbour correlation c / (1 + c^2) = 0.4
        e = rng.standard_normal((40_000, K + 1))
        T = mu + sd * (e[:, :-1] + c * e[:, 1:]) / math.sqrt(1 + c * c)
        ntk_d = (mu0 + T.sum(1)) / (K + 1)
        assert float(xi.readout_clt_fluctuation(K, mu0, mu, sd, rho=0.4)) == pytest.approx(ntk_d.std() / ntk_d.mean(),
                                                                                           rel=0.02)


def test_plain_option_measures_the_plain_network():
    """fluctuation_vs_K(plain=True) (batched one-readout shortcut networks) against plain_fluctuation_vs_depth
    (serial modules): the two seed-averaged kernels agree within their spread, and both spreads grow with depth."""
    x = _x(4, 3, 9)
    a = xi.fluctuation_vs_K([1, 4], width=10, hbar=2, n_seeds=40, x=x, plain=True)
    b = xd.plain_fluctuation_vs_depth([2, 8], width=10, n_seeds=40, x=x)
    for i in range(2):
        assert abs(float(a["rel"][i]) - float(b["rel"][i])) < 4 * math.hypot(float(a["rel_se"][i]), float(b["rel_se"][i]))
    assert float(a["rel"][1]) > 1.5 * float(a["rel"][0]) and float(b["rel"][1]) > 1.5 * float(b["rel"][0])


def test_sin_regression_uses_ntk_d_and_ntk_w_at_each_depth():
    """The one-pass kernels of the comparison against kernel regression with each network's own analytic kernel."""
    r = xi.sin_regression_comparison((2, 6), n_train=8, n_test=30, width=20, hbar=2, empirical_seeds=0,
                                     stable_eps=0.9, inject_std=1.0)
    xtr = torch.linspace(0, math.pi, 8, dtype=torch.float64)
    emb = lambda t: torch.stack([t, torch.ones_like(t)], 1)  # noqa: E731
    xtr_e, xte_e = emb(xtr), emb(r["x_test"])
    for L in (2, 6):
        for name, arch in (("ntk_d", Shortcut(20, L // 2, 2, stable_eps=0.9, inject_std=1.0)),
                           ("ntk_w", xd.plain_network(20, L))):
            k_tt, k_st = arch.kernel(xtr_e, get="ntk").ntk, arch.kernel(xte_e, xtr_e, get="ntk").ntk
            pred = nk.kernel_regression(k_tt, k_st, torch.sin(xtr), diag_reg=1e-10)
            torch.testing.assert_close(r["pred"][L][name], pred, rtol=1e-6, atol=1e-8)
