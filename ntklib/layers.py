r"""Layers: one description, two views (infinite-width kernels and a finite network).

Every layer maps the kernel record of its input to that of its output
(:meth:`Layer.kernel_fn`) and builds the matching finite ``torch.nn.Module``
(:meth:`Layer.build`). :func:`serial` composes layers; any layer or composition has
:meth:`Layer.kernel` (the analytic NNGP and NTK, evaluated in blocks by
:mod:`ntklib.batching`) and :meth:`Layer.module` (a seeded finite network). Nonlinearities are in
:mod:`ntklib.activations`, convolutions and pooling in :mod:`ntklib.conv`.

Dense layer, exactly as neural-tangents' ``stax.Dense`` (derived in notebook 02):

* NTK parameterization: :math:`\Sigma' = W_{std}^2\,\Sigma + b_{std}^2`,
  :math:`\Theta' = \Sigma' + W_{std}^2\,\Theta`.
* standard parameterization (fan-in :math:`n_{in}`):
  :math:`\Theta' = n_{in}\,\Sigma + [b\ \text{present}] + W_{std}^2\,\Theta`, and the same
  :math:`\Sigma'`. Here :math:`n_{in}\Sigma = \sum_j h_j(x) h_j(x')` is the weight-gradient
  term and 1 the bias-gradient term; this NTK grows with the widths.

``b_std=None`` removes the bias parameter (:math:`b_{std} = 0` in the NNGP and no bias
term in the NTK).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from . import batching
from .kernel import Kernel
from .networks import DenseModule, SerialModule
from .validation import as_inputs, check_choice, check_input_shape, check_nonneg, check_positive_int, default_device

__all__ = ["Layer", "Dense", "Serial", "serial"]

_GET = ("nngp", "ntk")


class Layer:
    """Base class. Subclasses implement :meth:`kernel_fn` and :meth:`build`."""

    #: True when ``kernel_fn`` computes each pair (i, j) of ``nngp``/``ntk`` -- with all its
    #: positions, for spatial kernels -- from the same pair of its input and the per-position
    #: variances of inputs i and j alone (plus scalars such as ``width``). :meth:`kernel` then
    #: evaluates large kernels on tiles that share the variances (see :mod:`ntklib.batching`).
    #: Layers that mix pairs (normalizing over the batch, say) must leave it False, the default.
    entrywise = False

    # -- the two views -------------------------------------------------------------------
    def kernel_fn(self, k: Kernel) -> Kernel:  # pragma: no cover - abstract
        raise NotImplementedError

    def build(self, in_shape, generator: torch.Generator, dtype: torch.dtype) -> tuple[list[nn.Module], object]:
        r"""Finite modules for inputs of shape ``in_shape`` (an int d for vectors, (C, \*S) for
        channel-first inputs, without the batch axis), and the shape of their output."""
        raise NotImplementedError  # pragma: no cover - abstract

    # -- hooks used by ntklib.batching ---------------------------------------------------
    def cross_kernel_fn(self, k: Kernel, var1: torch.Tensor, var2: torch.Tensor, symmetric: bool = False) -> Kernel:
        r"""This layer's map of the cross kernels ``k.nngp`` and ``k.ntk`` alone (``k.var1`` and
        ``k.var2`` are None), given the per-position variances ``var1`` (n1, \*S) and ``var2``
        (n2, \*S) of its input, which :mod:`ntklib.batching` computes once for all inputs.
        ``symmetric``: the pairs belong to a kernel k(x, x) (``x2=None``). The variances of the
        result are not used.

        The default runs :meth:`kernel_fn`, whose variance map is then wasted work; layers
        override it to skip that work (nonlinearities) or because their variance map needs more
        than per-position variances (pooling of full spatial kernels).
        """
        if k.full_spatial:
            raise NotImplementedError(f"{self!r} needs its own cross_kernel_fn for full spatial kernels.")
        return self.kernel_fn(k.replace(var1=var1, var2=var2))

    def input_diagonal_spatial(self, output_diagonal_spatial: bool) -> bool:
        """Whether ``kernel_fn`` can work from the same-position entries of a spatial input kernel
        (the spatial diagonal), when its output is needed only on the spatial diagonal
        (``output_diagonal_spatial``) or at every pair of positions. Default: the same as its
        output (convolutions, nonlinearities); pooling needs every pair of positions."""
        return output_diagonal_spatial

    # -- user-facing ---------------------------------------------------------------------
    def kernel(self, x1, x2=None, *, get: str | Sequence[str] = _GET, diagonal: bool = False,
               batch_size: int | None = None, dtype: torch.dtype = torch.float64) -> Kernel:
        r"""Infinite-width kernels between the inputs ``x1`` and ``x2``.

        Inputs are (n, d) vectors or channel-first (n, C, L) / (n, C, H, W) arrays (for
        convolutional architectures). Returns a :class:`~ntklib.Kernel` whose ``.nngp`` and
        ``.ntk`` are (n1, n2) (``x2=None`` means ``x2 = x1``), or (n1,) with ``diagonal=True``;
        a network that ends on a spatial layer gives every pair of positions, (n1, n2, \*S, \*S).
        ``get="nngp"`` skips the NTK. ``batch_size`` computes the result in (batch_size,
        batch_size) tiles; by default tiles are chosen so that intermediate memory stays bounded
        (:mod:`ntklib.batching`). Computation runs in ``dtype`` (float64 by default) on the
        inputs' device.
        """
        get = (get,) if isinstance(get, str) else tuple(get)
        for g in get:
            check_choice("get", g, _GET)
        x1, x2 = as_inputs(x1, x2, dtype=dtype, spatial=True)
        if batch_size is not None:
            batch_size = check_positive_int("batch_size", batch_size)
        if diagonal and x2 is not None:
            raise ValueError("diagonal=True computes k(x1, x1) on the diagonal; pass x2=None.")
        compute_ntk = "ntk" in get
        k = batching.kernel(self, x1, x2, diagonal=diagonal, compute_ntk=compute_ntk, batch_size=batch_size)
        _check_finite(k, self)
        if not compute_ntk:
            k = k.replace(ntk=None)
        return k

    def module(self, in_dim, *, seed: int | None = None, dtype: torch.dtype | None = None,
               device: torch.device | str | None = None) -> SerialModule:
        """A finite network with these layers, initialized from ``seed``.

        ``in_dim`` is the shape of one input: an int d for (n, d) vectors, or (C, L) / (C, H, W)
        for channel-first inputs. Parameters are drawn on the CPU from
        ``torch.Generator().manual_seed(seed)`` (the same seed gives the same network on every
        device) and then moved to ``device`` (default: CUDA when present, else the CPU).
        ``dtype`` defaults to torch's default dtype. ``seed=None`` draws the seed from torch's
        global generator, so ``torch.manual_seed`` makes it reproducible (and the global
        generator is advanced, never re-seeded).
        """
        in_dim = check_input_shape("in_dim", in_dim)
        if seed is None:  # not torch.seed(): that re-seeds the global generator non-deterministically
            seed = int(torch.randint(0, 2 ** 62, (), dtype=torch.int64))
        gen = torch.Generator()
        gen.manual_seed(int(seed))
        dtype = dtype or torch.get_default_dtype()
        mods, _ = self.build(in_dim, gen, dtype)
        net = SerialModule(*mods, arch=self, in_dim=in_dim)
        return net.to(device if device is not None else default_device())


def _check_finite(k: Kernel, layer: Layer) -> None:
    for name in ("nngp", "ntk"):
        t = getattr(k, name)
        # one pass (the sum) when all is well; the entrywise test only if the sum is not finite
        if t is not None and not bool(torch.isfinite(t.sum())) and not bool(torch.isfinite(t).all()):
            raise FloatingPointError(
                f"the {name} kernel of {layer!r} overflowed {t.dtype} (it has non-finite entries). "
                "Off the critical initialization the variance grows geometrically with depth "
                "(for ReLU like (W_std**2 / 2)**depth): use W_std closer to its critical value "
                "(sqrt(2) for ReLU), fewer layers, or normalize the inputs.")


class Dense(Layer):
    r"""Fully connected layer of ``width`` units (see the module docstring for the equations).

    Args:
      width: number of output units (only the finite network and the standard
        parameterization's NTK depend on it).
      W_std: weight scale :math:`\sigma_w \ge 0`.
      b_std: bias scale :math:`\sigma_b \ge 0`, or None for no bias parameter.
      parameterization: ``"ntk"`` or ``"standard"``.
    """

    def __init__(self, width: int, W_std: float = 1.0, b_std: float | None = 0.0,
                 parameterization: str = "ntk"):
        self.width = check_positive_int("width", width)
        self.W_std = check_nonneg("W_std", W_std)
        self.b_std = check_nonneg("b_std", b_std, allow_none=True)
        self.parameterization = check_choice("parameterization", parameterization, ("ntk", "standard"))

    def __repr__(self) -> str:
        extra = "" if self.parameterization == "ntk" else ", parameterization='standard'"
        return f"Dense({self.width}, W_std={self.W_std}, b_std={self.b_std}{extra})"

    entrywise = True

    def kernel_fn(self, k: Kernel) -> Kernel:
        if k.spatial:
            raise ValueError(f"{self!r} needs a vector input (n, d); here its input has spatial shape "
                             f"{k.spatial} (inputs (n, C, *S) or a Conv below): put Flatten() or "
                             "GlobalAvgPool() before it.")
        w2 = self.W_std ** 2
        b2 = 0.0 if self.b_std is None else self.b_std ** 2
        affine = lambda t: w2 * t + b2
        nngp = (k.nngp * w2).add_(b2)  # w2 nngp + b2, in place on the new tensor
        var1 = affine(k.var1)
        var2 = var1 if k.var2 is k.var1 else affine(k.var2)
        ntk = k.ntk
        if ntk is not None:
            if self.parameterization == "ntk":
                ntk = (ntk * w2).add_(nngp)  # nngp' + w2 ntk
            else:  # width nngp + w2 ntk (+ 1 for the bias gradient)
                ntk = (k.nngp * k.width).add_(ntk * w2)
                if self.b_std is not None:
                    ntk.add_(1.0)
        return k.replace(nngp=nngp, ntk=ntk, var1=var1, var2=var2, width=self.width)

    def build(self, in_dim, generator, dtype):
        if not isinstance(in_dim, int):
            raise ValueError(f"{self!r} needs a vector input (n, d); here its input has shape (n, "
                             f"{', '.join(map(str, in_dim))}): put Flatten() or GlobalAvgPool() before it.")
        return [DenseModule(in_dim, self.width, self.W_std, self.b_std, self.parameterization,
                            generator, dtype)], self.width


class Serial(Layer):
    """Layers applied one after another: kernels are folded through ``kernel_fn`` in order."""

    def __init__(self, *layers: Layer):
        if not layers:
            raise ValueError("serial(...) needs at least one layer.")
        flat = []
        for i, layer in enumerate(layers):
            if isinstance(layer, type) and issubclass(layer, Layer):
                raise TypeError(f"layer {i} is the class {layer.__name__}; call it: {layer.__name__}(...).")
            if not isinstance(layer, Layer):
                raise TypeError(f"layer {i} must be an ntklib layer (Dense, Relu, ...); got {layer!r}. "
                                "For an arbitrary elementwise function use ntklib.Elementwise(fn).")
            flat.extend(layer.layers if isinstance(layer, Serial) else [layer])
        self.layers = tuple(flat)

    def __repr__(self) -> str:
        return "serial(" + ", ".join(map(repr, self.layers)) + ")"

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def entrywise(self) -> bool:
        return all(layer.entrywise for layer in self.layers)

    def __getitem__(self, i):
        return self.layers[i] if isinstance(i, int) else Serial(*self.layers[i])

    def kernel_fn(self, k: Kernel) -> Kernel:
        for layer in self.layers:
            k = layer.kernel_fn(k)
        return k

    def build(self, in_dim, generator, dtype):
        mods = []
        for layer in self.layers:
            m, in_dim = layer.build(in_dim, generator, dtype)
            mods.extend(m)
        return mods, in_dim


def serial(*layers: Layer) -> Serial:
    """Compose layers: ``serial(Dense(512), Relu(), Dense(1))``."""
    return Serial(*layers)
