r"""The student's kernel under bubblewrap (``bwrap``): what it sees, what it may do, how it starts.

Inside the sandbox (one per notebook being graded, thrown away afterwards):

* **filesystem**: the Python installation, the virtual environment and ntklib's package folder,
  read-only, at their usual paths (the kernel is the course's own interpreter); ``/usr`` read-only;
  a fresh ``/proc``, a minimal read-only ``/dev``; ``$HOME`` (``/home/student``), ``/tmp`` and
  ``/dev/shm`` are size-limited tmpfs. The kernel's working directory is ``$HOME/<assignment>``: a **scratch copy** of the
  submission folder (notebooks left out: the one being graded holds the restored hidden tests),
  written into the tmpfs when the kernel starts, so whatever the student writes there is thrown
  away with the sandbox. Nothing else exists: not the course directory (``solutions/``, the
  gradebook, ``submitted/``, ``autograded/``, ``feedback/``, the exchange, ``nbgrader_config.py``),
  not the grader's home. The only host folder it can write to is the folder holding its own
  sockets (see below), watched by the executor.
* **identity**: uid/gid 65534 (``nobody``) inside, no capabilities, a cleared environment (``HOME``,
  ``PATH``, ``MPLCONFIGDIR``, one BLAS/OpenMP thread unless the grader's environment says otherwise,
  and the variables listed in ``pass_env``). Started by an unprivileged grader, the sandbox's user
  is the grader's user outside the namespace; started by root, it is root *without any
  capability* inside its own user namespace (bubblewrap resolves the bound paths with the
  caller's rights, and root-owned Python installations are often not readable by ``nobody``).
* **no network** (own network namespace), own PID/IPC/UTS namespaces, killed with its parent.
* **no new processes**: a seccomp filter (x86-64 and ARM64) makes ``fork``/``vfork``/``clone``
  without ``CLONE_THREAD`` fail with ``EPERM`` (threads still work), so ``subprocess``,
  ``os.system`` and fork bombs fail; ``RLIMIT_AS`` caps memory (a ``MemoryError`` instead of an exhausted machine),
  ``RLIMIT_FSIZE`` the size of a file, ``RLIMIT_CORE`` is 0.

The kernel talks to the grader over ZeroMQ's ``ipc`` transport: unix sockets in a per-kernel
folder bound into the sandbox at the same path.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SandboxUnavailable", "SandboxSpec", "SandboxedProcess", "bwrap_command", "bwrap_path", "check_sandbox",
           "limits", "sandbox_mode", "kernel_workdir", "seccomp_no_fork_program", "INSTALL_HINT", "OPT_OUT_VARIABLE",
           "SANDBOX_HOME", "SANDBOX_UID"]

OPT_OUT_VARIABLE = "NTK_GRADING_SANDBOX"
INSTALL_HINT = ("Install bubblewrap (Debian/Ubuntu: `sudo apt-get install bubblewrap`, which "
                "scripts/bootstrap.sh does when run as root; Fedora: `dnf install bubblewrap`) and make sure "
                "unprivileged user namespaces are allowed (`sysctl kernel.unprivileged_userns_clone=1`; on "
                "Ubuntu 24.04 also an AppArmor profile for bwrap). Only if you cannot, and you trust every "
                f"submission, set {OPT_OUT_VARIABLE}=off to grade without the sandbox (see docs/instructors.md).")
SANDBOX_HOME = "/home/student"
SANDBOX_UID = 65534


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create a sandbox on this machine."""


def sandbox_mode() -> str:
    """``"on"`` (default) or ``"off"`` (the documented opt-out: ``NTK_GRADING_SANDBOX=off``)."""
    value = os.environ.get(OPT_OUT_VARIABLE, "on").strip().lower()
    if value in ("off", "0", "no", "false"):
        return "off"
    if value in ("on", "1", "yes", "true", ""):
        return "on"
    raise SandboxUnavailable(f"{OPT_OUT_VARIABLE} must be 'on' or 'off'; got {value!r}.")


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


# --- seccomp: no new processes --------------------------------------------------------------------
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
# syscall numbers: (clone, fork, vfork, clone3); aarch64 has no fork/vfork
_SYSCALLS = {"x86_64": (56, 57, 58, 435), "aarch64": (220, None, None, 435)}
_CLONE_THREAD = 0x00010000
_RET_ALLOW, _RET_KILL = 0x7FFF0000, 0x80000000
_EPERM, _ENOSYS = 1, 38


def seccomp_no_fork_program(machine: str | None = None) -> bytes | None:
    """A classic-BPF seccomp program: ``fork``/``vfork`` and ``clone`` without ``CLONE_THREAD`` fail
    with EPERM, ``clone3`` with ENOSYS (glibc then falls back to ``clone`` for threads), every other
    system call is allowed; a foreign architecture (or the x32 ABI) is killed. None on machines
    other than x86_64 and aarch64 (the executor then relies on the other limits)."""
    machine = machine or platform.machine()
    if machine not in _AUDIT_ARCH:
        return None
    clone, fork, vfork, clone3 = _SYSCALLS[machine]
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06

    def ins(code, jt, jf, k):
        return struct.pack("HBBI", code, jt, jf, k)

    errno = lambda e: 0x00050000 | e  # noqa: E731  (SECCOMP_RET_ERRNO)
    prog = [ins(ld, 0, 0, 4),                                  # 0 A = arch
            ins(jeq, 1, 0, _AUDIT_ARCH[machine]),              # 1 arch ok -> 3
            ins(ret, 0, 0, _RET_KILL),                         # 2
            ins(ld, 0, 0, 0)]                                  # 3 A = nr
    body = []
    if machine == "x86_64":
        body.append(("ge", 0x40000000, _RET_KILL))            # x32 ABI
    for nr in (fork, vfork):
        if nr is not None:
            body.append(("eq", nr, errno(_EPERM)))
    body.append(("eq", clone3, errno(_ENOSYS)))
    # each body entry: jump-if-match to its own return right after the jump
    for kind, k, action in body:
        prog.append(ins(jge if kind == "ge" else jeq, 0, 1, k))
        prog.append(ins(ret, 0, 0, action))
    prog += [ins(jeq, 1, 0, clone),                            # clone -> check its flags
             ins(ret, 0, 0, _RET_ALLOW),
             ins(ld, 0, 0, 16),                                # A = low 32 bits of args[0] (flags)
             ins(jset, 0, 1, _CLONE_THREAD),
             ins(ret, 0, 0, _RET_ALLOW),
             ins(ret, 0, 0, errno(_EPERM))]
    return b"".join(prog)


# --- what the sandbox binds ------------------------------------------------------------------------
def _python_roots() -> list[str]:
    """Folders the kernel's interpreter needs, read-only: the installation, the venv, ntklib."""
    import ntklib

    roots = {os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix)}
    roots.add(os.path.realpath(os.path.dirname(sys.executable)))
    roots.add(os.path.realpath(os.path.dirname(ntklib.__file__)))
    # the venv's python is often a symlink into the base installation: bind the venv path itself too
    roots |= {p for p in (sys.prefix,) if os.path.isdir(p)}
    keep = []
    for r in sorted(roots, key=len):
        if r in ("/", "/usr") or not os.path.isdir(r):
            continue
        if not any(r == k or r.startswith(k.rstrip("/") + "/") for k in keep):
            keep.append(r)
    return keep


@dataclass
class SandboxSpec:
    """How to sandbox one kernel. Sizes in bytes; see the module docstring for what each does."""

    memory_bytes: int = 4 << 30
    file_size_bytes: int = 256 << 20
    home_size_bytes: int = 512 << 20
    tmp_size_bytes: int = 256 << 20
    shm_size_bytes: int = 64 << 20
    pass_env: tuple[str, ...] = ("NBGRADER_EXECUTION", "CI", "NTK_SMOKE", "NTKLIB_NO_PROGRESS",
                                 "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                 "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY", "NTK_TEST_THREADS")
    extra_ro_binds: tuple[str, ...] = ()
    sandboxed: bool = True
    env: dict = field(default_factory=dict)


_LAUNCHER = r"""
import os, shutil, sys
src, dst, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
os.makedirs(dst, exist_ok=True)
if os.path.isdir(src):
    shutil.copytree(src, dst, dirs_exist_ok=True, symlinks=True)
os.chdir(dst)
sys.path.insert(0, "")  # the student's own modules, as with `python -m ipykernel_launcher`
sys.argv = ["ipykernel_launcher"] + argv
from ipykernel.kernelapp import launch_new_instance
launch_new_instance()
"""


def _environment(spec: SandboxSpec, home: str) -> dict[str, str]:
    env = {"HOME": home, "USER": "student", "LOGNAME": "student", "LANG": "C.UTF-8",
           "PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"]),
           "MPLCONFIGDIR": "/tmp/matplotlib", "IPYTHONDIR": f"{home}/.ipython",
           "JUPYTER_RUNTIME_DIR": "/tmp/jupyter-runtime", "PYDEVD_DISABLE_FILE_VALIDATION": "1",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    for name in spec.pass_env:
        if name in os.environ:
            env[name] = os.environ[name]
    env.update(spec.env)
    return env


def bwrap_command(spec: SandboxSpec, submission: str, workdir: str, ipc_dir: str, command: list[str]):
    """``(argv, fds to pass, environment of bwrap, read end of bwrap's --info-fd)`` that run ``command``
    (inside the sandbox) with ``submission`` bound read-only at ``/submission``, ``ipc_dir`` bound
    read-write at its own path, and the working directory ``workdir`` created by the launcher."""
    bwrap = bwrap_path()
    if bwrap is None:
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed. " + INSTALL_HINT)
    home = SANDBOX_HOME
    args = [bwrap, "--unshare-all", "--die-with-parent", "--as-pid-1", "--new-session",
            "--hostname", "grading", "--cap-drop", "ALL"]
    if os.geteuid() == 0:  # bwrap is privileged: ask for a user namespace explicitly
        args += ["--unshare-user"]
    args += ["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
             "--ro-bind", "/usr", "/usr", "--proc", "/proc", "--dev", "/dev",
             "--size", str(spec.shm_size_bytes), "--tmpfs", "/dev/shm", "--remount-ro", "/dev"]
    for link in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        target = os.path.join("/", link)
        if os.path.islink(target):
            args += ["--symlink", os.readlink(target), target]
        elif os.path.isdir(target):
            args += ["--ro-bind", target, target]
    for path in ("/etc/ld.so.cache", "/etc/localtime", "/etc/alternatives", "/sys/devices/system/cpu"):
        args += ["--ro-bind-try", path, path]
    # /tmp first: a checkout or venv that lives under /tmp is then bound on top of the empty tmpfs
    args += ["--size", str(spec.tmp_size_bytes), "--tmpfs", "/tmp"]
    for root in [*_python_roots(), *spec.extra_ro_binds]:
        if not root.startswith("/usr/"):
            args += ["--ro-bind", root, root]
    args += ["--size", str(spec.home_size_bytes), "--tmpfs", home,
             "--ro-bind", submission, "/submission",
             "--bind", ipc_dir, ipc_dir,
             "--chdir", home, "--clearenv"]
    for k, v in _environment(spec, home).items():
        args += ["--setenv", k, v]
    pass_fds = []
    prog = seccomp_no_fork_program()
    if prog is not None:
        r, w = os.pipe()
        os.write(w, prog)  # a few hundred bytes: fits in the pipe buffer
        os.close(w)
        args += ["--seccomp", str(r)]
        pass_fds.append(r)
    info_r, info_w = os.pipe()
    args += ["--info-fd", str(info_w)]
    pass_fds.append(info_w)
    args += ["--", *command]
    return args, pass_fds, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, info_r


def _launcher(submission: str, workdir: str, kernel_args: list[str]) -> list[str]:
    safe_path = ["-P"] if sys.version_info >= (3, 11) else []
    return [sys.executable, "-I", *safe_path, "-c", _LAUNCHER, submission, workdir, *kernel_args]


def limits(spec: SandboxSpec):
    """A ``preexec_fn`` setting the address-space, file-size and core-dump limits of ``spec``."""
    def apply():
        for res, value in ((resource.RLIMIT_AS, spec.memory_bytes), (resource.RLIMIT_FSIZE, spec.file_size_bytes),
                           (resource.RLIMIT_CORE, 0)):
            soft, hard = resource.getrlimit(res)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(res, (value, value))
    return apply


class SandboxedProcess:
    """One kernel process: under bwrap (``spec.sandboxed``) or, opted out, a plain subprocess.

    ``submission`` is a host folder (already without notebooks) copied into the kernel's working
    directory; ``ipc_dir`` holds the connection file and the sockets; ``kernel_args`` are
    ipykernel's arguments (``-f <connection file>`` ...).
    """

    def __init__(self, spec: SandboxSpec, submission: str, workdir_name: str, ipc_dir: str,
                 kernel_args: list[str]):
        self.spec = spec
        self.ipc_dir = ipc_dir
        self.kernel_pid: int | None = None
        self._stderr_head = bytearray()
        self._info_r = None  # bwrap's --info-fd: the kernel's PID as the grader sees it
        if spec.sandboxed:
            argv, pass_fds, env, self._info_r = bwrap_command(
                spec, submission, f"{SANDBOX_HOME}/{workdir_name}", ipc_dir,
                _launcher("/submission", f"{SANDBOX_HOME}/{workdir_name}", kernel_args))
        else:
            scratch = os.path.join(os.path.dirname(ipc_dir), "scratch", workdir_name)
            argv, pass_fds, env = _launcher(submission, scratch, kernel_args), [], {**os.environ}
        self.proc = subprocess.Popen(argv, pass_fds=pass_fds, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True, preexec_fn=limits(spec))
        for fd in pass_fds:
            os.close(fd)
        if not spec.sandboxed:
            self.kernel_pid = self.proc.pid
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    # -- launching -------------------------------------------------------------------------------
    def _drain_stderr(self):
        try:
            for chunk in iter(lambda: self.proc.stderr.read(4096), b""):
                if len(self._stderr_head) < 16384:
                    self._stderr_head += chunk[:16384 - len(self._stderr_head)]
        except (OSError, ValueError):
            pass

    def read_kernel_pid(self, timeout: float = 10.0) -> int | None:
        """The kernel's PID as the grader sees it (bwrap's ``--info-fd``), to interrupt it."""
        if self.kernel_pid is not None or self._info_r is None:
            return self.kernel_pid
        import select

        data = b""
        try:
            while b"}" not in data:
                ready, _, _ = select.select([self._info_r], [], [], timeout)
                if not ready:
                    break
                chunk = os.read(self._info_r, 4096)
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(self._info_r)
            self._info_r = None
        try:
            self.kernel_pid = int(json.loads(data.decode())["child-pid"])
        except (ValueError, KeyError, TypeError):
            self.kernel_pid = None
        return self.kernel_pid

    # -- control ---------------------------------------------------------------------------------
    @property
    def stderr_head(self) -> str:
        return self._stderr_head.decode("utf-8", "replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def interrupt(self) -> None:
        pid = self.read_kernel_pid(timeout=1.0)
        if pid is not None and self.alive():
            try:
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        """SIGKILL the kernel and bwrap; the PID namespace takes every other process with it."""
        for pid in (self.kernel_pid, self.proc.pid):
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
            pass
        if self._info_r is not None:
            os.close(self._info_r)
            self._info_r = None


def check_sandbox(timeout: float = 30.0) -> None:
    """Start a throw-away sandbox running Python; raise :class:`SandboxUnavailable` with the reason
    and the install hint when bwrap is missing or cannot create a sandbox here."""
    with tempfile.TemporaryDirectory(prefix="ntkg-") as work:
        sub, ipc = os.path.join(work, "submission"), os.path.join(work, "ipc")
        os.mkdir(sub)
        os.mkdir(ipc)
        spec = SandboxSpec()
        argv, fds, env, info_r = bwrap_command(spec, sub, f"{SANDBOX_HOME}/check", ipc,
                                               [sys.executable, "-I", "-c", "import sys; sys.exit(0)"])
        try:
            done = subprocess.run(argv, pass_fds=fds, env=env, capture_output=True, timeout=timeout,
                                  preexec_fn=limits(spec))
        except (OSError, subprocess.TimeoutExpired) as err:
            raise SandboxUnavailable(f"bubblewrap could not start a sandbox ({err}). " + INSTALL_HINT) from None
        finally:
            for fd in (*fds, info_r):
                os.close(fd)
        if done.returncode != 0:
            err = done.stderr.decode(errors="replace").strip()[:500]
            if "execvp" in err:  # bwrap works, but the interpreter is not where the sandbox binds it
                raise SandboxUnavailable(
                    f"the sandbox started but could not run this Python ({err}): the interpreter, its venv or "
                    f"ntklib lives under a path the sandbox does not make visible (read-only binds: "
                    f"{', '.join(_python_roots())}). Please report it with this message.")
            raise SandboxUnavailable(
                f"bubblewrap could not start a sandbox (exit code {done.returncode}: {err}). " + INSTALL_HINT)


def kernel_workdir(path: str | Path) -> str:
    """The name of the kernel's working directory inside the sandbox (the assignment folder's name)."""
    name = os.path.basename(os.path.normpath(str(path))) or "submission"
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
