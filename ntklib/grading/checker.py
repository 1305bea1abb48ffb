"""The trusted checker: runs a notebook's test cells outside the student's process.

For each graded test cell, :meth:`Checker.run` builds a fresh namespace *in the grader's process*,
runs in it the instructor cells of the **source** notebook that the test needs
(:meth:`ntklib.grading.analysis.NotebookAnalysis.plan`: the imports and ``SMOKE = setup()``, the
fixtures), binds the student's names -- a function becomes a :class:`StudentFunction` proxy, an
answer variable its value as plain data -- and executes the test cell's source (hidden tests
included). Calling a proxy sends the arguments (pickled) to the kernel's grading agent, which calls
the student's function and answers with plain data only (:mod:`ntklib.grading.wire`). So patched
helpers, patched numpy/torch, AST transformers, rigged objects, frame reading or a replaced
``do_execute`` in the kernel change nothing here, and the hidden tests never enter the kernel (only
the arguments of the calls do). ``assert_not_calling(proxy, [...])`` analyses the code the student
wrote, statically (:mod:`ntklib.grading.shortcuts`).

A failing test shows ``ename: message`` only (no source line, so no hidden test in the feedback).
"""
from __future__ import annotations

import builtins
import contextlib
import difflib
import io
import os
import time
import warnings
from dataclasses import dataclass, field

from nbformat.v4 import new_output

from .analysis import CellInfo, NotebookAnalysis, python_source
from .kernel import KernelDied, KernelProtocolError, KernelSession, KernelTimeout, decode_value, dumps_request
from .shortcuts import find_shortcuts, forbidden_targets

__all__ = ["Checker", "CellVerdict", "StudentFunction", "GradingAbort", "authored_cells"]

_STOP_EXCEPTIONS = (KeyboardInterrupt, SystemExit, GeneratorExit)


class GradingAbort(BaseException):
    """Ends a test cell (a ``BaseException``: test code's ``except Exception`` cannot swallow it)."""

    def __init__(self, ename: str, message: str, restart: bool = False, tampering: str | None = None):
        super().__init__(message)
        self.ename, self.message, self.restart, self.tampering = ename, message, restart, tampering


@dataclass
class CellVerdict:
    outputs: list
    restart: bool = False           # the kernel must be restarted before the next cell
    note: str | None = None         # why (for the grading notes)
    tampering: list = field(default_factory=list)


class StudentFunction:
    """A student's function as the checker sees it: calling it runs the student's code in the
    kernel and returns plain data. ``assert_not_calling`` on it analyses the student's code."""

    __slots__ = ("_name", "_checker")

    def __init__(self, name: str, checker: "Checker"):
        self._name, self._checker = name, checker

    @property
    def __name__(self):  # noqa: D401 - mimics a function
        return self._name

    def __call__(self, *args, **kwargs):
        return self._checker.call(self._name, args, kwargs)

    def __repr__(self):
        return f"<your function {self._name}>"

    def assert_not_calling(self, forbidden, what=None) -> None:
        self._checker.assert_not_calling(self._name, forbidden, what)


def authored_cells(submission_nb, analysis: NotebookAnalysis) -> list[tuple[str, str, set | None]]:
    """``(label, source, lines)`` of every code cell the student wrote or changed: cells whose id
    the source notebook lacks (all lines), and cells whose source differs from the source cell with
    the same id (the lines that are not in the source cell). Test cells are left out (restored)."""
    out = []
    n = 0
    for cell in submission_nb.cells:
        if cell.get("cell_type") != "code":
            continue
        n += 1
        meta = (cell.get("metadata", {}) or {}).get("nbgrader", {}) or {}
        if meta.get("grade_id") in analysis.tests:
            continue
        first = (cell.source.strip().splitlines() or [""])[0][:40]
        label = f"code cell {n} ({first})" if first else f"code cell {n}"
        ref = analysis.source_by_id.get(cell.get("id"))
        if ref is None:
            out.append((label, cell.source, None))
        elif ref != cell.source:
            out.append((label, cell.source, _changed_lines(ref.splitlines(), cell.source.splitlines())))
    return out


def _changed_lines(theirs: list[str], mine: list[str]) -> set[int]:
    """Line numbers (from 1) of ``mine`` that are not matched to a line of ``theirs``."""
    lines = set()
    for tag, _, _, j1, j2 in difflib.SequenceMatcher(None, theirs, mine, autojunk=False).get_opcodes():
        if tag in ("replace", "insert"):
            lines.update(range(j1 + 1, j2 + 1))
    return lines


def _rebuild_exception(etype: str, message: str, name: str) -> BaseException:
    text = f"{message} (raised in your function `{name}`)" if message else f"raised in your function `{name}`"
    cls = getattr(builtins, str(etype), None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(text)
        except TypeError:
            pass
    return RuntimeError(f"{etype}: {text}")


class Checker:
    """Runs the graded test cells of one submission (see the module docstring)."""

    def __init__(self, analysis: NotebookAnalysis, session: KernelSession, submission_nb, log=None,
                 max_reply_bytes: int = 64 << 20, output_chars: int = 20_000):
        self.analysis, self.session, self.log = analysis, session, log
        self.max_reply_bytes, self.output_chars = max_reply_bytes, output_chars
        self.authored = authored_cells(submission_nb, analysis)
        self.context = [c.source for c in submission_nb.cells if c.get("cell_type") == "code"
                        and ((c.get("metadata", {}) or {}).get("nbgrader", {}) or {}).get("grade_id") not in analysis.tests]
        self.deadline = 0.0
        self._printed: list[str] = []
        os.environ.setdefault("MPLBACKEND", "Agg")  # instructor cells may import pyplot here: no GUI
        self._restart_after = None

    # -- running one test cell -------------------------------------------------------------------
    def run(self, test: CellInfo, timeout: float) -> CellVerdict:
        self.deadline = time.monotonic() + timeout
        self._printed, self._restart_after = [], None
        tampering: list[str] = []
        stdout = io.StringIO()
        try:
            tampering = self._probe()
            ns = self._namespace(test)
            code = compile(python_source(test.source), "<test cell>", "exec")
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()), \
                    warnings.catch_warnings():
                warnings.simplefilter("ignore")
                exec(code, ns)  # noqa: S102 - the instructor's test, in the trusted process
        except GradingAbort as stop:
            return self._verdict(stdout, new_output("error", ename=stop.ename, evalue=stop.message,
                                                    traceback=[f"{stop.ename}: {stop.message}"]),
                                 stop.restart, stop.message, tampering + ([stop.tampering] if stop.tampering else []))
        except _STOP_EXCEPTIONS:
            raise
        except BaseException as err:  # noqa: BLE001 - the test failed: report it like IPython's Minimal mode
            ename, evalue = type(err).__name__, str(err)
            return self._verdict(stdout, new_output("error", ename=ename, evalue=evalue,
                                                    traceback=[f"{ename}: {evalue}" if evalue else ename]),
                                 self._restart_after is not None, self._restart_after, tampering)
        return self._verdict(stdout, None, self._restart_after is not None, self._restart_after, tampering)

    def _verdict(self, stdout, error, restart, note, tampering) -> CellVerdict:
        outputs = []
        text = "".join(self._printed) + stdout.getvalue()
        if len(text) > self.output_chars:
            text = text[:self.output_chars] + "\n[... output truncated by the grader]\n"
        if text:
            outputs.append(new_output("stream", name="stdout", text=text))
        if error is not None:
            outputs.append(error)
        return CellVerdict(outputs, restart, note, tampering)

    def _probe(self) -> list[str]:
        reply = self._ask({"op": "probe"}, "the grader's check of your kernel")
        found = reply.get("tampering")
        return [str(x)[:200] for x in found[:10]] if isinstance(found, list) else []

    def _namespace(self, test: CellInfo) -> dict:
        plan = self.analysis.plan(test)
        if plan.violations:
            cell, name = plan.violations[0]
            raise GradingAbort("GradingError", f"the instructor code this test needs (cell {cell}) uses the student's "
                                               f"name `{name}`: fixtures must not depend on answers")
        ns = {"__name__": "__main__", "__builtins__": builtins, "display": lambda *a, **k: None,
              "get_ipython": _no_ipython}
        for cell in plan.instructor_cells:
            try:
                code = compile(python_source(cell.source), f"<instructor cell {cell.index}>", "exec")
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                        warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    exec(code, ns)  # noqa: S102 - the instructor's code, from the source notebook
            except _STOP_EXCEPTIONS:
                raise
            except BaseException as err:  # noqa: BLE001
                if self.log is not None:
                    self.log.error("instructor cell %d, needed by a test, failed in the checker: %r", cell.index, err)
                raise GradingAbort("GradingError", f"the instructor code this test needs (cell {cell.index}) failed "
                                                   f"in the grader: {type(err).__name__}: {err}") from None
            _close_figures()
        if plan.student_names:
            reply = self._ask({"op": "describe", "names": sorted(plan.student_names)}, "reading your answers")
            names = reply.get("names")
            if not isinstance(names, dict):
                raise GradingAbort("GradingError", "the kernel's description of your answers is malformed",
                                   tampering="the kernel answered the grader with malformed data")
            for name in sorted(plan.student_names):
                entry = names.get(name)
                kind = entry.get("kind") if isinstance(entry, dict) else None
                if kind == "function":
                    ns[name] = StudentFunction(name, self)
                elif kind == "value":
                    ns[name] = self._decode(entry.get("value"), name)
                elif kind == "unreadable":
                    raise AssertionError(f"`{name}` holds {str(entry.get('why'))[:200]}, which grading cannot read: "
                                         f"an answer must be a string, a number, a tensor or an array (exact types, "
                                         f"not subclasses), or a tuple/list/dict of these.")
                elif kind != "missing":
                    raise GradingAbort("GradingError", f"the kernel's description of `{name}` is malformed",
                                       tampering="the kernel answered the grader with malformed data")
        return ns

    # -- talking to the kernel -------------------------------------------------------------------
    def _ask(self, request: dict, what: str) -> dict:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise GradingAbort("CellTimeoutError", f"the cell's time limit ran out ({what})")
        try:
            reply, printed = self.session.call_agent(request, timeout=remaining, max_bytes=self.max_reply_bytes)
        except KernelDied:
            raise GradingAbort("KernelDied", f"the kernel died during {what} (os._exit, a crash in compiled code, "
                                             f"or the memory limit)", restart=True) from None
        except KernelTimeout as err:
            raise GradingAbort("CellTimeoutError", f"{what} did not finish within the cell's time limit"
                               + ("" if err.responsive else "; the kernel did not answer the interrupt and "
                                                            "was restarted"),
                               restart=not err.responsive,
                               tampering=None if err.responsive else "the kernel stopped answering "
                                                                     "(it ignored the interrupt)") from None
        except KernelProtocolError as err:
            raise GradingAbort("GradingError", f"{err}", tampering=str(err)) from None
        for out in printed:
            if out.get("output_type") == "stream":
                self._printed.append(out.get("text", ""))
        return reply

    def _decode(self, value, name):
        try:
            return decode_value(value, max_bytes=self.max_reply_bytes)
        except KernelProtocolError as err:
            raise GradingAbort("GradingError", f"`{name}`: {err}", tampering=str(err)) from None

    def call(self, name: str, args: tuple, kwargs: dict):
        """Call the student's ``name`` in the kernel; return its result as plain data."""
        try:
            dumps_request((args, kwargs))
        except Exception as err:  # noqa: BLE001 - lambdas, generators, locks, ...
            raise GradingAbort("GradingError", f"the test's arguments for `{name}` cannot be sent to the kernel "
                                               f"({type(err).__name__}: {err}): the test breaks the grading "
                                               f"convention") from None
        reply = self._ask({"op": "call", "name": name, "args": tuple(args), "kwargs": dict(kwargs)},
                          f"your function `{name}`")
        if reply.get("ok") is True:
            return self._decode(reply.get("value"), name)
        etype, message = str(reply.get("etype", "Error"))[:100], str(reply.get("message", ""))[:4000]
        if etype == "MemoryError":
            self._restart_after = f"`{name}` ran out of memory"
        if etype == "Unsupported":
            raise AssertionError(f"`{name}` {message}, which grading cannot read: return tensors, numpy arrays, "
                                 f"numbers or strings (exact types, not subclasses), or tuples/lists/dicts of these.")
        if etype == "KeyboardInterrupt":
            raise GradingAbort("CellTimeoutError", f"your function `{name}` was interrupted")
        raise _rebuild_exception(etype, message, name)

    def assert_not_calling(self, name: str, forbidden, what=None) -> None:
        targets = forbidden_targets(forbidden)
        problems = find_shortcuts(self.authored, targets, context=self.context)
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise AssertionError(
                f"{what or f'`{name}`'}: this exercise asks you to write the computation yourself, but the code you "
                f"wrote uses what it does not allow: {'; '.join(problems[:3])}{more}. Grading reads every cell you "
                f"wrote or changed: remove these uses (and any dynamic access such as getattr with a computed name, "
                f"eval/exec or importlib) from your notebook.")


class _NoIPython:
    def run_line_magic(self, name, line, *a, **k):
        if name not in ("matplotlib", "config", "load_ext"):
            raise RuntimeError(f"the magic %{name} cannot run in the grader")

    def run_cell_magic(self, name, line, cell):
        raise RuntimeError(f"the cell magic %%{name} cannot run in the grader")


def _no_ipython():
    return _NoIPython()


def _close_figures():
    import sys

    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.close("all")
