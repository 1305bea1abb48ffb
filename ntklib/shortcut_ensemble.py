r"""Many finite shortcut networks at once: Monte Carlo over thousands of narrow deep networks.

:class:`ShortcutEnsemble` (``Shortcut(...).ensemble(d, n_nets, seed)``) holds ``n_nets`` independent
initializations of one :class:`ntklib.shortcut.Shortcut` network as batched tensors: one batched product per
layer for all networks. Each network is the one ``Shortcut.module`` would build (checked member by member in
``tests/library/test_shortcut.py``). Used by ``ntklib.experiments.depth_induced`` and notebook 05.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .networks import SerialModule
from .shortcut import Shortcut, ShortcutModule
from .validation import as_inputs, check_positive_int

__all__ = ["ShortcutEnsemble"]


class ShortcutEnsemble:
    r"""``n_nets`` independent initializations of one :class:`Shortcut` network, held as batched tensors.

    Parameters :math:`\mathcal N(0, 1)` from ``torch.Generator().manual_seed(seed)`` (float64, then cast and
    moved) and the factors :math:`s_l` of :class:`ShortcutModule`: the distribution of ``spec.module(...)``,
    but one batched product per layer for all networks (Monte Carlo over thousands of narrow deep networks
    in seconds). :meth:`member` is network ``s`` as a finite module with the same parameters (the tests
    compare every method with it). ``weight[l-1]`` (S, n, n_{l-1}), ``bias[l-1]`` (S, n), ``inject[l-1]``
    (S, n, d) for hidden layer l (None where absent), ``readout[m]`` (S, out_dim, n_m), ``rescale`` (S, L).
    """

    def __init__(self, spec: "Shortcut", in_dim: int, n_nets: int, *, seed: int = 0,
                 dtype: torch.dtype = torch.float64, device=None):
        if not isinstance(spec, Shortcut):
            raise TypeError(f"spec must be a Shortcut layer; got {type(spec).__name__}.")
        self.spec = spec
        self.in_dim = check_positive_int("in_dim", in_dim)
        self.n_nets = S = check_positive_int("n_nets", n_nets)
        self.dtype = dtype
        self.device = torch.device("cpu") if device is None else torch.device(device)
        g = torch.Generator().manual_seed(int(seed))

        draw = lambda *shape: torch.randn(S, *shape, generator=g, dtype=torch.float64)  # noqa: E731
        put = lambda t: None if t is None else t.to(dtype=self.dtype, device=self.device)  # noqa: E731
        n = spec.width
        self.weight, self.bias, self.inject = [], [], []
        rescale = torch.ones(S, spec.depth, dtype=torch.float64)
        for l in range(1, spec.depth + 1):
            fan_in = in_dim if l == 1 else n
            W = draw(n, fan_in)  # (S, n, fan_in)
            if spec.stable_eps is not None and l >= 2 and spec.W_std > 0:
                norm = torch.linalg.matrix_norm(W, ord=2) * spec.W_std / math.sqrt(fan_in)  # (S,)
                active = spec.lipschitz * norm > spec.stable_eps
                rescale[:, l - 1] = torch.where(active, spec.stable_eps / (spec.lipschitz * norm), 1.0)
            self.weight.append(put(W))
            self.bias.append(put(None if spec.b_std is None else draw(n)))
            self.inject.append(put(draw(n, in_dim) if spec.inject_std is not None and l >= 2 else None))
        self.readout = [put(draw(spec.out_dim, in_dim if l == 0 else n)) for l in spec.readout_layers]
        self.rescale = put(rescale)

    def _weight_scale(self, l: int) -> torch.Tensor:
        """(S,): s_l W_std / sqrt(fan_in) of hidden layer l."""
        fan_in = self.in_dim if l == 1 else self.spec.width
        return self.spec.W_std * self.rescale[:, l - 1] / math.sqrt(fan_in)

    def _inputs(self, x1, x2=None):
        """(x1, x2 or None, both rows stacked) on the ensemble's device and dtype."""
        x1, x2 = as_inputs(x1, x2, dtype=self.dtype)
        if x1.shape[1] != self.in_dim:
            raise ValueError(f"x must have shape (n, {self.in_dim}); got {tuple(x1.shape)}.")
        x1, x2 = x1.to(self.device), None if x2 is None else x2.to(self.device)
        return x1, x2, (x1 if x2 is None else torch.cat([x1, x2]))

    def _propagate(self, x: torch.Tensor, track: bool = False):
        """[h^0 (N, d), h^1, ..., h^L (S, N, n)] and, with ``track``, the pre-activations u^l as a graph."""
        spec = self.spec
        hs, us, h = [x], [], x
        for l in range(1, spec.depth + 1):
            u = self._weight_scale(l)[:, None, None] * (h @ self.weight[l - 1].mT)  # (S, N, n)
            if self.bias[l - 1] is not None:
                u = u + spec.b_std * self.bias[l - 1][:, None, :]
            if self.inject[l - 1] is not None:
                u = u + (spec.inject_std / math.sqrt(self.in_dim)) * (x @ self.inject[l - 1].mT)
            if track:
                u = u.requires_grad_(True) if l == 1 else u
                us.append(u)
            h = spec.activation.fn(u)
            hs.append(h)
        return hs, us

    def _terms(self, hs) -> list[torch.Tensor]:
        """The readout terms sigma_J J_m . h / sqrt(n_m), each (S, N, out_dim), without the 1/sqrt(M)."""
        return [(self.spec.readout_std / math.sqrt(hs[l].shape[-1])) * (hs[l] @ J.mT)
                for J, l in zip(self.readout, self.spec.readout_layers)]

    def hidden_states(self, x) -> list[torch.Tensor]:
        """[h^0, h^1, ..., h^L]: the input (N, d), then (S, N, width) per hidden layer."""
        with torch.no_grad():
            return self._propagate(self._inputs(x)[0])[0]

    def readouts(self, x) -> torch.Tensor:
        """The terms of f, each divided by sqrt(M): (S, N, M, out_dim)."""
        with torch.no_grad():
            terms = self._terms(self._propagate(self._inputs(x)[0])[0])
        return torch.stack(torch.broadcast_tensors(*terms), 2) / math.sqrt(self.spec.n_readouts)

    def __call__(self, x) -> torch.Tensor:
        """f(x) of every network: (S, N, out_dim)."""
        return self.readouts(x).sum(2)

    def conditional_nngp(self, x1, x2=None) -> torch.Tensor:
        r"""E[f(x1) f(x2) | hidden layers] per network (mean over outputs), (S, N1, N2).

        :math:`\frac{\sigma_J^2}{M}\sum_\kappa h^{\kappa\hbar}(x_1)\cdot h^{\kappa\hbar}(x_2)/n_{\kappa\hbar}`: the readouts
        are Gaussian given the hidden layers, so f is a Gaussian scale mixture with this covariance; its mean over
        networks is the NNGP at this width.
        """
        x1, x2, xs = self._inputs(x1, x2)
        n1 = x1.shape[0]
        with torch.no_grad():
            hs = self._propagate(xs)[0]
        cols = slice(0, n1) if x2 is None else slice(n1, None)
        acc = sum(hs[l][..., :n1, :] @ hs[l][..., cols, :].mT / hs[l].shape[-1] for l in self.spec.readout_layers)
        return (self.spec.readout_std ** 2 / self.spec.n_readouts) * acc.expand(self.n_nets, -1, -1)  # (S, N1, N2)

    def ntk(self, x1, x2=None) -> torch.Tensor:
        r"""The empirical NTK of every network (mean over outputs), (S, N1, N2).

        :math:`\sum_l (s_l^2\sigma_w^2 h^{l-1}\cdot h'^{l-1}/n_{l-1} + \sigma_b^2 + \sigma_v^2 x\cdot x'/d)\,
        \delta^l\cdot\delta'^l + \frac{\sigma_J^2}{M}\sum_\kappa h^{\kappa\hbar}\cdot h'^{\kappa\hbar}/n_{\kappa\hbar}`,
        :math:`\delta^l = \partial f/\partial u^l` (the structured formula of :mod:`ntklib.empirical`, batched).
        """
        return self._ntk(x1, x2, per_readout=False)[..., 0]

    def readout_ntk_blocks(self, x1, x2=None, *, diagonal: bool = False) -> torch.Tensor:
        r"""Per-readout blocks :math:`C_{\kappa\kappa'}(x, x')` of every network, (S, N1, N2, M, M) (as
        :func:`readout_ntk_blocks`); ``diagonal=True``: only :math:`C_{\kappa\kappa}`, (S, N1, N2, M), much cheaper.
        ``M * C_kk`` is the NTK of readout k alone; the blocks sum to :meth:`ntk`."""
        return self._ntk(x1, x2, per_readout=True, diagonal=diagonal)

    def _ntk(self, x1, x2, per_readout: bool, diagonal: bool = False) -> torch.Tensor:
        spec, S, M, k = self.spec, self.n_nets, self.spec.n_readouts, self.spec.out_dim
        x1, x2, xs = self._inputs(x1, x2)
        n1 = x1.shape[0]
        rows, cols = slice(0, n1), slice(0, n1) if x2 is None else slice(n1, None)
        with torch.enable_grad():
            hs, us = self._propagate(xs, track=True)
            targets = self._terms(hs) if per_readout else [sum(self._terms(hs))]
            # deltas[t][a][l] = d target_t[..., a] / d u^l, (S, N, n), or None where target_t does not depend on u^l
            deltas = [[torch.autograd.grad(target[..., a].sum(), us, retain_graph=True, allow_unused=True)
                       if target.requires_grad else [None] * len(us) for a in range(k)] for target in targets]
        hs = [h.detach() for h in hs]
        T, pairs = len(targets), per_readout and not diagonal
        out = xs.new_zeros((S, n1, xs.shape[0] - n1 if x2 is not None else n1) + ((T, T) if pairs else (T,)))
        xx = x1 @ xs[cols].T  # (N1, N2)
        for l in range(1, spec.depth + 1):  # one Gram matrix at a time: s_W^2 h.h' + s_b^2 (+ s_V^2 x.x'), (S, N1, N2)
            h = hs[l - 1]
            gram = self._weight_scale(l)[:, None, None] ** 2 * (h[..., rows, :] @ h[..., cols, :].mT)
            if self.bias[l - 1] is not None:
                gram = gram + spec.b_std ** 2
            if self.inject[l - 1] is not None:
                gram = gram + (spec.inject_std ** 2 / self.in_dim) * xx
            for t1, t2 in ([(t1, t2) for t1 in range(T) for t2 in range(T)] if pairs else [(t, t) for t in range(T)]):
                for a in range(k):
                    g1, g2 = deltas[t1][a][l - 1], deltas[t2][a][l - 1]
                    if g1 is not None and g2 is not None:
                        out[(..., t1, t2) if pairs else (..., t1)] += gram * (g1[..., rows, :] @ g2[..., cols, :].mT) / k
        for m, l in enumerate(spec.readout_layers):
            h = hs[l]
            g = (spec.readout_std ** 2 / h.shape[-1]) * (h[..., rows, :] @ h[..., cols, :].mT)  # (S, N1, N2) or (N1, N2)
            t = m if per_readout else 0
            out[(..., t, t) if pairs else (..., t)] += g
        return out / M

    def member(self, s: int) -> nn.Module:
        """Network ``s`` as a finite module (``spec.module``'s kind) with the same parameters and factors s_l."""
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 0 <= s < self.n_nets:
            raise ValueError(f"s must be an integer in [0, {self.n_nets}); got {s!r}.")
        spec, net = self.spec, ShortcutModule(self.spec, self.in_dim, torch.Generator().manual_seed(0), self.dtype)
        with torch.no_grad():
            for l, dense in enumerate(net.hidden, start=1):
                dense.weight.copy_(self.weight[l - 1][s])
                dense.W_std = spec.W_std * float(self.rescale[s, l - 1])
                if dense.bias is not None:
                    dense.bias.copy_(self.bias[l - 1][s])
                if str(l) in net.inject:
                    net.inject[str(l)].weight.copy_(self.inject[l - 1][s])
            for r, J in zip(net.readout, self.readout):
                r.weight.copy_(J[s])
        net.rescale = tuple(float(v) for v in self.rescale[s])
        return SerialModule(net, arch=spec, in_dim=self.in_dim).to(self.device)
