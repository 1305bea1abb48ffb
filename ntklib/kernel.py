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

**Equal and opposite inputs.** ``equal_pairs`` = (i, j, sign, first) lists the pairs of inputs with
``x2[j] == sign * x1[i]`` exactly (``x2=None``: pairs within ``x1``) and, for each row of ``x1``, the
first row equal or opposite to it. Their representations are equal (or opposite, through odd maps)
at every layer, so their kernel entries are exactly :math:`\pm` the variances; the nonlinearities
restore that after each evaluation (:func:`snap_equal_pairs`), because two evaluations of a
transcendental function (on an (n1, n2) matrix and on an (n,) vector) may round differently, and a
later ReLU turns a difference of one rounding into an angle of 1e-8.

**Gap.** ``gap`` (optional, vector kernels only) is
:math:`\sqrt{\Sigma_{11}\Sigma_{22}} - \Sigma_{12} = \sqrt{\Sigma_{11}\Sigma_{22}}\,(1 - \cos\theta)`,
carried alongside ``nngp`` through ``Dense`` layers and the ReLU family (``Layer.carries_gap``) in
deep networks: near :math:`\theta = 0` it holds the angle to full relative precision, where
``nngp`` alone holds :math:`1 - \cos\theta` only to an absolute rounding that accumulates over
thousands of layers (see :mod:`ntklib.batching`). It is exactly 0 on the diagonal and for equal inputs.

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
           "snap_equal_pairs", "batch_diagonal", "swap_inputs", "spatial_diagonal", "symmetric_from_upper",
           "in_normal_range", "power_of_two_scale", "geometric_mean", "correlation", "sin_minus_theta_cos", "unit_rows",
           "input_gap"]


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
    equal_pairs: tuple | None = None  # (i, j, sign, first): equal (+1) or opposite (-1) inputs (module docstring)
    gap: torch.Tensor | None = None  # sqrt(var1 var2) - nngp, like nngp; only where the layers carry it

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
        pairs = None if diagonal or i.numel() == 0 and bool((first == torch.arange(len(first), device=first.device)).all()) \
            else (i, j, sign, first)
        ntk = torch.zeros_like(nngp) if compute_ntk else None
        return cls(nngp=nngp, ntk=ntk, var1=var1, var2=var2, width=x1.shape[1], diagonal=diagonal,
                   symmetric=symmetric, spatial=spatial, diagonal_spatial=diagonal_spatial or not spatial,
                   equal_pairs=pairs)

    def with_gap(self, x1: torch.Tensor, x2: torch.Tensor | None = None) -> "Kernel":
        """This input record (of ``x1``, ``x2``) with ``gap`` (:func:`input_gap`; vector kernels only)."""
        if self.spatial or self.diagonal:
            return self
        return self.replace(gap=input_gap(x1, x2, self.nngp, *self.broadcast_variances()))

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
        return self.replace(nngp=var, ntk=None, var1=var, var2=var, diagonal=True, symmetric=False,
                            equal_pairs=None, gap=None)

    def __repr__(self) -> str:  # short: the tensors can be large
        space = "" if not self.spatial else f", spatial={self.spatial}, diagonal_spatial={self.diagonal_spatial}"
        return (f"Kernel(shape={self.shape}, width={self.width}, ntk={'yes' if self.ntk is not None else 'no'}, "
                f"diagonal={self.diagonal}{space}, dtype={self.dtype}, device={self.device})")


# ---------------------------------------------------------------------------------------------
# products of variances at any scale
# ---------------------------------------------------------------------------------------------
def _normal_range(dtype: torch.dtype) -> tuple[float, float]:
    """Variances whose products and squares are normal numbers of ``dtype``: [2^-500, 2^500] in float64."""
    e = max(1, int(math.log2(torch.finfo(dtype).max)) // 2 - 12)
    return 2.0 ** -e, 2.0 ** e


def in_normal_range(v1: torch.Tensor, v2: torch.Tensor) -> bool:
    """True when every nonzero entry of ``v1`` and ``v2`` lies in [2^-500, 2^500] (float64; [2^-51, 2^51] in
    float32), so that products of two of them neither underflow nor overflow (one check on the vectors)."""
    lo_ok, hi_ok = _normal_range(v1.dtype)
    lo = torch.minimum(torch.where(v1 > 0, v1, math.inf).amin(), torch.where(v2 > 0, v2, math.inf).amin())
    hi = torch.maximum(v1.amax(), v2.amax())
    lo, hi = torch.stack([lo, hi]).tolist()
    return lo >= lo_ok and hi <= hi_ok


def power_of_two_scale(v: torch.Tensor):
    """(s, 1/s), powers of two with :math:`v s^2` in [1/4, 1) (s = 1 where v = 0): multiplying by them is exact."""
    h = torch.div(torch.frexp(v).exponent, 2, rounding_mode="floor")
    one = torch.ones_like(v)
    return torch.ldexp(one, -h), torch.ldexp(one, h)


def geometric_mean(v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
    r""":math:`\sqrt{v_1 v_2}` (broadcast), exactly v where v1 == v2 == v (sqrt of a correctly rounded
    square), without underflow or overflow at any scale (powers-of-two scaling outside :func:`in_normal_range`)."""
    if in_normal_range(v1, v2):
        return torch.sqrt(v1 * v2)
    s1, inv1 = power_of_two_scale(v1)
    s2, inv2 = power_of_two_scale(v2)
    return torch.sqrt((v1 * s1 * s1) * (v2 * s2 * s2)) * inv1 * inv2


def correlation(c: torch.Tensor, v1: torch.Tensor, v2: torch.Tensor):
    r"""(:math:`\rho`, :math:`\sin^2\theta = (1-\rho)(1+\rho)`) with :math:`\rho = c/\sqrt{v_1v_2}` clamped to
    [-1, 1] (0 where a variance is 0): exactly 1 and 0 when c == v1 == v2, at any scale."""
    if not in_normal_range(v1, v2):
        s1, _ = power_of_two_scale(v1)
        s2, _ = power_of_two_scale(v2)
        c, v1, v2 = c * s1 * s2, v1 * s1 * s1, v2 * s2 * s2  # exact: powers of two
    prod = v1 * v2
    pos = prod > 0
    rho = torch.where(pos, c / torch.sqrt(torch.where(pos, prod, 1.0)), 0.0).clamp(-1.0, 1.0)
    return rho, ((1 - rho) * (1 + rho)).clamp_min(0.0)


# sin(t) - t cos(t) = t^3 sum_{k>=1} c_k (t^2)^(k-1), c_k = (-1)^(k+1) 2k / (2k+1)!; 8 terms are exact
# to double precision for t < 1/2 (the next term is below 1e-17 of the first).
_SXC_COEFFS = [(-1) ** (k + 1) * 2 * k / math.factorial(2 * k + 1) for k in range(1, 9)]


def sin_minus_theta_cos(theta, xp=torch, small: bool = False):
    r""":math:`\sin\theta - \theta\cos\theta` without cancellation: its Taylor series (Horner) for
    :math:`\theta < 1/2`, the direct formula above (where at most one digit cancels); ``small=True``
    when every angle is below 1/2 (the series only). ``xp`` is ``torch`` or ``numpy``."""
    if small:
        return _sxc_series(theta, xp)
    is_small = theta < 0.5
    series = _sxc_series(xp.where(is_small, theta, xp.zeros_like(theta)), xp)
    return xp.where(is_small, series, xp.sin(theta) - theta * xp.cos(theta))


def _sxc_series(t, xp=torch):
    t2 = t * t
    poly = xp.full_like(t, _SXC_COEFFS[-1])
    for coeff in reversed(_SXC_COEFFS[:-1]):
        poly = poly * t2 + coeff
    return t * t2 * poly


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


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """The rows of ``x`` (n, d) scaled to unit norm without overflow or underflow (first divided by their largest
    entry); zero rows stay zero."""
    peak = x.abs().amax(dim=1, keepdim=True)  # (n, 1)
    u = x / torch.where(peak > 0, peak, 1.0)  # entries in [-1, 1]
    norm = u.norm(dim=1, keepdim=True)
    return u / torch.where(norm > 0, norm, 1.0)


def input_gap(x1: torch.Tensor, x2: torch.Tensor | None, nngp: torch.Tensor, v1: torch.Tensor,
              v2: torch.Tensor) -> torch.Tensor:
    r"""The input kernel's gap :math:`\sqrt{v_1v_2} - \Sigma_{12} = \sqrt{v_1v_2}\,|\hat x - \hat x'|^2/2` (n1, n2).

    ``nngp`` (n1, n2) and ``v1`` (n1, 1), ``v2`` (1, n2) are the input kernel and variances. The
    difference :math:`\sqrt{v_1v_2} - \Sigma_{12}` has an absolute rounding of the size of the variances;
    where it is below 1e-4 of them (nearly parallel inputs, whose angle it would then know only to
    ~1e-12 relatively) it is recomputed from the distance of the unit inputs :math:`\hat x`, entry by
    entry (exact for equal inputs: 0). Costs O(d) per such pair only.
    """
    s = geometric_mean(v1, v2)  # (n1, n2)
    gap = s - nngp
    near = (gap <= 1e-4 * s) & (s > 0)
    if bool(near.any()):
        i, j = near.nonzero(as_tuple=True)
        u1 = unit_rows(x1[i])
        u2 = unit_rows((x1 if x2 is None else x2)[j])
        dist2 = ((u1 - u2) ** 2).sum(1)  # (m,) |u - u'|^2, each term exact up to one rounding
        gap = gap.clone()
        gap[i, j] = s[i, j] * dist2 / 2
    return gap


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
                      *, n_spatial: int = 0, diagonal_spatial: bool = True, i0: int = 0, j0: int = 0,
                      after_layer: bool = False) -> None:
    r"""In place: for pairs of equal (sign +1) or opposite (-1) inputs ``x2[j] = +-x1[i]``, set the
    same-position entries of ``nngp[i - i0, j - j0]`` (a block starting at pair (i0, j0)) to
    exactly ``sign * v1[i]``, with ``v1`` (n1, \*S) the per-position variances of ``x1``.

    ``x1 @ x2.T`` rounds differently from ``|x|^2``, which would leave
    ``var1 var2 - nngp^2 = O(1e-16 var^2)`` and sin(theta) = O(1e-8): the ReLU derivative kernel
    (pi - theta)/(2 pi) would be off by ~1e-9 instead of exact.

    ``after_layer``: the entries of a layer's output. Equal inputs still have equal representations
    (every layer maps each input on its own), so they get ``v1[i]``. Opposite inputs stay opposite
    only through odd maps (no bias, odd activations) and become equal through even ones (``Abs``):
    their entries are set to ``-v1[i]`` (``+v1[i]``) only where they are already within 64 roundings
    of it, and left alone otherwise (e.g. after a ReLU, whose outputs for x and -x are not related so).
    """
    if i.numel() == 0:
        return
    target, v = _same_positions(nngp, v1[i], n_spatial, diagonal_spatial)
    idx = (i - i0, j - j0)
    target[idx] = _pair_values(target[idx] if after_layer else None, v, sign)


def _same_positions(nngp: torch.Tensor, v: torch.Tensor, n_spatial: int, diagonal_spatial: bool):
    """(a writable view of nngp whose trailing axes are the same-position entries, v shaped to match)."""
    if n_spatial and not diagonal_spatial:
        n1, n2, P = nngp.shape[0], nngp.shape[1], math.prod(v.shape[1:])
        return nngp.reshape(n1, n2, P, P).diagonal(dim1=2, dim2=3), v.reshape(-1, P)  # (n1, n2, P), (m, P)
    return nngp, v


def _pair_values(current: torch.Tensor | None, v: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """The pairs' entries: ``sign * v``; after a layer (``current`` given) opposite pairs get ``-v`` or
    ``+v`` only where ``current`` is within 64 roundings of it, else keep ``current``."""
    s = sign.to(v.dtype).reshape((-1,) + (1,) * (v.ndim - 1))
    if current is None or not bool((sign < 0).any()):
        return s * v
    tol = 64 * torch.finfo(v.dtype).eps * v.abs()
    opposite = torch.where((current + v).abs() <= tol, -v, torch.where((current - v).abs() <= tol, v, current))
    return torch.where(s > 0, v, opposite)


def snap_equal_pairs(k: Kernel, *, inplace: bool = False) -> Kernel:
    r"""``k`` with its equal and opposite inputs (``k.equal_pairs``) made exact again after a layer.

    Rows of ``x1`` equal or opposite to an earlier row get that row's variances (the same numbers),
    rows of ``x2`` equal or opposite to a row of ``x1`` get its variances too, and their ``nngp``
    entries are set as by :func:`snap_equal_inputs` (``after_layer``); for ``x2=None`` the batch
    diagonal is reset to ``var1``. ``inplace``: ``k.nngp`` may be written (a layer's own new
    output); otherwise it is copied first, and only when an entry changes. Batch-diagonal records
    and records without pairs are returned as they are.
    """
    if k.equal_pairs is None or k.diagonal or k.var1 is None:
        return k
    i, j, sign, first = k.equal_pairs
    ns, ds = len(k.spatial), k.diagonal_spatial
    var1, var2 = k.var1, k.var2
    if bool((first != torch.arange(first.numel(), device=first.device)).any()):
        synced = var1[first]  # (n1, ...): a copy
        if not torch.equal(synced, var1):
            var1, var2 = synced, (synced if var2 is var1 else var2)
    if not k.symmetric and i.numel() and not torch.equal(var2[j], var1[i]):
        var2 = var2.clone()
        var2[j] = var1[i]
    nngp = k.nngp
    if i.numel():
        target, v = _same_positions(nngp, spatial_diagonal(var1, ns, ds)[i], ns, ds)
        current = target[i, j]  # (m, *S): a copy
        values = _pair_values(current, v, sign)
        if not torch.equal(values, current):
            if not inplace:
                nngp = nngp.clone()
                target, _ = _same_positions(nngp, v, ns, ds)
            target[i, j] = values
    if k.symmetric and var1 is not k.var1:
        nngp = nngp if (inplace or nngp is not k.nngp) else nngp.clone()
        batch_diagonal(nngp).copy_(var1)
    if nngp is k.nngp and var1 is k.var1 and var2 is k.var2:
        return k
    return k.replace(nngp=nngp, var1=var1, var2=var2)


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
