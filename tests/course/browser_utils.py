"""Helpers for ``tests/course/test_browser.py``: JupyterLab started like ``make course``, driven by Playwright.

Nothing here downloads a browser: Playwright drives Debian's Chromium (``/usr/bin/chromium``, installed
by ``scripts/bootstrap.sh`` when ``make test`` runs as root on Debian/Ubuntu) through ``executable_path``.
The server runs with a private token on 127.0.0.1 and with temporary Jupyter config/data/runtime/settings
directories, so nothing of the user's own Jupyter setup is read or written, and JupyterLab's autosave is
switched off in those settings, so the notebooks the tests execute are never written back to disk.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts" / "browser"

# Flags from the task: no sandbox (root in containers), no GPU, nothing phoning home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

# A notebook "has a slider" when a code cell builds an ipywidgets slider or calls interact.
SLIDER_RE = re.compile(
    r"\b(?:IntSlider|FloatSlider|FloatLogSlider|IntRangeSlider|FloatRangeSlider|SelectionSlider"
    r"|SelectionRangeSlider|interact|interactive)\b"
)

# JupyterLab user settings written into the temporary settings directory.
LAB_SETTINGS = {
    # Never write executed notebooks back into course/ or solutions/.
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    # Start the notebook's kernel without the "Select Kernel" dialog (a student clicks "Select" there).
    # Every cell in the page (no windowing): the tests count and read all cells, and a windowed
    # notebook attaches off-screen cells lazily.
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"autoStartDefaultKernel": True,
                                                                   "windowingMode": "none"},
    # No news/update checks (no network in CI, and no toast covering the notebook).
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


def find_chromium() -> str | None:
    """Path of a Chromium executable (``$NTK_CHROMIUM`` first, then Debian's package), or None."""
    candidates = [
        os.environ.get("NTK_CHROMIUM"),
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def code_sources(nb_path: Path) -> list[str]:
    """Source text of every code cell of a notebook (read as JSON; no kernel)."""
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    out = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            src = cell.get("source", "")
            out.append("".join(src) if isinstance(src, list) else src)
    return out


def notebooks_with_sliders(root: Path) -> list[Path]:
    """``root/<assignment>/<assignment>.ipynb`` files whose code builds an ipywidgets slider."""
    found = []
    for nb_path in sorted(root.glob("*/*.ipynb")):
        if ".ipynb_checkpoints" in nb_path.parts:
            continue
        if any(SLIDER_RE.search(src) for src in code_sources(nb_path)):
            found.append(nb_path)
    return found


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LabServer:
    """A running JupyterLab server that this process started (in its own process group)."""

    proc: subprocess.Popen
    port: int
    token: str
    root: Path
    log_path: Path
    command: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def lab_url(self, relpath: str = "") -> str:
        """JupyterLab opening ``relpath``; ``reset`` drops the saved workspace (no tabs restored)."""
        path = f"lab/tree/{relpath}" if relpath else "lab"
        return f"{self.base}/{path}?reset&token={self.token}"

    def api(self, path: str):
        req = urllib.request.Request(f"{self.base}/{path}", headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read().decode())

    def wait_kernel_ready(self, timeout: float) -> None:
        """Wait until the server has a kernel that is idle with a client (the page) connected."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                kernels = self.api("api/kernels")
            except urllib.error.HTTPError as exc:  # jupyter_server answers 500 while a kernel is starting
                kernels = [f"HTTP {exc.code}"]
            if any(isinstance(k, dict) and k.get("execution_state") == "idle" and k.get("connections", 0) > 0 for k in kernels):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"no idle, connected kernel after {timeout:.0f} s: {kernels}\n{self.log_tail()}")
            time.sleep(0.2)

    def shutdown_kernels(self) -> None:
        """Shut down every kernel session of this server (the browser page does not, on close)."""
        for session in self.api("api/sessions"):
            req = urllib.request.Request(f"{self.base}/api/sessions/{session['id']}", method="DELETE",
                                         headers={"Authorization": f"token {self.token}"})
            try:
                urllib.request.urlopen(req, timeout=30).close()
            except urllib.error.HTTPError:
                pass

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Stop the server and everything it started (kernels included): SIGTERM, then SIGKILL."""
        if self.proc.poll() is not None:
            return
        try:
            pgid = os.getpgid(self.proc.pid)
        except ProcessLookupError:
            return
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # make may exit before its child: make sure nothing of the group is left.
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _private_env(tmp: Path) -> dict[str, str]:
    """The user's environment without Jupyter settings, pointed at private temporary directories."""
    drop_prefixes = ("JUPYTER", "JPY_", "JUPYTERLAB")
    drop = {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "NTKLIB_NO_PROGRESS", "IPYTHONDIR"}
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop_prefixes) and k not in drop}
    dirs = {
        "JUPYTER_CONFIG_DIR": "config",
        "JUPYTER_DATA_DIR": "data",
        "JUPYTER_RUNTIME_DIR": "runtime",
        "JUPYTERLAB_SETTINGS_DIR": "lab-settings",
        "JUPYTERLAB_WORKSPACES_DIR": "lab-workspaces",
        "IPYTHONDIR": "ipython",
    }
    for var, sub in dirs.items():
        (tmp / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(tmp / sub)
    for rel, settings in LAB_SETTINGS.items():
        p = tmp / "lab-settings" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(settings))
    env["PYTHONUNBUFFERED"] = "1"
    # Notebooks shrink their slow demos (the browser test checks rendering, not budgets).
    env["NTK_SMOKE"] = "1"
    return env


def course_command(port: int, token: str, notebook_dir: Path | None, checkpoints: Path) -> list[str]:
    """The README's course command (``make course`` without its setup step) on loopback, headless.

    ``make -o setup course`` runs exactly the Makefile's JupyterLab recipe (``--notebook-dir=course``,
    ``--allow-root`` when root), with our flags appended through ``JUPYTER_FLAGS``; ``NOTEBOOK_DIR``
    (default ``course``) is changed only for the Validate check on a copy of a solution notebook.
    Without ``make``, the same command line is spelled out.
    """
    flags = [
        "--ip=127.0.0.1",
        "--no-browser",
        "--ServerApp.open_browser=False",
        f"--IdentityProvider.token={token}",
        "--ServerApp.port_retries=0",
        # Checkpoints (written when a notebook is opened) go to a temporary folder, not course/.
        f"--FileCheckpoints.root_dir={checkpoints}",
    ]
    venv = Path(sys.prefix)
    if shutil.which("make") and (venv / "bin" / "jupyter").exists():
        return [
            "make", "--no-print-directory", "-o", "setup", "course",
            f"VENV={venv}", f"PORT={port}", "JUPYTER_FLAGS=" + shlex.join(flags),
            *([f"NOTEBOOK_DIR={notebook_dir}"] if notebook_dir is not None else []),
        ]
    cmd = [sys.executable, "-m", "jupyter", "lab", f"--notebook-dir={notebook_dir or 'course'}", f"--port={port}", *flags]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    return cmd


def start_lab(tmp: Path, name: str, notebook_dir: Path | None = None, timeout: float = 90.0) -> LabServer:
    """Start JupyterLab like ``make course`` (root ``course/`` unless ``notebook_dir``) and wait until it answers."""
    port = free_port()
    token = secrets.token_hex(16)
    env = _private_env(tmp / f"jupyter-{name}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / f"jupyterlab-{name}.log"
    cmd = course_command(port, token, notebook_dir, tmp / f"jupyter-{name}" / "checkpoints")
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    server = LabServer(proc, port, token, notebook_dir or REPO / "course", log_path, cmd)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {proc.returncode}: {shlex.join(cmd)}\n{server.log_tail()}")
        try:
            server.api("api/status")
            return server
        except (urllib.error.URLError, ConnectionError, OSError, json.JSONDecodeError):
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise TimeoutError(f"JupyterLab did not answer within {timeout:.0f} s\n{server.log_tail()}")
        time.sleep(0.25)
