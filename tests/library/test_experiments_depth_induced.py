"""ntklib.experiments.depth_induced: shortcut networks at fixed narrow width, as K grows.

Truths used: the exact Gaussian scale-mixture structure of f given the hidden layers (f / s is
N(0, 1) by construction), and measured trends with their bootstrap standard errors (statistical
tests use fixed seeds; tolerances are stated next to each assert).
"""
import math

import torch
from scipy import stats

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
    import ntklib as nk

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
