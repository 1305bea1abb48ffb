r"""Shortcut ("depth-induced") networks: a deep narrow stack read out every ``hbar`` layers.

Our formalization of the "shortcut-related" network of the depth-induced NTK paper (arXiv:2511.05585;
derived in notebook 05 and docs/depth.md, part B). The paper's summary is informal; every choice below
is ours and is stated.

Architecture (NTK parameterization, the conventions of :mod:`ntklib.layers`). Input
:math:`h^0 = x \in \mathbb R^{d}` (or whatever representation feeds the layer), hidden width
:math:`n`, :math:`L = K\hbar` hidden layers:

.. math::
    u^l = \frac{s_l\,\sigma_w}{\sqrt{n_{l-1}}} W^l h^{l-1}
          + [\text{inject}]\ \frac{\sigma_v}{\sqrt{d}} V^l x + \sigma_b b^l, \qquad
    h^l = \phi(u^l), \qquad l = 1, \dots, L,

with :math:`n_0 = d`, :math:`n_l = n`, all of :math:`W^l, V^l, b^l` i.i.d. :math:`\mathcal N(0,1)`
(input injection :math:`V^l` only for :math:`l \ge 2`, and only with ``inject_std``; bias only
with ``b_std``). Readouts at the layers :math:`\kappa\hbar` with independent
:math:`J_\kappa \sim \mathcal N(0, I)`:

.. math::
    f(x) = \frac{1}{\sqrt M}\sum_{\kappa \in R} \frac{\sigma_J}{\sqrt{n_{\kappa\hbar}}}\, J_\kappa^\top h^{\kappa\hbar}(x),
    \qquad R = \{0, 1, \dots, K\}\ (\text{or } \{1, \dots, K\}), \quad M = |R|.

``readout_input=True`` (default, the paper's :math:`\kappa = 0..K`) includes the readout of the
input itself (a linear term). :math:`M = |R|` is our choice of the paper's unspecified normalizer
:math:`M_z`: it keeps :math:`\mathrm{Var} f` an average of per-layer variances, :math:`O(1)` in :math:`K`.

"Stable-pertinent" constraint (``stable_eps``): at initialization, each hidden-to-hidden
effective matrix :math:`A_l = \sigma_w W^l/\sqrt n` (:math:`l \ge 2`) is rescaled,
:math:`s_l = \min\big(1, \varepsilon / (C_\phi \|A_l\|_2)\big)`, so that
:math:`C_\phi\,\|s_l A_l\|_2 \le \varepsilon < 1`, with :math:`\|\cdot\|_2` the spectral norm and
:math:`C_\phi` the Lipschitz constant of :math:`\phi` (:func:`lipschitz_constant`). Then every
layer map :math:`h^{l-1} \mapsto h^l` is an :math:`\varepsilon`-contraction, which is what makes
layers far apart weakly dependent. The first layer (:math:`n \times d`) is not part of the
recurrence and is left alone. :math:`s_l` is a constant of the network (not trained).
The paper does not say which norm or constant; these are our choices.

Infinite-width kernels (``kernel_fn``), derived in docs/depth.md. Because the readouts are
independent, the cross terms :math:`\kappa \ne \kappa'` vanish as :math:`n \to \infty`
(:func:`readout_ntk_blocks`; tested) and

.. math::
    \Sigma_f = \frac{1}{M}\sum_{\kappa\in R} \sigma_J^2\, \Sigma_h^{(\kappa\hbar)}, \qquad
    \Theta_f = \frac{1}{M}\sum_{\kappa\in R} \sigma_J^2\big(\Sigma_h^{(\kappa\hbar)} + \Theta_h^{(\kappa\hbar)}\big),

the average over readouts of the kernels of plain networks of depth :math:`\kappa\hbar`; the
hidden recursion is ntklib's Dense/activation recursion, plus :math:`\sigma_v^2\,\Sigma^{(0)}`
in :math:`\Sigma_u` and :math:`\sigma_v^2(\Sigma^{(0)} + \Theta^{(0)})` in :math:`\Theta_u` for
injection. With ``stable_eps`` the kernel uses the :math:`n \to \infty` value of the rescaling,
:math:`\|A_l\|_2 \to 2\sigma_w` (Bai--Yin), i.e. :math:`\sigma_w \mapsto \min(\sigma_w, \varepsilon/(2C_\phi))`
for :math:`l \ge 2`. The NNGP part is exact in expectation at any width for the readout average
(independent :math:`J_\kappa`); the limit of the hidden kernels is the usual one.

This infinite-*width* limit is a sum of per-depth kernels (:meth:`Shortcut.readout_kernels` gives each).
The paper's claims are about depth :math:`K \to \infty` at fixed narrow width, which Monte Carlo over
many finite networks measures: :class:`ntklib.shortcut_ensemble.ShortcutEnsemble` holds thousands of them as batched tensors
(:mod:`ntklib.experiments.depth_induced` has the sweeps).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from .validation import as_inputs, check_nonneg, check_positive_int
from .activations import ABRelu, Activation, Erf, Identity, Relu, Sin
from .kernel import Kernel
from .layers import Dense, Layer
from .networks import DenseModule, SerialModule

if TYPE_CHECKING:
    from .shortcut_ensemble import ShortcutEnsemble

__all__ = ["Shortcut", "ShortcutModule", "ReadoutsView", "lipschitz_constant", "readout_ntk_blocks",
           "shortcut_module"]


def lipschitz_constant(activation: Activation, *, grid: int = 200001, bound: float = 20.0) -> float:
    r"""Lipschitz constant :math:`C_\phi = \sup_x |\phi'(x)|` of an ntklib activation.

    Exact for ``ABRelu`` family (:math:`\max(|a|, |b|)`; ReLU, leaky ReLU, |x|: 1), ``Identity``
    (1), ``Erf(a, b, c)`` (:math:`2|ab|/\sqrt\pi`) and ``Sin(a, b, c)`` (:math:`|ab|`). Any other
    activation (Gelu, Tanh, Sigmoid, Elementwise): the maximum of :math:`|\phi'|` on ``grid``
    points of :math:`[-\text{bound}, \text{bound}]` (tanh: 1, sigmoid: 1/4, GELU: 1.0678...).
    """
    if not isinstance(activation, Activation):
        raise TypeError(f"activation must be an ntklib activation (e.g. ntklib.Relu()); got {activation!r}.")
    if isinstance(activation, ABRelu):
        return max(abs(activation.a), abs(activation.b))
    if isinstance(activation, Identity):
        return 1.0
    if isinstance(activation, Erf):
        return 2 * abs(activation.a * activation.b) / math.sqrt(math.pi)
    if isinstance(activation, Sin):
        return abs(activation.a * activation.b)
    xs = torch.linspace(-bound, bound, grid, dtype=torch.float64)
    if hasattr(activation, "derivative"):
        g = activation.derivative(xs)
    else:
        with torch.enable_grad():
            xr = xs.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(activation.fn(xr).sum(), xr)
    return float(g.abs().max())


class ShortcutModule(nn.Module):
    """The finite shortcut network (see the module docstring); built by :meth:`Shortcut.build`.

    ``forward(h0)`` returns f (n, out_dim); :meth:`readouts` returns the M terms of the sum,
    each already divided by sqrt(M), shape (n, M, out_dim). ``rescale`` holds the factors
    :math:`s_l` (1.0 where the constraint was inactive or off), layers 1..L.
    """

    def __init__(self, spec: "Shortcut", in_dim: int, generator: torch.Generator, dtype: torch.dtype):
        super().__init__()
        self.spec, self.in_dim = spec, in_dim
        n, L = spec.width, spec.depth
        self.act_fn = spec.activation.fn
        self.readout_layers = spec.readout_layers  # hidden-layer indices read out (0 = the input)
        self.hidden = nn.ModuleList()
        self.inject = nn.ModuleDict()
        c_phi = spec.lipschitz
        rescale = []
        for l in range(1, L + 1):
            fan_in = in_dim if l == 1 else n
            dense = DenseModule(fan_in, n, spec.W_std, spec.b_std, "ntk", generator, dtype)
            s = 1.0
            if spec.stable_eps is not None and l >= 2 and spec.W_std > 0:
                with torch.no_grad():
                    norm = float(torch.linalg.matrix_norm(dense.weight.double(), ord=2)) * spec.W_std / math.sqrt(fan_in)
                if c_phi * norm > spec.stable_eps:
                    s = spec.stable_eps / (c_phi * norm)
                    dense.W_std = spec.W_std * s  # weight_scale = s * W_std / sqrt(n): the rescaled matrix
            rescale.append(s)
            self.hidden.append(dense)
            if spec.inject_std is not None and l >= 2:
                self.inject[str(l)] = DenseModule(in_dim, n, spec.inject_std, None, "ntk", generator, dtype)
        self.rescale = tuple(rescale)
        self.readout = nn.ModuleList(
            DenseModule(in_dim if l == 0 else n, spec.out_dim, spec.readout_std, None, "ntk", generator, dtype)
            for l in self.readout_layers)

    @property
    def n_readouts(self) -> int:
        return len(self.readout_layers)

    def hidden_states(self, h0: torch.Tensor) -> list[torch.Tensor]:
        """[h^0, h^1, ..., h^L], each (n, width) (h^0 = the input, (n, in_dim))."""
        hs = [h0]
        h = h0
        for l, dense in enumerate(self.hidden, start=1):
            u = dense(h)  # (n, width)
            if str(l) in self.inject:
                u = u + self.inject[str(l)](h0)
            h = self.act_fn(u)
            hs.append(h)
        return hs

    def readouts(self, h0: torch.Tensor) -> torch.Tensor:
        """The terms of f: (n, M, out_dim), term kappa = sigma_J J_kappa . h^{kappa hbar} / sqrt(n M)."""
        hs = self.hidden_states(h0)
        scale = 1.0 / math.sqrt(self.n_readouts)
        return torch.stack([r(hs[l]) for r, l in zip(self.readout, self.readout_layers)], 1) * scale

    def forward(self, h0: torch.Tensor) -> torch.Tensor:
        return self.readouts(h0).sum(1)  # (n, out_dim)

    has_ntk_parts = True

    def ntk_parts(self, h0: torch.Tensor):
        """[(s_W, s_b, input (n, in), delta (n, k, out))] for every dense map, delta = d f / d(its output):
        the parts of the structured empirical NTK (:mod:`ntklib.empirical`)."""
        k = self.spec.out_dim
        with torch.enable_grad():
            h0 = h0.detach()
            h, hs, us = h0, [h0], []
            for l, dense in enumerate(self.hidden, start=1):
                u = dense(h)  # (n, width)
                if str(l) in self.inject:
                    u = u + self.inject[str(l)](h0)
                us.append(u)
                h = self.act_fn(u)
                hs.append(h)
            f = sum(r(hs[l]) for r, l in zip(self.readout, self.readout_layers))  # (n, k) times sqrt(M)
            grads = [torch.autograd.grad(f[:, a].sum(), us, retain_graph=a < k - 1, allow_unused=True)
                     for a in range(k)]
        scale = 1.0 / math.sqrt(self.n_readouts)
        parts = []
        for l, dense in enumerate(self.hidden, start=1):
            delta = torch.stack([g[l - 1] if g[l - 1] is not None else torch.zeros_like(us[l - 1])
                                 for g in grads], 1) * scale  # (n, k, width)
            parts.append((dense.weight_scale, dense.bias_scale, hs[l - 1].detach(), delta))
            if str(l) in self.inject:
                parts.append((self.inject[str(l)].weight_scale, 0.0, h0, delta))
        n = h0.shape[0]
        eye = torch.eye(k, dtype=h0.dtype, device=h0.device).expand(n, k, k) * scale  # (n, k, k)
        for r, l in zip(self.readout, self.readout_layers):
            parts.append((r.weight_scale, 0.0, hs[l].detach(), eye))
        return parts

    def structured_ntk(self, x1: torch.Tensor, x2: torch.Tensor | None = None) -> torch.Tensor:
        r"""Empirical NTK (mean over outputs), (n1, n2): ``empirical_ntk(self, x1, x2, implementation="structured")``.

        Sum over dense maps (hidden :math:`W^l`, injection :math:`V^l`, readouts :math:`J_\kappa`) of
        :math:`(s_W^2\, h(x)\cdot h(x') + s_b^2)\, \delta_a(x)\cdot\delta_a(x')`: cost :math:`O(n_1 n_2 L n)`
        instead of the Jacobian's :math:`O(n_1 n_2 L n^2)`.
        """
        from .empirical import empirical_ntk

        return empirical_ntk(self, x1, x2, implementation="structured")

    def extra_repr(self) -> str:
        return repr(self.spec)


class ReadoutsView(nn.Module):
    """The per-readout outputs of a shortcut network as one flat output: x -> (n, M * out_dim).

    Shares the parameters of ``net``; ``empirical_ntk(ReadoutsView(net), x1, x2, mode="full")``
    gives the blocks :math:`\\langle \\partial r_\\kappa(x), \\partial r_{\\kappa'}(x')\\rangle`.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        # not registered a second time as a submodule: torch.func.functional_call swaps parameters by name,
        # and a module reachable under two names came back holding functorch's temporary tensors
        self.__dict__["shortcut"] = _find_shortcut(net)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if isinstance(self.net, SerialModule):
            for m in self.net:
                if m is self.shortcut:
                    break
                h = m(h)
        r = self.shortcut.readouts(h)  # (n, M, out)
        return r.reshape(r.shape[0], -1)


def _find_shortcut(net: nn.Module) -> ShortcutModule:
    if isinstance(net, ShortcutModule):
        return net
    if isinstance(net, SerialModule):
        found = [m for m in net if isinstance(m, ShortcutModule)]
        if len(found) == 1 and net[len(net) - 1] is found[0]:
            return found[0]
    raise TypeError("net must be a shortcut network: Shortcut(...).module(in_dim) (optionally after other "
                    f"layers, with the Shortcut layer last); got {type(net).__name__}.")


def readout_ntk_blocks(net: nn.Module, x1, x2=None, *, chunk_size: int = 64) -> torch.Tensor:
    r"""Per-readout blocks of the empirical NTK, :math:`C_{\kappa\kappa'}(x, x') = \frac{1}{k}\sum_a
    \langle \partial_\theta r_{\kappa a}(x), \partial_\theta r_{\kappa' a}(x')\rangle`, shape (n1, n2, M, M).

    :math:`r_\kappa` is the readout term including its :math:`1/\sqrt M`, so the empirical NTK
    of :math:`f` is ``blocks.sum((-1, -2))``; the diagonal :math:`\kappa = \kappa'` is the
    "independent readouts" part that survives infinite width, the rest are the cross terms.
    """
    from .empirical import empirical_ntk

    view = ReadoutsView(net)
    sc = view.shortcut
    full = empirical_ntk(view, x1, x2, mode="full", implementation="jacobian", chunk_size=chunk_size)
    M, k = sc.n_readouts, sc.spec.out_dim
    full = full.reshape(full.shape[0], full.shape[1], M, k, M, k)  # (n1, n2, M, k, M, k)
    return torch.diagonal(full, dim1=3, dim2=5).mean(-1)  # (n1, n2, M, M)


class Shortcut(Layer):
    r"""Shortcut network read out every ``hbar`` layers (module docstring: equations and choices).

    Args:
      width: hidden width :math:`n`.
      K: number of readouts after the input (hidden depth :math:`L = K\hbar`).
      hbar: spacing :math:`\hbar` of the readouts.
      activation: an ntklib activation (default ``Relu()``).
      W_std: :math:`\sigma_w` of the hidden layers (default :math:`\sqrt 2`, ReLU's critical value).
      b_std: :math:`\sigma_b` of the hidden layers, or None (default) for no bias.
      readout_std: :math:`\sigma_J` of every readout.
      out_dim: number of outputs (independent readouts per output).
      readout_input: include the readout :math:`\kappa = 0` of the input (the paper's :math:`\kappa = 0..K`).
      inject_std: :math:`\sigma_v` of the input injection :math:`V^l x` at layers 2..L, or None (default): none.
      stable_eps: :math:`\varepsilon \in (0, 1)` of the stable-pertinent constraint, or None (default): off.
      lipschitz: :math:`C_\phi`; default :func:`lipschitz_constant` of ``activation``.

    It is a whole network (input to output); put it last in a ``serial``.
    """

    def __init__(self, width: int, K: int, hbar: int = 1, activation: Activation | None = None, *,
                 W_std: float = math.sqrt(2.0), b_std: float | None = None, readout_std: float = 1.0,
                 out_dim: int = 1, readout_input: bool = True, inject_std: float | None = None,
                 stable_eps: float | None = None, lipschitz: float | None = None):
        self.width = check_positive_int("width", width)
        self.K = check_positive_int("K", K)
        self.hbar = check_positive_int("hbar", hbar)
        activation = Relu() if activation is None else activation
        if isinstance(activation, type):
            raise TypeError(f"activation is the class {activation.__name__}; call it: {activation.__name__}().")
        if not isinstance(activation, Activation):
            raise TypeError(f"activation must be an ntklib activation (Relu(), Erf(), Elementwise(fn), ...); "
                            f"got {activation!r}.")
        self.activation = activation
        self.W_std = check_nonneg("W_std", W_std)
        self.b_std = check_nonneg("b_std", b_std, allow_none=True)
        self.readout_std = check_nonneg("readout_std", readout_std)
        self.out_dim = check_positive_int("out_dim", out_dim)
        if not isinstance(readout_input, (bool, np.bool_)):
            raise TypeError(f"readout_input must be True or False; got {readout_input!r}.")
        self.readout_input = bool(readout_input)
        self.inject_std = check_nonneg("inject_std", inject_std, allow_none=True)
        if stable_eps is not None:
            eps = check_nonneg("stable_eps", stable_eps)
            if not 0 < eps < 1:
                raise ValueError(f"stable_eps must be in (0, 1) (the constraint C_phi ||W|| <= eps < 1); got {stable_eps!r}.")
            stable_eps = eps
        self.stable_eps = stable_eps
        self.lipschitz = lipschitz_constant(activation) if lipschitz is None else check_nonneg("lipschitz", lipschitz)
        if self.stable_eps is not None and self.lipschitz == 0:
            raise ValueError("stable_eps needs an activation with a positive Lipschitz constant.")

    # -- structure -------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Number of hidden layers L = K * hbar."""
        return self.K * self.hbar

    @property
    def readout_layers(self) -> tuple[int, ...]:
        """Hidden-layer indices that are read out (0 is the input)."""
        first = 0 if self.readout_input else 1
        return tuple(k * self.hbar for k in range(first, self.K + 1))

    @property
    def n_readouts(self) -> int:
        """M, the number of readouts (K + 1 with the input readout, else K)."""
        return len(self.readout_layers)

    def effective_W_std(self, layer: int) -> float:
        r"""Infinite-width :math:`s_l\sigma_w` of hidden layer ``layer``: :math:`\min(\sigma_w, \varepsilon/(2C_\phi))` under the constraint (l >= 2)."""
        if self.stable_eps is None or layer < 2:
            return self.W_std
        return min(self.W_std, self.stable_eps / (2 * self.lipschitz))

    def __repr__(self) -> str:
        extra = ""
        if self.b_std is not None:
            extra += f", b_std={self.b_std}"
        if self.inject_std is not None:
            extra += f", inject_std={self.inject_std}"
        if self.stable_eps is not None:
            extra += f", stable_eps={self.stable_eps}"
        if not self.readout_input:
            extra += ", readout_input=False"
        if self.out_dim != 1:
            extra += f", out_dim={self.out_dim}"
        return (f"Shortcut(width={self.width}, K={self.K}, hbar={self.hbar}, activation={self.activation!r}, "
                f"W_std={self.W_std:.6g}, readout_std={self.readout_std}{extra})")

    # -- the two views ---------------------------------------------------------------------
    def _readout_kernels(self, k: Kernel):
        """(layer, kernel record) of every readout term without its 1/sqrt(M), in the order of ``readout_layers``."""
        readout = Dense(self.out_dim, W_std=self.readout_std, b_std=None)
        if self.readout_input:
            yield 0, readout.kernel_fn(k)
        v2 = 0.0 if self.inject_std is None else self.inject_std ** 2
        h = k
        for l in range(1, self.depth + 1):
            pre = Dense(self.width, W_std=self.effective_W_std(l), b_std=self.b_std).kernel_fn(h)
            if self.inject_std is not None and l >= 2:
                var1 = pre.var1 + v2 * k.var1
                var2 = var1 if pre.var2 is pre.var1 else pre.var2 + v2 * k.var2
                ntk = None if pre.ntk is None else pre.ntk + v2 * (k.nngp + k.ntk)
                pre = pre.replace(nngp=pre.nngp + v2 * k.nngp, ntk=ntk, var1=var1, var2=var2)
            h = self.activation.kernel_fn(pre)
            if l % self.hbar == 0:
                yield l, readout.kernel_fn(h)

    def kernel_fn(self, k: Kernel) -> Kernel:
        acc: dict[str, torch.Tensor | None] = {}
        for _, r in self._readout_kernels(k):
            for name in ("nngp", "ntk", "var1", "var2"):
                val = getattr(r, name)
                acc[name] = val if name not in acc else (None if val is None else acc[name] + val)
        M = float(self.n_readouts)
        var1 = acc["var1"] / M
        var2 = var1 if k.var2 is k.var1 else acc["var2"] / M
        ntk = None if acc["ntk"] is None else acc["ntk"] / M
        return k.replace(nngp=acc["nngp"] / M, ntk=ntk, var1=var1, var2=var2, width=self.out_dim)

    def readout_kernels(self, x1, x2=None, *, get=("nngp", "ntk"), keep=None, dtype: torch.dtype = torch.float64) -> dict:
        r"""The infinite-width kernel of each readout, from one pass of the recursion.

        For each read-out layer :math:`\kappa\hbar` in ``keep`` (default: all of ``readout_layers``), (D, n1, n2)
        tensors ``nngp``/``ntk``: :math:`\sigma_J^2\Sigma_h^{(\kappa\hbar)}` and
        :math:`\sigma_J^2(\Sigma_h^{(\kappa\hbar)} + \Theta_h^{(\kappa\hbar)})`, the kernels of the plain network of
        depth :math:`\kappa\hbar` (``serial((Dense, activation) * kappa hbar, Dense(out_dim, readout_std))``; the
        input readout :math:`\sigma_J^2 x\cdot x'/d` for :math:`\kappa = 0`), and ``nngp_mean``/``ntk_mean``: their mean
        over the readouts up to that layer, the kernel of this network with :math:`K = \kappa` (NTK(d) at every
        depth at once; the last is ``.kernel(x1, x2)``). Also ``depths`` (D,). Memory: only the kept layers.
        """
        get = (get,) if isinstance(get, str) else tuple(get)
        keep = set(self.readout_layers) if keep is None else {int(l) for l in keep}
        if not keep <= set(self.readout_layers):
            raise ValueError(f"keep must be read-out layers {self.readout_layers}; got {sorted(keep)}.")
        x1, x2 = as_inputs(x1, x2, dtype=dtype)
        out = {name: [] for name in get + tuple(f"{g}_mean" for g in get)}
        acc = {}
        for m, (l, r) in enumerate(self._readout_kernels(Kernel.from_inputs(x1, x2, compute_ntk="ntk" in get)), 1):
            for name in get:
                acc[name] = getattr(r, name) + acc[name] if name in acc else getattr(r, name)
                if l in keep:
                    out[name].append(getattr(r, name))
                    out[f"{name}_mean"].append(acc[name] / m)
        out = {name: torch.stack(v) for name, v in out.items()}
        out["depths"] = torch.tensor(sorted(keep), dtype=torch.int64)
        return out

    def ensemble(self, in_dim: int, n_nets: int, *, seed: int = 0, dtype: torch.dtype = torch.float64,
                 device=None) -> "ShortcutEnsemble":
        """``n_nets`` independent finite networks held as batched tensors (:class:`ShortcutEnsemble`; float64 by
        default, like :func:`ntklib.monte_carlo_kernel`, so that rounding stays far below the Monte Carlo error)."""
        from .shortcut_ensemble import ShortcutEnsemble

        return ShortcutEnsemble(self, in_dim, n_nets, seed=seed, dtype=dtype, device=device)

    def build(self, in_dim, generator, dtype):
        return [ShortcutModule(self, in_dim, generator, dtype)], self.out_dim


def shortcut_module(net: nn.Module) -> ShortcutModule:
    """The :class:`ShortcutModule` inside ``Shortcut(...).module(in_dim)`` (or ``net`` itself)."""
    return _find_shortcut(net)
