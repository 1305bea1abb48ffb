r"""Benchmark: empirical NTK of a 784-512-512-512-1 ReLU MLP, several implementations side by side.

The network is ``serial([Dense(512, W_std=1.5, b_std=0.1), Relu()] * 3, Dense(1, 1.5, 0.1)).module(784)``
(NTK parameterization, 928,257 parameters) in float32; the kernel is the full (m, m, 1, 1) Gram
matrix :math:`J(x) J(x)^\top` on m = 64 and 256 standard normal inputs. Implementations:

* ``ntklib structured``: ``empirical_ntk(net, x, mode="full", implementation="structured")``
  (per-layer structure; only for ntklib's own dense networks);
* ``ntklib jacobian`` / ``ntklib ntvp``: the generic paths for any torch model (``"jacobian"`` is
  what ``"auto"`` picks for a model that is not ntklib's own MLP);
* ``tutorial recipe``: the Jacobian contraction of PyTorch's "Neural Tangent Kernels" tutorial
  written out here (``vmap(jacrev)`` per input batch, then one einsum per parameter tensor);
* ``NT structured`` / ``NT jacobian``: neural-tangents' ``empirical_ntk_fn(apply_fn,
  trace_axes=(), vmap_axes=0, implementation=STRUCTURED_DERIVATIVES | JACOBIAN_CONTRACTION)``
  on the same parameters, ``jax.jit``-compiled by a warm-up call, timed with ``block_until_ready``
  (when neural-tangents is importable; see benchmarks/README.md).

Times are medians of at least ``--repeats`` runs after one warm-up (fast cases get more runs, up to
1 s of timing, so that bursts of load on a shared machine do not move them); ``vs`` columns are time ratios
(targets: ntklib structured <= 1x NT structured; ntklib jacobian <= 1x the tutorial recipe).
``max rel diff`` compares every result with ntklib structured. Usage::

    python benchmarks/bench_empirical.py [--m 64 256] [--repeats 3] [--skip-ntvp-above 64]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch.func import functional_call, jacrev, vmap

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _nt import import_neural_tangents  # noqa: E402
from _timing import fmt_ratio, fmt_s, machine, median_time, print_table  # noqa: E402

import ntklib as nk  # noqa: E402

D, WIDTH, DEPTH, W_STD, B_STD = 784, 512, 3, 1.5, 0.1


def ntklib_arch() -> nk.Serial:
    layers = []
    for _ in range(DEPTH):
        layers += [nk.Dense(WIDTH, W_std=W_STD, b_std=B_STD), nk.Relu()]
    return nk.serial(*layers, nk.Dense(1, W_std=W_STD, b_std=B_STD))


def tutorial_ntk(model: torch.nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """Jacobian contraction as in PyTorch's NTK tutorial: per-example Jacobians of both batches, then
    sum over parameter tensors of einsum('iap,jbp->ijab'). Returns (n1, n2, k, k)."""
    params = {name: p.detach() for name, p in model.named_parameters()}

    def f_one(p, x):  # one input (d,) -> outputs (k,)
        return functional_call(model, p, (x.unsqueeze(0),)).squeeze(0)

    jac = vmap(jacrev(f_one), in_dims=(None, 0))
    j1 = [t.flatten(2) for t in jac(params, x1).values()]  # each (n1, k, P_tensor)
    j2 = [t.flatten(2) for t in jac(params, x2).values()]  # each (n2, k, P_tensor)
    return sum(torch.einsum("iap,jbp->ijab", a, b) for a, b in zip(j1, j2))


def nt_setup(net, mods):
    """neural-tangents apply_fn and params holding the same (float32) weights as ``net``."""
    nt, stax, jax, jnp = mods
    layers = []
    for _ in range(DEPTH):
        layers += [stax.Dense(WIDTH, W_std=W_STD, b_std=B_STD), stax.Relu()]
    _, apply_fn, _ = stax.serial(*layers, stax.Dense(1, W_std=W_STD, b_std=B_STD))
    params = []
    for m in net:
        if isinstance(m, nk.DenseModule):
            W = jnp.asarray(m.weight.detach().numpy().T)  # (in, out): neural-tangents' layout
            b = jnp.asarray(m.bias.detach().numpy())[None, :]  # (1, out)
            params.append((W, b))
        else:
            params.append(())
    return apply_fn, params


def run(ms=(64, 256), repeats=3, skip_ntvp_above=64) -> list[list[str]]:
    mods = import_neural_tangents(x64=True)  # x64 only allows float64; these arrays stay float32
    print(f"machine: {machine()}")
    if mods is None:
        print("neural-tangents: not importable (no NT columns; see benchmarks/README.md)")
    net = ntklib_arch().module(D, seed=0, dtype=torch.float32, device="cpu")
    n_params = sum(p.numel() for p in net.parameters())
    print(f"network: {D}-{WIDTH}x{DEPTH}-1 ReLU MLP, {n_params:,} parameters, float32")
    rng = np.random.default_rng(0)
    rows = []
    for m in ms:
        x_np = rng.standard_normal((m, D)).astype(np.float32)
        x = torch.as_tensor(x_np)  # (m, d)
        cases = {
            "ntklib structured": lambda: nk.empirical_ntk(net, x, mode="full", implementation="structured"),
            "ntklib jacobian": lambda: nk.empirical_ntk(net, x, mode="full", implementation="jacobian"),
            "ntklib ntvp": lambda: nk.empirical_ntk(net, x, mode="full", implementation="ntvp"),
            "tutorial recipe": lambda: tutorial_ntk(net, x, x),
        }
        if m > skip_ntvp_above:
            del cases["ntklib ntvp"]
        if mods is not None:
            nt, _, jax, jnp = mods
            apply_fn, params = nt_setup(net, mods)
            xj = jnp.asarray(x_np)
            for label, impl in (("NT structured", nt.NtkImplementation.STRUCTURED_DERIVATIVES),
                                ("NT jacobian", nt.NtkImplementation.JACOBIAN_CONTRACTION)):
                fn = jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0, implementation=impl))
                cases[label] = (lambda fn=fn: np.asarray(jax.block_until_ready(fn(xj, None, params))))
        times, results = {}, {}
        for label, fn in cases.items():
            results[label] = np.asarray(fn(), dtype=np.float64).reshape(m, m)  # warm-up (and jit compile)
            times[label] = median_time(fn, repeats=repeats, warmup=0)
            print(f"  m={m} {label:18s} {fmt_s(times[label])}", flush=True)
        ref = results["ntklib structured"]
        scale = np.abs(ref).max()
        for label in cases:
            t = times[label]
            vs = {"ntklib structured": times.get("NT structured"), "ntklib jacobian": times.get("tutorial recipe"),
                  "ntklib ntvp": times.get("tutorial recipe")}.get(label)
            rows.append([str(m), label, fmt_s(t), fmt_ratio(t, vs) if vs else "-",
                         f"{np.abs(results[label] - ref).max() / scale:.0e}"])
    print_table("Empirical NTK, 784-512x3-1 ReLU MLP, float32 (median wall time; 'vs' = time / the target's "
                "reference: NT structured for ntklib structured, the tutorial recipe for ntklib jacobian/ntvp)",
                ["m", "implementation", "time", "vs", "max rel diff"], rows)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--m", type=int, nargs="+", default=[64, 256])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-ntvp-above", type=int, default=64,
                   help="skip ntklib's ntvp path above this m (it does n2*k VJP+JVP passes: slow for big m)")
    a = p.parse_args(argv)
    run(a.m, a.repeats, a.skip_ntvp_above)


if __name__ == "__main__":
    main()
