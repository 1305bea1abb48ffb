"""SandboxedExecute (the autograde executor) on small synthetic notebooks: budgets, restarts and
replays, the checker's verdicts, and what reaches the student's kernel; HideHiddenTests (feedback).

The notebooks import no torch in the kernel, so each kernel starts in about a second.
"""
import time

import nbformat
import pytest
from nbformat.v4 import new_notebook, new_output
from pipeline_utils import nbgrader_cell as _cell
from pipeline_utils import require_sandbox
from traitlets.config import Config

from ntklib.grading.executor import GRADING_NOTES_MARK, SandboxedExecute
from ntklib.grading.feedback import REDACTED, HideHiddenTests

HIDDEN = "assert double(21) == 42, 'the hidden check'"


def _source():
    return new_notebook(cells=[
        _cell("import math\nSMOKE = True", "imports"),
        _cell("FIXTURE = [1, 2, 3]", "fixture"),
        _cell("def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION", "double",
              solution=True, grade=False, grade_id="double", locked=False),
        _cell(f'"""double doubles."""\nassert double(2) == 4, "double(2) should be 4"\n'
              f'assert type(double(1.5)) is float\n### BEGIN HIDDEN TESTS\n{HIDDEN}\n'
              f'assert [double(v) for v in FIXTURE] == [2, 4, 6]\n### END HIDDEN TESTS',
              "test_double", grade=True, solution=False, grade_id="test_double", points=2, locked=True),
        _cell('ANSWER = "B"', "answer", solution=True, grade=False, grade_id="answer", locked=False),
        _cell('"""the answer."""\nassert ANSWER == "B", "not the right option"', "test_answer", grade=True,
              solution=False, grade_id="test_answer", points=1, locked=True),
    ])


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    require_sandbox()
    root = tmp_path_factory.mktemp("course")
    for folder in ("solutions", "course"):
        (root / folder / "demo").mkdir(parents=True)
        nbformat.write(_source(), str(root / folder / "demo" / "demo.ipynb"))
    (root / "solutions" / "demo" / "instructor_only.txt").write_text("secret")
    return root


def _grade(course, nb, tmp_path, **traits):
    cfg = Config()
    cfg.CourseDirectory.root = str(course)
    cfg.CourseDirectory.source_directory = "solutions"
    cfg.CourseDirectory.release_directory = "course"
    cfg.Execute.timeout = 20
    for key, value in traits.items():
        cfg.SandboxedExecute[key] = value
    folder = tmp_path / "submission"
    folder.mkdir(exist_ok=True)
    (folder / "instructor_only.txt").write_text("secret")  # nbgrader copies source files into autograded/
    (folder / "data.txt").write_text("released data")
    resources = {"nbgrader": {"assignment": "demo", "notebook": "demo", "student": "s"}, "metadata": {"path": str(folder)}}
    t0 = time.monotonic()
    graded, _ = SandboxedExecute(config=cfg).preprocess(nb, resources)
    return graded, time.monotonic() - t0


def _by_id(nb):
    return {c.get("id"): c for c in nb.cells}


def _errors(cell):
    return [f"{o.ename}: {o.evalue}" for o in cell.outputs if o.output_type == "error"]


def _text(cell):
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def test_the_checker_runs_the_tests_and_the_hidden_tests_never_reach_the_kernel(course, tmp_path):
    nb = _source()
    spy = _cell("seen = []\nget_ipython().events.register('pre_run_cell', lambda info: seen.append(info.raw_cell))",
                "spy")
    report = _cell("import os\nprint(sorted(os.listdir('.')))\nprint('|'.join(seen))", "report")
    nb.cells.insert(1, spy)
    nb.cells.append(report)
    graded, _ = _grade(course, nb, tmp_path)
    cells = _by_id(graded)
    assert _errors(cells["test_double"]) == [] and _errors(cells["test_answer"]) == []
    files, seen = _text(cells["report"]).splitlines()[:2]
    assert files == "['data.txt']"  # no notebook, no instructor-only file
    assert "double(21)" not in seen and "the hidden check" not in seen and "FIXTURE" in seen
    assert not any(GRADING_NOTES_MARK in c.source for c in graded.cells if c.cell_type == "markdown")


def test_wrong_answers_fail_with_a_minimal_message_and_student_exceptions_are_reported(course, tmp_path):
    nb = _source()
    _by_id(nb)["double"].source = "def double(x):\n    return 2 * x + 1"
    _by_id(nb)["answer"].source = "class S(str):\n    def __eq__(self, other):\n        return True\nANSWER = S('B')"
    graded, _ = _grade(course, nb, tmp_path)
    cells = _by_id(graded)
    assert _errors(cells["test_double"]) == ["AssertionError: double(2) should be 4"]
    assert "which grading cannot read" in _errors(cells["test_answer"])[0]
    _by_id(nb)["double"].source = "def double(x):\n    raise NotImplementedError()"
    graded, _ = _grade(course, nb, tmp_path)
    assert _errors(_by_id(graded)["test_double"]) == ["NotImplementedError: raised in your function `double`"]


def test_a_kernel_death_restarts_the_kernel_replays_the_cells_and_keeps_the_points(course, tmp_path):
    nb = _source()
    nb.cells.insert(3, _cell("import os\nos._exit(1)", "exit"))
    nb.cells.append(_cell("print(FIXTURE, math.pi > 3)", "after"))
    graded, _ = _grade(course, nb, tmp_path)
    cells = _by_id(graded)
    assert _errors(cells["exit"])[0].startswith("KernelDied")
    assert _errors(cells["test_double"]) == [] and _errors(cells["test_answer"]) == []
    assert _text(cells["after"]) == "[1, 2, 3] True\n"  # the state before the crash was replayed
    notes = graded.cells[0].source
    assert GRADING_NOTES_MARK in notes and "restarted" in notes


def test_the_budgets_bound_the_notebook_and_the_added_cells(course, tmp_path):
    nb = _source()
    nb.cells.insert(1, _cell("import time\ntime.sleep(30)", "sleep1"))
    nb.cells.insert(2, _cell("import time\ntime.sleep(30)", "sleep2"))
    graded, seconds = _grade(course, nb, tmp_path, extra_cells_timeout=2)
    cells = _by_id(graded)
    assert _errors(cells["sleep1"])[0].startswith("CellTimeoutError")
    assert _errors(cells["sleep2"])[0].startswith("NotRun") and "added" in _errors(cells["sleep2"])[0]
    assert _errors(cells["test_double"]) == [] and _errors(cells["test_answer"]) == []
    assert seconds < 20
    nb = _source()
    _by_id(nb)["fixture"].source = "import time\ntime.sleep(30)\nFIXTURE = [1, 2, 3]"  # a slow known cell
    graded, seconds = _grade(course, nb, tmp_path, notebook_timeout=3)
    cells = _by_id(graded)
    assert _errors(cells["test_double"])[0].startswith("NotRun") and "budget" in _errors(cells["test_double"])[0]
    assert seconds < 20


def test_output_is_capped_by_characters(course, tmp_path):
    nb = _source()
    nb.cells.insert(1, _cell("print('x' * 10_000_000)\nprint('after')", "flood"))
    graded, _ = _grade(course, nb, tmp_path, output_chars=5_000)
    text = _text(_by_id(graded)["flood"])
    assert len(text) < 6_000 and "truncated" in text
    assert _errors(_by_id(graded)["test_double"]) == []


def test_a_replaced_do_execute_is_labelled_as_tampering(course, tmp_path):
    nb = _source()
    nb.cells.insert(1, _cell("get_ipython().kernel.do_execute = lambda *a, **k: {'status': 'ok', 'execution_count': 0, "
                             "'user_expressions': {}, 'payload': []}", "noop"))
    graded, _ = _grade(course, nb, tmp_path)
    assert _errors(_by_id(graded)["test_double"])  # no answer from the kernel: the test fails
    assert "Tampering" in graded.cells[0].source and "replaced" in graded.cells[0].source


def test_feedback_hides_hidden_tests_even_with_marker_strings_in_student_cells():
    nb = _source()
    student = _cell("# ### BEGIN HIDDEN TESTS\nprint('### BEGIN HIDDEN TESTS')\n" + HIDDEN, "student")
    student.outputs = [new_output("stream", name="stdout", text=f"### BEGIN HIDDEN TESTS\n{HIDDEN}\nok\n")]
    nb.cells.append(student)
    test = _by_id(nb)["test_double"]
    test.outputs = [new_output("error", ename="AssertionError", evalue=HIDDEN, traceback=[HIDDEN])]
    out, _ = HideHiddenTests().preprocess(nb, {})
    cells = _by_id(out)
    assert "BEGIN HIDDEN" not in cells["test_double"].source and HIDDEN not in cells["test_double"].source
    assert "double(2) == 4" in cells["test_double"].source  # the visible tests stay
    assert HIDDEN not in cells["student"].source and REDACTED in cells["student"].source
    assert cells["student"].outputs[0]["text"] == f"### BEGIN HIDDEN TESTS\n{REDACTED}\nok\n"
    assert cells["test_double"].outputs[0]["evalue"] == REDACTED
