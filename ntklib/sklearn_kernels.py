r"""ntklib's infinite-width kernels in scikit-learn: one kernel object for GPs, kernel ridge and SVMs.

:class:`NeuralKernel` wraps any ntklib architecture (``nk.serial(...)``, shortcut networks, ...) as a
scikit-learn ``Kernel`` (``sklearn.gaussian_process.kernels``): ``k(X, Y)`` is
``arch.kernel(X, Y).nngp`` or ``.ntk`` as a float64 numpy array, with ntklib's conventions (Dense
layers see :math:`x\cdot x'/d`, neural-tangents' ``W_std``/``b_std``; ``docs/sklearn.md``).
It works wherever scikit-learn takes a kernel:

* ``GaussianProcessRegressor(kernel=NeuralKernel(arch, "nngp"), alpha=noise, optimizer=None)``: the
  posterior of the infinitely wide network's Gaussian process, the same as
  :func:`ntklib.regression.gp_posterior` with ``diag_reg=noise, diag_reg_absolute_scale=True``.
  With ``W_std``/``b_std`` given they are hyperparameters, fitted by the marginal likelihood unless
  their bounds are ``"fixed"``; ``NeuralKernel(...) + WhiteKernel()`` fits the noise too.
* ``KernelRidge(kernel=NeuralKernel(arch), alpha=lam)``: scikit-learn calls the kernel once on
  whole matrices (it is a GP kernel); the predictor is :func:`ntklib.regression.kernel_regression`
  with ``diag_reg=lam, diag_reg_absolute_scale=True``: the :math:`t\to\infty` limit of gradient
  flow for ``get="ntk"`` (with :math:`f_0 = 0`).
* ``SVC(kernel=NeuralKernel(arch))`` (a callable kernel), or ``SVC(kernel="precomputed")`` with
  ``k(X_train)`` to fit and ``k(X_test, X_train)`` to predict: the NTK-SVM of Arora et al. 2020
  (arXiv:1910.01663). Computing the matrices once and passing them precomputed is faster when
  several estimators or regularizers share them.

**Hyperparameters.** ``W_std=None`` and ``b_std=None`` (the defaults) keep every layer's own
values, and the kernel has no free hyperparameter. A number sets ``W_std`` (``b_std``) of *every*
layer that has one (Dense, convolutions, shortcut blocks; a bias-free layer gets a bias), as in
neural-tangents' examples where one :math:`(\sigma_w, \sigma_b)` serves the whole network; it is
then a hyperparameter with ``W_std_bounds`` (``b_std_bounds``), or fixed with bounds ``"fixed"``.
A value of 0 is never free (its logarithm, scikit-learn's coordinate, is :math:`-\infty`).

**Gradients.** ``k(X, eval_gradient=True)`` returns :math:`K` and
:math:`\partial K/\partial\log\theta_j` (n, n, number of free hyperparameters), in the order of
``k.hyperparameters`` (``W_std`` before ``b_std``), as every scikit-learn kernel does. ntklib's
kernel recursions run in place for speed, which torch's autograd cannot differentiate, so the
derivative is the fourth-order central difference in :math:`u = \log\theta`,

.. math::
    \frac{\partial K}{\partial u} \approx \frac{K(u-2h) - 8K(u-h) + 8K(u+h) - K(u+2h)}{12h},
    \qquad h = 10^{-3},

whose truncation error is :math:`h^4 K^{(5)}(u)/30` (about :math:`10^{-12}` relative for the depths
used in practice; :math:`K` is analytic in :math:`\log\theta`) and rounding error about
:math:`1.5\,\varepsilon\,|K|/h \approx 3\cdot10^{-13}|K|`. ``tests/library/test_sklearn_kernels.py``
checks it against closed-form derivatives (the linear kernel, and the ReLU arc-cosine NNGP and NTK
differentiated in 40-digit arithmetic). It costs four kernel evaluations per free hyperparameter.
"""
from __future__ import annotations

import copy
import math
from typing import Sequence

import numpy as np
import torch
import scipy.sparse as sp
from sklearn.gaussian_process.kernels import Hyperparameter, Kernel
from sklearn.utils import check_array

from .layers import Layer, Serial
from .validation import check_choice, check_nonneg, check_positive_int

__all__ = ["NeuralKernel"]

_STEP = 1e-3  # h of the central difference in log(theta)
_STENCIL = ((-2, 1.0 / 12), (-1, -8.0 / 12), (1, 8.0 / 12), (2, -1.0 / 12))  # (offset, weight / h)


class NeuralKernel(Kernel):
    r"""The NNGP or NTK of an ntklib architecture as a scikit-learn kernel (module docstring).

    Args:
      arch: an ntklib architecture, e.g. ``nk.serial(nk.Dense(512, 1.5, 0.1), nk.Relu(), nk.Dense(1, 1.5, 0.1))``
        (widths do not enter the kernels, except through the standard parameterization).
      get: ``"ntk"`` or ``"nngp"``.
      W_std, b_std: None keeps the layers' own values; a number sets every layer's and makes it a
        hyperparameter (see the module docstring).
      W_std_bounds, b_std_bounds: ``(low, high)`` with ``0 < low <= high``, or ``"fixed"``.
      input_shape: the shape of one input, e.g. ``(1, 40)`` for a one-channel signal of length 40 in a
        convolutional architecture: scikit-learn passes rows (n, d), which are reshaped to
        (n, *input_shape) with ``d = prod(input_shape)``. None passes the rows as they are.
      batch_size: compute the kernel in tiles of this many rows and columns (bounded memory).
      device: where ntklib computes (default the CPU); results come back as numpy arrays.

    ``k(X)`` is (n, n), ``k(X, Y)`` (n, m), ``k.diag(X)`` (n,), all float64 numpy arrays.
    """

    def __init__(self, arch, get: str = "ntk", W_std: float | None = None, b_std: float | None = None,
                 W_std_bounds=(1e-2, 1e2), b_std_bounds=(1e-5, 1e2), input_shape: Sequence[int] | None = None,
                 batch_size: int | None = None, device=None):
        # scikit-learn stores constructor arguments unchanged (get_params/set_params/clone); they are
        # checked where they are used, so that set_params(...) is checked too.
        self.arch = arch
        self.get = get
        self.W_std = W_std
        self.b_std = b_std
        self.W_std_bounds = W_std_bounds
        self.b_std_bounds = b_std_bounds
        self.input_shape = input_shape
        self.batch_size = batch_size
        self.device = device

    # -- hyperparameters ------------------------------------------------------------------------
    def _hyperparameter(self, name: str) -> Hyperparameter:
        value, bounds = getattr(self, name), getattr(self, name + "_bounds")
        if isinstance(bounds, str):
            if bounds != "fixed":
                raise ValueError(f"{name}_bounds must be (low, high) or 'fixed'; got {bounds!r}.")
        else:
            try:
                low, high = (float(b) for b in bounds)
            except (TypeError, ValueError):
                raise ValueError(f"{name}_bounds must be (low, high) or 'fixed'; got {bounds!r}.") from None
            if not (0 < low <= high < math.inf):
                raise ValueError(f"{name}_bounds must satisfy 0 < low <= high < inf; got {bounds!r}.")
        fixed = value is None or isinstance(bounds, str) or float(value) == 0.0
        return Hyperparameter(name, "numeric", "fixed" if fixed else bounds)

    @property
    def hyperparameter_W_std(self) -> Hyperparameter:
        return self._hyperparameter("W_std")

    @property
    def hyperparameter_b_std(self) -> Hyperparameter:
        return self._hyperparameter("b_std")

    # -- the architecture -----------------------------------------------------------------------
    def _architecture(self, W_std: float | None = None, b_std: float | None = None) -> Layer:
        """``arch`` with ``W_std``/``b_std`` set in every layer that has them (copies; ``arch`` is untouched)."""
        if not isinstance(self.arch, Layer):
            raise TypeError(f"arch must be an ntklib architecture (e.g. ntklib.serial(...)); got {self.arch!r}.")
        check_choice("get", self.get, ("nngp", "ntk"))
        W_std = self.W_std if W_std is None else W_std
        b_std = self.b_std if b_std is None else b_std
        if W_std is None and b_std is None:
            return self.arch
        layers = list(self.arch.layers) if isinstance(self.arch, Serial) else [self.arch]
        out = []
        for name, value in (("W_std", W_std), ("b_std", b_std)):
            if value is not None and not any(hasattr(layer, name) for layer in layers):
                raise ValueError(f"{name}={value!r} was given but no layer of {self.arch!r} has a {name}.")
        for layer in layers:
            layer = copy.copy(layer)
            for name, value in (("W_std", W_std), ("b_std", b_std)):
                if value is not None and hasattr(layer, name):
                    setattr(layer, name, check_nonneg(name, value))
            out.append(layer)
        return Serial(*out)

    def _inputs(self, name: str, X) -> torch.Tensor:
        """Rows (n, d) as float64, checked by scikit-learn's ``check_array`` (its messages); sparse rows are densified."""
        arr = check_array(X, accept_sparse=("csr", "csc", "coo"), dtype=np.float64, input_name=name)
        if sp.issparse(arr):
            arr = arr.toarray()
        x = torch.from_numpy(np.ascontiguousarray(arr))
        if self.input_shape is not None:
            shape = tuple(check_positive_int("input_shape", s) for s in self.input_shape)
            if math.prod(shape) != arr.shape[1]:
                raise ValueError(f"input_shape={shape} holds {math.prod(shape)} numbers but {name} has "
                                 f"{arr.shape[1]} features per row.")
            x = x.reshape(arr.shape[0], *shape)
        return x if self.device is None else x.to(self.device)

    def _matrix(self, arch: Layer, x1: torch.Tensor, x2: torch.Tensor | None, diagonal: bool = False) -> np.ndarray:
        bs = None if self.batch_size is None else check_positive_int("batch_size", self.batch_size)
        k = arch.kernel(x1, x2, get=self.get, diagonal=diagonal, batch_size=bs)
        return getattr(k, self.get).detach().cpu().numpy()

    # -- the scikit-learn Kernel protocol -------------------------------------------------------
    def __call__(self, X, Y=None, eval_gradient: bool = False):
        """``K = k(X, Y)`` (n, m) (``Y=None``: k(X, X)); with ``eval_gradient`` also dK/dlog(theta) (n, n, n_free)."""
        x1 = self._inputs("X", X)
        x2 = None if Y is None else self._inputs("Y", Y)
        if eval_gradient and Y is not None:
            raise ValueError("Gradient can only be evaluated when Y is None.")
        K = self._matrix(self._architecture(), x1, x2)
        if not eval_gradient:
            return K
        grads = []
        for hp in self.hyperparameters:
            if hp.fixed:
                continue
            value = float(getattr(self, hp.name))
            dK = np.zeros_like(K)
            for offset, weight in _STENCIL:
                shifted = value * math.exp(offset * _STEP)
                dK += weight * self._matrix(self._architecture(**{hp.name: shifted}), x1, None)
            grads.append(dK / _STEP)
        if not grads:
            return K, np.empty((K.shape[0], K.shape[0], 0))
        return K, np.stack(grads, axis=-1)

    def diag(self, X) -> np.ndarray:
        """The diagonal k(x_i, x_i), (n,), without the off-diagonal entries."""
        return self._matrix(self._architecture(), self._inputs("X", X), None, diagonal=True)

    def is_stationary(self) -> bool:
        """False: NNGP and NTK kernels depend on the norms of the inputs, not only on x - x'."""
        return False

    @property
    def requires_vector_input(self) -> bool:
        return True

    def __eq__(self, other) -> bool:
        if type(self) is not type(other):
            return False
        a, b = self.get_params(), other.get_params()
        arch_a, arch_b = a.pop("arch"), b.pop("arch")
        if repr(arch_a) != repr(arch_b):
            return False
        return all(repr(a[key]) == repr(b[key]) for key in a)

    __hash__ = None

    def __repr__(self) -> str:
        extra = "".join(f", {name}={_plain(getattr(self, name))!r}" for name in ("W_std", "b_std", "input_shape")
                        if getattr(self, name) is not None)
        return f"NeuralKernel({self.arch!r}, get={self.get!r}{extra})"


def _plain(value):
    """numpy scalars (scikit-learn's theta setter writes them) as Python numbers, for a readable repr."""
    return value.item() if isinstance(value, np.generic) else value
