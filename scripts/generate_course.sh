#!/usr/bin/env bash
# Regenerate the student notebooks course/<id>/ from the instructor sources solutions/<id>/.
#
#   scripts/generate_course.sh                      # every assignment in solutions/
#   scripts/generate_course.sh 00_preliminaries     # only these assignments
#   scripts/generate_course.sh --into /tmp/x 01_nngp  # write /tmp/x/01_nngp/ instead of course/01_nngp/
#
# It runs `nbgrader generate_assignment <id> --force --no-db` with the repository's
# nbgrader_config.py (source "solutions", release "course"): solutions become stubs,
# hidden tests are removed, outputs cleared, test cells locked and check-summed.
#
# * Deterministic: the same solutions/ always give byte-identical course/ (the test suite
#   regenerates into a temporary folder and compares with what is committed).
# * Leaves nothing behind: no gradebook.db (--no-db), no .nbgrader.log; the old
#   course/<id>/ is replaced as a whole, so files deleted from solutions/<id>/ disappear too.
# * Instructors who grade do NOT use this script for their gradebook: see docs/instructors.md
#   (`nbgrader generate_assignment` in the grading course directory records the hidden
#   tests in the gradebook, which autograding needs).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

NBGRADER="${NBGRADER:-$ROOT/.venv/bin/nbgrader}"
if [ ! -x "$NBGRADER" ]; then
  NBGRADER="$(command -v nbgrader || true)"
fi
if [ -z "$NBGRADER" ]; then
  echo "generate_course.sh: nbgrader not found (run scripts/bootstrap.sh first)" >&2
  exit 2
fi

INTO="course"
IDS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --into) INTO="${2:?--into needs a directory}"; shift 2 ;;
    --into=*) INTO="${1#--into=}"; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    -*) echo "generate_course.sh: unknown option '$1' (expected --into DIR or assignment ids)" >&2; exit 2 ;;
    *) IDS+=("${1%/}"); shift ;;
  esac
done

if [ ${#IDS[@]} -eq 0 ]; then
  for d in solutions/*/; do
    id="$(basename "$d")"
    [ -f "solutions/$id/$id.ipynb" ] && IDS+=("$id")
  done
fi
if [ ${#IDS[@]} -eq 0 ]; then
  echo "generate_course.sh: no assignments found in solutions/" >&2
  exit 1
fi

mkdir -p "$INTO"
INTO_ABS="$(cd "$INTO" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# nbgrader also loads $ROOT/nbgrader_config.py (the course root); this empty file only keeps it
# from warning that the scratch directory has none.
: > "$WORK/nbgrader_config.py"

for id in "${IDS[@]}"; do
  id="$(basename "$id")"
  if [ ! -d "solutions/$id" ]; then
    echo "generate_course.sh: no folder solutions/$id (assignments: $(ls solutions | tr '\n' ' '))" >&2
    exit 1
  fi
  echo "[generate_course] solutions/$id -> ${INTO%/}/$id"
  # Run from a scratch directory so nbgrader's log file and any gradebook land there;
  # the course root, source and release folders are given as absolute paths.
  (cd "$WORK" && "$NBGRADER" generate_assignment "$id" --force --no-db --log-level=ERROR \
      --CourseDirectory.root="$ROOT" \
      --CourseDirectory.source_directory="$ROOT/solutions" \
      --CourseDirectory.release_directory="$INTO_ABS" \
      --CourseDirectory.db_url="sqlite:///$WORK/gradebook.db" \
      --NbGrader.logfile="$WORK/nbgrader.log")
  # nbgrader never writes these into the release, but make sure no instructor file slips through.
  find "$INTO_ABS/$id" \( -name gradebook.db -o -name .nbgrader.log -o -name .ipynb_checkpoints \) \
    -prune -exec rm -rf {} +
done
