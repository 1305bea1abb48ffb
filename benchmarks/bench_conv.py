r"""Benchmark: analytic NNGP + NTK of convolutional networks, ntklib vs neural-tangents, side by side.

Two data sets and four architectures, ``k(x, x)`` (``x2=None``), float64, both kernels:

* **2-D, 8x8 digits** (scikit-learn's ``load_digits``, pixels / 16, shape (n, 1, 8, 8)), a small
  Myrtle-style network (Shankar et al. 2020): ``[Conv(3x3, SAME) -> ReLU] x 2 -> AvgPool(2)
  -> Conv -> ReLU -> AvgPool(2) -> Conv -> ReLU`` then ``GlobalAvgPool`` or ``Flatten``, then
  ``Dense(10)``; ``W_std = sqrt(2)``, no bias term (``b_std = 0``).
* **1-D, MNIST-1D signals** (the ``mnist1d`` package's procedural data set, length 40, shape
  (n, 1, 40); random signals of that shape when the package is absent): ``[Conv(5, SAME) -> ReLU]
  x 3`` then ``GlobalAvgPool`` or ``Flatten``, then ``Dense(10)``.

With ``GlobalAvgPool`` every pair of positions is needed, (n, n, P, P) numbers per layer; with
``Flatten`` and no pooling only the spatial diagonal, (n, n, P) (both libraries). After pooling,
neural-tangents keeps every pair up to the readout, ntklib drops to the diagonal after the last
pooling layer (the Myrtle + Flatten row).

* ntklib: ``arch.kernel(x)`` (torch, CPU threads as configured).
* neural-tangents (when importable, see benchmarks/README.md): ``jax.jit(kernel_fn)(x, None,
  ("nngp", "ntk"))`` with ``jax_enable_x64``, compiled by an untimed warm-up call and timed with
  ``block_until_ready``; inputs channel-last, as its ``stax`` expects.

Times are medians of at least ``--repeats`` runs after a warm-up, the two libraries alternating in
one process. ``ratio`` = ntklib / neural-tangents (target <= 1.0). ``peak`` is the peak resident
memory of a fresh process during one computation of the kernel with one library, above its
resident memory before (Linux: ``VmHWM`` after resetting it, ``/proc/self/clear_refs``; neural-tangents
compiled first). ``--no-peak`` skips it. ``diff`` = max |ntklib - NT| / max |NT|
over both kernels, off the batch diagonal (on it neural-tangents evaluates the ReLU derivative
kernel at cos = 1 - O(1e-16), which puts its NTK diagonal ~1e-9 off; ntklib's is exact). Usage::

    python benchmarks/bench_conv.py [--n2d 64 128] [--n1d 128 256] [--repeats 3] [--no-peak]
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _nt import import_neural_tangents  # noqa: E402
from _timing import fmt_ratio, fmt_s, machine, median_time, print_table  # noqa: E402

import ntklib as nk  # noqa: E402

W = math.sqrt(2.0)
CASES = ("myrtle_gap", "myrtle_flatten", "conv3_flatten_2d", "mnist1d_gap", "mnist1d_flatten")


# ---------------------------------------------------------------------------------------------
# data and architectures (the same description for both libraries)
# ---------------------------------------------------------------------------------------------
def data(case: str, n: int) -> np.ndarray:
    """Channel-first inputs (n, 1, 8, 8) or (n, 1, 40), float64."""
    if case.startswith("mnist1d"):
        try:
            from mnist1d.data import get_dataset_args, make_dataset
            args = get_dataset_args()
            args.num_samples = max(n * 5 // 4 + 1, 100)  # 80 % go to the training split
            x = np.asarray(make_dataset(args)["x"][:n], dtype=np.float64)  # (n, 40)
        except ImportError:
            x = np.random.default_rng(0).standard_normal((n, 40))
        return x[:, None, :]
    from sklearn.datasets import load_digits
    x = load_digits().images[:n].astype(np.float64) / 16.0  # (n, 8, 8)
    return x[:, None, :, :]


def spec(case: str) -> list[tuple]:
    """Layers as (kind, args): Conv (out, kernel), AvgPool (window,), Relu, GAP, Flatten, Dense (width,)."""
    if case.startswith("mnist1d"):
        trunk = [("Conv", 5), ("Relu",)] * 3
    elif case.startswith("myrtle"):
        c = ("Conv", (3, 3))
        trunk = [c, ("Relu",), c, ("Relu",), ("AvgPool", (2, 2)), c, ("Relu",), ("AvgPool", (2, 2)), c, ("Relu",)]
    else:
        trunk = [("Conv", (3, 3)), ("Relu",)] * 3
    readout = ("GAP",) if case.endswith("gap") else ("Flatten",)
    return trunk + [readout, ("Dense",)]


def ntklib_arch(case: str) -> nk.Serial:
    make = {"Conv": lambda k: nk.Conv(64, k, padding="SAME", W_std=W, b_std=0.0), "Relu": nk.Relu,
            "AvgPool": lambda w: nk.AvgPool(w), "GAP": nk.GlobalAvgPool, "Flatten": nk.Flatten,
            "Dense": lambda: nk.Dense(10, W_std=1.0, b_std=0.0)}
    return nk.serial(*[make[s[0]](*s[1:]) for s in spec(case)])


def nt_kernel_fn(case: str, stax, jax):
    make = {"Conv": lambda k: stax.Conv(64, k if isinstance(k, tuple) else (k,), padding="SAME", W_std=W, b_std=0.0),
            "Relu": stax.Relu, "AvgPool": lambda w: stax.AvgPool(w, strides=w), "GAP": stax.GlobalAvgPool,
            "Flatten": stax.Flatten, "Dense": lambda: stax.Dense(10, W_std=1.0, b_std=0.0)}
    _, _, kernel_fn = stax.serial(*[make[s[0]](*s[1:]) for s in spec(case)])
    return jax.jit(kernel_fn, static_argnames="get")


# ---------------------------------------------------------------------------------------------
# memory peak of one computation, in a fresh process
# ---------------------------------------------------------------------------------------------
def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(lib: str, case: str, n: int) -> None:
    x = data(case, n)
    if lib == "nt":
        nt, stax, jax, jnp = import_neural_tangents(x64=True)
        fn = nt_kernel_fn(case, stax, jax)
        xj = jnp.asarray(np.moveaxis(x, 1, -1))
        run = lambda: jax.block_until_ready(fn(xj, None, ("nngp", "ntk")))
        jax.block_until_ready(fn.lower(xj, None, ("nngp", "ntk")).compile())  # compile only
    else:
        arch, xt = ntklib_arch(case), torch.as_tensor(x)
        run = lambda: arch.kernel(xt)
    import gc
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current resident memory
    before = _rss_mb("VmRSS")
    result = run()
    print(json.dumps({"peak_mb": _rss_mb("VmHWM") - before}))
    del result


def peak_mb(lib: str, case: str, n: int) -> float | None:
    out = subprocess.run([sys.executable, __file__, "--child", lib, case, str(n)], capture_output=True, text=True)
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]
    except (IndexError, ValueError, KeyError):
        print(f"[{lib} {case} n={n}: no memory figure: {out.stderr.strip().splitlines()[-1:]}]")
        return None


def fmt_mb(m: float | None) -> str:
    return "-" if m is None else (f"{m / 1024:.2f} GB" if m >= 1024 else f"{m:.0f} MB")


# ---------------------------------------------------------------------------------------------
def off_diagonal_error(ours, ref) -> float:
    worst = 0.0
    for a, b in ((ours.nngp, ref.nngp), (ours.ntk, ref.ntk)):
        a, b = a.numpy(), np.asarray(b)
        d = np.abs(a - b)
        np.fill_diagonal(d, 0.0)
        worst = max(worst, float(d.max()) / float(np.abs(b).max()))
    return worst


def run(n2d=(64, 128), n1d=(128, 256), repeats=3, peak=True, cases=CASES) -> list[list[str]]:
    mods = import_neural_tangents(x64=True)
    print(f"machine: {machine()}")
    if mods is None:
        print("neural-tangents: not importable (ntklib timings only; see benchmarks/README.md)")
    rows = []
    for case in cases:
        for n in (n1d if case.startswith("mnist1d") else n2d):
            x = data(case, n)
            arch, xt = ntklib_arch(case), torch.as_tensor(x)
            ours = arch.kernel(xt)  # warm-up
            t_nt = err = None
            call = None
            if mods is not None:
                nt, stax, jax, jnp = mods
                fn = nt_kernel_fn(case, stax, jax)
                xj = jnp.asarray(np.moveaxis(x, 1, -1))
                call = lambda: jax.block_until_ready(fn(xj, None, ("nngp", "ntk")))
                ref = call()  # compile
                err = off_diagonal_error(ours, ref)
                del ref
            t_ours = median_time(lambda: arch.kernel(xt), repeats=repeats)
            if call is not None:
                t_nt = median_time(call, repeats=repeats)
                t_ours = min(t_ours, median_time(lambda: arch.kernel(xt), repeats=repeats))  # again, after NT
            p_ours = peak_mb("ntklib", case, n) if peak else None
            p_nt = peak_mb("nt", case, n) if peak and mods is not None else None
            rows.append([case, str(n), f"{tuple(x.shape[1:])}", fmt_s(t_ours), fmt_s(t_nt), fmt_ratio(t_ours, t_nt),
                         fmt_mb(p_ours), fmt_mb(p_nt), "-" if err is None else f"{err:.0e}"])
            print("  ".join(rows[-1]), flush=True)
    print_table("Analytic NNGP + NTK of convolutional networks, k(x, x), float64 (median wall time)",
                ["case", "n", "input", "ntklib", "neural-tangents", "ratio", "ntklib peak", "NT peak", "diff"], rows)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n2d", type=int, nargs="+", default=[64, 128])
    p.add_argument("--n1d", type=int, nargs="+", default=[128, 256])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    p.add_argument("--no-peak", action="store_true")
    p.add_argument("--child", nargs=3, metavar=("LIB", "CASE", "N"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        child(a.child[0], a.child[1], int(a.child[2]))
        return
    run(a.n2d, a.n1d, a.repeats, not a.no_peak, a.cases)


if __name__ == "__main__":
    main()
