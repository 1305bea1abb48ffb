"""Smoke tests for ntklib.plotting: every shared plot draws, returns what it computed, and rejects bad input."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from ntklib import plotting  # noqa: E402


def test_loglog_slope_recovers_exponent_of_exact_power_law():
    x = np.array([16, 64, 256, 1024.0])
    s, c = plotting.loglog_slope(x, 3.0 * x ** -0.5)
    assert abs(s + 0.5) < 1e-12 and abs(c - np.log(3.0)) < 1e-12


def test_loglog_slope_accepts_tensors_and_rejects_nonpositive_values():
    x = torch.tensor([1.0, 2.0, 4.0])
    assert abs(plotting.loglog_slope(x, x ** 2)[0] - 2.0) < 1e-12
    with pytest.raises(ValueError, match="> 0"):
        plotting.loglog_slope([1, 2], [1, -1])
    with pytest.raises(ValueError, match="same length"):
        plotting.loglog_slope([1, 2, 3], [1, 2])


def test_plot_loglog_slope_draws_points_fit_and_reference_and_returns_slope():
    fig, ax = plt.subplots()
    x = np.array([10.0, 100.0, 1000.0])
    s = plotting.plot_loglog_slope(ax, x, x ** -0.5, yerr=0.01 * x ** -0.5, label="error", reference_slope=-0.5)
    assert abs(s + 0.5) < 1e-12
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "error: slope -0.50" in labels and "slope -0.5" in labels
    plt.close(fig)


def test_plot_theory_vs_simulation_draws_line_and_error_bars():
    fig, ax = plt.subplots()
    t = np.linspace(0, np.pi, 20)
    line = plotting.plot_theory_vs_simulation(ax, t, np.cos(t), np.cos(t[::4]), 0.1 * np.ones(5), x_sim=t[::4],
                                              label="NTK", xlabel="angle")
    np.testing.assert_allclose(line.get_ydata(), np.cos(t))
    assert ax.get_xlabel() == "angle"
    assert len(ax.containers) == 1  # the error bars
    plt.close(fig)


def test_interactive_figure_draws_defaults_then_redraws_when_a_control_moves():
    ipywidgets = pytest.importorskip("ipywidgets")
    calls = []

    def draw(width, act):
        calls.append((width, act))
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, width])
        return fig

    slider = ipywidgets.IntSlider(value=4, min=1, max=8)
    menu = ipywidgets.Dropdown(options=["relu", "erf"], value="relu")
    box = plotting.interactive_figure(draw, {"width": slider, "act": menu})
    slider.value = 7
    menu.value = "erf"
    assert calls == [(4, "relu"), (7, "relu"), (7, "erf")]
    assert plt.get_fignums() == []  # every figure was closed after being shown
    assert list(box.children) == [slider, menu]


def test_interactive_figure_rejects_draw_that_returns_no_figure():
    ipywidgets = pytest.importorskip("ipywidgets")
    with pytest.raises(TypeError, match="return a matplotlib Figure"):
        plotting.interactive_figure(lambda w: None, {"w": ipywidgets.IntSlider()})
    with pytest.raises(ValueError, match="non-empty dict"):
        plotting.interactive_figure(lambda: None, {})


def test_plot_histogram_vs_gaussian_measures_match_scipy_and_detect_heavy_tails():
    from scipy import stats

    rng = np.random.default_rng(0)
    gauss = rng.standard_normal(20000)
    fig, ax = plt.subplots()
    out = plotting.plot_histogram_vs_gaussian(ax, torch.as_tensor(gauss), 1.0)
    assert out["ks_distance"] == pytest.approx(stats.kstest(gauss, "norm").statistic, abs=1e-12)
    assert abs(out["excess_kurtosis"]) < 0.15  # Gaussian: 0 +- 4 * sqrt(24 / 20000)
    assert len(ax.patches) == 60 and len(ax.lines) == 1  # the bars and the density
    # Student-t with 5 degrees of freedom, scaled to variance 1: excess kurtosis 6, visible KS distance vs N(0, 4)
    heavy = rng.standard_t(5, 20000) / np.sqrt(5 / 3)
    out2 = plotting.plot_histogram_vs_gaussian(ax, heavy, 4.0, annotate=False)
    assert out2["excess_kurtosis"] > 2 and out2["ks_distance"] > 0.1
    plt.close(fig)


def test_plot_histogram_vs_gaussian_rejects_bad_variance_and_samples():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="variance"):
        plotting.plot_histogram_vs_gaussian(ax, np.ones(10), 0.0)
    with pytest.raises(ValueError, match="finite"):
        plotting.plot_histogram_vs_gaussian(ax, np.array([1.0, np.nan, 2.0]), 1.0)
    plt.close(fig)


def test_plot_mean_and_band_draws_the_band_between_mean_minus_and_plus_n_sd():
    fig, ax = plt.subplots()
    x = np.linspace(0, 1, 11)
    line = plotting.plot_mean_and_band(ax, x, np.sin(x), 0.1 * np.ones(11), n_sd=2, label="posterior")
    np.testing.assert_allclose(line.get_ydata(), np.sin(x))
    (band,) = ax.collections
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.min() == pytest.approx(np.sin(x).min() - 0.2) and ys.max() == pytest.approx(np.sin(x).max() + 0.2)
    with pytest.raises(ValueError, match="same length"):
        plotting.plot_mean_and_band(ax, x, np.sin(x), np.ones(3))
    with pytest.raises(ValueError, match=">= 0"):
        plotting.plot_mean_and_band(ax, x, np.sin(x), -np.ones(11))
    plt.close(fig)
