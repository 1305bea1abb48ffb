"""The manual-grade ledger (ntklib.grading.ledger): grades set through nbgrader are recorded and signed;
anything else stops the export, naming student, notebook and cell. Also: `nbgrader autograde`
refuses to run without the sandbox, unless the documented opt-out is set."""
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from ntklib.grading.ledger import AuditedCsvExport, Ledger, audit_gradebook, record_manual_grades

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def gradebook(tmp_path, monkeypatch):
    # nbgrader runs `alembic` (the gradebook's migrations) from PATH: use this environment's
    monkeypatch.setenv("PATH", os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    with Gradebook(url) as gb:
        gb.add_assignment("hw")
        gb.add_notebook("nb", "hw")
        gb.add_grade_cell("written", "nb", "hw", max_score=2, cell_type="markdown")
        gb.add_grade_cell("test_a", "nb", "hw", max_score=1, cell_type="code")
        for student in ("alice", "bob"):
            gb.add_student(student)
            gb.add_submission("hw", student)
    return tmp_path, url


def _set(url, student, cell, **values):
    with Gradebook(url) as gb:
        grade = gb.find_grade(cell, "nb", "hw", student)
        for k, v in values.items():
            setattr(grade, k, v)
        gb.db.commit()


def _audit(url):
    with Gradebook(url) as gb:
        return audit_gradebook(gb)


def test_grades_set_through_the_gradebook_api_are_recorded_and_pass_the_audit(gradebook):
    root, url = gradebook
    record_manual_grades()
    _set(url, "alice", "written", manual_score=2.0)
    _set(url, "bob", "test_a", manual_score=0.5, extra_credit=1.0)
    _set(url, "bob", "test_a", extra_credit=None)
    assert _audit(url) == []
    entries = [json.loads(line) for line in (root / ".ntk-grading" / "ledger.jsonl").read_text().splitlines()]
    assert [(e["student"], e["cell"], e["field"], e["value"]) for e in entries] == [
        ("alice", "written", "manual_score", 2.0), ("bob", "test_a", "manual_score", 0.5),
        ("bob", "test_a", "extra_credit", 1.0), ("bob", "test_a", "extra_credit", None)]
    assert oct(os.stat(root / ".ntk-grading" / "ledger.key").st_mode & 0o777) == "0o600"
    assert (root / ".ntk-grading" / ".gitignore").read_text() == "*\n"


def test_a_grade_written_by_other_means_is_named_in_the_audit(gradebook):
    root, url = gradebook
    record_manual_grades()
    _set(url, "alice", "written", manual_score=1.0)
    with sqlite3.connect(root / "gradebook.db") as con:
        con.execute("UPDATE grade SET extra_credit = 5")
        con.execute("UPDATE grade SET manual_score = 2 WHERE manual_score = 1")
    problems = _audit(url)
    assert len(problems) == 5  # 4 extra credits + alice's changed manual score
    assert ("student alice, assignment hw, notebook nb, cell written: manual score 2 in the gradebook, but the last "
            "value a grader set is 1") in problems
    assert any(p.startswith("student bob, assignment hw, notebook nb, cell test_a: extra credit 5") and
               p.endswith("no grader set it") for p in problems)


def test_a_rolled_back_change_is_not_recorded(gradebook):
    root, url = gradebook
    record_manual_grades()
    with Gradebook(url) as gb:
        gb.find_grade("written", "nb", "hw", "alice").manual_score = 2.0
        gb.db.flush()
        gb.db.rollback()
    assert not (root / ".ntk-grading" / "ledger.jsonl").exists() and _audit(url) == []


def test_an_edited_or_forged_ledger_entry_is_detected(gradebook):
    root, url = gradebook
    record_manual_grades()
    _set(url, "alice", "written", manual_score=1.0)
    path = root / ".ntk-grading" / "ledger.jsonl"
    entry = json.loads(path.read_text())
    entry["value"] = 2.0  # raise the grade in the ledger too, without the key
    path.write_text(json.dumps(entry) + "\n")
    with sqlite3.connect(root / "gradebook.db") as con:
        con.execute("UPDATE grade SET manual_score = 2 WHERE manual_score = 1")
    problems = _audit(url)
    assert any("not signed or not in sequence" in p for p in problems)
    assert any("student alice" in p and "no grader set it" in p for p in problems)
    assert Ledger(str(root)).latest()[0] == {}


def test_the_export_plugin_stops_without_writing_and_exports_when_clean(gradebook, caplog):
    root, url = gradebook
    record_manual_grades()
    _set(url, "alice", "written", manual_score=2.0)
    out = root / "grades.csv"
    with Gradebook(url) as gb:
        AuditedCsvExport(to=str(out)).export(gb)
    assert out.is_file()
    out.unlink()
    with sqlite3.connect(root / "gradebook.db") as con:
        con.execute("UPDATE grade SET extra_credit = 3 WHERE id IN (SELECT id FROM grade LIMIT 1)")
    with Gradebook(url) as gb, pytest.raises(SystemExit):
        AuditedCsvExport(to=str(out)).export(gb)
    assert not out.exists() and "export stopped" in caplog.text


def _python(code, cwd, env=None):
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_loading_nbgrader_config_records_grades_as_the_formgrader_does(gradebook):
    """The formgrader loads nbgrader_config.py from the course root and then commits the grades a
    grader enters; loading the config must be enough to record them."""
    root, url = gradebook
    code = ("from traitlets.config.loader import PyFileConfigLoader\n"
            f"PyFileConfigLoader('nbgrader_config.py', path={str(REPO)!r}).load_config()\n"
            "from nbgrader.api import Gradebook\n"
            f"with Gradebook({url!r}) as gb:\n"
            "    gb.find_grade('written', 'nb', 'hw', 'bob').manual_score = 1.5\n"
            "    gb.db.commit()\n"
            "import sys\nprint('ntklib.grading.ledger' in sys.modules)\n")
    done = _python(code, root)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _audit(url) == [] and Ledger(str(root)).latest()[0] == {("bob", "hw", "nb", "written", "manual_score"): 1.5}


def test_autograde_refuses_without_bubblewrap_unless_the_opt_out_is_set(tmp_path):
    (tmp_path / "nbgrader_config.py").write_text((REPO / "nbgrader_config.py").read_text())
    env = {"PATH": os.path.dirname(sys.executable), "JUPYTER_CONFIG_DIR": str(tmp_path / "jc")}
    run = [sys.executable, "-m", "nbgrader", "autograde", "no_such_assignment"]
    refused = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                             env={**os.environ, **env})
    assert refused.returncode == 2 and "nbgrader autograde refused" in refused.stderr
    assert "apt-get install bubblewrap" in refused.stderr and "NTK_GRADING_SANDBOX=off" in refused.stderr
    opted_out = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                               env={**os.environ, **env, "NTK_GRADING_SANDBOX": "off"})
    assert "refused" not in opted_out.stderr and "WITHOUT the sandbox" in opted_out.stderr
