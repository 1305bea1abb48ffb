r"""Evaluating an architecture's kernel in blocks of inputs, so that memory stays bounded for any n.

:meth:`ntklib.Layer.kernel` calls :func:`kernel`, which picks one of three evaluations (the
numbers agree to rounding; ``tests/library/test_kernels.py`` and ``test_fast_paths.py`` check it):

1. **One block.** When the result is small (at most :func:`tile_entries` numbers) and no
   ``batch_size`` is given: ``layer.kernel_fn`` on the whole input record.
2. **Shared variances, then tiles** (architectures whose layers are all ``entrywise``: each
   pair of inputs (i, j) -- with all its positions -- is computed from the same pair below and
   the per-position variances of inputs i and j). First the recursion on the batch diagonal
   :math:`k(x, x)` runs once for all inputs, in chunks, and keeps every layer's per-position
   variances (n, \*S). Then the cross kernel is evaluated on tiles of (rows x columns) pairs, each
   small enough to stay in the CPU cache through all layers (about ten elementwise passes per
   layer), with ``layer.cross_kernel_fn`` given those variances. For ``x2=None`` only the tiles
   on and above the diagonal are computed and mirrored (half the work, exactly symmetric), and
   each layer's batch diagonal is reset to the shared variances, so that it is exact. On the CPU
   the tiles are coarse tasks for ``torch.get_num_threads()`` Python threads, each running its
   tiles with one torch thread (see :func:`kernel`).
3. **Independent tiles** (architectures with a layer that is not ``entrywise``, such as
   ``Shortcut``), only when ``batch_size`` is given (else one block): each tile's inputs through
   ``layer.kernel_fn``, mirrored for ``x2=None``.

``batch_size`` fixes square tiles of ``batch_size`` inputs; by default tiles are chosen from a
memory budget (:func:`tile_entries` numbers per temporary), so that a (n1, n2, P, P) kernel
of P positions is never held at once for more than a tile of pairs.

**Spatial kernels** are tracked with only the entries that reach the output, as neural-tangents
does: each layer says, through ``Layer.input_diagonal_spatial``, whether it can work from the
same-position entries of its input (convolutions and nonlinearities, when their own output is
needed on the diagonal only; ``Flatten``), or needs every pair of positions (``AvgPool``,
``GlobalAvgPool``, and the output of a network that ends on a spatial layer). Unlike
neural-tangents, which chooses once for the whole network, the choice is made per layer: after
the last pooling layer of a network read out by ``Flatten``, the kernel drops to its spatial
diagonal, O(n1 n2 P) instead of O(n1 n2 P^2).
"""
from __future__ import annotations

import math

import torch

from .kernel import (Kernel, batch_diagonal, equal_inputs, input_nngp, snap_equal_inputs, swap_inputs,
                     symmetric_from_upper)
from .parallel import map_blocks

__all__ = ["kernel", "tile_entries", "spatial_plan"]


def tile_entries(device: torch.device) -> int:
    """Numbers per tile: about 4 MB of float64 per temporary on the CPU (a few of them fit the
    last-level cache), more on accelerators (fewer kernel launches)."""
    return 1 << 19 if device.type == "cpu" else 1 << 22


def spatial_plan(layers) -> list[bool]:
    """``diagonal_spatial`` of the kernel entering each layer, and of the output (last entry).

    Walks the layers backwards from the output, which needs every pair of positions when it is
    spatial (as neural-tangents returns it); ``Layer.input_diagonal_spatial`` maps what a layer's
    output needs to what its input needs. Entries for vector kernels are irrelevant.
    """
    plan = [False]
    for layer in reversed(layers):
        plan.append(layer.input_diagonal_spatial(plan[-1]))
    return plan[::-1]


def kernel(layer, x1: torch.Tensor, x2: torch.Tensor | None, *, diagonal: bool, compute_ntk: bool,
           batch_size: int | None) -> Kernel:
    """The kernel record of ``layer`` for inputs ``x1``, ``x2`` (validated tensors), in blocks.

    Every torch operation runs with one thread; the ``torch.get_num_threads()`` threads work on
    tiles as coarse tasks instead (:func:`ntklib.parallel.map_blocks`). Splitting each of the many
    small elementwise operations across threads made every operation wait for the slowest thread,
    which on a machine with other work (a browser, a second kernel) cost up to ten times the
    compute. ``torch.set_num_threads`` is restored on return.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _kernel(layer, x1, x2, diagonal, compute_ntk, batch_size, threads)
    finally:
        torch.set_num_threads(threads)


def _kernel(layer, x1, x2, diagonal, compute_ntk, batch_size, threads) -> Kernel:
    layers = getattr(layer, "layers", (layer,))  # a Serial's layers, else the layer itself
    plan = spatial_plan(layers)
    n1 = x1.shape[0]
    n2 = n1 if x2 is None else x2.shape[0]
    pair = _pair_entries(x1, plan[0])  # numbers per pair of inputs (1 for vectors, P or P^2)
    budget = tile_entries(x1.device)
    chunk = batch_size or max(1, budget // pair)  # inputs per chunk of the batch-diagonal pass
    if diagonal:
        _, out = _self_pass(layers, plan, x1, compute_ntk, chunk, equal_inputs(x1)[3])
        return out
    entrywise = all(lay.entrywise for lay in layers)
    small = n1 * n2 * pair <= budget if batch_size is None else max(n1, n2) <= batch_size
    if small or (batch_size is None and not entrywise):
        k0 = Kernel.from_inputs(x1, x2, compute_ntk=compute_ntk, diagonal_spatial=plan[0])
        return _run(layers, plan, k0)
    if entrywise:
        rows, cols = _tile_shape(n1, n2, pair, budget, batch_size)
        return _shared_variance_tiles(layers, plan, x1, x2, compute_ntk, chunk, rows, cols, threads)
    return _independent_tiles(layers, plan, x1, x2, compute_ntk, batch_size)


def _pair_entries(x: torch.Tensor, diagonal_spatial: bool) -> int:
    P = math.prod(x.shape[2:])
    return P if diagonal_spatial else P * P


def _tile_shape(n1: int, n2: int, pair: int, budget: int, batch_size: int | None) -> tuple[int, int]:
    """(rows, columns) of a tile: ``batch_size`` squared, or about ``budget`` numbers: as many
    columns as fit (all of them for vector kernels, i.e. row strips) and at least 8 row strips
    when there are 32 rows or more (so that the work is spread over the tiles evenly)."""
    if batch_size is not None:
        return batch_size, batch_size
    pairs = max(1, budget // pair)
    cols = min(n2, pairs)
    rows = max(1, min(pairs // cols, max(32, -(-n1 // 8))))
    return rows, cols


def _to_plan(k: Kernel, diagonal_spatial: bool) -> Kernel:
    """Drop ``k`` to its spatial diagonal when the next layer needs no more (never the reverse)."""
    if diagonal_spatial and k.full_spatial:
        return k.to_diagonal_spatial()
    return k


def _run(layers, plan, k: Kernel) -> Kernel:
    """The recursion on a whole record: each layer's ``kernel_fn``, at the planned spatial layout."""
    for layer, diagonal_spatial in zip(layers, plan):
        k = layer.kernel_fn(_to_plan(k, diagonal_spatial))
    return k


def _self_pass(layers, plan, x: torch.Tensor, compute_ntk: bool, chunk: int, first: torch.Tensor):
    r"""The batch-diagonal recursion :math:`k(x, x)` for all rows of ``x``, ``chunk`` rows at a time.

    Returns ``(V, k)``: ``V[l]`` (n, \*S_l) are the per-position variances entering layer ``l``
    (``V[-1]``: of the output), and ``k`` the output record (``diagonal=True``). Rows equal or
    opposite to an earlier row (``first``, from :func:`ntklib.kernel.equal_inputs`) get that row's
    numbers, at every layer.
    """
    Vs, ks = [], []
    for s in range(0, x.shape[0], chunk):
        k = Kernel.from_inputs(x[s:s + chunk], diagonal=True, compute_ntk=compute_ntk, diagonal_spatial=plan[0])
        V = []
        for layer, diagonal_spatial in zip(layers, plan):
            k = _to_plan(k, diagonal_spatial)
            V.append(k.position_variances()[0])
            k = layer.kernel_fn(k)
        V.append(k.position_variances()[0])
        Vs.append(V)
        ks.append(k)
    if len(ks) == 1:
        V, k = Vs[0], ks[0]
    else:
        V = [torch.cat(vs) for vs in zip(*Vs)]
        cat = lambda name: None if getattr(ks[0], name) is None else torch.cat([getattr(p, name) for p in ks])
        var = cat("var1")
        k = ks[0].replace(nngp=var, ntk=cat("ntk"), var1=var, var2=var)
    if bool((first != torch.arange(x.shape[0], device=first.device)).any()):
        V = [v[first] for v in V]
        var = k.var1[first]
        k = k.replace(nngp=var, ntk=None if k.ntk is None else k.ntk[first], var1=var, var2=var)
    return V, k


def _shared_variance_tiles(layers, plan, x1, x2, compute_ntk, chunk, rows, cols, threads) -> Kernel:
    """Evaluation 2 of the module docstring."""
    symmetric = x2 is None
    xb = x1 if symmetric else x2
    n1, n2 = x1.shape[0], xb.shape[0]
    i, j, sign, first = equal_inputs(x1, x2)
    pairs = (i, j, sign) if i.numel() else None  # snapped to +-var exactly (within x1 for x2=None)
    V1, out1 = _self_pass(layers, plan, x1, False, chunk, first)
    if symmetric:
        V2, out2 = V1, out1
    else:
        V2, out2 = _self_pass(layers, plan, x2, False, chunk, torch.arange(n2, device=x2.device))
        if pairs is not None:  # equal inputs: the same variances at every layer (even in x)
            for v1, v2 in zip(V1, V2):
                v2[j] = v1[i]
            out2.var1[j] = out1.var1[i]
    shape = (n1, n2) + tuple(out1.var1.shape[1:])  # the output's layout, as the batch diagonal's
    nngp = out1.var1.new_empty(shape)
    ntk = out1.var1.new_empty(shape) if compute_ntk else None
    spatial, diagonal_spatial = tuple(x1.shape[2:]), plan[0] or x1.ndim == 2

    def tile(i0: int, i1: int, j0: int, j1: int) -> None:
        on_diagonal = symmetric and j0 == i0  # the tile holds the pairs (i, i), i0 <= i < min(i1, j1)
        c = input_nngp(x1[i0:i1], xb[j0:j1], plan[0])  # (r, c, ...)
        t = Kernel(nngp=c, ntk=torch.zeros_like(c) if compute_ntk else None, var1=None, var2=None,
                   width=x1.shape[1], spatial=spatial, diagonal_spatial=diagonal_spatial)
        if on_diagonal:
            _reset_diagonal(t, V1[0][i0:i1])
        if pairs is not None:
            _snap_tile(t, V1[0], pairs, i0, i1, j0, j1)
        for l, layer in enumerate(layers):
            t = layer.cross_kernel_fn(_to_plan(t, plan[l]), V1[l][i0:i1], V2[l][j0:j1], symmetric=symmetric)
            if on_diagonal:
                _reset_diagonal(t, V1[l + 1][i0:i1])
        for out, part in ((nngp, t.nngp), (ntk, t.ntk)) if compute_ntk else ((nngp, t.nngp),):
            out[i0:i1, j0:j1] = part
            if symmetric:
                _mirror(out, t, i0, i1, j0, j1)

    _run_tiles(tile, [(i0, min(n1, i0 + rows), j0, min(n2, j0 + cols))
                      for i0 in range(0, n1, rows) for j0 in range(i0 if symmetric else 0, n2, cols)],
               x1.device, threads)
    if symmetric and len(out1.var1.shape) > 1 + len(spatial):  # full spatial: the pairs (i, i) at every pair
        batch_diagonal(nngp).copy_(out1.var1)                  # of positions, as kernel_fn keeps them
    return out1.replace(nngp=nngp, ntk=ntk, var1=out1.var1, var2=out2.var1, diagonal=False, symmetric=symmetric)


def _run_tiles(tile, tasks: list, device: torch.device, threads: int) -> None:
    """``tile(*task)`` for every task, on ``threads`` workers with one torch thread each
    (:func:`ntklib.parallel.map_blocks`; serially on accelerators). The tiles write disjoint parts of
    the output, so the order does not matter."""
    map_blocks(lambda task: tile(*task), tasks, device=device, workers=threads)


def _reset_diagonal(t: Kernel, v: torch.Tensor) -> None:
    r"""In place: the pairs (i, i) of a tile starting on the batch diagonal get the shared
    per-position variances ``v`` (m, \*S) on their spatial diagonal (exactly, as in ``kernel_fn``)."""
    d = batch_diagonal(t.nngp)  # (m, ...)
    m = d.shape[0]
    if t.full_spatial:
        P = math.prod(t.spatial)
        d.reshape(m, P, P).diagonal(dim1=1, dim2=2).copy_(v[:m].reshape(m, P))
    else:
        d.copy_(v[:m])


def _snap_tile(t: Kernel, v1: torch.Tensor, pairs, i0: int, i1: int, j0: int, j1: int) -> None:
    """Equal or opposite inputs (i, j) inside the tile: the spatial diagonal of nngp[i, j] := +-v1[i]."""
    i, j, sign = pairs
    inside = (i >= i0) & (i < i1) & (j >= j0) & (j < j1)
    if bool(inside.any()):
        snap_equal_inputs(t.nngp, v1, i[inside], j[inside], sign[inside], n_spatial=len(t.spatial),
                          diagonal_spatial=t.diagonal_spatial, i0=i0, j0=j0)


def _mirror(out: torch.Tensor, t: Kernel, i0: int, i1: int, j0: int, j1: int) -> None:
    """For x2=None, after the tile of rows [i0, i1) and columns [j0, j1) (j0 >= i0) was written:
    ``out[j, i] = swap(out[i, j])`` for its pairs with j >= i1, and, for the tile on the diagonal
    (j0 == i0), its square block made exactly symmetric from its upper half."""
    ns, ds = len(t.spatial), t.diagonal_spatial
    if j0 == i0:
        m = min(i1, j1) - i0
        blk = out[i0:i0 + m, i0:i0 + m]  # (m, m, ...)
        blk.copy_(symmetric_from_upper(blk, ns, ds))
    lo = max(i1, j0)
    if j1 > lo:
        out[lo:j1, i0:i1] = swap_inputs(out[i0:i1, lo:j1], ns, ds)


def _independent_tiles(layers, plan, x1, x2, compute_ntk, bs) -> Kernel:
    """Evaluation 3 of the module docstring: every (bs, bs) tile from its own inputs through ``kernel_fn``."""
    def run(a, b=None):
        return _run(layers, plan, Kernel.from_inputs(a, b, compute_ntk=compute_ntk, diagonal_spatial=plan[0]))

    symmetric = x2 is None
    xb = x1 if symmetric else x2
    n1, n2 = x1.shape[0], xb.shape[0]
    nngp = ntk = var1 = var2 = last = None
    for i in range(0, n1, bs):
        for j in range(i if symmetric else 0, n2, bs):  # symmetric: upper blocks, mirrored below
            same_block = symmetric and i == j
            t = run(x1[i:i + bs]) if same_block else run(x1[i:i + bs], xb[j:j + bs])
            if nngp is None:
                nngp = t.nngp.new_empty((n1, n2) + t.nngp.shape[2:])
                ntk = t.nngp.new_empty(nngp.shape) if compute_ntk else None
                var1 = t.var1.new_empty((n1,) + t.var1.shape[1:])
                var2 = t.var2.new_empty((n2,) + t.var2.shape[1:])
            for out, tile in ((nngp, t.nngp), (ntk, t.ntk)) if compute_ntk else ((nngp, t.nngp),):
                out[i:i + bs, j:j + bs] = tile
                if symmetric and not same_block:  # exactly symmetric, as the untiled kernel
                    out[j:j + bs, i:i + bs] = swap_inputs(tile, len(t.spatial), t.diagonal_spatial)
            var1[i:i + bs] = t.var1
            var2[j:j + bs] = t.var2
            last = t
    if symmetric:
        var2 = var1
    return last.replace(nngp=nngp, ntk=ntk, var1=var1, var2=var2, symmetric=symmetric)
