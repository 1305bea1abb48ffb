r"""Plots shared by the course notebooks (matplotlib; ipywidgets for the interactive ones).

Notebooks stay thin: a figure that more than one notebook draws lives here, with its styling.
Every function draws on an ``ax`` it is given (or makes one), returns what it computed, and
never calls ``plt.show()`` -- the notebook decides when a figure is shown.

* :func:`loglog_slope`             -- least-squares slope of :math:`\log y` against :math:`\log x`.
* :func:`plot_loglog_slope`        -- points on log--log axes with their fitted power law (and a
  reference slope, e.g. :math:`-1/2` for Monte Carlo errors); returns the measured slope.
* :func:`plot_theory_vs_simulation` -- a theory curve and simulated means with error bars.
* :func:`interactive_figure`       -- controls (ipywidgets) above a figure that is redrawn in
  place when a control moves; static renders (nbconvert, GitHub) show the default figure.
* :func:`plot_histogram_vs_gaussian` -- a histogram against a zero-mean Gaussian density, with two
  normality measures (Kolmogorov--Smirnov distance, excess kurtosis).
* :func:`plot_mean_and_band`       -- a mean curve with a shaded band of :math:`\pm n` standard deviations.

Smoke tests: ``tests/library/test_plotting.py``.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["loglog_slope", "plot_loglog_slope", "plot_theory_vs_simulation", "interactive_figure",
           "plot_histogram_vs_gaussian", "plot_mean_and_band"]


def _np(a) -> np.ndarray:
    """Tensor (any device) / list / array -> float64 numpy array."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def loglog_slope(x, y) -> tuple[float, float]:
    r"""Fit :math:`\log y = s \log x + c` by least squares; return ``(s, c)`` (natural logs).

    A power law :math:`y = e^c x^s` gives exactly ``s``. Used to measure convergence rates,
    e.g. the relative error of the empirical NTK against width (:math:`s \approx -1/2`,
    notebook 02) or how far weights move during training (notebook 03).

    Args:
      x, y: 1-D arrays of the same length (>= 2) of positive, finite numbers.
    """
    x, y = _np(x).reshape(-1), _np(y).reshape(-1)
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"x and y must be 1-D of the same length >= 2; got shapes {x.shape} and {y.shape}.")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(x > 0) and np.all(y > 0)):
        raise ValueError("x and y must be finite and > 0 to be fitted on log-log axes.")
    s, c = np.polyfit(np.log(x), np.log(y), 1)
    return float(s), float(c)


def plot_loglog_slope(ax, x, y, *, yerr=None, label: str | None = None, color=None,
                      reference_slope: float | None = None, reference_label: str | None = None,
                      xlabel: str | None = None, ylabel: str | None = None) -> float:
    r"""Draw ``y`` against ``x`` on log--log axes with the fitted power law; return the slope.

    The fit is :func:`loglog_slope`; its line is dashed and the legend entry reads
    ``"{label}: slope {s:.2f}"``. With ``reference_slope`` a dotted grey line of that slope
    through the first fitted point is added for comparison (e.g. ``-0.5`` for errors that
    shrink like :math:`1/\sqrt{n}`). ``yerr`` (same length as ``y``) draws error bars.
    """
    xs, ys = _np(x).reshape(-1), _np(y).reshape(-1)
    s, c = loglog_slope(xs, ys)
    name = label or "data"
    if yerr is None:
        line = ax.plot(xs, ys, "o", color=color)[0]
    else:
        line = ax.errorbar(xs, ys, yerr=_np(yerr).reshape(-1), fmt="o", color=color, capsize=3)[0]
    col = line.get_color()
    grid = np.geomspace(xs.min(), xs.max(), 50)
    ax.plot(grid, np.exp(c) * grid ** s, "--", color=col, label=f"{name}: slope {s:.2f}")
    if reference_slope is not None:
        y0 = np.exp(c) * xs.min() ** s
        ax.plot(grid, y0 * (grid / xs.min()) ** reference_slope, ":", color="0.4",
                label=reference_label or f"slope {reference_slope:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.legend(fontsize="small")
    return s


def plot_theory_vs_simulation(ax, x, theory, sim_mean, sim_err=None, *, x_sim=None, label: str | None = None,
                              color=None, n_sigma: float = 2.0, xlabel: str | None = None,
                              ylabel: str | None = None):
    r"""A theory curve (solid line) and simulated means (markers, error bars of ``n_sigma`` x ``sim_err``).

    Args:
      ax: matplotlib axes.
      x: abscissae of the theory curve; ``x_sim`` those of the simulation (default ``x``).
      theory: the analytic values (e.g. ``arch.kernel(...).ntk`` along a curve of inputs).
      sim_mean, sim_err: Monte Carlo means and their standard errors (e.g. from
        :func:`ntklib.monte_carlo_kernel`); ``sim_err=None`` draws markers only.
      label: legend text; the theory gets ``"{label} (theory)"``, the simulation ``"{label} (simulation)"``.
    Returns the theory line (a matplotlib ``Line2D``).
    """
    x_t = _np(x).reshape(-1)
    x_s = x_t if x_sim is None else _np(x_sim).reshape(-1)
    line = ax.plot(x_t, _np(theory).reshape(-1), "-", color=color,
                   label=None if label is None else f"{label} (theory)")[0]
    col = line.get_color()
    m = _np(sim_mean).reshape(-1)
    if sim_err is None:
        ax.plot(x_s, m, "o", ms=4, color=col, label=None if label is None else f"{label} (simulation)")
    else:
        ax.errorbar(x_s, m, yerr=n_sigma * _np(sim_err).reshape(-1), fmt="o", ms=4, capsize=2, color=col,
                    label=None if label is None else f"{label} (simulation, ±{n_sigma:g} s.e.)")
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    return line


def interactive_figure(draw: Callable, controls: dict, *, layout: str = "horizontal"):
    """Show ``controls`` (ipywidgets) and the figure ``draw(**values)``; redraw it in place when a control moves.

    ``draw`` takes the controls' current values as keyword arguments (the keys of ``controls``)
    and returns a matplotlib ``Figure``. The figure is shown through an IPython display handle,
    so the executed notebook keeps the default figure as an ordinary image (static renders on
    GitHub/nbviewer and nbval see it) and, in a live kernel, moving a control replaces that
    image with the redrawn one. Each figure is closed after it is shown (no duplicates, no leak).

    Returns the ``ipywidgets.Box`` of controls; its ``.redraw()`` attribute redraws by hand.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    if not callable(draw):
        raise TypeError(f"draw must be a function returning a matplotlib Figure; got {draw!r}.")
    if not isinstance(controls, dict) or not controls:
        raise ValueError("controls must be a non-empty dict name -> ipywidgets control.")
    for name, w in controls.items():
        if not hasattr(w, "observe") or not hasattr(w, "value"):
            raise TypeError(f"controls[{name!r}] must be an ipywidgets control with a .value; got {w!r}.")

    def current_figure():
        fig = draw(**{name: w.value for name, w in controls.items()})
        if fig is None or not hasattr(fig, "savefig"):
            raise TypeError("draw(...) must return a matplotlib Figure (did it forget `return fig`?).")
        return fig

    box_cls = widgets.HBox if layout == "horizontal" else widgets.VBox
    box = box_cls(list(controls.values()))
    display(box)
    fig = current_figure()
    handle = display(fig, display_id=True)
    plt.close(fig)

    def redraw(_change=None):
        new = current_figure()
        if handle is not None:
            handle.update(new)
        else:  # outside IPython: display() returned no handle
            display(new)
        plt.close(new)

    for w in controls.values():
        w.observe(redraw, names="value")
    box.redraw = redraw
    return box


def plot_histogram_vs_gaussian(ax, samples, variance: float, *, bins: int = 60, color=None,
                               label: str | None = None, annotate: bool = True) -> dict:
    r"""Density histogram of ``samples`` with the :math:`\mathcal N(0, \text{variance})` density on top.

    Used to watch the output of random networks at one input become Gaussian as the width grows
    (notebook 01): ``variance`` is the NNGP prediction :math:`\Sigma^{(L+1)}(x, x)`.

    Returns the two normality measures it writes on the axes (``annotate=True``):

    * ``"ks_distance"``: the Kolmogorov--Smirnov distance
      :math:`\sup_t |\hat F(t) - \Phi(t/\sqrt{\text{variance}})|` between the empirical CDF and the
      Gaussian's (``scipy.stats.kstest``); it sees both a wrong shape and a wrong variance;
    * ``"excess_kurtosis"``: :math:`\hat{\mathbb E}[f^4]/\hat{\mathbb E}[f^2]^2 - 3` with centred
      moments (``scipy.stats.kurtosis``, Fisher's definition); 0 for a Gaussian, > 0 for heavier tails.

    Args:
      ax: matplotlib axes.
      samples: 1-D array or tensor of draws.
      variance: the variance (> 0) of the zero-mean Gaussian to overlay.
    """
    from scipy import stats

    s = _np(samples).reshape(-1)
    if s.size < 2 or not np.all(np.isfinite(s)):
        raise ValueError(f"samples must hold at least 2 finite numbers; got {s.size} values "
                         f"({int((~np.isfinite(s)).sum())} not finite).")
    variance = float(variance)
    if not (np.isfinite(variance) and variance > 0):
        raise ValueError(f"variance must be a finite number > 0; got {variance!r}.")
    sd = np.sqrt(variance)
    lim = max(4.5 * sd, float(np.quantile(np.abs(s), 0.995)))
    ax.hist(s, bins=np.linspace(-lim, lim, bins + 1), density=True, alpha=0.55, color=color,
            label=label or f"{s.size} samples")
    grid = np.linspace(-lim, lim, 400)
    ax.plot(grid, stats.norm.pdf(grid, scale=sd), "k-", lw=1.2, label=rf"$\mathcal{{N}}(0, {variance:.3g})$")
    out = {"ks_distance": float(stats.kstest(s, "norm", args=(0.0, sd)).statistic),
           "excess_kurtosis": float(stats.kurtosis(s, fisher=True))}
    if annotate:
        ax.text(0.02, 0.97, f"KS dist. {out['ks_distance']:.3f}\nexcess kurt. {out['excess_kurtosis']:.2f}",
                transform=ax.transAxes, va="top", fontsize="small")
    ax.set_xlim(-lim, lim)
    return out


def plot_mean_and_band(ax, x, mean, sd, *, n_sd: float = 2.0, color=None, label: str | None = None,
                       band_alpha: float = 0.2, linestyle: str = "-"):
    r"""A mean curve with a shaded band :math:`\text{mean} \pm n_{sd}\,\text{sd}` (e.g. a GP posterior or prior).

    Args:
      ax: matplotlib axes.
      x: 1-D abscissae (sorted); mean, sd: 1-D arrays of the same length (``sd >= 0``; e.g. the
        square root of the diagonal of a posterior covariance).
      n_sd: half-width of the band in standard deviations (2 gives about 95% for a Gaussian).
      label: legend text for the mean; the band gets ``"± {n_sd} sd"``.
    Returns the mean line (a matplotlib ``Line2D``).
    """
    xs, m, s = _np(x).reshape(-1), _np(mean).reshape(-1), _np(sd).reshape(-1)
    if not (xs.shape == m.shape == s.shape):
        raise ValueError(f"x, mean and sd must be 1-D of the same length; got {xs.shape}, {m.shape}, {s.shape}.")
    if np.any(s < 0) or not np.all(np.isfinite(s)):
        raise ValueError("sd must be finite and >= 0 (take the square root of the clipped variances).")
    line = ax.plot(xs, m, linestyle, color=color, label=label)[0]
    ax.fill_between(xs, m - n_sd * s, m + n_sd * s, color=line.get_color(), alpha=band_alpha, lw=0,
                    label=None if label is None else f"± {n_sd:g} sd")
    return line
