"""ntklib.experiments.deep_limit: the Gram matrix and the regression map against depth, the spread of narrow deep NTKs.

Truths used: closed forms of the limits (the mean predictor, det(3/4 I + 1/4 11^T), 1^T/(n+3)),
the error of the constant predictor, the bootstrap against the Gaussian formula for the standard
error of a standard deviation, and finite networks (measured trends with their standard errors).
"""
import math

import pytest
import torch

import ntklib as nk
from ntklib.data import sphere_points
from ntklib.experiments import deep_limit as xd


def test_deep_limit_sweep_det_vanishes_for_nngp_while_regression_map_stays_bounded():
    x = sphere_points(30, 3, radius=math.sqrt(3), seed=1)
    y = torch.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2] / 3
    n = 20
    depths = [10, 100, 1000, 3000]
    r = xd.deep_limit_sweep(x[:n], y[:n], x[n:], y[n:], depths, kernel="nngp")
    assert bool((r["logdet"][1:] < r["logdet"][:-1]).all()) and float(r["logdet"][-1]) < -150
    assert bool((r["map_norm"] < 3.0).all())
    assert float(r["map_norm"][-1]) == pytest.approx(1.0, abs=0.01)  # -> the mean predictor (1/n) 1^T
    assert float(r["test_mse"][-1]) == pytest.approx(float(r["const_mse"]), rel=0.05)
    rt = xd.deep_limit_sweep(x[:n], y[:n], x[n:], y[n:], [3000], kernel="ntk")
    limit_logdet = (n - 1) * math.log(0.75) + math.log(0.75 + n / 4)  # det(3/4 I + 1/4 11^T)
    assert float(rt["logdet"][0]) == pytest.approx(limit_logdet, abs=0.05)
    assert float(rt["map_sum"][0]) == pytest.approx(n / (n + 3), abs=0.01)



def test_plain_narrow_deep_ntk_fluctuation_rises_with_depth():
    """Plain width-10 ReLU MLP: spread at depth 16 above 2 x depth 1 (measured 0.6-0.7 -> 2.9-5.6)."""
    r = xd.plain_fluctuation_vs_depth([1, 16], width=10, n_seeds=40, seed=0)
    assert float(r["rel"][1]) > 2 * float(r["rel"][0]), r


def test_relative_fluctuation_of_gaussian_samples_matches_its_definition_and_standard_error():
    """F = ||sd|| / ||mean|| for i.i.d. samples with known mean and sd; its bootstrap s.e. is near the delta method's."""
    g = torch.Generator().manual_seed(3)
    mean = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    s = mean + 0.3 * torch.randn(400, 2, 2, generator=g, dtype=torch.float64)  # (S, 2, 2), sd 0.3 everywhere
    r = xd.relative_fluctuation(s)
    truth = 0.3 * 2 / float(mean.norm())
    assert r["rel"] == pytest.approx(truth, abs=4 * r["rel_se"])
    # the s.e. of a sample sd is sd / sqrt(2 S) for Gaussians; ||sd||_F pools 4 independent entries, so F's
    # relative s.e. is about 1 / sqrt(2 S 4) (the mean's own noise adds well under 1 %)
    assert r["rel_se"] == pytest.approx(truth / math.sqrt(2 * 400 * 4), rel=0.3)
    assert r["mean_diag"] == pytest.approx(1.5, abs=0.05)
    assert r["offdiag_corr"] == pytest.approx(0.5 / math.sqrt(2.0), abs=0.03)
    with pytest.raises(ValueError, match="samples"):
        xd.relative_fluctuation(s[:1])


def test_plain_network_is_the_serial_network_with_a_bias_free_readout():
    arch = xd.plain_network(16, 3, nk.Erf(), W_std=1.3, b_std=0.2, readout_std=0.7)
    ref = nk.serial(*[nk.Dense(16, 1.3, 0.2), nk.Erf()] * 3, nk.Dense(1, 0.7, None))
    x = sphere_points(4, 3, seed=2)
    torch.testing.assert_close(arch.kernel(x).ntk, ref.kernel(x).ntk, rtol=1e-14, atol=0)
    with pytest.raises(ValueError, match="depth"):
        xd.plain_network(16, 0)
    with pytest.raises(ValueError, match="kernel"):
        xd.deep_limit_sweep(torch.ones(2, 2), torch.ones(2), torch.ones(1, 2), torch.ones(1), [1], kernel="gp")


def test_regression_vs_depth_matches_kernel_regression_written_out_and_accuracy_by_hand():
    """Both kernels from one pass equal a direct normalized-kernel regression; accuracy is argmax vs labels."""
    from ntklib.deep_limit import normalized_kernels

    g = torch.Generator().manual_seed(2)
    x = sphere_points(14, 4, radius=2.0, seed=6)
    labels = torch.randint(0, 3, (14,), generator=g)
    y = torch.nn.functional.one_hot(labels, 3).double() - 1 / 3  # (14, 3)
    r = xd.regression_vs_depth(x[:9], y[:9], x[9:], y[9:], [2, 7], labels_test=labels[9:])
    ks = normalized_kernels(x, None, [2, 7])
    for kernel in ("nngp", "ntk"):
        for i in range(2):
            K = ks[kernel][i]
            pred = K[9:, :9] @ torch.linalg.solve(K[:9, :9], y[:9])  # (5, 3)
            assert float(r[kernel]["test_mse"][i]) == pytest.approx(float(((pred - y[9:]) ** 2).mean()), rel=1e-9)
            assert float(r[kernel]["accuracy"][i]) == pytest.approx(float((pred.argmax(1) == labels[9:]).double().mean()))
    single = xd.deep_limit_sweep(x[:9], y[:9], x[9:], y[9:], [2, 7], kernel="ntk")
    torch.testing.assert_close(single["test_mse"], r["ntk"]["test_mse"], rtol=1e-12, atol=0)


def test_ntk_spread_is_a_function_of_depth_over_width():
    """Same depth/width ratio at two widths: spreads agree within 3 s.e.; a larger ratio spreads more (Hanin & Nica)."""
    r = xd.ntk_spread_vs_width_and_depth([16, 32], [1, 2, 8], n_seeds=40, seed=1)
    assert r["rel"].shape == (2, 3) and float(r["ratio"][1, 1]) == pytest.approx(1 / 16)
    same = (float(r["rel"][0, 0]), float(r["rel_se"][0, 0]), float(r["rel"][1, 1]), float(r["rel_se"][1, 1]))
    assert abs(same[0] - same[2]) < 3 * math.hypot(same[1], same[3]), same  # ratio 1/16 at widths 16 and 32
    assert float(r["rel"][0, 2]) > 2 * float(r["rel"][0, 0])  # ratio 1/2 vs 1/16
