r"""Benchmark: analytic NNGP + NTK of a ReLU network, ntklib vs neural-tangents, side by side.

Architecture ``serial([Dense(512, W_std=1.5, b_std=0.1), Relu()] * depth, Dense(1, 1.5, 0.1))`` for
depth 3 and 10, on ``m`` = 1000, 2000, 4000 inputs of dimension d = 784 (standard normal), in
float64; both kernels of ``k(x, x)`` (``x2=None``), shape (m, m).

* ntklib: ``arch.kernel(x)`` (torch, CPU threads as configured).
* neural-tangents (when importable, see benchmarks/README.md): ``jax.jit(kernel_fn)(x, None,
  ("nngp", "ntk"))`` with ``jax_enable_x64``, compiled by an untimed warm-up call and timed with
  ``block_until_ready``.

Times are medians of at least ``--repeats`` runs after one warm-up (fast cases get more runs, up
to 1 s of timing, so that bursts of load on a shared machine do not move them). ``ratio`` =
ntklib / neural-tangents (target <= 0.5). ``NTK diff`` is max |ntklib - NT| / max |NT| of the NTK off the diagonal and on
it (a check that both computed the same thing). On the diagonal neural-tangents is off by ~1e-8:
it evaluates the arc-cosine at cos = 1 - O(1e-16) (x.x from a matmul vs |x|^2), giving
sin(theta) ~ 1e-8, where ntklib's diagonal is exact (theta = 0). Usage::

    python benchmarks/bench_analytic.py [--m 1000 2000 4000] [--depth 3 10] [--repeats 3]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _nt import import_neural_tangents  # noqa: E402
from _timing import fmt_ratio, fmt_s, machine, median_time, print_table  # noqa: E402

import ntklib as nk  # noqa: E402

D, WIDTH, W_STD, B_STD = 784, 512, 1.5, 0.1


def ntklib_arch(depth: int) -> nk.Serial:
    layers = []
    for _ in range(depth):
        layers += [nk.Dense(WIDTH, W_std=W_STD, b_std=B_STD), nk.Relu()]
    return nk.serial(*layers, nk.Dense(1, W_std=W_STD, b_std=B_STD))


def nt_kernel_fn(depth: int, stax, jax):
    layers = []
    for _ in range(depth):
        layers += [stax.Dense(WIDTH, W_std=W_STD, b_std=B_STD), stax.Relu()]
    _, _, kernel_fn = stax.serial(*layers, stax.Dense(1, W_std=W_STD, b_std=B_STD))
    return jax.jit(kernel_fn, static_argnames="get")


def run(ms=(1000, 2000, 4000), depths=(3, 10), repeats=3) -> list[list[str]]:
    mods = import_neural_tangents(x64=True)
    print(f"machine: {machine()}")
    if mods is None:
        print("neural-tangents: not importable (ntklib timings only; see benchmarks/README.md)")
    rows = []
    rng = np.random.default_rng(0)
    warm = rng.standard_normal((300, D))  # first calls pay for thread pools and allocator growth
    ntklib_arch(2).kernel(torch.as_tensor(warm))
    if mods is not None:
        mods[2].block_until_ready(nt_kernel_fn(2, mods[1], mods[2])(mods[3].asarray(warm), None, ("nngp", "ntk")))
    for m in ms:
        x_np = rng.standard_normal((m, D))  # (m, d) float64
        x = torch.as_tensor(x_np)
        for depth in depths:
            arch = ntklib_arch(depth)
            ours = arch.kernel(x)
            t_ours = median_time(lambda: arch.kernel(x), repeats=repeats)
            t_nt, err = None, None
            if mods is not None:
                nt, stax, jax, jnp = mods
                kfn = nt_kernel_fn(depth, stax, jax)
                xj = jnp.asarray(x_np)
                call = lambda: jax.block_until_ready(kfn(xj, None, ("nngp", "ntk")))
                ref = call()  # compile
                t_nt = median_time(call, repeats=repeats)
                diff = np.abs(ours.ntk.numpy() - np.asarray(ref.ntk))  # (m, m)
                scale = float(np.abs(np.asarray(ref.ntk)).max())
                on_diag = float(np.diagonal(diff).max()) / scale
                np.fill_diagonal(diff, 0.0)
                err = f"{float(diff.max()) / scale:.0e} / {on_diag:.0e}"
                del ref, diff
            rows.append([str(m), str(depth), fmt_s(t_ours), fmt_s(t_nt), fmt_ratio(t_ours, t_nt),
                         "-" if err is None else err])
            print("  ".join(rows[-1]), flush=True)
            del ours
    print_table("Analytic NNGP + NTK, ReLU, d = 784, float64 (median wall time)",
                ["m", "depth", "ntklib", "neural-tangents", "ratio", "NTK diff off-diag / diag"], rows)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--m", type=int, nargs="+", default=[1000, 2000, 4000])
    p.add_argument("--depth", type=int, nargs="+", default=[3, 10])
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    run(a.m, a.depth, a.repeats)


if __name__ == "__main__":
    main()
