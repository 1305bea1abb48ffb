"""nbgrader configuration: solutions/ is the instructor's source, course/ the student release.

Layout: solutions/<assignment>/<assignment>.ipynb  ->  course/<assignment>/<assignment>.ipynb

The grading work folders (submitted/, autograded/, feedback/), the gradebook (gradebook.db)
and a local exchange (exchange/) live next to this file when you grade from a clone of the
repository; all of them are git-ignored. Commands: docs/instructors.md. Every setting below
is exercised by tests/course/test_pipeline.py (the simulated class).
"""
from nbclient.exceptions import DeadKernelError
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbformat.v4 import new_output
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, ClearHiddenTests, Execute,
                                    GetGrades, IgnorePattern, LimitOutput, SaveAutoGrades)
from nbconvert.preprocessors import ClearMetadataPreprocessor

c = get_config()  # noqa: F821 (provided by nbgrader)

# --- course layout ------------------------------------------------------------------------
c.CourseDirectory.course_id = "ntk-course"
import os  # noqa: E402

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


class KernelDeathTolerantExecute(Execute):
    """nbgrader's Execute, but a student whose code kills the kernel (``os._exit``, a segfault,
    running out of memory) does not stop grading: the cell where the kernel died and every code
    cell after it get an error output (so their tests score 0) and the cells before it keep
    their results. Plain nbgrader would abort the whole submission ("There was an error
    processing assignment") and record nothing for it.
    """

    def preprocess(self, nb, resources=None, km=None):
        self._died_in_cell = None
        return super().preprocess(nb, resources, km)

    def preprocess_cell(self, cell, resources, index):
        if self._died_in_cell is not None:
            if cell.cell_type == "code":
                cell.outputs = [new_output(
                    "error", ename="KernelDied",
                    evalue=f"not run: the kernel died in cell {self._died_in_cell}",
                    traceback=[f"KernelDied: not run, because the kernel died in cell {self._died_in_cell} "
                               "(code cell numbers count from 0)"])]
            return cell, resources
        try:
            return super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            self._died_in_cell = index
            self.log.warning("The kernel died in cell %d; the remaining code cells are marked as not run.", index)
            cell.outputs.append(new_output(
                "error", ename="KernelDied",
                evalue="the kernel died while running this cell",
                traceback=["KernelDied: the kernel died while running this cell (os._exit, a crash in "
                           "compiled code, or running out of memory); the cells after it did not run"]))
            return cell, resources


c.Autograde.autograde_preprocessors = [
    KernelDeathTolerantExecute,
    IgnorePattern,
    ClearMetadataPreprocessor,
    LimitOutput,
    SaveAutoGrades,
    AssignLatePenalties,
    CheckCellMetadata,
]

# --- autograding: what a student cannot break ---------------------------------------------
c.Autograde.create_student = True          # students need not be added to the gradebook first
c.OverwriteCells.add_missing_cells = True  # a deleted test cell is put back (and run)
# Locked test cells a student edited are always restored from the gradebook (OverwriteCells,
# on by default), so are their points and cell types.

# --- feedback: the graded notebook as HTML, without the hidden tests -----------------------
c.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTests, CSSHTMLHeaderPreprocessor]
