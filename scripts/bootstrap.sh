#!/usr/bin/env bash
# Set up everything the course and the tests need, on a fresh machine, idempotently.
#
#   scripts/bootstrap.sh            # .venv with ntklib + course + test extras
#
# * A CPU-only machine never downloads a CUDA build of torch: torch is installed first,
#   from PyTorch's CPU wheel index (pip falls back to the default index / local wheels
#   when that index cannot be reached), and pyproject's range `torch>=2.2` is then
#   already satisfied. Machines with an NVIDIA driver get the default (CUDA) build.
# * Headless Chromium (Debian's package) is installed for the browser tests when we are
#   root on a Debian/Ubuntu machine and it is missing; elsewhere those tests skip.
# * bubblewrap (Debian's package `bubblewrap`, the `bwrap` sandbox that `nbgrader autograde`
#   runs student kernels in) is installed the same way; without it autograding refuses to run
#   (docs/instructors.md says how to install it elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
STAMP="$VENV/.bootstrap-stamp"

need_install=1
if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ] && [ "$STAMP" -nt scripts/bootstrap.sh ]; then
  need_install=0
fi

if [ "$need_install" = 1 ]; then
  if [ ! -x "$VENV/bin/python" ]; then
    echo "[bootstrap] creating $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  PIP="$VENV/bin/python -m pip"
  $PIP install --quiet --upgrade "pip>=23.2"
  if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 || [ "$(uname -s)" = "Darwin" ]; then
      echo "[bootstrap] installing torch==$TORCH_VERSION (default build)"
      $PIP install --quiet "torch==$TORCH_VERSION"
    else
      echo "[bootstrap] installing torch==$TORCH_VERSION (CPU build)"
      $PIP install --quiet --retries 1 "torch==$TORCH_VERSION" \
        --extra-index-url https://download.pytorch.org/whl/cpu
    fi
  fi
  echo "[bootstrap] installing ntklib with the course and test extras"
  $PIP install --quiet -e ".[course,test]"
  # Students do not need the instructor-only nbgrader extensions (formgrader, course
  # list, create assignment); the validate button and assignment list stay enabled.
  # Same as postBuild (Binder). Instructors: see docs/binder.md to turn them back on.
  "$VENV/bin/jupyter" labextension disable --level=sys_prefix \
    @jupyter/nbgrader:formgrader @jupyter/nbgrader:course-list \
    @jupyter/nbgrader:create-assignment >/dev/null 2>&1 || true
  for ext in nbgrader.server_extensions.formgrader nbgrader.server_extensions.course_list; do
    "$VENV/bin/jupyter" server extension disable --sys-prefix "$ext" >/dev/null 2>&1 || true
  done
  touch "$STAMP"
fi

# Headless Chromium for the browser tests (Debian's package; no browser download).
if [ "${NTK_SKIP_BROWSER_INSTALL:-0}" != 1 ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[bootstrap] installing Debian's chromium for the browser tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "[bootstrap] could not install chromium; browser tests will be skipped"
  else
    echo "[bootstrap] chromium not found and cannot be installed here; browser tests will be skipped"
  fi
fi

# bubblewrap: the sandbox of `nbgrader autograde` (Debian's package; see docs/instructors.md).
if [ "${NTK_SKIP_BWRAP_INSTALL:-0}" != 1 ] && ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[bootstrap] installing Debian's bubblewrap (the autograding sandbox)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null) \
      || echo "[bootstrap] could not install bubblewrap; nbgrader autograde will refuse to run"
  else
    echo "[bootstrap] bwrap not found and cannot be installed here (sudo apt-get install bubblewrap);" \
         "nbgrader autograde will refuse to run without it"
  fi
fi
