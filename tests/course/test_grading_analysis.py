"""Static analysis for the checker: which names a notebook's cells define and use, which instructor
cells a test needs, which cells a student wrote, and which forbidden shortcuts their code takes."""
import ast

import nbformat
import pytest
from nbformat.v4 import new_notebook
from pipeline_utils import nbgrader_cell as _cell

import ntklib  # noqa: F401  (loads ntklib's modules, which the shortcut analysis resolves names in)
import numpy.linalg  # noqa: F401
import torch  # noqa: F401
from ntklib.grading.analysis import NotebookAnalysis, loaded_names, top_level_bindings
from ntklib.grading.checker import authored_cells
from ntklib.grading.shortcuts import find_shortcuts, forbidden_targets


def _source_notebook():
    return new_notebook(cells=[
        _cell("import torch\nimport numpy as np\nSMOKE = True", "imports"),
        _cell("gen = torch.Generator().manual_seed(0)\nx_train = torch.randn(5, 2, generator=gen)", "data"),
        _cell("def helper(v):\n    return 2 * v\nscale = helper(3)", "unused"),
        _cell("def f(x):\n    ### BEGIN SOLUTION\n    return x.sum()\n    ### END SOLUTION", "f",
              solution=True, grade=False, grade_id="f", locked=False),
        _cell('"""f sums."""\nassert f(x_train) is not None', "t1", grade=True, solution=False, grade_id="t1",
              points=1, locked=True),
        _cell('ANSWER = "B"', "answer", solution=True, grade=False, grade_id="answer", locked=False),
        _cell("x_train = torch.zeros(3, 2)  # redefined after the first test", "data2"),
        _cell('"""answer."""\nassert ANSWER == "B" and np.isfinite(x_train).all()', "t2", grade=True,
              solution=False, grade_id="t2", points=1, locked=True),
    ])


def test_bindings_cover_assignments_defs_imports_loops_and_globals():
    tree = ast.parse("import a.b as c\nfrom d import e\nx, (y, *z) = 1, (2, 3)\nfor i in []: pass\n"
                     "with open('f') as fh: pass\ndef g():\n    global w\n    w = 1\nclass K: pass\n"
                     "if True:\n    v = (u := 3)\ntry:\n    pass\nexcept Exception as err:\n    pass\n")
    assert top_level_bindings(tree) == {"c", "e", "x", "y", "z", "i", "fh", "g", "w", "K", "v", "u", "err"}
    assert loaded_names(ast.parse("print(len(q))\ndef h():\n    return r + q")) == {"q", "r"}


def test_plan_runs_the_first_cell_and_the_last_fixture_before_each_test_and_fetches_student_names():
    analysis = NotebookAnalysis(_source_notebook())
    assert analysis.student_names == {"f", "ANSWER"}
    plan1 = analysis.plan(analysis.tests["t1"])
    assert [c.cell_id for c in plan1.instructor_cells] == ["imports", "data"] and plan1.student_names == {"f"}
    plan2 = analysis.plan(analysis.tests["t2"])
    assert [c.cell_id for c in plan2.instructor_cells] == ["imports", "data2"]  # the later x_train
    assert plan2.student_names == {"ANSWER"} and not plan2.violations


def test_plan_reports_a_fixture_that_depends_on_a_student_answer():
    nb = _source_notebook()
    nb.cells.insert(4, _cell("y_fixture = f(x_train)", "bad"))
    nb.cells[5].source += "\nassert y_fixture is not None"
    analysis = NotebookAnalysis(nb)
    assert analysis.plan(analysis.tests["t1"]).violations == [(4, "f")]


def test_authored_cells_are_added_cells_and_the_changed_lines_of_known_cells():
    source = _source_notebook()
    sub = nbformat.from_dict(nbformat.from_dict(source))
    sub.cells[0].source = "import torch\nimport numpy as np\nimport math\nSMOKE = True"
    sub.cells[3].source = "def f(x):\n    return x.sum() * 1"
    sub.cells.insert(2, _cell("print('mine')", "new-cell"))
    got = {label.split(" (")[0]: lines for label, _, lines in authored_cells(sub, NotebookAnalysis(source))}
    assert got == {"code cell 1": {3}, "code cell 3": None, "code cell 5": {2}}


_SOURCE_CONTEXT = ["import torch\nimport numpy as np\nimport ntklib as nk\nfrom sklearn.kernel_ridge import KernelRidge"]
_FORBIDDEN = ["KernelRidge", "inv", "regression", "empirical_ntk"]


def _problems(src, lines=None):
    import sklearn.kernel_ridge  # noqa: F401

    return find_shortcuts([("cell", src, lines)], forbidden_targets(_FORBIDDEN), context=_SOURCE_CONTEXT)


@pytest.mark.parametrize("src, why", [
    ("def f(k, y):\n    return KernelRidge().fit(k, y)", "KernelRidge"),
    ("from numpy.linalg import inv as solve_it\ndef f(k):\n    return solve_it(k)", "numpy.linalg.inv"),
    ("S = np.linalg\ndef f(k):\n    return S.inv(k)", "inv"),
    ("R = nk.kernel_regression\ndef f(*a):\n    return R(*a)", "forbidden module ntklib.regression"),
    ("def f(m, p, g):\n    return nk.empirical._group_jacobian(m, p, g)", "private part of ntklib"),
    ("import importlib\ndef f():\n    return importlib.import_module('ntklib')", "importlib"),
    ("def f(name):\n    return getattr(nk, name)", "computed name"),
    ("def f():\n    return getattr(nk, 'empirical_ntk')", "empirical_ntk"),
    ("def f():\n    return eval('1')", "eval"),
    ("def f():\n    return globals()['nk']", "globals"),
    ("def f():\n    return nk.__dict__", "__dict__"),
    ("import sys\ndef f():\n    return sys.modules['ntklib']", "sys.modules"),
    ("import operator\ng = operator.attrgetter('x')", "operator.attrgetter"),
    ("get_ipython().ast_transformers.append(None)", "get_ipython"),
    ("import subprocess\nsubprocess.run(['python'])", "subprocess"),
    ("import os\nos.system('python')", "os.system"),
    ("def f():\n    try:\n        1 / 0\n    except Exception as e:\n        return e.__traceback__.tb_frame", "__traceback__"),
    ("t = torch.ops.aten.linalg_inv", "torch.ops"),
    ("t = torch._C._linalg", "private part of torch"),
    ("%%capture\nx = np.linalg.inv", "inv"),
    ("%%bash\nls", "cell magic"),
])
def test_find_shortcuts_flags_forbidden_objects_and_dynamic_access(src, why):
    problems = _problems(src)
    assert problems and any(why in p for p in problems), problems


@pytest.mark.parametrize("src", [
    "def f(k, y, ridge):\n    chol = torch.linalg.cholesky(k + ridge * torch.eye(k.shape[0]))\n"
    "    return torch.cholesky_solve(y[:, None], chol)[:, 0]",
    "def gp(k):\n    '''Unlike KernelRidge, this returns a covariance too.'''\n    return k\n",
    "%timeit x = 1\n%matplotlib inline\nprint('inv is not used here')",
    "def inv(k):  # the student's own function may share a forbidden name\n    return k\ny = inv(1)",
    "class Net(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.lin = torch.nn.Linear(2, 1)\n"
    "    def forward(self, x):\n        return self.lin(x)\nn = Net()\nlist(n.modules())",
    "x = getattr(torch, 'float64')",
])
def test_find_shortcuts_passes_honest_code(src):
    assert _problems(src) == []


def test_find_shortcuts_reports_only_the_lines_the_student_wrote():
    src = "from sklearn.kernel_ridge import KernelRidge\nimport math\nk = KernelRidge()"
    assert len(_problems(src)) == 2
    assert _problems(src, lines={2}) == []
    assert [p.split(":")[0] for p in _problems(src, lines={3})] == ["cell, line 3"]
