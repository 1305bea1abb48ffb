"""Plausible wrong answers fail the tests a student sees.

``tests/course/wrong_answers/<id>.py`` keeps, for every exercise of notebook ``<id>``, mistakes a
student could plausibly make (the seeds' errors, a transposed matrix, a missing factor, a limit
taken the wrong way). Each is a dict::

    dict(cell="<grade_id of the answer cell it replaces>", why="<the mistake in words>",
         source='''<the whole replacement cell>''',
         tests=["<grade_id of a test cell>", ...],   # optional; default: the test cells between this
                                                      # answer cell and the next answer cell
         visible=False)                               # optional; for multiple choice (see below)

In one kernel per notebook the solution notebook runs top to bottom with its test cells as the
student sees them (hidden tests removed). Then, for each wrong answer, the stretch from its answer
cell to its last test cell is run again with the wrong answer in place: the answer cell itself must
run, and at least one of its test cells must fail, on the visible tests alone. Multiple-choice
answers (``visible=False``) are checked against the full test cells, hidden tests included, since a
visible test cannot reject a wrong letter without giving the right one away. After each wrong
answer the stretch is run again with the right answer, which must pass, so the next one starts
from a clean state.

The course design asks for at least one plausible wrong answer per exercise:
``test_every_exercise_has_a_plausible_wrong_answer`` checks it for every notebook with a file.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest

from notebook_kernel import NotebookKernel
from pipeline_utils import SOLUTIONS, assignment_ids, is_autograded_test, nbgrader_meta, source_notebook

pytestmark = pytest.mark.pipeline

WRONG = Path(__file__).resolve().parent / "wrong_answers"
HIDDEN = ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")


def _with_wrong_answers() -> list[str]:
    return [a for a in assignment_ids() if (WRONG / f"{a}.py").is_file()]


ASSIGNMENTS = _with_wrong_answers()


def load_wrong_answers(assignment: str) -> list[dict]:
    spec = importlib.util.spec_from_file_location(f"wrong_answers_{assignment}", WRONG / f"{assignment}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.WRONG_ANSWERS)


def visible_part(source: str) -> str:
    """A test cell as the student sees it: the hidden-test region and its markers removed."""
    keep, hidden = [], False
    for line in source.splitlines():
        if HIDDEN[0] in line:
            hidden = True
        elif HIDDEN[1] in line:
            hidden = False
        elif not hidden:
            keep.append(line)
    return "\n".join(keep)


def is_answer_cell(cell) -> bool:
    """An autograded answer cell: code, solution, not itself graded (written answers are markdown)."""
    m = nbgrader_meta(cell)
    return cell.cell_type == "code" and bool(m.get("solution")) and not m.get("grade")


def exercise_tests(nb) -> dict[str, list[str]]:
    """answer cell grade_id -> the test cells between it and the next answer cell."""
    out, current = {}, None
    for cell in nb.cells:
        if is_answer_cell(cell):
            current = nbgrader_meta(cell)["grade_id"]
            out[current] = []
        elif is_autograded_test(cell) and current is not None:
            out[current].append(nbgrader_meta(cell)["grade_id"])
    return out


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_wrong_answers_are_well_formed(assignment):
    """Each entry names an answer cell and test cells of the notebook, explains itself and differs from the solution."""
    nb = nbformat.read(str(source_notebook(assignment)), as_version=4)
    cells = {nbgrader_meta(c)["grade_id"]: c for c in nb.cells if nbgrader_meta(c).get("grade_id")}
    tests_of = exercise_tests(nb)
    for i, wrong in enumerate(load_wrong_answers(assignment)):
        where = f"{assignment} wrong answer {i} ({wrong.get('cell')!r})"
        assert set(wrong) <= {"cell", "why", "source", "tests", "visible"}, f"{where}: unknown keys {sorted(wrong)}"
        assert wrong.get("cell") in tests_of, f"{where}: 'cell' must be the grade_id of an answer cell: {sorted(tests_of)}"
        assert str(wrong.get("why", "")).strip(), f"{where}: say what the mistake is in 'why'"
        src = str(wrong.get("source", "")).strip()
        assert src and src != cells[wrong["cell"]].source.strip(), f"{where}: 'source' is empty or the solution itself"
        tests = wrong.get("tests") or tests_of[wrong["cell"]]
        assert tests, f"{where}: no test cell follows this answer cell; give 'tests'"
        for t in tests:
            assert t in cells and is_autograded_test(cells[t]), f"{where}: {t!r} is not an autograded test cell"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_exercise_has_a_plausible_wrong_answer(assignment):
    nb = nbformat.read(str(source_notebook(assignment)), as_version=4)
    covered = {w["cell"] for w in load_wrong_answers(assignment)}
    graded = [gid for gid, tests in exercise_tests(nb).items() if tests]
    missing = [gid for gid in graded if gid not in covered]
    assert not missing, f"{assignment}: no plausible wrong answer for the exercises {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_visible_tests_reject_every_plausible_wrong_answer(assignment):
    """The notebook once, then every wrong answer in its stretch of cells: one of its tests must fail."""
    nb = nbformat.read(str(source_notebook(assignment)), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    index = {nbgrader_meta(c).get("grade_id"): i for i, c in enumerate(code) if nbgrader_meta(c).get("grade_id")}
    tests_of = exercise_tests(nb)

    def shown(cell, full=False):
        return cell.source if full or not is_autograded_test(cell) else visible_part(cell.source)

    wrong_answers = load_wrong_answers(assignment)
    passed, broken = [], []
    with NotebookKernel(SOLUTIONS / assignment) as kernel:
        for i, cell in enumerate(code):
            run = kernel.run(shown(cell))
            assert run.error is None, f"{assignment}: code cell {i} of the solution fails: {run.error}"
        for wrong in wrong_answers:
            tests = wrong.get("tests") or tests_of[wrong["cell"]]
            full = wrong.get("visible", True) is False
            start, stop = index[wrong["cell"]], max(index[t] for t in tests) + 1
            failed, own_error = [], None
            for cell in code[start:stop]:
                gid = nbgrader_meta(cell).get("grade_id")
                run = kernel.run(wrong["source"] if gid == wrong["cell"] else shown(cell, full))
                if gid == wrong["cell"] and run.error is not None:
                    own_error = run.error
                if gid in tests and run.error is not None:
                    failed.append(gid)
            label = f"{wrong['cell']}: {wrong['why']}"
            if own_error is not None:
                broken.append(f"{label} (the wrong answer itself raises {own_error[0]}: {own_error[1][:200]})")
            elif not failed:
                passed.append(label)
            for cell in code[start:stop]:  # back to the right answer (and check that it still passes)
                run = kernel.run(shown(cell, full))
                assert run.error is None, f"{assignment}: restoring the solution after '{label}' failed: {run.error}"
    which = "the visible tests" if all(w.get("visible", True) for w in wrong_answers) else "the tests"
    assert not broken, f"{assignment}: wrong answers that do not even run (make them plausible):\n  " + "\n  ".join(broken)
    assert not passed, (f"{assignment}: these plausible wrong answers pass {which} (a student would leave "
                        "believing them right); add a visible case that catches each:\n  " + "\n  ".join(passed))
