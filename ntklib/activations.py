r"""Nonlinearities and their dual activations.

For :math:`(u, v) \sim \mathcal N\!\left(0, \begin{pmatrix}\Sigma_{11} & \Sigma_{12}\\ \Sigma_{12} & \Sigma_{22}\end{pmatrix}\right)`
a nonlinearity :math:`\phi` maps the kernel record as

.. math::
    \Sigma' = \mathbb E[\phi(u)\phi(v)], \qquad
    \Theta' = \dot\Sigma\,\Theta, \quad \dot\Sigma = \mathbb E[\phi'(u)\phi'(v)].

Closed forms (derived in notebooks 01-02, checked against quadrature, Monte Carlo and 50-digit
mpmath in ``tests/library/test_activations.py``), with
:math:`\rho = \cos\theta = \Sigma_{12}/\sqrt{\Sigma_{11}\Sigma_{22}}`:

* ``ABRelu(a, b)`` (:math:`\phi(x) = a\min(x,0) + b\max(x,0)`; ``Relu`` is (0, 1)):
  :math:`\Sigma' = \frac{(a-b)^2}{2\pi}\sqrt{\Sigma_{11}\Sigma_{22}-\Sigma_{12}^2} + \big(\frac{a^2+b^2}{2} - \frac{(a-b)^2}{2\pi}\theta\big)\Sigma_{12}`,
  :math:`\dot\Sigma = \frac{a^2+b^2}{2} - \frac{(a-b)^2}{2\pi}\theta`.
  For ReLU this is the arc-cosine kernel :math:`\frac{\sqrt{\Sigma_{11}\Sigma_{22}}}{2\pi}(\sin\theta + (\pi-\theta)\cos\theta)`
  and :math:`\dot\Sigma = \frac{\pi-\theta}{2\pi}`. It is homogeneous of degree 1, so variances
  outside :math:`[2^{-500}, 2^{500}]` (whose products would underflow or overflow) are first
  scaled by powers of two (exact) and the result scaled back.
* ``Erf(a, b, c)`` (:math:`\phi(x) = a\,\mathrm{erf}(bx) + c`), with :math:`a_i = 1 + 2b^2\Sigma_{ii}`:
  :math:`\Sigma' = \frac{2a^2}{\pi}\arcsin\frac{2b^2\Sigma_{12}}{\sqrt{a_1a_2}} + c^2`,
  :math:`\dot\Sigma = \frac{4a^2b^2}{\pi}\big(a_1a_2 - 4b^4\Sigma_{12}^2\big)^{-1/2}`.
* ``Gelu`` (:math:`\phi(x) = x\Phi(x)`; Tsuchida et al., arXiv:2002.08517), with :math:`a_i = 1 + \Sigma_{ii}`,
  :math:`\delta^2 = a_1a_2 - \Sigma_{12}^2`, :math:`\alpha = \mathrm{atan2}(\Sigma_{12}, \delta)`:
  :math:`\Sigma' = \frac{\Sigma_{12}}4 + \frac1{2\pi}\big(\Sigma_{12}\alpha + \frac{\Sigma_{12}^2 + \Sigma_{11}\Sigma_{22}\delta^2}{a_1a_2\delta}\big)`,
  :math:`\dot\Sigma = \frac14 + \frac{\alpha}{2\pi} + \frac{\Sigma_{12}}{2\pi\delta}\big(\frac1{\delta^2} + \frac{a_1+a_2}{a_1a_2}\big)`.
* ``Sin(a, b, c)`` (:math:`\phi(x) = a\sin(bx + c)`), with :math:`m = (\Sigma_{11}+\Sigma_{22})/2`:
  :math:`\Sigma' = a^2 e^{-b^2 m}\big(\sinh(b^2\Sigma_{12}) + \sin^2(c)\,e^{-b^2\Sigma_{12}}\big)`,
  :math:`\dot\Sigma = a^2b^2 e^{-b^2 m}\big(\sinh(b^2\Sigma_{12}) + \cos^2(c)\,e^{-b^2\Sigma_{12}}\big)`
  (the same as :math:`\frac{a^2}{2}(e^{-b^2(m-\Sigma_{12})} - \cos 2c\, e^{-b^2(m+\Sigma_{12})})`).
* ``Elementwise(fn)``: any elementwise function, by two-dimensional Gauss--Hermite
  quadrature of degree ``deg`` per axis, with an estimate of its error (a warning above ``tol``).

**Stable forms.** Erf and Gelu are evaluated through :math:`p_i = 1/a_i`, :math:`q_i = 1 - p_i`
and :math:`\sin^2\theta = (1-\rho)(1+\rho)`: :math:`\delta^2/(a_1a_2) = p_1 + p_2 - p_1p_2 + q_1q_2\sin^2\theta`
has no cancellation (the textbook :math:`a_1a_2 - \Sigma_{12}^2` loses every digit at variances
near 1e16, where Gelu returned 1e153, and overflows at 1e154), and Sin through
:math:`\sinh`/``expm1`` (the difference of two exponentials lost :math:`\epsilon/\Sigma` relatively).
All are exact where the math is: the diagonal (:math:`\theta = 0`), :math:`\cos\theta = \pm 1`
(never NaN) and zero-norm inputs.

:meth:`Activation.derivative` is the one definition of :math:`\phi'` in ntklib (closed forms where
they exist, autograd otherwise): the quadrature, the finite networks' structured empirical NTK
(:class:`ntklib.networks.ActivationModule`) and :func:`ntklib.shortcut.lipschitz_constant` use it.
"""
from __future__ import annotations

import math
import warnings
from functools import lru_cache
from typing import Callable

import numpy as np
import torch

from .kernel import (Kernel, batch_diagonal, correlation, geometric_mean, in_normal_range, power_of_two_scale,
                     sin_minus_theta_cos, snap_equal_pairs, swap_inputs)
from .layers import Layer
from .networks import ActivationModule
from .validation import check_positive, check_positive_int, check_real

__all__ = ["Activation", "ABRelu", "Relu", "LeakyRelu", "Abs", "Identity", "Erf", "Sin", "Gelu",
           "Elementwise", "Tanh", "Sigmoid", "QuadratureAccuracyWarning"]


class QuadratureAccuracyWarning(RuntimeWarning):
    """The estimated Gauss--Hermite quadrature error of an ``Elementwise`` activation exceeds its ``tol``."""


class Activation(Layer):
    """Base class for nonlinearities: subclasses give ``fn`` and ``dual`` (and ``derivative`` where closed).

    On spatial kernels the nonlinearity acts at each position: entry (p, q) of the covariance
    of x and x' is mapped with the variances of x at p and of x' at q.
    """

    name = "Activation"
    # True when ``dual`` is exactly symmetric under swapping (v1, v2) (all closed forms). Quadrature
    # is not: its error differs between (x, x') and (x', x), so every path averages both orders.
    exact_swap_symmetry = True
    entrywise = True  # each pair (i, j) from the same pair and the variances (Layer.entrywise)

    def fn(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\phi'(x)`, elementwise: autograd of :meth:`fn` here, closed forms in subclasses.

        At a kink the value is torch's subgradient (ReLU: 0 at x = 0). A function that does not depend
        on its input has derivative 0.
        """
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            y = self.fn(x)
            if not y.requires_grad:  # constant: nothing to differentiate
                return torch.zeros_like(x)
            (g,) = torch.autograd.grad(y.sum(), x, allow_unused=True)
        return torch.zeros_like(x) if g is None else g

    def dual(self, c: torch.Tensor, v1: torch.Tensor, v2: torch.Tensor, need_dot: bool):
        r"""Return :math:`(\mathbb E[\phi(u)\phi(v)],\ \mathbb E[\phi'(u)\phi'(v)])` (the second
        None unless ``need_dot``) for covariance ``c`` and variances ``v1``, ``v2`` (broadcast)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def dual_gap(self, c, gap, v1, v2, need_dot: bool):
        r"""``dual`` plus the map of the gap :math:`\sqrt{v_1v_2} - c` (only where ``carries_gap``; see
        :class:`ntklib.Kernel`)."""
        raise NotImplementedError(f"{self!r} does not carry the gap.")  # pragma: no cover

    def check_accuracy(self, variances: torch.Tensor) -> None:
        """Warn when ``dual`` is inaccurate at these pre-activation variances (quadrature); closed forms: nothing."""

    def kernel_fn(self, k: Kernel) -> Kernel:
        k = snap_equal_pairs(k)  # equal (opposite) inputs: exactly +-var, also after layers that round (Conv)
        need_dot = k.ntk is not None
        v1, v2 = k.broadcast_variances()
        gap = None
        if k.gap is not None and self.carries_gap:
            nngp, dot, gap = self.dual_gap(k.nngp, k.gap, v1, v2, need_dot)
        else:
            nngp, dot = self.dual(k.nngp, v1, v2, need_dot=need_dot)
            if not (self.exact_swap_symmetry or k.diagonal or k.symmetric):  # both orders (x2=None: below)
                nngp, dot = self._mean_of_orders(k.nngp, v1, v2, nngp, dot, need_dot)
        var1 = self._self_dual(k, 1)
        var2 = var1 if k.var2 is k.var1 else self._self_dual(k, 2)
        if k.diagonal:
            nngp = var1
        elif k.symmetric:
            if not self.exact_swap_symmetry:  # k(x, x') == k(x', x) exactly: the transpose is the other order
                swap = lambda t: swap_inputs(t, len(k.spatial), k.diagonal_spatial)
                nngp = 0.5 * (nngp + swap(nngp))
                dot = None if dot is None else 0.5 * (dot + swap(dot))
            if not nngp.is_contiguous() or nngp.data_ptr() == k.nngp.data_ptr():  # never write into the input
                nngp = nngp.clone()
            batch_diagonal(nngp).copy_(var1)
        ntk = None if k.ntk is None else k.ntk * dot
        out = k.replace(nngp=nngp, ntk=ntk, var1=var1, var2=var2, gap=gap)
        return snap_equal_pairs(out, inplace=nngp.data_ptr() != k.nngp.data_ptr())

    def cross_kernel_fn(self, k: Kernel, var1, var2, symmetric: bool = False) -> Kernel:
        """:meth:`kernel_fn` without the variance map (given: see :meth:`Layer.cross_kernel_fn`); a
        dual that is not swap-symmetric is averaged over both orders, as :meth:`kernel_fn` does."""
        need_dot = k.ntk is not None
        v1, v2 = k.broadcast_variances(var1, var2)
        gap = None
        if k.gap is not None and self.carries_gap:
            nngp, dot, gap = self.dual_gap(k.nngp, k.gap, v1, v2, need_dot)
        else:
            nngp, dot = self.dual(k.nngp, v1, v2, need_dot=need_dot)
            if not self.exact_swap_symmetry:
                nngp, dot = self._mean_of_orders(k.nngp, v1, v2, nngp, dot, need_dot)
        return k.replace(nngp=nngp, ntk=None if dot is None else k.ntk * dot, var1=None, var2=None, gap=gap)

    def _mean_of_orders(self, c, v1, v2, nngp, dot, need_dot):
        """The mean of ``dual`` in the (x, x') order (given) and the (x', x) order, entry by entry."""
        nngp_swapped, dot_swapped = self.dual(c, v2, v1, need_dot=need_dot)
        return 0.5 * (nngp + nngp_swapped), (None if dot is None else 0.5 * (dot + dot_swapped))

    def _self_dual(self, k: Kernel, which: int) -> torch.Tensor:
        """The variance map: ``dual`` of each input's kernel with itself (``var1`` or ``var2``)."""
        var = k.var1 if which == 1 else k.var2
        kd = k.self_kernel(which)
        self.check_accuracy(kd.position_variances()[0])
        return self.dual(var, *kd.broadcast_variances(), need_dot=False)[0]

    def build(self, in_dim, generator, dtype):
        return [ActivationModule(self)], in_dim

    def __repr__(self) -> str:
        return f"{self.name}()"


# ---------------------------------------------------------------------------------------------
# closed forms (stable pieces in ntklib.kernel: correlation, geometric_mean, power_of_two_scale)
# ---------------------------------------------------------------------------------------------
class ABRelu(Activation):
    r""":math:`\phi(x) = a\min(x, 0) + b\max(x, 0)` (ReLU: a=0, b=1; |x|: a=-1, b=1)."""

    carries_gap = True
    gap_sensitive = True

    def __init__(self, a: float, b: float):
        self.a, self.b = check_real("a", a), check_real("b", b)
        self.name = "ABRelu"

    def __repr__(self) -> str:
        return f"ABRelu(a={self.a}, b={self.b})"

    def fn(self, x):
        # torch.where, not a*clamp(x, max=0) + b*clamp(x, min=0): clamp passes the gradient at
        # its bound, which made the autograd derivative at x = 0 equal to a + b (not a
        # subgradient; e.g. 1.1 for LeakyRelu(0.1)). Here it is a, like torch's relu/leaky_relu.
        return torch.where(x > 0, self.b * x, self.a * x)

    def derivative(self, x):
        return torch.where(x > 0, torch.full_like(x, self.b), torch.full_like(x, self.a))

    def dual(self, c, v1, v2, need_dot):
        # The same floating-point operations as the formulas in the module docstring, done in
        # place on two (n1, n2) buffers: this is the inner loop of every ReLU kernel.
        if torch.is_grad_enabled() and (c.requires_grad or v1.requires_grad or v2.requires_grad):
            return self._dual_differentiable(c, v1, v2, need_dot)  # in-place ops would break autograd
        if not in_normal_range(v1, v2):  # tiny or huge variances: v1 v2 would underflow or overflow
            return self._dual_scaled(c, v1, v2, need_dot)
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
        s = torch.sqrt(torch.clamp(prod - c * c, min=0.0))  # rounding can make it slightly negative
        theta = torch.atan2(s, c)
        theta = torch.where(prod == 0, torch.full_like(theta, math.pi / 2), theta)
        k = (a - b) ** 2 / (2 * math.pi)
        dot = (a * a + b * b) / 2 - k * theta
        return k * s + dot * c, (dot if need_dot else None)

    def _dual_scaled(self, c, v1, v2, need_dot):
        """:meth:`dual` at any scale: the kernel is homogeneous of degree 1 in (c, v1, v2), so scale the
        variances by powers of two into [1/4, 1) (exact), evaluate, and scale the NNGP back."""
        s1, inv1 = power_of_two_scale(v1)
        s2, inv2 = power_of_two_scale(v2)
        nngp, dot = self._dual_differentiable(c * s1 * s2, v1 * s1 * s1, v2 * s2 * s2, need_dot)
        return nngp * inv1 * inv2, dot

    def dual_gap(self, c, gap, v1, v2, need_dot):
        r"""The dual with the angle from the gap :math:`g = \sqrt{v_1v_2} - c` (full relative precision near
        :math:`\theta = 0`), and the gap of the output, :math:`g' = \frac{a^2+b^2}2 g - \frac{(a-b)^2}{2\pi}\sqrt{v_1v_2}\,(\sin\theta - \theta\cos\theta)`.

        With :math:`s = \sqrt{v_1v_2}`: :math:`1 - \cos\theta = g/s`, :math:`\theta = 2\,\mathrm{atan2}(\sqrt{g}, \sqrt{2s - g})`
        (the output's :math:`\sqrt{v_1'v_2'} = \frac{a^2+b^2}2 s`, and :math:`s - c' = g'` from the dual below)."""
        a, b = self.a, self.b
        s = geometric_mean(v1, v2)  # (n1, n2)
        zero = s == 0
        omc = torch.where(zero, 1.0, (gap / torch.where(zero, 1.0, s)).clamp(0.0, 2.0))  # 1 - cos; pi/2 at a zero input
        opc = 2 - omc  # 1 + cos(theta)
        theta = 2 * torch.atan2(torch.sqrt(omc), torch.sqrt(opc))
        k, m = (a - b) ** 2 / (2 * math.pi), (a * a + b * b) / 2
        dot = m - k * theta
        nngp = k * s * torch.sqrt(omc * opc) + dot * c
        gap = (m * gap - k * s * sin_minus_theta_cos(theta)).clamp_min(0.0)
        return nngp, (dot if need_dot else None), gap


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
        super().__init__(check_real("alpha", alpha), 1.0)

    def __repr__(self):
        return f"LeakyRelu(alpha={self.a})"


def Abs() -> ABRelu:
    """|x| = ABRelu(-1, 1)."""
    return ABRelu(-1.0, 1.0)


class Identity(Activation):
    """:math:`\\phi(x) = x`: :math:`\\Sigma' = \\Sigma`, :math:`\\dot\\Sigma = 1` (deep linear networks)."""

    name = "Identity"
    carries_gap = True

    def fn(self, x):
        return x

    def derivative(self, x):
        return torch.ones_like(x)

    def dual(self, c, v1, v2, need_dot):
        return c, (torch.ones_like(c) if need_dot else None)

    def dual_gap(self, c, gap, v1, v2, need_dot):
        return c, (torch.ones_like(c) if need_dot else None), gap


def _real_params(**params) -> tuple[float, ...]:
    return tuple(check_real(name, value) for name, value in params.items())


def _stable_terms(c, v1, v2, scale: float):
    r"""For :math:`a_i = 1 + \text{scale}\,v_i`: :math:`p_i = 1/a_i`, :math:`q_i = \text{scale}\,v_i p_i`,
    :math:`r = c\,\text{scale}/\sqrt{a_1a_2} = \rho\sqrt{q_1q_2}` and
    :math:`u = 1 - r^2 = p_1 + p_2 - p_1p_2 + q_1q_2\sin^2\theta` (no cancellation, no overflow)."""
    p1, p2 = 1 / (1 + scale * v1), 1 / (1 + scale * v2)
    q1, q2 = scale * v1 * p1, scale * v2 * p2
    rho, sin2 = correlation(c, v1, v2)
    q12 = q1 * q2
    u = ((p1 + p2) - p1 * p2) + q12 * sin2  # symmetric in (1, 2); p1 p2 <= (p1 + p2)/2: at most one bit lost
    return p1, p2, q12, rho * (torch.sqrt(q1) * torch.sqrt(q2)), u  # r without forming q1 q2 (underflow)


class Erf(Activation):
    r""":math:`\phi(x) = a\,\mathrm{erf}(bx) + c` (neural-tangents' ``Erf``); the arcsin kernel."""

    def __init__(self, a: float = 1.0, b: float = 1.0, c: float = 0.0):
        self.a, self.b, self.c = _real_params(a=a, b=b, c=c)
        self.name = "Erf"

    def __repr__(self):
        return f"Erf(a={self.a}, b={self.b}, c={self.c})"

    def fn(self, x):
        return self.a * torch.special.erf(self.b * x) + self.c

    def derivative(self, x):
        return (2 * self.a * self.b / math.sqrt(math.pi)) * torch.exp(-(self.b * x) ** 2)

    def dual(self, c, v1, v2, need_dot):
        # arcsin(z/sqrt(a1 a2)) = atan2(r, sqrt(u)) and (a1 a2 - z^2)^(-1/2) = sqrt(p1 p2 / u), z = 2 b^2 c
        a, b, shift = self.a, self.b, self.c
        p1, p2, _, r, u = _stable_terms(c, v1, v2, 2 * b * b)
        root_u = torch.sqrt(u)
        nngp = (2 * a * a / math.pi) * torch.atan2(r, root_u) + shift * shift
        dot = (4 * a * a * b * b / math.pi) * (torch.sqrt(p1) * torch.sqrt(p2)) / root_u if need_dot else None
        return nngp, dot


class Sin(Activation):
    r""":math:`\phi(x) = a\sin(bx + c)` (closed form in the module docstring)."""

    def __init__(self, a: float = 1.0, b: float = 1.0, c: float = 0.0):
        self.a, self.b, self.c = _real_params(a=a, b=b, c=c)
        self.name = "Sin"

    def __repr__(self):
        return f"Sin(a={self.a}, b={self.b}, c={self.c})"

    def fn(self, x):
        return self.a * torch.sin(self.b * x + self.c)

    def derivative(self, x):
        return self.a * self.b * torch.cos(self.b * x + self.c)

    def dual(self, c, v1, v2, need_dot):
        # e^{-b^2 m} sinh(b^2 c) = sign(c) e^{-b^2 (m - |c|)} (1 - e^{-2 b^2 |c|}) / 2: both factors <= 1,
        # the second by expm1 (no cancellation at small c, no overflow at large variances; m >= |c|)
        a2, b2 = self.a ** 2, self.b ** 2
        m = (v1 + v2) / 2
        odd = torch.sign(c) * torch.exp(-b2 * (m - c.abs())) * (-0.5 * torch.expm1(-2 * b2 * c.abs()))
        far = torch.exp(-b2 * (m + c))  # e^{-b^2 m} e^{-b^2 c}
        nngp = a2 * (odd + math.sin(self.c) ** 2 * far)
        dot = a2 * b2 * (odd + math.cos(self.c) ** 2 * far) if need_dot else None
        return nngp, dot


class Gelu(Activation):
    r""":math:`\phi(x) = x\,\Phi(x)` with :math:`\Phi` the standard normal CDF (exact, not the tanh approximation)."""

    name = "Gelu"

    def fn(self, x):
        return torch.nn.functional.gelu(x)

    def derivative(self, x):
        return 0.5 * torch.erfc(-x / math.sqrt(2)) + x * torch.exp(-x * x / 2) / math.sqrt(2 * math.pi)

    def dual(self, c, v1, v2, need_dot):
        # The module docstring's formula with g = sqrt(a1 a2), Sigma12 = g r, delta = g sqrt(u), and
        # 1/4 + alpha/(2 pi) = beta/(2 pi), beta = pi/2 + alpha = atan2(sqrt(u), -r) (no cancellation at r ~ -1):
        # nngp = g [r beta + (r/g)^2/sqrt(u) + q1 q2 sqrt(u)] / (2 pi)
        p1, p2, q12, r, u = _stable_terms(c, v1, v2, 1.0)
        g = torch.sqrt(1 + v1) * torch.sqrt(1 + v2)
        root_u = torch.sqrt(u)
        beta = torch.atan2(root_u, -r)
        nngp = g * (r * beta + (r / g) ** 2 / root_u + q12 * root_u) / (2 * math.pi)
        dot = None
        if need_dot:
            dot = (beta + r / root_u * ((1 / g) ** 2 / u + (p1 + p2))) / (2 * math.pi)
        return nngp, dot


# ---------------------------------------------------------------------------------------------
# any elementwise function, by quadrature
# ---------------------------------------------------------------------------------------------
_NUMPY_MAX_DEG = 370  # numpy's hermegauss overflows (non-finite weights) from degree 371 on


@lru_cache(maxsize=32)
def _gauss_hermite(deg: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilists' Gauss--Hermite nodes and weights (summing to 1): numpy's rule up to degree 370,
    scipy's (asymptotic nodes, accurate to ~1e-14) beyond, where numpy's weights are not finite."""
    if deg <= _NUMPY_MAX_DEG:
        z, w = np.polynomial.hermite_e.hermegauss(deg)
    else:
        from scipy.special import roots_hermitenorm
        z, w = roots_hermitenorm(deg)
    w = w / w.sum()
    if not (np.isfinite(z).all() and np.isfinite(w).all()):  # pragma: no cover - both routines are finite here
        raise ValueError(f"deg={deg}: the Gauss-Hermite rule is not finite in float64.")
    return z, w


def _caller_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside ntklib (warnings point at the user's call)."""
    import os
    import sys
    root = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(root):
        frame, level = frame.f_back, level + 1
    return level


def _tanh_prime(x):
    return 1 - torch.tanh(x) ** 2


def _sigmoid_prime(x):
    s = torch.sigmoid(x)
    return s * (1 - s)


class Elementwise(Activation):
    r"""Any elementwise nonlinearity, by Gauss--Hermite quadrature.

    .. math::
        \mathbb E[\phi(u)\phi(v)] \approx \sum_{i,j} w_i w_j\,
        \phi\big(\sqrt{\Sigma_{11}}\,z_i\big)\,
        \phi\big(\sqrt{\Sigma_{22}}\,(\rho z_i + \sqrt{1-\rho^2}\,z_j)\big),
        \qquad \rho = \Sigma_{12}/\sqrt{\Sigma_{11}\Sigma_{22}},

    with probabilists' Hermite nodes :math:`z_i` and weights :math:`w_i` (summing to 1), and
    the same for :math:`\phi'`. This rule (neural-tangents' ``ElementwiseNumerical``) is not
    symmetric under swapping x and x': every path (``x2=None`` or given, tiles) averages the two
    orders, so that one question gets one answer. On the diagonal it is the one-dimensional rule.

    Entire functions at unit scale (erf, sin, gelu) converge faster than any power of ``deg``
    (1e-10 at deg 64); functions with complex poles near the real axis converge slowly (tanh at
    pre-activation variance 2: NTK error 7e-5 at deg 64, 1e-7 at deg 128; at variance 20: 0.3) and
    kinks (ReLU-like) like 1/deg: prefer closed forms where they exist.

    **Accuracy check.** Each variance map estimates the error of the rule at the inputs'
    variances: :math:`E[\phi]`, :math:`E[\phi^2]`, :math:`E[\phi']`, :math:`E[\phi'^2]` of
    :math:`\mathcal N(0, \Sigma_{ii})` by the one-dimensional rule of degree ``deg`` against the rule
    of degree 2 ``deg`` (relative to :math:`E[\phi^2]`, :math:`E[\phi'^2]`); above ``tol`` a
    :class:`QuadratureAccuracyWarning` says by how much and at which variance (the off-diagonal
    entries use the same nodes per axis, so their error is of the same order).

    Args:
      fn: elementwise torch function (tensor -> tensor of the same shape), e.g. ``torch.tanh``.
      fn_prime: its derivative; by default computed by autograd (``fn`` must then be a torch function).
      deg: quadrature nodes per axis (numpy's rule up to 370, scipy's beyond; the cost grows as deg^2).
      name: shown in ``repr``.
      tol: relative error above which the accuracy check warns.
    """

    exact_swap_symmetry = False

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], fn_prime: Callable | None = None,
                 deg: int = 64, name: str | None = None, tol: float = 1e-4):
        if not callable(fn):
            raise TypeError(f"fn must be a callable elementwise function (e.g. torch.tanh); got {fn!r}.")
        if fn_prime is not None and not callable(fn_prime):
            raise TypeError(f"fn_prime must be callable or None; got {fn_prime!r}.")
        self.deg = check_positive_int("deg", deg)
        self.tol = check_positive("tol", tol)
        self._fn, self._fn_prime = fn, fn_prime
        self.name = name or getattr(fn, "__name__", "Elementwise")
        probe = torch.linspace(-2, 2, 5, dtype=torch.float64)
        for label, f in (("fn", fn), ("fn_prime", fn_prime)):
            if f is not None:
                self._probe(label, f, probe)
        if fn_prime is None:
            try:
                g = Activation.derivative(self, probe)
            except Exception as err:
                raise TypeError(f"fn must be differentiable by torch autograd (a torch function such as torch.tanh, "
                                f"not numpy's np.tanh), or pass fn_prime=its derivative; autograd raised "
                                f"{type(err).__name__}: {err}") from None
            if not bool(torch.isfinite(g).all()):
                raise ValueError("the autograd derivative of fn is not finite on [-2, 2]; pass fn_prime.")
        _gauss_hermite(self.deg)

    @staticmethod
    def _probe(label: str, f: Callable, probe: torch.Tensor) -> None:
        try:
            out = f(probe)
        except Exception as err:
            raise TypeError(f"{label} must accept a torch.Tensor; calling it on one raised {type(err).__name__}: "
                            f"{err}") from None
        if not isinstance(out, torch.Tensor) or out.shape != probe.shape:
            raise TypeError(f"{label} must be elementwise: map a tensor to a tensor of the same shape; "
                            f"got {type(out).__name__} {getattr(out, 'shape', '')}.")

    def __repr__(self):
        return f"Elementwise({self.name}, deg={self.deg})"

    def fn(self, x):
        return self._fn(x)

    def derivative(self, x):
        return super().derivative(x) if self._fn_prime is None else self._fn_prime(x)

    def _gh(self, dtype, device, deg=None):
        z, w = _gauss_hermite(self.deg if deg is None else deg)
        return torch.as_tensor(z, dtype=dtype, device=device), torch.as_tensor(w, dtype=dtype, device=device)

    def quadrature_error(self, variances: torch.Tensor) -> tuple[float, float]:
        """(estimated relative error, the variance where it is largest) of the rule at these variances
        (the accuracy check of the class docstring)."""
        v = variances.detach().reshape(-1)
        v = torch.unique(v) if v.numel() > 1 else v
        if v.numel() == 0:
            return 0.0, 0.0
        est = []
        for deg in (self.deg, 2 * self.deg):
            z, w = self._gh(v.dtype, v.device, deg)
            x = torch.sqrt(v)[:, None] * z[None, :]  # (m, deg)
            moments = []
            for f in (self.fn(x), self.derivative(x)):
                moments.append(((f * w).sum(1), (f * f * w).sum(1)))  # E[g], E[g^2]: (m,)
            est.append(moments)
        err = torch.zeros_like(v)
        for (m1, m2), (r1, r2) in zip(est[0], est[1]):
            scale = r2.abs()
            ok = scale > 0
            e = torch.maximum((m2 - r2).abs() / torch.where(ok, scale, 1.0),
                              (m1 - r1).abs() / torch.sqrt(torch.where(ok, scale, 1.0)))
            err = torch.maximum(err, torch.where(ok, e, 0.0))
        err = torch.where(torch.isfinite(err), err, math.inf)
        worst = int(err.argmax())
        return float(err[worst]), float(v[worst])

    def check_accuracy(self, variances):
        err, var = self.quadrature_error(variances)
        if err > self.tol:
            warnings.warn(
                f"{self!r}: the Gauss-Hermite quadrature error is about {err:.2g} (relative, estimated by "
                f"comparing degrees {self.deg} and {2 * self.deg}) at pre-activation variance {var:.4g}, above "
                f"tol={self.tol:g}. Increase deg, use a closed form (Erf, Gelu, Sin, Relu) if there is one, or "
                "make the pre-activations smaller (W_std, b_std, input scale).", QuadratureAccuracyWarning,
                stacklevel=_caller_stacklevel())

    def dual(self, c, v1, v2, need_dot):
        c, v1, v2 = torch.broadcast_tensors(c, v1, v2)
        shape = c.shape
        c, v1, v2 = c.reshape(-1), v1.reshape(-1), v2.reshape(-1)
        z, w = self._gh(c.dtype, c.device)
        D = z.numel()
        rho, sin2 = correlation(c, v1, v2)
        s1, s2 = torch.sqrt(v1), torch.sqrt(v2)
        comp = torch.sqrt(sin2)
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


def Tanh(deg: int = 64, tol: float = 1e-4) -> Elementwise:
    """tanh, by quadrature (:class:`Elementwise`)."""
    return Elementwise(torch.tanh, fn_prime=_tanh_prime, deg=deg, name="tanh", tol=tol)


def Sigmoid(deg: int = 64, tol: float = 1e-4) -> Elementwise:
    """The logistic sigmoid, by quadrature (:class:`Elementwise`)."""
    return Elementwise(torch.sigmoid, fn_prime=_sigmoid_prime, deg=deg, name="sigmoid", tol=tol)
