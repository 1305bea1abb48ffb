r"""Layers: one description, two views (infinite-width kernels and a finite network).

Every layer maps the kernel record of its input to that of its output
(:meth:`Layer.kernel_fn`) and builds the matching finite ``torch.nn.Module``
(:meth:`Layer.build`). :func:`serial` composes layers; any layer or composition has
:meth:`Layer.kernel` (the analytic NNGP and NTK) and :meth:`Layer.module` (a seeded
finite network).

Dense layer, exactly as neural-tangents' ``stax.Dense`` (derived in notebook 02):

* NTK parameterization: :math:`\Sigma' = W_{std}^2\,\Sigma + b_{std}^2`,
  :math:`\Theta' = \Sigma' + W_{std}^2\,\Theta`.
* standard parameterization (fan-in :math:`n_{in}`):
  :math:`\Theta' = n_{in}\,\Sigma + [b\ \text{present}] + W_{std}^2\,\Theta`, and the same
  :math:`\Sigma'`. Here :math:`n_{in}\Sigma = \sum_j h_j(x) h_j(x')` is the weight-gradient
  term and 1 the bias-gradient term; this NTK grows with the widths.

``b_std=None`` removes the bias parameter (:math:`b_{std} = 0` in the NNGP and no bias
term in the NTK).
"""
from __future__ import annotations

import warnings
from typing import Sequence

import torch
from torch import nn

from .validation import as_inputs, check_choice, check_nonneg, check_positive_int, default_device
from .kernel import Kernel
from .networks import DenseModule, SerialModule

__all__ = ["Layer", "Dense", "Serial", "serial"]

_GET = ("nngp", "ntk")


class Layer:
    """Base class. Subclasses implement :meth:`kernel_fn` and :meth:`build`."""

    #: True when ``kernel_fn`` computes each entry (i, j) of ``nngp``/``ntk`` from the same entry
    #: of its input, ``var1[i]`` and ``var2[j]`` alone (plus scalars such as ``width``), and
    #: ``var1``/``var2`` elementwise from themselves. :meth:`kernel` then evaluates large kernels
    #: on row strips (see :meth:`_strip_kernel`). Layers that mix entries (symmetrizing a
    #: quadrature, normalizing over the batch) must leave it False, the default.
    entrywise = False

    # -- the two views -------------------------------------------------------------------
    def kernel_fn(self, k: Kernel) -> Kernel:  # pragma: no cover - abstract
        raise NotImplementedError

    def build(self, in_dim: int, generator: torch.Generator, dtype: torch.dtype) -> tuple[list[nn.Module], int]:
        """Finite modules for an input of ``in_dim`` channels, and the output channels."""
        raise NotImplementedError  # pragma: no cover - abstract

    # -- user-facing ---------------------------------------------------------------------
    def kernel(self, x1, x2=None, *, get: str | Sequence[str] = _GET, diagonal: bool = False,
               batch_size: int | None = None, dtype: torch.dtype = torch.float64) -> Kernel:
        r"""Infinite-width kernels between the rows of ``x1`` (n1, d) and ``x2`` (n2, d).

        Returns a :class:`~ntklib.Kernel` whose ``.nngp`` and ``.ntk`` are (n1, n2)
        (``x2=None`` means ``x2 = x1``), or (n1,) with ``diagonal=True``. ``get="nngp"``
        skips the NTK. ``batch_size`` computes the result in (batch_size, batch_size) tiles
        so that intermediate memory stays bounded. Computation runs in ``dtype`` (float64 by
        default) on the inputs' device.
        """
        get = (get,) if isinstance(get, str) else tuple(get)
        for g in get:
            check_choice("get", g, _GET)
        x1, x2 = as_inputs(x1, x2, dtype=dtype)
        if batch_size is not None:
            batch_size = check_positive_int("batch_size", batch_size)
        if diagonal and x2 is not None:
            raise ValueError("diagonal=True computes k(x1, x1) on the diagonal; pass x2=None.")
        compute_ntk = "ntk" in get
        n1 = x1.shape[0]
        n2 = n1 if x2 is None else x2.shape[0]
        if batch_size is None or (n1 <= batch_size and n2 <= batch_size):
            if not diagonal and self.entrywise and n1 * n2 > _strip_entries(x1.device):
                k = self._strip_kernel(x1, x2, compute_ntk)
            else:
                k = self.kernel_fn(Kernel.from_inputs(x1, x2, diagonal=diagonal, compute_ntk=compute_ntk))
        else:
            k = self._tiled_kernel(x1, x2, diagonal, compute_ntk, batch_size)
        _check_finite(k, self)
        if not compute_ntk:
            k = k.replace(ntk=None)
        return k

    def _strip_kernel(self, x1, x2, compute_ntk) -> Kernel:
        r"""The untiled kernel of an ``entrywise`` architecture, computed on row strips.

        The whole recursion, from the input kernel :math:`x_1 x_2^\top/d` on, runs on strips of
        about ``_strip_entries`` entries (which stay in the CPU cache across the ~10 elementwise
        passes per layer) and, for ``x2=None``, only on the upper triangle, mirrored below (half
        the work; exactly symmetric). The variances of every layer are computed once for all
        points (the same vector operations as the untiled path) and shared by all strips; with
        ``x2=None`` each strip's diagonal is set to them at every layer, as the untiled path
        does, so the diagonal stays exact. Entries agree with the untiled path to rounding (the
        last bit of each elementwise function, and for ``x2=None`` the input kernel is not
        averaged with its transpose: mirroring makes it symmetric).
        """
        layers = self.layers if isinstance(self, Serial) else (self,)
        symmetric = x2 is None
        if symmetric:
            k0 = Kernel.from_inputs(x1, diagonal=True, compute_ntk=False)  # var1 = |x|^2 / d
            k0 = k0.replace(diagonal=False)
        else:
            k0 = Kernel.from_inputs(x1, x2, compute_ntk=False)  # (n1, n2), equal rows snapped

        def variances(v):  # the variance vector after every layer, for the points with variance v
            kd = k0.replace(nngp=v, ntk=None, var1=v, var2=v, diagonal=True, symmetric=False)
            out = [v]
            for layer in layers:
                kd = layer.kernel_fn(kd)
                out.append(kd.var1)
            return out

        V1 = variances(k0.var1)
        V2 = V1 if symmetric else variances(k0.var2)
        from .activations import Activation  # (activations imports this module)
        plain_activation = [isinstance(layer, Activation) and type(layer).kernel_fn is Activation.kernel_fn
                             for layer in layers]
        n1, n2, d = x1.shape[0], V2[0].shape[0], x1.shape[1]
        nngp = x1.new_empty(n1, n2)
        ntk = x1.new_empty(n1, n2) if compute_ntk else None
        rows = max(1, min(_strip_entries(x1.device) // n2, max(32, -(-n1 // 8))))  # and >= 8 strips if >= 32 rows
        t = None
        for i0 in range(0, n1, rows):
            i1 = min(n1, i0 + rows)
            if symmetric:  # columns >= i0 only: the strip's own diagonal is the diagonal (i, i)
                j0 = i0
                c = (x1[i0:i1] @ x1[i0:].T).div_(d)  # (r, n1 - i0)
                c.diagonal().copy_(V1[0][i0:i1])
            else:
                j0 = 0
                c = k0.nngp[i0:i1]  # (r, n2)
            t = k0.replace(nngp=c, ntk=torch.zeros_like(c) if compute_ntk else None,
                           var1=V1[0][i0:i1], var2=V2[0][j0:], symmetric=False)
            for l, layer in enumerate(layers, start=1):
                if plain_activation[l - 1]:  # Activation.kernel_fn without its variances (known: V)
                    nngp_l, dot = layer.dual(t.nngp, t.var1[:, None], t.var2[None, :], need_dot=compute_ntk)
                    t = t.replace(nngp=nngp_l, ntk=None if dot is None else t.ntk * dot, is_input=False)
                else:
                    t = layer.kernel_fn(t)
                t = t.replace(var1=V1[l][i0:i1], var2=V2[l][j0:])
                if symmetric:
                    t.nngp.diagonal().copy_(t.var1)
            nngp[i0:i1, j0:] = t.nngp
            if compute_ntk:
                ntk[i0:i1, j0:] = t.ntk
            if symmetric:  # mirror: the diagonal block's upper triangle, and the block below it
                for out in (nngp, ntk) if compute_ntk else (nngp,):
                    blk = out[i0:i1, i0:i1]  # (r, r)
                    blk.copy_(blk.triu() + blk.triu(1).T)
                    out[i1:, i0:i1] = out[i0:i1, i1:].T
        return t.replace(nngp=nngp, ntk=ntk, var1=V1[-1], var2=V1[-1] if symmetric else V2[-1],
                         symmetric=symmetric)

    def _tiled_kernel(self, x1, x2, diagonal, compute_ntk, bs) -> Kernel:
        def run(a, b=None, diag=False):
            return self.kernel_fn(Kernel.from_inputs(a, b, diagonal=diag, compute_ntk=compute_ntk))

        n1 = x1.shape[0]
        if diagonal:
            parts = [run(x1[i:i + bs], diag=True) for i in range(0, n1, bs)]
            cat = lambda name: None if getattr(parts[0], name) is None else torch.cat([getattr(p, name) for p in parts])
            var = cat("var1")
            return parts[0].replace(nngp=cat("nngp"), ntk=cat("ntk"), var1=var, var2=var)
        symmetric = x2 is None
        xb = x1 if symmetric else x2
        n2 = xb.shape[0]
        nngp = x1.new_empty(n1, n2)
        ntk = x1.new_empty(n1, n2) if compute_ntk else None
        var1, var2 = x1.new_empty(n1), x1.new_empty(n2)
        last = None
        for i in range(0, n1, bs):
            for j in range(i if symmetric else 0, n2, bs):  # symmetric: upper blocks, mirrored below
                same_block = symmetric and i == j
                t = run(x1[i:i + bs]) if same_block else run(x1[i:i + bs], xb[j:j + bs])
                nngp[i:i + bs, j:j + bs] = t.nngp
                if compute_ntk:
                    ntk[i:i + bs, j:j + bs] = t.ntk
                if symmetric and not same_block:  # exactly symmetric, as the untiled kernel
                    nngp[j:j + bs, i:i + bs] = t.nngp.T
                    if compute_ntk:
                        ntk[j:j + bs, i:i + bs] = t.ntk.T
                var1[i:i + bs] = t.var1
                var2[j:j + bs] = t.var2
                last = t
        if symmetric:
            var2 = var1
        return last.replace(nngp=nngp, ntk=ntk, var1=var1, var2=var2, symmetric=symmetric)

    def module(self, in_dim: int, *, seed: int | None = None, dtype: torch.dtype | None = None,
               device: torch.device | str | None = None) -> SerialModule:
        """A finite network with these layers, initialized from ``seed``.

        Parameters are drawn on the CPU from ``torch.Generator().manual_seed(seed)`` (the same
        seed gives the same network on every device) and then moved to ``device`` (default:
        CUDA when present, else the CPU). ``dtype`` defaults to torch's default dtype.
        ``seed=None`` draws the seed from torch's global generator, so ``torch.manual_seed``
        makes it reproducible (and the global generator is advanced, never re-seeded).
        """
        in_dim = check_positive_int("in_dim", in_dim)
        if seed is None:  # not torch.seed(): that re-seeds the global generator non-deterministically
            seed = int(torch.randint(0, 2 ** 62, (), dtype=torch.int64))
        gen = torch.Generator()
        gen.manual_seed(int(seed))
        dtype = dtype or torch.get_default_dtype()
        mods, _ = self.build(in_dim, gen, dtype)
        net = SerialModule(*mods, arch=self, in_dim=in_dim)
        return net.to(device if device is not None else default_device())

    def out_dim(self, in_dim: int) -> int:
        """Number of output channels for ``in_dim`` input channels."""
        _, out = self.build(in_dim, torch.Generator().manual_seed(0), torch.float32)
        return out


def _strip_entries(device: torch.device) -> int:
    """Entries per row strip in :meth:`Layer._strip_kernel`: about 4 MB of float64 per temporary on
    the CPU (a few of them fit the last-level cache), larger on accelerators (fewer kernel launches)."""
    return 1 << 19 if device.type == "cpu" else 1 << 22


def _check_finite(k: Kernel, layer: Layer) -> None:
    for name in ("nngp", "ntk"):
        t = getattr(k, name)
        # one pass (the sum) when all is well; the entrywise test only if the sum is not finite
        if t is not None and not bool(torch.isfinite(t.sum())) and not bool(torch.isfinite(t).all()):
            raise FloatingPointError(
                f"the {name} kernel of {layer!r} overflowed {t.dtype} (it has non-finite entries). "
                "Off the critical initialization the variance grows geometrically with depth "
                "(for ReLU like (W_std**2 / 2)**depth): use W_std closer to its critical value "
                "(sqrt(2) for ReLU), fewer layers, or normalize the inputs.")


class Dense(Layer):
    r"""Fully connected layer of ``width`` units (see the module docstring for the equations).

    Args:
      width: number of output units (only the finite network and the standard
        parameterization's NTK depend on it).
      W_std: weight scale :math:`\sigma_w \ge 0`.
      b_std: bias scale :math:`\sigma_b \ge 0`, or None for no bias parameter.
      parameterization: ``"ntk"`` or ``"standard"``.
    """

    def __init__(self, width: int, W_std: float = 1.0, b_std: float | None = 0.0,
                 parameterization: str = "ntk"):
        self.width = check_positive_int("width", width)
        self.W_std = check_nonneg("W_std", W_std)
        self.b_std = check_nonneg("b_std", b_std, allow_none=True)
        self.parameterization = check_choice("parameterization", parameterization, ("ntk", "standard"))

    def __repr__(self) -> str:
        extra = "" if self.parameterization == "ntk" else ", parameterization='standard'"
        return f"Dense({self.width}, W_std={self.W_std}, b_std={self.b_std}{extra})"

    entrywise = True

    def kernel_fn(self, k: Kernel) -> Kernel:
        w2 = self.W_std ** 2
        b2 = 0.0 if self.b_std is None else self.b_std ** 2
        affine = lambda t: w2 * t + b2
        nngp = (k.nngp * w2).add_(b2)  # w2 nngp + b2, in place on the new tensor
        var1 = affine(k.var1)
        var2 = var1 if k.var2 is k.var1 else affine(k.var2)
        ntk = k.ntk
        if ntk is not None:
            if self.parameterization == "ntk":
                ntk = (ntk * w2).add_(nngp)  # nngp' + w2 ntk
            else:  # width nngp + w2 ntk (+ 1 for the bias gradient)
                ntk = (k.nngp * k.width).add_(ntk * w2)
                if self.b_std is not None:
                    ntk.add_(1.0)
        return k.replace(nngp=nngp, ntk=ntk, var1=var1, var2=var2, width=self.width, is_input=False)

    def build(self, in_dim, generator, dtype):
        return [DenseModule(in_dim, self.width, self.W_std, self.b_std, self.parameterization,
                            generator, dtype)], self.width


class Serial(Layer):
    """Layers applied one after another: kernels are folded through ``kernel_fn`` in order."""

    def __init__(self, *layers: Layer):
        if not layers:
            raise ValueError("serial(...) needs at least one layer.")
        flat = []
        for i, layer in enumerate(layers):
            if isinstance(layer, type) and issubclass(layer, Layer):
                raise TypeError(f"layer {i} is the class {layer.__name__}; call it: {layer.__name__}(...).")
            if not isinstance(layer, Layer):
                raise TypeError(f"layer {i} must be an ntklib layer (Dense, Relu, ...); got {layer!r}. "
                                "For an arbitrary elementwise function use ntklib.Elementwise(fn).")
            flat.extend(layer.layers if isinstance(layer, Serial) else [layer])
        self.layers = tuple(flat)

    def __repr__(self) -> str:
        return "serial(" + ", ".join(map(repr, self.layers)) + ")"

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def entrywise(self) -> bool:
        return all(layer.entrywise for layer in self.layers)

    def __getitem__(self, i):
        return self.layers[i] if isinstance(i, int) else Serial(*self.layers[i])

    def kernel_fn(self, k: Kernel) -> Kernel:
        for layer in self.layers:
            k = layer.kernel_fn(k)
        return k

    def build(self, in_dim, generator, dtype):
        mods = []
        for layer in self.layers:
            m, in_dim = layer.build(in_dim, generator, dtype)
            mods.extend(m)
        return mods, in_dim


def serial(*layers: Layer) -> Serial:
    """Compose layers: ``serial(Dense(512), Relu(), Dense(1))``."""
    return Serial(*layers)
