"""Helpers for tests/course/test_pipeline.py: run nbgrader, find what must stay secret, simulate students.

Everything that nbgrader writes (gradebook, logs, work folders, exchange) goes into temporary
directories; nothing is written into the repository.
"""
from __future__ import annotations

import copy
import html
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOLUTIONS = REPO / "solutions"
COURSE = REPO / "course"
CONFIG = REPO / "nbgrader_config.py"
COURSE_ID = "ntk-course"

# nbgrader's default delimiters (ClearSolutions, ClearHiddenTests, ClearMarkScheme).
_REGIONS = {
    "solution": ("BEGIN SOLUTION", "END SOLUTION"),
    "hidden test": ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS"),
    "mark scheme": ("BEGIN MARK SCHEME", "END MARK SCHEME"),
}
# Lines shorter than this (after stripping) are too generic to count as a leak (")", "else:").
MIN_SECRET_LINE = 8


def assignment_ids() -> list[str]:
    """Every assignment folder solutions/<id>/ that holds solutions/<id>/<id>.ipynb."""
    if not SOLUTIONS.is_dir():
        return []
    return sorted(d.name for d in SOLUTIONS.iterdir() if (d / f"{d.name}.ipynb").is_file())


def source_notebook(assignment: str) -> Path:
    return SOLUTIONS / assignment / f"{assignment}.ipynb"


def release_notebook(assignment: str) -> Path:
    return COURSE / assignment / f"{assignment}.ipynb"


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def is_autograded_test(cell) -> bool:
    m = nbgrader_meta(cell)
    return bool(m.get("grade")) and not m.get("solution") and cell.cell_type == "code"


def is_manual_answer(cell) -> bool:
    m = nbgrader_meta(cell)
    return bool(m.get("grade")) and bool(m.get("solution"))


# --- running nbgrader ------------------------------------------------------------------------
def run_nbgrader(args: list[str], cwd: Path, *, env: dict | None = None, timeout: float = 600,
                 check: bool = True) -> subprocess.CompletedProcess:
    """``nbgrader <args>`` with this interpreter, in ``cwd``; on failure the assertion shows its output."""
    full_env = {**os.environ, **(env or {})}
    # nbgrader runs `alembic` (the gradebook's migrations) from PATH: use this environment's.
    full_env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), full_env.get("PATH", "")])
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=cwd, env=full_env, text=True,
                          capture_output=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"`nbgrader {' '.join(args)}` failed with exit code {proc.returncode}.\n"
                             f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-6000:]}")
    return proc


def load_config(**overrides):
    """The repository's nbgrader_config.py as a traitlets Config, with ``Section__trait=value`` overrides."""
    from traitlets.config.loader import PyFileConfigLoader

    cfg = PyFileConfigLoader(CONFIG.name, path=str(CONFIG.parent)).load_config()
    for key, value in overrides.items():
        section, trait = key.split("__")
        cfg[section][trait] = value
    return cfg


@dataclass
class ValidationRun:
    results: dict          # what nbgrader's Validator returns: 'failed' / 'passed' / 'changed' / 'type_changed'
    executed: object       # the executed notebook (nbformat node)
    seconds: float


def _validator_class():
    from nbgrader.validator import Validator

    class KeepExecutedValidator(Validator):
        """nbgrader's Validator (what ``nbgrader validate`` runs) that also keeps the executed notebook,
        so one execution answers both "does every cell run?" and "do the graded tests pass?"."""

        executed = None

        def _preprocess(self, nb):
            nb = super()._preprocess(nb)
            self.executed = nb
            return nb

    return KeepExecutedValidator


@lru_cache(maxsize=None)
def validate(notebook: str, invert: bool = False) -> ValidationRun:
    """Run nbgrader's validation of ``notebook`` with the course's nbgrader_config.py, once per
    (notebook, invert) in a test session. nbgrader sets NBGRADER_EXECUTION=validate and we set
    CI=1, so the notebook's SMOKE flag shrinks the slow demos."""
    validator = _validator_class()(config=load_config())
    validator.invert = invert
    old = os.environ.get("CI")
    os.environ["CI"] = "1"
    t0 = time.perf_counter()
    try:
        results = validator.validate(notebook)
    finally:
        if old is None:
            os.environ.pop("CI", None)
        else:
            os.environ["CI"] = old
    return ValidationRun(results, validator.executed, time.perf_counter() - t0)


def error_outputs(nb) -> list[tuple[int, str, str]]:
    """(cell index, first line of the cell, error) for every code cell whose outputs hold an error."""
    errors = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                first = (cell.source.strip().splitlines() or [""])[0][:80]
                errors.append((i, first, f"{out.get('ename')}: {str(out.get('evalue'))[:300]}"))
    return errors


# --- what must stay secret ---------------------------------------------------------------------
def _region_lines(source: str, begin: str, end: str) -> tuple[list[str], list[str]]:
    """(lines inside begin/end regions, lines outside), delimiter lines dropped."""
    inside, outside, within = [], [], False
    for line in source.splitlines():
        if begin in line:
            within = True
        elif end in line:
            within = False
        elif within:
            inside.append(line)
        else:
            outside.append(line)
    return inside, outside


def secret_lines(nb) -> dict[str, set[str]]:
    """The lines of a source notebook that students must never see, by kind, stripped:

    * "solution": inside ``BEGIN/END SOLUTION`` of solution cells, or the whole cell when a
      solution cell has no delimiters (nbgrader then replaces the whole cell, e.g. written answers);
    * "hidden test": inside ``BEGIN/END HIDDEN TESTS`` of test cells;
    * "mark scheme": inside ``BEGIN/END MARK SCHEME``.

    Lines that also appear in a public part of the notebook (and lines shorter than
    ``MIN_SECRET_LINE``) are dropped: finding them elsewhere is no leak.
    """
    secrets = {kind: set() for kind in _REGIONS}
    public: set[str] = set()
    for cell in nb.cells:
        src, meta = cell.source, nbgrader_meta(cell)
        rest = src
        for kind, (begin, end) in _REGIONS.items():
            inside, outside = _region_lines(rest, begin, end)
            if kind == "solution" and meta.get("solution") and not any(begin in ln for ln in rest.splitlines()):
                inside, outside = rest.splitlines(), []
            secrets[kind].update(ln.strip() for ln in inside)
            rest = "\n".join(outside)
        public.update(ln.strip() for ln in rest.splitlines())
    return {kind: {ln for ln in lines - public if len(ln) >= MIN_SECRET_LINE} for kind, lines in secrets.items()}


def notebook_text_lines(nb) -> list[str]:
    """Stripped lines of every cell source and every text output of a notebook."""
    lines = []
    for cell in nb.cells:
        lines += cell.source.splitlines()
        for out in cell.get("outputs", []):
            text = out.get("text") or "".join(out.get("data", {}).get("text/plain", ""))
            lines += str(text).splitlines()
            lines += [str(t) for t in out.get("traceback", [])]
    return [ln.strip() for ln in lines]


def html_text_lines(page: str) -> list[str]:
    """Stripped text lines of an HTML page (tags removed, entities decoded), e.g. nbgrader feedback."""
    page = re.sub(r"(?is)<(script|style)\b.*?</\1>", "", page)
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    return [ln.strip() for ln in text.splitlines()]


def find_leaks(lines: list[str], secrets: dict[str, set[str]]) -> list[str]:
    """Every secret line found among ``lines``, as 'kind: line'."""
    present = set(lines)
    return sorted(f"{kind}: {ln}" for kind, sec in secrets.items() for ln in sec & present)


# --- simulated students ------------------------------------------------------------------------
def cells_by_grade_id(nb) -> dict[str, object]:
    return {nbgrader_meta(c)["grade_id"]: c for c in nb.cells if nbgrader_meta(c).get("grade_id")}


def with_solutions(released, source, grade_ids=None):
    """A copy of the released notebook whose answer cells hold the source's solutions (all, or ``grade_ids``)."""
    nb = copy.deepcopy(released)
    src = cells_by_grade_id(source)
    for cell in nb.cells:
        m = nbgrader_meta(cell)
        if m.get("solution") and (grade_ids is None or m["grade_id"] in grade_ids):
            cell.source = src[m["grade_id"]].source
    return nb


def set_cell(nb, grade_id: str, source: str):
    cells_by_grade_id(nb)[grade_id].source = source
    return nb


def delete_cell(nb, grade_id: str):
    nb.cells = [c for c in nb.cells if nbgrader_meta(c).get("grade_id") != grade_id]
    return nb


def write_instructor_config(course_root: Path, exchange: Path, cell_timeout: int, other_timeout: int = 300,
                            extra_cells_timeout: int | None = None) -> None:
    """The repository's nbgrader_config.py plus a local exchange and a short timeout for the cells
    that hold or call student code (nbgrader answer and test cells), so that an infinite loop costs
    the test little. The other cells (imports, demos) keep a long timeout: on a loaded CI machine the
    first cell's imports alone can take tens of seconds, and a timeout there would fail a student
    for nothing."""
    text = CONFIG.read_text()
    text += ("\n# --- added by tests/course/test_pipeline.py for the simulated class ---\n"
             f"c.Exchange.root = {str(exchange)!r}\n\n\n"
             "def _cell_timeout(cell):\n"
             "    nbgrader = cell.get('metadata', {}).get('nbgrader', {})\n"
             f"    return {int(cell_timeout)} if nbgrader.get('grade') or nbgrader.get('solution') else {int(other_timeout)}\n\n\n"
             "c.Execute.timeout_func = _cell_timeout\n")
    if extra_cells_timeout is not None:
        text += f"c.SandboxedExecute.extra_cells_timeout = {int(extra_cells_timeout)}\n"
    (course_root / "nbgrader_config.py").write_text(text)


def copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))


def tree_files(root: Path) -> dict[str, bytes]:
    """relative path -> bytes of every file under ``root`` (checkpoints and caches ignored)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and ".ipynb_checkpoints" not in p.parts and "__pycache__" not in p.parts:
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


# --- facts about a source notebook, read independently of ntklib.grading -----------------------
@dataclass
class SourceFacts:
    """What the simulated class is built from: the tests and their points, the student names each
    solution cell defines (functions and answer variables), which names each test reads, and the
    names its ``assert_not_calling`` calls forbid."""

    tests: dict            # test grade_id -> points, in notebook order
    cell_names: dict       # solution cell grade_id -> top-level names it defines
    functions: list        # names defined with `def` in solution cells, in notebook order
    test_uses: dict        # test grade_id -> student names it reads
    not_calling: dict      # test grade_id -> names its assert_not_calling calls forbid (empty: none)
    first_code: int        # index of the first code cell (imports and `SMOKE = setup()`)


def _strip_delimiters(source: str) -> str:
    return "\n".join(ln for ln in source.splitlines() if "BEGIN SOLUTION" not in ln and "END SOLUTION" not in ln)


def source_facts(source) -> SourceFacts:
    import ast

    tests, cell_names, functions, test_uses, not_calling = {}, {}, [], {}, {}
    first_code = next(i for i, c in enumerate(source.cells) if c.cell_type == "code")
    for cell in source.cells:
        m = nbgrader_meta(cell)
        if cell.cell_type == "code" and m.get("solution"):
            tree = ast.parse(_strip_delimiters(cell.source))
            names = []
            for st in tree.body:
                if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.append(st.name)
                    functions.append(st.name)
                elif isinstance(st, ast.Assign):
                    names += [t.id for t in st.targets if isinstance(t, ast.Name)]
            cell_names[m["grade_id"]] = names
    student = {n for names in cell_names.values() for n in names}
    for cell in source.cells:
        if is_autograded_test(cell):
            gid = nbgrader_meta(cell)["grade_id"]
            tests[gid] = float(nbgrader_meta(cell)["points"])
            tree = ast.parse(cell.source)
            test_uses[gid] = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} & student
            forbidden = []
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "assert_not_calling" \
                        and len(node.args) >= 2 and isinstance(node.args[1], (ast.List, ast.Tuple)):
                    forbidden += [e.value for e in node.args[1].elts if isinstance(e, ast.Constant)]
            not_calling[gid] = forbidden
    return SourceFacts(tests, cell_names, functions, test_uses, not_calling, first_code)


def expected_scores(facts: SourceFacts, broken_names=(), broken_tests=()) -> dict:
    """Full points for every test, except 0 for the tests that read a broken name or are listed."""
    broken_names, broken_tests = set(broken_names), set(broken_tests)
    return {gid: 0.0 if gid in broken_tests or facts.test_uses[gid] & broken_names else pts
            for gid, pts in facts.tests.items()}


def solution_cell_of(facts: SourceFacts, name: str) -> str:
    return next(gid for gid, names in facts.cell_names.items() if name in names)


def which_tests_use(facts: SourceFacts, name: str) -> list[str]:
    return [gid for gid, uses in facts.test_uses.items() if name in uses]


def new_cell(source: str):
    """A code cell the student added (a fresh cell id, no nbgrader metadata)."""
    from nbformat.v4 import new_code_cell

    return new_code_cell(source)


def insert_cells(nb, after: int, sources: list[str]):
    """Insert new code cells after position ``after`` of ``nb`` (in place); returns ``nb``."""
    nb.cells[after + 1:after + 1] = [new_cell(s) for s in sources]
    return nb


def reference_source(source, grade_id: str) -> str:
    """The reference solution of a solution cell, without the nbgrader delimiters."""
    return _strip_delimiters(cells_by_grade_id(source)[grade_id].source)


def wrapped_function(source, facts: SourceFacts, name: str, prelude: str, body: str) -> str:
    """The reference solution cell of ``name`` plus a wrapper that runs ``body`` (which may use
    ``_right``, the reference function, and ``args``/``kwargs``) in place of the function."""
    return (reference_source(source, solution_cell_of(facts, name)) + "\n\n" + prelude + "\n"
            f"_right_{name} = {name}\n\n\ndef {name}(*args, **kwargs):\n    _right = _right_{name}\n"
            + textwrap.indent(body, "    ") + "\n")


SCALED = "out = _right(*args, **kwargs)\nreturn tuple(v * 1.5 + 0.25 for v in out) if isinstance(out, tuple) " \
         "else out * 1.5 + 0.25"


def garbage_answers(released, facts: SourceFacts):
    """The release with every solution cell replaced by answers that are wrong but well-formed
    (functions returning zeros, variables "Z"): what a cheater submits with the attack on top."""
    nb = copy.deepcopy(released)
    for gid, names in facts.cell_names.items():
        lines = []
        for n in names:
            if n in facts.functions:
                lines.append(f"def {n}(*args, **kwargs):\n    return __import__('torch').zeros(3)\n")
            else:
                lines.append(f'{n} = "Z"')
        set_cell(nb, gid, "\n".join(lines))
    return nb


def require_sandbox() -> None:
    """Autograding runs student code in the bubblewrap sandbox: fail on Linux without it (the bootstrap
    installs it), skip elsewhere."""
    from ntklib.grading.sandbox import SandboxUnavailable, check_sandbox

    try:
        check_sandbox()
    except SandboxUnavailable as err:
        if sys.platform.startswith("linux"):
            pytest.fail(f"autograding needs the bubblewrap sandbox on Linux: {err}")
        pytest.skip(f"no bubblewrap sandbox here: {err}")


def nbgrader_cell(source: str, cell_id: str, **nbgrader):
    """A code cell with this id and, when given, this ``nbgrader`` metadata (a small source notebook's cell)."""
    from nbformat.v4 import new_code_cell

    cell = new_code_cell(source)
    cell.id = cell_id
    if nbgrader:
        cell.metadata["nbgrader"] = nbgrader
    return cell
