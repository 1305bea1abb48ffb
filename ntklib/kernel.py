r"""The kernel record carried through the layer recursion.

For two batches of inputs ``x1`` (n1, d) and ``x2`` (n2, d) a :class:`Kernel` holds

* ``nngp`` (n1, n2): :math:`\Sigma(x, x') = \lim_{n\to\infty} \frac{1}{n}\sum_{i=1}^{n} z_i(x) z_i(x')`,
  the covariance of one unit of the current representation (pre-activations after a
  ``Dense`` layer, post-activations after a nonlinearity);
* ``ntk`` (n1, n2): :math:`\Theta(x, x')`, the tangent kernel of one unit of the current
  representation with respect to all parameters below it;
* ``var1`` (n1,) and ``var2`` (n2,): the variances :math:`\Sigma(x, x)` of each input, which
  the nonlinearities need (the 2x2 covariance of :math:`(z(x), z(x'))`);
* ``width``: the number of channels of the current representation (the fan-in of the next
  ``Dense``; only the ``"standard"`` parameterization's NTK depends on it).

With ``diagonal=True`` only the diagonal :math:`x = x'` is carried: ``nngp`` and ``ntk`` are
(n,) vectors and ``nngp == var1``.

The input kernel follows neural-tangents: :math:`\Sigma^{(0)}(x, x') = x\cdot x'/d` and
:math:`\Theta^{(0)} = 0` (inputs have no parameters).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

__all__ = ["Kernel"]


@dataclass(frozen=True)
class Kernel:
    nngp: torch.Tensor
    ntk: torch.Tensor | None
    var1: torch.Tensor
    var2: torch.Tensor
    width: int
    is_input: bool = False
    diagonal: bool = False
    symmetric: bool = False  # x2 was None: nngp is square and nngp[i, i] == var1[i] exactly

    def replace(self, **changes) -> "Kernel":
        """A copy with some fields replaced (the record itself is immutable)."""
        return dataclasses.replace(self, **changes)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.nngp.shape)

    @property
    def device(self) -> torch.device:
        return self.nngp.device

    @property
    def dtype(self) -> torch.dtype:
        return self.nngp.dtype

    @classmethod
    def from_inputs(cls, x1: torch.Tensor, x2: torch.Tensor | None = None, *,
                    diagonal: bool = False, compute_ntk: bool = True) -> "Kernel":
        r"""Input kernel :math:`\Sigma^{(0)} = x_1 x_2^\top / d`, :math:`\Theta^{(0)} = 0`.

        When ``x2`` is None the diagonal of ``nngp`` is set to exactly ``var1`` (the same
        floating-point numbers), so that every later layer keeps ``nngp[i, i] == var1[i]``
        and correlations of a point with itself are exactly 1.
        """
        d = x1.shape[1]
        var1 = (x1 * x1).sum(-1) / d  # (n1,)
        symmetric = x2 is None and not diagonal
        if diagonal:
            if x2 is not None:
                raise ValueError("diagonal=True needs x2=None (the diagonal of k(x1, x1)).")
            nngp = var1.clone()
            var2 = var1
        elif x2 is None:
            nngp = x1 @ x1.T / d  # (n1, n1)
            nngp = 0.5 * (nngp + nngp.T)
            nngp.diagonal().copy_(var1)
            var2 = var1
        else:
            var2 = (x2 * x2).sum(-1) / d  # (n2,)
            nngp = x1 @ x2.T / d  # (n1, n2)
            _snap_equal_rows(nngp, x1, x2, var1, var2)
        ntk = torch.zeros_like(nngp) if compute_ntk else None
        return cls(nngp=nngp, ntk=ntk, var1=var1, var2=var2, width=d, is_input=True, diagonal=diagonal,
                   symmetric=symmetric)

    def _prod_args(self):
        """(var1, var2) shaped to broadcast against ``nngp``."""
        if self.diagonal:
            return self.var1, self.var2
        return self.var1[:, None], self.var2[None, :]

    def __repr__(self) -> str:  # short: the tensors can be large
        return (f"Kernel(shape={self.shape}, width={self.width}, ntk={'yes' if self.ntk is not None else 'no'}, "
                f"diagonal={self.diagonal}, dtype={self.dtype}, device={self.device})")


def _snap_equal_rows(nngp: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor, var1: torch.Tensor,
                     var2: torch.Tensor) -> None:
    """In place: where a row of ``x2`` equals (or is minus) a row of ``x1``, set ``nngp`` to exactly
    ``+-var1`` (and ``var2`` to ``var1``), so that cos(theta) = +-1 exactly.

    ``x1 @ x2.T`` rounds differently from ``|x|^2``, which would leave
    ``var1 var2 - nngp^2 = O(1e-16 var^2)`` and sin(theta) = O(1e-8): the ReLU derivative kernel
    (pi - theta)/(2 pi) would be off by ~1e-9 instead of exact. Only candidate pairs with
    |cos| >= 1 - 1e-8 are compared row by row.
    """
    near = nngp.abs() >= (1 - 1e-8) * torch.sqrt(var1[:, None] * var2[None, :])  # (n1, n2)
    if not bool(near.any()):
        return
    i, j = near.nonzero(as_tuple=True)  # (m,), (m,)
    step = max(1, (1 << 20) // x1.shape[1])
    for s in range(0, i.numel(), step):
        ii, jj = i[s:s + step], j[s:s + step]
        a, b = x1[ii], x2[jj]  # (m, d)
        for mask, sign in (((a == -b).all(-1), -1.0), ((a == b).all(-1), 1.0)):  # equal wins for 0 rows
            nngp[ii[mask], jj[mask]] = sign * var1[ii[mask]]
            var2[jj[mask]] = var1[ii[mask]]
