"""Wall time and peak memory of every solution notebook, executed top to bottom in a fresh kernel.

The course's budgets (COURSE_DESIGN.md): each notebook runs in <= 60 s on a 2-core CPU and peaks at
<= 1.5 GB (Binder gives 2 GB). This script measures both, per notebook, and prints a table:

    .venv/bin/python benchmarks/notebook_budgets.py                 # solutions/*, SMOKE off (a student's run)
    .venv/bin/python benchmarks/notebook_budgets.py --mode both     # SMOKE off and SMOKE on (CI/nbgrader-like)
    .venv/bin/python benchmarks/notebook_budgets.py solutions/01_nngp/01_nngp.ipynb --json out.json

Modes: ``full`` removes CI / NBGRADER_EXECUTION / NTK_SMOKE from the kernel's environment, so the
notebooks' ``SMOKE`` flag is off, as on a student's laptop or on Binder; ``smoke`` sets ``CI=1`` as CI
does (slow demos shrink, progress bars are silent).

Measurements (one execution per notebook and mode, with nbclient and the ``python3`` kernel):
  * wall_s: from the first cell's execution to the last one's end (kernel start-up not included;
    it is reported separately as start_s);
  * peak_mb: the largest resident set size (RSS) of the kernel process plus all its descendants,
    sampled every 20 ms by a psutil thread, combined with the kernel's exact high-water mark
    (``VmHWM`` in ``/proc/<pid>/status``, Linux), which no sampling interval can miss:
    peak_mb = max(sampled tree peak, kernel VmHWM).
    (Not ``getrusage().ru_maxrss``: Linux carries the parent's high-water mark across fork/exec,
    so a kernel started from a big process, e.g. pytest with torch loaded, would inherit its peak.)
MB = 10**6 bytes. Exit status 1 when a notebook fails or exceeds ``--limit-mb`` (default 1500).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ntklib.course import SMOKE_VARIABLES

REPO = Path(__file__).resolve().parents[1]
LIMIT_MB = 1500.0  # 1.5 GB peak per notebook
TIME_BUDGET_S = 60.0  # reported, never enforced here



def vm_hwm(pid: int) -> int:
    """Peak RSS in bytes of process ``pid`` over its life (Linux ``VmHWM``); 0 where unavailable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        pass
    return 0


@dataclass
class Budget:
    notebook: str
    mode: str  # "full" (SMOKE off) or "smoke" (CI=1)
    wall_s: float
    start_s: float
    peak_mb: float
    sampled_peak_mb: float
    kernel_hwm_mb: float
    n_cells: int
    error: str | None = None

    def over_memory(self, limit_mb: float = LIMIT_MB) -> bool:
        return self.peak_mb > limit_mb

    @property
    def over_time(self) -> bool:
        return self.wall_s > TIME_BUDGET_S


class TreeRSSSampler(threading.Thread):
    """Largest summed RSS of a process and its descendants, sampled every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.02):
        super().__init__(daemon=True)
        import psutil

        self._psutil = psutil
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_bytes = 0
        self._stop_event = threading.Event()

    def sample(self) -> int:
        psutil = self._psutil
        total = 0
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:  # exited between listing and reading
                pass
        return total

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak_bytes = max(self.peak_bytes, self.sample())
            self._stop_event.wait(self.interval)

    def stop(self) -> tuple[int, int]:
        """Stop sampling; (sampled tree peak, the root's VmHWM), in bytes. Call before the root exits."""
        self.peak_bytes = max(self.peak_bytes, self.sample())
        self._stop_event.set()
        self.join(timeout=5)
        return self.peak_bytes, vm_hwm(self.root.pid)


def kernel_env(mode: str) -> dict[str, str]:
    """The environment the kernel starts with: SMOKE off (``full``) or CI-like (``smoke``)."""
    if mode not in ("full", "smoke"):
        raise ValueError(f"mode must be 'full' or 'smoke'; got {mode!r}")
    env = {k: v for k, v in os.environ.items() if k not in SMOKE_VARIABLES and k != "NTKLIB_NO_PROGRESS"}
    if mode == "smoke":
        env["CI"] = "1"
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"  # what a notebook gets
    return env


def measure(path: Path, mode: str = "full", timeout: float = 600.0) -> Budget:
    """Execute ``path`` top to bottom in a fresh ``python3`` kernel and measure time and peak memory."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path = Path(path).resolve()
    nb = nbformat.read(path, as_version=4)
    n_cells = len(nb.cells)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        name = str(path.relative_to(REPO))
    except ValueError:
        name = str(path)
    error = None
    wall = start = 0.0
    t_start = time.perf_counter()
    with client.setup_kernel(env=kernel_env(mode)):
        start = time.perf_counter() - t_start
        sampler = TreeRSSSampler(client.km.provisioner.pid)
        sampler.start()
        client.reset_execution_trackers()
        t0 = time.perf_counter()
        try:
            for index, cell in enumerate(nb.cells[:n_cells]):
                client.execute_cell(cell, index)
        except CellExecutionError as exc:
            error = str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else repr(exc)
        except Exception as exc:  # noqa: BLE001 (timeouts, dead kernels: reported, not hidden)
            error = f"{type(exc).__name__}: {exc}"[:300]
        wall = time.perf_counter() - t0
        sampled, hwm = sampler.stop()
    mb = 1e-6
    return Budget(name, mode, round(wall, 2), round(start, 2), round(max(sampled, hwm) * mb, 1),
                  round(sampled * mb, 1), round(hwm * mb, 1), n_cells, error)


def solution_notebooks(root: Path = REPO / "solutions") -> list[Path]:
    """``solutions/<a>/<a>.ipynb`` for every assignment, in course order."""
    return sorted(p for p in root.glob("*/*.ipynb") if p.stem == p.parent.name)


def table(rows: list[Budget], limit_mb: float = LIMIT_MB) -> str:
    """A Markdown table of the measurements."""
    head = ("| notebook | mode | wall s | kernel start s | peak MB | sampled tree MB | kernel VmHWM MB | status |\n"
            "|---|---|---:|---:|---:|---:|---:|---|")
    lines = [head]
    for r in rows:
        status = []
        if r.error:
            status.append(f"ERROR {r.error}")
        if r.over_memory(limit_mb):
            status.append(f"OVER {limit_mb:.0f} MB")
        if r.over_time:
            status.append(f"slow (> {TIME_BUDGET_S:.0f} s)")
        lines.append(f"| {r.notebook} | {r.mode} | {r.wall_s:.1f} | {r.start_s:.1f} | {r.peak_mb:.0f} | "
                     f"{r.sampled_peak_mb:.0f} | {r.kernel_hwm_mb:.0f} | {'; '.join(status) or 'ok'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="*", type=Path, help="notebooks (default: solutions/<a>/<a>.ipynb)")
    ap.add_argument("--mode", choices=["full", "smoke", "both"], default="full",
                    help="full: SMOKE off, as a student runs it (default); smoke: CI=1; both")
    ap.add_argument("--timeout", type=float, default=600.0, help="per-cell timeout in seconds")
    ap.add_argument("--limit-mb", type=float, default=LIMIT_MB, help="peak memory budget (MB = 1e6 bytes)")
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "notebook_budgets.json")
    args = ap.parse_args(argv)

    notebooks = args.notebooks or solution_notebooks()
    if not notebooks:
        print("no solution notebooks found", file=sys.stderr)
        return 1
    modes = ["full", "smoke"] if args.mode == "both" else [args.mode]
    rows = []
    for nb in notebooks:
        for mode in modes:
            r = measure(nb, mode, args.timeout)
            rows.append(r)
            print(f"{r.notebook} [{mode}]: {r.wall_s:.1f} s, peak {r.peak_mb:.0f} MB"
                  + (f", ERROR {r.error}" if r.error else ""), file=sys.stderr, flush=True)
    print(table(rows, args.limit_mb))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"limit_mb": args.limit_mb, "time_budget_s": TIME_BUDGET_S,
                                     "cpu_count": os.cpu_count(), "rows": [asdict(r) for r in rows]}, indent=1))
    return int(any(r.error or r.over_memory(args.limit_mb) for r in rows))


if __name__ == "__main__":
    sys.exit(main())
