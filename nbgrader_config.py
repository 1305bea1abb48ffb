"""nbgrader configuration: solutions/ is the instructor's source, course/ the student release.

Layout: solutions/<assignment>/<assignment>.ipynb  ->  course/<assignment>/<assignment>.ipynb

The grading work folders (submitted/, autograded/, feedback/), the gradebook (gradebook.db)
and a local exchange (exchange/) live next to this file when you grade from a clone of the
repository; all of them are git-ignored. Commands: docs/instructors.md. Every setting below
is exercised by tests/course/test_pipeline.py (the simulated class).

Grading integrity (docs/instructors.md, section 3): `nbgrader autograde` runs each submission in
a sandboxed kernel (bubblewrap) and its graded test cells in a trusted checker outside the
student's process; feedback never shows hidden tests; `nbgrader export` refuses manual grades
that no grader set. The ntklib classes are named by import path, so that the other nbgrader
commands do not import ntklib (and torch).
"""
import os
import sys
import types

from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, GetGrades, IgnorePattern, LimitOutput,
                                    SaveAutoGrades)

c = get_config()  # noqa: F821 (provided by nbgrader)

# --- course layout ------------------------------------------------------------------------
c.CourseDirectory.course_id = "ntk-course"
# absolute, so that nbgrader neither warns nor depends on the directory it is started from
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "course"

# --- executing student code (nbgrader validate and nbgrader autograde) ---------------------
# Each cell gets at most this many seconds (slow demos are skipped under NBGRADER_EXECUTION,
# so every cell of a solution notebook finishes in a few seconds on a 2-core CPU). A cell that
# runs longer (an infinite loop) is interrupted, marked with a CellTimeoutError (0 points if it
# is a test cell) and execution goes on with the next cell.
c.Execute.timeout = 60
c.Execute.interrupt_on_timeout = True
# Minimal tracebacks: a failing test shows "AssertionError: <message>" only. The messages of
# ntklib.testing say what was expected; the source lines of hidden tests never appear in the
# output (and so never in the feedback).
c.Execute.extra_arguments = ["--InteractiveShell.xmode=Minimal"]
c.LimitOutput.max_traceback = 30
c.LimitOutput.max_lines = 200

# --- autograding: sandboxed kernel, trusted checker, budgets --------------------------------
c.Autograde.autograde_preprocessors = [
    "ntklib.grading.executor.SandboxedExecute",  # replaces nbgrader's Execute for autograde only
    IgnorePattern,
    ClearMetadataPreprocessor,
    LimitOutput,
    SaveAutoGrades,
    AssignLatePenalties,
    CheckCellMetadata,
]
# Budgets of the sandboxed executor (seconds; the per-cell limit is Execute.timeout above).
c.SandboxedExecute.notebook_timeout = 300      # the whole notebook, restarts included
c.SandboxedExecute.extra_cells_timeout = 60    # all the code cells a student added, together
c.SandboxedExecute.output_chars = 1_000_000    # characters of output kept per cell (figures included)
c.SandboxedExecute.memory_limit_mb = 4096      # the kernel's address space
c.SandboxedExecute.max_restarts = 5            # kernel restarts per notebook (crash, memory, a hung kernel)

c.Autograde.create_student = True          # students need not be added to the gradebook first
c.OverwriteCells.add_missing_cells = True  # a deleted test cell is put back (and run)
# Locked test cells a student edited are always restored from the gradebook (OverwriteCells,
# on by default), so are their points and cell types.


def _refuse_autograde_without_sandbox():
    """`nbgrader autograde` stops here, before touching a submission, when bubblewrap cannot sandbox
    the kernels -- unless NTK_GRADING_SANDBOX=off, the documented opt-out, which warns loudly."""
    from nbgrader.apps import AutogradeApp

    if not AutogradeApp.initialized():
        return
    from ntklib.grading.executor import ensure_sandbox
    from ntklib.grading.sandbox import SandboxUnavailable

    try:
        ensure_sandbox()
    except SandboxUnavailable as err:
        sys.stderr.write(f"[nbgrader_config.py] nbgrader autograde refused: {err}\n")
        raise SystemExit(2) from None


_refuse_autograde_without_sandbox()

# --- feedback: the graded notebook as HTML, without the hidden tests -----------------------
# HideHiddenTests replaces nbgrader's ClearHiddenTests: it also scrubs outputs, and a student's
# cell that contains the marker strings cannot make it fail.
c.GenerateFeedback.preprocessors = [GetGrades, "ntklib.grading.feedback.HideHiddenTests", CSSHTMLHeaderPreprocessor]

# --- manual grades: a signed ledger, audited at export --------------------------------------
# Every manual score / extra credit committed by a process that loads this file (the formgrader,
# nbgrader commands) is appended to .ntk-grading/ledger.jsonl next to gradebook.db, HMAC-signed;
# `nbgrader export` stops, naming student, notebook and cell, on any manual grade no grader set.
# Scripts that use nbgrader's Gradebook API call ntklib.grading.ledger.record_manual_grades() first.
c.ExportApp.plugin_class = "ntklib.grading.ledger.AuditedCsvExport"


def _record_manual_grades():
    """Install the ledger's flush hook once per process; ntklib is imported only when a flush
    writes grades (autograde, the formgrader), not by every nbgrader command."""
    registry = sys.modules.setdefault("_ntk_grading_ledger_hook", types.ModuleType("_ntk_grading_ledger_hook"))
    if getattr(registry, "installed", False):
        return
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    def before_flush(session, flush_context, instances):
        if any(type(obj).__name__ == "Grade" for obj in (*session.new, *session.dirty)):
            from ntklib.grading.ledger import collect

            collect(session)

    registry.installed = True
    event.listen(Session, "before_flush", before_flush)


_record_manual_grades()
