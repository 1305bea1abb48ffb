r"""Convolutional layers: ``Conv``, ``AvgPool``, ``GlobalAvgPool`` and ``Flatten``, both views.

Inputs use torch's channel-first layout, (n, C, L) or (n, C, H, W); the kernels follow
neural-tangents' ``stax.Conv`` / ``AvgPool`` / ``GlobalAvgPool`` / ``Flatten`` exactly
(``tests/library/test_neural_tangents_reference.py`` checks it to 1e-12). With P positions, a
kernel carries, for each pair of inputs, either the covariance of every pair of positions
:math:`\Sigma_{pq}(x, x')` (P x P) or only its spatial diagonal :math:`\Sigma_{pp}` (P): see
:mod:`ntklib.kernel` for the layouts and :mod:`ntklib.batching` for which is tracked where.

**Input kernel.** The covariance of the C channels at each pair of positions,
:math:`\Sigma^{(0)}_{pq}(x, x') = \frac1C\sum_c x_{c,p}\,x'_{c,q}`, and :math:`\Theta^{(0)} = 0`.

**Conv** (filter F of size :math:`|F|`, strides s, fan-in :math:`n_{in} = C_{in}|F|`), with the
input padded as ``padding`` says (zeros for ``"SAME"``, periodic for ``"CIRCULAR"``; see
:mod:`ntklib.networks`) and :math:`\mathcal A` the mean over the filter window, applied to the
positions of x and of x' with the *same* offset (the weights are shared):

.. math::
    (\mathcal A K)_{pq} = \frac{1}{|F|}\sum_{f\in F} K_{s p + f,\ s q + f},\qquad
    \Sigma' = W_{std}^2\,\mathcal A\Sigma + b_{std}^2,

* NTK parameterization: :math:`\Theta' = \Sigma' + W_{std}^2\,\mathcal A\Theta`;
* standard parameterization: :math:`\Theta' = n_{in}\,\mathcal A\Sigma + W_{std}^2\,\mathcal A\Theta + [b\ \text{present}]`.

Padded positions contribute zeros but still count in :math:`1/|F|`. The bias, one per output
channel, is shared by all positions, so :math:`b_{std}^2` is added to every pair (p, q), and its
gradient is inside the NTK (through :math:`\Sigma'`, or the 1 of the standard parameterization).
:math:`\mathcal A` maps the spatial diagonal to itself, so without pooling only (n1, n2, P)
entries are needed.

**AvgPool** (window w, strides s; ``stride=None`` means the window): the mean over the window of
x's positions *and*, independently, of x''s positions,
:math:`\Sigma'_{pq} = \frac{1}{|w|^2}\sum_{a, b\in w}\Sigma_{sp+a,\ sq+b}`, the same for
:math:`\Theta` (padded zeros count, neural-tangents' ``normalize_edges=False``). It mixes
positions, so it needs every pair (p, q) of its input.

**GlobalAvgPool**: the mean over all pairs of positions, :math:`\frac{1}{P^2}\sum_{p,q}\Sigma_{pq}`
(the covariance of the channel means); a vector kernel with C channels.

**Flatten**: the mean over the spatial diagonal, :math:`\frac1P\sum_p\Sigma_{pp}` (the
covariance of the flattened vector of :math:`C P` entries, :math:`\frac{1}{CP}\sum_{c,p}`); a
vector kernel with :math:`C P` channels (the fan-in of a following standard-parameterization
``Dense``). It needs only the spatial diagonal.

Every existing activation acts at each position (:mod:`ntklib.activations`); ``Dense`` needs a
vector input, i.e. ``Flatten()`` or ``GlobalAvgPool()`` first. Derivations: Novak et al. 2019
(Bayesian deep CNNs with many channels are GPs), Arora et al. 2019 (exact computation with an
infinitely wide net), and neural-tangents' ``stax`` code.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from .kernel import Kernel, batch_diagonal, symmetric_from_upper
from .layers import Layer
from .networks import (PADDINGS, AvgPoolModule, ConvModule, FlattenModule, GlobalAvgPoolModule, pad_axis,
                       padding_amounts)
from .validation import check_choice, check_nonneg, check_positive_int

__all__ = ["Conv", "AvgPool", "GlobalAvgPool", "Flatten"]


# ---------------------------------------------------------------------------------------------
# arguments and geometry
# ---------------------------------------------------------------------------------------------
def _int_tuple(name: str, value: Any, length: int | None = None) -> tuple[int, ...]:
    """A tuple of positive ints of ``length`` (1 or 2 when not given); an int is repeated."""
    if isinstance(value, (tuple, list)):
        vals = tuple(value)
        if length is None and len(vals) not in (1, 2):
            raise ValueError(f"{name} must have 1 or 2 entries (1-D or 2-D); got {value!r}.")
        if length is not None and len(vals) != length:
            raise ValueError(f"{name} must have {length} entries (one per spatial axis); got {value!r}.")
        return tuple(check_positive_int(name, v) for v in vals)
    v = check_positive_int(name, value)
    return (v,) * (length or 1)


def _padding(value: Any) -> str:
    p = value.upper() if isinstance(value, str) else value
    return check_choice("padding", p, PADDINGS)


def _geometry(layer, k: Kernel, window: tuple[int, ...], stride: tuple[int, ...], padding: str, what: str):
    """[(before, after, outputs)] per spatial axis of ``k``, or a clear error."""
    nd = len(window)
    if not k.spatial:
        raise ValueError(f"{layer!r} is {nd}-D: it needs channel-first inputs of shape "
                         f"{_layout(nd)}; got a vector representation (n, d) (vector inputs, or after "
                         "Flatten/GlobalAvgPool).")
    if len(k.spatial) != nd:
        raise ValueError(f"{layer!r} is {nd}-D: it needs inputs of shape {_layout(nd)}; got a "
                         f"{len(k.spatial)}-D spatial shape {k.spatial}. Give {what} {len(k.spatial)} entries.")
    geom = [padding_amounts(n, w, s, padding) for n, w, s in zip(k.spatial, window, stride)]
    if any(out == 0 for _, _, out in geom):
        raise ValueError(f"{what} {window} of {layer!r} does not fit in its input of spatial shape {k.spatial} "
                         "with padding='VALID': use a smaller one, or padding='SAME' or 'CIRCULAR'.")
    return geom


def _layout(nd: int) -> str:
    return "(n, C, L)" if nd == 1 else "(n, C, H, W)"


# ---------------------------------------------------------------------------------------------
# the linear maps on kernels: t has `nb` batch axes, then the positions of x (and of x')
# ---------------------------------------------------------------------------------------------
def _shifted_sum(t: torch.Tensor, axes: tuple[int, ...], size: int, stride: int, out: int) -> torch.Tensor:
    """sum_{f < size} of t at positions f + stride * i (i < out) along every axis in ``axes`` (one shift f
    for all of them), t already padded: the axes shrink to ``out``. A new tensor."""
    acc = None
    for f in range(size):
        idx = [slice(None)] * t.ndim
        for a in axes:
            idx[a] = slice(f, f + stride * (out - 1) + 1, stride)
        v = t[tuple(idx)]
        acc = v.clone(memory_format=torch.contiguous_format) if acc is None else acc.add_(v)
    return acc


def _clipped_sum(t: torch.Tensor, axes: tuple[int, ...], size: int, before: int, out: int) -> torch.Tensor:
    """:func:`_shifted_sum` for stride 1 and zero padding (``before`` zeros ahead of each axis), without
    padding: output position p gets t[p + f - before] where that lies inside the axis; padded zeros add
    nothing. The first term is the shift f = before (every position inside; SAME and VALID have it), the
    others are added on the ranges where they lie inside. A new tensor."""
    n = t.shape[axes[0]]
    shifts = [before] + [f for f in range(size) if f != before]
    acc = None
    for f in shifts:
        p0, p1 = max(0, before - f), min(out, n + before - f)  # outputs whose input p + f - before is inside
        if p1 <= p0:
            continue
        src, dst = [slice(None)] * t.ndim, [slice(None)] * t.ndim
        for a in axes:
            src[a], dst[a] = slice(p0 + f - before, p1 + f - before), slice(p0, p1)
        v = t[tuple(src)]
        if acc is None:  # f = before: p0 = 0 and p1 = out
            acc = v.clone(memory_format=torch.contiguous_format)
        else:
            acc[tuple(dst)] += v
    return acc


def _window_mean(t: torch.Tensor, nb: int, n_spatial: int, full: bool, window, stride, geom, circular: bool,
                 joint: bool) -> torch.Tensor:
    r"""The mean over windows, axis by axis, of a kernel with ``nb`` batch axes. ``joint``: the same shift
    on the positions of x and x' (convolution, :math:`\mathcal A`); else independent shifts (pooling,
    full kernels only). Zero padding at stride 1 is never materialized (:func:`_clipped_sum`)."""
    for d, (w, s, (lo, hi, out)) in enumerate(zip(window, stride, geom)):
        axes = (nb + d, nb + n_spatial + d) if full else (nb + d,)
        for g in [axes] if joint else [(a,) for a in axes]:
            if s == 1 and not circular:
                t = _clipped_sum(t, g, w, lo, out)
            else:
                for a in g:
                    t = pad_axis(t, a, lo, hi, circular) if lo or hi else t
                t = _shifted_sum(t, g, w, s, out)
    return t.div_(math.prod(window) ** (1 if joint else 2))


def _mean_positions(t: torch.Tensor, nb: int, n_spatial: int, full: bool, diagonal_only: bool) -> torch.Tensor:
    """Mean over the spatial diagonal (``diagonal_only``: Flatten) or over all pairs of positions (GAP)."""
    batch = t.shape[:nb]
    if not full:  # (..., *S): only the diagonal is there
        return t.reshape(batch + (-1,)).mean(-1)
    P = math.prod(t.shape[nb:nb + n_spatial])
    t = t.reshape(batch + (P, P))
    return t.diagonal(dim1=-2, dim2=-1).mean(-1) if diagonal_only else t.mean((-2, -1))


def _restore_symmetry(k: Kernel, nngp: torch.Tensor, var1: torch.Tensor, ns: int, ds: bool) -> torch.Tensor:
    """For x2=None: nngp exactly symmetric (rebuilt from its upper triangle) with batch diagonal ``var1``
    (sums in another order round differently)."""
    if not k.symmetric:
        return nngp
    nngp = symmetric_from_upper(nngp, ns, ds)
    batch_diagonal(nngp).copy_(var1)
    return nngp


# ---------------------------------------------------------------------------------------------
# layers
# ---------------------------------------------------------------------------------------------
class Conv(Layer):
    r"""Convolution with ``out_channels`` channels, 1-D or 2-D (from ``kernel_size``), as neural-tangents'
    ``stax.Conv`` (the module docstring gives the equations).

    Args:
      out_channels: number of output channels (only the finite network and the standard
        parameterization's NTK of a following layer depend on it).
      kernel_size: the filter's spatial shape: an int or (k,) for 1-D, (kh, kw) for 2-D.
      stride: an int or one per spatial axis (default 1).
      padding: ``"VALID"`` (none), ``"SAME"`` (zeros) or ``"CIRCULAR"`` (periodic), any case.
      W_std: weight scale :math:`\sigma_w \ge 0` (variance :math:`\sigma_w^2/(C_{in}|F|)`).
      b_std: bias scale :math:`\sigma_b \ge 0`, or None for no bias parameter.
      parameterization: ``"ntk"`` or ``"standard"`` (as for ``Dense``).
    """

    entrywise = True

    def __init__(self, out_channels: int, kernel_size, stride=1, padding: str = "VALID", W_std: float = 1.0,
                 b_std: float | None = 0.0, parameterization: str = "ntk"):
        self.out_channels = check_positive_int("out_channels", out_channels)
        self.kernel_size = _int_tuple("kernel_size", kernel_size)
        self.stride = _int_tuple("stride", stride, len(self.kernel_size))
        self.padding = _padding(padding)
        self.W_std = check_nonneg("W_std", W_std)
        self.b_std = check_nonneg("b_std", b_std, allow_none=True)
        self.parameterization = check_choice("parameterization", parameterization, ("ntk", "standard"))

    def __repr__(self) -> str:
        extra = "" if self.parameterization == "ntk" else ", parameterization='standard'"
        ks = self.kernel_size[0] if len(self.kernel_size) == 1 else self.kernel_size
        st = "" if set(self.stride) == {1} else f", stride={self.stride}"
        return (f"Conv({self.out_channels}, kernel_size={ks}{st}, padding={self.padding!r}, W_std={self.W_std}, "
                f"b_std={self.b_std}{extra})")

    def _filter_mean(self, k: Kernel):
        """t, nb -> the filter mean (module docstring) of a kernel of k's layout with nb batch axes."""
        geom = _geometry(self, k, self.kernel_size, self.stride, self.padding, "kernel_size")
        args = (len(k.spatial), k.full_spatial, self.kernel_size, self.stride, geom, self.padding == "CIRCULAR")
        spatial = tuple(out for _, _, out in geom)
        return (lambda t, nb: _window_mean(t, nb, *args, joint=True)), spatial

    def _pairs(self, k: Kernel, mean) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(nngp, ntk) of the output."""
        w2 = self.W_std ** 2
        b2 = 0.0 if self.b_std is None else self.b_std ** 2
        u = mean(k.nngp, k.batch_ndim)  # the filter mean of Sigma
        nngp = (u * w2).add_(b2)
        ntk = None
        if k.ntk is not None:
            ntk = mean(k.ntk, k.batch_ndim).mul_(w2)  # W^2 A Theta
            if self.parameterization == "ntk":
                ntk.add_(nngp)
            else:
                ntk.add_(u * (k.width * math.prod(self.kernel_size)))  # n_in A Sigma
                if self.b_std is not None:
                    ntk.add_(1.0)
        return nngp, ntk

    def kernel_fn(self, k: Kernel) -> Kernel:
        mean, spatial = self._filter_mean(k)
        nngp, ntk = self._pairs(k, mean)
        w2 = self.W_std ** 2
        b2 = 0.0 if self.b_std is None else self.b_std ** 2
        affine = lambda t: (mean(t, 1).mul_(w2)).add_(b2)
        var1 = nngp if k.diagonal else affine(k.var1)
        var2 = var1 if k.var2 is k.var1 else affine(k.var2)
        return k.replace(nngp=nngp, ntk=ntk, var1=var1, var2=var2, width=self.out_channels, spatial=spatial)

    def cross_kernel_fn(self, k: Kernel, var1, var2, symmetric: bool = False) -> Kernel:
        mean, spatial = self._filter_mean(k)
        nngp, ntk = self._pairs(k, mean)
        return k.replace(nngp=nngp, ntk=ntk, width=self.out_channels, spatial=spatial)

    def build(self, in_shape, generator, dtype):
        C, spatial = _spatial_in_shape(self, in_shape, len(self.kernel_size))
        geom = [padding_amounts(n, f, s, self.padding) for n, f, s in zip(spatial, self.kernel_size, self.stride)]
        if any(out == 0 for _, _, out in geom):
            raise ValueError(f"kernel_size {self.kernel_size} of {self!r} does not fit in its input of spatial "
                             f"shape {spatial} with padding='VALID'.")
        mod = ConvModule(C, self.out_channels, self.kernel_size, self.stride, self.padding, self.W_std, self.b_std,
                         self.parameterization, generator, dtype)
        return [mod], (self.out_channels,) + tuple(out for _, _, out in geom)


class AvgPool(Layer):
    r"""Average pooling over windows of the spatial axes, as neural-tangents' ``stax.AvgPool``
    (``normalize_edges=False``: padded zeros count), equations in the module docstring.

    Args:
      window: the window's spatial shape, an int (1-D) or (wh, ww).
      stride: one per spatial axis, or None for the window (non-overlapping windows).
      padding: ``"VALID"``, ``"SAME"`` or ``"CIRCULAR"``, any case.
    """

    entrywise = True

    def __init__(self, window, stride=None, padding: str = "VALID"):
        self.window = _int_tuple("window", window)
        self.stride = self.window if stride is None else _int_tuple("stride", stride, len(self.window))
        self.padding = _padding(padding)

    def __repr__(self) -> str:
        w = self.window[0] if len(self.window) == 1 else self.window
        return f"AvgPool({w}, stride={self.stride}, padding={self.padding!r})"

    def input_diagonal_spatial(self, output_diagonal_spatial: bool) -> bool:
        return False  # mixes positions: every pair (p, q) of its input

    def _pool(self, k: Kernel):
        if not k.full_spatial and k.spatial:
            raise ValueError(f"{self!r} needs the covariance of every pair of positions (diagonal_spatial=False); "
                             "Layer.kernel builds it so.")
        geom = _geometry(self, k, self.window, self.stride, self.padding, "window")
        args = (len(k.spatial), True, self.window, self.stride, geom, self.padding == "CIRCULAR")
        pool = lambda t, nb: None if t is None else _window_mean(t, nb, *args, joint=False)
        return pool, tuple(out for _, _, out in geom)

    def kernel_fn(self, k: Kernel) -> Kernel:
        pool, spatial = self._pool(k)
        ns = len(spatial)
        sym = lambda v: 0.5 * (v + _swap_positions(v, ns))  # each input's own covariance: exactly symmetric
        var1 = sym(pool(k.var1, 1))
        var2 = var1 if k.var2 is k.var1 else sym(pool(k.var2, 1))
        nngp = var1 if k.diagonal else _restore_symmetry(k, pool(k.nngp, 2), var1, ns, False)
        ntk = pool(k.ntk, k.batch_ndim)
        if k.symmetric and ntk is not None:
            ntk = symmetric_from_upper(ntk, ns, False)
        return k.replace(nngp=nngp, ntk=ntk, var1=var1, var2=var2, spatial=spatial)

    def cross_kernel_fn(self, k: Kernel, var1, var2, symmetric: bool = False) -> Kernel:
        pool, spatial = self._pool(k)
        return k.replace(nngp=pool(k.nngp, 2), ntk=pool(k.ntk, 2), spatial=spatial)

    def build(self, in_shape, generator, dtype):
        C, spatial = _spatial_in_shape(self, in_shape, len(self.window))
        geom = [padding_amounts(n, w, s, self.padding) for n, w, s in zip(spatial, self.window, self.stride)]
        if any(out == 0 for _, _, out in geom):
            raise ValueError(f"window {self.window} of {self!r} does not fit in its input of spatial shape "
                             f"{spatial} with padding='VALID'.")
        return [AvgPoolModule(self.window, self.stride, self.padding)], (C,) + tuple(out for _, _, out in geom)


class _Readout(Layer):
    """Spatial kernel -> vector kernel: GlobalAvgPool (all pairs) or Flatten (the spatial diagonal)."""

    entrywise = True
    diagonal_only = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def _reduce(self, k: Kernel):
        if not k.spatial:
            raise ValueError(f"{self!r} needs a spatial input, channel-first (n, C, L) or (n, C, H, W); got a "
                             "vector representation (n, d) (vector inputs, or after Flatten/GlobalAvgPool).")
        ns, full = len(k.spatial), k.full_spatial
        if not (full or self.diagonal_only):
            raise ValueError(f"{self!r} needs the covariance of every pair of positions (diagonal_spatial=False); "
                             "Layer.kernel builds it so.")
        width = k.width * math.prod(k.spatial) if self.diagonal_only else k.width
        return (lambda t, nb: None if t is None else _mean_positions(t, nb, ns, full, self.diagonal_only)), width

    def kernel_fn(self, k: Kernel) -> Kernel:
        reduce, width = self._reduce(k)
        var1 = reduce(k.var1, 1)
        var2 = var1 if k.var2 is k.var1 else reduce(k.var2, 1)
        nngp = var1 if k.diagonal else _restore_symmetry(k, reduce(k.nngp, 2), var1, 0, True)
        ntk = reduce(k.ntk, k.batch_ndim)
        if k.symmetric and ntk is not None:
            ntk = symmetric_from_upper(ntk, 0, True)
        return k.replace(nngp=nngp, ntk=ntk, var1=var1, var2=var2, width=width, spatial=(), diagonal_spatial=True)

    def cross_kernel_fn(self, k: Kernel, var1, var2, symmetric: bool = False) -> Kernel:
        reduce, width = self._reduce(k)
        return k.replace(nngp=reduce(k.nngp, 2), ntk=reduce(k.ntk, 2), width=width, spatial=(),
                         diagonal_spatial=True)


class GlobalAvgPool(_Readout):
    r"""Global average pooling: (n, C, \*S) -> (n, C), the mean over all positions, as
    neural-tangents' ``stax.GlobalAvgPool``; its kernel is the mean over all pairs of positions."""

    def input_diagonal_spatial(self, output_diagonal_spatial: bool) -> bool:
        return False  # every pair (p, q)

    def build(self, in_shape, generator, dtype):
        C, _ = _spatial_in_shape(self, in_shape, None)
        return [GlobalAvgPoolModule()], C


class Flatten(_Readout):
    r"""Flattening: (n, C, \*S) -> (n, C P), as neural-tangents' ``stax.Flatten``; its kernel is the mean
    over the spatial diagonal (the readout weights of different positions are independent)."""

    diagonal_only = True

    def input_diagonal_spatial(self, output_diagonal_spatial: bool) -> bool:
        return True  # the spatial diagonal suffices

    def build(self, in_shape, generator, dtype):
        C, spatial = _spatial_in_shape(self, in_shape, None)
        return [FlattenModule()], C * math.prod(spatial)


def _swap_positions(t: torch.Tensor, n_spatial: int) -> torch.Tensor:
    """(n, \\*S, \\*S) -> the same with the two groups of positions swapped (a view)."""
    s = list(range(1, 1 + n_spatial))
    return t.permute([0] + [a + n_spatial for a in s] + s)


def _spatial_in_shape(layer, in_shape, nd: int | None):
    """(C, S) from a module input shape (C, \\*S), or a clear error."""
    if isinstance(in_shape, int):
        need = "channel-first inputs (n, C, L) or (n, C, H, W)" if nd is None else f"inputs of shape {_layout(nd)}"
        raise ValueError(f"{layer!r} needs {need}; here its input is a vector of {in_shape} entries "
                         "(in_dim an int, or after Flatten/GlobalAvgPool): give in_dim as (C, L) or (C, H, W).")
    if nd is not None and len(in_shape) - 1 != nd:
        raise ValueError(f"{layer!r} is {nd}-D: it needs inputs of shape {_layout(nd)}; here its input has shape "
                         f"(n, {', '.join(map(str, in_shape))}).")
    return in_shape[0], tuple(in_shape[1:])
