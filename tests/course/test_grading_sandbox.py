"""The student's kernel under bubblewrap, driven as the autograder drives it (ntklib.grading.sandbox, .kernel).

What a student's code sees and can do at grading time: a scratch copy of its folder, nothing of the
course, a cleared environment, no network, no new processes, a memory limit; and what the grader
survives: interrupts, a kernel that ignores them, a kernel that dies, floods of output, a kernel
whose execution machinery was replaced. On Linux these tests need bubblewrap (scripts/bootstrap.sh
installs it as root on Debian); elsewhere they are skipped.
"""
import json
import os
import sys
import time
from pathlib import Path

import pytest
import torch

from ntklib.grading.kernel import KernelProtocolError, KernelSession, decode_value
from ntklib.grading.sandbox import SandboxSpec, SandboxUnavailable, check_sandbox
from pipeline_utils import require_sandbox

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def submission(tmp_path_factory):
    folder = tmp_path_factory.mktemp("submission")
    (folder / "data.txt").write_text("the student's data file")
    (folder / "sub").mkdir()
    (folder / "sub" / "helper.py").write_text("VALUE = 7\n")
    return folder


@pytest.fixture(scope="module")
def kernel(submission):
    require_sandbox()
    os.environ["NTK_TEST_GRADER_SECRET"] = "grader-only-value"
    session = KernelSession(SandboxSpec(memory_bytes=3 << 30), str(submission), "00_demo",
                            ["--InteractiveShell.xmode=Minimal"], output_chars=10_000)
    session.start()
    yield session
    session.shutdown()
    os.environ.pop("NTK_TEST_GRADER_SECRET", None)


def _run(kernel, code, timeout=60, **kw):
    res = kernel.execute(code, timeout, **kw)
    text = "".join(o.get("text", "") for o in res.outputs if o.get("output_type") == "stream")
    return res, text


def _json(kernel, code):
    res, text = _run(kernel, f"import json\nprint(json.dumps({code}))")
    assert res.status == "ok", res.outputs
    return json.loads(text)


def test_the_kernel_works_in_a_scratch_copy_of_the_submission_and_sees_nothing_of_the_course(kernel, submission,
                                                                                           tmp_path):
    seen = _json(kernel, "dict(cwd=os.getcwd(), files=sorted(os.listdir('.')), uid=os.getuid(), env=sorted(os.environ))"
                         " if (os := __import__('os')) else 0")
    assert seen["cwd"] == "/home/student/00_demo" and seen["files"] == ["data.txt", "sub"] and seen["uid"] == 65534
    assert "NTK_TEST_GRADER_SECRET" not in seen["env"] and "HOME" in seen["env"]
    canary = tmp_path / "grader-file.txt"
    canary.write_text("secret")
    hidden = [str(REPO / "solutions"), str(REPO / "course"), str(REPO / "nbgrader_config.py"), str(REPO / "tests"),
              str(REPO / "README.md"), str(submission), str(canary), "/etc/passwd", "/etc/shadow", "/var", "/srv"]
    exists = _json(kernel, f"{{p: __import__('os').path.exists(p) for p in {hidden!r}}}")
    assert not any(exists.values()), exists
    res, text = _run(kernel, "import sub.helper, ntklib, torch\nprint(sub.helper.VALUE, ntklib.__name__)")
    assert text.split() == ["7", "ntklib"], res.outputs


def test_the_kernel_writes_only_into_its_scratch_copy_and_tmpfs(kernel, submission):
    import ntklib

    targets = {"ntklib": os.path.join(os.path.dirname(ntklib.__file__), "pwned.py"),
               "venv": os.path.join(sys.prefix, "pwned.pth"), "usr": "/usr/pwned", "dev": "/dev/pwned"}
    code = ("import os\nout = {}\nfor k, p in %r.items():\n    try:\n        open(p, 'w').write('x')\n"
            "        out[k] = 'written'\n    except OSError as e:\n        out[k] = e.strerror\n"
            "open('scratch.txt', 'w').write('x'); open('/tmp/x.txt', 'w').write('x')\n"
            "import json; print(json.dumps(out))") % targets
    res, text = _run(kernel, code)
    assert res.status == "ok", res.outputs
    assert set(json.loads(text).values()) <= {"Read-only file system", "Permission denied", "No such file or directory"}
    assert not any(os.path.exists(p) for p in targets.values())
    assert not (submission / "scratch.txt").exists() and not Path("/tmp/x.txt").exists()


def test_no_network_no_new_processes_and_a_memory_limit(kernel):
    res, _ = _run(kernel, "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)")
    assert res.status == "error" and "unreachable" in res.outputs[-1]["evalue"].lower()
    res, _ = _run(kernel, "import subprocess\nsubprocess.run(['true'])")
    assert res.status == "error" and "not permitted" in res.outputs[-1]["evalue"]
    res, _ = _run(kernel, "import os\nos.fork()")
    assert res.status == "error" and "not permitted" in res.outputs[-1]["evalue"]
    res, _ = _run(kernel, "import threading\nt = threading.Thread(target=lambda: None); t.start(); t.join()\n"
                          "print('threads work')")
    assert res.status == "ok"
    res, _ = _run(kernel, "block = bytearray(4 * 2**30)")
    assert res.status == "error" and res.outputs[-1]["ename"] == "MemoryError"


def test_output_is_capped_by_characters_without_blocking(kernel):
    t0 = time.monotonic()
    res, text = _run(kernel, "print('x' * 50_000_000)\nprint('y' * 50_000_000)\nprint('end')")
    assert res.status == "ok" and len(text) < 11_000 and "truncated" in text
    assert time.monotonic() - t0 < 60


def test_the_agent_answers_in_plain_data_and_refuses_rigged_values(kernel):
    _run(kernel, "import torch\ndef double(x, k=1):\n    return x * 2 * k\n"
                 "class Rigged(str):\n    def __eq__(self, o): return True\n    __hash__ = str.__hash__\n"
                 "ANSWER = Rigged('Z')\nPLAIN = 'B'\ndef rigged(): return Rigged('A')")
    reply, _ = kernel.call_agent({"op": "call", "name": "double", "args": (torch.ones(2),), "kwargs": {"k": 3}}, 30)
    value = decode_value(reply["value"])
    assert type(value) is torch.Tensor and torch.equal(value, torch.full((2,), 6.0))
    reply, _ = kernel.call_agent({"op": "describe", "names": ["ANSWER", "PLAIN", "double", "nope"]}, 30)
    names = reply["names"]
    assert names["ANSWER"]["kind"] == "unreadable" and names["PLAIN"] == {"kind": "value", "value": "B"}
    assert names["double"] == {"kind": "function"} and names["nope"] == {"kind": "missing"}
    reply, _ = kernel.call_agent({"op": "call", "name": "rigged", "args": (), "kwargs": {}}, 30)
    assert reply["ok"] is False and reply["etype"] == "Unsupported"


def test_interrupts_a_sigint_proof_loop_and_a_dead_kernel(submission):
    require_sandbox()
    session = KernelSession(SandboxSpec(), str(submission), "00_demo")
    session.start()
    try:
        res = session.execute("import time\nwhile True:\n    time.sleep(0.01)", 2)
        assert res.status == "timeout" and res.interrupted_ok
        assert session.execute("print('still alive')", 30).status == "ok"
        res = session.execute("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass", 2,
                              interrupt_grace=2)
        assert res.status == "timeout" and not res.interrupted_ok
        session.restart()
        assert session.execute("x = 1", 30).status == "ok"
        assert session.execute("import os\nos._exit(3)", 30).status == "died"
        session.restart()
        session.execute("get_ipython().kernel.do_execute = lambda *a, **k: {'status': 'ok', 'execution_count': 1, "
                        "'user_expressions': {}, 'payload': []}", 30)
        with pytest.raises(KernelProtocolError, match="replaced"):
            session.call_agent({"op": "probe"}, 10)
    finally:
        session.shutdown()


def test_check_sandbox_says_how_to_install_bwrap_when_it_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        check_sandbox()


def test_read_only_binds_under_tmp_stay_visible_over_the_sandbox_tmpfs(tmp_path):
    """A checkout or venv under /tmp (a fresh clone there) must be visible in the sandbox: the sandbox's
    own /tmp is an empty tmpfs, and the binds of the interpreter's folders go on top of it."""
    import subprocess

    from ntklib.grading.sandbox import bwrap_command, limits

    require_sandbox()
    assert str(tmp_path).startswith("/tmp/"), f"pytest's tmp_path is not under /tmp here: {tmp_path}"
    shared = tmp_path / "venv-like"
    shared.mkdir()
    (shared / "marker.txt").write_text("visible")
    (tmp_path / "scratch.txt").write_text("not bound: must stay hidden")
    sub, ipc = tmp_path / "submission", tmp_path / "ipc"
    sub.mkdir()
    ipc.mkdir()
    spec = SandboxSpec(extra_ro_binds=(str(shared),))
    probe = (f"import os; print(open({str(shared / 'marker.txt')!r}).read(), "
             f"os.path.exists({str(tmp_path / 'scratch.txt')!r}))")
    argv, fds, env, info_r = bwrap_command(spec, str(sub), "/home/student/x", str(ipc), [sys.executable, "-I", "-c", probe])
    try:
        done = subprocess.run(argv, pass_fds=fds, env=env, capture_output=True, timeout=60, preexec_fn=limits(spec))
    finally:
        for fd in (*fds, info_r):
            os.close(fd)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stdout.decode().split() == ["visible", "False"]
