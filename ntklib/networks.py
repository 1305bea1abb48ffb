r"""Finite-width networks built from the same layers as the analytic kernels.

Conventions (identical to neural-tangents' ``stax``):

* ``parameterization="ntk"``: parameters :math:`W_{ij}, b_i \sim \mathcal N(0, 1)` and
  :math:`z = \frac{W_{std}}{\sqrt{n_{in}}} W h + b_{std}\, b`.
* ``parameterization="standard"``: :math:`W_{ij} \sim \mathcal N(0, W_{std}^2/n_{in})`,
  :math:`b_i \sim \mathcal N(0, b_{std}^2)` and :math:`z = W h + b`.

Both give the same function distribution at initialization (the same NNGP); they differ in
the gradient, hence in the NTK. ``b_std=None`` means no bias parameter at all.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

__all__ = ["DenseModule", "ActivationModule", "SerialModule"]


class DenseModule(nn.Module):
    """Affine layer in the NTK or standard parameterization (see the module docstring)."""

    def __init__(self, in_dim: int, out_dim: int, W_std: float, b_std: float | None,
                 parameterization: str, generator: torch.Generator, dtype: torch.dtype):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.W_std, self.b_std, self.parameterization = W_std, b_std, parameterization
        # drawn in float64 and then cast, so that one seed gives the same network in every dtype
        weight = torch.randn(out_dim, in_dim, generator=generator, dtype=torch.float64).to(dtype)  # (out, in)
        bias = (None if b_std is None
                else torch.randn(out_dim, generator=generator, dtype=torch.float64).to(dtype))  # (out,)
        if parameterization == "standard":
            weight = weight * (W_std / math.sqrt(in_dim))
            if bias is not None:
                bias = bias * b_std
        self.weight = nn.Parameter(weight)
        self.bias = None if bias is None else nn.Parameter(bias)

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
    """Elementwise nonlinearity ``phi`` (no parameters)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], name: str):
        super().__init__()
        self.fn, self.name = fn, name

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fn(h)

    def derivative(self, z: torch.Tensor) -> torch.Tensor:
        """phi'(z), elementwise, by autograd (used by the structured empirical NTK)."""
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.fn(z).sum(), z)
        return g

    def extra_repr(self) -> str:
        return self.name


class SerialModule(nn.Sequential):
    """A finite network made by :meth:`ntklib.Layer.module`; ``.arch`` is the layer it came from."""

    def __init__(self, *modules: nn.Module, arch=None, in_dim: int | None = None):
        super().__init__(*modules)
        self.arch, self.in_dim = arch, in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or (self.in_dim is not None and x.shape[1] != self.in_dim):
            raise ValueError(f"x must have shape (n, {self.in_dim}); got {tuple(x.shape)}.")
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
            for idx in range(len(self) - 1, -1, -1):
                m = self[idx]
                if isinstance(m, DenseModule):
                    parts.append((m.weight_scale, m.bias_scale, inputs[idx], delta))
                    delta = m.weight_scale * (delta @ m.weight)  # (n, k, in)
                else:
                    delta = delta * m.derivative(pre_activations[idx])[:, None, :]
        return parts[::-1]
