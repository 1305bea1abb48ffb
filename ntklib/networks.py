r"""Finite-width networks built from the same layers as the analytic kernels.

Conventions (identical to neural-tangents' ``stax``):

* ``parameterization="ntk"``: parameters :math:`W_{ij}, b_i \sim \mathcal N(0, 1)` and
  :math:`z = \frac{W_{std}}{\sqrt{n_{in}}} W h + b_{std}\, b`.
* ``parameterization="standard"``: :math:`W_{ij} \sim \mathcal N(0, W_{std}^2/n_{in})`,
  :math:`b_i \sim \mathcal N(0, b_{std}^2)` and :math:`z = W h + b`.

Both give the same function distribution at initialization (the same NNGP); they differ in
the gradient, hence in the NTK. ``b_std=None`` means no bias parameter at all.

Convolutions (:class:`ConvModule`, torch's ``conv1d``/``conv2d``, channel-first) use the same
conventions with fan-in :math:`n_{in} = C_{in}\,|F|` (input channels times filter size) and one
bias per output channel, shared by all positions. Padding as in neural-tangents (and XLA):
``"VALID"`` none; ``"SAME"`` zeros, :math:`\lceil n/s\rceil` outputs, the total padding
:math:`\max((\lceil n/s\rceil - 1)s + f - n, 0)` split with the smaller half before;
``"CIRCULAR"`` the same amounts, wrapped around (periodic). ``AvgPoolModule`` averages over the
whole window, counting padded zeros (neural-tangents' default ``normalize_edges=False``).
"""
from __future__ import annotations

import math
import torch
from torch import nn

__all__ = ["DenseModule", "ActivationModule", "SerialModule", "ConvModule", "AvgPoolModule", "GlobalAvgPoolModule",
           "FlattenModule", "padding_amounts", "pad_axis"]

PADDINGS = ("VALID", "SAME", "CIRCULAR")


def padding_amounts(n: int, size: int, stride: int, padding: str) -> tuple[int, int, int]:
    """(before, after, outputs) along one axis of length ``n`` for a window of ``size`` and ``stride``
    (the module docstring; neural-tangents/XLA's ``padtype_to_pads``). ``n < size`` with VALID gives 0 outputs."""
    if padding == "VALID":
        return 0, 0, max(0, (n - size) // stride + 1)
    out = -(-n // stride)
    total = max((out - 1) * stride + size - n, 0)
    return total // 2, total - total // 2, out


def pad_axis(t: torch.Tensor, axis: int, before: int, after: int, circular: bool) -> torch.Tensor:
    """``t`` padded along ``axis`` with zeros, or periodically (``circular``, any amount); a new tensor."""
    n = t.shape[axis]
    if circular:
        idx = torch.arange(-before, n + after, device=t.device) % n
        return t.index_select(axis, idx)
    shape = list(t.shape)
    shape[axis] = n + before + after
    out = t.new_zeros(shape)
    out.narrow(axis, before, n).copy_(t)
    return out


def _pad_spatial(x: torch.Tensor, pads, circular: bool) -> torch.Tensor:
    """Pad the spatial axes 2, 3, ... of (n, C, *S) by ``pads`` [(before, after), ...]."""
    for d, (lo, hi) in enumerate(pads):
        if lo or hi:
            x = pad_axis(x, 2 + d, lo, hi, circular)
    return x


def _draw_affine(weight_shape: tuple[int, ...], fan_in: int, W_std: float, b_std: float | None,
                 parameterization: str, generator: torch.Generator, dtype: torch.dtype):
    """The (weight, bias) parameters of a Dense or Conv layer: standard normal entries (ntk), or scaled by
    W_std/sqrt(fan_in) and b_std (standard); no bias when b_std is None. Drawn in float64 and then cast,
    so that one seed gives the same network in every dtype."""
    weight = torch.randn(weight_shape, generator=generator, dtype=torch.float64).to(dtype)  # (out, in, *F)
    bias = (None if b_std is None
            else torch.randn(weight_shape[0], generator=generator, dtype=torch.float64).to(dtype))  # (out,)
    if parameterization == "standard":
        weight = weight * (W_std / math.sqrt(fan_in))
        if bias is not None:
            bias = bias * b_std
    return nn.Parameter(weight), None if bias is None else nn.Parameter(bias)


class ConvModule(nn.Module):
    """Convolution over (n, C, L) or (n, C, H, W) inputs in the NTK or standard parameterization."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, ...], stride: tuple[int, ...],
                 padding: str, W_std: float, b_std: float | None, parameterization: str,
                 generator: torch.Generator, dtype: torch.dtype):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = tuple(kernel_size), tuple(stride), padding
        self.W_std, self.b_std, self.parameterization = W_std, b_std, parameterization
        fan_in = in_channels * math.prod(kernel_size)
        self.weight, self.bias = _draw_affine((out_channels, in_channels) + self.kernel_size, fan_in, W_std, b_std,
                                              parameterization, generator, dtype)  # (out, in, *F), (out,)
        self.weight_scale = W_std / math.sqrt(fan_in) if parameterization == "ntk" else 1.0
        self.bias_scale = 0.0 if b_std is None else b_std if parameterization == "ntk" else 1.0

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        pads = [padding_amounts(n, f, s, self.padding)[:2]
                for n, f, s in zip(h.shape[2:], self.kernel_size, self.stride)]
        h = _pad_spatial(h, pads, self.padding == "CIRCULAR")
        conv = torch.nn.functional.conv1d if len(self.kernel_size) == 1 else torch.nn.functional.conv2d
        z = self.weight_scale * conv(h, self.weight, stride=self.stride)  # (n, out, *S')
        if self.bias is not None:
            z = z + self.bias_scale * self.bias.reshape((-1,) + (1,) * len(self.kernel_size))
        return z

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding!r}, W_std={self.W_std}, b_std={self.b_std}, "
                f"parameterization={self.parameterization!r}")


class AvgPoolModule(nn.Module):
    """Average over windows of the spatial axes (padded zeros count; see the module docstring)."""

    def __init__(self, window: tuple[int, ...], stride: tuple[int, ...], padding: str):
        super().__init__()
        self.window, self.stride, self.padding = tuple(window), tuple(stride), padding

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        pads = [padding_amounts(n, w, s, self.padding)[:2] for n, w, s in zip(h.shape[2:], self.window, self.stride)]
        h = _pad_spatial(h, pads, self.padding == "CIRCULAR")
        pool = torch.nn.functional.avg_pool1d if len(self.window) == 1 else torch.nn.functional.avg_pool2d
        return pool(h, self.window, self.stride)

    def extra_repr(self) -> str:
        return f"window={self.window}, stride={self.stride}, padding={self.padding!r}"


class GlobalAvgPoolModule(nn.Module):
    """(n, C, *S) -> (n, C): the mean over all positions."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h.mean(dim=tuple(range(2, h.ndim)))


class FlattenModule(nn.Module):
    """(n, C, *S) -> (n, C * prod(S)), torch's channel-major order."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h.flatten(1)


class DenseModule(nn.Module):
    """Affine layer in the NTK or standard parameterization (see the module docstring)."""

    def __init__(self, in_dim: int, out_dim: int, W_std: float, b_std: float | None,
                 parameterization: str, generator: torch.Generator, dtype: torch.dtype):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.W_std, self.b_std, self.parameterization = W_std, b_std, parameterization
        self.weight, self.bias = _draw_affine((out_dim, in_dim), in_dim, W_std, b_std, parameterization, generator,
                                              dtype)  # (out, in), (out,)

    @property
    def weight_scale(self) -> float:
        """Factor in front of ``W h``: W_std/sqrt(n_in) (ntk) or 1 (standard)."""
        return self.W_std / math.sqrt(self.in_dim) if self.parameterization == "ntk" else 1.0

    @property
    def bias_scale(self) -> float:
        """Factor in front of ``b``: b_std (ntk) or 1 (standard); 0 without a bias."""
        if self.bias is None:
            return 0.0
        return self.b_std if self.parameterization == "ntk" else 1.0

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        z = self.weight_scale * (h @ self.weight.T)  # (n, out)
        if self.bias is not None:
            z = z + self.bias_scale * self.bias
        return z

    def extra_repr(self) -> str:
        return (f"in_dim={self.in_dim}, out_dim={self.out_dim}, W_std={self.W_std}, b_std={self.b_std}, "
                f"parameterization={self.parameterization!r}")


class ActivationModule(nn.Module):
    """Elementwise nonlinearity (no parameters): ``forward`` is the ntklib activation's ``fn`` and
    :meth:`derivative` its ``derivative`` (``ntklib.Activation.derivative``, the one definition of phi')."""

    def __init__(self, activation, name: str | None = None):
        super().__init__()
        if not (callable(getattr(activation, "fn", None)) and callable(getattr(activation, "derivative", None))):
            raise TypeError(f"activation must be an ntklib activation (with fn and derivative), e.g. ntklib.Relu(); "
                            f"got {activation!r}.")
        self.activation = activation
        self.fn, self.name = activation.fn, name or repr(activation)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fn(h)

    def derivative(self, z: torch.Tensor) -> torch.Tensor:
        """phi'(z), elementwise (used by the structured empirical NTK)."""
        return self.activation.derivative(z)

    def extra_repr(self) -> str:
        return self.name


class SerialModule(nn.Sequential):
    """A finite network made by :meth:`ntklib.Layer.module`; ``.arch`` is the layer it came from."""

    def __init__(self, *modules: nn.Module, arch=None, in_dim: int | tuple[int, ...] | None = None):
        super().__init__(*modules)
        self.arch, self.in_dim = arch, in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_dim is not None:
            want = (self.in_dim,) if isinstance(self.in_dim, int) else tuple(self.in_dim)
            if tuple(x.shape[1:]) != want:
                hint = ""
                if len(want) > 1 and x.ndim == len(want) + 1 and tuple(x.shape[1:]) == want[1:] + want[:1]:
                    order = ", ".join(["0", str(x.ndim - 1)] + [str(a) for a in range(1, x.ndim - 1)])
                    hint = f" It looks channel-last; inputs are channel-first (n, C, *S): use x.permute({order})."
                shape = ", ".join(map(str, want))
                raise ValueError(f"x must have shape (n, {shape}); got {tuple(x.shape)}.{hint}")
        elif x.ndim != 2:
            raise ValueError(f"x must have shape (n, d); got {tuple(x.shape)}.")
        p = next(self.parameters(), None)
        if p is not None and x.dtype != p.dtype:
            raise TypeError(f"x has dtype {x.dtype} but the network's parameters are {p.dtype}: pass x.to({p.dtype}) "
                            f"(or build the network with module(..., dtype={x.dtype}) if that is the dtype you want).")
        return super().forward(x)

    @property
    def is_plain_mlp(self) -> bool:
        """True when every block is a DenseModule or an ActivationModule."""
        return all(isinstance(m, (DenseModule, ActivationModule)) for m in self)

    @property
    def has_ntk_parts(self) -> bool:
        """True when :meth:`ntk_parts` applies: a plain MLP, or a single module that has parts (a shortcut network)."""
        return self.is_plain_mlp or (len(self) == 1 and bool(getattr(self[0], "has_ntk_parts", False)))

    def ntk_parts(self, x: torch.Tensor) -> list[tuple[float, float, torch.Tensor, torch.Tensor]]:
        r"""Per dense map :math:`z = s_W W h + s_b b`: ``(s_W, s_b, h (n, fan_in), delta (n, k, fan_out))``, with
        :math:`\delta_a = \partial f_a/\partial z` backpropagated through the activations' derivatives; the empirical
        NTK is :math:`\sum (s_W^2 h\cdot h' + s_b^2)\,\delta_a\cdot\delta_b'` (``ntklib.empirical``)."""
        if not self.is_plain_mlp:
            if self.has_ntk_parts:
                return self[0].ntk_parts(x)
            raise TypeError("ntk_parts needs an MLP of Dense layers and elementwise activations (or one shortcut "
                            "network); use empirical_ntk(..., implementation='jacobian') for this model.")
        inputs, pre_activations = {}, {}
        h = x
        with torch.no_grad():
            for idx, m in enumerate(self):
                if isinstance(m, DenseModule):
                    inputs[idx] = h
                else:
                    pre_activations[idx] = h
                h = m(h)
            n, k = h.shape
            delta = torch.eye(k, dtype=h.dtype, device=h.device).expand(n, k, k)  # (n, k, k): d f_a / d out
            parts = []
            first_dense = min(inputs)
            for idx in range(len(self) - 1, -1, -1):
                m = self[idx]
                if isinstance(m, DenseModule):
                    parts.append((m.weight_scale, m.bias_scale, inputs[idx], delta))
                    if idx == first_dense:
                        break  # nothing below needs the delta of the network's input
                    # one (n k, out) x (out, in) product, not n small batched ones
                    delta = m.weight_scale * (delta.reshape(n * k, -1) @ m.weight).reshape(n, k, -1)  # (n, k, in)
                else:
                    delta = delta * m.derivative(pre_activations[idx])[:, None, :]
        return parts[::-1]
