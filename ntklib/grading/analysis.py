"""What a source notebook's cells define and use, read statically (``ast``), for the checker.

A source notebook (``solutions/<id>/<id>.ipynb``) has three kinds of code cells:

* **instructor** cells (no nbgrader solution/grade flag): imports, data, fixtures, demos;
* **solution** cells (``solution: true``): what the student writes; their top-level names (the
  student's functions and answer variables) are the only names the checker reads from the kernel;
* **test** cells (``grade: true``, not a solution): run by the checker, never in the kernel.

For a test cell, :meth:`NotebookAnalysis.plan` gives the instructor cells to run first in a fresh
namespace (the first code cell -- imports and ``SMOKE = setup()`` -- and, transitively, the last
instructor cell before the test that binds each name it uses) and the student names to fetch (the
names it uses whose last binding before it is a solution cell). Instructor cells that a test needs
must not use student names themselves (:attr:`Plan.violations`).
"""
from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass, field

__all__ = ["CellInfo", "NotebookAnalysis", "Plan", "python_source", "top_level_bindings", "loaded_names",
           "is_test_cell", "is_solution_cell", "nbgrader_meta"]

_NOTEBOOK_BUILTINS = set(dir(builtins)) | {"display", "get_ipython", "In", "Out", "exit", "quit"}


def nbgrader_meta(cell) -> dict:
    return (cell.get("metadata", {}) or {}).get("nbgrader", {}) or {}


def is_test_cell(cell) -> bool:
    m = nbgrader_meta(cell)
    return cell.get("cell_type") == "code" and bool(m.get("grade")) and not m.get("solution")


def is_solution_cell(cell) -> bool:
    m = nbgrader_meta(cell)
    return cell.get("cell_type") == "code" and bool(m.get("solution"))


def python_source(source: str) -> str:
    """A cell's source as plain Python: IPython's magics (``%time``, ``!ls``) become ``get_ipython()`` calls."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        return source
    try:
        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - IPython's transformers reject some invalid input
        return source


def _parse(source: str):
    try:
        return ast.parse(python_source(source))
    except (SyntaxError, ValueError):
        return None


def _target_names(node) -> set[str]:
    out = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
            out.add(sub.id)
    return out


def top_level_bindings(tree: ast.AST) -> set[str]:
    """Names a module binds at top level: assignments (also inside if/for/with/try at top level),
    ``def``/``class``, imports, ``for``/``with`` targets, exception names, walruses, and names a
    function declares ``global``."""
    names: set[str] = set()

    def visit_block(stmts):
        for st in stmts:
            visit_stmt(st)

    def visit_stmt(st):
        if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(st.name)
            for sub in ast.walk(st):
                if isinstance(sub, ast.Global):
                    names.update(sub.names)
            return
        if isinstance(st, (ast.Import, ast.ImportFrom)):
            for alias in st.names:
                if alias.name != "*":
                    names.add(alias.asname or alias.name.split(".")[0])
            return
        if isinstance(st, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = st.targets if isinstance(st, ast.Assign) else [st.target]
            for t in targets:
                names.update(_target_names(t))
        elif isinstance(st, (ast.For, ast.AsyncFor)):
            names.update(_target_names(st.target))
        elif isinstance(st, (ast.With, ast.AsyncWith)):
            for item in st.items:
                if item.optional_vars is not None:
                    names.update(_target_names(item.optional_vars))
        elif isinstance(st, ast.Try) or type(st).__name__ == "TryStar":
            for h in st.handlers:
                if h.name:
                    names.add(h.name)
        for sub in ast.walk(st):
            if isinstance(sub, ast.NamedExpr):
                names.update(_target_names(sub.target))
        for attr in ("body", "orelse", "finalbody"):
            visit_block(getattr(st, attr, []) or [])
        for h in getattr(st, "handlers", []) or []:
            visit_block(h.body)
        if type(st).__name__ == "Match":
            for case in st.cases:
                for sub in ast.walk(case.pattern):
                    for attr in ("name", "rest"):
                        if isinstance(getattr(sub, attr, None), str):
                            names.add(getattr(sub, attr))
                visit_block(case.body)

    visit_block(tree.body)
    return names


def loaded_names(tree: ast.AST) -> set[str]:
    """Every name read anywhere in the code (nested functions and comprehensions included), minus
    the builtins and IPython's own names."""
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Load, ast.Del))} \
        - _NOTEBOOK_BUILTINS


@dataclass
class CellInfo:
    index: int
    cell_id: str | None
    kind: str            # "instructor" | "solution" | "test"
    source: str
    grade_id: str | None
    defines: set = field(default_factory=set)
    uses: set = field(default_factory=set)
    parses: bool = True


@dataclass
class Plan:
    instructor_cells: list          # CellInfo, in notebook order
    student_names: set
    violations: list                # (instructor cell index, student name) pairs


class NotebookAnalysis:
    """The static picture of a source notebook (see the module docstring)."""

    def __init__(self, source_nb):
        self.cells: list[CellInfo] = []
        for index, cell in enumerate(source_nb.cells):
            if cell.get("cell_type") != "code":
                continue
            kind = "test" if is_test_cell(cell) else "solution" if is_solution_cell(cell) else "instructor"
            tree = _parse(cell.source)
            info = CellInfo(index, cell.get("id"), kind, cell.source, nbgrader_meta(cell).get("grade_id"),
                            parses=tree is not None)
            if tree is not None:
                info.defines, info.uses = top_level_bindings(tree), loaded_names(tree)
                if kind == "instructor":  # a fixture cell's own names are its own
                    info.uses -= info.defines
            self.cells.append(info)
        self.by_index = {c.index: c for c in self.cells}
        self.tests = {c.grade_id: c for c in self.cells if c.kind == "test" and c.grade_id}
        self.student_names = set().union(*(c.defines for c in self.cells if c.kind == "solution")) \
            if any(c.kind == "solution" for c in self.cells) else set()
        self.first_code = self.cells[0] if self.cells else None
        self.source_by_id = {cell.get("id"): cell.source for cell in source_nb.cells
                             if cell.get("cell_type") == "code" and cell.get("id")}

    def _binder(self, name: str, before: int) -> CellInfo | None:
        """The last instructor or solution cell before position ``before`` that binds ``name``."""
        for c in reversed(self.cells):
            if c.index < before and c.kind != "test" and name in c.defines:
                return c
        return None

    def plan(self, test: CellInfo) -> Plan:
        needed: dict[int, CellInfo] = {}
        student: set[str] = set()
        violations: list = []
        if self.first_code is not None and self.first_code.kind == "instructor" and self.first_code.index < test.index:
            needed[self.first_code.index] = self.first_code
        todo = [(test, test.uses)]
        for c in list(needed.values()):
            todo.append((c, c.uses))
        seen = set(needed)
        while todo:
            cell, uses = todo.pop()
            for name in sorted(uses):
                binder = self._binder(name, cell.index)
                if binder is None:
                    continue
                if binder.kind == "solution":
                    if cell.kind == "instructor":
                        violations.append((cell.index, name))
                    else:
                        student.add(name)
                elif binder.index not in seen:
                    seen.add(binder.index)
                    needed[binder.index] = binder
                    todo.append((binder, binder.uses))
        return Plan([needed[i] for i in sorted(needed)], student, violations)
