r"""Empirical (finite-width) neural tangent kernels via ``torch.func``.

For a model :math:`f_\theta: \mathbb R^d \to \mathbb R^k`,

.. math::
    \hat\Theta_{ab}(x, x') = \sum_p \frac{\partial f_a(x)}{\partial\theta_p}\frac{\partial f_b(x')}{\partial\theta_p}
    = \big[J(x) J(x')^\top\big]_{ab}.

``mode`` chooses what is returned for ``x1`` (n1, d) and ``x2`` (n2, d):

* ``"full"``: (n1, n2, k, k), every pair of outputs;
* ``"diagonal"``: (n1, n2, k), :math:`\hat\Theta_{aa}` for each output ``a``;
* ``"trace"``: (n1, n2), the mean :math:`\frac1k\sum_a \hat\Theta_{aa}` -- the quantity
  that converges to the analytic per-output kernel ``arch.kernel(...).ntk`` (neural-tangents
  calls this ``trace_axes=(-1,)``, also normalized by k).

Implementations (all exact, checked against each other in ``tests/library/test_empirical.py``):

* ``"jacobian"``: per-example Jacobians with ``vmap(jacrev)`` and their contraction; memory
  :math:`O(\text{chunk}\cdot k\cdot P)`, in blocks over inputs and parameter tensors so that
  each per-example Jacobian is computed about once. With ``x2=None`` only the blocks on and
  above the diagonal are computed and mirrored (the result is exactly symmetric).
* ``"ntvp"``: NTK-vector products: for each basis output of ``x2`` a VJP then a JVP through
  ``f(x1)``; no Jacobian is stored, good when :math:`P` is large and :math:`n_2 k` small.
* ``"structured"``: models that expose their dense maps through ``model.ntk_parts(x)`` (ntklib's
  dense networks ``arch.module(...)`` of Dense layers and elementwise activations, and shortcut
  networks): a list of ``(s_W, s_b, h, delta)``, one per dense map :math:`z = s_W W h + s_b b`, with
  its input :math:`h` (n, fan_in) and the backpropagated vectors :math:`\delta_a = \partial f_a/\partial z`
  (n, k, fan_out). One contraction serves them all:

  .. math::  \hat\Theta_{ab}(x,x') = \sum_{\text{maps}} \big(s_W^2\, h(x)\cdot h(x') + s_b^2\big)\ \delta_a(x)\cdot\delta_b(x'),

  cost :math:`O(n_1 n_2 \sum_l n_l)` instead of :math:`O(n_1 n_2 P)`.
* ``"auto"``: ``"structured"`` when the model has parts, else ``"jacobian"``.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from .validation import as_inputs, check_choice, check_positive_int
from .networks import SerialModule
from .parallel import map_blocks, num_workers

__all__ = ["empirical_ntk", "empirical_nngp", "ntk_parts"]

_MODES = ("full", "diagonal", "trace")
_IMPLS = ("auto", "jacobian", "ntvp", "structured")


def _model_device_dtype(model: nn.Module):
    for p in model.parameters():
        return p.device, p.dtype
    raise ValueError("model has no parameters, so its tangent kernel is zero; give a model with parameters.")


def _prepare(model, x1, x2):
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}.")
    device, dtype = _model_device_dtype(model)
    # integer data (e.g. pixel counts) are exact in any float dtype: they take the model's
    x1, x2 = (x.to(dtype) if isinstance(x, torch.Tensor) and not (x.is_floating_point() or x.is_complex()) else x
              for x in (x1, x2))
    x1, x2 = as_inputs(x1, x2, in_dim=getattr(model, "in_dim", None) if isinstance(model, SerialModule) else None)
    for name, x in (("x1", x1), ("x2", x2)):
        if x is None:
            continue
        if x.device != device:
            raise ValueError(f"{name} is on {x.device} but the model's parameters are on {device}; "
                             f"move one of them (e.g. {name}.to({str(device)!r})).")
        if x.dtype != dtype:
            raise TypeError(f"{name} has dtype {x.dtype} but the model's parameters are {dtype}; "
                            f"use {name}.to({dtype}) or model.to({dtype}).")
    with torch.no_grad():
        out = model(x1[:1])
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the model must return one tensor of outputs (n, k) or (n,); model(x) returned a "
                        f"{type(out).__name__}. Wrap it in a module whose forward returns the output you want "
                        "the tangent kernel of.")
    return x1, x2


def _reduce(full: torch.Tensor, mode: str) -> torch.Tensor:
    """full (n1, n2, k, k) -> the requested mode."""
    if mode == "full":
        return full
    diag = torch.diagonal(full, dim1=-2, dim2=-1)  # (n1, n2, k)
    return diag if mode == "diagonal" else diag.mean(-1)


def _as_2d_output(out: torch.Tensor, n: int) -> torch.Tensor:
    return out.reshape(n, -1)  # (n, k)


def _jacobian_ntk(model, x1, x2, mode, chunk):
    """Jacobian contraction in blocks of inputs *and* parameter tensors.

    A block holds at most ``chunk * k * P`` Jacobian entries (P parameters, k outputs): as many as
    ``chunk`` rows of the whole Jacobian, the memory bound of the docstring. Parameter tensors are
    packed into groups whose Jacobian for all inputs fits in a block, so that (for m inputs and
    groups of P_g parameters) every per-example Jacobian is computed about once instead of
    m / chunk times; a tensor too large for that is split over inputs instead.
    """
    params = {name: p.detach() for name, p in model.named_parameters()}
    symmetric = x2 is None
    xb = x1 if symmetric else x2
    with torch.no_grad():
        k = _as_2d_output(model(x1[:1]), 1).shape[1]
    sizes = {name: p.numel() for name, p in params.items()}
    budget = chunk * k * sum(sizes.values())  # Jacobian entries held per block
    out = None
    for group in _parameter_groups(sizes, budget // (k * max(x1.shape[0], xb.shape[0]))):
        rows = max(1, budget // (k * sum(sizes[name] for name in group)))  # inputs per block (>= chunk)
        out = _accumulate_jacobian_blocks(out, _group_jacobian(model, params, group), x1, xb, symmetric,
                                          rows, mode)
    return out


def _parameter_groups(sizes: dict, cap: int) -> list[list[str]]:
    """Parameter names packed (first fit, largest first) into groups of at most ``cap`` parameters;
    a tensor of ``cap`` or more parameters forms a group of its own."""
    bins: list[list] = []  # [names, total]
    for name, size in sorted(sizes.items(), key=lambda item: -item[1]):
        fit = next((b for b in bins if size < cap and b[1] + size <= cap), None)
        if fit is None:
            bins.append([[name], size])
        else:
            fit[0].append(name)
            fit[1] += size
    return [names for names, _ in bins]


def _group_jacobian(model, params: dict, group: list[str]):
    """x (n, d) -> per-example Jacobians [(n, k, P_t) for t in group] of the outputs w.r.t. ``group``."""
    fixed = {name: p for name, p in params.items() if name not in group}
    sub = {name: params[name] for name in group}

    def f_single(p, x):  # x (d,) -> (k,)
        return functional_call(model, {**fixed, **p}, (x[None],)).reshape(-1)

    jac_fn = vmap(jacrev(f_single), (None, 0))
    return lambda x: [t.reshape(t.shape[0], t.shape[1], -1) for t in jac_fn(sub, x).values()]


def _accumulate_jacobian_blocks(out, jac, x1, xb, symmetric, rows, mode):
    """out += J(x1) J(xb)^T for one parameter group, in blocks of ``rows`` inputs.

    With ``x2=None`` only the blocks on and above the diagonal are computed (the one on it from a
    single Jacobian) and mirrored, so the result is exactly symmetric.
    """
    n1, n2 = x1.shape[0], xb.shape[0]
    cache = None  # (start, Jacobian) of the last block of xb: reused when the next block needs it
    for i in range(0, n1, rows):
        J1 = cache[1] if symmetric and cache is not None and cache[0] == i else jac(x1[i:i + rows])
        for j in range(i if symmetric else 0, n2, rows):
            if symmetric and j == i:
                J2 = J1
            elif cache is not None and cache[0] == j:
                J2 = cache[1]
            else:
                cache = None  # at most two blocks of Jacobians alive
                J2 = jac(xb[j:j + rows])
                cache = (j, J2)
            block = sum(_contract(a, b, mode) for a, b in zip(J1, J2))  # (r1, r2, ...)
            if out is None:
                out = block.new_zeros((n1, n2) + tuple(block.shape[2:]))
            if not symmetric:
                out[i:i + rows, j:j + rows] += block
            elif j == i:
                out[i:i + rows, i:i + rows] += 0.5 * (block + _swap_inputs(block))  # exactly symmetric
            else:
                out[i:i + rows, j:j + rows] += block
                out[j:j + rows, i:i + rows] += _swap_inputs(block)  # the block for (x_j, x_i)
    return out


def _swap_inputs(block: torch.Tensor) -> torch.Tensor:
    """Theta(x', x) from Theta(x, x'): swap the two input axes and, for mode 'full', the two output axes."""
    block = block.transpose(0, 1)
    return block.transpose(2, 3) if block.ndim == 4 else block


def _contract(a: torch.Tensor, b: torch.Tensor, mode: str) -> torch.Tensor:
    # a (n1, k, P), b (n2, k, P)
    if mode == "full":
        return torch.einsum("iap,jbp->ijab", a, b)
    if mode == "diagonal":
        return torch.einsum("iap,jap->ija", a, b)
    return torch.einsum("iap,jap->ij", a, b) / a.shape[1]


def _ntvp_ntk(model, x1, x2, mode, chunk):
    params = {name: p.detach() for name, p in model.named_parameters()}
    xb = x1 if x2 is None else x2
    f1 = lambda p: _as_2d_output(functional_call(model, p, (x1,)), x1.shape[0])  # (n1, k)
    f2 = lambda p: _as_2d_output(functional_call(model, p, (xb,)), xb.shape[0])  # (n2, k)
    out2, vjp_fn = vjp(f2, params)
    n2, k = out2.shape

    def column(vec):  # vec (n2, k) -> (n1, k) = J1 J2^T vec
        (pull,) = vjp_fn(vec)
        _, push = jvp(f1, (params,), (pull,))
        return push

    cols = []
    for s in range(0, n2 * k, chunk):  # one-hot basis vectors built per chunk: memory O(chunk n2 k)
        idx = torch.arange(s, min(s + chunk, n2 * k), device=out2.device)  # (c,)
        basis = torch.nn.functional.one_hot(idx, n2 * k).to(out2.dtype).reshape(-1, n2, k)  # (c, n2, k)
        cols.append(vmap(column)(basis))  # (c, n1, k)
    cols = torch.cat(cols)  # (n2*k, n1, k)
    full = cols.reshape(n2, k, x1.shape[0], k).permute(2, 0, 3, 1)  # (n1, n2, k_a, k_b)
    return _reduce(full, mode)


def ntk_parts(model: nn.Module, x: torch.Tensor):
    """``model.ntk_parts(x)`` when the model exposes its dense maps (see the module docstring), else None."""
    parts_fn = getattr(model, "ntk_parts", None)
    return None if parts_fn is None else parts_fn(x)


def _contract_parts(parts1, parts2, mode: str) -> torch.Tensor:
    """sum over dense maps of (s_W^2 h1.h2 + s_b^2) (delta1 . delta2), in the requested mode."""
    acc = 0
    for (s_w, s_b, h1, d1), (_, _, h2, d2) in zip(parts1, parts2):
        gram_h = (s_w ** 2) * (h1 @ h2.T) + s_b ** 2  # (n1, n2)
        if mode == "full":
            acc = acc + gram_h[:, :, None, None] * torch.einsum("iao,jbo->ijab", d1, d2)
        elif mode == "diagonal":
            acc = acc + gram_h[:, :, None] * torch.einsum("iao,jao->ija", d1, d2)
        else:
            acc = acc + gram_h * torch.einsum("iao,jao->ij", d1, d2) / d1.shape[1]
    return acc


def _parts_in_blocks(model, x, chunk: int):
    """ntk_parts of ``x`` computed on blocks of ``chunk`` rows in parallel (:func:`ntklib.parallel.map_blocks`),
    then joined: each part's h (n, fan_in) and delta (n, k, fan_out) concatenated over the blocks."""
    blocks = map_blocks(lambda i: ntk_parts(model, x[i:i + chunk]), range(0, x.shape[0], chunk), device=x.device)
    if len(blocks) == 1:
        return blocks[0]
    return [(s_w, s_b, torch.cat([b[j][2] for b in blocks]), torch.cat([b[j][3] for b in blocks]))
            for j, (s_w, s_b, _, _) in enumerate(blocks[0])]


def _structured_ntk(model, x1, x2, mode, chunk):
    """Row blocks of x1 against all of x2, each block one task of a parallel map. The blocks are as coarse
    as the workers allow (at least ``chunk`` rows): a block's memory is its share of the result, and
    small blocks only add per-task overhead (256 inputs of a 784-512x3-1 MLP: 12 ms in 2 blocks, 14 ms in 4)."""
    chunk = max(chunk, -(-max(x1.shape[0], 1 if x2 is None else x2.shape[0]) // num_workers(x1.device)))
    parts2 = _parts_in_blocks(model, x1 if x2 is None else x2, chunk)

    def rows(i):
        if x2 is None:  # the rows of x1 were just propagated: slice them instead of recomputing
            parts1 = [(s_w, s_b, h[i:i + chunk], d[i:i + chunk]) for s_w, s_b, h, d in parts2]
        else:
            parts1 = ntk_parts(model, x1[i:i + chunk])
        return _contract_parts(parts1, parts2, mode)

    return torch.cat(map_blocks(rows, range(0, x1.shape[0], chunk), device=x1.device), dim=0)


def empirical_ntk(model: nn.Module, x1, x2=None, *, mode: str = "trace", implementation: str = "auto",
                  chunk_size: int = 64) -> torch.Tensor:
    r"""Empirical NTK :math:`J(x_1)J(x_2)^\top` of any torch model at its current parameters.

    Args:
      model: a ``torch.nn.Module`` mapping (n, d) inputs to (n, k) outputs (or (n,)).
      x1, x2: (n1, d) and (n2, d) inputs on the model's device and dtype; ``x2=None`` means x1.
      mode: ``"trace"`` (n1, n2) mean over outputs, ``"diagonal"`` (n1, n2, k) or ``"full"`` (n1, n2, k, k).
      implementation: ``"auto"``, ``"jacobian"``, ``"ntvp"`` or ``"structured"`` (module docstring).
      chunk_size: rows (Jacobian) or basis vectors (ntvp) per block; bounds memory. The structured path,
        whose blocks hold only their share of the result, uses at least this many rows and otherwise
        one block per worker thread.
    """
    check_choice("mode", mode, _MODES)
    check_choice("implementation", implementation, _IMPLS)
    chunk = check_positive_int("chunk_size", chunk_size)
    x1, x2 = _prepare(model, x1, x2)
    structured_ok = bool(getattr(model, "has_ntk_parts", False))
    if implementation == "structured" and not structured_ok:
        raise ValueError("implementation='structured' needs a model that exposes its dense maps (model.ntk_parts: "
                         "ntklib's dense and shortcut networks); use 'jacobian' or 'ntvp' for other models.")
    if implementation == "auto":
        implementation = "structured" if structured_ok else "jacobian"
    fn = {"jacobian": _jacobian_ntk, "ntvp": _ntvp_ntk, "structured": _structured_ntk}[implementation]
    return fn(model, x1, x2, mode, chunk)


def empirical_nngp(model: nn.Module, x1, x2=None) -> torch.Tensor:
    r"""Empirical output covariance of one network, :math:`\frac1k\sum_a f_a(x_1) f_a(x_2)`, shape (n1, n2).

    Its average over random initializations is the NNGP kernel (see :mod:`ntklib.monte_carlo`).
    """
    x1, x2 = _prepare(model, x1, x2)
    with torch.no_grad():
        f1 = _as_2d_output(model(x1), x1.shape[0])  # (n1, k)
        f2 = f1 if x2 is None else _as_2d_output(model(x2), x2.shape[0])  # (n2, k)
    return f1 @ f2.T / f1.shape[1]
