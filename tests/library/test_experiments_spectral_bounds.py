"""ntklib.experiments.spectral_bounds: learning curves on the sphere and training time against the spectrum.

Truths used: Monte Carlo kernel regression (standard errors over seeds) against the spectral
prediction; literal closed forms of the target's construction; the exact scaling of the NTK of a
bias-free network with its inputs; measured training of real networks against the kernel-regime
prediction (tolerances stated next to each assert, from the spread measured over seeds).
"""
import math

import pytest
import torch

import ntklib as nk
from ntklib.data import sphere_points
from ntklib.experiments import spectral_bounds as sb

DT = torch.float64


def _relu(b_std=0.1, width=1):
    return nk.serial(nk.Dense(width, math.sqrt(2.0), b_std), nk.Relu(), nk.Dense(1, math.sqrt(2.0), b_std))


def test_sphere_target_has_the_power_it_claims_monte_carlo():
    t = sb.sphere_target([1, 3, 4], [1.0, 0.5, -2.0], 5, seed=2)
    assert t.power.tolist() == [0.0, 1.0, 0.0, 0.25, 4.0]
    x = sphere_points(50000, 5, radius=3.0, seed=4, device="cpu")
    f = t(x)  # (m,)
    se = float((f ** 2).std()) / math.sqrt(x.shape[0])
    assert abs(float((f ** 2).mean()) - 5.25) < 5 * se
    torch.testing.assert_close(f, t.components(x) @ torch.tensor([1.0, 0.5, -2.0], dtype=DT), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="distinct"):
        sb.sphere_target([1, 1], [1.0, 1.0], 3)


def test_sphere_learning_curve_measured_kernel_regression_agrees_with_spectral_prediction():
    """S^4, ReLU NTK with bias: measured test MSE within 3 s.e. + 15 % of the prediction (measured: 2-12 % above)."""
    r = sb.sphere_learning_curve(_relu(), 5, [8, 32, 128], [1, 2, 4], [1.0, 0.7, 0.5], noise_vars=(0.0, 0.3),
                                 n_seeds=6, n_test=1000, seed=1)
    assert r["test_mse"].shape == (2, 3) and r["test_mse_seeds"].shape == (2, 6, 3)
    gap = (r["test_mse"] - r["theory_mse"]).abs()
    assert bool((gap <= 3 * r["test_mse_se"] + 0.15 * r["theory_mse"]).all()), (r["test_mse"], r["theory_mse"])
    assert bool((r["test_mse"][:, 1:] < r["test_mse"][:, :-1]).all())  # more samples, smaller error
    assert bool((r["test_mse"][1] > r["test_mse"][0]).all())  # label noise costs
    # learnability of the lowest degree: measured vs predicted (it is near 1 at n = 128)
    lm, lt = r["learnability_measured"], r["learnability_theory"]
    assert bool(((lm - lt).abs() <= 4 * r["learnability_measured_se"] + 0.1).all()), (lm, lt)
    assert float(lt[-1, 0]) > 0.95 and float(lt[0, -1]) < 0.1


def test_fit_steps_of_a_wide_two_layer_network_agree_with_the_kernel_regime():
    """Width 2048, a smooth target on S^2: measured steps to 5 % within 25 % of the prediction with Theta_0."""
    x = sphere_points(12, 3, radius=math.sqrt(3), seed=3, device="cpu")
    y = x[:, 0] / math.sqrt(3) + 0.5 * (x[:, 1] ** 2 / 3 - 1 / 3)
    r = sb.fit_steps(_relu(width=2048), x, y, tolerance=0.05, max_steps=200, seed=0)
    assert math.isfinite(r["measured_steps"]) and r["ntk_change"] < 0.05
    assert abs(r["measured_steps"] - r["predicted_steps_own"]) <= 0.25 * r["predicted_steps_own"] + 2, r
    assert abs(r["predicted_steps_own"] - r["predicted_steps"]) <= 0.25 * r["predicted_steps"] + 2, r
    # above the stability limit of its own kernel the linearized prediction is "never"
    r2 = sb.fit_steps(_relu(width=256), x, y, tolerance=0.05, max_steps=5, learning_rate_factor=2.2, seed=0)
    assert r2["predicted_steps_own"] == math.inf


def test_input_scale_multiplies_the_bias_free_ntk_by_d_and_leaves_the_condition_number():
    """lambda_min x d with raw inputs (x.x' input kernel), identical condition numbers and predicted steps."""
    kw = dict(n_points=8, K=2, hbar=1, width=16, max_steps=3)
    a = sb.training_steps_vs_dim([3, 30], input_scale="normalized", **kw)
    b = sb.training_steps_vs_dim([3, 30], input_scale="raw", **kw)
    d = a["d"].double()
    torch.testing.assert_close(b["lambda_min"], d * a["lambda_min"], rtol=1e-10, atol=0)
    torch.testing.assert_close(b["lambda_max"], d * a["lambda_max"], rtol=1e-10, atol=0)
    torch.testing.assert_close(b["condition_number"], a["condition_number"], rtol=1e-9, atol=0)
    torch.testing.assert_close(b["predicted_steps"], a["predicted_steps"], rtol=0, atol=0)
    # normalized inputs: lambda_min rises with d toward its plateau, never above it (Gram -> a I + b 1 1^T)
    assert float(a["lambda_min"][0]) < float(a["lambda_min"][1]) < float(a["lambda_min_limit"]) * 1.05


def test_sigma_max_grows_linearly_in_K_while_the_condition_number_stays_flat():
    """Literal shortcut network, N = 12 points in R^10: sigma_max(K = 8) / sigma_max(K = 1) in (4, 9); condition
    numbers and the predicted steps at the largest stable rate within a factor 1.5 (measured 1.27: 15, 16, 19)."""
    r = sb.training_steps_vs_K([1, 2, 8], n_points=12, width=16, max_steps=3)
    ratio = float(r["lambda_max"][-1] / r["lambda_max"][0])
    assert 4 < ratio < 9, ratio
    cond = r["condition_number"]
    assert float(cond.max() / cond.min()) < 1.5, cond
    steps = r["predicted_steps"]
    assert float(steps.max() / steps.min()) < 1.5, steps
    torch.testing.assert_close(r["claimed_bound"], torch.tensor([0.5, 5 / 3, 8 * 17 / 6], dtype=DT))


def test_fit_steps_does_not_train_a_network_predicted_to_need_far_more_than_max_steps():
    x = torch.randn(10, 2, generator=torch.Generator().manual_seed(0), dtype=DT)  # d = 2: badly conditioned
    y = torch.sign(torch.randn(10, generator=torch.Generator().manual_seed(1), dtype=DT))
    r = sb.fit_steps(_relu(None, width=64), x, y, tolerance=1e-3, max_steps=5, seed=0)
    assert r["predicted_steps_own"] > 15 and math.isnan(r["measured_steps"]) and math.isnan(r["ntk_change"])
