r"""A long fuzz of the analytic kernels: the properties of ``tests/library/test_properties.py`` on many examples.

The CI test runs a few dozen derandomized examples; this runs ``--examples`` random ones (default 2000)
per property, with hypothesis' shrinking, and prints the first failure found (or that none was)
and the time taken::

    .venv/bin/python benchmarks/fuzz_kernels.py [--examples 2000] [--seed 0]

Properties (see the test module): every path (``x2=None``, ``x2=x.clone()``, tiles, strips, the
diagonal mode) gives the same finite kernel to 1e-12 of its natural size, or every path raises the
same clear error; closed-form kernels match a high-precision mpmath recursion to 1e-12.
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "library"))

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402

import test_properties as props  # noqa: E402


def run(examples: int, rng_seed: int) -> int:
    common = dict(max_examples=examples, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

    @seed(rng_seed)
    @settings(**common)
    @given(arch=props.architectures(), x=props.adversarial_inputs())
    def paths(arch, x):
        props.check_paths_agree(arch[0], x)

    @seed(rng_seed)
    @settings(**common)
    @given(arch=props.architectures(quadrature=False, parameterizations=("ntk",)),
           x=props.adversarial_inputs(max_rows=3, dims=(2, 3, 7)))
    def reference(arch, x):
        props.check_matches_mpmath(*arch, x)

    failures = 0
    for name, prop in (("every path, one answer", paths), ("mpmath reference", reference)):
        t0 = time.perf_counter()
        try:
            prop()
            print(f"{name:24s} {examples} examples: no failure ({time.perf_counter() - t0:.0f} s)")
        except Exception:  # the shrunk counterexample and its assertion
            failures += 1
            print(f"{name:24s} FAILED after {time.perf_counter() - t0:.0f} s:")
            traceback.print_exc(limit=2)
    return failures


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--examples", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    sys.exit(1 if run(args.examples, args.seed) else 0)


if __name__ == "__main__":
    main()
