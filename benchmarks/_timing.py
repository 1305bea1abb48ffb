"""Timing and table helpers shared by the benchmarks (not part of ntklib)."""
from __future__ import annotations

import gc
import os
import platform
import statistics
import time
from typing import Callable

import torch


def median_time(fn: Callable[[], object], repeats: int = 3, warmup: int = 1, min_total: float = 1.0,
                max_repeats: int = 25) -> float:
    """Median wall time of ``fn()`` in seconds, after ``warmup`` untimed runs.

    At least ``repeats`` runs, and more (up to ``max_repeats``) until ``min_total`` seconds have
    been timed: fast cases get many samples, so that a burst of load from other processes on a
    shared machine does not move the median. ``fn`` must finish its work before returning
    (jax: ``block_until_ready``).
    """
    for _ in range(warmup):
        fn()
    times: list[float] = []
    while len(times) < repeats or (sum(times) < min_total and len(times) < max_repeats):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), load average {load:.1f}")


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    print(f"\n{title}\n{line}")
    print("  ".join(str(h).rjust(w) for h, w in zip(header, widths)))
    print(line)
    for r in rows:
        print("  ".join(str(c).rjust(w) for c, w in zip(r, widths)))
    print(line)


def fmt_s(t: float | None) -> str:
    if t is None:
        return "-"
    return f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.2f} s"


def fmt_ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{a / b:.2f}x"
