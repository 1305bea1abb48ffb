r"""Nonlinearities and their dual activations.

For :math:`(u, v) \sim \mathcal N\!\left(0, \begin{pmatrix}\Sigma_{11} & \Sigma_{12}\\ \Sigma_{12} & \Sigma_{22}\end{pmatrix}\right)`
a nonlinearity :math:`\phi` maps the kernel record as

.. math::
    \Sigma' = \mathbb E[\phi(u)\phi(v)], \qquad
    \Theta' = \dot\Sigma\,\Theta, \quad \dot\Sigma = \mathbb E[\phi'(u)\phi'(v)].

Closed forms (derived in notebooks 01-02, checked against quadrature and Monte Carlo in
``tests/library/test_activations.py``), with :math:`\theta = \arccos\big(\Sigma_{12}/\sqrt{\Sigma_{11}\Sigma_{22}}\big)`:

* ``ABRelu(a, b)`` (:math:`\phi(x) = a\min(x,0) + b\max(x,0)`; ``Relu`` is (0, 1)):
  :math:`\Sigma' = \frac{(a-b)^2}{2\pi}\sqrt{\Sigma_{11}\Sigma_{22}-\Sigma_{12}^2} + \big(\frac{a^2+b^2}{2} - \frac{(a-b)^2}{2\pi}\theta\big)\Sigma_{12}`,
  :math:`\dot\Sigma = \frac{a^2+b^2}{2} - \frac{(a-b)^2}{2\pi}\theta`.
  For ReLU this is the arc-cosine kernel :math:`\frac{\sqrt{\Sigma_{11}\Sigma_{22}}}{2\pi}(\sin\theta + (\pi-\theta)\cos\theta)`
  and :math:`\dot\Sigma = \frac{\pi-\theta}{2\pi}`.
* ``Erf(a, b, c)`` (:math:`\phi(x) = a\,\mathrm{erf}(bx) + c`), with
  :math:`P = (1+2b^2\Sigma_{11})(1+2b^2\Sigma_{22})`:
  :math:`\Sigma' = \frac{2a^2}{\pi}\arcsin\frac{2b^2\Sigma_{12}}{\sqrt P} + c^2`,
  :math:`\dot\Sigma = \frac{4a^2b^2}{\pi}\big(P - 4b^4\Sigma_{12}^2\big)^{-1/2}`.
* ``Sin(a, b, c)`` (:math:`\phi(x) = a\sin(bx + c)`), with :math:`s = \Sigma_{11}+\Sigma_{22}`:
  :math:`\Sigma' = \frac{a^2}{2}\big(e^{-b^2(s/2-\Sigma_{12})} - \cos(2c)\,e^{-b^2(s/2+\Sigma_{12})}\big)`,
  :math:`\dot\Sigma = \frac{a^2b^2}{2}\big(e^{-b^2(s/2-\Sigma_{12})} + \cos(2c)\,e^{-b^2(s/2+\Sigma_{12})}\big)`.
* ``Gelu`` (:math:`\phi(x) = x\Phi(x)`): closed form of Tsuchida et al. (arXiv:2002.08517), in the code.
* ``Elementwise(fn)``: any elementwise function, by two-dimensional Gauss--Hermite
  quadrature of degree ``deg`` per axis (:math:`\phi'` by autograd unless ``fn_prime`` is given).

All are exact where the math is: the diagonal (:math:`\theta = 0`), :math:`\cos\theta = \pm 1`
(the square root is clamped at 0, never NaN) and zero-norm inputs.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from .kernel import Kernel, batch_diagonal, swap_inputs
from .layers import Layer
from .networks import ActivationModule
from .validation import check_positive_int

__all__ = ["Activation", "ABRelu", "Relu", "LeakyRelu", "Abs", "Identity", "Erf", "Sin", "Gelu",
           "Elementwise", "Tanh", "Sigmoid"]


class Activation(Layer):
    """Base class for nonlinearities: subclasses give ``fn`` and ``dual``.

    On spatial kernels the nonlinearity acts at each position: entry (p, q) of the covariance
    of x and x' is mapped with the variances of x at p and of x' at q.
    """

    name = "Activation"
    # True when ``dual`` is exactly symmetric under swapping (v1, v2) (all closed forms). Quadrature
    # is not: its error differs between (x, x') and (x', x), so for x2=None both orders are averaged.
    exact_swap_symmetry = True
    entrywise = True  # each pair (i, j) from the same pair and the variances (Layer.entrywise)

    def fn(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def dual(self, c: torch.Tensor, v1: torch.Tensor, v2: torch.Tensor, need_dot: bool):
        r"""Return :math:`(\mathbb E[\phi(u)\phi(v)],\ \mathbb E[\phi'(u)\phi'(v)])` (the second
        None unless ``need_dot``) for covariance ``c`` and variances ``v1``, ``v2`` (broadcast)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def kernel_fn(self, k: Kernel) -> Kernel:
        nngp, dot = self.dual(k.nngp, *k.broadcast_variances(), need_dot=k.ntk is not None)
        var1 = self._self_dual(k, 1)
        var2 = var1 if k.var2 is k.var1 else self._self_dual(k, 2)
        if k.diagonal:
            nngp = var1
        elif k.symmetric:
            if not self.exact_swap_symmetry:  # k(x, x') == k(x', x) exactly, as for the closed forms
                swap = lambda t: swap_inputs(t, len(k.spatial), k.diagonal_spatial)
                nngp = 0.5 * (nngp + swap(nngp))
                dot = None if dot is None else 0.5 * (dot + swap(dot))
            if not nngp.is_contiguous() or nngp.data_ptr() == k.nngp.data_ptr():  # never write into the input
                nngp = nngp.clone()
            batch_diagonal(nngp).copy_(var1)
        ntk = None if k.ntk is None else k.ntk * dot
        return k.replace(nngp=nngp, ntk=ntk, var1=var1, var2=var2)

    def cross_kernel_fn(self, k: Kernel, var1, var2, symmetric: bool = False) -> Kernel:
        """:meth:`kernel_fn` without the variance map (given: see :meth:`Layer.cross_kernel_fn`)."""
        nngp, dot = self._cross(k, *k.broadcast_variances(var1, var2), symmetric=symmetric)
        return k.replace(nngp=nngp, ntk=None if dot is None else k.ntk * dot, var1=None, var2=None)

    def _cross(self, k: Kernel, v1, v2, symmetric: bool):
        """``dual`` of a tile of the cross kernel; for a tile of k(x, x) (``symmetric``) whose dual is
        not exactly swap-symmetric, the mean of both orders, as :meth:`kernel_fn` does for the
        whole matrix (there by transposing), so that k(x, x') == k(x', x) exactly."""
        need_dot = k.ntk is not None
        nngp, dot = self.dual(k.nngp, v1, v2, need_dot=need_dot)
        if symmetric and not self.exact_swap_symmetry:
            nngp_swapped, dot_swapped = self.dual(k.nngp, v2, v1, need_dot=need_dot)  # the (x', x) order
            nngp = 0.5 * (nngp + nngp_swapped)
            dot = None if dot is None else 0.5 * (dot + dot_swapped)
        return nngp, dot

    def _self_dual(self, k: Kernel, which: int) -> torch.Tensor:
        """The variance map: ``dual`` of each input's kernel with itself (``var1`` or ``var2``)."""
        var = k.var1 if which == 1 else k.var2
        kd = k.self_kernel(which)
        return self.dual(var, *kd.broadcast_variances(), need_dot=False)[0]

    def build(self, in_dim, generator, dtype):
        return [ActivationModule(self.fn, repr(self))], in_dim

    def __repr__(self) -> str:
        return f"{self.name}()"


def _sqrt_pos(t: torch.Tensor) -> torch.Tensor:
    """sqrt of max(t, 0): rounding can make Sigma11*Sigma22 - Sigma12**2 slightly negative."""
    return torch.sqrt(torch.clamp(t, min=0.0))


class ABRelu(Activation):
    r""":math:`\phi(x) = a\min(x, 0) + b\max(x, 0)` (ReLU: a=0, b=1; |x|: a=-1, b=1)."""

    def __init__(self, a: float, b: float):
        self.a, self.b = float(a), float(b)
        if not (math.isfinite(self.a) and math.isfinite(self.b)):
            raise ValueError(f"ABRelu slopes a and b must be finite; got a={a!r}, b={b!r}.")
        self.name = "ABRelu"

    def __repr__(self) -> str:
        return f"ABRelu(a={self.a}, b={self.b})"

    def fn(self, x):
        # torch.where, not a*clamp(x, max=0) + b*clamp(x, min=0): clamp passes the gradient at
        # its bound, which made the autograd derivative at x = 0 equal to a + b (not a
        # subgradient; e.g. 1.1 for LeakyRelu(0.1)). Here it is a, like torch's relu/leaky_relu.
        return torch.where(x > 0, self.b * x, self.a * x)

    def dual(self, c, v1, v2, need_dot):
        # The same floating-point operations as the formulas in the module docstring, done in
        # place on two (n1, n2) buffers: this is the inner loop of every ReLU kernel.
        if torch.is_grad_enabled() and (c.requires_grad or v1.requires_grad or v2.requires_grad):
            return self._dual_differentiable(c, v1, v2, need_dot)  # in-place ops would break autograd
        a, b = self.a, self.b
        prod = v1 * v2  # (n1, n2) S11 S22
        cc = c * c  # (n1, n2)
        s = torch.sub(prod, cc, out=cc) if cc.shape == prod.shape else prod - cc
        s.clamp_(min=0.0).sqrt_()  # sqrt(S11 S22) sin(theta), clamped at 0 (rounding)
        zero = None
        if bool(v1.amin() * v2.amin() == 0):  # a zero-norm input (rare): theta := pi/2 where S11 S22 == 0
            zero = prod == 0
        theta = torch.atan2(s, c, out=prod) if prod.shape == s.shape else torch.atan2(s, c)  # in [0, pi]
        if zero is not None:
            theta.masked_fill_(zero, math.pi / 2)
        k = (a - b) ** 2 / (2 * math.pi)
        dot = theta.mul_(-k).add_((a * a + b * b) / 2)  # (a^2 + b^2)/2 - k theta
        nngp = s.mul_(k).add_(dot * c)  # k sqrt(...) + dot * S12
        return nngp, (dot if need_dot else None)

    def _dual_differentiable(self, c, v1, v2, need_dot):
        """:meth:`dual` without in-place operations (the same numbers), for inputs that need gradients."""
        a, b = self.a, self.b
        prod = v1 * v2
        s = _sqrt_pos(prod - c * c)
        theta = torch.atan2(s, c)
        theta = torch.where(prod == 0, torch.full_like(theta, math.pi / 2), theta)
        k = (a - b) ** 2 / (2 * math.pi)
        dot = (a * a + b * b) / 2 - k * theta
        return k * s + dot * c, (dot if need_dot else None)


class Relu(ABRelu):
    r"""ReLU, :math:`\phi(x) = \max(x, 0)`: the arc-cosine kernel of degree 1 (Cho & Saul 2009)."""

    def __init__(self):
        super().__init__(0.0, 1.0)

    def __repr__(self):
        return "Relu()"

    def fn(self, x):
        return torch.relu(x)


class LeakyRelu(ABRelu):
    r""":math:`\phi(x) = \max(x, 0) + \alpha\min(x, 0)`."""

    def __init__(self, alpha: float):
        super().__init__(alpha, 1.0)

    def __repr__(self):
        return f"LeakyRelu(alpha={self.a})"


def Abs() -> ABRelu:
    """|x| = ABRelu(-1, 1)."""
    return ABRelu(-1.0, 1.0)


class Identity(Activation):
    """:math:`\\phi(x) = x`: :math:`\\Sigma' = \\Sigma`, :math:`\\dot\\Sigma = 1` (deep linear networks)."""

    name = "Identity"

    def fn(self, x):
        return x

    def dual(self, c, v1, v2, need_dot):
        return c, (torch.ones_like(c) if need_dot else None)


def _finite_params(name: str, **params) -> tuple[float, ...]:
    vals = tuple(float(v) for v in params.values())
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"{name} parameters {', '.join(params)} must be finite; got "
                         + ", ".join(f"{k}={v!r}" for k, v in params.items()) + ".")
    return vals


class Erf(Activation):
    r""":math:`\phi(x) = a\,\mathrm{erf}(bx) + c` (neural-tangents' ``Erf``); the arcsin kernel."""

    def __init__(self, a: float = 1.0, b: float = 1.0, c: float = 0.0):
        self.a, self.b, self.c = _finite_params("Erf", a=a, b=b, c=c)
        self.name = "Erf"

    def __repr__(self):
        return f"Erf(a={self.a}, b={self.b}, c={self.c})"

    def fn(self, x):
        return self.a * torch.special.erf(self.b * x) + self.c

    def dual(self, c, v1, v2, need_dot):
        a, b, shift = self.a, self.b, self.c
        z = 2 * b * b * c
        P = (1 + 2 * b * b * v1) * (1 + 2 * b * b * v2)
        root = _sqrt_pos(P - z * z)  # >= 1 up to rounding
        nngp = (2 * a * a / math.pi) * torch.atan2(z, root) + shift * shift
        dot = (4 * a * a * b * b / math.pi) / root if need_dot else None
        return nngp, dot


class Sin(Activation):
    r""":math:`\phi(x) = a\sin(bx + c)` (closed form in the module docstring)."""

    def __init__(self, a: float = 1.0, b: float = 1.0, c: float = 0.0):
        self.a, self.b, self.c = _finite_params("Sin", a=a, b=b, c=c)
        self.name = "Sin"

    def __repr__(self):
        return f"Sin(a={self.a}, b={self.b}, c={self.c})"

    def fn(self, x):
        return self.a * torch.sin(self.b * x + self.c)

    def dual(self, c, v1, v2, need_dot):
        a2, b2 = self.a ** 2, self.b ** 2
        half_s = (v1 + v2) / 2
        e_minus = torch.exp(-b2 * (half_s - c))  # E cos(b(u - v))
        e_plus = torch.exp(-b2 * (half_s + c)) * math.cos(2 * self.c)  # E cos(b(u + v) + 2c)
        nngp = a2 / 2 * (e_minus - e_plus)
        dot = a2 * b2 / 2 * (e_minus + e_plus) if need_dot else None
        return nngp, dot


class Gelu(Activation):
    r""":math:`\phi(x) = x\,\Phi(x)` with :math:`\Phi` the standard normal CDF (exact, not the tanh approximation)."""

    name = "Gelu"

    def fn(self, x):
        return torch.nn.functional.gelu(x)

    def dual(self, c, v1, v2, need_dot):
        prod = v1 * v2
        prod1 = (1 + v1) * (1 + v2)
        delta2 = torch.clamp(prod1 - c * c, min=torch.finfo(c.dtype).tiny)  # >= 1 + v1 + v2 > 0
        delta = torch.sqrt(delta2)
        angle = torch.atan2(c, delta)
        nngp = c / 4 + (c * angle + (c * c + prod * delta2) / (prod1 * delta)) / (2 * math.pi)
        dot = None
        if need_dot:
            dot = 0.25 + angle / (2 * math.pi) + c / (2 * math.pi * delta) * (1 / delta2 + (1 - prod) / prod1 + 1)
        return nngp, dot


class Elementwise(Activation):
    r"""Any elementwise nonlinearity, by Gauss--Hermite quadrature.

    .. math::
        \mathbb E[\phi(u)\phi(v)] \approx \sum_{i,j} w_i w_j\,
        \phi\big(\sqrt{\Sigma_{11}}\,z_i\big)\,
        \phi\big(\sqrt{\Sigma_{22}}\,(\rho z_i + \sqrt{1-\rho^2}\,z_j)\big),
        \qquad \rho = \Sigma_{12}/\sqrt{\Sigma_{11}\Sigma_{22}},

    with probabilists' Hermite nodes :math:`z_i` and weights :math:`w_i` (summing to 1), and
    the same for :math:`\phi'`. Entire functions at unit scale (erf, sin, gelu) converge faster
    than any power of ``deg`` (1e-10 at deg 64); functions with complex poles near the real axis
    converge much more slowly (tanh at pre-activation variance ~2: NTK error 2e-3 at deg 64,
    2e-5 at deg 128) and kinks (ReLU-like) like 1/deg, so prefer closed forms where they exist.
    With ``x2=None`` the result is symmetrized (the rule is not symmetric under swapping x, x').

    Args:
      fn: elementwise torch function (tensor -> tensor of the same shape), e.g. ``torch.tanh``.
      fn_prime: its derivative; by default computed by autograd.
      deg: quadrature nodes per axis.
      name: shown in ``repr``.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], fn_prime: Callable | None = None,
                 deg: int = 64, name: str | None = None):
        if not callable(fn):
            raise TypeError(f"fn must be a callable elementwise function (e.g. torch.tanh); got {fn!r}.")
        if fn_prime is not None and not callable(fn_prime):
            raise TypeError(f"fn_prime must be callable or None; got {fn_prime!r}.")
        self.deg = check_positive_int("deg", deg)
        probe = torch.linspace(-2, 2, 5, dtype=torch.float64)
        try:
            out = fn(probe)
        except Exception as err:
            raise TypeError(f"fn must accept a torch.Tensor; calling it on one raised {type(err).__name__}: {err}") from None
        if not isinstance(out, torch.Tensor) or out.shape != probe.shape:
            raise TypeError("fn must be elementwise: map a tensor to a tensor of the same shape; "
                            f"got {type(out).__name__} {getattr(out, 'shape', '')}.")
        self._fn, self._fn_prime = fn, fn_prime
        self.name = name or getattr(fn, "__name__", "Elementwise")
        self._nodes: dict = {}

    exact_swap_symmetry = False

    def __repr__(self):
        return f"Elementwise({self.name}, deg={self.deg})"

    def fn(self, x):
        return self._fn(x)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        if self._fn_prime is not None:
            return self._fn_prime(x)
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self._fn(x).sum(), x)
        return g

    def _gh(self, dtype, device):
        key = (dtype, device)
        if key not in self._nodes:
            z, w = np.polynomial.hermite_e.hermegauss(self.deg)
            w = w / w.sum()
            self._nodes[key] = (torch.as_tensor(z, dtype=dtype, device=device),
                                torch.as_tensor(w, dtype=dtype, device=device))
        return self._nodes[key]

    def dual(self, c, v1, v2, need_dot):
        c, v1, v2 = torch.broadcast_tensors(c, v1, v2)
        shape = c.shape
        c, v1, v2 = c.reshape(-1), v1.reshape(-1), v2.reshape(-1)
        z, w = self._gh(c.dtype, c.device)
        D = z.numel()
        prod = v1 * v2
        rho = torch.where(prod > 0, c / torch.sqrt(torch.where(prod > 0, prod, torch.ones_like(prod))),
                          torch.zeros_like(c)).clamp(-1.0, 1.0)
        s1, s2 = torch.sqrt(v1), torch.sqrt(v2)
        comp = _sqrt_pos(1 - rho * rho)
        ww = w[:, None] * w[None, :]  # (D, D)
        chunk = max(1, (1 << 22) // (D * D))
        outs, dots = [], []
        for i in range(0, c.numel(), chunk):
            sl = slice(i, i + chunk)
            u = s1[sl, None, None] * z[None, :, None]  # (E, D, 1)
            v = s2[sl, None, None] * (rho[sl, None, None] * z[None, :, None] + comp[sl, None, None] * z[None, None, :])  # (E, D, D)
            u = u.expand_as(v)
            outs.append((self._fn(u) * self._fn(v) * ww).sum((-1, -2)))
            if need_dot:
                dots.append((self.derivative(u) * self.derivative(v) * ww).sum((-1, -2)))
        nngp = torch.cat(outs).reshape(shape)
        dot = torch.cat(dots).reshape(shape) if need_dot else None
        return nngp, dot


def Tanh(deg: int = 64) -> Elementwise:
    """tanh, by quadrature."""
    return Elementwise(torch.tanh, fn_prime=lambda x: 1 - torch.tanh(x) ** 2, deg=deg, name="tanh")


def Sigmoid(deg: int = 64) -> Elementwise:
    """The logistic sigmoid, by quadrature."""
    return Elementwise(torch.sigmoid, fn_prime=lambda x: torch.sigmoid(x) * (1 - torch.sigmoid(x)),
                       deg=deg, name="sigmoid")
