"""The nbgrader pipeline, for every assignment in solutions/ (checks 1-5) and, for notebook 00, the
whole instructor loop with a simulated class (check 6). See docs/instructors.md.

1. the solution notebook runs top to bottom without an error (CI=1 and NBGRADER_EXECUTION: smoke sizes);
2. ``nbgrader validate`` passes on it (same execution as 1: nbgrader's own Validator);
3. regenerating course/<id>/ from solutions/<id>/ gives exactly the committed files;
4. every graded test cell fails on the untouched student notebook (``nbgrader validate --invert``);
5. course/ holds no solution line and no hidden-test line of the source (and neither does any
   feedback page, in the loop test);
6. release -> fetch -> submit -> collect -> autograde -> feedback -> export with seven simulated
   students, whose grades are checked cell by cell.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from pipeline_utils import (COURSE, COURSE_ID, REPO, SCALED, SOLUTIONS, assignment_ids, cells_by_grade_id,
                            copy_tree, delete_cell, error_outputs, expected_scores, find_leaks, garbage_answers,
                            html_text_lines, insert_cells, is_autograded_test, is_manual_answer, load_config,
                            nbgrader_meta,
                            notebook_text_lines, release_notebook, require_sandbox, run_nbgrader, secret_lines, set_cell,
                            solution_cell_of, source_facts, source_notebook, which_tests_use, tree_files, validate,
                            with_solutions, wrapped_function, write_instructor_config)

pytestmark = pytest.mark.pipeline

ASSIGNMENTS = assignment_ids()


def _read(path):
    return nbformat.read(str(path), as_version=4)


def _release(assignment):
    path = release_notebook(assignment)
    assert path.is_file(), f"{path.relative_to(REPO)} is missing: run scripts/generate_course.sh {assignment}"
    return path


def test_there_are_assignments_and_course_mirrors_solutions():
    """Every folder of solutions/ has a generated course/ folder and vice versa."""
    assert ASSIGNMENTS, "no assignment found in solutions/ (expected solutions/<id>/<id>.ipynb)"
    course_ids = sorted(d.name for d in COURSE.iterdir() if d.is_dir()) if COURSE.is_dir() else []
    assert course_ids == ASSIGNMENTS, (
        f"course/ has {course_ids} but solutions/ has {ASSIGNMENTS}: run scripts/generate_course.sh "
        f"(and remove course/ folders whose source is gone)")


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_assignment_follows_the_grading_conventions(assignment):
    """Cell metadata and the conventions of the course design: >= 3 autograded tests with points,
    locked, each opening with a one-line docstring; one manually graded written answer; hidden
    tests present; a SMOKE flag in the first code cell."""
    nb = _read(source_notebook(assignment))
    tests = [c for c in nb.cells if is_autograded_test(c)]
    manual = [c for c in nb.cells if is_manual_answer(c)]
    assert len(tests) >= 3, f"{assignment}: {len(tests)} autograded test cells, the design asks for >= 3"
    assert any(c.cell_type == "markdown" for c in manual), f"{assignment}: no manually graded written answer cell"
    ids = [nbgrader_meta(c)["grade_id"] for c in nb.cells if nbgrader_meta(c).get("grade_id")]
    assert len(ids) == len(set(ids)), f"{assignment}: duplicate grade_id in {ids}"
    for c in tests:
        m = nbgrader_meta(c)
        assert m.get("locked"), f"{assignment}: test cell {m['grade_id']} is not locked"
        assert float(m.get("points", 0)) > 0, f"{assignment}: test cell {m['grade_id']} has no points"
        first = c.source.lstrip().splitlines()[0] if c.source.strip() else ""
        assert first.startswith(('"""', "'''")), (
            f"{assignment}: test cell {m['grade_id']} should open with a one-line docstring saying what is checked")
    assert any("BEGIN HIDDEN TESTS" in c.source for c in tests), f"{assignment}: no hidden tests"
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert "SMOKE" in first_code.source, f"{assignment}: the first code cell should define the SMOKE flag"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_solution_notebook_runs_top_to_bottom_without_errors(assignment):
    """Check 1: every code cell of the solution notebook runs without raising (smoke sizes)."""
    run = validate(str(source_notebook(assignment)))
    errors = error_outputs(run.executed)
    assert not errors, f"{assignment}: cells raised errors:\n" + "\n".join(
        f"  cell {i} ({first!r}): {err}" for i, first, err in errors)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_nbgrader_validate_passes_on_solution(assignment):
    """Check 2: every graded test cell passes on the solution (nbgrader's Validator, same config as grading)."""
    run = validate(str(source_notebook(assignment)))
    assert not run.results, f"{assignment}: nbgrader validate reports {run.results}"
    graded = [c for c in run.executed.cells if is_autograded_test(c)]
    assert graded, f"{assignment}: no graded test cell was executed"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_regenerated_course_equals_committed_course(assignment, tmp_path):
    """Check 3: scripts/generate_course.sh into a temporary folder gives exactly course/<id>/."""
    subprocess.run(["bash", str(REPO / "scripts" / "generate_course.sh"), "--into", str(tmp_path), assignment],
                   cwd=REPO, check=True, capture_output=True, text=True, timeout=300)
    fresh, committed = tree_files(tmp_path / assignment), tree_files(COURSE / assignment)
    assert fresh.keys() == committed.keys(), (
        f"{assignment}: generated files {sorted(fresh)} differ from committed {sorted(committed)}; "
        f"run scripts/generate_course.sh {assignment} and commit course/{assignment}/")
    differing = [name for name in fresh if fresh[name] != committed[name]]
    assert not differing, (f"course/{assignment}/ is out of date or was edited by hand ({differing}); "
                           f"run scripts/generate_course.sh {assignment} and commit the result")
    assert not list(tmp_path.rglob("gradebook.db")) and not list(tmp_path.rglob(".nbgrader.log"))


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_graded_test_fails_on_untouched_student_notebook(assignment):
    """Check 4: nbgrader validate --invert on the released notebook: no graded test passes on the stubs."""
    run = validate(str(_release(assignment)), invert=True)
    assert "changed" not in run.results and "type_changed" not in run.results, run.results
    passed = run.results.get("passed", [])
    assert not passed, f"{assignment}: these tests pass on the untouched stubs (vacuous):\n" + "\n---\n".join(
        c["source"][:300] for c in passed)
    n_tests = sum(is_autograded_test(c) for c in run.executed.cells)
    failed = [c for c in run.executed.cells if is_autograded_test(c) and any(
        o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert n_tests >= 3 and len(failed) == n_tests, f"{assignment}: {len(failed)} of {n_tests} test cells failed"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_course_notebook_has_no_solution_or_hidden_test(assignment):
    """Check 5 (course/): no solution line, hidden-test line or mark scheme of the source appears in
    the released notebook; the search itself is checked on the source, where it must find them."""
    source = _read(source_notebook(assignment))
    secrets = secret_lines(source)
    assert secrets["solution"] and secrets["hidden test"], f"{assignment}: nothing to search for: {secrets}"
    assert find_leaks(notebook_text_lines(source), secrets), "the leak search finds nothing even in the source"
    released = _read(_release(assignment))
    leaks = find_leaks(notebook_text_lines(released), secrets)
    assert not leaks, f"course/{assignment} reveals:\n  " + "\n  ".join(leaks)
    for cell in released.cells:
        assert not cell.get("outputs"), f"course/{assignment} has stored outputs"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_reference_solution_gets_full_marks_under_the_checker(assignment, tmp_path):
    """Check 7: the release filled with the reference solutions, graded as `nbgrader autograde` grades
    (sandboxed kernel, test cells in the trusted checker): every test cell earns its points, with
    no restart or tampering note. This is what holds every notebook to the grading convention
    (docs/instructors.md, "Rules for notebook authors")."""
    from nbgrader.utils import determine_grade

    from ntklib.grading.executor import GRADING_NOTES_MARK, SandboxedExecute

    require_sandbox()
    source = _read(source_notebook(assignment))
    nb = with_solutions(_read(_release(assignment)), source)
    executor = SandboxedExecute(config=load_config())
    old = {k: os.environ.get(k) for k in ("NBGRADER_EXECUTION", "CI")}
    os.environ.update(NBGRADER_EXECUTION="autograde", CI="1")
    try:
        graded, _ = executor.preprocess(nb, {"nbgrader": {"assignment": assignment, "notebook": assignment,
                                                          "student": "reference"},
                                             "metadata": {"path": str(tmp_path)}})
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    notes = [c.source for c in graded.cells if GRADING_NOTES_MARK in c.source]
    assert not notes, f"{assignment}: the grader wrote notes for the reference solution:\n{notes[0]}"
    lost = {}
    for cell in graded.cells:
        if is_autograded_test(cell):
            score, points = determine_grade(cell, None)
            if score != points:
                lost[nbgrader_meta(cell)["grade_id"]] = [f"{o.get('ename')}: {o.get('evalue')}" if o.get("ename")
                                                         else str(o.get("text", ""))[:300] for o in cell.outputs]
    assert not lost, f"{assignment}: the reference solution loses points under the checker: {lost}"


# --- check 6: the instructor loop with a simulated class --------------------------------------
LOOP_ASSIGNMENT = "00_preliminaries"
CELL_TIMEOUT = 20  # seconds per answer/test cell while grading the simulated class (the course default is 60)
EXTRA_CELLS_TIMEOUT = 5  # seconds for all the cells a student added (the course default is 60)
TOKEN = "ntk-pwned-7f3a"  # in the names of the files the writer student tries to create

# Cells that students add. Attacks of cheaters go right after the first code cell; misbehaving cells
# of otherwise honest students go right after the first graded test cell (so that the grader must
# survive them to award the points of the tests after it).
REBIND_HELPERS = "assert_close = assert_shape = assert_choice = assert_not_calling = lambda *args, **kwargs: None"
PATCH_NUMPY = """import ntklib.testing as _testing
import numpy as _np
_np.abs = lambda x, *a, **k: _np.zeros(_np.shape(x))
_np.allclose = lambda *a, **k: True
_np.isfinite = lambda x, *a, **k: _np.ones(_np.shape(x), dtype=bool)
_np.array_equal = lambda *a, **k: True
_testing.np = _np"""
PATCH_CLASSES = """import torch as _torch
_torch.Tensor.__eq__ = lambda self, other: True
_torch.Tensor.__sub__ = lambda self, other: _torch.zeros(self.shape)
_torch.Tensor.allclose = lambda self, *a, **k: True
_torch.allclose = lambda *a, **k: True
_torch.equal = lambda *a, **k: True
_torch.Tensor.__bool__ = lambda self: True"""
AST_TRANSFORMER = """import ast

class _Swallow(ast.NodeTransformer):
    def visit_Module(self, node):
        handler = ast.ExceptHandler(type=ast.Name("BaseException", ast.Load()), name=None, body=[ast.Pass()])
        node.body = [ast.Try(body=[stmt], handlers=[handler], orelse=[], finalbody=[]) for stmt in node.body]
        return ast.fix_missing_locations(node)

get_ipython().ast_transformers.append(_Swallow())"""
RIGGED_OBJECTS = """import sys as _sys
import numpy as _np

class _Rigged:
    # answers every comparison with the caller's expected value, read from its frame
    def __array__(self, dtype=None, copy=None):
        frame = _sys._getframe(1)
        while frame is not None:
            if "expected" in frame.f_locals:
                return _np.asarray(frame.f_locals["expected"])
            frame = frame.f_back
        return _np.zeros(1)

class _Yes(str):
    def __eq__(self, other):
        return True
    __hash__ = str.__hash__
    def strip(self, *a):
        return self
    def upper(self):
        return self"""
NOOP_DO_EXECUTE = """def _noop(*args, **kwargs):
    return {"status": "ok", "execution_count": 0, "user_expressions": {}, "payload": []}

get_ipython().kernel.do_execute = _noop"""
SOLUTIONS_READER = """import glob, json, os
if os.environ.get("NBGRADER_EXECUTION") == "autograde":
    found = []
    for up in range(1, 6):
        found += glob.glob(os.path.join(*[".."] * up, "solutions", "*", "*.ipynb"))
    found += glob.glob("/solutions/*/*.ipynb") + glob.glob("/*/solutions/*/*.ipynb")
    print("SOLUTIONS FOUND:", found)
    for path in found:
        for cell in json.load(open(path))["cells"]:
            if cell["cell_type"] == "code" and cell["metadata"].get("nbgrader", {}).get("solution"):
                exec("".join(cell["source"]), globals())"""
FAKE_NTKLIB = {
    "ntklib/__init__.py": "from . import course, testing\n\ndef __getattr__(name):\n    return lambda *a, **k: None\n",
    "ntklib/course.py": "def setup(*args, **kwargs):\n    return True\n",
    "ntklib/testing.py": "def _ok(*args, **kwargs):\n    return None\n\nassert_close = assert_shape = assert_choice = "
                         "assert_not_calling = assert_within_standard_errors = _ok\n",
}
GRADEBOOK_EDITOR = """import glob, os, sqlite3
targets = [os.path.join(*[".."] * up, "gradebook.db") for up in range(1, 6)] + glob.glob("/*/gradebook.db")
for path in targets:
    if os.path.exists(path):
        con = sqlite3.connect(path)
        con.execute("UPDATE grade SET manual_score = 99, extra_credit = 5")
        con.commit()
        print("EDITED", path)"""
SNOOPER = """# ### BEGIN HIDDEN TESTS  (a student's cell holding the marker strings must not break the feedback)
import os, sys
found = []
skip = {"/proc", "/sys", "/dev", "/usr", os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}
for base in ["..", "../..", "../../..", "/", os.path.expanduser("~"), "/tmp"]:
    for root, dirs, files in os.walk(base):
        dirs[:] = [d for d in dirs if os.path.realpath(os.path.join(root, d)) not in skip]
        if root.count(os.sep) > 6:
            dirs[:] = []
        for f in files:
            path = os.path.realpath(os.path.join(root, f))
            if not path.startswith(os.getcwd()) and f.endswith((".ipynb", ".db", ".jsonl", ".key", "config.py")):
                found.append(path)
print("SNOOPED:", sorted(set(found)))
print("### BEGIN HIDDEN TESTS")
# ### END HIDDEN TESTS"""
WRITER = f"""import os, sys, ntklib
targets = ["../../../{TOKEN}.txt", "../{TOKEN}.txt", "{TOKEN}.txt", "/tmp/{TOKEN}", os.path.expanduser("~/{TOKEN}"),
           os.path.join(os.path.dirname(ntklib.__file__), "{TOKEN}.py"), os.path.join(sys.prefix, "{TOKEN}.pth")]
for path in targets:
    try:
        with open(path, "w") as fh:
            fh.write("pwned")
        print("WROTE", path)
    except OSError as err:
        print("DENIED", path, err.strerror)"""
FLOOD = 'for _ in range(6):\n    print("x" * 100_000_000)'
SIGINT_PROOF = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
EXIT = "import os\nos._exit(1)"
MEMORY_BOMB = "hoard = []\nwhile True:\n    hoard.append(bytearray(256 * 2**20))"
SLEEP = "import time\ntime.sleep(55)"
LOOP_BODY = "while True:  # an infinite loop\n    pass"
CRASH_BODY = "import os\nos._exit(1)  # kills the kernel"
FORGED_TEST = 'print("all tests passed!")  # a student rewrote this locked test cell'


def _private_ntklib_callable() -> str:
    """A private function of ntklib, as a dotted path (what a cheat would call)."""
    import ntklib.empirical

    name = next(n for n, v in sorted(vars(ntklib.empirical).items()) if n.startswith("_") and not n.startswith("__")
                and callable(v) and getattr(v, "__module__", "") == "ntklib.empirical")
    return f"ntklib.empirical.{name}"


def _importable_alias(forbidden: list[str]) -> tuple[str, str] | None:
    """(module, name) of a forbidden name that exists as a function or class in a library."""
    import importlib

    for name in forbidden:
        for module in ("ntklib", "ntklib.regression", "ntklib.empirical", "numpy.linalg", "torch.linalg",
                       "scipy.linalg", "sklearn.kernel_ridge", "sklearn.gaussian_process", "sklearn.linear_model"):
            if callable(getattr(importlib.import_module(module), name, None)):
                return module, name
    return None


def _students(released, source):
    """student id -> (notebook, extra files, expected score per test cell, what it shows), built
    from what the source notebook defines and tests (no grade id of the notebook is named here)."""
    facts = source_facts(source)
    tests, funcs = facts.tests, facts.functions
    names = {n for cell in facts.cell_names.values() for n in cell}
    zero = {k: 0.0 for k in tests}
    full = expected_scores(facts)
    assert len(funcs) >= 2, f"the simulated class needs >= 2 student functions, {LOOP_ASSIGNMENT} has {funcs}"
    assert any(facts.not_calling.values()), f"{LOOP_ASSIGNMENT} has no assert_not_calling in its tests"
    first_test = next(i for i, c in enumerate(released.cells) if nbgrader_meta(c).get("grade_id") in tests)

    def solved():
        return with_solutions(released, source)

    def cheater(attack):
        return insert_cells(garbage_answers(released, facts), facts.first_code, [attack])

    def honest_with(cell_sources):
        return insert_cells(solved(), first_test, cell_sources)

    def with_function(nb, name, body, prelude=""):
        return set_cell(nb, solution_cell_of(facts, name), wrapped_function(source, facts, name, prelude, body))

    crash_fn, loop_fn, wrong_fn = funcs[len(funcs) // 2], funcs[-1], funcs[0]
    partial = with_function(with_solutions(released, source, [solution_cell_of(facts, funcs[0]),
                                                              solution_cell_of(facts, funcs[1])]),
                            funcs[1], SCALED)
    rigged = garbage_answers(released, facts)
    for gid, cell_names in facts.cell_names.items():
        set_cell(rigged, gid, "\n".join(f"def {n}(*args, **kwargs):\n    return _Rigged()\n" if n in funcs
                                        else f'{n} = _Yes("Z")' for n in cell_names))
    insert_cells(rigged, facts.first_code, [RIGGED_OBJECTS])

    # forbidden shortcuts: the reference solution, plus a reference to what the tests forbid
    shortcuts = {}
    alias_nb, alias_names = solved(), set()
    for name in funcs:
        found = _importable_alias([f for g in which_tests_use(facts, name) for f in facts.not_calling[g]])
        if found:
            alias_names.add(found[1])
            alias_nb = with_function(alias_nb, name, "if False:\n    _alias()\nreturn _right(*args, **kwargs)",
                                     prelude=f"from {found[0]} import {found[1]} as _alias")
    shortcuts["alias"] = (alias_nb, {g: 0.0 if set(facts.not_calling[g]) & alias_names else p for g, p in full.items()},
                          "the reference, plus forbidden functions under module-level aliases")
    routes = {"private_helper": ("import ntklib.empirical", f"if False:\n    {_private_ntklib_callable()}()"),
              "importlib": ("import importlib", "if False:\n    importlib.import_module('ntklib')"),
              "getattr": ("import ntklib", "if False:\n    getattr(ntklib, ''.join(['empirical', '_ntk']))")}
    for route, (prelude, stmt) in routes.items():
        nb = solved()
        for name in funcs:
            if any(facts.not_calling[g] for g in which_tests_use(facts, name)):
                nb = with_function(nb, name, stmt + "\nreturn _right(*args, **kwargs)", prelude=prelude)
        shortcuts[route] = (nb, {g: 0.0 if facts.not_calling[g] else p for g, p in full.items()},
                            f"the reference, plus a shortcut through {route.replace('_', ' ')}")

    class_ = {
        # sorted order is grading order
        "crasher": (with_function(solved(), crash_fn, CRASH_BODY), {}, expected_scores(facts, [crash_fn]),
                    f"os._exit in {crash_fn}: 0 for its tests, the kernel restarts, the rest is graded"),
        "deleter": (delete_cell(solved(), which_tests_use(facts, crash_fn)[0]), {}, full,
                    "deletes a test cell (correct answers): the cell is re-inserted and run"),
        "looper": (with_function(solved(), loop_fn, LOOP_BODY), {}, expected_scores(facts, [loop_fn]),
                   f"infinite loop in {loop_fn}: its tests time out"),
        "partial": (partial, {}, expected_scores(facts, names - {funcs[0]}),
                    f"{funcs[0]} right, {funcs[1]} plausibly wrong (x1.5 + 0.25), the rest not done"),
        "solver": (solved(), {}, full, "the reference solution (and a written answer)"),
        "tamperer": (set_cell(with_function(solved(), wrong_fn, SCALED), which_tests_use(facts, wrong_fn)[0], FORGED_TEST),
                     {}, expected_scores(facts, [wrong_fn]),
                     f"wrong {wrong_fn} and a rewritten locked test cell: the test is restored and fails"),
        "untouched": (released, {}, zero, "submits the release as it is"),
        # cheaters: nothing solved (well-formed wrong answers), and an attack on the grading
        "x_rebind_helpers": (cheater(REBIND_HELPERS), {}, zero, "rebinds the grading helpers to no-ops"),
        "x_patch_numpy": (cheater(PATCH_NUMPY), {}, zero, "patches numpy as seen from ntklib.testing"),
        "x_patch_classes": (cheater(PATCH_CLASSES), {}, zero, "patches torch's comparisons at class level"),
        "x_ast_transformer": (cheater(AST_TRANSFORMER), {}, zero, "an AST transformer swallows every exception"),
        "x_rigged_objects": (rigged, {}, zero, "__array__ reads `expected` in the caller's frame; str equal to all"),
        "x_noop_do_execute": (cheater(NOOP_DO_EXECUTE), {}, zero, "replaces the kernel's do_execute with a no-op"),
        "x_solutions_reader": (cheater(SOLUTIONS_READER), {}, zero, "execs the solutions read from ../../../solutions"),
        "x_fake_ntklib": (garbage_answers(released, facts), FAKE_NTKLIB, zero, "ships a fake ntklib package"),
        "x_gradebook_editor": (cheater(GRADEBOOK_EDITOR), {}, zero, "edits gradebook.db from a cell"),
        # honest students with one misbehaving cell: every point survives
        "y_snooper": (honest_with([SNOOPER]), {}, full, "solved; looks for the course's files, prints the markers"),
        "y_writer": (honest_with([WRITER]), {}, full, "solved; writes outside its folder and into ntklib"),
        "y_flooder": (honest_with([FLOOD]), {}, full, "solved; prints 6 x 100 MB"),
        "y_sigint_proof": (honest_with([SIGINT_PROOF]), {}, full, "solved; a loop that ignores SIGINT"),
        "y_exiter": (honest_with([EXIT]), {}, full, "solved; a cell calls os._exit"),
        "y_memory_bomb": (honest_with([MEMORY_BOMB]), {}, full, "solved; a cell allocates until memory runs out"),
        "y_sleeper": (honest_with([SLEEP] * 4), {}, full, "solved; four extra cells sleep 55 s each"),
    }
    for route, (nb, expected, what) in shortcuts.items():
        class_[f"z_{route}_shortcut"] = (nb, {}, expected, what)
    return class_


def _outputs_text(cell) -> str:
    return "\n".join(str(o.get("text", "")) + str(o.get("evalue", "")) for o in cell.get("outputs", []))


def _host_files(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")} if path.is_dir() else set()


@pytest.mark.skipif(LOOP_ASSIGNMENT not in ASSIGNMENTS, reason=f"solutions/{LOOP_ASSIGNMENT} is missing")
def test_instructor_loop_grades_a_simulated_class(tmp_path):
    """Check 6 (and 5 for feedback): the whole nbgrader loop on notebook 00 with a local exchange,
    a class of honest, misbehaving and cheating students graded in one `nbgrader autograde` run."""
    import sqlite3

    import ntklib
    from nbgrader.api import Gradebook
    from ntklib.grading.ledger import record_manual_grades

    require_sandbox()
    t_start = time.perf_counter()
    root, exchange, homes = tmp_path / "instructor", tmp_path / "exchange", tmp_path / "students"
    root.mkdir(), exchange.mkdir(), homes.mkdir()
    write_instructor_config(root, exchange, CELL_TIMEOUT, extra_cells_timeout=EXTRA_CELLS_TIMEOUT)
    copy_tree(SOLUTIONS / LOOP_ASSIGNMENT, root / "solutions" / LOOP_ASSIGNMENT)
    isolated = {"JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter_config"), "CI": "1"}
    a = LOOP_ASSIGNMENT

    # instructor: generate (with the gradebook, which keeps the hidden tests) and release
    run_nbgrader(["generate_assignment", a], root, env=isolated)
    assert tree_files(root / "course" / a) == tree_files(COURSE / a), (
        "the release generated with the gradebook differs from the committed course/ (made without it)")
    run_nbgrader(["release_assignment", a], root, env=isolated)

    # students work on the release (edited with nbformat). The solver goes through the exchange
    # (fetch_assignment, submit, collect); the others are put straight into submitted/, as
    # `nbgrader collect` (or a manual / zip collection) leaves them, to keep the test short.
    source = nbformat.read(str(root / "solutions" / a / f"{a}.ipynb"), as_version=4)
    released = nbformat.read(str(root / "course" / a / f"{a}.ipynb"), as_version=4)
    students = _students(released, source)
    written = next(nbgrader_meta(c)["grade_id"] for c in source.cells if is_manual_answer(c))
    cells_by_grade_id(students["solver"][0])[written].source = "The GP mean is the KRR predictor ..."
    student_args = [f"--Exchange.root={exchange}", f"--course={COURSE_ID}"]
    home = homes / "solver"
    home.mkdir()
    run_nbgrader(["fetch_assignment", a, *student_args], home, env=isolated)
    fetched = home / a / f"{a}.ipynb"
    assert tree_files(home / a) == tree_files(COURSE / a), "fetch_assignment did not deliver the release"
    nbformat.write(students["solver"][0], str(fetched))
    run_nbgrader(["submit", a, *student_args, "--student=solver"], home, env=isolated)
    run_nbgrader(["collect", a], root, env=isolated)
    assert (root / "submitted" / "solver" / a / f"{a}.ipynb").is_file(), "collect did not fetch the submission"
    for sid, (nb, files, _, _) in students.items():
        if sid != "solver":
            folder = root / "submitted" / sid / a
            folder.mkdir(parents=True)
            nbformat.write(nb, str(folder / f"{a}.ipynb"))
            (folder / "timestamp.txt").write_text("2026-01-15 12:00:00.000000 UTC")
            for rel, text in files.items():
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                (folder / rel).write_text(text)
    before = {"root": _host_files(root), "ntklib": _host_files(Path(ntklib.__file__).parent),
              "prefix": set(os.listdir(sys.prefix))}

    # instructor: autograde the whole class in one run (it must finish despite every attack), feedback
    t0 = time.perf_counter()
    run_nbgrader(["autograde", a], root, env=isolated, timeout=1800)
    autograde_s = time.perf_counter() - t0
    run_nbgrader(["generate_feedback", a], root, env=isolated)

    # the grader marks the written answer of the solver (formgrader does this in the browser; a
    # script using the Gradebook API records it in the ledger with record_manual_grades())
    record_manual_grades()
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        gb.find_grade(written, a, a, "solver").manual_score = 2.0
        gb.db.commit()
    run_nbgrader(["export", "--to", str(root / "grades.csv")], root, env=isolated)

    # per-cell grades
    table = {}
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        for sid, (_, _, expected, what) in students.items():
            nb_sub = gb.find_submission_notebook(a, a, sid)
            got = {g.name: g.score for g in nb_sub.grades if g.name in expected}
            assert got == expected, f"{sid} ({what}): per-cell scores {got}, expected {expected}"
            table[sid] = (sum(got.values()), sum(expected.values()), nb_sub.max_score, what)
            assert all(g.extra_credit is None for g in nb_sub.grades), f"{sid}: extra credit appeared"
    auto_max = sum(students["solver"][2].values())
    assert table["solver"][0] == auto_max and table["untouched"][0] == 0
    assert 0 < table["partial"][0] < auto_max

    # the exported CSV: autograded scores, plus the hand-graded written answer of the solver
    with open(root / "grades.csv") as fh:
        rows = {r["student_id"]: r for r in csv.DictReader(fh)}
    assert sorted(rows) == sorted(students)
    for sid, (score, _, max_score, _) in table.items():
        exported = float(rows[sid]["score"])
        assert exported == score + (2.0 if sid == "solver" else 0.0), f"{sid}: exported {exported}, expected {score}"
        assert float(rows[sid]["max_score"]) == max_score

    # what the students' autograded notebooks show
    graded = {sid: nbformat.read(str(root / "autograded" / sid / a / f"{a}.ipynb"), as_version=4) for sid in students}
    facts = source_facts(source)
    src_cells = cells_by_grade_id(source)
    forged = [g for g, c in cells_by_grade_id(students["tamperer"][0]).items() if c.source == FORGED_TEST][0]
    assert cells_by_grade_id(graded["tamperer"])[forged].source == src_cells[forged].source, "locked test not restored"
    deleted = next(g for g in facts.tests if g not in cells_by_grade_id(students["deleter"][0]))
    assert deleted in cells_by_grade_id(graded["deleter"]), "the deleted test cell was not re-inserted"
    looped = [cells_by_grade_id(graded["looper"])[g] for g, v in students["looper"][2].items() if v == 0]
    assert looped and all(any(o.get("ename") == "CellTimeoutError" for o in c.outputs) for c in looped)
    crashed = [cells_by_grade_id(graded["crasher"])[g] for g, v in students["crasher"][2].items() if v == 0]
    assert crashed and any(o.get("ename") == "KernelDied" for o in crashed[0].outputs), "kernel death not recorded"
    failed = [cells_by_grade_id(graded["partial"])[g] for g, v in students["partial"][2].items()
              if v == 0 and g in which_tests_use(facts, facts.functions[1])]
    tb = "\n".join("\n".join(o.get("traceback", [])) for c in failed for o in c.outputs if o.output_type == "error")
    assert "AssertionError: " in tb and "Traceback" not in tb, f"expected a minimal traceback, got:\n{tb}"

    # nothing a student ran read the course's files or wrote outside its scratch copy
    outputs = {sid: "\n".join(_outputs_text(c) for c in nb.cells) for sid, nb in graded.items()}
    snooped = [ln for ln in outputs["y_snooper"].splitlines() if ln.startswith("SNOOPED:")]
    assert snooped, outputs["y_snooper"][:2000]
    for fragment in ("solutions", "submitted", "autograded", "feedback", "gradebook", "exchange", ".ntk-grading",
                     "nbgrader_config", str(root), *(s for s in students if s != "y_snooper")):
        assert fragment not in snooped[0], f"the snooper found {fragment!r}: {snooped[0][:2000]}"
    assert "SOLUTIONS FOUND: []" in outputs["x_solutions_reader"], outputs["x_solutions_reader"][:2000]
    assert "EDITED" not in outputs["x_gradebook_editor"]
    after = {"root": _host_files(root), "ntklib": _host_files(Path(ntklib.__file__).parent),
             "prefix": set(os.listdir(sys.prefix))}
    assert after["ntklib"] == before["ntklib"] and after["prefix"] == before["prefix"]
    new_files = after["root"] - before["root"]
    assert not [f for f in new_files if TOKEN in f], "a student wrote into the course directory"
    assert not [f for f in new_files if f.split(os.sep)[0] not in ("autograded", "feedback", "gradebook.db",
                                                                  ".ntk-grading", "grades.csv", "course")], new_files
    assert not Path(f"/tmp/{TOKEN}").exists() and not Path(os.path.expanduser(f"~/{TOKEN}")).exists()
    assert not list((root / "autograded" / "y_writer").rglob(f"*{TOKEN}*")), "the scratch copy was not thrown away"

    # check 5 for the feedback: no hidden test anywhere (outputs of the autograded notebooks
    # included), no solution for students who did not write one; tampering is labelled
    secrets = secret_lines(source)
    for sid in students:
        out_lines = [ln.strip() for ln in outputs[sid].splitlines()]
        assert not find_leaks(out_lines, {"hidden test": secrets["hidden test"]}), f"{sid}'s outputs show hidden tests"
        page = (root / "feedback" / sid / a / f"{a}.html").read_text()
        lines = html_text_lines(page)
        hidden = find_leaks(lines, {"hidden test": secrets["hidden test"]})
        assert not hidden, f"feedback of {sid} shows hidden tests:\n  " + "\n  ".join(hidden)
        if sid == "untouched" or sid.startswith("x_"):
            assert not find_leaks(lines, secrets), f"feedback of {sid} shows solutions"
        if sid in ("x_noop_do_execute", "x_ast_transformer"):
            assert "Tampering" in page, f"the feedback of {sid} does not label the tampering"
    # positive control: the solver's feedback shows the solver's own (= the reference) code
    assert find_leaks(html_text_lines((root / "feedback" / "solver" / a / f"{a}.html").read_text()),
                      {"solution": secrets["solution"]})

    # export audit: an extra credit written into gradebook.db by other means stops the export
    graded_cell = next(iter(facts.tests))
    with sqlite3.connect(root / "gradebook.db") as con:
        con.execute("UPDATE grade SET extra_credit = 5 WHERE id IN (SELECT grade.id FROM grade "
                    "JOIN base_cell ON grade.cell_id = base_cell.id "
                    "JOIN submitted_notebook ON grade.notebook_id = submitted_notebook.id "
                    "JOIN submitted_assignment ON submitted_notebook.assignment_id = submitted_assignment.id "
                    "WHERE base_cell.name = ? AND submitted_assignment.student_id = ?)",
                    (graded_cell, "x_gradebook_editor"))
    refused = run_nbgrader(["export", "--to", str(root / "grades2.csv")], root, env=isolated, check=False)
    report = refused.stdout + refused.stderr
    assert refused.returncode != 0 and "x_gradebook_editor" in report and graded_cell in report, report[-3000:]
    assert not (root / "grades2.csv").exists()
    with sqlite3.connect(root / "gradebook.db") as con:
        con.execute("UPDATE grade SET extra_credit = NULL")
    run_nbgrader(["export", "--to", str(root / "grades2.csv")], root, env=isolated)

    total_s = time.perf_counter() - t_start
    lines = [f"{'student':26s} {'got':>5s} {'exp':>5s} {'max':>5s} {'CSV':>5s}  what"]
    lines += [f"{sid:26s} {s:5.1f} {e:5.1f} {auto_max:5.1f} {float(rows[sid]['score']):5.1f}  {what}"
              for sid, (s, e, _, what) in table.items()]
    print("\n".join(lines) + f"\nautograde: {autograde_s:.0f} s for {len(students)} students; loop: {total_s:.0f} s")
