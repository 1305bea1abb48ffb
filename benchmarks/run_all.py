"""Run every benchmark and print their tables (what ``make benchmarks`` calls).

    python benchmarks/run_all.py            # ntklib alone (the course venv, .venv)
    /tmp/ntvenv/bin/python benchmarks/run_all.py   # side by side with neural-tangents (benchmarks/README.md)
    /tmp/ntvenv/bin/python benchmarks/run_all.py --busy   # also: idle vs the other core busy (bench_busy.py)

Both benchmarks run in this one process; each prints a line per case as it goes and a table at the
end, and the tables are printed again together at the very end. Takes about 2-4 minutes on 2 CPU
cores with neural-tangents, less without.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_analytic  # noqa: E402
import bench_busy  # noqa: E402
import bench_empirical  # noqa: E402
from _nt import versions  # noqa: E402
from _timing import print_table  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--busy", action="store_true", help="also time the headline workloads with the other core busy")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    print("reference stack:", versions() or "neural-tangents not importable")
    analytic = bench_analytic.run()
    empirical = bench_empirical.run()
    busy = bench_busy.run() if a.busy else None
    print("\n==================== summary ====================")
    print_table("Analytic NNGP + NTK, ReLU, d = 784, float64 (target: ratio <= 0.5)",
                ["m", "depth", "ntklib", "neural-tangents", "ratio", "NTK diff off-diag / diag"], analytic)
    print_table("Empirical NTK, 784-512x3-1 ReLU MLP, float32 (targets: 'vs' <= 1)",
                ["m", "implementation", "time", "vs", "max rel diff"], empirical)
    if busy is not None:
        print_table("ntklib / neural-tangents in each machine state (targets: <= 0.5 idle, <= 0.8 loaded)",
                    ["machine state", "analytic", "empirical"], busy)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
