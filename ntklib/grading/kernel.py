"""A student's kernel as the grader drives it: start, run a cell, call the agent, interrupt, restart.

Everything here is defensive about the kernel, which runs untrusted code:

* every wait has a deadline; a dead kernel process is noticed within a quarter of a second;
* IOPub is read from the raw socket: a message larger than what the cell may still print is
  dropped *without being parsed*, so a flood of output costs bandwidth, not memory or time, and
  never blocks (``Timeout waiting for IOPub output`` cannot happen);
* a cell's outputs are capped by characters (not lines); error outputs are always kept (short);
* the agent's answers are plain data (:mod:`ntklib.grading.wire`), read as the user expression of
  a silent request; anything else is reported as :class:`KernelProtocolError`;
* the only host folder the kernel can write to (its sockets' folder) is watched: more than
  ``ipc_limit_bytes`` in it kills the kernel (reported as tampering).
"""
from __future__ import annotations

import ast
import base64
import json
import os
import pickle
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import zmq
from jupyter_client import BlockingKernelClient
from jupyter_client.connect import write_connection_file
from nbformat.v4 import new_output

from .sandbox import SANDBOX_UID, SandboxedProcess, SandboxSpec
from .wire import WireError, decode

__all__ = ["ExecResult", "KernelDied", "KernelProtocolError", "KernelTimeout", "KernelSession", "AGENT_MODULE",
           "decode_value", "dumps_request"]

AGENT_MODULE = "_ntk_grading_agent"
_AGENT_SOURCE = (Path(__file__).with_name("agent.py")).read_text(encoding="utf-8")
_TRUNCATED = "\n[... the grader truncated this output: the cell printed more than {cap} characters]\n"


class KernelDied(RuntimeError):
    """The kernel process exited (os._exit, a crash, the memory limit)."""


class KernelTimeout(RuntimeError):
    """The kernel did not answer in time (and may not have answered an interrupt either)."""

    def __init__(self, message, responsive):
        super().__init__(message)
        self.responsive = responsive


class KernelProtocolError(RuntimeError):
    """The kernel answered something that is not a well-formed reply of the grading agent."""


@dataclass
class ExecResult:
    status: str                     # "ok" | "error" | "aborted" | "timeout" | "died"
    outputs: list = field(default_factory=list)
    reply: dict = field(default_factory=dict)
    execution_count: int | None = None
    truncated: bool = False
    interrupted_ok: bool = True     # after a timeout: did the kernel answer the interrupt?


class _Outputs:
    """nbformat outputs of one execution, capped at ``cap`` characters in total."""

    def __init__(self, cap: int):
        self.cap, self.used, self.truncated = cap, 0, False
        self.outputs: list = []

    def room(self) -> int:
        return max(self.cap - self.used, 0)

    def _note(self):
        if not self.truncated:
            self.truncated = True
            self.outputs.append(new_output("stream", name="stdout", text=_TRUNCATED.format(cap=self.cap)))

    def add(self, msg_type: str, content: dict) -> None:
        if msg_type == "stream":
            text = str(content.get("text", ""))
            name = "stderr" if content.get("name") == "stderr" else "stdout"
            if len(text) > self.room():
                text = text[:self.room()]
                self.used = self.cap
                if text:
                    self._append_stream(name, text)
                self._note()
                return
            self.used += len(text)
            self._append_stream(name, text)
        elif msg_type in ("display_data", "execute_result"):
            data = content.get("data", {}) or {}
            size = sum(len(str(v)) for v in data.values())
            if size > self.room():
                self.used = self.cap
                self._note()
                return
            self.used += size
            kw = {"execution_count": content.get("execution_count")} if msg_type == "execute_result" else {}
            self.outputs.append(new_output(msg_type, data=data, metadata=content.get("metadata", {}) or {}, **kw))
        elif msg_type == "error":
            self.add_error(content.get("ename", "Error"), content.get("evalue", ""), content.get("traceback", []))
        elif msg_type == "clear_output":
            self.outputs = [o for o in self.outputs if o.get("output_type") == "error"]

    def add_error(self, ename, evalue, traceback) -> None:
        tb = [str(t)[:4000] for t in list(traceback or [])[:40]]
        self.outputs.append(new_output("error", ename=str(ename)[:200], evalue=str(evalue)[:4000], traceback=tb))

    def _append_stream(self, name, text):
        last = self.outputs[-1] if self.outputs else None
        if last is not None and last.get("output_type") == "stream" and last.get("name") == name:
            last["text"] += text
        else:
            self.outputs.append(new_output("stream", name=name, text=text))


class KernelSession:
    """One kernel at a time for one notebook: :meth:`start`, :meth:`execute`, :meth:`call_agent`,
    :meth:`restart`, :meth:`shutdown`. ``submission`` is a host folder (without notebooks) copied
    into the kernel's working directory ``workdir_name`` at every start."""

    def __init__(self, spec: SandboxSpec, submission: str, workdir_name: str, kernel_args: list[str] | None = None,
                 startup_timeout: float = 60.0, output_chars: int = 100_000, ipc_limit_bytes: int = 16 << 20,
                 log=None):
        self.spec, self.submission, self.workdir_name = spec, submission, workdir_name
        self.kernel_args = list(kernel_args or [])
        self.startup_timeout, self.output_chars, self.ipc_limit_bytes = startup_timeout, output_chars, ipc_limit_bytes
        self.log = log
        self.proc: SandboxedProcess | None = None
        self.kc: BlockingKernelClient | None = None
        self.work: str | None = None
        self.tampering: list[str] = []
        self._last_ipc_check = 0.0

    # -- life cycle --------------------------------------------------------------------------------
    def start(self) -> None:
        self.work = tempfile.mkdtemp(prefix="ntkg-")
        ipc = os.path.join(self.work, "ipc")
        os.mkdir(ipc, 0o700)
        conn = os.path.join(ipc, "kernel.json")
        write_connection_file(conn, transport="ipc", ip=os.path.join(ipc, "k"))
        args = ["-f", conn, "--HistoryManager.hist_file=:memory:", *self.kernel_args]
        self.proc = SandboxedProcess(self.spec, self.submission, self.workdir_name, ipc, args)
        kc = BlockingKernelClient(connection_file=conn)
        kc.load_connection_file()
        kc.start_channels(hb=False)
        self.kc = kc
        self._wait_ready(time.monotonic() + self.startup_timeout)
        self._lock_ipc_dir(ipc)
        self.proc.read_kernel_pid()
        res = self.execute(self._install_code(), timeout=self.startup_timeout, silent=True, store_history=False)
        if res.status != "ok":
            raise KernelProtocolError(f"could not install the grading agent: {res.status} {res.reply.get('evalue', '')}")

    def _install_code(self) -> str:
        return (f"import sys as _s, types as _t\n_m = _t.ModuleType({AGENT_MODULE!r})\n"
                f"exec(compile({_AGENT_SOURCE!r}, '<grading agent>', 'exec'), _m.__dict__)\n"
                f"_s.modules[{AGENT_MODULE!r}] = _m\ndel _s, _t, _m\n")

    def _lock_ipc_dir(self, ipc: str) -> None:
        """Once the kernel has created its sockets, take the folder away from it where we can:
        as root, hand it to another uid and make it read-only (the sandbox's user has no capability
        to take it back). Without root the kernel owns it; the size watch in :meth:`execute` applies."""
        if self.spec.sandboxed and os.geteuid() == 0:
            try:
                os.chown(ipc, SANDBOX_UID, SANDBOX_UID)
                os.chmod(ipc, 0o555)
            except OSError:  # pragma: no cover
                pass

    def _wait_ready(self, deadline: float) -> None:
        kc = self.kc
        got_reply = got_iopub = False
        msg_id = None
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise KernelDied(f"the kernel exited while starting: {self.proc.stderr_head[-2000:]}")
            if msg_id is None or (got_reply and not got_iopub):
                msg_id = kc.kernel_info()
                got_reply = False
            if kc.shell_channel.msg_ready() or kc.shell_channel.socket.poll(200):
                msg = kc.shell_channel.get_msg(timeout=1)
                if msg["parent_header"].get("msg_id") == msg_id:
                    got_reply = True
            while kc.iopub_channel.socket.poll(0 if got_reply else 50):
                kc.iopub_channel.get_msg(timeout=1)
                got_iopub = True
            if got_reply and got_iopub:
                return
            if got_reply:
                time.sleep(0.05)
        raise KernelTimeout(f"the kernel did not start within {self.startup_timeout:.0f} s: "
                            f"{self.proc.stderr_head[-2000:]}", responsive=False)

    def shutdown(self) -> None:
        if self.kc is not None:
            try:
                self.kc.stop_channels()
            except Exception:  # noqa: BLE001
                pass
            self.kc = None
        if self.proc is not None:
            self.proc.kill()
            self.proc = None
        if self.work is not None:
            ipc = os.path.join(self.work, "ipc")
            if os.path.isdir(ipc):
                os.chmod(ipc, 0o700)
            shutil.rmtree(self.work, ignore_errors=True)
            self.work = None

    def restart(self) -> None:
        self.shutdown()
        self.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    # -- running code ------------------------------------------------------------------------------
    def execute(self, code: str, timeout: float, *, silent: bool = False, store_history: bool = True,
                user_expressions: dict | None = None, output_chars: int | None = None,
                interrupt_grace: float = 5.0) -> ExecResult:
        """Run ``code``; wait at most ``timeout`` seconds, then interrupt and wait ``interrupt_grace``
        more. Returns the capped outputs and the reply; never raises for what the code does."""
        kc = self.kc
        outs = _Outputs(self.output_chars if output_chars is None else output_chars)
        content = dict(code=code, silent=silent, store_history=store_history,
                       user_expressions=user_expressions or {}, allow_stdin=False, stop_on_error=False)
        msg = kc.session.msg("execute_request", content)
        msg_id = msg["header"]["msg_id"]
        kc.shell_channel.send(msg)
        deadline = time.monotonic() + max(timeout, 0.0)
        reply = None
        idle = False
        reply_time = None
        interrupted = False
        poller = zmq.Poller()
        poller.register(kc.shell_channel.socket, zmq.POLLIN)
        poller.register(kc.iopub_channel.socket, zmq.POLLIN)
        while True:
            now = time.monotonic()
            if reply is not None and (idle or now - reply_time > 2.0):
                break
            if now >= deadline:
                if reply is not None:
                    break
                if interrupted:
                    return ExecResult("timeout", outs.outputs, {}, truncated=outs.truncated, interrupted_ok=False)
                interrupted = True
                self.proc.interrupt()
                deadline = now + interrupt_grace
                continue
            if not self.proc.alive():
                return ExecResult("died", outs.outputs, {}, truncated=outs.truncated)
            if now - self._last_ipc_check > 1.0:
                self._check_ipc_dir()
            events = dict(poller.poll(int(min(0.25, max(deadline - now, 0.0)) * 1000) + 1))
            if kc.iopub_channel.socket in events:
                for _ in range(64):  # drain what is there, without blocking
                    if not kc.iopub_channel.socket.poll(0):
                        break
                    if self._iopub_message(msg_id, outs):
                        idle = True
            if kc.shell_channel.socket in events:
                got = self._shell_message(msg_id)
                if got is not None:
                    reply, reply_time = got, time.monotonic()
        status = "timeout" if interrupted else str(reply.get("status", "error"))
        if status == "error" and not any(o.get("output_type") == "error" for o in outs.outputs):
            outs.add_error(reply.get("ename", "Error"), reply.get("evalue", ""), reply.get("traceback", []))
        return ExecResult(status, outs.outputs, reply, reply.get("execution_count"), outs.truncated)

    def _recv(self, socket):
        frames = socket.recv_multipart(copy=False)
        _, msg_list = self.kc.session.feed_identities(frames, copy=False)
        return msg_list

    def _iopub_message(self, msg_id: str, outs: _Outputs) -> bool:
        """Handle one IOPub message; True when it is the idle status of ``msg_id``."""
        msg_list = self._recv(self.kc.iopub_channel.socket)
        if len(msg_list) < 5:
            return False
        try:
            parent = json.loads(msg_list[2].bytes) if len(msg_list[2]) < 65536 else {}
            header = json.loads(msg_list[1].bytes) if len(msg_list[1]) < 65536 else {}
        except ValueError:
            return False
        if not isinstance(parent, dict) or parent.get("msg_id") != msg_id or not isinstance(header, dict):
            return False
        msg_type = header.get("msg_type")
        size = sum(len(f) for f in msg_list[4:])
        if msg_type in ("stream", "display_data", "execute_result") and size > outs.room() + 4096:
            outs.used = outs.cap
            outs._note()
            return False
        if size > 16 << 20:
            return False
        try:
            msg = self.kc.session.deserialize(msg_list, content=True, copy=False)
        except Exception:  # noqa: BLE001 - garbage or a bad signature
            return False
        content = msg.get("content", {})
        if msg_type == "status":
            return content.get("execution_state") == "idle"
        if msg_type in ("stream", "display_data", "execute_result", "error", "clear_output"):
            outs.add(msg_type, content)
        return False

    def _shell_message(self, msg_id: str):
        msg_list = self._recv(self.kc.shell_channel.socket)
        if len(msg_list) < 5 or sum(len(f) for f in msg_list) > 200 << 20:
            return None
        try:
            msg = self.kc.session.deserialize(msg_list, content=True, copy=False)
        except Exception:  # noqa: BLE001
            return None
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            return None
        content = msg.get("content")
        return content if isinstance(content, dict) else {"status": "error", "ename": "BadReply", "evalue": ""}

    def _check_ipc_dir(self) -> None:
        self._last_ipc_check = time.monotonic()
        if self.work is None:
            return
        total = 0
        try:
            with os.scandir(os.path.join(self.work, "ipc")) as it:
                for n, entry in enumerate(it):
                    if n > 256:
                        total = self.ipc_limit_bytes + 1
                        break
                    if entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            return
        if total > self.ipc_limit_bytes:
            self.tampering.append("the kernel filled its socket folder with files")
            self.proc.kill()

    # -- the agent ---------------------------------------------------------------------------------
    def call_agent(self, request: dict, timeout: float, max_bytes: int = 64 << 20) -> tuple[dict, list]:
        """Send one request to the agent; return (reply dict, outputs the call printed).

        Raises :class:`KernelDied`, :class:`KernelTimeout` or :class:`KernelProtocolError`.
        The reply's ``value`` entries are still in the wire format (see :func:`decode_value`).
        """
        payload = base64.b64encode(dumps_request(request)).decode("ascii")
        code = f"__import__('sys').modules[{AGENT_MODULE!r}].handle({payload!r})"
        expr = f"__import__('sys').modules[{AGENT_MODULE!r}].reply"
        res = self.execute(code, timeout, silent=True, store_history=False, user_expressions={"r": expr},
                           output_chars=4000)
        if res.status == "died":
            raise KernelDied("the kernel died while answering the grader")
        if res.status == "timeout":
            raise KernelTimeout("the kernel did not answer in time", responsive=res.interrupted_ok)
        expr_reply = (res.reply.get("user_expressions") or {}).get("r")
        if res.status != "ok" or not isinstance(expr_reply, dict) or expr_reply.get("status") != "ok":
            raise KernelProtocolError("the kernel replied without running the grading call "
                                      "(its execution machinery or the grading agent was replaced)")
        text = (expr_reply.get("data") or {}).get("text/plain")
        if not isinstance(text, str) or len(text) > 3 * max_bytes or text[:1] not in ("'", '"'):
            raise KernelProtocolError("the kernel's answer is not a string")
        try:
            raw = ast.literal_eval(text)
            out = json.loads(raw) if isinstance(raw, str) else None
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            out = None
        if not isinstance(out, dict) or not isinstance(out.get("ok"), bool):
            raise KernelProtocolError("the kernel's answer is not a reply of the grading agent")
        return out, res.outputs


def dumps_request(request) -> bytes:
    """Pickle a request for the kernel (the checker is the trusted side: it sends pickles, never
    loads the kernel's). Objects plain pickle refuses (a module holding a lambda) are pickled by
    value with cloudpickle when it is installed (it comes with scikit-learn's joblib)."""
    try:
        return pickle.dumps(request, protocol=4)
    except Exception:  # noqa: BLE001 - lambdas, local classes, ...
        try:
            import cloudpickle
        except ImportError:
            raise
        return cloudpickle.dumps(request, protocol=4)


def decode_value(data, max_bytes: int = 64 << 20):
    """A ``value`` from :meth:`KernelSession.call_agent` as trusted objects (:func:`ntklib.grading.wire.decode`)."""
    try:
        return decode(data, max_bytes=max_bytes)
    except (WireError, RecursionError) as err:
        raise KernelProtocolError(f"the kernel's answer is not plain data ({err})") from None

