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
import subprocess
import time

import nbformat
import pytest

from pipeline_utils import (COURSE, COURSE_ID, REPO, SOLUTIONS, assignment_ids, cells_by_grade_id,
                            copy_tree, delete_cell, error_outputs, find_leaks, html_text_lines,
                            is_autograded_test, is_manual_answer, nbgrader_meta, notebook_text_lines,
                            release_notebook, run_nbgrader, secret_lines, set_cell, source_notebook,
                            tree_files, validate, with_solutions, write_instructor_config)

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


# --- check 6: the instructor loop with a simulated class --------------------------------------
LOOP_ASSIGNMENT = "00_preliminaries"
CELL_TIMEOUT = 20  # seconds per answer/test cell while grading the simulated class (the course default is 60)

WRONG_GP = '''
def gp_posterior(k_train_train, k_test_train, k_test_test, y_train, noise_var):
    """Plausible mistake: the noise added to the test covariance (predictive covariance of noisy y_*)."""
    n = k_train_train.shape[0]
    chol = torch.linalg.cholesky(k_train_train + noise_var * torch.eye(n))
    alpha = torch.cholesky_solve(y_train[:, None], chol)[:, 0]
    v = torch.linalg.solve_triangular(chol, k_test_train.T, upper=False)
    cov = k_test_test + noise_var * torch.eye(k_test_test.shape[0]) - v.T @ v
    return k_test_train @ alpha, cov
'''
WRONG_KRR = '''
def krr_predict(k_train_train, k_test_train, y_train, ridge):
    """Plausible mistake: the ridge divided by n (a mean-loss formula used with a sum-of-squares ridge)."""
    n = k_train_train.shape[0]
    chol = torch.linalg.cholesky(k_train_train + ridge / n * torch.eye(n))
    return k_test_train @ torch.cholesky_solve(y_train[:, None], chol)[:, 0]
'''
WRONG_JACOBIAN = '''
def per_example_jacobian(model, x):
    """Plausible mistake: weight matrices flattened column-major (as W.T), not row-major like .reshape(-1)."""
    params = {name: p.detach() for name, p in model.named_parameters()}

    def f_single(params, x_i):
        return functional_call(model, params, (x_i[None, :],)).reshape(())

    jac = vmap(jacrev(f_single), in_dims=(None, 0))(params, x)
    return torch.cat([(j.transpose(-1, -2) if j.ndim == 3 else j).reshape(x.shape[0], -1) for j in jac.values()], 1)
'''
LOOPING_JACOBIAN = '''
def per_example_jacobian(model, x):
    while True:  # an infinite loop
        pass
'''
CRASHING_GP = '''
def gp_posterior(k_train_train, k_test_train, k_test_test, y_train, noise_var):
    import os
    os._exit(1)  # kills the kernel
'''
FORGED_TEST = 'print("all tests passed!")  # a student rewrote this locked test cell'


def _students(released, source):
    """student id -> (notebook to submit, expected autograded score per test cell id, what it shows)."""
    tests = {nbgrader_meta(c)["grade_id"]: float(nbgrader_meta(c)["points"])
             for c in source.cells if is_autograded_test(c)}
    full = dict(tests)
    zero = {k: 0.0 for k in tests}
    krr, gp = ["test_krr_matches_primal_ridge", "test_krr_matches_sklearn"], "test_gp_posterior_matches_joint_conditioning"
    jac, mc = "test_jacobian_matches_autograd_and_finite_differences", "test_answer_far_from_data"
    assert set(tests) == {*krr, gp, jac, mc}, f"the simulated class expects these test cells, got {sorted(tests)}"
    solved = with_solutions(released, source)
    return {
        # sorted order is grading order: the crasher and the looper are graded before others
        "crasher": (set_cell(with_solutions(released, source), "gp_posterior", CRASHING_GP),
                    {**zero, krr[0]: full[krr[0]], krr[1]: full[krr[1]], mc: full[mc]},
                    "kills the kernel in gp_posterior: credit for the cells before, 0 after"),
        "deleter": (delete_cell(with_solutions(released, source), gp), full,
                    "deletes the GP test cell (correct answers): the cell is re-inserted and run"),
        "looper": (set_cell(with_solutions(released, source), "per_example_jacobian", LOOPING_JACOBIAN),
                   {**full, jac: 0.0}, "infinite loop in per_example_jacobian: that test times out"),
        "partial": (set_cell(set_cell(set_cell(with_solutions(released, source), "gp_posterior", WRONG_GP),
                                      "per_example_jacobian", WRONG_JACOBIAN),
                             "answer_far_from_data", 'ANSWER_FAR_FROM_DATA = "B"'),
                    {**zero, krr[0]: full[krr[0]], krr[1]: full[krr[1]]},
                    "right KRR; plausible wrong GP covariance, Jacobian and choice: partial credit"),
        "solver": (solved, full, "the reference solution (and a written answer)"),
        "tamperer": (set_cell(set_cell(with_solutions(released, source), "krr_predict", WRONG_KRR), krr[0], FORGED_TEST),
                     {**full, krr[0]: 0.0, krr[1]: 0.0},
                     "wrong KRR and a rewritten locked test cell: the test is restored and fails"),
        "untouched": (released, zero, "submits the release as it is"),
    }


@pytest.mark.skipif(LOOP_ASSIGNMENT not in ASSIGNMENTS, reason=f"solutions/{LOOP_ASSIGNMENT} is missing")
def test_instructor_loop_grades_a_simulated_class(tmp_path):
    """Check 6 (and 5 for feedback): the whole nbgrader loop on notebook 00 with a local exchange."""
    from nbgrader.api import Gradebook

    t_start = time.perf_counter()
    root, exchange, homes = tmp_path / "instructor", tmp_path / "exchange", tmp_path / "students"
    root.mkdir(), exchange.mkdir(), homes.mkdir()
    write_instructor_config(root, exchange, CELL_TIMEOUT)
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
    cells_by_grade_id(students["solver"][0])["written_krr_vs_gp"].source = "The GP mean is the KRR predictor ..."
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
    for sid, (nb, _, _) in students.items():
        if sid != "solver":
            folder = root / "submitted" / sid / a
            folder.mkdir(parents=True)
            nbformat.write(nb, str(folder / f"{a}.ipynb"))
            (folder / "timestamp.txt").write_text("2026-01-15 12:00:00.000000 UTC")

    # instructor: autograde (must finish despite the looper and the crasher), feedback, export
    t0 = time.perf_counter()
    run_nbgrader(["autograde", a], root, env=isolated, timeout=900)
    autograde_s = time.perf_counter() - t0
    run_nbgrader(["generate_feedback", a], root, env=isolated)

    # the grader marks the written answer of the solver (formgrader does this in the browser)
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        gb.find_grade("written_krr_vs_gp", a, a, "solver").manual_score = 2.0
        gb.db.commit()
    run_nbgrader(["export", "--to", str(root / "grades.csv")], root, env=isolated)

    # per-cell grades
    table = {}
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        for sid, (_, expected, what) in students.items():
            nb_sub = gb.find_submission_notebook(a, a, sid)
            got = {g.name: g.score for g in nb_sub.grades if g.name in expected}
            assert got == expected, f"{sid} ({what}): per-cell scores {got}, expected {expected}"
            table[sid] = (sum(got.values()), nb_sub.max_score, what)
    auto_max = sum(students["solver"][1].values())
    assert table["solver"][0] == auto_max and table["untouched"][0] == 0
    assert 0 < table["partial"][0] < auto_max

    # the exported CSV: autograded scores, plus the hand-graded written answer of the solver
    with open(root / "grades.csv") as fh:
        rows = {r["student_id"]: r for r in csv.DictReader(fh)}
    assert sorted(rows) == sorted(students)
    for sid, (score, max_score, _) in table.items():
        exported = float(rows[sid]["score"])
        assert exported == score + (2.0 if sid == "solver" else 0.0), f"{sid}: exported {exported}, expected {score}"
        assert float(rows[sid]["max_score"]) == max_score

    # what the students' autograded notebooks show
    graded = {sid: nbformat.read(str(root / "autograded" / sid / a / f"{a}.ipynb"), as_version=4) for sid in students}
    src_cells = cells_by_grade_id(source)
    tampered = cells_by_grade_id(graded["tamperer"])["test_krr_matches_primal_ridge"]
    assert tampered.source == src_cells["test_krr_matches_primal_ridge"].source, "the locked test was not restored"
    reinserted = cells_by_grade_id(graded["deleter"])
    assert "test_gp_posterior_matches_joint_conditioning" in reinserted, "the deleted test cell was not re-inserted"
    looped = cells_by_grade_id(graded["looper"])["test_jacobian_matches_autograd_and_finite_differences"]
    assert any(o.get("ename") == "CellTimeoutError" for o in looped.outputs), "the infinite loop did not time out"
    crashed = cells_by_grade_id(graded["crasher"])["test_gp_posterior_matches_joint_conditioning"]
    assert any(o.get("ename") == "KernelDied" for o in crashed.outputs), "the kernel death was not recorded"
    wrong = cells_by_grade_id(graded["partial"])["test_gp_posterior_matches_joint_conditioning"]
    tb = "\n".join("\n".join(o.get("traceback", [])) for o in wrong.outputs if o.output_type == "error")
    assert "posterior covariance" in tb and "Traceback" not in tb, f"expected a minimal traceback, got:\n{tb}"

    # check 5 for the feedback: no hidden test anywhere, no solution for students who did not write one
    secrets = secret_lines(source)
    for sid in students:
        page = (root / "feedback" / sid / a / f"{a}.html").read_text()
        lines = html_text_lines(page)
        hidden = find_leaks(lines, {"hidden test": secrets["hidden test"]})
        assert not hidden, f"feedback of {sid} shows hidden tests:\n  " + "\n  ".join(hidden)
        if sid == "untouched":
            assert not find_leaks(lines, secrets), f"feedback of {sid} shows solutions"
    # positive control: the solver's feedback shows the solver's own (= the reference) code
    assert find_leaks(html_text_lines((root / "feedback" / "solver" / a / f"{a}.html").read_text()),
                      {"solution": secrets["solution"]})

    total_s = time.perf_counter() - t_start
    lines = [f"{'student':10s} {'auto':>5s} {'max':>5s} {'CSV':>5s}  what"]
    lines += [f"{sid:10s} {s:5.1f} {auto_max:5.1f} {float(rows[sid]['score']):5.1f}  {what}"
              for sid, (s, _, what) in table.items()]
    print("\n".join(lines) + f"\nautograde: {autograde_s:.0f} s for {len(students)} students; loop: {total_s:.0f} s")
