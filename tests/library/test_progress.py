"""Progress bars: shown in notebooks and terminals, silent in CI and under nbgrader, ``progress=`` wins.

``ntklib._progress.progress_bar`` wraps long loops in ``tqdm.auto.tqdm``. Checked here:
  * in a simulated notebook context (``ipykernel`` imported) a bar is written; under ``CI``,
    ``NBGRADER_EXECUTION`` or ``NTKLIB_NO_PROGRESS`` nothing is, and the iterable comes back untouched;
  * an explicit ``progress=True/False`` overrides the environment;
  * ``monte_carlo_kernel(progress=...)`` reaches the bar (behaviour, read on stderr);
  * in a real Jupyter kernel the bar is tqdm's notebook widget, and it disappears under CI/nbgrader;
  * every ntklib function that takes ``progress`` actually uses it (source check, no import).
"""
from __future__ import annotations

import ast
import re
import sys
import types
from pathlib import Path

import pytest
import torch

from ntklib._progress import progress_bar, progress_enabled

REPO = Path(__file__).resolve().parents[2]
QUIET_VARS = ("CI", "NBGRADER_EXECUTION", "NTK_SMOKE", "NTKLIB_NO_PROGRESS")


@pytest.fixture
def notebook_context(monkeypatch):
    """As inside a Jupyter kernel: ipykernel imported, none of the quiet variables set."""
    for var in QUIET_VARS:
        monkeypatch.delenv(var, raising=False)
    if "ipykernel" not in sys.modules:
        monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    return monkeypatch


def _consume(n=5, **kw):
    it = progress_bar(range(n), total=n, desc="unit-bar", **kw)
    return it, list(it)


def test_progress_bar_writes_bar_in_notebook_context(notebook_context, capsys):
    it, items = _consume(5)
    err = capsys.readouterr().err
    assert items == [0, 1, 2, 3, 4]
    assert not isinstance(it, range), "expected a tqdm wrapper, got the bare iterable"
    assert re.search(r"unit-bar:.*\d+/5\b", err), f"no tqdm bar on stderr: {err!r}"


@pytest.mark.parametrize("var", QUIET_VARS)
def test_progress_bar_silent_and_untouched_under_quiet_variable(notebook_context, capsys, var):
    notebook_context.setenv(var, "1")
    it, items = _consume(5)
    assert it == range(5) and type(it) is range, "the iterable must come back unwrapped"
    assert items == [0, 1, 2, 3, 4]
    assert capsys.readouterr().err == ""


def test_explicit_progress_overrides_environment(notebook_context, capsys):
    notebook_context.setenv("CI", "1")
    _consume(3, progress=True)
    assert re.search(r"unit-bar:.*\d+/3\b", capsys.readouterr().err)
    notebook_context.delenv("CI")
    _consume(3, progress=False)
    assert capsys.readouterr().err == ""
    assert progress_enabled(True) is True and progress_enabled(False) is False


def test_progress_off_without_terminal_or_notebook(monkeypatch):
    """A script whose stderr is not a terminal (e.g. piped to a log) gets no bar by default."""
    for var in QUIET_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.setattr(sys, "stderr", types.SimpleNamespace(isatty=lambda: False, write=sys.stderr.write))
    assert progress_enabled() is False
    monkeypatch.setattr(sys, "stderr", types.SimpleNamespace(isatty=lambda: True, write=sys.stderr.write))
    assert progress_enabled() is True


def _tiny_arch():
    from ntklib import Dense, Relu, serial

    return serial(Dense(8), Relu(), Dense(1))


def test_monte_carlo_kernel_passes_progress_to_the_bar(notebook_context, capsys):
    from ntklib import monte_carlo_kernel

    x = torch.randn(3, 2, dtype=torch.float64)
    notebook_context.setenv("CI", "1")  # default: silent
    monte_carlo_kernel(_tiny_arch(), x, n_samples=3, get="nngp")
    assert capsys.readouterr().err == ""
    monte_carlo_kernel(_tiny_arch(), x, n_samples=3, get="nngp", progress=True)  # explicit: shown
    err = capsys.readouterr().err
    assert re.search(r"Monte Carlo:.*\d+/3\b", err), f"progress=True did not reach the bar: {err!r}"
    notebook_context.delenv("CI")  # notebook context: shown by default, progress=False hides it
    monte_carlo_kernel(_tiny_arch(), x, n_samples=3, get="nngp")
    assert "Monte Carlo" in capsys.readouterr().err
    monte_carlo_kernel(_tiny_arch(), x, n_samples=3, get="nngp", progress=False)
    assert capsys.readouterr().err == ""


def _run(kc, code: str, timeout: float = 60.0) -> list[dict]:
    """Execute ``code`` in the kernel; the iopub messages it caused (until the kernel is idle)."""
    msg_id = kc.execute(code)
    msgs = []
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return msgs
        msgs.append(msg)


def test_real_kernel_shows_notebook_widget_bar_and_hides_it_under_ci_and_nbgrader():
    import os

    from jupyter_client.manager import start_new_kernel

    env = {k: v for k, v in os.environ.items() if k not in QUIET_VARS}
    km, kc = start_new_kernel(kernel_name="python3", env=env, startup_timeout=120)
    try:
        setup = _run(kc, "import os\nfrom ntklib._progress import progress_bar", timeout=120)
        assert not [m for m in setup if m["msg_type"] == "error"], setup
        loop = "for _ in progress_bar(range(4), total=4, desc='kernel-bar'): pass"

        def bar_outputs(msgs):
            widgets = [m for m in msgs if m["msg_type"] == "display_data"
                       and "application/vnd.jupyter.widget-view+json" in m["content"]["data"]]
            texts = [m for m in msgs if m["msg_type"] == "stream" and "kernel-bar" in m["content"]["text"]]
            errors = [m["content"] for m in msgs if m["msg_type"] == "error"]
            assert not errors, errors
            return widgets, texts

        widgets, texts = bar_outputs(_run(kc, loop))
        assert widgets and not texts, "in a notebook kernel the bar must be tqdm's widget, not text"
        for var in ("NBGRADER_EXECUTION", "CI", "NTK_SMOKE"):
            widgets, texts = bar_outputs(_run(kc, f"os.environ[{var!r}] = '1'\n{loop}\ndel os.environ[{var!r}]"))
            assert not widgets and not texts, f"a bar was shown with {var} set"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _functions_taking_progress():
    for path in sorted((REPO / "ntklib").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args.args + node.args.kwonlyargs + node.args.posonlyargs
                if any(a.arg == "progress" for a in args):
                    yield path.name, node


def test_every_ntklib_function_taking_progress_uses_it():
    found = list(_functions_taking_progress())
    assert any(name == "monte_carlo.py" and fn.name == "monte_carlo_kernel" for name, fn in found)
    unused = []
    for name, fn in found:
        loads = [n for stmt in fn.body for n in ast.walk(stmt)
                 if isinstance(n, ast.Name) and n.id == "progress" and isinstance(n.ctx, ast.Load)]
        if not loads:
            unused.append(f"{name}:{fn.lineno} {fn.name}")
    assert not unused, f"these functions accept progress= but never pass it on: {unused}"
