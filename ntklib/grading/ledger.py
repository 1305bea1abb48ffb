"""The manual-grade ledger: every manual score and extra credit a grader sets, HMAC-signed, checked at export.

* **Recording.** :func:`record_manual_grades` registers SQLAlchemy events (once per process):
  whenever a session that changed a ``Grade``'s ``manual_score`` or ``extra_credit`` commits, one
  entry per change is appended to ``.ntk-grading/ledger.jsonl`` next to the gradebook (the course
  root for nbgrader's default ``gradebook.db``): who
  (student, assignment, notebook, cell), what (field, value), when, by which user, chained to the
  previous entry and signed with HMAC-SHA256 under a key in ``.ntk-grading/ledger.key`` (random,
  created on first use, mode 0600; the folder ignores itself in git). ``nbgrader_config.py`` does
  this for every nbgrader process that loads it -- the formgrader included; scripts that set
  grades with nbgrader's ``Gradebook`` API call :func:`record_manual_grades` first.
* **Checking.** :class:`AuditedCsvExport` (``nbgrader export``'s plugin in ``nbgrader_config.py``)
  verifies the chain and compares every grade in the gradebook with the last signed value: a
  manual score or extra credit that no grader set through nbgrader (an edit of ``gradebook.db`` by
  other means, e.g. by code that could write the file) stops the export with a message naming the
  student, notebook and cell.

The key protects against writes to the gradebook by anyone who cannot read the key: the student
sandbox sees neither; a process running as the grader's user can read both (docs/instructors.md).
"""
from __future__ import annotations

import datetime
import fcntl
import getpass
import hashlib
import hmac
import json
import os
import secrets

from nbgrader.plugins import CsvExportPlugin

__all__ = ["Ledger", "record_manual_grades", "collect", "AuditedCsvExport", "audit_gradebook",
           "ledger_dir_for", "LEDGER_DIR", "REGISTRY"]

LEDGER_DIR = ".ntk-grading"
FIELDS = ("manual_score", "extra_credit")
#: sys.modules key of the per-process registry shared with nbgrader_config.py (hooks are installed once)
REGISTRY = "_ntk_grading_ledger_hook"


class Ledger:
    """The append-only, HMAC-chained ledger of one course directory."""

    def __init__(self, course_root: str):
        self.dir = os.path.join(os.path.abspath(course_root), LEDGER_DIR)
        self.path = os.path.join(self.dir, "ledger.jsonl")
        self.key_path = os.path.join(self.dir, "ledger.key")

    def _key(self, create: bool) -> bytes | None:
        if not os.path.exists(self.key_path):
            if not create:
                return None
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            with open(os.path.join(self.dir, ".gitignore"), "w") as fh:
                fh.write("*\n")
            fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
        with open(self.key_path) as fh:
            return bytes.fromhex(fh.read().strip())

    @staticmethod
    def _mac(key: bytes, entry: dict) -> str:
        body = json.dumps({k: v for k, v in entry.items() if k != "mac"}, sort_keys=True, separators=(",", ":"))
        return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()

    def append(self, entries: list[dict]) -> None:
        if not entries:
            return
        key = self._key(create=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "r+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.seek(0)
            prev = ""
            for line in fh:
                if line.strip():
                    prev = json.loads(line).get("mac", "")
            for entry in entries:
                entry = {**entry, "prev": prev}
                entry["mac"] = prev = self._mac(key, entry)
                fh.write(json.dumps(entry, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def latest(self) -> tuple[dict, list[str]]:
        """({(student, assignment, notebook, cell, field): value}, problems with the chain)."""
        values, problems = {}, []
        if not os.path.exists(self.path):
            return values, problems
        key = self._key(create=False)
        if key is None:
            return values, [f"the ledger's key {self.key_path} is missing"]
        prev = ""
        with open(self.path) as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    ok = entry.get("prev") == prev and hmac.compare_digest(self._mac(key, entry), entry.get("mac", ""))
                except (ValueError, AttributeError, TypeError):
                    ok, entry = False, {}
                if not ok:
                    problems.append(f"{self.path}, line {n}: the entry is not signed or not in sequence")
                    continue
                prev = entry["mac"]
                values[(entry["student"], entry["assignment"], entry["notebook"], entry["cell"], entry["field"])] = \
                    entry["value"]
        return values, problems


def _grade_key(grade) -> tuple[str, str, str, str]:
    nb = grade.notebook
    return (str(nb.student.id), str(nb.assignment.name), str(nb.name), str(grade.name))


def ledger_dir_for(url) -> str | None:
    """The folder holding the gradebook (an SQLite file): the ledger lives next to it."""
    from sqlalchemy.engine import make_url

    url = make_url(str(url))
    if not url.drivername.startswith("sqlite") or not url.database or url.database == ":memory:":
        return None
    return os.path.dirname(os.path.abspath(url.database))


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001
        return "?"


def _registry():
    import sys
    import types

    return sys.modules.setdefault(REGISTRY, types.ModuleType(REGISTRY))


def collect(session) -> None:
    """Called before a flush: remember the manual scores / extra credits the flush writes; they are
    appended to the ledger when the session commits (dropped if it rolls back)."""
    from nbgrader.api import Grade
    from sqlalchemy import inspect as sa_inspect

    reg = _registry()
    if not getattr(reg, "commit_hooks", False):
        from sqlalchemy import event
        from sqlalchemy.orm import Session

        reg.commit_hooks = True
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_soft_rollback", _after_rollback)
    bind = session.get_bind()
    root = ledger_dir_for(bind.url) if bind is not None else None
    if root is None:
        return
    pending = session.info.setdefault("ntk_ledger_pending", [])
    with session.no_autoflush:
        for obj in list(session.new) + list(session.dirty):
            if not isinstance(obj, Grade):
                continue
            state = sa_inspect(obj)
            for field in FIELDS:
                value = getattr(obj, field)
                if not state.attrs[field].history.added or (obj in session.new and value is None):
                    continue
                student, assignment, notebook, cell = _grade_key(obj)
                pending.append((root, dict(student=student, assignment=assignment, notebook=notebook, cell=cell,
                                           field=field, value=None if value is None else float(value),
                                           time=datetime.datetime.now(datetime.timezone.utc).isoformat(),
                                           user=_user())))


def _after_commit(session):
    by_root: dict = {}
    for root, entry in session.info.pop("ntk_ledger_pending", []):
        by_root.setdefault(root, []).append(entry)
    for root, entries in by_root.items():
        Ledger(root).append(entries)


def _after_rollback(session, previous_transaction=None):
    session.info.pop("ntk_ledger_pending", None)


def _before_flush(session, flush_context, instances):
    collect(session)


def record_manual_grades() -> None:
    """Record, in this process, every manual score / extra credit committed to any SQLite gradebook
    (in the ledger next to it). ``nbgrader_config.py`` does the same for nbgrader's own processes."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    reg = _registry()
    if getattr(reg, "installed", False):
        return
    reg.installed = True
    event.listen(Session, "before_flush", _before_flush)


def audit_gradebook(gradebook) -> list[str]:
    """Every manual score / extra credit in ``gradebook`` that disagrees with the ledger, in words."""
    from nbgrader.api import Grade

    root = ledger_dir_for(gradebook.db.get_bind().url)
    if root is None:
        return ["the gradebook is not an SQLite file: its manual grades cannot be audited"]
    latest, problems = Ledger(root).latest()
    for grade in gradebook.db.query(Grade).all():
        student, assignment, notebook, cell = _grade_key(grade)
        for field in FIELDS:
            value = getattr(grade, field)
            signed = latest.get((student, assignment, notebook, cell, field))
            if value is None and signed is None:
                continue
            if value is not None and signed is not None and float(value) == float(signed):
                continue
            what = "manual score" if field == "manual_score" else "extra credit"
            was = "no grader set it" if signed is None else f"the last value a grader set is {signed:g}"
            problems.append(f"student {student}, assignment {assignment}, notebook {notebook}, cell {cell}: "
                            f"{what} {value if value is None else format(value, 'g')} in the gradebook, but {was}")
    return problems


class AuditedCsvExport(CsvExportPlugin):
    """nbgrader's CSV export, after :func:`audit_gradebook` found nothing (else it stops with the list)."""

    def export(self, gradebook) -> None:
        problems = audit_gradebook(gradebook)
        if problems:
            lines = "\n  ".join(problems[:50])
            more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
            msg = (f"export stopped: {len(problems)} manual grade(s) were not set by a grader through nbgrader "
                   f"(formgrader or the Gradebook API with the course's ledger):\n  {lines}{more}\n"
                   f"Check these grades (and who could write the gradebook); set them again in the formgrader "
                   f"to record them. See docs/instructors.md, 'Export audit'.")
            self.log.error(msg)
            raise SystemExit(1)  # `nbgrader export` ends with the message above, and no file
        super().export(gradebook)
