"""Run notebook cells one at a time in a live Jupyter kernel, as a student does (for tests/course).

nbgrader and nbclient run a notebook top to bottom; the tests of plausible wrong answers need
more: run the whole notebook once, then re-run a stretch of it with one answer cell replaced,
then put the right answer back, all in one kernel (one import of torch, one notebook run).
"""
from __future__ import annotations

import os
import queue
from dataclasses import dataclass, field
from pathlib import Path

from ntklib.course import SMOKE_VARIABLES


@dataclass
class CellRun:
    """What one execution produced: error name and message (None when it ran cleanly) and its text output."""
    error: tuple[str, str] | None = None
    text: list[str] = field(default_factory=list)


class NotebookKernel:
    """A python3 kernel started in ``cwd`` with ``CI=1`` (the notebooks' SMOKE sizes) and Agg plots."""

    def __init__(self, cwd: Path, *, startup_timeout: float = 180):
        from jupyter_client.manager import start_new_kernel

        env = {k: v for k, v in os.environ.items() if k not in SMOKE_VARIABLES}
        env.update(CI="1", MPLBACKEND="Agg", NTKLIB_NO_PROGRESS="1")
        self.km, self.kc = start_new_kernel(kernel_name="python3", cwd=str(cwd), env=env,
                                            startup_timeout=startup_timeout)

    def run(self, code: str, timeout: float = 300.0) -> CellRun:
        """Execute ``code``; wait until the kernel is idle again. A timeout raises (the test fails)."""
        msg_id = self.kc.execute(code, store_history=False)
        result = CellRun()
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=timeout)
            except queue.Empty:
                raise TimeoutError(f"no answer from the kernel within {timeout} s while running:\n{code[:500]}") from None
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status" and content["execution_state"] == "idle":
                return result
            if kind == "error":
                result.error = (content["ename"], content["evalue"])
            elif kind == "stream":
                result.text.append(content["text"])

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
