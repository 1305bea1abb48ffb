r"""The kernel record carried through the layer recursion.

For two batches of inputs ``x1`` and ``x2`` a :class:`Kernel` holds

* ``nngp``: :math:`\Sigma(x, x') = \lim_{n\to\infty} \frac{1}{n}\sum_{i=1}^{n} z_i(x) z_i(x')`,
  the covariance of one channel of the current representation (pre-activations after a
  ``Dense`` or ``Conv`` layer, post-activations after a nonlinearity);
* ``ntk``: :math:`\Theta(x, x')`, the tangent kernel of one channel of the current
  representation with respect to all parameters below it;
* ``var1`` and ``var2``: the same covariance of each input with itself, :math:`\Sigma(x, x)`
  for every ``x`` in ``x1`` (``x2``), which the nonlinearities need (the 2x2 covariance of
  :math:`(z(x), z(x'))`);
* ``width``: the number of channels of the current representation (the fan-in of the next
  ``Dense``; only the ``"standard"`` parameterization's NTK depends on it).

**Shapes.** A vector representation (inputs ``(n, d)``, or after ``Flatten`` /
``GlobalAvgPool``) has ``spatial == ()``: ``nngp`` and ``ntk`` are (n1, n2), ``var1`` (n1,)
and ``var2`` (n2,). A spatial representation (channel-first inputs ``(n, C, L)`` or
``(n, C, H, W)``, after ``Conv``) has ``spatial`` = S, its shape (L,) or (H, W), and one of
two layouts, as in neural-tangents:

* ``diagonal_spatial=True``: only the covariance of each position with the *same* position,
  :math:`\Sigma(x, x')_{p} = \Sigma\big(z_p(x), z_p(x')\big)`: ``nngp`` (n1, n2, \*S),
  ``var1`` (n1, \*S);
* ``diagonal_spatial=False``: every pair of positions,
  :math:`\Sigma(x, x')_{pq} = \Sigma\big(z_p(x), z_q(x')\big)`: ``nngp`` (n1, n2, \*S, \*S)
  (positions of x first, then those of x'), ``var1`` (n1, \*S, \*S).

Convolutions and nonlinearities map the spatial diagonal to itself; pooling over windows and
global average pooling need the off-diagonal pairs (see :mod:`ntklib.conv`).

With ``diagonal=True`` only the batch diagonal :math:`x = x'` is carried: ``nngp`` and
``ntk`` have one batch axis, (n, ...), and ``nngp == var1``.

The input kernel follows neural-tangents: the covariance of the channels at each position,
:math:`\Sigma^{(0)}(x, x')_{pq} = \frac1C\sum_{c=1}^C x_{c,p}\,x'_{c,q}` (for vectors
:math:`x\cdot x'/d`), and :math:`\Theta^{(0)} = 0` (inputs have no parameters).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

__all__ = ["Kernel", "input_nngp", "input_variances", "equal_inputs", "equal_or_opposite_rows", "snap_equal_inputs",
           "batch_diagonal", "swap_inputs", "spatial_diagonal", "symmetric_from_upper"]


@dataclass(frozen=True)
class Kernel:
    nngp: torch.Tensor
    ntk: torch.Tensor | None
    var1: torch.Tensor | None  # None only inside ntklib.batching's tiles, which supply the variances
    var2: torch.Tensor | None
    width: int
    diagonal: bool = False
    symmetric: bool = False  # x2 was None: nngp[i, i] == var1[i] exactly, nngp(x, x') == nngp(x', x) swapped
    spatial: tuple[int, ...] = ()  # S: () for vectors, (L,) or (H, W)
    diagonal_spatial: bool = True  # spatial only: nngp (n1, n2, *S) (True) or (n1, n2, *S, *S)

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

    @property
    def batch_ndim(self) -> int:
        """Number of batch axes of ``nngp``: 1 with ``diagonal=True``, else 2."""
        return 1 if self.diagonal else 2

    @property
    def full_spatial(self) -> bool:
        """True when ``nngp`` holds every pair of positions (a spatial kernel, ``diagonal_spatial=False``)."""
        return bool(self.spatial) and not self.diagonal_spatial

    @classmethod
    def from_inputs(cls, x1: torch.Tensor, x2: torch.Tensor | None = None, *,
                    diagonal: bool = False, compute_ntk: bool = True,
                    diagonal_spatial: bool = True) -> "Kernel":
        r"""Input kernel :math:`\Sigma^{(0)}` (module docstring), :math:`\Theta^{(0)} = 0`.

        ``x1`` is (n1, d) or channel-first (n1, C, \*S); ``diagonal_spatial`` chooses the layout
        of spatial kernels. When ``x2`` is None the batch diagonal of ``nngp`` is set to exactly
        ``var1`` (the same floating-point numbers), so that every later layer keeps
        ``nngp[i, i] == var1[i]`` and correlations of a point with itself are exactly 1. Pairs
        of equal (or opposite) inputs, within ``x1`` or between ``x1`` and ``x2``, get exactly
        :math:`\pm` ``var1`` (see :func:`equal_inputs`).
        """
        spatial = tuple(x1.shape[2:])
        ns = len(spatial)
        symmetric = x2 is None and not diagonal
        var1 = input_variances(x1, diagonal_spatial)  # (n1, ...)
        if diagonal:
            if x2 is not None:
                raise ValueError("diagonal=True needs x2=None (the diagonal of k(x1, x1)).")
            nngp = var1.clone()
            var2 = var1
        else:
            i, j, sign, first = equal_inputs(x1, x2)
            var1 = var1[first]  # equal (or opposite) inputs: the very same variances
            if x2 is None:
                nngp = input_nngp(x1, None, diagonal_spatial)  # (n1, n1, ...)
                nngp = 0.5 * (nngp + swap_inputs(nngp, ns, diagonal_spatial))
                batch_diagonal(nngp).copy_(var1)
                var2 = var1
            else:
                var2 = input_variances(x2, diagonal_spatial)  # (n2, ...)
                nngp = input_nngp(x1, x2, diagonal_spatial)  # (n1, n2, ...)
                var2[j] = var1[i]
            snap_equal_inputs(nngp, spatial_diagonal(var1, ns, diagonal_spatial), i, j, sign, n_spatial=ns,
                              diagonal_spatial=diagonal_spatial)
        ntk = torch.zeros_like(nngp) if compute_ntk else None
        return cls(nngp=nngp, ntk=ntk, var1=var1, var2=var2, width=x1.shape[1], diagonal=diagonal,
                   symmetric=symmetric, spatial=spatial, diagonal_spatial=diagonal_spatial or not spatial)

    def position_variances(self) -> tuple[torch.Tensor, torch.Tensor]:
        r"""(v1, v2): the variance of each input at each position, (n1, \*S) and (n2, \*S)."""
        return (spatial_diagonal(self.var1, len(self.spatial), self.diagonal_spatial),
                spatial_diagonal(self.var2, len(self.spatial), self.diagonal_spatial))

    def broadcast_variances(self, v1: torch.Tensor | None = None, v2: torch.Tensor | None = None):
        r"""The per-position variances ``v1`` (n1, \*S), ``v2`` (n2, \*S) of the two inputs of every
        entry of ``nngp`` (default: :meth:`position_variances`), shaped to broadcast against it."""
        if v1 is None:
            v1, v2 = self.position_variances()
        ns = len(self.spatial)
        ones = (1,) * ns
        if self.diagonal:  # nngp (n, *S) or (n, *S, *S)
            if self.diagonal_spatial:
                return v1, v2
            return v1.reshape(v1.shape + ones), v2.reshape(v2.shape[:1] + ones + v2.shape[1:])
        if self.diagonal_spatial:  # nngp (n1, n2, *S)
            return v1.unsqueeze(1), v2.unsqueeze(0)
        return (v1.reshape(v1.shape[:1] + (1,) + v1.shape[1:] + ones),  # (n1, 1, *S, 1..)
                v2.reshape((1,) + v2.shape[:1] + ones + v2.shape[1:]))  # (1, n2, 1.., *S)

    def to_diagonal_spatial(self) -> "Kernel":
        """The same kernel with only the same-position entries (a no-op unless ``full_spatial``)."""
        if not self.full_spatial:
            return self
        ns = len(self.spatial)
        d = lambda t: None if t is None else spatial_diagonal(t, ns, False)
        return self.replace(nngp=d(self.nngp), ntk=d(self.ntk), var1=d(self.var1), var2=d(self.var2),
                            diagonal_spatial=True)

    def self_kernel(self, which: int = 1) -> "Kernel":
        """The batch-diagonal record of ``x1`` (``which=1``) or ``x2``: ``nngp = var`` (n, ...), no NTK."""
        var = self.var1 if which == 1 else self.var2
        return self.replace(nngp=var, ntk=None, var1=var, var2=var, diagonal=True, symmetric=False)

    def __repr__(self) -> str:  # short: the tensors can be large
        space = "" if not self.spatial else f", spatial={self.spatial}, diagonal_spatial={self.diagonal_spatial}"
        return (f"Kernel(shape={self.shape}, width={self.width}, ntk={'yes' if self.ntk is not None else 'no'}, "
                f"diagonal={self.diagonal}{space}, dtype={self.dtype}, device={self.device})")


# ---------------------------------------------------------------------------------------------
# input kernels
# ---------------------------------------------------------------------------------------------
def input_nngp(x1: torch.Tensor, x2: torch.Tensor | None, diagonal_spatial: bool = True) -> torch.Tensor:
    r"""The input kernel between two batches: :math:`x_1 x_2^\top/d` (n1, n2) for vectors; for
    channel-first inputs (n, C, \*S) the channel average :math:`\frac1C\sum_c x_{1,c,p} x_{2,c,q}`,
    (n1, n2, \*S) for ``q = p`` only (``diagonal_spatial``) or (n1, n2, \*S, \*S). ``x2=None``: x1."""
    x2 = x1 if x2 is None else x2
    n1, n2, C = x1.shape[0], x2.shape[0], x1.shape[1]
    spatial = tuple(x1.shape[2:])
    if not spatial:
        return (x1 @ x2.T).div_(C)  # (n1, n2)
    P = math.prod(spatial)
    a, b = x1.reshape(n1, C, P), x2.reshape(n2, C, P)
    if diagonal_spatial:  # one (n1, C) @ (C, n2) product per position
        out = torch.bmm(a.permute(2, 0, 1), b.permute(2, 1, 0))  # (P, n1, n2)
        return out.permute(1, 2, 0).div_(C).reshape((n1, n2) + spatial).contiguous()
    out = a.transpose(1, 2).reshape(n1 * P, C) @ b.permute(1, 0, 2).reshape(C, n2 * P)  # (n1 P, n2 P)
    out = out.reshape(n1, P, n2, P).permute(0, 2, 1, 3).div_(C)  # (n1, n2, P, P)
    return out.reshape((n1, n2) + spatial + spatial).contiguous()


def input_variances(x: torch.Tensor, diagonal_spatial: bool = True) -> torch.Tensor:
    r"""Each input's kernel with itself: :math:`|x|^2/d` (n,) for vectors; for channel-first inputs
    :math:`\frac1C\sum_c x_{c,p}^2` (n, \*S), or every pair of positions (n, \*S, \*S), exactly
    symmetric, whose diagonal is the former (the same numbers)."""
    n, C = x.shape[0], x.shape[1]
    spatial = tuple(x.shape[2:])
    per_position = (x * x).sum(1) / C  # (n,) or (n, *S)
    if diagonal_spatial or not spatial:
        return per_position
    P = math.prod(spatial)
    a = x.reshape(n, C, P)
    cov = torch.bmm(a.transpose(1, 2), a).div_(C)  # (n, P, P)
    cov = 0.5 * (cov + cov.transpose(1, 2))
    cov.diagonal(dim1=1, dim2=2).copy_(per_position.reshape(n, P))
    return cov.reshape((n,) + spatial + spatial)


def equal_inputs(x1: torch.Tensor, x2: torch.Tensor | None = None):
    """Pairs of equal or opposite inputs, whose correlation is exactly +-1 (and the kernels exact there).

    Returns ``(i, j, sign, first)``: ``x2[j] == sign * x1[i]`` for each listed pair (``x2=None``:
    pairs within ``x1``, i != j), and ``first`` (n1,), the first row of ``x1`` equal or opposite to
    each row (the row itself if there is none): such rows get the very same variances.
    """
    i, j, sign = equal_or_opposite_rows(x1)
    first = torch.arange(x1.shape[0], device=x1.device).scatter_reduce(0, j, i, "amin")  # (n1,)
    if x2 is None:
        return i, j, sign, first
    return (*equal_or_opposite_rows(x1, x2), first)


def equal_or_opposite_rows(x1: torch.Tensor, x2: torch.Tensor | None = None):
    """All pairs (i, j) with ``x2[j] == x1[i]`` (sign +1) or ``x2[j] == -x1[i]`` (sign -1), exactly;
    ``x2=None``: pairs within ``x1`` with i != j.

    Returns ``(i, j, sign)``, three (m,) tensors (equal wins for zero inputs). Candidates are the
    pairs whose rows have the same hash of their absolute values (an integer hash of the bits,
    exact and independent of the summation order), sorted and joined; each candidate is then
    compared entry by entry. The cost is about two passes over the inputs and a sort of n1 + n2
    integers, not an (n1, n2) scan.
    """
    a = x1.reshape(x1.shape[0], -1)
    b = a if x2 is None else x2.reshape(x2.shape[0], -1)
    h1 = _abs_hash(a)
    h2 = h1 if x2 is None else _abs_hash(b)
    _, ids = torch.unique(torch.cat([h1, h2]), return_inverse=True)  # (n1 + n2,)
    i, j = _join(ids[:a.shape[0]], ids[a.shape[0]:])
    if x2 is None:
        i, j = i[i != j], j[i != j]
    eq = (a[i] == b[j]).all(-1)
    neg = ~eq & (a[i] == -b[j]).all(-1)  # a zero row is "equal"
    keep = eq | neg
    return i[keep], j[keep], torch.where(eq[keep], 1, -1)


def _abs_hash(a: torch.Tensor) -> torch.Tensor:
    """(n, D) -> (n,) int64: sum_k c_k bits(|a_k|) modulo 2^64 with fixed odd random c_k. Integer
    arithmetic is exact and associative, so rows equal up to sign get equal hashes whatever the
    evaluation order (clearing the sign bit also maps -0.0 to 0.0, which compare equal)."""
    ints, mask = {8: (torch.int64, 2 ** 63 - 1), 4: (torch.int32, 2 ** 31 - 1), 2: (torch.int16, 2 ** 15 - 1)}[
        a.element_size()]
    bits = a.contiguous().view(ints).bitwise_and(mask).to(torch.int64)  # (n, D)
    gen = torch.Generator().manual_seed(a.shape[1])
    coeff = torch.randint(-(2 ** 62), 2 ** 62, (a.shape[1],), generator=gen, dtype=torch.int64) * 2 + 1
    return (bits.mul_(coeff.to(a.device))).sum(-1)


def _join(ids1: torch.Tensor, ids2: torch.Tensor):
    """Every (i, j) with ``ids1[i] == ids2[j]`` (a sort-merge join)."""
    order = torch.argsort(ids1, stable=True)
    s = ids1[order]
    lo = torch.searchsorted(s, ids2)
    counts = torch.searchsorted(s, ids2, right=True) - lo  # (n2,)
    j = torch.repeat_interleave(torch.arange(ids2.numel(), device=ids2.device), counts)
    starts = torch.repeat_interleave(lo, counts)
    within = torch.arange(j.numel(), device=ids2.device) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
    return order[starts + within], j


def snap_equal_inputs(nngp: torch.Tensor, v1: torch.Tensor, i: torch.Tensor, j: torch.Tensor, sign: torch.Tensor,
                      *, n_spatial: int = 0, diagonal_spatial: bool = True, i0: int = 0, j0: int = 0) -> None:
    r"""In place: for pairs of equal (sign +1) or opposite (-1) inputs ``x2[j] = +-x1[i]``, set the
    same-position entries of ``nngp[i - i0, j - j0]`` (a block starting at pair (i0, j0)) to
    exactly ``sign * v1[i]``, with ``v1`` (n1, \*S) the per-position variances of ``x1``.

    ``x1 @ x2.T`` rounds differently from ``|x|^2``, which would leave
    ``var1 var2 - nngp^2 = O(1e-16 var^2)`` and sin(theta) = O(1e-8): the ReLU derivative kernel
    (pi - theta)/(2 pi) would be off by ~1e-9 instead of exact.
    """
    if i.numel() == 0:
        return
    value = sign.to(v1.dtype).reshape((-1,) + (1,) * (v1.ndim - 1)) * v1[i]  # (m, *S)
    if n_spatial and not diagonal_spatial:
        n1, n2, P = nngp.shape[0], nngp.shape[1], math.prod(v1.shape[1:])
        nngp.reshape(n1, n2, P, P).diagonal(dim1=2, dim2=3)[i - i0, j - j0] = value.reshape(-1, P)
    else:
        nngp[i - i0, j - j0] = value


# ---------------------------------------------------------------------------------------------
# views shared by the layers and the batching
# ---------------------------------------------------------------------------------------------
def batch_diagonal(t: torch.Tensor) -> torch.Tensor:
    """The view ``t[i, i, ...]`` of an (n, n, ...) tensor as (n, ...) (writable: ``.copy_`` sets it)."""
    return t.diagonal(dim1=0, dim2=1).movedim(-1, 0)


def swap_inputs(t: torch.Tensor, n_spatial: int = 0, diagonal_spatial: bool = True) -> torch.Tensor:
    r"""k(x', x) from k(x, x'): swap the two batch axes and, for full spatial kernels
    (n1, n2, \*S, \*S), the positions of x and x'. A view."""
    if n_spatial == 0 or diagonal_spatial:
        return t.transpose(0, 1)
    s = list(range(2, 2 + n_spatial))
    return t.permute([1, 0] + [a + n_spatial for a in s] + s)


def spatial_diagonal(t: torch.Tensor, n_spatial: int, diagonal_spatial: bool) -> torch.Tensor:
    r"""The same-position entries of a kernel with leading batch axes and (\*S, \*S) trailing ones,
    as (..., \*S) (a copy when it has to reorder); unchanged when already spatially diagonal."""
    if n_spatial == 0 or diagonal_spatial:
        return t
    batch = t.shape[:t.ndim - 2 * n_spatial]
    spatial = t.shape[t.ndim - n_spatial:]
    P = math.prod(spatial)
    return t.reshape(batch + (P, P)).diagonal(dim1=-2, dim2=-1).reshape(batch + spatial)


def symmetric_from_upper(blk: torch.Tensor, n_spatial: int, diagonal_spatial: bool) -> torch.Tensor:
    """The (m, m, ...) block of a kernel k(x, x) rebuilt from its upper triangle (pairs i <= j and,
    for i == j in a full spatial kernel, positions p <= q), so that it is exactly symmetric."""
    m = blk.shape[0]
    if n_spatial == 0:
        return blk.triu() + blk.triu(1).T
    if diagonal_spatial:  # positions are independent: one (m, m) matrix per position
        b = blk.movedim((0, 1), (-2, -1))  # (*S, m, m)
        return (b.triu() + b.triu(1).transpose(-2, -1)).movedim((-2, -1), (0, 1))
    spatial = blk.shape[2:2 + n_spatial]
    P = math.prod(spatial)
    M = blk.reshape(m, m, P, P).permute(0, 2, 1, 3).reshape(m * P, m * P)  # rows (i, p), columns (j, q)
    M = M.triu() + M.triu(1).T
    return M.reshape(m, P, m, P).permute(0, 2, 1, 3).reshape(blk.shape)
