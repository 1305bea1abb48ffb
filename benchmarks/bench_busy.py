r"""Benchmark: does ntklib stay fast when the machine is busy? The two headline workloads, three machine states.

* analytic: NNGP + NTK of ``serial([Dense(512, 1.5, 0.1), Relu()] * 10, Dense(1, 1.5, 0.1))`` on
  m = 2000 inputs of d = 784, float64 (``bench_analytic.py``'s depth-10 case);
* empirical: the full (m, m) empirical NTK of the 784-512x3-1 ReLU MLP on m = 256 inputs, float32,
  ntklib's structured path vs neural-tangents' structured derivatives (``bench_empirical.py``).

Each is timed idle, with the other core(s) running a pure-Python spin loop, and with them running a
numerical job (float64 matrix products on one BLAS thread), started and stopped by
``benchmarks/_load.py``. In every state ntklib and neural-tangents run side by side, alternating, so the
ratio compares them under the same load. Targets: ratio <= 0.5 idle, <= 0.8 loaded. Usage::

    /tmp/ntvenv/bin/python benchmarks/bench_busy.py [--states idle spin numeric] [--repeats 5]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_analytic  # noqa: E402
import bench_empirical  # noqa: E402
from _load import STATES, machine_load  # noqa: E402
from _nt import import_neural_tangents  # noqa: E402
from _timing import fmt_ratio, fmt_s, machine, median_time, print_table  # noqa: E402

import ntklib as nk  # noqa: E402

M_ANALYTIC, DEPTH_ANALYTIC, M_EMPIRICAL = 2000, 10, 256


def workloads(mods):
    """name -> (ntklib call, neural-tangents call or None), inputs built once."""
    rng = np.random.default_rng(0)
    xa_np = rng.standard_normal((M_ANALYTIC, bench_analytic.D))
    xa = torch.as_tensor(xa_np)
    arch = bench_analytic.ntklib_arch(DEPTH_ANALYTIC)
    xe_np = rng.standard_normal((M_EMPIRICAL, bench_empirical.D)).astype(np.float32)
    xe = torch.as_tensor(xe_np)
    net = bench_empirical.ntklib_arch().module(bench_empirical.D, seed=0, dtype=torch.float32, device="cpu")
    calls = {
        "analytic": [lambda: arch.kernel(xa), None],
        "empirical": [lambda: nk.empirical_ntk(net, xe, mode="full", implementation="structured"), None],
    }
    if mods is not None:
        nt, stax, jax, jnp = mods
        kfn = bench_analytic.nt_kernel_fn(DEPTH_ANALYTIC, stax, jax)
        xaj = jnp.asarray(xa_np)
        calls["analytic"][1] = lambda: jax.block_until_ready(kfn(xaj, None, ("nngp", "ntk")))
        apply_fn, params = bench_empirical.nt_setup(net, mods)
        efn = jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0,
                                          implementation=nt.NtkImplementation.STRUCTURED_DERIVATIVES))
        xej = jnp.asarray(xe_np)
        calls["empirical"][1] = lambda: jax.block_until_ready(efn(xej, None, params))
    return calls


def run(states=STATES, repeats=5) -> list[list[str]]:
    mods = import_neural_tangents(x64=True)
    print(f"machine: {machine()}")
    calls = workloads(mods)
    for ours, theirs in calls.values():  # compile and warm the thread pools before any timing
        ours()
        if theirs is not None:
            theirs()
    rows = []
    for state in states:
        with machine_load(state):
            row = [state]
            for name, (ours, theirs) in calls.items():
                t_ours, t_nt = [], []
                for _ in range(repeats):  # alternate, so both see the same load
                    t_ours.append(median_time(ours, repeats=1, warmup=0, min_total=0))
                    if theirs is not None:
                        t_nt.append(median_time(theirs, repeats=1, warmup=0, min_total=0))
                a = float(np.median(t_ours))
                b = float(np.median(t_nt)) if t_nt else None
                row += [f"{fmt_ratio(a, b)} ({fmt_s(a)} vs {fmt_s(b)})"]
                print(f"  {state:8s} {name:10s} ntklib {fmt_s(a)}  neural-tangents {fmt_s(b)}", flush=True)
            rows.append(row)
    print_table(f"ntklib time / neural-tangents time, side by side in each machine state (analytic: ReLU depth "
                f"{DEPTH_ANALYTIC}, m = {M_ANALYTIC}, d = 784, float64; empirical: 784-512x3-1, m = {M_EMPIRICAL}, "
                "float32, structured). Targets: <= 0.5 idle, <= 0.8 loaded",
                ["machine state", "analytic", "empirical"], rows)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--states", nargs="+", choices=STATES, default=list(STATES))
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args(argv)
    run(a.states, a.repeats)


if __name__ == "__main__":
    main()
