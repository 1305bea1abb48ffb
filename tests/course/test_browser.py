"""The course in a real browser: JupyterLab (started like ``make course``) driven by headless Chromium.

For every course notebook that builds an ipywidgets slider:
  open it in JupyterLab, run every cell from the Run menu (continuing past the exercise stubs'
  ``NotImplementedError``, as a student would), wait for the kernel to be idle, move the slider with
  the keyboard (focus + ArrowRight) and with the mouse (drag the handle), and check each time that
  the slider's value and the rendered plot image changed.
Then nbgrader's Validate button (the notebook toolbar of its lab extension) on a copy of a solution
notebook must answer "Success! Your notebook passes all the tests.", and on a copy of the untouched
student notebook it must not.

Screenshots and server logs go to ``artifacts/browser/`` (git-ignored). Chromium is Debian's package
(``scripts/bootstrap.sh`` installs it under ``make test`` as root); without it these tests skip.
``NTK_BROWSER_COURSE_DIR=<dir>`` and ``NTK_BROWSER_SOLUTIONS_DIR=<dir>`` point the tests at other folders
of ``<name>/<name>.ipynb`` notebooks (used to develop the harness on scratch notebooks).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

import browser_utils as bu

pytestmark = pytest.mark.browser

playwright_sync = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[test])")

COURSE_DIR = Path(os.environ.get("NTK_BROWSER_COURSE_DIR") or bu.REPO / "course").resolve()
SOLUTIONS_DIR = Path(os.environ.get("NTK_BROWSER_SOLUTIONS_DIR") or bu.REPO / "solutions").resolve()

# Timeouts (ms). Generous: CI machines have 2 slow cores; every wait ends as soon as its condition holds.
LAB_LOAD_MS = 120_000
RUN_ALL_MS = 240_000
REDRAW_MS = 60_000
VALIDATE_MS = 300_000


def _slider_params():
    notebooks = bu.notebooks_with_sliders(COURSE_DIR)
    if not notebooks:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no notebook with an ipywidgets slider in {COURSE_DIR} yet"))]
    return [pytest.param(nb, id=nb.parent.name) for nb in notebooks]


def _executed_code_cells(path: Path) -> int:
    """Code cells saved with an execution count (0 for a freshly generated student notebook)."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # being regenerated right now by scripts/generate_course.sh
        return 0
    return sum(1 for c in nb.get("cells", []) if c.get("cell_type") == "code" and c.get("execution_count"))


# --------------------------------------------------------------------------------------------------
# fixtures: one Chromium for the module, one JupyterLab per root, all stopped at teardown
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    exe = bu.find_chromium()
    if exe is None:
        pytest.skip("Chromium not found (/usr/bin/chromium or $NTK_CHROMIUM); `make test` installs "
                    "Debian's chromium when run as root on Debian/Ubuntu")
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=bu.CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def course_server(tmp_path_factory):
    """JupyterLab on course/, exactly the README's ``make course`` recipe (without its setup step)."""
    notebook_dir = None if COURSE_DIR == (bu.REPO / "course").resolve() else COURSE_DIR
    server = bu.start_lab(tmp_path_factory.mktemp("lab-course"), "course", notebook_dir)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def validate_root(tmp_path_factory):
    """A temporary root with copies of solutions/<a>/ and course/<a>/ (Validate saves the notebook first)."""
    return tmp_path_factory.mktemp("validate-root")


@pytest.fixture(scope="module")
def validate_server(tmp_path_factory, validate_root):
    server = bu.start_lab(tmp_path_factory.mktemp("lab-validate"), "validate", validate_root)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def context(browser):
    """One browser context for the module: JupyterLab's static files are cached between notebooks."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1200})
    yield ctx
    ctx.close()


@pytest.fixture
def page(context, request):
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    failed_before = request.session.testsfailed
    yield pg
    if request.session.testsfailed > failed_before:  # this test failed: keep what the page showed
        bu.ARTIFACTS.mkdir(parents=True, exist_ok=True)
        try:
            pg.screenshot(path=str(bu.ARTIFACTS / f"{_safe(request.node.name)}-failure.png"), full_page=True)
        except Exception:  # noqa: BLE001 (best effort, the test has failed already)
            pass
    pg.close()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


# --------------------------------------------------------------------------------------------------
# driving JupyterLab
# --------------------------------------------------------------------------------------------------

# JavaScript predicates over the visible notebook panel.
_PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
_KERNEL_IDLE_AND_NOTHING_QUEUED = f"""() => {{
  const panel = document.querySelector('{_PANEL}');
  if (!panel) return false;
  const ind = panel.querySelector('.jp-Notebook-ExecutionIndicator');
  if (!ind || ind.dataset.status !== 'idle') return false;
  const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(e => e.textContent.trim());
  return !prompts.some(p => p === '[*]:');
}}"""


def menu(page, top: str, item: str) -> None:
    """Click JupyterLab's main menu ``top`` then its entry ``item`` (as a user does)."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{re.escape(top)}$")).click()
    entry = page.locator(".lm-Menu-item:visible", has=page.locator(
        ".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$")))
    if "lm-mod-disabled" in (entry.get_attribute("class") or ""):
        page.keyboard.press("Escape")
        raise AssertionError(f"menu entry {top} > {item} is disabled")
    entry.click()


def open_notebook(page, server: bu.LabServer, relpath: str) -> None:
    page.goto(server.lab_url(relpath))
    page.wait_for_selector(f"{_PANEL} .jp-Notebook-ExecutionIndicator", timeout=LAB_LOAD_MS)
    # A student would answer the kernel dialog with "Select"; the test settings normally avoid it.
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    if dialog.count():
        dialog.locator(".jp-mod-accept").click()
    server.wait_kernel_ready(LAB_LOAD_MS / 1000)
    wait_kernel_idle(page, LAB_LOAD_MS)


def wait_kernel_idle(page, timeout_ms: int) -> None:
    """Wait for the notebook's kernel status indicator to read idle with no cell queued ([*])."""
    page.wait_for_function(_KERNEL_IDLE_AND_NOTHING_QUEUED, timeout=timeout_ms, polling=100)


def wait_code_cells(page, count: int, timeout_ms: int) -> None:
    """Wait until the panel holds ``count`` code cells (JupyterLab attaches a long notebook's cells in batches)."""
    try:
        page.wait_for_function(
            f"([n]) => document.querySelectorAll('{_PANEL} .jp-CodeCell .jp-InputPrompt').length === n",
            arg=[count], timeout=timeout_ms, polling=200)
    except playwright_sync.TimeoutError:
        pass  # the caller's assertion reports what the page shows


def prompts(page) -> list[str]:
    """The execution prompts of all code cells ("[3]:", "[*]:", "[ ]:").

    Read with textContent: JupyterLab skips rendering off-screen cells (CSS content-visibility),
    and innerText of a skipped cell is empty.
    """
    return [t.strip() for t in page.locator(f"{_PANEL} .jp-CodeCell .jp-InputPrompt").all_text_contents()]


def run_all_cells(page, code_sources: list[str]) -> list[tuple[int, str]]:
    """Run > Run All Cells; where a cell raises (an exercise stub), go on from the next one.

    JupyterLab stops "Run All" at the first error, which in a student notebook is the first
    ``raise NotImplementedError()``; a student then runs the rest with "Run Selected Cell and All
    Below". Returns ``[(code_cell_index, first_error_line), ...]`` for the cells that raised.
    """
    menu(page, "Edit", "Clear Outputs of All Cells")
    menu(page, "Run", "Run All Cells")
    wait_kernel_idle(page, RUN_ALL_MS)
    start = -1
    for _ in range(len(code_sources) + 1):
        wait_code_cells(page, len(code_sources), RUN_ALL_MS)
        current = prompts(page)
        assert len(current) == len(code_sources), (
            f"JupyterLab shows {len(current)} code cells, the notebook file has {len(code_sources)}")
        pending = [i for i, p in enumerate(current)
                   if i > start and p == "[ ]:" and code_sources[i].strip()]
        if not pending:
            break
        start = pending[0]
        page.locator(f"{_PANEL} .jp-CodeCell").nth(start).locator(".jp-InputPrompt").click()
        # (JupyterLab disables "... and All Below" on the notebook's last cell.)
        last = start == len(code_sources) - 1
        menu(page, "Run", "Run Selected Cell" if last else "Run Selected Cell and All Below")
        wait_kernel_idle(page, RUN_ALL_MS)
    cells = page.locator(f"{_PANEL} .jp-CodeCell")
    errors = []
    for i in range(cells.count()):
        texts = cells.nth(i).locator('.jp-Cell-outputArea > .jp-OutputArea-child '
                                     '[data-mime-type="application/vnd.jupyter.stderr"]').all_text_contents()
        tb = [t for t in texts if "Traceback" in t or re.search(r"^\w*(Error|Exception)\b", t, re.M)]
        if tb:  # the traceback's last "SomeError: message" line
            lines = [ln for ln in tb[0].splitlines() if re.match(r"^[\w.]*(Error|Exception|Interrupt)\b:?", ln)]
            errors.append((i, (lines[-1] if lines else tb[0][:120]).strip()))
    return errors


def image_sources(scope) -> list[str]:
    """The ``src`` of every rendered image (matplotlib inline PNGs are data: URLs) under ``scope``."""
    return scope.locator("img").evaluate_all("els => els.map(e => e.getAttribute('src') || '')")


def wait_images_change(page, cell_index: int | None, before: list[str], timeout_ms: int) -> None:
    """Wait until the plot image(s) differ from ``before`` and the kernel is idle again."""
    scope = (f"document.querySelectorAll('{_PANEL} .jp-CodeCell')[{cell_index}]" if cell_index is not None
             else f"document.querySelector('{_PANEL}')")
    page.wait_for_function(
        f"""([before]) => {{
          const scope = {scope};
          const now = [...scope.querySelectorAll('img')].map(e => e.getAttribute('src') || '');
          return now.length > 0 && JSON.stringify(now) !== JSON.stringify(before);
        }}""",
        arg=[before], timeout=timeout_ms, polling=100,
    )
    wait_kernel_idle(page, timeout_ms)


def pick_slider(page):
    """The first rendered slider whose cell also shows an image: (handle locator, cell index or None)."""
    cells = page.locator(f"{_PANEL} .jp-CodeCell")
    first = None
    for i in range(cells.count()):
        handles = cells.nth(i).locator(".widget-slider .noUi-handle")
        if handles.count() == 0:
            continue
        if first is None:
            first = (handles.first, None)
        if cells.nth(i).locator(".jp-Cell-outputArea img").count():
            return handles.first, i
    return first


def slider_value(handle) -> str:
    """The slider's value as the widget states it (noUiSlider's aria-valuetext, unrounded)."""
    return handle.get_attribute("aria-valuetext") or handle.get_attribute("aria-valuenow") or ""


def _as_float(v: str) -> float | None:
    try:
        return float(v)
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------------
# the tests
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("notebook", _slider_params())
def test_course_notebook_slider_redraws_plot_in_jupyterlab(notebook, course_server, page):
    name = notebook.parent.name
    relpath = notebook.relative_to(course_server.root).as_posix()
    executed_before = _executed_code_cells(notebook)
    sources = bu.code_sources(notebook)
    shots = bu.ARTIFACTS
    shots.mkdir(parents=True, exist_ok=True)
    for stale in [*shots.glob(f"{name}-*.png"), *shots.glob(f"*_{name}_-failure.png")]:
        stale.unlink()  # screenshots of an earlier run of this notebook

    t0 = time.monotonic()
    open_notebook(page, course_server, relpath)
    t_open = time.monotonic() - t0
    errors = run_all_cells(page, sources)
    t_run = time.monotonic() - t0 - t_open
    final = prompts(page)
    never_ran = [i for i, p in enumerate(final) if not re.fullmatch(r"\[\d+\]:", p) and sources[i].strip()]
    assert not never_ran, f"{name}: code cells {never_ran} never ran in JupyterLab (prompts {final})"
    if errors:
        print(f"{name}: cells that raised in the student notebook (expected for exercise stubs): {errors}")

    picked = pick_slider(page)
    if picked is None:
        rendered_widgets = page.locator(f"{_PANEL} .jupyter-widgets").count()
        explicit = any(re.search(r"\b\w*Slider\b", s) for s in sources)
        if rendered_widgets and not explicit:
            pytest.skip(f"{name}: uses interact with non-slider controls only")
        page.screenshot(path=str(shots / f"{name}-no-slider.png"), full_page=True)
        pytest.fail(f"{name}: the notebook builds an ipywidgets slider but none rendered in JupyterLab "
                    f"({rendered_widgets} widget elements; cells that raised: {errors})")
    handle, cell_index = picked
    cell = page.locator(f"{_PANEL} .jp-CodeCell").nth(cell_index) if cell_index is not None else page.locator(_PANEL)
    # what the screenshots show: the cell's outputs (slider and plots), or the whole page
    shot = cell.locator(".jp-Cell-outputArea") if cell_index is not None else page
    if cell_index is not None:
        assert not any(i == cell_index for i, _ in errors), (
            f"{name}: the cell with the slider raised: {[e for e in errors if e[0] == cell_index]}")
    handle.scroll_into_view_if_needed()
    shot.screenshot(path=str(shots / f"{name}-1-executed.png"))
    page.screenshot(path=str(shots / f"{name}-0-page.png"))

    # 1. keyboard: focus the handle, one step right (left when already at the maximum)
    img0 = image_sources(cell)
    assert img0, f"{name}: no plot image rendered next to the slider"

    def expect_redraw(stem, message, img_before):
        """Wait for the plot to change from img_before; on time-out save a screenshot and fail with message()."""
        try:
            wait_images_change(page, cell_index, img_before, REDRAW_MS)
        except playwright_sync.TimeoutError:
            shot.screenshot(path=str(shots / f"{stem}-FAILED.png"))
            pytest.fail(message())

    v0 = slider_value(handle)
    now, vmax = (_as_float(handle.get_attribute(a) or "") for a in ("aria-valuenow", "aria-valuemax"))
    at_max = now is not None and vmax is not None and now >= vmax
    key = "ArrowLeft" if at_max else "ArrowRight"
    handle.focus()
    page.keyboard.press(key)
    expect_redraw(f"{name}-2-keyboard",
                  lambda: f"{name}: after {key} on the slider (value {v0} -> {slider_value(handle)}) the plot did not change",
                  img0)
    v1 = slider_value(handle)
    assert v1 != v0, f"{name}: {key} did not move the slider (value stayed {v0})"
    img1 = image_sources(cell)
    shot.screenshot(path=str(shots / f"{name}-2-keyboard.png"))

    # 2. mouse: drag the handle a quarter of the track towards the side with more room
    tb = handle.locator("xpath=ancestor::*[contains(concat(' ', @class, ' '), ' noUi-target ')][1]").bounding_box()
    hb = handle.bounding_box()
    x0, y0 = hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2
    dx = tb["width"] / 4 * (1 if x0 < tb["x"] + tb["width"] / 2 else -1)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + dx, y0, steps=8)
    page.mouse.up()
    expect_redraw(f"{name}-3-mouse",
                  lambda: f"{name}: dragging the slider by {dx:+.0f} px (value {v1} -> {slider_value(handle)}) "
                  "did not change the plot",
                  img1)
    v2 = slider_value(handle)
    assert v2 != v1, f"{name}: dragging did not move the slider (value stayed {v1})"
    if _as_float(v1) is not None and _as_float(v2) is not None:
        assert (_as_float(v2) - _as_float(v1)) * dx > 0, (
            f"{name}: dragging by {dx:+.0f} px moved the value the wrong way ({v1} -> {v2})")
    shot.screenshot(path=str(shots / f"{name}-3-mouse.png"))
    print(f"{name}: slider {v0} -> {v1} (keyboard {key}) -> {v2} (mouse); plot redrawn both times "
          f"[open {t_open:.0f} s, run all {t_run:.0f} s, sliders {time.monotonic() - t0 - t_open - t_run:.0f} s]")

    # The executed notebook was not written back into course/ (autosave is off in the test settings):
    # a saved copy would carry our execution counts.
    assert _executed_code_cells(notebook) <= executed_before, (
        f"{notebook} was saved with executed cells while the browser test ran it")
    course_server.shutdown_kernels()


def _validate(page, server: bu.LabServer, relpath: str, shot: Path) -> tuple[list[str], str]:
    open_notebook(page, server, relpath)
    page.locator(f"{_PANEL} .jp-Toolbar .validate-button").click()
    dialog = page.locator(".jp-Dialog", has=page.locator("#validation-message"))
    dialog.wait_for(state="visible", timeout=VALIDATE_MS)
    message = dialog.locator("#validation-message")
    classes = (message.get_attribute("class") or "").split()
    text = message.inner_text()
    dialog.screenshot(path=str(shot))
    dialog.locator(".jp-mod-accept").click()
    server.shutdown_kernels()
    return classes, text


def _first_solution() -> Path | None:
    found = sorted(p for p in SOLUTIONS_DIR.glob("*/*.ipynb") if p.stem == p.parent.name)
    return found[0] if found else None


def test_validate_button_passes_solution_and_fails_student_stub(validate_root, validate_server, page):
    solution = _first_solution()
    if solution is None:
        pytest.skip("no solution notebook in solutions/ yet")
    name = solution.parent.name
    shutil.copytree(solution.parent, validate_root / "solutions" / name,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"), dirs_exist_ok=True)
    bu.ARTIFACTS.mkdir(parents=True, exist_ok=True)

    classes, text = _validate(page, validate_server, f"solutions/{name}/{name}.ipynb",
                              bu.ARTIFACTS / f"validate-solution-{name}.png")
    assert "validation-success" in classes and "Success! Your notebook passes all the tests." in text, (
        f"Validate on solutions/{name} did not report success: {classes}\n{text[:3000]}")

    student = SOLUTIONS_DIR.parent / "course" / name / f"{name}.ipynb"
    if not student.exists():
        pytest.skip(f"course/{name} not generated yet: only the solution was validated")
    shutil.copytree(student.parent, validate_root / "course" / name,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"), dirs_exist_ok=True)
    classes, text = _validate(page, validate_server, f"course/{name}/{name}.ipynb",
                              bu.ARTIFACTS / f"validate-course-{name}.png")
    assert "validation-success" not in classes and "Success!" not in text, (
        f"Validate on the untouched student notebook course/{name} reported success:\n{text[:2000]}")
    assert "validation-failed" in classes or "failed" in text.lower(), (
        f"Validate on course/{name} did not list failing cells: {classes}\n{text[:2000]}")
