"""ntklib.testing.assert_within_standard_errors: passes inside the Monte Carlo error bars, fails outside with a useful message."""
import numpy as np
import pytest
import torch

from ntklib.testing import assert_within_standard_errors


def test_passes_for_exact_value_inside_error_bars_of_simulated_means():
    rng = np.random.default_rng(0)
    samples = 2.0 + rng.standard_normal((400, 5))  # exact mean 2
    mean, sem = samples.mean(0), samples.std(0, ddof=1) / np.sqrt(400)
    assert_within_standard_errors(torch.full((5,), 2.0), mean, sem, "the mean")


def test_fails_outside_error_bars_and_names_the_constant_factor():
    with pytest.raises(AssertionError, match=r"about 2 times the simulation") as err:
        assert_within_standard_errors(np.full(4, 2.0), np.ones(4), np.full(4, 0.01), "the NTK")
    assert "100 standard errors away" in str(err.value)


def test_rtol_allows_a_known_relative_bias_and_shapes_must_agree():
    assert_within_standard_errors(np.full(3, 1.01), np.ones(3), np.full(3, 1e-4), rtol=0.02)
    with pytest.raises(AssertionError, match="shape"):
        assert_within_standard_errors(np.ones((3, 1)), np.ones(3), np.ones(3))
    with pytest.raises(AssertionError, match="NaN or infinite"):
        assert_within_standard_errors(np.array([np.nan]), np.ones(1), np.ones(1))
