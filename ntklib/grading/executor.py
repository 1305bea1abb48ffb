"""``SandboxedExecute``: nbgrader's Execute step for ``nbgrader autograde``, hardened.

Per notebook: one sandboxed kernel (:mod:`ntklib.grading.sandbox`) working in a scratch copy of the
submission folder; code cells run in it one by one, except the graded test cells, which the
trusted checker runs (:mod:`ntklib.grading.checker`). Limits (all configurable, see
``docs/instructors.md``):

* ``timeout`` / ``timeout_func`` (nbgrader's, per cell): a cell that runs longer is interrupted
  (``CellTimeoutError``); if the kernel ignores the interrupt it is killed and restarted;
* ``notebook_timeout``: the whole notebook's budget; cells left when it is spent are not run;
* ``extra_cells_timeout``: the budget of the code cells the student *added* (ids the source
  notebook does not have); added cells beyond it are skipped, so slow extra cells cannot stall
  grading or cost the points of the exercises;
* ``output_chars``: a cell's output is capped at this many characters;
* a kernel that dies (``os._exit``, a crash), runs out of memory or stops answering is restarted
  and the cells that had run before are replayed (without the offending one), at most
  ``max_restarts`` times, so the points earned elsewhere survive.

What happened (restarts, skipped cells, tampering the grader saw) is written into a markdown
cell at the top of the graded notebook, which the feedback shows.
"""
from __future__ import annotations

import ast
import os
import shutil
import sys
import tempfile
import threading
import time

import nbformat
from nbformat.v4 import new_markdown_cell, new_output
from nbgrader.preprocessors import Execute
from traitlets import Integer

from .analysis import NotebookAnalysis, is_test_cell, nbgrader_meta, python_source
from .checker import Checker
from .kernel import KernelDied, KernelSession, KernelTimeout
from .sandbox import (INSTALL_HINT, OPT_OUT_VARIABLE, SandboxSpec, SandboxUnavailable, check_sandbox,
                      kernel_workdir, sandbox_mode)

__all__ = ["SandboxedExecute", "ensure_sandbox", "prewarm_imports", "scratch_source", "GRADING_NOTES_MARK"]

GRADING_NOTES_MARK = "ntk-grading-notes"
_SANDBOX_CHECKED: dict = {}


def ensure_sandbox(log=None) -> bool:
    """True when kernels will be sandboxed; raise :class:`SandboxUnavailable` (with how to install
    bubblewrap) when they cannot be, unless the instructor opted out (then warn loudly, False)."""
    if sandbox_mode() == "off":
        if "warned" not in _SANDBOX_CHECKED:
            _SANDBOX_CHECKED["warned"] = True
            banner = ("!" * 78 + f"\n!! {OPT_OUT_VARIABLE}=off: student code runs WITHOUT the sandbox, as your user, with "
                      "your files.\n!! Grading is not protected against hostile submissions (docs/instructors.md).\n"
                      + "!" * 78)
            print(banner, file=sys.stderr)
            if log is not None:
                log.warning("%s=off: grading WITHOUT the sandbox", OPT_OUT_VARIABLE)
        return False
    if "ok" not in _SANDBOX_CHECKED:
        check_sandbox()
        _SANDBOX_CHECKED["ok"] = True
    return True


def prewarm_imports(analysis: NotebookAnalysis) -> threading.Thread:
    """Import, in a background thread, the modules that the instructor cells needed by the tests
    import (torch, scikit-learn, matplotlib, ...), while the kernel starts: the checker then finds
    them loaded. Only top-level ``import`` statements of the source notebook run here."""
    os.environ.setdefault("MPLBACKEND", "Agg")  # the grader's process draws nothing
    cells = {c.index: c for test in analysis.tests.values() for c in analysis.plan(test).instructor_cells}
    statements = []
    for cell in cells.values():
        try:
            tree = ast.parse(python_source(cell.source))
        except (SyntaxError, ValueError):
            continue
        statements += [st for st in tree.body if isinstance(st, (ast.Import, ast.ImportFrom))]

    def work():
        for st in statements:
            try:
                exec(compile(ast.Module(body=[st], type_ignores=[]), "<prewarm>", "exec"), {})  # noqa: S102
            except BaseException:  # noqa: BLE001 - the checker will report it where it matters
                pass

    thread = threading.Thread(target=work, name="ntk-grading-prewarm", daemon=True)
    thread.start()
    return thread


def _files(root: str) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [d for d in dirnames if d not in (".ipynb_checkpoints", "__pycache__")]
        out |= {os.path.relpath(os.path.join(dirpath, f), root) for f in filenames}
    return out


def scratch_source(folder: str, dest: str, exclude: set[str], max_bytes: int) -> None:
    """Copy ``folder`` into ``dest`` for the kernel: regular files only (no links, no notebooks --
    the graded notebook holds the restored hidden tests), without ``exclude``, at most ``max_bytes``."""
    total = 0
    for rel in sorted(_files(folder)):
        src = os.path.join(folder, rel)
        if rel in exclude or rel.endswith(".ipynb") or os.path.islink(src) or not os.path.isfile(src):
            continue
        size = os.path.getsize(src)
        if total + size > max_bytes:
            continue
        total += size
        os.makedirs(os.path.dirname(os.path.join(dest, rel)) or dest, exist_ok=True)
        shutil.copyfile(src, os.path.join(dest, rel))


class SandboxedExecute(Execute):
    """nbgrader's Execute for autograding: sandboxed kernel, trusted checker, budgets, restarts."""

    notebook_timeout = Integer(300, help="Seconds for the whole notebook (cells, tests, restarts).").tag(config=True)
    extra_cells_timeout = Integer(60, help="Seconds for all the code cells the student added.").tag(config=True)
    output_chars = Integer(1_000_000, help="Characters of output kept per cell.").tag(config=True)
    max_restarts = Integer(5, help="Kernel restarts per notebook before the remaining cells are given up.").tag(
        config=True)
    memory_limit_mb = Integer(4096, help="Address-space limit of the kernel (MB).").tag(config=True)
    max_reply_mb = Integer(64, help="Largest answer (MB) the checker accepts from one call.").tag(config=True)
    startup_timeout_s = Integer(120, help="Seconds for a kernel to start.").tag(config=True)

    # -- nbgrader entry point ----------------------------------------------------------------------
    def preprocess(self, nb, resources=None, km=None):
        from nbgrader.coursedir import CourseDirectory

        resources = resources if resources is not None else {}
        sandboxed = ensure_sandbox(self.log)
        info = resources.get("nbgrader", {})
        assignment, notebook = info.get("assignment"), info.get("notebook")
        coursedir = CourseDirectory(parent=self)
        source_dir = coursedir.format_path(coursedir.source_directory, ".", assignment)
        release_dir = coursedir.format_path(coursedir.release_directory, ".", assignment)
        source_path = os.path.join(source_dir, f"{notebook}.ipynb")
        if not os.path.isfile(source_path):
            raise FileNotFoundError(f"the source notebook {source_path} is needed to grade {notebook} (its instructor "
                                    f"cells give the tests their fixtures)")
        analysis = NotebookAnalysis(nbformat.read(source_path, as_version=4))
        prewarm_imports(analysis)
        folder = (resources.get("metadata", {}) or {}).get("path") or os.getcwd()
        instructor_only = _files(source_dir) - _files(release_dir) if os.path.isdir(release_dir) else set()
        spec = SandboxSpec(memory_bytes=self.memory_limit_mb << 20, sandboxed=sandboxed)
        with tempfile.TemporaryDirectory(prefix="ntkg-src-") as tmp:
            os.chmod(tmp, 0o755)
            scratch_source(folder, tmp, instructor_only, spec.home_size_bytes // 2)
            session = KernelSession(spec, tmp, kernel_workdir(assignment or folder), list(self.extra_arguments),
                                    startup_timeout=self.startup_timeout_s, output_chars=self.output_chars,
                                    log=self.log)
            try:
                self._run(nb, analysis, session, sandboxed)
            finally:
                session.shutdown()
        return nb, resources

    # -- the notebook ------------------------------------------------------------------------------
    def _run(self, nb, analysis: NotebookAnalysis, session: KernelSession, sandboxed: bool) -> None:
        self._notes, self._tampering = [], []
        if not sandboxed:
            self._notes.append(f"graded without the sandbox ({OPT_OUT_VARIABLE}=off)")
        start = time.monotonic()
        self._budget_end = start + self.notebook_timeout
        self._extra_left = float(self.extra_cells_timeout)
        self._ran: list[int] = []          # kernel cells executed, in order (replayed after a restart)
        self._offending: set[int] = set()
        self._restarts = 0
        self._session = session
        self._remember(nb)
        try:
            session.start()
        except (KernelDied, KernelTimeout) as err:
            if sandboxed:
                raise SandboxUnavailable(f"the sandboxed kernel did not start ({err}). " + INSTALL_HINT) from None
            raise
        checker = Checker(analysis, session, nb, log=self.log, max_reply_bytes=self.max_reply_mb << 20)
        given_up = None
        for index, cell in enumerate(nb.cells):
            if cell.get("cell_type") != "code":
                continue
            cell.outputs, cell.execution_count = [], None
            grade_id = nbgrader_meta(cell).get("grade_id")
            test = analysis.tests.get(grade_id) if is_test_cell(cell) else None
            remaining = self._budget_end - time.monotonic()
            if given_up is None and remaining <= 0:
                given_up = f"the notebook's time budget of {self.notebook_timeout} s was spent"
                self._notes.append(f"cells after code cell {index} were not run: {given_up}")
            if given_up is not None:
                cell.outputs = [_error("NotRun", f"not run: {given_up}")]
                continue
            timeout = min(float(self._get_timeout(cell) or self.notebook_timeout), remaining)
            if test is not None:
                verdict = checker.run(test, timeout)
                cell.outputs = verdict.outputs
                self._tampering += [t for t in verdict.tampering if t not in self._tampering]
                if verdict.restart:
                    self._notes.append(f"the kernel was restarted after a graded test ({verdict.note})")
                    given_up = self._restart(index)
                    if given_up:
                        self._notes.append(f"cells after code cell {index} were not run: {given_up}")
                continue
            added = cell.get("id") not in analysis.source_by_id
            if added:
                if self._extra_left <= 0:
                    cell.outputs = [_error("NotRun", f"not run: the cells you added used their time budget of "
                                                     f"{self.extra_cells_timeout} s")]
                    continue
                timeout = min(timeout, self._extra_left)
            t0 = time.monotonic()
            res = session.execute(cell.source, timeout)
            self.log.debug("code cell %d: %s in %.1f s", index, res.status, time.monotonic() - t0)
            if added:
                self._extra_left -= time.monotonic() - t0
            cell.outputs, cell.execution_count = res.outputs, res.execution_count
            problem = self._problem(res)
            if problem is None:
                self._ran.append(index)
                continue
            self._offending.add(index)
            if res.status == "timeout":  # the grader's interrupt, not the student's KeyboardInterrupt
                cell.outputs = [o for o in cell.outputs if o.get("ename") != "KeyboardInterrupt"]
                cell.outputs.append(new_output("error", ename=self.error_on_timeout.get("ename", "CellTimeoutError"),
                                               evalue=self.error_on_timeout.get("evalue", ""),
                                               traceback=list(self.error_on_timeout.get("traceback", []))))
            elif res.status == "died":
                cell.outputs.append(_error("KernelDied", "the kernel died while running this cell (os._exit, a crash "
                                                         "in compiled code, or running out of memory); the grader "
                                                         "restarted it and went on with the next cell"))
            if res.status in ("died", "timeout") and (res.status == "died" or not res.interrupted_ok) \
                    or problem == "memory":
                self._notes.append(f"code cell {index}: {problem}; the kernel was restarted and the cells before it "
                                   f"replayed")
                given_up = self._restart(index)
                if given_up:
                    self._notes.append(f"cells after code cell {index} were not run: {given_up}")
        self._tampering += [t for t in session.tampering if t not in self._tampering]
        self._label(nb)

    @staticmethod
    def _problem(res) -> str | None:
        if res.status == "ok" or res.status == "error" and not _out_of_memory(res):
            return None
        if res.status == "error":
            return "memory"
        return {"timeout": "timed out", "died": "the kernel died"}.get(res.status, res.status)

    def _restart(self, index: int) -> str | None:
        """Restart the kernel and replay the cells that ran before ``index``; None, or why we gave up."""
        session = self._session
        while True:
            self._restarts += 1
            if self._restarts > self.max_restarts:
                return f"the kernel had to be restarted more than {self.max_restarts} times"
            if time.monotonic() >= self._budget_end:
                return f"the notebook's time budget of {self.notebook_timeout} s was spent"
            session.restart()
            failed = None
            for i in list(self._ran):
                if i in self._offending:
                    continue
                remaining = self._budget_end - time.monotonic()
                if remaining <= 0:
                    return f"the notebook's time budget of {self.notebook_timeout} s was spent"
                res = session.execute(self._sources[i], min(self._timeouts[i], remaining))
                if self._problem(res) is not None:
                    failed = i
                    break
            if failed is None:
                return None
            self._offending.add(failed)

    def _label(self, nb) -> None:
        if not self._notes and not self._tampering:
            return
        lines = [f"<!-- {GRADING_NOTES_MARK} -->", "**Grading notes** (written by the autograder)", ""]
        if self._tampering:
            lines += ["**Tampering: this submission interfered with grading.** What the grader saw:"]
            lines += [f"* {t}" for t in self._tampering] + [""]
        lines += [f"* {n}" for n in self._notes]
        nb.cells.insert(0, new_markdown_cell("\n".join(lines)))
        for t in self._tampering:
            self.log.warning("tampering: %s", t)

    # sources/timeouts of the cells, for replays (set before the loop runs)
    def _remember(self, nb) -> None:
        self._sources = {i: c.source for i, c in enumerate(nb.cells)}
        self._timeouts = {i: float(self._get_timeout(c) or self.notebook_timeout) for i, c in enumerate(nb.cells)}


def _error(ename: str, evalue: str):
    return new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


def _out_of_memory(res) -> bool:
    for out in res.outputs:
        if out.get("output_type") == "error":
            if out.get("ename") == "MemoryError":
                return True
            text = str(out.get("evalue", ""))
            if "DefaultCPUAllocator" in text or "not enough memory" in text or "Cannot allocate memory" in text:
                return True
    return False
