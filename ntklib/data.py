r"""Small data sets for the course: points on the circle and sphere, sine regression, teacher networks, digits.

Everything is float64 by default, seeded (``torch.Generator`` on the CPU, then moved to ``device``:
the same seed gives the same data on every device) and returned as tensors of shape (n, d) for
inputs and (n,) or (n, k) for targets. Note that ntklib's Dense layers see :math:`x\cdot x'/d`:
points on the unit sphere in R^d have input variance 1/d, and points of norm :math:`\sqrt d` have 1.

The real data set is scikit-learn's handwritten digits (``sklearn.datasets.load_digits``: 1797
8x8 images, 10 classes), which ships inside scikit-learn, so nothing is downloaded.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .validation import check_choice, check_nonneg, check_positive_int, default_device

__all__ = ["Dataset", "circle_points", "sphere_points", "sine_regression", "teacher_dataset", "digits"]


@dataclass(frozen=True)
class Dataset:
    """Train and test inputs (n, d) and targets; integer class labels when the data are labelled."""
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    labels_train: torch.Tensor | None = None
    labels_test: torch.Tensor | None = None
    name: str = ""

    def __iter__(self):  # x_train, y_train, x_test, y_test = dataset
        return iter((self.x_train, self.y_train, self.x_test, self.y_test))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _device(device):
    return default_device() if device is None else torch.device(device)


def circle_points(n: int, *, equispaced: bool = True, radius: float = 1.0, seed: int = 0,
                  dtype: torch.dtype = torch.float64, device=None):
    r"""``n`` points :math:`r(\cos\phi, \sin\phi)` on the circle: returns ``(x (n, 2), phi (n,))``.

    Equispaced :math:`\phi_j = 2\pi j/n` (then every rotation-invariant kernel matrix is circulant and
    its eigenvectors are Fourier modes, see :mod:`ntklib.spectral`) or uniform at random.
    """
    n = check_positive_int("n", n)
    r = check_nonneg("radius", radius)
    if equispaced:
        phi = 2 * math.pi * torch.arange(n, dtype=dtype) / n
    else:
        phi = 2 * math.pi * torch.rand(n, generator=_gen(seed), dtype=dtype)
    x = r * torch.stack([torch.cos(phi), torch.sin(phi)], 1)  # (n, 2)
    dev = _device(device)
    return x.to(dev), phi.to(dev)


def sphere_points(n: int, dim: int, *, radius: float = 1.0, seed: int = 0, dtype: torch.dtype = torch.float64,
                  device=None) -> torch.Tensor:
    """``n`` points uniform on the sphere of ``radius`` in R^dim (normalized Gaussians), (n, dim)."""
    n, dim = check_positive_int("n", n), check_positive_int("dim", dim)
    r = check_nonneg("radius", radius)
    g = torch.randn(n, dim, generator=_gen(seed), dtype=dtype)
    return (r * g / g.norm(dim=1, keepdim=True)).to(_device(device))


def sine_regression(n_train: int = 20, n_test: int = 200, *, frequency: float = 1.0, noise: float = 0.0,
                    interval: tuple[float, float] = (-math.pi, math.pi), embed: str = "line", seed: int = 0,
                    dtype: torch.dtype = torch.float64, device=None) -> Dataset:
    r"""Targets :math:`y = \sin(\omega s) + \sigma\varepsilon` at :math:`s` in ``interval``.

    Training :math:`s` are uniform at random (sorted), test :math:`s` an even grid over the interval
    (for plotting); the test targets are noiseless. ``embed="line"`` gives inputs (n, 1) :math:`= s`
    (use a bias, ``b_std > 0``: without one a ReLU network on 1-D inputs is piecewise linear
    through the origin); ``embed="circle"`` gives (n, 2) :math:`= (\cos s, \sin s)`.
    """
    n_train, n_test = check_positive_int("n_train", n_train), check_positive_int("n_test", n_test)
    sigma = check_nonneg("noise", noise)
    check_choice("embed", embed, ("line", "circle"))
    lo, hi = float(interval[0]), float(interval[1])
    if not hi > lo:
        raise ValueError(f"interval must be (low, high) with high > low; got {interval!r}.")
    gen = _gen(seed)
    s_tr = torch.sort(lo + (hi - lo) * torch.rand(n_train, generator=gen, dtype=dtype)).values  # (n_train,)
    s_te = torch.linspace(lo, hi, n_test, dtype=dtype)  # (n_test,)
    y_tr = torch.sin(frequency * s_tr) + sigma * torch.randn(n_train, generator=gen, dtype=dtype)
    y_te = torch.sin(frequency * s_te)

    def emb(s):
        return s[:, None] if embed == "line" else torch.stack([torch.cos(s), torch.sin(s)], 1)

    dev = _device(device)
    return Dataset(emb(s_tr).to(dev), y_tr.to(dev), emb(s_te).to(dev), y_te.to(dev), name="sine")


def teacher_dataset(teacher, n_train: int, n_test: int, dim: int, *, inputs: str = "sphere", noise: float = 0.0,
                    seed: int = 0, teacher_seed: int = 1234, dtype: torch.dtype = torch.float64,
                    device=None) -> Dataset:
    r"""Targets from a teacher network: :math:`y = f_{teacher}(x) + \sigma\varepsilon`.

    ``teacher`` is an ntklib architecture (a random network ``teacher.module(dim, seed=teacher_seed)``
    is drawn, e.g. a wide one, whose outputs are a sample of its NNGP) or any ``torch.nn.Module``.
    ``inputs``: ``"sphere"`` (uniform on the sphere of radius :math:`\sqrt{dim}`, so that
    :math:`x\cdot x/d = 1`) or ``"gaussian"`` (standard normal). Targets have the teacher's output
    shape; test targets are noiseless.
    """
    from torch import nn

    from .layers import Layer

    n_train, n_test = check_positive_int("n_train", n_train), check_positive_int("n_test", n_test)
    dim = check_positive_int("dim", dim)
    sigma = check_nonneg("noise", noise)
    check_choice("inputs", inputs, ("sphere", "gaussian"))
    dev = _device(device)
    gen = _gen(seed)
    x = torch.randn(n_train + n_test, dim, generator=gen, dtype=dtype)
    if inputs == "sphere":
        x = math.sqrt(dim) * x / x.norm(dim=1, keepdim=True)
    if isinstance(teacher, Layer):
        net = teacher.module(dim, seed=teacher_seed, dtype=dtype, device=dev)
    elif isinstance(teacher, nn.Module):
        net = teacher
    else:
        raise TypeError(f"teacher must be an ntklib architecture or a torch.nn.Module; got {type(teacher).__name__}.")
    p = next(net.parameters(), None)
    x = x.to(device=dev if p is None else p.device, dtype=dtype if p is None else p.dtype)
    with torch.no_grad():
        y = net(x)
    y = y.reshape(y.shape[0], -1)
    if y.shape[1] == 1:
        y = y[:, 0]
    y_tr = y[:n_train] + sigma * torch.randn(y[:n_train].shape, generator=gen, dtype=dtype).to(y.device, y.dtype)
    return Dataset(x[:n_train], y_tr, x[n_train:], y[n_train:], name="teacher")


def digits(*, classes: Sequence[int] | None = None, target: str = "onehot", n_train: int | None = None,
           n_test: int | None = None, binary_values: tuple[float, float] = (-1.0, 1.0), center_onehot: bool = False,
           standardize: bool = True, seed: int = 0, dtype: torch.dtype = torch.float64, device=None) -> Dataset:
    r"""scikit-learn's 8x8 handwritten digits (bundled with scikit-learn; no download) as tensors.

    Args:
      classes: the digits to keep (default all ten); ``target="binary"`` needs exactly two.
      target: ``"onehot"`` (n, C) with 1 at the class (minus 1/C everywhere with ``center_onehot``),
        ``"binary"`` (n,) with ``binary_values[0]`` for ``classes[0]`` and ``binary_values[1]`` for
        ``classes[1]`` (e.g. (0, 1) for the logistic loss), or ``"label"`` (n,) float labels.
      n_train, n_test: sizes of the split (default: 75% / 25% of the kept images); the split is
        stratified and fixed by ``seed`` (``sklearn.model_selection.train_test_split``).
      standardize: subtract the training mean and divide by the training standard deviation of
        each pixel (pixels constant on the training set are only centred), so that
        :math:`x\cdot x/64 \approx 1`; the test set uses the training statistics.

    Returns:
      :class:`Dataset` with float ``x`` (n, 64), targets as asked and integer ``labels_train``,
      ``labels_test`` (the original digit).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    check_choice("target", target, ("onehot", "binary", "label"))
    bunch = load_digits()
    x_all = bunch.data.astype(np.float64)
    lab_all = bunch.target.astype(np.int64)
    if classes is None:
        classes = list(range(10))
    classes = [int(c) for c in classes]
    if not classes or any(c not in range(10) for c in classes) or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct digits in 0..9; got {classes!r}.")
    if target == "binary" and len(classes) != 2:
        raise ValueError(f"target='binary' needs exactly two classes, e.g. classes=(3, 8); got {classes!r}.")
    keep = np.isin(lab_all, classes)
    x_all, lab_all = x_all[keep], lab_all[keep]
    n_all = x_all.shape[0]
    tr = None if n_train is None else check_positive_int("n_train", n_train)
    te = None if n_test is None else check_positive_int("n_test", n_test)
    if tr is None and te is None:
        te = n_all // 4
    if (tr or 0) + (te or 0) > n_all:
        raise ValueError(f"n_train + n_test must be at most {n_all} (the images of classes {classes}); "
                         f"got {n_train} + {n_test}.")
    x_tr, x_te, l_tr, l_te = train_test_split(x_all, lab_all, train_size=tr, test_size=te, random_state=int(seed),
                                              stratify=lab_all)
    if standardize:
        mu, sd = x_tr.mean(0), x_tr.std(0)
        sd = np.where(sd > 0, sd, 1.0)
        x_tr, x_te = (x_tr - mu) / sd, (x_te - mu) / sd

    def targets(lab):
        if target == "label":
            return lab.astype(np.float64)
        if target == "binary":
            lo, hi = (float(v) for v in binary_values)
            return np.where(lab == classes[1], hi, lo)
        onehot = (lab[:, None] == np.asarray(classes)[None, :]).astype(np.float64)  # (n, C)
        return onehot - 1.0 / len(classes) if center_onehot else onehot

    dev = _device(device)
    as_t = lambda a: torch.as_tensor(a, dtype=dtype).to(dev)  # noqa: E731
    return Dataset(as_t(x_tr), as_t(targets(l_tr)), as_t(x_te), as_t(targets(l_te)),
                   labels_train=torch.as_tensor(l_tr).to(dev), labels_test=torch.as_tensor(l_te).to(dev),
                   name="digits")
